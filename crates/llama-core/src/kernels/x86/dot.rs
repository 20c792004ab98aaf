//! AVX2 and AVX-512 dots of weight rows with activation rows (`VecDotFn`).
//!
//! Numerics: the integer dot of each (sub)block is computed exactly (same value as the scalar
//! reference); only the order of the float accumulation across blocks may differ. The Q4_K and
//! Q6_K kernels reduce each block to its exact integer sums and then apply the scalar float formula
//! in block order, so they are bit-identical to `kernels::scalar`; Q2_K, Q3_K and Q5_K sum in
//! llama.cpp's AVX2 order instead (`kernels::ggml_x86`), as the Q4_1/Q5_1 dots do.

use std::arch::x86_64::*;

use crate::kernels::shared::{bf16_at, q8k_bsum};
use crate::kernels::types::VecDotFn;
use crate::quant::k_quants::{q3k_scale, scales_mins_k4};
use crate::quant::QK_K;

dot_entry!(dot_q4_0_avx2_entry, dot_q4_0_avx2, 32, 18, 34, "avx2,fma,f16c");
dot_entry!(dot_q4_1_avx2_entry, dot_q4_1_avx2, 32, 20, 36, "avx2,fma,f16c");
dot_entry!(dot_q5_1_avx2_entry, dot_q5_1_avx2, 32, 24, 36, "avx2,fma,f16c");
dot_entry!(dot_q5_0_avx2_entry, dot_q5_0_avx2, 32, 22, 34, "avx2,fma,f16c");
dot_entry!(dot_q8_0_avx2_entry, dot_q8_0_avx2, 32, 34, 34, "avx2,fma,f16c");
dot_entry!(dot_q4_k_avx2_entry, dot_q4_k_avx2, QK_K, 144, 292, "avx2,fma,f16c");
dot_entry!(dot_q2_k_avx2_entry, dot_q2_k_avx2, QK_K, 84, 292, "avx2,fma,f16c");
dot_entry!(dot_q3_k_avx2_entry, dot_q3_k_avx2, QK_K, 110, 292, "avx2,fma,f16c");
dot_entry!(dot_q5_k_avx2_entry, dot_q5_k_avx2, QK_K, 176, 292, "avx2,fma,f16c");
dot_entry!(dot_q6_k_avx2_entry, dot_q6_k_avx2, QK_K, 210, 292, "avx2,fma,f16c");
dot_entry!(dot_f16_avx2_entry, dot_f16_avx2, 1, 2, 2, "avx2,fma,f16c");
dot_entry!(dot_bf16_avx2_entry, dot_bf16_avx2, 1, 2, 2, "avx2,fma");
dot_entry!(dot_f32_avx2_entry, dot_f32_avx2, 1, 4, 4, "avx2,fma");
dot_entry!(dot_q4_0_avx512_entry, dot_q4_0_avx512, 32, 18, 34, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
dot_entry!(dot_q5_0_avx512_entry, dot_q5_0_avx512, 32, 22, 34, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
dot_entry!(dot_q8_0_avx512_entry, dot_q8_0_avx512, 32, 34, 34, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
dot_entry!(
    dot_q4_k_avx512_entry,
    dot_q4_k_avx512,
    QK_K,
    144,
    292,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
);
dot_entry!(
    dot_q6_k_avx512_entry,
    dot_q6_k_avx512,
    QK_K,
    210,
    292,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
);
dot_entry!(dot_f16_avx512_entry, dot_f16_avx512, 1, 2, 2, "avx2,fma,f16c,avx512f,avx512bw,avx512vl");
dot_entry!(dot_bf16_avx512_entry, dot_bf16_avx512, 1, 2, 2, "avx2,fma,f16c,avx512f,avx512bw,avx512vl");
dot_entry!(dot_f32_avx512_entry, dot_f32_avx512, 1, 4, 4, "avx2,fma,f16c,avx512f,avx512bw,avx512vl");

/// The AVX2 dots: (weight type, kernel).
pub(super) const DOTS_AVX2: [(crate::quant::GgmlType, VecDotFn); 13] = {
    use crate::quant::GgmlType::*;
    [
        (Q4_0, dot_q4_0_avx2_entry),
        (Q4_1, dot_q4_1_avx2_entry),
        (Q5_0, dot_q5_0_avx2_entry),
        (Q5_1, dot_q5_1_avx2_entry),
        (Q8_0, dot_q8_0_avx2_entry),
        (Q2_K, dot_q2_k_avx2_entry),
        (Q3_K, dot_q3_k_avx2_entry),
        (Q4_K, dot_q4_k_avx2_entry),
        (Q5_K, dot_q5_k_avx2_entry),
        (Q6_K, dot_q6_k_avx2_entry),
        (F16, dot_f16_avx2_entry),
        (BF16, dot_bf16_avx2_entry),
        (F32, dot_f32_avx2_entry),
    ]
};

/// The AVX-512 dots: (weight type, kernel).
pub(super) const DOTS_AVX512: [(crate::quant::GgmlType, VecDotFn); 8] = {
    use crate::quant::GgmlType::*;
    [
        (Q4_0, dot_q4_0_avx512_entry),
        (Q5_0, dot_q5_0_avx512_entry),
        (Q8_0, dot_q8_0_avx512_entry),
        (Q4_K, dot_q4_k_avx512_entry),
        (Q6_K, dot_q6_k_avx512_entry),
        (F16, dot_f16_avx512_entry),
        (BF16, dot_bf16_avx512_entry),
        (F32, dot_f32_avx512_entry),
    ]
};

// ---- helpers ----------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx2,f16c")]
/// # Safety
/// The CPU must support this function's target features; `p..p+2` must be readable.
pub(super) unsafe fn f16_load(p: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let h = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Signed i8 × i8, adjacent products summed to 8 × i32. maddubs needs an unsigned left operand, so
/// the sign of x is moved onto y: |x| · sign(x)·y. Pair sums stay below 2·128·127, no saturation.
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// 16 packed bytes → 32 nibbles: bytes 0..16 = low nibbles, 16..32 = high nibbles (ggml's order).
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+16` must be readable.
pub(super) unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let t = _mm_loadu_si128(p as *const __m128i);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F))
    }
}

/// 32 bits → 32 bytes, 0xFF where the bit is set (byte i ↔ bit i).
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn bits_to_bytes(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // byte i takes byte i/8 of the word …
    let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let v = _mm256_shuffle_epi8(v, shuf);
    // … and is all-ones iff its own bit (i % 8) was set.
    let v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1))
}

// ---- AVX2 dots ---------------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
pub(super) unsafe fn dot_q4_0_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / 32 {
            let (x, y) = (w.add(18 * i), a.add(34 * i));
            let q = _mm256_sub_epi8(nibbles32(x.add(2)), _mm256_set1_epi8(8));
            let p = mul_sum_i8(q, _mm256_loadu_si256(y.add(2) as *const __m256i));
            let d = _mm256_set1_ps(f16_load(x) * f16_load(y));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q4_1 (`Q5 = false`) or Q5_1 (`Q5 = true`) × Q8_1 as `ggml_vec_dot_q4_1_q8_1` /
/// `ggml_vec_dot_q5_1_q8_1` (AVX2 paths, the same in llama.cpp's AVX-512 build): 8 float lanes of
/// 4 elements, `lane = fma(d_w·d_a, f32(lane sum), lane)`, the minimums apart as
/// `summs = fma(m_w, s_a, summs)`, then `hsum_float_8(lanes) + summs`
/// (`kernels::ggml_x86::q4_1_lanes`, `q5_1_lanes`).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_1_q5_1_avx2<const Q5: bool>(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        // block: d, m, [qh], qs
        let (size, qs) = if Q5 { (24, 8) } else { (20, 4) };
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for i in 0..n / 32 {
            let (x, y) = (w.add(size * i), a.add(36 * i));
            summs = f16_load(x.add(2)).mul_add(f16_load(y.add(2)), summs);
            let d = _mm256_set1_ps(f16_load(x) * f16_load(y));
            let mut q = nibbles32(x.add(qs));
            if Q5 {
                let qh = u32::from_le_bytes([*x.add(4), *x.add(5), *x.add(6), *x.add(7)]);
                q = _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10)));
            }
            let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(y.add(4) as *const __m256i));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc);
        }
        hsum_ps(acc) + summs
    }
}

/// # Safety
/// As `dot_q4_1_q5_1_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds the same contract.
    unsafe { dot_q4_1_q5_1_avx2::<false>(n, w, a) }
}

/// # Safety
/// As `dot_q4_1_q5_1_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_1_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds the same contract.
    unsafe { dot_q4_1_q5_1_avx2::<true>(n, w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q5_0_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / 32 {
            let (x, y) = (w.add(22 * i), a.add(34 * i));
            let qh = u32::from_le_bytes([*x.add(2), *x.add(3), *x.add(4), *x.add(5)]);
            // q - 16 == nibble | 0xF0 (as i8) when the fifth bit is clear, else the nibble itself.
            let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
            let q = _mm256_or_si256(nibbles32(x.add(6)), hi);
            let p = mul_sum_i8(q, _mm256_loadu_si256(y.add(2) as *const __m256i));
            let d = _mm256_set1_ps(f16_load(x) * f16_load(y));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
pub(super) unsafe fn dot_q8_0_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / 32 {
            let (x, y) = (w.add(34 * i), a.add(34 * i));
            let p = mul_sum_i8(
                _mm256_loadu_si256(x.add(2) as *const __m256i),
                _mm256_loadu_si256(y.add(2) as *const __m256i),
            );
            let d = _mm256_set1_ps(f16_load(x) * f16_load(y));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
        hsum_ps(acc)
    }
}

/// Σ mins · (pairwise bsums) of a Q4_K/Q5_K block.
#[inline(always)]
fn k4_min_sum(mn: &[u8; 8], y: &[u8]) -> i32 {
    (0..8).map(|j| mn[j] as i32 * (q8k_bsum(y, 2 * j) + q8k_bsum(y, 2 * j + 1))).sum()
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_k_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(144 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 144);
            let ys = std::slice::from_raw_parts(y, 292);
            let (sc, mn) = scales_mins_k4(xs[4..16].try_into().unwrap());
            let mut acc = _mm256_setzero_si256();
            for j in 0..4 {
                let q = _mm256_loadu_si256(x.add(16 + 32 * j) as *const __m256i);
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                let p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(y.add(4 + 64 * j) as *const __m256i));
                let p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(y.add(4 + 64 * j + 32) as *const __m256i));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * j] as i16)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * j + 1] as i16)));
            }
            let isum = hsum_epi32(acc);
            let msum = k4_min_sum(&mn, ys);
            let yd = f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]);
            sumf += yd * f16_load(x) * isum as f32 - yd * f16_load(x.add(2)) * msum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q2_K × Q8_K as `ggml_vec_dot_q2_K_q8_K` (its AVX2 path, which llama.cpp's AVX-512 build runs
/// too): per super-block, into the same 8 float lanes, first the minimums
/// `lanes = fma(−d_a·dmin_w, f32(vpmaddwd(mins, bsums)), lanes)`, then the 8 i32 lanes of
/// `Σ_g sc · maddubs(q, y)` over the 8 groups of 32 (lane l: elements 32g+4l..32g+4l+4),
/// `lanes = fma(d_a·d_w, f32(lanes), lanes)`; then `hsum_float_8`
/// (`kernels::ggml_x86::q2_k_lanes`, bit for bit).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q2_k_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m3, m4) = (_mm256_set1_epi8(3), _mm_set1_epi8(0x0F));
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            // block: scales[16] @0, qs[64] @16, d @80, dmin @82
            let (x, y) = (w.add(84 * i), a.add(292 * i));
            let yd = (y as *const f32).read_unaligned();
            let ms = _mm_loadu_si128(x as *const __m128i);
            let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(ms, 4), m4));
            let prod = _mm256_madd_epi16(mins, _mm256_loadu_si256(y.add(4 + QK_K) as *const __m256i));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(-yd * f16_load(x.add(82))), _mm256_cvtepi32_ps(prod), acc);
            let sc: [u8; 16] = std::array::from_fn(|j| *x.add(j) & 15);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..2 {
                let q2 = _mm256_loadu_si256(x.add(16 + 32 * c) as *const __m256i);
                for k in 0..4 {
                    let g = 4 * c + k;
                    let q = _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * k as i32)), m3);
                    let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(y.add(4 + 32 * g) as *const __m256i));
                    let scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1] as i16), _mm_set1_epi16(sc[2 * g] as i16));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_load(x.add(80))), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q3_K × Q8_K as `ggml_vec_dot_q3_K_q8_K` (its AVX2 path, which llama.cpp's AVX-512 build runs
/// too): per super-block the 8 i32 lanes of `Σ_g sc · (maddubs(lo, y) − maddubs(4·¬hbit, y))`
/// over the 8 groups of 32 (lane l: elements 32g+4l..32g+4l+4; sub-block 2g in bytes 0..16,
/// 2g+1 in 16..32), `lanes = fma(d_a·d_w, f32(lanes), lanes)`, then `hsum_float_8`
/// (`kernels::ggml_x86::q3_k_lanes`, bit for bit).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q3_k_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m3, four, zero) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4), _mm256_setzero_si256());
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            // block: hmask[32] @0, qs[64] @32, scales[12] @96, d @108
            let (x, y) = (w.add(110 * i), a.add(292 * i));
            let sc: [i32; 16] = std::array::from_fn(|j| q3k_scale(j, &*(x.add(96) as *const [u8; 12])));
            let hbits = _mm256_loadu_si256(x as *const __m256i);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..2 {
                let q3 = _mm256_loadu_si256(x.add(32 + 32 * c) as *const __m256i);
                for k in 0..4 {
                    let g = 4 * c + k;
                    let lo = _mm256_and_si256(_mm256_srl_epi16(q3, _mm_cvtsi32_si128(2 * k as i32)), m3);
                    // 4 where the high bit is clear (value = lo − 4), else 0
                    let bit = _mm256_set1_epi8((1u8 << g) as i8);
                    let hneg = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), zero), four);
                    let yv = _mm256_loadu_si256(y.add(4 + 32 * g) as *const __m256i);
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(lo, yv), _mm256_maddubs_epi16(hneg, yv));
                    let scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1] as i16), _mm_set1_epi16(sc[2 * g] as i16));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
                }
            }
            let yd = (y as *const f32).read_unaligned();
            acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_load(x.add(108))), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q5_K × Q8_K as `ggml_vec_dot_q5_K_q8_K` (its AVX2 path, which llama.cpp's AVX-512 build runs
/// too): per super-block the 8 i32 lanes of `Σ_j sc_j · maddubs(q, y)` (lane l: elements
/// 32j+4l..32j+4l+4), `lanes = fma(d_a·d_w, f32(lanes), lanes)`; the minimums apart as
/// `summs = fma(−d_a·dmin_w, f32(Σ min·bsums), summs)`; `hsum_float_8(lanes) + summs`
/// (`kernels::ggml_x86::q5_k_lanes`, bit for bit; the scalar reference sums per block instead).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q5_k_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (m4, m16) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for i in 0..n / QK_K {
            // block: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
            let (x, y) = (w.add(176 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 176);
            let ys = std::slice::from_raw_parts(y, 292);
            let (sc, mn) = scales_mins_k4(xs[4..16].try_into().unwrap());
            let yd = f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]);
            summs = (-yd * f16_load(x.add(2))).mul_add(k4_min_sum(&mn, ys) as f32, summs);
            let hbits = _mm256_loadu_si256(x.add(16) as *const __m256i);
            // 0x10 in each byte whose bit `b` of qh is set (the fifth bit of sub-block b)
            let high = |b: usize| {
                let bit = _mm256_set1_epi8((1u8 << b) as i8);
                _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit), m16)
            };
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let q = _mm256_loadu_si256(x.add(48 + 32 * j) as *const __m256i);
                let lo = _mm256_or_si256(_mm256_and_si256(q, m4), high(2 * j));
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), high(2 * j + 1));
                let p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(y.add(4 + 64 * j) as *const __m256i));
                let p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(y.add(4 + 64 * j + 32) as *const __m256i));
                let p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * j] as i16));
                let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * j + 1] as i16));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_load(x)), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc) + summs
    }
}

