//! The scalar dots (`VecDot`) of every weight type with its activation partner. Per block: the
//! exact integer dot of each (sub)block, then one float update in block order (the SIMD kernels
//! reproduce the integer parts exactly; the K-quant ones the float formula too):
//!   Q4_0, Q5_0, Q8_0:        sumf += f32(sumi)·(dx·dy)
//!   MXFP4:                   sumf += (dy·2^(e−128))·f32(sumi)   (ggml's generic order)
//!   Q4_1, Q5_1:              sumf += (dx·dy)·f32(sumi) + mx·sy
//!   Q2_K, Q4_K, Q5_K:        sumf += (dy·dx)·f32(isum) − (dy·dmin)·f32(summs)   (summs = Σ min·bsums)
//!   Q3_K, Q6_K:              sumf += (dx·dy)·f32(isum)
//!   IQ2_XXS, IQ2_XS, IQ2_S:  sumf += (dx·dy)·f32(bsum), result 0.125·sumf   (bsum = Σ (2s+1)·sumi)
//!   IQ3_XXS:                 sumf += (dx·dy)·f32(bsum), result 0.25·sumf
//!   IQ3_S:                   sumf += (dx·dy)·f32(bsum)
//!   IQ1_S, IQ1_M:            sumf += (dx·dy)·(f32(sumi) + 0.125·f32(sumi_delta))
//!   IQ4_NL:                  sumf += (dy·dx)·f32(sumi)
//!   IQ4_XS:                  per 32 weights sumf += ((dx·dy)·f32(ls − 32))·f32(sumi)
//!   TQ1_0:                   sumf += f32(sumi)·(dx·dy)
//!   TQ2_0:                   sumf += f32(sumi)·(dy·dx)
//!   F16, BF16, F32:          Σ of the products in f64 (like ggml's scalar `ggml_vec_dot_f16`), rounded once.

// Index loops mirror ggml's C loops one to one, which keeps the port auditable.
#![allow(clippy::needless_range_loop)]

use half::{bf16, f16};

use super::VecDot;
use crate::quant::iq::{grid4, grid8, iq1m_index, iq1m_sc, iq1m_scale, iq1s_index, iq2s_index, iq2xxs_aux};
use crate::quant::iq::{iq3s_indices, iq3xxs_aux, IQ1S_DELTA};
use crate::quant::iq4::{BlockIQ4NL, BlockIQ4XS, KVALUES_IQ4NL};
use crate::quant::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use crate::quant::k_quants::{q3k_scale, scales_mins_k4};
use crate::quant::mxfp4::{e8m0_to_fp32_half, BlockMXFP4, KVALUES_MXFP4};
use crate::quant::q5_0::q5_pair;
use crate::quant::tq::{tq1_trits, tq2_codes, BlockTQ1_0, BlockTQ2_0};
use crate::quant::{BlockIQ1M, BlockIQ1S, BlockIQ2S, BlockIQ2XS, BlockIQ2XXS, BlockIQ3S, BlockIQ3XXS};
use crate::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// The blocks of a dot over n elements of blocks of `bs` elements.
#[inline(always)]
fn blocks(n: usize, bs: usize, nx: usize, ny: usize) -> usize {
    let nb = n / bs;
    assert!(n.is_multiple_of(bs) && nx >= nb && ny >= nb, "vec_dot: n={n} must be whole blocks of both rows");
    nb
}

/// Σ `block(x, y)` over the blocks of a dot of `n` elements (blocks of `bs`), from 0 in block order:
/// `sumf += block(x_i, y_i)`.
#[inline(always)]
fn sum_blocks<X, Y>(n: usize, bs: usize, x: &[X], y: &[Y], block: impl Fn(&X, &Y) -> f32) -> f32 {
    let nb = blocks(n, bs, x.len(), y.len());
    let mut sumf = 0.0f32;
    for (x, y) in x[..nb].iter().zip(&y[..nb]) {
        sumf += block(x, y);
    }
    sumf
}

impl VecDot for BlockQ4_0 {
    type Act = BlockQ8_0;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_0]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let mut sumi = 0i32;
            for j in 0..16 {
                let v0 = (x.qs[j] & 0x0F) as i32 - 8;
                let v1 = (x.qs[j] >> 4) as i32 - 8;
                sumi += v0 * y.qs[j] as i32 + v1 * y.qs[j + 16] as i32;
            }
            sumi as f32 * (x.d.to_f32() * y.d.to_f32())
        })
    }
}

