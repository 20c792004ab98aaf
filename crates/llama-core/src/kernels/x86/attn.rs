//! x86_64 attention kernels (`AttnKtFn`, `AttnVfFn`, `AttnKqFn`, `AttnPvFn`, `RoundFn`, and flash
//! attention's `FaOnlineFn`, `FaTileKqFn`, `FaTilePvFn`, `FaKvDotFn`) for
//! the AVX2 + FMA + F16C and AVX-512F tables, which are handed out after runtime feature detection.
//!
//! f16 → f32 conversions use F16C (`vcvtph2ps`, exact). The dots are `kernels::attn`'s, written once
//! over 16-lane registers (`attn16!`: one zmm, or two ymm for AVX2) with the same sums in the same
//! order as the portable kernels, so every table gives the same bits.

use std::arch::x86_64::*;

use half::f16;

use super::dot::{f16_load, hsum_ps};
use crate::kernels::elementwise::with_fma;
use crate::quant::GgmlType;

use crate::kernels::attn::{
    fa_kv_dot_body, fa_online_body, fa_tile_kq_body, fa_tile_pv_body, kq_body, lane_key_row, lane_walk, pv_body,
    pv_panels_body,
};
use crate::kernels::shared::{
    attn_kq_check, attn_kt_check, attn_pv_check, attn_pv_panels_check, attn_vf_check, fa_kv_dot_check,
    fa_lanes_kq_check, fa_lanes_online_check, fa_online_check, fa_tile_check,
};
use crate::kernels::shared::{attn_kt_f16_by, attn_kt_f16_rows, attn_vf_f16_by, attn_vf_f16_rows, round_f16_by};
use crate::kernels::types::{AttnOrder, CacheElem, FaLaneQueries, FaStep, FA_LANE_KEYS, FA_LANE_MAX_N, KT_LANES};

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `p..p+8` (f16 values) must be readable.
unsafe fn ld8_f16(p: *const f16) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

// Transposes keys into f32 panels (`AttnKtFn` for the f16 cache), converting 8 at a time.
panel_entry!(attn_kt_f16_avx2, attn_kt_check, f16, "avx2,fma,f16c", |n, k, ks, nk, kt| {
    attn_kt_f16_by::<8>(n, k, ks, nk, kt, |src, dst| _mm256_storeu_ps(dst, ld8_f16(src)))
});
// The same over a sequence's cells (`AttnKtGatherFn`).
gather_entry!(attn_kt_f16_gather_avx2, true, f16, "avx2,fma,f16c", |n, k, ks, cells, kt| {
    attn_kt_f16_rows::<8>(n, |j| k.add(cells[j] * ks), cells.len(), kt, |src, dst| _mm256_storeu_ps(dst, ld8_f16(src)))
});

/// Key (or value) panels with AVX-512 (`AttnKtFn`): 16 keys × 16 dimensions at a time are
/// loaded as rows (f16 → f32 exact, or f32), transposed in registers and stored as 16 panel rows;
/// leftover dimensions (n mod 16) go element by element.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
///
/// # Safety
/// The CPU must support this function's target features; `k`, `kt` must cover what
/// `kernels::shared::attn_kt_check(n, k_len, ks, nk, kt_len)` requires.
unsafe fn kt_avx512<T: CacheElem>(
    n: usize,
    k: *const T,
    ks: usize,
    nk: usize,
    kt: *mut f32,
    load16: impl Fn(*const T) -> __m512,
) {
    // SAFETY: key j starts at k + j·ks, inside the bounds the caller guarantees.
    unsafe { kt_rows_avx512(n, |j| k.add(j * ks), nk, kt, load16) }
}

/// `kt_avx512` over keys wherever they are: key j (< nk) is the `n` values at `row(j)` (strided,
/// or a sequence's cells: `AttnKtGatherFn`).
#[inline]
#[target_feature(enable = "avx512f,f16c")]
///
/// # Safety
/// The CPU must support this function's target features; `row(j)` must point at `n` readable
/// values for every j < nk, and `kt` hold nk.div_ceil(KT_LANES)·n·KT_LANES writable floats.
unsafe fn kt_rows_avx512<T: CacheElem>(
    n: usize,
    row: impl Fn(usize) -> *const T,
    nk: usize,
    kt: *mut f32,
    load16: impl Fn(*const T) -> __m512,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let n16 = n / 16 * 16;
        for c in 0..nk.div_ceil(KT_LANES) {
            let panel = kt.add(c * n * KT_LANES);
            let keys = (nk - c * KT_LANES).min(KT_LANES);
            for d0 in (0..n16).step_by(16) {
                let r: [__m512; 16] = std::array::from_fn(|l| {
                    if l < keys {
                        load16(row(c * KT_LANES + l).add(d0))
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                let cols = transpose16(&r);
                for (i, col) in cols.iter().enumerate() {
                    _mm512_storeu_ps(panel.add((d0 + i) * KT_LANES), *col);
                }
            }
            for l in 0..KT_LANES {
                for d in n16..n {
                    *panel.add(d * KT_LANES + l) = if l < keys { (*row(c * KT_LANES + l).add(d)).f32() } else { 0.0 };
                }
            }
        }
    }
}

/// 16×16 transpose: result i = lane i of every input register, in order.
#[inline]
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
    // per 128-bit quarter, u[4g + e] holds element e of rows 4g..4g+4
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (r0, r1, r2, r3) = (r[4 * g], r[4 * g + 1], r[4 * g + 2], r[4 * g + 3]);
        let (t0, t1) = (_mm512_unpacklo_ps(r0, r1), _mm512_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm512_unpacklo_ps(r2, r3), _mm512_unpackhi_ps(r2, r3));
        u[4 * g] = _mm512_shuffle_ps::<0x44>(t0, t2);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for e in 0..4 {
        let v = _mm512_shuffle_f32x4::<0x88>(u[e], u[4 + e]);
        let w = _mm512_shuffle_f32x4::<0xDD>(u[e], u[4 + e]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + e], u[12 + e]);
        let w2 = _mm512_shuffle_f32x4::<0xDD>(u[8 + e], u[12 + e]);
        out[e] = _mm512_shuffle_f32x4::<0x88>(v, v2);
        out[8 + e] = _mm512_shuffle_f32x4::<0xDD>(v, v2);
        out[4 + e] = _mm512_shuffle_f32x4::<0x88>(w, w2);
        out[12 + e] = _mm512_shuffle_f32x4::<0xDD>(w, w2);
    }
    out
}

panel_entry!(attn_kt_f16_avx512, attn_kt_check, f16, "avx512f,f16c", |n, k, ks, nk, kt| {
    kt_avx512(n, k, ks, nk, kt, |p| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)))
});
panel_entry!(attn_kt_f32_avx512, attn_kt_check, f32, "avx512f,f16c", |n, k, ks, nk, kt| {
    kt_avx512(n, k, ks, nk, kt, |p| _mm512_loadu_ps(p))
});
// The same over a sequence's cells (`AttnKtGatherFn`).
gather_entry!(attn_kt_f16_gather_avx512, true, f16, "avx512f,f16c", |n, k, ks, cells, kt| {
    let load = |p: *const f16| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
    kt_rows_avx512(n, |j| k.add(cells[j] * ks), cells.len(), kt, load)
});
gather_entry!(attn_kt_f32_gather_avx512, true, f32, "avx512f,f16c", |n, k, ks, cells, kt| {
    kt_rows_avx512(n, |j| k.add(cells[j] * ks), cells.len(), kt, |p| _mm512_loadu_ps(p))
});

// f16 rows → packed f32 rows (`AttnVfFn`), 8 at a time.
panel_entry!(attn_vf_f16_avx2, attn_vf_check, f16, "avx2,fma,f16c", |n, v, vs, nv, out| {
    attn_vf_f16_by::<8>(n, v, vs, nv, out, |src, dst| _mm256_storeu_ps(dst, ld8_f16(src)))
});
// The same over a sequence's cells (`AttnVfGatherFn`).
gather_entry!(attn_vf_f16_gather_avx2, false, f16, "avx2,fma,f16c", |n, v, vs, cells, out| {
    attn_vf_f16_rows::<8>(n, |j| v.add(cells[j] * vs), cells.len(), out, |src, dst| _mm256_storeu_ps(dst, ld8_f16(src)))
});

#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn z_zero() -> __m512 {
    _mm512_setzero_ps()
}
#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features; `p..p+16` (f32) must be readable.
unsafe fn z_load(p: *const f32) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_loadu_ps(p) }
}
#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn z_set1(x: f32) -> __m512 {
    _mm512_set1_ps(x)
}
#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn z_fma(a: __m512, b: __m512, c: __m512) -> __m512 {
    _mm512_fmadd_ps(a, b, c)
}
#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn z_add(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(a, b)
}
#[inline]
#[target_feature(enable = "avx512f")]
/// # Safety
/// The CPU must support this function's target features; `p..p+16` (f32) must be writable.
unsafe fn z_store(v: __m512, p: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe { _mm512_storeu_ps(p, v) }
}

