//! Attention dot products in llama.cpp's summation orders (`AttnKernels::kq`, `pv`), portable: the
//! scalar table's kernels and the SIMD tables' fallback for shapes they do not vectorise.
//!
//! Without flash attention, llama.cpp computes KQ = K·Q and KQV = V·softmax(KQ) as f16 matrix
//! products, and on x86 it takes one of two orders for every such dot (with f16 or f32 operands
//! alike), whose lane count is the build's vector width:
//!   tinyBLAS (prompt batches, when the summed length is a multiple of the lane count): element e
//!     goes to lane e mod L, each lane summed with FMA in ascending e, then the L lanes reduced by
//!     the build's horizontal sum;
//!     `Lanes16` (AVX-512 build, `tinyBLAS<16, __m512>`): reduced as GCC's `_mm512_reduce_add_ps`
//!       does: v[i]+v[i+8], then +4, then (0+2)+(1+3);
//!     `Lanes8` (AVX2 build, `tinyBLAS<8, __m256>`): reduced by its `hsum(__m256)`: v[i+4]+v[i],
//!       then (0+2)+(1+3);
//!   `ggml_vec_dot_f16` (single-token batches): four accumulators of L lanes over steps of 4L;
//!     element e < n & !(4L−1) goes to accumulator (e mod 4L)/L, lane e mod L, FMA in ascending e;
//!     the four combined as (a0+a2)+(a1+a3) lane-wise, then reduced; the tail e ≥ n & !(4L−1)
//!     added in f64;
//!     `Lanes64` (AVX-512, L = 16): reduced as `Lanes16`;
//!     `Lanes32` (AVX2, L = 8): reduced by `GGML_F32x8_REDUCE`: v[i]+v[i+4], then two `hadd`s,
//!       (0+1)+(2+3);
//!   `ggml_vec_dot_f32` (f32 keys or values: a cacheless encoder's; `F32Lanes64`, `F32Lanes32`):
//!     as `ggml_vec_dot_f16`, but the tail adds each rounded product to the f32 sum, and a P·V
//!     dot's length is the sequence (keys 0..=hi), so it has a tail too.
//! Floating-point addition does not associate, so reproducing the order is what makes our logits
//! equal llama.cpp's bit for bit (and its greedy continuations equal ours).
//!
//! The kernels are portable code over `[f32; 16]` arrays holding 16 independent dots; the SIMD
//! tables vectorise the orders of their build (`x86::attn`) and fall back to these for the others,
//! so every table gives the same bits for every order. Keys sit in the lanes for Q·K (key panels,
//! `AttnKtFn`) and output dimensions for P·V, so every reduction across the lanes of an order
//! becomes lane-wise additions of vectors.

pub use super::types::AttnOrder;
use super::types::{FaLaneQueries, FaStep, FA_LANES, KT_LANES};
use crate::quant::GgmlType;
use half::f16;

type V16 = [f32; 16];

impl AttnOrder {
    /// Every order, for tests that go over all of them.
    pub const ALL: [AttnOrder; 6] = [
        AttnOrder::Lanes16,
        AttnOrder::Lanes64,
        AttnOrder::Lanes8,
        AttnOrder::Lanes32,
        AttnOrder::F32Lanes64,
        AttnOrder::F32Lanes32,
    ];

    /// Lanes of one accumulator (the build's f32 vector width).
    pub const fn lanes(self) -> usize {
        match self {
            AttnOrder::Lanes16 | AttnOrder::Lanes64 | AttnOrder::F32Lanes64 => 16,
            AttnOrder::Lanes8 | AttnOrder::Lanes32 | AttnOrder::F32Lanes32 => 8,
        }
    }

    /// Accumulators per dot: 1 (tinyBLAS) or 4 (`ggml_vec_dot_f16`).
    pub const fn accumulators(self) -> usize {
        match self {
            AttnOrder::Lanes16 | AttnOrder::Lanes8 => 1,
            _ => 4,
        }
    }

    /// `ggml_vec_dot_f32`: the tail is added in f32 (rounded products), not in f64, and a P·V
    /// dot over keys 0..=hi ends at hi (no padded cache).
    pub const fn f32_tail(self) -> bool {
        matches!(self, AttnOrder::F32Lanes64 | AttnOrder::F32Lanes32)
    }

    /// Where the vector part of a P·V dot over keys lo..=hi ends.
    pub const fn pv_vector_end(self, hi: usize) -> usize {
        if self.f32_tail() {
            self.vector_end(hi + 1)
        } else {
            // llama.cpp pads the cache with p = 0 keys to a multiple of 256 (a multiple of every
            // order's step): no tail
            usize::MAX
        }
    }

