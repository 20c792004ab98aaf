//! Q8_0: 8-bit, one f16 scale per 32 weights. Also the activation partner of Q4_0/Q5_0/Q8_0.

use half::f16;

use super::blocks::fp16;

/// Weights per block.
pub const QK8_0: usize = 32;

/// 32 weights: x = d * q.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// y[32 * x.len()] = dequantized x.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK8_0);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        dequantize_q8(b.d, &b.qs, y);
    }
}

/// y[32] = d · q: the Q8_0 and Q8_1 block dequantizer.
#[inline(always)]
pub(crate) fn dequantize_q8(d: f16, qs: &[i8; 32], y: &mut [f32]) {
    let d = d.to_f32();
    for (o, &q) in y.iter_mut().zip(qs) {
        *o = q as f32 * d;
    }
}

/// The Q8_0 and Q8_1 reference block quantizer: d = amax / 127, q = roundf(x / d) (half away from
/// zero); returns the unrounded f32 d.
#[inline(always)]
pub(crate) fn quantize_q8_ref(x: &[f32], qs: &mut [i8; 32]) -> f32 {
    let mut amax = 0f32;
    for &v in x {
        // C's MAX macro: a NaN input propagates, as in ggml.
        amax = if amax > v.abs() { amax } else { v.abs() };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    d
}

/// quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (half away from zero): how llama.cpp
/// writes Q8_0 weights to files. Activations take the runtime quantizer instead
/// (`kernels::scalar`'s `from_float`: id = 127/amax, halves to even).
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), y.len() * QK8_0);
    for (x, b) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        b.d = fp16(quantize_q8_ref(x, &mut b.qs));
    }
}
