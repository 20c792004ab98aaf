//! AVX-512 VNNI kernels over R16-repacked weights (layout in `quant::repack`).
//!
//! One zmm holds 4 bytes of each of 16 rows; `vpdpbusd` with a broadcast 4-byte activation group
//! adds 4 products into every row's lane, so a block ends with 16 finished row sums in one register:
//! no horizontal adds. The weight registers of a block are unpacked once and reused for up to
//! `MAX_T` tokens (prompt processing); with one token the same code is the matvec of generation.
//!
//! Numerics: each block's integer sum is exact; the float update is `acc += f32(sumi) · (d_w·d_a)`
//! with one fused rounding, in block order (the scalar reference rounds the product separately).

// Index loops over tokens and rows mirror the register arrays they fill (`acc[t]`, `acc[r][t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::prefetch_ahead;
use crate::kernels::shared::{gemm_r16_check, gemv_r16_check, q8_0s_block, q8k_block, GemvCall, R16Call};
use crate::kernels::types::{GemmR16Fn, R16Gemv};
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::mxfp4::KVALUES_MXFP4;
use crate::quant::repack::{MAX_T, Q8_0S_BLOCK, Q8_K_BLOCK, R};
use crate::quant::GgmlType;

/// `gemm_entry!(name, inner, type)`: `fn name` (a `GemmR16Fn`) checking every buffer length, then
/// running `inner::<T>` over all tokens; `inner::<_, G..>` names a kernel with more const parameters
/// after `T`.
macro_rules! gemm_entry {
    ($name:ident, $inner:ident $(::<_ $(, $g:tt)*>)?, $t:expr) => {
        fn $name(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
            gemm_r16_check($t, nb, w, a, a_stride, nt, out, out_stride);
            let c = R16Call {
                nb,
                w: w.as_ptr(),
                part: 0,
                a: a.as_ptr(),
                as_: a_stride,
                out: out.as_mut_ptr(),
                os: out_stride,
            };
            // SAFETY: reachable only through `avx512_kernels` (features detected at run time); the
            // lengths of the group, the nt activation rows and the nt output rows were checked above.
            unsafe {
                match nt {
                    1 => $inner::<1 $($(, $g)*)?>(c),
                    2 => $inner::<2 $($(, $g)*)?>(c),
                    3 => $inner::<3 $($(, $g)*)?>(c),
                    4 => $inner::<4 $($(, $g)*)?>(c),
                    5 => $inner::<5 $($(, $g)*)?>(c),
                    6 => $inner::<6 $($(, $g)*)?>(c),
                    7 => $inner::<7 $($(, $g)*)?>(c),
                    _ => $inner::<MAX_T $($(, $g)*)?>(c),
                }
            }
        }
    };
}

/// `gemv_entry!(name, inner::<G $(, extra)>, type)`: `fn name` (a `GemvR16Fn` of G groups)
/// checking every buffer length, then running `inner` on them.
macro_rules! gemv_entry {
    ($name:ident, $inner:ident::<$g:literal $(, $x:tt)*>, $t:expr) => {
        fn $name(nb: usize, w: &[u8], w_stride: usize, a: &[u8], out: &mut [f32], out_stride: usize) {
            gemv_r16_check($t, $g, nb, w, w_stride, a, out, out_stride);
            let c = GemvCall { nb, w: w.as_ptr(), ws: w_stride, a: a.as_ptr(), out: out.as_mut_ptr(), os: out_stride };
            // SAFETY: reachable only through `avx512_kernels` (features detected at run time); the
            // lengths of the groups, the activation row and the outputs were checked above.
            unsafe { $inner::<$g $(, $x)*>(c) }
        }
    };
}

/// Runs `$pass::<n $(, extra)>` over the T tokens of call `$c` in passes of at most `$max` (≤ 4)
/// tokens.
macro_rules! in_passes {
    ($pass:ident, [$($extra:tt)*], $max:expr, $t:expr, $c:expr) => {{
        let c: R16Call = $c;
        let mut t0 = 0;
        while t0 < $t {
            let n = ($t - t0).min($max);
            let p = R16Call { a: c.a.add(t0 * c.as_), out: c.out.add(t0 * c.os), ..c };
            match n {
                1 => $pass::<1 $($extra)*>(p),
                2 => $pass::<2 $($extra)*>(p),
                3 => $pass::<3 $($extra)*>(p),
                _ => $pass::<4 $($extra)*>(p),
            }
            t0 += n;
        }
    }};
}

gemm_entry!(gemm_q4_0_entry, gemm_q4_0, GgmlType::Q4_0);
gemm_entry!(gemm_iq4_nl_entry, gemm_iq4_nl, GgmlType::IQ4_NL);
gemm_entry!(gemm_mxfp4_entry, gemm_mxfp4, GgmlType::MXFP4);
gemm_entry!(gemm_iq4_xs_entry, gemm_iq4_xs::<_, false>, GgmlType::IQ4_XS);
gemm_entry!(gemm_iq4_xs_tiled_entry, gemm_iq4_xs::<_, true>, GgmlType::IQ4_XS);
gemm_entry!(gemm_q5_0_entry, gemm_lanes::<_, LANE_Q5_0>, GgmlType::Q5_0);
gemm_entry!(gemm_q8_0_entry, gemm_lanes::<_, LANE_Q8_0>, GgmlType::Q8_0);
gemm_entry!(gemm_q4_1_entry, gemm_lanes::<_, LANE_Q4_1>, GgmlType::Q4_1);
gemm_entry!(gemm_q5_1_entry, gemm_lanes::<_, LANE_Q5_1>, GgmlType::Q5_1);
gemm_entry!(gemm_q4_k_entry, gemm_q4_k::<_, false>, GgmlType::Q4_K);
gemm_entry!(gemm_q4_k_g4_entry, gemm_q4_k::<_, true>, GgmlType::Q4_K);
gemm_entry!(gemm_q3_k_entry, gemm_q3_k, GgmlType::Q3_K);
gemm_entry!(gemm_q5_k_entry, gemm_q5_k, GgmlType::Q5_K);
gemm_entry!(gemm_q2_k_entry, gemm_q2_k::<_, false>, GgmlType::Q2_K);
gemm_entry!(gemm_q2_k_g4_entry, gemm_q2_k::<_, true>, GgmlType::Q2_K);
gemm_entry!(gemm_q6_k_entry, gemm_q6_k, GgmlType::Q6_K);
gemm_entry!(gemm_q6_k_tiled_entry, gemm_q6_k_tiled, GgmlType::Q6_K);

gemv_entry!(gemv_q4_0_entry, gemv_q4_0::<4>, GgmlType::Q4_0);
gemv_entry!(gemv_q5_0_entry, gemv_lanes::<2, LANE_Q5_0>, GgmlType::Q5_0);
gemv_entry!(gemv_q8_0_entry, gemv_lanes::<2, LANE_Q8_0>, GgmlType::Q8_0);
gemv_entry!(gemv_q4_1_entry, gemv_lanes::<2, LANE_Q4_1>, GgmlType::Q4_1);
gemv_entry!(gemv_q5_1_entry, gemv_lanes::<2, LANE_Q5_1>, GgmlType::Q5_1);
gemv_entry!(gemv_q4_k_entry, gemv_q4_k::<2>, GgmlType::Q4_K);
gemv_entry!(gemv_q6_k_entry, gemv_q6_k::<2>, GgmlType::Q6_K);

/// The AVX-512 single-token kernels over several groups (`types::R16Gemv`).
pub(super) const GEMVS: [(GgmlType, R16Gemv); 7] = [
    (GgmlType::Q4_1, R16Gemv { f: gemv_q4_1_entry, groups: 2 }),
    (GgmlType::Q5_1, R16Gemv { f: gemv_q5_1_entry, groups: 2 }),
    (GgmlType::Q4_K, R16Gemv { f: gemv_q4_k_entry, groups: 2 }),
    (GgmlType::Q6_K, R16Gemv { f: gemv_q6_k_entry, groups: 2 }),
    (GgmlType::Q4_0, R16Gemv { f: gemv_q4_0_entry, groups: 4 }),
    (GgmlType::Q5_0, R16Gemv { f: gemv_q5_0_entry, groups: 2 }),
    (GgmlType::Q8_0, R16Gemv { f: gemv_q8_0_entry, groups: 2 }),
];

