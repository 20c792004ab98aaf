//! The serving engine (slots, queue, continuous batching) on a real model: concurrent greedy
//! requests give the tokens each gives alone through a plain `Context` (the path the golden tests
//! hold to llama.cpp), and stop strings, limits, cancellation, the queue bound and prefix reuse
//! behave as documented.

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use common::{models_dir, require};
use llama_core::engine::multi::PerSequence;
use llama_core::engine::{decoder_for, Engine, EngineConfig, Event, Finish, Request, SubmitError, Usage};
use llama_core::model::{Context, ContextParams, Model, ModelParams};
use llama_core::sampler::{argmax, ChainParams};
use llama_core::tokenizer::Tokenizer;

fn load(name: &str) -> Option<(Arc<Model>, Arc<Tokenizer>)> {
    let p = require(models_dir().join(name))?;
    let model = Model::load(&p, &ModelParams::default()).unwrap();
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    Some((Arc::new(model), Arc::new(tok)))
}

fn params(n_ctx: usize) -> ContextParams {
    ContextParams { n_ctx, n_batch: 64, n_threads: 2, ..ContextParams::default() }
}

/// The engine over the mixed-batch decoder (as served), or over one context per sequence.
fn engine(m: &Arc<Model>, t: &Arc<Tokenizer>, n_slots: usize, queue: usize) -> Engine {
    let cfg = EngineConfig { n_slots, n_ctx_slot: 256, n_batch: 64, queue };
    Engine::start(decoder_for(m.clone(), n_slots, params(256)).unwrap(), t.clone(), cfg).unwrap()
}

fn engine_per_sequence(m: &Arc<Model>, t: &Arc<Tokenizer>, n_slots: usize) -> Engine {
    let cfg = EngineConfig { n_slots, n_ctx_slot: 256, n_batch: 64, queue: 8 };
    Engine::start(PerSequence::new(m.clone(), n_slots, params(256)).unwrap(), t.clone(), cfg).unwrap()
}

fn greedy(m: &Model) -> llama_core::sampler::Chain {
    ChainParams { temp: 0.0, ..ChainParams::new(m.n_vocab()) }.build().unwrap()
}

/// A request whose events arrive on the returned channel.
fn request(m: &Model, prompt: Vec<u32>, max_tokens: usize) -> (Request, Receiver<Event>) {
    let (tx, rx) = channel();
    let mut r = Request::new(prompt, greedy(m), Box::new(move |e| tx.send(e).is_ok()));
    r.max_tokens = Some(max_tokens);
    (r, rx)
}

/// Every event until the last: (token ids, text, finish, usage) or the error.
fn collect(rx: &Receiver<Event>) -> Result<(Vec<u32>, String, Finish, Usage), String> {
    let (mut ids, mut text) = (Vec::new(), String::new());
    loop {
        match rx.recv_timeout(Duration::from_secs(120)).expect("engine answers") {
            Event::Token(t) => {
                ids.push(t.id);
                text.push_str(&t.text);
            }
            Event::Done { text: tail, finish, usage } => {
                text.push_str(&tail);
                return Ok((ids, text, finish, usage));
            }
            Event::Error(e) => return Err(e.to_string()),
        }
    }
}

