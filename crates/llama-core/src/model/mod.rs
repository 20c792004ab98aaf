//! Model forward pass over a KV cache: `Model` (hyper-parameters + weight views into the GGUF
//! mmap) and `Context` (KV cache, preallocated activations, logits).
//!
//! One forward function per architecture, llama2.c style, with llama.cpp's stage names:
//! `llama.rs` (llama + qwen2) and `gemma3.rs`; `attention.rs` holds the shared causal attention.

mod attention;
mod context;
mod gemma3;
pub mod hparams;
mod kv_cache;
mod llama;
pub mod ops;
mod par_ops;
mod weights;

pub use context::{Context, ContextParams};
pub use hparams::{Arch, HParams, SUPPORTED_ARCHS};
pub use kv_cache::KvType;

use std::path::Path;

use crate::gguf::GgufFile;
use crate::ops::QTensor;
use crate::Result;
use weights::{WRef, Weights};

/// Options for loading a model (none needed yet; kept for API stability).
#[derive(Clone, Debug, Default)]
pub struct ModelParams {}

/// A loaded model: owns the GGUF file; weights are read in place from its mmap.
pub struct Model {
    file: GgufFile,
    hparams: HParams,
    weights: Weights,
}

impl Model {
    pub fn load(path: impl AsRef<Path>, _params: &ModelParams) -> Result<Model> {
        let file = GgufFile::open(path.as_ref())?;
        Self::from_gguf(file)
    }

    /// Builds a model from an already opened file (validates metadata and every tensor).
    pub fn from_gguf(file: GgufFile) -> Result<Model> {
        let arch = hparams::read_arch(&file)?;
        let mut hparams = HParams::from_gguf(&file, arch)?;
        let (weights, n_vocab) = Weights::load(&file, &hparams)?;
        hparams.n_vocab = n_vocab;
        Ok(Model {
            file,
            hparams,
            weights,
        })
    }

    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub fn n_vocab(&self) -> usize {
        self.hparams.n_vocab
    }

    /// Total bytes of the weights (for `info`).
    pub fn n_bytes(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_bytes).sum()
    }

    /// Total number of weight elements.
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements()).sum()
    }

    fn qt(&self, w: &WRef) -> QTensor<'_> {
        let t = &self.file.tensors()[w.idx];
        QTensor {
            ggml_type: t.ggml_type,
            data: self.file.tensor_data(t),
            rows: w.rows,
            cols: w.cols,
        }
    }
}
