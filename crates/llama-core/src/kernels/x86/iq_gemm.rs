//! Batch GEMMs (`BatchGemmFn`, prompt processing) of the grid i-quants with Q8_K in llama.cpp's
//! tiled-GEMM order (`types::BatchDot`, `ggml_x86::grid_iq_tiled`), AVX-512 VNNI: IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
//!
//! The tiles (`iq_batch.rs`) decode a weight block once per 8 tokens; decoding a grid i-quant
//! (table gathers, sign expansion, scales) costs far more than its products, so at 512 tokens it
//! dominates. Here one super-block of a band of 16 weight rows is decoded ONCE per call (up to
//! `matmul::GEMM_TOKENS` tokens) into a `Band`: each weight as one unsigned byte `w + 64` (every
//! grid value satisfies |w| ≤ 62, the IQ1 values `8·v ± 1` |w| ≤ 9), laid out rows-in-lanes
//! (`codes[k/4][row][k%4]`), plus the scale of each 16-element sub-block per row. Then every token
//! runs `dpbusd(codes, broadcast(4 activation bytes))`: 16 rows × 4 products per instruction,
//! tokens 8 at a time in registers.
//!
//! Exactness: per (row, token, sub-block) the i32 lane holds `Σ (w + 64)·q − 64·Σ q` = `Σ w·q`
//! exactly (Σ q from the Q8_K `bsums`, which the Q8_K converter makes, as llama.cpp's VNNI tiled
//! kernel does), times the sub-block scale, summed over the super-block: the same integer `isum`
//! as the typed reference. Then per row and token the reference's float steps, 16 rows a vector:
//! `acc = fma(f32(isum)·(d_w·f), d_y, acc)`. So every result is bit-identical to the batch dot
//! (tests/batch_tiles.rs `batch_gemm_matches_batch_dot`).

// Index loops over tokens mirror the register arrays they fill (`s[t]`, `isum[t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::dot::f16_load;
use super::iq::u16_at;
use super::iq_batch::{group_iq2_s, group_iq2_xs, group_iq2_xxs, group_iq3_s, group_iq3_xxs, join, q8k_d};
use crate::kernels::types::{BatchGemmFn, GEMM_ROWS};
use crate::quant::iq_grids::IQ1S_GRID;
use crate::quant::QK_K;

/// Tokens per register block.
const NT: usize = 8;

/// One super-block of a band of `GEMM_ROWS` weight rows, decoded.
#[repr(C, align(64))]
struct Band {
    /// [64 quads of elements][16 rows][4 elements]: `w + 64` (rows past the band's end: 0).
    codes: [[u8; 64]; 64],
    /// [16 sub-blocks of 16 elements][16 rows]: the sub-block scale `ls` (rows past the end: 0).
    ls: [[i32; 16]; 16],
    /// [16 rows]: `d_w · f` (rows past the end: 0).
    dxf: [f32; 16],
}

/// How `band_tokens` applies the sub-block scales (each mode gives the same exact i32 `isum`).
mod sum {
    /// Per sub-block: lanes start at −64·Σq, then `isum += s·ls` (`mullo`).
    pub const RESET: u8 = 0;
    /// As `RESET`, but the sub-block sums fit i16 (IQ1_M: |w| ≤ 9, 16 elements: |s| ≤ 16·9·128), so
    /// `dpwssd(isum, s, ls)` (`s`'s high half is its sign, `ls`'s is 0) does the multiply-add.
    pub const I16: u8 = 1;
}

/// A decoder: group `ib` (32 elements) of super-block `x` as (signed weights `w`, i8 lanes; the
/// scale of its first and of its second 16 elements).
type Dec = unsafe fn(&[u8], usize) -> (__m256i, i32, i32);

