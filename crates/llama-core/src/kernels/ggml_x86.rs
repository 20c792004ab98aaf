//! llama.cpp's x86 summation orders for the quantized matrix products, written out one dot at a
//! time in portable Rust: the reference the x86 kernels (row dots and R16 GEMMs) are tested
//! against, bit for bit. These orders are the same in llama.cpp's AVX2 and AVX-512 builds (both
//! run the `__AVX2__` paths of ggml-cpu's arch/x86 quants.c and repack.cpp, or kernels with the
//! same float updates; integer parts are exact either way), and were checked element by element
//! against llama.cpp's intermediate tensors on both (docs/notes/inference.md).
//!
//! Every function takes byte rows like a `VecDotFn` (`n` elements, whole blocks): the weight row
//! and the activation row of its type's partner (Q8_0, Q8_1 or Q8_K). An FMA is `mul_add`, so a
//! test compares the exact rounding of every step.

use half::f16;

use crate::quant::blocks::{read_blocks, Block};
use crate::quant::iq4::{BlockIQ4NL, BlockIQ4XS, KVALUES_IQ4NL};
use crate::quant::k_quants::{q3k_scale, scales_mins_k4};
use crate::quant::mxfp4::{e8m0_to_fp32_half, BlockMXFP4, KVALUES_MXFP4};
use crate::quant::GgmlType;
use crate::quant::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, QK_K,
};

/// `hsum_float_8` (quants.c), also sgemm.cpp's `hsum(__m256)`: `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`.
pub fn hsum_float_8(l: &[f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

fn blocks<T: Block>(n: usize, row: &[u8]) -> Vec<T> {
    let nb = n / T::TYPE.block_size();
    read_blocks::<T>(&row[..nb * std::mem::size_of::<T>()]).into_owned()
}

/// The 32 unsigned 4-bit values of a Q4_0 / Q4_1 block's `qs`, element order.
fn nibbles(qs: &[u8; 16]) -> [i32; 32] {
    std::array::from_fn(|e| {
        let byte = qs[e % 16] as i32;
        if e < 16 {
            byte & 15
        } else {
            byte >> 4
        }
    })
}
/// The 32 unsigned 5-bit values of a Q5_0 / Q5_1 block (`qh`, `qs`), element order.
fn fives(qh: [u8; 4], qs: &[u8; 16]) -> [i32; 32] {
    let (qh, lo) = (u32::from_le_bytes(qh), nibbles(qs));
    std::array::from_fn(|e| lo[e] | (((qh >> e) & 1) as i32) << 4)
}
/// The 32 weight values of a Q4_0 / Q5_0 block as signed integers, element order.
fn q4_0_values(b: &BlockQ4_0) -> [i32; 32] {
    nibbles(&b.qs).map(|v| v - 8)
}
fn q5_0_values(b: &BlockQ5_0) -> [i32; 32] {
    fives(b.qh, &b.qs).map(|v| v - 16)
}

/// The 8 lane sums of one 32-element block: lane l = Σ x[e]·y[e] over e = 4l..4l+4 (exact).
fn lanes(x: &[i32; 32], y: &[i8; 32]) -> [i32; 8] {
    std::array::from_fn(|l| (4 * l..4 * l + 4).map(|e| x[e] * y[e] as i32).sum())
}

/// Q4_0 / Q5_0 / Q8_0 × Q8_0 as `ggml_vec_dot_*_q8_0` (AVX2 path) and tinyBLAS_Q0_AVX sum: 8 float
/// lanes of 4 elements, per block `lane = fma(d_w·d_a, f32(lane sum), lane)`, then `hsum_float_8`.
fn lanes_q8_0(w: impl Iterator<Item = (f16, [i32; 32])>, a: &[BlockQ8_0]) -> f32 {
    let mut acc = [0f32; 8];
    for ((dw, x), y) in w.zip(a) {
        let d = dw.to_f32() * y.d.to_f32();
        for (al, s) in acc.iter_mut().zip(lanes(&x, &y.qs)) {
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc)
}

/// Q8_0 weights (`ggml_vec_dot_q8_0_q8_0`, tinyBLAS_Q0_AVX): see `lanes_q8_0`.
pub fn q8_0_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let w = blocks::<BlockQ8_0>(n, w);
    lanes_q8_0(w.iter().map(|b| (b.d, std::array::from_fn(|e| b.qs[e] as i32))), &blocks(n, a))
}

/// Q5_0 weights (`ggml_vec_dot_q5_0_q8_0`, tinyBLAS_Q0_AVX): see `lanes_q8_0`.
pub fn q5_0_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let w = blocks::<BlockQ5_0>(n, w);
    lanes_q8_0(w.iter().map(|b| (b.d, q5_0_values(b))), &blocks(n, a))
}

/// MXFP4 × Q8_0 as `ggml_vec_dot_mxfp4_q8_0` (AVX2 path): blocks taken in pairs, the even one
/// into one set of 8 float lanes and the odd one into another (lanes of 4 elements,
/// `lane = fma(d_a·2^(e−128), f32(lane sum), lane)`), `hsum_float_8` of the two sets added lane
/// by lane; an odd last block is added after as `sumf + d·f32(sumi)` (measured on llama.cpp's
/// build: not contracted into an FMA).
pub fn mxfp4_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockMXFP4>(n, w), blocks::<BlockQ8_0>(n, a));
    let values = |b: &BlockMXFP4| -> [i32; 32] {
        std::array::from_fn(|e| {
            let byte = b.qs[e % 16];
            KVALUES_MXFP4[(if e < 16 { byte & 15 } else { byte >> 4 }) as usize] as i32
        })
    };
    let mut acc = [[0f32; 8]; 2];
    let pairs = w.len() / 2 * 2;
    for (i, (x, y)) in w[..pairs].iter().zip(&a).enumerate() {
        let d = y.d.to_f32() * e8m0_to_fp32_half(x.e);
        for (al, s) in acc[i % 2].iter_mut().zip(lanes(&values(x), &y.qs)) {
            *al = d.mul_add(s as f32, *al);
        }
    }
    let mut sumf = hsum_float_8(&std::array::from_fn(|l| acc[0][l] + acc[1][l]));
    if let (Some(x), Some(y)) = (w[pairs..].first(), a.get(pairs)) {
        let d = y.d.to_f32() * e8m0_to_fp32_half(x.e);
        let sumi: i32 = values(x).iter().zip(&y.qs).map(|(&v, &q)| v * q as i32).sum();
        sumf += d * sumi as f32;
    }
    sumf
}

