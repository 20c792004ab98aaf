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
pub mod grammar;
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
    /// A failure inside `apply`/`accept` (a grammar that rejected the token), taken by the chain
    /// after each step; stages that cannot fail keep the default.
    fn check(&mut self) -> Result<()> {
        Ok(())
    }
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

    /// Put a full-vocabulary stage where llama-cpp-python's `_init_sampler` adds its grammar:
    /// after the element-wise stages (logit bias, penalties), before the first stage that sorts,
    /// truncates or selects.
    pub fn insert_grammar(&mut self, s: Box<dyn Sampler>) -> &mut Self {
        let at = self.stages.iter().position(|st| !matches!(st.name(), "logit-bias" | "penalties"));
        self.stages.insert(at.unwrap_or(self.stages.len()), s);
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
        self.check()?;
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
        self.check()?;
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

    fn check(&mut self) -> Result<()> {
        for s in self.stages.iter_mut() {
            s.check()?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(stages: &[(&str, &[(&str, f64)])]) -> Chain {
        let specs: Vec<StageSpec> =
            stages.iter().map(|(n, a)| (n.to_string(), a.iter().map(|(k, v)| (k.to_string(), *v)).collect())).collect();
        params::chain_from_names(&specs).unwrap()
    }

    #[test]
    fn sorts_order_by_logit_descending() {
        let mut x = 0x2545_f491u32;
        let mut v: Vec<TokenData> = (0..3000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                TokenData { id: i, logit: (x % 200) as f32 / 10.0 - 10.0, p: 0.0 }
            })
            .collect();
        let mut full = v.clone();
        sort::sort(&mut full);
        assert!(full.windows(2).all(|w| w[0].logit >= w[1].logit));
        let mut ids: Vec<u32> = full.iter().map(|t| t.id).collect();
        ids.sort();
        assert_eq!(ids, (0..3000).collect::<Vec<_>>());
        let mut c = Candidates { data: v.clone(), ..Default::default() };
        c.partial_sort_inplace(500);
        assert_eq!(c.len(), 500);
        let logits: Vec<f32> = c.data.iter().map(|t| t.logit).collect();
        let want: Vec<f32> = full[..500].iter().map(|t| t.logit).collect();
        assert_eq!(logits, want);
        sort::partial_sort(&mut v, 50);
        assert!(v[..50].iter().zip(&full[..50]).all(|(a, b)| a.logit == b.logit));
    }

    #[test]
    fn greedy_takes_the_first_argmax_and_a_masked_token_is_never_drawn() {
        let mut g = chain(&[("greedy", &[])]);
        assert_eq!(g.sample(&[0.1, 3.0, -1.0, 3.0]).unwrap(), 1);
        // A full-vocabulary stage in front that masks with -inf (the grammar slot).
        #[derive(Clone)]
        struct Mask(u32);
        impl Sampler for Mask {
            fn name(&self) -> &'static str {
                "mask"
            }
            fn apply(&mut self, cur: &mut Candidates) {
                assert!(!cur.sorted && cur.data[self.0 as usize].id == self.0, "sees the vocabulary in id order");
                cur.data[self.0 as usize].logit = f32::NEG_INFINITY;
            }
            fn clone_box(&self) -> Box<dyn Sampler> {
                Box::new(self.clone())
            }
        }
        let mut c = ChainParams { temp: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 3, ..ChainParams::new(4) }
            .build()
            .unwrap();
        c.push_front(Box::new(Mask(2)));
        for _ in 0..500 {
            assert_ne!(c.sample(&[1.0, 1.0, 5.0, 1.0]).unwrap(), 2);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut g = chain(&[("top_k", &[("k", 2.0)])]);
        assert!(g.sample(&[1.0, 2.0]).is_err(), "no selecting stage");
        assert!(g.sample(&[]).is_err());
        assert!(g.sample(&[f32::NAN]).is_err());
        assert!(params::stage_from_name("nope", &[]).is_err());
        assert!(params::stage_from_name("top_k", &[("q".into(), 1.0)]).is_err());
        let p = ChainParams { mirostat_mode: 5, ..ChainParams::new(10) };
        assert!(p.build().is_err());
        let p = ChainParams { logit_bias: vec![(10, 1.0)], ..ChainParams::new(10) };
        assert!(p.build().is_err());
    }
}
