//! Multi-token tiles (`TileFn`, prompt processing) of TQ1_0 and TQ2_0 with Q8_K: each weight block's
//! trits are unpacked (base-3 digits extracted with `tq::times9` / `tq::top_trit`, or 2-bit fields
//! masked) ONCE per tile and multiplied with up to `TILE_T` tokens' activations. Per (row, token) pair
//! the operations are those of `tq::dot_tq1_0_avx2` / `tq::dot_tq2_0_avx2` in their order (the same
//! 16-bit sums, `tq::fold` per block, `hsum_float_8`), so results are bit-identical to the table's
//! `vec_dot` (tests/batch_tiles.rs `batch_tiles_match_pairwise_dots`).

// Index loops over tokens mirror the register arrays they fill (`acc[t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::dot::hsum_ps;
use super::tq::{fold, times9, top_trit};
use crate::kernels::types::{TileFn, TILE, TILE_T};
use crate::quant::QK_K;

row_tile_entry!(tile_tq1_0_entry, tile_tq1_0, QK_K, 54, 292);
row_tile_entry!(tile_tq2_0_entry, tile_tq2_0, QK_K, 66, 292);
row_tile_entry!(tile_tq1_0_avx512_entry, tile_tq1_0_avx512, QK_K, 54, 292);
row_tile_entry!(tile_tq2_0_avx512_entry, tile_tq2_0_avx512, QK_K, 66, 292);

/// The TQ1_0 tile of the AVX2 table.
pub(super) const TILE_TQ1_0_AVX2: TileFn = tile_tq1_0_entry;
/// The TQ2_0 tile of the AVX2 table.
pub(super) const TILE_TQ2_0_AVX2: TileFn = tile_tq2_0_entry;
/// The TQ1_0 tile of the AVX-512 table (the AVX2 dot's sums, 64 bytes per step).
pub(super) const TILE_TQ1_0_AVX512: TileFn = tile_tq1_0_avx512_entry;
/// The TQ2_0 tile of the AVX-512 table.
pub(super) const TILE_TQ2_0_AVX512: TileFn = tile_tq2_0_avx512_entry;

#[target_feature(enable = "avx2,fma,f16c")]
/// The 256 trits (value + 1) of the TQ1_0 block at `x` as 8 × 32 bytes, in the order
/// `dot_tq1_0_avx2` multiplies them with the activations at offsets 0, 32, …, 224.
///
/// # Safety
/// The CPU must support this function's target features; `x..x+54` must be readable.
unsafe fn tq1_0_trits(x: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // the first 32 bytes of 5 trits
        let q0 = _mm256_loadu_si256(x as *const __m256i);
        let q1 = _mm256_add_epi8(q0, _mm256_add_epi8(q0, q0));
        let q2 = times9(q0);
        let q3 = times9(q1);
        let q4 = times9(q2);
        // the last 16 bytes of 5 trits and the 4 bytes of 4
        let p0 = _mm_loadu_si128(x.add(32) as *const __m128i);
        let qh = u32::from_le_bytes([*x.add(48), *x.add(49), *x.add(50), *x.add(51)]);
        let q5l = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh as i32));
        let p1 = _mm_add_epi8(p0, _mm_add_epi8(p0, p0));
        let m8 = _mm_set1_epi8(-8);
        let p2 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(p0, 3), m8), p0);
        let p3 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(p1, 3), m8), p1);
        let p4 = _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(p2, 3), m8), p2);
        let q5l = _mm256_mullo_epi16(q5l, _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1));
        let q5l = _mm256_and_si256(q5l, _mm256_set1_epi16(0xFF));
        let p5 = _mm_packus_epi16(_mm256_castsi256_si128(q5l), _mm256_extracti128_si256(q5l, 1));
        [
            top_trit(q0),
            top_trit(q1),
            top_trit(q2),
            top_trit(q3),
            top_trit(q4),
            top_trit(_mm256_set_m128i(p1, p0)),
            top_trit(_mm256_set_m128i(p3, p2)),
            top_trit(_mm256_set_m128i(p5, p4)),
        ]
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// One TQ1_0 row × T Q8_K rows.
///
/// # Safety
/// The CPU must support this function's target features; `w` must point to the `nb` readable blocks
/// of the weight row, `a` to `T` rows of `nb` readable Q8_K blocks, `as_` bytes apart.
unsafe fn tile_tq1_0<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mul = _mm256_maddubs_epi16;
        let mut acc = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            let x = w.add(54 * i);
            let tr = tq1_0_trits(x);
            for t in 0..T {
                let y = a.add(t * as_ + 292 * i);
                let ys = |o: usize| _mm256_loadu_si256(y.add(4 + o) as *const __m256i);
                let mut sumi0 = _mm256_add_epi16(mul(tr[0], ys(0)), mul(tr[1], ys(32)));
                let mut sumi1 = _mm256_add_epi16(mul(tr[2], ys(64)), mul(tr[3], ys(96)));
                let mut sumi2 = mul(tr[4], ys(128));
                sumi0 = _mm256_add_epi16(sumi0, mul(tr[5], ys(160)));
                sumi1 = _mm256_add_epi16(sumi1, mul(tr[6], ys(192)));
                sumi2 = _mm256_add_epi16(sumi2, mul(tr[7], ys(224)));
                let ysum = _mm256_loadu_si256(y.add(260) as *const __m256i);
                let s = _mm256_add_epi16(_mm256_sub_epi16(sumi0, ysum), _mm256_add_epi16(sumi1, sumi2));
                acc[t] = fold(acc[t], s, y, x.add(52));
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = hsum_ps(acc[t]);
        }
        out
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// One TQ2_0 row × T Q8_K rows.
///
/// # Safety
/// As `tile_tq1_0`.
unsafe fn tile_tq2_0<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut acc = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            // block_tq2_0: qs [64] @0, d f16 @64; field l of byte j is element 32l + j (of its half)
            let x = w.add(66 * i);
            let fields: [[__m256i; 4]; 2] = std::array::from_fn(|h| {
                let q = _mm256_loadu_si256(x.add(32 * h) as *const __m256i);
                [
                    _mm256_and_si256(q, m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
                    _mm256_and_si256(_mm256_srli_epi16(q, 6), m3),
                ]
            });
            for t in 0..T {
                let y = a.add(t * as_ + 292 * i);
                let (mut sumi0, mut sumi1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for (h, f) in fields.iter().enumerate() {
                    let ys = |l: usize| _mm256_loadu_si256(y.add(4 + 128 * h + 32 * l) as *const __m256i);
                    let q0 = _mm256_maddubs_epi16(f[0], ys(0));
                    let q1 = _mm256_maddubs_epi16(f[1], ys(1));
                    let q2 = _mm256_maddubs_epi16(f[2], ys(2));
                    let q3 = _mm256_maddubs_epi16(f[3], ys(3));
                    sumi0 = _mm256_add_epi16(sumi0, _mm256_add_epi16(q0, q1));
                    sumi1 = _mm256_add_epi16(sumi1, _mm256_add_epi16(q2, q3));
                }
                let ysum = _mm256_loadu_si256(y.add(260) as *const __m256i);
                let s = _mm256_sub_epi16(_mm256_add_epi16(sumi0, sumi1), ysum);
                acc[t] = fold(acc[t], s, y, x.add(64));
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = hsum_ps(acc[t]);
        }
        out
    }
}

