//! Multi-token tiles (`TileFn`, prompt processing) of the grid i-quants with Q8_K: IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
//!
//! The single-token dots (`iq.rs`) spend most of their time decoding a weight block (grid points
//! gathered from tables, sign bits expanded, scales unpacked) and little on the `maddubs` with the
//! activations; a prompt's per-pair path decodes every weight block once per token. Here each
//! 32-element group of a weight row is decoded ONCE per tile and applied to up to `TILE_T` tokens.
//!
//! Each grid i-quant has two orders (`types::BatchDot`): llama.cpp's `vec_dot` (batches below 8
//! tokens) and its tiled GEMM's (from 8 on), and tiles for each. Per (row, token) pair the tiles
//! keep the order of their dot: the `vec_dot`-order tiles (`grid_row`, TILED = false) the same
//! integer steps (`iq::signed_dot32` / `iq::iq1_dot32`), the same f32 update per super-block
//! (`acc = fma(d_x·d_y, f32(lanes), acc)`), the same final `hsum_float_8` and scale; the tiled-order
//! tiles the same exact per-block `isum` (AVX2: the same lanes; AVX-512: computed with `dpbusd`, see
//! `grid_row_vnni`) and the same `acc = fma(f32(isum)·(d_x·f), d_y, acc)`. So every result is
//! bit-identical to its dot per pair (tests/batch_tiles.rs `batch_tiles_match_pairwise_dots`,
//! raw activations with −128 included). The group decoders below mirror the dots' `iq::lanes_*`
//! (which share the integer helpers): if a dot's order changes, that test names the tile to
//! follow it.

// Index loops over tokens mirror the register arrays they fill (`acc[t]`, `lanes[t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_epi32, hsum_ps};
use super::iq::{iq1_dot32, ksigns32, sign_bits32, signed_dot32, u16_at};
use crate::kernels::types::{TileFn, TILE, TILE_T};
use crate::quant::iq::IQ1S_DELTA;
use crate::quant::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS64};
use crate::quant::QK_K;

/// `row_tile_entry!(name, inner[::<G..>], block_elems, weight_block_bytes, act_block_bytes)`: a
/// `TileFn` that checks the tile shape and row lengths, then runs `inner::<T, G..>(nb, row, a,
/// a_stride)` (one weight row of `nb` blocks against `T` activation rows) for each of the `nr` rows.
macro_rules! row_tile_entry {
    ($name:ident, $inner:ident $(::<$($g:tt),*>)?, $bs:expr, $wts:expr, $ats:expr) => {
        fn $name(
            n: usize,
            w: &[u8],
            w_stride: usize,
            nr: usize,
            a: &[u8],
            a_stride: usize,
            nt: usize,
        ) -> [[f32; TILE_T]; TILE] {
            let nb = n / $bs;
            assert!((1..=TILE).contains(&nr) && (1..=TILE_T).contains(&nt), "tile shape {nr}x{nt}");
            assert!(
                w.len() >= (nr - 1) * w_stride + nb * $wts && a.len() >= (nt - 1) * a_stride + nb * $ats,
                "tile: rows too short"
            );
            let mut out = [[0f32; TILE_T]; TILE];
            for (r, o) in out.iter_mut().enumerate().take(nr) {
                let (x, a) = (w[r * w_stride..].as_ptr(), a.as_ptr());
                // SAFETY: reachable only through the x86 table that detected `inner`'s target
                // features (AVX2, FMA, F16C; AVX-512 F/BW/VL for the AVX-512 tiles); the bytes read (nb weight blocks of row r, nb activation blocks of each of nt rows) are
                // within the lengths checked above.
                *o = unsafe {
                    match nt {
                        8 => $inner::<8 $($(, $g)*)?>(nb, x, a, a_stride),
                        7 => $inner::<7 $($(, $g)*)?>(nb, x, a, a_stride),
                        6 => $inner::<6 $($(, $g)*)?>(nb, x, a, a_stride),
                        5 => $inner::<5 $($(, $g)*)?>(nb, x, a, a_stride),
                        4 => $inner::<4 $($(, $g)*)?>(nb, x, a, a_stride),
                        3 => $inner::<3 $($(, $g)*)?>(nb, x, a, a_stride),
                        2 => $inner::<2 $($(, $g)*)?>(nb, x, a, a_stride),
                        _ => $inner::<1 $($(, $g)*)?>(nb, x, a, a_stride),
                    }
                };
            }
            out
        }
    };
}

