//! Portable scalar kernels over raw block bytes: the `LLAMA_ISA=scalar` table and the fallback for
//! every slot a SIMD table does not fill. They follow ggml's reference arithmetic (integer dot per
//! (sub)block, then one float multiply-add per block), so SIMD variants can be checked exactly on
//! the integer parts.
//!
//! Every function takes whole rows: `n` elements, `w`/`a` the row bytes of the weight / activation
//! type (lengths checked by the caller, `crate::ops::matmul`).

use half::{bf16, f16};

use crate::cpu::KT_LANES;
use crate::quant::QK_K;

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Halves to even: what llama.cpp's runtime activation quantizers do (x86 `_mm256_round_ps(v,
/// _MM_ROUND_NEAREST)`), unlike the `roundf` of ggml's `quantize_row_q8_0_ref`.
#[inline(always)]
fn round_even(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Per-block scale and inverse scale of llama.cpp's runtime Q8_0/Q8_1 activation quantizer
/// (ggml-cpu arch/x86 quantize_row_q8_0/q8_1): d = amax/127 and id = 127/amax — not 1/d as in the
/// `_ref` weight quantizer; the two differ in the last bit for some amax.
#[inline(always)]
pub(crate) fn q8_scales(amax: f32) -> (f32, f32) {
    (amax / 127.0, if amax != 0.0 { 127.0 / amax } else { 0.0 })
}

/// ggml's `nearest_int` (magic-number rounding: halves to even), used by the K-quant quantizers.
#[inline(always)]
pub(crate) fn nearest_int(v: f32) -> i32 {
    let val = v + 12582912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

// ---- activation quantizers (x: [n] f32 → one row of blocks) ----------------------------------

/// Q8_0: block = f16 d | 32 × i8, d = amax / 127 — bit for bit llama.cpp's runtime (x86 SIMD)
/// activation quantizer, see [`q8_scales`] and [`round_even`].
pub fn quantize_row_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = q8_scales(amax);
        yb[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (q, v) in yb[2..].iter_mut().zip(xb) {
            *q = round_even(v * id) as i8 as u8;
        }
    }
}

/// Q8_1: block = f16 d | f16 s = d·Σq | 32 × i8, as llama.cpp's runtime quantize_row_q8_1.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(36)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = q8_scales(amax);
        let mut sum = 0i32;
        for (q, v) in yb[4..].iter_mut().zip(xb) {
            let qi = round_even(v * id);
            sum += qi;
            *q = qi as i8 as u8;
        }
        yb[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        yb[2..4].copy_from_slice(&f16::from_f32(sum as f32 * d).to_le_bytes());
    }
}

/// Q8_K: block = f32 d | 256 × i8 | 16 × i16 bsums. The scale is signed so the first element of
/// largest magnitude maps exactly to -127. llama.cpp's x86 runtime uses `quantize_row_q8_K_ref`
/// itself (nearest_int, halves to even), so this is that.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        q8_k_block(xb, yb, max);
    }
}