/// Q6_K: the four 32-element groups of one 128-half as unsigned 6-bit values (q + 32).
#[inline]
#[target_feature(enable = "avx2")]
///
/// # Safety
/// The CPU must support this function's target features; `ql..ql+64` and `qh..qh+32` must be
/// readable.
unsafe fn q6k_half_avx2(ql: *const u8, qh: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(3);
        let h = _mm256_loadu_si256(qh as *const __m256i);
        let l0 = _mm256_loadu_si256(ql as *const __m256i);
        let l1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
        let hb = |s: i32| {
            let v = match s {
                0 => h,
                2 => _mm256_srli_epi16(h, 2),
                4 => _mm256_srli_epi16(h, 4),
                _ => _mm256_srli_epi16(h, 6),
            };
            _mm256_slli_epi16(_mm256_and_si256(v, m2), 4)
        };
        [
            _mm256_or_si256(_mm256_and_si256(l0, m4), hb(0)),
            _mm256_or_si256(_mm256_and_si256(l1, m4), hb(2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), hb(4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hb(6)),
        ]
    }
}

/// Σ scale_j · bsum_j over the 16 sub-blocks (the `- 32` offset of Q6_K, folded out of the loop).
#[inline(always)]
fn q6k_offset(scales: &[u8], y: &[u8]) -> i32 {
    (0..16).map(|j| scales[j] as i8 as i32 * q8k_bsum(y, j)).sum::<i32>() * 32
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q6_k_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(210 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 210);
            let ys = std::slice::from_raw_parts(y, 292);
            let sc = &xs[192..208];
            let mut acc = _mm256_setzero_si256();
            for h in 0..2 {
                let u = q6k_half_avx2(x.add(64 * h), x.add(128 + 32 * h));
                for (k, uk) in u.iter().enumerate() {
                    let s = 8 * h + 2 * k;
                    let p =
                        _mm256_maddubs_epi16(*uk, _mm256_loadu_si256(y.add(4 + 128 * h + 32 * k) as *const __m256i));
                    let scv =
                        _mm256_set_m128i(_mm_set1_epi16(sc[s + 1] as i8 as i16), _mm_set1_epi16(sc[s] as i8 as i16));
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scv));
                }
            }
            let isum = hsum_epi32(acc) - q6k_offset(sc, ys);
            let yd = f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]);
            sumf += f16_load(x.add(208)) * yd * isum as f32;
        }
        sumf
    }
}

