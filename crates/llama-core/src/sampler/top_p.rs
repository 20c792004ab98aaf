//! `top-p` (nucleus): the smallest prefix of the sorted candidates whose probability mass reaches p
//! (at least `min_keep`). Over a large unsorted list llama.cpp first sorts only the top 256 and
//! widens to all when the mass is not reached there; reproduced, since it fixes the tie order.

use super::sort::bucket_partial_sort;
use super::{Candidates, Sampler, TokenData};

#[derive(Clone, Debug)]
pub struct TopP {
    pub p: f32,
    pub min_keep: usize,
    buf: Vec<TokenData>,
}

impl TopP {
    pub fn new(p: f32, min_keep: usize) -> Self {
        TopP { p, min_keep, buf: Vec::new() }
    }
}

impl Sampler for TopP {
    fn name(&self) -> &'static str {
        "top-p"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p >= 1.0 {
            return;
        }
        cur.softmax(false);
        let size = cur.data.len();
        let mut k = size;
        let mut use_buf = false;
        if !cur.sorted && size > 1024 {
            k = 256.min(size);
            bucket_partial_sort(&cur.data, k, &mut self.buf);
            use_buf = true;
        } else if !cur.sorted {
            cur.partial_sort_inplace(k);
        }
        let mut cum = 0.0f32;
        let mut last = size;
        let mut i = 0;
        while i < size {
            let p = if use_buf { self.buf[i].p } else { cur.data[i].p };
            cum += p;
            if cum >= self.p && i + 1 >= self.min_keep {
                last = i + 1;
                break;
            }
            if !cur.sorted && i == k - 1 {
                k = size;
                bucket_partial_sort(&cur.data, k, &mut self.buf);
                use_buf = true;
            }
            i += 1;
        }
        if !cur.sorted {
            cur.data.clear();
            cur.data.extend_from_slice(&self.buf[..last]);
            cur.sorted = true;
        }
        cur.data.truncate(last);
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(TopP::new(self.p, self.min_keep))
    }
}
