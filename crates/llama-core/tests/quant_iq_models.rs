//! IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 models end to end: llama.cpp's own quantizer (through
//! llama-cpp-python, tests/py/iq_models_ref.py) requantizes the synthetic tiny model with every
//! weight in the type, llama.cpp evaluates a prompt on it, and we load the same file and compare
//! the logits of every position. Skips when the model or llama-cpp-python is absent.

mod quant_common;

use std::process::Command;

use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use llama_core::quant::GgmlType;
use quant_common::{models_dir, read_f32, temp_dir};

const PROMPT: [u32; 9] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263];

/// Our logits for PROMPT on `path` and llama.cpp's, or None when skipped.
fn compare(t: GgmlType, ftype: u32) -> Option<()> {
    let src = models_dir().join("synth-tiny-q4_0.gguf");
    if !src.exists() {
        eprintln!("SKIP: {} not found", src.display());
        return None;
    }
    let dir = temp_dir(&format!("iqmodel-{}", t.name()));
    let out = dir.join(format!("synth-tiny-{}.gguf", t.name()));
    let toks = PROMPT.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/iq_models_ref.py");
    let st = Command::new("python3")
        .arg(script)
        .args(["model", src.to_str().unwrap(), out.to_str().unwrap(), &ftype.to_string(), &toks])
        .status()
        .ok()?;
    match st.code() {
        Some(0) => {}
        Some(3) => {
            eprintln!("SKIP: llama-cpp-python is not available");
            return None;
        }
        _ => panic!("reference script failed: {st:?}"),
    }
    let m = Model::load(&out, &ModelParams::default()).unwrap();
    for (n_tok, ext) in [(PROMPT.len(), "logits.f32"), (5, "logits5.f32")] {
        let want = read_f32(&dir.join(format!("synth-tiny-{}.gguf.{ext}", t.name()))); // [n_tok][n_vocab]
        let params = ContextParams {
            n_ctx: 64,
            n_batch: 64,
            n_threads: 2,
            kv_type: KvType::F16,
            type_v: None,
            flash_attn: false,
            logits_all: true,
            n_seq_max: 1,
            embeddings: false,
        };
        let mut ctx = Context::new(&m, params).unwrap();
        ctx.eval(&m, &PROMPT[..n_tok], 0).unwrap();
        let got = ctx.logits();
        assert_eq!(got.len(), want.len(), "{t}: logits shape");
        let n_vocab = got.len() / n_tok;
        let (mut max_d, mut max_abs, mut same) = (0f32, 0f32, 0usize);
        for (g, w) in got.iter().zip(&want) {
            max_d = max_d.max((g - w).abs());
            max_abs = max_abs.max(w.abs());
            same += (g.to_bits() == w.to_bits()) as usize;
        }
        let argmax = |r: &[f32]| r.iter().enumerate().fold(0, |b, (i, v)| if *v > r[b] { i } else { b });
        for (p, (g, w)) in got.chunks_exact(n_vocab).zip(want.chunks_exact(n_vocab)).enumerate() {
            assert_eq!(argmax(g), argmax(w), "{t} {n_tok} tokens: position {p} argmax differs from llama.cpp");
        }
        eprintln!(
            "{t}, {n_tok} tokens: {same}/{} logits bit-identical to llama.cpp, max |Δ| {max_d:e} (max |logit| {max_abs:e})",
            got.len()
        );
        // Float sums in other orders (attention, norms) only: a wrong level, scale or trit is far larger.
        assert!(max_d <= 1e-3 * max_abs.max(1.0), "{t} {n_tok} tokens: max |Δ| {max_d} vs llama.cpp");
    }
    std::fs::remove_dir_all(&dir).ok();
    Some(())
}

#[test]
fn iq4_nl_model_matches_llama_cpp() {
    compare(GgmlType::IQ4_NL, 25);
}

#[test]
fn iq4_xs_model_matches_llama_cpp() {
    compare(GgmlType::IQ4_XS, 30);
}

#[test]
fn tq1_0_model_matches_llama_cpp() {
    compare(GgmlType::TQ1_0, 36);
}

#[test]
fn tq2_0_model_matches_llama_cpp() {
    compare(GgmlType::TQ2_0, 37);
}