/// Greedy tokens of a lone run through one `Context`, prompt in chunks of 64 as the engine cuts it.
/// The engine's metrics once its slots and queue are empty (or after 10 s): the last event of a
/// request reaches its receiver just before the engine thread frees the slot.
fn settled(e: &Engine) -> llama_core::engine::Metrics {
    let t0 = std::time::Instant::now();
    loop {
        let mx = e.metrics();
        if (mx.busy_slots == 0 && mx.queued == 0) || t0.elapsed() > Duration::from_secs(10) {
            return mx;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lone(m: &Model, prompt: &[u32], n: usize, tok: &Tokenizer) -> Vec<u32> {
    let mut ctx = Context::new(m, params(256)).unwrap();
    let mut past = 0;
    for c in prompt.chunks(64) {
        ctx.eval(m, c, past).unwrap();
        past += c.len();
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let t = argmax(ctx.logits());
        out.push(t);
        if tok.is_eog(t) {
            break;
        }
        ctx.eval(m, &[t], past).unwrap();
        past += 1;
    }
    out
}

#[test]
fn concurrent_greedy_requests_equal_lone_runs() {
    let Some((m, tok)) = load("qwen2.5-coder-0.5b-q4_k_m.gguf") else { return };
    let prompts = [
        "def fibonacci(n):",
        "The capital of France is",
        "// A C function that reverses a string in place\nvoid reverse(char *s) {",
        "import numpy as np\n\n# compute the mean of each column of a matrix\n",
        "SELECT name, COUNT(*) FROM users",
    ];
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.tokenize(p.as_bytes(), true, false)).collect();
    // the mixed-batch decoder (served), and one context per sequence (recurrent models)
    for e in [engine(&m, &tok, 3, 8), engine_per_sequence(&m, &tok, 3)] {
        check_concurrent(&m, &tok, &e, &ids);
    }
}

fn check_concurrent(m: &Arc<Model>, tok: &Tokenizer, e: &Engine, ids: &[Vec<u32>]) {
    // five requests on three slots: two wait in the queue, then take freed slots
    let rxs: Vec<_> = ids
        .iter()
        .map(|p| {
            let (r, rx) = request(m, p.clone(), 24);
            e.submit(r).unwrap();
            rx
        })
        .collect();
    for (i, rx) in rxs.iter().enumerate() {
        let (got, text, finish, usage) = collect(rx).unwrap();
        let want = lone(m, &ids[i], 24, tok);
        assert_eq!(got, want, "prompt {i}: engine vs lone run");
        let want_text: Vec<u8> =
            want.iter().filter(|&&t| !tok.is_eog(t)).flat_map(|&t| tok.token_to_piece(t, false)).collect();
        assert_eq!(text, String::from_utf8_lossy(&want_text), "prompt {i}: text");
        assert_eq!(usage.prompt_tokens, ids[i].len());
        assert_eq!(usage.completion_tokens, got.len());
        let eog = got.last().is_some_and(|&t| tok.is_eog(t));
        assert_eq!(finish, if eog { Finish::Stop } else { Finish::Length });
    }
    let mx = settled(e);
    assert_eq!((mx.requests, mx.busy_slots, mx.queued), (5, 0, 0));
}

#[test]
fn stop_strings_limits_errors_and_prefix_reuse() {
    let Some((m, tok)) = load("qwen2.5-coder-0.5b-q4_k_m.gguf") else { return };
    let e = engine(&m, &tok, 2, 4);
    let prompt = tok.tokenize(b"def add(a, b):\n    return a + b\n\ndef sub(a, b):", true, false);
    let (r, rx) = request(&m, prompt.clone(), 40);
    e.submit(r).unwrap();
    let (_, full, _, first) = collect(&rx).unwrap();
    assert_eq!(first.cached_tokens, 0);
    // a stop string of several tokens, found in the free text: the text ends right before it
    let stop = "\n\ndef".to_string();
    assert!(full.contains(&stop), "{full:?}");
    {
        let (mut r, rx) = request(&m, prompt.clone(), 40);
        r.stop = vec![stop.clone()];
        e.submit(r).unwrap();
        let (_, text, finish, usage) = collect(&rx).unwrap();
        assert_eq!(finish, Finish::Stop);
        assert_eq!(text, full[..full.find(&stop).unwrap()]);
        // the same prompt again: shorter than one chunk, so nothing is reused by default
        assert_eq!(usage.cached_tokens, 0);
    }
    // cache_prompt: all but the last prompt token come from the slot's cache
    let (mut r, rx) = request(&m, prompt.clone(), 8);
    r.cache_prompt = true;
    e.submit(r).unwrap();
    assert_eq!(collect(&rx).unwrap().3.cached_tokens, prompt.len() - 1);
    // a prompt of several chunks (n_batch 64): whole chunks are reused and the answer is the
    // fresh run's, token for token
    let long: Vec<u32> = prompt.iter().cycle().take(150).copied().collect();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (r, rx) = request(&m, long.clone(), 12);
        e.submit(r).unwrap();
        let (ids, _, _, usage) = collect(&rx).unwrap();
        answers.push((ids, usage.cached_tokens));
    }
    assert_eq!(answers[0].1, 0);
    assert_eq!(answers[1].1, 128);
    assert_eq!(answers[0].0, answers[1].0);
    assert_eq!(answers[0].0, lone(&m, &long, 12, &tok));
    // too long for a slot
    let (r, rx) = request(&m, vec![tok.bos().unwrap_or(0); 300], 4);
    e.submit(r).unwrap();
    let err = collect(&rx).unwrap_err();
    assert!(err.contains("context") && err.contains("300"), "{err}");
    // out-of-vocabulary id, empty prompt
    let (r, rx) = request(&m, vec![u32::MAX], 4);
    e.submit(r).unwrap();
    assert!(collect(&rx).unwrap_err().contains("vocabulary"));
    let (r, rx) = request(&m, vec![], 4);
    e.submit(r).unwrap();
    assert!(collect(&rx).unwrap_err().contains("no tokens"));
    assert_eq!(settled(&e).busy_slots, 0);
}

#[test]
fn cancellation_frees_slots_and_the_queue_is_bounded() {
    let Some((m, tok)) = load("qwen2.5-coder-0.5b-q4_k_m.gguf") else { return };
    let e = engine(&m, &tok, 1, 1);
    let prompt = tok.tokenize(b"Once upon a time", true, false);
    // a receiver dropped after 3 tokens cancels its request
    let (tx, rx) = channel();
    let mut left = 3u32;
    let mut r = Request::new(
        prompt.clone(),
        greedy(&m),
        Box::new(move |ev| {
            left = left.saturating_sub(1);
            left > 0 && tx.send(ev).is_ok()
        }),
    );
    r.max_tokens = Some(200);
    e.submit(r).unwrap();
    assert!(matches!(rx.recv().unwrap(), Event::Token(_)), "it runs");
    // while it runs: one waits in the queue, the next is refused at once
    let (q, qrx) = request(&m, prompt.clone(), 2);
    e.submit(q).unwrap();
    let (q2, _) = request(&m, prompt.clone(), 2);
    let refused = e.submit(q2);
    assert_eq!(refused.err(), Some(SubmitError::QueueFull));
    let n = rx.iter().count();
    assert_eq!(n, 1, "two events delivered, the third refused");
    let (ids, _, _, _) = collect(&qrx).unwrap();
    assert_eq!(ids.len(), 2);
    // an explicit cancel flag
    let (r, rx) = request(&m, prompt.clone(), 500);
    let flag = r.cancel.clone();
    e.submit(r).unwrap();
    match rx.recv().unwrap() {
        Event::Token(_) => flag.store(true, Ordering::Relaxed),
        other => panic!("{other:?}"),
    }
    let (_, _, finish, usage) = collect(&rx).unwrap();
    assert_eq!(finish, Finish::Cancelled);
    assert!(usage.completion_tokens < 500);
    let mx = settled(&e);
    assert_eq!((mx.busy_slots, mx.queued, mx.rejected), (0, 0, 1));
}