/// The AVX-512 R16 kernels: (weight type, kernel).
pub(super) const GEMMS: [(GgmlType, GemmR16Fn); 12] = [
    (GgmlType::Q4_1, gemm_q4_1_entry),
    (GgmlType::Q5_1, gemm_q5_1_entry),
    (GgmlType::Q4_0, gemm_q4_0_entry),
    (GgmlType::IQ4_NL, gemm_iq4_nl_entry),
    (GgmlType::MXFP4, gemm_mxfp4_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_entry),
    (GgmlType::Q5_0, gemm_q5_0_entry),
    (GgmlType::Q8_0, gemm_q8_0_entry),
    (GgmlType::Q3_K, gemm_q3_k_entry),
    (GgmlType::Q4_K, gemm_q4_k_entry),
    (GgmlType::Q5_K, gemm_q5_k_entry),
    (GgmlType::Q6_K, gemm_q6_k_entry),
];

/// The kernels in llama.cpp's batch orders (`types::R16Batch::gemm`): Q4_K's 4-token groups,
/// Q6_K's tiled GEMM.
pub(super) const BATCH_GEMMS: [(GgmlType, GemmR16Fn); 3] = [
    (GgmlType::Q4_K, gemm_q4_k_g4_entry),
    (GgmlType::Q6_K, gemm_q6_k_tiled_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_tiled_entry),
];

/// The Q2_K kernels of llama.cpp's AVX-512 build (its repacked 8×8 GEMV, and its GEMM over full
/// groups of 4 tokens): `x86::avx512_table` installs them with that batch rule.
pub(super) const GEMM_Q2_K: GemmR16Fn = gemm_q2_k_entry;
pub(super) const GEMM_Q2_K_G4: GemmR16Fn = gemm_q2_k_g4_entry;

/// Broadcast of the 4 activation bytes at `p` (compiles to an embedded `{1to16}` operand).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+4` must be readable.
unsafe fn bcast4(p: *const u8) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_set1_epi32((p as *const i32).read_unaligned()) }
}

/// Finishes token t of a block: `acc += f32(isum) · (d_w · d_a)`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn fold(acc: __m512, isum: __m512i, dw: __m512, da: f32) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(da)), acc) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_0<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (scales, quants) = (w, w.add(nb * R * 2));
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales16(scales.add(b * R * 2));
            let v = q4_0_values(quants.add(b * R * 16));
            for (t, acc) in acc.iter_mut().enumerate() {
                q4_0_block(acc, &v, dw, a.add(t * as_ + b * Q8_0S_BLOCK));
            }
        }
        store(&acc, out, os);
    }
}

/// The 16 rows' nibbles of the R16 Q4_0 block at `q`: v[s] the low nibbles of slot s (elements
/// 4s..4s+4), v[4 + s] its high nibbles (elements 16+4s..); also asks for the bytes ahead.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's 256 quant bytes at `q` must
/// be readable.
unsafe fn q4_0_values(q: *const u8) -> [__m512i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        prefetch_ahead(q, R * 16);
        nibbles4(q)
    }
}

/// The nibbles of the four 64-byte slots at `q`: v[s] the low nibbles of slot s, v[4 + s] its
/// high nibbles (Q4_0, Q4_1/Q5_0/Q5_1 and Q4_K blocks store their 4-bit values so).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `q .. q + 256` must be readable.
unsafe fn nibbles4(q: *const u8) -> [__m512i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let mut v = [_mm512_setzero_si512(); 8];
        for s in 0..4 {
            let x = _mm512_loadu_si512(q.add(64 * s) as *const _);
            v[s] = _mm512_and_si512(x, m4);
            v[4 + s] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        }
        v
    }
}

/// One Q4_0 block of the 16 rows against one token's Q8_0S block `y`: `acc += f32(Σ (q−8)·y) ·
/// d_w·d_a`, the −8 taken as −8·Σy to start the sum; two integer chains (low and high nibbles)
/// halve the dependency depth, which bounds the single-token case.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `y` must be a readable Q8_0S block.
unsafe fn q4_0_block(acc: &mut __m512, v: &[__m512i; 8], dw: __m512, y: *const u8) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (da, sum, y) = q8_0s_block(y);
        let mut i0 = _mm512_set1_epi32(-8 * sum);
        let mut i1 = _mm512_setzero_si512();
        for s in 0..4 {
            i0 = _mm512_dpbusd_epi32(i0, v[s], bcast4(y.add(4 * s)));
            i1 = _mm512_dpbusd_epi32(i1, v[4 + s], bcast4(y.add(16 + 4 * s)));
        }
        *acc = fold(*acc, _mm512_add_epi32(i0, i1), dw, da);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// `gemm_q4_0` for one token over `G` groups `c.ws` bytes apart, block by block, so `G` streams of
/// weights are in flight (`types::R16Gemv`); each group's sums are its `gemm_q4_0::<1>`'s.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be a `GemvCall` of `G` groups.
unsafe fn gemv_q4_0<const G: usize>(c: GemvCall) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let GemvCall { nb, w, ws, a, out, os } = c;
        let mut acc = [_mm512_setzero_ps(); G];
        for b in 0..nb {
            for (g, acc) in acc.iter_mut().enumerate() {
                let wg = w.add(g * ws);
                let v = q4_0_values(wg.add(nb * R * 2 + b * R * 16));
                q4_0_block(acc, &v, scales16(wg.add(b * R * 2)), a.add(b * Q8_0S_BLOCK));
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(g * os), *acc);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// IQ4_NL: Q4_0's layout and float order, the nibbles looked up in kvalues_iq4nl + 128 (`vpshufb`,
/// unsigned 1..=241 for `vpdpbusd`), the +128 taken back by starting the sum at −128·Σq.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_nl<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (scales, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm512_set1_epi8(0x0F);
        let lut: [u8; 16] = std::array::from_fn(|i| (KVALUES_IQ4NL[i] as i32 + 128) as u8);
        let table = _mm512_broadcast_i32x4(_mm_loadu_si128(lut.as_ptr() as *const __m128i));
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales16(scales.add(b * R * 2));
            let q = quants.add(b * R * 16);
            prefetch_ahead(q, R * 16);
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            for s in 0..4 {
                let v = _mm512_loadu_si512(q.add(64 * s) as *const _);
                lo[s] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4));
                hi[s] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
            for t in 0..T {
                let (da, sum, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i0 = _mm512_set1_epi32(-128 * sum);
                let mut i1 = _mm512_setzero_si512();
                for s in 0..4 {
                    i0 = _mm512_dpbusd_epi32(i0, lo[s], bcast4(y.add(4 * s)));
                    i1 = _mm512_dpbusd_epi32(i1, hi[s], bcast4(y.add(16 + 4 * s)));
                }
                acc[t] = fold(acc[t], _mm512_add_epi32(i0, i1), dw, da);
            }
        }
        store(&acc, out, os);
    }
}

/// The 16 rows' MXFP4 scales `e8m0_to_fp32_half(e)` from their e8m0 bytes at `p`: the bits
/// (e − 1) << 23, and 0x200000 << e for e < 2 (subnormal).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+16` must be readable.
unsafe fn e8m0_16(p: *const u8) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let e = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
        let normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
        let sub = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), e);
        let small = _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2));
        _mm512_castsi512_ps(_mm512_mask_blend_epi32(small, normal, sub))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// MXFP4: IQ4_NL's kernel with the kvalues_mxfp4 table and the e8m0 scales stored after each