/// IQ2/IQ3 groups from the tiles' decoders (grid magnitudes, negative mask, i16 scales).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn signed(g: (__m256i, __m256i, __m256i)) -> (__m256i, i32, i32) {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let (grid, neg, ls) = g;
        let w = _mm256_sub_epi8(_mm256_xor_si256(grid, neg), neg);
        let lo = _mm256_extract_epi16::<0>(ls) as i16 as i32;
        let hi = _mm256_extract_epi16::<8>(ls) as i16 as i32;
        (w, lo, hi)
    }
}

macro_rules! iq23_dec {
    ($name:ident, $group:ident) => {
        /// # Safety
        /// The CPU must support AVX2; `x` is one block.
        #[inline(always)]
        unsafe fn $name(x: &[u8], ib: usize) -> (__m256i, i32, i32) {
            // SAFETY: the caller guarantees the features.
            unsafe { signed($group(x, ib)) }
        }
    };
}
iq23_dec!(dec_iq2_xxs, group_iq2_xxs);
iq23_dec!(dec_iq2_xs, group_iq2_xs);
iq23_dec!(dec_iq2_s, group_iq2_s);
iq23_dec!(dec_iq3_xxs, group_iq3_xxs);
iq23_dec!(dec_iq3_s, group_iq3_s);

/// IQ1_S group: `w = 8·v + delta` (v ∈ {−1, 0, 1} from the grid, delta = ±1 per group).
///
/// # Safety
/// The CPU must support AVX2; `x` is one block.
#[inline(always)]
unsafe fn dec_iq1_s(x: &[u8], ib: usize) -> (__m256i, i32, i32) {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let qs = &x[2..34];
        let qh = u16_at(x, 17 + ib);
        let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | (((qh as usize >> (3 * l)) & 7) << 8)] as i64;
        let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
        let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
        let w = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), _mm256_set1_epi8(delta));
        let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
        (w, ls, ls)
    }
}

/// IQ1_M group: `w = 8·v + delta` (delta = ±1 per 8 elements), scales per 16.
///
/// # Safety
/// The CPU must support AVX2; `x` is one block.
#[inline(always)]
unsafe fn dec_iq1_m(x: &[u8], ib: usize) -> (__m256i, i32, i32) {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let (qs, qh) = (&x[0..32], &x[32..48]);
        let h = |l: usize| qh[2 * ib + l / 2] as usize;
        let g = |l: usize| IQ1S_GRID[qs[4 * ib + l] as usize | ((h(l) << (8 - 4 * (l % 2))) & 0x700)] as i64;
        let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
        let s = u16_at(&x[48..], ib / 2) >> (6 * (ib % 2));
        let (ls1, ls2) = (2 * (s & 7) as i32 + 1, 2 * ((s >> 3) & 7) as i32 + 1);
        let d = |l: usize| if h(l) & (0x08 << (4 * (l % 2))) != 0 { -1i64 } else { 0x0101_0101_0101_0101 };
        let delta = _mm256_set_epi64x(d(3), d(2), d(1), d(0));
        let w = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), delta);
        (w, ls1, ls2)
    }
}

/// The f16 scale at the start of the block.
#[inline(always)]
fn scale_d(x: &[u8]) -> f32 {
    // SAFETY: F16C is part of every table this is reachable from; 2 bytes are in the block.
    unsafe { f16_load(x.as_ptr()) }
}

/// IQ1_M's scale (assembled from the top nibbles of its 4 scale words).
#[inline(always)]
fn scale_iq1_m(x: &[u8]) -> f32 {
    let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&x[48..], k));
    crate::quant::iq::iq1m_scale(&sc).to_f32()
}

