//! Where chains are built: from llama-cpp-python's sampling arguments ([`ChainParams::build`], the
//! same chain its `Llama._init_sampler` builds), or stage by stage from names ([`stage_from_name`],
//! for callers that assemble their own chain, and for the tests against llama.cpp's samplers).

use super::dist::Dist;
use super::greedy::Greedy;
use super::logit_bias::LogitBias;
use super::min_p::MinP;
use super::mirostat::{Mirostat, MirostatV2};
use super::penalties::Penalties;
use super::temp::{Temp, TempExt};
use super::top_k::TopK;
use super::top_p::TopP;
use super::typical::Typical;
use super::xtc::Xtc;
use super::{Chain, Sampler};
use crate::{Error, Result};

/// llama-cpp-python's sampling arguments (`Llama.sample` / `generate` / `create_completion`), with
/// its defaults.
#[derive(Clone, Debug)]
pub struct ChainParams {
    pub n_vocab: usize,
    /// < 0: draw from the full softmax (after penalties); 0: greedy; > 0: the filter chain.
    pub temp: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// `Llama(last_n_tokens_size=64)`.
    pub penalty_last_n: i32,
    /// 0 off, 1 mirostat, 2 mirostat v2.
    pub mirostat_mode: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    /// (token, bias) added first, as llama-cpp-python's logit-bias processor.
    pub logit_bias: Vec<(u32, f64)>,
    /// The seed of `dist`/mirostat; 0xFFFFFFFF (LLAMA_DEFAULT_SEED) draws one.
    pub seed: u32,
    /// XTC, which llama-cpp-python's high-level API does not expose (probability 0: off). When on
    /// it goes after min-p, before temperature, as in llama.cpp's common sampler order.
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    /// Dynamic temperature range (temp-ext); 0 is plain temperature.
    pub dynatemp_range: f32,
    pub dynatemp_exponent: f32,
}

impl ChainParams {
    pub fn new(n_vocab: usize) -> Self {
        ChainParams {
            n_vocab,
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            mirostat_mode: 0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
            logit_bias: Vec::new(),
            seed: super::rng::DEFAULT_SEED,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
        }
    }

    /// The chain `Llama._init_sampler` builds: [logit-bias] → penalties → (temp < 0: dist |
    /// temp = 0: greedy | mirostat | mirostat v2 | top-k → typical → top-p → min-p → [xtc] → temp →
    /// dist). min_keep is 1 everywhere, as there.
    pub fn build(&self) -> Result<Chain> {
        self.check()?;
        let mut c = Chain::new();
        if !self.logit_bias.is_empty() {
            c.push(Box::new(LogitBias { bias: self.logit_bias.clone() }));
        }
        c.push(Box::new(Penalties::new(
            self.penalty_last_n,
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        )));
        if self.temp < 0.0 {
            c.push(Box::new(Dist::new(self.seed)));
        } else if self.temp == 0.0 {
            c.push(Box::new(Greedy));
        } else if self.mirostat_mode == 1 {
            c.push(Box::new(Mirostat::new(self.n_vocab as i32, self.seed, self.mirostat_tau, self.mirostat_eta, 100)));
        } else if self.mirostat_mode == 2 {
            c.push(Box::new(MirostatV2::new(self.seed, self.mirostat_tau, self.mirostat_eta)));
        } else {
            let min_keep = 1;
            c.push(Box::new(TopK { k: self.top_k }));
            c.push(Box::new(Typical { p: self.typical_p, min_keep }));
            c.push(Box::new(TopP::new(self.top_p, min_keep)));
            c.push(Box::new(MinP { p: self.min_p, min_keep }));
            if self.xtc_probability > 0.0 {
                c.push(Box::new(Xtc::new(self.xtc_probability, self.xtc_threshold, min_keep, self.seed)));
            }
            if self.dynatemp_range > 0.0 {
                c.push(Box::new(TempExt {
                    temp: self.temp,
                    delta: self.dynatemp_range,
                    exponent: self.dynatemp_exponent,
                }));
            } else {
                c.push(Box::new(Temp { temp: self.temp }));
            }
            c.push(Box::new(Dist::new(self.seed)));
        }
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_string()));
        let finite = [
            ("temperature", self.temp),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("typical_p", self.typical_p),
            ("repeat_penalty", self.repeat_penalty),
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
            ("mirostat_tau", self.mirostat_tau),
            ("mirostat_eta", self.mirostat_eta),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return bad(&format!("{name} must be a finite number (got {v})"));
            }
        }
        if !(0..=2).contains(&self.mirostat_mode) {
            return bad(&format!("mirostat_mode must be 0, 1 or 2 (got {})", self.mirostat_mode));
        }
        if self.n_vocab == 0 {
            return bad("n_vocab must be > 0");
        }
        for &(id, b) in &self.logit_bias {
            if id as usize >= self.n_vocab {
                return bad(&format!("logit_bias token {id} is not in the vocabulary (n_vocab {})", self.n_vocab));
            }
            if b.is_nan() {
                return bad(&format!("logit_bias for token {id} is NaN"));
            }
        }
        Ok(())
    }
}

