//! NEON dotprod kernels over R16-repacked weights (layout in `quant::repack`).
//!
//! A 64-byte slot is four q registers of 4 rows each; the kernel runs the four 4-row quarters one
//! after the other, at most `PASS` tokens per pass. `sdot` multiplies signed bytes: the 4/5/6-bit
//! quants (0..63) are valid as i8 unchanged, with the offsets folded into the accumulator start as
//! in the x86 kernels; Q8_0 is XOR-ed back to signed and needs no offset. `sdot` comes through
//! `asm!` (its intrinsic is unstable in rustc 1.95), see `neon/mod.rs`.
//!
//! Numerics: integer sums exact; float updates `acc += f32(isum) · (d_w · d_a)` in block order.

// Index loops over tokens and rows mirror the register arrays they fill (`acc[t]`, `acc[r][t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::{f16x4, sdot};
use crate::kernels::shared::{q8_0s_block, q8k_block, R16Call};
use crate::kernels::types::GemmR16Fn;
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::repack::{Q8_0S_BLOCK, Q8_K_BLOCK, R};
use crate::quant::GgmlType;

/// Tokens per pass.
const PASS: usize = 4;
/// Rows per quarter.
const Q: usize = 4;

gemm_split_entry!(gemm_q4_0_entry, gemm_q4_q5::<_, false, false>, GgmlType::Q4_0, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_iq4_nl_entry, gemm_iq4_nl, GgmlType::IQ4_NL, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_iq4_xs_entry, gemm_iq4_xs, GgmlType::IQ4_XS, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q4_1_entry, gemm_q4_q5::<_, false, true>, GgmlType::Q4_1, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q5_0_entry, gemm_q4_q5::<_, true, false>, GgmlType::Q5_0, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q5_1_entry, gemm_q4_q5::<_, true, true>, GgmlType::Q5_1, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q8_0_entry, gemm_q8_0, GgmlType::Q8_0, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q4_k_entry, gemm_q4_k, GgmlType::Q4_K, Q, PASS, "neon,dotprod");
gemm_split_entry!(gemm_q6_k_entry, gemm_q6_k, GgmlType::Q6_K, Q, PASS, "neon,dotprod");

/// The NEON R16 kernels: (weight type, kernel).
pub(super) const GEMMS: [(GgmlType, GemmR16Fn); 9] = [
    (GgmlType::Q4_0, gemm_q4_0_entry),
    (GgmlType::IQ4_NL, gemm_iq4_nl_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_entry),
    (GgmlType::Q4_1, gemm_q4_1_entry),
    (GgmlType::Q5_0, gemm_q5_0_entry),
    (GgmlType::Q5_1, gemm_q5_1_entry),
    (GgmlType::Q8_0, gemm_q8_0_entry),
    (GgmlType::Q4_K, gemm_q4_k_entry),
    (GgmlType::Q6_K, gemm_q6_k_entry),
];

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features; `p..p+4` must be readable.
unsafe fn bcast4(p: *const u8) -> int8x16_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vreinterpretq_s8_s32(vdupq_n_s32((p as *const i32).read_unaligned())) }
}