/// One Q8_K block quantized against `max`, the signed value that maps to -127.
fn q8_k_block(xb: &[f32], yb: &mut [u8], max: f32) {
    if max == 0.0 {
        yb.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in yb[4..4 + QK_K].iter_mut().zip(xb) {
        *q = nearest_int(iscale * v).min(127) as i8 as u8;
    }
    for j in 0..QK_K / 16 {
        let s: i32 = yb[4 + 16 * j..4 + 16 * j + 16].iter().map(|&q| q as i8 as i32).sum();
        yb[4 + QK_K + 2 * j..4 + QK_K + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    yb[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

/// Turns a row quantized by `quantize_row_q8_k` into what llama.cpp's `ggml_quantize_mat_q8_K_4x8`
/// (the activations of its Q4_K prompt GEMM) gives: the same except when the largest magnitude
/// occurs with both signs, where that one takes the positive value for `max` and `_ref` the first.
pub fn q8_k_prefer_positive_max(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // d > 0 ⇔ the reference took a negative max; redo the block if +amax occurs too.
        if amax > 0.0 && f32_at(yb, 0) > 0.0 && xb.contains(&amax) {
            q8_k_block(xb, yb, amax);
        }
    }
}

pub fn convert_row_f16(x: &[f32], out: &mut [u8]) {
    for (v, o) in x.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
    }
}

pub fn convert_row_bf16(x: &[f32], out: &mut [u8]) {
    for (v, o) in x.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&bf16::from_f32(*v).to_le_bytes());
    }
}

pub fn convert_row_f32(x: &[f32], out: &mut [u8]) {
    for (v, o) in x.iter().zip(out.chunks_exact_mut(4)) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

// ---- dot products: weight row · activation row -------------------------------------------------

pub fn dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(18).zip(a.chunks_exact(34)).take(n / 32) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let v0 = (x[2 + j] & 0x0F) as i32 - 8;
            let v1 = (x[2 + j] >> 4) as i32 - 8;
            sumi += v0 * y[2 + j] as i8 as i32 + v1 * y[2 + j + 16] as i8 as i32;
        }
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

pub fn dot_q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(20).zip(a.chunks_exact(36)).take(n / 32) {
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi +=
                (x[4 + j] & 0x0F) as i32 * y[4 + j] as i8 as i32 + (x[4 + j] >> 4) as i32 * y[4 + j + 16] as i8 as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

pub fn dot_q5_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(22).zip(a.chunks_exact(34)).take(n / 32) {
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let v0 = ((x[6 + j] as u32 & 0x0F) | h0) as i32 - 16;
            let v1 = ((x[6 + j] as u32 >> 4) | h1) as i32 - 16;
            sumi += v0 * y[2 + j] as i8 as i32 + v1 * y[2 + j + 16] as i8 as i32;
        }
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

pub fn dot_q5_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(24).zip(a.chunks_exact(36)).take(n / 32) {
        let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let v0 = ((x[8 + j] as u32 & 0x0F) | h0) as i32;
            let v1 = ((x[8 + j] as u32 >> 4) | h1) as i32;
            sumi += v0 * y[4 + j] as i8 as i32 + v1 * y[4 + j + 16] as i8 as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

pub fn dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(34)).take(n / 32) {
        let sumi: i32 = x[2..34].iter().zip(&y[2..34]).map(|(&p, &q)| p as i8 as i32 * q as i8 as i32).sum();
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

/// Q8_K block accessors: d (f32), qs (256 i8), bsums (16 i16).
#[inline(always)]
pub(crate) fn q8k_q(y: &[u8], i: usize) -> i32 {
    y[4 + i] as i8 as i32
}
#[inline(always)]
pub(crate) fn q8k_bsum(y: &[u8], j: usize) -> i32 {
    i16::from_le_bytes([y[4 + QK_K + 2 * j], y[4 + QK_K + 2 * j + 1]]) as i32
}

/// Q2_K layout: scales[16] @0, qs[64] @16, d @80, dmin @82.
pub fn dot_q2_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(84).zip(a.chunks_exact(292)).take(n / QK_K) {
        let sc = &x[0..16];
        let q = &x[16..80];
        let summs: i32 = (0..16).map(|j| (sc[j] >> 4) as i32 * q8k_bsum(y, j)).sum();
        let yd = f32_at(y, 0);
        let dall = yd * f16_at(x, 80);
        let dmin = yd * f16_at(x, 82);
        let mut isum = 0i32;
        let mut is = 0;
        for chunk in 0..2 {
            let qc = &q[32 * chunk..32 * chunk + 32];
            for s in 0..4 {
                let shift = 2 * s;
                let base = 128 * chunk + 32 * s;
                for half in 0..2 {
                    let d = (sc[is] & 0x0F) as i32;
                    is += 1;
                    let mut l_sum = 0i32;
                    for l in 16 * half..16 * half + 16 {
                        l_sum += q8k_q(y, base + l) * ((qc[l] >> shift) & 3) as i32;
                    }
                    isum += d * l_sum;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Unpacks Q3_K's 16 six-bit scales (12 bytes) to signed values (scale - 32).
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ((aux[i / 4] >> (8 * (i % 4))) & 0xFF) as i32 as i8 - 32;
    }
    out
}

/// Q3_K layout: hmask[32] @0, qs[64] @32, scales[12] @96, d @108.
pub fn dot_q3_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(110).zip(a.chunks_exact(292)).take(n / QK_K) {
        let hm = &x[0..32];
        let q = &x[32..96];
        let scales = q3k_scales(&x[96..108]);
        // Values in [-4, 3]: 2 low bits from qs, minus 4 when the hmask bit is clear.
        let mut vals = [0i32; QK_K];
        let mut m = 1u8;
        for chunk in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let lo = ((q[32 * chunk + l] >> (2 * s)) & 3) as i32;
                    vals[128 * chunk + 32 * s + l] = lo - if hm[l] & m != 0 { 0 } else { 4 };
                }
                m = m.wrapping_shl(1);
            }
        }
        let mut isum = 0i32;
        for (j, sc) in scales.iter().enumerate() {
            let s: i32 = (16 * j..16 * j + 16).map(|i| vals[i] * q8k_q(y, i)).sum();
            isum += *sc as i32 * s;
        }
        sumf += f16_at(x, 108) * f32_at(y, 0) * isum as f32;
    }
    sumf
}

/// Unpacks the 8 six-bit (scale, min) pairs of Q4_K/Q5_K (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(crate) fn k4_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// Q4_K layout: d @0, dmin @2, scales[12] @4, qs[128] @16.
pub fn dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(144).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (sc, mn) = k4_scale_min(&x[4..16]);
        let q = &x[16..144];
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..4 {
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                s0 += (q[32 * j + l] & 0x0F) as i32 * q8k_q(y, 64 * j + l);
                s1 += (q[32 * j + l] >> 4) as i32 * q8k_q(y, 64 * j + 32 + l);
            }
            isum += sc[2 * j] as i32 * s0 + sc[2 * j + 1] as i32 * s1;
        }
        for j in 0..8 {
            msum += mn[j] as i32 * (q8k_bsum(y, 2 * j) + q8k_bsum(y, 2 * j + 1));
        }
        let yd = f32_at(y, 0);
        sumf += yd * f16_at(x, 0) * isum as f32 - yd * f16_at(x, 2) * msum as f32;
    }
    sumf
}

