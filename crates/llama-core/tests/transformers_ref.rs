//! Forward pass against transformers: shared/fixtures/reference.json holds float32
//! LlamaForCausalLM logits for the tiny HF fixtures. hf_to_f32_gguf.py (gguf-py, not our
//! converter) writes them as all-F32 GGUF; with an F32 KV cache our last-position logits must be
//! within 1e-3 of transformers'. Skips with a message if python3+gguf or the fixtures are absent.

mod testdata;

use std::path::{Path, PathBuf};
use std::process::Command;

use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use serde_json::Value;

fn fixtures() -> PathBuf {
    testdata::fixtures_dir()
}

fn build_gguf(hf_dir: &Path, out: &Path) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_to_f32_gguf.py");
    match Command::new("python3").arg(&script).arg(hf_dir).arg(out).status() {
        Ok(s) if s.success() => true,
        other => {
            eprintln!("SKIP: could not run {} ({other:?}); needs python3 with gguf and numpy", script.display());
            false
        }
    }
}

fn check(fixture: &str) {
    let refpath = fixtures().join("reference.json");
    let hf_dir = fixtures().join(fixture);
    if !refpath.exists() || !hf_dir.exists() {
        eprintln!("SKIP {fixture}: fixtures not found under {}", fixtures().display());
        return;
    }
    let reference: Value = serde_json::from_slice(&std::fs::read(&refpath).unwrap()).unwrap();
    let key = reference["checkpoints"][fixture].as_str().unwrap();
    let out = std::env::temp_dir().join(format!("llama-core-test-{fixture}-{}.gguf", std::process::id()));
    if !build_gguf(&hf_dir, &out) {
        return;
    }
    let model = Model::load(&out, &ModelParams::default()).unwrap();
    let _ = std::fs::remove_file(&out);
    let mut worst = 0f32;
    for (ci, case) in reference["models"][key].as_array().unwrap().iter().enumerate() {
        let tokens: Vec<u32> = case["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        let want: Vec<f32> =
            case["last_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        // Odd cases in batches of 3 tokens: exercises the cache across batches.
        let n_batch = if ci % 2 == 1 { 3 } else { 64 };
        let params = ContextParams {
            n_ctx: 64,
            n_batch,
            n_threads: 2,
            kv_type: KvType::F32,
            type_v: None,
            flash_attn: false,
            logits_all: false,
            n_seq_max: 1,
            embeddings: false,
        };
        let mut ctx = Context::new(&model, params).unwrap();
        ctx.eval(&model, &tokens, 0).unwrap();
        let got = ctx.logits();
        assert_eq!(got.len(), want.len());
        let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{fixture} case {ci}: max |Δ| last logits = {max:.2e}");
        worst = worst.max(max);
    }
    assert!(worst <= 1e-3, "{fixture}: max |Δ| {worst} > 1e-3 vs transformers");
}

#[test]
fn transformers_hf_llama1() {
    check("hf-llama1");
}

#[test]
fn transformers_hf_llama2_gqa_sharded() {
    check("hf-llama2-gqa-sharded");
}
