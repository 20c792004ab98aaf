//! Evaluation context: KV cache, every activation buffer (allocated once, sized for n_batch),
//! thread pool and logits. `eval_into` (behind `eval`) validates, splits the tokens into batches
//! and runs the model family's forward on each: the only batching loop and the only
//! check of token ids and of the window.

use std::sync::Mutex;

use super::attention::AttnScratch;
use super::kv_cache::{KvCache, KvType};
use super::recurrent::{RecurrentSize, RecurrentState};
use super::Model;
use crate::kernels::{MatmulScratch, ThreadPool};
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct ContextParams {
    /// Context window in tokens; 0 = the model's training context.
    pub n_ctx: usize,
    /// Most tokens pushed through the network at once (prompt batches).
    pub n_batch: usize,
    pub n_threads: usize,
    pub kv_type: KvType,
    /// Keep logits for every evaluated token, not only the last.
    pub logits_all: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams { n_ctx: 512, n_batch: 512, n_threads: 1, kv_type: KvType::F16, logits_all: false }
    }
}

/// Activations of one batch. Every buffer holds n_batch rows.
pub(super) struct Buffers {
    pub x: Vec<f32>,    // [n_batch][n_embd] residual stream (inpL / ffn_inp / l_out)
    pub cur: Vec<f32>,  // [n_batch][n_embd] normalized input of a block (attn_norm, ffn_norm)
    pub q: Vec<f32>,    // [n_batch][n_head*head_k] Qcur
    pub k: Vec<f32>,    // [n_batch][n_head_kv*head_k] Kcur
    pub v: Vec<f32>,    // [n_batch][n_head_kv*head_v] Vcur
    pub kqv: Vec<f32>,  // [n_batch][n_head*head_v] attention result before attn_output
    pub proj: Vec<f32>, // [n_batch][n_embd] attn_out / ffn_out
    pub gate: Vec<f32>, // [n_batch][n_ff] ffn_gate (then the gated product)
    pub up: Vec<f32>,   // [n_batch][n_ff] ffn_up
    /// Mixture-of-experts routing and outputs (empty for dense families).
    pub moe: MoeScratch,
    /// The family's own activations (`Network::extra_buffers`: floats per row), n_batch rows each.
    pub extra: Vec<Vec<f32>>,
}

/// What `blocks::Pass::moe_ffn` routes with, sized for n_batch tokens of n_used experts each
/// (a slot = one token's j-th chosen expert); gate/up rows of the experts are `Buffers::gate`/`up`
/// ([n_batch·n_used][n_ff_exp]: the family's max_n_ff covers n_used·n_ff_exp).
#[derive(Default)]
pub(super) struct MoeScratch {
    pub probs: Vec<f32>,   // [n_batch][n_expert] ffn_moe_logits, then ffn_moe_probs
    pub sel: Vec<u32>,     // [n_batch·n_used] ffn_moe_topk: expert of each slot
    pub weights: Vec<f32>, // [n_batch·n_used] ffn_moe_weights_norm
    pub count: Vec<usize>, // [n_expert] slots routed to each expert
    pub next: Vec<usize>,  // [n_expert] next free routed row of each expert
    pub active: Vec<u32>,  // [≤ n_expert] experts with routed slots, ascending
    pub first: Vec<usize>, // [≤ n_expert + 1] first routed row of each active expert
    pub src: Vec<u32>,     // [n_batch·n_used] token of each routed row
    pub slot: Vec<u32>,    // [n_batch·n_used] slot of each routed row
    pub down: Vec<f32>,    // [n_batch·n_used][n_embd] ffn_moe_down per slot
}

impl MoeScratch {
    fn new(n_batch: usize, n_embd: usize, (n_expert, n_used): (usize, usize)) -> MoeScratch {
        let slots = n_batch * n_used;
        MoeScratch {
            probs: vec![0.0; n_batch * n_expert],
            sel: vec![0; slots],
            weights: vec![0.0; slots],
            count: vec![0; n_expert],
            next: vec![0; n_expert],
            active: Vec::with_capacity(n_expert),
            first: Vec::with_capacity(n_expert + 1),
            src: vec![0; slots],
            slot: vec![0; slots],
            down: vec![0.0; slots * n_embd],
        }
    }
}