/// block's quants (llama.cpp's `mxfp4_8x8` repack runs Q4_0's GEMV/GEMM: one exact integer sum per
/// block, `acc = fma(f32(isum), d_w·d_a, acc)`; `kernels::ggml_x86::mxfp4_repack`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_mxfp4<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let m4 = _mm512_set1_epi8(0x0F);
        let lut: [u8; 16] = std::array::from_fn(|i| (KVALUES_MXFP4[i] as i32 + 128) as u8);
        let table = _mm512_broadcast_i32x4(_mm_loadu_si128(lut.as_ptr() as *const __m128i));
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let q = w.add(b * R * 17);
            prefetch_ahead(q, R * 17);
            let dw = e8m0_16(q.add(R * 16));
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            for s in 0..4 {
                let v = _mm512_loadu_si512(q.add(64 * s) as *const _);
                lo[s] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4));
                hi[s] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
            for t in 0..T {
                let (da, sum, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i0 = _mm512_set1_epi32(-128 * sum);
                let mut i1 = _mm512_setzero_si512();
                for s in 0..4 {
                    i0 = _mm512_dpbusd_epi32(i0, lo[s], bcast4(y.add(4 * s)));
                    i1 = _mm512_dpbusd_epi32(i1, hi[s], bcast4(y.add(16 + 4 * s)));
                }
                acc[t] = fold(acc[t], _mm512_add_epi32(i0, i1), dw, da);
            }
        }
        store(&acc, out, os);
    }
}

/// Tokens per pass of the IQ4_XS kernel (8 float and 8 integer lane accumulators per token).
const IQ4_XS_PASS: usize = 2;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_xs<const T: usize, const TILED: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_iq4_xs_pass, [, TILED], IQ4_XS_PASS, T, c) }
}

/// llama.cpp's x86 `ggml_vec_dot_iq4_xs_q8_K` order (IQ4_XS is not repacked there): 8 float lanes
/// per row, lane l holding per super-block the integer Σ_ib (ls_ib − 32)·Σ_{e=4l..4l+4} v·y over
/// the elements of sub-block ib, folded as `acc_l = fma(d_w·d_a, f32(lane), acc_l)`, then summed
/// `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))` (`kernels::x86::iq4`'s row dot, bit for bit). The
/// levels go through `vpdpbusd` as kvalues_iq4nl + 128 with each 4-element sum started at −128·Σy;
/// that sum (up to 4·127·128) does not fit `vpdpwssd`'s i16, so it meets its scale in `vpmulld`.
/// `TILED`: llama.cpp's tiled GEMM order for batches of 8 tokens or more instead
/// (`kernels::ggml_x86::iq4_xs_tiled`): the 8 lanes' integers added, then
/// `acc = fma(f32(isum)·d_w, d_a, acc)` per super-block.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_xs_pass<const T: usize, const TILED: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm512_set1_epi8(0x0F);
        let lut: [u8; 16] = std::array::from_fn(|i| (KVALUES_IQ4NL[i] as i32 + 128) as u8);
        let table = _mm512_broadcast_i32x4(_mm_loadu_si128(lut.as_ptr() as *const __m128i));
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales16(heads.add(b * R * 2));
            let q = quants.add(b * R * 134);
            // per row: scales_l as one u32, scales_h as one u16 widened
            let sl = _mm512_loadu_si512(q.add(R * 128) as *const _);
            let sh = _mm512_cvtepu16_epi32(_mm256_loadu_si256(q.add(R * 132) as *const __m256i));
            let mut ia = [[_mm512_setzero_si512(); 8]; T];
            for ib in 0..8 {
                prefetch_ahead(q.add(R * 134 / 8 * ib), R * 134 / 8);
                let lo =
                    _mm512_and_si512(_mm512_srl_epi32(sl, _mm_cvtsi32_si128(4 * ib as i32)), _mm512_set1_epi32(0xF));
                let hi = _mm512_and_si512(_mm512_srl_epi32(sh, _mm_cvtsi32_si128(2 * ib as i32)), _mm512_set1_epi32(3));
                let ls = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
                // u[k]: the 16 rows' elements 4k..4k+4 of sub-block ib, as levels + 128
                let mut u = [_mm512_setzero_si512(); 8];
                for s in 0..4 {
                    let v = _mm512_loadu_si512(q.add(64 * (4 * ib + s)) as *const _);
                    u[s] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4));
                    u[4 + s] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
                }
                for (t, ia) in ia.iter_mut().enumerate() {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(32 * ib);
                    for (k, uk) in u.iter().enumerate() {
                        let ysum: i32 = (0..4).map(|i| *y.add(4 * k + i) as i8 as i32).sum();
                        let r = _mm512_dpbusd_epi32(_mm512_set1_epi32(-128 * ysum), *uk, bcast4(y.add(4 * k)));
                        ia[k] = _mm512_add_epi32(ia[k], _mm512_mullo_epi32(r, ls));
                    }
                }
            }
            for (t, (acc_t, ia)) in acc.iter_mut().zip(&ia).enumerate() {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                if TILED {
                    let isum = ia.iter().fold(_mm512_setzero_si512(), |s, l| _mm512_add_epi32(s, *l));
                    let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
                    acc_t[0] = _mm512_fmadd_ps(x, _mm512_set1_ps(dy), acc_t[0]);
                    continue;
                }
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(dy));
                for (al, il) in acc_t.iter_mut().zip(ia) {
                    *al = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(*il), *al);
                }
            }
        }
        if TILED {
            for (t, acc_t) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(t * os), acc_t[0]);
            }
            return;
        }
        store_lanes(&acc, out, os);
    }
}

/// `a | (b & c)` in one instruction.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn or_and(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_ternarylogic_epi32(a, b, c, 0xF8) }
}

/// The weight types of the lane-order kernels (their `KIND` parameter).
const LANE_Q8_0: u8 = 0;
const LANE_Q5_0: u8 = 1;
const LANE_Q4_1: u8 = 2;
const LANE_Q5_1: u8 = 3;

/// Whether a lane-order type has a high-bit slot (Q5_0, Q5_1).
const fn lane_q5(kind: u8) -> bool {
    kind == LANE_Q5_0 || kind == LANE_Q5_1
}

/// Whether a lane-order type has a minimum beside its scale (Q4_1, Q5_1).
const fn lane_min(kind: u8) -> bool {
    kind == LANE_Q4_1 || kind == LANE_Q5_1
}

/// Header bytes of one R16 block: 16 f16 scales, then 16 f16 minimums for Q4_1/Q5_1.
const fn lane_head_bytes(kind: u8) -> usize {
    if lane_min(kind) {
        R * 4
    } else {
        R * 2
    }
}

/// Quant bytes of one R16 block: Q8_0 8 slots, Q5_0/Q5_1 a qh slot and 4 nibble slots, Q4_1 4
/// nibble slots.
const fn lane_block_bytes(kind: u8) -> usize {
    match kind {
        LANE_Q8_0 => R * 32,
        LANE_Q4_1 => R * 16,
        _ => R * 20,
    }
}

/// Where a lane-order block's 4-bit slots start: after the high-bit slot (Q5_0/Q5_1), or at the
/// block's start; Q8_0's 8 slots start there too.
const fn lane_slots(kind: u8) -> usize {
    if lane_q5(kind) {
        64
    } else {
        0
    }
}

/// v[k]: the 16 rows' 4 unsigned bytes of lane k of the R16 block quants at `q` (Q8_0: slot k;
/// the others: low nibbles of nibble slot k for k < 4, high nibbles of slot k − 4 above, with the
/// high bit from the qh slot for Q5_0/Q5_1, as `lane_value`); also asks for the block's bytes
/// `prefetch_distance()` ahead.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's quant bytes at `q` must be
/// readable.
unsafe fn lane_values<const KIND: u8>(q: *const u8) -> [__m512i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        prefetch_ahead(q, lane_block_bytes(KIND));
        let qh = if lane_q5(KIND) { _mm512_loadu_si512(q as *const _) } else { _mm512_setzero_si512() };
        let mut v = [_mm512_setzero_si512(); 8];
        for (k, vk) in v.iter_mut().enumerate() {
            let slot = if KIND == LANE_Q8_0 { k } else { k % 4 };
            let x = _mm512_loadu_si512(q.add(lane_slots(KIND) + 64 * slot) as *const _);
            *vk = lane_value::<KIND>(x, qh, k);
        }
        v
    }
}

