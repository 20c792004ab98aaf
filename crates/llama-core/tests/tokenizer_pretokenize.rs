//! Our fancy-regex pre-tokenizers against the Python `regex` module running llama.cpp's regex
//! lists on generated lines (tests/tools/pretok_reference.py). SKIPs without python3 + regex.

use std::process::Command;

use llama_core::tokenizer::{pre_tokenize, PreType};

const N_LINES: usize = 3000;

fn reference(pre: &str) -> Option<Vec<(String, Vec<String>)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/pretok_reference.py");
    let out = match Command::new("python3").args([script, pre, &N_LINES.to_string(), "99"]).output() {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            eprintln!("SKIP: pretok_reference.py failed: {}", String::from_utf8_lossy(&o.stderr));
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
                let words = c["words"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect();
                (c["text"].as_str().unwrap().to_string(), words)
            })
            .collect(),
    )
}

#[test]
fn pre_tokenizers_match_python_regex() {
    for name in ["default", "gpt-2", "llama3", "qwen2", "qwen35", "gpt-4o", "starcoder", "falcon"] {
        let Some(cases) = reference(name) else { return };
        let pre = PreType::from_name(name).unwrap();
        let mut bad = 0;
        for (text, want) in &cases {
            let got: Vec<String> =
                pre_tokenize(pre, text.as_bytes()).into_iter().map(|w| String::from_utf8(w).unwrap()).collect();
            if &got != want {
                bad += 1;
                if bad <= 5 {
                    eprintln!("{name}: {text:?}\n  python regex {want:?}\n  ours         {got:?}");
                }
            }
        }
        eprintln!("{name}: {}/{} lines split identically", cases.len() - bad, cases.len());
        assert_eq!(bad, 0, "{name}: {bad} lines differ");
    }
}
