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
use super::context::{Buffers, Context, MoeScratch, Outputs};
use super::hparams::HParams;
use super::kv_cache::{KvCache, KvStore};
use super::weights::{Experts, Loader, WRef};
use super::Model;
use crate::kernels::elementwise::{self, Rope};
use crate::kernels::{kernels, matmul, matmul_id, parallel, IdRoutes, MatmulScratch, QTensor, ThreadPool, KT_LANES};
use crate::quant::dequantize_row;
use crate::Result;

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

/// A layer's self-attention weights (llama.cpp's `wq`, `wk`, `wv`, `bq`, `bk`, `bv`,
/// `attn_q_norm`, `attn_k_norm`, `wo`), for `qkv` and the output projection.
pub(super) struct Attn {
    pub wq: WRef, // [n_head·head_k][n_embd]
    pub wk: WRef, // [n_head_kv·head_k][n_embd]
    pub wv: WRef, // [n_head_kv·head_v][n_embd]
    /// bq, bk, bv ([n_head·head_k], [n_head_kv·head_k], [n_head_kv·head_v]), when the
    /// family's projections have biases.
    pub bias: Option<[Vec<f32>; 3]>,
    /// attn_q_norm, attn_k_norm ([head_k], applied to every head), when the family normalizes
    /// Q and K per head.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    pub wo: WRef, // [n_embd][n_head·head_v]
}

/// Which optional attention tensors a family has.
#[derive(Clone, Copy)]
pub(super) struct AttnOpts {
    /// `attn_{q,k,v}.bias` (Qwen2).
    pub bias: bool,
    /// `attn_{q,k}_norm.weight` (Qwen3, Gemma 3).
    pub qk_norm: bool,
}

impl Attn {
    /// Layer `il`'s `attn_*` tensors, shapes checked against the hyper-parameters.
    pub fn load(l: &Loader, hp: &HParams, il: usize, opts: AttnOpts) -> Result<Attn> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let n_embd = hp.n_embd;
        let (q_rows, k_rows, v_rows) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        let bias = if opts.bias {
            Some([
                l.vector(&n("attn_q.bias"), q_rows)?,
                l.vector(&n("attn_k.bias"), k_rows)?,
                l.vector(&n("attn_v.bias"), v_rows)?,
            ])
        } else {
            None
        };
        let qk_norm = if opts.qk_norm {
            Some([
                l.vector(&n("attn_q_norm.weight"), hp.n_embd_head_k)?,
                l.vector(&n("attn_k_norm.weight"), hp.n_embd_head_k)?,
            ])
        } else {
            None
        };
        Ok(Attn {
            wq: l.matrix(&n("attn_q.weight"), Some(q_rows), n_embd)?,
            wk: l.matrix(&n("attn_k.weight"), Some(k_rows), n_embd)?,
            wv: l.matrix(&n("attn_v.weight"), Some(v_rows), n_embd)?,
            bias,
            qk_norm,
            wo: l.matrix(&n("attn_output.weight"), Some(n_embd), hp.n_head * hp.n_embd_head_v)?,
        })
    }

    pub fn matrices(&self) -> [WRef; 4] {
        [self.wq, self.wk, self.wv, self.wo]
    }
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
pub(super) struct Ffn {
    pub gate: WRef, // [n_ff][n_embd]
    pub up: WRef,   // [n_ff][n_embd]
    pub down: WRef, // [n_embd][n_ff]
}

impl Ffn {
    /// Layer `il`'s `ffn_gate`, `ffn_up`, `ffn_down`; n_ff is what the tensors say (layers may
    /// differ).
    pub fn load(l: &Loader, hp: &HParams, il: usize) -> Result<Ffn> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let gate = l.matrix(&n("ffn_gate.weight"), None, hp.n_embd)?;
        let n_ff = gate.rows;
        Ok(Ffn {
            gate,
            up: l.matrix(&n("ffn_up.weight"), Some(n_ff), hp.n_embd)?,
            down: l.matrix(&n("ffn_down.weight"), Some(hp.n_embd), n_ff)?,
        })
    }

    pub fn matrices(&self) -> [WRef; 3] {
        [self.gate, self.up, self.down]
    }
}

