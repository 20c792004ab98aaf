//! Shared helpers for the tokenizer integration tests: locating models and loading tokenizers.
#![allow(dead_code)]

#[path = "../testdata/mod.rs"]
mod testdata;
#[allow(unused_imports)]
pub use testdata::*;

use llama_core::gguf::GgufFile;
use llama_core::tokenizer::Tokenizer;

/// Tokenizer of a named test vocabulary (GGUF), or None (SKIP) if the file is absent.
/// llama.cpp's vocab-only files live in tests/data/vocab; full models in $LLAMA_TEST_MODELS.
pub fn load(name: &str) -> Option<Tokenizer> {
    let p = match name {
        "llama-spm" => vocab_dir().join("ggml-vocab-llama-spm.gguf"),
        "gpt-2" => vocab_dir().join("ggml-vocab-gpt-2.gguf"),
        "bert-bge" => vocab_dir().join("ggml-vocab-bert-bge.gguf"),
        "qwen" => models_dir().join("qwen2.5-coder-0.5b-q4_k_m.gguf"),
        "gemma" => models_dir().join("gemma3-270m-q4_k_m.gguf"),
        "synth" => models_dir().join("synth-tiny-q4_0.gguf"),
        other => panic!("unknown test vocabulary {other}"),
    };
    let p = require(p)?;
    let f = GgufFile::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Some(Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// A recorded text: a JSON string, or {"hex": ...} for bytes that are not UTF-8.
pub fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Object(o) => {
            let h = o["hex"].as_str().unwrap();
            (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
        }
        other => panic!("not a text: {other}"),
    }
}

/// CPU time consumed by this thread (Linux schedstat), falling back to wall time: the shared
/// test machine is often heavily oversubscribed, which makes wall time meaningless.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}