/// Tokens per pass of the lane-order kernels (8 accumulators per token).
const LANE_PASS: usize = 2;

/// Q8_0, Q5_0, Q4_1 and Q5_1 (`KIND`) follow llama.cpp's x86 `vec_dot` order, which these weight
/// types (not repacked by llama.cpp) always take: 8 float lanes per row, lane k summing elements
/// 4k..4k+4 of every block as `acc_k = fma(d_w·d_a, f32(lane sum), acc_k)`, then
/// `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`; with a minimum (Q4_1, Q5_1) `summs = fma(m_w, s_a, summs)` per block
/// beside them and `hsum + summs` (`kernels::ggml_x86` `q4_1_lanes`, `q5_1_lanes`). Models with
/// large activations turn float reassociation into ~0.1 logit differences, so matching the
/// reference's order is what keeps their answers equal. The per-lane weight offset (−16 or −128
/// times the lane's Σy for Q5_0 / Q8_0, precomputed in the Q8_0S block; 0 in a Q8_1S block)
/// starts each lane's sum.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_lanes<const T: usize, const KIND: u8>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_lanes_pass, [, KIND], LANE_PASS, T, c) }
}

/// One block of a lane-order kernel for one token: adds the block's 8 lane terms of the 16 rows
/// to `acc` and (Q4_1, Q5_1) its `m_w · s_a` to `summs`. `head`: the block's header, `v`: its
/// values (`lane_values`), `y`: the token's Q8_0S / Q8_1S block.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `head` and `y` must be readable blocks.
unsafe fn lane_block<const KIND: u8>(
    acc: &mut [__m512; 8],
    summs: &mut __m512,
    head: *const u8,
    v: &[__m512i; 8],
    y: *const u8,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let d = _mm512_mul_ps(scales16(head), _mm512_set1_ps((y as *const f32).read_unaligned()));
        let lane_init = y.add(40) as *const i32; // offset · lane Σy, precomputed
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let init = _mm512_set1_epi32(lane_init.add(k).read_unaligned());
            let isum = _mm512_dpbusd_epi32(init, v[k], bcast4(y.add(8 + 4 * k)));
            *acc_k = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(isum), *acc_k);
        }
        if lane_min(KIND) {
            let s = (y.add(4) as *const f32).read_unaligned();
            *summs = _mm512_fmadd_ps(scales16(head.add(R * 2)), _mm512_set1_ps(s), *summs);
        }
    }
}

/// Stores a lane-order kernel's 16 row results: the lanes' sum (+ the minimums' sum).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `out..out+16` must be writable.
unsafe fn lane_store<const KIND: u8>(acc: &[__m512; 8], summs: __m512, out: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let r = hsum8_lanes(acc);
        _mm512_storeu_ps(out, if lane_min(KIND) { _mm512_add_ps(r, summs) } else { r });
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_lanes_pass<const T: usize, const KIND: u8>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (hb, qb) = (lane_head_bytes(KIND), lane_block_bytes(KIND));
        let (heads, quants) = (w, w.add(nb * hb));
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        let mut summs = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let v = lane_values::<KIND>(quants.add(b * qb));
            for t in 0..T {
                lane_block::<KIND>(&mut acc[t], &mut summs[t], heads.add(b * hb), &v, a.add(t * as_ + b * Q8_0S_BLOCK));
            }
        }
        for t in 0..T {
            lane_store::<KIND>(&acc[t], summs[t], out.add(t * os));
        }
    }
}

/// Lane k's 4 unsigned bytes of the 16 rows of an R16 lane-order block, from `x`, the block's slot
/// k (Q8_0) or nibble slot k mod 4 (low nibbles for k < 4, high ones above), and for Q5_0/Q5_1
/// `qh`, its high-bit slot (bit k of each byte is the fifth bit of lane k's byte).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn lane_value<const KIND: u8>(x: __m512i, qh: __m512i, k: usize) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        if KIND == LANE_Q8_0 {
            return x;
        }
        let m4 = _mm512_set1_epi8(0x0F);
        let v = _mm512_and_si512(if k < 4 { x } else { _mm512_srli_epi16(x, 4) }, m4);
        if !lane_q5(KIND) {
            return v;
        }
        // bit k of each byte of qh → 0x10 of lane k's bytes
        let h = match k {
            0 => _mm512_slli_epi32(qh, 4),
            1 => _mm512_slli_epi32(qh, 3),
            2 => _mm512_slli_epi32(qh, 2),
            3 => _mm512_slli_epi32(qh, 1),
            4 => qh,
            5 => _mm512_srli_epi32(qh, 1),
            6 => _mm512_srli_epi32(qh, 2),
            _ => _mm512_srli_epi32(qh, 3),
        };
        or_and(v, h, _mm512_set1_epi8(0x10))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// `gemm_lanes` for one token over `G` groups `c.ws` bytes apart (`types::R16Gemv`); each
/// group's lanes sum as in `gemm_lanes_pass::<1, KIND>`. The block goes lane by lane (k, k + 4
/// share a nibble slot), each lane's values made as they are used: with all 8 made first (as
/// `lane_values`), the G groups' values, accumulators and the token's lane terms did not fit
/// the 32 registers and a fifth of the loop was spills and copies (docs/PERFORMANCE.md, session
/// 25). The lane order changes no sum: each lane has its own accumulator.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be a `GemvCall` of `G` groups.
unsafe fn gemv_lanes<const G: usize, const KIND: u8>(c: GemvCall) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let GemvCall { nb, w, ws, a, out, os } = c;
        let (hb, qb) = (lane_head_bytes(KIND), lane_block_bytes(KIND));
        let mut acc = [[_mm512_setzero_ps(); 8]; G];
        let mut summs = [_mm512_setzero_ps(); G];
        for b in 0..nb {
            let y = a.add(b * Q8_0S_BLOCK);
            let dy = _mm512_set1_ps((y as *const f32).read_unaligned());
            let lane_init = y.add(40) as *const i32; // offset · lane Σy, precomputed
            let mut d = [_mm512_setzero_ps(); G];
            let mut qh = [_mm512_setzero_si512(); G];
            for g in 0..G {
                let wg = w.add(g * ws);
                let q = wg.add(nb * hb + b * qb);
                prefetch_ahead(q, qb);
                d[g] = _mm512_mul_ps(scales16(wg.add(b * hb)), dy);
                if lane_q5(KIND) {
                    qh[g] = _mm512_loadu_si512(q as *const _);
                }
                if lane_min(KIND) {
                    let s = (y.add(4) as *const f32).read_unaligned();
                    summs[g] = _mm512_fmadd_ps(scales16(wg.add(b * hb + R * 2)), _mm512_set1_ps(s), summs[g]);
                }
            }
            // written out: a loop over the lane order stays a loop, its accumulators in memory
            let mut lane = |k: usize| {
                let init = _mm512_set1_epi32(lane_init.add(k).read_unaligned());
                let yk = bcast4(y.add(8 + 4 * k));
                for g in 0..G {
                    let q = w.add(g * ws + nb * hb + b * qb);
                    let slot = if KIND == LANE_Q8_0 { k } else { k % 4 };
                    let x = _mm512_loadu_si512(q.add(lane_slots(KIND) + 64 * slot) as *const _);
                    let isum = _mm512_dpbusd_epi32(init, lane_value::<KIND>(x, qh[g], k), yk);
                    acc[g][k] = _mm512_fmadd_ps(d[g], _mm512_cvtepi32_ps(isum), acc[g][k]);
                }
            };
            lane(0);
            lane(4);
            lane(1);
            lane(5);
            lane(2);
            lane(6);
            lane(3);
            lane(7);
        }
        for g in 0..G {
            lane_store::<KIND>(&acc[g], summs[g], out.add(g * os));
        }
    }
}

/// K-quant kernels keep up to 4 tokens' accumulators in registers; more tokens take more passes.
const K_PASS: usize = 4;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_k<const T: usize, const G4: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q4_k_pass, [, G4], K_PASS, T, c) }
}

