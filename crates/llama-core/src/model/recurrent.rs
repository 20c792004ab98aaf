//! The recurrent state of linear-attention layers (llama.cpp's `llama_memory_recurrent`: per
//! layer an `r` tensor, the convolution's last inputs, and an `s` tensor, the SSM / delta-rule
//! state), and the kernels that read and update it: `ssm_conv` (causal depthwise 1-D
//! convolution over the state then the batch), `gated_delta_net` (ggml's fused
//! `ggml_gated_delta_net`, the delta rule one token at a time) and `ssm_scan` (Mamba-1's
//! selective scan, ggml's `ggml_ssm_scan`). Plain loops in llama.cpp's order of
//! operations, so a prompt batch and token-by-token decoding compute the same sums.
//!
//! The state belongs to the context, beside the KV cache: it is what the layer has seen of the
//! positions 0..kv_len. Unlike the cache it cannot be cut back to an earlier position: it is
//! emptied with it (position 0) and saved and restored with it.

use crate::kernels::elementwise::{ggml_f32_tail, ggml_vec_dot_f32, softplus, with_fma};
use crate::kernels::SumOrders;

/// Per-layer state sizes, in f32 (0 for layers without a state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecurrentSize {
    /// Convolution state: [channels][d_conv - 1] (llama.cpp's `r`, `n_embd_r`).
    pub conv: usize,
    /// Delta-rule state: [n_heads][head_v][head_v] (llama.cpp's `s`, `n_embd_s`).
    pub ssm: usize,
}

/// Every layer's state of one sequence (the context holds one).
#[derive(Default)]
pub struct RecurrentState {
    pub conv: Vec<Vec<f32>>, // [n_layer][RecurrentSize::conv]
    pub ssm: Vec<Vec<f32>>,  // [n_layer][RecurrentSize::ssm]
}

impl RecurrentState {
    /// Zeroed states of the given sizes, one per layer (empty when no layer has one).
    pub fn new(sizes: &[RecurrentSize]) -> RecurrentState {
        if sizes.iter().all(|s| *s == RecurrentSize::default()) {
            return RecurrentState::default();
        }
        RecurrentState {
            conv: sizes.iter().map(|s| vec![0.0; s.conv]).collect(),
            ssm: sizes.iter().map(|s| vec![0.0; s.ssm]).collect(),
        }
    }

    /// True when some layer carries a state (the model is recurrent or hybrid).
    pub fn is_active(&self) -> bool {
        !self.conv.is_empty()
    }

    /// Back to the state before any token (llama.cpp clears the cells of a removed sequence).
    pub fn reset(&mut self) {
        self.conv.iter_mut().chain(self.ssm.iter_mut()).for_each(|v| v.fill(0.0));
    }

    /// Bytes `save` writes.
    pub fn saved_len(&self) -> usize {
        4 * self.conv.iter().chain(&self.ssm).map(Vec::len).sum::<usize>()
    }

