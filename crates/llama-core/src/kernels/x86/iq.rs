//! AVX2 dots of the grid i-quants with Q8_K (`VecDotFn`): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
//! IQ1_S, IQ1_M, in the order of llama.cpp's x86 `ggml_vec_dot_iq*_q8_K` (AVX2 path; its AVX-512
//! build has no own path for these types; the AVX-512 table takes `iq512`'s dots, the same sums): grid points
//! gathered with `_mm256_set_epi64x` / `_mm256_set_epi32` of table entries, sign bytes expanded by
//! `ksigns64` or the byte-shuffle/compare trick, `maddubs` products; per super-block 8 exact i32
//! lanes, `acc = fma(dx·dy, f32(lanes), acc)`, `hsum_float_8` at the end. Bit-identical to
//! `kernels::ggml_x86::grid_iq_lanes` (which quant_ggml.rs checks against llama.cpp's own dot).
//!
//! Unlike llama.cpp's AVX2 code, the signs are not put on the activations with `sign_epi8` (which
//! leaves −128 as −128): the grid magnitudes are split into the positive and the negative elements
//! and the two `maddubs` products subtracted, exact for every activation byte. IQ1's signed grid
//! values {−1, 0, 1} are shifted to {0, 1, 2} and Σq8 (computed here, not taken from `bsums`)
//! subtracted again.

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_epi32, hsum_ps};
use crate::kernels::types::VecDotFn;
use crate::quant::iq::IQ1S_DELTA;
use crate::quant::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS64};
use crate::quant::QK_K;

dot_entry!(dot_iq2_xxs_entry, dot_iq2_xxs, QK_K, 66, 292, "avx2,fma,f16c");
dot_entry!(dot_iq2_xs_entry, dot_iq2_xs, QK_K, 74, 292, "avx2,fma,f16c");
dot_entry!(dot_iq2_s_entry, dot_iq2_s, QK_K, 82, 292, "avx2,fma,f16c");
dot_entry!(dot_iq3_xxs_entry, dot_iq3_xxs, QK_K, 98, 292, "avx2,fma,f16c");
dot_entry!(dot_iq3_s_entry, dot_iq3_s, QK_K, 110, 292, "avx2,fma,f16c");
dot_entry!(dot_iq1_s_entry, dot_iq1_s, QK_K, 50, 292, "avx2,fma,f16c");
dot_entry!(dot_iq1_m_entry, dot_iq1_m, QK_K, 56, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq2_xxs_entry, tiled_iq2_xxs, QK_K, 66, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq2_xs_entry, tiled_iq2_xs, QK_K, 74, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq2_s_entry, tiled_iq2_s, QK_K, 82, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq3_xxs_entry, tiled_iq3_xxs, QK_K, 98, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq3_s_entry, tiled_iq3_s, QK_K, 110, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq1_s_entry, tiled_iq1_s, QK_K, 50, 292, "avx2,fma,f16c");
dot_entry!(tiled_iq1_m_entry, tiled_iq1_m, QK_K, 56, 292, "avx2,fma,f16c");

/// The AVX2 grid i-quant dots: (weight type, kernel).
pub(super) const DOTS_AVX2: [(crate::quant::GgmlType, VecDotFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, dot_iq2_xxs_entry),
        (IQ2_XS, dot_iq2_xs_entry),
        (IQ2_S, dot_iq2_s_entry),
        (IQ3_XXS, dot_iq3_xxs_entry),
        (IQ3_S, dot_iq3_s_entry),
        (IQ1_S, dot_iq1_s_entry),
        (IQ1_M, dot_iq1_m_entry),
    ]
};

/// The grid i-quant dots in the order of llama.cpp's tiled GEMM (batches of 8 tokens or more;
/// `types::BatchDot::dot`): (weight type, kernel).
pub(super) const TILED_AVX2: [(crate::quant::GgmlType, VecDotFn); 7] = {
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

#[target_feature(enable = "avx2")]
/// 32 grid magnitudes `g` (u8 < 128) with signs `neg` (0xFF bytes negate) times 32 activations
/// `q8`, adjacent products summed to 16 × i16 (exact: |pair| ≤ 2·127·128), times the i16 scales
/// `ls` pairwise summed to 8 × i32 (element 4k..4k+3 in lane k).
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn signed_dot32(g: __m256i, neg: __m256i, q8: __m256i, ls: __m256i) -> __m256i {
    let pos = _mm256_maddubs_epi16(_mm256_andnot_si256(neg, g), q8);
    let negp = _mm256_maddubs_epi16(_mm256_and_si256(neg, g), q8);
    _mm256_madd_epi16(_mm256_sub_epi16(pos, negp), ls)
}

#[target_feature(enable = "avx2")]
/// 32 sign bits (4 bytes, bit j of byte l for element 8l+j) as 32 bytes 0xFF (negative) or 0.
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn sign_bits32(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf), bit);
    _mm256_cmpeq_epi8(b, bit)
}

