//! `qwen35`: Qwen3.5 dense (llama.cpp's src/models/qwen35.cpp over delta-net-base.cpp). Two kinds
//! of layers, in the pattern `attention.recurrent_layers` gives (else every
//! `full_attention_interval`-th layer is attention, 3 linear : 1 full by default):
//! - gated DeltaNet (linear attention): one projection to q, k, v (`attn_qkv`) and one to the
//!   output gate z (`attn_gate`); a causal depthwise convolution over the last `ssm.conv_kernel`
//!   inputs (state kept across batches) then SiLU; q and k L2-normalized per head; the gated delta
//!   rule over a per-head state (decay exp(g), g = softplus(alpha + dt_bias)·A; write strength
//!   beta = sigmoid(…)); RMS-normed per head, times silu(z); `ssm_out`;
//! - gated full attention: Q and its output gate from one projection (per head [q | gate]), per-head
//!   RMS norms on Q and K, interleaved M-RoPE on the first `rope.dimension_count` dimensions (text
//!   positions: all sections equal, i.e. NeoX rope on those dimensions), attention, times
//!   sigmoid(gate), `attn_output`;
//!
//! each before a post-attention RMS norm and a SiLU-gated FFN, with residuals around both. The
//! converter stores every RMS weight but the DeltaNet's own `ssm_norm` as 1 + w, and A as -exp(A_log).

use super::Network;
use crate::gguf::{GgufFile, Value};
use crate::kernels::elementwise::{softplus, Rope, RopeType};
use crate::model::blocks::{self, Act, Ffn, KqParams};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::recurrent::{DeltaNetShape, RecurrentSize};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

/// llama.cpp's default `full_attention_interval`.
const FULL_ATTENTION_INTERVAL: usize = 4;

struct Qwen35 {
    /// `ssm.conv_kernel`
    d_conv: usize,
    /// `ssm.group_count` key heads, `ssm.time_step_rank` value heads, `ssm.state_size` their size
    /// (llama.cpp requires the value head size `ssm.inner_size / ssm.time_step_rank` to equal it).
    n_k_heads: usize,
    n_v_heads: usize,
    head: usize,
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] token_embd unless the file has `output.weight`
}

struct Layer {
    attn_norm: Vec<f32>, // [n_embd]
    mixer: Mixer,
    post_attention_norm: Vec<f32>, // [n_embd]
    ffn: Ffn,
}

enum Mixer {
    Linear(DeltaNet),
    Full(GatedAttn),
}

/// A gated DeltaNet layer's weights (key_dim = n_k_heads·head, value_dim = n_v_heads·head,
/// conv_dim = 2·key_dim + value_dim: q, k, v channels).
struct DeltaNet {
    wqkv: WRef,           // [conv_dim][n_embd] attn_qkv
    wqkv_gate: WRef,      // [value_dim][n_embd] attn_gate (z)
    ssm_conv1d: Vec<f32>, // [conv_dim][d_conv]
    ssm_dt: Vec<f32>,     // [n_v_heads] dt bias
    ssm_a: Vec<f32>,      // [n_v_heads] A = -exp(A_log)
    ssm_beta: WRef,       // [n_v_heads][n_embd]
    ssm_alpha: WRef,      // [n_v_heads][n_embd]
    ssm_norm: Vec<f32>,   // [head]
    ssm_out: WRef,        // [n_embd][value_dim]
}

/// A gated attention layer's weights.
struct GatedAttn {
    wq: WRef,         // [n_head·2·head_k][n_embd] per head: query then gate
    wk: WRef,         // [n_head_kv·head_k][n_embd]
    wv: WRef,         // [n_head_kv·head_v][n_embd]
    q_norm: Vec<f32>, // [head_k]
    k_norm: Vec<f32>, // [head_k]
    wo: WRef,         // [n_embd][n_head·head_v]
}

/// `Buffers::extra` of this family, by index (floats per row in `Network::extra_buffers`).
const MIX: usize = 0; // qkv_mixed [conv_dim] / Qcur_full [n_head·2·head_k]
const GATE: usize = 1; // z [value_dim] / the attention's gate [n_head·head_k]
const CONV: usize = 2; // conv_output_silu [conv_dim]
const CORE: usize = 3; // the delta rule's output [value_dim]
const BETA: usize = 4; // beta [n_v_heads]
const G: usize = 5; // gate (decay exponent) [n_v_heads]

impl Qwen35 {
    fn key_dim(&self) -> usize {
        self.n_k_heads * self.head
    }
    fn value_dim(&self) -> usize {
        self.n_v_heads * self.head
    }
    fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
}

