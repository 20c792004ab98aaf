//! The 4-bit non-linear quants: IQ4_NL (32 weights, one f16 scale) and IQ4_XS (256 weights, an f16
//! super-scale and a 6-bit scale per 32). Both index the same 16 non-uniform levels
//! (`kvalues_iq4nl`, denser near zero), so a block is a small-integer vector times a scale and its
//! dot with Q8_0 / Q8_K activations is an exact integer sum per 32 weights, like Q4_0's.

use half::f16;

use super::blocks::{fp16, nearest_int};
use super::QK_K;

/// Weights per IQ4_NL block.
pub const QK4_NL: usize = 32;

/// The 16 levels (ggml-common.h `kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// 32 weights: x = d · kvalues[q]; qs[j] holds element j (low nibble) and j+16 (high), as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ4NL {
    pub d: f16,
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);

/// 256 weights in 8 sub-blocks of 32: x = d · (ls − 32) · kvalues[q], where the 6-bit ls of
/// sub-block ib is `scales_l` nibble ib (low nibble first) | bits 2ib..2ib+2 of `scales_h` << 4;
/// qs[16ib + j] holds element 32ib + j (low nibble) and 32ib + j + 16 (high).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ4XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

impl BlockIQ4XS {
    /// The 6-bit scale of sub-block `ib` (0..64; the weight scale is d · (ls − 32)).
    #[inline(always)]
    pub fn ls(&self, ib: usize) -> i32 {
        (((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | ((((self.scales_h >> (2 * ib)) & 3) as u8) << 4)) as i32
    }
}

/// y[32 * x.len()] = dequantized x (`dequantize_row_iq4_nl`).
pub fn dequantize_row_iq4_nl(x: &[BlockIQ4NL], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK4_NL);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK4_NL)) {
        let d = b.d.to_f32();
        for j in 0..16 {
            y[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xf) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq4_xs`).
pub fn dequantize_row_iq4_xs(x: &[BlockIQ4XS], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * (b.ls(ib) - 32) as f32;
            let qs = &b.qs[16 * ib..16 * ib + 16];
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// ggml's `best_index_int8` over the 16 levels: the nearest level by bisection, the lower one when
/// x is not strictly nearer the upper (NaN x lands on the upper end of the last bisection step).
#[inline]
fn best_index(x: f32) -> u8 {
    let val = &KVALUES_IQ4NL;
    if x <= val[0] as f32 {
        return 0;
    }
    if x >= val[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < val[mav] as f32 {
            mu = mav
        } else {
            ml = mav
        }
    }
    if x - (val[mu - 1] as f32) < val[mu] as f32 - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// ggml's GROUP_MAX_EPS: a 32-weight group whose largest magnitude is below it gets scale 0.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `quantize_row_iq4_nl_impl` for blocks of 32: the scale of each 32 weights by weighted least
/// squares after assigning levels, refined over `ntry` scale candidates either side; the result
/// in `scales`, the levels in `l`. With several sub-blocks (IQ4_XS) the scales are then quantized
/// to 6 bits against a super-scale and the levels reassigned. Returns the f16 super-scale (IQ4_XS)
/// or block scale (IQ4_NL), with `scales_h` / `scales_l` filled for IQ4_XS.
#[allow(clippy::too_many_arguments)]
fn quantize_impl(
    x: &[f32],
    quant_weights: Option<&[f32]>,
    ntry: i32,
    scales: &mut [f32],
    l: &mut [u8],
    scales_h: &mut u16,
    scales_l: &mut [u8],
) -> f16 {
    let sbs = x.len(); // super-block size: 32 (IQ4_NL) or 256 (IQ4_XS)
    let values = &KVALUES_IQ4NL;
    let mut sigma2 = 0f32;
    for &v in x {
        sigma2 += v * v;
    }
    sigma2 *= 2.0 / sbs as f32;
    let mut weight = [0f32; 32];
    let (mut max_scale, mut amax_scale) = (0f32, 0f32);
    for ib in 0..sbs / 32 {
        let xb = &x[32 * ib..32 * ib + 32];
        let lb = &mut l[32 * ib..32 * ib + 32];
        match quant_weights {
            Some(qw) => {
                for j in 0..32 {
                    weight[j] = qw[32 * ib + j] * (sigma2 + xb[j] * xb[j]).sqrt();
                }
            }
            None => {
                for j in 0..32 {
                    weight[j] = xb[j] * xb[j];
                }
            }
        }
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let mut d = if ntry > 0 { -max / values[0] as f32 } else { max / values[0] as f32 };
        let mut id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for j in 0..32 {
            let li = best_index(id * xb[j]);
            lb[j] = li;
            let q = values[li as usize] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            id = (itry + values[0] as i32) as f32 / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..32 {
                let q = values[best_index(id * xb[j]) as usize] as f32;
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let dh;
    if sbs > 32 {
        *scales_h = 0;
        let d = -max_scale / 32.0;
        dh = fp16(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..sbs / 32 {
            let li = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * li as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                l[32 * ib + j] = best_index(idl * x[32 * ib + j]);
            }
            let li = (li + 32) as u8;
            if ib % 2 == 0 {
                scales_l[ib / 2] = li & 0xf;
            } else {
                scales_l[ib / 2] |= (li & 0xf) << 4;
            }
            *scales_h |= ((li >> 4) as u16) << (2 * (ib % 8));
        }
    } else {
        dh = fp16(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
            for j in 0..sbs {
                l[j] = best_index(id * x[j]);
            }
        }
    }
    dh
}

/// Packs levels as IQ4 stores them: per 32, element j in the low nibble of byte j, j+16 in the high.
fn pack(l: &[u8], qs: &mut [u8]) {
    for (i, q) in qs.chunks_exact_mut(16).enumerate() {
        for j in 0..16 {
            q[j] = l[32 * i + j] | (l[32 * i + 16 + j] << 4);
        }
    }
}

/// `quantize_iq4_nl` of one row (what llama-quantize writes): 7 scale candidates either side,
/// weighted by `quant_weights` (an imatrix row, `x.len()` values) when given, else by x².
pub fn quantize_iq4_nl(x: &[f32], y: &mut [BlockIQ4NL], quant_weights: Option<&[f32]>) {
    quantize_nl(x, y, quant_weights, 7)
}

/// `quantize_row_iq4_nl_ref`: no refinement (`ntry` −1), each block's scale max/−127 then its
/// least-squares fit over the levels the first assignment picked. gguf-py has no IQ4_NL quantizer.
pub fn quantize_row_iq4_nl_ref(x: &[f32], y: &mut [BlockIQ4NL]) {
    quantize_nl(x, y, None, -1)
}

fn quantize_nl(x: &[f32], y: &mut [BlockIQ4NL], quant_weights: Option<&[f32]>, ntry: i32) {
    assert_eq!(x.len(), y.len() * QK4_NL);
    let (mut scales, mut l, mut unused_h) = ([0f32; 1], [0u8; 32], 0u16);
    for (i, (x, b)) in x.chunks_exact(QK4_NL).zip(y.iter_mut()).enumerate() {
        let qw = quant_weights.map(|w| &w[QK4_NL * i..QK4_NL * (i + 1)]);
        // ggml reuses L across blocks: a block below GROUP_MAX_EPS keeps the previous block's
        // levels under `ntry` ≤ 0 (its scale is 0, so only its bytes show it).
        b.d = quantize_impl(x, qw, ntry, &mut scales, &mut l, &mut unused_h, &mut []);
        pack(&l, &mut b.qs);
    }
}

/// `quantize_iq4_xs` of one row (also `quantize_row_iq4_xs_ref`, which calls it without
/// importance weights): 7 scale candidates either side per 32 weights, 6-bit sub-scales.
pub fn quantize_iq4_xs(x: &[f32], y: &mut [BlockIQ4XS], quant_weights: Option<&[f32]>) {
    assert_eq!(x.len(), y.len() * QK_K);
    let (mut scales, mut l) = ([0f32; QK_K / 32], [0u8; QK_K]);
    for (i, (x, b)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qw = quant_weights.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
        b.d = quantize_impl(x, qw, 7, &mut scales, &mut l, &mut b.scales_h, &mut b.scales_l);
        pack(&l, &mut b.qs);
    }
}

/// `quantize_row_iq4_xs_ref`.
pub fn quantize_row_iq4_xs_ref(x: &[f32], y: &mut [BlockIQ4XS]) {
    quantize_iq4_xs(x, y, None)
}