/// `ksigns64` of four 7-bit sign codes (groups 0..4 of 32 elements).
///
/// # Safety
/// The CPU must support AVX (inlined into the AVX2 dots).
#[inline(always)]
pub(super) unsafe fn ksigns32(aux: u32) -> __m256i {
    let s = |l: u32| KSIGNS64[((aux >> (7 * l)) & 127) as usize] as i64;
    // SAFETY: `_mm256_set_epi64x` is AVX; callers are `#[target_feature(enable = "avx2")]`.
    unsafe { _mm256_set_epi64x(s(3), s(2), s(1), s(0)) }
}

/// Prefetches the 128 bytes `super::prefetch_distance()` past `x` (every line of a block of ≤ 128
/// bytes when called once per block): a tg matmul streams its weights from memory and the rows are
/// short (a few hundred bytes), so the hardware prefetcher alone leaves the first loads of each
/// block waiting (`dot_speed_vs_ggml` with `DOT_SPEED_ROWS=200000`, ~100 MB of weights: TQ2_0 ×1.09
/// of llama.cpp's dot without it; rows follow each other, so a prefetch past a row's end fetches
/// the next rows).
///
/// # Safety
/// None beyond SSE (prefetches do not fault, any address is allowed).
#[inline(always)]
pub(super) unsafe fn prefetch_block(x: *const u8) {
    super::prefetch_ahead(x, 128)
}

/// The Q8_K block at `y`: (d, the 256 quants as bytes, the 16 bsums).
///
/// # Safety
/// `y..y+292` must be readable.
#[inline(always)]
pub(super) unsafe fn q8k<'a>(y: *const u8) -> (f32, *const u8, &'a [u8]) {
    // SAFETY: the caller guarantees the 292 bytes of one Q8_K block.
    unsafe {
        let ys = std::slice::from_raw_parts(y, 292);
        (f32::from_le_bytes([ys[0], ys[1], ys[2], ys[3]]), y.add(4), &ys[260..292])
    }
}

#[inline(always)]
pub(super) fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// The body shared by the IQ2/IQ3 dots: `block(x, q8) -> 8 i32 lanes` per super-block,
/// `acc = fma(dx·dy, f32(lanes), acc)`, then `hsum_float_8(acc)` (llama.cpp's order).
///
/// # Safety
/// `w` and `a` must point to `n / 256` readable blocks of `WB` and 292 bytes; the CPU must
/// support AVX2, FMA, F16C and what `block` uses.
#[inline(always)]
pub(super) unsafe fn sum_iq<const WB: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    block: impl Fn(&[u8], *const u8) -> __m256i,
) -> f32 {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            let x = w.add(WB * i);
            prefetch_block(x);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let lanes = block(std::slice::from_raw_parts(x, WB), q8);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(x) * yd), _mm256_cvtepi32_ps(lanes), acc);
        }
        hsum_ps(acc)
    }
}

/// The body shared by the IQ2/IQ3 tiled-order dots: per super-block `isum = Σ lanes` (exact),
/// `acc = fma(f32(isum)·(d_w·f), d_a, acc)` (llama.cpp's tiled GEMM; `f` the type's factor, which
/// its unpacker folds into d_w).
///
/// # Safety
/// As `sum_iq`.
#[inline(always)]
unsafe fn sum_tiled<const WB: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    f: f32,
    block: impl Fn(&[u8], *const u8) -> __m256i,
) -> f32 {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut acc = 0f32;
        for i in 0..n / QK_K {
            let x = w.add(WB * i);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let isum = hsum_epi32(block(std::slice::from_raw_parts(x, WB), q8));
            acc = (isum as f32 * (f16_load(x) * f)).mul_add(yd, acc);
        }
        acc
    }
}

