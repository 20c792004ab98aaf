//! End to end: every fixture checkpoint converted to f32 and run by llama_core's forward pass
//! reproduces the logits transformers computed in float32 (reference.json), max |Δ| ≤ 1e-3.

mod common;

use llama_convert::{convert, ConvertOptions, OutType};
use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use serde_json::Value as Json;

#[test]
fn converted_f32_reproduces_reference_logits() {
    let Some(fx) = common::fixtures() else { return };
    let reference: Json = serde_json::from_slice(&std::fs::read(fx.join("reference.json")).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("llama-convert-logits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut report = Vec::new();
    for (ckpt, model_key) in reference["checkpoints"].as_object().unwrap() {
        let src = if ckpt.starts_with("meta-") { fx.join(ckpt).join("tiny") } else { fx.join(ckpt) };
        let out = dir.join(format!("{ckpt}.gguf"));
        convert(&ConvertOptions {
            path: src,
            outtype: OutType::F32,
            out: Some(out.clone()),
            vocab_dir: None,
            progress: false,
        })
        .unwrap_or_else(|e| panic!("{ckpt}: {e}"));
        let model = Model::load(&out, &ModelParams::default()).unwrap();
        let mut max_d = 0f32;
        for case in reference["models"][model_key.as_str().unwrap()].as_array().unwrap() {
            let tokens: Vec<u32> =
                case["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
            let p = ContextParams {
                n_ctx: 128,
                n_batch: 64,
                n_threads: 2,
                kv_type: KvType::F32,
                type_v: None,
                flash_attn: false,
                logits_all: true,
                n_seq_max: 1,
                embeddings: false,
            };
            let mut ctx = Context::new(&model, p).unwrap();
            ctx.eval(&model, &tokens, 0).unwrap();
            let logits = ctx.logits(); // [n_tokens][n_vocab]
            let n_vocab = model.n_vocab();
            assert_eq!(logits.len(), tokens.len() * n_vocab);
            // Last position: the full row (the reference rounds to 6 decimals).
            let last = &logits[(tokens.len() - 1) * n_vocab..];
            for (i, w) in case["last_logits"].as_array().unwrap().iter().enumerate() {
                max_d = max_d.max((last[i] - w.as_f64().unwrap() as f32).abs());
            }
            // Every position: the reference's top-10 ids and their logits.
            for (pos, top) in case["top10"].as_array().unwrap().iter().enumerate() {
                for pair in top.as_array().unwrap() {
                    let id = pair[0].as_u64().unwrap() as usize;
                    let w = pair[1].as_f64().unwrap() as f32;
                    max_d = max_d.max((logits[pos * n_vocab + id] - w).abs());
                }
            }
        }
        report.push(format!("{ckpt}: max |Δ| = {max_d:.2e}"));
        assert!(max_d <= 1e-3, "{ckpt}: max |Δlogit| {max_d} > 1e-3");
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{}", report.join("\n"));
}
