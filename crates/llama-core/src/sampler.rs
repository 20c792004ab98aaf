//! Token sampling, in llama.cpp's chain order (as llama-cpp-python sets it up):
//! penalties → top-k → top-p → min-p → temperature → draw. Temperature ≤ 0 is greedy.
//! The RNG is seeded, so the same seed gives the same text.

use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct SamplerParams {
    pub temp: f32,
    /// ≤ 0 keeps every token.
    pub top_k: i32,
    /// ≥ 1 disables.
    pub top_p: f32,
    /// ≤ 0 disables.
    pub min_p: f32,
    /// 1 disables. Applied to the last `penalty_last_n` tokens.
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// How many recent tokens the penalties look at (llama.cpp default 64).
    pub penalty_last_n: usize,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
        }
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and reproducible across platforms.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// A seed from the clock, for seed = -1 ("random").
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng::new(t ^ (std::process::id() as u64).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A (token, logit) candidate list reused across calls, so sampling does not allocate per token.
#[derive(Default)]
pub struct Sampler {
    cand: Vec<(u32, f32)>, // [n_vocab] (id, logit), shrinks as filters apply
    probs: Vec<f32>,       // [n_cand]
    counts: std::collections::HashMap<u32, u32>,
}

impl Sampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the repeat / frequency / presence penalties in place, as llama.cpp does: a token seen
    /// `c` times in the window has its logit divided by `repeat_penalty` (multiplied when negative),
    /// then lowered by `c * frequency_penalty + presence_penalty`.
    pub fn apply_penalties(&mut self, logits: &mut [f32], recent: &[u32], p: &SamplerParams) {
        let disabled = p.repeat_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0;
        if disabled || p.penalty_last_n == 0 || recent.is_empty() {
            return;
        }
        let window = &recent[recent.len().saturating_sub(p.penalty_last_n)..];
        self.counts.clear();
        for &t in window {
            *self.counts.entry(t).or_insert(0) += 1;
        }
        for (&t, &c) in &self.counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Picks the next token. `logits` is one row of n_vocab (it is modified by the penalties);
    /// `recent` is the token history the penalties look at.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32], p: &SamplerParams, rng: &mut Rng) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidArgument("sampling from empty logits".into()));
        }
        if logits.iter().any(|x| x.is_nan()) {
            return Err(Error::InvalidArgument("logits contain NaN".into()));
        }
        self.apply_penalties(logits, recent, p);
        if p.temp <= 0.0 {
            return Ok(argmax(logits));
        }
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));

        // top-k: partial selection then sort of the survivors only (vocabularies reach 262k).
        let k = if p.top_k <= 0 { self.cand.len() } else { (p.top_k as usize).min(self.cand.len()) };
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_logit_desc);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(by_logit_desc);

        // top-p over the softmax of what is left; keep at least one.
        if p.top_p < 1.0 {
            self.softmax();
            let mut cum = 0.0f32;
            let mut keep = self.cand.len();
            for (i, &pr) in self.probs.iter().enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }

        // min-p relative to the most likely token: keep logit ≥ max + ln(min_p).
        if p.min_p > 0.0 && p.min_p <= 1.0 {
            let floor = self.cand[0].1 + p.min_p.ln();
            let keep = self.cand.iter().take_while(|c| c.1 >= floor).count();
            self.cand.truncate(keep.max(1));
        }

        for c in self.cand.iter_mut() {
            c.1 /= p.temp;
        }
        self.softmax();
        let r = rng.next_f64() as f32;
        let mut cum = 0.0f32;
        for (i, &pr) in self.probs.iter().enumerate() {
            cum += pr;
            if r < cum {
                return Ok(self.cand[i].0);
            }
        }
        Ok(self.cand[self.cand.len() - 1].0)
    }

    /// probs = softmax(cand logits); cand is sorted descending so cand[0] holds the max.
    fn softmax(&mut self) {
        let max = self.cand[0].1;
        self.probs.clear();
        self.probs.extend(self.cand.iter().map(|c| (c.1 - max).exp()));
        let sum: f32 = self.probs.iter().sum();
        for x in self.probs.iter_mut() {
            *x /= sum;
        }
    }
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

    fn params(temp: f32) -> SamplerParams {
        SamplerParams { temp, ..Default::default() }
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new();
        let mut l = vec![0.1, 3.0, -1.0, 2.9];
        assert_eq!(s.sample(&mut l, &[], &params(0.0), &mut Rng::new(1)).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_draws_and_distribution_follows_softmax() {
        let logits = vec![0.0f32, (2.0f32).ln(), (3.0f32).ln(), -100.0];
        let p = SamplerParams { temp: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() };
        let draw = |seed| {
            let mut s = Sampler::new();
            let mut rng = Rng::new(seed);
            (0..6000).map(|_| s.sample(&mut logits.clone(), &[], &p, &mut rng).unwrap()).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let frac = |t| a.iter().filter(|&&x| x == t).count() as f64 / a.len() as f64;
        // softmax of ln(1), ln(2), ln(3) is 1/6, 2/6, 3/6
        assert!((frac(0) - 1.0 / 6.0).abs() < 0.02, "{}", frac(0));
        assert!((frac(2) - 0.5).abs() < 0.02, "{}", frac(2));
        assert_eq!(frac(3), 0.0);
    }

    #[test]
    fn top_k_one_is_greedy_and_min_p_prunes() {
        let mut s = Sampler::new();
        let p = SamplerParams { temp: 1.0, top_k: 1, ..Default::default() };
        for seed in 0..20 {
            assert_eq!(s.sample(&mut [1.0, 5.0, 4.9], &[], &p, &mut Rng::new(seed)).unwrap(), 1);
        }
        // min_p 0.5: token 2 has p ratio e^-1 ≈ 0.37 < 0.5 → pruned.
        let p = SamplerParams { temp: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, ..Default::default() };
        for seed in 0..50 {
            assert_eq!(s.sample(&mut [-9.0, 5.0, 4.0], &[], &p, &mut Rng::new(seed)).unwrap(), 1);
        }
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let mut s = Sampler::new();
        let p =
            SamplerParams { repeat_penalty: 2.0, frequency_penalty: 0.5, presence_penalty: 0.25, ..Default::default() };
        let mut l = vec![4.0, -4.0, 1.0];
        s.apply_penalties(&mut l, &[0, 0, 1], &p);
        assert_eq!(l, vec![4.0 / 2.0 - 2.0 * 0.5 - 0.25, -4.0 * 2.0 - 0.5 - 0.25, 1.0]);
    }

    #[test]
    fn nan_logits_are_an_error() {
        let mut s = Sampler::new();
        assert!(s.sample(&mut [f32::NAN], &[], &params(0.8), &mut Rng::new(0)).is_err());
    }
}
