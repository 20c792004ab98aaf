#![no_main]
//! SPM tokenizer (LLaMA vocabulary, llama.cpp's ggml-vocab-llama-spm.gguf) on arbitrary bytes.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llama_core::tokenizer::Tokenizer;

#[path = "tok_common.rs"]
mod tok_common;

static TOK: OnceLock<Tokenizer> = OnceLock::new();

fn tok() -> &'static Tokenizer {
    TOK.get_or_init(|| tok_common::load("ggml-vocab-llama-spm.gguf").expect("ggml-vocab-llama-spm.gguf"))
}

// Load in `init` so vocabulary loading is not charged to the first input's timeout.
fuzz_target!(init: { tok(); }, |data: &[u8]| {
    tok_common::check(tok(), data);
});