/// `kernels::attn`'s dots in SIMD registers of 16 lanes (`$v`, with its ops): the same sums in the
/// same order as the portable kernels (tested bit for bit), the 16 lane accumulators of a group
/// of dots held in registers. `Lanes64` dots of Q·K with a tail (n not a multiple of 64) and P·V
/// blocks narrower than 16 dimensions go to the portable code.
macro_rules! attn16 {
    ($kq:ident, $pv:ident, $kq_in:ident, $pv_in:ident, $feat:literal, $v:ty,
     $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $store:ident) => {
        /// `reduce16` of `kernels::attn` over 16 registers.
        #[inline]
        #[target_feature(enable = $feat)]
        ///
        /// # Safety
        /// The CPU must support this function's target features (it only computes on registers).
        unsafe fn reduce(x: &[$v; 16]) -> $v {
            // SAFETY: the caller upholds this function's `# Safety` contract (target features,
            // pointer ranges), which covers every unsafe operation below.
            unsafe {
                let t8: [$v; 8] = std::array::from_fn(|i| $add(x[i + 8], x[i]));
                let t4: [$v; 4] = std::array::from_fn(|i| $add(t8[i + 4], t8[i]));
                $add($add(t4[0], t4[2]), $add(t4[1], t4[3]))
            }
        }

        /// Writes the first `w` of 16 lanes.
        #[inline]
        #[target_feature(enable = $feat)]
        ///
        /// # Safety
        /// The CPU must support this function's target features; `p..p+w` must be writable (w ≤
        /// 16).
        unsafe fn put(v: $v, p: *mut f32, w: usize) {
            // SAFETY: the caller upholds this function's `# Safety` contract (target features,
            // pointer ranges), which covers every unsafe operation below.
            unsafe {
                if w == 16 {
                    $store(v, p);
                } else {
                    let mut t = [0f32; 16];
                    $store(v, t.as_mut_ptr());
                    std::ptr::copy_nonoverlapping(t.as_ptr(), p, w);
                }
            }
        }

        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        /// # Safety
        /// The CPU must support this function's target features (`$feat`); the slices satisfy
        /// `kernels::shared::attn_kq_check` (the entry checks).
        unsafe fn $kq_in(
            n: usize,
            kt: &[f32],
            nk: usize,
            q: &[f32],
            nq: usize,
            out: &mut [f32],
            os: usize,
            order: AttnOrder,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract (target features,
            // pointer ranges), which covers every unsafe operation below.
            unsafe {
                let lanes16 = order == AttnOrder::Lanes16 && n % 16 == 0;
                if !lanes16 && (order != AttnOrder::Lanes64 || n % 64 != 0) {
                    return kq_body(n, kt, nk, q, nq, out, os, order);
                }
                let (kt, q, o) = (kt.as_ptr(), q.as_ptr(), out.as_mut_ptr());
                // panel-major: one panel (n × 16 floats) stays in L1 while every query uses it
                for c in 0..nk.div_ceil(KT_LANES) {
                    let panel = kt.add(c * n * KT_LANES);
                    let row = |d: usize| $load(panel.add(d * KT_LANES));
                    let mut i0 = 0;
                    if lanes16 {
                        // two queries at a time: each panel row loaded once feeds both, and half
                        // the lane accumulators per pass (16 registers) leave room for the loads
                        while i0 + 1 < nq {
                            let (qa, qb) = (q.add(i0 * n), q.add((i0 + 1) * n));
                            // pass p takes lanes 4p..4p+4 and 8+4p..8+4p+4, whose first
                            // step of `reduce`'s tree (t8[i] = x[i+8] + x[i]) it finishes:
                            // only t8 (8 registers) lives across the passes, not 32 sums
                            let (mut ta, mut tb) = ([$zero(); 8], [$zero(); 8]);
                            for p in [0, 4] {
                                let (mut a, mut b) = ([$zero(); 8], [$zero(); 8]);
                                for ch in (0..n).step_by(16) {
                                    for r in 0..8 {
                                        let d = ch + p + (r % 4) + 8 * (r / 4);
                                        let k = row(d);
                                        a[r] = $fma(k, $set1(*qa.add(d)), a[r]);
                                        b[r] = $fma(k, $set1(*qb.add(d)), b[r]);
                                    }
                                }
                                for i in 0..4 {
                                    ta[p + i] = $add(a[4 + i], a[i]);
                                    tb[p + i] = $add(b[4 + i], b[i]);
                                }
                            }
                            let tail = |t: &[$v; 8]| {
                                let t4: [$v; 4] = std::array::from_fn(|i| $add(t[i + 4], t[i]));
                                $add($add(t4[0], t4[2]), $add(t4[1], t4[3]))
                            };
                            let w = (nk - c * KT_LANES).min(KT_LANES);
                            put(tail(&ta), o.add(i0 * os + c * KT_LANES), w);
                            put(tail(&tb), o.add((i0 + 1) * os + c * KT_LANES), w);
                            i0 += 2;
                        }
                    }
                    if !lanes16 {
                        // Lanes64, two queries at a time: each panel row loaded once feeds both.
                        // Lane group r of a query is x_r = (a0 + a2) + (a1 + a3) over its four
                        // products; `reduce`'s tree over the 16 x_r (t8 = x[i+8] + x[i], t4 =
                        // t8[i+4] + t8[i], then (t4[0] + t4[2]) + (t4[1] + t4[3])) is taken leaf
                        // by leaf, so only a few sums of each query are live at a time.
                        while i0 + 1 < nq {
                            let (qa, qb) = (q.add(i0 * n), q.add((i0 + 1) * n));
                            // t[g] = t4[g] of both queries, from the leaves x_g, x_{g+4}, x_{g+8}, x_{g+12}
                            let mut t = [($zero(), $zero()); 4];
                            for (g, tg) in t.iter_mut().enumerate() {
                                let mut leaf = [($zero(), $zero()); 4];
                                for (li, lr) in leaf.iter_mut().enumerate() {
                                    let r = g + 4 * li;
                                    let (mut a, mut b) = ([$zero(); 4], [$zero(); 4]);
                                    for ch in (0..n).step_by(64) {
                                        for m in 0..4 {
                                            let d = ch + 16 * m + r;
                                            let k = row(d);
                                            a[m] = $fma(k, $set1(*qa.add(d)), a[m]);
                                            b[m] = $fma(k, $set1(*qb.add(d)), b[m]);
                                        }
                                    }
                                    *lr = (
                                        $add($add(a[0], a[2]), $add(a[1], a[3])),
                                        $add($add(b[0], b[2]), $add(b[1], b[3])),
                                    );
                                }
                                // t8[g] = x[g+8] + x[g], t8[g+4] = x[g+12] + x[g+4], t4[g] = t8[g+4] + t8[g]
                                let (lo8, hi8) = (
                                    ($add(leaf[2].0, leaf[0].0), $add(leaf[2].1, leaf[0].1)),
                                    ($add(leaf[3].0, leaf[1].0), $add(leaf[3].1, leaf[1].1)),
                                );
                                *tg = ($add(hi8.0, lo8.0), $add(hi8.1, lo8.1));
                            }
                            let sa = $add($add(t[0].0, t[2].0), $add(t[1].0, t[3].0));
                            let sb = $add($add(t[0].1, t[2].1), $add(t[1].1, t[3].1));
                            let w = (nk - c * KT_LANES).min(KT_LANES);
                            put(sa, o.add(i0 * os + c * KT_LANES), w);
                            put(sb, o.add((i0 + 1) * os + c * KT_LANES), w);
                            i0 += 2;
                        }
                    }
                    for i in i0..nq {
                        let qi = q.add(i * n);
                        let s = if lanes16 {
                            let mut acc = [$zero(); 16];
                            for ch in (0..n).step_by(16) {
                                for (r, a) in acc.iter_mut().enumerate() {
                                    *a = $fma(row(ch + r), $set1(*qi.add(ch + r)), *a);
                                }
                            }
                            reduce(&acc)
                        } else {
                            let mut x = [$zero(); 16];
                            for (r, xr) in x.iter_mut().enumerate() {
                                let mut a = [$zero(); 4];
                                for ch in (0..n).step_by(64) {
                                    for (m, am) in a.iter_mut().enumerate() {
                                        let d = ch + 16 * m + r;
                                        *am = $fma(row(d), $set1(*qi.add(d)), *am);
                                    }
                                }
                                *xr = $add($add(a[0], a[2]), $add(a[1], a[3]));
                            }
                            reduce(&x)
                        };
                        put(s, o.add(i * os + c * KT_LANES), (nk - c * KT_LANES).min(KT_LANES));
                    }
                }
            }
        }
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $kq(
            n: usize,
            kt: &[f32],
            nk: usize,
            q: &[f32],
            nq: usize,
            out: &mut [f32],
            os: usize,
            order: AttnOrder,
        ) {
            attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
            // SAFETY: reachable only through a kernel table built after detection of `$feat`;
            // the pointer ranges read and written are those the check above bounds.
            unsafe { $kq_in(n, kt, nk, q, nq, out, os, order) }
        }

        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        /// # Safety
        /// The CPU must support this function's target features (`$feat`); the slices satisfy
        /// `kernels::shared::attn_pv_check` (the entry checks).
        unsafe fn $pv_in(
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
            // SAFETY: the caller upholds this function's `# Safety` contract (target features,
            // pointer ranges), which covers every unsafe operation below.
            unsafe {
                let n16 = n / 16 * 16;
                let (vp, pp, op) = (v.as_ptr(), p.as_ptr(), o.as_mut_ptr());
                for d0 in (0..n16).step_by(16) {
                    let row = |j: usize| $load(vp.add((j - j0) * vs + d0));
                    let pj = |j: usize| $set1(*pp.add(j - j0));
                    let s = match order {
                        AttnOrder::Lanes16 => {
                            let mut acc = [$zero(); 16];
                            lane_walk(&mut acc, 16, lo, hi, |j, a| *a = $fma(row(j), pj(j), *a));
                            reduce(&acc)
                        }
                        AttnOrder::Lanes8 | AttnOrder::Lanes32 | AttnOrder::F32Lanes64 | AttnOrder::F32Lanes32 => {
                            return pv_body(n, v, vs, j0, lo, hi, p, o, order);
                        }
                        AttnOrder::Lanes64 => {
                            let mut x = [$zero(); 16];
                            for (r, xr) in x.iter_mut().enumerate() {
                                let mut a = [$zero(); 4];
                                let mut j = lo + (r + 16 - lo % 16) % 16;
                                while j <= hi {
                                    let m = (j / 16) % 4;
                                    a[m] = $fma(row(j), pj(j), a[m]);
                                    j += 16;
                                }
                                *xr = $add($add(a[0], a[2]), $add(a[1], a[3]));
                            }
                            reduce(&x)
                        }
                    };
                    $store(s, op.add(d0));
                }
                if n16 < n {
                    // the last, narrower block: the portable code on a view shifted to column n16
                    pv_body(n - n16, &v[n16..], vs, j0, lo, hi, p, &mut o[n16..], order);
                }
            }
        }
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $pv(
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
            // SAFETY: as for the Q·K entry above.
            unsafe { $pv_in(n, v, vs, j0, lo, hi, p, o, order) }
        }
    };
}

/// For 16 registers r[0..16]: lane n of the result = `_mm512_reduce_add_ps`'s tree over the 16
/// lanes of r[n] (v[i]+v[i+8], then +4, then (0+2)+(1+3)), all 16 at once through shuffles that
/// perform exactly those additions.
#[inline]
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU must support this function's target features (it only computes on registers).
unsafe fn hreduce16(r: &[__m512; 16]) -> __m512 {
    // t8: lanes 0..8 of s[i] from r[2i], lanes 8..16 from r[2i+1]
    let s: [__m512; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * i], r[2 * i + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0xEE>(a, b), _mm512_shuffle_f32x4::<0x44>(a, b))
    });
    // t4: quarter k of t[i] from r[4i+k]
    let t: [__m512; 4] = std::array::from_fn(|i| {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0xDD>(a, b), _mm512_shuffle_f32x4::<0x88>(a, b))
    });
    // (x0+x2) and (x1+x3) per quarter, then their sum: lane 4k+m from r[4m+k]
    let w = |a: __m512, b: __m512| _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b));
    let (w0, w1) = (w(t[0], t[1]), w(t[2], t[3]));
    let f = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(w0, w1), _mm512_shuffle_ps::<0xDD>(w0, w1));
    _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f)
}