    /// Where the vector part of a dot of length `n` ends (`ggml_vec_dot_f16` adds the rest in f64).
    pub const fn vector_end(self, n: usize) -> usize {
        match self.accumulators() {
            1 => n,
            _ => n & !(4 * self.lanes() - 1),
        }
    }
}

#[inline(always)]
fn add(a: &V16, b: &V16) -> V16 {
    std::array::from_fn(|i| a[i] + b[i])
}

#[inline(always)]
fn fma(acc: &mut V16, x: &V16, s: f32) {
    for i in 0..16 {
        acc[i] = x[i].mul_add(s, acc[i]);
    }
}

/// The order's reduction of its lanes `x[0..lanes]`, for 16 independent columns at once.
#[inline(always)]
fn reduce(order: AttnOrder, x: &[V16; 16]) -> V16 {
    match order {
        // `_mm512_reduce_add_ps`
        AttnOrder::Lanes16 | AttnOrder::Lanes64 | AttnOrder::F32Lanes64 => {
            let t8: [V16; 8] = std::array::from_fn(|i| add(&x[i + 8], &x[i]));
            let t4: [V16; 4] = std::array::from_fn(|i| add(&t8[i + 4], &t8[i]));
            add(&add(&t4[0], &t4[2]), &add(&t4[1], &t4[3]))
        }
        // tinyBLAS `hsum(__m256)`: hi + lo, movehl, movehdup
        AttnOrder::Lanes8 => {
            let t: [V16; 4] = std::array::from_fn(|i| add(&x[i + 4], &x[i]));
            add(&add(&t[0], &t[2]), &add(&t[1], &t[3]))
        }
        // `GGML_F32x8_REDUCE`: lo + hi, then two `_mm_hadd_ps`
        AttnOrder::Lanes32 | AttnOrder::F32Lanes32 => {
            let t: [V16; 4] = std::array::from_fn(|i| add(&x[i], &x[i + 4]));
            add(&add(&t[0], &t[1]), &add(&t[2], &t[3]))
        }
    }
}

/// The lane sums of one group of 16 dots, where `item(e)` is the vector of the 16 dots' e-th
/// products' factors `(x_e, s_e)` — e runs over `e0 ≤ e ≤ e1` (absolute indices: lanes and
/// accumulators are chosen by e itself); `np` is where the vector part of a 4-accumulator order
/// ends (`AttnOrder::vector_end`), the rest is added in f64.
#[inline(always)]
fn dots16(order: AttnOrder, e0: usize, e1: usize, np: usize, item: impl Fn(usize) -> (V16, f32)) -> V16 {
    let (l, m) = (order.lanes(), order.accumulators());
    let mut x = [[0f32; 16]; 16];
    for (r, xr) in x.iter_mut().enumerate().take(l) {
        // first e ≥ e0 with e mod l = r
        let mut e = e0 + (r + l - e0 % l) % l;
        let mut a = [[0f32; 16]; 4];
        while e <= e1 && e < np {
            let (v, s) = item(e);
            fma(&mut a[(e / l) % m], &v, s);
            e += l;
        }
        *xr = if m == 1 { a[0] } else { add(&add(&a[0], &a[2]), &add(&a[1], &a[3])) };
    }
    let mut s = reduce(order, &x);
    if order.f32_tail() {
        for e in np.max(e0)..=e1 {
            let (v, f) = item(e);
            for i in 0..16 {
                s[i] += v[i] * f;
            }
        }
    } else if m > 1 && e1 + 1 > np {
        let mut wide: [f64; 16] = std::array::from_fn(|i| s[i] as f64);
        for e in np.max(e0)..=e1 {
            let (v, f) = item(e);
            for i in 0..16 {
                wide[i] += (v[i] * f) as f64;
            }
        }
        s = std::array::from_fn(|i| wide[i] as f32);
    }
    s
}

/// `AttnKqFn`: scores of `nq` queries against `nk` keys in panels (`AttnKtFn` layout).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn kq_body(
    n: usize,
    kt: &[f32],
    nk: usize,
    q: &[f32],
    nq: usize,
    out: &mut [f32],
    os: usize,
    order: AttnOrder,
) {
    let (l, np) = (order.lanes(), order.vector_end(n));
    for i in 0..nq {
        let qi = &q[i * n..(i + 1) * n];
        for c in 0..nk.div_ceil(KT_LANES) {
            let panel = &kt[c * n * KT_LANES..(c + 1) * n * KT_LANES];
            let s = if order.accumulators() == 1 && n.is_multiple_of(l) {
                // the same sums as `dots16` with the lane accumulators live at once: every chunk
                // of l dimensions adds one product to each (l independent FMA chains)
                let mut acc = [[0f32; 16]; 16];
                for (rows, qc) in panel.chunks_exact(l * KT_LANES).zip(qi.chunks_exact(l)) {
                    for r in 0..l {
                        fma(&mut acc[r], rows[r * 16..r * 16 + 16].try_into().unwrap(), qc[r]);
                    }
                }
                reduce(order, &acc)
            } else {
                dots16(order, 0, n - 1, np, |d| (panel[d * KT_LANES..(d + 1) * KT_LANES].try_into().unwrap(), qi[d]))
            };
            let cnt = (nk - c * KT_LANES).min(KT_LANES);
            out[i * os + c * KT_LANES..i * os + c * KT_LANES + cnt].copy_from_slice(&s[..cnt]);
        }
    }
}

