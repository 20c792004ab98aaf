//! IQ4_NL × Q8_0 and IQ4_XS × Q8_K dots (`VecDotFn`) in the order of llama.cpp's x86
//! `ggml_vec_dot_iq4_nl_q8_0` / `ggml_vec_dot_iq4_xs_q8_K` (AVX2 paths; its AVX-512 build runs
//! them too): the nibbles looked up in `kvalues_iq4nl` by a byte shuffle, exact integer sums.

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_ps, mul_sum_i8};
use crate::kernels::types::VecDotFn;
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::QK_K;

dot_entry!(dot_iq4_nl_avx2_entry, dot_iq4_nl_avx2, 32, 18, 34, "avx2,fma,f16c");
dot_entry!(dot_iq4_xs_avx2_entry, dot_iq4_xs_avx2, QK_K, 136, 292, "avx2,fma,f16c");

/// The AVX2 IQ4_NL dot.
pub(super) const DOT_IQ4_NL_AVX2: VecDotFn = dot_iq4_nl_avx2_entry;
/// The AVX2 IQ4_XS dot.
pub(super) const DOT_IQ4_XS_AVX2: VecDotFn = dot_iq4_xs_avx2_entry;

#[target_feature(enable = "avx2,fma,f16c")]
/// The 32 levels of the 16 nibble bytes at `qs` as signed bytes (the low nibbles, then the high
/// ones), each looked up in `kvalues_iq4nl` by a byte shuffle.
///
/// # Safety
/// The CPU must support this function's target features; `qs..qs+16` must be readable.
pub(super) unsafe fn values32(qs: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features, 16 bytes).
    unsafe {
        let table = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0x0F);
        let bits = _mm_loadu_si128(qs as *const __m128i);
        let lo = _mm_shuffle_epi8(table, _mm_and_si128(bits, m4));
        let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
        _mm256_set_m128i(hi, lo)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Blocks in pairs, the even one into `acc0` and the odd one into `acc1` (8 lanes of 4 elements,
/// `lane = fma(d_a·d_w, f32(lane sum), lane)`), `hsum_float_8(acc0 + acc1)`, then an odd last
/// block as `fma(d_a·d_w, f32(sumi), sumf)`, as ggml.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq4_nl_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let nb = n / 32;
        let block = |i: usize| {
            let (x, y) = (w.add(18 * i), a.add(34 * i));
            let p = mul_sum_i8(values32(x.add(2)), _mm256_loadu_si256(y.add(2) as *const __m256i));
            (_mm256_set1_ps(f16_load(y) * f16_load(x)), _mm256_cvtepi32_ps(p))
        };
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut ib = 0;
        while ib + 1 < nb {
            let (d0, p0) = block(ib);
            let (d1, p1) = block(ib + 1);
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);
            acc1 = _mm256_fmadd_ps(d1, p1, acc1);
            ib += 2;
        }
        let mut sumf = hsum_ps(_mm256_add_ps(acc0, acc1));
        if ib < nb {
            let (x, y) = (w.add(18 * ib), a.add(34 * ib));
            let (qs, ys) =
                (std::slice::from_raw_parts(x.add(2), 16), std::slice::from_raw_parts(y.add(2) as *const i8, 32));
            let (mut sumi1, mut sumi2) = (0i32, 0i32);
            for j in 0..16 {
                sumi1 += ys[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0x0F) as usize] as i32;
                sumi2 += ys[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
            }
            // (measured on llama.cpp's build: this tail is contracted into an FMA)
            sumf = (f16_load(y) * f16_load(x)).mul_add((sumi1 + sumi2) as f32, sumf);
        }
        sumf
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Per block: the 8 sub-blocks' 16-bit pair sums times their scale (ls − 32) summed in two 8-lane
/// i32 accumulators (even and odd sub-blocks), then `acc = fma(d_w·d_a, f32(sumi1 + sumi2), acc)`;
/// `hsum_float_8(acc)` at the end.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq4_xs_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            // block_iq4_xs: d f16 @0, scales_h u16 @2, scales_l [4] @4, qs [128] @8
            // block_q8_K: d f32 @0, qs [256] @4
            let (x, y) = (w.add(136 * i), a.add(292 * i));
            let mut sh = u16::from_le_bytes([*x.add(2), *x.add(3)]);
            let (mut sumi1, mut sumi2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for ib in (0..QK_K / 32).step_by(2) {
                let sl = *x.add(4 + ib / 2);
                let ls1 = ((sl & 0xf) as i16 | ((sh << 4) & 0x30) as i16) - 32;
                let ls2 = ((sl >> 4) as i16 | ((sh << 2) & 0x30) as i16) - 32;
                sh >>= 4;
                let q4b1 = values32(x.add(8 + 16 * ib));
                let q4b2 = values32(x.add(8 + 16 * ib + 16));
                let q8b1 = _mm256_loadu_si256(y.add(4 + 32 * ib) as *const __m256i);
                let q8b2 = _mm256_loadu_si256(y.add(4 + 32 * ib + 32) as *const __m256i);
                let p16_1 = _mm256_maddubs_epi16(_mm256_sign_epi8(q4b1, q4b1), _mm256_sign_epi8(q8b1, q4b1));
                let p16_2 = _mm256_maddubs_epi16(_mm256_sign_epi8(q4b2, q4b2), _mm256_sign_epi8(q8b2, q4b2));
                sumi1 = _mm256_add_epi32(_mm256_madd_epi16(p16_1, _mm256_set1_epi16(ls1)), sumi1);
                sumi2 = _mm256_add_epi32(_mm256_madd_epi16(p16_2, _mm256_set1_epi16(ls2)), sumi2);
            }
            let d = f16_load(x) * f32::from_le_bytes([*y, *y.add(1), *y.add(2), *y.add(3)]);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi1, sumi2)), acc);
        }
        hsum_ps(acc)
    }
}
