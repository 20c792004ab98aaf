//! F16 and F32 weights in prompt processing: register-tiled batch GEMMs (`BatchGemmFn`) in
//! llamafile's tinyBLAS order, which llama.cpp's x86 `mul_mat` runs for these types from 2 tokens
//! (`types::BatchDot`; the reference is `ggml_x86::f16_sgemm16` and its siblings): per output one
//! vector of lanes accumulating `fma(w, a, acc)` over the row in steps of the vector width, then
//! a halving-tree sum.
//!
//! A call (≤ `GEMM_ROWS` weight rows × any number of tokens) widens its F16 weight rows to f32
//! once, then per block of tokens widens their F16 activations once (F32 rows are read in place)
//! and runs every 4-row quad of weights over the block with R × T accumulators in registers: each
//! loaded vector feeds R or T FMAs instead of one, and each output's chain of FMAs is exactly the
//! reference's (the tile shape changes which outputs run side by side, never an output's order).

// Index loops over rows and tokens mirror the register arrays they fill (`acc[t][r]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::dot::hsum_ps;
use crate::kernels::types::{BatchGemmFn, GEMM_ROWS};

/// Weight rows of a register tile (tinyBLAS's RM).
const R: usize = 4;
/// Tokens of an AVX-512 register tile: 4 × 4 accumulators (reduced together, `hsum16x16`),
/// 4 weight vectors and 1 activation vector.
const T512: usize = 4;
/// Tokens of an AVX2 register tile: 4 × 3 accumulators, 3 activation vectors and 1 weight vector
/// of the 16 registers.
const T256: usize = 3;

thread_local! {
    /// Per thread, for one call: its weight rows `[nr][n]` and one token block `[T][n]`, widened.
    static WIDE: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `R × T` outputs over `n` elements (a multiple of 16): weight rows `w + r·ws`, activation rows
/// `a + t·as_` (f32), results to `out[t·GEMM_ROWS + r]`.
///
/// # Safety
/// The CPU must support AVX-512 F; the rows must hold `n` readable floats and `out` the results.
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn tile512<const RR: usize, const T: usize>(
    n: usize,
    w: *const f32,
    ws: usize,
    a: *const f32,
    as_: usize,
    out: *mut f32,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract, which covers every access.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); RR]; T];
        let mut l = 0;
        while l < n {
            let mut wv = [_mm512_setzero_ps(); RR];
            for r in 0..RR {
                wv[r] = _mm512_loadu_ps(w.add(r * ws + l));
            }
            for t in 0..T {
                let av = _mm512_loadu_ps(a.add(t * as_ + l));
                for r in 0..RR {
                    acc[t][r] = _mm512_fmadd_ps(wv[r], av, acc[t][r]);
                }
            }
            l += 16;
        }
        // the 16 accumulators' sums at once (unused ones are zero), output (r, t) in lane 4r + t
        let mut v = [_mm512_setzero_ps(); 16];
        for t in 0..T {
            for r in 0..RR {
                v[4 * t + r] = acc[t][r];
            }
        }
        let mut sums = [0f32; 16];
        _mm512_storeu_ps(sums.as_mut_ptr(), hsum16x16(&v));
        for t in 0..T {
            for r in 0..RR {
                *out.add(t * GEMM_ROWS + r) = sums[4 * r + t];
            }
        }
    }
}

