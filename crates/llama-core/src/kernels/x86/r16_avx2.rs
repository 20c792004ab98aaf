//! AVX2 kernels over R16-repacked weights (layout in `quant::repack`), for x86 CPUs without AVX-512.
//!
//! A 64-byte slot is two ymm: rows 0..8 in bytes 0..32, rows 8..16 in bytes 32..64. With only 16
//! ymm registers, each call runs the two 8-row halves one after the other, and at most `PASS`
//! tokens per pass. `vpdpbusd` is emulated as `vpmaddubsw` (u8·i8 pairs → i16) + `vpmaddwd` (→ i32):
//! every pair sum stays below 2·63·127 = 16002 for the 4-, 5- and 6-bit formats, so nothing
//! saturates; Q8_0 (stored XOR 0x80) is turned back into signed bytes and multiplied as |x|·(±y),
//! as ggml's AVX2 Q8_0 dot does.
//!
//! Numerics: integer sums exact; float updates in llama.cpp's x86 orders, as the AVX-512 kernels
//! (`kernels::ggml_x86` writes each out; the tests compare bit for bit).

// Index loops over tokens and rows mirror the register arrays they fill (`acc[t]`, `acc[r][t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::prefetch_ahead;
use crate::kernels::shared::{q8_0s_block, q8k_block, R16Call};
use crate::kernels::types::GemmR16Fn;
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::mxfp4::KVALUES_MXFP4;
use crate::quant::repack::{Q8_0S_BLOCK, Q8_K_BLOCK, R};
use crate::quant::GgmlType;

/// Tokens per pass (accumulator registers).
const PASS: usize = 4;
/// Rows per half.
const H: usize = 8;

gemm_split_entry!(gemm_q4_0_entry, gemm_q4_0, GgmlType::Q4_0, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_iq4_nl_entry, gemm_iq4_nl::<_, false>, GgmlType::IQ4_NL, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_mxfp4_entry, gemm_iq4_nl::<_, true>, GgmlType::MXFP4, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_iq4_xs_entry, gemm_iq4_xs::<_, false>, GgmlType::IQ4_XS, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_iq4_xs_tiled_entry, gemm_iq4_xs::<_, true>, GgmlType::IQ4_XS, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_q4_1_entry, gemm_lanes::<_, false, true>, GgmlType::Q4_1, H, LANES_PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q5_0_entry, gemm_lanes::<_, true, false>, GgmlType::Q5_0, H, LANES_PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q5_1_entry, gemm_lanes::<_, true, true>, GgmlType::Q5_1, H, LANES_PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q8_0_entry, gemm_q8_0, GgmlType::Q8_0, H, LANES_PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q4_k_entry, gemm_q4_k::<_, false>, GgmlType::Q4_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q4_k_g4_entry, gemm_q4_k::<_, true>, GgmlType::Q4_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q2_k_entry, gemm_q2_k, GgmlType::Q2_K, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_q2_k_tiled_entry, gemm_q2_k_tiled, GgmlType::Q2_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q3_k_entry, gemm_q3_k, GgmlType::Q3_K, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_q3_k_tiled_entry, gemm_q3_k_tiled, GgmlType::Q3_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q5_k_entry, gemm_q5_k, GgmlType::Q5_K, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_q5_k_tiled_entry, gemm_q5_k_tiled, GgmlType::Q5_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q6_k_entry, gemm_q6_k, GgmlType::Q6_K, H, 1, "avx2,fma,f16c");
gemm_split_entry!(gemm_q6_k_tiled_entry, gemm_q6_k_tiled, GgmlType::Q6_K, H, PASS, "avx2,fma,f16c");

/// The AVX2 R16 kernels: (weight type, kernel).
pub(super) const GEMMS: [(GgmlType, GemmR16Fn); 13] = [
    (GgmlType::Q4_0, gemm_q4_0_entry),
    (GgmlType::IQ4_NL, gemm_iq4_nl_entry),
    (GgmlType::MXFP4, gemm_mxfp4_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_entry),
    (GgmlType::Q4_1, gemm_q4_1_entry),
    (GgmlType::Q5_0, gemm_q5_0_entry),
    (GgmlType::Q5_1, gemm_q5_1_entry),
    (GgmlType::Q8_0, gemm_q8_0_entry),
    (GgmlType::Q2_K, gemm_q2_k_entry),
    (GgmlType::Q3_K, gemm_q3_k_entry),
    (GgmlType::Q4_K, gemm_q4_k_entry),
    (GgmlType::Q5_K, gemm_q5_k_entry),
    (GgmlType::Q6_K, gemm_q6_k_entry),
];

/// The kernels in llama.cpp's batch orders (`types::R16Batch::gemm`): Q4_K's 4-token groups,
/// Q2_K's, Q3_K's, Q5_K's, Q6_K's and IQ4_XS's tiled GEMM.
pub(super) const BATCH_GEMMS: [(GgmlType, GemmR16Fn); 6] = [
    (GgmlType::Q2_K, gemm_q2_k_tiled_entry),
    (GgmlType::Q3_K, gemm_q3_k_tiled_entry),
    (GgmlType::Q4_K, gemm_q4_k_g4_entry),
    (GgmlType::Q5_K, gemm_q5_k_tiled_entry),
    (GgmlType::Q6_K, gemm_q6_k_tiled_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_tiled_entry),
];

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features; `p..p+4` must be readable.
unsafe fn bcast4(p: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_set1_epi32((p as *const i32).read_unaligned()) }
}

/// `acc + Σ` of 4 adjacent u8·i8 products per i32 lane.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn dp(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))) }
}

/// The half-h ymm of 64-byte slot `i` at `q`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the part of 64-byte slot `i` at `q` that
/// is read must be readable.
unsafe fn slot(q: *const u8, i: usize, h: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_loadu_si256(q.add(64 * i + 32 * h) as *const __m256i) }
}

