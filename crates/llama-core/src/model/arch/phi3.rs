//! `phi3`: Phi-3, Phi-3.5 and Phi-4-mini (llama.cpp's src/models/phi3.cpp). Pre-norm blocks like
//! llama's, but with one fused Q/K/V projection (`attn_qkv`) and one fused gate/up projection
//! (`ffn_up`, SwiGLU on its halves); NeoX rope with LongRoPE: per-pair frequency divisors
//! `rope_factors_short` or `rope_factors_long` (the long ones when the context exceeds the
//! original training context) and an attention factor scaling cos and sin
//! (`rope.scaling.attn_factor`); queries scaled by 1/sqrt(head_dim) before attention. A sliding
//! window in the file is ignored, as llama.cpp does (its Phi SWA is disabled).

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, AttnFused, FfnFused, KqParams};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

/// llama.cpp rounds the context up to a multiple of this before comparing it with the original
/// training context (`GGML_PAD(n_ctx, 256)`).
const N_CTX_PAD: usize = 256;

struct Phi3 {
    /// `rope.scaling.original_context_length` (default: the training context): above it the
    /// long rope factors apply.
    n_ctx_orig: usize,
    /// [n_rot/2] each, when the file has them (LongRoPE models).
    rope_factors_short: Option<Vec<f32>>,
    rope_factors_long: Option<Vec<f32>>,
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
}

struct Layer {
    attn_norm: Vec<f32>, // [n_embd]
    attn: AttnFused,
    ffn_norm: Vec<f32>, // [n_embd]
    ffn: FfnFused,
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let n_ctx_orig = meta.opt_usize("rope.scaling.original_context_length")?.unwrap_or(hp.n_ctx_train);
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let rope_factors_short = l.opt_vector("rope_factors_short.weight", hp.n_rot / 2)?;
    let rope_factors_long = l.opt_vector("rope_factors_long.weight", hp.n_rot / 2)?;
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        layers.push(Layer {
            attn_norm: l.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
            attn: AttnFused::load(&l, hp, il)?,
            ffn_norm: l.vector(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
            ffn: FfnFused::load(&l, hp, il)?,
        });
    }
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Phi3 { n_ctx_orig, rope_factors_short, rope_factors_long, tok_embd, layers, output_norm, output }))
}

impl Network for Phi3 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        // llama.cpp's get_rope_factors: long factors when the (padded) context per sequence
        // exceeds the original training context.
        let long = c.n_ctx.next_multiple_of(N_CTX_PAD) > self.n_ctx_orig;
        let factors = if long { &self.rope_factors_long } else { &self.rope_factors_short };
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let q_dim = hp.n_head * hp.n_embd_head_k;
        let rope = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: factors.as_deref(),
            yarn: None,
            attn_factor: hp.rope_attn_factor,
        };
        // Q is scaled below, so Q·K is not.
        let kq = KqParams { kq_scale: 1.0, n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // wqkv = cur · wqkvᵀ (into `up`, free until the FFN), split into Qcur, Kcur, Vcur
            //                                                q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv_fused(&l.attn, &b.cur, &mut b.up, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX) with the rope factors and attention factor, then
            // Q · 1/sqrt(head_dim)
            p.rope(&rope, &mut b.q, &mut b.k);
            p.scale(&mut b.q, 1.0 / (hp.n_embd_head_k as f32).sqrt(), q_dim);
            // kqv_out: attention over the cache (K/V stored first)       kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ                                 proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            // ffn_inp = attn_out + inpL (residual)                      x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // ffn_norm                                                 cur: [n][n_embd]
            p.norm(&l.ffn_norm, &b.x, &mut b.cur);
            // ffn_out = ffn_down(swiglu(ffn_up(cur)))     up: [n][2·n_ff], gate: [n][n_ff],
            //                                                          proj: [n][n_embd]
            p.ffn_fused(&l.ffn, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
            // l_out = ffn_out + ffn_inp: the next layer's inpL           x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output                               logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.output, None, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        let mut v: Vec<WRef> =
            self.layers.iter().flat_map(|l| [l.attn.wqkv, l.attn.wo, l.ffn.up, l.ffn.down]).collect();
        v.push(self.output);
        v
    }

    /// The widest of the fused FFN (2·n_ff) and the fused Q/K/V product, both computed in the
    /// `gate`/`up` buffers this sizes.
    fn max_n_ff(&self) -> usize {
        self.layers.iter().map(|l| l.ffn.up.rows.max(l.attn.wqkv.rows)).max().unwrap_or(0)
    }
}