/// A mixture-of-experts feed-forward's weights (llama.cpp's `build_moe_ffn` with softmax gating
/// and SiLU-gated experts): the router `ffn_gate_inp` and the experts' `ffn_{gate,up,down}_exps`.
pub(super) struct Moe {
    pub gate_inp: WRef, // [n_expert][n_embd]
    /// An F32 router as key panels (`AttnKtFn` layout, [n_expert/16][n_embd][16]), so its
    /// products sum in llama.cpp's F32 orders (tinyBLAS for batches, `ggml_vec_dot_f32` for one
    /// token: the attention dots' orders), when n_embd is a multiple of their steps.
    pub gate_inp_kt: Option<Vec<f32>>,
    pub gate_exps: Experts, // [n_expert][n_ff_exp][n_embd]
    pub up_exps: Experts,   // [n_expert][n_ff_exp][n_embd]
    pub down_exps: Experts, // [n_expert][n_embd][n_ff_exp]
}

impl Moe {
    /// Layer `il`'s router and expert tensors; n_ff_exp is what the tensors say.
    pub fn load(l: &Loader, hp: &HParams, il: usize, n_expert: usize) -> Result<Moe> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let gate_exps = l.experts(&n("ffn_gate_exps.weight"), n_expert, None, hp.n_embd)?;
        let n_ff = gate_exps.rows;
        let gate_inp = l.matrix(&n("ffn_gate_inp.weight"), Some(n_expert), hp.n_embd)?;
        let gate_inp_kt = match l.f32_matrix(&gate_inp)? {
            Some(w) if hp.n_embd.is_multiple_of(32) => {
                let mut kt = vec![0.0; n_expert.div_ceil(KT_LANES) * KT_LANES * hp.n_embd];
                (kernels().attn.kt_f32)(hp.n_embd, &w, hp.n_embd, n_expert, &mut kt);
                Some(kt)
            }
            _ => None,
        };
        Ok(Moe {
            gate_inp,
            gate_inp_kt,
            gate_exps,
            up_exps: l.experts(&n("ffn_up_exps.weight"), n_expert, Some(n_ff), hp.n_embd)?,
            down_exps: l.experts(&n("ffn_down_exps.weight"), n_expert, Some(hp.n_embd), n_ff)?,
        })
    }

    /// The router and every expert's matrices.
    pub fn matrices(&self) -> impl Iterator<Item = WRef> + '_ {
        let exps = [&self.gate_exps, &self.up_exps, &self.down_exps];
        std::iter::once(self.gate_inp).chain(exps.into_iter().flat_map(|e| e.matrices()))
    }
}

/// The pre-norm transformer layer of llama, qwen2 and qwen3 (llama.cpp's `attn_norm`, attention,
/// `ffn_norm`, gated FFN); the families differ in `Attn`'s optional tensors and in rope.
pub(super) struct DenseLayer {
    pub attn_norm: Vec<f32>, // [n_embd]
    pub attn: Attn,
    pub ffn_norm: Vec<f32>, // [n_embd]
    pub ffn: Ffn,
}

impl DenseLayer {
    pub fn load(l: &Loader, hp: &HParams, il: usize, opts: AttnOpts) -> Result<DenseLayer> {
        Ok(DenseLayer {
            attn_norm: l.vector(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
            attn: Attn::load(l, hp, il, opts)?,
            ffn_norm: l.vector(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
            ffn: Ffn::load(l, hp, il)?,
        })
    }
}

/// The token embedding and the output matrix (`output.weight`, or the embedding when tied).
/// token_embd: [n_vocab][n_embd], output: [n_vocab][n_embd]
pub(super) fn load_embd_output(l: &Loader, hp: &HParams) -> Result<(WRef, WRef)> {
    let tok_embd = l.matrix("token_embd.weight", None, hp.n_embd)?;
    let output = l.opt_matrix("output.weight", Some(tok_embd.rows), hp.n_embd)?.unwrap_or(tok_embd);
    Ok((tok_embd, output))
}

/// Every attention and FFN matrix of the layers, then the output matrix: `Network::matrices`.
pub(super) fn dense_matrices<'a>(layers: impl Iterator<Item = (&'a Attn, &'a Ffn)>, output: WRef) -> Vec<WRef> {
    let mut v: Vec<WRef> = layers.flat_map(|(a, f)| a.matrices().into_iter().chain(f.matrices())).collect();
    v.push(output);
    v
}

/// The widest FFN of the layers: `Network::max_n_ff`.
pub(super) fn max_n_ff<'a>(ffns: impl Iterator<Item = &'a Ffn>) -> usize {
    ffns.map(|f| f.gate.rows).max().unwrap_or(0)
}

