//! AVX-512 and AVX2 softmax and SwiGLU: ggml's own vector code (`ggml_v_expf`, `ggml_vec_soft_max_f32`,
//! `ggml_vec_swiglu_f32` of an AVX-512 build), so results equal the scalar emulation in
//! `kernels::elementwise` bit for bit (the kernel tests compare them) while running 16 lanes at a time.

use std::arch::x86_64::*;

use crate::kernels::elementwise::GELU_TABLE_BOUND;
use crate::kernels::shared::{gelu_check, swiglu_by, swiglu_check};

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
    // Results below f32's normal range (n ≤ −126) are built in the integers: `vscalefps` rounds a
    // subnormal result through a microcode assist that costs ~150 cycles a vector on current
    // Xeons (the softmax of a long row is mostly such lanes), and so would a saturating one.
    let tiny = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_set1_ps(-126.0)) & !d;
    let res = _mm512_scalef_ps(j, _mm512_mask_blend_ps(tiny | d, n, _mm512_setzero_ps()));
    // a branch: real models' rows rarely have such lanes (random-weight ones often, where the
    // branch-free form measured the same)
    let res = if tiny == 0 { res } else { _mm512_mask_blend_ps(tiny, res, scalef_subnormal(j, n)) };
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

/// `j·2^n` rounded to nearest-even as `vscalefps` rounds it, for results below the normal range:
/// `j` positive and normal, `n` an integer with `j·2^n < 2^-126·2`. In units of the smallest
/// subnormal 2^-149, `j·2^n` is `m·2^-sh` (m the significand with its implicit bit, sh =
/// 1 − biased exponent − n ≥ 0), and the rounded integer is the result's bit pattern (2^23 being
/// the smallest normal, where rounding carries into the exponent).
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
fn scalef_subnormal(j: __m512, n: __m512) -> __m512 {
    let bits = _mm512_castps_si512(j);
    let m = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x7f_ffff)), _mm512_set1_epi32(0x80_0000));
    let e = _mm512_srli_epi32::<23>(bits);
    // shifts of 26 or more leave 0 either way (m < 2^24 is under half of 2^26)
    let sh = _mm512_sub_epi32(_mm512_sub_epi32(_mm512_set1_epi32(1), e), _mm512_cvtps_epi32(n));
    let sh = _mm512_min_epi32(_mm512_max_epi32(sh, _mm512_setzero_si512()), _mm512_set1_epi32(26));
    let q = _mm512_srlv_epi32(m, sh);
    round_half_even(q, _mm512_sub_epi32(m, _mm512_sllv_epi32(q, sh)), sh)
}

/// `q` (a value shifted right by `sh`, `rem` the bits shifted out) rounded to nearest-even, as
/// f32 bits: up when the remainder is over half, or exactly half and `q` odd.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
fn round_half_even(q: __m512i, rem: __m512i, sh: __m512i) -> __m512 {
    let one = _mm512_set1_epi32(1);
    let half = _mm512_srli_epi32::<1>(_mm512_sllv_epi32(one, sh));
    let shifted = _mm512_cmpgt_epi32_mask(sh, _mm512_setzero_si512());
    let up = _mm512_mask_cmpgt_epu32_mask(shifted, _mm512_add_epi32(rem, _mm512_and_si512(q, one)), half);
    _mm512_castsi512_ps(_mm512_mask_add_epi32(q, up, q, one))
}

