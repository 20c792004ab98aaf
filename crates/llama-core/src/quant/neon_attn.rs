//! aarch64 NEON attention kernels (`cpu::AttnKqFn`, `cpu::AttnPvFn`, `cpu::RoundFn`); same structure
//! and numerics as `x86_attn.rs` with 4-lane registers. f16 ↔ f32 goes through `fcvtl` / `fcvtn`
//! in `asm!` (see `neon.rs`: the `float16x4_t` intrinsics are not usable on stable rustc).

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use crate::cpu::scalar::{attn_kq_check, attn_kt_check, attn_pv_check, CacheElem};
use crate::cpu::KT_LANES;

/// Four f16 (raw bits) → four f32.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn cvt4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY (of the asm): register-only instruction, no memory access.
    asm!("fcvtl {o:v}.4s, {i:v}.4h", o = out(vreg) out, i = in(vreg) h, options(pure, nomem, nostack));
    out
}

/// Four f32 → four f16 (round to nearest even under the default FPCR) → four f32.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn round4(x: float32x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY (of the asm): register-only instructions, no memory access.
    asm!("fcvtn {t:v}.4h, {i:v}.4s", "fcvtl {o:v}.4s, {t:v}.4h", i = in(vreg) x, t = out(vreg) _, o = out(vreg) out,
        options(pure, nomem, nostack));
    out
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld4_f16(p: *const f16) -> float32x4_t {
    cvt4(vld1_u16(p as *const u16))
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld4_f32(p: *const f32) -> float32x4_t {
    vld1q_f32(p)
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn zero4() -> float32x4_t {
    vdupq_n_f32(0.0)
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn madd4_f16(p: float32x4_t, v: float32x4_t, acc: float32x4_t) -> float32x4_t {
    // exact product (f16 × f16 values): FMA rounds like mul-then-add
    vfmaq_f32(acc, p, v)
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn madd4_f32(p: float32x4_t, v: float32x4_t, acc: float32x4_t) -> float32x4_t {
    vaddq_f32(acc, vmulq_f32(p, v))
}

/// Keys → f32 panels (`cpu::AttnKtFn`, f16 cache), four converted at a time.
#[target_feature(enable = "neon")]
unsafe fn kt_f16(n: usize, k: *const f16, ks: usize, nk: usize, kt: *mut f32) {
    let mut tmp = [0f32; 4];
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
            while d + 4 <= n {
                vst1q_f32(tmp.as_mut_ptr(), ld4_f16(kj.add(d)));
                for (e, &x) in tmp.iter().enumerate() {
                    *panel.add((d + e) * KT_LANES + l) = x;
                }
                d += 4;
            }
            for e in d..n {
                *panel.add(e * KT_LANES + l) = (*kj.add(e)).f32();
            }
        }
    }
}

/// Scores of G queries against 4 keys of a panel (`p` = panel + lane offset); each lane sums its
/// products over d in order (mul, then add), as the scalar loop does.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn kq_rows<const G: usize>(n: usize, p: *const f32, q: *const f32) -> [float32x4_t; G] {
    let mut acc = [zero4(); G];
    let k0 = vld1q_f32(p);
    for (g, a) in acc.iter_mut().enumerate() {
        *a = vmulq_f32(k0, vdupq_n_f32(*q.add(g * n)));
    }
    for d in 1..n {
        let kv = vld1q_f32(p.add(d * KT_LANES));
        for (g, a) in acc.iter_mut().enumerate() {
            *a = vaddq_f32(*a, vmulq_f32(kv, vdupq_n_f32(*q.add(g * n + d))));
        }
    }
    acc
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn store4(v: float32x4_t, p: *mut f32, w: usize) {
    if w == 4 {
        vst1q_f32(p, v);
    } else {
        let mut t = [0f32; 4];
        vst1q_f32(t.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(t.as_ptr(), p, w);
    }
}

#[target_feature(enable = "neon")]
unsafe fn kq(n: usize, kt: *const f32, nk: usize, q: *const f32, nq: usize, out: *mut f32, os: usize) {
    for c in 0..nk.div_ceil(KT_LANES) {
        for h in 0..KT_LANES / 4 {
            let j0 = c * KT_LANES + h * 4;
            if j0 >= nk {
                break;
            }
            let w = (nk - j0).min(4);
            let p = kt.add(c * n * KT_LANES + h * 4);
            let mut i = 0;
            while i + 8 <= nq {
                for (g, v) in kq_rows::<8>(n, p, q.add(i * n)).into_iter().enumerate() {
                    store4(v, out.add((i + g) * os + j0), w);
                }
                i += 8;
            }
            while i < nq {
                let [v] = kq_rows::<1>(n, p, q.add(i * n));
                store4(v, out.add(i * os + j0), w);
                i += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pv_body<T: CacheElem>(
    ld: unsafe fn(*const T) -> float32x4_t,
    madd: unsafe fn(float32x4_t, float32x4_t, float32x4_t) -> float32x4_t,
    n: usize,
    v: *const T,
    vs: usize,
    nv: usize,
    p: *const f32,
    ps: usize,
    nq: usize,
    o: *mut f32,
) {
    // 4 registers (16 outputs) of one query at a time; V rows come from L1.
    for i in 0..nq {
        let (pi, oi) = (p.add(i * ps), o.add(i * n));
        let mut d = 0;
        while d + 16 <= n {
            let mut acc = [zero4(); 4];
            for (c, a) in acc.iter_mut().enumerate() {
                *a = vld1q_f32(oi.add(d + 4 * c));
            }
            for j in 0..nv {
                let pb = vdupq_n_f32(*pi.add(j));
                let vj = v.add(j * vs + d);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = madd(pb, ld(vj.add(4 * c)), *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                vst1q_f32(oi.add(d + 4 * c), *a);
            }
            d += 16;
        }
        while d + 4 <= n {
            let mut a = vld1q_f32(oi.add(d));
            for j in 0..nv {
                a = madd(vdupq_n_f32(*pi.add(j)), ld(v.add(j * vs + d)), a);
            }
            vst1q_f32(oi.add(d), a);
            d += 4;
        }
        for e in d..n {
            let mut a = *oi.add(e);
            for j in 0..nv {
                a += *pi.add(j) * (*v.add(j * vs + e)).f32();
            }
            *oi.add(e) = a;
        }
    }
}

#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_f16(n: usize, v: *const f16, vs: usize, nv: usize, p: *const f32, ps: usize, nq: usize, o: *mut f32) {
    pv_body(ld4_f16, madd4_f16, n, v, vs, nv, p, ps, nq, o)
}
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_f32(n: usize, v: *const f32, vs: usize, nv: usize, p: *const f32, ps: usize, nq: usize, o: *mut f32) {
    pv_body(ld4_f32, madd4_f32, n, v, vs, nv, p, ps, nq, o)
}

pub(crate) fn attn_kt_f16_neon(n: usize, k: &[f16], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt_check(n, k.len(), ks, nk, kt.len());
    // SAFETY: reachable only through `neon_kernels` (NEON detected); indices checked above.
    unsafe { kt_f16(n, k.as_ptr(), ks, nk, kt.as_mut_ptr()) }
}
pub(crate) fn attn_kq_neon(n: usize, kt: &[f32], nk: usize, q: &[f32], nq: usize, out: &mut [f32], os: usize) {
    attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
    // SAFETY: as above.
    unsafe { kq(n, kt.as_ptr(), nk, q.as_ptr(), nq, out.as_mut_ptr(), os) }
}
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_pv_f16_neon(n: usize, v: &[f16], vs: usize, nv: usize, p: &[f32], ps: usize, nq: usize, o: &mut [f32]) {
    attn_pv_check(n, v.len(), vs, nv, p.len(), ps, nq, o.len());
    // SAFETY: as above.
    unsafe { pv_f16(n, v.as_ptr(), vs, nv, p.as_ptr(), ps, nq, o.as_mut_ptr()) }
}
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_pv_f32_neon(n: usize, v: &[f32], vs: usize, nv: usize, p: &[f32], ps: usize, nq: usize, o: &mut [f32]) {
    attn_pv_check(n, v.len(), vs, nv, p.len(), ps, nq, o.len());
    // SAFETY: as above.
    unsafe { pv_f32(n, v.as_ptr(), vs, nv, p.as_ptr(), ps, nq, o.as_mut_ptr()) }
}

#[target_feature(enable = "neon")]
unsafe fn round_body(x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(p.add(i), round4(vld1q_f32(p.add(i))));
        i += 4;
    }
    for v in &mut x[i..] {
        *v = f16::from_f32(*v).to_f32();
    }
}

pub(crate) fn round_f16_neon(x: &mut [f32]) {
    // SAFETY: reachable only through `neon_kernels` (NEON detected); touches only `x`.
    unsafe { round_body(x) }
}