/// A required integer metadata key.
fn req(meta: &Meta, k: &str) -> Result<usize> {
    meta.req_usize(k)
}

/// `{arch}.{k}` as an array, if present.
fn array<'a>(f: &'a GgufFile, hp: &HParams, k: &str) -> Option<&'a [Value]> {
    f.get(&format!("{}.{k}", hp.arch.name())).and_then(|v| v.as_array()).map(|(_, items)| items)
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let a = hp.arch.name();
    let d_conv = req(&meta, "ssm.conv_kernel")?;
    let d_inner = req(&meta, "ssm.inner_size")?;
    let head = req(&meta, "ssm.state_size")?;
    let n_v_heads = req(&meta, "ssm.time_step_rank")?;
    let n_k_heads = req(&meta, "ssm.group_count")?;
    if d_conv == 0 || head == 0 || n_k_heads == 0 || n_v_heads % n_k_heads != 0 || d_inner != n_v_heads * head {
        return Err(Error::Model(format!(
            "{a}: ssm.conv_kernel {d_conv}, ssm.state_size {head}, ssm.group_count {n_k_heads}, \
             ssm.time_step_rank {n_v_heads}, ssm.inner_size {d_inner} are inconsistent (need value heads a \
             multiple of key heads, inner_size = time_step_rank · state_size)"
        )));
    }
    // MTP (next-token prediction) blocks follow the trunk's; they are not run.
    let n_nextn = meta.opt_usize("nextn_predict_layers")?.unwrap_or(0);
    let n_layer = hp.n_layer.checked_sub(n_nextn).filter(|&n| n > 0).ok_or_else(|| {
        Error::Model(format!("{a}: nextn_predict_layers {n_nextn} leaves no layer of {}", hp.n_layer))
    })?;
    let recurrent: Vec<bool> = match array(f, hp, "attention.recurrent_layers") {
        Some(items) => {
            let v: Option<Vec<bool>> = items.iter().map(Value::as_bool).collect();
            match v {
                Some(v) if v.len() >= n_layer => v[..n_layer].to_vec(),
                _ => {
                    return Err(Error::Model(format!("{a}.attention.recurrent_layers must be {} booleans", hp.n_layer)))
                }
            }
        }
        None => {
            let every = meta.opt_usize("full_attention_interval")?.unwrap_or(FULL_ATTENTION_INTERVAL).max(1);
            (0..n_layer).map(|i| (i + 1) % every != 0).collect()
        }
    };
    check_sections(f, hp)?;

    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let n_embd = hp.n_embd;
    let mut net =
        Qwen35 { d_conv, n_k_heads, n_v_heads, head, tok_embd, layers: Vec::new(), output_norm: Vec::new(), output };
    let (conv_dim, value_dim) = (net.conv_dim(), net.value_dim());
    let hd = hp.n_embd_head_k;
    for (il, &recr) in recurrent.iter().enumerate() {
        let n = |s: &str| format!("blk.{il}.{s}");
        let mixer = if recr {
            Mixer::Linear(DeltaNet {
                wqkv: l.matrix(&n("attn_qkv.weight"), Some(conv_dim), n_embd)?,
                wqkv_gate: l.matrix(&n("attn_gate.weight"), Some(value_dim), n_embd)?,
                ssm_conv1d: l.small_matrix(&n("ssm_conv1d.weight"), conv_dim, d_conv)?,
                ssm_dt: l.vector(&n("ssm_dt.bias"), n_v_heads)?,
                ssm_a: l.vector(&n("ssm_a"), n_v_heads)?,
                ssm_beta: l.matrix(&n("ssm_beta.weight"), Some(n_v_heads), n_embd)?,
                ssm_alpha: l.matrix(&n("ssm_alpha.weight"), Some(n_v_heads), n_embd)?,
                ssm_norm: l.vector(&n("ssm_norm.weight"), head)?,
                ssm_out: l.matrix(&n("ssm_out.weight"), Some(n_embd), value_dim)?,
            })
        } else {
            if hp.n_embd_head_v != hd {
                return Err(Error::Model(format!("{a}: attention key and value head sizes differ")));
            }
            Mixer::Full(GatedAttn {
                wq: l.matrix(&n("attn_q.weight"), Some(hp.n_head * 2 * hd), n_embd)?,
                wk: l.matrix(&n("attn_k.weight"), Some(hp.n_embd_k_gqa()), n_embd)?,
                wv: l.matrix(&n("attn_v.weight"), Some(hp.n_embd_v_gqa()), n_embd)?,
                q_norm: l.vector(&n("attn_q_norm.weight"), hd)?,
                k_norm: l.vector(&n("attn_k_norm.weight"), hd)?,
                wo: l.matrix(&n("attn_output.weight"), Some(n_embd), hp.n_head * hd)?,
            })
        };
        net.layers.push(Layer {
            attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
            mixer,
            post_attention_norm: l.vector(&n("post_attention_norm.weight"), n_embd)?,
            ffn: Ffn::load(&l, hp, il)?,
        });
    }
    net.output_norm = l.vector("output_norm.weight", n_embd)?;
    Ok(Box::new(net))
}

