//! Gemma 3 forward pass (llama.cpp's llm_build_gemma3_iswa): embeddings scaled by sqrt(n_embd),
//! per-head RMS q/k norms, norms after attention and FFN as well as before, GELU-gated FFN,
//! queries scaled by 1/sqrt(key_length) before attention (kq scale 1), local layers with a
//! sliding window and rope base 10000 (every 6th layer is global), tied output embeddings.
//! The GGUF converter already stores Gemma's RMSNorm weights as (1 + w).

use super::attention::{attention, AttnShape};
use super::context::{Context, Outputs};
use super::kv_cache::KvStore;
use super::llama::output;
use super::Model;
use crate::kernels::elementwise::Rope;
use crate::kernels::parallel;

pub(super) fn forward(m: &Model, c: &mut Context, tokens: &[u32], pos0: usize, out: Outputs) {
    let hp = m.hparams();
    let w = &m.weights;
    let n = tokens.len();
    let (n_embd, hd_k) = (hp.n_embd, hp.n_embd_head_k);
    // inp_embd, inp_scaled
    c.embed(m, tokens);
    parallel::scale_inplace(&c.pool, &mut c.buf.x[..n * n_embd], (n_embd as f32).sqrt(), n_embd);
    for (il, l) in w.layers.iter().enumerate() {
        let swa = hp.is_swa(il);
        let rope = Rope {
            n_rot: hp.n_rot,
            freq_base: if swa { hp.rope_freq_base_swa } else { hp.rope_freq_base },
            freq_scale: if swa { 1.0 } else { hp.rope_freq_scale },
            kind: hp.rope_type,
            freq_factors: None,
        };
        let b = &mut c.buf;
        let (qd, kd, vd) = (l.wq.rows, l.wk.rows, l.wv.rows);
        // attn_norm
        parallel::rms_norm(&c.pool, &mut b.cur[..n * n_embd], &b.x[..n * n_embd], &l.attn_norm, hp.rms_eps);
        // Qcur, Kcur, Vcur
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wq), &b.cur, n, &mut b.q);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wk), &b.cur, n, &mut b.k);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wv), &b.cur, n, &mut b.v);
        // Qcur_normed, Kcur_normed (per head), rope, then Q * f_attention_scale
        let (qn, kn) = (l.attn_q_norm.as_deref().unwrap_or(&[]), l.attn_k_norm.as_deref().unwrap_or(&[]));
        parallel::rms_norm_inplace(&c.pool, &mut b.q[..n * qd], qn, hp.rms_eps);
        parallel::rms_norm_inplace(&c.pool, &mut b.k[..n * kd], kn, hp.rms_eps);
        parallel::rope(&c.pool, &rope, &mut b.q[..n * qd], qd, hd_k, pos0);
        parallel::rope(&c.pool, &rope, &mut b.k[..n * kd], kd, hd_k, pos0);
        parallel::scale_inplace(&c.pool, &mut b.q[..n * qd], hp.f_attention_scale, qd);
        c.kv.store(il, pos0, &b.k[..n * kd], &b.v[..n * vd]);
        // kqv
        let shape = AttnShape {
            n_tokens: n,
            pos0,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_k: hd_k,
            head_v: hp.n_embd_head_v,
            kq_scale: 1.0,
            n_swa: if swa { hp.n_swa } else { 0 },
        };
        match &c.kv.store {
            KvStore::F16(kv) => attention(&c.pool, &c.attn, &kv[il], &b.q[..n * qd], &mut b.kqv, shape),
            KvStore::F32(kv) => attention(&c.pool, &c.attn, &kv[il], &b.q[..n * qd], &mut b.kqv, shape),
        }
        // attn_out, attn_post_norm, sa_out
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.wo), &b.kqv, n, &mut b.proj);
        let post = l.post_attention_norm.as_deref().unwrap_or(&[]);
        parallel::rms_norm_inplace(&c.pool, &mut b.proj[..n * n_embd], post, hp.rms_eps);
        parallel::add_inplace(&c.pool, &mut b.x[..n * n_embd], &b.proj[..n * n_embd], n_embd);
        // ffn_norm
        parallel::rms_norm(&c.pool, &mut b.cur[..n * n_embd], &b.x[..n * n_embd], &l.ffn_norm, hp.rms_eps);
        // ffn_gate, ffn_up, ffn_geglu, ffn_down, ffn_post_norm
        let n_ff = l.ffn_gate.rows;
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_gate), &b.cur, n, &mut b.gate);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_up), &b.cur, n, &mut b.up);
        parallel::geglu_inplace(&c.pool, &mut b.gate[..n * n_ff], &b.up[..n * n_ff], n_ff);
        Context::mm(&c.pool, &mut c.mm, &m.qt(&l.ffn_down), &b.gate, n, &mut b.proj);
        let post = l.post_ffw_norm.as_deref().unwrap_or(&[]);
        parallel::rms_norm_inplace(&c.pool, &mut b.proj[..n * n_embd], post, hp.rms_eps);
        // l_out
        parallel::add_inplace(&c.pool, &mut b.x[..n * n_embd], &b.proj[..n * n_embd], n_embd);
    }
    output(m, c, out);
}