/// One query's probabilities as P·V reads them per key panel: keys `lo..=hi` (relative to the
/// panels' first key) in lanes, zero outside (llama.cpp's masked keys have probability 0).
struct PanelProbs {
    p: *const f32,
    c0: usize,
    c1: usize,
    m0: __mmask16,
    m1: __mmask16,
}

impl PanelProbs {
    fn new(p: *const f32, lo: usize, hi: usize) -> Self {
        let (c0, c1) = (lo / 16, hi / 16);
        let lanes = |c: usize| -> __mmask16 {
            let (from, to) = (lo.max(16 * c) - 16 * c, hi.min(16 * c + 15) - 16 * c);
            (((1u32 << (to + 1)) - 1) & !((1u32 << from) - 1)) as __mmask16
        };
        PanelProbs { p, c0, c1, m0: lanes(c0), m1: lanes(c1) }
    }

    /// Panel c's 16 probabilities.
    #[inline]
    #[target_feature(enable = "avx512f")]
    ///
    /// # Safety
    /// The CPU supports AVX-512 F; `p` holds the query's probabilities of keys `16·c0..16·c1+16`.
    unsafe fn load(&self, c: usize) -> __m512 {
        // SAFETY: only panels c0..=c1 are read (the caller's contract).
        unsafe {
            if c < self.c0 || c > self.c1 {
                _mm512_setzero_ps()
            } else if c == self.c0 {
                _mm512_maskz_loadu_ps(self.m0, self.p.add(16 * c))
            } else if c == self.c1 {
                _mm512_maskz_loadu_ps(self.m1, self.p.add(16 * c))
            } else {
                _mm512_loadu_ps(self.p.add(16 * c))
            }
        }
    }
}

/// Lanes16 P·V of Q queries for 8 output dimensions over key panels `c0..=c1`: `acc[q][r]` +=
/// value row (panel c, dimension r) × query q's panel-c probabilities, lane by lane. Each value row
/// is loaded once for all Q queries. A function of its own so that its 8·Q accumulators, Q
/// probability vectors and the value row get registers (Q ≤ 3: 28 of 32; inlined into the
/// caller's loop nest, LLVM spilled accumulators around every FMA: `perf annotate`).
#[inline(never)]
#[target_feature(enable = "avx512f")]
///
/// # Safety
/// The CPU supports AVX-512 F; `vt` points at dimension 0 of 8 of panel 0's rows (`[panel][n][16]`
/// floats, panels c0..=c1 readable); every `qs[q]` as `PanelProbs::load` requires for c0..=c1.
unsafe fn pv16_rows8<const Q: usize>(
    vt: *const f32,
    n: usize,
    c0: usize,
    c1: usize,
    qs: &[PanelProbs; Q],
    acc: &mut [[__m512; 8]; Q],
) {
    // SAFETY: reads stay in the panels and rows named by the caller's contract.
    unsafe {
        let mut a = *acc;
        for c in c0..=c1 {
            let pc: [__m512; Q] = std::array::from_fn(|q| qs[q].load(c));
            let rows = vt.add(c * n * 16);
            for r in 0..8 {
                let v = _mm512_loadu_ps(rows.add(r * 16));
                for (aq, pq) in a.iter_mut().zip(&pc) {
                    aq[r] = _mm512_fmadd_ps(v, *pq, aq[r]);
                }
            }
        }
        *acc = a;
    }
}

/// Lanes16 P·V of Q consecutive queries (keys `lo[q]..=hi[q]`, probabilities at `p + q·ps`) for
/// output dimensions d0..d0+16, written to `o + q·n + d0`.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
///
/// # Safety
/// As `pv_panels_avx512_in`, for these Q queries and a whole block of 16 dimensions.
unsafe fn pv16_group<const Q: usize>(
    n: usize,
    vt: *const f32,
    j0: usize,
    d0: usize,
    lo: &[usize],
    hi: &[usize],
    p: *const f32,
    ps: usize,
    o: *mut f32,
) {
    // SAFETY: the caller's contract covers the panels of every query's keys and its output row.
    unsafe {
        let c0 = (lo.iter().min().copied().unwrap_or(j0) - j0) / 16;
        let c1 = (hi.iter().max().copied().unwrap_or(j0) - j0) / 16;
        let qs: [PanelProbs; Q] = std::array::from_fn(|q| PanelProbs::new(p.add(q * ps), lo[q] - j0, hi[q] - j0));
        let mut r = [_mm512_setzero_ps(); Q];
        for half in [0, 8] {
            let mut acc = [[_mm512_setzero_ps(); 8]; Q];
            pv16_rows8::<Q>(vt.add((d0 + half) * 16), n, c0, c1, &qs, &mut acc);
            let m: __mmask16 = if half == 0 { 0x00ff } else { 0xff00 };
            for q in 0..Q {
                let mut x = [_mm512_setzero_ps(); 16];
                x[half..half + 8].copy_from_slice(&acc[q]);
                r[q] = _mm512_mask_mov_ps(r[q], m, hreduce16(&x));
            }
        }
        for (q, rq) in r.iter().enumerate() {
            _mm512_storeu_ps(o.add(q * n + d0), *rq);
        }
    }
}

