//! aarch64 NEON kernels. Integer dots use the ARMv8.2 `sdot` instruction (FEAT_DotProd) through
//! `asm!`, because the `vdotq_s32` intrinsic is still unstable in rustc 1.95; f16 widening uses
//! `fcvtl` for the same reason (the `float16x4_t` type is unstable). CPUs without dotprod get the
//! NEON float kernels and keep the scalar integer ones.
//!
//! Files per kind: `quantize` (activation quantizers), `dot` (row dots), `mxfp4` (the MXFP4
//! dot), `iq` (the grid i-quant dots), `iq4` / `tq` (the IQ4_NL/IQ4_XS and TQ1_0/TQ2_0 dots), `r16` (GEMMs over R16-repacked
//! weights), `attn` (attention conversions); the instructions they share are here.
//! Numerics as on x86: exact integer (sub)block sums; K-quants apply the scalar float formula per
//! block in order (bit-identical to `kernels::scalar`).

mod attn;
mod dot;
mod iq;
mod iq4;
mod mxfp4;
mod quantize;
mod r16;
mod tq;

use std::arch::aarch64::*;
use std::arch::asm;
use std::arch::is_aarch64_feature_detected;

use crate::kernels::types::{Isa, Kernels};
use crate::quant::GgmlType::*;

/// `base` (the scalar table) with the NEON kernels, if the CPU has NEON (and the integer ones if
/// it has dotprod).
pub fn neon_table(base: &Kernels) -> Option<Kernels> {
    if !is_aarch64_feature_detected!("neon") {
        return None;
    }
    let mut k = Kernels { isa: Isa::Neon, ..*base };
    k.traits_mut(Q8_0).from_float = Some(quantize::FROM_FLOAT_Q8_0);
    k.traits_mut(Q8_K).from_float = Some(quantize::FROM_FLOAT_Q8_K);
    for (t, f) in dot::DOTS_FLOAT {
        k.traits_mut(t).vec_dot = Some(f);
    }
    k.attn.kt_f16 = attn::attn_kt_f16_neon;
    k.attn.vf_f16 = attn::attn_vf_f16_neon;
    k.attn.kt_f16_gather = attn::attn_kt_f16_gather_neon;
    k.attn.vf_f16_gather = attn::attn_vf_f16_gather_neon;
    k.attn.round_f16 = attn::round_f16_neon;
    if !is_aarch64_feature_detected!("dotprod") {
        return Some(k);
    }
    for (t, f) in dot::DOTS_INT {
        k.traits_mut(t).vec_dot = Some(f);
    }
    k.traits_mut(MXFP4).vec_dot = Some(mxfp4::DOT_MXFP4);
    for (t, f) in iq::DOTS {
        k.traits_mut(t).vec_dot = Some(f);
    }
    k.traits_mut(IQ4_NL).vec_dot = Some(iq4::DOT_IQ4_NL);
    k.traits_mut(IQ4_XS).vec_dot = Some(iq4::DOT_IQ4_XS);
    k.traits_mut(TQ1_0).vec_dot = Some(tq::DOT_TQ1_0);
    k.traits_mut(TQ2_0).vec_dot = Some(tq::DOT_TQ2_0);
    for (t, f) in r16::GEMMS {
        k.traits_mut(t).gemm_r16 = Some(f);
    }
    Some(k)
}

/// acc += per-lane sums of 4 adjacent i8 × i8 products.
///
/// # Safety
/// The CPU must support NEON and dotprod.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: register-only instruction, no memory access; dotprod is enabled on this function.
    unsafe {
        asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b, options(pure, nomem, nostack));
    }
    acc
}

/// Four f16 (raw bits) → four f32 (exact).
///
/// # Safety
/// The CPU must support NEON.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: register-only instruction, no memory access.
    unsafe {
        asm!("fcvtl {o:v}.4s, {i:v}.4h", o = out(vreg) out, i = in(vreg) h, options(pure, nomem, nostack));
    }
    out
}