row_tile_entry!(tile_iq2_xxs_entry, tile_iq2_xxs::<false>, QK_K, 66, 292);
row_tile_entry!(tile_iq2_xs_entry, tile_iq2_xs::<false>, QK_K, 74, 292);
row_tile_entry!(tile_iq2_s_entry, tile_iq2_s::<false>, QK_K, 82, 292);
row_tile_entry!(tile_iq3_xxs_entry, tile_iq3_xxs::<false>, QK_K, 98, 292);
row_tile_entry!(tile_iq3_s_entry, tile_iq3_s::<false>, QK_K, 110, 292);
row_tile_entry!(tile_iq1_s_entry, tile_iq1_s::<false>, QK_K, 50, 292);
row_tile_entry!(tile_iq1_m_entry, tile_iq1_m::<false>, QK_K, 56, 292);
row_tile_entry!(tiled_iq2_xxs_entry, tile_iq2_xxs::<true>, QK_K, 66, 292);
row_tile_entry!(tiled_iq2_xs_entry, tile_iq2_xs::<true>, QK_K, 74, 292);
row_tile_entry!(tiled_iq2_s_entry, tile_iq2_s::<true>, QK_K, 82, 292);
row_tile_entry!(tiled_iq3_xxs_entry, tile_iq3_xxs::<true>, QK_K, 98, 292);
row_tile_entry!(tiled_iq3_s_entry, tile_iq3_s::<true>, QK_K, 110, 292);
row_tile_entry!(tiled_iq1_s_entry, tile_iq1_s::<true>, QK_K, 50, 292);
row_tile_entry!(tiled_iq1_m_entry, tile_iq1_m::<true>, QK_K, 56, 292);
row_tile_entry!(tiled_iq2_xxs_avx512_entry, tile_iq2_xxs_vnni, QK_K, 66, 292);
row_tile_entry!(tiled_iq2_xs_avx512_entry, tile_iq2_xs_vnni, QK_K, 74, 292);
row_tile_entry!(tiled_iq2_s_avx512_entry, tile_iq2_s_vnni, QK_K, 82, 292);
row_tile_entry!(tiled_iq3_xxs_avx512_entry, tile_iq3_xxs_vnni, QK_K, 98, 292);
row_tile_entry!(tiled_iq3_s_avx512_entry, tile_iq3_s_vnni, QK_K, 110, 292);
row_tile_entry!(tiled_iq1_s_avx512_entry, tile_iq1_s_vnni, QK_K, 50, 292);
row_tile_entry!(tiled_iq1_m_avx512_entry, tile_iq1_m_vnni, QK_K, 56, 292);

/// The grid i-quant tiles in the `vec_dot` order (batches below `BatchDot::min_tokens`):
/// (weight type, kernel), for the AVX2 table (the AVX-512 one inherits them, as it does the dots).
pub(super) const TILES_AVX2: [(crate::quant::GgmlType, TileFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, tile_iq2_xxs_entry),
        (IQ2_XS, tile_iq2_xs_entry),
        (IQ2_S, tile_iq2_s_entry),
        (IQ3_XXS, tile_iq3_xxs_entry),
        (IQ3_S, tile_iq3_s_entry),
        (IQ1_S, tile_iq1_s_entry),
        (IQ1_M, tile_iq1_m_entry),
    ]
};

/// The grid i-quant tiles in llama.cpp's tiled-GEMM order (`BatchDot::tile`, bit-identical to
/// `iq::TILED_AVX2` per pair): (weight type, kernel).
pub(super) const TILED_TILES_AVX2: [(crate::quant::GgmlType, TileFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, tiled_iq2_xxs_entry),
        (IQ2_XS, tiled_iq2_xs_entry),
        (IQ2_S, tiled_iq2_s_entry),
        (IQ3_XXS, tiled_iq3_xxs_entry),
        (IQ3_S, tiled_iq3_s_entry),
        (IQ1_S, tiled_iq1_s_entry),
        (IQ1_M, tiled_iq1_m_entry),
    ]
};

