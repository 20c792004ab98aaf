//! The stages the families' forwards are written with, under llama.cpp's names (llama-graph.cpp's
//! `build_norm`, `build_attn`, `build_ffn`; the `cb(cur, "…", il)` names of src/models/*.cpp):
//! `inp_embd`, `norm` (attn_norm, ffn_norm, post norms), `qkv` (Qcur/Kcur/Vcur with optional bias
//! and per-head q/k norm), `rope` (normal or NeoX, as the `Rope` says), `attn` (kqv_out),
//! `matmul` (attn_out …), `add` (ffn_inp, l_out), gated `ffn` (SiLU or GELU), `output`
//! (result_norm, result_output).
//!
//! A [`Pass`] is one batch of `n` tokens at positions `pos0..pos0+n`: it holds what the stages
//! share (the model's tensors, the thread pool, matmul and attention scratch, the KV cache, the
//! logits) while the family's forward names the activation buffers (`Buffers`, sized for n_batch
//! rows; every stage uses their first `n` rows). Stages write into the buffers they are given:
//! nothing here allocates or copies an activation.

use std::sync::Mutex;

use super::attention::{attention, AttnScratch, AttnShape};
use super::context::{Buffers, Context, Outputs};
use super::hparams::HParams;
use super::kv_cache::{KvCache, KvStore};
use super::weights::WRef;
use super::Model;
use crate::kernels::elementwise::{self, Rope};
use crate::kernels::{matmul, parallel, MatmulScratch, ThreadPool};
use crate::quant::dequantize_row;

/// One batch through the network: the context's shared state, borrowed for the forward.
pub(super) struct Pass<'a> {
    m: &'a Model,
    pub hp: &'a HParams,
    pool: &'a ThreadPool,
    mm: &'a mut MatmulScratch,
    attn: &'a [Mutex<AttnScratch>],
    kv: &'a mut KvCache,
    logits: &'a mut [f32],
    /// Tokens in this batch, and the position of the first.
    pub n: usize,
    pub pos0: usize,
}

/// Splits the context into the pass (shared state) and the activation buffers it fills.
pub(super) fn begin<'a>(m: &'a Model, c: &'a mut Context, n: usize, pos0: usize) -> (Pass<'a>, &'a mut Buffers) {
    let pass = Pass {
        m,
        hp: m.hparams(),
        pool: &c.pool,
        mm: &mut c.mm,
        attn: &c.attn,
        kv: &mut c.kv,
        logits: &mut c.logits,
        n,
        pos0,
    };
    (pass, &mut c.buf)
}

/// The attention input weights of one layer, as the family lends them to `qkv`.
pub(super) struct Qkv<'w> {
    pub wq: &'w WRef, // [n_head·head_k][n_embd]
    pub wk: &'w WRef, // [n_head_kv·head_k][n_embd]
    pub wv: &'w WRef, // [n_head_kv·head_v][n_embd]
    /// bq, bk, bv ([n_head·head_k], [n_head_kv·head_k], [n_head_kv·head_v]), when the
    /// family's projections have biases.
    pub bias: Option<[&'w [f32]; 3]>,
    /// attn_q_norm, attn_k_norm ([head_k], applied to every head), when
    /// the family normalizes Q and K per head.
    pub qk_norm: Option<[&'w [f32]; 2]>,
}

/// Attention parameters that vary by family and layer.
#[derive(Clone, Copy)]
pub(super) struct KqParams {
    /// Multiplier of Q·K (1/sqrt(head_k) unless the family scales Q itself).
    pub kq_scale: f32,
    /// Sliding window in positions (0 = every earlier position).
    pub n_swa: usize,
}

/// A gated feed-forward's weights (llama.cpp's `build_ffn` with `LLM_FFN_PAR`).
pub(super) struct Ffn<'w> {
    pub gate: &'w WRef, // [n_ff][n_embd]
    pub up: &'w WRef,   // [n_ff][n_embd]
    pub down: &'w WRef, // [n_embd][n_ff]
}

