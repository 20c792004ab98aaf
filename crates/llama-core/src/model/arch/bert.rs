//! `bert`: BERT encoders for sentence embeddings (all-MiniLM, bge, e5 …; llama.cpp's
//! src/models/bert.cpp). Token + token-type (type 0) + learned absolute position embeddings,
//! LayerNorm'd; post-norm blocks: self-attention without a causal mask (every token sees its whole
//! sequence) with biased projections, then a sequential GELU feed-forward, each added to its input
//! and LayerNorm'd. No output matrix: the last layer's output is the embedding (`t_embd`), pooled
//! by the context.

use super::Network;
use crate::gguf::GgufFile;
use crate::model::blocks::{self, KqParams, LayerNorm, Linear};
use crate::model::context::Context;
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

struct Layer {
    wq: Linear,                // [n_embd][n_embd] + [n_embd]
    wk: Linear,                // [n_embd_k_gqa][n_embd] + bias
    wv: Linear,                // [n_embd_v_gqa][n_embd] + bias
    wo: Linear,                // [n_embd][n_embd] + bias
    attn_out_norm: LayerNorm,  // [n_embd] attn_output_norm
    ffn_up: Linear,            // [n_ff][n_embd] + bias
    ffn_down: Linear,          // [n_embd][n_ff] + bias
    layer_out_norm: LayerNorm, // [n_embd] layer_output_norm
}

struct Bert {
    tok_embd: WRef,      // [n_vocab][n_embd]
    type_embd: Vec<f32>, // [n_embd] row 0 of token_types (llama.cpp gives every token type 0)
    pos_embd: WRef,      // [n_pos][n_embd] position_embd
    tok_norm: LayerNorm, // [n_embd] token_embd_norm
    layers: Vec<Layer>,
}

/// What every BERT-family encoder reads its tokens through: `token_embd` [n_vocab][n_embd], row 0
/// of `token_types` (llama.cpp gives every token type 0; zeros without the tensor) and
/// `token_embd_norm`; refused when the file says the model is causal.
pub(super) fn load_inputs(l: &Loader, hp: &HParams) -> Result<(WRef, Vec<f32>, LayerNorm)> {
    if hp.causal {
        return Err(Error::Model(format!(
            "{}.attention.causal is true: BERT-family encoders attend both ways",
            hp.arch.name()
        )));
    }
    let n_embd = hp.n_embd;
    let tok_embd = l.matrix("token_embd.weight", None, n_embd)?;
    let type_embd = match l.opt_matrix("token_types.weight", None, n_embd)? {
        Some(w) => l.small_matrix("token_types.weight", w.rows, n_embd)?[..n_embd].to_vec(),
        None => vec![0.0; n_embd],
    };
    Ok((tok_embd, type_embd, LayerNorm::load(l, "token_embd_norm", n_embd)?))
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let l = Loader::new(f);
    let n_embd = hp.n_embd;
    let (tok_embd, type_embd, tok_norm) = load_inputs(&l, hp)?;
    let pos_embd = l.matrix("position_embd.weight", None, n_embd)?;
    let (kd, vd) = (hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
    let layers = (0..hp.n_layer)
        .map(|il| {
            let n = |s: &str| format!("blk.{il}.{s}");
            let ffn_up = Linear::load(&l, &n("ffn_up"), None, n_embd)?;
            Ok(Layer {
                wq: Linear::load(&l, &n("attn_q"), Some(hp.n_head * hp.n_embd_head_k), n_embd)?,
                wk: Linear::load(&l, &n("attn_k"), Some(kd), n_embd)?,
                wv: Linear::load(&l, &n("attn_v"), Some(vd), n_embd)?,
                wo: Linear::load(&l, &n("attn_output"), Some(n_embd), hp.n_head * hp.n_embd_head_v)?,
                attn_out_norm: LayerNorm::load(&l, &n("attn_output_norm"), n_embd)?,
                ffn_down: Linear::load(&l, &n("ffn_down"), Some(n_embd), ffn_up.w.rows)?,
                ffn_up,
                layer_out_norm: LayerNorm::load(&l, &n("layer_output_norm"), n_embd)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Bert { tok_embd, type_embd, pos_embd, tok_norm, layers }))
}

impl Network for Bert {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let hp = p.hp;
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inp_embd + token type 0 + position_embd[pos]                 x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        p.add_bias(&mut b.x, &self.type_embd);
        p.add_pos_embd(&self.pos_embd, &mut b.x);
        // embed norm (LayerNorm)                                       cur: [n][n_embd]
        p.layer_norm(&self.tok_norm, &b.x, &mut b.cur);
        std::mem::swap(&mut b.x, &mut b.cur);
        for (il, l) in self.layers.iter().enumerate() {
            // Qcur, Kcur, Vcur = x · wᵀ + b            q, k, v: [n][n_head(_kv)·head_k/v]
            p.linear(&l.wq, &b.x, &mut b.q);
            p.linear(&l.wk, &b.x, &mut b.k);
            p.linear(&l.wv, &b.x, &mut b.v);
            // kqv_out: every token over its whole sequence (no causal mask)  kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ + bo                              proj: [n][n_embd]
            p.linear(&l.wo, &b.kqv, &mut b.proj);
            // re-add the layer input, then attn_output_norm: ffn_inp       cur: [n][n_embd]
            p.add(&mut b.proj, &b.x);
            p.layer_norm(&l.attn_out_norm, &b.proj, &mut b.cur);
            // ffn_out = ffn_down(gelu(ffn_up(cur)))           up: [n][n_ff], proj: [n][n_embd]
            p.ffn_seq_gelu(&l.ffn_up, &l.ffn_down, &b.cur, &mut b.up, &mut b.proj);
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
        self.layers.iter().flat_map(|l| [l.wq.w, l.wk.w, l.wv.w, l.wo.w, l.ffn_up.w, l.ffn_down.w]).collect()
    }

    fn max_n_ff(&self) -> usize {
        self.layers.iter().map(|l| l.ffn_up.w.rows).max().unwrap_or(0)
    }

    fn embeddings_only(&self) -> bool {
        true
    }

    fn n_pos_max(&self) -> Option<usize> {
        Some(self.pos_embd.rows)
    }
}
