//! Perplexity against llama.cpp's llama-perplexity figure stored in the golden files
//! (`perplexity`: ctx 256, 4 chunks): gpl-3.txt tokenized without BOS, chunk i = tokens
//! [i*ctx, (i+1)*ctx) with its first token replaced by BOS when the model adds BOS, NLL averaged over
//! the predictions of tokens ctx/2+1 .. ctx-1 (from logits at ctx/2 .. ctx-2). Must be within 1 %,
//! or equal to the printed digits (6 decimals) where the logits are llama.cpp's bit for bit.
//!
//! Run: cargo test -p llama-core --test perplexity -- --ignored --nocapture

mod testdata;

use llama_core::gguf::GgufFile;
use llama_core::model::{Context, ContextParams, KvType, Model};
use llama_core::tokenizer::Tokenizer;
use serde_json::Value;
use testdata::{golden_dir, models_dir, repo_data};

fn perplexity(name: &str) -> Option<(f64, f64)> {
    let gpath = golden_dir().join(format!("{name}.json"));
    let mpath = models_dir().join(format!("{name}.gguf"));
    let text = repo_data().join("gpl-3.txt");
    if !gpath.exists() || !mpath.exists() || !text.exists() {
        eprintln!("SKIP {name}: need {}, {} and {}", gpath.display(), mpath.display(), text.display());
        return None;
    }
    let golden: Value = serde_json::from_slice(&std::fs::read(&gpath).unwrap()).unwrap();
    let g = &golden["perplexity"];
    let (n_ctx, n_chunks) = (g["ctx"].as_u64().unwrap() as usize, g["chunks"].as_u64().unwrap() as usize);
    let want = g["ppl"].as_f64().unwrap();

    let tok = Tokenizer::from_gguf(&GgufFile::open(&mpath).unwrap()).unwrap();
    let model = Model::load(&mpath, &Default::default()).unwrap();
    let tokens = tok.tokenize(&std::fs::read(&text).unwrap(), false, false);
    assert!(tokens.len() >= n_ctx * n_chunks, "gpl-3.txt gives only {} tokens", tokens.len());
    let params = ContextParams {
        n_ctx,
        n_batch: n_ctx,
        n_threads: 2,
        kv_type: KvType::F16,
        type_v: None,
        flash_attn: false,
        logits_all: true,
        n_seq_max: 1,
        embeddings: false,
    };
    let mut ctx = Context::new(&model, params).unwrap();
    let nv = model.n_vocab();
    let (mut nll, mut count) = (0f64, 0usize);
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if tok.add_bos() {
            chunk[0] = tok.bos().unwrap();
        }
        ctx.eval(&model, &chunk, 0).unwrap();
        let logits = ctx.logits();
        for j in n_ctx / 2..n_ctx - 1 {
            let row = &logits[j * nv..(j + 1) * nv];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            nll += lse - row[chunk[j + 1] as usize] as f64;
            count += 1;
        }
    }
    assert_eq!(count as u64, g["scored"].as_u64().unwrap());
    let ppl = (nll / count as f64).exp();
    eprintln!("{name}: perplexity {ppl:.4} (llama.cpp {want:.4}, {:+.2} %)", 100.0 * (ppl / want - 1.0));
    Some((ppl, want))
}

fn check(name: &str) {
    if let Some((ppl, want)) = perplexity(name) {
        assert!((ppl / want - 1.0).abs() <= 0.01, "{name}: perplexity {ppl} vs llama.cpp {want}");
    }
}

/// For models whose logits equal llama.cpp's bit for bit on this kernel table (the golden test):
/// the perplexity equals llama.cpp's to the digits `python -m llama perplexity` prints.
fn check_printed(name: &str) {
    if let Some((ppl, want)) = perplexity(name) {
        assert_eq!(format!("{ppl:.6}"), format!("{want:.6}"), "{name}: perplexity vs llama.cpp");
    }
}

#[test]
#[ignore = "slow; run with --ignored (figures in docs/notes/inference.md)"]
fn ppl_synth_tiny_q4_0() {
    check("synth-tiny-q4_0");
}

#[test]
#[ignore = "slow; run with --ignored (figures in docs/notes/inference.md)"]
fn ppl_qwen2_5_coder_0_5b() {
    check("qwen2.5-coder-0.5b-q4_k_m");
}

#[test]
#[ignore = "slow; run with --ignored (figures in docs/notes/inference.md)"]
fn ppl_gemma3_270m() {
    check("gemma3-270m-q4_k_m");
}

#[test]
#[ignore = "slow; run with --ignored (figures in docs/notes/inference.md)"]
fn ppl_synth_1b_q4_0() {
    check("synth-1b-q4_0");
}

#[test]
#[ignore = "slow; run with --ignored (figures in docs/notes/inference.md)"]
fn ppl_smollm2_135m() {
    check_printed("smollm2-135m-instruct-q4_1");
}
