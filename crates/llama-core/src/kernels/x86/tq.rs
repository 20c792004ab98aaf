//! TQ1_0 × Q8_K and TQ2_0 × Q8_K dots (`VecDotFn`) in the order of llama.cpp's x86
//! `ggml_vec_dot_tq1_0_q8_K` / `ggml_vec_dot_tq2_0_q8_K` (AVX2 paths; its AVX-512 build runs them
//! too). The trits stay unsigned (t = value + 1, 0..=2): the 16-bit pair sums of t·y minus the
//! activations' 16-element sums (`bsums`) give the exact Σ value·y, per 8 lanes; then
//! `acc = f32(lanes)·d + acc` per block and `hsum_float_8(acc)`.

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_ps};
use super::iq::prefetch_block;
use crate::kernels::types::VecDotFn;
use crate::quant::QK_K;

dot_entry!(dot_tq1_0_avx2_entry, dot_tq1_0_avx2, QK_K, 54, 292, "avx2,fma,f16c");
dot_entry!(dot_tq2_0_avx2_entry, dot_tq2_0_avx2, QK_K, 66, 292, "avx2,fma,f16c");

/// The AVX2 TQ1_0 dot.
pub(super) const DOT_TQ1_0_AVX2: VecDotFn = dot_tq1_0_avx2_entry;
/// The AVX2 TQ2_0 dot.
pub(super) const DOT_TQ2_0_AVX2: VecDotFn = dot_tq2_0_avx2_entry;

#[target_feature(enable = "avx2,fma,f16c")]
/// The top trit of bytes q (already multiplied by 3ⁿ mod 256): ((q · 3) >> 8) computed as ggml
/// does in 8 bits, avg(q − 1, avg(q − 1, 0)) >> 6.
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
#[inline]
pub(super) unsafe fn top_trit(q: __m256i) -> __m256i {
    let q = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
    let q = _mm256_avg_epu8(q, _mm256_avg_epu8(q, _mm256_setzero_si256()));
    _mm256_and_si256(_mm256_srli_epi16(q, 6), _mm256_set1_epi8(3))
}

#[target_feature(enable = "avx2,fma,f16c")]
/// q · 9 mod 256 per byte (ggml: (q << 3 masked to whole bytes) + q).
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
#[inline]
pub(super) unsafe fn times9(q: __m256i) -> __m256i {
    _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16(q, 3), _mm256_set1_epi8(-8)), q)
}