pub struct Context {
    pub(super) n_ctx: usize,
    pub(super) n_batch: usize,
    pub(super) logits_all: bool,
    pub(super) pool: ThreadPool,
    pub(super) mm: MatmulScratch,
    pub(super) buf: Buffers,
    pub(super) attn: Vec<Mutex<AttnScratch>>, // [n_threads]
    pub(super) kv: KvCache,
    /// Linear-attention layers' state after the kv_len cached positions (empty without such
    /// layers).
    pub(super) rs: RecurrentState,
    /// [n_outputs][n_vocab]; grows (amortized) to the largest logits_all request.
    pub(super) logits: Vec<f32>,
    pub(super) n_outputs: usize,
    pub(super) n_vocab: usize,
    kv_len: usize,
}

/// One attention scratch per thread. Each attention part holds at most ceil(units/parts) results;
/// n_batch*n_head is a safe bound.
fn attn_scratch(model: &Model, n_ctx: usize, n_batch: usize, n_threads: usize) -> Vec<Mutex<AttnScratch>> {
    let hp = model.hparams();
    (0..n_threads)
        .map(|_| Mutex::new(AttnScratch::new(n_ctx, n_batch, hp.n_head, hp.n_embd_head_k, hp.n_embd_head_v)))
        .collect()
}

/// Which rows of a batch produce logits, and where they go in `Context::logits`.
#[derive(Clone, Copy)]
pub(super) struct Outputs {
    pub first_row: usize, // first batch row to output
    pub n_rows: usize,    // 0 = this batch produces no logits
    pub dst_row: usize,   // row in the logits buffer for first_row
}