/// The grid i-quant tiles in the tiled-GEMM order for the AVX-512 table (VNNI): (weight type,
/// kernel).
pub(super) const TILED_TILES_AVX512: [(crate::quant::GgmlType, TileFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, tiled_iq2_xxs_avx512_entry),
        (IQ2_XS, tiled_iq2_xs_avx512_entry),
        (IQ2_S, tiled_iq2_s_avx512_entry),
        (IQ3_XXS, tiled_iq3_xxs_avx512_entry),
        (IQ3_S, tiled_iq3_s_avx512_entry),
        (IQ1_S, tiled_iq1_s_avx512_entry),
        (IQ1_M, tiled_iq1_m_avx512_entry),
    ]
};

/// The f32 scale of the Q8_K block at `y`.
///
/// # Safety
/// `y..y+4` must be readable.
#[inline(always)]
pub(super) unsafe fn q8k_d(y: *const u8) -> f32 {
    // SAFETY: the caller guarantees the 4 bytes.
    unsafe { f32::from_le_bytes([*y, *y.add(1), *y.add(2), *y.add(3)]) }
}

/// The IQ2/IQ3 tiles' body: per super-block of the row, each group of 32 decoded once by
/// `group(x, ib32) -> (grid magnitudes, negative-sign mask, i16 scales)` and summed with each
/// token's activations by `signed_dot32` into 8 i32 lanes (the dots' `lanes_*`); then per token the
/// dot's float steps: `vec_dot` order (`iq::sum_iq`, TILED = false): `acc = fma(dx·dy, f32(lanes),
/// acc)`, at the end `f · hsum_float_8(acc)`; tiled-GEMM order (`iq::sum_tiled`, TILED = true):
/// `acc = fma(f32(Σ lanes)·(dx·f), dy, acc)` in one float.
///
/// # Safety
/// `w` must point to `nb` readable weight blocks of `WB` bytes, `a` to `T` rows of `nb` readable
/// Q8_K blocks, `as_` bytes apart; the CPU must support AVX2, FMA and F16C.
#[inline(always)]
unsafe fn grid_row<const T: usize, const WB: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    as_: usize,
    f: f32,
    group: impl Fn(&[u8], usize) -> (__m256i, __m256i, __m256i),
) -> [f32; TILE_T] {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut acc_s = [0f32; T];
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(WB * i), WB);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let mut lanes = [_mm256_setzero_si256(); T];
            for ib32 in 0..8 {
                let (grid, neg, ls) = group(x, ib32);
                for t in 0..T {
                    let q8 = _mm256_loadu_si256(y(t).add(4 + 32 * ib32) as *const __m256i);
                    lanes[t] = _mm256_add_epi32(lanes[t], signed_dot32(grid, neg, q8, ls));
                }
            }
            let dx = f16_load(x.as_ptr());
            for t in 0..T {
                if TILED {
                    acc_s[t] = (hsum_epi32(lanes[t]) as f32 * (dx * f)).mul_add(q8k_d(y(t)), acc_s[t]);
                } else {
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * q8k_d(y(t))), _mm256_cvtepi32_ps(lanes[t]), acc[t]);
                }
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = if TILED { acc_s[t] } else { f * hsum_ps(acc[t]) };
        }
        out
    }
}

