//! AVX2 activation quantizers (Q8_0, Q8_1, Q8_K) and the F16 converter, byte for byte the scalar
//! ones (`kernels::scalar`).

use std::arch::x86_64::*;

use crate::kernels::shared::{q8_scales, q8k_finish};
use crate::quant::QK_K;

from_float_entry!(quantize_q8_0_avx2_entry, quantize_q8_0_avx2, 32, 34, "avx2,fma,f16c");
from_float_entry!(quantize_q8_1_avx2_entry, quantize_q8_1_avx2, 32, 36, "avx2,fma,f16c");
from_float_entry!(quantize_q8_k_avx2_entry, quantize_q8_k_avx2, QK_K, 292, "avx2,fma,f16c");

pub(super) const FROM_FLOAT_Q8_0_AVX2: crate::kernels::types::FromFloatFn = quantize_q8_0_avx2_entry;
pub(super) const FROM_FLOAT_Q8_1_AVX2: crate::kernels::types::FromFloatFn = quantize_q8_1_avx2_entry;
pub(super) const FROM_FLOAT_Q8_K_AVX2: crate::kernels::types::FromFloatFn = quantize_q8_k_avx2_entry;
pub(super) const FROM_FLOAT_F16_AVX2: crate::kernels::types::FromFloatFn = convert_f16_avx2_entry;

fn convert_f16_avx2_entry(x: &[f32], out: &mut [u8]) {
    assert!(out.len() >= 2 * x.len(), "from_float: bad row length");
    // SAFETY: reachable only through the AVX2 table, handed out after detecting AVX2 and F16C;
    // the output length is checked above.
    unsafe { convert_f16_avx2(x, out) }
}

/// f32 → F16 (F16 weights' activations), round to nearest even as ggml's `GGML_CPU_FP32_TO_FP16`
/// and the scalar converter: 8 at a time, the tail through the scalar conversion.
#[target_feature(enable = "avx2,f16c")]
/// # Safety
/// The CPU must support this function's target features; `out` must hold `2 · x.len()` bytes.
unsafe fn convert_f16_avx2(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract; every load and store below
    // stays within x[..n] and out[..2n].
    unsafe {
        let n = x.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(2 * i) as *mut __m128i, h);
        }
        for i in n..x.len() {
            out[2 * i..2 * i + 2].copy_from_slice(&half::f16::from_f32(x[i]).to_le_bytes());
        }
    }
}

/// |v| with the sign bit cleared.
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

