//! AVX2 kernels over R16-repacked weights (layout in `quant::repack`), for x86 CPUs without AVX-512.
//!
//! A 64-byte slot is two ymm: rows 0..8 in bytes 0..32, rows 8..16 in bytes 32..64. With only 16
//! ymm registers, each call runs the two 8-row halves one after the other, and at most `PASS`
//! tokens per pass. `vpdpbusd` is emulated as `vpmaddubsw` (u8·i8 pairs → i16) + `vpmaddwd` (→ i32):
//! every pair sum stays below 2·63·127 = 16002 for the 4-, 5- and 6-bit formats, so nothing
//! saturates; Q8_0 (stored XOR 0x80) is turned back into signed bytes and multiplied as |x|·(±y),
//! as ggml's AVX2 Q8_0 dot does.
//!
//! Numerics: integer sums exact; float updates as in the AVX-512 kernels.

// Index loops over tokens and rows mirror the register arrays they fill (`acc[t]`, `acc[r][t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::kernels::shared::{q8_0s_block, q8k_block};
use crate::kernels::types::GemmR16Fn;
use crate::quant::repack::{Q8_0S_BLOCK, Q8_K_BLOCK, R};
use crate::quant::GgmlType;

/// Tokens per pass (accumulator registers).
const PASS: usize = 4;
/// Rows per half.
const H: usize = 8;

gemm_split_entry!(gemm_q4_0_entry, gemm_q4_0, GgmlType::Q4_0, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q5_0_entry, gemm_q5_0, GgmlType::Q5_0, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q8_0_entry, gemm_q8_0, GgmlType::Q8_0, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q4_k_entry, gemm_q4_k, GgmlType::Q4_K, H, PASS, "avx2,fma,f16c");
gemm_split_entry!(gemm_q6_k_entry, gemm_q6_k, GgmlType::Q6_K, H, PASS, "avx2,fma,f16c");

