//! MXFP4 × Q8_0 dots (`VecDotFn`), in the order of llama.cpp's x86 `ggml_vec_dot_mxfp4_q8_0`
//! (AVX2 path, also what its AVX-512 build runs): bit-identical to `kernels::ggml_x86::mxfp4_lanes`.

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_ps, mul_sum_i8};
use crate::kernels::types::VecDotFn;
use crate::quant::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};

dot_entry!(dot_mxfp4_avx2_entry, dot_mxfp4_avx2, 32, 17, 34, "avx2,fma,f16c");

/// The AVX2 MXFP4 dot.
pub(super) const DOT_MXFP4_AVX2: VecDotFn = dot_mxfp4_avx2_entry;

#[target_feature(enable = "avx2,fma,f16c")]
/// The 32 weights of the MXFP4 block at `x` as signed bytes (element order: the low nibbles, then
/// the high ones), each code looked up in `kvalues_mxfp4` by a byte shuffle.
///
/// # Safety
/// The CPU must support this function's target features; `x..x+17` must be readable.
pub(super) unsafe fn values32(x: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features, the
    // 17 bytes of one block).
    unsafe {
        let table = _mm_loadu_si128(KVALUES_MXFP4.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0x0F);
        let bits = _mm_loadu_si128(x.add(1) as *const __m128i);
        let lo = _mm_shuffle_epi8(table, _mm_and_si128(bits, m4));
        let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
        _mm256_set_m128i(hi, lo)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Blocks in pairs, the even one into `acc0` and the odd one into `acc1` (8 lanes of 4 elements,
/// `lane = fma(d_a·2^(e−128), f32(lane sum), lane)`), `hsum_float_8(acc0 + acc1)`, then an odd
/// last block as `sumf + d·f32(sumi)`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_mxfp4_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let nb = n / 32;
        let block = |i: usize| {
            let (x, y) = (w.add(17 * i), a.add(34 * i));
            let p = mul_sum_i8(values32(x), _mm256_loadu_si256(y.add(2) as *const __m256i));
            (_mm256_set1_ps(f16_load(y) * e8m0_to_fp32_half(*x)), _mm256_cvtepi32_ps(p))
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
            let (x, y) = (w.add(17 * ib), a.add(34 * ib));
            let (qs, ys) =
                (std::slice::from_raw_parts(x.add(1), 16), std::slice::from_raw_parts(y.add(2) as *const i8, 32));
            let mut sumi = 0i32;
            for j in 0..16 {
                sumi += ys[j] as i32 * KVALUES_MXFP4[(qs[j] & 0x0F) as usize] as i32
                    + ys[j + 16] as i32 * KVALUES_MXFP4[(qs[j] >> 4) as usize] as i32;
            }
            sumf += f16_load(y) * e8m0_to_fp32_half(*x) * sumi as f32;
        }
        sumf
    }
}
