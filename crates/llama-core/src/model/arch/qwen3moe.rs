//! `qwen3moe`: Qwen3 mixture-of-experts (Qwen3-30B-A3B …; llama.cpp's src/models/qwen3moe.cpp).
//! Qwen3's attention (per-head RMS norm on Q and K, NeoX rope, no biases); the FFN is a mixture
//! of experts: softmax router, the `expert_used_count` most probable experts with their weights
//! normalized to sum 1, SiLU-gated experts of width `expert_feed_forward_length`.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Attn, AttnOpts, KqParams, Moe};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

struct Layer {
    attn_norm: Vec<f32>, // [n_embd]
    attn: Attn,
    ffn_norm: Vec<f32>, // [n_embd]
    moe: Moe,
}

struct Qwen3Moe {
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
    n_expert: usize,
    /// Experts per token (`expert_used_count`).
    n_used: usize,
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let n_expert = meta.req_usize("expert_count")?;
    let n_used = meta.req_usize("expert_used_count")?;
    if n_expert == 0 || n_used == 0 || n_used > n_expert {
        return Err(Error::Model(format!(
            "qwen3moe: expert_used_count = {n_used} must be in 1..=expert_count = {n_expert}"
        )));
    }
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let opts = AttnOpts { bias: false, qk_norm: true };
    let layers = (0..hp.n_layer)
        .map(|il| {
            let moe = Moe::load(&l, hp, il, n_expert)?;
            if let Some(n_ff) = meta.opt_usize("expert_feed_forward_length")? {
                if moe.gate_exps.rows != n_ff {
                    return Err(Error::Model(format!(
                        "blk.{il}.ffn_gate_exps.weight has {} rows but expert_feed_forward_length = {n_ff}",
                        moe.gate_exps.rows
                    )));
                }
            }
            Ok(Layer {
                attn_norm: l.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
                attn: Attn::load(&l, hp, il, opts)?,
                ffn_norm: l.vector(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
                moe,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Qwen3Moe { tok_embd, layers, output_norm, output, n_expert, n_used }))
}

impl Network for Qwen3Moe {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let rope = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
            attn_factor: hp.rope_attn_factor,
            yarn: None,
        };
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur = cur · wᵀ, then Qcur_normed, Kcur_normed per head
            //                                                q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX)
            p.rope(&rope, &mut b.q, &mut b.k);
            // kqv_out: attention over the cache (K/V stored first)       kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ                                 proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            // ffn_inp = attn_out + inpSA                                x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // ffn_norm                                                 cur: [n][n_embd]
            p.norm(&l.ffn_norm, &b.x, &mut b.cur);
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
