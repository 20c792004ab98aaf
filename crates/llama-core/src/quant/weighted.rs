//! Quantizers with an importance matrix: llama.cpp's `quantize_<type>` when it is handed
//! `quant_weights` (ggml-quants.c's `quantize_row_<type>_impl`), operation by operation so the
//! bytes are identical. `qw` holds one weight per column of the row (llama-quantize's per-column
//! mean of the squared activations). Each function quantizes ONE row: the legacy types take their
//! σ² over the whole row. Float expressions keep ggml's evaluation order; Rust never fuses a*b+c.

// Index loops mirror ggml's C loops one to one, which keeps the port auditable.
#![allow(clippy::needless_range_loop)]

use super::blocks::{fp16, nearest_int};
use super::k_quants::{get_scale_min_k4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, QK_K};

/// ggml's GROUP_MAX_EPS.
const GROUP_MAX_EPS: f32 = 1e-15;

/// make_qx_quants with rmse_type 1: symmetric levels -nmax..nmax-1 (stored +nmax in `l`), trying
/// 18 scales around -nmax/max and keeping the best under the weighted least-squares criterion.
/// Weights `qw`, or x² without them.
pub(super) fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let w = |i: usize| qw.map_or(x[i] * x[i], |q| q[i]);
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (li + nmax) as i8;
        let lf = li as f32;
        sumlx += w(i) * x[i] * lf;
        suml2 += w(i) * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1f32 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1) as f32;
            sumlx += w(i) * x[i] * lf;
            suml2 += w(i) * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                l[i] = (nmax + nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// make_qkx3_quants (weights given, squared error): k_quantize's make_qkx2_quants with ggml's
/// search constants for this caller (nstep+1 = 37 scales from (-0.9 + nmax)/(max - min)).
fn make_qkx3_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], the_min: &mut f32) -> f32 {
    super::k_quantize::make_qkx2_quants(nmax, x, weights, l, the_min, -0.9, 0.05, 36, false)
}

