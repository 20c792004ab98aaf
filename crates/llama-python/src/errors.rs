//! llama_core::Error → the typed Python exceptions of `llama.errors` (looked up by name, so the
//! exception classes live in Python where they can also subclass FileNotFoundError, ValueError …).

use llama_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

fn class_for(e: &Error) -> &'static str {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "ModelFileNotFoundError",
        Error::Io { .. } => "LlamaError",
        Error::Format { .. } => "ModelFormatError",
        Error::UnsupportedType(_) | Error::UnknownArchitecture { .. } => "UnsupportedError",
        Error::Model(_) => "ModelFormatError",
        Error::Tokenizer(_) => "TokenizerError",
        Error::ContextOverflow(_) => "ContextOverflowError",
        Error::InvalidArgument(_) | Error::Grammar(_) => "InvalidArgumentError",
        Error::Interrupted => "KeyboardInterrupt",
    }
}

pub fn to_py(e: Error) -> PyErr {
    let name = class_for(&e);
    if name == "KeyboardInterrupt" {
        return pyo3::exceptions::PyKeyboardInterrupt::new_err(e.to_string());
    }
    named(name, e.to_string())
}

/// An instance of `llama.errors.<name>` with `msg`.
pub fn named(name: &str, msg: String) -> PyErr {
    Python::attach(|py| match py.import("llama.errors").and_then(|m| m.getattr(name)) {
        Ok(cls) => match cls.call1((msg.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(err) => err,
        },
        Err(_) => PyRuntimeError::new_err(msg),
    })
}

/// `?`-friendly conversion for core results.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for llama_core::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
