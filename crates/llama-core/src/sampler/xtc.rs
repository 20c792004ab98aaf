//! `xtc` (exclude top choices): with probability `probability`, drop every token above the last
//! one whose p ≥ `threshold` (keeping that one), if at least `min_keep` remain. Its own seeded
//! `std::mt19937` draws one float per application.

use super::rng::{resolve_seed, Mt19937};
use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct Xtc {
    pub probability: f32,
    pub threshold: f32,
    pub min_keep: usize,
    seed: u32,
    rng: Mt19937,
}

impl Xtc {
    pub fn new(probability: f32, threshold: f32, min_keep: usize, seed: u32) -> Self {
        Xtc { probability, threshold, min_keep, seed, rng: Mt19937::new(resolve_seed(seed)) }
    }
}

impl Sampler for Xtc {
    fn name(&self) -> &'static str {
        "xtc"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.probability <= 0.0 || self.threshold > 0.5 || cur.data.len() < 2 {
            return;
        }
        let chance = self.rng.canonical_f32();
        if chance > self.probability {
            return;
        }
        cur.softmax(true);
        let mut pos_last = 0;
        for (i, t) in cur.data.iter().enumerate() {
            if t.p >= self.threshold {
                pos_last = i;
            } else {
                break;
            }
        }
        if cur.data.len() - pos_last >= self.min_keep && pos_last > 0 {
            cur.data.drain(..pos_last);
        }
    }

    fn reset(&mut self) {
        self.rng = Mt19937::new(resolve_seed(self.seed));
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
