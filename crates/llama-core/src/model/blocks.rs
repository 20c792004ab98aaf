//! The stages the families' forwards are written with, under llama.cpp's names (llama-graph.cpp's
//! `build_norm`, `build_attn`, `build_ffn`; the `cb(cur, "…", il)` names of src/models/*.cpp):
//! `inp_embd`, `norm` (attn_norm, ffn_norm, post norms), `qkv` (Qcur/Kcur/Vcur with optional bias
//! and per-head q/k norm; `qkv_fused` from one `wqkv`), `rope` (normal or NeoX, as the `Rope`
//! says), `attn` (kqv_out; `attn_capped` with soft-capped scores), `matmul` (attn_out …), `add`
//! (ffn_inp, l_out), gated `ffn` (SiLU or GELU; `ffn_fused` with gate and up in one `ffn_up`),
//! `output` (result_norm, result_output).
//!
//! A [`Pass`] is one batch of `n` tokens, grouped by sequence (each row with its position and
//! cache cell, `context::BatchPlan`): it holds what the stages
//! share (the model's tensors, the thread pool, matmul and attention scratch, the KV cache, the
//! logits) while the family's forward names the activation buffers (`Buffers`, sized for n_batch
//! rows; every stage uses their first `n` rows). Stages write into the buffers they are given:
//! nothing here allocates or copies an activation.

use std::sync::Mutex;

use super::attention::{attention_groups, AttnGroup, AttnScratch, AttnShape, Keys};
use super::context::{BatchPlan, Buffers, Context, MoeScratch, RopeAngles};
use super::flash_attn::{flash_attention_groups, FaCache};
use super::hparams::HParams;
use super::kv_cache::{KvCache, KvStore};
use super::recurrent::{self, DeltaNetShape, RecurrentState, ScanShape};
use super::weights::{Experts, Loader, WRef};
use super::Model;
use crate::kernels::elementwise::{self, Rope};
use crate::kernels::{
    kernels, matmul, matmul_id, matvec_many, parallel, IdRoutes, MatmulScratch, QTensor, ThreadPool, KT_LANES,
};
use crate::quant::dequantize_row;
use crate::{Error, Result};

/// One batch through the network: the context's shared state, borrowed for the forward.
pub(super) struct Pass<'a> {
    m: &'a Model,
    pub hp: &'a HParams,
    pool: &'a ThreadPool,
    mm: &'a mut MatmulScratch,
    rope_angles: &'a mut RopeAngles,
    attn: &'a [Mutex<AttnScratch>],
    kv: &'a mut KvCache,
    flash_attn: bool,
    /// The linear-attention layers' state (empty for attention-only families).
    pub rs: &'a mut RecurrentState,
    logits: &'a mut [f32],
    /// Embeddings mode: the output rows' hidden states go here ([n_out][n_embd]) instead of
    /// through the output matrix.
    embd: Option<&'a mut [f32]>,
    /// Tokens in this batch.
    pub n: usize,
    /// Each row's position and cell, the sequence groups, the rows to output.
    plan: &'a BatchPlan,
}

/// Splits the context into the pass (shared state) and the activation buffers it fills.
pub(super) fn begin<'a>(m: &'a Model, c: &'a mut Context, n: usize) -> (Pass<'a>, &'a mut Buffers) {
    c.rope_angles.start_forward();
    c.mm.start_forward();
    let pass = Pass {
        m,
        hp: m.hparams(),
        pool: &c.pool,
        mm: &mut c.mm,
        rope_angles: &mut c.rope_angles,
        attn: &c.attn,
        kv: &mut c.kv,
        flash_attn: c.flash_attn,
        rs: &mut c.rs,
        logits: &mut c.logits,
        embd: if c.embeddings { Some(&mut c.embd) } else { None },
        n,
        plan: &c.plan,
    };
    (pass, &mut c.buf)
}

/// A layer's self-attention weights (llama.cpp's `wq`, `wk`, `wv`, `bq`, `bk`, `bv`,
/// `attn_q_norm`, `attn_k_norm`, `wo`), for `qkv` and the output projection.
pub(super) struct Attn {
    pub wq: WRef, // [n_head·head_k][n_embd]
    pub wk: WRef, // [n_head_kv·head_k][n_embd]
    pub wv: WRef, // [n_head_kv·head_v][n_embd]
    /// bq, bk, bv ([n_head·head_k], [n_head_kv·head_k], [n_head_kv·head_v]), when the
    /// family's projections have biases.
    pub bias: Option<[Vec<f32>; 3]>,
    /// attn_q_norm, attn_k_norm ([head_k], applied to every head), when the family normalizes
    /// Q and K per head.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    pub wo: WRef, // [n_embd][n_head·head_v]
}

/// Which optional attention tensors a family has.
#[derive(Clone, Copy)]
pub(super) struct AttnOpts {
    /// `attn_{q,k,v}.bias`.
    pub bias: bool,
    /// `attn_{q,k}_norm.weight`: an RMS norm over each head's q and k.
    pub qk_norm: bool,
}

impl Attn {
    /// Layer `il`'s `attn_*` tensors, shapes checked against the hyper-parameters.
    pub fn load(l: &Loader, hp: &HParams, il: usize, opts: AttnOpts) -> Result<Attn> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let n_embd = hp.n_embd;
        let (q_rows, k_rows, v_rows) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        let bias = if opts.bias {
            Some([
                l.vector(&n("attn_q.bias"), q_rows)?,
                l.vector(&n("attn_k.bias"), k_rows)?,
                l.vector(&n("attn_v.bias"), v_rows)?,
            ])
        } else {
            None
        };
        let qk_norm = if opts.qk_norm {
            Some([
                l.vector(&n("attn_q_norm.weight"), hp.n_embd_head_k)?,
                l.vector(&n("attn_k_norm.weight"), hp.n_embd_head_k)?,
            ])
        } else {
            None
        };
        Ok(Attn {
            wq: l.matrix(&n("attn_q.weight"), Some(q_rows), n_embd)?,
            wk: l.matrix(&n("attn_k.weight"), Some(k_rows), n_embd)?,
            wv: l.matrix(&n("attn_v.weight"), Some(v_rows), n_embd)?,
            bias,
            qk_norm,
            wo: l.matrix(&n("attn_output.weight"), Some(n_embd), hp.n_head * hp.n_embd_head_v)?,
        })
    }

    pub fn matrices(&self) -> [WRef; 4] {
        [self.wq, self.wk, self.wv, self.wo]
    }
}