impl Context {
    pub fn new(model: &Model, p: ContextParams) -> Result<Context> {
        let hp = model.hparams();
        let n_ctx = if p.n_ctx == 0 { hp.n_ctx_train } else { p.n_ctx };
        if p.n_batch == 0 {
            return Err(Error::InvalidArgument("n_batch must be at least 1".into()));
        }
        if p.n_threads == 0 {
            return Err(Error::InvalidArgument("n_threads must be at least 1".into()));
        }
        let n_batch = p.n_batch.min(n_ctx);
        let n_ff = model.net.max_n_ff();
        let (qd, kd, vd, od) =
            (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa(), hp.n_head * hp.n_embd_head_v);
        let buf = Buffers {
            x: vec![0.0; n_batch * hp.n_embd],
            cur: vec![0.0; n_batch * hp.n_embd],
            q: vec![0.0; n_batch * qd],
            k: vec![0.0; n_batch * kd],
            v: vec![0.0; n_batch * vd],
            kqv: vec![0.0; n_batch * od],
            proj: vec![0.0; n_batch * hp.n_embd],
            gate: vec![0.0; n_batch * n_ff],
            up: vec![0.0; n_batch * n_ff],
            moe: model.net.moe().map(|m| MoeScratch::new(n_batch, hp.n_embd, m)).unwrap_or_default(),
            extra: model.net.extra_buffers().iter().map(|&row| vec![0.0; n_batch * row]).collect(),
        };
        // Layers with a recurrent state keep no K/V.
        let recurrent = model.net.recurrent_sizes();
        let attends: Vec<bool> =
            (0..hp.n_layer).map(|il| recurrent.get(il).is_none_or(|s| *s == RecurrentSize::default())).collect();
        let pool = ThreadPool::new(p.n_threads);
        let attn = attn_scratch(model, n_ctx, n_batch, p.n_threads);
        Ok(Context {
            n_ctx,
            n_batch,
            logits_all: p.logits_all,
            pool,
            mm: MatmulScratch::new(),
            buf,
            attn,
            kv: KvCache::new(p.kv_type, &attends, n_ctx, kd, vd),
            rs: RecurrentState::new(&recurrent),
            logits: vec![0.0; hp.n_vocab],
            n_outputs: 0,
            n_vocab: hp.n_vocab,
            kv_len: 0,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }
    /// Changes the number of worker threads (the pool and the per-thread scratch are rebuilt). The
    /// logits do not depend on it: every output is summed in the same order whatever the split.
    pub fn set_n_threads(&mut self, model: &Model, n_threads: usize) -> Result<()> {
        if n_threads == 0 {
            return Err(Error::InvalidArgument("n_threads must be at least 1".into()));
        }
        if model.n_vocab() != self.n_vocab {
            return Err(Error::InvalidArgument("set_n_threads: context was created for a different model".into()));
        }
        if n_threads != self.pool.n_threads() {
            self.pool = ThreadPool::new(n_threads);
            self.attn = attn_scratch(model, self.n_ctx, self.n_batch, n_threads);
        }
        Ok(())
    }
    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }
    /// Number of positions held in the KV cache.
    pub fn kv_len(&self) -> usize {
        self.kv_len
    }

    /// Whether the model has recurrent (linear-attention) layers, whose state cannot go back to
    /// an earlier position: `truncate` and `eval` then accept only n = 0 (start over) or the
    /// current length.
    pub fn is_recurrent(&self) -> bool {
        self.rs.is_active()
    }

    /// Forget cached positions ≥ n (prefix reuse); n larger than the cache is an error, and so is
    /// 0 < n < kv_len with a recurrent state (`is_recurrent`).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n > self.kv_len {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate the KV cache to {n} tokens: it holds only {}",
                self.kv_len
            )));
        }
        self.rewind(n)
    }

    /// Moves the end of the cache back to n ≤ kv_len: the recurrent state can only start over.
    fn rewind(&mut self, n: usize) -> Result<()> {
        if n < self.kv_len && self.rs.is_active() {
            if n > 0 {
                return Err(Error::InvalidArgument(format!(
                    "this model's recurrent state holds {} tokens and cannot go back to {n}: only to 0 (start over)",
                    self.kv_len
                )));
            }
            self.rs.reset();
        }
        self.kv_len = n;
        Ok(())
    }

    /// Logits of the last `eval`: [n_outputs][n_vocab] (one row unless logits_all).
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.n_outputs * self.n_vocab]
    }
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Runs `tokens` at positions n_past.. (dropping cached positions ≥ n_past first) and stores
    /// the logits of the last token, or of every token when `logits_all`.
    pub fn eval(&mut self, model: &Model, tokens: &[u32], n_past: usize) -> Result<()> {
        self.eval_into(model, tokens, n_past, None)
    }

    /// `eval`, the one path every caller takes: it checks the arguments (ids, n_past, the window),
    /// splits the tokens into n_batch chunks and runs the forward pass on each. Ids come as the
    /// caller holds them (u32 in Rust, i64 from Python), so an id outside [0, n_vocab) is reported
    /// as given. With `out`, the logits ([n_outputs][n_vocab]) are also copied there.
    pub fn eval_into<T: Copy + Into<i64>>(
        &mut self,
        model: &Model,
        tokens: &[T],
        n_past: usize,
        out: Option<&mut [f32]>,
    ) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("eval: no tokens given".into()));
        }
        if model.n_vocab() != self.n_vocab {
            return Err(Error::InvalidArgument("eval: context was created for a different model".into()));
        }
        if n_past > self.kv_len {
            return Err(Error::InvalidArgument(format!(
                "eval: n_past = {n_past} but the KV cache holds only {} tokens",
                self.kv_len
            )));
        }
        if n_past + tokens.len() > self.n_ctx {
            return Err(Error::ContextOverflow(format!(
                "{n_past} cached + {} new tokens exceed the context window of {} tokens",
                tokens.len(),
                self.n_ctx
            )));
        }
        let n_vocab = self.n_vocab;
        let outside = |&(_, t): &(usize, i64)| t < 0 || t >= n_vocab as i64;
        if let Some((i, t)) = tokens.iter().map(|&t| t.into()).enumerate().find(outside) {
            return Err(Error::InvalidArgument(format!(
                "token id {t} at index {i} is outside the vocabulary (n_vocab = {n_vocab})"
            )));
        }
        let n_out = if self.logits_all { tokens.len() } else { 1 };
        if let Some(out) = &out {
            if out.len() != n_out * n_vocab {
                return Err(Error::InvalidArgument(format!(
                    "eval: out holds {} floats but the logits are {n_out} x {n_vocab}",
                    out.len()
                )));
            }
        }
        let ids: Vec<u32> = tokens.iter().map(|&t| t.into() as u32).collect(); // in range: checked above
        self.rewind(n_past)?;
        self.run(model, &ids, n_past, n_out);
        if let Some(out) = out {
            out.copy_from_slice(&self.logits[..n_out * n_vocab]);
        }
        Ok(())
    }

    /// The batching loop over validated ids (the cache already rewound to n_past).
    fn run(&mut self, model: &Model, tokens: &[u32], n_past: usize, n_out: usize) {
        if self.logits.len() < n_out * self.n_vocab {
            self.logits.resize(n_out * self.n_vocab, 0.0);
        }
        self.n_outputs = 0;
        let n_chunks = tokens.len().div_ceil(self.n_batch);
        for (ic, chunk) in tokens.chunks(self.n_batch).enumerate() {
            let pos0 = n_past + ic * self.n_batch;
            let out = if self.logits_all {
                Outputs { first_row: 0, n_rows: chunk.len(), dst_row: ic * self.n_batch }
            } else if ic + 1 == n_chunks {
                Outputs { first_row: chunk.len() - 1, n_rows: 1, dst_row: 0 }
            } else {
                Outputs { first_row: 0, n_rows: 0, dst_row: 0 }
            };
            super::forward(model, self, chunk, pos0, out);
            self.kv_len = pos0 + chunk.len();
        }
        self.n_outputs = n_out;
    }

    /// Serialized KV cache + last logits (+ the recurrent state), for save_state/load_state.
    pub fn state(&self) -> Vec<u8> {
        let len = self.n_outputs * self.n_vocab * 4 + self.kv.saved_len(self.kv_len) + self.rs.saved_len();
        let mut out = Vec::with_capacity(64 + len);
        out.extend_from_slice(STATE_MAGIC);
        for v in self.state_header() {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        for x in self.logits() {
            out.extend_from_slice(&x.to_le_bytes());
        }
        self.kv.save(self.kv_len, &mut out);
        self.rs.save(&mut out);
        out
    }

    fn state_header(&self) -> [usize; 7] {
        let kv_type = match self.kv.kv_type() {
            KvType::F16 => 1,
            KvType::F32 => 0,
        };
        [STATE_VERSION, kv_type, self.kv.n_embd_k, self.kv.n_embd_v, self.n_vocab, self.kv_len, self.n_outputs]
    }

    /// Restores a `state()` produced by a context of the same model, cache type and a window
    /// at least as large.
    pub fn set_state(&mut self, data: &[u8]) -> Result<()> {
        let bad = |m: String| Error::InvalidArgument(format!("load_state: {m}"));
        if data.len() < STATE_MAGIC.len() + 7 * 8 || &data[..4] != STATE_MAGIC {
            return Err(bad("not a llama.py context state".into()));
        }
        let word = |i: usize| {
            let o = 4 + i * 8;
            u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes")) as usize
        };
        let mine = self.state_header();
        let names = ["version", "kv type", "n_embd_k_gqa", "n_embd_v_gqa", "n_vocab"];
        for (i, name) in names.iter().enumerate() {
            if word(i) != mine[i] {
                return Err(bad(format!("{name} is {} in the state but {} in this context", word(i), mine[i])));
            }
        }
        let (kv_len, n_outputs) = (word(5), word(6));
        if kv_len > self.n_ctx {
            return Err(bad(format!("state holds {kv_len} tokens, more than n_ctx = {}", self.n_ctx)));
        }
        let head = 4 + 7 * 8;
        let n_logits = n_outputs.checked_mul(self.n_vocab).ok_or_else(|| bad("corrupt header".into()))?;
        let kv_bytes = self.kv.saved_len(kv_len);
        let want = head + n_logits * 4 + kv_bytes + self.rs.saved_len();
        if data.len() != want {
            return Err(bad(format!("state is {} bytes, expected {want}", data.len())));
        }
        if self.logits.len() < n_logits {
            self.logits.resize(n_logits, 0.0);
        }
        for (d, b) in self.logits.iter_mut().zip(data[head..head + n_logits * 4].chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let kv_start = head + n_logits * 4;
        self.kv.load(kv_len, &data[kv_start..kv_start + kv_bytes]);
        self.rs.load(&data[kv_start + kv_bytes..]);
        self.kv_len = kv_len;
        self.n_outputs = n_outputs;
        Ok(())
    }
}

const STATE_MAGIC: &[u8; 4] = b"LPYS";
const STATE_VERSION: usize = 1;