/// 8 MXFP4 scales `e8m0_to_fp32_half(e)` of half h from the 16 e8m0 bytes at `p`: the bits
/// (e − 1) << 23, and 0x200000 << e for e < 2 (subnormal).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `p + 8h .. p + 8h + 8` must be readable.
unsafe fn e8m0_8(p: *const u8, h: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let e = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8 * h) as *const __m128i));
        let normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
        let sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x0020_0000), e);
        let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
        _mm256_castsi256_ps(_mm256_blendv_epi8(normal, sub, small))
    }
}

/// 8 f16 scales of half h at `p` (a row of 16 f16).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `p + 16h .. p + 16h + 16` must be
/// readable.
unsafe fn scales8(p: *const u8, h: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * h) as *const __m128i)) }
}

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn fold(acc: __m256, isum: __m256i, dw: __m256, da: f32) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(da)), acc) }
}

#[inline(always)]
/// # Safety
/// The CPU must support this function's target features; `out + t·os` must be writable for a part's
/// floats for every t < T.
unsafe fn store<const T: usize>(acc: &[__m256; T], out: *mut f32, os: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (t, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(t * os), *v);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_0<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (scales, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(scales.add(b * R * 2), h);
            let q = quants.add(b * R * 16);
            if h == 0 {
                prefetch_ahead(q, R * 16);
            }
            let mut lo = [_mm256_setzero_si256(); 4];
            let mut hi = [_mm256_setzero_si256(); 4];
            for s in 0..4 {
                let v = slot(q, s, h);
                lo[s] = _mm256_and_si256(v, m4);
                hi[s] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            }
            for t in 0..T {
                let (da, sum, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = _mm256_set1_epi32(-8 * sum);
                for s in 0..4 {
                    i = dp(i, lo[s], bcast4(y.add(4 * s)));
                    i = dp(i, hi[s], bcast4(y.add(16 + 4 * s)));
                }
                acc[t] = fold(acc[t], i, dw, da);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ4_NL: Q4_0's layout and float order, the nibbles looked up in kvalues_iq4nl (`vpshufb`). The
/// levels reach ±127, so `vpmaddubsw` on them offset to unsigned could saturate: they are multiplied
/// as |x|·(±y) like Q8_0 (pairs ≤ 2·127·127, exact; Q8_0 activations never hold −128).
/// `MX`: MXFP4 instead (kvalues_mxfp4, the e8m0 scales after each block's quants; llama.cpp runs
/// it through the same repacked GEMV/GEMM, `kernels::ggml_x86::mxfp4_repack`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_nl<const T: usize, const MX: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (scales, quants) = if MX { (w, w) } else { (w, w.add(nb * R * 2)) };
        let m4 = _mm256_set1_epi8(0x0F);
        let levels = if MX { KVALUES_MXFP4.as_ptr() } else { KVALUES_IQ4NL.as_ptr() };
        let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(levels as *const __m128i));
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let (dw, q) = if MX {
                let q = quants.add(b * R * 17);
                (e8m0_8(q.add(R * 16), h), q)
            } else {
                (scales8(scales.add(b * R * 2), h), quants.add(b * R * 16))
            };
            if h == 0 {
                prefetch_ahead(q, if MX { R * 17 } else { R * 16 });
            }
            // [slot][lo, hi]: the signed levels and their magnitudes
            let mut x = [[_mm256_setzero_si256(); 2]; 4];
            for s in 0..4 {
                let v = slot(q, s, h);
                x[s][0] = _mm256_shuffle_epi8(table, _mm256_and_si256(v, m4));
                x[s][1] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            }
            let ax = x.map(|p| p.map(|v| _mm256_abs_epi8(v)));
            for t in 0..T {
                let (da, _, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = _mm256_setzero_si256();
                for s in 0..4 {
                    for (k, o) in [(0, 4 * s), (1, 16 + 4 * s)] {
                        let p16 = _mm256_maddubs_epi16(ax[s][k], _mm256_sign_epi8(bcast4(y.add(o)), x[s][k]));
                        i = _mm256_add_epi32(i, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
                    }
                }
                acc[t] = fold(acc[t], i, dw, da);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ4_XS in llama.cpp's `ggml_vec_dot_iq4_xs_q8_K` order (as the AVX-512 kernel, see there): 8
/// float lanes per row, lane l the integer Σ_ib (ls_ib − 32)·Σ_{e=4l..4l+4} v·y of each
/// sub-block; the levels multiplied as |x|·(±y) (pairs ≤ 2·127·127, exact), each 4-element sum
/// times its row's scale in `vpmulld`. `TILED`: llama.cpp's tiled GEMM order for batches of 8
/// tokens or more instead (`kernels::ggml_x86::iq4_xs_tiled`): the lanes' integers added, then
/// `acc = fma(f32(isum)·d_w, d_a, acc)` per super-block.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_iq4_xs<const T: usize, const TILED: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i));
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 134);
            // the half's 8 rows: scales_l as one u32, scales_h as one u16 widened
            let sl = _mm256_loadu_si256(q.add(R * 128 + 32 * h) as *const __m256i);
            let sh = _mm256_cvtepu16_epi32(_mm_loadu_si128(q.add(R * 132 + 16 * h) as *const __m128i));
            for t in 0..T {
                let (dy, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let mut ia = [_mm256_setzero_si256(); 8];
                for ib in 0..8 {
                    if t == 0 && h == 0 {
                        prefetch_ahead(q.add(R * 134 / 8 * ib), R * 134 / 8);
                    }
                    let lo = _mm256_and_si256(
                        _mm256_srl_epi32(sl, _mm_cvtsi32_si128(4 * ib as i32)),
                        _mm256_set1_epi32(0xF),
                    );
                    let hi =
                        _mm256_and_si256(_mm256_srl_epi32(sh, _mm_cvtsi32_si128(2 * ib as i32)), _mm256_set1_epi32(3));
                    let ls = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
                    for s in 0..4 {
                        let v = slot(q, 4 * ib + s, h);
                        let x = [
                            _mm256_shuffle_epi8(table, _mm256_and_si256(v, m4)),
                            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)),
                        ];
                        for (k, xk) in [(s, x[0]), (4 + s, x[1])] {
                            let yk = _mm256_sign_epi8(bcast4(y.add(32 * ib + 4 * k)), xk);
                            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(xk), yk), ones);
                            ia[k] = _mm256_add_epi32(ia[k], _mm256_mullo_epi32(p, ls));
                        }
                    }
                }
                if TILED {
                    let isum = ia.iter().fold(_mm256_setzero_si256(), |s, l| _mm256_add_epi32(s, *l));
                    let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), dw);
                    acc[t][0] = _mm256_fmadd_ps(x, _mm256_set1_ps(dy), acc[t][0]);
                    continue;
                }
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(dy));
                for (al, il) in acc[t].iter_mut().zip(&ia) {
                    *al = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*il), *al);
                }
            }
        }
        if TILED {
            for (t, acc_t) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(t * os), acc_t[0]);
            }
            return;
        }
        store_lanes(&acc, out, os);
    }
}