/// Q4_0 weights in llama.cpp's x86 repacked GEMV/GEMM (`ggml_gemv_q4_0_8x8_q8_0`,
/// `gemm_q4_b32_8x8_q8_0_lut_avx`): one exact integer sum per block, `acc = fma(f32(sum), d_w·d_a, acc)`.
pub fn q4_0_repack(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ4_0>(n, w), blocks::<BlockQ8_0>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let v = q4_0_values(x);
        let s: i32 = (0..32).map(|e| v[e] * y.qs[e] as i32).sum();
        acc = (s as f32).mul_add(x.d.to_f32() * y.d.to_f32(), acc);
    }
    acc
}

/// IQ4_NL weights in llama.cpp's x86 repacked GEMV/GEMM (`ggml_gemv_iq4_nl_8x8_q8_0` runs Q4_0's
/// `gemv_q4_b32_8x8_q8_0_lut_avx` with the kvalues_iq4nl table): as `q4_0_repack`.
pub fn iq4_nl_repack(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockIQ4NL>(n, w), blocks::<BlockQ8_0>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let v = nibbles(&x.qs).map(|q| KVALUES_IQ4NL[q as usize] as i32);
        let s: i32 = (0..32).map(|e| v[e] * y.qs[e] as i32).sum();
        acc = (s as f32).mul_add(x.d.to_f32() * y.d.to_f32(), acc);
    }
    acc
}

/// MXFP4 weights in llama.cpp's x86 repacked GEMV/GEMM (`ggml_gemv_mxfp4_8x8_q8_0` /
/// `ggml_gemm_mxfp4_8x8_q8_0` run Q4_0's `gemv/gemm_q4_b32_8x8_q8_0_lut_avx` with the
/// kvalues_mxfp4 table and the e8m0 scales): as `q4_0_repack`, d_w = 2^(e−128) (`e8m0_to_fp32_half`).
pub fn mxfp4_repack(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockMXFP4>(n, w), blocks::<BlockQ8_0>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let v = nibbles(&x.qs).map(|q| KVALUES_MXFP4[q as usize] as i32);
        let s: i32 = (0..32).map(|e| v[e] * y.qs[e] as i32).sum();
        acc = (s as f32).mul_add(e8m0_to_fp32_half(x.e) * y.d.to_f32(), acc);
    }
    acc
}

/// IQ4_XS × Q8_K as `ggml_vec_dot_iq4_xs_q8_K` (AVX2 path; IQ4_XS is not repacked): 8 float lanes,
/// lane l the integer Σ_ib (ls_ib − 32)·Σ_{e=4l..4l+4} v·y over each sub-block of 32, folded as
/// `lane = fma(d_w·d_a, f32(lane sum), lane)` per super-block; `hsum_float_8` at the end.
pub fn iq4_xs_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockIQ4XS>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = [0f32; 8];
    for (x, y) in w.iter().zip(&a) {
        let mut lanes = [0i32; 8];
        for ib in 0..8 {
            let qs: &[u8; 16] = x.qs[16 * ib..16 * ib + 16].try_into().unwrap();
            let v = nibbles(qs).map(|q| KVALUES_IQ4NL[q as usize] as i32);
            for (l, lane) in lanes.iter_mut().enumerate() {
                let s: i32 = (4 * l..4 * l + 4).map(|e| v[e] * y.qs[32 * ib + e] as i32).sum();
                *lane += (x.ls(ib) - 32) * s;
            }
        }
        let d = x.d.to_f32() * y.d;
        for (al, l) in acc.iter_mut().zip(lanes) {
            *al = d.mul_add(l as f32, *al);
        }
    }
    hsum_float_8(&acc)
}

