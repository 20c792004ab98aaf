//! llama-convert: Meta `.pth` and Hugging Face safetensors checkpoints → GGUF, as llama.cpp's
//! converter writes them (same tensor names, types, bytes and metadata), without torch.
//!
//! Flow: `meta`/`hf` read the checkpoint's index (no tensor data) into a `plan::Plan`;
//! `vocab` builds the tokenizer metadata; `write` streams tensors one at a time into a
//! `GgufWriter` (temp file + rename, so a failure leaves no output).

pub mod card;
pub mod hf;
pub mod meta;
pub mod pickle;
pub mod plan;
pub mod pth;
pub mod safetensors;
pub mod tensor;
pub mod vocab;
mod write;

use std::path::{Path, PathBuf};

pub use llama_core::{Error, Result};
pub use write::{size_label, title_name};

/// Output type for 2-D weights (1-D tensors are always F32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    BF16,
    Q8_0,
}

impl OutType {
    pub fn parse(s: &str) -> Result<OutType> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => OutType::F32,
            "f16" => OutType::F16,
            "bf16" => OutType::BF16,
            "q8_0" => OutType::Q8_0,
            other => return Err(Error::InvalidArgument(format!("outtype '{other}': expected f16, f32, bf16 or q8_0"))),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "f32",
            OutType::F16 => "f16",
            OutType::BF16 => "bf16",
            OutType::Q8_0 => "q8_0",
        }
    }
    /// llama.cpp `enum llama_ftype`.
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q8_0 => 7,
            OutType::BF16 => 32,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Model folder (Meta: holds consolidated.NN.pth + params.json; HF: config.json + safetensors).
    pub path: PathBuf,
    pub outtype: OutType,
    /// Default: `<path>/ggml-model-<outtype>.gguf`.
    pub out: Option<PathBuf>,
    /// Where tokenizer files are (default: the model folder, then its parent).
    pub vocab_dir: Option<PathBuf>,
    /// Print per-tensor progress on stderr.
    pub progress: bool,
}

/// Which checkpoint layout a folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Meta,
    HuggingFace,
}

pub fn detect(dir: &Path) -> Result<Format> {
    if meta::is_meta_dir(dir) {
        Ok(Format::Meta)
    } else if hf::is_hf_dir(dir) {
        Ok(Format::HuggingFace)
    } else {
        Err(Error::format(
            dir,
            "neither a Meta checkpoint (params.json + consolidated.*.pth) nor a Hugging Face one (config.json)",
        ))
    }
}

/// Converts a checkpoint; returns the path written.
pub fn convert(opts: &ConvertOptions) -> Result<PathBuf> {
    let dir = if opts.path.is_file() {
        opts.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    } else {
        opts.path.clone()
    };
    if !dir.is_dir() {
        return Err(Error::io(&dir, std::io::Error::new(std::io::ErrorKind::NotFound, "no such model folder")));
    }
    let format = detect(&dir)?;
    let (plan, config, family) = match format {
        Format::Meta => (meta::load_meta(&dir)?, None, None),
        Format::HuggingFace => {
            let (plan, family) = hf::load_hf(&dir)?;
            (plan, Some(hf::read_config(&dir)?), Some(family))
        }
    };
    let vocab_dir = match &opts.vocab_dir {
        Some(d) => d.clone(),
        None => {
            let has_tok = |d: &Path| d.join("tokenizer.model").is_file() || d.join("tokenizer.json").is_file();
            match dir.parent() {
                Some(p) if !has_tok(&dir) && has_tok(p) => p.to_path_buf(),
                _ => dir.clone(),
            }
        }
    };
    let mut vocab = vocab::load_vocab(&vocab_dir, Some(plan.hparams.n_vocab), config.as_ref())?;
    match &family {
        None => vocab::spm_special_ids(&vocab_dir, &mut vocab)?,
        Some(f) => f.adapt_vocab(&vocab_dir, &mut vocab)?,
    }
    let out = opts.out.clone().unwrap_or_else(|| dir.join(format!("ggml-model-{}.gguf", opts.outtype.name())));
    // convert_hf_to_gguf passes the parameter count to the name heuristics; the legacy Meta
    // converter passes none.
    let total_params = if format == Format::Meta { 0 } else { plan.n_params as i64 };
    let general = card::Metadata::load(&dir, config.as_ref(), total_params);
    write::write_gguf(&out, &general, plan, &vocab, opts.outtype, opts.progress)?;
    Ok(out)
}