/// `hsum_float_8` applied lane-wise to 8 lane accumulators (each holding 8 rows):
/// `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn hsum8_lanes(l: &[__m256; 8]) -> __m256 {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe {
        _mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(l[0], l[4]), _mm256_add_ps(l[2], l[6])),
            _mm256_add_ps(_mm256_add_ps(l[1], l[5]), _mm256_add_ps(l[3], l[7])),
        )
    }
}

/// Stores `hsum8_lanes` of each token's 8 lane accumulators at `out + t·os`.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `out + t·os .. + 8` must be writable for
/// every t < T.
unsafe fn store_lanes<const T: usize>(acc: &[[__m256; 8]; T], out: *mut f32, os: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (t, l) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(t * os), hsum8_lanes(l));
        }
    }
}

/// Block `b` of each of the T Q8_0S activation rows at `a` (`as_` bytes apart), and `d_w·d_a` for
/// each.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; block `b` of the T rows must be readable.
unsafe fn q8_0s_rows<const T: usize>(a: *const u8, as_: usize, b: usize, dw: __m256) -> ([*const u8; T], [__m256; T]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let ys: [*const u8; T] = std::array::from_fn(|t| a.add(t * as_ + b * Q8_0S_BLOCK));
        let d: [__m256; T] = std::array::from_fn(|t| _mm256_mul_ps(dw, _mm256_set1_ps(q8_0s_block(ys[t]).0)));
        (ys, d)
    }
}

/// `i16 × i16` pairs summed into i32 lanes with `s` in both halves of every lane: for the
/// `vpmaddubsw` pairs `p`, `Σ pairs · s` (exact: `s` and every pair sum fit in i16).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn pairs_times(p: __m256i, s16: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm256_madd_epi16(p, s16) }
}

/// i32 lanes holding small signed values → the same value in both i16 halves of each lane.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn dup16(v: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32::<16>(v)) }
}

/// Tokens per pass of the 8-lane kernels (Q4_1, Q5_0, Q5_1, Q8_0): 8 float accumulators per token.
const LANES_PASS: usize = 4;
/// Lanes whose accumulators a pass of several tokens keeps in registers at once (a single token
/// keeps all 8).
const LANES_GROUP: usize = 4;