/// The gate's activation: `LLM_FFN_SILU` (SwiGLU) or `LLM_FFN_GELU` (GeGLU, tanh approximation).
#[derive(Clone, Copy)]
pub(super) enum Act {
    Silu,
    Gelu,
}

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
    pub fn qkv(&mut self, w: &Attn, cur: &[f32], q: &mut [f32], k: &mut [f32], v: &mut [f32]) {
        self.matmul(&w.wq, cur, q);
        self.matmul(&w.wk, cur, k);
        self.matmul(&w.wv, cur, v);
        let n = self.n;
        let (qd, kd, vd) = (w.wq.rows, w.wk.rows, w.wv.rows);
        if let Some([bq, bk, bv]) = &w.bias {
            parallel::add_bias(self.pool, &mut q[..n * qd], bq);
            parallel::add_bias(self.pool, &mut k[..n * kd], bk);
            parallel::add_bias(self.pool, &mut v[..n * vd], bv);
        }
        if let Some([qn, kn]) = &w.qk_norm {
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
        self.matmul(&w.gate, cur, gate);
        self.matmul(&w.up, cur, up);
        match act {
            Act::Silu => parallel::swiglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff),
            Act::Gelu => parallel::geglu_inplace(self.pool, &mut gate[..n * n_ff], &up[..n * n_ff], n_ff),
        }
        self.matmul(&w.down, gate, out);
    }

    /// ffn_moe_out (llama.cpp's `build_moe_ffn`, softmax gating, weights normalized to sum 1,
    /// SiLU-gated experts): per token, router probabilities softmax(ffn_gate_inp · cur), the
    /// `n_used` most probable experts (ffn_moe_topk) with their probabilities divided by their sum
    /// (ffn_moe_weights_norm); every selected expert's FFN on the token (one `matmul_id` per
    /// stage: each expert's weights read once for all the tokens routed to it); their outputs
    /// weighted and added in the top-k order (ffn_moe_weighted, then the adds).
    /// cur: [n][n_embd] → gate, up: [n·n_used][n_ff_exp] (scratch; one row per token and chosen
    /// expert) → s.down: [n·n_used][n_embd] → out: [n][n_embd]
    #[allow(clippy::too_many_arguments)]
    pub fn moe_ffn(
        &mut self,
        w: &Moe,
        n_used: usize,
        cur: &[f32],
        gate: &mut [f32],
        up: &mut [f32],
        s: &mut MoeScratch,
        out: &mut [f32],
    ) {
        let (n, n_embd, n_expert) = (self.n, self.hp.n_embd, w.gate_inp.rows);
        let n_ff = w.gate_exps.rows;
        let n_slots = n * n_used;
        // ffn_moe_logits, then ffn_moe_probs in place                  probs: [n][n_expert]
        match &w.gate_inp_kt {
            Some(kt) => {
                let orders = kernels().orders;
                let order = if n == 1 { orders.attn_single() } else { orders.attn_batch() };
                let kq = kernels().attn.kq;
                // token rows claimed one at a time (a single token on this thread)
                if n == 1 {
                    kq(n_embd, kt, n_expert, &cur[..n_embd], 1, &mut s.probs[..n_expert], n_expert, order);
                } else {
                    let rows = Mutex::new(s.probs[..n * n_expert].chunks_mut(n_expert).zip(cur.chunks(n_embd)));
                    self.pool.run(|_, _| loop {
                        let next = rows.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((p, x)) = next else { break };
                        kq(n_embd, kt, n_expert, x, 1, p, n_expert, order);
                    });
                }
            }
            None => self.matmul(&w.gate_inp, cur, &mut s.probs),
        }
        let softmax = kernels().softmax;
        let (probs, sel, weights) = (&mut s.probs, &mut s.sel, &mut s.weights);
        for (t, p) in probs.chunks_exact_mut(n_expert).take(n).enumerate() {
            softmax(p, 1.0);
            // ffn_moe_topk: descending probability (ggml_argsort_top_k), ties to the lower id
            let (sel_t, w_t) = (&mut sel[t * n_used..(t + 1) * n_used], &mut weights[t * n_used..(t + 1) * n_used]);
            for j in 0..n_used {
                let taken = &sel_t[..j];
                let best = (0..n_expert)
                    .filter(|e| !taken.contains(&(*e as u32)))
                    .fold(None, |b: Option<usize>, e| match b {
                        Some(b) if p[b] >= p[e] => Some(b),
                        _ => Some(e),
                    })
                    .expect("n_used ≤ n_expert checked at load");
                sel_t[j] = best as u32;
                w_t[j] = p[best];
            }
            // ffn_moe_weights_sum (ggml_sum_rows: in double), clamped, then ffn_moe_weights_norm
            let sum = (w_t.iter().map(|&x| x as f64).sum::<f64>() as f32).max(6.103515625e-5);
            for x in w_t.iter_mut() {
                *x /= sum;
            }
        }
        // The routed rows grouped by expert (ascending ids, tokens in order): group g is expert
        // active[g], its rows first[g]..first[g+1]; row r reads token src[r] and stands for slot
        // (token t, choice j) = t·n_used + j.
        s.count.fill(0);
        for &e in &sel[..n_slots] {
            s.count[e as usize] += 1;
        }
        s.active.clear();
        s.first.clear();
        s.first.push(0);
        for e in 0..n_expert {
            if s.count[e] > 0 {
                let r0 = s.first[s.first.len() - 1];
                s.next[e] = r0;
                s.active.push(e as u32);
                s.first.push(r0 + s.count[e]);
            }
        }
        for (slot, &e) in sel[..n_slots].iter().enumerate() {
            let r = s.next[e as usize];
            s.src[r] = (slot / n_used) as u32;
            s.slot[r] = slot as u32;
            s.next[e as usize] += 1;
        }

        let m = self.m;
        let k = kernels();
        let active = &s.active;
        let q = |e: &Experts, g: usize| -> QTensor<'_> { m.qt(&e.expert(active[g] as usize)) };
        let x_cur = &cur[..n * n_embd];
        // ffn_moe_gate, ffn_moe_up: token rows in, slot rows out   gate, up: [n·n_used][n_ff]
        let routes = IdRoutes { first: &s.first, src: &s.src[..n_slots], dst: &s.slot[..n_slots] };
        let (g_out, u_out) = (&mut gate[..n_slots * n_ff], &mut up[..n_slots * n_ff]);
        let same_type = m.qt(&w.gate_exps.expert(0)).ggml_type == m.qt(&w.up_exps.expert(0)).ggml_type;
        let run = |r: Result<()>| r.expect("expert shapes checked at load");
        if same_type {
            let both = |i: usize, g: usize| q(if i == 0 { &w.gate_exps } else { &w.up_exps }, g);
            run(matmul_id(k, self.pool, 2, both, routes, x_cur, &mut [g_out, u_out], self.mm));
        } else {
            run(matmul_id(k, self.pool, 1, |_, g| q(&w.gate_exps, g), routes, x_cur, &mut [g_out], self.mm));
            run(matmul_id(k, self.pool, 1, |_, g| q(&w.up_exps, g), routes, x_cur, &mut [u_out], self.mm));
        }
        // ffn_moe_swiglu                                              gate: [n·n_used][n_ff]
        parallel::swiglu_inplace(self.pool, &mut gate[..n_slots * n_ff], &up[..n_slots * n_ff], n_ff);
        // ffn_moe_down: slot rows in and out                      s.down: [n·n_used][n_embd]
        let routes = IdRoutes { first: &s.first, src: &s.slot[..n_slots], dst: &s.slot[..n_slots] };
        let down = &mut s.down[..n_slots * n_embd];
        run(matmul_id(
            k,
            self.pool,
            1,
            |_, g| q(&w.down_exps, g),
            routes,
            &gate[..n_slots * n_ff],
            &mut [down],
            self.mm,
        ));
        // ffn_moe_weighted, then the adds in top-k order                 out: [n][n_embd]
        parallel::weighted_sum(
            self.pool,
            &mut out[..n * n_embd],
            &s.down[..n_slots * n_embd],
            &s.weights[..n_slots],
            n_embd,
        );
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