/// `y·inv` for subnormal `y` lanes (bits under 2^23) and `0 < inv < 2`, rounded to nearest-even
/// as the multiply rounds it, without the multiply's subnormal assist: in units of 2^-149 the
/// product is `y_bits·m_inv·2^-(150 − e_inv)`, a 47-bit integer shifted right by at least 23.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
fn mul_subnormal(y: __m512, inv: f32) -> __m512 {
    debug_assert!(inv > 0.0 && inv < 2.0 && inv.is_normal());
    let (mi, ei) = ((inv.to_bits() & 0x7f_ffff | 0x80_0000) as u64, (inv.to_bits() >> 23) as u64);
    let sh = (150 - ei).min(50); // products are under 2^47: a shift of 50 leaves 0
    let (count, mask, half) = (_mm_set_epi64x(0, sh as i64), (1u64 << sh) - 1, 1u64 << (sh - 1));
    let yb = _mm512_castps_si512(y);
    let half_of = |h: __m256i| -> __m256i {
        let p = _mm512_mul_epu32(_mm512_cvtepu32_epi64(h), _mm512_set1_epi64(mi as i64));
        let q = _mm512_srl_epi64(p, count);
        let rem = _mm512_and_si512(p, _mm512_set1_epi64(mask as i64));
        let odd = _mm512_and_si512(q, _mm512_set1_epi64(1));
        let up = _mm512_cmpgt_epu64_mask(_mm512_add_epi64(rem, odd), _mm512_set1_epi64(half as i64));
        _mm512_cvtepi64_epi32(_mm512_mask_add_epi64(q, up, q, _mm512_set1_epi64(1)))
    };
    let lo = half_of(_mm512_castsi512_si256(yb));
    let hi = half_of(_mm512_extracti64x4_epi64::<1>(yb));
    _mm512_castsi512_ps(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi))
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
        let sum = exp_sum(x, max);
        let inv_s = (1.0 / sum) as f32;
        let inv = _mm512_set1_ps(inv_s);
        // Subnormal probabilities (exp of scores ~87 under the maximum) are scaled in the integers:
        // a multiply with a subnormal operand takes a microcode assist (see `v_expf`). The row's
        // maximum contributes exp(0) = 1, so 0 < inv ≤ 1.
        let split_mask: __mmask16 = if inv_s > 0.0 && inv_s < 2.0 && inv_s.is_normal() { 0xffff } else { 0 };
        i = 0;
        while i < n {
            let m = lanes(n - i);
            let y = _mm512_maskz_loadu_ps(m, p.add(i));
            let yb = _mm512_castps_si512(y);
            let tiny = _mm512_mask_cmplt_epu32_mask(_mm512_test_epi32_mask(yb, yb), yb, _mm512_set1_epi32(0x80_0000));
            // the multiply never sees the subnormal lanes (LLVM would hoist an unguarded one)
            let normal = _mm512_mul_ps(_mm512_mask_mov_ps(y, tiny & split_mask, _mm512_setzero_ps()), inv);
            let out = if tiny & split_mask == 0 {
                normal
            } else {
                _mm512_mask_blend_ps(tiny, normal, mul_subnormal(y, inv_s))
            };
            _mm512_mask_storeu_ps(p.add(i), m, out);
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

/// `x = exp(x − max)` 16 lanes at a time, each vector's sum (`_mm512_reduce_add_ps`'s order)
/// added into an f64: `ggml_vec_soft_max_f32` of an AVX-512 build (`ExpSumFn`, and softmax's
/// middle pass). A partial last vector is masked: ggml's row is padded with masked (−inf) keys,
/// whose exp is 0.
#[target_feature(enable = "avx512f,avx512dq,fma")]
/// # Safety
/// The CPU must support AVX-512 F and DQ and FMA.
unsafe fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    // SAFETY: every load and store is masked to x's length.
    unsafe {
        let (n, p) = (x.len(), x.as_mut_ptr());
        let mut sum = 0.0f64;
        let mut i = 0;
        while i < n {
            let m = lanes(n - i);
            let xm = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), _mm512_set1_ps(max));
            // exp(x) for x < −105 is 2^n·j with n ≤ −151: under half the smallest subnormal, so
            // 0 after rounding; a vector of only such lanes adds 0.0 to the sum (no change)
            if _mm512_mask_cmp_ps_mask::<_CMP_NLT_UQ>(m, xm, _mm512_set1_ps(-105.0)) == 0 {
                _mm512_mask_storeu_ps(p.add(i), m, _mm512_setzero_ps());
            } else {
                let e = _mm512_maskz_mov_ps(m, v_expf(xm));
                _mm512_mask_storeu_ps(p.add(i), m, e);
                sum += reduce_add(e) as f64;
            }
            i += 16;
        }
        sum
    }
}

fn exp_sum_entry(x: &mut [f32], max: f32) -> f64 {
    assert!(x.len().is_multiple_of(16), "exp_sum: whole vectors only");
    // SAFETY: features as in `softmax_entry`; whole chunks of x (checked above).
    unsafe { exp_sum(x, max) }
}