/// `hsum_ps512` of 16 vectors at once, the same tree as pairwise lane additions across registers:
/// lane i + lane i+8 (`shuffle_f32x4` halves), then i + i+4 (quarters), then i + i+2 and i + i+1
/// (`shuffle_ps` within quarters). Lane 4k + m of the result is the sum of `v[4m + k]`.
///
/// # Safety
/// The CPU must support AVX-512 F (it only computes on registers).
#[inline(always)]
unsafe fn hsum16x16(v: &[__m512; 16]) -> __m512 {
    // SAFETY: register-only AVX-512 F operations; the caller guarantees the features.
    unsafe {
        // halves: s[m] lanes 0..8 = v[2m] (i + i+8), lanes 8..16 = v[2m+1]
        let s: [__m512; 8] = std::array::from_fn(|m| {
            let (a, b) = (v[2 * m], v[2 * m + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
        });
        // quarters: u[p] quarter k = v[4p + k] (i + i+4)
        let u: [__m512; 4] = std::array::from_fn(|p| {
            let (a, b) = (s[2 * p], s[2 * p + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
        });
        // pairs (i + i+2): w[q] quarter k = [v[8q+k] ×2, v[8q+4+k] ×2]
        let w: [__m512; 2] = std::array::from_fn(|q| {
            let (a, b) = (u[2 * q], u[2 * q + 1]);
            _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b))
        });
        // last pair (i + i+1): quarter k = [v[k], v[4+k], v[8+k], v[12+k]]
        _mm512_add_ps(_mm512_shuffle_ps::<0x88>(w[0], w[1]), _mm512_shuffle_ps::<0xDD>(w[0], w[1]))
    }
}

/// As `tile512` with 8 lanes (`n` a multiple of 8), activations held and weights streamed.
///
/// # Safety
/// The CPU must support AVX2 and FMA; as `tile512` otherwise.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const RR: usize, const T: usize>(
    n: usize,
    w: *const f32,
    ws: usize,
    a: *const f32,
    as_: usize,
    out: *mut f32,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract, which covers every access.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); RR]; T];
        let mut l = 0;
        while l < n {
            let mut av = [_mm256_setzero_ps(); T];
            for t in 0..T {
                av[t] = _mm256_loadu_ps(a.add(t * as_ + l));
            }
            for r in 0..RR {
                let wv = _mm256_loadu_ps(w.add(r * ws + l));
                for t in 0..T {
                    acc[t][r] = _mm256_fmadd_ps(wv, av[t], acc[t][r]);
                }
            }
            l += 8;
        }
        for t in 0..T {
            for r in 0..RR {
                *out.add(t * GEMM_ROWS + r) = hsum_ps(acc[t][r]);
            }
        }
    }
}

/// Every quad of the `nr` weight rows over one block of `nt ≤ 4` tokens, through `$tile`.
macro_rules! block_fn {
    ($name:ident, $tile:ident, $feat:literal) => {
        /// # Safety
        /// The CPU must support the tile's features; `w` holds `nr` rows of `n` floats `ws` apart,
        /// `a` holds `nt` rows `as_` apart, `out` has room for `nt` rows of `GEMM_ROWS`.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            n: usize,
            w: *const f32,
            ws: usize,
            nr: usize,
            a: *const f32,
            as_: usize,
            nt: usize,
            out: *mut f32,
        ) {
            // SAFETY: each tile reads rows r0..r0+rn ≤ nr and tokens < nt and writes their outputs.
            unsafe {
                for r0 in (0..nr).step_by(R) {
                    let (w, o) = (w.add(r0 * ws), out.add(r0));
                    match ((nr - r0).min(R), nt) {
                        (4, 4) => $tile::<4, 4>(n, w, ws, a, as_, o),
                        (4, 3) => $tile::<4, 3>(n, w, ws, a, as_, o),
                        (4, 2) => $tile::<4, 2>(n, w, ws, a, as_, o),
                        (4, 1) => $tile::<4, 1>(n, w, ws, a, as_, o),
                        (3, 4) => $tile::<3, 4>(n, w, ws, a, as_, o),
                        (3, 3) => $tile::<3, 3>(n, w, ws, a, as_, o),
                        (3, 2) => $tile::<3, 2>(n, w, ws, a, as_, o),
                        (3, 1) => $tile::<3, 1>(n, w, ws, a, as_, o),
                        (2, 4) => $tile::<2, 4>(n, w, ws, a, as_, o),
                        (2, 3) => $tile::<2, 3>(n, w, ws, a, as_, o),
                        (2, 2) => $tile::<2, 2>(n, w, ws, a, as_, o),
                        (2, 1) => $tile::<2, 1>(n, w, ws, a, as_, o),
                        (_, 4) => $tile::<1, 4>(n, w, ws, a, as_, o),
                        (_, 3) => $tile::<1, 3>(n, w, ws, a, as_, o),
                        (_, 2) => $tile::<1, 2>(n, w, ws, a, as_, o),
                        _ => $tile::<1, 1>(n, w, ws, a, as_, o),
                    }
                }
            }
        }
    };
}

block_fn!(block512, tile512, "avx2,fma,avx512f");
block_fn!(block256, tile256, "avx2,fma");

/// `nr` F16 rows `stride` bytes apart → `dst` `[nr][n]` f32 (exact).
///
/// # Safety
/// The CPU must support F16C and AVX2; `n` a multiple of 8; the rows and `dst` hold what they say.
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_f16(n: usize, src: *const u8, stride: usize, nr: usize, dst: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        for r in 0..nr {
            let (s, d) = (src.add(r * stride), dst.add(r * n));
            for l in (0..n).step_by(8) {
                _mm256_storeu_ps(d.add(l), _mm256_cvtph_ps(_mm_loadu_si128(s.add(2 * l) as *const __m128i)));
            }
        }
    }
}