/// The gate's activation: `LLM_FFN_SILU` (SwiGLU) or `LLM_FFN_GELU` (GeGLU, tanh approximation).
#[derive(Clone, Copy)]
pub(super) enum Act {
    Silu,
    Gelu,
}

// A mixture-of-experts FFN (llama.cpp's `build_moe_ffn`: router logits → top-k experts → their
// gated FFNs weighted and summed) goes next to `ffn`, with its weights struct next to `Ffn`.

impl Pass<'_> {
    /// inp_embd: `x[t] = token_embd[tokens[t]]` (ggml get_rows: dequantized to f32).
    /// x: [n][n_embd]
    pub fn inp_embd(&self, tok_embd: &WRef, tokens: &[u32], x: &mut [f32]) {
        let w = self.m.qt(tok_embd);
        let row_bytes = w.data.len() / w.rows;
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            dequantize_row(
                w.ggml_type,
                &w.data[id * row_bytes..(id + 1) * row_bytes],
                &mut x[t * w.cols..(t + 1) * w.cols],
            )
            .expect("embedding type validated at load");
        }
    }

    /// `dst = rms_norm(src) · w`, rows of `w.len()` (attn_norm, ffn_norm).
    pub fn norm(&self, w: &[f32], src: &[f32], dst: &mut [f32]) {
        let len = self.n * w.len();
        parallel::rms_norm(self.pool, &mut dst[..len], &src[..len], w, self.hp.rms_eps);
    }

    /// `x = rms_norm(x) · w` in place, rows of `w.len()` (post norms: attn_post_norm,
    /// ffn_post_norm).
    pub fn norm_inplace(&self, w: &[f32], x: &mut [f32]) {
        parallel::rms_norm_inplace(self.pool, &mut x[..self.n * w.len()], w, self.hp.rms_eps);
    }

    /// `out = x · wᵀ`. x: [n][w.cols], out: [n][w.rows]
    pub fn matmul(&mut self, w: &WRef, x: &[f32], out: &mut [f32]) {
        let n = self.n;
        matmul(self.pool, &self.m.qt(w), &x[..n * w.cols], n, &mut out[..n * w.rows], self.mm);
    }

    /// `x += y` on rows of n_embd: the residual adds (ffn_inp, l_out).
    pub fn add(&self, x: &mut [f32], y: &[f32]) {
        let (len, row) = (self.n * self.hp.n_embd, self.hp.n_embd);
        parallel::add_inplace(self.pool, &mut x[..len], &y[..len], row);
    }

    /// `x *= s` on `n` rows of `row` values.
    pub fn scale(&self, x: &mut [f32], s: f32, row: usize) {
        parallel::scale_inplace(self.pool, &mut x[..self.n * row], s, row);
    }

    /// Qcur, Kcur, Vcur = cur · w{q,k,v}ᵀ, then `+ b{q,k,v}`, then (per head) Qcur_normed,
    /// Kcur_normed, in llama.cpp's order. cur: [n][n_embd] → q: [n][n_head·head_k],
    /// k: [n][n_head_kv·head_k], v: [n][n_head_kv·head_v]
    pub fn qkv(&mut self, w: &Qkv, cur: &[f32], q: &mut [f32], k: &mut [f32], v: &mut [f32]) {
        self.matmul(w.wq, cur, q);
        self.matmul(w.wk, cur, k);
        self.matmul(w.wv, cur, v);
        let n = self.n;
        let (qd, kd, vd) = (w.wq.rows, w.wk.rows, w.wv.rows);
        if let Some([bq, bk, bv]) = w.bias {
            parallel::add_bias(self.pool, &mut q[..n * qd], bq);
            parallel::add_bias(self.pool, &mut k[..n * kd], bk);
            parallel::add_bias(self.pool, &mut v[..n * vd], bv);
        }
        if let Some([qn, kn]) = w.qk_norm {
            // Rows of head_k: every head normalized on its own.
            parallel::rms_norm_inplace(self.pool, &mut q[..n * qd], qn, self.hp.rms_eps);
            parallel::rms_norm_inplace(self.pool, &mut k[..n * kd], kn, self.hp.rms_eps);
        }
    }

    /// Rotates Qcur and Kcur in place by their positions (`rope.kind`: adjacent pairs for the
    /// llama graph, split halves for NeoX). q: [n][n_head·head_k], k: [n][n_head_kv·head_k]
    pub fn rope(&self, rope: &Rope, q: &mut [f32], k: &mut [f32]) {
        let (hd, n) = (self.hp.n_embd_head_k, self.n);
        let (qd, kd) = (self.hp.n_head * hd, self.hp.n_embd_k_gqa());
        parallel::rope(self.pool, rope, &mut q[..n * qd], qd, hd, self.pos0);
        parallel::rope(self.pool, rope, &mut k[..n * kd], kd, hd, self.pos0);
    }

    /// kqv_out: stores this batch's Kcur and Vcur in layer `il` of the cache at pos0.., then
    /// `softmax(Q·Kᵀ·kq_scale, causal (and windowed) mask)·V` over every cached position
    /// (`model/attention.rs`). q: [n][n_head·head_k], k: [n][n_head_kv·head_k],
    /// v: [n][n_head_kv·head_v] → kqv: [n][n_head·head_v]
    pub fn attn(&mut self, il: usize, p: KqParams, q: &[f32], k: &[f32], v: &[f32], kqv: &mut [f32]) {
        let hp = self.hp;
        let n = self.n;
        let (qd, kd, vd) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        self.kv.store(il, self.pos0, &k[..n * kd], &v[..n * vd]);
        let shape = AttnShape {
            n_tokens: n,
            pos0: self.pos0,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_k: hp.n_embd_head_k,
            head_v: hp.n_embd_head_v,
            kq_scale: p.kq_scale,
            n_swa: p.n_swa,
        };
        match &self.kv.store {
            KvStore::F16(kv) => attention(self.pool, self.attn, &kv[il], &q[..n * qd], kqv, shape),
            KvStore::F32(kv) => attention(self.pool, self.attn, &kv[il], &q[..n * qd], kqv, shape),
        }
    }

    /// ffn_out = ffn_down(act(ffn_gate(cur)) ⊙ ffn_up(cur)). cur: [n][n_embd] → gate, up:
    /// [n][n_ff] (scratch; `gate` ends as the gated product) → out: [n][n_embd]
    pub fn ffn(&mut self, w: &Ffn, act: Act, cur: &[f32], gate: &mut [f32], up: &mut [f32], out: &mut [f32]) {
        let (n, n_ff) = (self.n, w.gate.rows);
        self.matmul(w.gate, cur, gate);
        self.matmul(w.up, cur, up);
        match act {
            Act::Silu => parallel::swiglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff),
            Act::Gelu => parallel::geglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff),
        }
        self.matmul(w.down, gate, out);
    }

    /// result_norm then result_output (then the soft-cap `cap·tanh(logit/cap)` if given) for the
    /// rows `out` selects, into the context's logits. x: [n][n_embd] → cur: [n_rows][n_embd]
    /// (scratch) → logits[dst_row..][n_vocab]
    pub fn output(&mut self, out: Outputs, norm: &[f32], w: &WRef, softcap: Option<f32>, x: &[f32], cur: &mut [f32]) {
        if out.n_rows == 0 {
            return;
        }
        let (n_embd, n_vocab) = (self.hp.n_embd, self.hp.n_vocab);
        let rows = out.first_row * n_embd..(out.first_row + out.n_rows) * n_embd;
        // result_norm: at most one row unless logits_all, so on this thread.
        elementwise::rms_norm(&mut cur[..out.n_rows * n_embd], &x[rows], norm, self.hp.rms_eps);
        // result_output
        let dst = &mut self.logits[out.dst_row * n_vocab..(out.dst_row + out.n_rows) * n_vocab];
        matmul(self.pool, &self.m.qt(w), &cur[..out.n_rows * w.cols], out.n_rows, dst, self.mm);
        if let Some(cap) = softcap {
            elementwise::softcap_inplace(dst, cap);
        }
    }
}
