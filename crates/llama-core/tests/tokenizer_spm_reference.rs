//! Our SPM tokenizer against PyPI sentencepiece on generated lines (tests/tools/spm_reference.py),
//! loaded both from the bare tokenizer.model and from the LLaMA vocabulary inside a GGUF.
//! Requires python3 with sentencepiece; SKIPs otherwise.

mod common;

use std::process::Command;

use llama_core::tokenizer::Tokenizer;

const N_LINES: usize = 3000;

fn reference(model: &std::path::Path) -> Option<Vec<(String, Vec<u32>)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/spm_reference.py");
    let out = Command::new("python3").args([script, model.to_str().unwrap(), &N_LINES.to_string(), "1234"]).output();
    let out = match out {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            eprintln!("SKIP: spm_reference.py failed: {}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("SKIP: python3 not runnable: {e}");
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    Some(
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let ids = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
                (c["text"].as_str().unwrap().to_string(), ids)
            })
            .collect(),
    )
}

fn compare(tok: &Tokenizer, cases: &[(String, Vec<u32>)], what: &str) {
    let mut bad = 0;
    for (text, want) in cases {
        let got = tok.tokenize(text.as_bytes(), true, false);
        if &got != want {
            bad += 1;
            if bad <= 10 {
                eprintln!("{what}: {text:?}\n  sentencepiece {want:?}\n  ours          {got:?}");
            }
        }
    }
    eprintln!("{what}: {}/{} lines identical to sentencepiece", cases.len() - bad, cases.len());
    assert_eq!(bad, 0, "{what}: {bad} lines differ from sentencepiece");
}

#[test]
fn spm_model_matches_sentencepiece() {
    let Some(model) = common::require(common::vocab_dir().join("llama-tokenizer.model")) else { return };
    let Some(cases) = reference(&model) else { return };
    assert_eq!(cases.len(), N_LINES);
    let tok = Tokenizer::from_spm_model(&std::fs::read(&model).unwrap()).unwrap();
    compare(&tok, &cases, "tokenizer.model");
    let Some(tok) = common::load("synth") else { return };
    compare(&tok, &cases, "synth-tiny GGUF vocab");
}
