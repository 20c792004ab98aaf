//! Evaluation context: KV cache (with the cells each sequence holds), every activation buffer
//! (allocated once, sized for n_batch), thread pool and logits. Two ways in: `eval_into` (behind
//! `eval`), the single-sequence API (sequence 0: validates, splits the tokens into batches), and
//! `decode`, one mixed batch of tokens of several sequences (docs/notes/multiseq.md). Both
//! check their input and end in `run_batch`, which groups the rows by sequence, takes the cells
//! and runs the model family's forward.

use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;

use super::attention::AttnScratch;
use super::kv_cache::{KvCache, KvType};
use super::kv_cells::{KvCells, Seq, MAX_SEQ};
use super::recurrent::{RecurrentSize, RecurrentState};
use super::Model;
use crate::kernels::elementwise::{Rope, RopeKey};
use crate::kernels::{MatmulScratch, ThreadPool};
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct ContextParams {
    /// Context window in tokens; 0 = the model's training context.
    pub n_ctx: usize,
    /// Most tokens pushed through the network at once (prompt batches).
    pub n_batch: usize,
    pub n_threads: usize,
    /// The cache's K type (llama.cpp's `type_k`).
    pub kv_type: KvType,
    /// The cache's V type; None = the K type.
    pub type_v: Option<KvType>,
    /// Flash attention (`model::flash_attn`, llama.cpp's flash attention path and bits) instead
    /// of the default exact non-flash attention. Needed for a quantized cache. Encoders (no KV
    /// cache) keep the non-flash attention.
    pub flash_attn: bool,
    /// Keep logits for every evaluated token, not only the last.
    pub logits_all: bool,
    /// Most sequences the context holds at once (ids 0..n_seq_max; at most 64; 1 for models
    /// with a recurrent state). The cache is unified: the sequences share its n_ctx cells.
    pub n_seq_max: usize,
    /// Output the hidden states of the flagged tokens (`embeddings()`, `Context::embed`) instead
    /// of their logits: after the final norm for decoders, the last layer's output for encoders.
    pub embeddings: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 512,
            n_batch: 512,
            n_threads: 1,
            kv_type: KvType::F16,
            type_v: None,
            flash_attn: false,
            logits_all: false,
            n_seq_max: 1,
            embeddings: false,
        }
    }
}

/// Tokens for `Context::decode`: token i belongs to sequence `seq[i]` at position `pos[i]`, and
/// its logits are kept when `logits[i]` (one output row per flagged token, in batch order).
/// llama.cpp's `llama_batch` with one sequence per token.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub seq: Vec<usize>,
    pub pos: Vec<u32>,
    pub logits: Vec<bool>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn push(&mut self, token: u32, seq: usize, pos: u32, logits: bool) {
        self.tokens.push(token);
        self.seq.push(seq);
        self.pos.push(pos);
        self.logits.push(logits);
    }
    /// Appends `tokens` of sequence `seq` at positions pos0.., logits for the last one when
    /// `logits_last`.
    pub fn push_seq(&mut self, tokens: &[u32], seq: usize, pos0: u32, logits_last: bool) {
        for (i, &t) in tokens.iter().enumerate() {
            self.push(t, seq, pos0 + i as u32, logits_last && i + 1 == tokens.len());
        }
    }
    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.seq.clear();
        self.pos.clear();
        self.logits.clear();
    }
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// One sequence's rows of the batch being run: rows row0..row0+n, positions pos0..pos0+n.
pub(super) struct SeqGroup {
    pub row0: usize,
    pub n: usize,
    pub pos0: usize,
    /// [pos0 + n] the sequence's cell at each position (this batch's included).
    pub cells: Vec<usize>,
    /// Some(base) when cells[p] = base + p for every p: the keys are one run of the cache, read
    /// in place (no gather).
    pub base: Option<usize>,
}