/// The key walk of the one-accumulator orders (P·V): key j of lo..=hi goes to lane accumulator
/// `acc[j mod l]` (l ≤ acc.len()), keys ascending, in chunks of l from a multiple of l; `step(j, a)`
/// adds key j into its accumulator `a`. Written once for the portable and the SIMD bodies.
#[inline(always)]
pub(crate) fn lane_walk<A>(acc: &mut [A], l: usize, lo: usize, hi: usize, step: impl Fn(usize, &mut A)) {
    let mut base = lo / l * l;
    while base <= hi {
        if base >= lo && base + l - 1 <= hi {
            for (r, a) in acc.iter_mut().enumerate().take(l) {
                step(base + r, a);
            }
        } else {
            for (r, a) in acc.iter_mut().enumerate().take(l) {
                let j = base + r;
                if j >= lo && j <= hi {
                    step(j, a);
                }
            }
        }
        base += l;
    }
}

/// `AttnPvFn`: `o[d] = Σ_{j=lo..=hi} p[j - j0] · v[(j - j0)·vs + d]` for d < n, summed over the
/// absolute key index j in `order`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pv_body(
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
    let np = order.pv_vector_end(hi);
    let l = order.lanes();
    for d0 in (0..n).step_by(16) {
        let w = (n - d0).min(16);
        let s = if w == 16 && order.accumulators() == 1 {
            // as `dots16`, keys in chunks of l from a multiple of l, all l lanes live at once
            let mut acc = [[0f32; 16]; 16];
            let row = |j: usize| -> &V16 { v[(j - j0) * vs + d0..(j - j0) * vs + d0 + 16].try_into().unwrap() };
            lane_walk(&mut acc, l, lo, hi, |j, a| fma(a, row(j), p[j - j0]));
            reduce(order, &acc)
        } else if w == 16 {
            dots16(order, lo, hi, np, |j| {
                (v[(j - j0) * vs + d0..(j - j0) * vs + d0 + 16].try_into().unwrap(), p[j - j0])
            })
        } else {
            dots16(order, lo, hi, np, |j| {
                let mut x = [0f32; 16];
                x[..w].copy_from_slice(&v[(j - j0) * vs + d0..(j - j0) * vs + d0 + w]);
                (x, p[j - j0])
            })
        };
        o[d0..d0 + w].copy_from_slice(&s[..w]);
    }
}

/// `AttnPvPanelsFn` portably: `pv_body`'s sums for each query, the values read from key panels
/// (`AttnKtFn` layout, keys from j0 in lanes).
#[cfg(target_arch = "x86_64")] // the x86 tables' fallback for orders they do not vectorise
#[allow(clippy::too_many_arguments)]
pub(crate) fn pv_panels_body(
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
    let value = |j: usize, d: usize| vt[(((j - j0) / KT_LANES) * n + d) * KT_LANES + (j - j0) % KT_LANES];
    for (i, (&lo, &hi)) in lo.iter().zip(hi).enumerate() {
        let pi = &p[i * ps..];
        for d0 in (0..n).step_by(16) {
            let w = (n - d0).min(16);
            let s = dots16(order, lo, hi, order.pv_vector_end(hi), |j| {
                (std::array::from_fn(|k| if k < w { value(j, d0 + k) } else { 0.0 }), pi[j - j0])
            });
            o[i * n + d0..i * n + d0 + w].copy_from_slice(&s[..w]);
        }
    }
}