/// The quarter-qr q register of 64-byte slot `i` at `q`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the part of 64-byte slot `i` at `q` that
/// is read must be readable.
unsafe fn slot(q: *const u8, i: usize, qr: usize) -> uint8x16_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vld1q_u8(q.add(64 * i + 16 * qr)) }
}

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vreinterpretq_s8_u8(v) }
}

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn fold(acc: float32x4_t, isum: int32x4_t, dw: float32x4_t, da: f32) -> float32x4_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_n_f32(dw, da)) }
}

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features; `out + t·os` must be writable for a part's
/// floats for every t < T.
unsafe fn store<const T: usize>(acc: &[float32x4_t; T], out: *mut f32, os: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (t, v) in acc.iter().enumerate() {
            vst1q_f32(out.add(t * os), *v);
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
/// Q4_0, Q4_1 (`Q5 = false`) and Q5_0, Q5_1 (`Q5 = true`, each nibble's fifth bit from the leading
/// qh slot): unsigned 4- or 5-bit values; Q4_0/Q5_0's offset (−8 or −16 times Σy) starts each
/// block's sum, Q4_1/Q5_1 (`MIN`) add `m_w · s_a` per block after it (Q8_1S activations).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_q5<const T: usize, const Q5: bool, const MIN: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        // per block: header [16 d] or [16 d][16 m]; quants [qh slot] + 4 nibble slots
        let hb = if MIN { R * 4 } else { R * 2 };
        let (heads, quants) = (w, w.add(nb * hb));
        let (block_bytes, first) = if Q5 { (20, 1) } else { (16, 0) };
        let offset = match (MIN, Q5) {
            (true, _) => 0,
            (false, true) => -16,
            (false, false) => -8,
        };
        let m4 = vdupq_n_u8(0x0F);
        let m10 = vdupq_n_u8(0x10);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let dw = f16x4(vld1_u16(heads.add(b * hb + 8 * qr) as *const u16));
            let q = quants.add(b * R * block_bytes);
            let mut lo = [vdupq_n_s8(0); 4];
            let mut hi = [vdupq_n_s8(0); 4];
            for s in 0..4 {
                let v = slot(q, first + s, qr);
                let (mut l, mut h) = (vandq_u8(v, m4), vshrq_n_u8::<4>(v));
                if Q5 {
                    // fifth bit g of each byte → 0x10 (vtst gives 0xFF where the bit is set)
                    let qh = slot(q, 0, qr);
                    l = vorrq_u8(l, vandq_u8(vtstq_u8(qh, vdupq_n_u8(1 << s)), m10));
                    h = vorrq_u8(h, vandq_u8(vtstq_u8(qh, vdupq_n_u8(1 << (4 + s))), m10));
                }
                lo[s] = s8(l);
                hi[s] = s8(h);
            }
            for t in 0..T {
                let (da, sum, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = vdupq_n_s32(offset * sum);
                for s in 0..4 {
                    i = sdot(i, lo[s], bcast4(y.add(4 * s)));
                    i = sdot(i, hi[s], bcast4(y.add(16 + 4 * s)));
                }
                acc[t] = fold(acc[t], i, dw, da);
                if MIN {
                    // Q8_1S keeps s (f32) where Q8_0S keeps Σq
                    let m = f16x4(vld1_u16(heads.add(b * hb + R * 2 + 8 * qr) as *const u16));
                    acc[t] = vfmaq_f32(acc[t], m, vdupq_n_f32(f32::from_bits(sum as u32)));
                }
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ4_NL: Q4_0's layout, the nibbles looked up in kvalues_iq4nl (`tbl`), signed for `sdot`, so no
/// offset.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_nl<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = vdupq_n_u8(0x0F);
        let table = vld1q_s8(KVALUES_IQ4NL.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let dw = f16x4(vld1_u16(heads.add(b * R * 2 + 8 * qr) as *const u16));
            let q = quants.add(b * R * 16);
            let mut lo = [vdupq_n_s8(0); 4];
            let mut hi = [vdupq_n_s8(0); 4];
            for s in 0..4 {
                let v = slot(q, s, qr);
                lo[s] = vqtbl1q_s8(table, vandq_u8(v, m4));
                hi[s] = vqtbl1q_s8(table, vshrq_n_u8::<4>(v));
            }
            for t in 0..T {
                let (da, _, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = vdupq_n_s32(0);
                for s in 0..4 {
                    i = sdot(i, lo[s], bcast4(y.add(4 * s)));
                    i = sdot(i, hi[s], bcast4(y.add(16 + 4 * s)));
                }
                acc[t] = fold(acc[t], i, dw, da);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ4_XS: the levels by `tbl` as for IQ4_NL; per super-block one exact integer sum
/// Σ_ib (ls_ib − 32)·(sub-block sum), folded as `acc += f32(isum)·(d_w·d_a)`.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_xs<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = vdupq_n_u8(0x0F);
        let table = vld1q_s8(KVALUES_IQ4NL.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let dw = f16x4(vld1_u16(heads.add(b * R * 2 + 8 * qr) as *const u16));
            let q = quants.add(b * R * 134);
            // the quarter's 4 rows: scales_l as one u32, scales_h as one u16 widened
            let sl = vld1q_u32(q.add(R * 128 + 16 * qr) as *const u32);
            let sh = vmovl_u16(vld1_u16(q.add(R * 132 + 8 * qr) as *const u16));
            let mut ia = [vdupq_n_s32(0); T];
            for ib in 0..8 {
                let lo = vandq_u32(vshlq_u32(sl, vdupq_n_s32(-4 * ib as i32)), vdupq_n_u32(0xF));
                let hi = vandq_u32(vshlq_u32(sh, vdupq_n_s32(-2 * ib as i32)), vdupq_n_u32(3));
                let ls = vsubq_s32(vreinterpretq_s32_u32(vorrq_u32(lo, vshlq_n_u32::<4>(hi))), vdupq_n_s32(32));
                let mut lo8 = [vdupq_n_s8(0); 4];
                let mut hi8 = [vdupq_n_s8(0); 4];
                for s in 0..4 {
                    let v = slot(q, 4 * ib + s, qr);
                    lo8[s] = vqtbl1q_s8(table, vandq_u8(v, m4));
                    hi8[s] = vqtbl1q_s8(table, vshrq_n_u8::<4>(v));
                }
                for t in 0..T {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(32 * ib);
                    let mut i = vdupq_n_s32(0);
                    for s in 0..4 {
                        i = sdot(i, lo8[s], bcast4(y.add(4 * s)));
                        i = sdot(i, hi8[s], bcast4(y.add(16 + 4 * s)));
                    }
                    ia[t] = vmlaq_s32(ia[t], i, ls);
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = fold(acc[t], ia[t], dw, dy);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q8_0<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        let (scales, quants) = (w, w.add(nb * R * 2));
        let bias = vdupq_n_u8(0x80);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let dw = f16x4(vld1_u16(scales.add(b * R * 2 + 8 * qr) as *const u16));
            let q = quants.add(b * R * 32);
            let mut x = [vdupq_n_s8(0); 8];
            for (s, xs) in x.iter_mut().enumerate() {
                *xs = s8(veorq_u8(slot(q, s, qr), bias)); // back to signed
            }
            for t in 0..T {
                let (da, _, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = vdupq_n_s32(0);
                for (s, xs) in x.iter().enumerate() {
                    i = sdot(i, *xs, bcast4(y.add(4 * s)));
                }
                acc[t] = fold(acc[t], i, dw, da);
            }
        }
        store(&acc, out, os);
    }
}

/// `(v >> sh) & mask` per u32 lane.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn field(v: uint32x4_t, sh: i32, mask: u32) -> uint32x4_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { vandq_u32(vshlq_u32(v, vdupq_n_s32(-sh)), vdupq_n_u32(mask)) }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let m4 = vdupq_n_u8(0x0F);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let d = f16x4(vld1_u16(heads.add(b * R * 4 + 8 * qr) as *const u16));
            let dmin = f16x4(vld1_u16(heads.add(b * R * 4 + R * 2 + 8 * qr) as *const u16));
            let q = quants.add(b * R * 140);
            let u = |i: usize| vreinterpretq_u32_u8(slot(q, i, qr));
            let (w0, w1, w2) = (u(0), u(1), u(2));
            let scale = |j: usize| -> int32x4_t {
                let v = if j < 4 {
                    field(w0, 8 * j as i32, 63)
                } else {
                    let i = 8 * (j as i32 - 4);
                    vorrq_u32(field(w2, i, 15), field(w0, i + 2, 0x30))
                };
                vreinterpretq_s32_u32(v)
            };
            let min = |j: usize| -> int32x4_t {
                let v = if j < 4 {
                    field(w1, 8 * j as i32, 63)
                } else {
                    let i = 8 * (j as i32 - 4);
                    vorrq_u32(field(w2, i + 4, 15), field(w1, i + 2, 0x30))
                };
                vreinterpretq_s32_u32(v)
            };
            let mut imin = [vdupq_n_s32(0); T];
            for j in 0..8 {
                let mj = min(j);
                for (t, im) in imin.iter_mut().enumerate() {
                    let (_, _, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    *im = vmlaq_n_s32(*im, mj, s);
                }
            }
            let mut iacc = [vdupq_n_s32(0); T];
            for j in 0..8 {
                let sc = scale(j);
                let mut lo = [vdupq_n_s8(0); 4];
                let mut hi = [vdupq_n_s8(0); 4];
                for k in 0..4 {
                    let v = slot(q, 3 + 4 * j + k, qr);
                    lo[k] = s8(vandq_u8(v, m4));
                    hi[k] = s8(vshrq_n_u8::<4>(v));
                }
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(32 * j);
                    let mut i = vdupq_n_s32(0);
                    for k in 0..4 {
                        i = sdot(i, lo[k], bcast4(y.add(8 * k)));
                        i = sdot(i, hi[k], bcast4(y.add(8 * k + 4)));
                    }
                    *ia = vmlaq_s32(*ia, i, sc);
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(iacc[t]), vmulq_n_f32(d, dy));
                acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(imin[t]), vmulq_n_f32(dmin, dy));
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "neon,dotprod")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: qr, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = vdupq_n_u8(0x0F);
        let m30 = vdupq_n_u8(0x30);
        let mut acc = [vdupq_n_f32(0.0); T];
        for b in 0..nb {
            let d = f16x4(vld1_u16(heads.add(b * R * 2 + 8 * qr) as *const u16));
            let q = quants.add(b * R * 208);
            let (ql, qh) = (q.add(R * 16), q.add(R * 16 + R * 128));
            let mut iacc = [vdupq_n_s32(0); T];
            for j in 0..16 {
                // 4 rows' i8 scales of sub-block j, widened to i32
                let sc8 = vld1_s8(q.add(16 * j + Q * qr) as *const i8); // 8 bytes, first 4 used
                let sc = vmovl_s16(vget_low_s16(vmovl_s8(sc8)));
                let hv = slot(qh, j, qr);
                let (a0, a1) = (slot(ql, 2 * j, qr), slot(ql, 2 * j + 1, qr));
                let bits = |v: uint8x16_t, hb: uint8x16_t| s8(vorrq_u8(vandq_u8(v, m4), vandq_u8(hb, m30)));
                let v = [
                    bits(a0, vshlq_n_u8::<4>(hv)),
                    bits(vshrq_n_u8::<4>(a0), vshlq_n_u8::<2>(hv)),
                    bits(a1, hv),
                    bits(vshrq_n_u8::<4>(a1), vshrq_n_u8::<2>(hv)),
                ];
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(16 * j);
                    let mut i = vdupq_n_s32(-32 * *bs.add(j) as i32);
                    for (k, vk) in v.iter().enumerate() {
                        i = sdot(i, *vk, bcast4(y.add(4 * k)));
                    }
                    *ia = vmlaq_s32(*ia, i, sc);
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(iacc[t]), vmulq_n_f32(d, dy));
            }
        }
        store(&acc, out, os);
    }
}