/// Q4_K in llama.cpp's orders (its x86 build repacks Q4_K to 8×8 interleaved rows). Scale sums and
/// min sums go to two float accumulators, subtracted at the end, each update
/// `acc = fma(f32(isum), d_w·d_a, acc)`:
///   `G4 = false` (`ggml_gemv_q4_K_8x8_q8_K`: generation, and prompt tokens after the last full
///   group of 4): one update per super-block;
///   `G4 = true` (`ggml_gemm_q4_K_8x8_q8_K`, prompt tokens in groups of 4): one update per pair of
///   32-element sub-blocks (2p, 2p+1).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_k_pass<const T: usize, const G4: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let mut acc = [_mm512_setzero_ps(); T];
        let mut accm = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let q = quants.add(b * R * 140);
            let k4 = K4Scales::load(q);
            let ya = |t: usize| q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
            let mut dd = [(_mm512_setzero_ps(), _mm512_setzero_ps()); T];
            for (t, ddt) in dd.iter_mut().enumerate() {
                *ddt = q4k_block_scales(heads.add(b * R * 4), ya(t).0);
            }
            let mut iacc = [_mm512_setzero_si512(); T];
            let mut imin = [_mm512_setzero_si512(); T];
            for j in 0..8 {
                let v = q4k_values(q, j);
                let (mj, sc) = (k4.min(j), k4.scale(j));
                for t in 0..T {
                    let (_, y, bs) = ya(t);
                    q4k_sub(&mut iacc[t], &mut imin[t], &v, sc, mj, y, bs, j);
                }
                if G4 && j % 2 == 1 {
                    for t in 0..T {
                        q4k_fold(&mut acc[t], &mut accm[t], iacc[t], imin[t], dd[t].0, dd[t].1);
                        iacc[t] = _mm512_setzero_si512();
                        imin[t] = _mm512_setzero_si512();
                    }
                }
            }
            if !G4 {
                for t in 0..T {
                    q4k_fold(&mut acc[t], &mut accm[t], iacc[t], imin[t], dd[t].0, dd[t].1);
                }
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out.add(t * os), _mm512_sub_ps(acc[t], accm[t]));
        }
    }
}

/// The 16 rows' nibbles of sub-block `j` (0..8) of the R16 Q4_K block at `q`: v[k] the low nibbles
/// of its slot k (elements 32j+8k..+4), v[4 + k] the high ones (32j+8k+4..+4); also asks for the
/// bytes ahead.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's bytes at `q` must be readable.
unsafe fn q4k_values(q: *const u8, j: usize) -> [__m512i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        prefetch_ahead(q.add(R * 140 / 8 * j), R * 140 / 8);
        nibbles4(q.add(64 * (3 + 4 * j)))
    }
}

/// Sub-block `j` of one token's Q8_K block (quants `y`, bsums `bs`) against the values `v`:
/// `iacc += sc_j · Σ q·y` and `imin += m_j · (bsum_2j + bsum_2j+1)` (vpdpwssd: m_j < 64 in the low
/// half of each lane, zero high half; the broadcast sum is sign-extended, so the high halves add 0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
///
/// # Safety
/// The CPU must support this function's target features; `y` and `bs` must be a readable block.
unsafe fn q4k_sub(
    iacc: &mut __m512i,
    imin: &mut __m512i,
    v: &[__m512i; 8],
    sc: __m512i,
    mj: __m512i,
    y: *const u8,
    bs: *const i16,
    j: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
        *imin = _mm512_dpwssd_epi32(*imin, mj, _mm512_set1_epi32(s));
        let y = y.add(32 * j);
        let mut i0 = _mm512_setzero_si512();
        let mut i1 = _mm512_setzero_si512();
        for k in 0..4 {
            i0 = _mm512_dpbusd_epi32(i0, v[k], bcast4(y.add(8 * k)));
            i1 = _mm512_dpbusd_epi32(i1, v[4 + k], bcast4(y.add(8 * k + 4)));
        }
        *iacc = _mm512_add_epi32(*iacc, _mm512_mullo_epi32(_mm512_add_epi32(i0, i1), sc));
    }
}

/// `acc = fma(f32(iacc), dd, acc)`, `accm = fma(f32(imin), ddm, accm)`; `dd` = d_w·d_a and
/// `ddm` = dmin_w·d_a (`q4k_block_scales`), made once per block and token.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn q4k_fold(acc: &mut __m512, accm: &mut __m512, iacc: __m512i, imin: __m512i, dd: __m512, ddm: __m512) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc), dd, *acc);
        *accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), ddm, *accm);
    }
}

/// (d_w·d_a, dmin_w·d_a) of the R16 Q4_K block whose heads are at `head` for a token's `d_a`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's 16 d and 16 dmin at `head`
/// must be readable.
unsafe fn q4k_block_scales(head: *const u8, dy: f32) -> (__m512, __m512) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let dy = _mm512_set1_ps(dy);
        (_mm512_mul_ps(scales16(head), dy), _mm512_mul_ps(scales16(head.add(R * 2)), dy))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// `gemm_q4_k::<1, false>` (generation's order) over `G` groups `c.ws` bytes apart, block by
/// block (`types::R16Gemv`); each group's sums are its single-token call's.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be a `GemvCall` of `G` groups.
unsafe fn gemv_q4_k<const G: usize>(c: GemvCall) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let GemvCall { nb, w, ws, a, out, os } = c;
        let mut acc = [_mm512_setzero_ps(); G];
        let mut accm = [_mm512_setzero_ps(); G];
        for b in 0..nb {
            let (dy, y, bs) = q8k_block(a.add(b * Q8_K_BLOCK));
            for g in 0..G {
                let heads = w.add(g * ws);
                let q = heads.add(nb * R * 4 + b * R * 140);
                let k4 = K4Scales::load(q);
                let mut iacc = _mm512_setzero_si512();
                let mut imin = _mm512_setzero_si512();
                for j in 0..8 {
                    let v = q4k_values(q, j);
                    q4k_sub(&mut iacc, &mut imin, &v, k4.scale(j), k4.min(j), y, bs, j);
                }
                let (dd, ddm) = q4k_block_scales(heads.add(b * R * 4), dy);
                q4k_fold(&mut acc[g], &mut accm[g], iacc, imin, dd, ddm);
            }
        }
        for g in 0..G {
            _mm512_storeu_ps(out.add(g * os), _mm512_sub_ps(acc[g], accm[g]));
        }
    }
}

/// The 12 scale bytes of each of 16 rows of a Q4_K/Q5_K block (R16 slots 0..3) as three u32
/// lanes: ggml's `get_scale_min_k4`, vectorised.
#[derive(Clone, Copy)]
struct K4Scales(__m512i, __m512i, __m512i);

impl K4Scales {
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F; slots 0..3 at `q` (192 bytes) must be readable.
    unsafe fn load(q: *const u8) -> Self {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            K4Scales(
                _mm512_loadu_si512(q as *const _),
                _mm512_loadu_si512(q.add(64) as *const _),
                _mm512_loadu_si512(q.add(128) as *const _),
            )
        }
    }

    /// 6-bit field `j` (0..8) from word `lo` (scales: word 0, mins: word 1) and word 2, whose
    /// byte j − 4 holds the low nibble of field j ≥ 4 at bit `nib_shift` (0 scales, 4 mins).
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F (register-only).
    unsafe fn field(lo: __m512i, w2: __m512i, j: usize, nib_shift: i32) -> __m512i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe {
            if j < 4 {
                _mm512_and_si512(_mm512_srlv_epi32(lo, _mm512_set1_epi32(8 * j as i32)), _mm512_set1_epi32(63))
            } else {
                let i = 8 * (j as i32 - 4);
                or_and(
                    _mm512_and_si512(_mm512_srlv_epi32(w2, _mm512_set1_epi32(i + nib_shift)), _mm512_set1_epi32(15)),
                    _mm512_srlv_epi32(lo, _mm512_set1_epi32(i + 2)),
                    _mm512_set1_epi32(0x30),
                )
            }
        }
    }

    /// Scale of sub-block `j` (0..8), one i32 lane per row.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F (register-only).
    unsafe fn scale(self, j: usize) -> __m512i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe { Self::field(self.0, self.2, j, 0) }
    }

    /// Minimum of sub-block `j` (0..8), one i32 lane per row.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F (register-only).
    unsafe fn min(self, j: usize) -> __m512i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe { Self::field(self.1, self.2, j, 4) }
    }
}

