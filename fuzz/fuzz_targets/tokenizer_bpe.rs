#![no_main]
//! Byte-level BPE tokenizers on arbitrary bytes: GPT-2 (gpt-2 pre-tokenizer) and, when the model
//! is available, Qwen2.5 (qwen2 pre-tokenizer, control tokens); the first byte picks one.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llama_core::tokenizer::Tokenizer;

#[path = "tok_common.rs"]
mod tok_common;

static TOKS: OnceLock<Vec<Tokenizer>> = OnceLock::new();

fn toks() -> &'static [Tokenizer] {
    TOKS.get_or_init(|| {
        let mut v = vec![tok_common::load("ggml-vocab-gpt-2.gguf").expect("ggml-vocab-gpt-2.gguf")];
        v.extend(tok_common::load("qwen2.5-coder-0.5b-q4_k_m.gguf"));
        v
    })
}

// Load in `init` so vocabulary loading is not charged to the first input's timeout.
fuzz_target!(init: { toks(); }, |data: &[u8]| {
    let toks = toks();
    let Some(&sel) = data.first() else { return };
    let tok = &toks[(sel >> 4) as usize % toks.len()];
    tok_common::check(tok, data);
});
