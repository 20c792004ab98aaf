//! aarch64 NEON kernels. Integer dots use the ARMv8.2 `sdot` instruction (FEAT_DotProd) through
//! `asm!`, because the `vdotq_s32` intrinsic is still unstable in rustc 1.95; f16 widening uses
//! `fcvtl` for the same reason (the `float16x4_t` type is unstable). CPUs without dotprod get the
//! NEON float kernels and keep the scalar integer ones.
//!
//! Numerics as in `x86.rs`: exact integer (sub)block sums; K-quants apply the scalar float formula
//! per block in order (bit-identical to `cpu::scalar`).

use std::arch::aarch64::*;
use std::arch::asm;
use std::arch::is_aarch64_feature_detected;

use crate::cpu::scalar::{k4_scale_min, q8k_bsum};
use crate::cpu::{Isa, Kernels};
use crate::quant::QK_K;

pub fn neon_kernels() -> Option<Kernels> {
    if !is_aarch64_feature_detected!("neon") {
        return None;
    }
    let base = Kernels {
        isa: Isa::Neon,
        quantize_q8_0: quantize_q8_0_entry,
        quantize_q8_k: quantize_q8_k_entry,
        dot_f16: dot_f16_entry,
        dot_bf16: dot_bf16_entry,
        dot_f32: dot_f32_entry,
        attn_kt_f16: super::neon_attn::attn_kt_f16_neon,
        attn_vf_f16: super::neon_attn::attn_vf_f16_neon,
        round_f16: super::neon_attn::round_f16_neon,
        ..Kernels::SCALAR
    };
    if !is_aarch64_feature_detected!("dotprod") {
        return Some(base);
    }
    Some(Kernels {
        dot_q4_0: dot_q4_0_entry,
        dot_q5_0: dot_q5_0_entry,
        dot_q8_0: dot_q8_0_entry,
        dot_q4_k: dot_q4_k_entry,
        dot_q6_k: dot_q6_k_entry,
        gemm_r16_q4_0: Some(super::neon_r16::GEMM_Q4_0_NEON),
        gemm_r16_q5_0: Some(super::neon_r16::GEMM_Q5_0_NEON),
        gemm_r16_q8_0: Some(super::neon_r16::GEMM_Q8_0_NEON),
        gemm_r16_q4_k: Some(super::neon_r16::GEMM_Q4_K_NEON),
        gemm_r16_q6_k: Some(super::neon_r16::GEMM_Q6_K_NEON),
        gemm_r16_q4_k_g4: None,
        gemm_r16_q6_k_tiled: None,
        ..base
    })
}

macro_rules! dot_entry {
    ($name:ident, $inner:ident, $bs:expr, $wts:expr, $ats:expr) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = n / $bs;
            assert!(w.len() >= nb * $wts && a.len() >= nb * $ats, "vec_dot: row shorter than {n} elements");
            // SAFETY: only reachable through `neon_kernels`, which checked the target features of
            // `$inner`; the pointer ranges read are checked just above.
            unsafe { $inner(n, w.as_ptr(), a.as_ptr()) }
        }
    };
}

macro_rules! conv_entry {
    ($name:ident, $inner:ident, $bs:expr, $ts:expr) => {
        fn $name(x: &[f32], out: &mut [u8]) {
            assert!(x.len() % $bs == 0 && out.len() >= x.len() / $bs * $ts, "from_float: bad row length");
            // SAFETY: reachable only through `neon_kernels` (features checked); lengths checked.
            unsafe { $inner(x, out) }
        }
    };
}

dot_entry!(dot_q4_0_entry, dot_q4_0, 32, 18, 34);
dot_entry!(dot_q5_0_entry, dot_q5_0, 32, 22, 34);
dot_entry!(dot_q8_0_entry, dot_q8_0, 32, 34, 34);
dot_entry!(dot_q4_k_entry, dot_q4_k, QK_K, 144, 292);
dot_entry!(dot_q6_k_entry, dot_q6_k, QK_K, 210, 292);
dot_entry!(dot_f16_entry, dot_f16, 1, 2, 2);
dot_entry!(dot_bf16_entry, dot_bf16, 1, 2, 2);
dot_entry!(dot_f32_entry, dot_f32, 1, 4, 4);
conv_entry!(quantize_q8_0_entry, quantize_q8_0, 32, 34);
conv_entry!(quantize_q8_k_entry, quantize_q8_k, QK_K, 292);