/// One stage's arguments by name (numbers; ints are passed as floats).
pub type StageSpec = (String, Vec<(String, f64)>);

/// A stage from its llama.cpp name and arguments, as `llama_sampler_init_<name>` takes them:
/// greedy; dist(seed); top_k(k); top_p(p, min_keep=1); min_p(p, min_keep=1); typical(p,
/// min_keep=1); temp(t); temp_ext(t, delta, exponent); xtc(p, t, min_keep=1, seed);
/// penalties(last_n, repeat, freq, present); mirostat(n_vocab, seed, tau, eta, m=100);
/// mirostat_v2(seed, tau, eta). Missing arguments take those defaults (seed: LLAMA_DEFAULT_SEED).
pub fn stage_from_name(name: &str, args: &[(String, f64)]) -> Result<Box<dyn Sampler>> {
    let known: &[&str] = match name {
        "greedy" => &[],
        "dist" => &["seed"],
        "top_k" => &["k"],
        "top_p" | "min_p" | "typical" => &["p", "min_keep"],
        "temp" => &["t"],
        "temp_ext" => &["t", "delta", "exponent"],
        "xtc" => &["p", "t", "min_keep", "seed"],
        "penalties" => &["last_n", "repeat", "freq", "present"],
        "mirostat" => &["n_vocab", "seed", "tau", "eta", "m"],
        "mirostat_v2" => &["seed", "tau", "eta"],
        _ => return Err(Error::InvalidArgument(format!("unknown sampler stage '{name}'"))),
    };
    for (k, v) in args {
        if !known.contains(&k.as_str()) {
            return Err(Error::InvalidArgument(format!("sampler stage '{name}' has no argument '{k}'")));
        }
        if v.is_nan() {
            return Err(Error::InvalidArgument(format!("sampler stage '{name}': {k} is NaN")));
        }
    }
    let get = |k: &str, default: f64| args.iter().rev().find(|(n, _)| n == k).map_or(default, |a| a.1);
    let seed = get("seed", super::rng::DEFAULT_SEED as f64) as i64 as u32;
    let keep = get("min_keep", 1.0).max(0.0) as usize;
    Ok(match name {
        "greedy" => Box::new(Greedy),
        "dist" => Box::new(Dist::new(seed)),
        "top_k" => Box::new(TopK { k: get("k", 40.0) as i32 }),
        "top_p" => Box::new(TopP::new(get("p", 0.95) as f32, keep)),
        "min_p" => Box::new(MinP { p: get("p", 0.05) as f32, min_keep: keep }),
        "typical" => Box::new(Typical { p: get("p", 1.0) as f32, min_keep: keep }),
        "temp" => Box::new(Temp { temp: get("t", 0.8) as f32 }),
        "temp_ext" => Box::new(TempExt {
            temp: get("t", 0.8) as f32,
            delta: get("delta", 0.0) as f32,
            exponent: get("exponent", 1.0) as f32,
        }),
        "xtc" => Box::new(Xtc::new(get("p", 0.0) as f32, get("t", 0.1) as f32, keep, seed)),
        "penalties" => Box::new(Penalties::new(
            get("last_n", 64.0) as i32,
            get("repeat", 1.0) as f32,
            get("freq", 0.0) as f32,
            get("present", 0.0) as f32,
        )),
        "mirostat" => Box::new(Mirostat::new(
            get("n_vocab", 0.0) as i32,
            seed,
            get("tau", 5.0) as f32,
            get("eta", 0.1) as f32,
            get("m", 100.0) as i32,
        )),
        "mirostat_v2" => Box::new(MirostatV2::new(seed, get("tau", 5.0) as f32, get("eta", 0.1) as f32)),
        _ => unreachable!("names checked above"),
    })
}

/// A chain of named stages (see [`stage_from_name`]).
pub fn chain_from_names(stages: &[StageSpec]) -> Result<Chain> {
    let mut c = Chain::new();
    for (name, args) in stages {
        c.push(stage_from_name(name, args)?);
    }
    Ok(c)
}