/// Declares a grid i-quant's single-token dot (`f · sum_iq`) and tiled-order dot (`sum_tiled`)
/// over its lanes function.
macro_rules! grid_dots {
    ($dot:ident, $tiled:ident, $lanes:ident, $wb:expr, $f:expr, $what:literal) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        #[doc = concat!($what, " × Q8_K in llama.cpp's `vec_dot` order.")]
        ///
        /// # Safety
        /// The CPU must support this function's target features; `w` and `a` must point to the
        /// readable whole blocks of `n` elements of the weight row and of the activation row (the
        /// table entry checks the row lengths).
        unsafe fn $dot(n: usize, w: *const u8, a: *const u8) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { $f * sum_iq::<$wb>(n, w, a, |x, q8| $lanes(x, q8)) }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        #[doc = concat!($what, " × Q8_K in llama.cpp's tiled GEMM order.")]
        ///
        /// # Safety
        /// As the single-token dot.
        unsafe fn $tiled(n: usize, w: *const u8, a: *const u8) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { sum_tiled::<$wb>(n, w, a, $f, |x, q8| $lanes(x, q8)) }
        }
    };
}

grid_dots!(dot_iq2_xxs, tiled_iq2_xxs, lanes_iq2_xxs, 66, 0.125, "IQ2_XXS");
grid_dots!(dot_iq2_xs, tiled_iq2_xs, lanes_iq2_xs, 74, 0.125, "IQ2_XS");
grid_dots!(dot_iq2_s, tiled_iq2_s, lanes_iq2_s, 82, 0.125, "IQ2_S");
grid_dots!(dot_iq3_xxs, tiled_iq3_xxs, lanes_iq3_xxs, 98, 0.25, "IQ3_XXS");
grid_dots!(dot_iq3_s, tiled_iq3_s, lanes_iq3_s, 110, 1.0, "IQ3_S");

/// IQ2_XXS super-block `x` × the Q8_K quants at `q8`: 8 exact i32 lanes (`sum_iq`'s `block`).
///
/// # Safety
/// The CPU must support AVX2 (inlined into the AVX2 dots); `q8..q8+256` must be readable.
#[inline(always)]
unsafe fn lanes_iq2_xxs(x: &[u8], q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let mut acc = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let (aux0, aux1) = (
                u16_at(x, 1 + 4 * ib32) as u32 | (u16_at(x, 2 + 4 * ib32) as u32) << 16,
                u16_at(x, 3 + 4 * ib32) as u32 | (u16_at(x, 4 + 4 * ib32) as u32) << 16,
            );
            let g = |l: u32| IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let y = _mm256_loadu_si256(q8.add(32 * ib32) as *const __m256i);
            let ls = _mm256_set1_epi16(2 * (aux1 >> 28) as i16 + 1);
            acc = _mm256_add_epi32(acc, signed_dot32(grid, ksigns32(aux1), y, ls));
        }
        acc
    }
}

/// IQ2_XS lanes (as `lanes_iq2_xxs`).
///
/// # Safety
/// As `lanes_iq2_xxs`.
#[inline(always)]
unsafe fn lanes_iq2_xs(x: &[u8], q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let mut acc = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let q = |l: usize| u16_at(x, 1 + 4 * ib32 + l);
            let g = |l: usize| IQ2XS_GRID[(q(l) & 511) as usize] as i64;
            let s = |l: usize| KSIGNS64[(q(l) >> 9) as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let neg = _mm256_set_epi64x(s(3), s(2), s(1), s(0));
            let sc = x[66 + ib32];
            let ls =
                _mm256_set_m128i(_mm_set1_epi16(2 * (sc >> 4) as i16 + 1), _mm_set1_epi16(2 * (sc & 0xf) as i16 + 1));
            let y = _mm256_loadu_si256(q8.add(32 * ib32) as *const __m256i);
            acc = _mm256_add_epi32(acc, signed_dot32(grid, neg, y, ls));
        }
        acc
    }
}

/// IQ2_S lanes (as `lanes_iq2_xxs`).
///
/// # Safety
/// As `lanes_iq2_xxs`.
#[inline(always)]
unsafe fn lanes_iq2_s(x: &[u8], q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (qs, signs, qh, scales) = (&x[2..34], &x[34..66], &x[66..74], &x[74..82]);
        let mut acc = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let g =
                |l: usize| IQ2S_GRID[qs[4 * ib32 + l] as usize | ((qh[ib32] as usize) << (8 - 2 * l) & 0x300)] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let s = &signs[4 * ib32..4 * ib32 + 4];
            let neg = sign_bits32(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            let sc = scales[ib32];
            let ls =
                _mm256_set_m128i(_mm_set1_epi16(2 * (sc >> 4) as i16 + 1), _mm_set1_epi16(2 * (sc & 0xf) as i16 + 1));
            let y = _mm256_loadu_si256(q8.add(32 * ib32) as *const __m256i);
            acc = _mm256_add_epi32(acc, signed_dot32(grid, neg, y, ls));
        }
        acc
    }
}