/// acc += per-lane sums of 4 adjacent i8 × i8 products.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY (of the asm): register-only instruction, no memory access.
    asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b, options(pure, nomem, nostack));
    acc
}

/// Four f16 (raw bits) → four f32.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    asm!("fcvtl {o:v}.4s, {i:v}.4h", o = out(vreg) out, i = in(vreg) h, options(pure, nomem, nostack));
    out
}

#[inline]
fn f16_load(p: *const u8) -> f32 {
    // SAFETY: callers pass a pointer to 2 readable bytes inside a length-checked row.
    let b = unsafe { [*p, *p.add(1)] };
    half::f16::from_le_bytes(b).to_f32()
}

#[inline]
fn f32_load(p: *const u8) -> f32 {
    // SAFETY: as above, 4 readable bytes.
    let b = unsafe { [*p, *p.add(1), *p.add(2), *p.add(3)] };
    f32::from_le_bytes(b)
}

// ---- activation quantizers --------------------------------------------------------------------

#[target_feature(enable = "neon")]
unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
        let p = xb.as_ptr();
        let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
        let mut m = vabsq_f32(v[0]);
        for vk in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vk));
        }
        let amax = vmaxvq_f32(m);
        // As llama.cpp's x86 runtime quantize_row_q8_0 (its NEON one takes id = 1/d instead; we
        // follow x86 on every ISA so results do not depend on the machine): id = 127/amax.
        let (d, id) = crate::cpu::scalar::q8_scales(amax);
        yb[0..2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
        let q = yb.as_mut_ptr().add(2) as *mut i8;
        for (k, vk) in v.iter().enumerate() {
            // FCVTNS: halves to even.
            let r = vcvtnq_s32_f32(vmulq_n_f32(*vk, id));
            let h = vqmovn_s32(r);
            let b = vqmovn_s16(vcombine_s16(h, h));
            vst1_lane_s32::<0>(q.add(4 * k) as *mut i32, vreinterpret_s32_s8(b));
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
        let p = xb.as_ptr();
        let mut m = vdupq_n_f32(0.0);
        for k in 0..QK_K / 4 {
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(p.add(4 * k))));
        }
        let amax = vmaxvq_f32(m);
        if amax == 0.0 {
            yb.fill(0);
            continue;
        }
        // The reference keeps the sign of the FIRST element of largest magnitude.
        let max = *xb.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        let q = yb.as_mut_ptr().add(4) as *mut i8;
        for k in 0..QK_K / 4 {
            // FRINTN: halves to even, as ggml's nearest_int.
            let r =
                vminq_s32(vcvtq_s32_f32(vrndnq_f32(vmulq_n_f32(vld1q_f32(p.add(4 * k)), iscale))), vdupq_n_s32(127));
            let h = vqmovn_s32(r);
            let b = vqmovn_s16(vcombine_s16(h, h));
            vst1_lane_s32::<0>(q.add(4 * k) as *mut i32, vreinterpret_s32_s8(b));
        }
        for j in 0..QK_K / 16 {
            let s: i32 = yb[4 + 16 * j..4 + 16 * j + 16].iter().map(|&q| q as i8 as i32).sum();
            yb[4 + QK_K + 2 * j..4 + QK_K + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
        }
        yb[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

// ---- dots --------------------------------------------------------------------------------------

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q4_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0F);
    let eight = vdupq_n_s8(8);
    let mut acc = vdupq_n_f32(0.0);
    for i in 0..n / 32 {
        let (x, y) = (w.add(18 * i), a.add(34 * i));
        let q = vld1q_u8(x.add(2));
        let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
        let y0 = vld1q_s8(y.add(2) as *const i8);
        let y1 = vld1q_s8(y.add(18) as *const i8);
        let p = sdot(sdot(vdupq_n_s32(0), lo, y0), hi, y1);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_load(x) * f16_load(y));
    }
    vaddvq_f32(acc)
}