#[inline]
#[target_feature(enable = "avx2")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn hmax_ps(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// Four vectors of 8 integral floats in [-127, 127] → 32 bytes in element order.
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn pack_i8(r: [__m256; 4]) -> __m256i {
    let i = r.map(|v| _mm256_cvtps_epi32(v));
    let p01 = _mm256_packs_epi32(i[0], i[1]);
    let p23 = _mm256_packs_epi32(i[2], i[3]);
    let b = _mm256_packs_epi16(p01, p23);
    // packs work per 128-bit lane; restore element order.
    _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// One block of llama.cpp's runtime Q8_0/Q8_1 quantizer: `(d, the 32 quants in element order, Σq)`
/// (id = 127/amax, halves rounded to even).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+32` must be readable floats.
unsafe fn q8_block(p: *const f32) -> (f32, __m256i, i32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
        let (d, id) = q8_scales(hmax_ps(m));
        let idv = _mm256_set1_ps(id);
        let r = v.map(|vi| _mm256_round_ps(_mm256_mul_ps(vi, idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        // integral values ≤ 32·127 in magnitude: the float sums are exact
        let s = _mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        (d, pack_i8(r), s as i32)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `out` must hold the blocks of `x`
/// (`x.len()` a multiple of the block size; the table entry checks this).
unsafe fn quantize_q8_0_avx2(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
            let (d, q, _) = q8_block(xb.as_ptr());
            yb[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
            _mm256_storeu_si256(yb.as_mut_ptr().add(2) as *mut __m256i, q);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q8_1: as Q8_0, plus s = f16(d·Σq) with the unrounded d (llama.cpp's runtime quantize_row_q8_1).
///
/// # Safety
/// The CPU must support this function's target features; `out` must hold the blocks of `x`
/// (`x.len()` a multiple of the block size; the table entry checks this).
unsafe fn quantize_q8_1_avx2(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(36)) {
            let (d, q, sum) = q8_block(xb.as_ptr());
            yb[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
            yb[2..4].copy_from_slice(&half::f16::from_f32(sum as f32 * d).to_le_bytes());
            _mm256_storeu_si256(yb.as_mut_ptr().add(4) as *mut __m256i, q);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `out` must hold the blocks of `x`
/// (`x.len()` a multiple of the block size; the table entry checks this).
unsafe fn quantize_q8_k_avx2(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (xb, yb) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
            let p = xb.as_ptr();
            let mut m = _mm256_setzero_ps();
            for k in 0..QK_K / 8 {
                m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(p.add(8 * k))));
            }
            let amax = hmax_ps(m);
            if amax == 0.0 {
                yb.fill(0);
                continue;
            }
            // The reference keeps the sign of the FIRST element of largest magnitude.
            let max = *xb.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
            let iscale = -127.0 / max;
            let sv = _mm256_set1_ps(iscale);
            let lim = _mm256_set1_ps(127.0);
            for g in 0..QK_K / 32 {
                let v = [0, 1, 2, 3].map(|k| {
                    let r = _mm256_round_ps(
                        _mm256_mul_ps(_mm256_loadu_ps(p.add(32 * g + 8 * k)), sv),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                    );
                    _mm256_min_ps(r, lim)
                });
                _mm256_storeu_si256(yb.as_mut_ptr().add(4 + 32 * g) as *mut __m256i, pack_i8(v));
            }
            q8k_finish(yb, iscale);
        }
    }
}

pub(super) const TO_FLOAT_Q4_0_AVX2: crate::kernels::types::ToFloatFn = |x, y| dequantize_i8_blocks::<18>(x, y);
pub(super) const TO_FLOAT_Q8_0_AVX2: crate::kernels::types::ToFloatFn = |x, y| dequantize_i8_blocks::<34>(x, y);

/// Q4_0 (`BS` = 18) or Q8_0 (34) → f32, as a quantized V cache's rows in flash attention need:
/// `q · d`, one rounding per element as the scalar dequantizers.
fn dequantize_i8_blocks<const BS: usize>(x: &[u8], y: &mut [f32]) {
    assert!(x.len().is_multiple_of(BS) && y.len() == x.len() / BS * 32, "to_float: bad row length");
    // SAFETY: reachable only through the AVX2 table (AVX2 and F16C detected); whole blocks of x
    // and their 32 outputs each, lengths checked above.
    unsafe { dequantize_i8_blocks_avx2::<BS>(x, y) }
}

/// Each block's 32 quants as signed bytes (Q8_0's as stored; Q4_0's nibbles − 8, the low ones
/// elements 0..16, the high ones 16..32), converted 8 at a time and scaled by d (F16C inline).
#[target_feature(enable = "avx2,f16c")]
/// # Safety
/// The CPU must support this function's target features; `x` holds whole `BS`-byte blocks
/// (18 or 34) and `y` 32 floats per block.
unsafe fn dequantize_i8_blocks_avx2<const BS: usize>(x: &[u8], y: &mut [f32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract; block b reads
    // x[BS·b..BS·b+BS] and writes y[32b..32b+32].
    unsafe {
        for (b, o) in x.chunks_exact(BS).zip(y.chunks_exact_mut(32)) {
            let d = _mm256_set1_ps(super::dot::f16_load(b.as_ptr()));
            let q: [__m128i; 2] = if BS == 34 {
                std::array::from_fn(|h| _mm_loadu_si128(b.as_ptr().add(2 + 16 * h) as *const __m128i))
            } else {
                let qs = _mm_loadu_si128(b.as_ptr().add(2) as *const __m128i);
                let (m4, eight) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(8));
                [
                    _mm_sub_epi8(_mm_and_si128(qs, m4), eight),
                    _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(qs), m4), eight),
                ]
            };
            for (h, v) in q.into_iter().enumerate() {
                for i in 0..2 {
                    let w = if i == 0 { v } else { _mm_srli_si128::<8>(v) };
                    let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w));
                    _mm256_storeu_ps(o.as_mut_ptr().add(16 * h + 8 * i), _mm256_mul_ps(f, d));
                }
            }
        }
    }
}