/// What some families add to attention's scores (`Pass::attn_with`); the default adds nothing.
#[derive(Clone, Copy, Default)]
pub(super) struct AttnExtra<'w> {
    /// Soft-cap of the scores (`attn_logit_softcapping`).
    pub softcap: Option<f32>,
    /// Per-head sink logits (`attn_sinks`: [n_head]).
    pub sinks: Option<&'w [f32]>,
}

/// Attention parameters that vary by family and layer.
#[derive(Clone, Copy)]
pub(super) struct KqParams {
    /// Multiplier of Q·K (1/sqrt(head_k) unless the family scales Q itself).
    pub kq_scale: f32,
    /// Sliding window in positions (0 = every earlier position).
    pub n_swa: usize,
}

/// A gated feed-forward's weights (llama.cpp's `build_ffn` with `LLM_FFN_PAR`).
pub(super) struct Ffn {
    pub gate: WRef, // [n_ff][n_embd]
    pub up: WRef,   // [n_ff][n_embd]
    pub down: WRef, // [n_embd][n_ff]
}

impl Ffn {
    /// Layer `il`'s `ffn_gate`, `ffn_up`, `ffn_down`; n_ff is what the tensors say (layers may
    /// differ).
    pub fn load(l: &Loader, hp: &HParams, il: usize) -> Result<Ffn> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let gate = l.matrix(&n("ffn_gate.weight"), None, hp.n_embd)?;
        let n_ff = gate.rows;
        Ok(Ffn {
            gate,
            up: l.matrix(&n("ffn_up.weight"), Some(n_ff), hp.n_embd)?,
            down: l.matrix(&n("ffn_down.weight"), Some(hp.n_embd), n_ff)?,
        })
    }

    pub fn matrices(&self) -> [WRef; 3] {
        [self.gate, self.up, self.down]
    }
}

/// A mixture-of-experts feed-forward's weights (llama.cpp's `build_moe_ffn`): the router
/// `ffn_gate_inp` and the experts' `ffn_{gate,up,down}_exps`, with how the family routes and
/// activates them.
pub(super) struct Moe {
    pub gate_inp: WRef, // [n_expert][n_embd]
    /// An F32 router as key panels (`AttnKtFn` layout, [n_expert/16][n_embd][16]), so its
    /// products sum in llama.cpp's F32 orders (tinyBLAS for batches, `ggml_vec_dot_f32` for one
    /// token: the attention dots' orders), when n_embd is a multiple of their steps.
    pub gate_inp_kt: Option<Vec<f32>>,
    pub gate_exps: Experts, // [n_expert][n_ff_exp][n_embd]
    pub up_exps: Experts,   // [n_expert][n_ff_exp][n_embd]
    pub down_exps: Experts, // [n_expert][n_embd][n_ff_exp]
    /// The router's and the experts' biases, when the family has them.
    pub bias: Option<MoeBias>,
    pub opts: MoeOpts,
}

/// `ffn_gate_inp.bias`, `ffn_{gate,up,down}_exps.bias`.
pub(super) struct MoeBias {
    pub gate_inp: Vec<f32>,  // [n_expert]
    pub gate_exps: Vec<f32>, // [n_expert][n_ff_exp]
    pub up_exps: Vec<f32>,   // [n_expert][n_ff_exp]
    pub down_exps: Vec<f32>, // [n_expert][n_embd]
}

/// How a family's mixture of experts routes and activates.
#[derive(Clone, Copy)]
pub(super) struct MoeOpts {
    /// Router and experts have biases (`MoeBias`).
    pub bias: bool,
    pub gating: Gating,
    pub act: MoeAct,
}

/// How the router's logits become the chosen experts and their weights (llama.cpp's
/// `llama_expert_gating_func_type` with `norm_w`).
#[derive(Clone, Copy)]
pub(super) enum Gating {
    /// Softmax over every expert, the most probable ones, their probabilities divided by their
    /// sum (llama.cpp's `LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX` with norm_w).
    SoftmaxNorm,
    /// The experts of largest logit, softmax over their logits (`SOFTMAX_WEIGHT`).
    SoftmaxWeight,
}

/// The experts' gated activation.
#[derive(Clone, Copy)]
pub(super) enum MoeAct {
    /// `silu(gate) · up` (LLM_FFN_SILU).
    Silu,
    /// The clamped `x·σ(alpha·x) · (y + 1)` (LLM_FFN_SWIGLU_OAI_MOE; `elementwise::swiglu_oai`).
    SwigluOai { alpha: f32, limit: f32 },
}

impl Moe {
    /// Layer `il`'s router and expert tensors; n_ff_exp is what the tensors say. Softmax gating
    /// with normalized weights, SiLU experts, no biases.
    pub fn load(l: &Loader, hp: &HParams, il: usize, n_expert: usize) -> Result<Moe> {
        let opts = MoeOpts { bias: false, gating: Gating::SoftmaxNorm, act: MoeAct::Silu };
        Moe::load_opts(l, hp, il, n_expert, opts)
    }

    /// `load` with the family's routing, activation and biases.
    pub fn load_opts(l: &Loader, hp: &HParams, il: usize, n_expert: usize, opts: MoeOpts) -> Result<Moe> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let gate_exps = l.experts(&n("ffn_gate_exps.weight"), n_expert, None, hp.n_embd)?;
        let n_ff = gate_exps.rows;
        let bias = if opts.bias {
            Some(MoeBias {
                gate_inp: l.vector(&n("ffn_gate_inp.bias"), n_expert)?,
                gate_exps: l.vectors(&n("ffn_gate_exps.bias"), n_expert, n_ff)?,
                up_exps: l.vectors(&n("ffn_up_exps.bias"), n_expert, n_ff)?,
                down_exps: l.vectors(&n("ffn_down_exps.bias"), n_expert, hp.n_embd)?,
            })
        } else {
            None
        };
        let gate_inp = l.matrix(&n("ffn_gate_inp.weight"), Some(n_expert), hp.n_embd)?;
        let gate_inp_kt = match l.f32_matrix(&gate_inp)? {
            Some(w) if hp.n_embd.is_multiple_of(32) => {
                let mut kt = vec![0.0; n_expert.div_ceil(KT_LANES) * KT_LANES * hp.n_embd];
                (kernels().attn.kt_f32)(hp.n_embd, &w, hp.n_embd, n_expert, &mut kt);
                Some(kt)
            }
            _ => None,
        };
        Ok(Moe {
            gate_inp,
            gate_inp_kt,
            gate_exps,
            up_exps: l.experts(&n("ffn_up_exps.weight"), n_expert, Some(n_ff), hp.n_embd)?,
            down_exps: l.experts(&n("ffn_down_exps.weight"), n_expert, Some(hp.n_embd), n_ff)?,
            bias,
            opts,
        })
    }

    /// The router and every expert's matrices.
    pub fn matrices(&self) -> impl Iterator<Item = WRef> + '_ {
        let exps = [&self.gate_exps, &self.up_exps, &self.down_exps];
        std::iter::once(self.gate_inp).chain(exps.into_iter().flat_map(|e| e.matrices()))
    }
}

