//! `gemma3`: Gemma 3 (llama.cpp's llm_build_gemma3_iswa). Embeddings scaled by sqrt(n_embd);
//! per-head RMS norms on Q and K; RMS norms after attention and after the FFN as well as before;
//! GELU-gated FFN; queries scaled before attention (Q·K then unscaled); five local layers
//! (sliding window, rope base 10000) to one global; output tied to the token embedding unless the
//! file has its own. The GGUF converter already stores Gemma's RMSNorm weights as (1 + w).

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Act, AttnOpts, KqParams, SandwichLayer};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

/// Every `SWA_PATTERN`-th layer (1-based) is global; the others see the last `n_swa` positions.
const SWA_PATTERN: usize = 6;
/// Rope base of the local layers (the global ones use `rope.freq_base`).
const ROPE_FREQ_BASE_SWA: f32 = 10000.0;

struct Gemma3 {
    /// `attention.sliding_window`; 0 = no window (every layer global).
    n_swa: usize,
    /// Multiplier of Q before Q·K: 1/sqrt(query_pre_attn_scalar).
    f_attention_scale: f32,
    /// `final_logit_softcapping`, when the file sets one.
    final_logit_softcap: Option<f32>,
    tok_embd: WRef,             // [n_vocab][n_embd]
    layers: Vec<SandwichLayer>, // attn with attn_q_norm, attn_k_norm
    output_norm: Vec<f32>,      // [n_embd]
    output: WRef,               // [n_vocab][n_embd] token_embd unless the file has `output.weight`
}

impl Gemma3 {
    /// True when layer `il` attends only within the sliding window.
    fn is_swa(&self, il: usize) -> bool {
        self.n_swa > 0 && il % SWA_PATTERN < SWA_PATTERN - 1
    }
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    // llama.cpp: queries scaled by 1/sqrt(key_length) (query_pre_attn_scalar = head_dim for all
    // sizes but 27B — 62 layers — which uses n_embd/n_head).
    let f_attention_scale = if hp.n_layer == 62 {
        1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()
    } else {
        1.0 / (hp.n_embd_head_k as f32).sqrt()
    };
    let n_swa = meta.opt_usize("attention.sliding_window")?.unwrap_or(0);
    let final_logit_softcap = meta.opt_f32("final_logit_softcapping")?.filter(|&c| c > 0.0);

    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let opts = AttnOpts { bias: false, qk_norm: true };
    let layers = (0..hp.n_layer).map(|il| SandwichLayer::load(&l, hp, il, opts)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Gemma3 { n_swa, f_attention_scale, final_logit_softcap, tok_embd, layers, output_norm, output }))
}

impl Network for Gemma3 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let (n_embd, q_dim) = (hp.n_embd, hp.n_head * hp.n_embd_head_k);
        // Global layers: the file's rope base and scaling; local ones: base 10000, unscaled.
        let rope_global = hp.rope(RopeType::Neox);
        let rope_local = Rope { freq_base: ROPE_FREQ_BASE_SWA, freq_scale: 1.0, ..rope_global };

        // inpL = inp_embd · sqrt(n_embd) (inp_scaled)                  x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        p.scale(&mut b.x, (n_embd as f32).sqrt(), n_embd);
        for (il, l) in self.layers.iter().enumerate() {
            let swa = self.is_swa(il);
            let rope = if swa { &rope_local } else { &rope_global };
            // Q is scaled below, so Q·K is not.
            let kq = KqParams { kq_scale: 1.0, n_swa: if swa { self.n_swa } else { 0 } };
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur, then Qcur_normed, Kcur_normed per head
            //                                              q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX), then Q · f_attention_scale (after rope, as llama.cpp)
            p.rope(rope, &mut b.q, &mut b.k);
            p.scale(&mut b.q, self.f_attention_scale, q_dim);
            // kqv_out: attention over the cache (window on local layers) kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ, then attn_post_norm              proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            p.norm_inplace(&l.post_attention_norm, &mut b.proj);
            // sa_out = attn_post_norm + inpL                            x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // ffn_norm                                                 cur: [n][n_embd]
            p.norm(&l.ffn_norm, &b.x, &mut b.cur);
            // ffn_out = ffn_down(gelu(ffn_gate) ⊙ ffn_up)   gate, up: [n][n_ff], proj: [n][n_embd]
            p.ffn(&l.ffn, Act::Gelu, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
            // ffn_post_norm                                            proj: [n][n_embd]
            p.norm_inplace(&l.post_ffw_norm, &mut b.proj);
            // l_out = ffn_post_norm + sa_out: the next layer's inpL      x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output (+ soft-cap)                   logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.output, self.final_logit_softcap, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        blocks::dense_matrices(self.layers.iter().map(|l| (&l.attn, &l.ffn)), self.output)
    }

    fn max_n_ff(&self) -> usize {
        blocks::max_n_ff(self.layers.iter().map(|l| &l.ffn))
    }
}
