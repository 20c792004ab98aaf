//! NEON dots (dotprod) of the grid i-quants with Q8_K (`VecDotFn`): IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M. Grid points are gathered from the tables into 16-byte vectors,
//! signs applied to the grid values (|g| < 128, so the negation is exact; the sign masks come
//! from `ksigns64` or from the sign bytes by `vtst`), and `sdot` with the activations gives exact
//! integer sums per 4 elements. Each super-block's integer sum is the scalar reference's and so is
//! its float update: bit-identical to `kernels::scalar`.

use std::arch::aarch64::*;

use super::sdot;
use crate::kernels::shared::f16_at;
use crate::kernels::types::VecDotFn;
use crate::quant::iq::IQ1S_DELTA;
use crate::quant::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS64};
use crate::quant::QK_K;

dot_entry!(dot_iq2_xxs_entry, dot_iq2_xxs, QK_K, 66, 292, "neon,dotprod");
dot_entry!(dot_iq2_xs_entry, dot_iq2_xs, QK_K, 74, 292, "neon,dotprod");
dot_entry!(dot_iq2_s_entry, dot_iq2_s, QK_K, 82, 292, "neon,dotprod");
dot_entry!(dot_iq3_xxs_entry, dot_iq3_xxs, QK_K, 98, 292, "neon,dotprod");
dot_entry!(dot_iq3_s_entry, dot_iq3_s, QK_K, 110, 292, "neon,dotprod");
dot_entry!(dot_iq1_s_entry, dot_iq1_s, QK_K, 50, 292, "neon,dotprod");
dot_entry!(dot_iq1_m_entry, dot_iq1_m, QK_K, 56, 292, "neon,dotprod");

/// The NEON grid i-quant dots: (weight type, kernel).
pub(super) const DOTS: [(crate::quant::GgmlType, VecDotFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, dot_iq2_xxs_entry),
        (IQ2_XS, dot_iq2_xs_entry),
        (IQ2_S, dot_iq2_s_entry),
        (IQ3_XXS, dot_iq3_xxs_entry),
        (IQ3_S, dot_iq3_s_entry),
        (IQ1_S, dot_iq1_s_entry),
        (IQ1_M, dot_iq1_m_entry),
    ]
};

#[inline(always)]
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// Two 8-byte table entries (elements 0..8 and 8..16) as one vector.
///
/// # Safety
/// The CPU must support NEON.
#[inline(always)]
unsafe fn pair(lo: u64, hi: u64) -> uint8x16_t {
    // SAFETY: register-only NEON operations (the caller's contract).
    unsafe { vcombine_u8(vcreate_u8(lo), vcreate_u8(hi)) }
}

/// Two 8-bit sign bytes (bit j of byte k negates element 8k+j) as 16 byte masks.
///
/// # Safety
/// The CPU must support NEON.
#[inline(always)]
unsafe fn sign_bits16(s0: u8, s1: u8) -> uint8x16_t {
    // SAFETY: register-only NEON operations (the caller's contract).
    unsafe {
        let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        vtstq_u8(vcombine_u8(vdup_n_u8(s0), vdup_n_u8(s1)), bit)
    }
}

/// Σ of ±g·q8 over 16 elements as 4 lanes of 4: `g` grid magnitudes (< 128), `neg` 0xFF where
/// negative, `q8` the activations at `y`.
///
/// # Safety
/// The CPU must support NEON and dotprod; `y..y+16` must be readable.
#[inline(always)]
unsafe fn signed_dot16(g: uint8x16_t, neg: uint8x16_t, y: *const u8) -> int32x4_t {
    // SAFETY: the caller's contract (features, 16 readable bytes at y).
    unsafe {
        let g = vreinterpretq_s8_u8(g);
        let sg = vbslq_s8(neg, vnegq_s8(g), g);
        sdot(vdupq_n_s32(0), sg, vld1q_s8(y as *const i8))
    }
}

/// The Q8_K block at `y`: (d, pointer to the 256 quants, the 32 bytes of bsums).
///
/// # Safety
/// `y..y+292` must be readable.
#[inline(always)]
unsafe fn q8k<'a>(y: *const u8) -> (f32, *const u8, &'a [u8]) {
    // SAFETY: the caller guarantees the 292 bytes of one Q8_K block.
    unsafe {
        let ys = std::slice::from_raw_parts(y, 292);
        (f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]), y.add(4), &ys[260..292])
    }
}