/// Flash attention's online softmax over one block of keys for one query, as llama.cpp's
/// `ggml_compute_forward_flash_attn_ext_f16_one_chunk` runs it key by key: the score scaled (and
/// soft-capped: `cap·tanhf(s·scale)`); a new maximum M rescales the output by `expf(M_old − M)`,
/// otherwise the key's weight is `expf(s − M)` (the C library's expf); `acc += v·weight` with a
/// fused multiply-add per element, rounded to f16 after every key when the output accumulates in
/// f16 (`ggml_vec_mad_f16`, `ggml_vec_scale_f16`); `S = fma(S, ms, weight)` (ggml's C++ built
/// with contraction). `round` rounds a slice through f16 (the table's own).
#[inline(always)]
pub(crate) fn fa_online_body(
    n: usize,
    scores: &[f32],
    v: &[f32],
    acc: &mut [f32],
    st: &mut [f32; 2],
    p: FaStep,
    round: impl Fn(&mut [f32]),
) {
    let acc = &mut acc[..n];
    let [mut m, mut s] = *st;
    for (j, &raw) in scores.iter().enumerate() {
        let mut sc = raw * p.scale;
        if p.softcap != 0.0 {
            sc = p.softcap * sc.tanh();
        }
        let (ms, vs) = if sc > m {
            let ms = (m - sc).exp();
            m = sc;
            // a scale of 1 changes nothing (the output is already f16 when rounded)
            if ms != 1.0 {
                acc.iter_mut().for_each(|a| *a *= ms);
                if p.f16_acc {
                    round(acc);
                }
            }
            (ms, 1.0)
        } else {
            (1.0, (sc - m).exp())
        };
        for (a, &x) in acc.iter_mut().zip(&v[j * n..(j + 1) * n]) {
            *a = x.mul_add(vs, *a);
        }
        if p.f16_acc {
            round(acc);
        }
        s = s.mul_add(ms, vs);
    }
    *st = [m, s];
}

/// Keys of a flash-attention tile (ggml's `GGML_FA_TILE_KV`).
pub const FA_TILE_KEYS: usize = 64;

/// `FaTileKqFn`: 4 query rows × the 4 key panels at a time (16 accumulators of 16 lanes), each
/// score a chain of fused multiply-adds over the head in order, from 0.
#[inline(always)]
pub(crate) fn fa_tile_kq_body(n: usize, kt: &[f32], q: &[f32], nq: usize, out: &mut [f32]) {
    const P: usize = FA_TILE_KEYS / KT_LANES;
    let kt = &kt[..P * n * KT_LANES];
    for i0 in (0..nq).step_by(4) {
        let qr: [&[f32]; 4] = std::array::from_fn(|r| &q[(i0 + r) * n..(i0 + r + 1) * n]);
        let mut a = [[[0f32; KT_LANES]; P]; 4];
        for d in 0..n {
            for p in 0..P {
                let kd = &kt[(p * n + d) * KT_LANES..(p * n + d + 1) * KT_LANES];
                for r in 0..4 {
                    let qd = qr[r][d];
                    for l in 0..KT_LANES {
                        a[r][p][l] = kd[l].mul_add(qd, a[r][p][l]);
                    }
                }
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (p, ap) in ar.iter().enumerate() {
                out[(i0 + r) * FA_TILE_KEYS + p * KT_LANES..][..KT_LANES].copy_from_slice(ap);
            }
        }
    }
}

/// `FaTilePvFn`: 4 query rows × 64 output dimensions (or 16 for a head that is not a multiple of
/// 64) at a time, each output a chain of fused multiply-adds over the tile's keys in order.
#[inline(always)]
pub(crate) fn fa_tile_pv_body(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32]) {
    #[inline(always)]
    fn block<const B: usize>(n: usize, p: &[f32], v: &[f32], nq: usize, acc: &mut [f32], d0: usize) {
        for i0 in (0..nq).step_by(4) {
            let mut a = [[[0f32; 16]; B]; 4];
            for r in 0..4 {
                for b in 0..B {
                    a[r][b].copy_from_slice(&acc[(i0 + r) * n + d0 + 16 * b..][..16]);
                }
            }
            for j in 0..FA_TILE_KEYS {
                for b in 0..B {
                    let vj = &v[j * n + d0 + 16 * b..][..16];
                    for r in 0..4 {
                        let pj = p[(i0 + r) * FA_TILE_KEYS + j];
                        for l in 0..16 {
                            a[r][b][l] = vj[l].mul_add(pj, a[r][b][l]);
                        }
                    }
                }
            }
            for r in 0..4 {
                for b in 0..B {
                    acc[(i0 + r) * n + d0 + 16 * b..][..16].copy_from_slice(&a[r][b]);
                }
            }
        }
    }
    let mut d0 = 0;
    while d0 + 64 <= n {
        block::<4>(n, p, v, nq, acc, d0);
        d0 += 64;
    }
    while d0 + 16 <= n {
        block::<1>(n, p, v, nq, acc, d0);
        d0 += 16;
    }
    // the dimensions past the last whole 16, one at a time
    for d in d0..n {
        for i in 0..nq.div_ceil(4) * 4 {
            let mut x = acc[i * n + d];
            for j in 0..FA_TILE_KEYS {
                x = v[j * n + d].mul_add(p[i * FA_TILE_KEYS + j], x);
            }
            acc[i * n + d] = x;
        }
    }
}

