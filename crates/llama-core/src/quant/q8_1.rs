//! Q8_1: 8-bit with the scaled sum; the activation partner of Q4_1/Q5_1.

use half::f16;

use super::blocks::fp16;
use super::q8_0::{dequantize_q8, quantize_q8_ref};

/// Values per block.
pub const QK8_1: usize = 32;

/// 32 values: x = d * q; s = d * sum(q) (lets Q4_1/Q5_1 dots fold in the minimum).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

/// y[32 * x.len()] = d * q (ggml has no to_float for Q8_1; this is the obvious inverse).
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK8_1);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
        dequantize_q8(b.d, &b.qs, y);
    }
}

/// quantize_row_q8_1_ref: as Q8_0, plus s = fp16(Σq · d) with the unrounded f32 d. Activations
/// take the runtime quantizer instead (`kernels::scalar`'s `from_float`).
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), y.len() * QK8_1);
    for (x, b) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let d = quantize_q8_ref(x, &mut b.qs);
        b.d = fp16(d);
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        b.s = fp16(sum as f32 * d);
    }
}