/// IQ2/IQ3 body: `block(x, q8) -> bsum` per super-block, then `sumf += (dx·dy)·f32(bsum)`.
///
/// # Safety
/// `w`, `a` point to `n / 256` readable blocks of `WB` and 292 bytes; the CPU supports what
/// `block` uses.
#[inline(always)]
unsafe fn sum_iq<const WB: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    block: impl Fn(&[u8], *const u8) -> i32,
) -> f32 {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let x = w.add(WB * i);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let bsum = block(std::slice::from_raw_parts(x, WB), q8);
            sumf += f16_at(x) * yd * bsum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ2_XXS × Q8_K.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq2_xxs(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        0.125
            * sum_iq::<66>(n, w, a, |x, q8| {
                let mut acc = vdupq_n_s32(0);
                for ib32 in 0..8 {
                    let aux0 = u16_at(x, 1 + 4 * ib32) as u32 | (u16_at(x, 2 + 4 * ib32) as u32) << 16;
                    let aux1 = u16_at(x, 3 + 4 * ib32) as u32 | (u16_at(x, 4 + 4 * ib32) as u32) << 16;
                    let g = |l: u32| IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize];
                    let s = |l: u32| KSIGNS64[((aux1 >> (7 * l)) & 127) as usize];
                    let y = q8.add(32 * ib32);
                    let p = vaddq_s32(
                        signed_dot16(pair(g(0), g(1)), pair(s(0), s(1)), y),
                        signed_dot16(pair(g(2), g(3)), pair(s(2), s(3)), y.add(16)),
                    );
                    acc = vmlaq_n_s32(acc, p, 2 * (aux1 >> 28) as i32 + 1);
                }
                vaddvq_s32(acc)
            })
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ2_XS × Q8_K.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq2_xs(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        0.125
            * sum_iq::<74>(n, w, a, |x, q8| {
                let mut acc = vdupq_n_s32(0);
                for ib32 in 0..8 {
                    let q = |l: usize| u16_at(x, 1 + 4 * ib32 + l);
                    let g = |l: usize| IQ2XS_GRID[(q(l) & 511) as usize];
                    let s = |l: usize| KSIGNS64[(q(l) >> 9) as usize];
                    let y = q8.add(32 * ib32);
                    let sc = x[66 + ib32];
                    let p1 = signed_dot16(pair(g(0), g(1)), pair(s(0), s(1)), y);
                    let p2 = signed_dot16(pair(g(2), g(3)), pair(s(2), s(3)), y.add(16));
                    acc = vmlaq_n_s32(acc, p1, 2 * (sc & 0xf) as i32 + 1);
                    acc = vmlaq_n_s32(acc, p2, 2 * (sc >> 4) as i32 + 1);
                }
                vaddvq_s32(acc)
            })
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ2_S × Q8_K.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq2_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        0.125
            * sum_iq::<82>(n, w, a, |x, q8| {
                let (qs, signs, qh, scales) = (&x[2..34], &x[34..66], &x[66..74], &x[74..82]);
                let mut acc = vdupq_n_s32(0);
                for ib32 in 0..8 {
                    let g =
                        |l: usize| IQ2S_GRID[qs[4 * ib32 + l] as usize | ((qh[ib32] as usize) << (8 - 2 * l) & 0x300)];
                    let s = &signs[4 * ib32..4 * ib32 + 4];
                    let y = q8.add(32 * ib32);
                    let p1 = signed_dot16(pair(g(0), g(1)), sign_bits16(s[0], s[1]), y);
                    let p2 = signed_dot16(pair(g(2), g(3)), sign_bits16(s[2], s[3]), y.add(16));
                    acc = vmlaq_n_s32(acc, p1, 2 * (scales[ib32] & 0xf) as i32 + 1);
                    acc = vmlaq_n_s32(acc, p2, 2 * (scales[ib32] >> 4) as i32 + 1);
                }
                vaddvq_s32(acc)
            })
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ3_XXS × Q8_K.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq3_xxs(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        0.25 * sum_iq::<98>(n, w, a, |x, q8| {
            let (qs, gas) = (&x[2..66], &x[66..98]);
            let mut acc = vdupq_n_s32(0);
            for ib32 in 0..8 {
                // two 4-value grid points per group of 8
                let g = |l: usize| {
                    IQ3XXS_GRID[qs[8 * ib32 + 2 * l] as usize] as u64
                        | (IQ3XXS_GRID[qs[8 * ib32 + 2 * l + 1] as usize] as u64) << 32
                };
                let aux = u32::from_le_bytes([gas[4 * ib32], gas[4 * ib32 + 1], gas[4 * ib32 + 2], gas[4 * ib32 + 3]]);
                let s = |l: u32| KSIGNS64[((aux >> (7 * l)) & 127) as usize];
                let y = q8.add(32 * ib32);
                let p = vaddq_s32(
                    signed_dot16(pair(g(0), g(1)), pair(s(0), s(1)), y),
                    signed_dot16(pair(g(2), g(3)), pair(s(2), s(3)), y.add(16)),
                );
                acc = vmlaq_n_s32(acc, p, 2 * (aux >> 28) as i32 + 1);
            }
            vaddvq_s32(acc)
        })
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ3_S × Q8_K.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq3_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        sum_iq::<110>(n, w, a, |x, q8| {
            let (qs, qh, signs, scales) = (&x[2..66], &x[66..74], &x[74..106], &x[106..110]);
            let mut acc = vdupq_n_s32(0);
            for ib32 in 0..8 {
                let h = qh[ib32] as usize;
                let gk = |k: usize| IQ3S_GRID[qs[8 * ib32 + k] as usize | ((h << (8 - k)) & 256)] as u64;
                let g = |l: usize| gk(2 * l) | gk(2 * l + 1) << 32;
                let s = &signs[4 * ib32..4 * ib32 + 4];
                let y = q8.add(32 * ib32);
                let p = vaddq_s32(
                    signed_dot16(pair(g(0), g(1)), sign_bits16(s[0], s[1]), y),
                    signed_dot16(pair(g(2), g(3)), sign_bits16(s[2], s[3]), y.add(16)),
                );
                acc = vmlaq_n_s32(acc, p, 2 * ((scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i32 + 1);
            }
            vaddvq_s32(acc)
        })
    }
}

/// Σ g·q8 over 16 elements of signed grid bytes (`iq1s_grid`, two entries) as 4 lanes of 4.
///
/// # Safety
/// The CPU must support NEON and dotprod; `y..y+16` must be readable.
#[inline(always)]
unsafe fn grid_dot16(lo: u64, hi: u64, y: *const u8) -> int32x4_t {
    // SAFETY: the caller's contract.
    unsafe { sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(pair(lo, hi)), vld1q_s8(y as *const i8)) }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ1_S × Q8_K: the grid part by `sdot`, the delta part from `bsums` as the reference.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq1_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(50 * i), 50);
            let (yd, q8, bsums) = q8k(a.add(292 * i));
            let (qs, mut acc, mut sumi1) = (&x[2..34], vdupq_n_s32(0), 0i32);
            for ib in 0..8 {
                let qh = u16_at(x, 17 + ib);
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | (((qh as usize >> (3 * l)) & 7) << 8)];
                let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
                let y = q8.add(32 * ib);
                let p = vaddq_s32(grid_dot16(g(0), g(1), y), grid_dot16(g(2), g(3), y.add(16)));
                acc = vmlaq_n_s32(acc, p, ls);
                let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
                sumi1 += ls * delta * (u16_at(bsums, 2 * ib) as i16 as i32 + u16_at(bsums, 2 * ib + 1) as i16 as i32);
            }
            let sumi = vaddvq_s32(acc);
            sumf += f16_at(x.as_ptr()) * yd * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
        }
        sumf
    }
}

