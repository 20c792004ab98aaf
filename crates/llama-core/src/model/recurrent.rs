//! The recurrent state of linear-attention layers (llama.cpp's `llama_memory_recurrent`: per
//! layer an `r` tensor, the convolution's last inputs, and an `s` tensor, the SSM / delta-rule
//! state), and the two kernels that read and update it: `ssm_conv` (causal depthwise 1-D
//! convolution over the state then the batch) and `gated_delta_net` (ggml's fused
//! `ggml_gated_delta_net`, the delta rule one token at a time). Plain loops in llama.cpp's order of
//! operations, so a prompt batch and token-by-token decoding compute the same sums.
//!
//! The state belongs to the context, beside the KV cache: it is what the layer has seen of the
//! positions 0..kv_len. Unlike the cache it cannot be cut back to an earlier position: it is
//! emptied with it (position 0) and saved and restored with it.

use crate::kernels::elementwise::{ggml_f32_tail, ggml_vec_dot_f32, with_fma};
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
/// Σ_i u_c[t + i] · w[c][i] summed in ggml's order (`ggml_f32_tail`), and the new state is the last
/// d_conv - 1 entries of u_c. x: [n][channels], w: [channels][d_conv],
/// state: [channels][d_conv - 1], out: [n][channels]
pub fn ssm_conv(state: &mut [f32], x: &[f32], w: &[f32], d_conv: usize, out: &mut [f32]) {
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
            out[t * channels + c] = ggml_f32_tail(0.0, &u[t..t + d_conv], wc);
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
        let mut st = st0.clone();
        let mut out = vec![0f32; n * channels];
        ssm_conv(&mut st, &x, &w, d_conv, &mut out);
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
            ssm_conv(
                &mut st2,
                &x[t * channels..(t + 1) * channels],
                &w,
                d_conv,
                &mut out2[t * channels..(t + 1) * channels],
            );
        }
        assert_eq!(out, out2);
        assert_eq!(st, st2);
    }
}
