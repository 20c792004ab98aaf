//! NEON dots of weight rows with activation rows (`VecDotFn`): the float types with NEON, the
//! integer ones with dotprod.

use std::arch::aarch64::*;

use super::{f16x4, sdot};
use crate::kernels::shared::{bf16_at, f16_at, f32_at, q8k_bsum};
use crate::kernels::types::VecDotFn;
use crate::quant::k_quants::{q3k_scale, scales_mins_k4};
use crate::quant::GgmlType::{self, *};
use crate::quant::QK_K;

dot_entry!(dot_q4_0_entry, dot_q4_0, 32, 18, 34, "neon,dotprod");
dot_entry!(dot_q5_0_entry, dot_q5_0, 32, 22, 34, "neon,dotprod");
dot_entry!(dot_q8_0_entry, dot_q8_0, 32, 34, 34, "neon,dotprod");
dot_entry!(dot_q2_k_entry, dot_q2_k, QK_K, 84, 292, "neon,dotprod");
dot_entry!(dot_q3_k_entry, dot_q3_k, QK_K, 110, 292, "neon,dotprod");
dot_entry!(dot_q4_k_entry, dot_q4_k, QK_K, 144, 292, "neon,dotprod");
dot_entry!(dot_q5_k_entry, dot_q5_k, QK_K, 176, 292, "neon,dotprod");
dot_entry!(dot_q6_k_entry, dot_q6_k, QK_K, 210, 292, "neon,dotprod");
dot_entry!(dot_f16_entry, dot_f16, 1, 2, 2, "neon");
dot_entry!(dot_bf16_entry, dot_bf16, 1, 2, 2, "neon");
dot_entry!(dot_f32_entry, dot_f32, 1, 4, 4, "neon");

/// The dots that need only NEON.
pub(super) const DOTS_FLOAT: [(GgmlType, VecDotFn); 3] =
    [(F16, dot_f16_entry), (BF16, dot_bf16_entry), (F32, dot_f32_entry)];
/// The dots that need dotprod.
pub(super) const DOTS_INT: [(GgmlType, VecDotFn); 8] = [
    (Q4_0, dot_q4_0_entry),
    (Q5_0, dot_q5_0_entry),
    (Q8_0, dot_q8_0_entry),
    (Q2_K, dot_q2_k_entry),
    (Q3_K, dot_q3_k_entry),
    (Q4_K, dot_q4_k_entry),
    (Q5_K, dot_q5_k_entry),
    (Q6_K, dot_q6_k_entry),
];

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let eight = vdupq_n_s8(8);
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..n / 32 {
            let (x, y) = (w.add(18 * i), a.add(34 * i));
            let q = vld1q_u8(x.add(2));
            let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
            let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
            let y0 = vld1q_s8(y.add(2) as *const i8);
            let y1 = vld1q_s8(y.add(18) as *const i8);
            let p = sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(x) * f16_at(y));
        }
        vaddvq_f32(acc)
    }
}

/// 16 bits → 16 bytes, 0xFF where the bit is set (byte i ↔ bit i).
#[inline]
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn bits16(b: u16) -> uint8x16_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let bytes = vcombine_u8(vdup_n_u8(b as u8), vdup_n_u8((b >> 8) as u8));
        let sel = vld1q_u8([1u8, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128].as_ptr());
        vtstq_u8(bytes, sel)
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q5_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let f0 = vdupq_n_u8(0xF0);
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..n / 32 {
            let (x, y) = (w.add(22 * i), a.add(34 * i));
            let qh = u32::from_le_bytes([*x.add(2), *x.add(3), *x.add(4), *x.add(5)]);
            let q = vld1q_u8(x.add(6));
            // q - 16 == nibble | 0xF0 (as i8) where the fifth bit is clear.
            let lo = vorrq_u8(vandq_u8(q, m4), vbicq_u8(f0, bits16(qh as u16)));
            let hi = vorrq_u8(vshrq_n_u8::<4>(q), vbicq_u8(f0, bits16((qh >> 16) as u16)));
            let y0 = vld1q_s8(y.add(2) as *const i8);
            let y1 = vld1q_s8(y.add(18) as *const i8);
            let p = sdot(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), y0), vreinterpretq_s8_u8(hi), y1);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(x) * f16_at(y));
        }
        vaddvq_f32(acc)
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q8_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..n / 32 {
            let (x, y) = (w.add(34 * i), a.add(34 * i));
            let p = sdot(
                sdot(vdupq_n_s32(0), vld1q_s8(x.add(2) as *const i8), vld1q_s8(y.add(2) as *const i8)),
                vld1q_s8(x.add(18) as *const i8),
                vld1q_s8(y.add(18) as *const i8),
            );
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(x) * f16_at(y));
        }
        vaddvq_f32(acc)
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(144 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 144);
            let ys = std::slice::from_raw_parts(y, 292);
            let (sc, mn) = scales_mins_k4(xs[4..16].try_into().unwrap());
            let mut isum = 0i32;
            for j in 0..4 {
                let q0 = vld1q_u8(x.add(16 + 32 * j));
                let q1 = vld1q_u8(x.add(32 + 32 * j));
                let yp = y.add(4 + 64 * j) as *const i8;
                let lo = sdot(
                    sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(q0, m4)), vld1q_s8(yp)),
                    vreinterpretq_s8_u8(vandq_u8(q1, m4)),
                    vld1q_s8(yp.add(16)),
                );
                let hi = sdot(
                    sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)), vld1q_s8(yp.add(32))),
                    vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)),
                    vld1q_s8(yp.add(48)),
                );
                isum += sc[2 * j] as i32 * vaddvq_s32(lo) + sc[2 * j + 1] as i32 * vaddvq_s32(hi);
            }
            let msum: i32 = (0..8).map(|j| mn[j] as i32 * (q8k_bsum(ys, 2 * j) + q8k_bsum(ys, 2 * j + 1))).sum();
            let yd = f32_at(y);
            sumf += yd * f16_at(x) * isum as f32 - yd * f16_at(x.add(2)) * msum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Q2_K: exact integer sums per 16-element sub-block, then the scalar formula
