//! Activation converters (`FromFloat`): what llama.cpp's runtime does to f32 activations before a
//! dot. Q8_0/Q8_1 are llama.cpp's runtime quantizers (x86: id = 127/amax, halves to even), which
//! differ from the `_ref` weight quantizers of `quant` in the last bit for some inputs; Q8_K and the
//! float conversions are the `quant` references themselves (llama.cpp's x86 runtime calls them).

use half::{bf16, f16};

use super::FromFloat;
use crate::kernels::shared::q8_scales;
use crate::quant::blocks::write_blocks;
use crate::quant::{float, k_quantize, BlockQ8K, BlockQ8_0, BlockQ8_1, QK_K};

/// Halves to even: what llama.cpp's runtime activation quantizers do (x86 `_mm256_round_ps(v,
/// _MM_ROUND_NEAREST)`), unlike the `roundf` of ggml's `quantize_row_q8_0_ref`.
#[inline(always)]
fn round_even(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Q8_0: d = amax / 127, bit for bit llama.cpp's runtime (x86 SIMD) activation quantizer, see
/// [`q8_scales`] and [`round_even`].
impl FromFloat for BlockQ8_0 {
    fn from_float(x: &[f32], y: &mut [BlockQ8_0]) {
        for (xb, yb) in x.chunks_exact(32).zip(y) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let (d, id) = q8_scales(amax);
            yb.d = f16::from_f32(d);
            for (q, v) in yb.qs.iter_mut().zip(xb) {
                *q = round_even(v * id) as i8;
            }
        }
    }
}

/// Q8_1: as Q8_0 plus s = d·Σq, as llama.cpp's runtime quantize_row_q8_1.
impl FromFloat for BlockQ8_1 {
    fn from_float(x: &[f32], y: &mut [BlockQ8_1]) {
        for (xb, yb) in x.chunks_exact(32).zip(y) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let (d, id) = q8_scales(amax);
            let mut sum = 0i32;
            for (q, v) in yb.qs.iter_mut().zip(xb) {
                let qi = round_even(v * id);
                sum += qi;
                *q = qi as i8;
            }
            yb.d = f16::from_f32(d);
            yb.s = f16::from_f32(sum as f32 * d);
        }
    }
}

/// Q8_K: llama.cpp's x86 runtime uses `quantize_row_q8_K_ref` itself.
impl FromFloat for BlockQ8K {
    fn from_float(x: &[f32], y: &mut [BlockQ8K]) {
        k_quantize::quantize_row_q8_k(x, y)
    }
}

impl FromFloat for f16 {
    fn from_float(x: &[f32], y: &mut [f16]) {
        float::quantize_row_f16(x, y)
    }
}

impl FromFloat for bf16 {
    fn from_float(x: &[f32], y: &mut [bf16]) {
        float::quantize_row_bf16(x, y)
    }
}

impl FromFloat for f32 {
    fn from_float(x: &[f32], y: &mut [f32]) {
        float::quantize_row_f32(x, y)
    }
}

/// `FromFloatFn` of llama.cpp's Q4_K batch activations (`R16Batch::from_float` of Q4_K).
pub fn from_float_q8_k_4x8(x: &[f32], out: &mut [u8]) {
    let len = x.len() / QK_K * size_of::<BlockQ8K>();
    write_blocks::<BlockQ8K>(&mut out[..len], |y| k_quantize::quantize_row_q8_k_4x8(x, y))
}