impl VecDot for BlockQ4_1 {
    type Act = BlockQ8_1;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_1]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += (x.qs[j] & 0x0F) as i32 * y.qs[j] as i32 + (x.qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
            }
            (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32()
        })
    }
}

impl VecDot for BlockQ5_0 {
    type Act = BlockQ8_0;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_0]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let qh = u32::from_le_bytes(x.qh);
            let mut sumi = 0i32;
            for j in 0..16 {
                let (v0, v1) = q5_pair(&x.qs, qh, j);
                sumi += (v0 - 16) * y.qs[j] as i32 + (v1 - 16) * y.qs[j + 16] as i32;
            }
            sumi as f32 * (x.d.to_f32() * y.d.to_f32())
        })
    }
}

impl VecDot for BlockQ5_1 {
    type Act = BlockQ8_1;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_1]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let qh = u32::from_le_bytes(x.qh);
            let mut sumi = 0i32;
            for j in 0..16 {
                let (v0, v1) = q5_pair(&x.qs, qh, j);
                sumi += v0 * y.qs[j] as i32 + v1 * y.qs[j + 16] as i32;
            }
            (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32()
        })
    }
}

impl VecDot for BlockQ8_0 {
    type Act = BlockQ8_0;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_0]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&p, &q)| p as i32 * q as i32).sum();
            sumi as f32 * (x.d.to_f32() * y.d.to_f32())
        })
    }
}

impl VecDot for BlockMXFP4 {
    type Act = BlockQ8_0;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_0]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| {
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += y.qs[j] as i32 * KVALUES_MXFP4[(x.qs[j] & 0x0F) as usize] as i32
                    + y.qs[j + 16] as i32 * KVALUES_MXFP4[(x.qs[j] >> 4) as usize] as i32;
            }
            (y.d.to_f32() * e8m0_to_fp32_half(x.e)) * sumi as f32
        })
    }
}

/// Σ over 32 weights of y · kvalues_iq4nl[q], low nibbles with y[0..16], high with y[16..32].
#[inline(always)]
fn iq4_sum(qs: &[u8], y: &[i8]) -> i32 {
    let (mut sumi1, mut sumi2) = (0i32, 0i32);
    for j in 0..16 {
        sumi1 += y[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as i32;
        sumi2 += y[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
    }
    sumi1 + sumi2
}

impl VecDot for BlockIQ4NL {
    type Act = BlockQ8_0;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8_0]) -> f32 {
        sum_blocks(n, 32, x, y, |x, y| (y.d.to_f32() * x.d.to_f32()) * iq4_sum(&x.qs, &y.qs) as f32)
    }
}

impl VecDot for BlockIQ4XS {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        // ggml's generic loop updates sumf once per 32 weights, not once per block.
        let nb = blocks(n, QK_K, x.len(), y.len());
        let mut sumf = 0.0f32;
        for (x, y) in x[..nb].iter().zip(&y[..nb]) {
            let d4d8 = x.d.to_f32() * y.d;
            for ib in 0..QK_K / 32 {
                let dl = d4d8 * (x.ls(ib) - 32) as f32;
                sumf += dl * iq4_sum(&x.qs[16 * ib..16 * ib + 16], &y.qs[32 * ib..32 * ib + 32]) as f32;
            }
        }
        sumf
    }
}

impl VecDot for BlockTQ1_0 {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let sum: i32 = tq1_trits(x).iter().zip(&y.qs).map(|(&t, &q)| (t - 1) * q as i32).sum();
            sum as f32 * (x.d.to_f32() * y.d)
        })
    }
}

impl VecDot for BlockTQ2_0 {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let sumi: i32 = tq2_codes(x).iter().zip(&y.qs).map(|(&t, &q)| (t - 1) * q as i32).sum();
            sumi as f32 * (y.d * x.d.to_f32())
        })
    }
}

