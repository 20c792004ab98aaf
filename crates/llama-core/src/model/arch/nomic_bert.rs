//! `nomic-bert`: nomic-embed-text (v1, v1.5) and its kin (llama.cpp's src/models/nomic-bert.cpp,
//! over the BERT graph of src/models/bert.cpp). BERT's post-norm encoder blocks with three changes:
//! no learned positions but rope on Q and K (NeoX pairs, the file's base), one fused Q/K/V
//! projection (`attn_qkv`), and a SwiGLU feed-forward (`ffn_gate`, `ffn_up`, `ffn_down`) in place
//! of BERT's GELU one. Token type 0 is added to every token (llama.cpp's "Sentence A"); the last
//! layer's output is the embedding (`t_embd`), pooled by the context.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::RopeType;
use crate::model::blocks::{self, Act, AttnFused, Ffn, KqParams, LayerNorm};
use crate::model::context::Context;
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

struct Layer {
    attn: AttnFused,           // attn_qkv (+ bias): [3·n_embd][n_embd], attn_output: [n_embd][n_embd]
    bo: Option<Vec<f32>>,      // [n_embd] attn_output.bias, when the checkpoint has one
    attn_out_norm: LayerNorm,  // [n_embd] attn_output_norm
    ffn: Ffn,                  // gate, up: [n_ff][n_embd], down: [n_embd][n_ff]
    layer_out_norm: LayerNorm, // [n_embd] layer_output_norm
}

struct NomicBert {
    tok_embd: WRef,      // [n_vocab][n_embd]
    type_embd: Vec<f32>, // [n_embd] row 0 of token_types (every token is type 0)
    tok_norm: LayerNorm, // [n_embd] token_embd_norm
    layers: Vec<Layer>,
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let l = Loader::new(f);
    let n_embd = hp.n_embd;
    let (tok_embd, type_embd, tok_norm) = super::bert::load_inputs(&l, hp)?;
    let layers = (0..hp.n_layer)
        .map(|il| {
            let n = |s: &str| format!("blk.{il}.{s}");
            Ok(Layer {
                attn: AttnFused::load(&l, hp, il)?,
                bo: l.opt_vector(&n("attn_output.bias"), n_embd)?,
                attn_out_norm: LayerNorm::load(&l, &n("attn_output_norm"), n_embd)?,
                ffn: Ffn::load(&l, hp, il)?,
                layer_out_norm: LayerNorm::load(&l, &n("layer_output_norm"), n_embd)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(NomicBert { tok_embd, type_embd, tok_norm, layers }))
}

impl Network for NomicBert {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let rope = hp.rope(RopeType::Neox);
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inp_embd + token type 0                                      x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        p.add_bias(&mut b.x, &self.type_embd);
        // embed norm (LayerNorm)                                       cur: [n][n_embd]
        p.layer_norm(&self.tok_norm, &b.x, &mut b.cur);
        std::mem::swap(&mut b.x, &mut b.cur);
        for (il, l) in self.layers.iter().enumerate() {
            // wqkv = x · wqkvᵀ (+ bias) into `up` (free until the FFN), split into Qcur, Kcur,
            // Vcur                                           q, k, v: [n][n_head(_kv)·head_k/v]
            p.qkv_fused(&l.attn, &b.x, &mut b.up, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX): the encoder's only positions
            p.rope(&rope, &mut b.q, &mut b.k);
            // kqv_out: every token over its whole sequence (no causal mask)  kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ (+ bo)                           proj: [n][n_embd]
            p.matmul(&l.attn.wo, &b.kqv, &mut b.proj);
            if let Some(bo) = &l.bo {
                p.add_bias(&mut b.proj, bo);
            }
            // re-add the layer input, then attn_output_norm: ffn_inp       cur: [n][n_embd]
            p.add(&mut b.proj, &b.x);
            p.layer_norm(&l.attn_out_norm, &b.proj, &mut b.cur);
            // ffn_out = ffn_down(silu(ffn_gate(cur)) · ffn_up(cur))  gate, up: [n][n_ff],
            //                                                          proj: [n][n_embd]
            p.ffn(&l.ffn, Act::Silu, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
            // ffn_out + ffn_inp, then layer_output_norm: the next layer's inpL  x: [n][n_embd]
            p.add(&mut b.proj, &b.cur);
            p.layer_norm(&l.layer_out_norm, &b.proj, &mut b.x);
        }
        // t_embd: the last layer's output, pooled by the context
        p.output_embd(&b.x);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        self.layers.iter().flat_map(|l| [l.attn.wqkv, l.attn.wo, l.ffn.gate, l.ffn.up, l.ffn.down]).collect()
    }

    /// The widest of the FFN and the fused Q/K/V product, which is computed in the `up` buffer
    /// this sizes.
    fn max_n_ff(&self) -> usize {
        self.layers.iter().map(|l| l.ffn.gate.rows.max(l.attn.wqkv.rows)).max().unwrap_or(0)
    }

    fn embeddings_only(&self) -> bool {
        true
    }
}
