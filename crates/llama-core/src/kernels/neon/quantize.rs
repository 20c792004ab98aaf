//! NEON activation quantizers (Q8_0, Q8_K), byte for byte the scalar ones (`kernels::scalar`).

use std::arch::aarch64::*;

use crate::kernels::shared::{q8_scales, q8k_finish};
use crate::kernels::types::FromFloatFn;
use crate::quant::QK_K;

from_float_entry!(quantize_q8_0_entry, quantize_q8_0, 32, 34, "neon");
from_float_entry!(quantize_q8_k_entry, quantize_q8_k, QK_K, 292, "neon");

pub(super) const FROM_FLOAT_Q8_0: FromFloatFn = quantize_q8_0_entry;
pub(super) const FROM_FLOAT_Q8_K: FromFloatFn = quantize_q8_k_entry;

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `out` must hold the blocks of `x`
/// (`x.len()` a multiple of the block size; the table entry checks this).
unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
            let p = xb.as_ptr();
            let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
            let mut m = vabsq_f32(v[0]);
            for vk in &v[1..] {
                m = vmaxq_f32(m, vabsq_f32(*vk));
            }
            let amax = vmaxvq_f32(m);
            // As llama.cpp's x86 runtime quantize_row_q8_0 (its NEON one takes id = 1/d instead; we
            // follow x86 on every ISA so results do not depend on the machine): id = 127/amax.
            let (d, id) = q8_scales(amax);
            yb[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
            let q = yb.as_mut_ptr().add(2) as *mut i8;
            for (k, vk) in v.iter().enumerate() {
                // FCVTNS: halves to even.
                let r = vcvtnq_s32_f32(vmulq_n_f32(*vk, id));
                let h = vqmovn_s32(r);
                let b = vqmovn_s16(vcombine_s16(h, h));
                vst1_lane_s32::<0>(q.add(4 * k) as *mut i32, vreinterpret_s32_s8(b));
            }
        }
    }
}

#[target_feature(enable = "neon")]
/// # Safety
/// The CPU must support this function's target features; `out` must hold the blocks of `x`
/// (`x.len()` a multiple of the block size; the table entry checks this).
unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        for (xb, yb) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
            let p = xb.as_ptr();
            let mut m = vdupq_n_f32(0.0);
            for k in 0..QK_K / 4 {
                m = vmaxq_f32(m, vabsq_f32(vld1q_f32(p.add(4 * k))));
            }
            let amax = vmaxvq_f32(m);
            if amax == 0.0 {
                yb.fill(0);
                continue;
            }
            // The reference keeps the sign of the FIRST element of largest magnitude.
            let max = *xb.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
            let iscale = -127.0 / max;
            let q = yb.as_mut_ptr().add(4) as *mut i8;
            for k in 0..QK_K / 4 {
                // FRINTN: halves to even, as ggml's nearest_int.
                let r = vminq_s32(
                    vcvtq_s32_f32(vrndnq_f32(vmulq_n_f32(vld1q_f32(p.add(4 * k)), iscale))),
                    vdupq_n_s32(127),
                );
                let h = vqmovn_s32(r);
                let b = vqmovn_s16(vcombine_s16(h, h));
                vst1_lane_s32::<0>(q.add(4 * k) as *mut i32, vreinterpret_s32_s8(b));
            }
            q8k_finish(yb, iscale);
        }
    }
}