/// `rope.dimension_sections` (required, as in llama.cpp): with text positions every section sees
/// the token's position, except an "extra" one, which sees 0; we support the sections (all of
/// Qwen3.5's) that leave no rotated pair to it, where M-RoPE is NeoX rope.
fn check_sections(f: &GgufFile, hp: &HParams) -> Result<()> {
    let a = hp.arch.name();
    let s: Vec<i64> = array(f, hp, "rope.dimension_sections")
        .map(|items| items.iter().filter_map(|v| v.as_int().map(|x| x as i64)).collect())
        .unwrap_or_default();
    if s.len() < 4 || s.iter().any(|&x| x < 0) || s[..4].iter().sum::<i64>() == 0 {
        return Err(Error::Model(format!("{a}.rope.dimension_sections must be 4 non-negative integers, not all 0")));
    }
    let sect_dims = s[..4].iter().sum::<i64>();
    // ggml_mrope_cache_init, interleaved (IMROPE): pair i's position by its sector
    let extra = (0..hp.n_rot as i64 / 2).any(|i| {
        let sector = i % sect_dims;
        !((sector % 3 == 1 && sector < 3 * s[1])
            || (sector % 3 == 2 && sector < 3 * s[2])
            || (sector % 3 == 0 && sector < 3 * s[0]))
    });
    if extra {
        return Err(Error::Model(format!(
            "{a}.rope.dimension_sections {:?} rotate some of the {} dimensions by the extra position (not supported)",
            &s[..4],
            hp.n_rot
        )));
    }
    Ok(())
}