/// `AttnPvPanelsFn` with AVX-512: keys in lanes (lane = key mod 16, as both orders want),
/// a query's 16 probabilities of a key panel in one register (masked to its lo..=hi), one
/// accumulator per output dimension (Lanes16) or per dimension and key panel mod 4 (Lanes64),
/// then `hreduce16`: one load per FMA and no broadcasts. Dimension blocks outermost, so a
/// block's slice of all panels stays in L1 while every query of the unit uses it.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
///
/// # Safety
/// The CPU must support this function's target features; the arguments satisfy
/// `kernels::shared::attn_pv_panels_check` for `vt`, `p`, `o` of the lengths the caller passed to
/// it.
unsafe fn pv_panels_avx512_in(
    n: usize,
    vt: *const f32,
    j0: usize,
    lo: &[usize],
    hi: &[usize],
    p: *const f32,
    ps: usize,
    o: *mut f32,
    order: AttnOrder,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let row = |c: usize, d: usize| _mm512_loadu_ps(vt.add((c * n + d) * 16));
        for d0 in (0..n).step_by(16) {
            let w = (n - d0).min(16);
            let mut i0 = 0;
            if order == AttnOrder::Lanes16 && w == 16 {
                // three queries at a time (then a pair) over the panels any of them sees: each
                // value row loaded once feeds all of them (panels outside a query's keys add 0·v
                // to its sums, as llama.cpp's zero probabilities of masked keys do); each half of the dimensions reduced on its own (lane d of hreduce16
                // sums only its input d), so the accumulators keep their registers
                while i0 + 2 < lo.len() {
                    pv16_group::<3>(n, vt, j0, d0, &lo[i0..i0 + 3], &hi[i0..i0 + 3], p.add(i0 * ps), ps, o.add(i0 * n));
                    i0 += 3;
                }
                if i0 + 1 < lo.len() {
                    pv16_group::<2>(n, vt, j0, d0, &lo[i0..i0 + 2], &hi[i0..i0 + 2], p.add(i0 * ps), ps, o.add(i0 * n));
                    i0 += 2;
                }
            }
            if order == AttnOrder::Lanes64 && w == 16 {
                // two queries over the same keys at a time (a decode row's heads, a prompt
                // token's heads): each value row loaded once feeds both; two dimensions per pass,
                // so both queries' accumulators ([panel mod 4][dimension], 16 registers) stay in
                // registers
                while i0 + 1 < lo.len() && (lo[i0], hi[i0]) == (lo[i0 + 1], hi[i0 + 1]) {
                    let (l, h) = (lo[i0], hi[i0]);
                    let (c0, c1) = ((l - j0) / 16, (h - j0) / 16);
                    let pa = PanelProbs::new(p.add(i0 * ps), l - j0, h - j0);
                    let pb = PanelProbs::new(p.add((i0 + 1) * ps), l - j0, h - j0);
                    let (mut xa, mut xb) = ([_mm512_setzero_ps(); 16], [_mm512_setzero_ps(); 16]);
                    for q in (0..16).step_by(2) {
                        let (mut a, mut b) = ([[_mm512_setzero_ps(); 2]; 4], [[_mm512_setzero_ps(); 2]; 4]);
                        let mut c = c0;
                        while c <= c1 {
                            if c.is_multiple_of(4) && c + 3 <= c1 {
                                for m in 0..4 {
                                    let (va, vb) = (pa.load(c + m), pb.load(c + m));
                                    for dd in 0..2 {
                                        let v = row(c + m, d0 + q + dd);
                                        a[m][dd] = _mm512_fmadd_ps(v, va, a[m][dd]);
                                        b[m][dd] = _mm512_fmadd_ps(v, vb, b[m][dd]);
                                    }
                                }
                                c += 4;
                            } else {
                                let (va, vb) = (pa.load(c), pb.load(c));
                                let one = |am: &mut [__m512; 2], bm: &mut [__m512; 2]| {
                                    for dd in 0..2 {
                                        let v = row(c, d0 + q + dd);
                                        am[dd] = _mm512_fmadd_ps(v, va, am[dd]);
                                        bm[dd] = _mm512_fmadd_ps(v, vb, bm[dd]);
                                    }
                                };
                                match c % 4 {
                                    0 => one(&mut a[0], &mut b[0]),
                                    1 => one(&mut a[1], &mut b[1]),
                                    2 => one(&mut a[2], &mut b[2]),
                                    _ => one(&mut a[3], &mut b[3]),
                                }
                                c += 1;
                            }
                        }
                        for dd in 0..2 {
                            let sum = |x: &[[__m512; 2]; 4]| {
                                _mm512_add_ps(_mm512_add_ps(x[0][dd], x[2][dd]), _mm512_add_ps(x[1][dd], x[3][dd]))
                            };
                            xa[q + dd] = sum(&a);
                            xb[q + dd] = sum(&b);
                        }
                    }
                    _mm512_storeu_ps(o.add(i0 * n + d0), hreduce16(&xa));
                    _mm512_storeu_ps(o.add((i0 + 1) * n + d0), hreduce16(&xb));
                    i0 += 2;
                }
            }
            for (i, (&lo, &hi)) in lo.iter().zip(hi).enumerate().skip(i0) {
                let (c0, c1) = ((lo - j0) / 16, (hi - j0) / 16);
                // panel c's probabilities: only the first and last panel of the query's keys can
                // be partial (masked); the ones between are whole
                let probs = PanelProbs::new(p.add(i * ps), lo - j0, hi - j0);
                let pload = |c: usize| probs.load(c);
                // Lanes64 sums of dimensions d0+q..d0+q+4 over panels c0..=c1, one accumulator
                // set per panel mod 4: constant indices only, so the 16 accumulators stay in
                // registers (an index `c % 4` into them kept them on the stack: a load and a
                // store per FMA)
                let lanes64_4 = |c0: usize, c1: usize, q: usize| {
                    let mut a = [[_mm512_setzero_ps(); 4]; 4];
                    let mut c = c0;
                    while c <= c1 {
                        if c.is_multiple_of(4) && c + 3 <= c1 {
                            for (m, am) in a.iter_mut().enumerate() {
                                let pc = pload(c + m);
                                for (dd, x) in am.iter_mut().enumerate() {
                                    *x = _mm512_fmadd_ps(row(c + m, d0 + q + dd), pc, *x);
                                }
                            }
                            c += 4;
                        } else {
                            let pc = pload(c);
                            let one = |am: &mut [__m512; 4]| {
                                for (dd, x) in am.iter_mut().enumerate() {
                                    *x = _mm512_fmadd_ps(row(c, d0 + q + dd), pc, *x);
                                }
                            };
                            match c % 4 {
                                0 => one(&mut a[0]),
                                1 => one(&mut a[1]),
                                2 => one(&mut a[2]),
                                _ => one(&mut a[3]),
                            }
                            c += 1;
                        }
                    }
                    a
                };
                // the same for the last 1..3 dimensions of a head size not a multiple of 4
                let lanes64_any = |c0: usize, c1: usize, q: usize| {
                    let mut a = [[_mm512_setzero_ps(); 4]; 4];
                    for c in c0..=c1 {
                        let pc = pload(c);
                        for (dd, am) in a[c % 4].iter_mut().enumerate().take(w - q) {
                            *am = _mm512_fmadd_ps(row(c, d0 + q + dd), pc, *am);
                        }
                    }
                    a
                };
                let mut acc = [_mm512_setzero_ps(); 16];
                match order {
                    AttnOrder::Lanes16 if w == 16 => {
                        // constant trip counts, so the 16 accumulators stay in registers
                        for c in c0..=c1 {
                            let pc = pload(c);
                            for (dd, a) in acc.iter_mut().enumerate() {
                                *a = _mm512_fmadd_ps(row(c, d0 + dd), pc, *a);
                            }
                        }
                    }
                    AttnOrder::Lanes16 => {
                        for c in c0..=c1 {
                            let pc = pload(c);
                            for (dd, a) in acc.iter_mut().enumerate().take(w) {
                                *a = _mm512_fmadd_ps(row(c, d0 + dd), pc, *a);
                            }
                        }
                    }
                    // the entry hands these to the portable sums
                    AttnOrder::Lanes8 | AttnOrder::Lanes32 | AttnOrder::F32Lanes64 | AttnOrder::F32Lanes32 => {
                        unreachable!()
                    }
                    AttnOrder::Lanes64 => {
                        for q in (0..w).step_by(4) {
                            // [key panel mod 4][dimension]
                            let a = if w - q >= 4 { lanes64_4(c0, c1, q) } else { lanes64_any(c0, c1, q) };
                            for dd in 0..(w - q).min(4) {
                                acc[q + dd] =
                                    _mm512_add_ps(_mm512_add_ps(a[0][dd], a[2][dd]), _mm512_add_ps(a[1][dd], a[3][dd]));
                            }
                        }
                    }
                }
                let r = hreduce16(&acc);
                let od = o.add(i * n + d0);
                if w == 16 {
                    _mm512_storeu_ps(od, r);
                } else {
                    _mm512_mask_storeu_ps(od, ((1u32 << w) - 1) as __mmask16, r);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_pv_panels_avx512(
    n: usize,
    vt: &[f32],
    j0: usize,
    lo: &[usize],
    hi: &[usize],
    p: &[f32],
    ps: usize,
    o: &mut [f32],
    order: AttnOrder,
) {
    attn_pv_panels_check(n, vt.len(), j0, lo, hi, p.len(), ps, o.len());
    if matches!(order, AttnOrder::Lanes8 | AttnOrder::Lanes32 | AttnOrder::F32Lanes64 | AttnOrder::F32Lanes32) {
        // not this build's orders (tests), or the f32 tails: the portable sums
        return pv_panels_body(n, vt, j0, lo, hi, p, ps, o, order);
    }
    // SAFETY: reachable only through the AVX-512 table (feature detected at run time); the check
    // bounds every panel row read (panels (lo-j0)/16 ..= (hi-j0)/16 of n rows), the probability
    // loads are masked to query i's indices i·ps + (lo-j0 ..= hi-j0) < p.len(), and o holds
    // lo.len() rows of n.
    unsafe { pv_panels_avx512_in(n, vt.as_ptr(), j0, lo, hi, p.as_ptr(), ps, o.as_mut_ptr(), order) }
}

mod avx512_dots {
    use super::*;
    attn16!(
        attn_kq_avx512,
        attn_pv_avx512,
        kq_avx512,
        pv_avx512,
        "avx512f",
        __m512,
        z_zero,
        z_load,
        z_set1,
        z_fma,
        z_add,
        z_store
    );
}
pub(crate) use avx2_orders::{attn_kq_avx2, attn_pv_avx2};
pub(crate) use avx512_dots::{attn_kq_avx512, attn_pv_avx512};

#[target_feature(enable = "avx2,f16c")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn round_f16_f16c(x: &mut [f32]) {
    // SAFETY: `round_f16_by` hands the closure 8 floats inside `x`.
    unsafe {
        round_f16_by::<8>(x, |p| {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p));
            _mm256_storeu_ps(p, _mm256_cvtph_ps(h))
        })
    }
}

/// `FaOnlineFn` compiled for AVX2 + FMA + F16C: the portable step with the output's f16 rounding
/// by `vcvtps2ph` inline.
#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn fa_online_f16c(n: usize, scores: &[f32], v: &[f32], acc: &mut [f32], st: &mut [f32; 2], p: FaStep) {
    // SAFETY: this function has the target features `round_f16_f16c` needs.
    fa_online_body(n, scores, v, acc, st, p, |x| unsafe { round_f16_f16c(x) })
}

