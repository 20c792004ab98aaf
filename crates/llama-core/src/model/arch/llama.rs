//! `llama`: LLaMA 1/2/3 (GQA) and what converters write under that name (Mistral, SmolLM, …);
//! llama.cpp's src/models/llama.cpp. Pre-norm blocks: RMSNorm → attention with rope on adjacent
//! pairs (the converter permuted Q/K rows for it) → residual → RMSNorm → SwiGLU FFN → residual.
//! Its own: llama3's per-pair rope frequency divisors (`rope_freqs.weight`), and an output matrix
//! that may be tied to the token embedding. Linear and YaRN rope scaling come with the shared
//! hyper-parameters (`hp.rope`). Like llama.cpp's llama graph it attends to every earlier position:
//! a Mistral checkpoint's `sliding_window` is not part of the file.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Act, AttnOpts, DenseLayer, KqParams};
use crate::model::context::Context;
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

struct Llama {
    tok_embd: WRef,               // [n_vocab][n_embd]
    rope_freqs: Option<Vec<f32>>, // [n_rot/2] llama3 frequency divisors, when the file has them
    layers: Vec<DenseLayer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let rope_freqs = l.opt_vector("rope_freqs.weight", hp.n_rot / 2)?;
    let opts = AttnOpts { bias: false, qk_norm: false };
    let layers = (0..hp.n_layer).map(|il| DenseLayer::load(&l, hp, il, opts)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Llama { tok_embd, rope_freqs, layers, output_norm, output }))
}

impl Network for Llama {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let rope = Rope { freq_factors: self.rope_freqs.as_deref(), ..hp.rope(RopeType::Norm) };
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur                         q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on adjacent pairs (the converter permuted Q/K rows to match)
            p.rope(&rope, &mut b.q, &mut b.k);
            // kqv_out: attention over the cache (K/V stored first)       kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ                                 proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            // ffn_inp = attn_out + inpL                                 x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // ffn_norm                                                 cur: [n][n_embd]
            p.norm(&l.ffn_norm, &b.x, &mut b.cur);
            // ffn_out = ffn_down(silu(ffn_gate) ⊙ ffn_up)   gate, up: [n][n_ff], proj: [n][n_embd]
            p.ffn(&l.ffn, Act::Silu, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
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
        blocks::dense_matrices(self.layers.iter().map(|l| (&l.attn, &l.ffn)), self.output)
    }

    fn max_n_ff(&self) -> usize {
        blocks::max_n_ff(self.layers.iter().map(|l| &l.ffn))
    }
}
