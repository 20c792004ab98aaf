//! Reference quantizer for Q5_K (llama.cpp's `quantize_row_q5_K_ref`, no importance matrix), the
//! type that Q5_K_M / Q5_K_S files are mostly made of. Same scheme as Q4_K with 5-bit levels:
//! per 32 weights an asymmetric (scale, min) pair found by weighted search, both quantized to
//! 6 bits against the block's largest, weights re-quantized with the rounded pair; the fifth bit
//! of each level goes to `qh`. Float operations keep ggml's order so the bytes are identical.

use super::blocks::{fp16, nearest_int};
use super::k_quantize::make_qkx2_quants;
use super::k_quants::{get_scale_min_k4, BlockQ5K};
use super::QK_K;

/// Quantizes `x` (a whole number of 256-weight super-blocks) into `y`.
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K]; // [QK_K] levels 0..=31
        let mut weights = [0f32; 32]; // [32] per-sub-block search weights
        let mut mins = [0f32; QK_K / 32]; // [8] -min of each sub-block (≥ 0)
        let mut scales = [0f32; QK_K / 32]; // [8]
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..QK_K / 32 {
            let xs = &x[32 * j..32 * j + 32];
            let mut sum_x2 = 0f32;
            for &v in xs {
                sum_x2 += v * v;
            }
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            // 31 levels, search window [-0.5, 1.0] around nmax in 15 steps (Q4_K: 15 levels, -1, 20).
            scales[j] = make_qkx2_quants(31, xs, &weights, &mut l[32 * j..32 * j + 32], &mut mins[j], -0.5, 0.1, 15);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        b.scales = [0; 12];
        for j in 0..QK_K / 32 {
            // ggml keeps nearest_int in a uint8_t before MIN(63, ·): keep the truncation.
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            if j < 4 {
                b.scales[j] = ls;
                b.scales[j + 4] = lm;
            } else {
                b.scales[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
                b.scales[j - 4] |= (ls >> 4) << 6;
                b.scales[j] |= (lm >> 4) << 6;
            }
        }
        b.d = fp16(max_scale / 63.0);
        b.dmin = fp16(max_min / 63.0);
        for j in 0..QK_K / 32 {
            let (sc, m) = get_scale_min_k4(j, &b.scales);
            let d = b.d.to_f32() * sc as f32;
            if d == 0.0 {
                continue; // levels from the search stay (all-zero sub-block or scale rounded to 0)
            }
            let dm = b.dmin.to_f32() * m as f32;
            for ii in 0..32 {
                l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, 31) as u8;
            }
        }
        // Layout: for each 64 weights, qs holds the low nibbles of weights n..n+32 (low half) and
        // n+32..n+64 (high half); qh bit 2k / 2k+1 holds the fifth bit of those two groups.
        b.qh = [0; QK_K / 8];
        for (k, q) in b.qs.chunks_exact_mut(32).enumerate() {
            let n = 64 * k;
            let (m1, m2) = (1u8 << (2 * k), 2u8 << (2 * k));
            for jj in 0..32 {
                let (mut l1, mut l2) = (l[n + jj], l[n + jj + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[jj] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[jj] |= m2;
                }
                q[jj] = l1 | (l2 << 4);
            }
        }
    }
}