/// `ggml_vec_dot_<K type>_q8_{0,1}` of ggml's x86 builds (its AVX2 code, which the AVX-512 build
/// compiles too) for a cache row `x` and a query row `y` in the partner type: per block the
/// products of 4 consecutive elements summed as integers in 8 lanes, each lane
/// `acc = fma(dx·dy, f32(lane sum), acc)`, then the 8 lanes reduced as `hsum_float_8`
/// (`((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`); Q4_1/Q5_1 add `Σ m·s` (summed with FMA in block
/// order) after.
#[inline(always)]
pub(crate) fn fa_kv_dot_body(t: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    let h = |b: &[u8], o: usize| f16::from_le_bytes([b[o], b[o + 1]]).to_f32();
    let ts = t.block_layout().1;
    let (nb, yts) = (x.len() / ts, if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) { 36 } else { 34 });
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for ib in 0..nb {
        let (xb, yb) = (&x[ib * ts..(ib + 1) * ts], &y[ib * yts..(ib + 1) * yts]);
        let yq = &yb[yts - 32..];
        let mut e = [0i32; 32];
        let lo_hi = |qs: &[u8], e: &mut [i32; 32], f: &dyn Fn(usize, u8) -> i32| {
            for j in 0..16 {
                e[j] = f(j, qs[j] & 15);
                e[j + 16] = f(j + 16, qs[j] >> 4);
            }
        };
        match t {
            GgmlType::Q8_0 => e.iter_mut().zip(&xb[2..34]).for_each(|(e, &q)| *e = q as i8 as i32),
            GgmlType::Q4_0 => lo_hi(&xb[2..18], &mut e, &|_, q| q as i32 - 8),
            GgmlType::Q4_1 => lo_hi(&xb[4..20], &mut e, &|_, q| q as i32),
            GgmlType::Q5_0 => {
                let qh = u32::from_le_bytes([xb[2], xb[3], xb[4], xb[5]]);
                lo_hi(&xb[6..22], &mut e, &|j, q| (q as i32 | (((qh >> j) & 1) << 4) as i32) - 16)
            }
            GgmlType::Q5_1 => {
                let qh = u32::from_le_bytes([xb[4], xb[5], xb[6], xb[7]]);
                lo_hi(&xb[8..24], &mut e, &|j, q| q as i32 | (((qh >> j) & 1) << 4) as i32)
            }
            _ => unreachable!("cache type {t} has no flash-attention dot"),
        }
        let lanes: [f32; 8] =
            std::array::from_fn(|l| (0..4).map(|i| e[4 * l + i] * yq[4 * l + i] as i8 as i32).sum::<i32>() as f32);
        let d = h(xb, 0) * h(yb, 0);
        for l in 0..8 {
            acc[l] = d.mul_add(lanes[l], acc[l]);
        }
        if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) {
            summs = h(xb, 2).mul_add(h(yb, 2), summs);
        }
    }
    let v = acc;
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])) + summs
}

/// What a key's quants are raised by to enter the lane kernels as unsigned bytes (`vpdpbusd`
/// multiplies unsigned by signed bytes): Q8_0 values −128..=127 by 128, Q4_0's nibble − 8 by 8,
/// Q5_0's 5 bits − 16 by 16; Q4_1 and Q5_1 quants are unsigned already.
pub fn lane_key_offset(t: GgmlType) -> i32 {
    match t {
        GgmlType::Q8_0 => 128,
        GgmlType::Q4_0 => 8,
        GgmlType::Q5_0 => 16,
        GgmlType::Q4_1 | GgmlType::Q5_1 => 0,
        _ => unreachable!("cache type {t} has no flash-attention dot"),
    }
}