/// Q5_K layout: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
pub fn dot_q5_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(176).zip(a.chunks_exact(292)).take(n / QK_K) {
        let (sc, mn) = k4_scale_min(&x[4..16]);
        let qh = &x[16..48];
        let q = &x[48..176];
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..4 {
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                let v0 = (q[32 * j + l] & 0x0F) as i32 + if qh[l] & u1 != 0 { 16 } else { 0 };
                let v1 = (q[32 * j + l] >> 4) as i32 + if qh[l] & u2 != 0 { 16 } else { 0 };
                s0 += v0 * q8k_q(y, 64 * j + l);
                s1 += v1 * q8k_q(y, 64 * j + 32 + l);
            }
            isum += sc[2 * j] as i32 * s0 + sc[2 * j + 1] as i32 * s1;
        }
        for j in 0..8 {
            msum += mn[j] as i32 * (q8k_bsum(y, 2 * j) + q8k_bsum(y, 2 * j + 1));
        }
        let yd = f32_at(y, 0);
        sumf += yd * f16_at(x, 0) * isum as f32 - yd * f16_at(x, 2) * msum as f32;
    }
    sumf
}

/// Q6_K layout: ql[128] @0, qh[64] @128, scales[16] (i8) @192, d @208.
pub fn dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)).take(n / QK_K) {
        let mut vals = [0i32; QK_K];
        for h in 0..2 {
            let ql = &x[64 * h..64 * h + 64];
            let qh = &x[128 + 32 * h..128 + 32 * h + 32];
            let v = &mut vals[128 * h..128 * h + 128];
            for l in 0..32 {
                v[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                v[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                v[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                v[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            }
        }
        let mut isum = 0i32;
        for j in 0..16 {
            let s: i32 = (16 * j..16 * j + 16).map(|i| vals[i] * q8k_q(y, i)).sum();
            isum += x[192 + j] as i8 as i32 * s;
        }
        sumf += f16_at(x, 208) * f32_at(y, 0) * isum as f32;
    }
    sumf
}

/// F16 · F16 accumulated in f64 like ggml's scalar `ggml_vec_dot_f16`.
pub fn dot_f16_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f64;
    for i in 0..n {
        s += f16_at(w, 2 * i) as f64 * f16_at(a, 2 * i) as f64;
    }
    s as f32
}

pub fn dot_bf16_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f64;
    for i in 0..n {
        let x = bf16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32();
        let y = bf16::from_le_bytes([a[2 * i], a[2 * i + 1]]).to_f32();
        s += x as f64 * y as f64;
    }
    s as f32
}

pub fn dot_f32_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f64;
    for i in 0..n {
        s += f32_at(w, 4 * i) as f64 * f32_at(a, 4 * i) as f64;
    }
    s as f32
}