/// 16 bits → 16 bytes, 0xFF where the bit is set (byte i ↔ bit i).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn bits16(b: u16) -> uint8x16_t {
    let bytes = vcombine_u8(vdup_n_u8(b as u8), vdup_n_u8((b >> 8) as u8));
    let sel = vld1q_u8([1u8, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128].as_ptr());
    vtstq_u8(bytes, sel)
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q5_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0F);
    let f0 = vdupq_n_u8(0xF0);
    let mut acc = vdupq_n_f32(0.0);
    for i in 0..n / 32 {
        let (x, y) = (w.add(22 * i), a.add(34 * i));
        let qh = u32::from_le_bytes([*x.add(2), *x.add(3), *x.add(4), *x.add(5)]);
        let q = vld1q_u8(x.add(6));
        // q - 16 == nibble | 0xF0 (as i8) where the fifth bit is clear.
        let lo = vorrq_u8(vandq_u8(q, m4), vbicq_u8(f0, bits16(qh as u16)));
        let hi = vorrq_u8(vshrq_n_u8::<4>(q), vbicq_u8(f0, bits16((qh >> 16) as u16)));
        let y0 = vld1q_s8(y.add(2) as *const i8);
        let y1 = vld1q_s8(y.add(18) as *const i8);
        let p = sdot(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(lo), y0), vreinterpretq_s8_u8(hi), y1);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_load(x) * f16_load(y));
    }
    vaddvq_f32(acc)
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q8_0(n: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for i in 0..n / 32 {
        let (x, y) = (w.add(34 * i), a.add(34 * i));
        let p = sdot(
            sdot(vdupq_n_s32(0), vld1q_s8(x.add(2) as *const i8), vld1q_s8(y.add(2) as *const i8)),
            vld1q_s8(x.add(18) as *const i8),
            vld1q_s8(y.add(18) as *const i8),
        );
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), f16_load(x) * f16_load(y));
    }
    vaddvq_f32(acc)
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q4_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0F);
    let mut sumf = 0.0f32;
    for i in 0..n / QK_K {
        let (x, y) = (w.add(144 * i), a.add(292 * i));
        let xs = std::slice::from_raw_parts(x, 144);
        let ys = std::slice::from_raw_parts(y, 292);
        let (sc, mn) = k4_scale_min(&xs[4..16]);
        let mut isum = 0i32;
        for j in 0..4 {
            let q0 = vld1q_u8(x.add(16 + 32 * j));
            let q1 = vld1q_u8(x.add(32 + 32 * j));
            let yp = y.add(4 + 64 * j) as *const i8;
            let lo = sdot(
                sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(q0, m4)), vld1q_s8(yp)),
                vreinterpretq_s8_u8(vandq_u8(q1, m4)),
                vld1q_s8(yp.add(16)),
            );
            let hi = sdot(
                sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)), vld1q_s8(yp.add(32))),
                vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)),
                vld1q_s8(yp.add(48)),
            );
            isum += sc[2 * j] as i32 * vaddvq_s32(lo) + sc[2 * j + 1] as i32 * vaddvq_s32(hi);
        }
        let msum: i32 = (0..8).map(|j| mn[j] as i32 * (q8k_bsum(ys, 2 * j) + q8k_bsum(ys, 2 * j + 1))).sum();
        let yd = f32_load(y);
        sumf += yd * f16_load(x) * isum as f32 - yd * f16_load(x.add(2)) * msum as f32;
    }
    sumf
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q6_k(n: usize, w: *const u8, a: *const u8) -> f32 {
    let m4 = vdupq_n_u8(0x0F);
    let m2 = vdupq_n_u8(3);
    let mut sumf = 0.0f32;
    for i in 0..n / QK_K {
        let (x, y) = (w.add(210 * i), a.add(292 * i));
        let xs = std::slice::from_raw_parts(x, 210);
        let ys = std::slice::from_raw_parts(y, 292);
        let sc = &xs[192..208];
        let mut isum = 0i32;
        for h in 0..2 {
            let ql: [uint8x16_t; 4] = std::array::from_fn(|k| vld1q_u8(x.add(64 * h + 16 * k)));
            let qh: [uint8x16_t; 2] = std::array::from_fn(|k| vld1q_u8(x.add(128 + 32 * h + 16 * k)));
            let hb = |v: uint8x16_t, s: i32| -> uint8x16_t {
                let v = match s {
                    0 => v,
                    2 => vshrq_n_u8::<2>(v),
                    4 => vshrq_n_u8::<4>(v),
                    _ => vshrq_n_u8::<6>(v),
                };
                vshlq_n_u8::<4>(vandq_u8(v, m2))
            };
            // 8 vectors of 16 unsigned 6-bit values, in element order; vector v ↔ sub-block 8h + v.
            let u: [uint8x16_t; 8] = [
                vorrq_u8(vandq_u8(ql[0], m4), hb(qh[0], 0)),
                vorrq_u8(vandq_u8(ql[1], m4), hb(qh[1], 0)),
                vorrq_u8(vandq_u8(ql[2], m4), hb(qh[0], 2)),
                vorrq_u8(vandq_u8(ql[3], m4), hb(qh[1], 2)),
                vorrq_u8(vshrq_n_u8::<4>(ql[0]), hb(qh[0], 4)),
                vorrq_u8(vshrq_n_u8::<4>(ql[1]), hb(qh[1], 4)),
                vorrq_u8(vshrq_n_u8::<4>(ql[2]), hb(qh[0], 6)),
                vorrq_u8(vshrq_n_u8::<4>(ql[3]), hb(qh[1], 6)),
            ];
            for (v, uv) in u.iter().enumerate() {
                let s = 8 * h + v;
                let yv = vld1q_s8(y.add(4 + 16 * s) as *const i8);
                isum += sc[s] as i8 as i32 * vaddvq_s32(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(*uv), yv));
            }
        }
        isum -= 32 * (0..16).map(|j| sc[j] as i8 as i32 * q8k_bsum(ys, j)).sum::<i32>();
        sumf += f16_load(x.add(208)) * f32_load(y) * isum as f32;
    }
    sumf
}