/// `grid_tiles!(avx2, avx512, group, block bytes, factor, "type")`: a grid i-quant's tiles over its
/// group decoder: `avx2::<T, TILED>` (`grid_row`, both orders) and `avx512::<T>` (`grid_row_vnni`,
/// the tiled-GEMM order).
macro_rules! grid_tiles {
    ($avx2:ident, $avx512:ident, $group:ident, $wb:expr, $f:expr, $what:literal) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[doc = concat!($what, ": one row × T tokens, per pair as the `vec_dot` (TILED = false) or the tiled-order dot.")]
        ///
        /// # Safety
        /// The CPU must support this function's target features; `w` must point to the `nb`
        /// readable blocks of the weight row, `a` to `T` rows of `nb` readable Q8_K blocks, `as_`
        /// bytes apart.
        unsafe fn $avx2<const T: usize, const TILED: bool>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            as_: usize,
        ) -> [f32; TILE_T] {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { grid_row::<T, $wb, TILED>(nb, w, a, as_, $f, |x, ib32| $group(x, ib32)) }
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[doc = concat!($what, ": one row × T tokens, per pair as the tiled-order dot (AVX-512 VNNI).")]
        ///
        /// # Safety
        /// As the AVX2 tile.
        unsafe fn $avx512<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { grid_row_vnni::<T, $wb>(nb, w, a, as_, $f, |x, ib32| $group(x, ib32)) }
        }
    };
}

grid_tiles!(tile_iq2_xxs, tile_iq2_xxs_vnni, group_iq2_xxs, 66, 0.125, "IQ2_XXS");
grid_tiles!(tile_iq2_xs, tile_iq2_xs_vnni, group_iq2_xs, 74, 0.125, "IQ2_XS");
grid_tiles!(tile_iq2_s, tile_iq2_s_vnni, group_iq2_s, 82, 0.125, "IQ2_S");
grid_tiles!(tile_iq3_xxs, tile_iq3_xxs_vnni, group_iq3_xxs, 98, 0.25, "IQ3_XXS");
grid_tiles!(tile_iq3_s, tile_iq3_s_vnni, group_iq3_s, 110, 1.0, "IQ3_S");

// The group decoders: group `ib32` of super-block `x` as (grid magnitudes, 0xFF where negative,
// i16 scales), as `iq::lanes_*` build them before `signed_dot32`.
// Safety (each): the CPU must support AVX2 (they are inlined into the tiles); `x` is one block.

/// IQ2_XXS group (`iq::lanes_iq2_xxs`).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn group_iq2_xxs(x: &[u8], ib32: usize) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX operations; the caller guarantees the features.
    unsafe {
        let (aux0, aux1) = (
            u16_at(x, 1 + 4 * ib32) as u32 | (u16_at(x, 2 + 4 * ib32) as u32) << 16,
            u16_at(x, 3 + 4 * ib32) as u32 | (u16_at(x, 4 + 4 * ib32) as u32) << 16,
        );
        let g = |l: u32| IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize] as i64;
        let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
        (grid, ksigns32(aux1), _mm256_set1_epi16(2 * (aux1 >> 28) as i16 + 1))
    }
}

/// IQ2_XS group (`iq::lanes_iq2_xs`).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn group_iq2_xs(x: &[u8], ib32: usize) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX operations; the caller guarantees the features.
    unsafe {
        let q = |l: usize| u16_at(x, 1 + 4 * ib32 + l);
        let g = |l: usize| IQ2XS_GRID[(q(l) & 511) as usize] as i64;
        let s = |l: usize| KSIGNS64[(q(l) >> 9) as usize] as i64;
        let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
        let neg = _mm256_set_epi64x(s(3), s(2), s(1), s(0));
        let sc = x[66 + ib32];
        let ls = _mm256_set_m128i(_mm_set1_epi16(2 * (sc >> 4) as i16 + 1), _mm_set1_epi16(2 * (sc & 0xf) as i16 + 1));
        (grid, neg, ls)
    }
}

/// IQ2_S group (`iq::lanes_iq2_s`).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn group_iq2_s(x: &[u8], ib32: usize) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let (qs, signs, qh, scales) = (&x[2..34], &x[34..66], &x[66..74], &x[74..82]);
        let g = |l: usize| IQ2S_GRID[qs[4 * ib32 + l] as usize | ((qh[ib32] as usize) << (8 - 2 * l) & 0x300)] as i64;
        let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
        let s = &signs[4 * ib32..4 * ib32 + 4];
        let neg = sign_bits32(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let sc = scales[ib32];
        let ls = _mm256_set_m128i(_mm_set1_epi16(2 * (sc >> 4) as i16 + 1), _mm_set1_epi16(2 * (sc & 0xf) as i16 + 1));
        (grid, neg, ls)
    }
}