    /// Every layer's conv then SSM state, little-endian f32.
    pub fn save(&self, out: &mut Vec<u8>) {
        for (c, s) in self.conv.iter().zip(&self.ssm) {
            c.iter().chain(s).for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }

    /// Inverse of `save`; `data.len()` must equal `saved_len()` (checked by the caller).
    pub fn load(&mut self, data: &[u8]) {
        let mut it = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for (c, s) in self.conv.iter_mut().zip(self.ssm.iter_mut()) {
            c.iter_mut().chain(s.iter_mut()).zip(&mut it).for_each(|(d, v)| *d = v);
        }
    }
}

/// `ggml_ssm_conv` over the conv state then this batch, and the state's update
/// (`build_conv_state`: the last d_conv - 1 inputs of each channel).
///
/// Channel c sees the sequence u_c = state[c][0..d_conv-1] ++ x[0..n][c]; output t of channel c is
/// Σ_i u_c[t + i] · w[c][i] summed in the order of ggml's build in `orders` (`ggml_f32_tail`),
/// and the new state is the last
/// d_conv - 1 entries of u_c. x: [n][channels], w: [channels][d_conv],
/// state: [channels][d_conv - 1], out: [n][channels]
pub fn ssm_conv(orders: SumOrders, state: &mut [f32], x: &[f32], w: &[f32], d_conv: usize, out: &mut [f32]) {
    with_fma!(ssm_conv_body(orders, state, x, w, d_conv, out))
}

#[inline(always)]
fn ssm_conv_body(orders: SumOrders, state: &mut [f32], x: &[f32], w: &[f32], d_conv: usize, out: &mut [f32]) {
    let channels = w.len() / d_conv;
    let n = x.len() / channels;
    let keep = d_conv - 1;
    let mut u = vec![0f32; keep + n]; // [keep + n] one channel's inputs
    for c in 0..channels {
        let (st, wc) = (&mut state[c * keep..(c + 1) * keep], &w[c * d_conv..(c + 1) * d_conv]);
        u[..keep].copy_from_slice(st);
        for t in 0..n {
            u[keep + t] = x[t * channels + c];
        }
        for t in 0..n {
            out[t * channels + c] = ggml_f32_tail(orders, 0.0, &u[t..t + d_conv], wc);
        }
        st.copy_from_slice(&u[n..n + keep]);
    }
}

/// Shapes of one `gated_delta_net` call.
#[derive(Clone, Copy, Debug)]
pub struct DeltaNetShape {
    /// Key heads (of q and k) and value heads; V head h uses key head h mod n_k_heads.
    pub n_k_heads: usize,
    pub n_v_heads: usize,
    /// Head size of q, k and v (llama.cpp requires them equal: S_k = S_v).
    pub head: usize,
    /// Floats between consecutive tokens' rows in q, k and v (they are views into one buffer).
    pub q_stride: usize,
    pub v_stride: usize,
}

/// ggml's fused gated delta rule (`ggml_compute_forward_gated_delta_net`, scalar gate), one token
/// at a time for each value head h, with S the head's state (stored transposed: `s[j·S + i]` is
/// S[i][j]):
///   S ← S · exp(g_t);  δ_j = (v_t[j] − Σ_i S[i][j] k_t[i]) · β_t;  S[i][j] += k_t[i] · δ_j;
///   o_t[j] = (Σ_i S[i][j] q_t[i]) / sqrt(S)
/// with the dots in `ggml_vec_dot_f32`'s order and the update as its fused multiply-adds.
/// q, k: token t's key head hk at `t·q_stride + hk·head`; v: value head h at `t·v_stride + h·head`;
/// g, beta: [n][n_v_heads]; state: [n_v_heads][head][head]; out: [n][n_v_heads·head]
#[allow(clippy::too_many_arguments)]
pub fn gated_delta_net(
    orders: SumOrders,
    sh: DeltaNetShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: &[f32],
    beta: &[f32],
    state: &mut [f32],
    out: &mut [f32],
) {
    with_fma!(delta_net_body(orders, sh, q, k, v, g, beta, state, out))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn delta_net_body(
    orders: SumOrders,
    sh: DeltaNetShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: &[f32],
    beta: &[f32],
    state: &mut [f32],
    out: &mut [f32],
) {
    let (hs, nv) = (sh.head, sh.n_v_heads);
    let n = g.len() / nv;
    let scale = 1.0 / (hs as f32).sqrt();
    let mut delta = vec![0f32; hs]; // [head]
    for (h, s) in state.chunks_exact_mut(hs * hs).enumerate() {
        let hk = h % sh.n_k_heads;
        for t in 0..n {
            let qt = &q[t * sh.q_stride + hk * hs..][..hs];
            let kt = &k[t * sh.q_stride + hk * hs..][..hs];
            let vt = &v[t * sh.v_stride + h * hs..][..hs];
            let (gt, bt) = (g[t * nv + h].exp(), beta[t * nv + h]);
            s.iter_mut().for_each(|x| *x *= gt);
            for (j, d) in delta.iter_mut().enumerate() {
                *d = (vt[j] - ggml_vec_dot_f32(orders, &s[j * hs..(j + 1) * hs], kt)) * bt;
            }
            for (row, &d) in s.chunks_exact_mut(hs).zip(&delta) {
                row.iter_mut().zip(kt).for_each(|(x, &ki)| *x = ki.mul_add(d, *x));
            }
            let o = &mut out[t * nv * hs + h * hs..][..hs];
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = ggml_vec_dot_f32(orders, &s[j * hs..(j + 1) * hs], qt) * scale;
            }
        }
    }
}

/// Shapes of one `ssm_scan` call (Mamba-1: one channel per head, head size 1).
#[derive(Clone, Copy, Debug)]
pub struct ScanShape {
    /// Channels (d_inner) and the state size per channel (d_state).
    pub d_inner: usize,
    pub d_state: usize,
    /// Floats between consecutive tokens' rows of B and C (views into one buffer).
    pub bc_stride: usize,
}

/// ggml's selective scan for Mamba-1 (`ggml_compute_forward_ssm_scan_f32` with a per-element A,
/// one group), one token at a time for each channel h, with s the channel's state [d_state]:
///   dt' = softplus(dt_t[h]);  s[i] ← s[i] · exp(dt' · A[h][i]) + B_t[i] · (x_t[h] · dt');
///   y_t[h] = Σ_i s[i] · C_t[i]
/// summed left to right in f32 as ggml's scalar loop does (no SIMD there: d_state is small and
/// `expf` sits inside the loop); both sums as the fused multiply-adds a compiler with FMA makes of
/// them. x, dt, y: [n][d_inner]; A: [d_inner][d_state]; B, C: token t at `t·bc_stride`, [d_state];
/// state: [d_inner][d_state]
#[allow(clippy::too_many_arguments)]
pub fn ssm_scan(
    sh: ScanShape,
    x: &[f32],
    dt: &[f32],
    a: &[f32],
    b: &[f32],
    c: &[f32],
    state: &mut [f32],
    y: &mut [f32],
) {
    with_fma!(ssm_scan_body(sh, x, dt, a, b, c, state, y))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ssm_scan_body(
    sh: ScanShape,
    x: &[f32],
    dt: &[f32],
    a: &[f32],
    b: &[f32],
    c: &[f32],
    state: &mut [f32],
    y: &mut [f32],
) {
    let (nr, nc) = (sh.d_inner, sh.d_state);
    let n = x.len() / nr;
    for t in 0..n {
        let (bt, ct) = (&b[t * sh.bc_stride..][..nc], &c[t * sh.bc_stride..][..nc]);
        for h in 0..nr {
            let dt_sp = softplus(dt[t * nr + h]);
            let x_dt = x[t * nr + h] * dt_sp;
            let (s, ah) = (&mut state[h * nc..(h + 1) * nc], &a[h * nc..(h + 1) * nc]);
            let mut sum = 0f32;
            for i in 0..nc {
                let st = s[i].mul_add((dt_sp * ah[i]).exp(), bt[i] * x_dt);
                sum = st.mul_add(ct[i], sum);
                s[i] = st;
            }
            y[t * nr + h] = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delta rule written from its definition (f64, S not transposed), for the kernel's
    /// outputs and state.
    fn reference(sh: DeltaNetShape, q: &[f32], k: &[f32], v: &[f32], g: &[f32], b: &[f32], s0: &[f32]) -> Vec<f64> {
        let (hs, nv) = (sh.head, sh.n_v_heads);
        let n = g.len() / nv;
        let mut out = vec![0f64; n * nv * hs];
        for h in 0..nv {
            let hk = h % sh.n_k_heads;
            // S[i][j] = s0[h][j][i]
            let mut st: Vec<Vec<f64>> =
                (0..hs).map(|i| (0..hs).map(|j| s0[h * hs * hs + j * hs + i] as f64).collect()).collect();
            for t in 0..n {
                let at = |x: &[f32], stride: usize, head: usize, i: usize| x[t * stride + head * hs + i] as f64;
                let decay = (g[t * nv + h] as f64).exp();
                st.iter_mut().flatten().for_each(|x| *x *= decay);
                let delta: Vec<f64> = (0..hs)
                    .map(|j| {
                        let sk: f64 = (0..hs).map(|i| st[i][j] * at(k, sh.q_stride, hk, i)).sum();
                        (at(v, sh.v_stride, h, j) - sk) * b[t * nv + h] as f64
                    })
                    .collect();
                for (i, row) in st.iter_mut().enumerate() {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x += at(k, sh.q_stride, hk, i) * delta[j];
                    }
                }
                for j in 0..hs {
                    let o: f64 = (0..hs).map(|i| st[i][j] * at(q, sh.q_stride, hk, i)).sum();
                    out[t * nv * hs + h * hs + j] = o / (hs as f64).sqrt();
                }
            }
        }
        out
    }

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
            .collect()
    }

    #[test]
    fn delta_net_follows_the_delta_rule_and_splits_like_one_batch() {
        for (n_k, n_v, hs) in [(2, 4, 8), (1, 1, 16), (2, 2, 40)] {
            let n = 7;
            let sh = DeltaNetShape { n_k_heads: n_k, n_v_heads: n_v, head: hs, q_stride: n_k * hs, v_stride: n_v * hs };
            let (q, k, v) = (rnd(n * n_k * hs, 1), rnd(n * n_k * hs, 2), rnd(n * n_v * hs, 3));
            let g: Vec<f32> = rnd(n * n_v, 4).iter().map(|x| -x.abs()).collect();
            let b: Vec<f32> = rnd(n * n_v, 5).iter().map(|x| x + 0.5).collect();
            let s0 = rnd(n_v * hs * hs, 6);
            let want = reference(sh, &q, &k, &v, &g, &b, &s0);
            let (mut s, mut out) = (s0.clone(), vec![0f32; n * n_v * hs]);
            gated_delta_net(SumOrders::Avx2, sh, &q, &k, &v, &g, &b, &mut s, &mut out);
            for (a, w) in out.iter().zip(&want) {
                assert!((*a as f64 - w).abs() < 1e-4, "{a} vs {w}");
            }
            // The same tokens in two calls (3 then 4): the same bits, state carried between.
            let (mut s2, mut out2) = (s0.clone(), vec![0f32; n * n_v * hs]);
            let (qs, vs) = (n_k * hs, n_v * hs);
            let (o1, o2) = out2.split_at_mut(3 * vs);
            gated_delta_net(SumOrders::Avx2, sh, &q, &k, &v, &g[..3 * n_v], &b[..3 * n_v], &mut s2, o1);
            #[rustfmt::skip]
            gated_delta_net(SumOrders::Avx2, sh, &q[3 * qs..], &k[3 * qs..], &v[3 * vs..], &g[3 * n_v..], &b[3 * n_v..], &mut s2, o2);
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                out2.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(
                s.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                s2.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn ssm_conv_is_a_causal_convolution_over_state_then_batch() {
        let (channels, d_conv, n) = (5, 4, 6);
        let x = rnd(n * channels, 7);
        let w = rnd(channels * d_conv, 8);
        let st0 = rnd(channels * (d_conv - 1), 9);
        for orders in [SumOrders::Avx2, SumOrders::Avx512] {
            let mut st = st0.clone();
            let mut out = vec![0f32; n * channels];
            ssm_conv(orders, &mut st, &x, &w, d_conv, &mut out);
            for c in 0..channels {
                let u: Vec<f32> =
                    st0[c * 3..c * 3 + 3].iter().copied().chain((0..n).map(|t| x[t * channels + c])).collect();
                for t in 0..n {
                    let want: f64 = (0..d_conv).map(|i| u[t + i] as f64 * w[c * d_conv + i] as f64).sum();
                    assert!((out[t * channels + c] as f64 - want).abs() < 1e-6);
                }
                assert_eq!(&st[c * 3..c * 3 + 3], &u[n..n + 3]);
            }
            // Token by token: the same outputs and state.
            let (mut st2, mut out2) = (st0.clone(), vec![0f32; n * channels]);
            for t in 0..n {
                let r = t * channels..(t + 1) * channels;
                ssm_conv(orders, &mut st2, &x[r.clone()], &w, d_conv, &mut out2[r]);
            }
            assert_eq!(out, out2);
            assert_eq!(st, st2);
        }
    }

    /// Mamba's selective scan written from its definition (f64), for the kernel's outputs and
    /// state; and the same tokens in two calls give the same bits.
    #[test]
    fn ssm_scan_follows_the_recurrence_and_splits_like_one_batch() {
        for (di, ds, n) in [(6, 4, 5), (3, 16, 7)] {
            let bc_stride = 3 + 2 * ds; // rows as x_db's: dt_rank 3, then B, then C
            let sh = ScanShape { d_inner: di, d_state: ds, bc_stride };
            let x = rnd(n * di, 11);
            let dt = rnd(n * di, 12).iter().map(|v| 4.0 * v).collect::<Vec<_>>();
            let a: Vec<f32> = rnd(di * ds, 13).iter().map(|v| -1.0 - 4.0 * v.abs()).collect();
            let db = rnd(n * bc_stride, 14);
            let (b, c) = (&db[3..], &db[3 + ds..]);
            let s0 = rnd(di * ds, 15);
            let (mut s, mut y) = (s0.clone(), vec![0f32; n * di]);
            ssm_scan(sh, &x, &dt, &a, b, c, &mut s, &mut y);
            let mut st: Vec<f64> = s0.iter().map(|&v| v as f64).collect();
            for t in 0..n {
                for h in 0..di {
                    let d = dt[t * di + h] as f64;
                    let sp = if d > 20.0 { d } else { d.exp().ln_1p() };
                    let mut want = 0f64;
                    for i in 0..ds {
                        let si = &mut st[h * ds + i];
                        *si = *si * (sp * a[h * ds + i] as f64).exp()
                            + b[t * bc_stride + i] as f64 * x[t * di + h] as f64 * sp;
                        want += *si * c[t * bc_stride + i] as f64;
                    }
                    let got = y[t * di + h] as f64;
                    assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "t {t} h {h}: {got} vs {want}");
                }
            }
            for (got, want) in s.iter().zip(&st) {
                assert!((*got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
            }
            let (mut s2, mut y2) = (s0.clone(), vec![0f32; n * di]);
            let (y_a, y_b) = y2.split_at_mut(2 * di);
            ssm_scan(sh, &x[..2 * di], &dt[..2 * di], &a, b, c, &mut s2, y_a);
            let k = 2 * bc_stride;
            ssm_scan(sh, &x[2 * di..], &dt[2 * di..], &a, &b[k..], &c[k..], &mut s2, y_b);
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(
                s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                s2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
