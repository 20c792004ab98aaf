//! The grid i-quants end to end: synth-tiny (LLaMA-shaped, LLaMA vocabulary) with every weight
//! matrix (token embeddings included) made IQ2_XXS … IQ1_M by llama.cpp's own quantizer
//! (`ggml_quantize_chunk`, all-ones importance matrix; tests/py/llama_cpp_ref.py grid-iq-model),
//! then our logits against llama-cpp-python's on that same file: the same greedy token at every
//! position, mean |Δlogit| ≤ 1e-3 · max |logit| and max |Δlogit| ≤ 1e-2 · max |logit|; on x86_64
//! with the best kernel table (the summation orders of llama-cpp-python's native x86 build: its
//! `vec_dot` for single tokens, its tiled GEMM for this 9-token batch) every logit bit-identical.
//! Skips when llama-cpp-python, gguf-py or the
//! model is absent. Three types by default (one per bit width), all seven with LLAMA_TEST_FULL=1.

mod testdata;

use std::path::Path;
use std::process::Command;

use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use llama_core::quant::GgmlType;

const PROMPT: [u32; 9] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263];

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

#[test]
fn grid_iq_models_match_llama_cpp() {
    let src = testdata::models_dir().join("synth-tiny-q4_0.gguf");
    if !src.exists() {
        eprintln!("SKIP: {} not found", src.display());
        return;
    }
    use GgmlType::*;
    let types: &[GgmlType] = if testdata::full() {
        &[IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M]
    } else {
        &[IQ2_XXS, IQ3_S, IQ1_M]
    };
    let dir = std::env::temp_dir().join(format!("llama-grid-iq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/llama_cpp_ref.py");
    let tokens = PROMPT.map(|t| t.to_string()).join(",");
    for &t in types {
        let (gguf, logits) = (dir.join(format!("{t}.gguf")), dir.join(format!("{t}.logits.f32")));
        let st = Command::new("python3")
            .arg(&script)
            .args(["grid-iq-model", src.to_str().unwrap(), gguf.to_str().unwrap(), &t.id().to_string(), &tokens])
            .arg(&logits)
            .status()
            .unwrap();
        if st.code() == Some(3) {
            eprintln!("SKIP: llama-cpp-python or gguf-py is not available");
            return;
        }
        assert!(st.success(), "reference script failed for {t}: {st:?}");
        let want = read_f32(&logits); // [n_tokens][n_vocab]
        let model = Model::load(&gguf, &ModelParams::default()).unwrap();
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
        let mut ctx = Context::new(&model, params).unwrap();
        ctx.eval(&model, &PROMPT, 0).unwrap();
        let got = ctx.logits();
        assert_eq!(got.len(), want.len(), "{t}: logits shape");
        let nv = got.len() / PROMPT.len();
        let amax = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let mean_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / got.len() as f64;
        let top1 = (0..PROMPT.len()).filter(|&i| argmax(&got[i * nv..][..nv]) == argmax(&want[i * nv..][..nv])).count();
        eprintln!(
            "{t}: max |Δlogit| {max_diff:.2e}, mean {mean_diff:.2e} (max |logit| {amax:.2}), top-1 {top1}/{}",
            PROMPT.len()
        );
        assert!(got.iter().all(|v| v.is_finite()), "{t}: non-finite logits");
        assert!(max_diff <= 1e-2 * amax.max(1.0), "{t}: max |Δlogit| {max_diff} vs llama.cpp");
        assert!(mean_diff <= 1e-3 * amax.max(1.0) as f64, "{t}: mean |Δlogit| {mean_diff} vs llama.cpp");
        assert_eq!(top1, PROMPT.len(), "{t}: greedy token differs from llama.cpp's");
        if cfg!(target_arch = "x86_64") && std::env::var("LLAMA_ISA").map_or(true, |v| v.is_empty()) {
            let same = got.iter().zip(&want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
            assert_eq!(same, got.len(), "{t}: logits bit-identical to llama.cpp's (max |Δ| {max_diff:e})");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