/// IQ4_XS × Q8_K as llama.cpp's x86 "tiled" GEMM (batches of 8 tokens or more, as Q6_K): one exact
/// integer sum per super-block, `acc = fma(f32(isum)·d_w, d_a, acc)` (the first product rounded).
pub fn iq4_xs_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockIQ4XS>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let mut s = 0i32;
        for ib in 0..8 {
            let qs: &[u8; 16] = x.qs[16 * ib..16 * ib + 16].try_into().unwrap();
            let v = nibbles(qs).map(|q| KVALUES_IQ4NL[q as usize] as i32);
            s += (x.ls(ib) - 32) * (0..32).map(|e| v[e] * y.qs[32 * ib + e] as i32).sum::<i32>();
        }
        acc = ((s as f32) * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// Q4_1 / Q5_1 × Q8_1 as `ggml_vec_dot_q4_1_q8_1` / `ggml_vec_dot_q5_1_q8_1` (AVX2 paths): 8 float
/// lanes of 4 elements, `lane = fma(d_w·d_a, f32(lane sum of q·y), lane)` with q unsigned, and the
/// minimums apart as `summs = fma(m_w, s_a, summs)` (GCC contracts `summs += m·s`);
/// `hsum_float_8(lanes) + summs`.
fn lanes_q8_1(w: impl Iterator<Item = (f16, f16, [i32; 32])>, a: &[BlockQ8_1]) -> f32 {
    let (mut acc, mut summs) = ([0f32; 8], 0f32);
    for ((dw, mw, x), y) in w.zip(a) {
        summs = mw.to_f32().mul_add(y.s.to_f32(), summs);
        let d = dw.to_f32() * y.d.to_f32();
        for (al, s) in acc.iter_mut().zip(lanes(&x, &y.qs)) {
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc) + summs
}

/// Q4_1 weights (`ggml_vec_dot_q4_1_q8_1`): see `lanes_q8_1`.
pub fn q4_1_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let w = blocks::<BlockQ4_1>(n, w);
    lanes_q8_1(w.iter().map(|b| (b.d, b.m, nibbles(&b.qs))), &blocks(n, a))
}

/// Q5_1 weights (`ggml_vec_dot_q5_1_q8_1`): see `lanes_q8_1`.
pub fn q5_1_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let w = blocks::<BlockQ5_1>(n, w);
    lanes_q8_1(w.iter().map(|b| (b.d, b.m, fives(b.qh, &b.qs))), &blocks(n, a))
}

/// Per Q4_K super-block: the 8 sub-blocks' `scale_j · Σ q·y` and `min_j · (bsum_2j + bsum_2j+1)`.
fn q4_k_parts(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 8], [i32; 8]) {
    let (sc, mn) = scales_mins_k4(&x.scales);
    let q = |e: usize| -> i32 {
        let byte = x.qs[32 * (e / 64) + e % 32] as i32;
        if (e / 32).is_multiple_of(2) {
            byte & 15
        } else {
            byte >> 4
        }
    };
    let sums =
        std::array::from_fn(|j| sc[j] as i32 * (32 * j..32 * j + 32).map(|e| q(e) * y.qs[e] as i32).sum::<i32>());
    let mins = std::array::from_fn(|j| mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32));
    (sums, mins)
}

/// Q4_K × Q8_K: scale sums and minimum sums go to two float accumulators,
/// `acc = fma(f32(isum), d_w·d_a, acc)`, `accm = fma(f32(imin), dmin_w·d_a, accm)`, result
/// `acc − accm`; `pair = false`: one update per super-block (`ggml_gemv_q4_K_8x8_q8_K`: single
/// tokens and the tokens after a batch's last full group of 4), `pair = true`: one per pair of
/// sub-blocks 2p, 2p+1 (`ggml_gemm_q4_K_8x8_q8_K`: a batch's full groups of 4 tokens, whose
/// activations come from `ggml_quantize_mat_q8_K_4x8`).
fn q4_k(n: usize, w: &[u8], a: &[u8], pair: bool) -> f32 {
    let (w, a) = (blocks::<BlockQ4K>(n, w), blocks::<BlockQ8K>(n, a));
    let (mut acc, mut accm) = (0f32, 0f32);
    for (x, y) in w.iter().zip(&a) {
        let (sums, mins) = q4_k_parts(x, y);
        let (dd, ddm) = (x.d.to_f32() * y.d, x.dmin.to_f32() * y.d);
        // sub-blocks summed per update: a pair (gemm) or all eight (gemv)
        let width = if pair { 2 } else { 8 };
        for (s, m) in sums.chunks(width).zip(mins.chunks(width)) {
            acc = (s.iter().sum::<i32>() as f32).mul_add(dd, acc);
            accm = (m.iter().sum::<i32>() as f32).mul_add(ddm, accm);
        }
    }
    acc - accm
}

/// Q4_K, `ggml_gemv_q4_K_8x8_q8_K`'s order (see `q4_k`).
pub fn q4_k_gemv(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k(n, w, a, false)
}

/// Q4_K, `ggml_gemm_q4_K_8x8_q8_K`'s order (see `q4_k`).
pub fn q4_k_gemm4(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k(n, w, a, true)
}

/// The unsigned 6-bit values (q + 32) of a Q6_K super-block, element order.
fn q6_k_values(x: &BlockQ6K) -> [i32; QK_K] {
    std::array::from_fn(|e| {
        let (h, r) = (e / 128, e % 128);
        let (quarter, l) = (r / 32, r % 32);
        let ql = x.ql[64 * h + l + 32 * (quarter % 2)] as i32;
        let lo = if quarter < 2 { ql & 15 } else { ql >> 4 };
        let hi = (x.qh[32 * h + l] as i32 >> (2 * quarter)) & 3;
        lo | hi << 4
    })
}

