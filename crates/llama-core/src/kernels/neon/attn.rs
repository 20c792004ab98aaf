//! aarch64 NEON attention kernels: f16 ↔ f32 conversions (`AttnKtFn`, `AttnVfFn`,
//! `RoundFn`) through `fcvtl` / `fcvtn` in `asm!` (see `neon/mod.rs`: the `float16x4_t` intrinsics are
//! not usable on stable rustc). The dots are `kernels::attn`'s portable kernels, which need nothing
//! beyond the aarch64 baseline (NEON and fused multiply-add).

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use super::f16x4;
use crate::kernels::shared::{attn_gather_check, attn_kt_check, attn_kt_f16_by, attn_kt_f16_rows, attn_vf_check};
use crate::kernels::shared::{attn_vf_f16_by, attn_vf_f16_rows, round_f16_by};

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
    // SAFETY: the contract above; `wide` reads and writes 4 values inside those bounds.
    unsafe { attn_kt_f16_by::<4>(n, k, ks, nk, kt, |src, dst| vst1q_f32(dst, ld4_f16(src))) }
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
    // SAFETY: the contract above; `wide` reads and writes 4 values inside those bounds.
    unsafe { attn_vf_f16_by::<4>(n, v, vs, nv, out, |src, dst| vst1q_f32(dst, ld4_f16(src))) }
}

pub(crate) fn attn_vf_f16_neon(n: usize, v: &[f16], vs: usize, nv: usize, out: &mut [f32]) {
    attn_vf_check(n, v.len(), vs, nv, out.len());
    // SAFETY: reachable only through `neon_table` (NEON detected); indices checked above.
    unsafe { vf_f16(n, v.as_ptr(), vs, nv, out.as_mut_ptr()) }
}

/// Keys named by cells → f32 panels (`AttnKtGatherFn`, f16 cache), four converted at a time.
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features; `k`, `cells`, `kt` must pass
/// `kernels::shared::attn_gather_check(n, k_len, ks, cells, kt_len, true)`.
unsafe fn kt_f16_gather(n: usize, k: *const f16, ks: usize, cells: &[usize], kt: *mut f32) {
    // SAFETY: the contract above (row cells[j] starts at k + cells[j]·ks); `wide` reads and
    // writes 4 values inside those bounds.
    unsafe {
        attn_kt_f16_rows::<4>(n, |j| k.add(cells[j] * ks), cells.len(), kt, |src, dst| vst1q_f32(dst, ld4_f16(src)))
    }
}

pub(crate) fn attn_kt_f16_gather_neon(n: usize, k: &[f16], ks: usize, cells: &[usize], kt: &mut [f32]) {
    attn_gather_check(n, k.len(), ks, cells, kt.len(), true);
    // SAFETY: reachable only through `neon_table` (NEON detected); indices checked above.
    unsafe { kt_f16_gather(n, k.as_ptr(), ks, cells, kt.as_mut_ptr()) }
}

/// f16 rows named by cells → packed f32 rows (`AttnVfGatherFn`), four at a time.
#[target_feature(enable = "neon")]
///
/// # Safety
/// The CPU must support this function's target features; `v`, `cells`, `out` must pass
/// `kernels::shared::attn_gather_check(n, v_len, vs, cells, out_len, false)`.
unsafe fn vf_f16_gather(n: usize, v: *const f16, vs: usize, cells: &[usize], out: *mut f32) {
    // SAFETY: the contract above; `wide` reads and writes 4 values inside those bounds.
    unsafe {
        attn_vf_f16_rows::<4>(n, |j| v.add(cells[j] * vs), cells.len(), out, |src, dst| vst1q_f32(dst, ld4_f16(src)))
    }
}

pub(crate) fn attn_vf_f16_gather_neon(n: usize, v: &[f16], vs: usize, cells: &[usize], out: &mut [f32]) {
    attn_gather_check(n, v.len(), vs, cells, out.len(), false);
    // SAFETY: reachable only through `neon_table` (NEON detected); indices checked above.
    unsafe { vf_f16_gather(n, v.as_ptr(), vs, cells, out.as_mut_ptr()) }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn round_body(x: &mut [f32]) {
    // SAFETY: `round_f16_by` hands the closure 4 floats inside `x`.
    unsafe { round_f16_by::<4>(x, |p| vst1q_f32(p, round4(vld1q_f32(p)))) }
}

pub(crate) fn round_f16_neon(x: &mut [f32]) {
    // SAFETY: reachable only through `neon_table` (NEON detected); touches only `x`.
    unsafe { round_body(x) }
}
