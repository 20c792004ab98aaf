#![no_main]
//! SPM tokenizer (LLaMA vocabulary, llama.cpp's ggml-vocab-llama-spm.gguf) on arbitrary bytes.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llama_core::tokenizer::Tokenizer;

#[path = "tok_common.rs"]
mod tok_common;

static TOK: OnceLock<Tokenizer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let tok = TOK.get_or_init(|| tok_common::load("ggml-vocab-llama-spm.gguf").expect("ggml-vocab-llama-spm.gguf"));
    tok_common::check(tok, data);
});
