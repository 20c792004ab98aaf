//! The serving engine: N slots (one sequence each) over one model, a bounded queue of requests and
//! a scheduler thread that runs continuous batching (as llama-server's slots):
//!
//! ```text
//! submit(Request) ──► queue (bounded: full → QueueFull at once)
//!                        │ a slot frees up
//!                        ▼
//!   slot = the free one whose cached tokens share the longest prefix with the prompt
//!   step: one row per generating slot + prompt chunks of the others  ──► Decoder::decode
//!         sample each slot's row with its own chain ──► Event::Token / Event::Done to its sink
//! ```
//!
//! The engine is independent of HTTP and Python: a request carries its sampler chain, stop strings
//! and a sink (a callback that returns `false` when nobody listens any more, which cancels it). The
//! model side is the [`Decoder`] trait, so the same scheduler runs over the mixed-batch forward.

pub mod batched;
pub mod multi;
pub mod scheduler;
pub mod stop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::sampler::Chain;
use crate::Result;

pub use scheduler::{Engine, EngineConfig, Metrics, SubmitError};

/// One row of a batch: a token of sequence `seq` at position `pos`; `logits` asks for its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub token: u32,
    pub seq: usize,
    pub pos: usize,
    pub logits: bool,
}

/// The model side of the engine: a KV cache holding several sequences and a forward over rows of
/// any of them.
pub trait Decoder: Send + 'static {
    fn n_vocab(&self) -> usize;
    /// Evaluates the rows (each sequence's rows at consecutive positions right after its cached
    /// ones); afterwards `logits(k)` is the output of the k-th row flagged `logits`.
    fn decode(&mut self, rows: &[Row]) -> Result<()>;
    fn logits(&self, k: usize) -> &[f32];
    /// Forgets positions ≥ `from` of sequence `seq`.
    fn seq_rm(&mut self, seq: usize, from: usize) -> Result<()>;
}

impl Decoder for Box<dyn Decoder> {
    fn n_vocab(&self) -> usize {
        (**self).n_vocab()
    }
    fn decode(&mut self, rows: &[Row]) -> Result<()> {
        (**self).decode(rows)
    }
    fn logits(&self, k: usize) -> &[f32] {
        (**self).logits(k)
    }
    fn seq_rm(&mut self, seq: usize, from: usize) -> Result<()> {
        (**self).seq_rm(seq, from)
    }
}

/// The decoder for `n_seq` sequences of `p.n_ctx` tokens: one mixed batch per step
/// ([`batched::Batched`]), or one context per sequence ([`multi::PerSequence`]) for models whose
/// state cannot hold several sequences (recurrent layers).
pub fn decoder_for(
    model: std::sync::Arc<crate::model::Model>,
    n_seq: usize,
    p: crate::model::ContextParams,
) -> Result<Box<dyn Decoder>> {
    match batched::Batched::new(model.clone(), n_seq, p.clone()) {
        Ok(b) => Ok(Box::new(b)),
        Err(_) if n_seq > 1 => Ok(Box::new(multi::PerSequence::new(model, n_seq, p)?)),
        Err(e) => Err(e),
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the slot's context is full.
    Length,
    /// The client went away, or the engine is shutting down.
    Cancelled,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// Token counts and times of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache (not evaluated again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// From submission to the first token (seconds).
    pub time_to_first_token: f64,
    /// Seconds from the first to the last token.
    pub generation_time: f64,
}

/// A sampled token as it reaches the client.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenOut {
    pub id: u32,
    /// Text released with this token: complete characters, minus anything that may still be the
    /// start of a stop string (released later, or never if the stop string matches).
    pub text: String,
    /// ln p of the token under the model's distribution (softmax of the raw logits), and the
    /// `n_probs` most likely tokens with theirs, when asked.
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug)]
pub enum Event {
    Token(TokenOut),
    /// The last event of a request that ran: trailing text held back, why it ended, counts.
    Done {
        text: String,
        finish: Finish,
        usage: Usage,
    },
    /// The request could not run (prompt longer than the context, a grammar failure …); last event.
    Error(crate::Error),
}

/// Receives a request's events on the engine thread; returns `false` when the receiver is gone
/// (the request is then cancelled and its slot freed within the step).
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// A generation request.
pub struct Request {
    /// The prompt's token ids (not empty).
    pub prompt: Vec<u32>,
    /// The sampler chain of this request (its own RNG, penalties, grammar).
    pub chain: Chain,
    /// New tokens at most (None: until the slot's context is full).
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// End-of-generation tokens are sampled like any other and do not end the request.
    pub ignore_eos: bool,
    /// Top log-probabilities per token (0: none; the chosen token's own is given when > 0).
    pub n_probs: usize,
    /// Reuse the longest prefix of the prompt found in a slot's cache (llama-server's
    /// `cache_prompt`). Off, only whole `n_batch` chunks that were evaluated as prompt chunks
    /// from position 0 are reused, so the answer is bit for bit that of a fresh run; on, more is
    /// reused and the logits may differ from a fresh run in the last bits (a token evaluated alone
    /// or in another chunk sums in another order), which can change a greedy answer.
    pub cache_prompt: bool,
    pub sink: Sink,
    /// Set from any thread to cancel (checked every step).
    pub cancel: Arc<AtomicBool>,
}

impl Request {
    pub fn new(prompt: Vec<u32>, chain: Chain, sink: Sink) -> Request {
        Request {
            prompt,
            chain,
            max_tokens: None,
            stop: Vec::new(),
            ignore_eos: false,
            n_probs: 0,
            cache_prompt: false,
            sink,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// ln softmax of `logits` at `id`, and the `n` largest (id, ln p), most likely first (ties by id).
pub fn logprobs(logits: &[f32], id: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let lp = |l: f32| (l as f64 - lse) as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(idx.len());
    if n > 0 {
        let by = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        idx.select_nth_unstable_by(n - 1, by);
        idx.truncate(n);
        idx.sort_by(by);
    } else {
        idx.clear();
    }
    (lp(logits[id as usize]), idx.into_iter().map(|i| (i, lp(logits[i as usize]))).collect())
}