/// One quantized key row as the lane kernels read it: `u[e]` = quant e + `lane_key_offset`
/// (unsigned, in the element order of `fa_kv_dot_body`), `d[b]` the block scales, `m[b]` the block
/// minima of Q4_1/Q5_1 (0 for the others).
pub fn lane_key_row(t: GgmlType, x: &[u8], u: &mut [u8], d: &mut [f32], m: &mut [f32]) {
    let h = |b: &[u8], o: usize| f16::from_le_bytes([b[o], b[o + 1]]).to_f32();
    let ts = t.block_layout().1;
    for (ib, xb) in x.chunks_exact(ts).enumerate() {
        let u = &mut u[ib * 32..(ib + 1) * 32];
        d[ib] = h(xb, 0);
        m[ib] = if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) { h(xb, 2) } else { 0.0 };
        let nibbles = |qs: &[u8], u: &mut [u8]| {
            for j in 0..16 {
                (u[j], u[j + 16]) = (qs[j] & 15, qs[j] >> 4);
            }
        };
        let high = |qh: &[u8], u: &mut [u8]| {
            let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
            u.iter_mut().enumerate().for_each(|(j, u)| *u |= (((qh >> j) & 1) << 4) as u8);
        };
        match t {
            GgmlType::Q8_0 => u.iter_mut().zip(&xb[2..34]).for_each(|(u, &q)| *u = q ^ 0x80),
            GgmlType::Q4_0 => nibbles(&xb[2..18], u),
            GgmlType::Q4_1 => nibbles(&xb[4..20], u),
            GgmlType::Q5_0 => {
                nibbles(&xb[6..22], u);
                high(&xb[2..6], u);
            }
            GgmlType::Q5_1 => {
                nibbles(&xb[8..24], u);
                high(&xb[4..8], u);
            }
            _ => unreachable!("cache type {t} has no flash-attention dot"),
        }
    }
}

impl FaLaneQueries {
    /// Rows `rows` (at most `FA_LANES`, `n` elements each) for keys of type `k`: each converted
    /// to K's dot partner type by `to_partner` (a Q8_0 or Q8_1 quantizer, `partner_bytes` per 32
    /// elements), then laid out for the lane kernels. Reuses the buffers.
    pub fn fill(&mut self, k: GgmlType, n: usize, rows: &[&[f32]], to_partner: super::types::FromFloatFn) {
        assert!(rows.len() <= FA_LANES && n.is_multiple_of(32), "lane queries: {} rows of {n}", rows.len());
        let q81 = matches!(k, GgmlType::Q4_1 | GgmlType::Q5_1);
        let yts = if q81 { 36 } else { 34 };
        let (nb, rb) = (n / 32, n / 32 * yts);
        let off = lane_key_offset(k);
        self.k_type = Some(k);
        self.n = n;
        self.row_bytes = rb;
        self.qq.clear();
        self.qq.resize(FA_LANES * rb, 0);
        for (i, r) in rows.iter().enumerate() {
            to_partner(&r[..n], &mut self.qq[i * rb..(i + 1) * rb]);
        }
        self.qt.clear();
        self.qt.resize(n * FA_LANES, 0);
        self.corr.clear();
        self.corr.resize(n / 4 * FA_LANES, 0);
        self.qd.clear();
        self.qd.resize(nb * FA_LANES, 0.0);
        self.qs.clear();
        if q81 {
            self.qs.resize(nb * FA_LANES, 0.0);
        }
        let h = |b: &[u8], o: usize| f16::from_le_bytes([b[o], b[o + 1]]).to_f32();
        for i in 0..FA_LANES {
            for b in 0..nb {
                let yb = &self.qq[i * rb + b * yts..i * rb + (b + 1) * yts];
                self.qd[b * FA_LANES + i] = h(yb, 0);
                if q81 {
                    self.qs[b * FA_LANES + i] = h(yb, 2);
                }
                for l in 0..8 {
                    let g = b * 8 + l;
                    let mut sum = 0;
                    for e in 0..4 {
                        let q = yb[yts - 32 + 4 * l + e] as i8;
                        self.qt[(g * FA_LANES + i) * 4 + e] = q;
                        sum += q as i32;
                    }
                    self.corr[g * FA_LANES + i] = -off * sum;
                }
            }
        }
    }
}

/// `FaLanesKqFn` one dot at a time (`fa_kv_dot_body` per lane and key): the reference.
pub fn fa_lanes_kq_ref(t: GgmlType, k: &[u8], nk: usize, q: &FaLaneQueries, out: &mut [f32]) {
    let kb = q.n / 32 * t.block_layout().1;
    for j in 0..nk {
        for i in 0..FA_LANES {
            out[j * FA_LANES + i] =
                fa_kv_dot_body(t, &k[j * kb..(j + 1) * kb], &q.qq[i * q.row_bytes..(i + 1) * q.row_bytes]);
        }
    }
}