/// `x = gelu(x)` (· `up`) through ggml's f16 table, 16 lanes at a time (`GeluFn`): each x
/// rounded to f16 (`vcvtps2ph`, to nearest even as `f16::from_f32`), its entry gathered, widened
/// back to f32, the bounds of `elementwise::gelu_scalar` applied: the same values, the table's
/// random reads in flight together instead of one after another.
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU must support AVX-512 F; `t` holds 65,537 entries (`gelu_table`); `up`, when given, is
/// at least as long as `x`.
unsafe fn gelu(x: &mut [f32], up: Option<&[f32]>, t: &[u16]) {
    // SAFETY: loads and stores are masked to x's length (and up's, which is no shorter); a
    // gathered index is an f16's bits, ≤ 65,535, and its 4 bytes end inside the 65,537 entries.
    unsafe {
        let (n, p, tp) = (x.len(), x.as_mut_ptr(), t.as_ptr() as *const u8);
        let (lo, hi) = (_mm512_set1_ps(-GELU_TABLE_BOUND), _mm512_set1_ps(GELU_TABLE_BOUND));
        let mut i = 0;
        while i < n {
            let m = lanes(n - i);
            let v = _mm512_maskz_loadu_ps(m, p.add(i));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            let g = _mm512_mask_i32gather_epi32::<2>(_mm512_setzero_si512(), m, _mm512_cvtepu16_epi32(h), tp as _);
            let mut y = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
            y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, hi), v);
            y = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, lo), y);
            if let Some(u) = up {
                y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, u.as_ptr().add(i)));
            }
            _mm512_mask_storeu_ps(p.add(i), m, y);
            i += 16;
        }
    }
}

/// Safe entry (`GeluFn`).
fn gelu_entry(x: &mut [f32], up: Option<&[f32]>, t: &[u16]) {
    gelu_check(x, up, t);
    // SAFETY: reachable only through the AVX-512 table (avx512f detected); lengths checked above.
    unsafe { gelu(x, up, t) }
}

pub(super) const SOFTMAX_AVX512: crate::kernels::types::SoftmaxFn = softmax_entry;
pub(super) const EXP_SUM_AVX512: crate::kernels::types::ExpSumFn = exp_sum_entry;
pub(super) const SWIGLU_AVX512: crate::kernels::types::SwigluFn = swiglu_entry;
pub(super) const GELU_AVX512: crate::kernels::types::GeluFn = gelu_entry;
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

/// `gelu` of the AVX-512 table in 8 lanes (`GeluFn`): whole vectors gathered, the tail through
/// `gelu_scalar`; the same values.
#[target_feature(enable = "avx2,f16c")]
///
/// # Safety
/// The CPU must support AVX2 and F16C; `t` holds 65,537 entries; `up`, when given, is at least as
/// long as `x`.
unsafe fn gelu_avx2(x: &mut [f32], up: Option<&[f32]>, t: &[u16]) {
    // SAFETY: whole vectors inside x (and up); a gathered index is an f16's bits, ≤ 65,535, and
    // its 4 bytes end inside the 65,537 entries.
    unsafe {
        let (n8, p, tp) = (x.len() / 8 * 8, x.as_mut_ptr(), t.as_ptr() as *const u8);
        let (lo, hi) = (_mm256_set1_ps(-GELU_TABLE_BOUND), _mm256_set1_ps(GELU_TABLE_BOUND));
        // the low 16 bits of each 32-bit lane, packed into the low 8 bytes of each 128-bit half
        let pack = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1,
            -1, -1,
        );
        for i in (0..n8).step_by(8) {
            let v = _mm256_loadu_ps(p.add(i));
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            let g = _mm256_i32gather_epi32::<2>(tp as _, _mm256_cvtepu16_epi32(h));
            let g = _mm256_permute4x64_epi64::<0b1000>(_mm256_shuffle_epi8(g, pack));
            let mut y = _mm256_cvtph_ps(_mm256_castsi256_si128(g));
            y = _mm256_blendv_ps(y, v, _mm256_cmp_ps::<_CMP_GE_OQ>(v, hi));
            y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, lo), y);
            if let Some(u) = up {
                y = _mm256_mul_ps(y, _mm256_loadu_ps(u.as_ptr().add(i)));
            }
            _mm256_storeu_ps(p.add(i), y);
        }
        crate::kernels::elementwise::gelu_scalar(&mut x[n8..], up.map(|u| &u[n8..]), t);
    }
}

/// Safe entry (`GeluFn`).
fn gelu_avx2_entry(x: &mut [f32], up: Option<&[f32]>, t: &[u16]) {
    gelu_check(x, up, t);
    // SAFETY: reachable only through the AVX2 table (AVX2 and F16C detected); lengths checked above.
    unsafe { gelu_avx2(x, up, t) }
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
pub(super) const GELU_AVX2: crate::kernels::types::GeluFn = gelu_avx2_entry;