impl VecDot for BlockQ2K {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let sc = &x.scales;
            let summs: i32 = (0..16).map(|j| (sc[j] >> 4) as i32 * y.bsums[j] as i32).sum();
            let dall = y.d * x.d.to_f32();
            let dmin = y.d * x.dmin.to_f32();
            let mut isum = 0i32;
            let mut is = 0;
            for chunk in 0..2 {
                let qc = &x.qs[32 * chunk..32 * chunk + 32];
                for s in 0..4 {
                    let shift = 2 * s;
                    let base = 128 * chunk + 32 * s;
                    for half in 0..2 {
                        let d = (sc[is] & 0x0F) as i32;
                        is += 1;
                        let mut l_sum = 0i32;
                        for l in 16 * half..16 * half + 16 {
                            l_sum += y.qs[base + l] as i32 * ((qc[l] >> shift) & 3) as i32;
                        }
                        isum += d * l_sum;
                    }
                }
            }
            dall * isum as f32 - dmin * summs as f32
        })
    }
}

impl VecDot for BlockQ3K {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            // Values in [-4, 3]: 2 low bits from qs, minus 4 when the hmask bit is clear.
            let mut vals = [0i32; QK_K];
            let mut m = 1u8;
            for chunk in 0..2 {
                for s in 0..4 {
                    for l in 0..32 {
                        let lo = ((x.qs[32 * chunk + l] >> (2 * s)) & 3) as i32;
                        vals[128 * chunk + 32 * s + l] = lo - if x.hmask[l] & m != 0 { 0 } else { 4 };
                    }
                    m = m.wrapping_shl(1);
                }
            }
            let mut isum = 0i32;
            for j in 0..16 {
                let s: i32 = (16 * j..16 * j + 16).map(|i| vals[i] * y.qs[i] as i32).sum();
                isum += q3k_scale(j, &x.scales) * s;
            }
            x.d.to_f32() * y.d * isum as f32
        })
    }
}

/// Σ min_j · (bsum_2j + bsum_2j+1) of a Q4_K/Q5_K block.
#[inline(always)]
fn k4_min_sum(mn: &[u8; 8], y: &BlockQ8K) -> i32 {
    (0..8).map(|j| mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32)).sum()
}

/// A Q4_K or Q5_K super-block's value: `(dy·dx)·f32(isum) − (dy·dmin)·f32(Σ min·bsums)`, the
/// integer sum over the 4-bit values, plus 16 where Q5_K's high bit (`qh`) is set.
#[inline(always)]
fn k4_block(d: f16, dmin: f16, scales: &[u8; 12], qs: &[u8; 128], qh: Option<&[u8; 32]>, y: &BlockQ8K) -> f32 {
    let (sc, mn) = scales_mins_k4(scales);
    let high = |l: usize, bit: u8| qh.map_or(0, |h| if h[l] & bit != 0 { 16 } else { 0 });
    let mut isum = 0i32;
    for j in 0..4 {
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let (mut s0, mut s1) = (0i32, 0i32);
        for l in 0..32 {
            let v0 = (qs[32 * j + l] & 0x0F) as i32 + high(l, u1);
            let v1 = (qs[32 * j + l] >> 4) as i32 + high(l, u2);
            s0 += v0 * y.qs[64 * j + l] as i32;
            s1 += v1 * y.qs[64 * j + 32 + l] as i32;
        }
        isum += sc[2 * j] as i32 * s0 + sc[2 * j + 1] as i32 * s1;
    }
    let msum = k4_min_sum(&mn, y);
    y.d * d.to_f32() * isum as f32 - y.d * dmin.to_f32() * msum as f32
}

impl VecDot for BlockQ4K {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| k4_block(x.d, x.dmin, &x.scales, &x.qs, None, y))
    }
}

impl VecDot for BlockQ5K {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| k4_block(x.d, x.dmin, &x.scales, &x.qs, Some(&x.qh), y))
    }
}

