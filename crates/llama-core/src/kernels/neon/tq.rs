//! The NEON TQ1_0 × Q8_K and TQ2_0 × Q8_K dots (`VecDotFn`, dotprod): the trits t − 1 as signed
//! bytes (TQ1_0: the byte times 3ⁿ mod 256, then (q·3) >> 8 through a widening multiply), exact
//! block sums by `sdot`, then the scalar reference's float formula per block (bit-identical to
//! `kernels::scalar`).

use std::arch::aarch64::*;

use super::sdot;
use crate::kernels::shared::{f16_at, f32_at};
use crate::kernels::types::VecDotFn;
use crate::quant::tq::POW3;
use crate::quant::QK_K;

dot_entry!(dot_tq1_0_entry, dot_tq1_0, QK_K, 54, 292, "neon,dotprod");
dot_entry!(dot_tq2_0_entry, dot_tq2_0, QK_K, 66, 292, "neon,dotprod");

/// The NEON TQ1_0 dot.
pub(super) const DOT_TQ1_0: VecDotFn = dot_tq1_0_entry;
/// The NEON TQ2_0 dot.
pub(super) const DOT_TQ2_0: VecDotFn = dot_tq2_0_entry;

#[target_feature(enable = "neon,dotprod")]
/// Trit n of 16 TQ1_0 bytes, minus 1: ((q · 3ⁿ mod 256) · 3) >> 8 − 1 as signed bytes.
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
#[inline]
unsafe fn trits(q: uint8x16_t, n: usize) -> int8x16_t {
    let q = vmulq_u8(q, vdupq_n_u8(POW3[n]));
    let three = vdup_n_u8(3);
    let lo = vshrn_n_u16::<8>(vmull_u8(vget_low_u8(q), three));
    let hi = vshrn_n_u16::<8>(vmull_u8(vget_high_u8(q), three));
    vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(1))
}

#[target_feature(enable = "neon,dotprod")]
/// Per block `sumf += f32(sumi)·(d_w·d_a)`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_tq1_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block_tq1_0: qs [48] @0, qh [4] @48, d f16 @52; block_q8_K: d f32 @0, qs [256] @4
            let (x, y) = (w.add(54 * i), a.add(292 * i));
            let ys = |o: usize| vld1q_s8(y.add(4 + o) as *const i8);
            let mut acc = vdupq_n_s32(0);
            // qs[0..32]: element 32n + m is trit n of byte m
            for h in 0..2 {
                let q = vld1q_u8(x.add(16 * h));
                for n in 0..5 {
                    acc = sdot(acc, trits(q, n), ys(32 * n + 16 * h));
                }
            }
            // qs[32..48]: element 160 + 16n + m is trit n of byte 32 + m
            let q = vld1q_u8(x.add(32));
            for n in 0..5 {
                acc = sdot(acc, trits(q, n), ys(160 + 16 * n));
            }
            // qh[0..4]: element 240 + 4n + j is trit n of byte j; the 4 bytes repeated 4 times,
            // times 3ⁿ per group of 4 lanes, cover all 16
            let qh =
                vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes([*x.add(48), *x.add(49), *x.add(50), *x.add(51)])));
            let pow: [u8; 16] = std::array::from_fn(|k| POW3[k / 4]);
            let q = vmulq_u8(qh, vld1q_u8(pow.as_ptr()));
            acc = sdot(acc, trits(q, 0), ys(240));
            sumf += vaddvq_s32(acc) as f32 * (f16_at(x.add(52)) * f32_at(y));
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Per block `sumf += f32(sumi)·(d_a·d_w)`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_tq2_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m3 = vdupq_n_u8(3);
        let one = vdupq_n_s8(1);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block_tq2_0: qs [64] @0, d f16 @64
            let (x, y) = (w.add(66 * i), a.add(292 * i));
            let mut acc = vdupq_n_s32(0);
            // element 128j + 32l + m is bits 2l..2l+2 of qs[32j + m]
            for j in 0..2 {
                for h in 0..2 {
                    let q = vld1q_u8(x.add(32 * j + 16 * h));
                    let codes = [q, vshrq_n_u8::<2>(q), vshrq_n_u8::<4>(q), vshrq_n_u8::<6>(q)];
                    for (l, c) in codes.into_iter().enumerate() {
                        let t = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(c, m3)), one);
                        acc = sdot(acc, t, vld1q_s8(y.add(4 + 128 * j + 32 * l + 16 * h) as *const i8));
                    }
                }
            }
            sumf += vaddvq_s32(acc) as f32 * (f32_at(y) * f16_at(x.add(64)));
        }
        sumf
    }
}