pub(crate) fn fa_online_avx2(n: usize, scores: &[f32], v: &[f32], acc: &mut [f32], st: &mut [f32; 2], p: FaStep) {
    fa_online_check(n, scores.len(), v.len(), acc.len());
    // SAFETY: reachable only through a kernel table built after detection of AVX2, FMA and
    // F16C; the body indexes its slices (checked above).
    unsafe { fa_online_f16c(n, scores, v, acc, st, p) }
}

/// glibc's `expf` (`elementwise::glibc_expf`) on 16 floats: the same double-precision steps on
/// two halves of 8 lanes, the table read by two-source permutes; lanes at or past the library's
/// special-case threshold (|x| ≥ 88, −inf, NaN) are recomputed by the library itself.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,fma")]
/// # Safety
/// The CPU must support this function's target features (register-only, apart from the table
/// constants).
unsafe fn expf_glibc_x16(x: __m512) -> __m512 {
    use crate::kernels::elementwise::glibc_expf::{C, INV_LN2_N, SHIFT, SPECIAL_TOP, T};

    /// 8 lanes in double.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,fma")]
    /// # Safety
    /// The CPU must support this function's target features (register-only).
    unsafe fn half(xh: __m256, t: &[__m512i; 4]) -> __m256 {
        let xd = _mm512_cvtps_pd(xh);
        let (inv, sh) = (_mm512_set1_pd(INV_LN2_N), _mm512_set1_pd(SHIFT));
        let kd0 = _mm512_fmadd_pd(inv, xd, sh);
        let ki = _mm512_castpd_si512(kd0);
        let kd = _mm512_sub_pd(kd0, sh);
        let r = _mm512_fmsub_pd(inv, xd, kd);
        let lo = _mm512_permutex2var_epi64(t[0], ki, t[1]);
        let hi = _mm512_permutex2var_epi64(t[2], ki, t[3]);
        let upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
        let tab = _mm512_mask_blend_epi64(upper, lo, hi);
        let s = _mm512_castsi512_pd(_mm512_add_epi64(tab, _mm512_slli_epi64::<47>(ki)));
        let z = _mm512_fmadd_pd(r, _mm512_set1_pd(C[0]), _mm512_set1_pd(C[1]));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(r, _mm512_set1_pd(C[2]), _mm512_set1_pd(1.0));
        _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_fmadd_pd(z, r2, y), s))
    }

    // SAFETY: the table is 32 u64 (4 loads of 8); the rest is register work and stores into the
    // stack arrays; the features are this function's.
    unsafe {
        let tp = T.as_ptr() as *const __m512i;
        let t = [
            _mm512_loadu_si512(tp),
            _mm512_loadu_si512(tp.add(1)),
            _mm512_loadu_si512(tp.add(2)),
            _mm512_loadu_si512(tp.add(3)),
        ];
        let lo = half(_mm512_castps512_ps256(x), &t);
        let hi = half(_mm512_extractf32x8_ps::<1>(x), &t);
        let mut y = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi);
        let top = _mm512_and_si512(_mm512_srli_epi32::<20>(_mm512_castps_si512(x)), _mm512_set1_epi32(0x7ff));
        let special = _mm512_cmpge_epu32_mask(top, _mm512_set1_epi32(SPECIAL_TOP as i32));
        if special != 0 {
            let mut xs = [0f32; 16];
            let mut ys = [0f32; 16];
            _mm512_storeu_ps(xs.as_mut_ptr(), x);
            _mm512_storeu_ps(ys.as_mut_ptr(), y);
            for l in 0..16 {
                if special & (1 << l) != 0 {
                    ys[l] = xs[l].exp();
                }
            }
            y = _mm512_loadu_ps(ys.as_ptr());
        }
        y
    }
}

/// `FaOnlineFn` for the AVX-512 table: the step's exponentials are known before its recurrence
/// (each key's argument depends only on the running maximum, a prefix maximum of the scores), so
/// they are computed 16 at a time by `expf_glibc_x16` (bit-identical to the C library's expf);
/// then the recurrence as the portable step, with the output's f16 rounding by `vcvtps2ph`.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; the slices as `fa_online_check` says.
unsafe fn fa_online_512(n: usize, scores: &[f32], v: &[f32], acc: &mut [f32], st: &mut [f32; 2], p: FaStep) {
    // SAFETY (whole body): register work and loads/stores inside the stack arrays and `acc`.
    unsafe {
        const B: usize = 64;
        let acc = &mut acc[..n];
        let [mut m, mut s] = *st;
        for (b, chunk) in scores.chunks(B).enumerate() {
            // the exponent arguments and which keys raise the maximum
            let mut arg = [0f32; B];
            let mut new_max = [false; B];
            for (j, &raw) in chunk.iter().enumerate() {
                let mut sc = raw * p.scale;
                if p.softcap != 0.0 {
                    sc = p.softcap * sc.tanh();
                }
                if sc > m {
                    (arg[j], new_max[j], m) = (m - sc, true, sc);
                } else {
                    arg[j] = sc - m;
                }
            }
            let mut e = [0f32; B];
            for i in (0..chunk.len()).step_by(16) {
                _mm512_storeu_ps(e[i..].as_mut_ptr(), expf_glibc_x16(_mm512_loadu_ps(arg[i..].as_ptr())));
            }
            // round-trips through f16 (vcvtps2ph to nearest even) when the output is f16
            let r16 = |x: __m512| {
                if p.f16_acc {
                    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
                } else {
                    x
                }
            };
            for j in 0..chunk.len() {
                let (ms, vs) = if new_max[j] { (e[j], 1.0) } else { (1.0, e[j]) };
                let row = &v[(b * B + j) * n..(b * B + j + 1) * n];
                if n.is_multiple_of(16) {
                    let (ap, rp) = (acc.as_mut_ptr(), row.as_ptr());
                    let (msv, vsv) = (_mm512_set1_ps(ms), _mm512_set1_ps(vs));
                    for d in (0..n).step_by(16) {
                        let mut a = _mm512_loadu_ps(ap.add(d));
                        if ms != 1.0 {
                            a = r16(_mm512_mul_ps(a, msv));
                        }
                        a = r16(_mm512_fmadd_ps(_mm512_loadu_ps(rp.add(d)), vsv, a));
                        _mm512_storeu_ps(ap.add(d), a);
                    }
                } else {
                    if ms != 1.0 {
                        acc.iter_mut().for_each(|a| *a *= ms);
                        if p.f16_acc {
                            round_f16_f16c(acc);
                        }
                    }
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a = x.mul_add(vs, *a);
                    }
                    if p.f16_acc {
                        round_f16_f16c(acc);
                    }
                }
                s = s.mul_add(ms, vs);
            }
        }
        *st = [m, s];
    }
}