/// make_qp_quants: the sub-block scales (or mins, ≥ 0) to levels 0..=nmax with weights, 9 scales
/// tried then 5 passes of coordinate descent. Levels are stored as ggml's uint8_t array stores
/// them (C's modular conversion, which a negative input would hit), with no lower clamp.
fn make_qp_quants(nmax: i32, x: &[f32], l: &mut [u8], qw: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0f32;
    for &v in x {
        max = if max > v { max } else { v }; // C's MAX(max, x[i])
    }
    if max < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..n {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1f32 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..n {
            let li = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * li as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).min(nmax);
        l[i] = li as u8;
        let lf = li as f32;
        sumlx += qw[i] * x[i] * lf;
        suml2 += qw[i] * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Σx² of a run of floats, summed in order as ggml's loops do.
#[inline(always)]
fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// Q2_K, Q3_K: 2-bit levels into `qs`, four 32-value runs of each 128 per byte.
#[inline(always)]
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for h in 0..QK_K / 128 {
        let lb = &l[128 * h..];
        for i in 0..32 {
            qs[32 * h + i] = lb[i] | (lb[i + 32] << 2) | (lb[i + 64] << 4) | (lb[i + 96] << 6);
        }
    }
}

/// quantize_row_q2_K_impl: per 16 weights make_qkx3_quants to 0..=3 with weights
/// qw·sqrt(σ² + x²) (σ² the block's mean square); scales and mins to 4 bits by make_qp_quants
/// weighted by each sub-block's total weight.
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2K], qw: &[f32]) {
    assert!(x.len() == y.len() * QK_K && qw.len() == x.len());
    for ((x, b), qw) in x.chunks_exact(QK_K).zip(y.iter_mut()).zip(qw.chunks_exact(QK_K)) {
        let mut l = [0u8; QK_K];
        let mut mins = [0f32; QK_K / 16];
        let mut scales = [0f32; QK_K / 16];
        let mut sw = [0f32; QK_K / 16];
        let mut weight = [0f32; 16];
        let sigma2 = sum_sq(x) / QK_K as f32;
        for j in 0..QK_K / 16 {
            for i in 0..16 {
                let v = x[16 * j + i];
                weight[i] = qw[16 * j + i] * (sigma2 + v * v).sqrt();
            }
            for &w in &weight {
                sw[j] += w;
            }
            scales[j] =
                make_qkx3_quants(3, &x[16 * j..16 * j + 16], &weight, &mut l[16 * j..16 * j + 16], &mut mins[j]);
        }
        let (mut ls, mut lm) = ([0u8; QK_K / 16], [0u8; QK_K / 16]);
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        b.d = fp16(dm);
        b.dmin = fp16(mm);
        let (dm, mm) = (b.d.to_f32(), b.dmin.to_f32());
        for j in 0..QK_K / 16 {
            b.scales[j] = ls[j] | (lm[j] << 4);
        }
        for j in 0..QK_K / 16 {
            let d = dm * (b.scales[j] & 0xf) as f32;
            if d == 0.0 {
                continue;
            }
            let m = mm * (b.scales[j] >> 4) as f32;
            for i in 0..16 {
                l[16 * j + i] = nearest_int((x[16 * j + i] + m) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut b.qs);
    }
}

/// quantize_row_q3_K_impl: per 16 weights make_qx_quants(nmax 4) with weights qw·sqrt(σ² + x²)
/// (σ² twice the block's mean square); the 16 scales by make_qx_quants(nmax 32) weighted by each
/// sub-block's total weight, stored +32 in 6 bits.
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3K], qw: &[f32]) {
    assert!(x.len() == y.len() * QK_K && qw.len() == x.len());
    for ((x, b), qw) in x.chunks_exact(QK_K).zip(y.iter_mut()).zip(qw.chunks_exact(QK_K)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut sw = [0f32; QK_K / 16];
        let mut weight = [0f32; 16];
        let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
        for j in 0..QK_K / 16 {
            for i in 0..16 {
                let v = x[16 * j + i];
                weight[i] = qw[16 * j + i] * (sigma2 + v * v).sqrt();
            }
            sw[j] = weight.iter().fold(0f32, |s, &w| s + w);
            scales[j] = make_qx_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], Some(&weight));
        }
        b.scales = [0; 12];
        let mut ls = [0i8; QK_K / 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
        for j in 0..QK_K / 16 {
            let v = ls[j] as i32;
            if j < 8 {
                b.scales[j] = (v & 0xf) as u8;
            } else {
                b.scales[j - 8] |= ((v & 0xf) << 4) as u8;
            }
            b.scales[j % 4 + 8] |= ((v >> 4) << (2 * (j / 4))) as u8;
        }
        b.d = fp16(d_block);
        for j in 0..QK_K / 16 {
            let lo = if j < 8 { b.scales[j] & 0xf } else { b.scales[j - 8] >> 4 };
            // C: int8_t sc = (sc | (((scales[8 + j%4] >> (2*(j/4))) & 3) << 4)) - 32
            let sc = ((lo | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32) as i8;
            let d = b.d.to_f32() * sc as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        b.hmask = [0; QK_K / 8];
        let mut l: [u8; QK_K] = l.map(|v| v as u8);
        for (j, v) in l.iter_mut().enumerate() {
            if *v > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *v -= 4;
            }
        }
        pack_2bit(&l, &mut b.qs);
    }
}

