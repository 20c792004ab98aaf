//! A model with a recurrent state (the qwen35 fixture of tests/data/arch: gated DeltaNet layers
//! beside attention layers), converted by us: a prompt in one batch, in several batches and token
//! by token gives the same logits (the state carries between batches as the KV cache does);
//! save_state/load_state restore the state (generate, save, generate more, load, regenerate: the
//! same logits bit for bit); the state starts over with the cache (n_past = 0) and refuses to go
//! back to an earlier position.

use std::path::{Path, PathBuf};

use llama_convert::{convert, ConvertOptions, OutType};
use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use llama_core::Error;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/arch/qwen3_5")
}

/// Our f32 conversion of the fixture, in a temp folder removed on drop.
struct Converted(PathBuf);

impl Converted {
    fn new(tag: &str) -> Converted {
        let dir = std::env::temp_dir().join(format!("llama-convert-recurrent-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("qwen35-f32.gguf");
        let opts = ConvertOptions {
            path: fixture(),
            outtype: OutType::F32,
            out: Some(out.clone()),
            vocab_dir: None,
            progress: false,
        };
        convert(&opts).unwrap();
        Converted(out)
    }
}

impl Drop for Converted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// The fixture's first prompt (its reference.json token ids).
fn prompt() -> Vec<u32> {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("reference.json")).unwrap()).unwrap();
    r["cases"][0]["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

fn ctx(model: &Model, n_batch: usize, logits_all: bool) -> Context {
    let p = ContextParams {
        n_ctx: 128,
        n_batch,
        n_threads: 2,
        kv_type: KvType::F32,
        type_v: None,
        flash_attn: false,
        logits_all,
        n_seq_max: 1,
        embeddings: false,
    };
    Context::new(model, p).unwrap()
}

fn argmax(x: &[f32]) -> u32 {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b }) as u32
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn batches_and_token_by_token_agree() {
    let file = Converted::new("batches");
    let model = Model::load(&file.0, &ModelParams::default()).unwrap();
    let nv = model.n_vocab();
    let tokens = prompt();
    let n = tokens.len();
    assert!(n >= 8, "the fixture's prompt is long enough to split");

    // one batch, logits of every position
    let mut one = ctx(&model, 64, true);
    assert!(one.is_recurrent());
    one.eval(&model, &tokens, 0).unwrap();
    let want = one.logits().to_vec(); // [n][nv]

    // batches of 3 (the state and cache carried between them), and one token at a time
    let mut split = ctx(&model, 3, true);
    split.eval(&model, &tokens, 0).unwrap();
    let mut single = ctx(&model, 64, false);
    let mut by_token = Vec::with_capacity(n * nv); // [n][nv]
    for (i, &t) in tokens.iter().enumerate() {
        single.eval(&model, &[t], i).unwrap();
        by_token.extend_from_slice(single.logits());
    }
    for (name, got) in [("batches of 3", split.logits()), ("token by token", &by_token[..])] {
        let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{name}: max |Δ| against one batch {max:.2e} over {n} positions");
        assert!(max <= 1e-4, "{name}: max |Δ| {max} against one batch");
        for p in 0..n {
            assert_eq!(argmax(&got[p * nv..(p + 1) * nv]), argmax(&want[p * nv..(p + 1) * nv]), "{name}: top-1 at {p}");
        }
    }
}

#[test]
fn state_round_trips_and_restarts() {
    let file = Converted::new("state");
    let model = Model::load(&file.0, &ModelParams::default()).unwrap();
    let tokens = prompt();
    let mut c = ctx(&model, 64, false);

    // generate greedily; `steps` tokens after the prompt, logits of each step
    let generate = |c: &mut Context, first: u32, steps: usize| -> (Vec<u32>, Vec<f32>) {
        let (mut out, mut logits, mut t) = (Vec::new(), Vec::new(), first);
        for _ in 0..steps {
            c.eval(&model, &[t], c.kv_len()).unwrap();
            logits.extend_from_slice(c.logits());
            t = argmax(c.logits());
            out.push(t);
        }
        (out, logits)
    };
    c.eval(&model, &tokens, 0).unwrap();
    let fresh_prompt_logits = c.logits().to_vec();
    let next = argmax(c.logits());
    let (gen1, _) = generate(&mut c, next, 4);
    let saved = c.state();
    let at = c.kv_len();
    let (gen2, logits2) = generate(&mut c, *gen1.last().unwrap(), 6);

    // load into the same context (after more tokens) and into a fresh one: the same continuation
    for fresh in [false, true] {
        let mut d = if fresh { ctx(&model, 64, false) } else { c };
        d.set_state(&saved).unwrap();
        assert_eq!(d.kv_len(), at);
        let (again, logits_again) = generate(&mut d, *gen1.last().unwrap(), 6);
        assert_eq!(again, gen2, "continuation after load_state (fresh context: {fresh})");
        assert_eq!(bits(&logits_again), bits(&logits2), "logits after load_state (fresh context: {fresh})");
        c = d;
    }

    // a state from another context shape (no recurrent layers' bytes) is refused by length
    assert!(c.set_state(&saved[..saved.len() - 4]).is_err());

    // the recurrent state cannot go back to an earlier position, only start over
    let n = c.kv_len();
    let e = c.truncate(n - 2).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(ref m) if m.contains("recurrent")), "{e}");
    let e = c.eval(&model, &[tokens[0]], 3).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(ref m) if m.contains("recurrent")), "{e}");
    assert_eq!(c.kv_len(), n, "a refused eval leaves the cache as it was");
    // n_past = 0 starts over: the prompt's logits as in a fresh context, bit for bit
    c.eval(&model, &tokens, 0).unwrap();
    assert_eq!(bits(c.logits()), bits(&fresh_prompt_logits));
    c.eval(&model, &[1, 2, 3], c.kv_len()).unwrap();
    c.truncate(0).unwrap();
    c.eval(&model, &tokens, 0).unwrap();
    assert_eq!(bits(c.logits()), bits(&fresh_prompt_logits));
}

/// Greedy decoding one token at a time through the recurrent state: each fixture case's 16-token
/// continuation equals transformers' (reference.json) and llama.cpp's (llamacpp.json).
#[test]
fn greedy_decoding_matches_transformers_and_llamacpp() {
    let file = Converted::new("greedy");
    let model = Model::load(&file.0, &ModelParams::default()).unwrap();
    let read =
        |f: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(fixture().join(f)).unwrap()).unwrap() };
    let (reference, cpp) = (read("reference.json"), read("llamacpp.json"));
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
    };
    let mut c = ctx(&model, 64, false);
    for (r, l) in reference["cases"].as_array().unwrap().iter().zip(cpp["cases"].as_array().unwrap()) {
        let (prompt, want) = (ids(&r["tokens"]), ids(&r["greedy"]));
        assert_eq!(want, ids(&l["greedy"]), "the references agree");
        // the previous case's state is dropped by starting at position 0
        c.eval(&model, &prompt, 0).unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let t = argmax(c.logits());
            got.push(t);
            c.eval(&model, &[t], c.kv_len()).unwrap();
        }
        assert_eq!(got, want, "greedy continuation of {prompt:?}");
    }
}
