//! GGUF v2/v3: reader (mmap, zero-copy tensor views, bounds-checked everywhere) and writer.
//!
//! Layout (little endian): magic "GGUF", version u32, n_tensors u64, n_kv u64, then n_kv
//! (key string, value type u32, value), then n_tensors (name string, n_dims u32, dims u64[n_dims],
//! ggml type u32, offset u64), padding to `general.alignment` (default 32), then tensor data;
//! each tensor's offset is relative to the data start and aligned.

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
/// Nesting limit for arrays of arrays: bounds the parser's recursion on hostile input
/// (nothing real nests more than one level).
pub const MAX_ARRAY_DEPTH: usize = 16;

mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, TensorInfo};
pub use value::{GgufString, Value, ValueType};
pub use writer::{GgufWriter, TensorSource, WriteProgress};
