//! Q8_1: 8-bit with the scaled sum; the activation partner of Q4_1/Q5_1.

use half::f16;

use super::blocks::fp16;

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
        let d = b.d.to_f32();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// quantize_row_q8_1_ref: as Q8_0, plus s = fp16(Σq · d) with the unrounded f32 d. Activations
/// take the runtime quantizer instead (`kernels::scalar`'s `from_float`).
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), y.len() * QK8_1);
    for (x, b) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let mut amax = 0f32;
        for &v in x {
            // C's MAX macro: a NaN input propagates, as in ggml.
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = fp16(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s = fp16(sum as f32 * d);
    }
}
