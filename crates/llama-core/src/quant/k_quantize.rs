//! Reference quantizers for the K-quants (Q2_K … Q6_K) and for Q8_K activations, following
//! llama.cpp's `quantize_row_*_ref` (no importance matrix) operation by operation so the bytes are
//! identical. Float expressions keep ggml's evaluation order; Rust never fuses a*b+c into an FMA.

// Index loops mirror ggml's C loops one to one, which keeps the port auditable.
#![allow(clippy::needless_range_loop)]

use super::blocks::{fp16, nearest_int};
use super::k_quants::{get_scale_min_k4, q3k_scale, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use super::QK_K;

/// ggml's GROUP_MAX_EPS: groups whose largest magnitude is below this are treated as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// quantize_row_q8_K_ref: d = max / -127 where max is the signed value of largest magnitude (the
/// first one), q = nearest_int(x·(-127/max)) capped at 127; bsums are the sums of each 16 q's.
/// An all-zero block gets d = 0 and zero q's and bsums.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (max, _) = signed_max(x);
        quantize_block_q8_k(x, max, b);
    }
}

/// The Q8_K quantizer of llama.cpp's Q4_K batch GEMM (`ggml_quantize_mat_q8_K_4x8`): as
/// `quantize_row_q8_k` except when the largest magnitude occurs with both signs, where it takes
/// the positive value for `max` (the reference takes the first).
pub fn quantize_row_q8_k_4x8(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (mut max, amax) = signed_max(x);
        // (a max so small that -127/max overflows keeps the reference's choice)
        if max < 0.0 && 1.0 / (-127.0f32 / max) > 0.0 && x.contains(&amax) {
            max = amax;
        }
        quantize_block_q8_k(x, max, b);
    }
}

/// One Q8_K block quantized against `max`, the signed value that maps to -127.
fn quantize_block_q8_k(x: &[f32], max: f32, b: &mut BlockQ8K) {
    if max == 0.0 {
        b.d = 0.0;
        b.qs = [0; QK_K];
        b.bsums = [0; QK_K / 16];
        return;
    }
    let iscale = -127.0f32 / max;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
    b.d = 1.0 / iscale;
}

/// make_qkx2_quants: asymmetric quantization of x[n] (n ≤ 32) to 0..=nmax with weights, searching
/// nstep+1 candidate scales around nmax/(max-min) and refining (scale, min) by weighted least
/// squares; candidates are ranked by weighted squared error (or absolute error with `use_mad`).
/// Returns the scale; `the_min` receives -min (≥ 0). `l` gets the levels.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    the_min: &mut f32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = li as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = li as u8;
            let w = weights[i];
            let lf = li as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// The shared first half of quantize_row_q4_K_ref / q5_K_ref: per 32 weights, make_qkx2_quants with
/// weights av_x + |x| (av_x the RMS of the 32); then the 8 scales and 8 mins are quantized to 6 bits
/// against the largest of each (d = max_scale/63, dmin = max_min/63), packed as get_scale_min_k4
/// reads them, and the weights re-quantized to 0..=nmax with the rounded scales.
/// Returns (d, dmin, packed scales, levels[256]).
fn quantize_k4_levels(x: &[f32], nmax: i32, rmin: f32, nstep: i32) -> (half::f16, half::f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
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
        scales[j] =
            make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], &mut mins[j], rmin, 0.1, nstep, false);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..QK_K / 32 {
        // C stores nearest_int into a uint8_t before MIN(63, ·): keep that truncation.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = fp16(max_scale / 63.0);
    let dmin = fp16(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = d.to_f32() * sc as f32;
        if dj == 0.0 {
            continue; // keep make_qkx2_quants' levels, as ggml does
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// quantize_row_q4_K_ref: levels 0..=15 (rmin -1, 21 steps); each 64 weights share 32 bytes,
/// the first 32 in the low nibbles.
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_k4_levels(x, 15, -1.0, 20);
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        for (k, q) in b.qs.chunks_exact_mut(32).enumerate() {
            for i in 0..32 {
                q[i] = l[64 * k + i] | (l[64 * k + i + 32] << 4);
            }
        }
    }
}

/// quantize_row_q5_K_ref: levels 0..=31 (rmin -0.5, 16 steps); low nibbles as Q4_K, the fifth bit
/// of sub-block j in bit j of qh[i].
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_k4_levels(x, 31, -0.5, 15);
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

/// quantize_row_q2_K_ref: per 16 weights make_qkx2_quants to 0..=3 with weights |x| and absolute
/// error; 4-bit scales and mins against the largest of each (d = max_scale/15, dmin = max_min/15).
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    const Q4SCALE: f32 = 15.0;
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let mut weights = [0f32; 16];
        let mut mins = [0f32; QK_K / 16];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            scales[j] =
                make_qkx2_quants(3, xs, &weights, &mut l[16 * j..16 * j + 16], &mut mins[j], -0.5, 0.1, 15, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = fp16(max_scale / Q4SCALE);
        } else {
            b.scales = [0; QK_K / 16];
            b.d = fp16(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            b.dmin = fp16(max_min / Q4SCALE);
        } else {
            b.dmin = fp16(0.0);
        }
        for j in 0..QK_K / 16 {
            let d = b.d.to_f32() * (b.scales[j] & 0x0f) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = b.dmin.to_f32() * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut b.qs);
    }
}