/// The AVX2 float dots (F16, BF16, F32 rows of `ES`-byte elements): 4 accumulators of 8 lanes over
/// chunks of 32 elements, then the tail one element at a time; `load8(p)` widens the 8 elements
/// at `p`, `load1(p)` one. Inlined into each `#[target_feature]` dot, which supplies the loads.
///
/// # Safety
/// The CPU must support AVX2 and FMA and what the loads use; `w` and `a` must point to `n`
/// readable elements.
#[inline(always)]
unsafe fn dot_float_avx2<const ES: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    load8: impl Fn(*const u8) -> __m256,
    load1: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: the caller guarantees the features and that every element read (i < n) is in range.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, ak) in acc.iter_mut().enumerate() {
                let o = ES * (i + 8 * k);
                *ak = _mm256_fmadd_ps(load8(w.add(o)), load8(a.add(o)), *ak);
            }
            i += 32;
        }
        let mut s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            s += load1(w.add(ES * i)) * load1(a.add(ES * i));
            i += 1;
        }
        s
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
pub(super) unsafe fn dot_f16_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe {
        vec_dot_ggml_avx2::<2>(n, w, a, |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)), |p| f16_load(p))
    }
}

/// `ggml_vec_dot_f16` / `_f32` of ggml's AVX2 build (`ggml_x86::f16_vec_dot8`): four
/// accumulators of 8 lanes over steps of 32 elements, reduced `(s0 + s2) + (s1 + s3)`, halves
/// added, two `hadd`s; then the leftovers as `vec_dot_leftovers`. `load8(p)` widens the 8 elements at `p`, `load1(p)` one.
///
/// # Safety
/// The CPU must support AVX2, FMA and what the loads use; `w` and `a` must point to `n` readable
/// elements.
#[inline(always)]
unsafe fn vec_dot_ggml_avx2<const ES: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    load8: impl Fn(*const u8) -> __m256,
    load1: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: the caller guarantees the features and that every element read (i < n) is in range.
    unsafe {
        let np = n / 32 * 32;
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, s) in acc.iter_mut().enumerate() {
                let o = ES * (i + 8 * j);
                *s = _mm256_fmadd_ps(load8(w.add(o)), load8(a.add(o)), *s);
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let t1 = _mm_hadd_ps(t0, t0);
        let sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
        vec_dot_leftovers::<ES, 8>(sum, np, n, w, a, load1)
    }
}