/// The shared first half of quantize_row_q4_K_impl / q5_K_impl: per 32 weights make_qkx3_quants
/// with weights qw·sqrt(σ² + x²) (σ² twice the block's mean square), then scales and mins to 6
/// bits by make_qp_quants weighted by each sub-block's total weight, packed as get_scale_min_k4
/// reads them (`clamp63`: Q5_K's MIN(63, ·)), and the weights re-quantized to 0..=nmax.
fn k4_levels(x: &[f32], qw: &[f32], nmax: i32, clamp63: bool) -> (half::f16, half::f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut sw = [0f32; QK_K / 32];
    let mut weights = [0f32; 32];
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    for j in 0..QK_K / 32 {
        for i in 0..32 {
            let v = x[32 * j + i];
            weights[i] = qw[32 * j + i] * (sigma2 + v * v).sqrt();
        }
        sw[j] = weights.iter().fold(0f32, |s, &w| s + w);
        scales[j] =
            make_qkx3_quants(nmax, &x[32 * j..32 * j + 32], &weights, &mut l[32 * j..32 * j + 32], &mut mins[j]);
    }
    let (mut ls, mut lm) = ([0u8; QK_K / 32], [0u8; QK_K / 32]);
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    let mut packed = [0u8; 12];
    for j in 0..QK_K / 32 {
        let (mut s, mut m) = (ls[j], lm[j]);
        if clamp63 {
            s = s.min(63);
            m = m.min(63);
        }
        if j < 4 {
            packed[j] = s;
            packed[j + 4] = m;
        } else {
            packed[j + 4] = (s & 0x0f) | ((m & 0x0f) << 4);
            packed[j - 4] |= (((s >> 4) as u32) << 6) as u8;
            packed[j] |= (((m >> 4) as u32) << 6) as u8;
        }
    }
    let d = fp16(d_block);
    let dmin = fp16(m_block);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = d.to_f32() * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// quantize_row_q4_K_impl.
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K], qw: &[f32]) {
    assert!(x.len() == y.len() * QK_K && qw.len() == x.len());
    for ((x, b), qw) in x.chunks_exact(QK_K).zip(y.iter_mut()).zip(qw.chunks_exact(QK_K)) {
        let (d, dmin, scales, l) = k4_levels(x, qw, 15, false);
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        for (k, q) in b.qs.chunks_exact_mut(32).enumerate() {
            for i in 0..32 {
                q[i] = l[64 * k + i] | (l[64 * k + i + 32] << 4);
            }
        }
    }
}

/// quantize_row_q5_K_impl.
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K], qw: &[f32]) {
    assert!(x.len() == y.len() * QK_K && qw.len() == x.len());
    for ((x, b), qw) in x.chunks_exact(QK_K).zip(y.iter_mut()).zip(qw.chunks_exact(QK_K)) {
        let (d, dmin, scales, l) = k4_levels(x, qw, 31, true);
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        b.qh = [0; QK_K / 8];
        for (k, q) in b.qs.chunks_exact_mut(32).enumerate() {
            for i in 0..32 {
                let (l1, l2) = (l[64 * k + i], l[64 * k + i + 32]);
                b.qh[i] |= ((l1 >> 4) << (2 * k)) | ((l2 >> 4) << (2 * k + 1));
                q[i] = (l1 & 0x0f) | ((l2 & 0x0f) << 4);
            }
        }
    }
}

