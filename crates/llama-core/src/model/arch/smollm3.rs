//! `smollm3`: SmolLM3 (llama.cpp's src/models/smollm3.cpp). The llama block — RMSNorm → attention
//! → residual → RMSNorm → SwiGLU FFN → residual, rope on adjacent pairs (the converter permuted
//! Q/K rows) — except that every 4th layer has no rope at all (NoPE); the output matrix may be
//! tied to the token embedding.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::RopeType;
use crate::model::blocks::{self, Act, AttnOpts, DenseLayer, KqParams};
use crate::model::context::Context;
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

/// llama.cpp's `n_no_rope_layer_step` (not in the file: fixed for the architecture): layer il
/// (0-based) skips rope when il + 1 is a multiple of it.
const NO_ROPE_LAYER_STEP: usize = 4;

struct SmolLm3 {
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<DenseLayer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
}

/// True when layer `il` rotates Q and K.
fn uses_rope(il: usize) -> bool {
    !(il + 1).is_multiple_of(NO_ROPE_LAYER_STEP)
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    // llama.cpp asserts these: every head dimension is rotated.
    if hp.n_embd_head_k != hp.n_embd_head_v || hp.n_rot != hp.n_embd_head_k {
        return Err(Error::Model(format!(
            "smollm3 needs key_length = value_length = rope.dimension_count, got {}, {}, {}",
            hp.n_embd_head_k, hp.n_embd_head_v, hp.n_rot
        )));
    }
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let opts = AttnOpts { bias: false, qk_norm: false };
    let layers = (0..hp.n_layer).map(|il| DenseLayer::load(&l, hp, il, opts)).collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", hp.n_embd)?;
    Ok(Box::new(SmolLm3 { tok_embd, layers, output_norm, output }))
}

impl Network for SmolLm3 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let rope = hp.rope(RopeType::Norm);
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur                         q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv(&l.attn, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on adjacent pairs, except on the NoPE layers (position only through the mask)
            if uses_rope(il) {
                p.rope(&rope, &mut b.q, &mut b.k);
            }
            // kqv_out: attention over the cache (K/V stored first)       kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ                                 proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            // ffn_inp = attn_out + inpSA                                x: [n][n_embd]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fourth_layer_has_no_rope() {
        // SmolLM3-3B's config: no_rope_layers = [1, 1, 1, 0, 1, 1, 1, 0, …] over 36 layers.
        let pattern: Vec<bool> = (0..8).map(uses_rope).collect();
        assert_eq!(pattern, [true, true, true, false, true, true, true, false]);
    }
}