/// The kernels in llama.cpp's 8-lane `vec_dot` order (Q3_K, Q5_K) keep one token's 8 integer and
/// 8 float lane accumulators in registers.
const LANES8_PASS: usize = 1;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q5_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q5_k_pass, [], LANES8_PASS, T, c) }
}

/// Q5_K in the order of llama.cpp's x86 `ggml_vec_dot_q5_K_q8_K` (Q5_K is not repacked there;
/// batches under 8 tokens take it): 8 float lanes per row, lane l holding per super-block the
/// integer `Σ_j sc_j · Σ_{e = 32j+4l..32j+4l+4} q[e]·y[e]`, folded as
/// `lane = fma(d_a·d_w, f32(lane), lane)`; the minimums apart,
/// `summs = fma(−d_a·dmin_w, f32(Σ min·bsums), summs)`; `hsum_float_8(lanes) + summs`
/// (`kernels::ggml_x86::q5_k_lanes`). The AVX2 table's kernel in 16-row registers: one cache line
/// of every slot per step instead of two halves read in two passes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q5_k_pass<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let (m4, m10) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x10));
        let zero = _mm512_setzero_si512();
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        let mut summs = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales16(heads.add(b * R * 4));
            let dmin = scales16(heads.add(b * R * 4 + R * 2));
            let q = quants.add(b * R * 172);
            let k4 = K4Scales::load(q);
            let mut iacc = [[zero; 8]; T];
            let mut imin = [zero; T];
            for j in 0..8 {
                // mins: m_j · (bsum_2j + bsum_2j+1) by vpdpwssd (m_j < 64 in the low half of each
                // lane, zero high half; the broadcast sum is sign-extended, so the high halves add 0).
                let mj = k4.min(j);
                for (t, im) in imin.iter_mut().enumerate() {
                    let (_, _, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    *im = _mm512_dpwssd_epi32(*im, mj, _mm512_set1_epi32(s));
                }
                let sc = k4.scale(j);
                prefetch_ahead(q.add(R * 172 / 8 * j), R * 172 / 8);
                // v[l]: the 16 rows' unsigned 5-bit values of elements 32j+4l..32j+4l+4: nibble
                // slot 3+4j+l/2 (low or high nibbles), the fifth bit from bit j of slot 35+l moved
                // to bit 4 (a 16-bit shift keeps each byte's bit j in its own byte at bit 4)
                let v: [__m512i; 8] = std::array::from_fn(|l| {
                    let nib = _mm512_loadu_si512(q.add(64 * (3 + 4 * j + l / 2)) as *const _);
                    let nib = if l % 2 == 0 { nib } else { _mm512_srli_epi16(nib, 4) };
                    let hb = _mm512_loadu_si512(q.add(64 * (35 + l)) as *const _);
                    let hb = if j <= 4 {
                        _mm512_sll_epi16(hb, _mm_cvtsi32_si128(4 - j as i32))
                    } else {
                        _mm512_srl_epi16(hb, _mm_cvtsi32_si128(j as i32 - 4))
                    };
                    or_and(_mm512_and_si512(nib, m4), hb, m10)
                });
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(32 * j);
                    for (l, vl) in v.iter().enumerate() {
                        // |Σ of 4 products| ≤ 4·31·127 fits in i16, so vpdpwssd multiplies it exactly
                        let r = _mm512_dpbusd_epi32(zero, *vl, bcast4(y.add(4 * l)));
                        ia[l] = _mm512_dpwssd_epi32(ia[l], r, sc);
                    }
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let dy = _mm512_set1_ps(dy);
                let d = _mm512_mul_ps(dy, dw);
                for (al, il) in acc[t].iter_mut().zip(&iacc[t]) {
                    *al = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(*il), *al);
                }
                summs[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dy, dmin), _mm512_cvtepi32_ps(imin[t]), summs[t]);
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out.add(t * os), _mm512_add_ps(hsum8_lanes(&acc[t]), summs[t]));
        }
    }
}

/// The 12 scale bytes of a Q3_K R16 block (slots 0..3) of the 16 rows, as three u32 lanes per row.
#[derive(Clone, Copy)]
struct Q3Scales(__m512i, __m512i, __m512i);

impl Q3Scales {
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F; slots 0..3 at `q` (192 bytes) must be readable.
    unsafe fn load(q: *const u8) -> Self {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe {
            Q3Scales(
                _mm512_loadu_si512(q as *const _),
                _mm512_loadu_si512(q.add(64) as *const _),
                _mm512_loadu_si512(q.add(128) as *const _),
            )
        }
    }

    /// ggml's 6-bit scale k (0..16) minus 32 of each row (`q3k_scale`) in the low 16 bits of its
    /// i32 lane, the high 16 bits zero: `vpdpwssd`'s factor for an i32 that fits in i16.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX-512 F (register-only).
    unsafe fn scale16(self, k: usize) -> __m512i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe {
            let field = |v: __m512i, sh: usize, mask: i32| {
                _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_set1_epi32(sh as i32)), _mm512_set1_epi32(mask))
            };
            // low nibble: byte k (k < 8) or the high half of byte k − 8; top 2 bits: byte 8 + k%4
            let lo = field(if k % 8 < 4 { self.0 } else { self.1 }, 8 * (k % 4) + 4 * (k / 8), 15);
            let hi = field(self.2, 8 * (k % 4) + 2 * (k / 4), 3);
            let s = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32::<4>(hi)), _mm512_set1_epi32(32));
            _mm512_and_si512(s, _mm512_set1_epi32(0xFFFF))
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q3_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q3_k_pass, [], LANES8_PASS, T, c) }
}

/// Q3_K in the order of llama.cpp's x86 `ggml_vec_dot_q3_K_q8_K` (Q3_K is not repacked there;
/// batches under 8 tokens take it): 8 float lanes per row, lane l holding per super-block the
/// integer `Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]`, folded as
/// `lane = fma(d_a·d_w, f32(lane), lane)`, then `hsum_float_8` (`kernels::ggml_x86::q3_k_lanes`).
/// The AVX2 table's kernel in 16-row registers, with `vpdpbusd`: q = v − 4 for the unsigned
/// v = low 2 bits | hmask bit · 4 (0..7), so each 4-element sum starts at −4·Σy.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q3_k_pass<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let four = _mm512_set1_epi8(4);
        let zero = _mm512_setzero_si512();
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales16(heads.add(b * R * 2));
            let q = quants.add(b * R * 108);
            let s3 = Q3Scales::load(q);
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let (dy, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                // off[m] = −4·Σ y[4m..4m+4]: the start of each 4-element sum
                let mut off = [0i32; 64];
                for i in 0..4 {
                    let s = _mm512_dpbusd_epi32(zero, four, _mm512_loadu_si512(y.add(64 * i) as *const _));
                    _mm512_storeu_si512(off.as_mut_ptr().add(16 * i) as *mut _, _mm512_sub_epi32(zero, s));
                }
                let mut ia = [zero; 8];
                // the group's shifts as immediates (a loop over g is not unrolled)
                q3k_group::<0>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<1>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<2>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<3>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<4>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<5>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<6>(q, y, &off, s3, t == 0, &mut ia);
                q3k_group::<7>(q, y, &off, s3, t == 0, &mut ia);
                let d = _mm512_mul_ps(_mm512_set1_ps(dy), dw);
                for (al, il) in acc_t.iter_mut().zip(&ia) {
                    *al = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(*il), *al);
                }
            }
        }
        for (t, acc_t) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(t * os), hsum8_lanes(acc_t));
        }
    }
}

