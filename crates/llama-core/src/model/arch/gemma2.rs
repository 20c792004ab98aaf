//! `gemma2`: Gemma 2 (llama.cpp's src/models/gemma2.cpp, built as iSWA). Gemma 3's layer without
//! the per-head Q/K norms and with the attention scores soft-capped, `cap·tanh(Q·K/cap)`, before
//! the mask and softmax: embeddings scaled by sqrt(n_embd); RMS norms before and after attention
//! and the FFN; GELU-gated FFN; queries scaled before attention (Q·K then unscaled); every other
//! layer local (sliding window, from the first); final logits soft-capped; output always the
//! token embedding. The GGUF converter already stores Gemma's RMSNorm weights as (1 + w).

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Act, AttnExtra, AttnOpts, KqParams, SandwichLayer};
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

/// llama.cpp's defaults when the file does not set them (Gemma 2's own values).
const N_SWA_DEFAULT: usize = 4096;
const SWA_PATTERN_DEFAULT: usize = 2;
const ATTN_SOFTCAP_DEFAULT: f32 = 50.0;
const FINAL_SOFTCAP_DEFAULT: f32 = 30.0;
/// Block count of Gemma 2 27B, whose queries are scaled by n_embd/n_head rather than head_k.
const N_LAYER_27B: usize = 46;

struct Gemma2 {
    /// `attention.sliding_window`: local layers see the last n_swa positions (0 = no window).
    n_swa: usize,
    /// `attention.sliding_window_pattern`: of every n layers the first n-1 are local, the last
    /// global (0 = every layer local).
    swa_pattern: usize,
    /// `rope.freq_base_swa`: rope base of the local layers (default: `rope.freq_base`).
    rope_freq_base_swa: f32,
    /// Multiplier of Q before Q·K: 1/sqrt(query_pre_attn_scalar).
    f_attention_scale: f32,
    /// `attn_logit_softcapping`, `final_logit_softcapping`.
    attn_softcap: f32,
    final_softcap: f32,
    tok_embd: WRef, // [n_vocab][n_embd], also the output matrix
    layers: Vec<SandwichLayer>,
    output_norm: Vec<f32>, // [n_embd]
}

impl Gemma2 {
    /// True when layer `il` attends only within the sliding window (llama.cpp's
    /// `set_swa_pattern`, dense layer last).
    fn is_swa(&self, il: usize) -> bool {
        let n = self.swa_pattern;
        self.n_swa > 0 && (n == 0 || il % n < n - 1)
    }
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let a = hp.arch.name();
    // llama.cpp keys the query scale by model size, not by `query_pre_attn_scalar` (not in the
    // file): 1/sqrt(head_k) (= query_pre_attn_scalar of 2B and 9B), 1/sqrt(n_embd/n_head) for 27B.
    let f_attention_scale = if hp.n_layer == N_LAYER_27B {
        1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()
    } else {
        1.0 / (hp.n_embd_head_k as f32).sqrt()
    };
    let softcap = |key: &str, default: f32| -> Result<f32> {
        let cap = meta.opt_f32(key)?.unwrap_or(default);
        if cap > 0.0 && cap.is_finite() {
            Ok(cap)
        } else {
            Err(Error::Model(format!("{a}.{key} = {cap}: a soft-cap must be a positive number")))
        }
    };
    let attn_softcap = softcap("attn_logit_softcapping", ATTN_SOFTCAP_DEFAULT)?;
    let final_softcap = softcap("final_logit_softcapping", FINAL_SOFTCAP_DEFAULT)?;
    let n_swa = meta.opt_usize("attention.sliding_window")?.unwrap_or(N_SWA_DEFAULT);
    let swa_pattern = meta.opt_usize("attention.sliding_window_pattern")?.unwrap_or(SWA_PATTERN_DEFAULT);
    let rope_freq_base_swa = meta.opt_f32("rope.freq_base_swa")?.unwrap_or(hp.rope_freq_base);

    let l = Loader::new(f);
    // llama.cpp's Gemma 2 always reads the output through the token embedding.
    let tok_embd = l.matrix("token_embd.weight", None, hp.n_embd)?;
    let opts = AttnOpts { bias: false, qk_norm: false };
    let layers = (0..hp.n_layer).map(|il| SandwichLayer::load(&l, hp, il, opts)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Gemma2 {
        n_swa,
        swa_pattern,
        rope_freq_base_swa,
        f_attention_scale,
        attn_softcap,
        final_softcap,
        tok_embd,
        layers,
        output_norm,
    }))
}

impl Network for Gemma2 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let (n_embd, q_dim) = (hp.n_embd, hp.n_head * hp.n_embd_head_k);
        let rope_global = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
            yarn: None,
            attn_factor: hp.rope_attn_factor,
        };
        let rope_local = Rope { freq_base: self.rope_freq_base_swa, ..rope_global };

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
            // Qcur, Kcur, Vcur                             q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX), then Q · f_attention_scale (after rope, as llama.cpp)
            p.rope(rope, &mut b.q, &mut b.k);
            p.scale(&mut b.q, self.f_attention_scale, q_dim);
            // kqv_out: softmax(cap·tanh(Q·K/cap) + mask)·V over the cache (window on local
            // layers)                                                  kqv: [n][n_head·head_v]
            p.attn_with(
                il,
                kq,
                AttnExtra { softcap: Some(self.attn_softcap), ..Default::default() },
                &b.q,
                &b.k,
                &b.v,
                &mut b.kqv,
            );
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
        // result_norm, result_output through token_embd, final logit soft-capping
        //                                                           logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.tok_embd, Some(self.final_softcap), &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        blocks::dense_matrices(self.layers.iter().map(|l| (&l.attn, &l.ffn)), self.tok_embd)
    }

    fn max_n_ff(&self) -> usize {
        blocks::max_n_ff(self.layers.iter().map(|l| &l.ffn))
    }
}
