//! The ternary quants (BitNet b1.58, TriLM): 256 weights in {−1, 0, +1} times one f16 scale.
//! TQ1_0 packs 5 trits a byte (1.6875 bits a weight) as a fixed-point fraction of 3⁵ so that
//! multiplying by 3 shifts the next trit into the top bits; TQ2_0 stores 2 bits a weight
//! (2.0625 bits). Their dots with Q8_K are exact integer sums per block.

use half::f16;

use super::blocks::fp16;
use super::QK_K;

/// 256 weights: x = d · (t − 1), t in 0..3. qs[0..32] hold elements 0..160 (element 32n + m is
/// trit n of byte m), qs[32..48] elements 160..240 (16n + m, byte 32 + m), qh[0..4] elements
/// 240..256 (4n + j, byte j, trit n of 4); trit n of byte q is `((q · 3ⁿ mod 256) · 3) >> 8`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockTQ1_0 {
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    pub qh: [u8; QK_K / 64],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockTQ1_0>() == 54);

/// 256 weights: x = d · (t − 1), t = bits 2l..2l+2 of qs[32j + m] for element 128j + 32l + m.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockTQ2_0 {
    pub qs: [u8; QK_K / 4],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockTQ2_0>() == 66);

/// 3ⁿ for the trit positions.
pub const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// Trit `n` (0..3) of a TQ1_0 byte: ((q · 3ⁿ mod 256) · 3) >> 8.
#[inline(always)]
pub fn trit(q: u8, n: usize) -> i32 {
    ((q.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as i32
}

/// The 256 trits t (0..=2) of a TQ1_0 block in element order.
#[inline]
pub fn tq1_trits(b: &BlockTQ1_0) -> [i32; QK_K] {
    let mut t = [0i32; QK_K];
    let mut k = 0;
    for n in 0..5 {
        for m in 0..32 {
            t[k + 32 * n + m] = trit(b.qs[m], n);
        }
    }
    k += 160;
    for n in 0..5 {
        for m in 0..16 {
            t[k + 16 * n + m] = trit(b.qs[32 + m], n);
        }
    }
    k += 80;
    for n in 0..4 {
        for j in 0..4 {
            t[k + 4 * n + j] = trit(b.qh[j], n);
        }
    }
    t
}

/// The 256 codes (0..=3) of a TQ2_0 block in element order.
#[inline]
pub fn tq2_codes(b: &BlockTQ2_0) -> [i32; QK_K] {
    std::array::from_fn(|e| ((b.qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3) as i32)
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_tq1_0`).
pub fn dequantize_row_tq1_0(x: &[BlockTQ1_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (y, t) in y.iter_mut().zip(tq1_trits(b)) {
            *y = (t - 1) as f32 * d;
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_tq2_0`).
pub fn dequantize_row_tq2_0(x: &[BlockTQ2_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (y, t) in y.iter_mut().zip(tq2_codes(b)) {
            *y = (t - 1) as f32 * d;
        }
    }
}

/// The block scale amax and `lroundf(x · (1/amax)) + 1` (0..=2 for finite x), as ggml's
/// `quantize_row_tq*_0_ref`.
fn ternary(x: &[f32]) -> (f16, [u8; QK_K]) {
    let mut amax = 0f32;
    for &v in x {
        amax = if amax > v.abs() { amax } else { v.abs() }; // C: MAX(amax, fabsf(v))
    }
    let id = if amax != 0.0 { 1.0 / amax } else { 0.0 };
    // lroundf: half away from zero (f32::round); C's int `xi` then only keeps what fits a trit.
    (fp16(amax), std::array::from_fn(|j| ((x[j] * id).round() as i32 + 1) as u8))
}

/// `quantize_row_tq1_0_ref` (and gguf-py's TQ1_0 quantizer): 5 trits t₀..t₄ per byte as
/// ceil((t₀·3⁴ + … + t₄) · 256 / 243), the 4-trit bytes with a trailing 0 trit.
pub fn quantize_row_tq1_0(x: &[f32], y: &mut [BlockTQ1_0]) {
    assert_eq!(x.len(), y.len() * QK_K);
    let fix = |q: u8| (q as u16 * 256).div_ceil(243) as u8; // ceiling division by 3⁵
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, t) = ternary(x);
        b.d = d;
        for m in 0..32 {
            let q = (0..5).fold(0u8, |q, n| q.wrapping_mul(3).wrapping_add(t[m + 32 * n]));
            b.qs[m] = fix(q);
        }
        for m in 0..16 {
            let q = (0..5).fold(0u8, |q, n| q.wrapping_mul(3).wrapping_add(t[160 + m + 16 * n]));
            b.qs[32 + m] = fix(q);
        }
        for j in 0..4 {
            let q = (0..4).fold(0u8, |q, n| q.wrapping_mul(3).wrapping_add(t[240 + j + 4 * n]));
            b.qh[j] = fix(q.wrapping_mul(3));
        }
    }
}

/// `quantize_row_tq2_0_ref` (and gguf-py's TQ2_0 quantizer).
pub fn quantize_row_tq2_0(x: &[f32], y: &mut [BlockTQ2_0]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, t) = ternary(x);
        b.d = d;
        for j in 0..2 {
            for m in 0..32 {
                b.qs[32 * j + m] = (0..4).fold(0u8, |q, n| q | ((t[128 * j + 32 * n + m] & 3) << (2 * n)));
            }
        }
    }
}
