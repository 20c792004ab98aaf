//! `qwen3`: Qwen3 dense (llama.cpp's src/models/qwen3.cpp). Qwen2's block without the Q/K/V
//! biases and with a per-head RMS norm on Q and K (`attn_q_norm`, `attn_k_norm`) before the NeoX
//! rope; SiLU-gated FFN; the output matrix may be tied to the token embedding.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{Rope, RopeType};
use crate::model::blocks::{self, Act, Ffn, KqParams, Qkv};
use crate::model::context::{Context, Outputs};
use crate::model::hparams::HParams;
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::Result;

struct Qwen3 {
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] `output.weight`, or token_embd when tied
}

struct Layer {
    attn_norm: Vec<f32>,   // [n_embd]
    wq: WRef,              // [n_head·head_k][n_embd]
    wk: WRef,              // [n_head_kv·head_k][n_embd]
    wv: WRef,              // [n_head_kv·head_v][n_embd]
    attn_q_norm: Vec<f32>, // [head_k]
    attn_k_norm: Vec<f32>, // [head_k]
    wo: WRef,              // [n_embd][n_head·head_v]
    ffn_norm: Vec<f32>,    // [n_embd]
    ffn_gate: WRef,        // [n_ff][n_embd]
    ffn_up: WRef,          // [n_ff][n_embd]
    ffn_down: WRef,        // [n_embd][n_ff]
}

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let l = Loader::new(f);
    let n_embd = hp.n_embd;
    let tok_embd = l.matrix("token_embd.weight", None, n_embd)?;
    let n_vocab = tok_embd.rows;
    let output = l.opt_matrix("output.weight", Some(n_vocab), n_embd)?.unwrap_or(tok_embd);
    let (q_rows, k_rows, v_rows) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
    let mut layers = Vec::with_capacity(hp.n_layer);
    for il in 0..hp.n_layer {
        let n = |s: &str| format!("blk.{il}.{s}");
        let ffn_gate = l.matrix(&n("ffn_gate.weight"), None, n_embd)?;
        let n_ff = ffn_gate.rows; // per layer: the tensor decides
        layers.push(Layer {
            attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
            wq: l.matrix(&n("attn_q.weight"), Some(q_rows), n_embd)?,
            wk: l.matrix(&n("attn_k.weight"), Some(k_rows), n_embd)?,
            wv: l.matrix(&n("attn_v.weight"), Some(v_rows), n_embd)?,
            attn_q_norm: l.vector(&n("attn_q_norm.weight"), hp.n_embd_head_k)?,
            attn_k_norm: l.vector(&n("attn_k_norm.weight"), hp.n_embd_head_k)?,
            wo: l.matrix(&n("attn_output.weight"), Some(n_embd), hp.n_head * hp.n_embd_head_v)?,
            ffn_norm: l.vector(&n("ffn_norm.weight"), n_embd)?,
            ffn_gate,
            ffn_up: l.matrix(&n("ffn_up.weight"), Some(n_ff), n_embd)?,
            ffn_down: l.matrix(&n("ffn_down.weight"), Some(n_embd), n_ff)?,
        });
    }
    let output_norm = l.vector("output_norm.weight", n_embd)?;
    Ok(Box::new(Qwen3 { tok_embd, layers, output_norm, output }))
}

impl Network for Qwen3 {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32], pos0: usize, out: Outputs) {
        let (mut p, b) = blocks::begin(m, c, tokens.len(), pos0);
        let hp = p.hp;
        let rope = Rope {
            n_rot: hp.n_rot,
            freq_base: hp.rope_freq_base,
            freq_scale: hp.rope_freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
        };
        let kq = KqParams { kq_scale: 1.0 / (hp.n_embd_head_k as f32).sqrt(), n_swa: 0 };

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // Qcur, Kcur, Vcur = cur · wᵀ, then Qcur_normed, Kcur_normed per head
            //                                                q, k, v: [n][n_head(_kv)·head_k/v]
            let qk_norm = Some([&l.attn_q_norm[..], &l.attn_k_norm[..]]);
            let w = Qkv { wq: &l.wq, wk: &l.wk, wv: &l.wv, bias: None, qk_norm };
            p.qkv(&w, &b.cur, &mut b.q, &mut b.k, &mut b.v);
            // rope on split halves (NeoX): Qwen3's checkpoints are not permuted
            p.rope(&rope, &mut b.q, &mut b.k);
            // kqv_out: attention over the cache (K/V stored first)       kqv: [n][n_head·head_v]
            p.attn(il, kq, &b.q, &b.k, &b.v, &mut b.kqv);
            // attn_out = kqv_out · woᵀ                                 proj: [n][n_embd]
            p.matmul(&l.wo, &b.kqv, &mut b.proj);
            // ffn_inp = attn_out + inpL                                 x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
            // ffn_norm                                                 cur: [n][n_embd]
            p.norm(&l.ffn_norm, &b.x, &mut b.cur);
            // ffn_out = ffn_down(silu(ffn_gate) ⊙ ffn_up)   gate, up: [n][n_ff], proj: [n][n_embd]
            let w = Ffn { gate: &l.ffn_gate, up: &l.ffn_up, down: &l.ffn_down };
            p.ffn(&w, Act::Silu, &b.cur, &mut b.gate, &mut b.up, &mut b.proj);
            // l_out = ffn_out + ffn_inp: the next layer's inpL           x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output                               logits: [n_out][n_vocab]
        p.output(out, &self.output_norm, &self.output, None, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        let mut v: Vec<WRef> =
            self.layers.iter().flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down]).collect();
        v.push(self.output);
        v
    }

    fn max_n_ff(&self) -> usize {
        self.layers.iter().map(|l| l.ffn_gate.rows).max().unwrap_or(0)
    }
}
