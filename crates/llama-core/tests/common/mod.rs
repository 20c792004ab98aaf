//! Shared helpers for the tokenizer integration tests: locating models and loading tokenizers.
#![allow(dead_code)]

use std::path::PathBuf;

use llama_core::tokenizer::{Tokenizer, Vocab, VocabKind, VocabOptions};

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

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Temporary: load a tokenizer from a JSON dump made by gguf-py (until from_gguf lands).
pub fn load_json(p: &std::path::Path) -> Tokenizer {
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let kind = VocabKind::from_model_name(d["model"].as_str().unwrap()).unwrap();
    let tokens = d["tokens"].as_array().unwrap().iter().map(|t| hex(t.as_str().unwrap())).collect();
    let scores = d.get("scores").map(|a| a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).unwrap_or_default();
    let types = d.get("types").map(|a| a.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect()).unwrap_or_default();
    let merges = d.get("merges").map(|a| a.as_array().unwrap().iter().map(|x| hex(x.as_str().unwrap())).collect()).unwrap_or_default();
    let id = |k: &str| d.get(k).and_then(|x| x.as_u64()).map(|x| x as u32);
    let b = |k: &str| d.get(k).and_then(|x| x.as_bool());
    let opts = VocabOptions {
        bos: id("bos_token_id"),
        eos: id("eos_token_id"),
        unk: id("unknown_token_id"),
        pad: id("padding_token_id"),
        add_bos: b("add_bos_token"),
        add_eos: b("add_eos_token"),
        add_space_prefix: b("add_space_prefix"),
        ..Default::default()
    };
    let pre = d.get("pre").and_then(|x| x.as_str()).unwrap_or("");
    Tokenizer::from_vocab(Vocab::new(kind, tokens, scores, types, merges, pre, opts).unwrap())
}

/// Tokenizer of a GGUF file (path), or None (SKIP) if absent.
pub fn load(name: &str) -> Option<Tokenizer> {
    let p = require(PathBuf::from(format!("/tmp/tok/{name}.json")))?;
    Some(load_json(&p))
}
