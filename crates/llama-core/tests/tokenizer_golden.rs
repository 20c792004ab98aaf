//! Prompts of tests/data/golden/*/*.json were tokenized by llama.cpp (via llama-cpp-python,
//! add_bos = true, special = false); our ids must be identical. Also checks the llama-cpp-python
//! detokenize of the generated ids against the recorded `greedy_text`.

mod common;

use llama_core::tokenizer::Tokenizer;

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("token list").iter().map(|x| x.as_u64().expect("token id") as u32).collect()
}

fn check(tok: &Tokenizer, golden: &str) {
    let Some(p) = common::require(common::any_golden(golden.trim_end_matches(".json")).unwrap_or_default()) else {
        return;
    };
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

#[test]
fn gemma_vocab_loads_fast() {
    let Some(p) = common::require(common::models_dir().join("gemma3-270m-q4_k_m.gguf")) else { return };
    let f = llama_core::gguf::GgufFile::open(&p).unwrap();
    let (c0, t0) = (common::thread_cpu_time(), std::time::Instant::now());
    let tok = Tokenizer::from_gguf(&f).unwrap();
    let wall = t0.elapsed();
    let cpu = match (c0, common::thread_cpu_time()) {
        (Some(a), Some(b)) => b - a,
        _ => wall,
    };
    eprintln!("gemma3 vocab ({} tokens) built in {cpu:?} CPU ({wall:?} wall)", tok.n_vocab());
    assert_eq!(tok.n_vocab(), 262144);
    assert!(!tok.add_space_prefix());
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    assert!(tok.is_eog(1) && tok.is_eog(106), "<eos> and <end_of_turn> end generation");
    assert!(cpu < std::time::Duration::from_millis(200), "gemma3 vocab took {cpu:?} CPU");
}
