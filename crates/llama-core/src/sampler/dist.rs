//! `dist`: draw from softmax(logits) with a seeded `std::mt19937`, as llama.cpp's
//! `llama_sampler_dist_apply`: f32 exps summed in f64, one canonical double draw, the first running
//! sum ≥ draw × total; p normalized in the same pass.

use super::rng::{resolve_seed, Mt19937};
use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct Dist {
    seed: u32,
    rng: Mt19937,
}

impl Dist {
    pub fn new(seed: u32) -> Self {
        Dist { seed, rng: Mt19937::new(resolve_seed(seed)) }
    }
}

impl Sampler for Dist {
    fn name(&self) -> &'static str {
        "dist"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if cur.data.is_empty() {
            cur.selected = None;
            return;
        }
        cur.selected = Some(0);
        if cur.data.len() == 1 {
            self.rng.canonical_f64(); // llama.cpp draws once per output even then
            cur.data[0].p = 1.0;
            return;
        }
        let mut max_l = cur.data[0].logit;
        if !cur.sorted {
            for t in &cur.data[1..] {
                max_l = max_l.max(t.logit);
            }
        }
        let mut sum_cum = 0.0f64;
        for t in cur.data.iter_mut() {
            t.p = (t.logit - max_l).exp();
            sum_cum += t.p as f64;
        }
        let rnd = self.rng.canonical_f64();
        let sum_tgt = sum_cum * rnd;
        let mut sum_run = 0.0f64;
        let mut found = None;
        for (i, t) in cur.data.iter_mut().enumerate() {
            if found.is_none() {
                sum_run += t.p as f64;
                if sum_run >= sum_tgt {
                    found = Some(i);
                }
            }
            t.p = (t.p as f64 / sum_cum) as f32;
        }
        cur.selected = Some(found.unwrap_or(cur.data.len() - 1));
    }

    fn reset(&mut self) {
        self.rng = Mt19937::new(resolve_seed(self.seed));
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