/// The pre-norm transformer layer (llama.cpp's `attn_norm`, attention, `ffn_norm`, gated FFN);
/// the families that use it differ in `Attn`'s optional tensors and in rope.
pub(super) struct DenseLayer {
    pub attn_norm: Vec<f32>, // [n_embd]
    pub attn: Attn,
    pub ffn_norm: Vec<f32>, // [n_embd]
    pub ffn: Ffn,
}

impl DenseLayer {
    pub fn load(l: &Loader, hp: &HParams, il: usize, opts: AttnOpts) -> Result<DenseLayer> {
        Ok(DenseLayer {
            attn_norm: l.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
            attn: Attn::load(l, hp, il, opts)?,
            ffn_norm: l.vector(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
            ffn: Ffn::load(l, hp, il)?,
        })
    }
}

/// The "sandwich" layer: RMS norms before *and after* attention and the FFN
/// (llama.cpp's `attn_norm`, `attn_post_norm`, `ffn_norm`, `ffn_post_norm`), GELU-gated FFN.
pub(super) struct SandwichLayer {
    pub attn_norm: Vec<f32>, // [n_embd]
    pub attn: Attn,
    pub post_attention_norm: Vec<f32>, // [n_embd]
    pub ffn_norm: Vec<f32>,            // [n_embd]
    pub ffn: Ffn,
    pub post_ffw_norm: Vec<f32>, // [n_embd]
}

impl SandwichLayer {
    pub fn load(l: &Loader, hp: &HParams, il: usize, opts: AttnOpts) -> Result<SandwichLayer> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let n_embd = hp.n_embd;
        Ok(SandwichLayer {
            attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
            attn: Attn::load(l, hp, il, opts)?,
            post_attention_norm: l.vector(&n("post_attention_norm.weight"), n_embd)?,
            ffn_norm: l.vector(&n("ffn_norm.weight"), n_embd)?,
            ffn: Ffn::load(l, hp, il)?,
            post_ffw_norm: l.vector(&n("post_ffw_norm.weight"), n_embd)?,
        })
    }
}

/// Self-attention with one fused projection (llama.cpp's `wqkv`: Q, K and V rows stacked), for
/// `qkv_fused` and the output projection.
pub(super) struct AttnFused {
    pub wqkv: WRef, // [n_head·head_k + n_head_kv·head_k + n_head_kv·head_v][n_embd]
    /// [wqkv.rows] `attn_qkv.bias`, when the checkpoint has one (llama.cpp loads it optionally).
    pub bqkv: Option<Vec<f32>>,
    pub wo: WRef, // [n_embd][n_head·head_v]
}

impl AttnFused {
    /// Layer `il`'s `attn_qkv` and `attn_output`.
    pub fn load(l: &Loader, hp: &HParams, il: usize) -> Result<AttnFused> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let rows = hp.n_head * hp.n_embd_head_k + hp.n_embd_k_gqa() + hp.n_embd_v_gqa();
        Ok(AttnFused {
            wqkv: l.matrix(&n("attn_qkv.weight"), Some(rows), hp.n_embd)?,
            bqkv: l.opt_vector(&n("attn_qkv.bias"), rows)?,
            wo: l.matrix(&n("attn_output.weight"), Some(hp.n_embd), hp.n_head * hp.n_embd_head_v)?,
        })
    }
}

/// A feed-forward whose gate and up projections are one matrix (llama.cpp's `build_ffn` with
/// `ffn_up` only and `LLM_FFN_SWIGLU`: the first n_ff rows are the gate's, the next n_ff the up's).
pub(super) struct FfnFused {
    pub up: WRef,   // [2·n_ff][n_embd]
    pub down: WRef, // [n_embd][n_ff]
}

impl FfnFused {
    /// Layer `il`'s `ffn_up` (2·n_ff rows) and `ffn_down`; n_ff is what the tensors say.
    pub fn load(l: &Loader, hp: &HParams, il: usize) -> Result<FfnFused> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let up = l.matrix(&n("ffn_up.weight"), None, hp.n_embd)?;
        if !up.rows.is_multiple_of(2) {
            return Err(Error::Model(format!(
                "tensor {} has {} rows: not gate and up halves",
                n("ffn_up.weight"),
                up.rows
            )));
        }
        Ok(FfnFused { up, down: l.matrix(&n("ffn_down.weight"), Some(hp.n_embd), up.rows / 2)? })
    }
}

/// The token embedding and the output matrix (`output.weight`, or the embedding when tied).
/// token_embd: [n_vocab][n_embd], output: [n_vocab][n_embd]
pub(super) fn load_embd_output(l: &Loader, hp: &HParams) -> Result<(WRef, WRef)> {
    let tok_embd = l.matrix("token_embd.weight", None, hp.n_embd)?;
    let output = l.opt_matrix("output.weight", Some(tok_embd.rows), hp.n_embd)?.unwrap_or(tok_embd);
    Ok((tok_embd, output))
}

/// Every attention and FFN matrix of the layers, then the output matrix: `Network::matrices`.
pub(super) fn dense_matrices<'a>(layers: impl Iterator<Item = (&'a Attn, &'a Ffn)>, output: WRef) -> Vec<WRef> {
    let mut v: Vec<WRef> = layers.flat_map(|(a, f)| a.matrices().into_iter().chain(f.matrices())).collect();
    v.push(output);
    v
}

/// The widest FFN of the layers: `Network::max_n_ff`.
pub(super) fn max_n_ff<'a>(ffns: impl Iterator<Item = &'a Ffn>) -> usize {
    ffns.map(|f| f.gate.rows).max().unwrap_or(0)
}

