//! `temp` (logits / t; t ≤ 0 keeps only the largest) and `temp-ext` (dynamic temperature from the
//! normalized entropy, llama.cpp's `llama_sampler_temp_ext_apply`).

use super::{Candidates, Sampler};

#[derive(Clone, Debug)]
pub struct Temp {
    pub temp: f32,
}

impl Sampler for Temp {
    fn name(&self) -> &'static str {
        "temp"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        cur.temp(self.temp);
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

#[derive(Clone, Debug)]
pub struct TempExt {
    pub temp: f32,
    pub delta: f32,
    pub exponent: f32,
}

impl Sampler for TempExt {
    fn name(&self) -> &'static str {
        "temp-ext"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.delta <= 0.0 {
            cur.temp(self.temp);
            return;
        }
        let min_temp = (self.temp - self.delta).max(0.0);
        let max_temp = self.temp + self.delta;
        if cur.data.len() <= 1 {
            return;
        }
        let max_entropy = -(1.0f32 / cur.data.len() as f32).ln();
        cur.softmax(true);
        let mut entropy = 0.0f32;
        for t in &cur.data {
            if t.p > 0.0 {
                entropy -= t.p * t.p.ln();
            }
        }
        let normalized = entropy / max_entropy;
        let dyn_temp = min_temp + (max_temp - min_temp) * normalized.powf(self.exponent);
        cur.temp(dyn_temp);
        // Probabilities again, in double as llama.cpp does here.
        let max_l = cur.data[0].logit as f64;
        let mut cum = 0.0f64;
        for t in cur.data.iter_mut() {
            let p = (t.logit as f64 - max_l).exp();
            t.p = p as f32;
            cum += p;
        }
        for t in cur.data.iter_mut() {
            t.p = (t.p as f64 / cum) as f32;
        }
    }

    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}
