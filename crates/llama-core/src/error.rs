//! One error type for the core. Every variant carries enough context (file, tensor, key) that
//! the message alone tells the user what is wrong; the Python layer maps variants to exception types.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS refused a file operation.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A file is malformed (truncated, out-of-range offsets, bad magic …).
    #[error("{path}: invalid file: {msg}")]
    Format { path: PathBuf, msg: String },

    /// A tensor type we know by id but cannot compute with (IQ*, TQ*, …), or an unknown id.
    #[error("unsupported tensor type {0}")]
    UnsupportedType(String),

    /// The model architecture is not one we implement.
    #[error("unknown model architecture '{arch}' (supported: {supported})")]
    UnknownArchitecture { arch: String, supported: String },

    /// A required metadata key or tensor is absent or has the wrong type/shape.
    #[error("model: {0}")]
    Model(String),

    /// The tokenizer cannot be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Evaluating would exceed the context window.
    #[error("context overflow: {0}")]
    ContextOverflow(String),

    /// A caller passed an argument outside its domain (token id ≥ n_vocab, empty prompt …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A grammar, JSON schema or regex constraint cannot be compiled or used (parse error,
    /// unsupported schema keyword, a token the grammar forbids).
    #[error("grammar: {0}")]
    Grammar(String),

    /// The computation was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
