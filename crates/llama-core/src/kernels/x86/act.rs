//! AVX-512 and AVX2 softmax and SwiGLU: ggml's own vector code (`ggml_v_expf`, `ggml_vec_soft_max_f32`,
//! `ggml_vec_swiglu_f32` of an AVX-512 build), so results equal the scalar emulation in
//! `kernels::elementwise` bit for bit (the kernel tests compare them) while running 16 lanes at a time.

use std::arch::x86_64::*;

use crate::kernels::shared::{swiglu_by, swiglu_check};

/// ggml_v_expf, AVX-512 variant.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn v_expf(x: __m512) -> __m512 {
    let c = |b: u32| _mm512_set1_ps(f32::from_bits(b));
    let r = c(0x4b40_0000);
    let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
    let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if d == 0 {
        return res;
    }
    let alt = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps()),
        _mm512_set1_ps(f32::INFINITY),
        _mm512_setzero_ps(),
    );
    _mm512_mask_blend_ps(d, res, alt)
}

/// `_mm512_reduce_add_ps` as GCC expands it (halves pairwise: 8, then 4, then {0+2, 1+3}, then
/// the two), the order ggml's sums see.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn reduce_add(v: __m512) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let t8 = _mm256_add_ps(_mm512_extractf32x8_ps::<1>(v), _mm512_castps512_ps256(v));
        let t4 = _mm_add_ps(_mm256_extractf128_ps::<1>(t8), _mm256_castps256_ps128(t8));
        let mut l = [0f32; 4];
        _mm_storeu_ps(l.as_mut_ptr(), t4);
        (l[0] + l[2]) + (l[1] + l[3])
    }
}

/// Lanes 0..n of a 16-lane chunk.
#[inline]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        (1u16 << n) - 1
    }
}

#[target_feature(enable = "avx512f,avx512dq,fma")]
/// # Safety
/// The CPU must support AVX-512 F and DQ and FMA.
unsafe fn softmax(x: &mut [f32], scale: f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let n = x.len();
        let p = x.as_mut_ptr();
        let (sv, mut mv) = (_mm512_set1_ps(scale), _mm512_set1_ps(f32::NEG_INFINITY));
        let mut i = 0;
        while i < n {
            let m = lanes(n - i);
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), sv);
            _mm512_mask_storeu_ps(p.add(i), m, v);
            mv = _mm512_mask_max_ps(mv, m, mv, v);
            i += 16;
        }
        let max = _mm512_reduce_max_ps(mv); // exact in any order
        let mut sum = 0.0f64;
        i = 0;
        while i < n {
            // ggml's row is padded with masked (−inf) keys, whose exp is 0: zero lanes here.
            let m = lanes(n - i);
            let e =
                _mm512_maskz_mov_ps(m, v_expf(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), _mm512_set1_ps(max))));
            _mm512_mask_storeu_ps(p.add(i), m, e);
            sum += reduce_add(e) as f64;
            i += 16;
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        i = 0;
        while i < n {
            let m = lanes(n - i);
            _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), inv));
            i += 16;
        }
    }
}

/// `gate = silu(gate) · up` over rows of `n_ff`: 16 lanes with ggml_v_silu, the row's tail as
/// ggml's scalar loop (libm expf).
#[target_feature(enable = "avx512f,avx512dq,fma")]
///
/// # Safety
/// The CPU must support AVX-512 F and DQ and FMA; `gate` and `up` hold whole rows of `n_ff` (up at
/// least as long as gate).
unsafe fn swiglu(gate: &mut [f32], up: &[f32], n_ff: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let one = _mm512_set1_ps(1.0);
        swiglu_by::<16>(gate, up, n_ff, |g, u| {
            let x = _mm512_loadu_ps(g);
            let silu = _mm512_div_ps(x, _mm512_add_ps(one, v_expf(_mm512_sub_ps(_mm512_setzero_ps(), x))));
            _mm512_storeu_ps(g, _mm512_mul_ps(silu, _mm512_loadu_ps(u)));
        })
    }
}