/// quantize_row_q6_K_impl: as the reference but make_qx_quants weighs by qw itself (not x²).
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K], qw: &[f32]) {
    assert!(x.len() == y.len() * QK_K && qw.len() == x.len());
    for ((x, b), qw) in x.chunks_exact(QK_K).zip(y.iter_mut()).zip(qw.chunks_exact(QK_K)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let r = 16 * ib..16 * ib + 16;
            let scale = make_qx_quants(32, &x[r.clone()], &mut l[r.clone()], Some(&qw[r]));
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            b.ql = [0; QK_K / 2];
            b.qh = [0; QK_K / 4];
            b.scales = [0; QK_K / 16];
            b.d = fp16(0.0);
            continue;
        }
        let iscale = -128.0f32 / max_scale;
        b.d = fp16(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d.to_f32() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        let l: [u8; QK_K] = l.map(|v| v as u8);
        for h in 0..QK_K / 128 {
            let (lb, ql, qh) = (&l[128 * h..], &mut b.ql[64 * h..64 * h + 64], &mut b.qh[32 * h..32 * h + 32]);
            for i in 0..32 {
                let (q1, q2, q3, q4) = (lb[i], lb[i + 32], lb[i + 64], lb[i + 96]);
                ql[i] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
                ql[i + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

/// Per-32 weights qw·sqrt(σ² + x²) of the legacy types, σ² the ROW's mean square.
#[inline(always)]
fn legacy_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; 32] {
    let mut w = [0f32; 32];
    for j in 0..32 {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

/// quantize_row_q4_0_impl: make_qx_quants(nmax 8) per 32 weights.
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0], qw: &[f32]) {
    assert!(x.len() == y.len() * 32 && qw.len() == x.len());
    let sigma2 = sum_sq(x) / x.len() as f32;
    for ((xb, b), qw) in x.chunks_exact(32).zip(y.iter_mut()).zip(qw.chunks_exact(32)) {
        let w = legacy_weights(xb, qw, sigma2);
        let mut l = [0i8; 32];
        b.d = fp16(make_qx_quants(8, xb, &mut l, Some(&w)));
        for j in 0..16 {
            b.qs[j] = (l[j] as u8) | ((l[j + 16] as u8) << 4);
        }
    }
}

/// quantize_row_q4_1_impl: make_qkx3_quants(nmax 15) per 32 weights.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1], qw: &[f32]) {
    assert!(x.len() == y.len() * 32 && qw.len() == x.len());
    let sigma2 = sum_sq(x) / x.len() as f32;
    for ((xb, b), qw) in x.chunks_exact(32).zip(y.iter_mut()).zip(qw.chunks_exact(32)) {
        let w = legacy_weights(xb, qw, sigma2);
        let (mut l, mut min) = ([0u8; 32], 0f32);
        b.d = fp16(make_qkx3_quants(15, xb, &w, &mut l, &mut min));
        b.m = fp16(-min);
        for j in 0..16 {
            b.qs[j] = l[j] | (l[j + 16] << 4);
        }
    }
}

/// The 5-bit packing of Q5_0 / Q5_1: low nibbles in qs, fifth bits in qh (little-endian u32).
#[inline(always)]
fn pack_5bit(l: &[u8; 32], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for j in 0..16 {
        let (a, b) = (l[j], l[j + 16]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        h |= (((a & 0x10) >> 4) as u32) << j;
        h |= (((b & 0x10) >> 4) as u32) << (j + 16);
    }
    *qh = h.to_le_bytes();
}

/// quantize_row_q5_0_impl: make_qx_quants(nmax 16) per 32 weights.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0], qw: &[f32]) {
    assert!(x.len() == y.len() * 32 && qw.len() == x.len());
    let sigma2 = sum_sq(x) / x.len() as f32;
    for ((xb, b), qw) in x.chunks_exact(32).zip(y.iter_mut()).zip(qw.chunks_exact(32)) {
        let w = legacy_weights(xb, qw, sigma2);
        let mut l = [0i8; 32];
        b.d = fp16(make_qx_quants(16, xb, &mut l, Some(&w)));
        pack_5bit(&l.map(|v| v as u8), &mut b.qs, &mut b.qh);
    }
}

/// quantize_row_q5_1_impl: make_qkx3_quants(nmax 31) per 32 weights.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1], qw: &[f32]) {
    assert!(x.len() == y.len() * 32 && qw.len() == x.len());
    let sigma2 = sum_sq(x) / x.len() as f32;
    for ((xb, b), qw) in x.chunks_exact(32).zip(y.iter_mut()).zip(qw.chunks_exact(32)) {
        let w = legacy_weights(xb, qw, sigma2);
        let (mut l, mut min) = ([0u8; 32], 0f32);
        b.d = fp16(make_qkx3_quants(31, xb, &w, &mut l, &mut min));
        b.m = fp16(-min);
        pack_5bit(&l, &mut b.qs, &mut b.qh);
    }
}