pub(crate) fn fa_online_avx512(n: usize, scores: &[f32], v: &[f32], acc: &mut [f32], st: &mut [f32; 2], p: FaStep) {
    fa_online_check(n, scores.len(), v.len(), acc.len());
    // SAFETY: reachable only through the AVX-512 table (with DQ: checked where it is installed);
    // the slices are checked above.
    unsafe { fa_online_512(n, scores, v, acc, st, p) }
}

/// `FaLanesKqFn` for AVX-512 VNNI: 16 query rows in the lanes of a vector. A key's block b
/// gives `fa_kv_dot_body`'s 8 lane sums for all 16 rows as 8 vectors: sum g of 4 products is one
/// `vpdpbusd` of the key's 4 quants (unsigned, value + offset, broadcast) by the rows' 4 quants
/// at [g] (signed), started from −offset·Σ(row quants) (`FaLaneQueries::corr`), so the i32 is the
/// signed sum exactly; then `f_l = fma(dk·dq, float(sum), f_l)` from 0 and the same tree over
/// f_0..f_7, `+ summs` (Q4_1/Q5_1: `fma(m_k, s_q, ·)` per block; 0 for the others).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; the slices as `fa_lanes_kq_avx512`
/// checks.
unsafe fn fa_lanes_kq_512(t: GgmlType, k: &[u8], nk: usize, q: &FaLaneQueries, out: &mut [f32]) {
    // SAFETY (whole body): loads of `q`'s vectors at [b] / [g] (n/32 and n/4 rows of 16 lanes),
    // of key rows j, j + 1 (`kb` bytes inside `k`), stores of out[j] (16 lanes inside `out`): all
    // checked by the entry; the rest is register work.
    unsafe {
        let n = q.n;
        let (nb, ts) = (n / 32, t.block_layout().1);
        let kb = nb * ts;
        // the keys' quants as unsigned bytes: Q8_0's (value ^ 0x80) and Q4_0/Q4_1's (nibbles) read
        // straight from the row, Q5_0/Q5_1's unpacked by `lane_key_row`
        let direct = matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1);
        let qs0 = match t {
            GgmlType::Q4_1 => 4,
            _ => 2,
        };
        let mut u = [[0u8; FA_LANE_MAX_N]; 2];
        let mut d = [[0f32; FA_LANE_MAX_N / 32]; 2];
        let mut m = [[0f32; FA_LANE_MAX_N / 32]; 2];
        let mut j = 0;
        while j < nk {
            let two = j + 1 < nk;
            let rows = [&k[j * kb..(j + 1) * kb], if two { &k[(j + 1) * kb..(j + 2) * kb] } else { &k[..0] }];
            for x in 0..1 + two as usize {
                if !direct {
                    lane_key_row(t, rows[x], &mut u[x][..n], &mut d[x][..nb], &mut m[x][..nb]);
                } else if t == GgmlType::Q4_1 {
                    for (b, mb) in m[x][..nb].iter_mut().enumerate() {
                        *mb = f16_load(rows[x].as_ptr().add(b * ts + 2));
                    }
                }
            }
            let (uq, dq) = (&u, &d);
            // quants 4l..4l+4 of key x's block b as one i32
            let group = |x: usize, b: usize, l: usize| {
                let rd = |p: *const u8| (p as *const i32).read_unaligned();
                match t {
                    GgmlType::Q8_0 => rd(rows[x].as_ptr().add(b * 34 + 2 + 4 * l)) ^ 0x8080_8080u32 as i32,
                    GgmlType::Q4_0 | GgmlType::Q4_1 => {
                        (rd(rows[x].as_ptr().add(b * ts + qs0 + 4 * (l & 3))) >> (4 * (l >> 2))) & 0x0f0f_0f0f
                    }
                    _ => rd(uq[x].as_ptr().add(b * 32 + 4 * l)),
                }
            };
            let scale = |x: usize, b: usize| if direct { f16_load(rows[x].as_ptr().add(b * ts)) } else { dq[x][b] };
            if two {
                let f = lanes_kq_keys::<2>(nb, q, group, scale);
                lanes_kq_store(&f[0], &m[0][..nb], q, out.as_mut_ptr().add(j * 16));
                lanes_kq_store(&f[1], &m[1][..nb], q, out.as_mut_ptr().add((j + 1) * 16));
                j += 2;
            } else {
                let f = lanes_kq_keys::<1>(nb, q, group, scale);
                lanes_kq_store(&f[0], &m[0][..nb], q, out.as_mut_ptr().add(j * 16));
                j += 1;
            }
        }
    }
}

/// The 8 lane sums of `K` keys for the 16 rows (`fa_lanes_kq_512`), the rows' quants and
/// corrections loaded once for all K keys: `group(x, b, l)` the unsigned quants 4l..4l+4 of key
/// x's block b (one byte each), `scale(x, b)` its scale.
#[inline]
#[allow(clippy::needless_range_loop)] // l indexes the rows' groups, the keys' bytes and f[x]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `group` must read inside the keys'
/// rows and `q` hold n/32 blocks of 16 lanes.
unsafe fn lanes_kq_keys<const K: usize>(
    nb: usize,
    q: &FaLaneQueries,
    group: impl Fn(usize, usize, usize) -> i32,
    scale: impl Fn(usize, usize) -> f32,
) -> [[__m512; 8]; K] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let zero = _mm512_setzero_ps();
        let (qt, corr, qd) = (q.qt.as_ptr(), q.corr.as_ptr(), q.qd.as_ptr());
        let mut f = [[zero; 8]; K];
        for b in 0..nb {
            let qdb = _mm512_loadu_ps(qd.add(b * 16));
            let dv: [__m512; K] = std::array::from_fn(|x| _mm512_mul_ps(_mm512_set1_ps(scale(x, b)), qdb));
            for l in 0..8 {
                let g = b * 8 + l;
                let c = _mm512_loadu_si512(corr.add(g * 16) as *const __m512i);
                let qg = _mm512_loadu_si512(qt.add(g * 64) as *const __m512i);
                for x in 0..K {
                    let kq = group(x, b, l);
                    let p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, _mm512_set1_epi32(kq), qg));
                    f[x][l] = _mm512_fmadd_ps(dv[x], p, if b == 0 { zero } else { f[x][l] });
                }
            }
        }
        f
    }
}

/// One key's score for the 16 rows from its lane sums: ggml's tree, `+ summs` (Q4_1/Q5_1:
/// `fma(m_k, s_q, ·)` per block from 0; 0 for the others), stored at `out`.
#[inline]
#[target_feature(enable = "avx512f,fma")]
/// # Safety
/// The CPU must support this function's target features; `out` must have 16 writable floats.
unsafe fn lanes_kq_store(f: &[__m512; 8], m: &[f32], q: &FaLaneQueries, out: *mut f32) {
    // SAFETY: the caller upholds this function's `# Safety` contract; `q.qs` holds n/32 rows of
    // 16 lanes when it is not empty (checked by the entry).
    unsafe {
        let lo = _mm512_add_ps(_mm512_add_ps(f[0], f[4]), _mm512_add_ps(f[2], f[6]));
        let hi = _mm512_add_ps(_mm512_add_ps(f[1], f[5]), _mm512_add_ps(f[3], f[7]));
        let mut summs = _mm512_setzero_ps();
        if !q.qs.is_empty() {
            for (b, &mb) in m.iter().enumerate() {
                summs = _mm512_fmadd_ps(_mm512_set1_ps(mb), _mm512_loadu_ps(q.qs.as_ptr().add(b * 16)), summs);
            }
        }
        _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(lo, hi), summs));
    }
}

pub(crate) fn fa_lanes_kq_avx512(t: GgmlType, k: &[u8], nk: usize, q: &FaLaneQueries, out: &mut [f32]) {
    fa_lanes_kq_check(t, k.len(), nk, q, out.len());
    // SAFETY: reachable only through the AVX-512 table (F, BW, VL, VNNI detected, F16C with AVX2's
    // table beneath it); the slices are checked above.
    unsafe { fa_lanes_kq_512(t, k, nk, q, out) }
}