/// Q6_K × Q8_K as `ggml_vec_dot_q6_K_q8_K` (AVX2 path; batches under 8 tokens): 8 float lanes,
/// lane l holding per super-block the integer
///   Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]  −  32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])
/// (q unsigned; the −32 offset goes through the bsums of sub-blocks 2l, 2l+1), folded as
/// `lane = fma(d_a·d_w, f32(lane), lane)`, then `hsum_float_8`.
pub fn q6_k_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ6K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = [0f32; 8];
    for (x, y) in w.iter().zip(&a) {
        let q = q6_k_values(x);
        let sc = |j: usize| x.scales[j] as i32;
        let d = y.d * x.d.to_f32();
        for (l, al) in acc.iter_mut().enumerate() {
            let mut s = -32 * (sc(2 * l) * y.bsums[2 * l] as i32 + sc(2 * l + 1) * y.bsums[2 * l + 1] as i32);
            for e in (0..QK_K).filter(|e| (e % 32) / 4 == l) {
                s += sc(e / 16) * q[e] * y.qs[e] as i32;
            }
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc)
}

/// Q6_K × Q8_K as llama.cpp's x86 "tiled" K-quant GEMM (batches of 8 tokens or more): one exact
/// integer sum per super-block, `acc = fma(f32(isum)·d_w, d_a, acc)` (the first product rounded).
pub fn q6_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ6K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let q = q6_k_values(x);
        let s: i32 = (0..QK_K).map(|e| x.scales[e / 16] as i32 * (q[e] - 32) * y.qs[e] as i32).sum();
        acc = ((s as f32) * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// The unsigned 5-bit values of a Q5_K super-block (4 low bits from `qs`, the fifth from `qh`),
/// element order, with its 8 sub-block scales and mins.
fn q5_k_values(x: &BlockQ5K) -> ([i32; QK_K], [u8; 8], [u8; 8]) {
    let (sc, mn) = scales_mins_k4(&x.scales);
    let q = std::array::from_fn(|e| {
        let (j, l) = (e / 32, e % 32);
        let byte = x.qs[32 * (j / 2) + l] as i32;
        let lo = if j.is_multiple_of(2) { byte & 15 } else { byte >> 4 };
        lo | (((x.qh[l] >> j) & 1) as i32) << 4
    });
    (q, sc, mn)
}

/// Σ min_j · (bsum_2j + bsum_2j+1) of a Q4_K/Q5_K super-block (exact).
fn k4_mins(mn: &[u8; 8], y: &BlockQ8K) -> i32 {
    (0..8).map(|j| mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32)).sum()
}

/// Q5_K × Q8_K as `ggml_vec_dot_q5_K_q8_K` (AVX2 path, also what llama.cpp's AVX-512 build runs;
/// batches under 8 tokens): 8 float lanes, lane l holding per super-block the integer
///   Σ_j sc_j · Σ_{e = 32j+4l .. 32j+4l+4} q[e]·y[e]
/// folded as `lane = fma(d_a·d_w, f32(lane), lane)`; the minimums apart as
/// `summs = fma(−d_a·dmin_w, f32(Σ min·bsums), summs)`; result `hsum_float_8(lanes) + summs`.
pub fn q5_k_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ5K>(n, w), blocks::<BlockQ8K>(n, a));
    let (mut acc, mut summs) = ([0f32; 8], 0f32);
    for (x, y) in w.iter().zip(&a) {
        let (q, sc, mn) = q5_k_values(x);
        let d = y.d * x.dmin.to_f32();
        summs = (-d).mul_add(k4_mins(&mn, y) as f32, summs);
        let d = y.d * x.d.to_f32();
        for (l, al) in acc.iter_mut().enumerate() {
            let s: i32 = (0..8)
                .map(|j| {
                    sc[j] as i32 * (32 * j + 4 * l..32 * j + 4 * l + 4).map(|e| q[e] * y.qs[e] as i32).sum::<i32>()
                })
                .sum();
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc) + summs
}

/// Q5_K × Q8_K as llama.cpp's x86 "tiled" K-quant GEMM (batches of 8 tokens or more): per
/// super-block the exact integers `s1 = Σ sc·q·y`, `s2 = Σ min·bsums`, then
/// `r = fma(−dmin_w, f32(s2), f32(s1)·d_w)` (`fnmadd`, the product rounded first) and
/// `acc = fma(r, d_a, acc)`.
pub fn q5_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ5K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let (q, sc, mn) = q5_k_values(x);
        let s1: i32 = (0..QK_K).map(|e| sc[e / 32] as i32 * q[e] * y.qs[e] as i32).sum();
        let r = (-x.dmin.to_f32()).mul_add(k4_mins(&mn, y) as f32, s1 as f32 * x.d.to_f32());
        acc = r.mul_add(y.d, acc);
    }
    acc
}