#[target_feature(enable = "avx2,fma,f16c")]
/// Q4_1 (`Q5 = false, MIN = true`), Q5_0 (`true, false`) and Q5_1 (`true, true`) in llama.cpp's
/// order (`ggml_vec_dot_q4_1_q8_1`, `ggml_vec_dot_q5_1_q8_1`, and for Q5_0 `ggml_vec_dot_q5_0_q8_0`
/// and tinyBLAS_Q0_AVX alike; none of them is repacked there): 8 float lanes per row, lane k
/// holding elements 4k..4k+4 of every block, `lane = fma(d_w·d_a, f32(lane sum), lane)`, then
/// `hsum_float_8`; with a minimum (`MIN`), `summs = fma(m_w, s_a, summs)` per block beside it and
/// `hsum_float_8(lanes) + summs` (`kernels::ggml_x86::q4_1_lanes`, `q5_0_lanes`, `q5_1_lanes`).
/// Lane k < 4 is the low nibbles of nibble slot k, lane k ≥ 4 the high nibbles of slot k − 4; Q5_0's
/// offset (−16 · the lane's Σy) starts its lane sums.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_lanes<const T: usize, const Q5: bool, const MIN: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        // per block: header [16 d] or [16 d][16 m]; quants [qh slot] + 4 nibble slots
        let hb = if MIN { R * 4 } else { R * 2 };
        let (qb, first) = if Q5 { (R * 20, 1) } else { (R * 16, 0) };
        let (heads, quants) = (w, w.add(nb * hb));
        let m4 = _mm256_set1_epi8(0x0F);
        let m10 = _mm256_set1_epi8(0x10);
        let ones = _mm256_set1_epi16(1);
        let group = if T == 1 { 8 } else { LANES_GROUP };
        let mut lanes = [[_mm256_setzero_ps(); 8]; T];
        // lanes in groups, each group's accumulators live in registers through all blocks
        for g in (0..8).step_by(group) {
            let mut acc = [[_mm256_setzero_ps(); 8]; T];
            for b in 0..nb {
                let dw = scales8(heads.add(b * hb), h);
                let q = quants.add(b * qb);
                if h == 0 && g == 0 {
                    prefetch_ahead(q, qb);
                }
                let qh = if Q5 { slot(q, 0, h) } else { _mm256_setzero_si256() };
                let (ys, d) = q8_0s_rows::<T>(a, as_, b, dw);
                for kk in 0..group {
                    let k = g + kk;
                    let nib =
                        if k < 4 { slot(q, first + k, h) } else { _mm256_srli_epi16::<4>(slot(q, first + k - 4, h)) };
                    let mut v = _mm256_and_si256(nib, m4);
                    if Q5 {
                        // bit k of each byte of qh → 0x10
                        let hb = match k {
                            0 => _mm256_slli_epi32::<4>(qh),
                            1 => _mm256_slli_epi32::<3>(qh),
                            2 => _mm256_slli_epi32::<2>(qh),
                            3 => _mm256_slli_epi32::<1>(qh),
                            4 => qh,
                            5 => _mm256_srli_epi32::<1>(qh),
                            6 => _mm256_srli_epi32::<2>(qh),
                            _ => _mm256_srli_epi32::<3>(qh),
                        };
                        v = _mm256_or_si256(v, _mm256_and_si256(hb, m10));
                    }
                    for t in 0..T {
                        let p = _mm256_maddubs_epi16(v, bcast4(ys[t].add(8 + 4 * k)));
                        let mut isum = _mm256_madd_epi16(p, ones);
                        if Q5 && !MIN {
                            let init = _mm256_set1_epi32((ys[t].add(40 + 4 * k) as *const i32).read_unaligned());
                            isum = _mm256_add_epi32(init, isum);
                        }
                        acc[t][kk] = _mm256_fmadd_ps(d[t], _mm256_cvtepi32_ps(isum), acc[t][kk]);
                    }
                }
            }
            for t in 0..T {
                lanes[t][g..g + group].copy_from_slice(&acc[t][..group]);
            }
        }
        if !MIN {
            store_lanes(&lanes, out, os);
            return;
        }
        // the minimums: one chain per row, apart from the lanes (header bytes only, in L1)
        let mut summs = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let m = scales8(heads.add(b * hb + R * 2), h);
            for t in 0..T {
                let s = (a.add(t * as_ + b * Q8_0S_BLOCK + 4) as *const f32).read_unaligned();
                summs[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(s), summs[t]);
            }
        }
        for t in 0..T {
            _mm256_storeu_ps(out.add(t * os), _mm256_add_ps(hsum8_lanes(&lanes[t]), summs[t]));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q8_0 in llama.cpp's order (`ggml_vec_dot_q8_0_q8_0` and tinyBLAS_Q0_AVX alike): as
/// `gemm_lanes`, the weights turned back into signed bytes and multiplied as |x|·(±y), as ggml's AVX2
/// dot does (`kernels::ggml_x86::q8_0_lanes`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q8_0<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (scales, quants) = (w, w.add(nb * R * 2));
        let bias = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales8(scales.add(b * R * 2), h);
            let q = quants.add(b * R * 32);
            if h == 0 {
                prefetch_ahead(q, R * 32);
            }
            let (ys, d) = q8_0s_rows::<T>(a, as_, b, dw);
            for k in 0..8 {
                let x = _mm256_xor_si256(slot(q, k, h), bias); // back to signed
                let ax = _mm256_abs_epi8(x);
                for t in 0..T {
                    let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(bcast4(ys[t].add(8 + 4 * k)), x));
                    let isum = _mm256_madd_epi16(p, ones);
                    acc[t][k] = _mm256_fmadd_ps(d[t], _mm256_cvtepi32_ps(isum), acc[t][k]);
                }
            }
        }
        store_lanes(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q4_K in llama.cpp's orders (its x86 build repacks Q4_K to 8×8 interleaved rows). Scale sums and
/// min sums go to two float accumulators, subtracted at the end, each update
/// `acc = fma(f32(isum), d_w·d_a, acc)`:
///   `G4 = false` (`ggml_gemv_q4_K_8x8_q8_K`: generation, and prompt tokens after the last full
///   group of 4): one update per super-block;
///   `G4 = true` (`ggml_gemm_q4_K_8x8_q8_K`, prompt tokens in groups of 4): one update per pair of
///   32-element sub-blocks (2p, 2p+1).
/// (`kernels::ggml_x86::q4_k_gemv`, `q4_k_gemm4`.)
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q4_k<const T: usize, const G4: bool>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        let mut accm = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let d = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 140);
            let k4 = K4Scales::load(q, h);
            let mut iacc = [_mm256_setzero_si256(); T];
            let mut imin = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                if h == 0 {
                    prefetch_ahead(q.add(R * 140 / 8 * j), R * 140 / 8);
                }
                let (sc, mj) = (k4.scale(j), k4.min(j));
                for t in 0..T {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    imin[t] = _mm256_add_epi32(imin[t], _mm256_mullo_epi32(mj, _mm256_set1_epi32(s)));
                    let y = y.add(32 * j);
                    let mut i = _mm256_setzero_si256();
                    for k in 0..4 {
                        let v = slot(q, 3 + 4 * j + k, h);
                        i = dp(i, _mm256_and_si256(v, m4), bcast4(y.add(8 * k)));
                        i = dp(i, _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4), bcast4(y.add(8 * k + 4)));
                    }
                    iacc[t] = _mm256_add_epi32(iacc[t], _mm256_mullo_epi32(i, sc));
                }
                if !G4 && j < 7 || G4 && j % 2 == 0 {
                    continue;
                }
                for t in 0..T {
                    let dy = _mm256_set1_ps(q8k_block(a.add(t * as_ + b * Q8_K_BLOCK)).0);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[t]), _mm256_mul_ps(d, dy), acc[t]);
                    accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin[t]), _mm256_mul_ps(dmin, dy), accm[t]);
                    iacc[t] = _mm256_setzero_si256();
                    imin[t] = _mm256_setzero_si256();
                }
            }
        }
        for t in 0..T {
            _mm256_storeu_ps(out.add(t * os), _mm256_sub_ps(acc[t], accm[t]));
        }
    }
}

