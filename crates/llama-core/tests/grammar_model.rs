//! End to end on qwen2.5-coder-0.5b-q4_k_m: generation with the grammar mask applied, greedy and
//! with a seeded temperature sampler, for the schemas in tests/data/grammar_e2e_schemas.json, the
//! json_object mode, llama.cpp's arithmetic grammar and a regex. Every output must end by EOG
//! (the grammar allowing it) within the token budget and parse as JSON here; the outputs are
//! written to `$GRAMMAR_E2E_OUT` (default target/grammar_e2e.jsonl) for the independent check in
//! tests/test_grammar_e2e.py (Python `jsonschema` + `FormatChecker`, `ast`, `re`).
//! Skips if the model is absent. Also the `#[ignore]` mask-time measurement.

mod testdata;

use std::time::Instant;

use llama_core::grammar::{Grammar, Matcher, TokEnv};
use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use llama_core::tokenizer::Tokenizer;
use serde_json::{json, Value};

const MAX_NEW: usize = 400;

fn model() -> Option<Model> {
    let p = testdata::models_dir().join("qwen2.5-coder-0.5b-q4_k_m.gguf");
    if !p.exists() {
        eprintln!("SKIP: {} not found", p.display());
        return None;
    }
    Some(Model::load(&p, &ModelParams::default()).unwrap())
}

/// xorshift64*: the seeded sampler's randomness (written here, independent of the core sampler).
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Sampling {
    Greedy,
    Temp { t: f32, seed: u64 },
}

fn sample(logits: &[f32], s: &Sampling, rng: &mut Rng) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    match s {
        Sampling::Greedy => argmax(),
        Sampling::Temp { t, .. } => {
            let max = logits[argmax() as usize];
            let w: Vec<f64> = logits.iter().map(|&l| (((l - max) / t) as f64).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut r = rng.next_f64() * total;
            for (i, &x) in w.iter().enumerate() {
                if x > 0.0 {
                    if r < x {
                        return i as u32;
                    }
                    r -= x;
                }
            }
            argmax()
        }
    }
}

struct Gen {
    text: String,
    ended: bool,
    n_tokens: usize,
}

/// Generate under the grammar until an EOG token (which the mask allows only where the grammar
/// may end) or MAX_NEW tokens.
fn generate(m: &Model, tok: &Tokenizer, env: &TokEnv, g: &Grammar, prompt: &str, s: &Sampling, max_new: usize) -> Gen {
    let mut ctx = Context::new(
        m,
        ContextParams {
            n_ctx: 1024,
            n_batch: 256,
            n_threads: 2,
            kv_type: KvType::F16,
            type_v: None,
            flash_attn: false,
            logits_all: false,
            n_seq_max: 1,
            embeddings: false,
        },
    )
    .unwrap();
    let ids = tok.tokenize(prompt.as_bytes(), false, true);
    ctx.eval(m, &ids, 0).unwrap();
    let mut matcher = Matcher::new(g, env).unwrap();
    let mut rng = Rng(match s {
        Sampling::Temp { seed, .. } => seed.wrapping_mul(0x9E3779B97F4A7C15) | 1,
        Sampling::Greedy => 1,
    });
    let mut out = Vec::new();
    for (n_past, step) in (ids.len()..).zip(0..max_new) {
        let mut logits = ctx.logits().to_vec();
        matcher.mask_logits(&mut logits).unwrap();
        let t = sample(&logits, s, &mut rng);
        assert!(logits[t as usize].is_finite(), "sampled a masked token");
        matcher.accept(t).unwrap();
        if tok.is_eog(t) {
            assert!(matcher.is_stopped() || matcher.is_accepting());
            return Gen {
                text: String::from_utf8_lossy(&tok.detokenize(&out, false)).into_owned(),
                ended: true,
                n_tokens: step,
            };
        }
        out.push(t);
        ctx.eval(m, &[t], n_past).unwrap();
    }
    Gen { text: String::from_utf8_lossy(&tok.detokenize(&out, false)).into_owned(), ended: false, n_tokens: max_new }
}