/// The signed values (−4..3) of a Q3_K super-block, element order, with its 16 scales (−32..31).
fn q3_k_values(x: &BlockQ3K) -> ([i32; QK_K], [i32; 16]) {
    let q = std::array::from_fn(|e| {
        let (c, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo = (x.qs[32 * c + l] as i32 >> (2 * k)) & 3;
        lo - if x.hmask[l] >> (4 * c + k) & 1 != 0 { 0 } else { 4 }
    });
    (q, std::array::from_fn(|j| q3k_scale(j, &x.scales)))
}

/// Q3_K × Q8_K as `ggml_vec_dot_q3_K_q8_K` (AVX2 path, also what llama.cpp's AVX-512 build runs;
/// batches under 8 tokens): 8 float lanes, lane l holding per super-block the integer
///   Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]
/// folded as `lane = fma(d_a·d_w, f32(lane), lane)`, then `hsum_float_8`.
pub fn q3_k_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ3K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = [0f32; 8];
    for (x, y) in w.iter().zip(&a) {
        let (q, sc) = q3_k_values(x);
        let d = y.d * x.d.to_f32();
        for (l, al) in acc.iter_mut().enumerate() {
            let s: i32 = (0..QK_K).filter(|e| (e % 32) / 4 == l).map(|e| sc[e / 16] * q[e] * y.qs[e] as i32).sum();
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc)
}

/// Q3_K × Q8_K as llama.cpp's x86 "tiled" K-quant GEMM (batches of 8 tokens or more): one exact
/// integer sum per super-block, `acc = fma(f32(isum)·d_w, d_a, acc)` (the first product rounded),
/// as `q6_k_tiled`.
pub fn q3_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ3K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let (q, sc) = q3_k_values(x);
        let s: i32 = (0..QK_K).map(|e| sc[e / 16] * q[e] * y.qs[e] as i32).sum();
        acc = ((s as f32) * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// Q2_K × Q8_K as `ggml_vec_dot_q2_K_q8_K` (AVX2 path): 8 float lanes; per super-block first the
/// minimums, `lane = fma(−d_a·dmin_w, f32(min_2l·bsum_2l + min_2l+1·bsum_2l+1), lane)`, then the
/// scales, `lane = fma(d_a·d_w, f32(Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]), lane)`; then
/// `hsum_float_8`.
pub fn q2_k_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ2K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = [0f32; 8];
    for (x, y) in w.iter().zip(&a) {
        let q = |e: usize| (x.qs[32 * (e / 128) + e % 32] as i32 >> (2 * ((e % 128) / 32))) & 3;
        let (sc, mn) = (|j: usize| (x.scales[j] & 15) as i32, |j: usize| (x.scales[j] >> 4) as i32);
        let dmin = -y.d * x.dmin.to_f32();
        for (l, al) in acc.iter_mut().enumerate() {
            let m = mn(2 * l) * y.bsums[2 * l] as i32 + mn(2 * l + 1) * y.bsums[2 * l + 1] as i32;
            *al = dmin.mul_add(m as f32, *al);
        }
        let d = y.d * x.d.to_f32();
        for (l, al) in acc.iter_mut().enumerate() {
            let s: i32 = (0..QK_K).filter(|e| (e % 32) / 4 == l).map(|e| sc(e / 16) * q(e) * y.qs[e] as i32).sum();
            *al = d.mul_add(s as f32, *al);
        }
    }
    hsum_float_8(&acc)
}

/// Q2_K × Q8_K as llama.cpp's x86 "tiled" K-quant GEMM (its AVX2 build, batches of 8 tokens or
/// more): per super-block the exact integers `s1 = Σ sc·q·y`, `s2 = Σ min·bsums` (16 sub-blocks),
/// `r = fma(−dmin_w, f32(s2), f32(s1)·d_w)`, `acc = fma(r, d_a, acc)` (as `q5_k_tiled`).
pub fn q2_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<BlockQ2K>(n, w), blocks::<BlockQ8K>(n, a));
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(&a) {
        let q = |e: usize| (x.qs[32 * (e / 128) + e % 32] as i32 >> (2 * ((e % 128) / 32))) & 3;
        let s1: i32 = (0..QK_K).map(|e| (x.scales[e / 16] & 15) as i32 * q(e) * y.qs[e] as i32).sum();
        let s2: i32 = (0..16).map(|j| (x.scales[j] >> 4) as i32 * y.bsums[j] as i32).sum();
        let r = (-x.dmin.to_f32()).mul_add(s2 as f32, s1 as f32 * x.d.to_f32());
        acc = r.mul_add(y.d, acc);
    }
    acc
}

/// Q2_K × Q8_K as llama.cpp's AVX-512 build runs it (that build repacks Q2_K to 8×8 interleaved
/// rows): scale sums and minimum sums go to two float accumulators,
/// `acc = fma(f32(isum), d_w·d_a, acc)`, `accm = fma(f32(imin), dmin_w·d_a, accm)`, result
/// `acc − accm`; `halves = false`: one update per super-block (`ggml_gemv_q2_K_8x8_q8_K`: single
/// tokens and the tokens after a batch's last full group of 4), `halves = true`: one per 128-element
/// half (`ggml_gemm_q2_K_8x8_q8_K`'s AVX-512 path: a batch's full groups of 4 tokens, activations
/// from `ggml_quantize_mat_q8_K_4x8`).
fn q2_k_8x8(n: usize, w: &[u8], a: &[u8], halves: bool) -> f32 {
    let (w, a) = (blocks::<BlockQ2K>(n, w), blocks::<BlockQ8K>(n, a));
    let (mut acc, mut accm) = (0f32, 0f32);
    for (x, y) in w.iter().zip(&a) {
        let q = |e: usize| (x.qs[32 * (e / 128) + e % 32] as i32 >> (2 * ((e % 128) / 32))) & 3;
        let (dd, ddm) = (x.d.to_f32() * y.d, x.dmin.to_f32() * y.d);
        let part = |c: usize| -> (i32, i32) {
            let s = (128 * c..128 * c + 128).map(|e| (x.scales[e / 16] & 15) as i32 * q(e) * y.qs[e] as i32).sum();
            let m = (8 * c..8 * c + 8).map(|j| (x.scales[j] >> 4) as i32 * y.bsums[j] as i32).sum();
            (s, m)
        };
        let (p0, p1) = (part(0), part(1));
        let updates = if halves { vec![p0, p1] } else { vec![(p0.0 + p1.0, p0.1 + p1.1)] };
        for (s, m) in updates {
            acc = (s as f32).mul_add(dd, acc);
            accm = (m as f32).mul_add(ddm, accm);
        }
    }
    acc - accm
}