/// `sumf += (d_a·d_w)·f32(isum) − (d_a·dmin_w)·f32(Σ min·bsums)` per block (bit-identical to
/// `kernels::scalar`).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q2_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m3 = vdupq_n_u8(3);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block: scales[16] @0, qs[64] @16, d @80, dmin @82
            let (x, y) = (w.add(84 * i), a.add(292 * i));
            let ys = std::slice::from_raw_parts(y, 292);
            let sc = std::slice::from_raw_parts(x, 16);
            let summs: i32 = (0..16).map(|j| (sc[j] >> 4) as i32 * q8k_bsum(ys, j)).sum();
            let mut isum = 0i32;
            for c in 0..2 {
                let qs = [vld1q_u8(x.add(16 + 32 * c)), vld1q_u8(x.add(32 + 32 * c))];
                for k in 0..4 {
                    for (half, &qh) in qs.iter().enumerate() {
                        let q = match k {
                            0 => vandq_u8(qh, m3),
                            1 => vandq_u8(vshrq_n_u8::<2>(qh), m3),
                            2 => vandq_u8(vshrq_n_u8::<4>(qh), m3),
                            _ => vshrq_n_u8::<6>(qh),
                        };
                        let s = 8 * c + 2 * k + half;
                        let yv = vld1q_s8(y.add(4 + 16 * s) as *const i8);
                        isum += (sc[s] & 15) as i32 * vaddvq_s32(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(q), yv));
                    }
                }
            }
            let yd = f32_at(y);
            sumf += yd * f16_at(x.add(80)) * isum as f32 - yd * f16_at(x.add(82)) * summs as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Q3_K: exact integer sums per 16-element sub-block (values lo − 4·¬hbit as signed bytes), then
/// the scalar formula `sumf += (d_w·d_a)·f32(isum)` per block (bit-identical to `kernels::scalar`).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q3_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m3, four) = (vdupq_n_u8(3), vdupq_n_u8(4));
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block: hmask[32] @0, qs[64] @32, scales[12] @96, d @108
            let (x, y) = (w.add(110 * i), a.add(292 * i));
            let scales: &[u8; 12] = &*(x.add(96) as *const [u8; 12]);
            let hm = [vld1q_u8(x), vld1q_u8(x.add(16))];
            let mut isum = 0i32;
            for c in 0..2 {
                let qs = [vld1q_u8(x.add(32 + 32 * c)), vld1q_u8(x.add(48 + 32 * c))];
                for k in 0..4 {
                    let bit = vdupq_n_u8(1 << (4 * c + k));
                    for half in 0..2 {
                        let lo = match k {
                            0 => vandq_u8(qs[half], m3),
                            1 => vandq_u8(vshrq_n_u8::<2>(qs[half]), m3),
                            2 => vandq_u8(vshrq_n_u8::<4>(qs[half]), m3),
                            _ => vshrq_n_u8::<6>(qs[half]),
                        };
                        // minus 4 where the high bit is clear
                        let neg = vbicq_u8(four, vtstq_u8(hm[half], bit));
                        let v = vreinterpretq_s8_u8(vsubq_u8(lo, neg));
                        let s = 8 * c + 2 * k + half;
                        let yv = vld1q_s8(y.add(4 + 16 * s) as *const i8);
                        isum += q3k_scale(s, scales) * vaddvq_s32(sdot(vdupq_n_s32(0), v, yv));
                    }
                }
            }
            sumf += f16_at(x.add(108)) * f32_at(y) * isum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Q5_K: as `dot_q4_k` with the fifth bits (bit j of qh[l] for element 32j + l) or-ed in as 16;
