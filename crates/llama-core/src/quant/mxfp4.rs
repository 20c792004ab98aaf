//! MXFP4 (OCP microscaling FP4): 32 weights sharing one E8M0 exponent, each weight a 4-bit E2M1
//! float (OpenAI's open-weight MoE models ship their experts in it). ggml stores the E2M1 values doubled as small integers
//! (`kvalues_mxfp4`) and halves the scale to match (`ggml_e8m0_to_fp32_half`), so a block is an
//! integer vector times a power of two: its dot with Q8_0 activations is an exact integer sum per
//! block, like Q4_0's.

/// Weights per block.
pub const QK_MXFP4: usize = 32;

/// The E2M1 values doubled (ggml-common.h `kvalues_mxfp4`): codes 0..8 are +0, 0.5, 1, 1.5, 2, 3,
/// 4, 6 and codes 8..16 the same negated (code 8 is −0, stored as 0).
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// 32 weights: x = kvalues[q] · 2^(e − 128) (the E8M0 scale 2^(e−127), halved for the doubled
/// values); qs[j] holds element j (low nibble) and j+16 (high), as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockMXFP4 {
    /// E8M0: a bare biased exponent (no sign, no mantissa).
    pub e: u8,
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockMXFP4>() == 17);

/// `ggml_e8m0_to_fp32_half`: 2^(e − 128) built in the float's bits (e < 2 gives the subnormals
/// 2^−128 and 2^−127). e = 255 is 2^127 (ggml does not treat it as NaN).
#[inline(always)]
pub fn e8m0_to_fp32_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { ((e - 1) as u32) << 23 };
    f32::from_bits(bits)
}

/// y[32 * x.len()] = dequantized x (`dequantize_row_mxfp4`).
pub fn dequantize_row_mxfp4(x: &[BlockMXFP4], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_MXFP4);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_MXFP4)) {
        let d = e8m0_to_fp32_half(b.e);
        for j in 0..QK_MXFP4 / 2 {
            y[j] = KVALUES_MXFP4[(b.qs[j] & 0x0F) as usize] as f32 * d;
            y[j + QK_MXFP4 / 2] = KVALUES_MXFP4[(b.qs[j] >> 4) as usize] as f32 * d;
        }
    }
}

/// `best_index_mxfp4`: the code whose value (times `d`) is nearest to x, the first on ties.
fn best_index(x: f32, d: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (KVALUES_MXFP4[0] as f32 * d - x).abs();
    for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (k as f32 * d - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// `quantize_row_mxfp4_ref`: e = floor(log2(amax)) − 2 + 127 (so amax lands in the top code's
/// range, 4..8 times the scale), each value to its nearest code.
pub fn quantize_row_mxfp4(x: &[f32], y: &mut [BlockMXFP4]) {
    assert_eq!(x.len(), y.len() * QK_MXFP4);
    for (x, b) in x.chunks_exact(QK_MXFP4).zip(y.iter_mut()) {
        let mut amax = 0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
            }
        }
        // C: (uint8_t)(floorf(log2f(amax)) - 2 + 127), a float converted to uint8_t. x86 converts
        // through a 32-bit integer and keeps the low byte (so tiny amax wraps instead of clamping).
        b.e = if amax > 0.0 { ((amax.log2().floor() - 2.0 + 127.0) as i32) as u8 } else { 0 };
        let d = e8m0_to_fp32_half(b.e);
        for j in 0..QK_MXFP4 / 2 {
            b.qs[j] = best_index(x[j], d) | (best_index(x[QK_MXFP4 / 2 + j], d) << 4);
        }
    }
}
