//! `min-p`: keep the tokens whose probability is at least p × the largest (logit ≥ max + ln p), at
//! least `min_keep`. Unsorted input keeps id order (a filter), sorted input a prefix.

use super::{Candidates, Sampler, TokenData};

#[derive(Clone, Debug)]
pub struct MinP {
    pub p: f32,
    pub min_keep: usize,
}

impl Sampler for MinP {
    fn name(&self) -> &'static str {
        "min-p"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p <= 0.0 || cur.data.is_empty() {
            return;
        }
        let mut applied = false;
        if !cur.sorted {
            let max_logit = cur.data.iter().fold(-f32::MAX, |m, t| m.max(t.logit));
            let min_logit = max_logit + self.p.ln();
            let kept: Vec<TokenData> = cur.data.iter().filter(|t| t.logit >= min_logit).copied().collect();
            if !kept.is_empty() && kept.len() >= self.min_keep {
                cur.data = kept;
                applied = true;
            }
        }
        if !applied {
            if !cur.sorted {
                let n = cur.data.len();
                cur.partial_sort_inplace(n);
            }
            let min_logit = cur.data[0].logit + self.p.ln();
            let mut i = 1;
            while i < cur.data.len() {
                if cur.data[i].logit < min_logit && i >= self.min_keep {
                    break;
                }
                i += 1;
            }
            cur.data.truncate(i);
        }
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
