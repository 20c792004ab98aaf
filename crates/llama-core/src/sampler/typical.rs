//! `typical` (locally typical sampling): order by |−log p − entropy| (libstdc++ `std::sort` of the
//! indices, so ties fall as there) and keep the prefix whose mass exceeds p. Leaves the list unsorted.

use super::{Candidates, Sampler, TokenData};

#[derive(Clone, Debug)]
pub struct Typical {
    pub p: f32,
    pub min_keep: usize,
}

impl Sampler for Typical {
    fn name(&self) -> &'static str {
        "typical"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p >= 1.0 {
            return;
        }
        cur.softmax(true);
        let mut entropy = 0.0f32;
        for t in &cur.data {
            entropy += -t.p * t.p.ln();
        }
        // Sort the indices by shifted score ascending with the same std::sort: encode each index as
        // a TokenData whose "logit" is the negated score (the comparator is logit-descending).
        let mut idx: Vec<TokenData> = cur
            .data
            .iter()
            .enumerate()
            .map(|(i, t)| TokenData { id: i as u32, logit: -(-t.p.ln() - entropy).abs(), p: 0.0 })
            .collect();
        super::sort::sort(&mut idx);
        let mut cum = 0.0f32;
        let mut last = idx.len();
        for (i, e) in idx.iter().enumerate() {
            cum += cur.data[e.id as usize].p;
            if cum > self.p && (self.min_keep == 0 || i + 1 >= self.min_keep) {
                last = i + 1;
                break;
            }
        }
        let new: Vec<TokenData> = idx[..last].iter().map(|e| cur.data[e.id as usize]).collect();
        cur.data = new;
        cur.sorted = false;
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