/// The batch being run, as the forward sees it: rows grouped by sequence (a sequence's tokens
/// consecutive, in their batch order), each row's position and cell, and the rows whose logits
/// are kept.
#[derive(Default)]
pub(super) struct BatchPlan {
    pub pos: Vec<u32>,    // [n] position of each row
    pub slot: Vec<usize>, // [n] cell each row's K and V go to
    pub groups: Vec<SeqGroup>,
    pub out_rows: Vec<usize>, // [n_out] rows whose logits are kept, in output order
    pub dst_row: usize,       // logits row of the first output
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

/// Each rope's (sin, cos) table for the positions of the batch being run ([n][n_rot/2]), made
/// once per forward: every layer with the same rope reads it, for Q and for K. ggml computes the
/// same values in each rope op; a token's 2·n_layer sets of sines and cosines were ~1 % of its
/// time on SmolLM2 (docs/PERFORMANCE.md, session 29).
#[derive(Default)]
pub(super) struct RopeAngles {
    /// (rope's key, table); the first `n_used` are this forward's (the rest keep their
    /// allocations).
    entries: Vec<(RopeKey, Vec<(f32, f32)>)>,
    n_used: usize,
}

impl RopeAngles {
    /// A forward starts: its positions are new, every table is made again on first use.
    pub(super) fn start_forward(&mut self) {
        self.n_used = 0;
    }

    /// The table of `rope` for positions `pos`, made on first use in this forward.
    pub(super) fn get(&mut self, rope: &Rope, pos: &[u32]) -> &[(f32, f32)] {
        let key = rope.angle_key();
        let i = match self.entries[..self.n_used].iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                if self.n_used == self.entries.len() {
                    self.entries.push((key, Vec::new()));
                }
                let (k, table) = &mut self.entries[self.n_used];
                *k = key;
                table.resize(pos.len() * (rope.n_rot / 2), (0.0, 0.0));
                rope.angle_rows(pos, table);
                self.n_used += 1;
                self.n_used - 1
            }
        };
        &self.entries[i].1
    }
}

pub struct Context {
    pub(super) n_ctx: usize,
    pub(super) n_batch: usize,
    pub(super) logits_all: bool,
    pub(super) pool: ThreadPool,
    pub(super) mm: MatmulScratch,
    /// The batch's rope angles, shared by the layers (`RopeAngles`).
    pub(super) rope_angles: RopeAngles,
    pub(super) buf: Buffers,
    pub(super) attn: Vec<Mutex<AttnScratch>>, // [n_threads]
    pub(super) kv: KvCache,
    /// Linear-attention layers' state after the kv_len cached positions (empty without such
    /// layers).
    pub(super) rs: RecurrentState,
    /// [n_outputs][n_vocab]; grows (amortized) to the largest logits_all request.
    pub(super) logits: Vec<f32>,
    /// Embeddings mode (`ContextParams::embeddings`): [n_outputs][n_embd] hidden states of the
    /// output rows, in output order; empty otherwise.
    pub(super) embd: Vec<f32>,
    pub(super) embeddings: bool,
    pub(super) n_outputs: usize,
    pub(super) n_vocab: usize,
    n_embd: usize,
    /// Which cells hold which sequence's positions.
    cells: KvCells,
    n_seq_max: usize,
    /// The batch being run (rebuilt by each `run_batch`).
    pub(super) plan: BatchPlan,
    /// Attention by `model::flash_attn` (the cache is f16 or quantized).
    pub(super) flash_attn: bool,
}

/// The cache types a context accepts: f16 or f32 (both the same) without flash attention; with
/// it f16 or a quantized type for each of K and V (llama.cpp casts an f32 cache to f16 for flash
/// attention: take f16), a quantized type's blocks dividing the head.
fn check_cache_types(tk: KvType, tv: KvType, flash_attn: bool, head_k: usize, head_v: usize) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if !flash_attn {
        if let Some(t) = [tk, tv].into_iter().find(|t| t.is_quantized()) {
            return bad(format!("a {} KV cache needs flash attention (flash_attn=True)", t.name()));
        }
        if tk != tv {
            return bad(format!(
                "type_k {} and type_v {} differ: without flash attention K and V share one type (f16 or f32)",
                tk.name(),
                tv.name()
            ));
        }
        return Ok(());
    }
    for (which, t, head) in [("type_k", tk, head_k), ("type_v", tv, head_v)] {
        if t == KvType::F32 {
            return bad(format!("{which} f32 with flash attention: use f16 or a quantized type"));
        }
        let bs = t.ggml().block_layout().0;
        if !head.is_multiple_of(bs) {
            return bad(format!("{which} {}: the head size {head} is not a multiple of its block of {bs}", t.name()));
        }
    }
    Ok(())
}

