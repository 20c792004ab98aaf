//! The NEON IQ4_NL × Q8_0 and IQ4_XS × Q8_K dots (`VecDotFn`, dotprod): the nibbles looked up in
//! `kvalues_iq4nl` by a table lookup (`tbl`), exact integer sums per 32 weights, then the scalar
//! reference's float formula in its order (bit-identical to `kernels::scalar`).

use std::arch::aarch64::*;

use super::sdot;
use crate::kernels::shared::{f16_at, f32_at};
use crate::kernels::types::VecDotFn;
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::QK_K;

dot_entry!(dot_iq4_nl_entry, dot_iq4_nl, 32, 18, 34, "neon,dotprod");
dot_entry!(dot_iq4_xs_entry, dot_iq4_xs, QK_K, 136, 292, "neon,dotprod");

/// The NEON IQ4_NL dot.
pub(super) const DOT_IQ4_NL: VecDotFn = dot_iq4_nl_entry;
/// The NEON IQ4_XS dot.
pub(super) const DOT_IQ4_XS: VecDotFn = dot_iq4_xs_entry;

#[target_feature(enable = "neon,dotprod")]
/// Σ over 32 weights of kvalues[q] · y: the 16 nibble bytes at `qs` (low nibbles with y[0..16],
/// high with y[16..32]) against the 32 i8 at `y`.
///
/// # Safety
/// The CPU must support this function's target features; `qs..qs+16` and `y..y+32` readable.
#[inline]
unsafe fn sum32(qs: *const u8, y: *const u8) -> i32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let table = vld1q_s8(KVALUES_IQ4NL.as_ptr());
        let q = vld1q_u8(qs);
        let lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0F)));
        let hi = vqtbl1q_s8(table, vshrq_n_u8::<4>(q));
        let y0 = vld1q_s8(y as *const i8);
        let y1 = vld1q_s8(y.add(16) as *const i8);
        vaddvq_s32(sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1))
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Per block `sumf += (d_a·d_w)·f32(sumi)`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq4_nl(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / 32 {
            let (x, y) = (w.add(18 * i), a.add(34 * i));
            sumf += (f16_at(y) * f16_at(x)) * sum32(x.add(2), y.add(2)) as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Per 32 weights `sumf += ((d_w·d_a)·f32(ls − 32))·f32(sumi)`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq4_xs(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block_iq4_xs: d f16 @0, scales_h u16 @2, scales_l [4] @4, qs [128] @8
            // block_q8_K: d f32 @0, qs [256] @4
            let (x, y) = (w.add(136 * i), a.add(292 * i));
            let d4d8 = f16_at(x) * f32_at(y);
            let sh = u16::from_le_bytes([*x.add(2), *x.add(3)]);
            for ib in 0..QK_K / 32 {
                let ls = ((*x.add(4 + ib / 2) >> (4 * (ib % 2))) & 0xf) as i32 | ((((sh >> (2 * ib)) & 3) as i32) << 4);
                let dl = d4d8 * (ls - 32) as f32;
                sumf += dl * sum32(x.add(8 + 16 * ib), y.add(4 + 32 * ib)) as f32;
            }
        }
        sumf
    }
}
