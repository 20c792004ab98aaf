//! Prompts of /work/shared/golden/*.json were tokenized by llama.cpp (via llama-cpp-python,
//! add_bos = true, special = false); our ids must be identical. Also checks the llama-cpp-python
//! detokenize of the generated ids against the recorded `greedy_text`.

mod common;

use llama_core::tokenizer::Tokenizer;

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("token list").iter().map(|x| x.as_u64().expect("token id") as u32).collect()
}

fn check(tok: &Tokenizer, golden: &str) {
    let Some(p) = common::require(common::shared().join("golden").join(golden)) else { return };
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    assert_eq!(d["n_vocab"].as_u64().unwrap() as usize, tok.n_vocab(), "{golden}: n_vocab");
    let cases = d["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let prompt = c["prompt"].as_str().unwrap();
        let want = ids(&c["tokens"]);
        assert_eq!(tok.tokenize(prompt.as_bytes(), true, false), want, "{golden}: {prompt:?}");
        if let (Some(g), Some(text)) = (c.get("greedy"), c.get("greedy_text")) {
            let g = ids(g);
            let got = tok.detokenize(&g, false);
            assert_eq!(String::from_utf8_lossy(&got), text.as_str().unwrap(), "{golden}: greedy_text");
        }
    }
    eprintln!("{golden}: {} prompts exact", cases.len());
}

#[test]
fn qwen_golden() {
    let Some(tok) = common::load("qwen") else { return };
    check(&tok, "qwen2.5-coder-0.5b-q4_k_m.json");
}

#[test]
fn gemma_golden() {
    let Some(tok) = common::load("gemma") else { return };
    check(&tok, "gemma3-270m-q4_k_m.json");
}

#[test]
fn synth_golden() {
    let Some(tok) = common::load("synth") else { return };
    for g in ["synth-tiny-q4_0.json", "synth-1b-q4_0.json", "synth-1b-q8_0.json"] {
        check(&tok, g);
    }
}

