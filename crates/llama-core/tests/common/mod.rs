//! Shared helpers for the tokenizer integration tests: locating models and loading tokenizers.
#![allow(dead_code)]

use std::path::PathBuf;

use llama_core::gguf::GgufFile;
use llama_core::tokenizer::Tokenizer;

pub fn models_dir() -> PathBuf {
    match std::env::var_os("LLAMA_TEST_MODELS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llama-test-models"),
    }
}

pub fn shared() -> PathBuf {
    PathBuf::from(std::env::var_os("LLAMA_SHARED").unwrap_or_else(|| "/work/shared".into()))
}

/// Path if it exists, else print a SKIP line and return None.
pub fn require(p: PathBuf) -> Option<PathBuf> {
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not found", p.display());
        None
    }
}

/// Tokenizer of a named test vocabulary (GGUF), or None (SKIP) if the file is absent.
/// llama.cpp's vocab-only files live in shared/models; full models in $LLAMA_TEST_MODELS.
pub fn load(name: &str) -> Option<Tokenizer> {
    let p = match name {
        "llama-spm" => shared().join("models/ggml-vocab-llama-spm.gguf"),
        "gpt-2" => shared().join("models/ggml-vocab-gpt-2.gguf"),
        "qwen" => models_dir().join("qwen2.5-coder-0.5b-q4_k_m.gguf"),
        "gemma" => models_dir().join("gemma3-270m-q4_k_m.gguf"),
        "synth" => models_dir().join("synth-tiny-q4_0.gguf"),
        other => panic!("unknown test vocabulary {other}"),
    };
    let p = require(p)?;
    let f = GgufFile::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Some(Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// CPU time consumed by this thread (Linux schedstat), falling back to wall time: the shared
/// test machine is often heavily oversubscribed, which makes wall time meaningless.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}