/// Decodes super-block `i` of rows `0..nr` (`w_stride` bytes apart, blocks of `wb` bytes) into
/// `band`; rows `nr..16` must already be zero (they stay so).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and AVX2; rows `0..nr` must each have block `i` readable.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn decode_band(
    band: &mut Band,
    w: *const u8,
    w_stride: usize,
    nr: usize,
    i: usize,
    wb: usize,
    f: f32,
    dec: Dec,
    scale: fn(&[u8]) -> f32,
) {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let bias = _mm256_set1_epi8(64);
        let x = |r: usize| std::slice::from_raw_parts(w.add(r * w_stride + wb * i), wb);
        for r in 0..nr {
            band.dxf[r] = scale(x(r)) * f;
        }
        // per 8 rows' lanes of the 8×8 dword transposes: [rows k | rows k+8] per register
        let idx_lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let idx_hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        for ib in 0..8 {
            // c[r]: row r's 32 codes (8 dwords = 8 quads); rows past nr stay 0
            let mut c = [_mm256_setzero_si256(); 16];
            for r in 0..nr {
                let (v, l0, l1) = dec(x(r), ib);
                c[r] = _mm256_add_epi8(v, bias);
                band.ls[2 * ib][r] = l0;
                band.ls[2 * ib + 1][r] = l1;
            }
            // 16 rows × 8 dwords → 8 quads × 16 rows: an 8×8 dword transpose in each 256-bit half
            let z: [__m512i; 8] = std::array::from_fn(|k| join(c[k], c[k + 8]));
            let t = [
                _mm512_unpacklo_epi32(z[0], z[1]),
                _mm512_unpackhi_epi32(z[0], z[1]),
                _mm512_unpacklo_epi32(z[2], z[3]),
                _mm512_unpackhi_epi32(z[2], z[3]),
                _mm512_unpacklo_epi32(z[4], z[5]),
                _mm512_unpackhi_epi32(z[4], z[5]),
                _mm512_unpacklo_epi32(z[6], z[7]),
                _mm512_unpackhi_epi32(z[6], z[7]),
            ];
            let u = [
                _mm512_unpacklo_epi64(t[0], t[2]),
                _mm512_unpackhi_epi64(t[0], t[2]),
                _mm512_unpacklo_epi64(t[1], t[3]),
                _mm512_unpackhi_epi64(t[1], t[3]),
                _mm512_unpacklo_epi64(t[4], t[6]),
                _mm512_unpackhi_epi64(t[4], t[6]),
                _mm512_unpacklo_epi64(t[5], t[7]),
                _mm512_unpackhi_epi64(t[5], t[7]),
            ];
            for q in 0..4 {
                let lo = _mm512_permutex2var_epi64(u[q], idx_lo, u[q + 4]);
                let hi = _mm512_permutex2var_epi64(u[q], idx_hi, u[q + 4]);
                _mm512_store_si512(band.codes[8 * ib + q].as_mut_ptr() as *mut _, lo);
                _mm512_store_si512(band.codes[8 * ib + q + 4].as_mut_ptr() as *mut _, hi);
            }
        }
    }
}

/// The activation dword at byte `at` of a Q8_K block, in every lane (folds into the instruction
/// that uses it as an embedded broadcast).
///
/// # Safety
/// The CPU must support AVX-512 F; `y + at .. y + at + 4` must be readable.
#[inline(always)]
unsafe fn act(y: *const u8, at: usize) -> __m512i {
    // SAFETY: the caller guarantees the range and the features.
    unsafe { _mm512_set1_epi32((y.add(at) as *const i32).read_unaligned()) }
}

/// Adds the products of the band's quads `q0..q1` with each token's activations to `s[t]`.
///
/// # Safety
/// As `band_tokens`.
#[inline(always)]
unsafe fn products<const N: usize>(band: &Band, y: &[*const u8; NT], s: &mut [__m512i; N], q0: usize, q1: usize) {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        for q in q0..q1 {
            let wq = _mm512_load_si512(band.codes[q].as_ptr() as *const _);
            for t in 0..N {
                s[t] = _mm512_dpbusd_epi32(s[t], wq, act(y[t], 4 + 4 * q));
            }
        }
    }
}