/// `FaLanesOnlineFn` for AVX-512: the recurrence of 16 rows at once, lane i exactly row i's
/// `fa_online_body`. First every key's weights (`ms`, `vs`: masked compares and blends, the
/// exponentials by `expf_glibc_x16`, lanes that do not see the key left alone), then the outputs
/// 16 dimensions at a time in registers, key after key: a masked multiply by `ms` where a lane's
/// maximum rose, a masked `fma(v, vs, acc)` where the lane sees the key.
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,fma")]
/// # Safety
/// The CPU must support this function's target features; the slices as `fa_lanes_online_avx512`
/// checks.
unsafe fn fa_lanes_online_512(
    n: usize,
    scores: &[f32],
    vis: &[u16],
    v: &[f32],
    acc: &mut [f32],
    st: &mut [[f32; 16]; 2],
    p: FaStep,
) {
    // SAFETY (whole body): loads/stores of 16 lanes at scores[j], the stack arrays' rows j < nk
    // ≤ FA_LANE_KEYS, v[j·n + d] for d < n, acc[d·16] for d < n: checked by the entry.
    unsafe {
        let nk = vis.len();
        let mut ws = [[0f32; 32]; FA_LANE_KEYS]; // per key: ms (lanes 0..16), vs (16..32)
        let mut gts = [0u16; FA_LANE_KEYS];
        let one = _mm512_set1_ps(1.0);
        let (mut mv, mut sv) = (_mm512_loadu_ps(st[0].as_ptr()), _mm512_loadu_ps(st[1].as_ptr()));
        let scale = _mm512_set1_ps(p.scale);
        for j in 0..nk {
            let k = vis[j];
            if k == 0 {
                continue;
            }
            let x = _mm512_mul_ps(_mm512_loadu_ps(scores.as_ptr().add(j * 16)), scale);
            let gt = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(k, x, mv);
            // a new maximum: ms = expf(M − x), vs = 1; else ms = 1, vs = expf(x − M)
            let arg = _mm512_mask_blend_ps(gt, _mm512_sub_ps(x, mv), _mm512_sub_ps(mv, x));
            let e = expf_glibc_x16(_mm512_maskz_mov_ps(k, arg));
            _mm512_storeu_ps(ws[j].as_mut_ptr(), _mm512_mask_blend_ps(gt, one, e));
            _mm512_storeu_ps(ws[j].as_mut_ptr().add(16), _mm512_mask_blend_ps(gt, e, one));
            gts[j] = gt;
            mv = _mm512_mask_mov_ps(mv, gt, x);
            // S = fma(S, ms, vs)
            sv = _mm512_mask_fmadd_ps(sv, k, _mm512_loadu_ps(ws[j].as_ptr()), _mm512_loadu_ps(ws[j].as_ptr().add(16)));
        }
        _mm512_storeu_ps(st[0].as_mut_ptr(), mv);
        _mm512_storeu_ps(st[1].as_mut_ptr(), sv);
        for d0 in (0..n).step_by(16) {
            let ap = acc.as_mut_ptr().add(d0 * 16);
            let mut a: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(ap.add(i * 16)));
            for j in 0..nk {
                let k = vis[j];
                if k == 0 {
                    continue;
                }
                let gt = gts[j];
                if gt != 0 {
                    let msv = _mm512_loadu_ps(ws[j].as_ptr());
                    for x in a.iter_mut() {
                        *x = _mm512_mask_mul_ps(*x, gt, *x, msv);
                    }
                }
                let vsv = _mm512_loadu_ps(ws[j].as_ptr().add(16));
                let vr = v.as_ptr().add(j * n + d0);
                for (i, x) in a.iter_mut().enumerate() {
                    *x = _mm512_mask3_fmadd_ps(_mm512_set1_ps(*vr.add(i)), vsv, *x, k);
                }
            }
            for (i, x) in a.iter().enumerate() {
                _mm512_storeu_ps(ap.add(i * 16), *x);
            }
        }
    }
}

pub(crate) fn fa_lanes_online_avx512(
    n: usize,
    scores: &[f32],
    vis: &[u16],
    v: &[f32],
    acc: &mut [f32],
    st: &mut [[f32; 16]; 2],
    p: FaStep,
) {
    fa_lanes_online_check(n, scores.len(), vis.len(), v.len(), acc.len(), p);
    // SAFETY: reachable only through the AVX-512 table with DQ (checked where it is installed);
    // the slices are checked above.
    unsafe { fa_lanes_online_512(n, scores, vis, v, acc, st, p) }
}

/// `FaTileKqFn` and `FaTilePvFn`: the portable bodies compiled for AVX-512 (16 lanes: one zmm per
/// panel of 16 keys or 16 output dimensions, 16 accumulators) or AVX2 + FMA.
#[target_feature(enable = "avx512f,fma")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn fa_tile_kq_512(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    fa_tile_kq_body(n, kt, q, nq, out)
}
#[target_feature(enable = "avx512f,fma")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn fa_tile_pv_512(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    fa_tile_pv_body(n, p, v, nq, acc)
}
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn fa_tile_kq_256(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    fa_tile_kq_body(n, kt, q, nq, out)
}
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// The CPU must support this function's target features.
unsafe fn fa_tile_pv_256(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    fa_tile_pv_body(n, p, v, nq, acc)
}

pub(crate) fn fa_tile_kq_avx512(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    fa_tile_check(n, kt.len(), q.len(), nq, out.len(), true);
    // SAFETY: reachable only through the AVX-512 table (features detected); slices checked above.
    unsafe { fa_tile_kq_512(n, kt, q, nq, out) }
}
pub(crate) fn fa_tile_pv_avx512(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    fa_tile_check(n, v.len(), p.len(), nq, acc.len(), false);
    // SAFETY: reachable only through the AVX-512 table (features detected); slices checked above.
    unsafe { fa_tile_pv_512(n, p, v, nq, acc) }
}
pub(crate) fn fa_tile_kq_avx2(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    fa_tile_check(n, kt.len(), q.len(), nq, out.len(), true);
    // SAFETY: reachable only through the AVX2 table (features detected); slices checked above.
    unsafe { fa_tile_kq_256(n, kt, q, nq, out) }
}
pub(crate) fn fa_tile_pv_avx2(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    fa_tile_check(n, v.len(), p.len(), nq, acc.len(), false);
    // SAFETY: reachable only through the AVX2 table (features detected); slices checked above.
    unsafe { fa_tile_pv_256(n, p, v, nq, acc) }
}

/// `FaKvDotFn` for Q8_0 and Q4_0 rows, as ggml's AVX2 `ggml_vec_dot_q8_0_q8_0` /
/// `ggml_vec_dot_q4_0_q8_0`: per block the 32 signed products summed 4 at a time into 8 i32 lanes
/// (`maddubs` of |x| and sign-adjusted y, then `madd` by 1: exact), `acc = fma(dx·dy, lanes, acc)`,
/// then `hsum_float_8`. The other types take the portable body.
#[target_feature(enable = "avx2,fma,f16c")]
/// # Safety
/// The CPU must support this function's target features; `x` must hold whole blocks of `t` (Q8_0
/// or Q4_0) and `y` as many Q8_0 blocks (checked by the entry).
unsafe fn fa_kv_dot_q(t: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract; every pointer below stays
    // inside a block of `x` or `y`.
    unsafe {
        let ts = t.block_layout().1;
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..x.len() / ts {
            let (xb, yb) = (xp.add(b * ts), yp.add(b * 34));
            let d = f16_load(xb) * f16_load(yb);
            let qx = if t == GgmlType::Q8_0 {
                _mm256_loadu_si256(xb.add(2) as *const __m256i)
            } else {
                let q = _mm_loadu_si128(xb.add(2) as *const __m128i);
                let m4 = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(q, m4);
                let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
                _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
            };
            let qy = _mm256_loadu_si256(yb.add(2) as *const __m256i);
            let ax = _mm256_sign_epi8(qx, qx);
            let sy = _mm256_sign_epi8(qy, qx);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        }
        hsum_ps(acc)
    }
}

pub(crate) fn fa_kv_dot_avx2(t: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    fa_kv_dot_check(t, x.len(), y.len());
    if matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0) {
        // SAFETY: reachable only through a table built after detection of AVX2, FMA and F16C;
        // the slices are whole blocks (checked above).
        unsafe { fa_kv_dot_q(t, x, y) }
    } else {
        with_fma!(fa_kv_dot_body(t, x, y))
    }
}