/// The 12 scale bytes of the 8 rows of half `h` of a Q4_K/Q5_K R16 block (slots 0..3) as three
/// u32 lanes per row, from which `scale(j)` / `min(j)` take ggml's `get_scale_min_k4` per row.
#[derive(Clone, Copy)]
struct K4Scales(__m256i, __m256i, __m256i);

impl K4Scales {
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2; slots 0..3 at `q` must be readable.
    unsafe fn load(q: *const u8, h: usize) -> Self {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { K4Scales(slot(q, 0, h), slot(q, 1, h), slot(q, 2, h)) }
    }

    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2 (register-only).
    unsafe fn field(v: __m256i, sh: i32, mask: i32) -> __m256i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe { _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(sh)), _mm256_set1_epi32(mask)) }
    }

    /// Scale of sub-block `j` (0..8), one i32 lane per row.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2 (register-only).
    unsafe fn scale(self, j: usize) -> __m256i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe {
            if j < 4 {
                Self::field(self.0, 8 * j as i32, 63)
            } else {
                let i = 8 * (j as i32 - 4);
                _mm256_or_si256(Self::field(self.2, i, 15), Self::field(self.0, i + 2, 0x30))
            }
        }
    }

    /// Minimum of sub-block `j` (0..8), one i32 lane per row.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2 (register-only).
    unsafe fn min(self, j: usize) -> __m256i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe {
            if j < 4 {
                Self::field(self.1, 8 * j as i32, 63)
            } else {
                let i = 8 * (j as i32 - 4);
                _mm256_or_si256(Self::field(self.2, i + 4, 15), Self::field(self.1, i + 2, 0x30))
            }
        }
    }
}

/// Q2_K scale byte `j` (0..16) of the 8 rows of half `h` (slots 0..4 at `q`): (scale, min) as i32
/// lanes.
#[inline(always)]
///
/// # Safety
/// The CPU must support AVX2; slots 0..4 at `q` must be readable.
unsafe fn q2k_scale_min(q: *const u8, j: usize, h: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let v = slot(q, j / 4, h);
        let sh = 8 * (j % 4) as i32;
        (K4Scales::field(v, sh, 15), K4Scales::field(v, sh + 4, 15))
    }
}

/// Q2_K lane `l` (0..8) of group `g` (0..8) of the 8 rows of half `h` against the lane's 4
/// activation bytes at `y`: the i16 pair sums of q·y (q unsigned 0..3).
#[inline(always)]
///
/// # Safety
/// The CPU must support AVX2; the R16 Q2_K block at `q` and `y..y+4` must be readable.
unsafe fn q2k_pairs(q: *const u8, g: usize, l: usize, h: usize, y: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (c, k) = (g / 4, g % 4);
        let v = _mm256_srl_epi16(slot(q, 4 + 8 * c + l, h), _mm_cvtsi32_si128(2 * k as i32));
        _mm256_maddubs_epi16(_mm256_and_si256(v, _mm256_set1_epi8(3)), bcast4(y))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q2_K in the order of llama.cpp's x86 `ggml_vec_dot_q2_K_q8_K` (what its AVX2 build runs under 8
/// tokens; its AVX-512 build repacks Q2_K in another order, not reproduced yet): 8 float lanes per
/// row; per super-block first `lane = fma(−d_a·dmin_w, f32(min_2l·bsum_2l + min_2l+1·bsum_2l+1),
/// lane)`, then `lane = fma(d_a·d_w, f32(Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]), lane)`;
/// `hsum_float_8` (`kernels::ggml_x86::q2_k_lanes`). One token per pass.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q2_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 80);
            for t in 0..T {
                let (dy, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let dm = _mm256_mul_ps(_mm256_set1_ps(-dy), dmin);
                for (l, al) in acc[t].iter_mut().enumerate() {
                    let (m0, m1) = (q2k_scale_min(q, 2 * l, h).1, q2k_scale_min(q, 2 * l + 1, h).1);
                    let im = _mm256_add_epi32(
                        _mm256_mullo_epi32(m0, _mm256_set1_epi32(*bs.add(2 * l) as i32)),
                        _mm256_mullo_epi32(m1, _mm256_set1_epi32(*bs.add(2 * l + 1) as i32)),
                    );
                    *al = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(im), *al);
                }
                let mut ia = [_mm256_setzero_si256(); 8];
                for g in 0..8 {
                    if t == 0 && h == 0 {
                        prefetch_ahead(q.add(R * 80 / 8 * g), R * 80 / 8);
                    }
                    // lanes 0..4 are sub-block 2g, lanes 4..8 sub-block 2g+1
                    let sc = [dup16(q2k_scale_min(q, 2 * g, h).0), dup16(q2k_scale_min(q, 2 * g + 1, h).0)];
                    for (l, il) in ia.iter_mut().enumerate() {
                        let p = q2k_pairs(q, g, l, h, y.add(32 * g + 4 * l));
                        *il = _mm256_add_epi32(*il, pairs_times(p, sc[l / 4]));
                    }
                }
                let d = _mm256_mul_ps(_mm256_set1_ps(dy), dw);
                for (al, il) in acc[t].iter_mut().zip(&ia) {
                    *al = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*il), *al);
                }
            }
        }
        store_lanes(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q2_K for batches of 8 or more tokens, in the order of llama.cpp's x86 "tiled" K-quant GEMM
/// (its AVX2 build): per super-block `s1 = Σ sc·q·y`, `s2 = Σ min·bsums`,
/// `r = fnmadd(dmin_w, f32(s2), f32(s1)·d_w)`, `acc = fma(r, d_a, acc)`
/// (`kernels::ggml_x86::q2_k_tiled`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q2_k_tiled<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 80);
            let mut iacc = [_mm256_setzero_si256(); T];
            let mut imin = [_mm256_setzero_si256(); T];
            for g in 0..8 {
                for half in 0..2 {
                    let (sc, mn) = q2k_scale_min(q, 2 * g + half, h);
                    let sc = dup16(sc);
                    for t in 0..T {
                        let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                        let s = *bs.add(2 * g + half) as i32;
                        imin[t] = _mm256_add_epi32(imin[t], _mm256_mullo_epi32(mn, _mm256_set1_epi32(s)));
                        // four lanes of one sub-block: |Σ of their pairs| ≤ 4·2·3·128 fits in i16
                        let mut p = _mm256_setzero_si256();
                        for l in 4 * half..4 * half + 4 {
                            p = _mm256_add_epi16(p, q2k_pairs(q, g, l, h, y.add(32 * g + 4 * l)));
                        }
                        iacc[t] = _mm256_add_epi32(iacc[t], pairs_times(p, sc));
                    }
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let r =
                    _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(imin[t]), _mm256_mul_ps(_mm256_cvtepi32_ps(iacc[t]), dw));
                acc[t] = _mm256_fmadd_ps(r, _mm256_set1_ps(dy), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}

/// The 12 scale bytes of a Q3_K R16 block (slots 0..3) of the 8 rows of half `h`, as three u32
/// lanes per row; `scale(k)` is ggml's 6-bit scale k (0..16) minus 32 per row (`q3k_scale`).
#[derive(Clone, Copy)]
struct Q3Scales(__m256i, __m256i, __m256i);

impl Q3Scales {
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2; slots 0..3 at `q` must be readable.
    unsafe fn load(q: *const u8, h: usize) -> Self {
        // SAFETY: the caller upholds this function's `# Safety` contract.
        unsafe { Q3Scales(slot(q, 0, h), slot(q, 1, h), slot(q, 2, h)) }
    }

    /// Scale k (0..16) − 32 of each row, as i32 lanes.
    #[inline(always)]
    /// # Safety
    /// The CPU must support AVX2 (register-only).
    unsafe fn scale(self, k: usize) -> __m256i {
        // SAFETY: register-only intrinsics of the caller's target features.
        unsafe {
            // low nibble: byte k (k < 8) or the high half of byte k − 8; top 2 bits: byte 8 + k%4
            let lo_word = if k % 8 < 4 { self.0 } else { self.1 };
            let lo = K4Scales::field(lo_word, 8 * (k % 4) as i32 + 4 * (k / 8) as i32, 15);
            let hi = K4Scales::field(self.2, 8 * (k % 4) as i32 + 2 * (k / 4) as i32, 3);
            _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32::<4>(hi)), _mm256_set1_epi32(32))
        }
    }
}

