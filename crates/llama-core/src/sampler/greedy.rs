//! `greedy`: select the largest logit (the first one on ties).

use super::{Candidates, Sampler};

#[derive(Clone, Debug, Default)]
pub struct Greedy;

impl Sampler for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        let mut sel = 0;
        for i in 1..cur.data.len() {
            if cur.data[i].logit > cur.data[sel].logit {
                sel = i;
            }
        }
        cur.selected = Some(sel);
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
