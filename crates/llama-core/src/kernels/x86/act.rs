//! AVX-512 softmax and SwiGLU: ggml's own vector code (`ggml_v_expf`, `ggml_vec_soft_max_f32`,
//! `ggml_vec_swiglu_f32` of an AVX-512 build), so results equal the scalar emulation in
//! `kernels::elementwise` bit for bit (the kernel tests compare them) while running 16 lanes at a time.

use std::arch::x86_64::*;

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
        for (gr, ur) in gate.chunks_exact_mut(n_ff).zip(up.chunks_exact(n_ff)) {
            let simd = n_ff / 16 * 16;
            let (g, u) = (gr.as_mut_ptr(), ur.as_ptr());
            let mut i = 0;
            while i < simd {
                let x = _mm512_loadu_ps(g.add(i));
                let silu = _mm512_div_ps(x, _mm512_add_ps(one, v_expf(_mm512_sub_ps(_mm512_setzero_ps(), x))));
                _mm512_storeu_ps(g.add(i), _mm512_mul_ps(silu, _mm512_loadu_ps(u.add(i))));
                i += 16;
            }
            for j in simd..n_ff {
                let x = gr[j];
                gr[j] = x / (1.0 + (-x).exp()) * ur[j];
            }
        }
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
    assert!(n_ff > 0 && gate.len().is_multiple_of(n_ff) && up.len() >= gate.len(), "swiglu: shapes");
    // SAFETY: features as in `softmax_entry`; rows are whole n_ff chunks of both slices.
    unsafe { swiglu(gate, up, n_ff) }
}

pub(super) const SOFTMAX_AVX512: crate::kernels::types::SoftmaxFn = softmax_entry;
pub(super) const SWIGLU_AVX512: crate::kernels::types::SwigluFn = swiglu_entry;
