//! WPM (BERT WordPiece) against llama.cpp: ids of varied texts (languages, accents, CJK, emoji,
//! punctuation, numbers, control characters, long words, special-token texts, invalid UTF-8) with
//! add_special/parse_special 00/01/10/11, and their detokenization (llama-cpp-python's `detokenize`,
//! llama.cpp's `llama_detokenize` with its clean-up of spaces), as llama-cpp-python gives them
//! (`Llama(path, vocab_only=True)`), recorded by tools/wpm_reference.py in
//! tests/data/vocab/llamacpp-wpm.json. Vocabularies: llama.cpp's ggml-vocab-bert-bge.gguf
//! (committed) and its conversion of all-MiniLM-L6-v2 (`$LLAMA_MINILM_GGUF`, SKIP when absent;
//! checked by sha256).

mod common;

use llama_core::gguf::GgufFile;
use llama_core::tokenizer::Tokenizer;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn check(name: &str, path: &std::path::Path, want: &Json) {
    let bytes = std::fs::read(path).unwrap();
    let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(sha, want["gguf_sha256"].as_str().unwrap(), "{name}: not the GGUF the reference was made on");
    let f = GgufFile::open(path).unwrap();
    let tok = Tokenizer::from_gguf(&f).unwrap();
    let mut bad = 0;
    let cases = want["cases"].as_array().unwrap();
    for c in cases {
        let raw = common::json_bytes(&c["text"]);
        let t = String::from_utf8_lossy(&raw);
        // Hangul syllables: llama.cpp keeps only their leading consonant, we decompose them as the
        // model's own tokenizer does (tokenizer/wpm.rs `decompose`; tests/test_wpm_tokenizer.py
        // checks those texts against Hugging Face's)
        let hangul = t.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c));
        for (key, add, sp) in [("00", false, false), ("01", false, true), ("10", true, false), ("11", true, true)] {
            if hangul {
                break;
            }
            let got = tok.tokenize(&raw, add, sp);
            if got != ids(&c[key]) {
                bad += 1;
                eprintln!("{name} {key} {t:?}\n  want {:?}\n  got  {got:?}", ids(&c[key]));
            }
        }
        let ids11 = ids(&c["11"]);
        for (key, remove, unparse) in
            [("00", false, false), ("01", false, true), ("10", true, false), ("11", true, true)]
        {
            let got = tok.detokenize_llama(&ids11, remove, unparse);
            let want = common::json_bytes(&c["llama_detokenize"][key]);
            if got != want {
                bad += 1;
                eprintln!(
                    "{name} llama_detokenize {key} {t:?}\n  want {:?}\n  got  {:?}",
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                );
            }
        }
        for (i, special) in [false, true].into_iter().enumerate() {
            let got = tok.detokenize(&ids11, special);
            let want = common::json_bytes(&c["detok"][i]);
            if got != want {
                bad += 1;
                eprintln!(
                    "{name} detokenize(special={special}) {t:?}\n  want {:?}\n  got  {:?}",
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }
    assert_eq!(bad, 0, "{name}: {bad} mismatches");
    eprintln!("{name}: {} texts x 4 flag pairs + detokenize exact", cases.len());
}

fn reference() -> Json {
    let p = common::vocab_dir().join("llamacpp-wpm.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn bert_bge_as_llamacpp() {
    let r = reference();
    let Some(p) = common::require(common::vocab_dir().join("ggml-vocab-bert-bge.gguf")) else { return };
    check("ggml-vocab-bert-bge", &p, &r["ggml-vocab-bert-bge"]);
}

#[test]
fn minilm_as_llamacpp() {
    let r = reference();
    let Some(p) = std::env::var_os("LLAMA_MINILM_GGUF").map(std::path::PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("SKIP: $LLAMA_MINILM_GGUF (llama.cpp's f16 conversion of all-MiniLM-L6-v2) not set");
        return;
    };
    check("minilm-lcpp-f16", &p, &r["minilm-lcpp-f16"]);
}
