//! The scheduler thread: slots, the bounded queue, continuous batching, prefix reuse.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::stop::StopMatcher;
use super::{logprobs, Decoder, Event, Finish, Request, Row, TokenOut, Usage};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Slots: sequences generated at once (llama-server's `--parallel`).
    pub n_slots: usize,
    /// Context of each slot in tokens (prompt + generated).
    pub n_ctx_slot: usize,
    /// Prompt tokens evaluated per step, over all slots. Prompts are cut into chunks of this size
    /// from their first uncached token, whatever else runs, so a prompt meets the same chunks
    /// alone or beside others; decoding rows come on top (a step holds ≤ n_batch + n_slots rows).
    pub n_batch: usize,
    /// Requests waiting for a slot at most; one more is refused at once.
    pub queue: usize,
}

/// Why `submit` refused a request.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Every slot is busy and the queue is full: retry later.
    QueueFull,
    /// The engine is stopping (or its thread ended).
    ShuttingDown,
}

/// Counters since start (`/metrics`).
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    rejected: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    queued: AtomicUsize,
    busy: AtomicUsize,
    /// Microseconds, summed over requests / tokens.
    ttft_us: AtomicU64,
    ttft_n: AtomicU64,
    token_us: AtomicU64,
    steps: AtomicU64,
}

/// A snapshot of the engine's counters.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub n_slots: usize,
    pub requests: u64,
    pub rejected: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    pub queued: usize,
    pub busy_slots: usize,
    /// Sum of times to first token (s) and their count.
    pub ttft_sum: f64,
    pub ttft_count: u64,
    /// Sum over generated tokens of the step time each waited (s).
    pub token_time_sum: f64,
    pub steps: u64,
}

/// Handle to the scheduler thread. Dropping it stops the engine (running requests end with
/// `Finish::Cancelled`).
pub struct Engine {
    tx: Option<Sender<Request>>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    cfg: EngineConfig,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn start<D: Decoder>(decoder: D, tokenizer: Arc<Tokenizer>, cfg: EngineConfig) -> Result<Engine> {
        if cfg.n_slots == 0 || cfg.n_batch == 0 || cfg.n_ctx_slot < 2 {
            return Err(Error::InvalidArgument(format!(
                "engine needs at least 1 slot, n_batch ≥ 1 and a context of ≥ 2 tokens per slot (got {} slots, n_batch {}, n_ctx {})",
                cfg.n_slots, cfg.n_batch, cfg.n_ctx_slot
            )));
        }
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut s = Scheduler {
            dec: decoder,
            tok: tokenizer,
            slots: (0..cfg.n_slots).map(|_| Slot::default()).collect(),
            cfg: cfg.clone(),
            rx,
            stop: stop.clone(),
            c: counters.clone(),
            order: 0,
        };
        let thread = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || s.run())
            .map_err(|e| Error::InvalidArgument(format!("cannot start the engine thread: {e}")))?;
        Ok(Engine { tx: Some(tx), stop, counters, cfg, thread: Some(thread) })
    }

    /// Queues a request; refused at once when the queue is full.
    pub fn submit(&self, req: Request) -> std::result::Result<(), SubmitError> {
        let tx = self.tx.as_ref().ok_or(SubmitError::ShuttingDown)?;
        if self.stop.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        // room: a free slot for each request in flight to one, plus `queue` waiting
        let c = &self.counters;
        let free = self.cfg.n_slots.saturating_sub(c.busy.load(Ordering::Relaxed));
        if c.queued.load(Ordering::Relaxed) >= free + self.cfg.queue {
            c.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::QueueFull);
        }
        c.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(req).map_err(|_| {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            SubmitError::ShuttingDown
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            n_slots: self.cfg.n_slots,
            requests: l(&c.requests),
            rejected: l(&c.rejected),
            prompt_tokens: l(&c.prompt_tokens),
            cached_tokens: l(&c.cached_tokens),
            generated_tokens: l(&c.generated_tokens),
            queued: c.queued.load(Ordering::Relaxed),
            busy_slots: c.busy.load(Ordering::Relaxed),
            ttft_sum: l(&c.ttft_us) as f64 * 1e-6,
            ttft_count: l(&c.ttft_n),
            token_time_sum: l(&c.token_us) as f64 * 1e-6,
            steps: l(&c.steps),
        }
    }

    /// Stops taking requests, cancels what runs or waits, and joins the thread.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None; // wakes the thread if it waits for work
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A slot: sequence `index` of the decoder.
#[derive(Default)]
struct Slot {
    /// The tokens whose keys and values the sequence holds (positions 0..cache.len()).
    cache: Vec<u32>,
    /// Positions 0..exact were evaluated as whole prompt chunks of n_batch from position 0: what
    /// a fresh run of any prompt starting with those tokens computes identically.
    exact: usize,
    job: Option<Job>,
    /// When the slot last finished a job (the least recently used free slot is taken on ties).
    last_used: u64,
}