/// IQ3_XXS lanes (as `lanes_iq2_xxs`).
///
/// # Safety
/// As `lanes_iq2_xxs`.
#[inline(always)]
unsafe fn lanes_iq3_xxs(x: &[u8], q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (qs, gas) = (&x[2..66], &x[66..98]);
        let mut acc = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let g = |k: usize| IQ3XXS_GRID[qs[8 * ib32 + k] as usize] as i32;
            let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
            let s = &gas[4 * ib32..4 * ib32 + 4];
            let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let ls = _mm256_set1_epi16(2 * (aux >> 28) as i16 + 1);
            let y = _mm256_loadu_si256(q8.add(32 * ib32) as *const __m256i);
            acc = _mm256_add_epi32(acc, signed_dot32(grid, ksigns32(aux), y, ls));
        }
        acc
    }
}

/// IQ3_S lanes (as `lanes_iq2_xxs`).
///
/// # Safety
/// As `lanes_iq2_xxs`.
#[inline(always)]
unsafe fn lanes_iq3_s(x: &[u8], q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (qs, qh, signs, scales) = (&x[2..66], &x[66..74], &x[74..106], &x[106..110]);
        let mut acc = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let h = qh[ib32] as usize;
            let g = |k: usize| IQ3S_GRID[qs[8 * ib32 + k] as usize | ((h << (8 - k)) & 256)] as i32;
            let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
            let s = &signs[4 * ib32..4 * ib32 + 4];
            let neg = sign_bits32(u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            let ls = _mm256_set1_epi16(2 * ((scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i16 + 1);
            let y = _mm256_loadu_si256(q8.add(32 * ib32) as *const __m256i);
            acc = _mm256_add_epi32(acc, signed_dot32(grid, neg, y, ls));
        }
        acc
    }
}

#[target_feature(enable = "avx2")]
/// Σ g·q8 over 32 elements of signed grid bytes g ∈ {−1, 0, 1} (gathered in `grid`), as
/// maddubs(g + 1, q8) − maddubs(1, q8) (both exact in i16), times the i16 scales `ls` pairwise
/// summed to 8 × i32.
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
pub(super) unsafe fn iq1_dot32(grid: __m256i, q8: __m256i, ls: __m256i) -> __m256i {
    let one = _mm256_set1_epi8(1);
    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(_mm256_add_epi8(grid, one), q8), _mm256_maddubs_epi16(one, q8));
    _mm256_madd_epi16(p, ls)
}

/// One IQ1_S super-block `x` × a Q8_K block: the grid part in 8 exact i32 lanes, and the exact
/// delta part Σ ±ls·(Σq8 of each 32, from `bsums`) without the 1/8.
///
/// # Safety
/// The CPU must support AVX2 (inlined into the AVX2 dots); `q8..q8+256` must be readable.
#[inline(always)]
unsafe fn parts_iq1_s(x: &[u8], q8: *const u8, bsums: &[u8]) -> (__m256i, i32) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (qs, mut acc, mut sumi1) = (&x[2..34], _mm256_setzero_si256(), 0i32);
        for ib in 0..8 {
            let qh = u16_at(x, 17 + ib);
            let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | (((qh as usize >> (3 * l)) & 7) << 8)] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
            let y = _mm256_loadu_si256(q8.add(32 * ib) as *const __m256i);
            acc = _mm256_add_epi32(acc, iq1_dot32(grid, y, _mm256_set1_epi16(ls as i16)));
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            sumi1 += ls * delta * (u16_at(bsums, 2 * ib) as i16 as i32 + u16_at(bsums, 2 * ib + 1) as i16 as i32);
        }
        (acc, sumi1)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_S × Q8_K: the grid part in lanes, the delta part from `bsums` in one float