#[target_feature(enable = "avx2,fma,f16c")]
/// The Q8_K scale at `y` times the f16 scale at `d`, and the lanes' exact sums
/// `madd(sumi0 − bsums + sumi1 + sumi2, 1)` folded into `acc` as ggml's build: `fma(f32(lanes), d, acc)`.
///
/// # Safety
/// The CPU must support this function's target features; `y..y+292` and `d..d+2` readable.
#[inline]
pub(super) unsafe fn fold(acc: __m256, sumi: __m256i, y: *const u8, d: *const u8) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let sumi = _mm256_madd_epi16(sumi, _mm256_set1_epi16(1));
        let dy = f32::from_le_bytes([*y, *y.add(1), *y.add(2), *y.add(3)]);
        let d = _mm256_set1_ps(dy * f16_load(d));
        // ggml writes add(mul(..), acc); its build contracts that into an FMA (measured)
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// TQ1_0: trits n of qs[0..32] with y[32n..], of qs[32..48] with y[160 + 16n..], of qh with
/// y[240 + 4n..] (the qh bytes spread to 16-bit lanes and multiplied there, as ggml).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_tq1_0_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            // block_tq1_0: qs [48] @0, qh [4] @48, d f16 @52; block_q8_K: d @0, qs @4, bsums @260
            let (x, y) = (w.add(54 * i), a.add(292 * i));
            prefetch_block(x);
            let ys = |o: usize| _mm256_loadu_si256(y.add(4 + o) as *const __m256i);
            let mul = _mm256_maddubs_epi16;
            // the first 32 bytes of 5 trits
            let q0 = _mm256_loadu_si256(x as *const __m256i);
            let q1 = _mm256_add_epi8(q0, _mm256_add_epi8(q0, q0));
            let q2 = times9(q0);
            let q3 = times9(q1);
            let q4 = times9(q2);
            let mut sumi0 = _mm256_add_epi16(mul(top_trit(q0), ys(0)), mul(top_trit(q1), ys(32)));
            let mut sumi1 = _mm256_add_epi16(mul(top_trit(q2), ys(64)), mul(top_trit(q3), ys(96)));
            let mut sumi2 = mul(top_trit(q4), ys(128));
            // the last 16 bytes of 5 trits and the 4 bytes of 4
            let q0 = _mm_loadu_si128(x.add(32) as *const __m128i);
            let qh = u32::from_le_bytes([*x.add(48), *x.add(49), *x.add(50), *x.add(51)]);
            let q5l = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh as i32));
            let q1 = _mm_add_epi8(q0, _mm_add_epi8(q0, q0));
            let m8 = _mm_set1_epi8(-8);
            let q2 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(q0, 3), m8), q0);
            let q3 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(q1, 3), m8), q1);
            let q4 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(q2, 3), m8), q2);
            let q5l = _mm256_mullo_epi16(q5l, _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1));
            let q5l = _mm256_and_si256(q5l, _mm256_set1_epi16(0xFF));
            let q5 = _mm_packus_epi16(_mm256_castsi256_si128(q5l), _mm256_extracti128_si256(q5l, 1));
            sumi0 = _mm256_add_epi16(sumi0, mul(top_trit(_mm256_set_m128i(q1, q0)), ys(160)));
            sumi1 = _mm256_add_epi16(sumi1, mul(top_trit(_mm256_set_m128i(q3, q2)), ys(192)));
            sumi2 = _mm256_add_epi16(sumi2, mul(top_trit(_mm256_set_m128i(q5, q4)), ys(224)));
            let ysum = _mm256_loadu_si256(y.add(260) as *const __m256i);
            let s = _mm256_add_epi16(_mm256_sub_epi16(sumi0, ysum), _mm256_add_epi16(sumi1, sumi2));
            acc = fold(acc, s, y, x.add(52));
        }
        hsum_ps(acc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// TQ2_0: bits 2l..2l+2 of qs[32j..32j+32] with y[128j + 32l..].
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_tq2_0_avx2(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            let (x, y) = (w.add(66 * i), a.add(292 * i));
            prefetch_block(x);
            acc = fold(acc, block_tq2_0_avx2(x, y), y, x.add(64));
        }
        hsum_ps(acc)
    }
}

/// One TQ2_0 block `x` × the Q8_K block `y` as ggml's AVX2 dot forms it: 16 i16 lanes
/// `Σ t·y − bsums` (wrapping, as ggml's `_mm256_sub_epi16`), before the pairwise `madd`.
///
/// # Safety
/// The CPU must support AVX2; `x..x+66` and `y..y+292` must be readable.
#[inline(always)]
unsafe fn block_tq2_0_avx2(x: *const u8, y: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // block_tq2_0: qs [64] @0, d f16 @64
        let m3 = _mm256_set1_epi8(3);
        let (mut sumi0, mut sumi1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for j in [0usize, 32] {
            let q = _mm256_loadu_si256(x.add(j) as *const __m256i);
            let ys = |l: usize| _mm256_loadu_si256(y.add(4 + 4 * j + 32 * l) as *const __m256i);
            let q0 = _mm256_maddubs_epi16(_mm256_and_si256(q, m3), ys(0));
            let q1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 2), m3), ys(1));
            let q2 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m3), ys(2));
            let q3 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 6), m3), ys(3));
            sumi0 = _mm256_add_epi16(sumi0, _mm256_add_epi16(q0, q1));
            sumi1 = _mm256_add_epi16(sumi1, _mm256_add_epi16(q2, q3));
        }
        let ysum = _mm256_loadu_si256(y.add(260) as *const __m256i);
        _mm256_sub_epi16(_mm256_add_epi16(sumi0, sumi1), ysum)
    }
}