fn chat(user: &str) -> String {
    format!("<|im_start|>system\nYou are a helpful assistant. Answer in JSON.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

fn out_path() -> std::path::PathBuf {
    match std::env::var_os("GRAMMAR_E2E_OUT") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/grammar_e2e.jsonl"),
    }
}

#[test]
fn constrained_generation_end_to_end() {
    let Some(m) = model() else { return };
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let env = TokEnv::new(&tok).unwrap();
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/grammar_e2e_schemas.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 20);
    let modes = [("greedy", Sampling::Greedy), ("t0.8-s1", Sampling::Temp { t: 0.8, seed: 1 })];
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for c in &cases {
        let g = Grammar::from_json_schema(&c["schema"]).unwrap_or_else(|e| panic!("{}: {e}", c["name"]));
        let prompt = chat(&format!("{} Use this JSON schema: {}", c["prompt"].as_str().unwrap(), c["schema"]));
        for (mode, s) in &modes {
            let t0 = Instant::now();
            let r = generate(&m, &tok, &env, &g, &prompt, s, MAX_NEW);
            eprintln!("{} [{mode}] {} tokens {:.1}s: {}", c["name"], r.n_tokens, t0.elapsed().as_secs_f32(), r.text);
            if !r.ended || serde_json::from_str::<Value>(&r.text).is_err() {
                failures.push(format!("{} [{mode}] ended={} {:?}", c["name"], r.ended, r.text));
            }
            records.push(json!({"kind": "schema", "name": c["name"], "mode": mode, "schema": c["schema"], "text": r.text, "ended": r.ended}));
        }
    }
    // json_object mode: any JSON object.
    let g = Grammar::json_object();
    for (mode, s) in &modes {
        let r = generate(&m, &tok, &env, &g, &chat("Describe a cat as a JSON object."), s, MAX_NEW);
        eprintln!("json_object [{mode}]: {}", r.text);
        if !r.ended || !serde_json::from_str::<Value>(&r.text).is_ok_and(|v| v.is_object()) {
            failures.push(format!("json_object [{mode}] {:?}", r.text));
        }
        records.push(json!({"kind": "json_object", "mode": mode, "text": r.text, "ended": r.ended}));
    }
    // llama.cpp's arithmetic grammar (checked with Python's ast) and a regex.
    let arith = std::fs::read_to_string(testdata::repo_data().join("grammars/arithmetic.gbnf")).unwrap();
    let g = Grammar::from_gbnf(&arith, "root").unwrap();
    let prompt = "<|im_start|>user\nWrite two lines of arithmetic like `x=1+2`.<|im_end|>\n<|im_start|>assistant\n";
    for (mode, s) in &modes {
        // `root ::= (...)+` never has to end: the model may go on; the lines it wrote are checked.
        let r = generate(&m, &tok, &env, &g, prompt, s, 96);
        eprintln!("arithmetic [{mode}] {} tokens: {:?}", r.n_tokens, r.text);
        records.push(json!({"kind": "arithmetic", "mode": mode, "text": r.text, "ended": r.ended}));
    }
    let rx = r"[A-Z][a-z]{2,8} (19|20)[0-9]{2}";
    let g = Grammar::from_regex(rx).unwrap();
    for (mode, s) in &modes {
        let r = generate(&m, &tok, &env, &g, &chat("Name a month and a year."), s, MAX_NEW);
        eprintln!("regex [{mode}]: {:?}", r.text);
        if !r.ended {
            failures.push(format!("regex [{mode}] did not end: {:?}", r.text));
        }
        records.push(json!({"kind": "regex", "pattern": rx, "mode": mode, "text": r.text, "ended": r.ended}));
    }
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(out_path(), body).unwrap();
    eprintln!("outputs written to {}", out_path().display());
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Mask time per token on the Qwen vocabulary (151k): p50/p99 over a JSON-schema generation and
/// over json.gbnf. Rough on a shared machine. `cargo test --release -p llama-core --test
/// grammar_model mask_time -- --ignored --nocapture`
#[test]
#[ignore]
fn mask_time() {
    let Some(m) = model() else { return };
    let tok = Tokenizer::from_gguf(m.gguf()).unwrap();
    let t0 = Instant::now();
    let env = TokEnv::new(&tok).unwrap();
    eprintln!("TokEnv::new (trie + slicer over {} tokens): {:.0} ms", tok.n_vocab(), t0.elapsed().as_secs_f64() * 1e3);
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/grammar_e2e_schemas.json")).unwrap(),
    )
    .unwrap();
    let json_gbnf = std::fs::read_to_string(testdata::repo_data().join("grammars/json.gbnf")).unwrap();
    let sets: Vec<(&str, Vec<(Grammar, String)>)> = vec![
        (
            "json-schema",
            cases
                .iter()
                .map(|c| {
                    (
                        Grammar::from_json_schema(&c["schema"]).unwrap(),
                        chat(&format!("{} Schema: {}", c["prompt"].as_str().unwrap(), c["schema"])),
                    )
                })
                .collect(),
        ),
        (
            "json.gbnf",
            vec![(Grammar::from_gbnf(&json_gbnf, "root").unwrap(), chat("Describe a cat as a JSON object."))],
        ),
    ];
    for (label, set) in sets {
        let mut times = Vec::new();
        for (g, prompt) in &set {
            let mut ctx = Context::new(
                &m,
                ContextParams {
                    n_ctx: 1024,
                    n_batch: 256,
                    n_threads: 2,
                    kv_type: KvType::F16,
                    type_v: None,
                    flash_attn: false,
                    logits_all: false,
                    n_seq_max: 1,
                    embeddings: false,
                },
            )
            .unwrap();
            let ids = tok.tokenize(prompt.as_bytes(), false, true);
            ctx.eval(&m, &ids, 0).unwrap();
            let mut matcher = Matcher::new(g, &env).unwrap();
            for n_past in ids.len()..ids.len() + 200 {
                let mut logits = ctx.logits().to_vec();
                let t = Instant::now();
                matcher.mask_logits(&mut logits).unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e6);
                let tk = sample(&logits, &Sampling::Greedy, &mut Rng(1));
                matcher.accept(tk).unwrap();
                if tok.is_eog(tk) {
                    break;
                }
                ctx.eval(&m, &[tk], n_past).unwrap();
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        eprintln!(
            "{label}: {} masks, p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            times.len(),
            q(0.5),
            q(0.99),
            times[times.len() - 1]
        );
    }
}