impl Network for Qwen35 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let n = p.n;
        // interleaved M-RoPE with every section at the token's position: NeoX rope on n_rot dims
        let rope = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
            attn_factor: hp.rope_attn_factor,
            yarn: None,
        };
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_v as f32).sqrt(), n_swa: 0 };
        let (hs, nk, nv) = (self.head, self.n_k_heads, self.n_v_heads);
        let (key_dim, value_dim, conv_dim) = (self.key_dim(), self.value_dim(), self.conv_dim());
        let (hd, n_head) = (hp.n_embd_head_k, hp.n_head);
        let [mix, gate, conv, core, beta, g] = &mut b.extra[..] else { unreachable!("extra_buffers has six") };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            match &l.mixer {
                Mixer::Linear(d) => {
                    // linear_attn_qkv_mixed = cur · wqkvᵀ, z = cur · wqkv_gateᵀ
                    //                                  mix: [n][conv_dim], gate: [n][value_dim]
                    p.matmul(&d.wqkv, &b.cur, mix);
                    p.matmul(&d.wqkv_gate, &b.cur, gate);
                    // beta_sigmoid = sigmoid(cur · ssm_betaᵀ)              beta: [n][n_v_heads]
                    p.matmul(&d.ssm_beta, &b.cur, beta);
                    p.sigmoid(beta, nv);
                    // gate = softplus(cur · ssm_alphaᵀ + ssm_dt) · ssm_a    g: [n][n_v_heads]
                    p.matmul(&d.ssm_alpha, &b.cur, g);
                    for row in g[..n * nv].chunks_exact_mut(nv) {
                        for (h, x) in row.iter_mut().enumerate() {
                            *x = softplus(*x + d.ssm_dt[h]) * d.ssm_a[h];
                        }
                    }
                    // conv_output_silu = silu(ssm_conv(conv_states ++ qkv_mixed)); the conv state
                    // keeps the last d_conv - 1 inputs                     conv: [n][conv_dim]
                    p.ssm_conv(il, &d.ssm_conv1d, self.d_conv, mix, conv);
                    p.silu(conv, conv_dim, conv_dim);
                    // q_conv, k_conv L2-normalized per head (each row: q heads, k heads, v heads)
                    for row in conv[..n * conv_dim].chunks_exact_mut(conv_dim) {
                        crate::kernels::elementwise::l2_norm_rows(&mut row[..2 * key_dim], hs, hp.rms_eps);
                    }
                    // attn_output: the gated delta rule over the layer's state  core: [n][value_dim]
                    let sh = DeltaNetShape {
                        n_k_heads: nk,
                        n_v_heads: nv,
                        head: hs,
                        q_stride: conv_dim,
                        v_stride: conv_dim,
                    };
                    p.delta_net(il, sh, conv, &conv[key_dim..], &conv[2 * key_dim..], g, beta, core);
                    // attn_out_norm = rms_norm(core) · ssm_norm · silu(z), per head
                    p.norm_heads(&d.ssm_norm, core, nv);
                    p.silu(gate, value_dim, hs);
                    p.mul(core, gate, value_dim);
                    // linear_attn_out = final_output · ssm_outᵀ              proj: [n][n_embd]
                    p.matmul(&d.ssm_out, core, &mut b.proj);
                }
                Mixer::Full(a) => {
                    // Qcur_full = cur · wqᵀ (per head: query, gate), Kcur, Vcur
                    //                           mix: [n][n_head·2·hd], k, v: [n][n_head_kv·hd]
                    p.matmul(&a.wq, &b.cur, mix);
                    p.matmul(&a.wk, &b.cur, &mut b.k);
                    p.matmul(&a.wv, &b.cur, &mut b.v);
                    // Qcur and gate_reshaped split out      q: [n][n_head·hd], gate: [n][n_head·hd]
                    for t in 0..n {
                        for h in 0..n_head {
                            let src = &mix[(t * n_head + h) * 2 * hd..][..2 * hd];
                            let dst = (t * n_head + h) * hd;
                            b.q[dst..dst + hd].copy_from_slice(&src[..hd]);
                            gate[dst..dst + hd].copy_from_slice(&src[hd..]);
                        }
                    }
                    // Qcur_normed, Kcur_normed
                    p.norm_heads(&a.q_norm, &mut b.q, n_head);
                    p.norm_heads(&a.k_norm, &mut b.k, hp.n_head_kv);
                    // rope (M-RoPE, text positions) on the first n_rot dimensions of each head
                    p.rope(&rope, &mut b.q, &mut b.k);
                    // attn_pregate: attention over the cache            kqv: [n][n_head·hd]
                    p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
                    // attn_gated = attn_pregate · sigmoid(gate), attn_output   proj: [n][n_embd]
                    p.sigmoid(gate, n_head * hd);
                    p.mul(&mut b.kqv, gate, n_head * hd);
                    p.matmul(&a.wo, &b.kqv, &mut b.proj);
                }
            }
            // attn_residual = attn_out + inpL                            x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // attn_post_norm                                           cur: [n][n_embd]
            p.norm(&l.post_attention_norm, &b.x, &mut b.cur);
            // ffn_out = ffn_down(silu(ffn_gate) ⊙ ffn_up)   gate, up: [n][n_ff], proj: [n][n_embd]
            p.ffn(&l.ffn, Act::Silu, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
            // post_ffn = ffn_out + attn_residual: the next layer's inpL   x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output                               logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.output, None, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        let mut v = Vec::new();
        for l in &self.layers {
            match &l.mixer {
                Mixer::Linear(d) => v.extend([d.wqkv, d.wqkv_gate, d.ssm_beta, d.ssm_alpha, d.ssm_out]),
                Mixer::Full(a) => v.extend([a.wq, a.wk, a.wv, a.wo]),
            }
            v.extend(l.ffn.matrices());
        }
        v.push(self.output);
        v
    }

    fn max_n_ff(&self) -> usize {
        blocks::max_n_ff(self.layers.iter().map(|l| &l.ffn))
    }

    fn recurrent_sizes(&self) -> Vec<RecurrentSize> {
        let linear =
            RecurrentSize { conv: self.conv_dim() * (self.d_conv - 1), ssm: self.n_v_heads * self.head * self.head };
        self.layers
            .iter()
            .map(|l| match l.mixer {
                Mixer::Linear(_) => linear,
                Mixer::Full(_) => RecurrentSize::default(),
            })
            .collect()
    }

    fn extra_buffers(&self) -> Vec<usize> {
        let q_full = self.layers.iter().find_map(|l| match &l.mixer {
            Mixer::Full(a) => Some((a.wq.rows, a.wo.cols)),
            Mixer::Linear(_) => None,
        });
        let (q_full, attn_out) = q_full.unwrap_or((0, 0));
        let mut v = vec![0; 6];
        v[MIX] = self.conv_dim().max(q_full);
        v[GATE] = self.value_dim().max(attn_out);
        v[CONV] = self.conv_dim();
        v[CORE] = self.value_dim();
        v[BETA] = self.n_v_heads;
        v[G] = self.n_v_heads;
        v
    }
}