/// Q2_K, `ggml_gemv_q2_K_8x8_q8_K`'s order (see `q2_k_8x8`).
pub fn q2_k_gemv(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q2_k_8x8(n, w, a, false)
}

/// Q2_K, `ggml_gemm_q2_K_8x8_q8_K`'s order on AVX-512 (see `q2_k_8x8`).
pub fn q2_k_gemm4(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q2_k_8x8(n, w, a, true)
}

/// A grid i-quant super-block as llama.cpp's AVX2 dots see it: the 256 signed grid values (IQ1:
/// without the delta), the odd scale of each 16 elements, and (IQ1) the delta's sign per 8.
fn grid_iq_block(t: GgmlType, x: &[u8]) -> ([i32; QK_K], [i32; 16], [i32; 32]) {
    use crate::quant::iq::*;
    use crate::quant::iq_grids::*;
    let (mut v, mut ls, mut delta) = ([0i32; QK_K], [0i32; 16], [1i32; 32]);
    let signed = |v: &mut [i32], grid: &[u8], signs: u8, bit0: usize| {
        for (j, (v, &g)) in v.iter_mut().zip(grid).enumerate() {
            *v = if signs & (1 << (bit0 + j)) != 0 { -(g as i32) } else { g as i32 };
        }
    };
    let odd = |s: u32| 2 * s as i32 + 1;
    for ib in 0..8 {
        let v = &mut v[32 * ib..32 * ib + 32];
        match t {
            GgmlType::IQ2_XXS => {
                let b = &read_blocks::<BlockIQ2XXS>(x)[0];
                let (aux0, aux1) = iq2xxs_aux(b, ib);
                for l in 0..4 {
                    let grid = grid8(IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize]);
                    signed(&mut v[8 * l..], &grid, KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize], 0);
                }
                ls[2 * ib..2 * ib + 2].fill(odd(aux1 >> 28));
            }
            GgmlType::IQ2_XS => {
                let b = &read_blocks::<BlockIQ2XS>(x)[0];
                for l in 0..4 {
                    let q = b.qs[4 * ib + l];
                    signed(&mut v[8 * l..], &grid8(IQ2XS_GRID[(q & 511) as usize]), KSIGNS_IQ2XS[(q >> 9) as usize], 0);
                }
                ls[2 * ib] = odd((b.scales[ib] & 0xf) as u32);
                ls[2 * ib + 1] = odd((b.scales[ib] >> 4) as u32);
            }
            GgmlType::IQ2_S => {
                let b = &read_blocks::<BlockIQ2S>(x)[0];
                for l in 0..4 {
                    signed(&mut v[8 * l..], &grid8(IQ2S_GRID[iq2s_index(b, ib, l)]), b.qs[QK_K / 8 + 4 * ib + l], 0);
                }
                ls[2 * ib] = odd((b.scales[ib] & 0xf) as u32);
                ls[2 * ib + 1] = odd((b.scales[ib] >> 4) as u32);
            }
            GgmlType::IQ3_XXS => {
                let b = &read_blocks::<BlockIQ3XXS>(x)[0];
                let aux = iq3xxs_aux(b, ib);
                for l in 0..4 {
                    let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                    signed(&mut v[8 * l..], &grid4(IQ3XXS_GRID[b.qs[8 * ib + 2 * l] as usize]), signs, 0);
                    signed(&mut v[8 * l + 4..], &grid4(IQ3XXS_GRID[b.qs[8 * ib + 2 * l + 1] as usize]), signs, 4);
                }
                ls[2 * ib..2 * ib + 2].fill(odd(aux >> 28));
            }
            GgmlType::IQ3_S => {
                let b = &read_blocks::<BlockIQ3S>(x)[0];
                for l in 0..4 {
                    let (i1, i2) = iq3s_indices(b, ib, l);
                    signed(&mut v[8 * l..], &grid4(IQ3S_GRID[i1]), b.signs[4 * ib + l], 0);
                    signed(&mut v[8 * l + 4..], &grid4(IQ3S_GRID[i2]), b.signs[4 * ib + l], 4);
                }
                ls[2 * ib..2 * ib + 2].fill(odd(((b.scales[ib / 2] >> (4 * (ib % 2))) & 0xf) as u32));
            }
            GgmlType::IQ1_S => {
                let b = &read_blocks::<BlockIQ1S>(x)[0];
                for l in 0..4 {
                    for (j, &g) in grid8(IQ1S_GRID[iq1s_index(b, ib, l)]).iter().enumerate() {
                        v[8 * l + j] = g as i8 as i32;
                    }
                    delta[4 * ib + l] = if b.qh[ib] & 0x8000 != 0 { -1 } else { 1 };
                }
                ls[2 * ib..2 * ib + 2].fill(odd(((b.qh[ib] >> 12) & 7) as u32));
            }
            GgmlType::IQ1_M => {
                let b = &read_blocks::<BlockIQ1M>(x)[0];
                let s = iq1m_sc(b)[ib / 2] >> (6 * (ib % 2));
                for l in 0..4 {
                    let (idx, neg) = iq1m_index(b, ib, l);
                    for (j, &g) in grid8(IQ1S_GRID[idx]).iter().enumerate() {
                        v[8 * l + j] = g as i8 as i32;
                    }
                    delta[4 * ib + l] = if neg { -1 } else { 1 };
                }
                ls[2 * ib] = odd((s & 7) as u32);
                ls[2 * ib + 1] = odd(((s >> 3) & 7) as u32);
            }
            _ => unreachable!("not a grid i-quant: {t}"),
        }
    }
    (v, ls, delta)
}

