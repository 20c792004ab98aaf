//! Attention dot products in llama.cpp's summation orders (`AttnKernels::kq`, `pv`), portable: the
//! scalar table's kernels and the SIMD tables' fallback for shapes they do not vectorise.
//!
//! Without flash attention, llama.cpp computes KQ = K·Q and KQV = V·softmax(KQ) as f16 matrix
//! products, and on x86 with AVX-512 it takes one of two orders for every such dot (with f16 or
//! f32 operands alike):
//!   `Lanes16`: tinyBLAS (prompt batches, when the summed length is a multiple of 16): element e
//!     goes to lane e mod 16, each lane summed with FMA in ascending e, then the 16 lanes reduced
//!     as GCC's `_mm512_reduce_add_ps` does: v[i]+v[i+8], then +4, then (0+2)+(1+3);
//!   `Lanes64`: `ggml_vec_dot_f16` (single-token batches): element e < n & !63 goes to
//!     accumulator (e mod 64)/16, lane e mod 16, FMA in ascending e; the four combined as
//!     (a0+a2)+(a1+a3) lane-wise, reduced as above; the tail e ≥ n & !63 then added in f64.
//! Floating-point addition does not associate, so reproducing the order is what makes our logits
//! equal llama.cpp's bit for bit (and its greedy continuations equal ours).
//!
//! The kernels are portable code over `[f32; 16]` arrays; the SIMD tables compile the same source
//! with their target features (`x86::attn`), so every ISA gives the same bits. Keys sit in the lanes
//! for Q·K (key panels, `AttnKtFn`) and output dimensions for P·V, so both reductions across the
//! 16 lanes of the order become lane-wise additions of 16 vectors.

pub use super::types::AttnOrder;
use super::types::KT_LANES;

type V16 = [f32; 16];

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

/// `_mm512_reduce_add_ps` over the lane index r of `x[r]`, for 16 independent columns at once.
#[inline(always)]
fn reduce16(x: &[V16; 16]) -> V16 {
    let t8: [V16; 8] = std::array::from_fn(|i| add(&x[i + 8], &x[i]));
    let t4: [V16; 4] = std::array::from_fn(|i| add(&t8[i + 4], &t8[i]));
    add(&add(&t4[0], &t4[2]), &add(&t4[1], &t4[3]))
}