/// Safe entry (`SoftmaxFn`).
fn softmax_entry(x: &mut [f32], scale: f32) {
    // SAFETY: reachable only through the AVX-512 table, which sets it after detecting avx512f (the
    // table requires it), avx512dq and fma (required by the AVX2 table it extends); all accesses
    // are masked to x's length.
    unsafe { softmax(x, scale) }
}

/// Safe entry (`SwigluFn`).
fn swiglu_entry(gate: &mut [f32], up: &[f32], n_ff: usize) {
    swiglu_check(gate, up, n_ff);
    // SAFETY: features as in `softmax_entry`; rows are whole n_ff chunks of both slices.
    unsafe { swiglu(gate, up, n_ff) }
}

/// `x = exp(x − max)` over whole 16-lane vectors, each vector's sum (`_mm512_reduce_add_ps`'s
/// order) added into an f64: `ggml_vec_soft_max_f32` of an AVX-512 build (`ExpSumFn`).
#[target_feature(enable = "avx512f,avx512dq,fma")]
/// # Safety
/// The CPU must support AVX-512 F and DQ and FMA; `x.len()` a multiple of 16.
unsafe fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    // SAFETY: whole 16-float chunks of `x` (length checked by the entry).
    unsafe {
        let mut sum = 0.0f64;
        for c in x.chunks_exact_mut(16) {
            let e = v_expf(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), _mm512_set1_ps(max)));
            _mm512_storeu_ps(c.as_mut_ptr(), e);
            sum += reduce_add(e) as f64;
        }
        sum
    }
}

fn exp_sum_entry(x: &mut [f32], max: f32) -> f64 {
    assert!(x.len().is_multiple_of(16), "exp_sum: whole vectors only");
    // SAFETY: features as in `softmax_entry`; whole chunks of x (checked above).
    unsafe { exp_sum(x, max) }
}

pub(super) const SOFTMAX_AVX512: crate::kernels::types::SoftmaxFn = softmax_entry;
pub(super) const EXP_SUM_AVX512: crate::kernels::types::ExpSumFn = exp_sum_entry;
pub(super) const SWIGLU_AVX512: crate::kernels::types::SwigluFn = swiglu_entry;
// ---- AVX2 ----------------------------------------------------------------------------------------

/// ggml_v_expf, AVX2 variant (vec.h, `__AVX2__ && __FMA__`): the polynomial without its constant
/// term, scaled as `fma(j, 2^n, 2^n)`; |n| > 126 takes the two-factor scaling, |n| > 192 saturates.
/// Elementwise identical to `kernels::elementwise::ggml_expf_avx2`.
#[inline]
#[target_feature(enable = "avx2,fma")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn v_expf_avx2(x: __m256) -> __m256 {
    let c = |b: u32| _mm256_set1_ps(f32::from_bits(b));
    let r = c(0x4b40_0000);
    let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0))));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm256_mul_ps(c(0x3f7f_fff6), b),
    );
    if _mm256_movemask_ps(big) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    _mm256_or_ps(
        _mm256_and_ps(huge, _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(
            huge,
            _mm256_or_ps(
                _mm256_and_ps(big, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                _mm256_andnot_ps(big, _mm256_fmadd_ps(k, j, k)),
            ),
        ),
    )
}

/// ggml's `hsum` of 8 lanes as its AVX2 softmax writes it: hi + lo, `movehl`, `movehdup` + `add_ss`.
#[inline]
#[target_feature(enable = "avx2,fma")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Loads lanes 0..m of `p` (m ≤ 8), the others set to `fill`.
#[inline]
#[target_feature(enable = "avx2,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+m` must be readable.
unsafe fn load_part(p: *const f32, m: usize, fill: f32) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        if m >= 8 {
            return _mm256_loadu_ps(p);
        }
        let mut t = [fill; 8];
        std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), m);
        _mm256_loadu_ps(t.as_ptr())
    }
}