/// The leftovers of ggml's `ggml_vec_dot_f16` (ES 2: in a double, products rounded to f32 first)
/// and `ggml_vec_dot_f32` (ES 4: as GCC compiles `sumf += x[i]*y[i]` for a build of `LANES`-wide
/// vectors, `elementwise::ggml_f32_tail`: products rounded and added, the last few — under 4 in the
/// AVX2 build, under 8 in the AVX-512 one — fused multiply-adds), from element `np` to `n`.
///
/// # Safety
/// Elements `np..n` of both rows must be readable by `load1`; the CPU must support FMA.
#[inline(always)]
unsafe fn vec_dot_leftovers<const ES: usize, const LANES: usize>(
    sum: f32,
    np: usize,
    n: usize,
    w: *const u8,
    a: *const u8,
    load1: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: the caller guarantees elements np..n are readable.
    unsafe {
        if ES == 2 {
            let mut s = sum as f64;
            for i in np..n {
                s += (load1(w.add(ES * i)) * load1(a.add(ES * i))) as f64;
            }
            s as f32
        } else {
            // GCC vectorizes whole vectors of LANES then one of LANES / 2: those products are rounded
            let unfused = np + ((n - np) & !(LANES / 2 - 1));
            let mut s = sum;
            for i in np..unfused {
                s += load1(w.add(ES * i)) * load1(a.add(ES * i));
            }
            for i in unfused..n {
                s = load1(w.add(ES * i)).mul_add(load1(a.add(ES * i)), s);
            }
            s
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
/// # Safety
/// The CPU must support this function's target features; `p..p+16` must be readable.
unsafe fn bf16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)), 16)) }
}

