//! Special-token handling (llama.cpp `tokenizer_st_partition` + SPM prefix rule). Expected ids
//! are looked up by token text in the GGUF vocabulary, not produced by the tokenizer.

mod common;

use llama_core::tokenizer::{token_type, Tokenizer};

fn id(tok: &Tokenizer, text: &str) -> u32 {
    (0..tok.n_vocab() as u32)
        .find(|&i| tok.token_text(i) == Some(text.as_bytes()))
        .unwrap_or_else(|| panic!("no token {text:?}"))
}

#[test]
fn qwen_control_tokens_only_with_parse_special() {
    let Some(tok) = common::load("qwen") else { return };
    let (start, end) = (id(&tok, "<|im_start|>"), id(&tok, "<|im_end|>"));
    assert_eq!(tok.token_type(start), Some(token_type::CONTROL));
    let nl = id(&tok, "Ċ"); // byte-level "\n"
    let user = id(&tok, "user");
    let text = b"<|im_start|>user\n<|im_end|>";
    assert_eq!(tok.tokenize(text, false, true), vec![start, user, nl, end]);
    let plain = tok.tokenize(text, false, false);
    assert!(!plain.contains(&start) && !plain.contains(&end), "{plain:?}");
    assert_eq!(tok.detokenize(&plain, false), text, "unparsed specials stay text");
    assert!(tok.is_eog(end) && tok.is_eog(id(&tok, "<|endoftext|>")));
    assert!(!tok.add_bos());
    assert_eq!(tok.tokenize(b"hi", true, false), tok.tokenize(b"hi", false, false), "qwen adds no BOS");
    // Specials render only with special = true.
    assert_eq!(tok.token_to_piece(end, false), b"");
    assert_eq!(tok.token_to_piece(end, true), b"<|im_end|>");
}

#[test]
fn gemma_user_defined_newlines_always_split() {
    let Some(tok) = common::load("gemma") else { return };
    let (sot, nl, nl2) = (id(&tok, "<start_of_turn>"), id(&tok, "\n"), id(&tok, "\n\n"));
    assert_eq!(tok.token_type(nl), Some(token_type::USER_DEFINED));
    // add_space_prefix = false: no ▁ before "user" even after a special token.
    let user = id(&tok, "user");
    assert_eq!(tok.tokenize(b"<start_of_turn>user\n", false, true), vec![sot, user, nl]);
    // USER_DEFINED "\n\n" is carved out even without parse_special; the control token is not.
    let ids = tok.tokenize(b"a\n\nb", false, false);
    assert_eq!(ids, vec![id(&tok, "a"), nl2, id(&tok, "b")]);
    assert!(!tok.tokenize(b"<start_of_turn>", false, false).contains(&sot));
}

#[test]
fn spm_space_prefix_after_special_token() {
    let Some(tok) = common::load("llama-spm") else { return };
    let hello = id(&tok, "▁Hello");
    // llama.cpp prefixes a space to every raw fragment that follows a special token.
    assert_eq!(tok.tokenize(b"<s>Hello", false, true), vec![1, hello]);
    assert_eq!(tok.tokenize(b"Hello</s>Hello", true, true), vec![1, hello, 2, hello]);
    assert_eq!(tok.tokenize(b"", true, false), vec![1]);
    assert_eq!(tok.tokenize(b"", false, false), Vec::<u32>::new());
    assert_eq!(tok.detokenize(&[1, hello], false), b"Hello");
    assert_eq!(tok.detokenize(&[hello], false), b" Hello");
    assert_eq!(tok.detokenize(&[1, hello], true), b"<s> Hello");
    // llama_detokenize keeps the space when it removed a leading BOS (its remove_space = false).
    assert_eq!(tok.detokenize_llama(&[1, hello], true, false), b" Hello");
    assert_eq!(tok.detokenize_llama(&[hello], true, false), b"Hello");
}
