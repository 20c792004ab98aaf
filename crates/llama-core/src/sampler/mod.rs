//! Token sampling as a chain of stages, in the shape of llama.cpp's `llama_sampler_i`
//! (src/llama-sampler.cpp): each stage `apply`s to a candidate list (id, logit, p), may reorder or
//! shrink it, and one stage at the end (`greedy`, `dist`, a mirostat) sets `selected`; after the
//! pick every stage is told the token (`accept`: penalties remember it). The arithmetic, the sort
//! algorithms and the random draws are llama.cpp's (libstdc++'s `std::sort`/`std::partial_sort`,
//! `std::mt19937`, `generate_canonical`), so the same chain and seed pick the same tokens as
//! llama-cpp-python.
//!
//! Adding a stage: one file here with a type implementing [`Sampler`], and one line where chains
//! are built ([`params::ChainParams::build`] or [`params::stage_from_name`]).
//!
//! A stage that needs the full vocabulary (a grammar mask) goes first ([`Chain::push_front`]) and
//! masks tokens by setting their logit to `-inf`: every later stage treats them as impossible.

pub mod dist;
pub mod greedy;
pub mod logit_bias;
pub mod min_p;
pub mod mirostat;
pub mod params;
pub mod penalties;
pub mod rng;
pub mod sort;
pub mod temp;
pub mod top_k;
pub mod top_p;
pub mod typical;
pub mod xtc;

use crate::{Error, Result};

pub use params::{ChainParams, StageSpec};
pub use rng::Mt19937;

/// One candidate token: `llama_token_data`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenData {
    pub id: u32,
    pub logit: f32,
    /// Probability, written by the stages that compute a softmax (0 before).
    pub p: f32,
}

/// `llama_token_data_array`: the candidates, whether they are sorted by logit (descending), and
/// the index of the chosen one once a selecting stage ran.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    pub data: Vec<TokenData>, // [n_cand]
    pub sorted: bool,
    pub selected: Option<usize>,
    /// Scratch for the sorts (reused between tokens).
    tmp: Vec<TokenData>,
}

impl Candidates {
    /// Every token of a logit row, in id order, unsorted, none selected.
    pub fn from_logits(logits: &[f32]) -> Self {
        let mut c = Candidates::default();
        c.fill(logits);
        c
    }

    /// Refill from a logit row (keeps the allocation).
    pub fn fill(&mut self, logits: &[f32]) {
        self.data.clear();
        self.data.extend(logits.iter().enumerate().map(|(i, &logit)| TokenData { id: i as u32, logit, p: 0.0 }));
        self.sorted = false;
        self.selected = None;
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// `llama_token_data_array_partial_sort_inplace`: keep the `n` largest logits, sorted.
    pub fn partial_sort_inplace(&mut self, n: usize) {
        sort::partial_sort_inplace(&mut self.data, n, &mut self.tmp);
        self.sorted = true;
    }

    /// `llama_sampler_softmax_impl`: p = softmax(logit) in f32 (max subtracted, expf, one running
    /// sum), sorting first when `do_sort` and not yet sorted.
    pub fn softmax(&mut self, do_sort: bool) {
        assert!(!self.data.is_empty(), "softmax over no candidates");
        if do_sort && !self.sorted {
            let n = self.data.len();
            self.partial_sort_inplace(n);
        }
        let mut max_l = self.data[0].logit;
        if !self.sorted {
            for t in &self.data[1..] {
                max_l = max_l.max(t.logit);
            }
        }
        let mut cum = 0.0f32;
        for t in self.data.iter_mut() {
            t.p = (t.logit - max_l).exp();
            cum += t.p;
        }
        for t in self.data.iter_mut() {
            t.p /= cum;
        }
    }

    /// `llama_sampler_top_k_impl`.
    pub fn top_k(&mut self, k: i32) {
        if k <= 0 {
            return;
        }
        let k = (k as usize).min(self.data.len());
        if !self.sorted {
            self.partial_sort_inplace(k);
        }
        self.data.truncate(k);
    }

    /// `llama_sampler_temp_impl`: ≤ 0 keeps only the (first) largest logit finite.
    pub fn temp(&mut self, temp: f32) {
        if self.data.is_empty() {
            return;
        }
        if temp <= 0.0 {
            let mut max_i = 0;
            let mut max_l = self.data[0].logit;
            for i in 1..self.data.len() {
                if self.data[i].logit > max_l {
                    self.data[max_i].logit = f32::NEG_INFINITY;
                    max_i = i;
                    max_l = self.data[i].logit;
                } else {
                    self.data[i].logit = f32::NEG_INFINITY;
                }
            }
            return;
        }
        for t in self.data.iter_mut() {
            t.logit /= temp;
        }
    }
}

/// One stage of a chain: `llama_sampler_i`.
pub trait Sampler: Send {
    fn name(&self) -> &'static str;
    /// Filter, rescale or reorder the candidates; a selecting stage sets `cur.selected`.
    fn apply(&mut self, cur: &mut Candidates);
    /// The token finally chosen (penalties count it).
    fn accept(&mut self, _token: u32) {}
    /// Back to the state after construction (RNG reseeded, history forgotten).
    fn reset(&mut self) {}
    fn clone_box(&self) -> Box<dyn Sampler>;
}

impl Clone for Box<dyn Sampler> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// `llama_sampler_chain`: the stages in order, and the candidate buffer reused between tokens.
#[derive(Clone, Default)]
pub struct Chain {
    stages: Vec<Box<dyn Sampler>>,
    cur: Candidates,
}

impl Chain {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, s: Box<dyn Sampler>) -> &mut Self {
        self.stages.push(s);
        self
    }

    /// Put a stage before all others: it sees the full vocabulary in id order (a grammar mask).
    pub fn push_front(&mut self, s: Box<dyn Sampler>) -> &mut Self {
        self.stages.insert(0, s);
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// The candidates after the last `sample`/`apply_logits` (what survived every stage).
    pub fn candidates(&self) -> &Candidates {
        &self.cur
    }

    /// Runs every stage over the candidates of `logits` without accepting anything; returns them.
    pub fn apply_logits(&mut self, logits: &[f32]) -> Result<&Candidates> {
        check_logits(logits)?;
        let mut cur = std::mem::take(&mut self.cur);
        cur.fill(logits);
        self.apply(&mut cur);
        self.cur = cur;
        Ok(&self.cur)
    }

    /// `llama_sampler_sample`: candidates from the row, every stage applied, the selected token
    /// accepted by every stage and returned.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        self.apply_logits(logits)?;
        let cur = &self.cur;
        let token = match cur.selected {
            Some(i) if i < cur.data.len() => cur.data[i].id,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "the sampler chain [{}] selected no token (end it with greedy, dist or mirostat)",
                    self.names().join(", ")
                )))
            }
        };
        self.accept(token);
        Ok(token)
    }
}

impl Sampler for Chain {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        for s in self.stages.iter_mut() {
            if cur.data.is_empty() {
                break;
            }
            s.apply(cur);
        }
    }

    fn accept(&mut self, token: u32) {
        for s in self.stages.iter_mut() {
            s.accept(token);
        }
    }

    fn reset(&mut self) {
        for s in self.stages.iter_mut() {
            s.reset();
        }
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::InvalidArgument("sampling from empty logits".into()));
    }
    if logits.iter().any(|x| x.is_nan()) {
        return Err(Error::InvalidArgument("logits contain NaN".into()));
    }
    Ok(())
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