dot_entry!(dot_tq2_0_avx512_entry, dot_tq2_0_avx512, QK_K, 66, 292, "avx512f,avx512bw,avx512vl,avx512vnni");

/// The AVX-512 TQ2_0 dot (bit-identical to the AVX2 one).
pub(super) const DOT_TQ2_0_AVX512: VecDotFn = dot_tq2_0_avx512_entry;

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
/// TQ2_0 with `vpdpbusd`: the same 8 exact i32 lanes as `dot_tq2_0_avx2` (lane k: elements
/// 4k..4k+3 of every 32-element chunk, t·y with t = value + 1, minus bsums 2k and 2k + 1), then its
/// float steps. A zmm of activations covers chunks 2m and 2m + 1; their trits are bits 2l..2l+2
/// of the same 32 weight bytes (broadcast to both halves), taken by one AND with the masks
/// `3 << 2l` of the two halves and left scaled by 4^l: `vpdpbusd` sums them exactly in i32
/// (≤ 4·192·128), and one arithmetic shift per half per block removes the scale exactly. ggml's
/// i16 sums (|Σ t·y| ≤ 8·2·3·128 = 6144 per i16 lane, any weight byte) wrap only when it
/// subtracts a bsum beyond ±(32767 − 6144), which no quantizer makes: such blocks are computed
/// in ggml's i16 form instead, so every input gives ggml's bits.
///
/// # Safety
/// As `dot_tq2_0_avx2`, and the CPU must support AVX-512 F, BW, VL and VNNI.
unsafe fn dot_tq2_0_avx512(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        // chunk pairs (0, 1) and (2, 3) of each 32 weight bytes: trit bits 0..2 | 2..4, 4..6 | 6..8
        let m01 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
        let m23 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x30), _mm256_set1_epi8(0xC0u8 as i8));
        let (s01, s23) = (
            _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi32(2)),
            _mm512_inserti64x4::<1>(_mm512_set1_epi32(4), _mm256_set1_epi32(6)),
        );
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            // block_tq2_0: qs [64] @0, d f16 @64; block_q8_K: d @0, qs @4, bsums @260
            let (x, y) = (w.add(66 * i), a.add(292 * i));
            prefetch_block(x);
            let ys = |m: usize| _mm512_loadu_si512(y.add(4 + 64 * m) as *const _);
            let q0 = _mm512_broadcast_i64x4(_mm256_loadu_si256(x as *const __m256i));
            let q1 = _mm512_broadcast_i64x4(_mm256_loadu_si256(x.add(32) as *const __m256i));
            let z = _mm512_setzero_si512();
            let a01 = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(z, _mm512_and_si512(q0, m01), ys(0)),
                _mm512_and_si512(q1, m01),
                ys(2),
            );
            let a23 = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(z, _mm512_and_si512(q0, m23), ys(1)),
                _mm512_and_si512(q1, m23),
                ys(3),
            );
            let t = _mm512_add_epi32(_mm512_srav_epi32(a01, s01), _mm512_srav_epi32(a23, s23));
            let t = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64::<1>(t));
            let bs = _mm256_loadu_si256(y.add(260) as *const __m256i);
            // ggml subtracts the bsums in i16: that wraps only for |bsum| > 32767 − 6144 (the
            // quantizer's bsums are ≤ 16·128); such blocks take ggml's own i16 form
            let lanes = if _mm256_cmpgt_epu16_mask(_mm256_abs_epi16(bs), _mm256_set1_epi16(32767 - 6144)) == 0 {
                _mm256_sub_epi32(t, _mm256_madd_epi16(bs, ones))
            } else {
                _mm256_madd_epi16(block_tq2_0_avx2(x, y), ones)
            };
            let dy = f32::from_le_bytes([*y, *y.add(1), *y.add(2), *y.add(3)]);
            let d = _mm256_set1_ps(dy * f16_load(x.add(64)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), d, acc);
        }
        hsum_ps(acc)
    }
}