/// The AVX2 R16 kernels: (weight type, kernel).
pub(super) const GEMMS: [(GgmlType, GemmR16Fn); 5] = [
    (GgmlType::Q4_0, gemm_q4_0_entry),
    (GgmlType::Q5_0, gemm_q5_0_entry),
    (GgmlType::Q8_0, gemm_q8_0_entry),
    (GgmlType::Q4_K, gemm_q4_k_entry),
    (GgmlType::Q6_K, gemm_q6_k_entry),
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
/// The CPU must support this function's target features; `w` must point to a readable R16 group of
/// `nb` blocks (`quant::repack`), `a` to `T` readable activation rows of `nb` blocks (Q8_0S or
/// Q8_K), `as_` bytes apart, and `out` to `T` writable rows of the 16 (a split kernel: its part's)
/// row results, `os` floats apart (`kernels::shared::gemm_r16_check` bounds them).
unsafe fn gemm_q4_0<const T: usize>(
    nb: usize,
    w: *const u8,
    h: usize,
    a: *const u8,
    as_: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (scales, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(scales.add(b * R * 2), h);
            let q = quants.add(b * R * 16);
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
/// # Safety
/// The CPU must support this function's target features; `w` must point to a readable R16 group of
/// `nb` blocks (`quant::repack`), `a` to `T` readable activation rows of `nb` blocks (Q8_0S or
/// Q8_K), `as_` bytes apart, and `out` to `T` writable rows of the 16 (a split kernel: its part's)
/// row results, `os` floats apart (`kernels::shared::gemm_r16_check` bounds them).
unsafe fn gemm_q5_0<const T: usize>(
    nb: usize,
    w: *const u8,
    h: usize,
    a: *const u8,
    as_: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (scales, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm256_set1_epi8(0x0F);
        let m10 = _mm256_set1_epi8(0x10);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(scales.add(b * R * 2), h);
            let q = quants.add(b * R * 20);
            let qh = slot(q, 0, h);
            let hb_lo = [
                _mm256_slli_epi32(qh, 4),
                _mm256_slli_epi32(qh, 3),
                _mm256_slli_epi32(qh, 2),
                _mm256_slli_epi32(qh, 1),
            ];
            let hb_hi = [qh, _mm256_srli_epi32(qh, 1), _mm256_srli_epi32(qh, 2), _mm256_srli_epi32(qh, 3)];
            let mut lo = [_mm256_setzero_si256(); 4];
            let mut hi = [_mm256_setzero_si256(); 4];
            for s in 0..4 {
                let v = slot(q, 1 + s, h);
                lo[s] = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hb_lo[s], m10));
                hi[s] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_and_si256(hb_hi[s], m10));
            }
            for t in 0..T {
                let (da, sum, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = _mm256_set1_epi32(-16 * sum);
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
/// # Safety
/// The CPU must support this function's target features; `w` must point to a readable R16 group of
/// `nb` blocks (`quant::repack`), `a` to `T` readable activation rows of `nb` blocks (Q8_0S or
/// Q8_K), `as_` bytes apart, and `out` to `T` writable rows of the 16 (a split kernel: its part's)
/// row results, `os` floats apart (`kernels::shared::gemm_r16_check` bounds them).
unsafe fn gemm_q8_0<const T: usize>(
    nb: usize,
    w: *const u8,
    h: usize,
    a: *const u8,
    as_: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (scales, quants) = (w, w.add(nb * R * 2));
        let bias = _mm256_set1_epi8(-128);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let dw = scales8(scales.add(b * R * 2), h);
            let q = quants.add(b * R * 32);
            for t in 0..T {
                let (da, _, y) = q8_0s_block(a.add(t * as_ + b * Q8_0S_BLOCK));
                let mut i = _mm256_setzero_si256();
                for s in 0..8 {
                    let x = _mm256_xor_si256(slot(q, s, h), bias); // back to signed
                    i = dp(i, _mm256_abs_epi8(x), _mm256_sign_epi8(bcast4(y.add(4 * s)), x));
                }
                acc[t] = fold(acc[t], i, dw, da);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` must point to a readable R16 group of
/// `nb` blocks (`quant::repack`), `a` to `T` readable activation rows of `nb` blocks (Q8_0S or
/// Q8_K), `as_` bytes apart, and `out` to `T` writable rows of the 16 (a split kernel: its part's)
/// row results, `os` floats apart (`kernels::shared::gemm_r16_check` bounds them).
unsafe fn gemm_q4_k<const T: usize>(
    nb: usize,
    w: *const u8,
    h: usize,
    a: *const u8,
    as_: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (w, w.add(nb * R * 4));
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let d = scales8(heads.add(b * R * 4), h);
            let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
            let q = quants.add(b * R * 140);
            // 12 scale bytes per row as three u32 lanes → (sc_j, m_j) per lane (ggml's get_scale_min_k4)
            let (w0, w1, w2) = (slot(q, 0, h), slot(q, 1, h), slot(q, 2, h));
            let field = |v: __m256i, sh: i32, mask: i32| {
                _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(sh)), _mm256_set1_epi32(mask))
            };
            let scale = |j: usize| -> __m256i {
                if j < 4 {
                    field(w0, 8 * j as i32, 63)
                } else {
                    let i = 8 * (j as i32 - 4);
                    _mm256_or_si256(field(w2, i, 15), field(w0, i + 2, 0x30))
                }
            };
            let min = |j: usize| -> __m256i {
                if j < 4 {
                    field(w1, 8 * j as i32, 63)
                } else {
                    let i = 8 * (j as i32 - 4);
                    _mm256_or_si256(field(w2, i + 4, 15), field(w1, i + 2, 0x30))
                }
            };
            let mut imin = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                let mj = min(j);
                for (t, im) in imin.iter_mut().enumerate() {
                    let (_, _, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let s = *bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32;
                    *im = _mm256_add_epi32(*im, _mm256_mullo_epi32(mj, _mm256_set1_epi32(s)));
                }
            }
            let mut iacc = [_mm256_setzero_si256(); T];
            for j in 0..8 {
                let sc = scale(j);
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(32 * j);
                    let mut i = _mm256_setzero_si256();
                    for k in 0..4 {
                        let v = slot(q, 3 + 4 * j + k, h);
                        i = dp(i, _mm256_and_si256(v, m4), bcast4(y.add(8 * k)));
                        i = dp(i, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), bcast4(y.add(8 * k + 4)));
                    }
                    *ia = _mm256_add_epi32(*ia, _mm256_mullo_epi32(i, sc));
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                let dyv = _mm256_set1_ps(dy);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[t]), _mm256_mul_ps(d, dyv), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin[t]), _mm256_mul_ps(dmin, dyv), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` must point to a readable R16 group of
/// `nb` blocks (`quant::repack`), `a` to `T` readable activation rows of `nb` blocks (Q8_0S or
/// Q8_K), `as_` bytes apart, and `out` to `T` writable rows of the 16 (a split kernel: its part's)
/// row results, `os` floats apart (`kernels::shared::gemm_r16_check` bounds them).
unsafe fn gemm_q6_k<const T: usize>(
    nb: usize,
    w: *const u8,
    h: usize,
    a: *const u8,
    as_: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (w, w.add(nb * R * 2));
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let d = scales8(heads.add(b * R * 2), h);
            let q = quants.add(b * R * 208);
            let (ql, qh) = (q.add(R * 16), q.add(R * 16 + R * 128));
            let mut iacc = [_mm256_setzero_si256(); T];
            for j in 0..16 {
                let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(16 * j + H * h) as *const __m128i));
                let hv = slot(qh, j, h);
                let (a0, a1) = (slot(ql, 2 * j, h), slot(ql, 2 * j + 1, h));
                let bits =
                    |v: __m256i, hb: __m256i| _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hb, m30));
                let v = [
                    bits(a0, _mm256_slli_epi16(hv, 4)),
                    bits(_mm256_srli_epi16(a0, 4), _mm256_slli_epi16(hv, 2)),
                    bits(a1, hv),
                    bits(_mm256_srli_epi16(a1, 4), _mm256_srli_epi16(hv, 2)),
                ];
                for (t, ia) in iacc.iter_mut().enumerate() {
                    let (_, y, bs) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                    let y = y.add(16 * j);
                    let mut i = _mm256_set1_epi32(-32 * *bs.add(j) as i32);
                    for (k, vk) in v.iter().enumerate() {
                        i = dp(i, *vk, bcast4(y.add(4 * k)));
                    }
                    *ia = _mm256_add_epi32(*ia, _mm256_mullo_epi32(i, sc));
                }
            }
            for t in 0..T {
                let (dy, _, _) = q8k_block(a.add(t * as_ + b * Q8_K_BLOCK));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[t]), _mm256_mul_ps(d, _mm256_set1_ps(dy)), acc[t]);
            }
        }
        store(&acc, out, os);
    }
}