/// IQ3_XXS group (`iq::lanes_iq3_xxs`).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn group_iq3_xxs(x: &[u8], ib32: usize) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX operations; the caller guarantees the features.
    unsafe {
        let (qs, gas) = (&x[2..66], &x[66..98]);
        let g = |k: usize| IQ3XXS_GRID[qs[8 * ib32 + k] as usize] as i32;
        let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
        let s = &gas[4 * ib32..4 * ib32 + 4];
        let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        (grid, ksigns32(aux), _mm256_set1_epi16(2 * (aux >> 28) as i16 + 1))
    }
}

/// IQ3_S group (`iq::lanes_iq3_s`).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
pub(super) unsafe fn group_iq3_s(x: &[u8], ib32: usize) -> (__m256i, __m256i, __m256i) {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let (qs, qh, signs, scales) = (&x[2..66], &x[66..74], &x[74..106], &x[106..110]);
        let h = qh[ib32] as usize;
        let g = |k: usize| IQ3S_GRID[qs[8 * ib32 + k] as usize | ((h << (8 - k)) & 256)] as i32;
        let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
        let s = &signs[4 * ib32..4 * ib32 + 4];
        let neg = sign_bits32(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let ls = _mm256_set1_epi16(2 * ((scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i16 + 1);
        (grid, neg, ls)
    }
}

/// The IQ2/IQ3 tiles' body in the tiled-GEMM order on AVX-512 VNNI: that order needs only each
/// super-block's exact `isum = Σ_e ls·(±g_e)·q8_e` (`iq::sum_tiled` takes it as the sum of
/// `signed_dot32`'s lanes), computed here 64 elements at a time: two groups' positive and negative
/// magnitudes (u8 < 128) `dpbusd`-ed with the activations (4 exact products per i32 lane), their
/// difference times the lane's scale (the i16 scales are equal across each lane, so this is the
/// same `ls·Σ4` that `madd` forms), summed exactly. Then the dot's `acc = fma(f32(isum)·(dx·f), dy,
/// acc)`.
///
/// # Safety
/// As `grid_row`; the CPU must also support AVX-512 F, BW, VL and VNNI.
#[inline(always)]
unsafe fn grid_row_vnni<const T: usize, const WB: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    as_: usize,
    f: f32,
    group: impl Fn(&[u8], usize) -> (__m256i, __m256i, __m256i),
) -> [f32; TILE_T] {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let zero = _mm512_setzero_si512();
        let low16 = _mm256_set1_epi32(0xFFFF);
        let mut acc = [0f32; T];
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(WB * i), WB);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let (mut pos, mut neg, mut ls) = ([zero; 4], [zero; 4], [zero; 4]);
            for m in 0..4 {
                let (g0, n0, l0) = group(x, 2 * m);
                let (g1, n1, l1) = group(x, 2 * m + 1);
                pos[m] = join(_mm256_andnot_si256(n0, g0), _mm256_andnot_si256(n1, g1));
                neg[m] = join(_mm256_and_si256(n0, g0), _mm256_and_si256(n1, g1));
                ls[m] = join(_mm256_and_si256(l0, low16), _mm256_and_si256(l1, low16));
            }
            let dx = f16_load(x.as_ptr());
            for t in 0..T {
                let mut s = zero;
                for m in 0..4 {
                    let q8 = _mm512_loadu_si512(y(t).add(4 + 64 * m) as *const _);
                    let p =
                        _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, pos[m], q8), _mm512_dpbusd_epi32(zero, neg[m], q8));
                    s = _mm512_add_epi32(s, _mm512_mullo_epi32(p, ls[m]));
                }
                let isum = _mm512_reduce_add_epi32(s);
                acc[t] = (isum as f32 * (dx * f)).mul_add(q8k_d(y(t)), acc[t]);
            }
        }
        let mut out = [0f32; TILE_T];
        out[..T].copy_from_slice(&acc);
        out
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_S: the grid part in lanes, the delta part (Σ ±ls·bsums, the same exact integer as the
/// dots', from one `madd` per token); then as `iq::dot_iq1_s` (TILED = false: `hsum_float_8(acc) +
/// 0.125·acc1`) or `iq::tiled_iq1_s` (TILED: `isum = 8·Σ lanes + delta`, `acc = fma(f32(isum)·(dx/8),
/// dy, acc)`).
///
/// # Safety
/// As `tile_iq2_xxs`.
unsafe fn tile_iq1_s<const T: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    as_: usize,
) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (mut accum, mut accum1) = ([_mm256_setzero_ps(); T], [0f32; T]);
        let mut acc_s = [0f32; T];
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(50 * i), 50);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let bsums = |t: usize| y(t).add(260);
            let qs = &x[2..34];
            let mut acc = [_mm256_setzero_si256(); T];
            // ±ls of each 32 elements, twice: the weights of the 16 bsums
            let mut c = [0i16; 16];
            for ib in 0..8 {
                let qh = u16_at(x, 17 + ib);
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | (((qh as usize >> (3 * l)) & 7) << 8)] as i64;
                let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
                let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
                let lsv = _mm256_set1_epi16(ls as i16);
                let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
                c[2 * ib] = (ls * delta) as i16;
                c[2 * ib + 1] = (ls * delta) as i16;
                for t in 0..T {
                    let q8 = _mm256_loadu_si256(y(t).add(4 + 32 * ib) as *const __m256i);
                    acc[t] = _mm256_add_epi32(acc[t], iq1_dot32(grid, q8, lsv));
                }
            }
            let cv = _mm256_loadu_si256(c.as_ptr() as *const __m256i);
            let dx = f16_load(x.as_ptr());
            for t in 0..T {
                // the dot's Σ ls·delta·(bsums[2ib] + bsums[2ib+1]): exact in i32 either way
                // (|ls·delta| ≤ 15, |bsum| ≤ 2^15), summed here by one madd
                let sumi1 = hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256(bsums(t) as *const __m256i), cv));
                if TILED {
                    let isum = 8 * hsum_epi32(acc[t]) + sumi1;
                    acc_s[t] = (isum as f32 * (dx * 0.125)).mul_add(q8k_d(y(t)), acc_s[t]);
                } else {
                    let d = dx * q8k_d(y(t));
                    accum[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc[t]), accum[t]);
                    accum1[t] = d.mul_add(sumi1 as f32, accum1[t]);
                }
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = if TILED { acc_s[t] } else { hsum_ps(accum[t]) + IQ1S_DELTA * accum1[t] };
        }
        out
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_M: grid and delta parts in two sets of lanes per token (`iq::parts_iq1_m`), then as
/// `iq::dot_iq1_m` (TILED = false: `hsum_float_8(acc) + 0.125·hsum_float_8(acc_delta)`) or
/// `iq::tiled_iq1_m` (TILED: `isum = 8·Σ grid lanes + Σ delta lanes`, `acc = fma(f32(isum)·(d/8),
/// dy, acc)`).
///
/// # Safety
/// As `tile_iq2_xxs`.
unsafe fn tile_iq1_m<const T: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    as_: usize,
) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (mut accum1, mut accum2) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
        let mut acc_s = [0f32; T];
        let one = _mm256_set1_epi8(1);
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(56 * i), 56);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let (qs, qh) = (&x[0..32], &x[32..48]);
            let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&x[48..], k));
            let d = crate::quant::iq::iq1m_scale(&sc).to_f32();
            let (mut acc1, mut acc2) = ([_mm256_setzero_si256(); T], [_mm256_setzero_si256(); T]);
            for ib in 0..8 {
                let h = |l: usize| qh[2 * ib + l / 2] as usize;
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | ((h(l) << (8 - 4 * (l % 2))) & 0x700)] as i64;
                let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
                let s = sc[ib / 2] >> (6 * (ib % 2));
                let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
                let ls = _mm256_set_m128i(_mm_set1_epi16(ls2 as i16), _mm_set1_epi16(ls1 as i16));
                let f = |l: usize| {
                    let neg = h(l) & (0x08 << (4 * (l % 2))) != 0;
                    (if l < 2 { ls1 } else { ls2 }) * if neg { -1 } else { 1 }
                };
                // ±ls in both i16 halves of each lane (as `iq::parts_iq1_m`): one madd per token
                let f2 = |l: usize| (f(l) as u16 as u32 * 0x0001_0001) as i32;
                let fv = _mm256_set_epi32(f2(3), f2(3), f2(2), f2(2), f2(1), f2(1), f2(0), f2(0));
                for t in 0..T {
                    let q8 = _mm256_loadu_si256(y(t).add(4 + 32 * ib) as *const __m256i);
                    acc1[t] = _mm256_add_epi32(acc1[t], iq1_dot32(grid, q8, ls));
                    acc2[t] = _mm256_add_epi32(acc2[t], _mm256_madd_epi16(_mm256_maddubs_epi16(one, q8), fv));
                }
            }
            for t in 0..T {
                if TILED {
                    let isum = 8 * hsum_epi32(acc1[t]) + hsum_epi32(acc2[t]);
                    acc_s[t] = (isum as f32 * (d * 0.125)).mul_add(q8k_d(y(t)), acc_s[t]);
                } else {
                    let dv = _mm256_set1_ps(d * q8k_d(y(t)));
                    accum1[t] = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(acc1[t]), accum1[t]);
                    accum2[t] = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(acc2[t]), accum2[t]);
                }
            }
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            out[t] = if TILED { acc_s[t] } else { hsum_ps(accum1[t]) + IQ1S_DELTA * hsum_ps(accum2[t]) };
        }
        out
    }
}

