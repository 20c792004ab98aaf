//! aarch64 NEON attention kernels: f16 ↔ f32 conversions (`AttnKtFn`, `AttnVfFn`,
//! `RoundFn`) through `fcvtl` / `fcvtn` in `asm!` (see `neon/mod.rs`: the `float16x4_t` intrinsics are
//! not usable on stable rustc). The dots are `kernels::attn`'s portable kernels, which need nothing
//! beyond the aarch64 baseline (NEON and fused multiply-add).

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use super::f16x4;
use crate::kernels::shared::{attn_kt_check, attn_vf_check};
use crate::kernels::types::{CacheElem, KT_LANES};

/// Four f32 → four f16 (round to nearest even under the default FPCR) → four f32.
#[inline]
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn round4(x: float32x4_t) -> float32x4_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let out: float32x4_t;
        // SAFETY (of the asm): register-only instructions, no memory access.
        asm!("fcvtn {t:v}.4h, {i:v}.4s", "fcvtl {o:v}.4s, {t:v}.4h", i = in(vreg) x, t = out(vreg) _, o = out(vreg) out,
        options(pure, nomem, nostack));
        out
    }
}

#[inline]
#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `p..p+4` (f16 values) must be readable.
unsafe fn ld4_f16(p: *const f16) -> float32x4_t {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { f16x4(vld1_u16(p as *const u16)) }
}

/// Keys → f32 panels (`AttnKtFn`, f16 cache), four converted at a time.
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features; `k`, `kt` must cover what
/// `kernels::shared::attn_kt_check(n, k_len, ks, nk, kt_len)` requires.
unsafe fn kt_f16(n: usize, k: *const f16, ks: usize, nk: usize, kt: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
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
}

pub(crate) fn attn_kt_f16_neon(n: usize, k: &[f16], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt_check(n, k.len(), ks, nk, kt.len());
    // SAFETY: reachable only through `neon_table` (NEON detected); indices checked above.
    unsafe { kt_f16(n, k.as_ptr(), ks, nk, kt.as_mut_ptr()) }
}

/// f16 rows → packed f32 rows (`AttnVfFn`), four at a time.
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features; `v`, `out` must cover what
/// `kernels::shared::attn_vf_check(n, v_len, vs, nv, out_len)` requires.
unsafe fn vf_f16(n: usize, v: *const f16, vs: usize, nv: usize, out: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for j in 0..nv {
            let (src, dst) = (v.add(j * vs), out.add(j * n));
            let mut d = 0;
            while d + 4 <= n {
                vst1q_f32(dst.add(d), ld4_f16(src.add(d)));
                d += 4;
            }
            for e in d..n {
                *dst.add(e) = (*src.add(e)).f32();
            }
        }
    }
}

pub(crate) fn attn_vf_f16_neon(n: usize, v: &[f16], vs: usize, nv: usize, out: &mut [f32]) {
    attn_vf_check(n, v.len(), vs, nv, out.len());
    // SAFETY: reachable only through `neon_table` (NEON detected); indices checked above.
    unsafe { vf_f16(n, v.as_ptr(), vs, nv, out.as_mut_ptr()) }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn round_body(x: &mut [f32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
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
}

pub(crate) fn round_f16_neon(x: &mut [f32]) {
    // SAFETY: reachable only through `neon_table` (NEON detected); touches only `x`.
    unsafe { round_body(x) }
}
