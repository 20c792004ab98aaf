//! F32, F16 and BF16 rows: conversions as ggml does them, and dots against f32 activations.

use half::{bf16, f16};

/// ggml_compute_fp32_to_bf16: round to nearest even on the top 16 bits; NaNs keep their sign and
/// top payload bits and are forced quiet (bit 6 of the bf16 mantissa), so a NaN never becomes Inf.
#[inline]
pub fn f32_to_bf16(x: f32) -> bf16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    // No overflow: the largest non-NaN pattern 0xff80_0000 + 0x8000 stays below 2^32.
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// bf16 → f32 is exact: the bf16 bits are the top half of the f32.
#[inline]
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}

pub fn dequantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (d, s) in y.iter_mut().zip(x) {
        *d = s.to_f32();
    }
}

pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (d, s) in y.iter_mut().zip(x) {
        *d = bf16_to_f32(*s);
    }
}

pub fn quantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

/// ggml_fp32_to_fp16_row: round to nearest even, overflow to ±Inf, NaN stays NaN.
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    assert_eq!(x.len(), y.len());
    for (d, s) in y.iter_mut().zip(x) {
        *d = f16::from_f32(*s);
    }
}

pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    assert_eq!(x.len(), y.len());
    for (d, s) in y.iter_mut().zip(x) {
        *d = f32_to_bf16(*s);
    }
}