/// Group `G` (elements 32G..32G+32) of a Q3_K R16 block `q` against the activations `y`: adds
/// `sc · Σ (v − 4)·y` over elements 32G+4l..+4 of each row to lane `ia[l]` (`gemm_q3_k_pass`).
#[inline(always)]
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI; the R16 Q3_K block at `q` and `y..y+256` must be
/// readable.
unsafe fn q3k_group<const G: usize>(
    q: *const u8,
    y: *const u8,
    off: &[i32; 64],
    s3: Q3Scales,
    prefetch: bool,
    ia: &mut [__m512i; 8],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        if prefetch {
            prefetch_ahead(q.add(R * 108 / 8 * G), R * 108 / 8);
        }
        // lanes 0..4 are sub-block 2G, lanes 4..8 sub-block 2G+1
        let sc = [s3.scale16(2 * G), s3.scale16(2 * G + 1)];
        for (l, il) in ia.iter_mut().enumerate() {
            // the 16 rows' elements 32G+4l..+4: 2 low bits from quant slot 11+8(G/4)+l at bit
            // 2(G%4), the high bit from bit G of hmask slot 3+l moved to bit 2 (a 16-bit shift
            // keeps each byte's bit G in its own byte at bit 2)
            let qs = _mm512_loadu_si512(q.add(64 * (11 + 8 * (G / 4) + l)) as *const _);
            let lo = _mm512_and_si512(_mm512_srl_epi16(qs, _mm_cvtsi32_si128(2 * (G as i32 % 4))), _mm512_set1_epi8(3));
            let hb = _mm512_loadu_si512(q.add(64 * (3 + l)) as *const _);
            let hb = if G >= 2 {
                _mm512_srl_epi16(hb, _mm_cvtsi32_si128(G as i32 - 2))
            } else {
                _mm512_sll_epi16(hb, _mm_cvtsi32_si128(2 - G as i32))
            };
            let v = or_and(lo, hb, _mm512_set1_epi8(4));
            // |Σ (v − 4)·y| ≤ 4·4·128 fits in i16, so vpdpwssd multiplies it exactly
            let r = _mm512_dpbusd_epi32(_mm512_set1_epi32(off[8 * G + l]), v, bcast4(y.add(32 * G + 4 * l)));
            *il = _mm512_dpwssd_epi32(*il, r, sc[l / 4]);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q2_k<const T: usize, const G4: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q2_k_pass, [, G4], K_PASS, T, c) }
}

/// Q2_K in the orders of llama.cpp's AVX-512 build, which repacks it to 8×8 interleaved rows: scale
/// sums and minimum sums in two float accumulators, `acc = fma(f32(isum), d_w·d_a, acc)`,
/// `accm = fma(f32(imin), dmin_w·d_a, accm)`, `acc − accm`; one update per super-block
/// (`G4 = false`, `ggml_gemv_q2_K_8x8_q8_K`) or per 128-element half (`G4 = true`, its
/// `ggml_gemm_q2_K_8x8_q8_K` over a batch's full groups of 4 tokens); `kernels::ggml_x86::q2_k_gemv`,
/// `q2_k_gemm4`. The AVX2 table's `gemm_q2_k_8x8` in 16-row registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q2_k_pass<const T: usize, const G4: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let (m3, m15) = (_mm512_set1_epi8(3), _mm512_set1_epi32(15));
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); T];
        let mut accm = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales16(heads.add(b * R * 4));
            let dmin = scales16(heads.add(b * R * 4 + R * 2));
            let q = quants.add(b * R * 80);
            // slots 0..4: the 16 scale bytes of each row (low nibble scale, high nibble minimum)
            let sm: [__m512i; 4] = std::array::from_fn(|i| _mm512_loadu_si512(q.add(64 * i) as *const _));
            let mut iacc = [zero; T];
            let mut imin = [zero; T];
            for c in 0..2 {
                // slot 4 + 8c + l: elements 32g + 4l .. + 4 of groups g = 4c + k at bits 2k
                let v: [__m512i; 8] =
                    std::array::from_fn(|l| _mm512_loadu_si512(q.add(64 * (4 + 8 * c + l)) as *const _));
                for k in 0..4 {
                    let g = 4 * c + k;
                    prefetch_ahead(q.add(R * 10 * g), R * 10);
                    let sh = _mm_cvtsi32_si128(2 * k as i32);
                    let u: [__m512i; 8] = std::array::from_fn(|l| _mm512_and_si512(_mm512_srl_epi16(v[l], sh), m3));
                    for half in 0..2 {
                        let j = 2 * g + half;
                        let word = _mm512_srl_epi32(sm[j / 4], _mm_cvtsi32_si128(8 * (j % 4) as i32));
                        let (sc, mn) = (_mm512_and_si512(word, m15), _mm512_and_si512(_mm512_srli_epi32(word, 4), m15));
                        for t in 0..T {
                            let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                            // mn < 16 in the low half of each lane, zero high half: vpdpwssd multiplies
                            // it by the sign-extended bsum exactly
                            imin[t] = _mm512_dpwssd_epi32(imin[t], mn, _mm512_set1_epi32(*bs.add(j) as i32));
                            let mut r = zero;
                            for l in 4 * half..4 * half + 4 {
                                r = _mm512_dpbusd_epi32(r, u[l], bcast4(y.add(32 * g + 4 * l)));
                            }
                            // |r| ≤ 16·3·128 fits in i16: vpdpwssd times the scale is exact
                            iacc[t] = _mm512_dpwssd_epi32(iacc[t], r, sc);
                        }
                    }
                }
                if !G4 && c == 0 {
                    continue;
                }
                for t in 0..T {
                    let dy = _mm512_set1_ps(q8k_block(a.add(t * as_ + b * Q8_K_BLOCK)).0);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(dw, dy), acc[t]);
                    accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin[t]), _mm512_mul_ps(dmin, dy), accm[t]);
                    iacc[t] = zero;
                    imin[t] = zero;
                }
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(out.add(t * os), _mm512_sub_ps(acc[t], accm[t]));
        }
    }
}

/// Tokens per pass of the Q6_K kernel (8 integer and 8 float lane accumulators per token).
const Q6_PASS: usize = 2;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q6_k_pass, [], Q6_PASS, T, c) }
}

/// Unsigned 6-bit values of elements 16j + 4k + i (k = 0..4) of the 16 rows, from the R16 Q6_K
/// ql / qh slots of sub-block j.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; sub-block `j`'s slots (`ql + 128j ..
/// +128`, `qh + 64j .. +64`) must be readable.
unsafe fn q6_values(ql: *const u8, qh: *const u8, j: usize) -> [__m512i; 4] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m4, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
        let h = _mm512_loadu_si512(qh.add(64 * j) as *const _);
        let a0 = _mm512_loadu_si512(ql.add(64 * 2 * j) as *const _);
        let a1 = _mm512_loadu_si512(ql.add(64 * (2 * j + 1)) as *const _);
        [
            or_and(_mm512_and_si512(a0, m4), _mm512_slli_epi16(h, 4), m30),
            or_and(_mm512_and_si512(_mm512_srli_epi16(a0, 4), m4), _mm512_slli_epi16(h, 2), m30),
            or_and(_mm512_and_si512(a1, m4), h, m30),
            or_and(_mm512_and_si512(_mm512_srli_epi16(a1, 4), m4), _mm512_srli_epi16(h, 2), m30),
        ]
    }
}

/// Sub-block scales `j` of the 16 rows as i32 lanes holding the i16 value in the low half and 0 in
/// the high half, the form `vpdpwssd` multiplies exactly by an i32 that fits in i16.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `q + 16j .. q + 16j + 16` must be
/// readable.
unsafe fn q6_scale16(q: *const u8, j: usize) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        _mm512_and_si512(
            _mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(16 * j) as *const __m128i)),
            _mm512_set1_epi32(0xFFFF),
        )
    }
}

