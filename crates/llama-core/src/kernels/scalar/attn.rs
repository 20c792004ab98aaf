//! Scalar attention kernels (model::attention): key panels, f16 conversions, and the dots of
//! `kernels::attn` in llama.cpp's orders.

use half::f16;

use crate::quant::GgmlType;

use crate::kernels::attn::{fa_kv_dot_body, fa_online_body, fa_tile_kq_body, fa_tile_pv_body, kq_body, pv_body};
use crate::kernels::elementwise::with_fma;
use crate::kernels::shared::{
    attn_gather_check, attn_kq_check, attn_kt_check, attn_pv_check, attn_vf_check, fa_kv_dot_check, fa_online_check,
    fa_tile_check,
};
use crate::kernels::types::{AttnOrder, CacheElem, FaStep, KT_LANES};

fn attn_kt<T: CacheElem>(n: usize, k: &[T], ks: usize, nk: usize, kt: &mut [f32]) {
    attn_kt_check(n, k.len(), ks, nk, kt.len());
    kt_rows(n, k, |j| j * ks, nk, kt)
}

/// Panels of the keys at `k[row(j)..][..n]`, j < nk (the typed reference of both the strided and
/// the gather kernels).
fn kt_rows<T: CacheElem>(n: usize, k: &[T], row: impl Fn(usize) -> usize, nk: usize, kt: &mut [f32]) {
    for c in 0..nk.div_ceil(KT_LANES) {
        for l in 0..KT_LANES {
            let j = c * KT_LANES + l;
            for d in 0..n {
                kt[(c * n + d) * KT_LANES + l] = if j < nk { k[row(j) + d].f32() } else { 0.0 };
            }
        }
    }
}

fn attn_kt_gather<T: CacheElem>(n: usize, k: &[T], ks: usize, cells: &[usize], kt: &mut [f32]) {
    attn_gather_check(n, k.len(), ks, cells, kt.len(), true);
    kt_rows(n, k, |j| cells[j] * ks, cells.len(), kt)
}

pub fn attn_kt_f16_gather(n: usize, k: &[f16], ks: usize, cells: &[usize], kt: &mut [f32]) {
    attn_kt_gather(n, k, ks, cells, kt)
}
pub fn attn_kt_f32_gather(n: usize, k: &[f32], ks: usize, cells: &[usize], kt: &mut [f32]) {
    attn_kt_gather(n, k, ks, cells, kt)
}

pub fn attn_vf_f16_gather(n: usize, v: &[f16], vs: usize, cells: &[usize], out: &mut [f32]) {
    attn_gather_check(n, v.len(), vs, cells, out.len(), false);
    for (j, &c) in cells.iter().enumerate() {
        for d in 0..n {
            out[j * n + d] = v[c * vs + d].to_f32();
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
    attn_vf_check(n, v.len(), vs, nv, out.len());
    for j in 0..nv {
        for d in 0..n {
            out[j * n + d] = v[j * vs + d].to_f32();
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn attn_kq(n: usize, kt: &[f32], nk: usize, q: &[f32], nq: usize, out: &mut [f32], os: usize, order: AttnOrder) {
    attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
    kq_body(n, kt, nk, q, nq, out, os, order)
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
    order: AttnOrder,
) {
    attn_pv_check(n, v.len(), vs, j0, lo, hi, p.len(), o.len());
    pv_body(n, v, vs, j0, lo, hi, p, o, order)
}

/// `FaOnlineFn`, portable (`kernels::attn::fa_online_body` with FMA where the CPU has it).
pub fn fa_online(n: usize, scores: &[f32], v: &[f32], acc: &mut [f32], st: &mut [f32; 2], p: FaStep) {
    fa_online_check(n, scores.len(), v.len(), acc.len());
    with_fma!(fa_online_body(n, scores, v, acc, st, p, round_f16))
}

/// `FaTileKqFn`, portable.
pub fn fa_tile_kq(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    fa_tile_check(n, kt.len(), q.len(), nq, out.len(), true);
    with_fma!(fa_tile_kq_body(n, kt, q, nq, out))
}

/// `FaTilePvFn`, portable.
pub fn fa_tile_pv(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    fa_tile_check(n, v.len(), p.len(), nq, acc.len(), false);
    with_fma!(fa_tile_pv_body(n, p, v, nq, acc))
}

/// `FaKvDotFn`, portable.
pub fn fa_kv_dot(t: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    fa_kv_dot_check(t, x.len(), y.len());
    with_fma!(fa_kv_dot_body(t, x, y))
}

/// `x = f16(x)` elementwise (round to nearest even).
pub fn round_f16(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}
