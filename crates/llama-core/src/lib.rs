//! llama-core: everything needed to run LLaMA-family GGUF models on a CPU.
//!
//! Pipeline, in the order data flows:
//! `gguf` (file) → `quant` (tensor formats) → `kernels` (computing with them: per-ISA kernels,
//! dispatch, matmul, thread pool) → `model` (forward pass over a KV cache) → `sampler`;
//! `tokenizer` turns text into ids and back.

pub mod chat;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod grammar;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod quantize_file;
pub mod sampler;
pub mod tokenizer;

pub use error::{Error, Result};