/// Q3_K lane `l` (0..8) of group `g` (0..8, 32 elements) of the 8 rows of half `h` against the
/// activations `y` of that lane (4 bytes): the i16 pair sums of `(lo − 4·¬hbit)·y` (exact: each
/// |pair| ≤ 2·4·128).
#[inline(always)]
///
/// # Safety
/// The CPU must support AVX2; the R16 Q3_K block at `q` and `y..y+4` must be readable.
unsafe fn q3k_pairs(q: *const u8, g: usize, l: usize, h: usize, y: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (c, k) = (g / 4, g % 4);
        let qs = _mm256_srl_epi16(slot(q, 11 + 8 * c + l, h), _mm_cvtsi32_si128(2 * k as i32));
        let lo = _mm256_and_si256(qs, _mm256_set1_epi8(3));
        let bit = _mm256_set1_epi8((1u8 << g) as i8);
        let clear = _mm256_cmpeq_epi8(_mm256_and_si256(slot(q, 3 + l, h), bit), _mm256_setzero_si256());
        let hneg = _mm256_and_si256(clear, _mm256_set1_epi8(4));
        let yv = bcast4(y);
        _mm256_sub_epi16(_mm256_maddubs_epi16(lo, yv), _mm256_maddubs_epi16(hneg, yv))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q3_K in the order of llama.cpp's x86 `ggml_vec_dot_q3_K_q8_K` (Q3_K is not repacked there;
/// batches under 8 tokens take it, larger ones `gemm_q3_k_tiled`): 8 float lanes per row, lane l
/// holding per super-block the integer `Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]`, folded as
/// `lane = fma(d_a·d_w, f32(lane), lane)`, then `hsum_float_8` (`kernels::ggml_x86::q3_k_lanes`).
/// One token per pass, as Q6_K.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q3_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 108);
            let s3 = Q3Scales::load(q, h);
            for t in 0..T {
                let (dy, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let mut ia = [_mm256_setzero_si256(); 8];
                for g in 0..8 {
                    if t == 0 && h == 0 {
                        prefetch_ahead(q.add(R * 108 / 8 * g), R * 108 / 8);
                    }
                    // lanes 0..4 are sub-block 2g, lanes 4..8 sub-block 2g+1
                    let sc = [dup16(s3.scale(2 * g)), dup16(s3.scale(2 * g + 1))];
                    for (l, il) in ia.iter_mut().enumerate() {
                        let p = q3k_pairs(q, g, l, h, y.add(32 * g + 4 * l));
                        *il = _mm256_add_epi32(*il, pairs_times(p, sc[l / 4]));
                    }
                }
                let d = _mm256_mul_ps(_mm256_set1_ps(dy), dw);
                for (al, il) in acc[t].iter_mut().zip(&ia) {
                    *al = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*il), *al);
                }
            }
        }
        store_lanes(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q3_K for batches of 8 or more tokens, in the order of llama.cpp's x86 "tiled" K-quant GEMM:
/// per super-block one exact integer sum, `acc = fma(f32(isum)·d_w, d_a, acc)` with the first
/// product rounded (`kernels::ggml_x86::q3_k_tiled`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q3_k_tiled<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 108);
            let s3 = Q3Scales::load(q, h);
            let mut iacc = [_mm256_setzero_si256(); T];
            for g in 0..8 {
                let sc = [dup16(s3.scale(2 * g)), dup16(s3.scale(2 * g + 1))];
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    for half in 0..2 {
                        // four lanes of one sub-block: their i16 pair sums add without overflow
                        // (|Σ| ≤ 4·2·4·128), then one vpmaddwd by the sub-block's scale
                        let mut p = _mm256_setzero_si256();
                        for l in 4 * half..4 * half + 4 {
                            p = _mm256_add_epi16(p, q3k_pairs(q, g, l, h, y.add(32 * g + 4 * l)));
                        }
                        *ia = _mm256_add_epi32(*ia, pairs_times(p, sc[half]));
                    }
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(iacc[t]), dw), _mm256_set1_ps(dy), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}