/// `FaLanesOnlineFn` one lane at a time (`fa_online_body` over the lane's visible keys): the
/// reference.
pub fn fa_lanes_online_ref(
    n: usize,
    scores: &[f32],
    vis: &[u16],
    v: &[f32],
    acc: &mut [f32],
    st: &mut [[f32; 16]; 2],
    p: FaStep,
) {
    for i in 0..FA_LANES {
        let keys: Vec<usize> = (0..vis.len()).filter(|&j| vis[j] >> i & 1 == 1).collect();
        let sc: Vec<f32> = keys.iter().map(|&j| scores[j * FA_LANES + i]).collect();
        let vv: Vec<f32> = keys.iter().flat_map(|&j| v[j * n..(j + 1) * n].iter().copied()).collect();
        let mut a: Vec<f32> = (0..n).map(|d| acc[d * FA_LANES + i]).collect();
        let mut row = [st[0][i], st[1][i]];
        fa_online_body(n, &sc, &vv, &mut a, &mut row, p, |_| unreachable!("f32 output"));
        [st[0][i], st[1][i]] = row;
        for d in 0..n {
            acc[d * FA_LANES + i] = a[d];
        }
    }
}

/// ggml's dot loops written out one dot at a time, the reference the kernels are tested against.
#[cfg(test)]
pub(crate) mod reference {
    use super::AttnOrder;

    /// GCC's `_mm512_reduce_add_ps`, written out.
    fn reduce_add(v: &[f32; 16]) -> f32 {
        let t8: Vec<f32> = (0..8).map(|i| v[i + 8] + v[i]).collect();
        let t4: Vec<f32> = (0..4).map(|i| t8[i + 4] + t8[i]).collect();
        (t4[0] + t4[2]) + (t4[1] + t4[3])
    }

    /// sgemm.cpp's `hsum(__m256)`: `hsum(_mm_add_ps(hi, lo))` with `_mm_movehl_ps` and
    /// `_mm_movehdup_ps` + `_mm_add_ss`.
    fn hsum_m256(v: &[f32; 8]) -> f32 {
        let x: Vec<f32> = (0..4).map(|i| v[i + 4] + v[i]).collect();
        let (x0, x1) = (x[0] + x[2], x[1] + x[3]);
        x0 + x1
    }

    /// `GGML_F32x8_REDUCE` after the accumulators are combined: `t0 = lo + hi`,
    /// `t1 = _mm_hadd_ps(t0, t0)`, then lane 0 of `_mm_hadd_ps(t1, t1)`.
    fn f32x8_reduce(v: &[f32; 8]) -> f32 {
        let t0: Vec<f32> = (0..4).map(|i| v[i] + v[i + 4]).collect();
        let t1 = [t0[0] + t0[1], t0[2] + t0[3]];
        t1[0] + t1[1]
    }

    /// The elements after the vector part: `ggml_vec_dot_f16` adds them in f64,
    /// `ggml_vec_dot_f32` adds each rounded product to its f32 sum.
    fn tail(order: AttnOrder, sum: f32, x: &[f32], y: &[f32]) -> f32 {
        if order.f32_tail() {
            x.iter().zip(y).fold(sum, |s, (a, b)| s + a * b)
        } else {
            x.iter().zip(y).fold(sum as f64, |s, (a, b)| s + (a * b) as f64) as f32
        }
    }