#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_bf16_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe { dot_float_avx2::<2>(n, w, a, |p| bf16x8(p), |p| bf16_at(p)) }
}

#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_f32_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe {
        vec_dot_ggml_avx2::<4>(n, w, a, |p| _mm256_loadu_ps(p as *const f32), |p| (p as *const f32).read_unaligned())
    }
}

// ---- AVX-512 dots ------------------------------------------------------------------------------
// Two 32-element blocks per 512-bit register; VNNI `vpdpbusd` multiplies unsigned weight bytes by
// signed activation bytes, so offset formats (Q4_0: q - 8, Q5_0: q - 16) use the unsigned q and
// subtract offset · Σy, itself one `vpdpbusd` against a constant.

/// Two 256-bit halves → one 512-bit register (lo, hi).
#[inline]
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// Per-lane block scales: lanes 0..8 = d0, lanes 8..16 = d1.
#[inline]
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn scales2(d0: f32, d1: f32) -> __m512 {
    _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1))
}

/// The AVX-512 dots of the 32-element formats with Q8_0 activations (`wb` weight bytes per block,
/// its f16 scale first): two blocks per step, `acc = fma(f32(pair(x0, x1, y)), d_x0·d_y0 | d_x1·d_y1,
/// acc)` where `pair` gives the two blocks' exact integer sums (lanes 0..8, 8..16) from their weight
/// blocks and their 64 activation bytes `y`; then `_mm512_reduce_add_ps`, plus `tail` (the AVX2 dot)
/// of an odd last block.
#[inline(always)]
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_pairs_avx512(
    n: usize,
    w: *const u8,
    a: *const u8,
    wb: usize,
    pair: impl Fn(*const u8, *const u8, __m512i) -> __m512i,
    tail: unsafe fn(usize, *const u8, *const u8) -> f32,
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let nb = n / 32;
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + 2 <= nb {
            let (x0, x1, y0, y1) = (w.add(wb * i), w.add(wb * i + wb), a.add(34 * i), a.add(34 * i + 34));
            let p = pair(
                x0,
                x1,
                join(_mm256_loadu_si256(y0.add(2) as *const __m256i), _mm256_loadu_si256(y1.add(2) as *const __m256i)),
            );
            let d = scales2(f16_load(x0) * f16_load(y0), f16_load(x1) * f16_load(y1));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc);
            i += 2;
        }
        let mut s = _mm512_reduce_add_ps(acc);
        if i < nb {
            s += tail(32, w.add(wb * i), a.add(34 * i));
        }
        s
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_0_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let eight = _mm512_set1_epi8(8);
        let pair = |x0: *const u8, x1: *const u8, yv| {
            let q = join(nibbles32(x0.add(2)), nibbles32(x1.add(2)));
            _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q, yv), _mm512_dpbusd_epi32(zero, eight, yv))
        };
        dot_pairs_avx512(n, w, a, 18, pair, dot_q4_0_avx2)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q5_0_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let sixteen = _mm512_set1_epi8(16);
        let pair = |x0: *const u8, x1: *const u8, yv| {
            let qh0 = u32::from_le_bytes([*x0.add(2), *x0.add(3), *x0.add(4), *x0.add(5)]) as u64;
            let qh1 = u32::from_le_bytes([*x1.add(2), *x1.add(3), *x1.add(4), *x1.add(5)]) as u64;
            // fifth bit of element k ↔ mask bit k of the 64-byte register
            let hi = _mm512_maskz_mov_epi8(qh0 | (qh1 << 32), sixteen);
            let q = _mm512_or_si512(join(nibbles32(x0.add(6)), nibbles32(x1.add(6))), hi);
            _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q, yv), _mm512_dpbusd_epi32(zero, sixteen, yv))
        };
        dot_pairs_avx512(n, w, a, 22, pair, dot_q5_0_avx2)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q8_0_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let pair = |x0: *const u8, x1: *const u8, yv| {
            let xv =
                join(_mm256_loadu_si256(x0.add(2) as *const __m256i), _mm256_loadu_si256(x1.add(2) as *const __m256i));
            // |x| · (sign(x)·y): VNNI needs the left operand unsigned.
            let sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(xv), zero, yv);
            _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(xv), sy)
        };
        dot_pairs_avx512(n, w, a, 34, pair, dot_q8_0_avx2)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q4_k_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(144 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 144);
            let ys = std::slice::from_raw_parts(y, 292);
            let (sc, mn) = scales_mins_k4(xs[4..16].try_into().unwrap());
            let mut acc = _mm512_setzero_si512();
            for j in 0..4 {
                let q = _mm256_loadu_si256(x.add(16 + 32 * j) as *const __m256i);
                // 64 weights in element order: low nibbles (sub-block 2j), then high (2j+1).
                let v = join(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
                let p = _mm512_maddubs_epi16(v, _mm512_loadu_si512(y.add(4 + 64 * j) as *const _));
                let scv = _mm512_mask_blend_epi16(
                    0xFFFF_0000,
                    _mm512_set1_epi16(sc[2 * j] as i16),
                    _mm512_set1_epi16(sc[2 * j + 1] as i16),
                );
                acc = _mm512_dpwssd_epi32(acc, p, scv);
            }
            let isum = _mm512_reduce_add_epi32(acc);
            let msum = k4_min_sum(&mn, ys);
            let yd = f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]);
            sumf += yd * f16_load(x) * isum as f32 - yd * f16_load(x.add(2)) * msum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_q6_k_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let m2 = _mm512_set1_epi8(3);
        // per-256-bit-half right shifts of the high-bit bytes: elements 0..32 use bits 0-1, 32..64 bits 2-3 …
        let sh_lo = join(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
        let sh_hi = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
        // i16 lane m of a 64-element group ↔ sub-block m / 8 of that group.
        let idx: [__m512i; 4] = [0, 1, 2, 3].map(|g| {
            let mut v = [0i16; 32];
            for (m, e) in v.iter_mut().enumerate() {
                *e = (4 * g + m / 8) as i16;
            }
            _mm512_loadu_si512(v.as_ptr() as *const _)
        });
        let mut sumf = 0.0f32;
        for i in 0..n / QK_K {
            let (x, y) = (w.add(210 * i), a.add(292 * i));
            let xs = std::slice::from_raw_parts(x, 210);
            let ys = std::slice::from_raw_parts(y, 292);
            let sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(192) as *const __m128i)));
            let mut acc = _mm512_setzero_si512();
            for h in 0..2 {
                let l = _mm512_loadu_si512(x.add(64 * h) as *const _);
                let hq = _mm512_broadcast_i64x4(_mm256_loadu_si256(x.add(128 + 32 * h) as *const __m256i));
                let hb = |sh: __m512i| _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hq, sh), m2), 4);
                let u_lo = _mm512_or_si512(_mm512_and_si512(l, m4), hb(sh_lo));
                let u_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), hb(sh_hi));
                for (g, u) in [(2 * h, u_lo), (2 * h + 1, u_hi)] {
                    let p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(y.add(4 + 64 * g) as *const _));
                    acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(idx[g], sc16));
                }
            }
            let isum = _mm512_reduce_add_epi32(acc) - q6k_offset(&xs[192..208], ys);
            let yd = f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]);
            sumf += f16_load(x.add(208)) * yd * isum as f32;
        }
        sumf
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_f16_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe {
        vec_dot_ggml_avx512::<2>(n, w, a, |p| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)), |p| f16_load(p))
    }
}