struct Job {
    req: Request,
    /// Prompt tokens up to here are in the cache.
    next_prompt: usize,
    /// Sampled, sent, and to be evaluated in the next step.
    pending: Option<u32>,
    n_gen: usize,
    usage: Usage,
    text: StreamDecoder,
    stop: StopMatcher,
    /// A stop string matched: nothing more is released.
    hit: bool,
    submitted: Instant,
    first_token: Option<Instant>,
}

struct Scheduler<D: Decoder> {
    dec: D,
    tok: Arc<Tokenizer>,
    slots: Vec<Slot>,
    cfg: EngineConfig,
    rx: Receiver<Request>,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
    order: u64,
}

/// How a row of the step maps back: its slot, and whether it is the slot's output row.
struct Planned {
    slot: usize,
    output: bool,
}

impl<D: Decoder> Scheduler<D> {
    fn run(&mut self) {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                self.cancel_all();
                return;
            }
            if !self.intake() {
                self.cancel_all();
                return;
            }
            if self.slots.iter().all(|s| s.job.is_none()) {
                continue; // intake blocks while nothing runs
            }
            self.step();
        }
    }

    /// Moves queued requests into free slots. Blocks (briefly, to notice a stop) only when no slot
    /// is busy. Returns false when the queue is closed and nothing runs.
    fn intake(&mut self) -> bool {
        loop {
            if self.slots.iter().all(|s| s.job.is_some()) {
                return true;
            }
            let idle = self.slots.iter().all(|s| s.job.is_none());
            let req = if idle {
                match self.rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => return true,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(r) => r,
                    Err(_) => return true,
                }
            };
            // busy first, then out of the queue: `submit` never sees the request in neither
            self.c.busy.fetch_add(1, Ordering::Relaxed);
            self.c.queued.fetch_sub(1, Ordering::Relaxed);
            self.c.requests.fetch_add(1, Ordering::Relaxed);
            if !self.admit(req) {
                self.c.busy.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Checks a request and gives it the free slot with the longest cached prefix; false when it
    /// ended at once (cancelled or invalid).
    fn admit(&mut self, mut req: Request) -> bool {
        if req.cancelled() {
            (req.sink)(Event::Done { text: String::new(), finish: Finish::Cancelled, usage: Usage::default() });
            return false;
        }
        let n = req.prompt.len();
        let problem = if n == 0 {
            Some(Error::InvalidArgument("the prompt has no tokens".into()))
        } else if n >= self.cfg.n_ctx_slot {
            Some(Error::ContextOverflow(format!(
                "the prompt has {n} tokens but a slot's context holds {} (prompt + at least one new token)",
                self.cfg.n_ctx_slot
            )))
        } else if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.dec.n_vocab()) {
            Some(Error::InvalidArgument(format!(
                "token id {t} is outside the vocabulary (n_vocab = {})",
                self.dec.n_vocab()
            )))
        } else {
            None
        };
        if let Some(e) = problem {
            (req.sink)(Event::Error(e));
            return false;
        }
        let lcp = |c: &[u32]| c.iter().zip(&req.prompt).take_while(|(a, b)| a == b).count();
        let (slot, common) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .map(|(i, s)| (i, lcp(&s.cache)))
            .max_by(|a, b| a.1.cmp(&b.1).then(self.slots[b.0].last_used.cmp(&self.slots[a.0].last_used)))
            .expect("intake admits only with a free slot");
        // the last prompt token is always evaluated again: its logits give the first new token
        let mut keep = common.min(n - 1);
        if !req.cache_prompt {
            let nb = self.cfg.n_batch;
            keep = keep.min(self.slots[slot].exact) / nb * nb;
        }
        if self.dec.seq_rm(slot, keep).is_err() {
            // a state that cannot go back part of the way (recurrent layers) starts over
            keep = 0;
            if let Err(e) = self.dec.seq_rm(slot, 0) {
                (req.sink)(Event::Error(e));
                return false;
            }
        }
        self.slots[slot].cache.truncate(keep);
        self.slots[slot].exact = self.slots[slot].exact.min(keep);
        self.c.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
        self.c.cached_tokens.fetch_add(keep as u64, Ordering::Relaxed);
        let stop = StopMatcher::new(&req.stop);
        self.slots[slot].job = Some(Job {
            req,
            next_prompt: keep,
            pending: None,
            n_gen: 0,
            usage: Usage { prompt_tokens: n, cached_tokens: keep, ..Usage::default() },
            text: StreamDecoder::new(),
            stop,
            hit: false,
            submitted: Instant::now(),
            first_token: None,
        });
        true
    }

    /// One batch: a row per generating slot, then prompt chunks; decode; sample.
    fn step(&mut self) {
        // drop cancelled jobs first
        for i in 0..self.slots.len() {
            if self.slots[i].job.as_ref().is_some_and(|j| j.req.cancelled()) {
                self.finish(i, Finish::Cancelled);
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        let mut plan: Vec<Planned> = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(t) = s.job.as_mut().and_then(|j| j.pending.take()) {
                rows.push(Row { token: t, seq: i, pos: s.cache.len(), logits: true });
                plan.push(Planned { slot: i, output: true });
                s.cache.push(t);
            }
        }
        // prompts: whole chunks of n_batch (counted from the first uncached token), oldest first
        let mut budget = self.cfg.n_batch;
        let mut waiting: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].job.as_ref().is_some_and(|j| j.next_prompt < j.req.prompt.len()))
            .collect();
        waiting.sort_by_key(|&i| self.slots[i].job.as_ref().map(|j| j.submitted));
        for i in waiting {
            let s = &mut self.slots[i];
            let j = s.job.as_mut().expect("waiting slots have a job");
            let start = j.next_prompt;
            let len = (j.req.prompt.len() - start).min(self.cfg.n_batch);
            if len > budget {
                break; // keep the chunk whole for the next step (and the order of arrival)
            }
            budget -= len;
            if s.exact == start && len == self.cfg.n_batch {
                s.exact = start + len;
            }
            for (k, &t) in j.req.prompt[start..start + len].iter().enumerate() {
                let last = start + k + 1 == j.req.prompt.len();
                rows.push(Row { token: t, seq: i, pos: s.cache.len(), logits: last });
                plan.push(Planned { slot: i, output: last });
                s.cache.push(t);
            }
            j.next_prompt = start + len;
        }
        if rows.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let res = self.dec.decode(&rows);
        self.c.steps.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = res {
            // nothing of this step is in the cache: the jobs in it fail, their sequences are reset
            let mut hit: Vec<usize> = plan.iter().map(|p| p.slot).collect();
            hit.dedup();
            for i in hit {
                self.slots[i].cache.clear();
                self.slots[i].exact = 0;
                let _ = self.dec.seq_rm(i, 0);
                self.fail(i, Error::InvalidArgument(format!("evaluation failed: {e}")));
            }
            return;
        }
        let step_us = t0.elapsed().as_micros() as u64;
        for (k, p) in plan.iter().filter(|p| p.output).enumerate() {
            self.sample(p.slot, k, step_us);
        }
    }

    /// Samples slot `i`'s next token from output row `k` and sends it.
    fn sample(&mut self, i: usize, k: usize, step_us: u64) {
        let n_ctx = self.cfg.n_ctx_slot;
        let logits = self.dec.logits(k);
        let s = &mut self.slots[i];
        let Some(j) = s.job.as_mut() else { return };
        let token = match j.req.chain.sample(logits) {
            Ok(t) => t,
            Err(e) => {
                self.fail(i, e);
                return;
            }
        };
        let now = Instant::now();
        if j.first_token.is_none() {
            j.first_token = Some(now);
            j.usage.time_to_first_token = (now - j.submitted).as_secs_f64();
            self.c.ttft_us.fetch_add((now - j.submitted).as_micros() as u64, Ordering::Relaxed);
            self.c.ttft_n.fetch_add(1, Ordering::Relaxed);
        }
        j.n_gen += 1;
        j.usage.completion_tokens = j.n_gen;
        self.c.generated_tokens.fetch_add(1, Ordering::Relaxed);
        self.c.token_us.fetch_add(step_us, Ordering::Relaxed);
        let eog = !j.req.ignore_eos && self.tok.is_eog(token);
        let (text, hit) = if eog {
            (String::new(), false)
        } else {
            let piece = j.text.push(&self.tok.token_to_piece(token, false));
            j.stop.push(&piece)
        };
        j.hit = hit;
        let (logprob, top) = if j.req.n_probs > 0 {
            let (lp, top) = logprobs(logits, token, j.req.n_probs);
            (Some(lp), top)
        } else {
            (None, Vec::new())
        };
        let alive = (j.req.sink)(Event::Token(TokenOut { id: token, text, logprob, top }));
        let finish = if !alive {
            Some(Finish::Cancelled)
        } else if eog || hit {
            Some(Finish::Stop)
        } else if j.req.max_tokens.is_some_and(|m| j.n_gen >= m) || s.cache.len() + 1 >= n_ctx {
            Some(Finish::Length)
        } else {
            j.pending = Some(token);
            None
        };
        if let Some(f) = finish {
            self.finish(i, f);
        }
    }

    /// Ends slot `i`'s job: the rest of its text, the reason, the counts. The cache stays for
    /// prefix reuse (a prompt chunk cut short by cancellation is dropped from it).
    fn finish(&mut self, i: usize, finish: Finish) {
        let s = &mut self.slots[i];
        let Some(mut j) = s.job.take() else { return };
        self.c.busy.fetch_sub(1, Ordering::Relaxed);
        self.order += 1;
        s.last_used = self.order;
        if let Some(t0) = j.first_token {
            j.usage.generation_time = t0.elapsed().as_secs_f64();
        }
        let text = if j.hit {
            String::new()
        } else {
            let tail = j.text.flush();
            let (mut t, hit) = j.stop.push(&tail);
            if !hit {
                t.push_str(&j.stop.flush());
            }
            t
        };
        (j.req.sink)(Event::Done { text, finish, usage: j.usage });
    }

    fn fail(&mut self, i: usize, e: Error) {
        let s = &mut self.slots[i];
        if let Some(mut j) = s.job.take() {
            self.c.busy.fetch_sub(1, Ordering::Relaxed);
            (j.req.sink)(Event::Error(e));
        }
    }

    fn cancel_all(&mut self) {
        for i in 0..self.slots.len() {
            self.finish(i, Finish::Cancelled);
        }
        while let Ok(mut r) = self.rx.try_recv() {
            self.c.queued.fetch_sub(1, Ordering::Relaxed);
            (r.sink)(Event::Done { text: String::new(), finish: Finish::Cancelled, usage: Usage::default() });
        }
    }
}
