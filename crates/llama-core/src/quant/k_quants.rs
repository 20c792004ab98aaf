//! K-quants: 256-weight super-blocks (Q2_K … Q6_K) and Q8_K, their activation partner.

use half::f16;

use super::QK_K;

/// Q2_K: 16 sub-blocks of 16; x = d * (scale & 0xF) * q - dmin * (scale >> 4).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 sub-blocks of 16; 2 low bits in qs, high bit in hmask; 6-bit scales packed in 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 sub-blocks of 32; 6-bit scales and mins packed in 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Q5_K: as Q4_K plus one high bit per weight in qh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 sub-blocks of 16; 4 low bits in ql, 2 high bits in qh, int8 scales; x = d * scale * (q - 32).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Q8_K: activation partner of the K-quants; f32 scale and per-16 sums of qs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

/// Q4_K/Q5_K's packed 6-bit (scale, min) of sub-block j (get_scale_min_k4): bytes 0..4 hold scales
/// 0..3 and bytes 4..8 mins 0..3 in their low 6 bits; sub-blocks 4..7 take their low nibbles from
/// bytes 8..12 and their top 2 bits from the spare top bits of bytes 0..8.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// All 8 (scale, min) pairs of a Q4_K/Q5_K block: `get_scale_min_k4` for j = 0..8.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        (sc[j], mn[j]) = get_scale_min_k4(j, q);
    }
    (sc, mn)
}

/// Q3_K's 6-bit scale of sub-block k (0..16), offset by -32: low nibbles from bytes 0..8 (k < 8 the
/// low half of byte k, else the high half of byte k-8), top 2 bits from byte 8 + k%4 at bit 2·(k/4).
#[inline(always)]
pub fn q3k_scale(k: usize, s: &[u8; 12]) -> i32 {
    let low = if k < 8 { s[k] & 0x0f } else { s[k - 8] >> 4 };
    let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// y[256 * x.len()]: x = dl·q - ml with dl = d·(sc & 15), ml = dmin·(sc >> 4), per 16 weights.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        // Element e: half h = e/128, shift pair j = (e%128)/32, l = e%32; sub-block is = e/16.
        for (e, o) in y.iter_mut().enumerate() {
            let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
            let sc = b.scales[e / 16];
            let dl = d * (sc & 0x0f) as f32;
            let ml = min * (sc >> 4) as f32;
            let q = (b.qs[h * 32 + l] >> (2 * j)) & 3;
            *o = dl * q as f32 - ml;
        }
    }
}

/// y[256 * x.len()]: x = d·(scale - 32)·(q - (hbit ? 0 : 4)), q the 2 low bits.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        for (e, o) in y.iter_mut().enumerate() {
            let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
            let dl = d_all * q3k_scale(e / 16, &b.scales) as f32;
            let q = ((b.qs[h * 32 + l] >> (2 * j)) & 3) as i32;
            let hbit = b.hmask[l] & (1u8 << (h * 4 + j));
            let q = q - if hbit != 0 { 0 } else { 4 };
            *o = dl * q as f32;
        }
    }
}

/// y[256 * x.len()]: x = (d·sc)·q - (dmin·m) per 32 weights; each 64 weights share 32 bytes of qs
/// (low nibbles first).
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        dequantize_k4(b.d, b.dmin, &b.scales, y, |j, l| (b.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f);
    }
}

/// y[256 * x.len()]: as Q4_K with a fifth bit from qh (bit j of qh[l] for sub-block j).
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        dequantize_k4(b.d, b.dmin, &b.scales, y, |j, l| {
            let lo = (b.qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f;
            let hi = if b.qh[l] & (1u8 << j) != 0 { 16 } else { 0 };
            lo + hi
        });
    }
}

/// One Q4_K or Q5_K block: y[32·j + l] = (d·sc_j)·q - (dmin·m_j), q = `level(j, l)`.
#[inline(always)]
fn dequantize_k4(d: f16, dmin: f16, scales: &[u8; 12], y: &mut [f32], level: impl Fn(usize, usize) -> u8) {
    let (d, min) = (d.to_f32(), dmin.to_f32());
    for (j, y) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d1 = d * sc as f32;
        let m1 = min * m as f32;
        for (l, o) in y.iter_mut().enumerate() {
            *o = d1 * level(j, l) as f32 - m1;
        }
    }
}

/// 6-bit value (0..64) of element e within a Q6_K block.
#[inline(always)]
pub(crate) fn q6k_value(b: &BlockQ6K, e: usize) -> i32 {
    // Each 128 weights use 64 bytes of ql and 32 of qh; quarter k = (e%128)/32 takes the low (k<2)
    // or high nibble of ql[l + 32·(k%2)] and bits 2k..2k+2 of qh[l].
    let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let ql = b.ql[h * 64 + l + 32 * (k % 2)];
    let lo = if k < 2 { ql & 0x0f } else { ql >> 4 };
    let hi = (b.qh[h * 32 + l] >> (2 * k)) & 3;
    (lo | (hi << 4)) as i32
}

/// y[256 * x.len()]: x = (d·scale)·(q - 32) per 16 weights.
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (e, o) in y.iter_mut().enumerate() {
            let q = q6k_value(b, e) - 32;
            *o = d * b.scales[e / 16] as f32 * q as f32;
        }
    }
}

/// y[256 * x.len()]: x = d·q.
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = b.d * q as f32;
        }
    }
}
