//! Mirostat v1 and v2 (target surprise `tau`, learning rate `eta`): each selects the token itself
//! with a seeded `std::mt19937` through libstdc++'s `discrete_distribution`, then moves `mu`.

use super::rng::{c_int, discrete, resolve_seed, Mt19937};
use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct Mirostat {
    pub n_vocab: i32,
    pub tau: f32,
    pub eta: f32,
    pub m: i32,
    mu: f32,
    seed: u32,
    rng: Mt19937,
    cp: Vec<f64>,
}

impl Mirostat {
    pub fn new(n_vocab: i32, seed: u32, tau: f32, eta: f32, m: i32) -> Self {
        Mirostat { n_vocab, tau, eta, m, mu: 2.0 * tau, seed, rng: Mt19937::new(resolve_seed(seed)), cp: Vec::new() }
    }
}

impl Sampler for Mirostat {
    fn name(&self) -> &'static str {
        "mirostat"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        cur.softmax(true);
        // Estimate s_hat from the m most probable tokens.
        let mut sum_ti_bi = 0.0f32;
        let mut sum_ti_sq = 0.0f32;
        let mut i = 0usize;
        while (i as i64) < (self.m as i64 - 1) && i + 1 < cur.data.len() {
            let t_i = ((i + 2) as f32 / (i + 1) as f32).ln();
            let b_i = (cur.data[i].p / cur.data[i + 1].p).ln();
            sum_ti_bi += t_i * b_i;
            sum_ti_sq += t_i * t_i;
            i += 1;
        }
        let s_hat = sum_ti_bi / sum_ti_sq;
        let epsilon_hat = s_hat - 1.0;
        let k =
            ((epsilon_hat * 2.0f32.powf(self.mu)) / (1.0 - (self.n_vocab as f32).powf(-epsilon_hat))).powf(1.0 / s_hat);
        cur.top_k(c_int(k).max(1));
        cur.softmax(true);
        let idx = discrete(cur.data.iter().map(|t| t.p), &mut self.rng, &mut self.cp);
        cur.selected = Some(idx);
        let observed = -cur.data[idx].p.log2();
        self.mu -= self.eta * (observed - self.tau);
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.tau;
        self.rng = Mt19937::new(resolve_seed(self.seed));
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[derive(Clone, Debug)]
pub struct MirostatV2 {
    pub tau: f32,
    pub eta: f32,
    mu: f32,
    seed: u32,
    rng: Mt19937,
    cp: Vec<f64>,
}

impl MirostatV2 {
    pub fn new(seed: u32, tau: f32, eta: f32) -> Self {
        MirostatV2 { tau, eta, mu: 2.0 * tau, seed, rng: Mt19937::new(resolve_seed(seed)), cp: Vec::new() }
    }
}

impl Sampler for MirostatV2 {
    fn name(&self) -> &'static str {
        "mirostat-v2"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        cur.softmax(true);
        let keep = cur.data.iter().position(|t| -t.p.log2() > self.mu).unwrap_or(cur.data.len());
        cur.data.truncate(keep.max(1));
        cur.softmax(true);
        let idx = discrete(cur.data.iter().map(|t| t.p), &mut self.rng, &mut self.cp);
        cur.selected = Some(idx);
        let observed = -cur.data[idx].p.log2();
        self.mu -= self.eta * (observed - self.tau);
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.tau;
        self.rng = Mt19937::new(resolve_seed(self.seed));
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