/// Q2_K and Q3_K: 2-bit levels `l` (< 4) into `qs`, four 32-value runs of each 128 per byte.
#[inline(always)]
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for h in 0..QK_K / 128 {
        let lb = &l[128 * h..];
        for i in 0..32 {
            qs[32 * h + i] = lb[i] | (lb[i + 32] << 2) | (lb[i + 64] << 4) | (lb[i + 96] << 6);
        }
    }
}

/// (the value of largest magnitude, its magnitude): the first one found on ties.
#[inline(always)]
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// make_q3_quants with do_rmse: symmetric levels -nmax..nmax-1 from -nmax/max, then up to 5 passes
/// of coordinate descent on each level under the x²-weighted least-squares criterion. Levels are
/// returned +nmax; the result is the least-squares scale.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = li as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * li as f32;
        suml2 += w * li as f32 * li as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != l[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as i8;
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
    for v in &mut l[..n] {
        *v += nmax as i8;
    }
    sumlx / suml2
}

/// quantize_row_q3_K_ref: per 16 weights make_q3_quants(nmax 4); the 16 scales quantized to 6 bits
/// (offset 32) against the largest-magnitude one (d = max_scale / -32), weights re-quantized to
/// -4..3; bit 2 of each level goes to hmask (element j → byte j%32, bit j/32), 2 low bits to qs.
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0f32 / max_scale;
            for j in 0..QK_K / 16 {
                // C: int8_t l = nearest_int(...), then clamp and +32.
                let v = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = v & 0x0f;
                } else {
                    b.scales[j - 8] |= (v & 0x0f) << 4;
                }
                b.scales[j % 4 + 8] |= (v >> 4) << (2 * (j / 4));
            }
            b.d = fp16(1.0 / iscale);
        } else {
            b.d = fp16(0.0);
        }
        for j in 0..QK_K / 16 {
            let d = b.d.to_f32() * q3k_scale(j, &b.scales) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
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

/// make_qx_quants with rmse_type 1 and no importance weights (the only use: Q6_K): symmetric
/// quantization of x[n] to -nmax..nmax-1 (stored +nmax in `l`), weight x², trying 18 scales around
/// -nmax/max and keeping the best by the least-squares criterion.
fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (li + nmax) as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * li as f32;
        suml2 += w * li as f32 * li as f32;
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
        for &v in x {
            let li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = v * v;
            sumlx += w * v * li as f32;
            suml2 += w * li as f32 * li as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l[i] = (nmax + li) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// quantize_row_q6_K_ref: per 16 weights make_qx_quants(nmax 32); the 16 scales are quantized to
/// int8 against the largest-magnitude one (d = max_scale / -128), then weights re-quantized.
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K]) {
    assert_eq!(x.len(), y.len() * QK_K);
    for (x, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let scale = make_qx_quants_rmse1(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
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
            for ii in 0..16 {
                let li = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (li + 32) as i8;
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
