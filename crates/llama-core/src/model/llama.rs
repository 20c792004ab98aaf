//! LLaMA (1/2/3, GQA) and Qwen2 forward pass. Qwen2 differs only by q/k/v biases and NeoX rope,
//! both carried by the weights/hparams. Stage names follow llama.cpp's llm_build_llama.

use super::attention::{attention, AttnShape};
use super::context::{Context, Outputs};
use super::kv_cache::KvStore;
use super::Model;
use crate::kernels::elementwise::{self, Rope};
use crate::kernels::parallel;

pub(super) fn forward(m: &Model, c: &mut Context, tokens: &[u32], pos0: usize, out: Outputs) {
    let hp = m.hparams();
    let w = &m.weights;
    let n = tokens.len();
    let (n_embd, hd_k) = (hp.n_embd, hp.n_embd_head_k);
    let rope = Rope {
        n_rot: hp.n_rot,
        freq_base: hp.rope_freq_base,
        freq_scale: hp.rope_freq_scale,
        kind: hp.rope_type,
        freq_factors: w.rope_freqs.as_deref(),
    };
    // inp_embd
    c.embed(m, tokens);
    for (il, l) in w.layers.iter().enumerate() {
        let b = &mut c.buf;
        // attn_norm
        parallel::rms_norm(&c.pool, &mut b.cur[..n * n_embd], &b.x[..n * n_embd], &l.attn_norm, hp.rms_eps);
        // Qcur, Kcur, Vcur
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wq), &b.cur, n, &mut b.q);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wk), &b.cur, n, &mut b.k);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wv), &b.cur, n, &mut b.v);
        let (qd, kd, vd) = (l.wq.rows, l.wk.rows, l.wv.rows);
        if let Some(bq) = &l.bq {
            parallel::add_bias(&c.pool, &mut b.q[..n * qd], bq);
        }
        if let Some(bk) = &l.bk {
            parallel::add_bias(&c.pool, &mut b.k[..n * kd], bk);
        }
        if let Some(bv) = &l.bv {
            parallel::add_bias(&c.pool, &mut b.v[..n * vd], bv);
        }
        parallel::rope(&c.pool, &rope, &mut b.q[..n * qd], qd, hd_k, pos0);
        parallel::rope(&c.pool, &rope, &mut b.k[..n * kd], kd, hd_k, pos0);
        c.kv.store(il, pos0, &b.k[..n * kd], &b.v[..n * vd]);
        // kqv
        let shape = AttnShape {
            n_tokens: n,
            pos0,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_k: hd_k,
            head_v: hp.n_embd_head_v,
            kq_scale: hp.f_attention_scale,
            n_swa: 0,
        };
        match &c.kv.store {
            KvStore::F16(kv) => attention(&c.pool, &c.attn, &kv[il], &b.q[..n * qd], &mut b.kqv, shape),
            KvStore::F32(kv) => attention(&c.pool, &c.attn, &kv[il], &b.q[..n * qd], &mut b.kqv, shape),
        }
        // attn_out, ffn_inp
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wo), &b.kqv, n, &mut b.proj);
        parallel::add_inplace(&c.pool, &mut b.x[..n * n_embd], &b.proj[..n * n_embd], n_embd);
        // ffn_norm
        parallel::rms_norm(&c.pool, &mut b.cur[..n * n_embd], &b.x[..n * n_embd], &l.ffn_norm, hp.rms_eps);
        // ffn_gate, ffn_up, ffn_swiglu, ffn_down → ffn_out
        let n_ff = l.ffn_gate.rows;
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_gate), &b.cur, n, &mut b.gate);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_up), &b.cur, n, &mut b.up);
        parallel::swiglu_inplace(&c.pool, &mut b.gate[..n * n_ff], &b.up[..n * n_ff], n_ff);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_down), &b.gate, n, &mut b.proj);
        // l_out
        parallel::add_inplace(&c.pool, &mut b.x[..n * n_embd], &b.proj[..n * n_embd], n_embd);
    }
    output(m, c, out);
}

/// result_norm and result_output for the rows that need logits.
pub(super) fn output(m: &Model, c: &mut Context, out: Outputs) {
    if out.n_rows == 0 {
        return;
    }
    let hp = m.hparams();
    let w = &m.weights;
    let (n_embd, n_vocab) = (hp.n_embd, hp.n_vocab);
    let b = &mut c.buf;
    let rows = out.first_row * n_embd..(out.first_row + out.n_rows) * n_embd;
    // result_norm
    elementwise::rms_norm(&mut b.cur[..out.n_rows * n_embd], &b.x[rows], &w.output_norm, hp.rms_eps);
    // result_output
    let dst = &mut c.logits[out.dst_row * n_vocab..(out.dst_row + out.n_rows) * n_vocab];
    Context::mm(&c.pool, &mut c.mm, &m.qt(&w.output), &b.cur, out.n_rows, dst);
    if let Some(cap) = hp.final_logit_softcap {
        elementwise::softcap_inplace(dst, cap);
    }
}