/// Q5_K lane `l` (0..8) of sub-block `j` of the 8 rows of half `h`: the unsigned 5-bit values of
/// elements 32j+4l..32j+4l+4 (nibble slot 3+4j+l/2, fifth bits from bit j of slot 35+l).
#[inline(always)]
///
/// # Safety
/// The CPU must support AVX2; the R16 Q5_K block at `q` must be readable.
unsafe fn q5k_lane(q: *const u8, j: usize, l: usize, h: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let nib = slot(q, 3 + 4 * j + l / 2, h);
        let nib = if l.is_multiple_of(2) { nib } else { _mm256_srli_epi16::<4>(nib) };
        let bit = _mm256_set1_epi8((1u8 << j) as i8);
        let fifth = _mm256_cmpeq_epi8(_mm256_and_si256(slot(q, 35 + l, h), bit), bit);
        _mm256_or_si256(_mm256_and_si256(nib, _mm256_set1_epi8(0x0F)), _mm256_and_si256(fifth, _mm256_set1_epi8(0x10)))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q5_K in the order of llama.cpp's x86 `ggml_vec_dot_q5_K_q8_K` (Q5_K is not repacked there;
/// batches under 8 tokens take it, larger ones `gemm_q5_k_tiled`): 8 float lanes per row, lane l
/// holding per super-block the integer `Σ_j sc_j · Σ_{e = 32j+4l..32j+4l+4} q[e]·y[e]`, folded as
/// `lane = fma(d_a·d_w, f32(lane), lane)`; the minimums apart,
/// `summs = fma(−d_a·dmin_w, f32(Σ min·bsums), summs)`; `hsum_float_8(lanes) + summs`
/// (`kernels::ggml_x86::q5_k_lanes`). One token per pass, as Q6_K.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q5_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        let mut summs = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 172);
            let k4 = K4Scales::load(q, h);
            for t in 0..T {
                let (dy, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let mut ia = [_mm256_setzero_si256(); 8];
                let mut imin = _mm256_setzero_si256();
                for j in 0..8 {
                    if t == 0 && h == 0 {
                        prefetch_ahead(q.add(R * 172 / 8 * j), R * 172 / 8);
                    }
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    imin = _mm256_add_epi32(imin, _mm256_mullo_epi32(k4.min(j), _mm256_set1_epi32(s)));
                    let sc = dup16(k4.scale(j));
                    for (l, il) in ia.iter_mut().enumerate() {
                        // pair sums ≤ 2·31·127 and scales ≤ 63: vpmaddwd is exact
                        let p = _mm256_maddubs_epi16(q5k_lane(q, j, l, h), bcast4(y.add(32 * j + 4 * l)));
                        *il = _mm256_add_epi32(*il, pairs_times(p, sc));
                    }
                }
                let dy = _mm256_set1_ps(dy);
                let d = _mm256_mul_ps(dy, dw);
                for (al, il) in acc[t].iter_mut().zip(&ia) {
                    *al = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*il), *al);
                }
                summs[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dy, dmin), _mm256_cvtepi32_ps(imin), summs[t]);
            }
        }
        for t in 0..T {
            _mm256_storeu_ps(out.add(t * os), _mm256_add_ps(hsum8_lanes(&acc[t]), summs[t]));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q5_K for batches of 8 or more tokens, in the order of llama.cpp's x86 "tiled" K-quant GEMM
/// (`tiled_run_microtile_avx2` / `_vnni`): per super-block the exact integers `s1 = Σ sc·q·y` and
/// `s2 = Σ min·bsums`, `r = fnmadd(dmin_w, f32(s2), f32(s1)·d_w)`, `acc = fma(r, d_a, acc)`
/// (`kernels::ggml_x86::q5_k_tiled`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q5_k_tiled<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 4));
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 172);
            let k4 = K4Scales::load(q, h);
            let mut iacc = [_mm256_setzero_si256(); T];
            let mut imin = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                let (sc, mj) = (dup16(k4.scale(j)), k4.min(j));
                let v: [__m256i; 8] = std::array::from_fn(|l| q5k_lane(q, j, l, h));
                for t in 0..T {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    imin[t] = _mm256_add_epi32(imin[t], _mm256_mullo_epi32(mj, _mm256_set1_epi32(s)));
                    let y = y.add(32 * j);
                    // two lanes' pairs per vpmaddwd: |pair sum| ≤ 2·31·127, so their i16 sum fits
                    let mut i = _mm256_setzero_si256();
                    for l in (0..8).step_by(2) {
                        let p = _mm256_add_epi16(
                            _mm256_maddubs_epi16(v[l], bcast4(y.add(4 * l))),
                            _mm256_maddubs_epi16(v[l + 1], bcast4(y.add(4 * l + 4))),
                        );
                        i = _mm256_add_epi32(i, pairs_times(p, sc));
                    }
                    iacc[t] = _mm256_add_epi32(iacc[t], i);
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let r =
                    _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(imin[t]), _mm256_mul_ps(_mm256_cvtepi32_ps(iacc[t]), dw));
                acc[t] = _mm256_fmadd_ps(r, _mm256_set1_ps(dy), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}

