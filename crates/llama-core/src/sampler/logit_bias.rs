//! `logit-bias`: add a bias to chosen tokens' logits. llama-cpp-python applies `logit_bias` as a
//! logits processor in Python (`new = bias + score` in double, stored back as float32), before any
//! sampler stage; this stage computes it the same way and belongs first in the chain.

use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct LogitBias {
    /// (token, bias), applied in order (a later entry for the same token adds to the earlier one).
    pub bias: Vec<(u32, f64)>,
}

impl Sampler for LogitBias {
    fn name(&self) -> &'static str {
        "logit-bias"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.bias.is_empty() {
            return;
        }
        for &(id, b) in &self.bias {
            // The full vocabulary in id order (the chain's first stage) has token t at index t.
            let slot = if cur.data.get(id as usize).is_some_and(|t| t.id == id) {
                Some(id as usize)
            } else {
                cur.data.iter().position(|t| t.id == id)
            };
            if let Some(i) = slot {
                cur.data[i].logit = (b + cur.data[i].logit as f64) as f32;
            }
        }
        cur.sorted = false;
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