/// llama.cpp's x86 `ggml_vec_dot_q6_K_q8_K` order (Q6_K is not repacked there; batches under 8
/// tokens take it, larger ones `gemm_q6_k_tiled`): 8 float lanes per row, lane l holding, per super-block, the integer
///   Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]  −  32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])
/// (its −32 offset goes through the bsums of sub-blocks 2l, 2l+1, not through lane l's own
/// elements), folded as `acc_l = fma(d_a·d_w, f32(lane), acc_l)`, then summed
/// `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`. Elements 16j+4k..16j+4k+4 belong to lane 4(j mod 2)+k.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k_pass<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales16(heads.add(b * R * 2));
            let q = quants.add(b * R * 208);
            let ya = |t: usize| q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
            let mut iacc = [[_mm512_setzero_si512(); 8]; T];
            for (t, ia) in iacc.iter_mut().enumerate() {
                *ia = q6_lane_init(q, ya(t).2);
            }
            for j in 0..16 {
                let (sc, v) = q6_sub_values(q, j);
                for (t, ia) in iacc.iter_mut().enumerate() {
                    q6_sub(ia, &v, sc, ya(t).1, j);
                }
            }
            for (t, (acc_t, ia)) in acc.iter_mut().zip(&iacc).enumerate() {
                q6_fold(acc_t, ia, dw, ya(t).0);
            }
        }
        store_lanes(&acc, out, os);
    }
}

/// Lane l's start: −32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1]) of the block's scales (`q`) and
/// one token's bsums.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's scales at `q` and the 16
/// bsums at `bs` must be readable.
unsafe fn q6_lane_init(q: *const u8, bs: *const i16) -> [__m512i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let mut ia = [zero; 8];
        for (l, il) in ia.iter_mut().enumerate() {
            let (s0, s1) = (q6_scale16(q, 2 * l), q6_scale16(q, 2 * l + 1));
            let x = _mm512_dpwssd_epi32(zero, s0, _mm512_set1_epi32(-(*bs.add(2 * l) as i32)));
            let x = _mm512_dpwssd_epi32(x, s1, _mm512_set1_epi32(-(*bs.add(2 * l + 1) as i32)));
            *il = _mm512_slli_epi32(x, 5);
        }
        ia
    }
}

/// Sub-block `j` (0..16) of the R16 Q6_K block at `q`: its scales and values (`q6_scale16`,
/// `q6_values`); also asks for the bytes ahead.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the block's bytes at `q` must be readable.
unsafe fn q6_sub_values(q: *const u8, j: usize) -> (__m512i, [__m512i; 4]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        prefetch_ahead(q.add(R * 208 / 16 * j), R * 208 / 16);
        (q6_scale16(q, j), q6_values(q.add(R * 16), q.add(R * 16 + R * 128), j))
    }
}

/// Sub-block `j` of one token's Q8_K quants `y` into the lanes it feeds (4(j mod 2)..+4):
/// `ia[l] += sc_j · Σ of 4 products` (|Σ| ≤ 4·63·128 fits in i16, so vpdpwssd multiplies it
/// exactly).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `y + 16j .. +16` must be readable.
unsafe fn q6_sub(ia: &mut [__m512i; 8], v: &[__m512i; 4], sc: __m512i, y: *const u8, j: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (l0, y) = (4 * (j % 2), y.add(16 * j));
        for (k, vk) in v.iter().enumerate() {
            let r = _mm512_dpbusd_epi32(_mm512_setzero_si512(), *vk, bcast4(y.add(4 * k)));
            ia[l0 + k] = _mm512_dpwssd_epi32(ia[l0 + k], r, sc);
        }
    }
}

/// `acc_l = fma(d_a·d_w, f32(ia_l), acc_l)` for the 8 lanes.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn q6_fold(acc: &mut [__m512; 8], ia: &[__m512i; 8], dw: __m512, dy: f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let d = _mm512_mul_ps(_mm512_set1_ps(dy), dw);
        for (al, il) in acc.iter_mut().zip(ia) {
            *al = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(*il), *al);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// `gemm_q6_k::<1>` over `G` groups `c.ws` bytes apart, block by block (`types::R16Gemv`); each
/// group's lanes sum as in its single-token call.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be a `GemvCall` of `G` groups.
unsafe fn gemv_q6_k<const G: usize>(c: GemvCall) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let GemvCall { nb, w, ws, a, out, os } = c;
        let mut acc = [[_mm512_setzero_ps(); 8]; G];
        for b in 0..nb {
            let (dy, y, bs) = q8k_block(a.add(b * Q8_K_BLOCK));
            for (g, acc) in acc.iter_mut().enumerate() {
                let heads = w.add(g * ws);
                let q = heads.add(nb * R * 2 + b * R * 208);
                let mut ia = q6_lane_init(q, bs);
                // in pairs: sub-block j feeds lanes 4·(j mod 2).., which a loop over j indexes at
                // run time, so the 8 lane sums lived in memory (4 loads and stores per sub-block)
                for p in 0..8 {
                    let (sc, v) = q6_sub_values(q, 2 * p);
                    q6_sub(&mut ia, &v, sc, y, 2 * p);
                    let (sc, v) = q6_sub_values(q, 2 * p + 1);
                    q6_sub(&mut ia, &v, sc, y, 2 * p + 1);
                }
                q6_fold(acc, &ia, scales16(heads.add(b * R * 2)), dy);
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            store_lanes(&[*acc], out.add(g * os), R);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k_tiled<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { in_passes!(gemm_q6_k_tiled_pass, [], K_PASS, T, c) }
}

/// Q6_K for batches of 8 or more tokens, in the order of llama.cpp's x86 "tiled" K-quant GEMM
/// (`ggml_compute_forward_mul_mat_tiled`, used from 8 rows up): per super-block one exact integer
/// sum, then `acc = fma(f32(isum)·d_w, d_a, acc)` with the first product rounded.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k_tiled_pass<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, a, as_, out, os, .. } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let d = scales16(heads.add(b * R * 2));
            let q = quants.add(b * R * 208);
            let (ql, qh) = (q.add(R * 16), q.add(R * 16 + R * 128));
            let mut iacc = [_mm512_setzero_si512(); T];
            for j in 0..16 {
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(16 * j) as *const __m128i));
                let v = q6_values(ql, qh, j);
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(16 * j);
                    // (q − 32)·y = q·y − 32·Σy: start the sum at −32·bsum_j
                    let mut i0 = _mm512_set1_epi32(-32 * *bs.add(j) as i32);
                    let mut i1 = _mm512_setzero_si512();
                    i0 = _mm512_dpbusd_epi32(i0, v[0], bcast4(y));
                    i1 = _mm512_dpbusd_epi32(i1, v[1], bcast4(y.add(4)));
                    i0 = _mm512_dpbusd_epi32(i0, v[2], bcast4(y.add(8)));
                    i1 = _mm512_dpbusd_epi32(i1, v[3], bcast4(y.add(12)));
                    *ia = _mm512_add_epi32(*ia, _mm512_mullo_epi32(_mm512_add_epi32(i0, i1), sc));
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(iacc[t]), d), _mm512_set1_ps(dy), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}

/// llama.cpp's `hsum_float_8` applied lane-wise to 8 accumulators.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn hsum8_lanes(l: &[__m512; 8]) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(l[0], l[4]), _mm512_add_ps(l[2], l[6])),
            _mm512_add_ps(_mm512_add_ps(l[1], l[5]), _mm512_add_ps(l[3], l[7])),
        )
    }
}

/// The 16 f16 scales at `p` as f32.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+32` must be readable.
unsafe fn scales16(p: *const u8) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Stores each token's 16 row results at `out + t·os`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `out + t·os .. + 16` must be writable for
/// every t < T.
unsafe fn store<const T: usize>(acc: &[__m512; T], out: *mut f32, os: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (t, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(t * os), *v);
        }
    }
}

/// Stores `hsum8_lanes` of each token's 8 lane accumulators at `out + t·os`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `out + t·os .. + 16` must be writable for
/// every t < T.
unsafe fn store_lanes<const T: usize>(acc: &[[__m512; 8]; T], out: *mut f32, os: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (t, l) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(t * os), hsum8_lanes(l));
        }
    }
}