/// Stores lanes 0..m of `v` to `p` (m ≤ 8).
#[inline]
#[target_feature(enable = "avx2,fma")]
///
/// # Safety
/// The CPU must support this function's target features; `p..p+m` must be writable.
unsafe fn store_part(p: *mut f32, m: usize, v: __m256) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        if m >= 8 {
            return _mm256_storeu_ps(p, v);
        }
        let mut t = [0f32; 8];
        _mm256_storeu_ps(t.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(t.as_ptr(), p, m);
    }
}

#[target_feature(enable = "avx2,fma")]
/// `ggml_vec_soft_max_f32` of an AVX2 build over the row after `x * scale`: exponentials 8 at a
/// time from the row's start, each chunk summed by `hsum8` into an f64 sum; a partial last chunk
/// sums as llama.cpp's row padded with masked keys (exp = 0).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
unsafe fn softmax_avx2(x: &mut [f32], scale: f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features); every
    // access is to x[i..i + min(8, n − i)].
    unsafe {
        let n = x.len();
        let p = x.as_mut_ptr();
        let sv = _mm256_set1_ps(scale);
        let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < n {
            let m = n - i;
            let v = _mm256_mul_ps(load_part(p.add(i), m, f32::NEG_INFINITY), sv);
            store_part(p.add(i), m, v);
            mv = _mm256_max_ps(mv, v);
            i += 8;
        }
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), mv);
        let max = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)); // exact in any order
        let mut sum = 0.0f64;
        i = 0;
        while i < n {
            let m = n - i;
            let mut e = v_expf_avx2(_mm256_sub_ps(load_part(p.add(i), m, 0.0), _mm256_set1_ps(max)));
            if m < 8 {
                // lanes past the row: ggml's padding keys (exp = 0)
                let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(m as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                e = _mm256_and_ps(e, _mm256_castsi256_ps(keep));
            }
            store_part(p.add(i), m, e);
            sum += hsum8(e) as f64;
            i += 8;
        }
        let inv = _mm256_set1_ps((1.0 / sum) as f32);
        i = 0;
        while i < n {
            let m = n - i;
            store_part(p.add(i), m, _mm256_mul_ps(load_part(p.add(i), m, 0.0), inv));
            i += 8;
        }
    }
}

#[target_feature(enable = "avx2,fma")]
/// `gate = silu(gate) · up` over rows of `n_ff` as `ggml_vec_swiglu_f32` of an AVX2 build: 8 lanes
/// with ggml_v_silu, the row's tail as ggml's scalar loop (libm expf).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `gate` and `up` hold whole rows of `n_ff` (up at least as
/// long as gate).
unsafe fn swiglu_avx2(gate: &mut [f32], up: &[f32], n_ff: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let one = _mm256_set1_ps(1.0);
        swiglu_by::<8>(gate, up, n_ff, |g, u| {
            let x = _mm256_loadu_ps(g);
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, v_expf_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
            _mm256_storeu_ps(g, _mm256_mul_ps(silu, _mm256_loadu_ps(u)));
        })
    }
}

/// Safe entry (`SoftmaxFn`).
fn softmax_avx2_entry(x: &mut [f32], scale: f32) {
    // SAFETY: reachable only through the AVX2 table, handed out after detecting AVX2 and FMA;
    // every access stays inside x.
    unsafe { softmax_avx2(x, scale) }
}

/// Safe entry (`SwigluFn`).
fn swiglu_avx2_entry(gate: &mut [f32], up: &[f32], n_ff: usize) {
    swiglu_check(gate, up, n_ff);
    // SAFETY: features as in `softmax_avx2_entry`; rows are whole n_ff chunks of both slices.
    unsafe { swiglu_avx2(gate, up, n_ff) }
}

pub(super) const SOFTMAX_AVX2: crate::kernels::types::SoftmaxFn = softmax_avx2_entry;
pub(super) const SWIGLU_AVX2: crate::kernels::types::SwigluFn = swiglu_avx2_entry;
