//! Q5_1: 5-bit with scale and minimum per 32 weights.

use half::f16;

use super::blocks::fp16;
use super::q4_1::min_scale;
use super::q5_0::{q5_pack, q5_pair};

/// Weights per block.
pub const QK5_1: usize = 32;

/// 32 weights: x = d * q + m, q = nibble | (bit of qh) << 4.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// y[32 * x.len()] = dequantized x.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK5_1);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK5_1 / 2 {
            let (q0, q1) = q5_pair(&b.qs, qh, j);
            y[j] = q0 as f32 * d + m;
            y[j + QK5_1 / 2] = q1 as f32 * d + m;
        }
    }
}

/// quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = trunc((x - min)/d + 0.5)
/// (no clamp in ggml: the value cannot exceed 31.5 before truncation).
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    assert_eq!(x.len(), y.len() * QK5_1);
    for (x, b) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
        let (min, d, id) = min_scale(x, 31.0);
        b.d = fp16(d);
        b.m = fp16(min);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(x) {
            *qj = ((v - min) * id + 0.5) as u8;
        }
        b.qh = q5_pack(&q, &mut b.qs);
    }
}
