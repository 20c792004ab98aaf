//! AVX-512 multi-token tiles (prompt processing): R weight rows × T tokens per call, so each
//! expanded weight block and each activation block is loaded once per tile instead of once per
//! (row, token) pair. The per-pair arithmetic and the summation order are those of the single-row
//! kernels (`dot.rs`), so results are bit-identical to them.

// Index loops over tokens and rows mirror the register arrays they fill (`acc[t]`, `acc[r][t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::dot::{dot_q4_0_avx2, dot_q8_0_avx2, f16_load, join, nibbles32, scales2};
use crate::kernels::types::{TileFn, TILE, TILE_T};

/// Safe entry: dispatches the runtime tile shape to a const-generic body.
macro_rules! tile_entry {
    ($name:ident, $inner:ident, $wts:expr) => {
        fn $name(
            n: usize,
            w: &[u8],
            w_stride: usize,
            nr: usize,
            a: &[u8],
            a_stride: usize,
            nt: usize,
        ) -> [[f32; TILE_T]; TILE] {
            let nb = n / 32;
            assert!((1..=TILE).contains(&nr) && (1..=TILE_T).contains(&nt), "tile shape {nr}x{nt}");
            assert!(
                w.len() >= (nr - 1) * w_stride + nb * $wts && a.len() >= (nt - 1) * a_stride + nb * 34,
                "tile: rows too short"
            );
            // tokens in passes of up to TILE (the register tiles below)
            let mut out = [[0f32; TILE_T]; TILE];
            for t0 in (0..nt).step_by(TILE) {
                let nt = TILE.min(nt - t0);
                let (w, a) = (w.as_ptr(), a[t0 * a_stride..].as_ptr());
                // SAFETY: only reachable through `avx512_kernels` (features detected); the bytes read
                // (nr rows of nb weight blocks, nt rows of nb Q8_0 blocks from token t0) are within
                // the checked lengths.
                let res = unsafe {
                    match (nr, nt) {
                        (4, 4) => $inner::<4, 4>(nb, w, w_stride, a, a_stride),
                        (4, 3) => $inner::<4, 3>(nb, w, w_stride, a, a_stride),
                        (4, 2) => $inner::<4, 2>(nb, w, w_stride, a, a_stride),
                        (4, 1) => $inner::<4, 1>(nb, w, w_stride, a, a_stride),
                        (3, 4) => $inner::<3, 4>(nb, w, w_stride, a, a_stride),
                        (3, 3) => $inner::<3, 3>(nb, w, w_stride, a, a_stride),
                        (3, 2) => $inner::<3, 2>(nb, w, w_stride, a, a_stride),
                        (3, 1) => $inner::<3, 1>(nb, w, w_stride, a, a_stride),
                        (2, 4) => $inner::<2, 4>(nb, w, w_stride, a, a_stride),
                        (2, 3) => $inner::<2, 3>(nb, w, w_stride, a, a_stride),
                        (2, 2) => $inner::<2, 2>(nb, w, w_stride, a, a_stride),
                        (2, 1) => $inner::<2, 1>(nb, w, w_stride, a, a_stride),
                        (1, 4) => $inner::<1, 4>(nb, w, w_stride, a, a_stride),
                        (1, 3) => $inner::<1, 3>(nb, w, w_stride, a, a_stride),
                        (1, 2) => $inner::<1, 2>(nb, w, w_stride, a, a_stride),
                        _ => $inner::<1, 1>(nb, w, w_stride, a, a_stride),
                    }
                };
                for (o, r) in out.iter_mut().zip(&res).take(nr) {
                    o[t0..t0 + nt].copy_from_slice(&r[..nt]);
                }
            }
            out
        }
    };
}

tile_entry!(tile_q4_0_avx512_entry, tile_q4_0_avx512, 18);
tile_entry!(tile_q8_0_avx512_entry, tile_q8_0_avx512, 34);

pub(crate) const TILE_Q4_0_AVX512: TileFn = tile_q4_0_avx512_entry;
pub(crate) const TILE_Q8_0_AVX512: TileFn = tile_q8_0_avx512_entry;