/// `RoundFn` with F16C (`vcvtps2ph` round-to-nearest-even, then back).
pub(crate) fn round_f16_avx2(x: &mut [f32]) {
    // SAFETY: reachable only through a kernel table built after detection of AVX2 and F16C; the
    // body touches only `x`.
    unsafe { round_f16_f16c(x) }
}

/// The AVX2 table's dots, vectorised for the AVX2 build's orders (`Lanes8`: tinyBLAS with 8 lanes,
/// `Lanes32`: `ggml_vec_dot_f16` with 4 × 8 lanes): one ymm holds 8 independent dots — 8 keys of a
/// key panel for Q·K (a panel of 16 is done in two halves), 8 output dimensions for P·V — and an
/// order's lanes become 8 accumulator registers, reduced lane-wise by its tree. Other orders (and
/// shapes these do not cover) take the portable `kernels::attn` bodies: the same sums, so every
/// table gives the same bits for every order.
mod avx2_orders {
    use super::*;

    /// The order's reduction of its 8 lanes (`kernels::attn`), lane-wise over 8 dots.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    /// # Safety
    /// The CPU must support this function's target features (it only computes on registers).
    unsafe fn reduce8(order: AttnOrder, x: &[__m256; 8]) -> __m256 {
        if order == AttnOrder::Lanes8 {
            // tinyBLAS hsum(__m256): hi + lo, then (0+2) + (1+3)
            let t: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(x[i + 4], x[i]));
            _mm256_add_ps(_mm256_add_ps(t[0], t[2]), _mm256_add_ps(t[1], t[3]))
        } else {
            // GGML_F32x8_REDUCE: lo + hi, then two hadds: (0+1) + (2+3)
            let t: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(x[i], x[i + 4]));
            _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3]))
        }
    }

    /// `(a0 + a2) + (a1 + a3)`: `ggml_vec_dot_f16`'s four accumulators combined.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    /// # Safety
    /// The CPU must support this function's target features (it only computes on registers).
    unsafe fn combine4(a: &[__m256; 4]) -> __m256 {
        _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]))
    }

    /// Stores the first `w` of 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    /// # Safety
    /// The CPU must support this function's target features; `p..p+w` must be writable.
    unsafe fn put(v: __m256, p: *mut f32, w: usize) {
        // SAFETY: the caller upholds this function's `# Safety` contract (target features,
        // pointer ranges), which covers every unsafe operation below.
        unsafe {
            if w == 8 {
                _mm256_storeu_ps(p, v);
            } else {
                let mut t = [0f32; 8];
                _mm256_storeu_ps(t.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(t.as_ptr(), p, w);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    /// # Safety
    /// The CPU must support this function's target features; the slices must satisfy
    /// `kernels::shared::attn_kq_check` (the caller checked it).
    unsafe fn kq_in(
        n: usize,
        kt: &[f32],
        nk: usize,
        q: &[f32],
        nq: usize,
        out: &mut [f32],
        os: usize,
        order: AttnOrder,
    ) {
        // SAFETY: the caller upholds this function's `# Safety` contract (target features,
        // pointer ranges), which covers every unsafe operation below: every panel row read is
        // inside `kt` (nk.div_ceil(16) panels of n rows of 16), every q element inside `q`, every
        // score written inside row i of `out` (i < nq, at most nk values).
        unsafe {
            let vector = match order {
                AttnOrder::Lanes8 => n.is_multiple_of(8),
                AttnOrder::Lanes32 => n >= 32,
                _ => false,
            };
            if !vector {
                return kq_body(n, kt, nk, q, nq, out, os, order);
            }
            let np = order.vector_end(n);
            let (kt, q, o) = (kt.as_ptr(), q.as_ptr(), out.as_mut_ptr());
            for c in 0..nk.div_ceil(KT_LANES) {
                for half in 0..2 {
                    let keys = (nk - c * KT_LANES).saturating_sub(8 * half).min(8);
                    if keys == 0 {
                        break;
                    }
                    // row d of this half panel: dimension d of its 8 keys
                    let rows = kt.add(c * n * KT_LANES + 8 * half);
                    let row = |d: usize| _mm256_loadu_ps(rows.add(d * KT_LANES));
                    for i in 0..nq {
                        let qi = q.add(i * n);
                        let qd = |d: usize| _mm256_set1_ps(*qi.add(d));
                        let s = if order == AttnOrder::Lanes8 {
                            let mut acc = [_mm256_setzero_ps(); 8];
                            for ch in (0..n).step_by(8) {
                                for (r, a) in acc.iter_mut().enumerate() {
                                    *a = _mm256_fmadd_ps(row(ch + r), qd(ch + r), *a);
                                }
                            }
                            reduce8(order, &acc)
                        } else {
                            let mut x = [_mm256_setzero_ps(); 8];
                            for (r, xr) in x.iter_mut().enumerate() {
                                let mut a = [_mm256_setzero_ps(); 4];
                                for ch in (0..np).step_by(32) {
                                    for (m, am) in a.iter_mut().enumerate() {
                                        let d = ch + 8 * m + r;
                                        *am = _mm256_fmadd_ps(row(d), qd(d), *am);
                                    }
                                }
                                *xr = combine4(&a);
                            }
                            let s = reduce8(order, &x);
                            if np == n {
                                s
                            } else {
                                // ggml_vec_dot_f16's tail: each product rounded to f32, summed in f64
                                let mut l = [0f32; 8];
                                _mm256_storeu_ps(l.as_mut_ptr(), s);
                                for (k, lk) in l.iter_mut().enumerate() {
                                    let mut wide = *lk as f64;
                                    for d in np..n {
                                        wide += (*rows.add(d * KT_LANES + k) * *qi.add(d)) as f64;
                                    }
                                    *lk = wide as f32;
                                }
                                _mm256_loadu_ps(l.as_ptr())
                            }
                        };
                        put(s, o.add(i * os + c * KT_LANES + 8 * half), keys);
                    }
                }
            }
        }
    }

    /// `AttnKqFn` of the AVX2 table.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attn_kq_avx2(
        n: usize,
        kt: &[f32],
        nk: usize,
        q: &[f32],
        nq: usize,
        out: &mut [f32],
        os: usize,
        order: AttnOrder,
    ) {
        attn_kq_check(n, kt.len(), nk, q.len(), nq, out.len(), os);
        // SAFETY: reachable only through the AVX2 table (AVX2 and FMA detected at run time); the
        // buffers were checked just above.
        unsafe { kq_in(n, kt, nk, q, nq, out, os, order) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    /// # Safety
    /// The CPU must support this function's target features; the slices must satisfy
    /// `kernels::shared::attn_pv_check` (the caller checked it).
    unsafe fn pv_in(
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
        // SAFETY: the caller upholds this function's `# Safety` contract (target features,
        // pointer ranges), which covers every unsafe operation below: keys j in lo..=hi have rows
        // (j − j0)·vs .. + n inside `v` and probabilities p[j − j0]; 8 dimensions d0..d0+8 ≤ n
        // are read per row and written to `o`.
        unsafe {
            if !matches!(order, AttnOrder::Lanes8 | AttnOrder::Lanes32) {
                return pv_body(n, v, vs, j0, lo, hi, p, o, order);
            }
            let n8 = n / 8 * 8;
            let (vp, pp, op) = (v.as_ptr(), p.as_ptr(), o.as_mut_ptr());
            for d0 in (0..n8).step_by(8) {
                let row = |j: usize| _mm256_loadu_ps(vp.add((j - j0) * vs + d0));
                let pj = |j: usize| _mm256_set1_ps(*pp.add(j - j0));
                let s = if order == AttnOrder::Lanes8 {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    lane_walk(&mut acc, 8, lo, hi, |j, a| *a = _mm256_fmadd_ps(row(j), pj(j), *a));
                    reduce8(order, &acc)
                } else {
                    // the cache is padded to a multiple of 256 keys (p = 0): no f64 tail
                    let mut x = [_mm256_setzero_ps(); 8];
                    for (r, xr) in x.iter_mut().enumerate() {
                        let mut a = [_mm256_setzero_ps(); 4];
                        let mut j = lo + (r + 8 - lo % 8) % 8;
                        while j <= hi {
                            let m = (j / 8) % 4;
                            a[m] = _mm256_fmadd_ps(row(j), pj(j), a[m]);
                            j += 8;
                        }
                        *xr = combine4(&a);
                    }
                    reduce8(order, &x)
                };
                _mm256_storeu_ps(op.add(d0), s);
            }
            if n8 < n {
                pv_body(n - n8, &v[n8..], vs, j0, lo, hi, p, &mut o[n8..], order);
            }
        }
    }

    /// `AttnPvFn` of the AVX2 table.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attn_pv_avx2(
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
        // SAFETY: reachable only through the AVX2 table (AVX2 and FMA detected at run time); the
        // buffers were checked just above.
        unsafe { pv_in(n, v, vs, j0, lo, hi, p, o, order) }
    }
}