/// `ggml_vec_dot_f16` / `_f32` of ggml's AVX-512 build (`ggml_x86::f16_vec_dot16`): four
/// accumulators of 16 lanes over steps of 64 elements, reduced `(s0 + s2) + (s1 + s3)`, then
/// `_mm512_reduce_add_ps`; the leftovers as `vec_dot_leftovers`.
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2, FMA and what the loads use; `w` and `a` must point to `n`
/// readable elements.
#[inline(always)]
unsafe fn vec_dot_ggml_avx512<const ES: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    load16: impl Fn(*const u8) -> __m512,
    load1: impl Fn(*const u8) -> f32,
) -> f32 {
    // SAFETY: the caller guarantees the features and that every element read (i < n) is in range.
    unsafe {
        let np = n / 64 * 64;
        let mut acc = [_mm512_setzero_ps(); 4];
        for i in (0..np).step_by(64) {
            for (j, s) in acc.iter_mut().enumerate() {
                let o = ES * (i + 16 * j);
                *s = _mm512_fmadd_ps(load16(w.add(o)), load16(a.add(o)), *s);
            }
        }
        let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        vec_dot_leftovers::<ES, 16>(hsum_ps512(v), np, n, w, a, load1)
    }
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves added, then `hsum_ps`'s halving tree.
///
/// # Safety
/// The CPU must support AVX-512 F and AVX2 (it only computes on registers).
#[inline(always)]
pub(super) unsafe fn hsum_ps512(v: __m512) -> f32 {
    // SAFETY: register-only operations; the caller guarantees the features.
    unsafe {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        hsum_ps(_mm256_add_ps(hi, _mm512_castps512_ps256(v)))
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features; `p..p+32` must be readable.
unsafe fn bf16x16(p: *const u8) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)), 16))
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_bf16_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        while i + 32 <= n {
            for (k, ak) in acc.iter_mut().enumerate() {
                let o = 2 * (i + 16 * k);
                *ak = _mm512_fmadd_ps(bf16x16(w.add(o)), bf16x16(a.add(o)), *ak);
            }
            i += 32;
        }
        let s = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
        s + dot_bf16_avx2(n - i, w.add(2 * i), a.add(2 * i))
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_f32_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the contract above; each load reads inside the checked rows.
    unsafe {
        vec_dot_ggml_avx512::<4>(n, w, a, |p| _mm512_loadu_ps(p as *const f32), |p| (p as *const f32).read_unaligned())
    }
}
