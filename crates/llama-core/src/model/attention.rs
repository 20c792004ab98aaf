//! Causal multi-head attention over the KV cache, with grouped-query heads and an optional
//! sliding window. Mirrors llama.cpp's non-flash path numerically: KQ = K·Q with Q converted to the
//! cache type, softmax(KQ * scale + mask) in f32, then V·softmax with the probabilities converted
//! to the cache type (ggml's mul_mat converts src1 to the vec_dot type of the f16 cache).

use std::sync::Mutex;

use super::kv_cache::{KvElem, LayerKv};
use super::ops::softmax_inplace;
use crate::cpu::ThreadPool;

/// Per-thread work space, preallocated by the context.
pub struct AttnScratch {
    pub scores: Vec<f32>, // [n_ctx]
    pub qr: Vec<f32>,     // [n_embd_head_k] query rounded to the cache type
    pub out: Vec<f32>,    // [n_batch*n_head][n_embd_head_v] this thread's slice of the result
}

impl AttnScratch {
    pub fn new(n_ctx: usize, n_batch: usize, n_head: usize, head_k: usize, head_v: usize) -> Self {
        AttnScratch {
            scores: vec![0.0; n_ctx],
            qr: vec![0.0; head_k],
            out: vec![0.0; n_batch * n_head * head_v],
        }
    }
}

/// Shapes of one attention call.
#[derive(Clone, Copy)]
pub struct AttnShape {
    pub n_tokens: usize,
    pub pos0: usize, // position of the first token; the cache holds positions 0..pos0+n_tokens
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_k: usize,
    pub head_v: usize,
    pub kq_scale: f32,
    /// Sliding window: a query at p sees keys at p' with p - p' < n_swa. 0 = unlimited.
    pub n_swa: usize,
}

/// `out[t][h]` = attention of query `q[t][h]` (q: [n_tokens][n_head*head_k]) over cache
/// positions ≤ pos0 + t; out: [n_tokens][n_head*head_v]. Work is split over (token, head) units,
/// contiguous per thread, so each thread fills one slice of `out` via its scratch.
pub fn attention<T: KvElem>(
    pool: &ThreadPool,
    scratch: &[Mutex<AttnScratch>],
    kv: &LayerKv<T>,
    q: &[f32],
    out: &mut [f32],
    s: AttnShape,
) {
    let n_units = s.n_tokens * s.n_head;
    let group = s.n_head / s.n_head_kv;
    let (nk, nv) = (s.n_head_kv * s.head_k, s.n_head_kv * s.head_v);
    // One part per scratch slot; pool threads take parts ith, ith+nth, … so the split does not
    // depend on how many threads the pool actually runs.
    let n_parts = scratch.len();
    pool.run(|ith, nth| {
        for part in (ith..n_parts).step_by(nth.max(1)) {
            let (u0, u1) = (n_units * part / n_parts, n_units * (part + 1) / n_parts);
            let mut guard = scratch[part].lock().unwrap_or_else(|e| e.into_inner());
            let sc = &mut *guard;
            for u in u0..u1 {
                let (t, h) = (u / s.n_head, u % s.n_head);
                let hk = h / group;
                let pos = s.pos0 + t;
                let first = if s.n_swa > 0 {
                    (pos + 1).saturating_sub(s.n_swa)
                } else {
                    0
                };
                let n_kv = pos + 1;
                for (r, &x) in sc.qr.iter_mut().zip(&q[u * s.head_k..(u + 1) * s.head_k]) {
                    *r = T::round(x);
                }
                let scores = &mut sc.scores[..n_kv];
                for (j, sj) in scores.iter_mut().enumerate() {
                    if j < first {
                        *sj = f32::NEG_INFINITY;
                        continue;
                    }
                    let k = &kv.k[j * nk + hk * s.head_k..j * nk + (hk + 1) * s.head_k];
                    *sj = k.iter().zip(&sc.qr).map(|(&a, &b)| a.to_f32() * b).sum();
                }
                softmax_inplace(scores, s.kq_scale);
                let o = &mut sc.out[(u - u0) * s.head_v..(u - u0 + 1) * s.head_v];
                o.fill(0.0);
                for (j, &p) in scores.iter().enumerate().skip(first) {
                    let p = T::round(p);
                    let v = &kv.v[j * nv + hk * s.head_v..j * nv + (hk + 1) * s.head_v];
                    for (od, &vd) in o.iter_mut().zip(v) {
                        *od += p * vd.to_f32();
                    }
                }
            }
        }
    });
    // Gather: part i's units are contiguous in `out`.
    for (part, m) in scratch.iter().enumerate() {
        let (u0, u1) = (n_units * part / n_parts, n_units * (part + 1) / n_parts);
        let sc = m.lock().unwrap_or_else(|e| e.into_inner());
        out[u0 * s.head_v..u1 * s.head_v].copy_from_slice(&sc.out[..(u1 - u0) * s.head_v]);
    }
}
