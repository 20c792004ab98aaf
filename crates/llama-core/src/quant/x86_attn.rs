//! x86_64 attention kernels (`cpu::AttnKtFn`, `AttnVfFn`, `AttnKqFn`, `AttnPvFn`, `RoundFn`) for
//! the AVX2 + FMA + F16C and AVX-512F tables, which are handed out after runtime feature detection.
//!
//! f16 → f32 conversions use F16C (`vcvtph2ps`, exact). The dots are `cpu::attn`'s portable
//! kernels compiled here with AVX2/AVX-512 enabled, so LLVM maps their `[f32; 16]` lanes to one
//! zmm or two ymm registers and `mul_add` to `vfmadd`: the same bits as the scalar table.

use std::arch::x86_64::*;

use half::f16;

use crate::cpu::attn::{kq_body, pv_body, pv_check, vf_check, AttnOrder};
use crate::cpu::scalar::{attn_kq_check, attn_kt_check, CacheElem};
use crate::cpu::KT_LANES;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld8_f16(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// Transposes keys into f32 panels (`cpu::AttnKtFn` for the f16 cache), converting 8 at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kt_f16_f16c(n: usize, k: *const f16, ks: usize, nk: usize, kt: *mut f32) {
    let mut tmp = [0f32; 8];
    for c in 0..nk.div_ceil(KT_LANES) {
        let panel = kt.add(c * n * KT_LANES);
        for l in 0..KT_LANES {
            let j = c * KT_LANES + l;
            if j >= nk {
                for d in 0..n {
                    *panel.add(d * KT_LANES + l) = 0.0;
                }
                continue;
            }
            let kj = k.add(j * ks);
            let mut d = 0;
            while d + 8 <= n {
                _mm256_storeu_ps(tmp.as_mut_ptr(), ld8_f16(kj.add(d)));
                for (e, &x) in tmp.iter().enumerate() {
                    *panel.add((d + e) * KT_LANES + l) = x;
                }
                d += 8;
            }
            for e in d..n {
                *panel.add(e * KT_LANES + l) = (*kj.add(e)).f32();
            }
        }
    }
}

pub(crate) fn attn_kt_f16_avx2(n: usize, k: &[f16], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt_check(n, k.len(), ks, nk, kt.len());
    // SAFETY: reachable only through a kernel table built after detection of AVX2, FMA and F16C;
    // every element read or written is in bounds by the check above.
    unsafe { kt_f16_f16c(n, k.as_ptr(), ks, nk, kt.as_mut_ptr()) }
}

/// f16 rows → packed f32 rows (`cpu::AttnVfFn`), 8 at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vf_f16_f16c(n: usize, v: *const f16, vs: usize, nv: usize, out: *mut f32) {
    for j in 0..nv {
        let (src, dst) = (v.add(j * vs), out.add(j * n));
        let mut d = 0;
        while d + 8 <= n {
            _mm256_storeu_ps(dst.add(d), ld8_f16(src.add(d)));
            d += 8;
        }
        for e in d..n {
            *dst.add(e) = (*src.add(e)).f32();
        }
    }
}

pub(crate) fn attn_vf_f16_avx2(n: usize, v: &[f16], vs: usize, nv: usize, out: &mut [f32]) {
    vf_check(n, v.len(), vs, nv, out.len());
    // SAFETY: reachable only through a kernel table built after detection of AVX2, FMA and F16C;
    // every element read or written is in bounds by the check above.
    unsafe { vf_f16_f16c(n, v.as_ptr(), vs, nv, out.as_mut_ptr()) }
}

/// The portable dots of `cpu::attn` under `$feat`: `$kq` / `$pv` are the table entries.
macro_rules! attn_dots {
    ($kq:ident, $pv:ident, $kq_in:ident, $pv_in:ident, $feat:literal) => {
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $kq_in(n: usize, kt: &[f32], nk: usize, q: &[f32], nq: usize, out: &mut [f32], os: usize, order: AttnOrder) {
            kq_body(n, kt, nk, q, nq, out, os, order)
        }
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $kq(n: usize, kt: &[f32], nk: usize, q: &[f32], nq: usize, out: &mut [f32], os: usize, order: AttnOrder) {
            attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
            // SAFETY: reachable only through a kernel table built after detection of `$feat`; the
            // body is safe code (bounds-checked), the features only widen its vectors.
            unsafe { $kq_in(n, kt, nk, q, nq, out, os, order) }
        }
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $pv_in(n: usize, v: &[f32], vs: usize, j0: usize, lo: usize, hi: usize, p: &[f32], o: &mut [f32], order: AttnOrder) {
            pv_body(n, v, vs, j0, lo, hi, p, o, order)
        }
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $pv(n: usize, v: &[f32], vs: usize, j0: usize, lo: usize, hi: usize, p: &[f32], o: &mut [f32], order: AttnOrder) {
            pv_check(n, v.len(), vs, j0, lo, hi, p.len(), o.len());
            // SAFETY: as for the Q·K entry above.
            unsafe { $pv_in(n, v, vs, j0, lo, hi, p, o, order) }
        }
    };
}

attn_dots!(attn_kq_avx2, attn_pv_avx2, kq_avx2, pv_avx2, "avx2,fma");
attn_dots!(attn_kq_avx512, attn_pv_avx512, kq_avx512, pv_avx512, "avx512f,avx512vl,fma");

#[target_feature(enable = "avx2,f16c")]
unsafe fn round_f16_f16c(x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p.add(i)));
        _mm256_storeu_ps(p.add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for v in &mut x[i..] {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// `cpu::RoundFn` with F16C (`vcvtps2ph` round-to-nearest-even, then back).
pub(crate) fn round_f16_avx2(x: &mut [f32]) {
    // SAFETY: reachable only through a kernel table built after detection of AVX2 and F16C; the
    // body touches only `x`.
    unsafe { round_f16_f16c(x) }
}