// ---- attention (model::attention): key panels, f16 conversions; the dots are in `cpu::attn` ----

/// A KV cache element (f16 or f32) as the attention kernels read it.
pub(crate) trait CacheElem: Copy {
    fn f32(self) -> f32;
}
impl CacheElem for f16 {
    #[inline]
    fn f32(self) -> f32 {
        self.to_f32()
    }
}
impl CacheElem for f32 {
    #[inline]
    fn f32(self) -> f32 {
        self
    }
}

/// Panics unless every index an `AttnKtFn` / `AttnKqFn` call touches is in bounds (the SIMD
/// entries rely on this before using raw pointers).
pub(crate) fn attn_kt_check(n: usize, k: usize, ks: usize, nk: usize, kt: usize) {
    assert!(n >= 1, "attention: empty head");
    if nk == 0 {
        return;
    }
    assert!(ks >= n && k >= (nk - 1) * ks + n, "attn_kt: k too short");
    assert!(kt >= nk.div_ceil(KT_LANES) * n * KT_LANES, "attn_kt: kt too short");
}

pub(crate) fn attn_kq_check(n: usize, kt: usize, nk: usize, q: usize, nq: usize, out: usize, os: usize) {
    assert!(n >= 1, "attention: empty head");
    if nk == 0 || nq == 0 {
        return;
    }
    assert!(kt >= nk.div_ceil(KT_LANES) * n * KT_LANES, "attn_kq: kt too short");
    assert!(q >= nq * n, "attn_kq: q too short");
    assert!(os >= nk && out >= (nq - 1) * os + nk, "attn_kq: out too short");
}

fn attn_kt<T: CacheElem>(n: usize, k: &[T], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt_check(n, k.len(), ks, nk, kt.len());
    for c in 0..nk.div_ceil(KT_LANES) {
        for l in 0..KT_LANES {
            let j = c * KT_LANES + l;
            for d in 0..n {
                kt[(c * n + d) * KT_LANES + l] = if j < nk { k[j * ks + d].f32() } else { 0.0 };
            }
        }
    }
}

pub fn attn_kt_f16(n: usize, k: &[f16], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt(n, k, ks, nk, kt)
}
pub fn attn_kt_f32(n: usize, k: &[f32], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt(n, k, ks, nk, kt)
}

pub fn attn_vf_f16(n: usize, v: &[f16], vs: usize, nv: usize, out: &mut [f32]) {
    crate::cpu::attn::vf_check(n, v.len(), vs, nv, out.len());
    for j in 0..nv {
        for d in 0..n {
            out[j * n + d] = v[j * vs + d].to_f32();
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn attn_kq(
    n: usize,
    kt: &[f32],
    nk: usize,
    q: &[f32],
    nq: usize,
    out: &mut [f32],
    os: usize,
    order: crate::cpu::AttnOrder,
) {
    attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
    crate::cpu::attn::kq_body(n, kt, nk, q, nq, out, os, order)
}

#[allow(clippy::too_many_arguments)]
pub fn attn_pv(
    n: usize,
    v: &[f32],
    vs: usize,
    j0: usize,
    lo: usize,
    hi: usize,
    p: &[f32],
    o: &mut [f32],
    order: crate::cpu::AttnOrder,
) {
    crate::cpu::attn::pv_check(n, v.len(), vs, j0, lo, hi, p.len(), o.len());
    crate::cpu::attn::pv_body(n, v, vs, j0, lo, hi, p, o, order)
}

/// `x = f16(x)` elementwise (round to nearest even).
pub fn round_f16(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}