/// The checked entry of every GEMM here: `kn` lanes, tiles of `tb` tokens through `block`,
/// `f16` whether rows are F16 (widened per call) or F32 (read in place).
#[allow(clippy::too_many_arguments)]
fn gemm(
    kn: usize,
    tb: usize,
    f16: bool,
    block: unsafe fn(usize, *const f32, usize, usize, *const f32, usize, usize, *mut f32),
    n: usize,
    w: &[u8],
    ws: usize,
    nr: usize,
    a: &[u8],
    as_: usize,
    nt: usize,
    out: &mut [f32],
) {
    let es = if f16 { 2 } else { 4 };
    assert!(n.is_multiple_of(kn), "sgemm: row length {n} is not a multiple of {kn} (the batch rule excludes it)");
    assert!((1..=GEMM_ROWS).contains(&nr) && out.len() >= nt * GEMM_ROWS, "sgemm: bad tile");
    assert!(w.len() >= (nr - 1) * ws + es * n, "sgemm: weight rows too short");
    if nt == 0 {
        return;
    }
    assert!(a.len() >= (nt - 1) * as_ + es * n, "sgemm: activation rows too short");
    assert!(f16 || (ws.is_multiple_of(4) && as_.is_multiple_of(4)), "sgemm: F32 rows are whole floats apart");
    let (wp, ap, op) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
    if !f16 {
        for t0 in (0..nt).step_by(tb) {
            // SAFETY: this module's tables are handed out only after detecting the features of
            // `block`; the rows read (nr weight rows, tokens t0..t0+tn) and the outputs written lie
            // within the lengths checked above.
            unsafe {
                block(
                    n,
                    wp as *const f32,
                    ws / 4,
                    nr,
                    ap.add(t0 * as_) as *const f32,
                    as_ / 4,
                    tb.min(nt - t0),
                    op.add(t0 * GEMM_ROWS),
                )
            }
        }
        return;
    }
    WIDE.with_borrow_mut(|(wf, af)| {
        wf.resize(nr * n, 0.0);
        af.resize(tb * n, 0.0);
        // SAFETY: as above (every table with these GEMMs has AVX2 and F16C); the widened copies
        // are `[nr][n]` and `[tn][n]`, sized just above.
        unsafe {
            widen_f16(n, wp, ws, nr, wf.as_mut_ptr());
            for t0 in (0..nt).step_by(tb) {
                let tn = tb.min(nt - t0);
                widen_f16(n, ap.add(t0 * as_), as_, tn, af.as_mut_ptr());
                block(n, wf.as_ptr(), n, nr, af.as_ptr(), n, tn, op.add(t0 * GEMM_ROWS));
            }
        }
    });
}

#[allow(clippy::too_many_arguments)] // the `BatchGemmFn` signature
fn gemm_f16_avx512(n: usize, w: &[u8], ws: usize, nr: usize, a: &[u8], as_: usize, nt: usize, out: &mut [f32]) {
    gemm(16, T512, true, block512, n, w, ws, nr, a, as_, nt, out)
}

#[allow(clippy::too_many_arguments)] // the `BatchGemmFn` signature
fn gemm_f32_avx512(n: usize, w: &[u8], ws: usize, nr: usize, a: &[u8], as_: usize, nt: usize, out: &mut [f32]) {
    gemm(16, T512, false, block512, n, w, ws, nr, a, as_, nt, out)
}

#[allow(clippy::too_many_arguments)] // the `BatchGemmFn` signature
fn gemm_f16_avx2(n: usize, w: &[u8], ws: usize, nr: usize, a: &[u8], as_: usize, nt: usize, out: &mut [f32]) {
    gemm(8, T256, true, block256, n, w, ws, nr, a, as_, nt, out)
}

#[allow(clippy::too_many_arguments)] // the `BatchGemmFn` signature
fn gemm_f32_avx2(n: usize, w: &[u8], ws: usize, nr: usize, a: &[u8], as_: usize, nt: usize, out: &mut [f32]) {
    gemm(8, T256, false, block256, n, w, ws, nr, a, as_, nt, out)
}

/// (lanes, F16 GEMM, F32 GEMM) of the AVX-512 table.
pub(crate) const AVX512: (usize, BatchGemmFn, BatchGemmFn) = (16, gemm_f16_avx512, gemm_f32_avx512);
/// (lanes, F16 GEMM, F32 GEMM) of the AVX2 table.
pub(crate) const AVX2: (usize, BatchGemmFn, BatchGemmFn) = (8, gemm_f16_avx2, gemm_f32_avx2);
