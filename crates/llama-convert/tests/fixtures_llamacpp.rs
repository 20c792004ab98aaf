//! Every checkpoint in the shared fixtures converts to f32 and f16 with tensors byte-identical
//! to llama.cpp's conversion of the Hugging Face form of the same model (recorded per tensor as
//! type, shape and sha256 in llama.cpp-conversions.json), and with llama.cpp's metadata.

mod common;

use std::path::Path;

use common::*;
use llama_convert::{convert, ConvertOptions, OutType};
use llama_core::gguf::{GgufFile, Value};
use serde_json::Value as Json;

/// Fixture → the llama.cpp conversion of the same weights (Meta and HF forms of one model).
const CASES: &[(&str, &str)] = &[
    ("hf-llama1", "hf-llama1"),
    ("hf-llama2-gqa-sharded", "hf-llama2-gqa-sharded"),
    ("meta-llama1/tiny", "hf-llama1"),
    ("meta-llama1-mp2/tiny", "hf-llama1"),
    ("meta-llama2-gqa/tiny", "hf-llama2-gqa-sharded"),
];

fn run(fx: &Path, src: &str, outtype: OutType) -> (common::tempdir::Dir, GgufFile) {
    let tmp = common::tempdir::Dir::new();
    let out = tmp.path.join("out.gguf");
    let got = convert(&ConvertOptions {
        path: fx.join(src),
        outtype,
        out: Some(out.clone()),
        vocab_dir: None,
        progress: false,
    })
    .unwrap_or_else(|e| panic!("{src}: {e}"));
    assert_eq!(got, out);
    let f = GgufFile::open(&out).unwrap();
    (tmp, f)
}

fn check_tensors(f: &GgufFile, want: &Json, what: &str) {
    let want = want.as_object().unwrap();
    assert_eq!(f.tensors().len(), want.len(), "{what}: tensor count");
    for t in f.tensors() {
        let w = want.get(&t.name).unwrap_or_else(|| panic!("{what}: unexpected tensor {}", t.name));
        assert_eq!(t.ggml_type.name().to_uppercase(), w[0].as_str().unwrap(), "{what}: {} type", t.name);
        let shape: Vec<u64> = w[1].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(t.dims, shape, "{what}: {} shape", t.name);
        assert_eq!(sha256_hex(f.tensor_data(t)), w[2].as_str().unwrap(), "{what}: {} bytes", t.name);
    }
}

/// Our value in the form the fixture recorded it (arrays as length + sha256 of `json.dumps`).
fn as_recorded(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.to_str().unwrap().to_string()),
        Value::Bool(b) => Json::Bool(*b),
        Value::F32(x) => serde_json::json!(*x as f64),
        Value::Array(_, items) => {
            let dumped = py_json_list(items.iter().map(|i| match i {
                Value::String(s) => py_json_str(s.to_str().unwrap()),
                Value::F32(x) => py_float(*x as f64),
                other => other.as_int().unwrap().to_string(),
            }));
            serde_json::json!({"array_len": items.len(), "sha256_of_json": sha256_hex(dumped.as_bytes())})
        }
        other => serde_json::json!(other.as_int().unwrap() as i64),
    }
}

/// Compares every key; returns the keys that differ (ours vs theirs), in file order.
fn kv_diff(f: &GgufFile, want: &Json) -> Vec<String> {
    let want = want.as_object().unwrap();
    let mut diff = Vec::new();
    for (k, v) in f.metadata() {
        match want.get(k) {
            None => diff.push(format!("+{k}")),
            Some(w) if *w != as_recorded(v) => diff.push(format!("~{k}")),
            _ => {}
        }
    }
    for k in want.keys() {
        if f.get(k).is_none() {
            diff.push(format!("-{k}"));
        }
    }
    diff
}

#[test]
fn fixtures_match_llamacpp_f32_f16() {
    let Some(fx) = fixtures() else { return };
    let conv = conversions(&fx);
    for &(src, reference) in CASES {
        for (ot, suffix) in [(OutType::F32, "f32"), (OutType::F16, "f16")] {
            let key = format!("{reference}-{suffix}.gguf");
            let (_tmp, f) = run(&fx, src, ot);
            let what = format!("{src} → {suffix} vs llama.cpp {key}");
            check_tensors(&f, &conv[&key]["tensors"], &what);
            let diff = kv_diff(&f, &conv[&key]["kv"]);
            // The HF forms must reproduce llama.cpp's metadata exactly; the Meta forms differ only
            // where the checkpoint says something else: folder name, the context length guessed
            // for Llama-2, no head_dim in params.json, and unk id taken from tokenizer.model.
            let allowed: &[&str] = match src {
                s if s.starts_with("hf-") => &[],
                "meta-llama2-gqa/tiny" => &[
                    "~general.name",
                    "~llama.context_length",
                    "+tokenizer.ggml.unknown_token_id",
                    "-llama.attention.key_length",
                    "-llama.attention.value_length",
                ],
                _ => &[
                    "~general.name",
                    "+tokenizer.ggml.unknown_token_id",
                    "-llama.attention.key_length",
                    "-llama.attention.value_length",
                ],
            };
            let mut d = diff.clone();
            d.sort();
            let mut a: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            a.sort();
            assert_eq!(d, a, "{what}: metadata differences");
            if src.starts_with("meta-") {
                assert_eq!(f.get_str("general.name").unwrap(), Some("Tiny"));
                assert_eq!(f.get_u32("tokenizer.ggml.unknown_token_id").unwrap(), Some(0));
            }
        }
    }
}

#[test]
fn meta_and_hf_forms_give_identical_tensors_in_every_outtype() {
    let Some(fx) = fixtures() else { return };
    for (meta, hf) in [
        ("meta-llama1/tiny", "hf-llama1"),
        ("meta-llama1-mp2/tiny", "hf-llama1"),
        ("meta-llama2-gqa/tiny", "hf-llama2-gqa-sharded"),
    ] {
        for ot in [OutType::BF16, OutType::Q8_0] {
            let (_a, fm) = run(&fx, meta, ot);
            let (_b, fh) = run(&fx, hf, ot);
            assert_eq!(fm.tensors().len(), fh.tensors().len());
            for t in fh.tensors() {
                let m = fm.tensor(&t.name).unwrap_or_else(|| panic!("{meta}: no {}", t.name));
                assert_eq!((m.ggml_type, &m.dims), (t.ggml_type, &t.dims), "{meta} {ot:?} {}", t.name);
                assert!(fm.tensor_data(m) == fh.tensor_data(t), "{meta} vs {hf} {ot:?}: {} bytes differ", t.name);
            }
        }
    }
}