/// The grid i-quants × Q8_K as llama.cpp's x86 `ggml_vec_dot_iq*_q8_K` (AVX2 path, also what its
/// AVX-512 build runs). Per super-block 8 exact i32 lanes, lane k = Σ over the 32-element groups
/// of scale · value · q8 over elements 4k..4k+3 of the group; `acc = fma(dx·dy, f32(lane), acc)`;
/// then IQ2: `0.125·hsum_float_8(acc)`, IQ3_XXS: `0.25·…`, IQ3_S: `hsum_float_8(acc)`. IQ1_S adds
/// a float `acc1 += d·f32(Σ ±ls·bsums)` per block and returns `hsum_float_8(acc) + 0.125·acc1`;
/// IQ1_M keeps the delta part (Σ ±ls·q8 per 4 elements) in its own lanes and returns
/// `hsum_float_8(acc) + 0.125·hsum_float_8(acc_delta)`. (llama.cpp puts the signs on the
/// activations with `sign_epi8`, which keeps a −128 activation at −128; ggml's Q8_K quantizer never
/// emits −128, and here, as in our kernels, products are exact.)
pub fn grid_iq_lanes(t: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let ts = t.type_size();
    let ys = blocks::<BlockQ8K>(n, a);
    let (mut acc, mut acc_delta, mut acc1) = ([0f32; 8], [0f32; 8], 0f32);
    for (i, y) in ys.iter().enumerate() {
        let x = &w[i * ts..(i + 1) * ts];
        let (v, ls, delta) = grid_iq_block(t, x);
        let (mut lane, mut lane_delta, mut sumi1) = ([0i32; 8], [0i32; 8], 0i32);
        for e in 0..QK_K {
            let k = (e % 32) / 4;
            lane[k] += ls[e / 16] * v[e] * y.qs[e] as i32;
            lane_delta[k] += ls[e / 16] * delta[e / 8] * y.qs[e] as i32;
        }
        for ib in 0..8 {
            sumi1 += (y.bsums[2 * ib] as i32 + y.bsums[2 * ib + 1] as i32) * delta[4 * ib] * ls[2 * ib];
        }
        let xd = if t == GgmlType::IQ1_M {
            crate::quant::iq::iq1m_scale(&crate::quant::iq::iq1m_sc(&read_blocks::<crate::quant::BlockIQ1M>(x)[0]))
        } else {
            f16::from_le_bytes([x[0], x[1]])
        };
        let d = xd.to_f32() * y.d;
        for k in 0..8 {
            acc[k] = d.mul_add(lane[k] as f32, acc[k]);
            acc_delta[k] = d.mul_add(lane_delta[k] as f32, acc_delta[k]);
        }
        acc1 = d.mul_add(sumi1 as f32, acc1);
    }
    use GgmlType::*;
    match t {
        IQ2_XXS | IQ2_XS | IQ2_S => 0.125 * hsum_float_8(&acc),
        IQ3_XXS => 0.25 * hsum_float_8(&acc),
        IQ3_S => hsum_float_8(&acc),
        IQ1_S => hsum_float_8(&acc) + 0.125 * acc1,
        IQ1_M => hsum_float_8(&acc) + 0.125 * hsum_float_8(&acc_delta),
        _ => unreachable!("not a grid i-quant: {t}"),
    }
}

/// The grid i-quants × Q8_K as llama.cpp's x86 tiled GEMM (`ggml_compute_forward_mul_mat_tiled`,
/// which both its builds run for batches of 8 tokens or more): per super-block one exact integer
/// `isum = Σ_e ls·w_e·q8_e` over the weights as its unpackers store them (the signed grid value;
/// IQ1: `8·g + δ`), then `acc = fma(f32(isum)·d_w, d_a, acc)` with d_w the block's scale times the
/// type's factor (IQ2: 1/8, IQ3_XXS: 1/4, IQ3_S: 1, IQ1: 1/8, which absorbs the ×8).
pub fn grid_iq_tiled(t: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    use GgmlType::*;
    let ts = t.type_size();
    let ys = blocks::<BlockQ8K>(n, a);
    let mut acc = 0f32;
    for (i, y) in ys.iter().enumerate() {
        let x = &w[i * ts..(i + 1) * ts];
        let (v, ls, delta) = grid_iq_block(t, x);
        let iq1 = matches!(t, IQ1_S | IQ1_M);
        let isum: i32 = (0..QK_K)
            .map(|e| {
                let w = if iq1 { 8 * v[e] + delta[e / 8] } else { v[e] };
                ls[e / 16] * w * y.qs[e] as i32
            })
            .sum();
        let xd = if t == IQ1_M {
            crate::quant::iq::iq1m_scale(&crate::quant::iq::iq1m_sc(&read_blocks::<crate::quant::BlockIQ1M>(x)[0]))
        } else {
            f16::from_le_bytes([x[0], x[1]])
        };
        let f = match t {
            IQ2_XXS | IQ2_XS | IQ2_S | IQ1_S | IQ1_M => 0.125,
            IQ3_XXS => 0.25,
            IQ3_S => 1.0,
            _ => unreachable!("not a grid i-quant: {t}"),
        };
        acc = (isum as f32 * (xd.to_f32() * f)).mul_add(y.d, acc);
    }
    acc
}