/// `N ≤ NT` tokens (`y[t]`: their Q8_K block of this super-block) against a decoded band:
/// `acc[t·16 + r] = fma(f32(isum)·dxf[r], d_y, acc[t·16 + r])`. `SUB`: elements per scale (16 or
/// 32; with 32 both 16-element scales of a pair are equal and one product serves them). `MODE`:
/// how the scales are applied (`sum`).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and AVX2; each `y[t]` must point to a readable Q8_K
/// block (292 bytes); `acc` to `16·N` writable floats.
#[inline(always)]
unsafe fn band_tokens<const N: usize, const SUB: usize, const MODE: u8>(
    band: &Band,
    y: &[*const u8; NT],
    acc: *mut f32,
) {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let zero = _mm512_setzero_si512();
        let mut isum = [zero; N];
        // [token][sub-block]: −64·Σq of each scale's elements (from the bsums), the lanes' start
        let mut corr = [[0i32; 16]; N];
        for t in 0..N {
            let b = _mm256_loadu_si256(y[t].add(260) as *const __m256i);
            if SUB == 32 {
                _mm256_storeu_si256(corr[t].as_mut_ptr() as *mut __m256i, _mm256_madd_epi16(b, _mm256_set1_epi16(-64)));
            } else {
                let c = _mm512_sub_epi32(zero, _mm512_slli_epi32::<6>(_mm512_cvtepi16_epi32(b)));
                _mm512_storeu_si512(corr[t].as_mut_ptr() as *mut _, c);
            }
        }
        for j in 0..QK_K / SUB {
            let mut s: [__m512i; N] = std::array::from_fn(|t| _mm512_set1_epi32(corr[t][j]));
            products(band, y, &mut s, j * SUB / 4, (j + 1) * SUB / 4);
            let l = _mm512_load_si512(band.ls[j * SUB / 16].as_ptr() as *const _);
            for t in 0..N {
                isum[t] = if MODE == sum::I16 {
                    _mm512_dpwssd_epi32(isum[t], s[t], l)
                } else {
                    _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], l))
                };
            }
        }
        let dxf = _mm512_load_ps(band.dxf.as_ptr());
        for t in 0..N {
            let p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dxf);
            let o = acc.add(16 * t);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(p, _mm512_set1_ps(q8k_d(y[t])), _mm512_loadu_ps(o)));
        }
    }
}

/// The batch GEMM body: checks shapes, then per super-block decodes the band once and runs every
/// token through it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn grid_gemm<const SUB: usize, const MODE: u8>(
    n: usize,
    w: &[u8],
    w_stride: usize,
    nr: usize,
    a: &[u8],
    a_stride: usize,
    nt: usize,
    out: &mut [f32],
    wb: usize,
    f: f32,
    dec: Dec,
    scale: fn(&[u8]) -> f32,
) {
    let nb = n / QK_K;
    assert!((1..=GEMM_ROWS).contains(&nr) && nt >= 1, "batch gemm shape {nr}x{nt}");
    assert!(
        w.len() >= (nr - 1) * w_stride + nb * wb && a.len() >= (nt - 1) * a_stride + nb * 292,
        "batch gemm: rows too short"
    );
    assert!(out.len() >= nt * GEMM_ROWS, "batch gemm: output too short");
    out[..nt * GEMM_ROWS].fill(0.0);
    let mut band = Band { codes: [[0; 64]; 64], ls: [[0; 16]; 16], dxf: [0.0; 16] };
    // SAFETY: the caller guarantees the features; the bytes read (nb blocks of each of the nr
    // weight rows and of the nt activation rows) are within the lengths checked above, the
    // writes within out[..nt·16].
    unsafe {
        for i in 0..nb {
            decode_band(&mut band, w.as_ptr(), w_stride, nr, i, wb, f, dec, scale);
            for t0 in (0..nt).step_by(NT) {
                let mut y = [a.as_ptr(); NT];
                for (t, p) in y.iter_mut().enumerate().take(nt - t0) {
                    *p = a.as_ptr().add((t0 + t) * a_stride + 292 * i);
                }
                let acc = out.as_mut_ptr().add(t0 * GEMM_ROWS);
                match nt - t0 {
                    1 => band_tokens::<1, SUB, MODE>(&band, &y, acc),
                    2 => band_tokens::<2, SUB, MODE>(&band, &y, acc),
                    3 => band_tokens::<3, SUB, MODE>(&band, &y, acc),
                    4 => band_tokens::<4, SUB, MODE>(&band, &y, acc),
                    5 => band_tokens::<5, SUB, MODE>(&band, &y, acc),
                    6 => band_tokens::<6, SUB, MODE>(&band, &y, acc),
                    7 => band_tokens::<7, SUB, MODE>(&band, &y, acc),
                    _ => band_tokens::<NT, SUB, MODE>(&band, &y, acc),
                }
            }
        }
    }
}