    /// ggml's dot loops, one dot at a time: tinyBLAS and `ggml_vec_dot_f16`, AVX-512 build
    /// (`Lanes16`, `Lanes64`) and AVX2 build (`Lanes8`, `Lanes32`).
    pub(crate) fn ggml_dot(order: AttnOrder, x: &[f32], y: &[f32]) -> f32 {
        let n = x.len();
        match order {
            AttnOrder::Lanes16 => {
                let mut c = [0f32; 16];
                for l in (0..n).step_by(16) {
                    for i in 0..16.min(n - l) {
                        c[i] = x[l + i].mul_add(y[l + i], c[i]);
                    }
                }
                reduce_add(&c)
            }
            AttnOrder::Lanes8 => {
                let mut c = [0f32; 8];
                for l in (0..n).step_by(8) {
                    for i in 0..8.min(n - l) {
                        c[i] = x[l + i].mul_add(y[l + i], c[i]);
                    }
                }
                hsum_m256(&c)
            }
            AttnOrder::Lanes64 | AttnOrder::F32Lanes64 => {
                let np = n & !63;
                let mut sum = [[0f32; 16]; 4];
                for i in (0..np).step_by(64) {
                    for (j, s) in sum.iter_mut().enumerate() {
                        for k in 0..16 {
                            s[k] = x[i + 16 * j + k].mul_add(y[i + 16 * j + k], s[k]);
                        }
                    }
                }
                let r: [f32; 16] = std::array::from_fn(|k| (sum[0][k] + sum[2][k]) + (sum[1][k] + sum[3][k]));
                tail(order, reduce_add(&r), &x[np..], &y[np..])
            }
            AttnOrder::Lanes32 | AttnOrder::F32Lanes32 => {
                // GGML_F16_STEP 32, GGML_F16_EPR 8: sum[0..4] of 8 lanes
                let np = n & !31;
                let mut sum = [[0f32; 8]; 4];
                for i in (0..np).step_by(32) {
                    for (j, s) in sum.iter_mut().enumerate() {
                        for k in 0..8 {
                            s[k] = x[i + 8 * j + k].mul_add(y[i + 8 * j + k], s[k]);
                        }
                    }
                }
                // x[i] += x[offset+i] with offset 2, then 1
                let r: [f32; 8] = std::array::from_fn(|k| (sum[0][k] + sum[2][k]) + (sum[1][k] + sum[3][k]));
                tail(order, f32x8_reduce(&r), &x[np..], &y[np..])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::ggml_dot;
    use super::*;

    fn rnd(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn kq_and_pv_follow_ggml_dot_loops() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        for order in AttnOrder::ALL {
            for n in [8usize, 16, 24, 40, 48, 64, 80, 128, 200, 256] {
                if order.accumulators() == 1 && !n.is_multiple_of(order.lanes()) {
                    continue; // llama.cpp takes tinyBLAS only for whole lane chunks
                }
                let nk = 37;
                let keys: Vec<f32> = (0..nk * n).map(|_| rnd(&mut seed)).collect();
                let q: Vec<f32> = (0..2 * n).map(|_| rnd(&mut seed)).collect();
                // key panels (`AttnKtFn` layout), lanes past nk zero
                let mut kt = vec![0f32; nk.div_ceil(16) * n * 16];
                for j in 0..nk {
                    for d in 0..n {
                        kt[((j / 16) * n + d) * 16 + j % 16] = keys[j * n + d];
                    }
                }
                let mut out = vec![0f32; 2 * nk];
                kq_body(n, &kt, nk, &q, 2, &mut out, nk, order);
                for i in 0..2 {
                    for j in 0..nk {
                        let want = ggml_dot(order, &keys[j * n..(j + 1) * n], &q[i * n..(i + 1) * n]);
                        assert_eq!(out[i * nk + j].to_bits(), want.to_bits(), "kq {order:?} n {n} q {i} key {j}");
                    }
                }
            }
            // P·V: keys lo..=hi of a cache whose rows start at j0; ggml sums over all keys with p = 0
            // outside the range.
            for (hv, j0, lo, hi) in [
                (64usize, 0usize, 0usize, 130usize),
                (19, 64, 70, 200),
                (256, 0, 5, 5),
                (33, 16, 16, 80),
                (8, 0, 3, 41),
            ] {
                let nkv = hi - j0 + 1;
                let v: Vec<f32> = (0..nkv * hv).map(|_| rnd(&mut seed)).collect();
                let p: Vec<f32> = (0..nkv).map(|_| rnd(&mut seed).abs()).collect();
                let mut o = vec![0f32; hv];
                pv_body(hv, &v, hv, j0, lo, hi, &p, &mut o, order);
                // a cache is padded to 256 keys with p = 0; the f32 orders' dot ends at hi
                let padded = if order.f32_tail() { hi + 1 } else { (hi + 1).div_ceil(256) * 256 };
                for d in 0..hv {
                    let col: Vec<f32> =
                        (0..padded).map(|j| if j >= lo && j <= hi { v[(j - j0) * hv + d] } else { 0.0 }).collect();
                    let pr: Vec<f32> = (0..padded).map(|j| if j >= lo && j <= hi { p[j - j0] } else { 0.0 }).collect();
                    let want = ggml_dot(order, &col, &pr);
                    assert_eq!(o[d].to_bits(), want.to_bits(), "pv {order:?} hv {hv} d {d}");
                }
            }
        }
    }

    /// The two AVX2 orders differ from each other only in how the 8 lanes are reduced: the test
    /// above would not notice if both took the same tree, this one does.
    #[test]
    fn avx2_orders_reduce_their_lanes_differently() {
        let lanes = [1e8f32, -1e8, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // one product per lane: x_e = lanes[e], y = 1
        let x: Vec<f32> = lanes.to_vec();
        let y = vec![1.0f32; 8];
        let tiny = ggml_dot(AttnOrder::Lanes8, &x, &y);
        // hsum: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
        let want = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        assert_eq!(tiny.to_bits(), want.to_bits());
        // Lanes32 needs 32 elements for its vector part: accumulator 0 holds the lanes, 1..3 zero
        let mut x32 = lanes.to_vec();
        x32.resize(32, 0.0);
        let v = ggml_dot(AttnOrder::Lanes32, &x32, &[1.0; 32]);
        let want = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        assert_eq!(v.to_bits(), want.to_bits());
        assert_ne!(tiny.to_bits(), v.to_bits(), "the example must tell the trees apart");
    }
}