#[target_feature(enable = "neon,dotprod")]
/// IQ1_M × Q8_K: the grid part and the delta part (Σq8 per 8 times ±scale) by `sdot`.
///
/// # Safety
/// As `dot_iq2_xxs`.
unsafe fn dot_iq1_m(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        let ones = vdupq_n_s8(1);
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(56 * i), 56);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let (qs, qh) = (&x[0..32], &x[32..48]);
            let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&x[48..], k));
            let d = crate::quant::iq::iq1m_scale(&sc);
            let (mut acc1, mut acc2) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for ib in 0..8 {
                let h = |l: usize| qh[2 * ib + l / 2] as usize;
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | ((h(l) << (8 - 4 * (l % 2))) & 0x700)];
                let s = sc[ib / 2] >> (6 * (ib % 2));
                let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
                let y = q8.add(32 * ib);
                acc1 = vmlaq_n_s32(acc1, grid_dot16(g(0), g(1), y), ls1);
                acc1 = vmlaq_n_s32(acc1, grid_dot16(g(2), g(3), y.add(16)), ls2);
                // delta part: Σq8 per 4 elements (lanes 2l', 2l'+1 of each half hold group l) times ±ls
                let f = |l: usize| {
                    let neg = h(l) & (0x08 << (4 * (l % 2))) != 0;
                    (if l < 2 { ls1 } else { ls2 }) * if neg { -1 } else { 1 }
                };
                let s1 = sdot(vdupq_n_s32(0), ones, vld1q_s8(y as *const i8));
                let s2 = sdot(vdupq_n_s32(0), ones, vld1q_s8(y.add(16) as *const i8));
                let f1 = [f(0), f(0), f(1), f(1)];
                let f2 = [f(2), f(2), f(3), f(3)];
                acc2 = vmlaq_s32(acc2, s1, vld1q_s32(f1.as_ptr()));
                acc2 = vmlaq_s32(acc2, s2, vld1q_s32(f2.as_ptr()));
            }
            let (sumi1, sumi2) = (vaddvq_s32(acc1), vaddvq_s32(acc2));
            sumf += d.to_f32() * yd * (sumi1 as f32 + IQ1S_DELTA * sumi2 as f32);
        }
        sumf
    }
}
