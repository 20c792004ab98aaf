//! `penalties`: repeat (divide a positive logit, multiply a negative one), frequency (× count) and
//! presence penalties over the last `last_n` accepted tokens. As in llama.cpp only tokens the chain
//! accepted count: the prompt is not in the window.

use std::collections::{HashMap, VecDeque};

use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct Penalties {
    pub last_n: usize,
    pub repeat: f32,
    pub freq: f32,
    pub present: f32,
    prev: VecDeque<u32>,
    count: HashMap<u32, u32>,
}

impl Penalties {
    /// `last_n` < 0 is taken as 0 (disabled), as llama.cpp does.
    pub fn new(last_n: i32, repeat: f32, freq: f32, present: f32) -> Self {
        let last_n = last_n.max(0) as usize;
        Penalties { last_n, repeat, freq, present, prev: VecDeque::with_capacity(last_n), count: HashMap::new() }
    }

    pub fn is_disabled(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.freq == 0.0 && self.present == 0.0)
    }
}

impl Sampler for Penalties {
    fn name(&self) -> &'static str {
        "penalties"
    }

    fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        *self.count.entry(token).or_insert(0) += 1;
        if self.prev.len() >= self.last_n {
            if let Some(old) = self.prev.pop_front() {
                if let Some(c) = self.count.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.count.remove(&old);
                    }
                }
            }
        }
        self.prev.push_back(token);
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.is_disabled() {
            return;
        }
        for t in cur.data.iter_mut() {
            let Some(&count) = self.count.get(&t.id) else { continue };
            if t.logit <= 0.0 {
                t.logit *= self.repeat;
            } else {
                t.logit /= self.repeat;
            }
            t.logit -= count as f32 * self.freq + (count > 0) as u32 as f32 * self.present;
        }
        cur.sorted = false;
    }

    fn reset(&mut self) {
        self.prev.clear();
        self.count.clear();
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