/// `a` and `b` (one 32-byte vector each) as one 64-byte vector.
///
/// # Safety
/// The CPU must support AVX-512 F (inlined into the AVX-512 tiles).
#[inline(always)]
pub(super) unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    // SAFETY: register-only AVX-512 F operations; callers enable the feature.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// IQ1_S in the tiled-GEMM order on AVX-512 VNNI (`iq::tiled_iq1_s`): the grid part's exact
/// `Σ ls·g·q8` from `dpbusd(g + 1, q8) − dpbusd(1, q8)` (the same 4-element sums `iq1_dot32`
/// forms) times each lane's scale, 64 elements a step; the delta part as `tile_iq1_s`;
/// `isum = 8·grid + delta`, `acc = fma(f32(isum)·(dx/8), dy, acc)`.
///
/// # Safety
/// As `tile_iq2_xxs`; the CPU must support this function's target features.
unsafe fn tile_iq1_s_vnni<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let zero = _mm512_setzero_si512();
        let (one, one256) = (_mm512_set1_epi8(1), _mm256_set1_epi8(1));
        let mut acc = [0f32; T];
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(50 * i), 50);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let qs = &x[2..34];
            let (mut g1, mut ls) = ([_mm256_setzero_si256(); 8], [_mm256_setzero_si256(); 8]);
            // ±ls of each 32 elements, twice: the weights of the 16 bsums
            let mut c = [0i16; 16];
            for ib in 0..8 {
                let qh = u16_at(x, 17 + ib);
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | (((qh as usize >> (3 * l)) & 7) << 8)] as i64;
                g1[ib] = _mm256_add_epi8(_mm256_set_epi64x(g(3), g(2), g(1), g(0)), one256);
                let l = 2 * ((qh >> 12) & 7) as i32 + 1;
                ls[ib] = _mm256_set1_epi32(l);
                let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
                c[2 * ib] = (l * delta) as i16;
                c[2 * ib + 1] = (l * delta) as i16;
            }
            let gm: [__m512i; 4] = std::array::from_fn(|m| join(g1[2 * m], g1[2 * m + 1]));
            let lm: [__m512i; 4] = std::array::from_fn(|m| join(ls[2 * m], ls[2 * m + 1]));
            let cv = _mm256_loadu_si256(c.as_ptr() as *const __m256i);
            let dx = f16_load(x.as_ptr());
            for t in 0..T {
                let mut s = zero;
                for m in 0..4 {
                    let q8 = _mm512_loadu_si512(y(t).add(4 + 64 * m) as *const _);
                    let p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, gm[m], q8), _mm512_dpbusd_epi32(zero, one, q8));
                    s = _mm512_add_epi32(s, _mm512_mullo_epi32(p, lm[m]));
                }
                let sumi1 = hsum_epi32(_mm256_madd_epi16(_mm256_loadu_si256(y(t).add(260) as *const __m256i), cv));
                let isum = 8 * _mm512_reduce_add_epi32(s) + sumi1;
                acc[t] = (isum as f32 * (dx * 0.125)).mul_add(q8k_d(y(t)), acc[t]);
            }
        }
        let mut out = [0f32; TILE_T];
        out[..T].copy_from_slice(&acc);
        out
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// IQ1_M in the tiled-GEMM order on AVX-512 VNNI (`iq::tiled_iq1_m`): per lane of 4 elements
/// `dpbusd(g + 1, q8) − dpbusd(1, q8)` (the grid part, times the lane's scale) and `dpbusd(1, q8)`
/// (Σq8, times the lane's ±ls: the delta part), 64 elements a step; `isum = 8·grid + delta`,
/// `acc = fma(f32(isum)·(d/8), dy, acc)`.
///
/// # Safety
/// As `tile_iq2_xxs`; the CPU must support this function's target features.
unsafe fn tile_iq1_m_vnni<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let zero = _mm512_setzero_si512();
        let (one, one256) = (_mm512_set1_epi8(1), _mm256_set1_epi8(1));
        let mut acc = [0f32; T];
        for i in 0..nb {
            let x = std::slice::from_raw_parts(w.add(56 * i), 56);
            let y = |t: usize| a.add(t * as_ + 292 * i);
            let (qs, qh) = (&x[0..32], &x[32..48]);
            let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&x[48..], k));
            let d = crate::quant::iq::iq1m_scale(&sc).to_f32();
            let z = _mm256_setzero_si256();
            let (mut g1, mut ls, mut fv) = ([z; 8], [z; 8], [z; 8]);
            for ib in 0..8 {
                let h = |l: usize| qh[2 * ib + l / 2] as usize;
                let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | ((h(l) << (8 - 4 * (l % 2))) & 0x700)] as i64;
                g1[ib] = _mm256_add_epi8(_mm256_set_epi64x(g(3), g(2), g(1), g(0)), one256);
                let s = sc[ib / 2] >> (6 * (ib % 2));
                let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
                ls[ib] = _mm256_set_epi32(ls2, ls2, ls2, ls2, ls1, ls1, ls1, ls1);
                let f = |l: usize| {
                    let neg = h(l) & (0x08 << (4 * (l % 2))) != 0;
                    (if l < 2 { ls1 } else { ls2 }) * if neg { -1 } else { 1 }
                };
                fv[ib] = _mm256_set_epi32(f(3), f(3), f(2), f(2), f(1), f(1), f(0), f(0));
            }
            let gm: [__m512i; 4] = std::array::from_fn(|m| join(g1[2 * m], g1[2 * m + 1]));
            let lm: [__m512i; 4] = std::array::from_fn(|m| join(ls[2 * m], ls[2 * m + 1]));
            let fm: [__m512i; 4] = std::array::from_fn(|m| join(fv[2 * m], fv[2 * m + 1]));
            for t in 0..T {
                let (mut s1, mut s2) = (zero, zero);
                for m in 0..4 {
                    let q8 = _mm512_loadu_si512(y(t).add(4 + 64 * m) as *const _);
                    let sum4 = _mm512_dpbusd_epi32(zero, one, q8);
                    let p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, gm[m], q8), sum4);
                    s1 = _mm512_add_epi32(s1, _mm512_mullo_epi32(p, lm[m]));
                    s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(sum4, fm[m]));
                }
                let isum = 8 * _mm512_reduce_add_epi32(s1) + _mm512_reduce_add_epi32(s2);
                acc[t] = (isum as f32 * (d * 0.125)).mul_add(q8k_d(y(t)), acc[t]);
            }
        }
        let mut out = [0f32; TILE_T];
        out[..T].copy_from_slice(&acc);
        out
    }
}