/// The 16 lane sums of one group of 16 dots, where `item(e)` is the vector of the 16 dots' e-th
/// products' factors `(x_e, s_e)` — e runs over `e0 ≤ e ≤ e1` (absolute indices: lanes and
/// accumulators are chosen by e itself); `np` is where `Lanes64`'s SIMD part ends.
#[inline(always)]
fn dots16(order: AttnOrder, e0: usize, e1: usize, np: usize, item: impl Fn(usize) -> (V16, f32)) -> V16 {
    let mut x = [[0f32; 16]; 16];
    for (r, xr) in x.iter_mut().enumerate() {
        // first e ≥ e0 with e mod 16 = r
        let mut e = e0 + (r + 16 - e0 % 16) % 16;
        match order {
            AttnOrder::Lanes16 => {
                let mut acc = [0f32; 16];
                while e <= e1 {
                    let (v, s) = item(e);
                    fma(&mut acc, &v, s);
                    e += 16;
                }
                *xr = acc;
            }
            AttnOrder::Lanes64 => {
                let mut a = [[0f32; 16]; 4];
                while e <= e1 && e < np {
                    let (v, s) = item(e);
                    fma(&mut a[(e / 16) % 4], &v, s);
                    e += 16;
                }
                *xr = add(&add(&a[0], &a[2]), &add(&a[1], &a[3]));
            }
        }
    }
    let mut s = reduce16(&x);
    if order == AttnOrder::Lanes64 && e1 + 1 > np {
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
    let np = if order == AttnOrder::Lanes64 { n & !63 } else { n };
    for i in 0..nq {
        let qi = &q[i * n..(i + 1) * n];
        for c in 0..nk.div_ceil(KT_LANES) {
            let panel = &kt[c * n * KT_LANES..(c + 1) * n * KT_LANES];
            let s = if order == AttnOrder::Lanes16 && n.is_multiple_of(16) {
                // the same sums as `dots16` with the 16 lane accumulators live at once: every
                // chunk of 16 dimensions adds one product to each (16 independent FMA chains)
                let mut acc = [[0f32; 16]; 16];
                for (rows, qc) in panel.chunks_exact(16 * KT_LANES).zip(qi.chunks_exact(16)) {
                    for r in 0..16 {
                        fma(&mut acc[r], rows[r * 16..r * 16 + 16].try_into().unwrap(), qc[r]);
                    }
                }
                reduce16(&acc)
            } else {
                dots16(order, 0, n - 1, np, |d| (panel[d * KT_LANES..(d + 1) * KT_LANES].try_into().unwrap(), qi[d]))
            };
            let cnt = (nk - c * KT_LANES).min(KT_LANES);
            out[i * os + c * KT_LANES..i * os + c * KT_LANES + cnt].copy_from_slice(&s[..cnt]);
        }
    }
}

/// `AttnPvFn`: `o[d] = Σ_{j=lo..=hi} p[j - j0] · v[(j - j0)·vs + d]` for d < n, summed over the
/// absolute key index j in `order` (`np`: the padded key count's multiple of 64 for `Lanes64`).
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
    let np = usize::MAX; // the cache is padded with p = 0 keys to a multiple of 64: no f64 tail
    for d0 in (0..n).step_by(16) {
        let w = (n - d0).min(16);
        let s = if w == 16 && order == AttnOrder::Lanes16 {
            // as `dots16`, keys in chunks of 16 from a multiple of 16, all 16 lanes live at once
            let mut acc = [[0f32; 16]; 16];
            let row = |j: usize| -> &V16 { v[(j - j0) * vs + d0..(j - j0) * vs + d0 + 16].try_into().unwrap() };
            let mut base = lo / 16 * 16;
            while base <= hi {
                if base >= lo && base + 15 <= hi {
                    let pc: &V16 = p[base - j0..base - j0 + 16].try_into().unwrap();
                    for (r, a) in acc.iter_mut().enumerate() {
                        fma(a, row(base + r), pc[r]);
                    }
                } else {
                    for (r, a) in acc.iter_mut().enumerate() {
                        let j = base + r;
                        if j >= lo && j <= hi {
                            fma(a, row(j), p[j - j0]);
                        }
                    }
                }
                base += 16;
            }
            reduce16(&acc)
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

    /// ggml's dot loops, one dot at a time: tinyBLAS and `ggml_vec_dot_f16` (AVX-512 build).
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
            AttnOrder::Lanes64 => {
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
                let mut sumf = reduce_add(&r) as f64;
                for i in np..n {
                    sumf += (x[i] * y[i]) as f64;
                }
                sumf as f32
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
        for order in [AttnOrder::Lanes16, AttnOrder::Lanes64] {
            for n in [16usize, 48, 64, 80, 128, 200, 256] {
                if order == AttnOrder::Lanes16 && n % 16 != 0 {
                    continue;
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
            for (hv, j0, lo, hi) in
                [(64usize, 0usize, 0usize, 130usize), (19, 64, 70, 200), (256, 0, 5, 5), (33, 16, 16, 80)]
            {
                let nkv = hi - j0 + 1;
                let v: Vec<f32> = (0..nkv * hv).map(|_| rnd(&mut seed)).collect();
                let p: Vec<f32> = (0..nkv).map(|_| rnd(&mut seed).abs()).collect();
                let mut o = vec![0f32; hv];
                pv_body(hv, &v, hv, j0, lo, hi, &p, &mut o, order);
                let padded = (hi + 1).div_ceil(64) * 64;
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
}
