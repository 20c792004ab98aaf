//! AVX-512 VNNI kernels over R16-repacked weights (layout in `repack.rs`).
//!
//! One zmm holds 4 bytes of each of 16 rows; `vpdpbusd` with a broadcast 4-byte activation group
//! adds 4 products into every row's lane, so a block ends with 16 finished row sums in one register:
//! no horizontal adds. The weight registers of a block are unpacked once and reused for up to
//! `MAX_T` tokens (prompt processing); with one token the same code is the matvec of generation.
//!
//! Numerics: each block's integer sum is exact; the float update is `acc += f32(sumi) · (d_w·d_a)`
//! with one fused rounding, in block order (the scalar reference rounds the product separately).

use std::arch::x86_64::*;

use super::repack::{check_gemm_args, GemmR16Fn, MAX_T, Q8_0S_BLOCK, R};
use super::GgmlType;

macro_rules! gemm_entry {
    ($name:ident, $inner:ident, $t:expr) => {
        fn $name(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
            check_gemm_args($t, nb, w, a, a_stride, nt, out, out_stride);
            let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            // SAFETY: reachable only through `avx512_kernels` (features detected at run time); the
            // lengths of the group, the nt activation rows and the nt output rows were checked above.
            unsafe {
                match nt {
                    1 => $inner::<1>(nb, w, a, a_stride, o, out_stride),
                    2 => $inner::<2>(nb, w, a, a_stride, o, out_stride),
                    3 => $inner::<3>(nb, w, a, a_stride, o, out_stride),
                    4 => $inner::<4>(nb, w, a, a_stride, o, out_stride),
                    5 => $inner::<5>(nb, w, a, a_stride, o, out_stride),
                    6 => $inner::<6>(nb, w, a, a_stride, o, out_stride),
                    7 => $inner::<7>(nb, w, a, a_stride, o, out_stride),
                    _ => $inner::<MAX_T>(nb, w, a, a_stride, o, out_stride),
                }
            }
        }
    };
}

gemm_entry!(gemm_q4_0_entry, gemm_q4_0, GgmlType::Q4_0);
gemm_entry!(gemm_q8_0_entry, gemm_q8_0, GgmlType::Q8_0);

pub(crate) const GEMM_Q4_0_AVX512: GemmR16Fn = gemm_q4_0_entry;
pub(crate) const GEMM_Q8_0_AVX512: GemmR16Fn = gemm_q8_0_entry;

/// Broadcast of the 4 activation bytes at `p` (compiles to an embedded `{1to16}` operand).
#[inline(always)]
unsafe fn bcast4(p: *const u8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// Block `b` of token row `y`: (d_a, Σq, pointer to the 32 quants).
#[inline(always)]
unsafe fn act_block(y: *const u8) -> (f32, i32, *const u8) {
    ((y as *const f32).read_unaligned(), (y.add(4) as *const i32).read_unaligned(), y.add(8))
}

/// Finishes token t of a block: `acc += f32(isum) · (d_w · d_a)`.
#[inline(always)]
unsafe fn fold(acc: __m512, isum: __m512i, dw: __m512, da: f32) -> __m512 {
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(da)), acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
unsafe fn gemm_q4_0<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize, out: *mut f32, os: usize) {
    let (scales, quants) = (w, w.add(nb * R * 2));
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(b * R * 2) as *const __m256i));
        let q = quants.add(b * R * 16);
        let mut lo = [_mm512_setzero_si512(); 4];
        let mut hi = [_mm512_setzero_si512(); 4];
        for s in 0..4 {
            let v = _mm512_loadu_si512(q.add(64 * s) as *const _);
            lo[s] = _mm512_and_si512(v, m4);
            hi[s] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        for t in 0..T {
            let (da, sum, y) = act_block(a.add(t * as_ + b * Q8_0S_BLOCK));
            // Two independent chains (low and high nibbles) halve the dependency depth, which
            // bounds the single-token case.
            let mut i0 = _mm512_set1_epi32(-8 * sum);
            let mut i1 = _mm512_setzero_si512();
            for s in 0..4 {
                i0 = _mm512_dpbusd_epi32(i0, lo[s], bcast4(y.add(4 * s)));
                i1 = _mm512_dpbusd_epi32(i1, hi[s], bcast4(y.add(16 + 4 * s)));
            }
            acc[t] = fold(acc[t], _mm512_add_epi32(i0, i1), dw, da);
        }
    }
    for (t, v) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.add(t * os), *v);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,f16c,fma")]
unsafe fn gemm_q8_0<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize, out: *mut f32, os: usize) {
    let (scales, quants) = (w, w.add(nb * R * 2));
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(b * R * 2) as *const __m256i));
        let q = quants.add(b * R * 32);
        let mut v = [_mm512_setzero_si512(); 8];
        for (s, vs) in v.iter_mut().enumerate() {
            *vs = _mm512_loadu_si512(q.add(64 * s) as *const _);
        }
        for t in 0..T {
            let (da, sum, y) = act_block(a.add(t * as_ + b * Q8_0S_BLOCK));
            // weights are stored as x + 128: Σ(x+128)·y − 128·Σy = Σ x·y
            let mut i0 = _mm512_set1_epi32(-128 * sum);
            let mut i1 = _mm512_setzero_si512();
            for s in 0..4 {
                i0 = _mm512_dpbusd_epi32(i0, v[s], bcast4(y.add(4 * s)));
                i1 = _mm512_dpbusd_epi32(i1, v[4 + s], bcast4(y.add(16 + 4 * s)));
            }
            acc[t] = fold(acc[t], _mm512_add_epi32(i0, i1), dw, da);
        }
    }
    for (t, v) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.add(t * os), *v);
    }
}