impl VecDot for BlockQ6K {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let mut vals = [0i32; QK_K];
            for h in 0..2 {
                let ql = &x.ql[64 * h..64 * h + 64];
                let qh = &x.qh[32 * h..32 * h + 32];
                let v = &mut vals[128 * h..128 * h + 128];
                for l in 0..32 {
                    v[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                    v[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    v[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    v[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                }
            }
            let mut isum = 0i32;
            for j in 0..16 {
                let s: i32 = (16 * j..16 * j + 16).map(|i| vals[i] * y.qs[i] as i32).sum();
                isum += x.scales[j] as i32 * s;
            }
            x.d.to_f32() * y.d * isum as f32
        })
    }
}

/// Σ x·y over `n` elements of a float type, products and sum in f64, rounded once.
#[inline(always)]
fn dot_f64<T: Copy>(n: usize, x: &[T], y: &[T], wide: impl Fn(T) -> f64) -> f32 {
    let mut s = 0.0f64;
    for i in 0..n {
        s += wide(x[i]) * wide(y[i]);
    }
    s as f32
}

impl VecDot for f16 {
    type Act = f16;
    fn vec_dot(n: usize, x: &[Self], y: &[f16]) -> f32 {
        dot_f64(n, x, y, |v| v.to_f32() as f64)
    }
}

impl VecDot for bf16 {
    type Act = bf16;
    fn vec_dot(n: usize, x: &[Self], y: &[bf16]) -> f32 {
        dot_f64(n, x, y, |v| v.to_f32() as f64)
    }
}

impl VecDot for f32 {
    type Act = f32;
    fn vec_dot(n: usize, x: &[Self], y: &[f32]) -> f32 {
        dot_f64(n, x, y, |v| v as f64)
    }
}

/// Σ over 8 (or 4) values of grid[j]·q8[j], negated where bit `bit0 + j` of `signs` is set.
#[inline(always)]
fn signed_dot(grid: &[u8], signs: u8, bit0: usize, q8: &[i8]) -> i32 {
    let mut sumi = 0i32;
    for (j, (&g, &q)) in grid.iter().zip(q8).enumerate() {
        sumi += g as i32 * q as i32 * if signs & (1 << (bit0 + j)) != 0 { -1 } else { 1 };
    }
    sumi
}

/// `ggml_vec_dot_iq2_xxs_q8_K_generic`: per 32 weights an exact sum times its odd scale 2s+1.
impl VecDot for BlockIQ2XXS {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        0.125
            * sum_blocks(n, QK_K, x, y, |x, y| {
                let mut bsum = 0i32;
                for ib32 in 0..QK_K / 32 {
                    let (aux0, aux1) = iq2xxs_aux(x, ib32);
                    let ls = 2 * (aux1 >> 28) as i32 + 1;
                    let mut sumi = 0i32;
                    for l in 0..4 {
                        let grid = grid8(IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize]);
                        let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                        sumi += signed_dot(&grid, signs, 0, &y.qs[32 * ib32 + 8 * l..]);
                    }
                    bsum += sumi * ls;
                }
                (x.d.to_f32() * y.d) * bsum as f32
            })
    }
}

/// `ggml_vec_dot_iq2_xs_q8_K_generic`: a 4-bit scale per 16 weights.
impl VecDot for BlockIQ2XS {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        0.125
            * sum_blocks(n, QK_K, x, y, |x, y| {
                let mut bsum = 0i32;
                for ib32 in 0..QK_K / 32 {
                    for h in 0..2 {
                        let ls = 2 * ((x.scales[ib32] >> (4 * h)) & 0xf) as i32 + 1;
                        let mut sumi = 0i32;
                        for l in 2 * h..2 * h + 2 {
                            let q = x.qs[4 * ib32 + l];
                            let grid = grid8(IQ2XS_GRID[(q & 511) as usize]);
                            sumi += signed_dot(&grid, KSIGNS_IQ2XS[(q >> 9) as usize], 0, &y.qs[32 * ib32 + 8 * l..]);
                        }
                        bsum += sumi * ls;
                    }
                }
                (x.d.to_f32() * y.d) * bsum as f32
            })
    }
}

/// `ggml_vec_dot_iq2_s_q8_K_generic`.
impl VecDot for BlockIQ2S {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        0.125
            * sum_blocks(n, QK_K, x, y, |x, y| {
                let mut bsum = 0i32;
                for ib32 in 0..QK_K / 32 {
                    for h in 0..2 {
                        let ls = 2 * ((x.scales[ib32] >> (4 * h)) & 0xf) as i32 + 1;
                        let mut sumi = 0i32;
                        for l in 2 * h..2 * h + 2 {
                            let grid = grid8(IQ2S_GRID[iq2s_index(x, ib32, l)]);
                            let signs = x.qs[QK_K / 8 + 4 * ib32 + l];
                            sumi += signed_dot(&grid, signs, 0, &y.qs[32 * ib32 + 8 * l..]);
                        }
                        bsum += sumi * ls;
                    }
                }
                (x.d.to_f32() * y.d) * bsum as f32
            })
    }
}