/// The AVX-512 TQ tiles' body: the block's 8 × 32 trit bytes paired as 4 × 64 (`decode`: trits
/// for activation bytes 64m..64m+64 in vector m), so each token takes 4 `maddubs` of 64 bytes
/// instead of 8 of 32. The AVX2 dots add their 8 × 16-bit products and subtract `bsums` in 16-bit
/// lanes (wrapping adds, associative): summing the 4 wide products and then the two halves gives
/// the same 16 values bit for bit (the same pairs go through the same `maddubs`), then `tq::fold`
/// and `hsum_float_8` as the dots.
///
/// # Safety
/// `w` must point to `nb` readable weight blocks of `WB` bytes (f16 scale at `D`), `a` to `T` rows
/// of `nb` readable Q8_K blocks, `as_` bytes apart; the CPU must support AVX2, FMA, F16C and
/// AVX-512 F/BW/VL.
#[inline(always)]
unsafe fn tq_row_avx512<const T: usize, const WB: usize, const D: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    as_: usize,
    decode: impl Fn(*const u8) -> [__m512i; 4],
) -> [f32; TILE_T] {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            let x = w.add(WB * i);
            let tr = decode(x);
            for t in 0..T {
                let y = a.add(t * as_ + 292 * i);
                let ys = |m: usize| _mm512_loadu_si512(y.add(4 + 64 * m) as *const _);
                let p01 = _mm512_add_epi16(_mm512_maddubs_epi16(tr[0], ys(0)), _mm512_maddubs_epi16(tr[1], ys(1)));
                let p23 = _mm512_add_epi16(_mm512_maddubs_epi16(tr[2], ys(2)), _mm512_maddubs_epi16(tr[3], ys(3)));
                let p = _mm512_add_epi16(p01, p23);
                let s = _mm256_add_epi16(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64::<1>(p));
                let ysum = _mm256_loadu_si256(y.add(260) as *const __m256i);
                acc[t] = fold(acc[t], _mm256_sub_epi16(s, ysum), y, x.add(D));
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = hsum_ps(acc[t]);
        }
        out
    }
}

/// Two 32-byte vectors as one 64-byte vector (`lo` first).
///
/// # Safety
/// The CPU must support AVX-512 F (inlined into the AVX-512 tiles).
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    // SAFETY: register-only AVX-512 F operations; callers enable the feature.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
/// One TQ1_0 row × T Q8_K rows, 64 activation bytes per step.
///
/// # Safety
/// The CPU must support this function's target features; `w` must point to the `nb` readable blocks
/// of the weight row, `a` to `T` rows of `nb` readable Q8_K blocks, `as_` bytes apart.
unsafe fn tile_tq1_0_avx512<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        tq_row_avx512::<T, 54, 52>(nb, w, a, as_, |x| {
            let tr = tq1_0_trits(x);
            [join(tr[0], tr[1]), join(tr[2], tr[3]), join(tr[4], tr[5]), join(tr[6], tr[7])]
        })
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
/// One TQ2_0 row × T Q8_K rows, 64 activation bytes per step.
///
/// # Safety
/// As `tile_tq1_0_avx512`.
unsafe fn tile_tq2_0_avx512<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        tq_row_avx512::<T, 66, 64>(nb, w, a, as_, |x| {
            // field l of byte j of half h pairs with activation byte 128h + 32l + j
            let f = |h: usize, l: i32| {
                let q = _mm256_loadu_si256(x.add(32 * h) as *const __m256i);
                _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * l)), m3)
            };
            [join(f(0, 0), f(0, 1)), join(f(0, 2), f(0, 3)), join(f(1, 0), f(1, 1)), join(f(1, 2), f(1, 3))]
        })
    }
}
