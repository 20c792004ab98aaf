//! x86_64 attention kernels (`cpu::AttnKqFn`, `cpu::AttnPvFn`, `cpu::RoundFn`): AVX2 + FMA + F16C
//! and AVX-512F. Reached only through the tables of `x86::avx2_kernels` / `x86::avx512_kernels`,
//! which are handed out after runtime feature detection.
//!
//! Q·K: the unit's keys are first converted (f16 → f32, `vcvtph2ps`) and transposed into panels of
//! 16 keys; then each register holds one query's scores against 8/16 keys, every lane summing its
//! products over d in order (mul, then add), exactly the scalar dot loop, for up to 8 queries per
//! pass over a panel. P·V: a tile of G queries × C registers of output stays in registers while the keys
//! stream by; each output element is still `o += p·v` over the keys in ascending order, so the
//! result is bit-identical to the scalar loop (f16: FMA of an exact product; f32: mul then add).
//! Hence the whole attention gives the same bits on every ISA.

use std::arch::x86_64::*;

use half::f16;

use crate::cpu::scalar::{attn_kq_check, attn_kt_check, attn_pv_check, CacheElem};
use crate::cpu::KT_LANES;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld8_f16(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld8_f32(p: *const f32) -> __m256 {
    _mm256_loadu_ps(p)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn ld16_f16(p: *const f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn ld16_f32(p: *const f32) -> __m512 {
    _mm512_loadu_ps(p)
}

// `acc + p·v`. f16 cache: p and v are f16 values, their product is exact in f32, so one FMA rounds
// exactly like mul-then-add. f32 cache: the product is rounded first, as in the scalar loop.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn madd8_f16(p: __m256, v: __m256, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(p, v, acc)
}
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn madd8_f32(p: __m256, v: __m256, acc: __m256) -> __m256 {
    _mm256_add_ps(acc, _mm256_mul_ps(p, v))
}
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn madd16_f16(p: __m512, v: __m512, acc: __m512) -> __m512 {
    _mm512_fmadd_ps(p, v, acc)
}
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn madd16_f32(p: __m512, v: __m512, acc: __m512) -> __m512 {
    _mm512_add_ps(acc, _mm512_mul_ps(p, v))
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

/// Writes the first `w` lanes of a score register (a whole register when w = lanes).
macro_rules! store_lanes {
    ($sto:ident, $lanes:expr, $v:expr, $p:expr, $w:expr) => {{
        if $w == $lanes {
            $sto($p, $v);
        } else {
            let mut t = [0f32; $lanes];
            $sto(t.as_mut_ptr(), $v);
            std::ptr::copy_nonoverlapping(t.as_ptr(), $p, $w);
        }
    }};
}

/// Q·K from key panels: keys in lanes, each lane summing its products over d in order.
/// `$rows::<G>` scores G queries against `$w` keys of one panel (`p` = panel + lane offset).
macro_rules! kq_kernel {
    ($entry:ident, $body:ident, $rows:ident, $feat:literal, $w:expr, $vec:ty,
     $zero:ident, $ld:ident, $sto:ident, $set1:ident, $mul:ident, $add:ident) => {
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn $rows<const G: usize>(n: usize, p: *const f32, q: *const f32) -> [$vec; G] {
            let mut acc = [$zero(); G];
            let k0 = $ld(p);
            for (g, a) in acc.iter_mut().enumerate() {
                *a = $mul(k0, $set1(*q.add(g * n)));
            }
            for d in 1..n {
                let kv = $ld(p.add(d * KT_LANES));
                for (g, a) in acc.iter_mut().enumerate() {
                    *a = $add(*a, $mul(kv, $set1(*q.add(g * n + d))));
                }
            }
            acc
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $body(n: usize, kt: *const f32, nk: usize, q: *const f32, nq: usize, out: *mut f32, os: usize) {
            for c in 0..nk.div_ceil(KT_LANES) {
                for h in 0..KT_LANES / $w {
                    let j0 = c * KT_LANES + h * $w;
                    if j0 >= nk {
                        break;
                    }
                    let w = (nk - j0).min($w);
                    let p = kt.add(c * n * KT_LANES + h * $w);
                    let mut i = 0;
                    while i + 8 <= nq {
                        for (g, v) in $rows::<8>(n, p, q.add(i * n)).into_iter().enumerate() {
                            store_lanes!($sto, $w, v, out.add((i + g) * os + j0), w);
                        }
                        i += 8;
                    }
                    if i + 4 <= nq {
                        for (g, v) in $rows::<4>(n, p, q.add(i * n)).into_iter().enumerate() {
                            store_lanes!($sto, $w, v, out.add((i + g) * os + j0), w);
                        }
                        i += 4;
                    }
                    while i < nq {
                        let [v] = $rows::<1>(n, p, q.add(i * n));
                        store_lanes!($sto, $w, v, out.add(i * os + j0), w);
                        i += 1;
                    }
                }
            }
        }

        pub(crate) fn $entry(n: usize, kt: &[f32], nk: usize, q: &[f32], nq: usize, out: &mut [f32], os: usize) {
            attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
            // SAFETY: reachable only through a kernel table built after runtime detection of
            // `$feat`; every element read or written is in bounds by the check above.
            unsafe { $body(n, kt.as_ptr(), nk, q.as_ptr(), nq, out.as_mut_ptr(), os) }
        }
    };
}

/// P·V kernel body and its safe table entry. A tile is G queries × C registers of outputs;
/// `$gb`/`$cb` are the big tile's shape, edges use G = 1 / C = 1 and a scalar tail for n % W.
macro_rules! pv_kernel {
    ($entry:ident, $body:ident, $tile:ident, $t:ty, $feat:literal, $w:expr, $gb:expr, $cb:expr,
     $zero:ident, $ld:ident, $ldo:ident, $sto:ident, $set1:ident, $madd:ident) => {
        #[allow(clippy::too_many_arguments)]
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn $tile<const G: usize, const C: usize>(v: *const $t, vs: usize, nv: usize, p: *const f32, ps: usize, o: *mut f32, on: usize) {
            let mut acc = [[$zero(); C]; G];
            for (g, ag) in acc.iter_mut().enumerate() {
                for (c, a) in ag.iter_mut().enumerate() {
                    *a = $ldo(o.add(g * on + c * $w));
                }
            }
            for j in 0..nv {
                let vj = v.add(j * vs);
                let mut vv = [$zero(); C];
                for (c, x) in vv.iter_mut().enumerate() {
                    *x = $ld(vj.add(c * $w));
                }
                for (g, ag) in acc.iter_mut().enumerate() {
                    let pb = $set1(*p.add(g * ps + j));
                    for (a, &x) in ag.iter_mut().zip(&vv) {
                        *a = $madd(pb, x, *a);
                    }
                }
            }
            for (g, ag) in acc.iter().enumerate() {
                for (c, a) in ag.iter().enumerate() {
                    $sto(o.add(g * on + c * $w), *a);
                }
            }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $body(n: usize, v: *const $t, vs: usize, nv: usize, p: *const f32, ps: usize, nq: usize, o: *mut f32) {
            let mut i = 0;
            while i < nq {
                let big = nq - i >= $gb;
                let (pi, oi) = (p.add(i * ps), o.add(i * n));
                let mut d = 0;
                while d + $cb * $w <= n {
                    if big {
                        $tile::<$gb, $cb>(v.add(d), vs, nv, pi, ps, oi.add(d), n);
                    } else {
                        $tile::<1, $cb>(v.add(d), vs, nv, pi, ps, oi.add(d), n);
                    }
                    d += $cb * $w;
                }
                while d + $w <= n {
                    if big {
                        $tile::<$gb, 1>(v.add(d), vs, nv, pi, ps, oi.add(d), n);
                    } else {
                        $tile::<1, 1>(v.add(d), vs, nv, pi, ps, oi.add(d), n);
                    }
                    d += $w;
                }
                let g_n = if big { $gb } else { 1 };
                for g in 0..g_n {
                    for e in d..n {
                        let mut a = *oi.add(g * n + e);
                        for j in 0..nv {
                            a += *pi.add(g * ps + j) * (*v.add(j * vs + e)).f32();
                        }
                        *oi.add(g * n + e) = a;
                    }
                }
                i += g_n;
            }
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $entry(n: usize, v: &[$t], vs: usize, nv: usize, p: &[f32], ps: usize, nq: usize, o: &mut [f32]) {
            attn_pv_check(n, v.len(), vs, nv, p.len(), ps, nq, o.len());
            // SAFETY: reachable only through a kernel table built after runtime detection of
            // `$feat`; every element read or written is in bounds by the check above.
            unsafe { $body(n, v.as_ptr(), vs, nv, p.as_ptr(), ps, nq, o.as_mut_ptr()) }
        }
    };
}

kq_kernel!(attn_kq_avx2, kq_avx2, kq_rows_avx2, "avx2,fma,f16c", 8, __m256,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_mul_ps, _mm256_add_ps);
kq_kernel!(attn_kq_avx512, kq_avx512, kq_rows_avx512, "avx2,fma,f16c,avx512f", 16, __m512,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_mul_ps, _mm512_add_ps);

// AVX2 has 16 registers: 2 queries × 4 registers of accumulators + 4 of V + 1 broadcast.
pv_kernel!(attn_pv_f16_avx2, pv_f16_avx2, pv_tile_f16_avx2, f16, "avx2,fma,f16c", 8, 2, 4,
    _mm256_setzero_ps, ld8_f16, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, madd8_f16);
pv_kernel!(attn_pv_f32_avx2, pv_f32_avx2, pv_tile_f32_avx2, f32, "avx2,fma,f16c", 8, 2, 4,
    _mm256_setzero_ps, ld8_f32, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, madd8_f32);
// AVX-512 has 32: 4 × 4 accumulators + 4 of V + 1.
pv_kernel!(attn_pv_f16_avx512, pv_f16_avx512, pv_tile_f16_avx512, f16, "avx2,fma,f16c,avx512f", 16, 4, 4,
    _mm512_setzero_ps, ld16_f16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, madd16_f16);
pv_kernel!(attn_pv_f32_avx512, pv_f32_avx512, pv_tile_f32_avx512, f32, "avx2,fma,f16c,avx512f", 16, 4, 4,
    _mm512_setzero_ps, ld16_f32, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, madd16_f32);

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
