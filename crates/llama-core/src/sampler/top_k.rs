//! `top-k`: keep the k largest logits, sorted (k ≤ 0 keeps all, unsorted).

use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct TopK {
    pub k: i32,
}

impl Sampler for TopK {
    fn name(&self) -> &'static str {
        "top-k"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        cur.top_k(self.k);
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
