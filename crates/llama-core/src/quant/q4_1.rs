//! Q4_1: 4-bit with scale and minimum per 32 weights.

use half::f16;

use super::blocks::fp16;

/// Weights per block.
pub const QK4_1: usize = 32;

/// 32 weights: x = d * q + m, q in 0..16; nibble layout as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// y[32 * x.len()] = dequantized x.
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK4_1);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for j in 0..QK4_1 / 2 {
            let x0 = (b.qs[j] & 0x0f) as f32;
            let x1 = (b.qs[j] >> 4) as f32;
            y[j] = x0 * d + m;
            y[j + QK4_1 / 2] = x1 * d + m;
        }
    }
}

/// The Q4_1 and Q5_1 reference block scale: (min, d = (max - min) / levels, id = 1 / d or 0).
#[inline(always)]
pub(crate) fn min_scale(x: &[f32], levels: f32) -> (f32, f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / levels;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (min, d, id)
}

/// quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = trunc((x - min)/d + 0.5) clamped to 15.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    assert_eq!(x.len(), y.len() * QK4_1);
    for (x, b) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
        let (min, d, id) = min_scale(x, 15.0);
        b.d = fp16(d);
        b.m = fp16(min);
        for j in 0..QK4_1 / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK4_1 / 2 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            b.qs[j] = xi0 | (xi1 << 4);
        }
    }
}
