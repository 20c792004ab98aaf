//! Q5_0: 5-bit, one f16 scale per 32 weights; the fifth bits packed in qh.

use half::f16;

use super::blocks::fp16;

/// Weights per block.
pub const QK5_0: usize = 32;

/// 32 weights: x = d * (q - 16), q = nibble | (bit of qh) << 4.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// 5-bit values of element j and j+16 (0..32).
#[inline(always)]
pub(crate) fn q5_pair(qs: &[u8; 16], qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (((qs[j] & 0x0f) as u32 | h0) as i32, ((qs[j] >> 4) as u32 | h1) as i32)
}

/// Packs 5-bit values into nibbles + high-bit word (shared by Q5_0 and Q5_1 quantizers).
#[inline(always)]
pub(crate) fn q5_pack(q: &[u8; 32], qs: &mut [u8; 16]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
        qh |= (((q[j] & 0x10) as u32) >> 4) << j;
        qh |= (((q[j + 16] & 0x10) as u32) >> 4) << (j + 16);
    }
    qh.to_le_bytes()
}

/// y[32 * x.len()] = dequantized x.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK5_0);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK5_0 / 2 {
            let (q0, q1) = q5_pair(&b.qs, qh, j);
            y[j] = (q0 - 16) as f32 * d;
            y[j + QK5_0 / 2] = (q1 - 16) as f32 * d;
        }
    }
}

/// quantize_row_q5_0_ref: like Q4_0 with the largest-magnitude value mapped to -16;
/// q = trunc(x/d + 16.5) clamped to 31.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    assert_eq!(x.len(), y.len() * QK5_0);
    for (x, b) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = fp16(d);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(x) {
            *qj = ((v * id + 16.5) as i8).min(31) as u8;
        }
        b.qh = q5_pack(&q, &mut b.qs);
    }
}