#[target_feature(enable = "neon")]
unsafe fn dot_f16(n: usize, w: *const u8, a: *const u8) -> f32 {
    let (wp, ap) = (w as *const u16, a as *const u16);
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            let o = i + 4 * k;
            *ak = vfmaq_f32(*ak, f16x4(vld1_u16(wp.add(o))), f16x4(vld1_u16(ap.add(o))));
        }
        i += 16;
    }
    let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    while i < n {
        s += f16_load(w.add(2 * i)) * f16_load(a.add(2 * i));
        i += 1;
    }
    s
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn bf16x4(p: *const u16) -> float32x4_t {
    vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p)))
}

#[target_feature(enable = "neon")]
unsafe fn dot_bf16(n: usize, w: *const u8, a: *const u8) -> f32 {
    let (wp, ap) = (w as *const u16, a as *const u16);
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            let o = i + 4 * k;
            *ak = vfmaq_f32(*ak, bf16x4(wp.add(o)), bf16x4(ap.add(o)));
        }
        i += 16;
    }
    let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    while i < n {
        let x = f32::from_bits((u16::from_le_bytes([*w.add(2 * i), *w.add(2 * i + 1)]) as u32) << 16);
        let y = f32::from_bits((u16::from_le_bytes([*a.add(2 * i), *a.add(2 * i + 1)]) as u32) << 16);
        s += x * y;
        i += 1;
    }
    s
}

#[target_feature(enable = "neon")]
unsafe fn dot_f32(n: usize, w: *const u8, a: *const u8) -> f32 {
    let (wp, ap) = (w as *const f32, a as *const f32);
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            let o = i + 4 * k;
            *ak = vfmaq_f32(*ak, vld1q_f32(wp.add(o)), vld1q_f32(ap.add(o)));
        }
        i += 16;
    }
    let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    while i < n {
        s += f32_load(w.add(4 * i)) * f32_load(a.add(4 * i));
        i += 1;
    }
    s
}
