//! Context behaviour on a real (synthetic, 11 MB) GGUF: argument errors, batch-size invariance,
//! truncation for prefix reuse and state save/restore. Skips if the model is absent.

mod testdata;

use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use llama_core::Error;

fn model() -> Option<Model> {
    let p = testdata::models_dir().join("synth-tiny-q4_0.gguf");
    if !p.exists() {
        eprintln!("SKIP: {} not found", p.display());
        return None;
    }
    Some(Model::load(&p, &ModelParams::default()).unwrap())
}

fn params(n_ctx: usize, n_batch: usize, logits_all: bool) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch,
        n_threads: 2,
        kv_type: KvType::F16,
        type_v: None,
        flash_attn: false,
        logits_all,
        n_seq_max: 1,
        embeddings: false,
    }
}

const PROMPT: [u32; 9] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263];

#[test]
fn hparams_from_metadata() {
    let Some(m) = model() else { return };
    let hp = m.hparams();
    // synth_gguf.py "tiny": dim 256, 4 layers, 8 heads, 4 kv heads, ctx 512, LLaMA vocab.
    assert_eq!(
        (hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ctx_train, hp.n_vocab),
        (256, 4, 8, 4, 512, 32000)
    );
}

#[test]
fn argument_errors() {
    let Some(m) = model() else { return };
    let mut ctx = Context::new(&m, params(8, 8, false)).unwrap();
    assert!(matches!(ctx.eval(&m, &[], 0), Err(Error::InvalidArgument(_))));
    let e = ctx.eval(&m, &[1, 32000], 0).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("32000"), "{e}");
    let e = ctx.eval(&m, &PROMPT, 0).unwrap_err();
    assert!(matches!(e, Error::ContextOverflow(_)) && e.to_string().contains('8'), "{e}");
    assert!(matches!(ctx.eval(&m, &[1], 1), Err(Error::InvalidArgument(_))), "n_past beyond the cache");
    ctx.eval(&m, &PROMPT[..8], 0).unwrap();
    assert_eq!(ctx.kv_len(), 8);
    assert!(matches!(ctx.eval(&m, &[1], 8), Err(Error::ContextOverflow(_))));
    assert!(ctx.truncate(9).is_err());
}

#[test]
fn batch_size_does_not_change_logits() {
    let Some(m) = model() else { return };
    let mut a = Context::new(&m, params(32, 512, true)).unwrap();
    let mut b = Context::new(&m, params(32, 2, true)).unwrap();
    a.eval(&m, &PROMPT, 0).unwrap();
    b.eval(&m, &PROMPT, 0).unwrap();
    assert_eq!(a.logits().len(), PROMPT.len() * 32000);
    assert_eq!(a.logits(), b.logits());
    // One token at a time through the cache gives the same last row.
    let mut c = Context::new(&m, params(32, 512, false)).unwrap();
    for (i, &t) in PROMPT.iter().enumerate() {
        c.eval(&m, &[t], i).unwrap();
    }
    assert_eq!(c.logits(), &a.logits()[(PROMPT.len() - 1) * 32000..]);
}

#[test]
fn truncate_and_state_round_trip() {
    let Some(m) = model() else { return };
    let mut ctx = Context::new(&m, params(32, 512, false)).unwrap();
    ctx.eval(&m, &PROMPT, 0).unwrap();
    let full = ctx.logits().to_vec();
    // Prefix reuse: drop the last 3 positions and recompute them.
    ctx.truncate(6).unwrap();
    ctx.eval(&m, &PROMPT[6..], 6).unwrap();
    assert_eq!(ctx.logits(), &full[..]);

    let state = ctx.state();
    ctx.eval(&m, &[450], PROMPT.len()).unwrap();
    let next = ctx.logits().to_vec();

    let mut other = Context::new(&m, params(32, 512, false)).unwrap();
    other.set_state(&state).unwrap();
    assert_eq!(other.kv_len(), PROMPT.len());
    assert_eq!(other.logits(), &full[..]);
    other.eval(&m, &[450], PROMPT.len()).unwrap();
    assert_eq!(other.logits(), &next[..]);

    // A state from an F32 cache does not load into an F16 one; a cut state is rejected.
    let f32ctx = Context::new(&m, ContextParams { kv_type: KvType::F32, ..params(32, 512, false) }).unwrap();
    assert!(other.set_state(&f32ctx.state()).is_err());
    assert!(other.set_state(&state[..state.len() - 1]).is_err());
}

#[test]
fn eval_into_checks_ids_as_given_and_writes_the_logits() {
    let Some(m) = model() else { return };
    let mut ctx = Context::new(&m, params(16, 4, true)).unwrap();
    // A Python caller's -1 is reported as -1, not as a wrapped u32.
    let e = ctx.eval_into(&m, &[1i64, -1], 0, None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("token id -1 at index 1"), "{e}");
    assert!(e.to_string().contains("n_vocab = 32000"), "{e}");
    // The window is checked before the size of `out` (a short out slice is what an overflow gives).
    let mut short = vec![0.0f32; 32000];
    let e = ctx.eval_into(&m, &[1i64; 17], 0, Some(&mut short)).unwrap_err();
    assert!(matches!(e, Error::ContextOverflow(_)), "{e}");
    let e = ctx.eval_into(&m, &PROMPT[..2], 0, Some(&mut short)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("2 x 32000"), "{e}");
    assert_eq!(ctx.kv_len(), 0, "a rejected eval leaves the cache alone");
    let mut out = vec![0.0f32; PROMPT.len() * 32000];
    ctx.eval_into(&m, &PROMPT, 0, Some(&mut out)).unwrap();
    assert_eq!(&out[..], ctx.logits());
    // The thread count changes the speed, not the logits.
    ctx.set_n_threads(&m, 1).unwrap();
    let mut again = vec![0.0f32; PROMPT.len() * 32000];
    ctx.eval_into(&m, &PROMPT, 0, Some(&mut again)).unwrap();
    assert_eq!(out, again);
    assert!(ctx.set_n_threads(&m, 0).is_err());
}
