//! `gpt-oss`: OpenAI's gpt-oss (llama.cpp's LLM_ARCH_OPENAI_MOE, src/models/openai-moe.cpp).
//! Pre-norm layers alternating a sliding-window layer and a full one; attention with biases on
//! Q, K, V and the output, and a learned sink per head (one more logit in each softmax
//! denominator); NeoX rope with YaRN scaling; the FFN a mixture of experts whose router and
//! experts have biases, chosen by logit with a softmax over the chosen ones, and gpt-oss's
//! clamped SwiGLU (alpha 1.702, limit 7, `(up + 1)`). No tied output.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Attn, AttnExtra, AttnOpts, Gating, KqParams, Moe, MoeAct, MoeOpts};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

/// Every `SWA_PATTERN`-th layer (1-based) is full; the others see the last `n_swa` positions
/// (llama.cpp's `load_swa_pattern(ml, 2)` when the file has no `attention.sliding_window_pattern`).
const SWA_PATTERN: usize = 2;
/// The experts' activation: llama.cpp's constants for LLM_FFN_SWIGLU_OAI_MOE (the file does not
/// store them).
const SWIGLU_ALPHA: f32 = 1.702;
const SWIGLU_LIMIT: f32 = 7.0;

struct GptOss {
    /// `attention.sliding_window`.
    n_swa: usize,
    /// Which layers use the window (`attention.sliding_window_pattern`, else every other one).
    is_swa: Vec<bool>,
    /// Rope base of the windowed layers (`rope.freq_base_swa`, else `rope.freq_base`).
    freq_base_swa: f32,
    n_expert: usize,
    /// Experts per token (`expert_used_count`).
    n_used: usize,
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd]
}

struct Layer {
    attn_norm: Vec<f32>, // [n_embd]
    attn: Attn,          // with attn_{q,k,v}.bias
    wo_b: Vec<f32>,      // [n_embd] attn_output.bias
    sinks: Vec<f32>,     // [n_head] attn_sinks.weight
    /// llama.cpp's `attn_post_norm` (GGUF `post_attention_norm`): the norm before the FFN.
    post_attention_norm: Vec<f32>, // [n_embd]
    moe: Moe,
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let n_expert = meta.req_usize("expert_count")?;
    let n_used = meta.req_usize("expert_used_count")?;
    if n_expert == 0 || n_used == 0 || n_used > n_expert {
        return Err(Error::Model(format!(
            "gpt-oss: expert_used_count = {n_used} must be in 1..=expert_count = {n_expert}"
        )));
    }
    let n_swa = meta.req_usize("attention.sliding_window")?;
    let pattern = meta.opt_usize("attention.sliding_window_pattern")?.unwrap_or(SWA_PATTERN);
    // llama.cpp's set_swa_pattern(n_pattern, dense_first = false)
    let is_swa = (0..hp.n_layer).map(|il| pattern == 0 || il % pattern < pattern - 1).collect();
    let freq_base_swa = meta.opt_f32("rope.freq_base_swa")?.unwrap_or(hp.rope_freq_base);

    let l = Loader::new(f);
    let tok_embd = l.matrix("token_embd.weight", None, hp.n_embd)?;
    let output = l.matrix("output.weight", Some(tok_embd.rows), hp.n_embd)?;
    let attn_opts = AttnOpts { bias: true, qk_norm: false };
    let moe_opts = MoeOpts {
        bias: true,
        gating: Gating::SoftmaxWeight,
        act: MoeAct::SwigluOai { alpha: SWIGLU_ALPHA, limit: SWIGLU_LIMIT },
    };
    let n_ff_exp = meta.opt_usize("expert_feed_forward_length")?;
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        let n = |s: &str| format!("blk.{il}.{s}");
        let moe = Moe::load_opts(&l, hp, il, n_expert, moe_opts)?;
        if let Some(n_ff) = n_ff_exp.filter(|&n_ff| n_ff != moe.gate_exps.rows) {
            return Err(Error::Model(format!(
                "blk.{il}.ffn_gate_exps.weight has {} rows but expert_feed_forward_length = {n_ff}",
                moe.gate_exps.rows
            )));
        }
        layers.push(Layer {
            attn_norm: l.vector(&n("attn_norm.weight"), hp.n_embd)?,
            attn: Attn::load(&l, hp, il, attn_opts)?,
            wo_b: l.vector(&n("attn_output.bias"), hp.n_embd)?,
            sinks: l.vector(&n("attn_sinks.weight"), hp.n_head)?,
            post_attention_norm: l.vector(&n("post_attention_norm.weight"), hp.n_embd)?,
            moe,
        });
    }
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(GptOss { n_swa, is_swa, freq_base_swa, n_expert, n_used, tok_embd, layers, output_norm, output }))
}

impl Network for GptOss {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        // NeoX rope with YaRN; the windowed layers with their own base (the same by default)
        let rope_full = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
            attn_factor: hp.rope_attn_factor,
            yarn: hp.yarn(hp.rope_freq_base),
        };
        let rope_swa = Rope { freq_base: self.freq_base_swa, yarn: hp.yarn(self.freq_base_swa), ..rope_full };
        let kq_scale = 1.0 / (hp.n_rot as f32).sqrt();

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            let swa = self.is_swa[il];
            let rope = if swa { &rope_swa } else { &rope_full };
            let kq = KqParams { kq_scale, n_swa: if swa { self.n_swa } else { 0 } };
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur = cur · wᵀ + b              q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX), YaRN-scaled
            p.rope(rope, &mut b.q, &mut b.k);
            // kqv_out: attention over the cache with the sinks (window on SWA layers)
            //                                                          kqv: [n][n_head·head_v]
            p.attn_with(
                il,
                kq,
                AttnExtra { sinks: Some(&l.sinks), ..Default::default() },
                &b.q,
                &b.k,
                &b.v,
                &mut b.kqv,
            );
            // attn_out = kqv_out · woᵀ + wo_b                          proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            p.add_bias(&mut b.proj, &l.wo_b);
            // ffn_inp = attn_out + inpSA                                x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // attn_post_norm                                           cur: [n][n_embd]
            p.norm(&l.post_attention_norm, &b.x, &mut b.cur);
            // ffn_moe_out: routed experts, weighted sum
            //                     gate, up: [n·n_used][n_ff_exp], moe.down: [n·n_used][n_embd] → proj
            p.moe_ffn(&l.moe, self.n_used, &b.cur, &mut b.gate, &mut b.up, &mut b.moe, &mut b.proj);
            // l_out = ffn_moe_out + ffn_inp: the next layer's inpL        x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output                               logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.output, None, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        let layers = self.layers.iter().flat_map(|l| l.attn.matrices().into_iter().chain(l.moe.matrices()));
        layers.chain(std::iter::once(self.output)).collect()
    }

    fn max_n_ff(&self) -> usize {
        self.n_used * self.layers.iter().map(|l| l.moe.gate_exps.rows).max().unwrap_or(0)
    }

    fn moe(&self) -> Option<(usize, usize)> {
        Some((self.n_expert, self.n_used))
    }
}
