//! llama.cpp's own tokenizer test vectors (test-tokenizer-0): `.inp` holds inputs separated by
//! "\n__ggml_vocab_test__\n", `.out` one line of ids per input, tokenized with
//! add_special = false, parse_special = false. Must match 100%.

mod common;

use llama_core::tokenizer::Tokenizer;

fn check(tok: &Tokenizer, vectors: &str) {
    let dir = common::vocab_dir();
    let Some(inp) = common::require(dir.join(format!("{vectors}.inp"))) else { return };
    let out = std::fs::read_to_string(dir.join(format!("{vectors}.out"))).unwrap();
    let inp = std::fs::read(inp).unwrap();
    let sep = b"\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = &inp[..];
    while let Some(p) = rest.windows(sep.len()).position(|w| w == sep) {
        inputs.push(&rest[..p]);
        rest = &rest[p + sep.len()..];
    }
    let expected: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), expected.len(), "{vectors}: input/output count");
    let mut bad = 0;
    for (text, want) in inputs.iter().zip(&expected) {
        let got = tok.tokenize(text, false, false);
        if &got != want {
            bad += 1;
            eprintln!("{vectors}: {:?}\n  want {want:?}\n  got  {got:?}", String::from_utf8_lossy(text));
        }
    }
    assert_eq!(bad, 0, "{vectors}: {bad}/{} mismatches", inputs.len());
    eprintln!("{vectors}: {} inputs exact", inputs.len());
}

#[test]
fn llama_spm_vectors() {
    let Some(tok) = common::load("llama-spm") else { return };
    check(&tok, "ggml-vocab-llama-spm.gguf");
}

#[test]
fn gpt2_vectors() {
    let Some(tok) = common::load("gpt-2") else { return };
    check(&tok, "ggml-vocab-gpt-2.gguf");
}

#[test]
fn qwen2_vectors() {
    let Some(tok) = common::load("qwen") else { return };
    check(&tok, "ggml-vocab-qwen2.gguf");
}

#[test]
fn bert_bge_vectors() {
    let Some(tok) = common::load("bert-bge") else { return };
    check(&tok, "ggml-vocab-bert-bge.gguf");
}