/// The four vectors of unsigned 6-bit values of Q6_K sub-block `j` for half `h`: vector k holds
/// elements 16j + 4k .. 16j + 4k + 4 of the 8 rows (R16 ql slots 2j, 2j+1 and qh slot j).
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; the slots read must be readable.
unsafe fn q6_values(ql: *const u8, qh: *const u8, j: usize, h: usize) -> [__m256i; 4] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m4, m30) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        let hv = slot(qh, j, h);
        let (a0, a1) = (slot(ql, 2 * j, h), slot(ql, 2 * j + 1, h));
        let bits = |v: __m256i, hb: __m256i| _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hb, m30));
        [
            bits(a0, _mm256_slli_epi16::<4>(hv)),
            bits(_mm256_srli_epi16::<4>(a0), _mm256_slli_epi16::<2>(hv)),
            bits(a1, hv),
            bits(_mm256_srli_epi16::<4>(a1), _mm256_srli_epi16::<2>(hv)),
        ]
    }
}

/// Sub-block scale `j` of the 8 rows of half `h` as sign-extended i32 lanes.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `q + 16j + 8h .. + 8` must be readable.
unsafe fn q6_scale(q: *const u8, j: usize, h: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(16 * j + H * h) as *const __m128i)) }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q6_K in the order of llama.cpp's x86 `ggml_vec_dot_q6_K_q8_K` (Q6_K is not repacked there;
/// batches under 8 tokens take it, larger ones `gemm_q6_k_tiled`): 8 float lanes per row, lane l
/// holding, per super-block, the integer
///   Σ_{e : (e mod 32) / 4 = l} sc[e/16]·q[e]·y[e]  −  32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])
/// folded as `lane = fma(d_a·d_w, f32(lane), lane)`, then `hsum_float_8`
/// (`kernels::ggml_x86::q6_k_lanes`). Elements 16j+4k..16j+4k+4 belong to lane 4(j mod 2)+k.
/// One token per pass: its 8 integer lane sums stay in registers through a super-block.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for b in 0..nb {
            let dw = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 208);
            let (ql, qh) = (q.add(R * 16), q.add(R * 16 + R * 128));
            for t in 0..T {
                let (dy, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                // lane l starts at −32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1])
                let mut ia: [__m256i; 8] = std::array::from_fn(|l| {
                    let s0 = _mm256_mullo_epi32(q6_scale(q, 2 * l, h), _mm256_set1_epi32(-(*bs.add(2 * l) as i32)));
                    let s1 =
                        _mm256_mullo_epi32(q6_scale(q, 2 * l + 1, h), _mm256_set1_epi32(-(*bs.add(2 * l + 1) as i32)));
                    _mm256_slli_epi32::<5>(_mm256_add_epi32(s0, s1))
                });
                for j in 0..16 {
                    if t == 0 && h == 0 {
                        prefetch_ahead(q.add(R * 208 / 16 * j), R * 208 / 16);
                    }
                    let sc = dup16(q6_scale(q, j, h));
                    let v = q6_values(ql, qh, j, h);
                    let l0 = 4 * (j % 2);
                    for (k, vk) in v.iter().enumerate() {
                        // |Σ of 2 products| ≤ 2·63·128 fits in i16, so vpmaddwd multiplies the
                        // pairs by the scale exactly
                        let p = _mm256_maddubs_epi16(*vk, bcast4(y.add(16 * j + 4 * k)));
                        ia[l0 + k] = _mm256_add_epi32(ia[l0 + k], pairs_times(p, sc));
                    }
                }
                let d = _mm256_mul_ps(_mm256_set1_ps(dy), dw);
                for (al, il) in acc[t].iter_mut().zip(&ia) {
                    *al = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*il), *al);
                }
            }
        }
        store_lanes(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q6_K for batches of 8 or more tokens, in the order of llama.cpp's x86 "tiled" K-quant GEMM
/// (`tiled_run_microtile_avx2`): per super-block one exact integer sum, then
/// `acc = fma(f32(isum)·d_w, d_a, acc)` with the first product rounded
/// (`kernels::ggml_x86::q6_k_tiled`).
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `T` tokens.
unsafe fn gemm_q6_k_tiled<const T: usize>(c: R16Call) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let R16Call { nb, w, part: h, a, as_, out, os } = c;
        let (heads, quants) = (w, w.add(nb * R * 2));
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let d = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 208);
            let (ql, qh) = (q.add(R * 16), q.add(R * 16 + R * 128));
            let mut iacc = [_mm256_setzero_si256(); T];
            for j in 0..16 {
                let sc = dup16(q6_scale(q, j, h));
                let v = q6_values(ql, qh, j, h);
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(16 * j);
                    // (q − 32)·y = q·y − 32·Σy: the sub-block's pairs, scaled, minus 32·sc·bsum_j
                    let mut p = _mm256_maddubs_epi16(v[0], bcast4(y));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(v[1], bcast4(y.add(4))));
                    let mut p2 = _mm256_maddubs_epi16(v[2], bcast4(y.add(8)));
                    p2 = _mm256_add_epi16(p2, _mm256_maddubs_epi16(v[3], bcast4(y.add(12))));
                    let off = _mm256_set1_epi32(-32 * *bs.add(j) as i32);
                    let s = _mm256_add_epi32(_mm256_madd_epi16(p, sc), _mm256_madd_epi16(p2, sc));
                    *ia = _mm256_add_epi32(*ia, _mm256_add_epi32(s, _mm256_mullo_epi32(off, q6_scale(q, j, h))));
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(iacc[t]), d), _mm256_set1_ps(dy), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}