/// `ggml_vec_dot_iq3_xxs_q8_K_generic`.
impl VecDot for BlockIQ3XXS {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        0.25 * sum_blocks(n, QK_K, x, y, |x, y| {
            let mut bsum = 0i32;
            for ib32 in 0..QK_K / 32 {
                let aux = iq3xxs_aux(x, ib32);
                let ls = 2 * (aux >> 28) as i32 + 1;
                let mut sumi = 0i32;
                for l in 0..4 {
                    let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                    let q8 = &y.qs[32 * ib32 + 8 * l..];
                    sumi += signed_dot(&grid4(IQ3XXS_GRID[x.qs[8 * ib32 + 2 * l] as usize]), signs, 0, q8);
                    sumi += signed_dot(&grid4(IQ3XXS_GRID[x.qs[8 * ib32 + 2 * l + 1] as usize]), signs, 4, &q8[4..]);
                }
                bsum += sumi * ls;
            }
            (x.d.to_f32() * y.d) * bsum as f32
        })
    }
}

/// `ggml_vec_dot_iq3_s_q8_K_generic`.
impl VecDot for BlockIQ3S {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let mut bsum = 0i32;
            for ib32 in 0..QK_K / 32 {
                let ls = 2 * ((x.scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i32 + 1;
                let mut sumi = 0i32;
                for l in 0..4 {
                    let (i1, i2) = iq3s_indices(x, ib32, l);
                    let signs = x.signs[4 * ib32 + l];
                    let q8 = &y.qs[32 * ib32 + 8 * l..];
                    sumi += signed_dot(&grid4(IQ3S_GRID[i1]), signs, 0, q8);
                    sumi += signed_dot(&grid4(IQ3S_GRID[i2]), signs, 4, &q8[4..]);
                }
                bsum += sumi * ls;
            }
            (x.d.to_f32() * y.d) * bsum as f32
        })
    }
}

/// Σ over 8 values of grid[j]·q8[j], the grid values signed bytes (`iq1s_grid`).
#[inline(always)]
fn grid_i8_dot(p: u64, q8: &[i8]) -> i32 {
    grid8(p).iter().zip(q8).map(|(&g, &q)| g as i8 as i32 * q as i32).sum()
}

/// `ggml_vec_dot_iq1_s_q8_K_generic`: the delta's part through Q8_K's 16-element sums.
impl VecDot for BlockIQ1S {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let (mut sumi, mut sumi1) = (0i32, 0i32);
            for ib in 0..QK_K / 32 {
                let qh = x.qh[ib];
                let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
                let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
                let mut lsum = 0i32;
                for l in 0..4 {
                    lsum += grid_i8_dot(IQ1S_GRID[iq1s_index(x, ib, l)], &y.qs[32 * ib + 8 * l..]);
                }
                sumi += ls * lsum;
                sumi1 += ls * delta * (y.bsums[2 * ib] as i32 + y.bsums[2 * ib + 1] as i32);
            }
            x.d.to_f32() * y.d * (sumi as f32 + IQ1S_DELTA * sumi1 as f32)
        })
    }
}

/// `ggml_vec_dot_iq1_m_q8_K_generic`: the delta's part through sums of the activations per 8.
impl VecDot for BlockIQ1M {
    type Act = BlockQ8K;
    fn vec_dot(n: usize, x: &[Self], y: &[BlockQ8K]) -> f32 {
        sum_blocks(n, QK_K, x, y, |x, y| {
            let sc = iq1m_sc(x);
            let (mut sumi1, mut sumi2) = (0i32, 0i32);
            for ib in 0..QK_K / 32 {
                let (mut sum1, mut sum2) = ([0i32; 2], [0i32; 2]);
                for l in 0..4 {
                    let (idx, neg) = iq1m_index(x, ib, l);
                    let q8 = &y.qs[32 * ib + 8 * l..][..8];
                    let lsum2: i32 = q8.iter().map(|&q| q as i32).sum();
                    sum1[l / 2] += grid_i8_dot(IQ1S_GRID[idx], q8);
                    sum2[l / 2] += lsum2 * if neg { -1 } else { 1 };
                }
                let s = sc[ib / 2] >> (6 * (ib % 2));
                let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
                sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
                sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
            }
            iq1m_scale(&sc).to_f32() * y.d * (sumi1 as f32 + IQ1S_DELTA * sumi2 as f32)
        })
    }
}
