//! The NEON MXFP4 × Q8_0 dot (`VecDotFn`, dotprod): the codes looked up in `kvalues_mxfp4` by a
//! table lookup (`tbl`), exact integer block sums, one float lane update per block.

use std::arch::aarch64::*;

use super::sdot;
use crate::kernels::shared::f16_at;
use crate::kernels::types::VecDotFn;
use crate::quant::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};

dot_entry!(dot_mxfp4_entry, dot_mxfp4, 32, 17, 34, "neon,dotprod");

/// The NEON MXFP4 dot.
pub(super) const DOT_MXFP4: VecDotFn = dot_mxfp4_entry;

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_mxfp4(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let table = vld1q_s8(KVALUES_MXFP4.as_ptr());
        let m4 = vdupq_n_u8(0x0F);
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..n / 32 {
            let (x, y) = (w.add(17 * i), a.add(34 * i));
            let q = vld1q_u8(x.add(1));
            let lo = vqtbl1q_s8(table, vandq_u8(q, m4));
            let hi = vqtbl1q_s8(table, vshrq_n_u8::<4>(q));
            let y0 = vld1q_s8(y.add(2) as *const i8);
            let y1 = vld1q_s8(y.add(18) as *const i8);
            let p = sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(y) * e8m0_to_fp32_half(*x));
        }
        vaddvq_f32(acc)
    }
}