/// (`acc1 = fma(d, f32(Σ ±ls·bsums), acc1)`), `hsum_float_8(acc) + 0.125·acc1`.
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq1_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (mut accum, mut accum1) = (_mm256_setzero_ps(), 0f32);
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(50 * i), 50);
            prefetch_block(x.as_ptr());
            let (yd, q8, bsums) = q8k(a.add(292 * i));
            let (acc, sumi1) = parts_iq1_s(x, q8, bsums);
            let d = f16_load(x.as_ptr()) * yd;
            accum = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accum);
            accum1 = d.mul_add(sumi1 as f32, accum1);
        }
        hsum_ps(accum) + IQ1S_DELTA * accum1
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_S × Q8_K in llama.cpp's tiled GEMM order: per super-block the exact
/// `isum = 8·Σ lanes + Σ ±ls·bsums` (its weights are 8·g ± 1), `acc = fma(f32(isum)·(d_w/8), d_a, acc)`.
///
/// # Safety
/// As `dot_iq1_s`.
unsafe fn tiled_iq1_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = 0f32;
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(50 * i), 50);
            let (yd, q8, bsums) = q8k(a.add(292 * i));
            let (lanes, sumi1) = parts_iq1_s(x, q8, bsums);
            let isum = 8 * hsum_epi32(lanes) + sumi1;
            acc = (isum as f32 * (f16_load(x.as_ptr()) * 0.125)).mul_add(yd, acc);
        }
        acc
    }
}

/// One IQ1_M super-block `x` × the Q8_K quants at `q8`: the grid part and the delta part
/// (Σq8 per 4 elements times ±ls, without the 1/8) in two sets of 8 exact i32 lanes, and the
/// block's scale.
///
/// # Safety
/// The CPU must support AVX2 (inlined into the AVX2 dots); `q8..q8+256` must be readable.
#[inline(always)]
unsafe fn parts_iq1_m(x: &[u8], q8: *const u8) -> (__m256i, __m256i, f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let one = _mm256_set1_epi8(1);
        let (qs, qh) = (&x[0..32], &x[32..48]);
        let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&x[48..], k));
        let d = crate::quant::iq::iq1m_scale(&sc).to_f32();
        let (mut acc1, mut acc2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for ib in 0..8 {
            let h = |l: usize| qh[2 * ib + l / 2] as usize;
            let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | ((h(l) << (8 - 4 * (l % 2))) & 0x700)] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let s = sc[ib / 2] >> (6 * (ib % 2));
            let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
            let ls = _mm256_set_m128i(_mm_set1_epi16(ls2 as i16), _mm_set1_epi16(ls1 as i16));
            let y = _mm256_loadu_si256(q8.add(32 * ib) as *const __m256i);
            acc1 = _mm256_add_epi32(acc1, iq1_dot32(grid, y, ls));
            // delta part: Σq8 per 4 elements (lanes 2l, 2l+1 hold group l) times ±ls
            let f = |l: usize| {
                let neg = h(l) & (0x08 << (4 * (l % 2))) != 0;
                (if l < 2 { ls1 } else { ls2 }) * if neg { -1 } else { 1 }
            };
            // ±ls in both i16 halves of each lane: one madd forms ±ls·(Σ2 + Σ2) = ±ls·Σ4 exactly
            // (|Σ2| ≤ 256, |ls| ≤ 15), the same lanes as Σ4 times ±ls in i32
            let f2 = |l: usize| (f(l) as u16 as u32 * 0x0001_0001) as i32;
            let fv = _mm256_set_epi32(f2(3), f2(3), f2(2), f2(2), f2(1), f2(1), f2(0), f2(0));
            acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_maddubs_epi16(one, y), fv));
        }
        (acc1, acc2, d)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_M × Q8_K: grid and delta parts (Σq8 per 4 elements times ±ls) in two sets of lanes,
/// `hsum_float_8(acc) + 0.125·hsum_float_8(acc_delta)`.
///
/// # Safety
/// As `dot_iq1_s`.
unsafe fn dot_iq1_m(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (mut accum1, mut accum2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(56 * i), 56);
            prefetch_block(x.as_ptr());
            let (yd, q8, _) = q8k(a.add(292 * i));
            let (acc1, acc2, d) = parts_iq1_m(x, q8);
            let d = _mm256_set1_ps(d * yd);
            accum1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc1), accum1);
            accum2 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc2), accum2);
        }
        hsum_ps(accum1) + IQ1S_DELTA * hsum_ps(accum2)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// IQ1_M × Q8_K in llama.cpp's tiled GEMM order: per super-block the exact
/// `isum = 8·Σ grid lanes + Σ delta lanes`, `acc = fma(f32(isum)·(d_w/8), d_a, acc)`.
///
/// # Safety
/// As `dot_iq1_s`.
unsafe fn tiled_iq1_m(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let mut acc = 0f32;
        for i in 0..n / QK_K {
            let x = std::slice::from_raw_parts(w.add(56 * i), 56);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let (acc1, acc2, d) = parts_iq1_m(x, q8);
            let isum = 8 * hsum_epi32(acc1) + hsum_epi32(acc2);
            acc = (isum as f32 * (d * 0.125)).mul_add(yd, acc);
        }
        acc
    }
}
