//! llama-core: everything needed to run LLaMA-family GGUF models on a CPU.
//!
//! Pipeline, in the order data flows:
//! `gguf` (file) → `quant` (tensor formats + kernels) → `model` (forward pass over a KV cache)
//! → `sampler`; `tokenizer` turns text into ids and back.

pub mod chat;
pub mod cpu;
pub mod error;
pub mod gguf;
pub mod model;
pub mod ops;
pub mod quant;
pub mod quantize_file;
pub mod sampler;
pub mod tokenizer;

pub use error::{Error, Result};