/// llamafile's tinyBLAS order (sgemm.cpp), which llama.cpp's x86 `mul_mat` runs for F32 and F16
/// weights from 2 tokens (`types::BatchDot`): `KN` lanes (the vector width: 16 on AVX-512, 8 on
/// AVX2), lane i accumulating `fma(w[l+i], a[l+i], acc[i])` for l in steps of KN, then `hsum`, a
/// halving tree (`_mm512_reduce_add_ps`; `hsum(__m256)` for 8 lanes). F16 weights meet activations
/// rounded to F16 (their `vec_dot_type`); both are widened exactly. A row length that is not a
/// multiple of KN never takes this order (tinyBLAS declines it); its last partial step here runs
/// the lanes it has.
fn sgemm_lanes<const KN: usize>(n: usize, w: impl Fn(usize) -> f32, a: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; KN];
    for l in (0..n).step_by(KN) {
        for (i, c) in acc.iter_mut().enumerate().take(n - l) {
            *c = w(l + i).mul_add(a(l + i), *c);
        }
    }
    let mut width = KN;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

fn f16_at(row: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32()
}

fn f32_at(row: &[u8], i: usize) -> f32 {
    f32::from_le_bytes(row[4 * i..4 * i + 4].try_into().unwrap())
}

/// F16 weights · F16 activations in tinyBLAS's AVX-512 order (16 lanes).
pub fn f16_sgemm16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    sgemm_lanes::<16>(n, |i| f16_at(w, i), |i| f16_at(a, i))
}

/// F16 weights · F16 activations in tinyBLAS's AVX2 order (8 lanes).
pub fn f16_sgemm8(n: usize, w: &[u8], a: &[u8]) -> f32 {
    sgemm_lanes::<8>(n, |i| f16_at(w, i), |i| f16_at(a, i))
}

/// F32 weights · F32 activations in tinyBLAS's AVX-512 order (16 lanes).
pub fn f32_sgemm16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    sgemm_lanes::<16>(n, |i| f32_at(w, i), |i| f32_at(a, i))
}

/// F32 weights · F32 activations in tinyBLAS's AVX2 order (8 lanes).
pub fn f32_sgemm8(n: usize, w: &[u8], a: &[u8]) -> f32 {
    sgemm_lanes::<8>(n, |i| f32_at(w, i), |i| f32_at(a, i))
}

/// `ggml_vec_dot_f16` / `ggml_vec_dot_f32` (vec.cpp) of a build with `L`-lane vectors (16:
/// AVX-512, 8: AVX2): four accumulators over steps of 4·L elements (accumulator j takes the j-th
/// L of each step), reduced `(s0 + s2) + (s1 + s3)` lane by lane, then across lanes
/// (`_mm512_reduce_add_ps`'s halving tree; AVX2's `GGML_F32x8_REDUCE`: halves added, then two
/// `hadd`s), then the leftover elements one by one: F16 in a double (`ggml_float`), each product
/// rounded to f32 first; F32 in the f32 sum, product rounded then added (not fused: checked
/// against llama-cpp-python's build, tests/quant_ggml.rs `f16_f32_matmul_matches_ggml`).
fn vec_dot_lanes<const L: usize>(n: usize, w: impl Fn(usize) -> f32, a: impl Fn(usize) -> f32, f16: bool) -> f32 {
    let np = n / (4 * L) * (4 * L);
    let mut acc = [[0f32; L]; 4];
    for i in (0..np).step_by(4 * L) {
        for (j, s) in acc.iter_mut().enumerate() {
            for (l, c) in s.iter_mut().enumerate() {
                let k = i + j * L + l;
                *c = w(k).mul_add(a(k), *c);
            }
        }
    }
    let v: [f32; L] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let mut sum = if L == 16 {
        let mut v = v;
        let mut width = L;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                v[i] += v[i + width];
            }
        }
        v[0]
    } else {
        let t: [f32; 4] = std::array::from_fn(|i| v[i] + v[i + 4]);
        (t[0] + t[1]) + (t[2] + t[3])
    };
    if f16 {
        let mut s = sum as f64;
        for k in np..n {
            s += (w(k) * a(k)) as f64;
        }
        sum = s as f32;
    } else {
        for k in np..n {
            sum += w(k) * a(k);
        }
    }
    sum
}

/// `ggml_vec_dot_f16` of an AVX-512 build.
pub fn f16_vec_dot16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    vec_dot_lanes::<16>(n, |i| f16_at(w, i), |i| f16_at(a, i), true)
}

/// `ggml_vec_dot_f16` of an AVX2 build.
pub fn f16_vec_dot8(n: usize, w: &[u8], a: &[u8]) -> f32 {
    vec_dot_lanes::<8>(n, |i| f16_at(w, i), |i| f16_at(a, i), true)
}

/// `ggml_vec_dot_f32` of an AVX-512 build.
pub fn f32_vec_dot16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    vec_dot_lanes::<16>(n, |i| f32_at(w, i), |i| f32_at(a, i), false)
}

/// `ggml_vec_dot_f32` of an AVX2 build.
pub fn f32_vec_dot8(n: usize, w: &[u8], a: &[u8]) -> f32 {
    vec_dot_lanes::<8>(n, |i| f32_at(w, i), |i| f32_at(a, i), false)
}