/// the scalar formula per block (bit-identical to `kernels::scalar`).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q5_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m4, m16) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            // block: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
            let (x, y) = (w.add(176 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 176);
            let ys = std::slice::from_raw_parts(y, 292);
            let (sc, mn) = scales_mins_k4(xs[4..16].try_into().unwrap());
            let qh = [vld1q_u8(x.add(16)), vld1q_u8(x.add(32))];
            let fifth = |h: uint8x16_t, j: usize| vandq_u8(vtstq_u8(h, vdupq_n_u8(1 << j)), m16);
            let mut isum = 0i32;
            for j in 0..4 {
                let q = [vld1q_u8(x.add(48 + 32 * j)), vld1q_u8(x.add(64 + 32 * j))];
                let yp = y.add(4 + 64 * j) as *const i8;
                let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for k in 0..2 {
                    let l = vorrq_u8(vandq_u8(q[k], m4), fifth(qh[k], 2 * j));
                    let h = vorrq_u8(vshrq_n_u8::<4>(q[k]), fifth(qh[k], 2 * j + 1));
                    lo = sdot(lo, vreinterpretq_s8_u8(l), vld1q_s8(yp.add(16 * k)));
                    hi = sdot(hi, vreinterpretq_s8_u8(h), vld1q_s8(yp.add(32 + 16 * k)));
                }
                isum += sc[2 * j] as i32 * vaddvq_s32(lo) + sc[2 * j + 1] as i32 * vaddvq_s32(hi);
            }
            let msum: i32 = (0..8).map(|j| mn[j] as i32 * (q8k_bsum(ys, 2 * j) + q8k_bsum(ys, 2 * j + 1))).sum();
            let yd = f32_at(y);
            sumf += yd * f16_at(x) * isum as f32 - yd * f16_at(x.add(2)) * msum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q6_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let m2 = vdupq_n_u8(3);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(210 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 210);
            let ys = std::slice::from_raw_parts(y, 292);
            let sc = &xs[192..208];
            let mut isum = 0i32;
            for h in 0..2 {
                let ql: [uint8x16_t; 4] = std::array::from_fn(|k| vld1q_u8(x.add(64 * h + 16 * k)));
                let qh: [uint8x16_t; 2] = std::array::from_fn(|k| vld1q_u8(x.add(128 + 32 * h + 16 * k)));
                let hb = |v: uint8x16_t, s: i32| -> uint8x16_t {
                    let v = match s {
                        0 => v,
                        2 => vshrq_n_u8::<2>(v),
                        4 => vshrq_n_u8::<4>(v),
                        _ => vshrq_n_u8::<6>(v),
                    };
                    vshlq_n_u8::<4>(vandq_u8(v, m2))
                };
                // 8 vectors of 16 unsigned 6-bit values, in element order; vector v ↔ sub-block 8h + v.
                let u: [uint8x16_t; 8] = [
                    vorrq_u8(vandq_u8(ql[0], m4), hb(qh[0], 0)),
                    vorrq_u8(vandq_u8(ql[1], m4), hb(qh[1], 0)),
                    vorrq_u8(vandq_u8(ql[2], m4), hb(qh[0], 2)),
                    vorrq_u8(vandq_u8(ql[3], m4), hb(qh[1], 2)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[0]), hb(qh[0], 4)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[1]), hb(qh[1], 4)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[2]), hb(qh[0], 6)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[3]), hb(qh[1], 6)),
                ];
                for (v, uv) in u.iter().enumerate() {
                    let s = 8 * h + v;
                    let yv = vld1q_s8(y.add(4 + 16 * s) as *const i8);
                    isum += sc[s] as i8 as i32 * vaddvq_s32(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(*uv), yv));
                }
            }
            isum -= 32 * (0..16).map(|j| sc[j] as i8 as i32 * q8k_bsum(ys, j)).sum::<i32>();
            sumf += f16_at(x.add(208)) * f32_at(y) * isum as f32;
        }
        sumf
    }
}

/// The NEON float dots (F16, BF16, F32 rows of `ES`-byte elements): 4 accumulators of 4 lanes over
/// chunks of 16 elements, then the tail one element at a time; `load4(p)` widens the 4 elements
/// at `p`, `load1(p)` one.
///
/// # Safety
/// The CPU must support NEON; `w` and `a` must point to `n` readable elements.
#[inline(always)]
unsafe fn dot_float<const ES: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    load4: impl Fn(*const u8) -> float32x4_t,
    load1: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: the caller guarantees the feature and that every element read (i < n) is in range.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (k, ak) in acc.iter_mut().enumerate() {
                let o = ES * (i + 4 * k);
                *ak = vfmaq_f32(*ak, load4(w.add(o)), load4(a.add(o)));
            }
            i += 16;
        }
        let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        while i < n {
            s += load1(w.add(ES * i)) * load1(a.add(ES * i));
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_f16(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe { dot_float::<2>(n, w, a, |p| f16x4(vld1_u16(p as *const u16)), |p| f16_at(p)) }
}

#[inline]
#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `p..p+4` (u16) must be readable.
unsafe fn bf16x4(p: *const u16) -> float32x4_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p))) }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_bf16(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe { dot_float::<2>(n, w, a, |p| bf16x4(p as *const u16), |p| bf16_at(p)) }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_f32(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe { dot_float::<4>(n, w, a, |p| vld1q_f32(p as *const f32), |p| f32_at(p)) }
}
