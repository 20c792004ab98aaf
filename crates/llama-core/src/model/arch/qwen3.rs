//! `qwen3`: Qwen3 dense (llama.cpp's src/models/qwen3.cpp). Qwen2's block without the Q/K/V
//! biases and with a per-head RMS norm on Q and K (`attn_q_norm`, `attn_k_norm`) before the NeoX
//! rope; SiLU-gated FFN; the output matrix may be tied to the token embedding.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::RopeType;
use crate::model::blocks::{self, Act, AttnOpts, DenseLayer, KqParams};
use crate::model::context::Context;
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

struct Qwen3 {
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<DenseLayer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let opts = AttnOpts { bias: false, qk_norm: true };
    let layers = (0..hp.n_layer).map(|il| DenseLayer::load(&l, hp, il, opts)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(Qwen3 { tok_embd, layers, output_norm, output }))
}

impl Network for Qwen3 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let rope = hp.rope(RopeType::Neox);
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur = cur · wᵀ, then Qcur_normed, Kcur_normed per head
            //                                                q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX): Qwen3's checkpoints are not permuted
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
