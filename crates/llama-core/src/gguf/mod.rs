//! GGUF v2/v3: reader (mmap, zero-copy tensor views, bounds-checked everywhere) and writer.
//!
//! Layout (little endian): magic "GGUF", version u32, n_tensors u64, n_kv u64, then n_kv
//! (key string, value type u32, value), then n_tensors (name string, n_dims u32, dims u64[n_dims],
//! ggml type u32, offset u64), padding to `general.alignment` (default 32), then tensor data;
//! each tensor's offset is relative to the data start and aligned.

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