/// Two consecutive Q8_0 activation blocks at `y`: (values, per-lane scales, Σ-offset helper input).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
///
/// # Safety
/// The CPU must support this function's target features; `y..y+68` (two Q8_0 blocks) must be
/// readable.
unsafe fn q8_0_pair(y: *const u8) -> (__m512i, __m512) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let v = join(_mm256_loadu_si256(y.add(2) as *const __m256i), _mm256_loadu_si256(y.add(36) as *const __m256i));
        (v, scales2(f16_load(y), f16_load(y.add(34))))
    }
}

/// The tiles of the offset 32-element formats (`wb` weight bytes per block, its f16 scale first):
/// two blocks per step as the single-row AVX-512 dots, `unpack(x0, x1)` giving the two weight blocks
/// as unsigned bytes `q + off` (off = 8 or 128), so each pair sums `Σ (q+off)·y − off·Σy` exactly,
/// `offset` being `off` in every byte; an odd last block goes to `tail` (the AVX2 dot).
#[inline(always)]
///
/// # Safety
/// As the tile kernels; `unpack` reads only the two weight blocks it is given.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_pairs<const R: usize, const T: usize>(
    nb: usize,
    w: *const u8,
    ws: usize,
    a: *const u8,
    as_: usize,
    wb: usize,
    offset: __m512i,
    unpack: impl Fn(*const u8, *const u8) -> __m512i,
    tail: unsafe fn(usize, *const u8, *const u8) -> f32,
) -> [[f32; TILE]; TILE] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut i = 0;
        while i + 2 <= nb {
            let mut yv = [zero; T];
            let mut yoff = [zero; T];
            let mut dy = [_mm512_setzero_ps(); T];
            for t in 0..T {
                let (v, d) = q8_0_pair(a.add(t * as_ + 34 * i));
                yv[t] = v;
                dy[t] = d;
                yoff[t] = _mm512_dpbusd_epi32(zero, offset, v); // off · Σy per 4 lanes
            }
            for r in 0..R {
                let (x0, x1) = (w.add(r * ws + wb * i), w.add(r * ws + wb * i + wb));
                let q = unpack(x0, x1);
                let dx = scales2(f16_load(x0), f16_load(x1));
                for t in 0..T {
                    // Σ (q+off)·y − off·Σy: exactly the lanes of the single-row kernel.
                    let p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, q, yv[t]), yoff[t]);
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dx, dy[t]), acc[r][t]);
                }
            }
            i += 2;
        }
        let mut out = [[0f32; TILE]; TILE];
        for r in 0..R {
            for t in 0..T {
                let mut s = _mm512_reduce_add_ps(acc[r][t]);
                if i < nb {
                    s += tail(32, w.add(r * ws + wb * i), a.add(t * as_ + 34 * i));
                }
                out[r][t] = s;
            }
        }
        out
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` must point to `R` readable weight rows
/// of `nb` blocks, `ws` bytes apart, and `a` to `T` readable Q8_0 rows of `nb` blocks, `as_` bytes
/// apart.
unsafe fn tile_q4_0_avx512<const R: usize, const T: usize>(
    nb: usize,
    w: *const u8,
    ws: usize,
    a: *const u8,
    as_: usize,
) -> [[f32; TILE]; TILE] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        // Q4_0: the nibbles q with q − 8 the value
        let unpack = |x0: *const u8, x1: *const u8| join(nibbles32(x0.add(2)), nibbles32(x1.add(2)));
        tile_pairs::<R, T>(nb, w, ws, a, as_, 18, _mm512_set1_epi8(8), unpack, dot_q4_0_avx2)
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
/// # Safety
/// The CPU must support this function's target features; `w` must point to `R` readable weight rows
/// of `nb` blocks, `ws` bytes apart, and `a` to `T` readable Q8_0 rows of `nb` blocks, `as_` bytes
/// apart.
unsafe fn tile_q8_0_avx512<const R: usize, const T: usize>(
    nb: usize,
    w: *const u8,
    ws: usize,
    a: *const u8,
    as_: usize,
) -> [[f32; TILE]; TILE] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        // Q8_0: x ^ 0x80 = x + 128 as an unsigned byte
        let bias = _mm512_set1_epi8(-128);
        let unpack = |x0: *const u8, x1: *const u8| {
            let xv =
                join(_mm256_loadu_si256(x0.add(2) as *const __m256i), _mm256_loadu_si256(x1.add(2) as *const __m256i));
            _mm512_xor_si512(xv, bias)
        };
        tile_pairs::<R, T>(nb, w, ws, a, as_, 34, bias, unpack, dot_q8_0_avx2)
    }
}