/// `grid_gemm_entry!(entry, inner, SUB, sum mode, block bytes, f, decoder, scale, "type")`.
macro_rules! grid_gemm_entry {
    ($entry:ident, $inner:ident, $sub:expr, $mode:expr, $wb:expr, $f:expr, $dec:ident, $scale:ident, $what:literal) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[doc = concat!($what, ": the AVX-512 VNNI batch GEMM in the tiled-GEMM order.")]
        ///
        /// # Safety
        /// The CPU must support this function's target features.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $inner(
            n: usize,
            w: &[u8],
            w_stride: usize,
            nr: usize,
            a: &[u8],
            a_stride: usize,
            nt: usize,
            out: &mut [f32],
        ) {
            // SAFETY: the caller guarantees the features.
            unsafe { grid_gemm::<$sub, { $mode }>(n, w, w_stride, nr, a, a_stride, nt, out, $wb, $f, $dec, $scale) }
        }

        #[allow(clippy::too_many_arguments)]
        fn $entry(
            n: usize,
            w: &[u8],
            w_stride: usize,
            nr: usize,
            a: &[u8],
            a_stride: usize,
            nt: usize,
            out: &mut [f32],
        ) {
            // SAFETY: reachable only through the AVX-512 table, which detected these features.
            unsafe { $inner(n, w, w_stride, nr, a, a_stride, nt, out) }
        }
    };
}

grid_gemm_entry!(gemm_iq2_xxs, gemm_iq2_xxs_vnni, 32, sum::RESET, 66, 0.125, dec_iq2_xxs, scale_d, "IQ2_XXS");
grid_gemm_entry!(gemm_iq2_xs, gemm_iq2_xs_vnni, 16, sum::RESET, 74, 0.125, dec_iq2_xs, scale_d, "IQ2_XS");
grid_gemm_entry!(gemm_iq2_s, gemm_iq2_s_vnni, 16, sum::RESET, 82, 0.125, dec_iq2_s, scale_d, "IQ2_S");
grid_gemm_entry!(gemm_iq3_xxs, gemm_iq3_xxs_vnni, 32, sum::RESET, 98, 0.25, dec_iq3_xxs, scale_d, "IQ3_XXS");
grid_gemm_entry!(gemm_iq3_s, gemm_iq3_s_vnni, 32, sum::RESET, 110, 1.0, dec_iq3_s, scale_d, "IQ3_S");
grid_gemm_entry!(gemm_iq1_s, gemm_iq1_s_vnni, 32, sum::RESET, 50, 0.125, dec_iq1_s, scale_d, "IQ1_S");
grid_gemm_entry!(gemm_iq1_m, gemm_iq1_m_vnni, 16, sum::I16, 56, 0.125, dec_iq1_m, scale_iq1_m, "IQ1_M");

/// The grid i-quants' batch GEMMs for the AVX-512 table (`BatchDot::gemm`): (weight type, kernel).
pub(super) const GEMMS_AVX512: [(crate::quant::GgmlType, BatchGemmFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, gemm_iq2_xxs),
        (IQ2_XS, gemm_iq2_xs),
        (IQ2_S, gemm_iq2_s),
        (IQ3_XXS, gemm_iq3_xxs),
        (IQ3_S, gemm_iq3_s),
        (IQ1_S, gemm_iq1_s),
        (IQ1_M, gemm_iq1_m),
    ]
};