/// One attention scratch per thread. Each attention part holds at most ceil(units/parts) results;
/// n_batch*n_head is a safe bound.
fn attn_scratch(model: &Model, n_ctx: usize, n_batch: usize, n_threads: usize) -> Vec<Mutex<AttnScratch>> {
    let hp = model.hparams();
    (0..n_threads)
        .map(|_| Mutex::new(AttnScratch::new(n_ctx, n_batch, hp.n_head, hp.n_embd_head_k, hp.n_embd_head_v)))
        .collect()
}

/// The sequence of the single-sequence API (`eval`, `truncate`, `state`).
const SEQ0: Seq = Seq::ZERO;

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
        if model.net.embeddings_only() && !p.embeddings {
            return Err(Error::InvalidArgument(format!(
                "{} is an embedding model: it gives embeddings (embedding=True), not next-token logits",
                hp.arch.name()
            )));
        }
        if let Some(n_pos) = model.net.n_pos_max().filter(|&m| n_ctx > m) {
            return Err(Error::InvalidArgument(format!(
                "n_ctx = {n_ctx} exceeds the {n_pos} positions this model has embeddings for"
            )));
        }
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
        if p.n_seq_max == 0 || p.n_seq_max > MAX_SEQ {
            return Err(Error::InvalidArgument(format!("n_seq_max must be in 1..={MAX_SEQ}, not {}", p.n_seq_max)));
        }
        let rs = RecurrentState::new(&recurrent);
        if rs.is_active() && p.n_seq_max > 1 {
            return Err(Error::InvalidArgument(format!(
                "n_seq_max = {}: this model keeps a recurrent state, which holds one sequence only",
                p.n_seq_max
            )));
        }
        // An encoder keeps no cache in llama.cpp: its K and V stay f32 within the batch.
        let (tk, tv) = if model.embeddings_only() {
            (KvType::F32, KvType::F32)
        } else {
            let (tk, tv) = (p.kv_type, p.type_v.unwrap_or(p.kv_type));
            check_cache_types(tk, tv, p.flash_attn, hp.n_embd_head_k, hp.n_embd_head_v)?;
            (tk, tv)
        };
        let pool = ThreadPool::new(p.n_threads);
        let attn = attn_scratch(model, n_ctx, n_batch, p.n_threads);
        Ok(Context {
            n_ctx,
            n_batch,
            logits_all: p.logits_all,
            pool,
            mm: MatmulScratch::new(),
            rope_angles: RopeAngles::default(),
            buf,
            attn,
            kv: KvCache::new(tk, tv, &attends, n_ctx, kd, vd, hp.n_embd_head_k, hp.n_embd_head_v),
            rs,
            logits: if p.embeddings { Vec::new() } else { vec![0.0; hp.n_vocab] },
            embd: Vec::new(),
            embeddings: p.embeddings,
            n_outputs: 0,
            n_vocab: hp.n_vocab,
            n_embd: hp.n_embd,
            cells: KvCells::new(n_ctx),
            n_seq_max: p.n_seq_max,
            plan: BatchPlan::default(),
            flash_attn: p.flash_attn && !model.embeddings_only(),
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
    /// The cache's K type.
    pub fn kv_type(&self) -> KvType {
        self.kv.types().0
    }
    /// The cache's K and V types.
    pub fn kv_types(&self) -> (KvType, KvType) {
        self.kv.types()
    }
    /// Bytes the KV cache holds per cell (all layers).
    pub fn kv_bytes_per_cell(&self) -> usize {
        self.kv.saved_len(1)
    }
    /// Whether attention runs the flash path.
    pub fn flash_attn(&self) -> bool {
        self.flash_attn
    }
    /// Number of positions sequence 0 holds in the KV cache (the single-sequence API's length).
    pub fn kv_len(&self) -> usize {
        self.cells.seq_pos_max(SEQ0).map_or(0, |p| p as usize + 1)
    }
    pub fn n_seq_max(&self) -> usize {
        self.n_seq_max
    }
    /// Cells held by at least one sequence (of n_ctx).
    pub fn kv_used(&self) -> usize {
        self.cells.n_used()
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
        let kv_len = self.kv_len();
        if n > kv_len {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate the KV cache to {n} tokens: it holds only {kv_len}"
            )));
        }
        self.rewind(n)
    }

    /// Moves the end of sequence 0 back to n ≤ kv_len (its cells from n on are freed): the
    /// recurrent state can only start over.
    fn rewind(&mut self, n: usize) -> Result<()> {
        let kv_len = self.kv_len();
        if n < kv_len && self.rs.is_active() {
            if n > 0 {
                return Err(Error::InvalidArgument(format!(
                    "this model's recurrent state holds {kv_len} tokens and cannot go back to {n}: only to 0 (start over)"
                )));
            }
            self.rs.reset();
        }
        self.cells.seq_rm(Some(SEQ0), n as u32..);
        Ok(())
    }

    /// A sequence id of this context (< n_seq_max), or a typed error.
    fn seq(&self, id: usize) -> Result<Seq> {
        let s = Seq::new(id)?;
        if id >= self.n_seq_max {
            return Err(Error::InvalidArgument(format!(
                "sequence id {id} out of range: the context holds n_seq_max = {} sequences",
                self.n_seq_max
            )));
        }
        Ok(s)
    }

    /// Drops the positions in `range` from sequence `seq` (every sequence when None); cells no
    /// sequence holds any more are freed (llama.cpp's `llama_memory_seq_rm`). With a recurrent
    /// state only a tail can go (`truncate`'s rule).
    pub fn seq_rm(&mut self, seq: Option<usize>, range: impl RangeBounds<u32>) -> Result<()> {
        let s = seq.map(|id| self.seq(id)).transpose()?;
        if self.rs.is_active() {
            let lo = match range.start_bound() {
                Bound::Included(&a) => a,
                Bound::Excluded(&a) => a.saturating_add(1),
                Bound::Unbounded => 0,
            };
            let to_end = match range.end_bound() {
                Bound::Unbounded => true,
                Bound::Included(&b) => b as usize + 1 >= self.kv_len(),
                Bound::Excluded(&b) => b as usize >= self.kv_len(),
            };
            if !to_end {
                return Err(Error::InvalidArgument(
                    "this model's recurrent state can drop only the last positions of a sequence".into(),
                ));
            }
            return self.rewind((lo as usize).min(self.kv_len()));
        }
        self.cells.seq_rm(s, range);
        Ok(())
    }

    /// Makes sequence `dst` share `src`'s cells at positions in `range` (no K/V copy; the prefix
    /// is computed once). Fails, changing nothing, when `dst` already holds one of those positions.
    pub fn seq_cp(&mut self, src: usize, dst: usize, range: impl RangeBounds<u32>) -> Result<()> {
        let (s, d) = (self.seq(src)?, self.seq(dst)?);
        self.cells.seq_cp(s, d, range)
    }

    /// Removes every sequence but `seq`.
    pub fn seq_keep(&mut self, seq: usize) -> Result<()> {
        let s = self.seq(seq)?;
        self.cells.seq_keep(s);
        Ok(())
    }

    /// The last position `seq` holds (None when empty).
    pub fn seq_pos_max(&self, seq: usize) -> Result<Option<u32>> {
        Ok(self.cells.seq_pos_max(self.seq(seq)?))
    }

    /// The first position `seq` holds (None when empty).
    pub fn seq_pos_min(&self, seq: usize) -> Result<Option<u32>> {
        Ok(self.cells.seq_pos_min(self.seq(seq)?))
    }

    /// Logits of the last `eval`: [n_outputs][n_vocab] (one row unless logits_all).
    /// Empty in embeddings mode (`embeddings()` holds the outputs).
    pub fn logits(&self) -> &[f32] {
        if self.embeddings {
            return &[];
        }
        &self.logits[..self.n_outputs * self.n_vocab]
    }
    /// Hidden states of the last batch's output rows in embeddings mode: [n_outputs][n_embd];
    /// empty otherwise.
    pub fn embeddings(&self) -> &[f32] {
        &self.embd[..self.n_outputs * self.n_embd]
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
        let kv_len = self.kv_len();
        if n_past > kv_len {
            return Err(Error::InvalidArgument(format!(
                "eval: n_past = {n_past} but the KV cache holds only {kv_len} tokens"
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
        if self.embeddings && out.is_some() {
            return Err(Error::InvalidArgument("eval: this context gives embeddings, not logits".into()));
        }
        if let Some(out) = &out {
            if out.len() != n_out * n_vocab {
                return Err(Error::InvalidArgument(format!(
                    "eval: out holds {} floats but the logits are {n_out} x {n_vocab}",
                    out.len()
                )));
            }
        }
        // Other sequences' cells are not free: the cells sequence 0 gives up from n_past on are.
        let free = self.n_ctx - self.cells.n_used() + (kv_len - n_past);
        if tokens.len() > free {
            return Err(Error::ContextOverflow(format!(
                "{} new tokens but only {free} cells of the KV cache are free (other sequences hold the rest)",
                tokens.len()
            )));
        }
        let ids: Vec<u32> = tokens.iter().map(|&t| t.into() as u32).collect(); // in range: checked above
        self.rewind(n_past)?;
        self.run(model, &ids, n_past, n_out)?;
        if let Some(out) = out {
            out.copy_from_slice(&self.logits[..n_out * n_vocab]);
        }
        Ok(())
    }

    /// The batching loop over validated ids (sequence 0, the cache already rewound to n_past).
    fn run(&mut self, model: &Model, tokens: &[u32], n_past: usize, n_out: usize) -> Result<()> {
        self.reserve_outputs(n_out);
        self.n_outputs = 0;
        let n_chunks = tokens.len().div_ceil(self.n_batch);
        for (ic, chunk) in tokens.chunks(self.n_batch).enumerate() {
            let pos0 = n_past + ic * self.n_batch;
            let pos: Vec<u32> = (pos0..pos0 + chunk.len()).map(|p| p as u32).collect();
            let last = ic + 1 == n_chunks;
            let want: Vec<bool> = (0..chunk.len()).map(|i| self.logits_all || (last && i + 1 == chunk.len())).collect();
            let dst_row = if self.logits_all { ic * self.n_batch } else { 0 };
            self.run_batch(model, chunk, &vec![SEQ0; chunk.len()], &pos, &want, dst_row)?;
        }
        self.n_outputs = n_out;
        Ok(())
    }

    /// Runs one mixed batch (`Batch`): tokens of several sequences, each at its next positions,
    /// in one forward (every matmul reads each weight once for all rows). Checks, with typed
    /// errors: ids in the vocabulary, sequence ids < n_seq_max, each sequence's positions
    /// consecutive and starting at its `seq_pos_max + 1` (0 when empty), at most n_batch tokens,
    /// and free cells for all of them (`ContextOverflow`). Logits: one row per flagged token, in
    /// batch order (`logits()`, `n_outputs()`). A sequence's logits are those of running it alone
    /// with the same chunks (docs/notes/multiseq.md).
    pub fn decode(&mut self, model: &Model, batch: &Batch) -> Result<()> {
        let n = batch.len();
        let bad = |m: String| Err(Error::InvalidArgument(format!("decode: {m}")));
        if n == 0 {
            return bad("no tokens given".into());
        }
        if batch.seq.len() != n || batch.pos.len() != n || batch.logits.len() != n {
            return bad(format!(
                "{n} tokens but {} sequence ids, {} positions and {} logits flags",
                batch.seq.len(),
                batch.pos.len(),
                batch.logits.len()
            ));
        }
        if model.n_vocab() != self.n_vocab {
            return bad("context was created for a different model".into());
        }
        if n > self.n_batch {
            return bad(format!("{n} tokens exceed n_batch = {}", self.n_batch));
        }
        if let Some((i, &t)) = batch.tokens.iter().enumerate().find(|&(_, &t)| t as usize >= self.n_vocab) {
            return bad(format!("token id {t} at index {i} is outside the vocabulary (n_vocab = {})", self.n_vocab));
        }
        let seqs: Vec<Seq> = batch.seq.iter().map(|&id| self.seq(id)).collect::<Result<_>>()?;
        // Each sequence's positions: consecutive in batch order, from its next position on.
        let mut next: [Option<u32>; MAX_SEQ] = [None; MAX_SEQ]; // expected position of the next token
        for (i, (&s, &p)) in seqs.iter().zip(&batch.pos).enumerate() {
            let expect = match next[s.id()] {
                Some(e) => {
                    if p != e {
                        return bad(format!(
                            "token {i} of sequence {} is at position {p}, but its previous token in the batch is at {}: positions must be consecutive",
                            s.id(),
                            e - 1
                        ));
                    }
                    e
                }
                None => {
                    let want = self.cells.seq_pos_max(s).map_or(0, |m| m + 1);
                    if p != want {
                        return bad(format!(
                            "sequence {} continues at position {want} (it holds {} positions), but token {i} is at {p}",
                            s.id(),
                            self.cells.seq_len(s)
                        ));
                    }
                    if self.cells.seq_len(s) != want as usize {
                        return bad(format!(
                            "sequence {} holds {} of its positions 0..{want}: a sequence with removed positions inside cannot be extended",
                            s.id(),
                            self.cells.seq_len(s)
                        ));
                    }
                    p
                }
            };
            next[s.id()] = Some(expect + 1);
        }
        let n_out = batch.logits.iter().filter(|&&l| l).count();
        if self.n_ctx - self.cells.n_used() < n {
            return Err(Error::ContextOverflow(format!(
                "{n} new tokens but only {} of the {} cells of the KV cache are free",
                self.n_ctx - self.cells.n_used(),
                self.n_ctx
            )));
        }
        self.reserve_outputs(n_out);
        self.run_batch(model, &batch.tokens, &seqs, &batch.pos, &batch.logits, 0)?;
        self.n_outputs = n_out;
        Ok(())
    }

    /// Room for `n_out` output rows: logits, or hidden states in embeddings mode.
    fn reserve_outputs(&mut self, n_out: usize) {
        let (buf, row) = if self.embeddings { (&mut self.embd, self.n_embd) } else { (&mut self.logits, self.n_vocab) };
        if buf.len() < n_out * row {
            buf.resize(n_out * row, 0.0);
        }
    }

    /// One forward over a checked batch (at most n_batch tokens, positions continuing each
    /// sequence, enough free cells, logits buffer large enough): rows grouped by sequence (order
    /// of first appearance, stable), cells taken, the family's forward run, and the logits of the
    /// tokens flagged in `want` written from row `dst_row` on, in batch order.
    fn run_batch(
        &mut self,
        model: &Model,
        tokens: &[u32],
        seqs: &[Seq],
        pos: &[u32],
        want: &[bool],
        dst_row: usize,
    ) -> Result<()> {
        let n = tokens.len();
        // rows: the batch indices grouped by sequence
        let mut order: Vec<Seq> = Vec::new();
        for &s in seqs {
            if !order.contains(&s) {
                order.push(s);
            }
        }
        let rows: Vec<usize> = order.iter().flat_map(|&s| (0..n).filter(move |&i| seqs[i] == s)).collect();
        let mut row_of = vec![0usize; n]; // [n] row of each batch index
        for (r, &i) in rows.iter().enumerate() {
            row_of[i] = r;
        }
        let slot = self
            .cells
            .find_slot(n)
            .ok_or_else(|| Error::ContextOverflow(format!("no {n} free cells in the KV cache")))?;
        let toks: Vec<(Seq, u32)> = rows.iter().map(|&i| (seqs[i], pos[i])).collect();
        self.cells.place(&slot, &toks)?;
        let plan = &mut self.plan;
        plan.pos.clear();
        plan.pos.extend(rows.iter().map(|&i| pos[i]));
        plan.slot = slot;
        plan.groups.clear();
        let mut row0 = 0;
        for &s in &order {
            let m = seqs.iter().filter(|&&x| x == s).count();
            let cells: Vec<usize> = self.cells.seq_cells(s).map(|(_, c)| c).collect();
            let base = cells.first().copied().filter(|&b| cells.iter().enumerate().all(|(p, &c)| c == b + p));
            let pos0 = plan.pos[row0] as usize;
            plan.groups.push(SeqGroup { row0, n: m, pos0, cells, base });
            row0 += m;
        }
        plan.out_rows.clear();
        plan.out_rows.extend((0..n).filter(|&i| want[i]).map(|i| row_of[i]));
        plan.dst_row = dst_row;
        let grouped: Vec<u32> = rows.iter().map(|&i| tokens[i]).collect();
        super::forward(model, self, &grouped);
        Ok(())
    }

    /// Serialized KV cache of sequence 0 (its cells in position order) + last logits (+ the
    /// recurrent state), for save_state/load_state.
    pub fn state(&self) -> Vec<u8> {
        let cells: Vec<usize> = self.cells.seq_cells(SEQ0).map(|(_, c)| c).collect();
        let len = self.n_outputs * self.n_vocab * 4 + self.kv.saved_len(cells.len()) + self.rs.saved_len();
        let mut out = Vec::with_capacity(64 + len);
        out.extend_from_slice(STATE_MAGIC);
        for v in self.state_header() {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        for x in self.logits() {
            out.extend_from_slice(&x.to_le_bytes());
        }
        self.kv.save(&cells, &mut out);
        self.rs.save(&mut out);
        out
    }

    fn state_header(&self) -> [usize; 7] {
        // f32 0 and f16 1 as before; another pair its two ggml type ids
        let kv_type = match self.kv.types() {
            (KvType::F16, KvType::F16) => 1,
            (KvType::F32, KvType::F32) => 0,
            (k, v) => 1000 + 100 * k.ggml().id() as usize + v.ggml().id() as usize,
        };
        [STATE_VERSION, kv_type, self.kv.n_embd_k, self.kv.n_embd_v, self.n_vocab, self.kv_len(), self.n_outputs]
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
        // The state is sequence 0's: every sequence is dropped, its positions go to cells 0..kv_len.
        self.cells.clear();
        let cells: Vec<usize> = (0..kv_len).collect();
        let toks: Vec<(Seq, u32)> = (0..kv_len as u32).map(|p| (SEQ0, p)).collect();
        self.cells.place(&cells, &toks)?;
        self.kv.load(&cells, &data[kv_start..kv_start + kv_bytes]);
        self.rs.load(&data[kv_start + kv_bytes..]);
        self.n_outputs = n_outputs;
        Ok(())
    }
}

const STATE_MAGIC: &[u8; 4] = b"LPYS";
const STATE_VERSION: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::elementwise::RopeType;

    fn rope(base: f32, ff: Option<&[f32]>) -> Rope<'_> {
        Rope {
            n_rot: 8,
            freq_base: base,
            freq_scale: 1.0,
            kind: RopeType::Norm,
            freq_factors: ff,
            attn_factor: 1.0,
            yarn: None,
        }
    }

    /// Each rope's table is its own angles at the batch's positions, made once per forward.
    #[test]
    fn rope_angles_are_each_ropes_own_and_made_once_per_forward() {
        let ff = [1.0, 2.0, 4.0, 8.0];
        let ropes = [rope(10000.0, None), rope(1e6, None), rope(10000.0, Some(&ff))];
        let direct = |r: &Rope, pos: &[u32]| {
            let mut t = vec![(0.0, 0.0); pos.len() * 4];
            for (&p, a) in pos.iter().zip(t.chunks_exact_mut(4)) {
                r.angles(p as usize, a);
            }
            t
        };
        let mut cache = RopeAngles::default();
        for pos in [&[3u32, 7, 0][..], &[9]] {
            cache.start_forward();
            for _ in 0..2 {
                for r in &ropes {
                    assert_eq!(cache.get(r, pos), direct(r, pos));
                }
            }
            assert_eq!(cache.n_used, ropes.len(), "one table per rope, reused");
        }
        // the pairing is `rotate`'s: a NeoX rope with the same values reads the same table
        let neox = Rope { kind: RopeType::Neox, ..ropes[0] };
        assert_eq!(neox.angle_key(), ropes[0].angle_key());
    }
}