/// A LayerNorm's weight and bias ([n] each).
pub(super) struct LayerNorm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl LayerNorm {
    /// `{name}.weight` and `{name}.bias`, [n] each.
    pub fn load(l: &Loader, name: &str, n: usize) -> Result<LayerNorm> {
        Ok(LayerNorm { w: l.vector(&format!("{name}.weight"), n)?, b: l.vector(&format!("{name}.bias"), n)? })
    }
}

/// A projection with a bias: `{name}.weight` [rows][cols], `{name}.bias` [rows].
pub(super) struct Linear {
    pub w: WRef,
    pub b: Vec<f32>,
}

impl Linear {
    pub fn load(l: &Loader, name: &str, rows: Option<usize>, cols: usize) -> Result<Linear> {
        let w = l.matrix(&format!("{name}.weight"), rows, cols)?;
        Ok(Linear { b: l.vector(&format!("{name}.bias"), w.rows)?, w })
    }
}

/// The gate's activation: `LLM_FFN_SILU` (SwiGLU) or `LLM_FFN_GELU` (GeGLU, tanh approximation).
#[derive(Clone, Copy)]
pub(super) enum Act {
    Silu,
    Gelu,
}

impl Pass<'_> {
    /// inp_embd: `x[t] = token_embd[tokens[t]]` (ggml get_rows: dequantized to f32).
    /// x: [n][n_embd]
    pub fn inp_embd(&self, tok_embd: &WRef, tokens: &[u32], x: &mut [f32]) {
        let w = self.m.qt(tok_embd);
        let row_bytes = w.data.len() / w.rows;
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            dequantize_row(
                w.ggml_type,
                &w.data[id * row_bytes..(id + 1) * row_bytes],
                &mut x[t * w.cols..(t + 1) * w.cols],
            )
            .expect("embedding type validated at load");
        }
    }

    /// `dst = rms_norm(src) · w`, rows of `w.len()` (attn_norm, ffn_norm).
    pub fn norm(&self, w: &[f32], src: &[f32], dst: &mut [f32]) {
        let len = self.n * w.len();
        parallel::rms_norm(self.pool, &mut dst[..len], &src[..len], w, self.hp.rms_eps);
    }

    /// `x = rms_norm(x) · w` in place, rows of `w.len()` (post norms: attn_post_norm,
    /// ffn_post_norm).
    pub fn norm_inplace(&self, w: &[f32], x: &mut [f32]) {
        parallel::rms_norm_inplace(self.pool, &mut x[..self.n * w.len()], w, self.hp.rms_eps);
    }

    /// Per-head RMS norm in place: `heads` rows of `w.len()` per token (Qcur_normed, Kcur_normed,
    /// a gated norm's heads). x: [n][heads·w.len()]
    pub fn norm_heads(&self, w: &[f32], x: &mut [f32], heads: usize) {
        parallel::rms_norm_inplace(self.pool, &mut x[..self.n * heads * w.len()], w, self.hp.rms_eps);
    }

    /// `x *= y` elementwise on `n` rows of `row` values (gating).
    pub fn mul(&self, x: &mut [f32], y: &[f32], row: usize) {
        let len = self.n * row;
        x[..len].iter_mut().zip(&y[..len]).for_each(|(a, &b)| *a *= b);
    }

    /// `ggml_sigmoid` in place on `n` rows of `row` values.
    pub fn sigmoid(&self, x: &mut [f32], row: usize) {
        elementwise::sigmoid_inplace(&mut x[..self.n * row]);
    }

    /// `ggml_silu` in place on `n` rows of `row` values, rows of `unit` (the tensor's ne0, which
    /// decides where ggml's vector exp stops).
    pub fn silu(&self, x: &mut [f32], row: usize, unit: usize) {
        elementwise::silu_rows(&mut x[..self.n * row], unit, kernels().orders);
    }

    /// `gate = silu(gate) · up` (ggml_swiglu_split) on `n` rows of `row` values.
    pub fn swiglu(&self, gate: &mut [f32], up: &[f32], row: usize) {
        let len = self.n * row;
        parallel::swiglu_inplace(self.pool, &mut gate[..len], &up[..len], row);
    }

    /// ssm_conv with the conv state of layer `il`: each channel's causal convolution over the
    /// state then this batch (`recurrent::ssm_conv`); the state keeps the last d_conv - 1 inputs.
    /// x: [n][channels], w: [channels][d_conv] → out: [n][channels]
    pub fn ssm_conv(&mut self, il: usize, w: &[f32], d_conv: usize, x: &[f32], out: &mut [f32]) {
        let channels = w.len() / d_conv;
        let len = self.n * channels;
        recurrent::ssm_conv(kernels().orders, &mut self.rs.conv[il], &x[..len], w, d_conv, &mut out[..len]);
    }

    /// The gated delta rule with the state of layer `il` (`recurrent::gated_delta_net`, ggml's
    /// fused `ggml_gated_delta_net`). q, k: rows of `sh.q_stride`, v: of `sh.v_stride`,
    /// g, beta: [n][n_v_heads] → out: [n][n_v_heads·head]
    #[allow(clippy::too_many_arguments)]
    pub fn delta_net(
        &mut self,
        il: usize,
        sh: DeltaNetShape,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        beta: &[f32],
        out: &mut [f32],
    ) {
        let (n, nv) = (self.n, sh.n_v_heads);
        let (g, beta, out) = (&g[..n * nv], &beta[..n * nv], &mut out[..n * nv * sh.head]);
        recurrent::gated_delta_net(kernels().orders, sh, q, k, v, g, beta, &mut self.rs.ssm[il], out);
    }

    /// Mamba-1's selective scan with the SSM state of layer `il` (`recurrent::ssm_scan`).
    /// x, dt: [n][d_inner], A: [d_inner][d_state], B, C: rows of `sh.bc_stride` → y: [n][d_inner]
    #[allow(clippy::too_many_arguments)]
    pub fn ssm_scan(
        &mut self,
        il: usize,
        sh: ScanShape,
        x: &[f32],
        dt: &[f32],
        a: &[f32],
        b: &[f32],
        c: &[f32],
        y: &mut [f32],
    ) {
        let len = self.n * sh.d_inner;
        recurrent::ssm_scan(sh, &x[..len], &dt[..len], a, b, c, &mut self.rs.ssm[il], &mut y[..len]);
    }

    /// `out = x · wᵀ`. x: [n][w.cols], out: [n][w.rows]
    pub fn matmul(&mut self, w: &WRef, x: &[f32], out: &mut [f32]) {
        let n = self.n;
        matmul(self.pool, &self.m.qt(w), &x[..n * w.cols], n, &mut out[..n * w.rows], self.mm);
    }

    /// `outs[i] = x · ws[i]ᵀ` for matrices reading the same input; one token goes through them as
    /// one pool job (`matvec_many`), a batch matrix by matrix. x: [n][cols], outs[i]: [n][ws[i].rows]
    fn matmuls<const N: usize>(&mut self, ws: [&WRef; N], x: &[f32], outs: [&mut [f32]; N]) {
        if self.n != 1 {
            for (w, out) in ws.into_iter().zip(outs) {
                self.matmul(w, x, out);
            }
            return;
        }
        let qts = ws.map(|w| self.m.qt(w));
        let mut outs: [&mut [f32]; N] = {
            let mut i = 0;
            outs.map(|o| {
                let rows = ws[i].rows;
                i += 1;
                &mut o[..rows]
            })
        };
        if let Err(e) = matvec_many(kernels(), self.pool, &qts, &x[..ws[0].cols], &mut outs, self.mm) {
            panic!("{e}");
        }
    }

    /// `x += y` on rows of n_embd: the residual adds (ffn_inp, l_out).
    pub fn add(&self, x: &mut [f32], y: &[f32]) {
        let (len, row) = (self.n * self.hp.n_embd, self.hp.n_embd);
        parallel::add_inplace(self.pool, &mut x[..len], &y[..len], row);
    }

    /// `x += b` on `n` rows of `b.len()` values (a projection's bias, e.g. `attn_output.bias`).
    pub fn add_bias(&self, x: &mut [f32], b: &[f32]) {
        parallel::add_bias(self.pool, &mut x[..self.n * b.len()], b);
    }

    /// `x *= s` on `n` rows of `row` values.
    pub fn scale(&self, x: &mut [f32], s: f32, row: usize) {
        parallel::scale_inplace(self.pool, &mut x[..self.n * row], s, row);
    }

    /// Qcur, Kcur, Vcur = cur · w{q,k,v}ᵀ, then `+ b{q,k,v}`, then (per head) Qcur_normed,
    /// Kcur_normed, in llama.cpp's order. cur: [n][n_embd] → q: [n][n_head·head_k],
    /// k: [n][n_head_kv·head_k], v: [n][n_head_kv·head_v]
    pub fn qkv(&mut self, w: &Attn, cur: &[f32], q: &mut [f32], k: &mut [f32], v: &mut [f32]) {
        self.matmuls([&w.wq, &w.wk, &w.wv], cur, [&mut *q, &mut *k, &mut *v]);
        let n = self.n;
        let (qd, kd, vd) = (w.wq.rows, w.wk.rows, w.wv.rows);
        if let Some([bq, bk, bv]) = &w.bias {
            parallel::add_bias(self.pool, &mut q[..n * qd], bq);
            parallel::add_bias(self.pool, &mut k[..n * kd], bk);
            parallel::add_bias(self.pool, &mut v[..n * vd], bv);
        }
        if let Some([qn, kn]) = &w.qk_norm {
            // Rows of head_k: every head normalized on its own.
            parallel::rms_norm_inplace(self.pool, &mut q[..n * qd], qn, self.hp.rms_eps);
            parallel::rms_norm_inplace(self.pool, &mut k[..n * kd], kn, self.hp.rms_eps);
        }
    }

    /// Qcur, Kcur, Vcur from one fused projection: `qkv = cur · wqkvᵀ` (+ its bias), then each
    /// token's row split into its Q, K and V parts (llama.cpp's views of `wqkv`, made contiguous).
    /// cur: [n][n_embd] → qkv: [n][wqkv.rows] (scratch) → q: [n][n_head·head_k],
    /// k: [n][n_head_kv·head_k], v: [n][n_head_kv·head_v]
    pub fn qkv_fused(
        &mut self,
        w: &AttnFused,
        cur: &[f32],
        qkv: &mut [f32],
        q: &mut [f32],
        k: &mut [f32],
        v: &mut [f32],
    ) {
        self.matmul(&w.wqkv, cur, qkv);
        if let Some(b) = &w.bqkv {
            self.add_bias(qkv, b);
        }
        let hp = self.hp;
        let (qd, kd, vd) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        for (t, row) in qkv[..self.n * w.wqkv.rows].chunks_exact(w.wqkv.rows).enumerate() {
            q[t * qd..(t + 1) * qd].copy_from_slice(&row[..qd]);
            k[t * kd..(t + 1) * kd].copy_from_slice(&row[qd..qd + kd]);
            v[t * vd..(t + 1) * vd].copy_from_slice(&row[qd + kd..qd + kd + vd]);
        }
    }

    /// Rotates Qcur and Kcur in place by their positions' angles (made once per forward and
    /// rope, `RopeAngles`; `rope.kind`: adjacent pairs for the llama graph, split halves for
    /// NeoX). q: [n][n_head·head_k], k: [n][n_head_kv·head_k]
    pub fn rope(&mut self, rope: &Rope, q: &mut [f32], k: &mut [f32]) {
        let (hd, n) = (self.hp.n_embd_head_k, self.n);
        let (qd, kd) = (self.hp.n_head * hd, self.hp.n_embd_k_gqa());
        let angles = self.rope_angles.get(rope, &self.plan.pos[..n]);
        parallel::rope(self.pool, rope, &mut q[..n * qd], qd, hd, angles);
        parallel::rope(self.pool, rope, &mut k[..n * kd], kd, hd, angles);
    }

    /// kqv_out: stores this batch's Kcur and Vcur in layer `il` of the cache (row i in the plan's
    /// cell `slot[i]`), then for each sequence group `softmax(Q·Kᵀ·kq_scale, causal (and windowed)
    /// mask)·V` over that sequence's cached positions (`model/attention.rs`). q: [n][n_head·head_k], k: [n][n_head_kv·head_k],
    /// v: [n][n_head_kv·head_v] → kqv: [n][n_head·head_v]
    pub fn attn(&mut self, il: usize, p: KqParams, q: &[f32], k: &[f32], v: &[f32], kqv: &mut [f32]) {
        self.attn_with(il, p, AttnExtra::default(), q, k, v, kqv)
    }

    /// `attn` with what some families add to the scores (`AttnExtra`): a soft-cap
    /// `cap·tanh(Q·Kᵀ/cap)` before the scale, mask and softmax (llama.cpp's `attn_soft_cap`), and
    /// per-head sinks (`attn_sinks`: [n_head], one more logit in each head's softmax denominator).
    #[allow(clippy::too_many_arguments)]
    pub fn attn_with(
        &mut self,
        il: usize,
        p: KqParams,
        extra: AttnExtra,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        kqv: &mut [f32],
    ) {
        let hp = self.hp;
        let n = self.n;
        let (qd, kd, vd) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        // Each group with the shape it would have alone (its own token count picks the sum
        // order, so a decoding sequence keeps the single-token order).
        let groups: smallvec::SmallVec<[AttnGroup; 1]> = self
            .plan
            .groups
            .iter()
            .map(|g| AttnGroup {
                shape: AttnShape {
                    n_tokens: g.n,
                    pos0: g.pos0,
                    n_head: hp.n_head,
                    n_head_kv: hp.n_head_kv,
                    head_k: hp.n_embd_head_k,
                    head_v: hp.n_embd_head_v,
                    kq_scale: p.kq_scale,
                    n_swa: p.n_swa,
                    softcap: extra.softcap,
                    causal: hp.causal,
                },
                row0: g.row0,
                keys: match g.base {
                    Some(b) => Keys::Base(b),
                    None => Keys::Cells(&g.cells),
                },
            })
            .collect();
        // A quantized cache: llama.cpp rotates Q and K (quantized K) or V (quantized V) by a
        // Walsh-Hadamard matrix before they meet the cache, and the output back after.
        let (rot_k, rot_v) = self.kv.rotations(hp.n_embd_head_k, hp.n_embd_head_v);
        let (mut qr, mut kr, mut vr): (Vec<f32>, Vec<f32>, Vec<f32>);
        let (q, k, v) = (&q[..n * qd], &k[..n * kd], &v[..n * vd]);
        let (q, k) = match rot_k {
            Some(r) => {
                (qr, kr) = (q.to_vec(), k.to_vec());
                elementwise::fwht_rows(&mut qr, r);
                elementwise::fwht_rows(&mut kr, r);
                (&qr[..], &kr[..])
            }
            None => (q, k),
        };
        let v = match rot_v {
            Some(r) => {
                vr = v.to_vec();
                elementwise::fwht_rows(&mut vr, r);
                &vr[..]
            }
            None => v,
        };
        self.kv.store_rows(il, &self.plan.slot[..n], k, v);
        if let ([g], 1) = (&self.plan.groups[..], n) {
            // One token of one sequence: next token, the job before this attention warms what
            // it reads (its keys and values one position further) once done (`note_reads`).
            if let Some(b) = g.base {
                self.mm.note_reads(self.kv.read_ranges(il, b, g.pos0 + 2));
            }
        }
        let sinks = extra.sinks;
        if let Some(sk) = sinks {
            assert_eq!(sk.len(), hp.n_head, "attention: one sink per head");
        }
        match &self.kv.store {
            KvStore::F16(kv) if self.flash_attn => {
                flash_attention_groups(kernels(), self.pool, self.attn, FaCache::F16(&kv[il]), q, kqv, &groups, sinks)
            }
            KvStore::Raw { layers, k, v } => {
                let cache = FaCache::Raw { kv: &layers[il], k: k.ggml(), v: v.ggml() };
                flash_attention_groups(kernels(), self.pool, self.attn, cache, q, kqv, &groups, sinks)
            }
            KvStore::F16(kv) => attention_groups(self.pool, self.attn, &kv[il], q, kqv, &groups, sinks),
            // f32 with flash attention is refused by `Context::new`
            KvStore::F32(kv) => attention_groups(self.pool, self.attn, &kv[il], q, kqv, &groups, sinks),
        }
        if let Some(r) = rot_v {
            elementwise::fwht_rows(&mut kqv[..n * hp.n_head * hp.n_embd_head_v], r);
        }
    }

    /// ffn_out = ffn_down(act(ffn_gate(cur)) ⊙ ffn_up(cur)). cur: [n][n_embd] → gate, up:
    /// [n][n_ff] (scratch; `gate` ends as the gated product) → out: [n][n_embd]
    pub fn ffn(&mut self, w: &Ffn, act: Act, cur: &[f32], gate: &mut [f32], up: &mut [f32], out: &mut [f32]) {
        let (n, n_ff) = (self.n, w.gate.rows);
        self.matmuls([&w.gate, &w.up], cur, [&mut *gate, &mut *up]);
        match act {
            Act::Silu => self.swiglu(gate, up, n_ff),
            Act::Gelu => parallel::geglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff),
        }
        self.matmul(&w.down, gate, out);
    }

    /// ffn_moe_out (llama.cpp's `build_moe_ffn`): per token, the router's logits
    /// (ffn_moe_logits = ffn_gate_inp · cur, + its bias), the `n_used` chosen experts and their
    /// weights as `w.opts.gating` says (ffn_moe_topk, ffn_moe_weights); every chosen expert's
    /// FFN on the token (one `matmul_id` per stage: each expert's weights read once for all the
    /// tokens routed to it; + the expert's biases, ggml's add_id; the activation of
    /// `w.opts.act`); their outputs weighted and added in the top-k order (ffn_moe_weighted, then
    /// the adds). cur: [n][n_embd] → gate, up: [n·n_used][n_ff_exp] (scratch; one row per token
    /// and chosen expert) → s.down: [n·n_used][n_embd] → out: [n][n_embd]
    #[allow(clippy::too_many_arguments)]
    pub fn moe_ffn(
        &mut self,
        w: &Moe,
        n_used: usize,
        cur: &[f32],
        gate: &mut [f32],
        up: &mut [f32],
        s: &mut MoeScratch,
        out: &mut [f32],
    ) {
        let (n, n_embd, n_expert) = (self.n, self.hp.n_embd, w.gate_inp.rows);
        let n_ff = w.gate_exps.rows;
        let n_slots = n * n_used;
        // ffn_moe_logits (+ ffn_gate_inp.bias), then ffn_moe_probs in place
        //                                                              probs: [n][n_expert]
        match &w.gate_inp_kt {
            Some(kt) => {
                let orders = kernels().orders;
                // The order a row's sequence would take alone: single-token when its group (its
                // sequence's tokens in this batch) is one token, the batch order otherwise.
                let groups = &self.plan.groups;
                let order = |r: usize| {
                    let alone = groups.iter().find(|g| (g.row0..g.row0 + g.n).contains(&r)).map_or(n, |g| g.n);
                    if alone == 1 {
                        orders.attn_single()
                    } else {
                        orders.attn_batch()
                    }
                };
                let kq = kernels().attn.kq;
                // token rows claimed one at a time (a single token on this thread)
                if n == 1 {
                    kq(n_embd, kt, n_expert, &cur[..n_embd], 1, &mut s.probs[..n_expert], n_expert, order(0));
                } else {
                    let rows =
                        Mutex::new(s.probs[..n * n_expert].chunks_mut(n_expert).zip(cur.chunks(n_embd)).enumerate());
                    self.pool.run(|_, _| loop {
                        let next = rows.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((r, (p, x))) = next else { break };
                        kq(n_embd, kt, n_expert, x, 1, p, n_expert, order(r));
                    });
                }
            }
            None => self.matmul(&w.gate_inp, cur, &mut s.probs),
        }
        if let Some(b) = &w.bias {
            parallel::add_bias(self.pool, &mut s.probs[..n * n_expert], &b.gate_inp);
        }
        let (softmax, orders) = (kernels().softmax, kernels().orders);
        let (probs, sel, weights) = (&mut s.probs, &mut s.sel, &mut s.weights);
        for (t, p) in probs.chunks_exact_mut(n_expert).take(n).enumerate() {
            if let Gating::SoftmaxNorm = w.opts.gating {
                softmax(p, 1.0);
            }
            // ffn_moe_topk: descending probability (or logit, SoftmaxWeight) (ggml_argsort_top_k),
            // ties to the lower id
            let (sel_t, w_t) = (&mut sel[t * n_used..(t + 1) * n_used], &mut weights[t * n_used..(t + 1) * n_used]);
            for j in 0..n_used {
                let taken = &sel_t[..j];
                let best = (0..n_expert)
                    .filter(|e| !taken.contains(&(*e as u32)))
                    .fold(None, |b: Option<usize>, e| match b {
                        Some(b) if p[b] >= p[e] => Some(b),
                        _ => Some(e),
                    })
                    .expect("n_used ≤ n_expert checked at load");
                sel_t[j] = best as u32;
                w_t[j] = p[best];
            }
            match w.opts.gating {
                Gating::SoftmaxNorm => {
                    // ffn_moe_weights_sum (ggml_sum_rows: in double), clamped, then
                    // ffn_moe_weights_norm
                    let sum = (w_t.iter().map(|&x| x as f64).sum::<f64>() as f32).max(6.103_515_6e-5); // 2^-14, the smallest normal f16
                    for x in w_t.iter_mut() {
                        *x /= sum;
                    }
                }
                // ffn_moe_weights_softmax over the chosen logits
                Gating::SoftmaxWeight => elementwise::softmax_row(w_t, orders),
            }
        }
        // The routed rows grouped by expert (ascending ids, tokens in order): group g is expert
        // active[g], its rows first[g]..first[g+1]; row r reads token src[r] and stands for slot
        // (token t, choice j) = t·n_used + j.
        s.count.fill(0);
        for &e in &sel[..n_slots] {
            s.count[e as usize] += 1;
        }
        s.active.clear();
        s.first.clear();
        s.first.push(0);
        for e in 0..n_expert {
            if s.count[e] > 0 {
                let r0 = s.first[s.first.len() - 1];
                s.next[e] = r0;
                s.active.push(e as u32);
                s.first.push(r0 + s.count[e]);
            }
        }
        for (slot, &e) in sel[..n_slots].iter().enumerate() {
            let r = s.next[e as usize];
            s.src[r] = (slot / n_used) as u32;
            s.slot[r] = slot as u32;
            s.next[e as usize] += 1;
        }

        let m = self.m;
        let k = kernels();
        let active = &s.active;
        let q = |e: &Experts, g: usize| -> QTensor<'_> { m.qt(&e.expert(active[g] as usize)) };
        let x_cur = &cur[..n * n_embd];
        // ffn_moe_gate, ffn_moe_up: token rows in, slot rows out   gate, up: [n·n_used][n_ff]
        let routes = IdRoutes { first: &s.first, src: &s.src[..n_slots], dst: &s.slot[..n_slots] };
        let (g_out, u_out) = (&mut gate[..n_slots * n_ff], &mut up[..n_slots * n_ff]);
        let same_type = m.qt(&w.gate_exps.expert(0)).ggml_type == m.qt(&w.up_exps.expert(0)).ggml_type;
        let run = |r: Result<()>| r.expect("expert shapes checked at load");
        if same_type {
            let both = |i: usize, g: usize| q(if i == 0 { &w.gate_exps } else { &w.up_exps }, g);
            run(matmul_id(k, self.pool, 2, both, routes, x_cur, &mut [g_out, u_out], self.mm));
        } else {
            run(matmul_id(k, self.pool, 1, |_, g| q(&w.gate_exps, g), routes, x_cur, &mut [g_out], self.mm));
            run(matmul_id(k, self.pool, 1, |_, g| q(&w.up_exps, g), routes, x_cur, &mut [u_out], self.mm));
        }
        // ffn_moe_up_biased, ffn_moe_gate_biased: each slot's expert's bias (ggml_add_id)
        if let Some(b) = &w.bias {
            parallel::add_id(self.pool, &mut up[..n_slots * n_ff], &b.up_exps, &s.sel[..n_slots], n_ff);
            parallel::add_id(self.pool, &mut gate[..n_slots * n_ff], &b.gate_exps, &s.sel[..n_slots], n_ff);
        }
        // ffn_moe_swiglu / ffn_moe_swiglu_oai                         gate: [n·n_used][n_ff]
        let (g, u) = (&mut gate[..n_slots * n_ff], &up[..n_slots * n_ff]);
        match w.opts.act {
            MoeAct::Silu => parallel::swiglu_inplace(self.pool, g, u, n_ff),
            MoeAct::SwigluOai { alpha, limit } => parallel::swiglu_oai_inplace(self.pool, g, u, n_ff, alpha, limit),
        }
        // ffn_moe_down: slot rows in and out                      s.down: [n·n_used][n_embd]
        let routes = IdRoutes { first: &s.first, src: &s.slot[..n_slots], dst: &s.slot[..n_slots] };
        let down = &mut s.down[..n_slots * n_embd];
        run(matmul_id(
            k,
            self.pool,
            1,
            |_, g| q(&w.down_exps, g),
            routes,
            &gate[..n_slots * n_ff],
            &mut [down],
            self.mm,
        ));
        // ffn_moe_down_biased (ggml_add_id)
        if let Some(b) = &w.bias {
            parallel::add_id(self.pool, &mut s.down[..n_slots * n_embd], &b.down_exps, &s.sel[..n_slots], n_embd);
        }
        // ffn_moe_weighted, then the adds in top-k order                 out: [n][n_embd]
        parallel::weighted_sum(
            self.pool,
            &mut out[..n * n_embd],
            &s.down[..n_slots * n_embd],
            &s.weights[..n_slots],
            n_embd,
        );
    }

    /// ffn_out = ffn_down(swiglu(ffn_up(cur))) with the gate and up halves of one fused `ffn_up`
    /// (ggml_swiglu: silu(first half) ⊙ second half of each row). cur: [n][n_embd] → up:
    /// [n][2·n_ff] (scratch; the fused product, then the up halves as [n][n_ff]) → gate: [n][n_ff]
    /// (the gate halves, then the gated product) → out: [n][n_embd]
    pub fn ffn_fused(&mut self, w: &FfnFused, cur: &[f32], gate: &mut [f32], up: &mut [f32], out: &mut [f32]) {
        let (n, n_ff) = (self.n, w.down.cols);
        self.matmul(&w.up, cur, up);
        // Rows apart: gate halves out, up halves moved down to rows of n_ff (each destination lies
        // before its source and after every source already read, so in place is safe).
        for t in 0..n {
            gate[t * n_ff..(t + 1) * n_ff].copy_from_slice(&up[2 * t * n_ff..(2 * t + 1) * n_ff]);
            up.copy_within((2 * t + 1) * n_ff..(2 * t + 2) * n_ff, t * n_ff);
        }
        parallel::swiglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff);
        self.matmul(&w.down, gate, out);
    }

    /// The output rows of `x` as the embeddings (encoders: the last layer's output is
    /// `t_embd`, with no final norm or output matrix). x: [n][n_embd]
    pub fn output_embd(&mut self, x: &[f32]) {
        let n_embd = self.hp.n_embd;
        let embd = self.embd.as_deref_mut().expect("encoders run in embeddings mode (checked by the context)");
        for (i, &r) in self.plan.out_rows.iter().enumerate() {
            embd[i * n_embd..(i + 1) * n_embd].copy_from_slice(&x[r * n_embd..(r + 1) * n_embd]);
        }
    }

    /// `dst = layer_norm(src) · w + b`, rows of `w.len()` (LLM_NORM: BERT's norms).
    pub fn layer_norm(&self, w: &LayerNorm, src: &[f32], dst: &mut [f32]) {
        let len = self.n * w.w.len();
        parallel::layer_norm(self.pool, &mut dst[..len], &src[..len], &w.w, &w.b, self.hp.norm_eps);
    }

    /// `out = x · wᵀ + b`: a projection with its bias. x: [n][w.cols], out: [n][w.rows]
    pub fn linear(&mut self, w: &Linear, x: &[f32], out: &mut [f32]) {
        self.matmul(&w.w, x, out);
        self.add_bias(out, &w.b);
    }

    /// inp_pos: `x[t] += position_embd[pos(t)]` (absolute learned positions). x: [n][n_embd]
    pub fn add_pos_embd(&self, pos_embd: &WRef, x: &mut [f32]) {
        let w = self.m.qt(pos_embd);
        let row_bytes = w.data.len() / w.rows;
        let mut row = vec![0f32; w.cols]; // [n_embd]
        for (t, &p) in self.plan.pos[..self.n].iter().enumerate() {
            let p = p as usize;
            dequantize_row(w.ggml_type, &w.data[p * row_bytes..(p + 1) * row_bytes], &mut row)
                .expect("embedding type validated at load");
            for (a, &b) in x[t * w.cols..(t + 1) * w.cols].iter_mut().zip(&row) {
                *a += b;
            }
        }
    }

    /// A sequential (not gated) feed-forward, LLM_FFN_SEQ with GELU: ffn_down(gelu(ffn_up(cur) +
    /// b) ) + b. cur: [n][n_embd] → up: [n][n_ff] (scratch) → out: [n][n_embd]
    pub fn ffn_seq_gelu(&mut self, up_w: &Linear, down_w: &Linear, cur: &[f32], up: &mut [f32], out: &mut [f32]) {
        let (n, n_ff) = (self.n, up_w.w.rows);
        self.linear(up_w, cur, up);
        parallel::gelu_inplace(self.pool, &mut up[..n * n_ff], n_ff);
        self.linear(down_w, up, out);
    }

    /// result_norm then result_output (then the soft-cap `cap·tanh(logit/cap)` if given) for the
    /// rows the plan outputs (`out_rows`, in output order), into the context's logits from row
    /// `dst_row`. x: [n][n_embd] → cur: [n_out][n_embd] (scratch) → logits[dst_row..][n_vocab]
    pub fn output(&mut self, norm: &[f32], w: &WRef, softcap: Option<f32>, x: &[f32], cur: &mut [f32]) {
        let rows = &self.plan.out_rows;
        let n_out = rows.len();
        if n_out == 0 {
            return;
        }
        let (n_embd, n_vocab) = (self.hp.n_embd, self.hp.n_vocab);
        // result_norm, row by row (each row's sums are its own), on this thread; in embeddings
        // mode straight into the context's embeddings: they are the output (llama.cpp's t_embd),
        // no logits.
        let embeddings = self.embd.is_some();
        let normed: &mut [f32] = self.embd.as_deref_mut().unwrap_or(&mut cur[..]);
        for (i, &r) in rows.iter().enumerate() {
            let dst = &mut normed[i * n_embd..(i + 1) * n_embd];
            elementwise::rms_norm(dst, &x[r * n_embd..(r + 1) * n_embd], norm, self.hp.rms_eps);
        }
        if embeddings {
            return;
        }
        // result_output
        let d0 = self.plan.dst_row;
        let dst = &mut self.logits[d0 * n_vocab..(d0 + n_out) * n_vocab];
        matmul(self.pool, &self.m.qt(w), &cur[..n_out * w.cols], n_out, dst, self.mm);
        if let Some(cap) = softcap {
            elementwise::softcap_inplace(dst, cap);
        }
    }
}
