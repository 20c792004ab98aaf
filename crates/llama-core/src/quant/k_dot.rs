//! Scalar reference dots of K-quant weight rows with Q8_K activations.
//!
//! Numerics contract (what SIMD versions must reproduce): per 256-weight super-block, every
//! integer sum is exact (i32); the block then contributes, in block order to an f32 accumulator,
//!   Q2_K/Q4_K/Q5_K:  sumf += (dx·dy)·isum − (dminx·dy)·summs   (summs = Σ bsums·min)
//!   Q3_K/Q6_K:       sumf += (dx·dy)·isum
//! with dx, dminx the f16 scales widened to f32, dy the Q8_K f32 scale, isum/summs converted to f32.
//! ggml's generic code spreads the first term over 8 float lanes; we sum the lanes as integers
//! first, which is exact, so the only rounding is in the formula above.

// Index loops mirror ggml's C loops one to one, which keeps the port auditable.
#![allow(clippy::needless_range_loop)]

use super::k_quants::{
    get_scale_min_k4, q3k_scale, q6k_value, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K,
};
use super::QK_K;

fn check(n: usize, nx: usize, ny: usize) -> usize {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K) && nx >= nb && ny >= nb,
        "vec_dot: n={n} must be a multiple of {QK_K} covered by both rows"
    );
    nb
}

/// Σ over the 256 weights of w[e]·q8[e], where w[e] is the integer weight times its integer
/// sub-block scale; `wq(e)` gives (sub-block scale, weight level).
#[inline(always)]
fn int_dot(q8: &[i8; QK_K], sub: usize, wq: impl Fn(usize) -> (i32, i32)) -> i32 {
    let mut isum = 0i32;
    for s in 0..QK_K / sub {
        let mut part = 0i32;
        let mut scale = 0i32;
        for e in s * sub..(s + 1) * sub {
            let (sc, q) = wq(e);
            scale = sc;
            part += q * q8[e] as i32;
        }
        isum += scale * part;
    }
    isum
}

pub fn vec_dot_q2_k_q8_k(n: usize, x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let nb = check(n, x.len(), y.len());
    let mut sumf = 0f32;
    for (bx, by) in x[..nb].iter().zip(&y[..nb]) {
        let summs: i32 = (0..16).map(|j| by.bsums[j] as i32 * (bx.scales[j] >> 4) as i32).sum();
        let isum = int_dot(&by.qs, 16, |e| {
            let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
            ((bx.scales[e / 16] & 0x0f) as i32, ((bx.qs[h * 32 + l] >> (2 * j)) & 3) as i32)
        });
        let dall = by.d * bx.d.to_f32();
        let dmin = by.d * bx.dmin.to_f32();
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q3_k_q8_k(n: usize, x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let nb = check(n, x.len(), y.len());
    let mut sumf = 0f32;
    for (bx, by) in x[..nb].iter().zip(&y[..nb]) {
        let isum = int_dot(&by.qs, 16, |e| {
            let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
            let q = ((bx.qs[h * 32 + l] >> (2 * j)) & 3) as i32;
            let hbit = bx.hmask[l] & (1u8 << (h * 4 + j));
            (q3k_scale(e / 16, &bx.scales), q - if hbit != 0 { 0 } else { 4 })
        });
        let d = bx.d.to_f32() * by.d;
        sumf += d * isum as f32;
    }
    sumf
}

/// Σ bsums·min over the 8 sub-blocks of 32 (each min covers two 16-wide bsums).
fn k4_summs(scales: &[u8; 12], by: &BlockQ8K) -> i32 {
    (0..8).map(|j| get_scale_min_k4(j, scales).1 as i32 * (by.bsums[2 * j] as i32 + by.bsums[2 * j + 1] as i32)).sum()
}

pub fn vec_dot_q4_k_q8_k(n: usize, x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let nb = check(n, x.len(), y.len());
    let mut sumf = 0f32;
    for (bx, by) in x[..nb].iter().zip(&y[..nb]) {
        let summs = k4_summs(&bx.scales, by);
        let isum = int_dot(&by.qs, 32, |e| {
            let j = e / 32;
            let q = (bx.qs[(j / 2) * 32 + e % 32] >> (4 * (j % 2))) & 0x0f;
            (get_scale_min_k4(j, &bx.scales).0 as i32, q as i32)
        });
        let d = bx.d.to_f32() * by.d;
        let dmin = bx.dmin.to_f32() * by.d;
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q5_k_q8_k(n: usize, x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let nb = check(n, x.len(), y.len());
    let mut sumf = 0f32;
    for (bx, by) in x[..nb].iter().zip(&y[..nb]) {
        let summs = k4_summs(&bx.scales, by);
        let isum = int_dot(&by.qs, 32, |e| {
            let (j, l) = (e / 32, e % 32);
            let lo = (bx.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f;
            let hi = if bx.qh[l] & (1u8 << j) != 0 { 16 } else { 0 };
            (get_scale_min_k4(j, &bx.scales).0 as i32, (lo + hi) as i32)
        });
        let d = bx.d.to_f32() * by.d;
        let dmin = bx.dmin.to_f32() * by.d;
        sumf += d * isum as f32 - dmin * summs as f32;
    }
    sumf
}

pub fn vec_dot_q6_k_q8_k(n: usize, x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let nb = check(n, x.len(), y.len());
    let mut sumf = 0f32;
    for (bx, by) in x[..nb].iter().zip(&y[..nb]) {
        let isum = int_dot(&by.qs, 16, |e| (bx.scales[e / 16] as i32, q6k_value(bx, e) - 32));
        let d = bx.d.to_f32() * by.d;
        sumf += d * isum as f32;
    }
    sumf
}
