//! Causal multi-head attention over the KV cache, with grouped-query heads, an optional sliding
//! window and an optional soft-cap of the scores, computed as llama.cpp's non-flash path: KQ = K·Q
//! with Q converted to the cache type, (soft-capped: cap·tanh(KQ/cap),) softmax(KQ * scale + mask)
//! in f32, then V·softmax with the probabilities converted to the
//! cache type (ggml's mul_mat converts src1 to the vec_dot type of the f16 cache). Every dot runs
//! in llama.cpp's summation order (`cpu::attn`): a batch of several tokens takes its tinyBLAS
//! order, a single token its `ggml_vec_dot_f16` order, so the results equal llama.cpp's bit for bit.
//!
//! Work is cut into units of (block of consecutive query tokens) × (query heads sharing one KV
//! head). A unit converts its K rows once into f32 panels of 16 keys (`AttnKernels::kt_*`) and its
//! V rows into f32 rows, scores all its queries against each panel while it is in L1
//! (`AttnKernels::kq`, keys in SIMD lanes), takes the softmax per query, then sums each query's
//! values (`AttnKernels::pv`, output dimensions in SIMD lanes). Units are handed out dynamically
//! (an atomic counter), most expensive first: with causal masking later tokens see more keys, so
//! the work per unit grows with the block index, and a static split by unit count would leave one
//! thread with most of it. Blocking and threads do not change any sum, so the result is the same
//! for any thread count (tested).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use smallvec::SmallVec;

#[cfg(test)]
use super::kv_cache::Strides;
use super::kv_cache::{KvElem, LayerKv};
use crate::kernels::elementwise::{scale_inplace, softcap_inplace, softmax_row, softmax_sink};
use crate::kernels::types::{AttnOrder, Kernels, SumOrders, KT_LANES};
use crate::kernels::{kernels, prefetch_rows, ThreadPool};

/// Queries (tokens × heads) a unit aims for: enough to reuse each K/V row many times while it is in
/// L1 (every unit converts its keys and values to f32 panels once: 32 left that conversion at 9 %
/// of a 512-token prompt at depth 4096, 64 halves it: +4.5 % tok/s), few enough that the unit's
/// queries (Q_TARGET × head_k floats) stay in L1 and its score rows (Q_TARGET × n_ctx floats per
/// thread) in L2 at 4k contexts (128: +1 % more for twice the scratch).
const Q_TARGET: usize = 64;
/// Keys scored per panel conversion: 128 keys × a head of 64 as f32 panels fill 32 KiB (L1).
const KEY_CHUNK: usize = 128;
/// How many key chunks ahead of the one being scored the unit asks the memory system for.
const PREFETCH_CHUNKS: usize = 2;
/// Output dimensions of P·V per value conversion (one panel row of 16 lanes).
const DIM_BLOCK: usize = 16;

/// Per-thread work space, preallocated by the context.
pub struct AttnScratch {
    pub scores: Vec<f32>, // [max queries][n_ctx] scores, then probabilities
    pub qr: Vec<f32>,     // [max queries][head_k] queries rounded to the cache type
    pub kt: Vec<f32>,     // [KEY_CHUNK/16][head_k][16] a chunk of the unit's keys as f32 panels
    pub vf: Vec<f32>,     // [n_ctx][DIM_BLOCK] a block of the unit's values as f32 rows (f16 cache),
    // or [n_ctx/16][DIM_BLOCK][16] as panels (`AttnKernels::pv_panels`)
    pub acc: Vec<f32>,  // [max queries][head_v] the unit's results
    pub pvo: Vec<f32>,  // [max queries][DIM_BLOCK] one block of output dimensions
    pub lo: Vec<usize>, // [max queries] first key of each query
    pub hi: Vec<usize>, // [max queries] last key of each query
    /// Flash attention's (`model::flash_attn`), grown on first use.
    pub fa: FaScratch,
}

/// Per-thread work space of flash attention (`model::flash_attn`; grown on first use).
#[derive(Default)]
pub struct FaScratch {
    pub(super) qr: Vec<f32>, // [heads][head_k] queries rounded to f16 (f16 K), or [Q_TILE][head_k] a tile's queries
    pub(super) qq: Vec<u8>,  // [heads][q row bytes] queries in K's dot partner type (quantized K)
    pub(super) kh: Vec<half::f16>, // [KEY_BLOCK][head_k] f16 keys read from bytes (an f16 K beside a quantized V)
    pub(super) kt: Vec<f32>, // [KEY_BLOCK/16][head_k][16] key panels
    pub(super) sc: Vec<f32>, // [heads][KEY_BLOCK] scores, or [Q_TILE][KV_TILE] a tile's
    pub(super) vf: Vec<f32>, // [KEY_BLOCK][head_v] value rows as f32
    pub(super) acc: Vec<f32>, // [heads][head_v] outputs, or [Q_TILE][head_v] a tile's
    pub(super) ms: Vec<f32>, // [heads] (or [Q_TILE]) running maxima
    pub(super) ss: Vec<f32>, // [heads] (or [Q_TILE]) running sums
    pub(super) lq: crate::kernels::types::FaLaneQueries, // a lane group's queries, laid out for its K type
    pub(super) kraw: Vec<u8>, // [FA_LANE_KEYS][K row bytes] a block of quantized keys
    pub(super) vis: Vec<u16>, // [FA_LANE_KEYS] which lanes see each key
}

fn max_queries(n_head: usize) -> usize {
    Q_TARGET.max(n_head)
}

impl AttnScratch {
    pub fn new(n_ctx: usize, _n_batch: usize, n_head: usize, head_k: usize, head_v: usize) -> Self {
        let mq = max_queries(n_head);
        AttnScratch {
            scores: vec![0.0; mq * n_ctx],
            qr: vec![0.0; mq * head_k],
            kt: vec![0.0; KEY_CHUNK.min(n_ctx).div_ceil(KT_LANES) * KT_LANES * head_k],
            vf: vec![0.0; n_ctx.div_ceil(KT_LANES) * KT_LANES * DIM_BLOCK.min(head_v)],
            acc: vec![0.0; mq * head_v],
            pvo: vec![0.0; mq * DIM_BLOCK.min(head_v)],
            lo: vec![0; mq],
            hi: vec![0; mq],
            fa: Default::default(),
        }
    }
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_tokens: usize,
    pub pos0: usize, // position of the first token; the cache holds positions 0..pos0+n_tokens
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_k: usize,
    pub head_v: usize,
    pub kq_scale: f32,
    /// Sliding window: a query at p sees keys at p' with p - p' < n_swa. 0 = unlimited.
    pub n_swa: usize,
    /// Attention logit soft-capping: scores become `cap·tanh(score/cap)` before the scale, mask
    /// and softmax (llama.cpp's `attn_soft_cap`). None = scores as computed.
    pub softcap: Option<f32>,
    /// Causal mask (decoders): token t sees positions up to its own. False (encoders): every
    /// token sees every position of its sequence in the cache, later ones included.
    pub causal: bool,
}

impl AttnShape {
    /// First key position visible to batch token t.
    pub(super) fn first(&self, t: usize) -> usize {
        if self.n_swa > 0 {
            (self.pos0 + t + 1).saturating_sub(self.n_swa)
        } else {
            0
        }
    }
    /// Last key position visible to batch token t: its own, or the sequence's last without the
    /// causal mask.
    pub(super) fn last(&self, t: usize) -> usize {
        if self.causal {
            self.pos0 + t
        } else {
            self.pos0 + self.n_tokens - 1
        }
    }
}

/// How the work is cut: blocks of `nt` tokens; each KV head's query group in `n_sub` parts.
#[derive(Clone, Copy, Debug)]
struct Plan {
    nt: usize,
    n_blocks: usize,
    n_sub: usize,
    group: usize,
}

impl Plan {
    fn new(s: &AttnShape, n_threads: usize) -> Plan {
        let group = s.n_head / s.n_head_kv;
        let mut nt = (Q_TARGET / group).clamp(1, s.n_tokens.max(1));
        let want = 4 * n_threads; // units for the dynamic split to even out
        while nt > 1 && s.n_tokens.div_ceil(nt) * s.n_head_kv < want {
            nt /= 2;
        }
        let n_blocks = s.n_tokens.div_ceil(nt);
        let per = n_blocks * s.n_head_kv;
        let n_sub = if s.n_tokens == 1 {
            // a decode row: its units cost the same, so one per thread is balanced, and each
            // further split of a KV head's queries converts its keys and values again
            n_threads.div_ceil(s.n_head_kv).min(group)
        } else if per < want {
            want.div_ceil(per).min(group)
        } else {
            1
        };
        Plan { nt, n_blocks, n_sub, group }
    }

    fn n_units(&self, s: &AttnShape) -> usize {
        self.n_blocks * s.n_head_kv * self.n_sub
    }

    /// Unit u → (tokens t0..t1, KV head, query heads h0..h0+nh). Later (costlier) blocks first.
    fn unit(&self, s: &AttnShape, u: usize) -> (usize, usize, usize, usize, usize) {
        let per_block = s.n_head_kv * self.n_sub;
        let b = self.n_blocks - 1 - u / per_block;
        let (hkv, sub) = ((u % per_block) / self.n_sub, u % self.n_sub);
        let (t0, t1) = (b * self.nt, ((b + 1) * self.nt).min(s.n_tokens));
        let (g0, g1) = (self.group * sub / self.n_sub, self.group * (sub + 1) / self.n_sub);
        (t0, t1, hkv, hkv * self.group + g0, g1 - g0)
    }
}

/// One sequence alone in the cache from cell 0 (`out[t][h]` = attention of query `q[t][h]`,
/// q: [n_tokens][n_head*head_k], over cache positions ≤ pos0 + t; out: [n_tokens][n_head*head_v]),
/// with an explicit kernel table and optional sinks ([n_head]): what the tests compare with
/// llama.cpp's loops.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub fn attention_sinks_with<T: KvElem>(
    kern: &Kernels,
    pool: &ThreadPool,
    scratch: &[Mutex<AttnScratch>],
    kv: &LayerKv<T>,
    q: &[f32],
    out: &mut [f32],
    s: AttnShape,
    sinks: Option<&[f32]>,
) {
    let group = AttnGroup { shape: s, row0: 0, keys: Keys::Base(0) };
    attention_groups_with(kern, pool, scratch, kv, q, out, &[group], sinks)
}

/// Where a sequence's keys are in the cache: key j (its position j) in cell `base + j`, or in
/// `cells[j]` (a shared prefix, cells freed and reused: any cells, read through the gather
/// kernels).
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a> {
    Base(usize),
    Cells(&'a [usize]), // [pos0 + n_tokens] the cell of each position
}

impl Keys<'_> {
    /// The cache cell holding the sequence's position j.
    pub(super) fn cell(&self, j: usize) -> usize {
        match *self {
            Keys::Base(b) => b + j,
            Keys::Cells(c) => c[j],
        }
    }
}

/// One sequence's tokens in a mixed batch: rows row0..row0+shape.n_tokens of q and out, at
/// positions shape.pos0.., attending to the keys of its own positions 0..=pos0+n_tokens-1. The
/// shape is the one the sequence would have alone, so its sums (and bits) are that run's.
#[derive(Clone, Copy, Debug)]
pub struct AttnGroup<'a> {
    pub shape: AttnShape,
    pub row0: usize,
    pub keys: Keys<'a>,
}

/// Attention of every group of a mixed batch (q: [rows][n_head*head_k] → out: [rows][n_head*head_v],
/// each group on its own rows), all groups' units in one dynamic queue (the groups with the most
/// keys first), so the threads stay busy with many short decode rows. The shapes must agree in
/// heads and head sizes.
pub fn attention_groups<T: KvElem>(
    pool: &ThreadPool,
    scratch: &[Mutex<AttnScratch>],
    kv: &LayerKv<T>,
    q: &[f32],
    out: &mut [f32],
    groups: &[AttnGroup],
    sinks: Option<&[f32]>,
) {
    attention_groups_with(kernels(), pool, scratch, kv, q, out, groups, sinks)
}

/// `attention_groups` with an explicit kernel table.
#[allow(clippy::too_many_arguments)]
pub fn attention_groups_with<T: KvElem>(
    kern: &Kernels,
    pool: &ThreadPool,
    scratch: &[Mutex<AttnScratch>],
    kv: &LayerKv<T>,
    q: &[f32],
    out: &mut [f32],
    groups: &[AttnGroup],
    sinks: Option<&[f32]>,
) {
    let Some(g0) = groups.first() else { return };
    let s0 = g0.shape;
    assert!(!scratch.is_empty(), "attention: no scratch");
    assert!(s0.n_head_kv > 0 && s0.n_head.is_multiple_of(s0.n_head_kv), "attention: bad head counts");
    let (qrow, row) = (s0.n_head * s0.head_k, s0.n_head * s0.head_v);
    let mut n_rows = 0;
    for g in groups {
        let s = &g.shape;
        assert!(
            (s.n_head, s.n_head_kv, s.head_k, s.head_v) == (s0.n_head, s0.n_head_kv, s0.head_k, s0.head_v),
            "attention: groups disagree in heads"
        );
        if let Keys::Cells(c) = g.keys {
            assert!(c.len() >= s.pos0 + s.n_tokens, "attention: fewer cells than positions");
        }
        n_rows = n_rows.max(g.row0 + s.n_tokens);
    }
    assert!(q.len() >= n_rows * qrow, "attention: q too short");
    assert!(out.len() >= n_rows * row, "attention: out too short");
    // The groups' units numbered one after the other, the groups with the most keys first.
    // (on the stack for a decode step's one group and one row: ~150 jobs a token)
    let mut order: SmallVec<[usize; 4]> = (0..groups.len()).filter(|&g| groups[g].shape.n_tokens > 0).collect();
    order.sort_by_key(|&g| std::cmp::Reverse(groups[g].shape.pos0 + groups[g].shape.n_tokens));
    let plans: SmallVec<[Plan; 4]> = order.iter().map(|&g| Plan::new(&groups[g].shape, pool.n_threads())).collect();
    let mut first_unit: SmallVec<[usize; 5]> = smallvec::smallvec![0; order.len() + 1]; // [groups + 1] first unit of each group
    for (i, (&g, p)) in order.iter().zip(&plans).enumerate() {
        first_unit[i + 1] = first_unit[i] + p.n_units(&groups[g].shape);
    }
    let n_units = first_unit[order.len()];
    let next = AtomicUsize::new(0);
    // One lock per token row of the output: a unit writes its heads' part of each of its tokens
    // (distinct units cover distinct (token, head) pairs, so the locks are never contended long).
    let out_rows: SmallVec<[Mutex<&mut [f32]>; 4]> = out[..n_rows * row].chunks_mut(row).map(Mutex::new).collect();
    pool.run(|ith, _nth| {
        let mut guard = scratch[ith % scratch.len()].lock().unwrap_or_else(|e| e.into_inner());
        let sc = &mut *guard;
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            if u >= n_units {
                break;
            }
            let i = first_unit.partition_point(|&f| f <= u) - 1;
            let (g, plan) = (&groups[order[i]], &plans[i]);
            let s = &g.shape;
            let (t0, t1, hkv, h0, nh) = plan.unit(s, u - first_unit[i]);
            unit(kern, kv, g.keys, &q[g.row0 * qrow..], s, sinks, sc, t0, t1, hkv, h0, nh);
            let hv = s.head_v;
            for ti in 0..t1 - t0 {
                let mut dst = out_rows[g.row0 + t0 + ti].lock().unwrap_or_else(|e| e.into_inner());
                dst[h0 * hv..(h0 + nh) * hv].copy_from_slice(&sc.acc[ti * nh * hv..(ti + 1) * nh * hv]);
            }
        }
    });
}

/// One unit: queries (t, h) for t in t0..t1, h in h0..h0+nh (all on KV head `hkv`), query index
/// i = (t - t0)·nh + (h - h0); results in `sc.acc[i]`.
#[allow(clippy::too_many_arguments)]
fn unit<T: KvElem>(
    kern: &Kernels,
    kv: &LayerKv<T>,
    keys: Keys,
    q: &[f32],
    s: &AttnShape,
    sinks: Option<&[f32]>,
    sc: &mut AttnScratch,
    t0: usize,
    t1: usize,
    hkv: usize,
    h0: usize,
    nh: usize,
) {
    let (hk, hv) = (s.head_k, s.head_v);
    let nq = (t1 - t0) * nh;
    // Key range of the unit, from a multiple of 64 (the start of a lane group of either order,
    // and of a softmax chunk, see `softmax_query`).
    let (jlo, jhi) = (s.first(t0) / 64 * 64, s.last(t1 - 1));
    let span = jhi - jlo + 1;
    let tok = |i: usize| t0 + i / nh;
    let (kq_order, pv_order) = orders(s, kern.orders, T::F32);

    // Q rounded to the cache type.
    let qr = &mut sc.qr[..nq * hk];
    for t in t0..t1 {
        let src = (t * s.n_head + h0) * hk;
        qr[(t - t0) * nh * hk..(t - t0 + 1) * nh * hk].copy_from_slice(&q[src..src + nh * hk]);
    }
    T::round_slice(kern, qr);

    // Scores of every query against keys jlo..=jhi (entries a query may not see are ignored), a
    // chunk of keys at a time: the chunk's f32 panels stay in L1 while every query of the unit
    // scores them, and the cache's f16 keys are read once per unit (each score is its own dot, so
    // the chunking changes no sum).
    let scores = &mut sc.scores[..nq * span];
    for c0 in (0..span).step_by(KEY_CHUNK) {
        let ks = KeyChunk { hkv, jlo, span, c0 };
        score_chunk(kern, kv, keys, s, ks, &mut sc.kt, qr, nq, &mut scores[c0..], span, kq_order);
    }

    // Softmax over each query's keys, probabilities rounded to the cache type.
    for i in 0..nq {
        softmax_query::<T>(kern, s, sinks, tok(i), h0 + i % nh, jlo, &mut scores[i * span..(i + 1) * span]);
    }

    // o_i = Σ_j p_ij v_j over each query's keys (the masked ones have p = 0 and add nothing), 16
    // output dimensions at a time: each dimension is its own dot over the keys, so a block's
    // values of the whole span (span × 16 floats, in L2) are converted once and used by every
    // query of the unit, and no sum changes.
    let (lo, hi) = (&mut sc.lo[..nq], &mut sc.hi[..nq]);
    for i in 0..nq {
        (lo[i], hi[i]) = (s.first(tok(i)), s.last(tok(i)));
    }
    for d0 in (0..hv).step_by(DIM_BLOCK) {
        let w = (hv - d0).min(DIM_BLOCK);
        let ob = &mut sc.pvo[..nq * w]; // [nq][w] the block's results
        let vb = ValueBlock { hkv, jlo, span, d0, w };
        pv_block(kern, kv, keys, vb, &mut sc.vf, lo, hi, scores, ob, pv_order);
        for i in 0..nq {
            sc.acc[i * hv + d0..i * hv + d0 + w].copy_from_slice(&ob[i * w..(i + 1) * w]);
        }
    }
}

/// Keys jlo+c0 .. jlo+c0+min(KEY_CHUNK, span−c0) of KV head `hkv`, of a query range whose keys
/// are jlo..jlo+span.
#[derive(Clone, Copy)]
struct KeyChunk {
    hkv: usize,
    jlo: usize,
    span: usize,
    c0: usize,
}

/// Scores of queries `qr` ([nq][head_k], rounded to the cache type) against one chunk of keys,
/// converted to f32 panels in `kt`: query i's score of the chunk's key j goes to
/// `out[i·stride + j]`.
#[allow(clippy::too_many_arguments)]
fn score_chunk<T: KvElem>(
    kern: &Kernels,
    kv: &LayerKv<T>,
    keys: Keys,
    s: &AttnShape,
    c: KeyChunk,
    kt: &mut [f32],
    qr: &[f32],
    nq: usize,
    out: &mut [f32],
    stride: usize,
    order: AttnOrder,
) {
    let (hk, hv) = (s.head_k, s.head_v);
    let (ks, vs) = (kv.ks, kv.vs);
    let KeyChunk { hkv, jlo, span, c0 } = c;
    let nkc = (span - c0).min(KEY_CHUNK);
    let kt = &mut kt[..nkc.div_ceil(KT_LANES) * KT_LANES * hk];
    if let Keys::Base(b) = keys {
        // Hints for the memory system while this chunk is converted and scored: the keys
        // PREFETCH_CHUNKS chunks ahead (and, on the first chunk, those in between) and this
        // chunk's values, which P·V reads after the softmax. Without them the panel builders
        // wait on each strided cache row (one head's slice of every position) in turn.
        let row_bytes = |n: usize| n * std::mem::size_of::<T>();
        let first = if c0 == 0 { KEY_CHUNK } else { c0 + PREFETCH_CHUNKS * KEY_CHUNK };
        for from in (first..span.min(c0 + (PREFETCH_CHUNKS + 1) * KEY_CHUNK)).step_by(KEY_CHUNK) {
            let rows = (span - from).min(KEY_CHUNK);
            prefetch_rows(&kv.k[ks.at(b + jlo + from, hkv)..], ks.pos, rows, row_bytes(hk));
        }
        prefetch_rows(&kv.v[vs.at(b + jlo + c0, hkv)..], vs.pos, nkc, row_bytes(hv));
    }
    match keys {
        Keys::Base(b) => T::attn_kt(kern)(hk, &kv.k[ks.at(b + jlo + c0, hkv)..], ks.pos, nkc, kt),
        Keys::Cells(c) => T::attn_kt_gather(kern)(hk, &kv.k[ks.at(0, hkv)..], ks.pos, &c[jlo + c0..jlo + c0 + nkc], kt),
    }
    (kern.attn.kq)(hk, kt, nkc, qr, nq, out, stride, order);
}
/// Softmax of one query's scores (`row`: its scores of keys jlo.., token t of the batch, head h),
/// in place, the probabilities rounded to the cache type. ggml sums the exponentials in chunks of
/// its vector width counted from key 0 with the keys outside the window masked to −inf, so a
/// sliding-window row starts at its first key rounded down to a chunk boundary, the keys before
/// the window set to −inf (exp = 0, which leaves every chunk sum unchanged).
#[allow(clippy::too_many_arguments)]
fn softmax_query<T: KvElem>(
    kern: &Kernels,
    s: &AttnShape,
    sinks: Option<&[f32]>,
    t: usize,
    h: usize,
    jlo: usize,
    row: &mut [f32],
) {
    let chunk = kern.orders.vector_width();
    let start = s.first(t) / chunk * chunk;
    let row = &mut row[start - jlo..=s.last(t) - jlo];
    row[..s.first(t) - start].fill(f32::NEG_INFINITY);
    if let Some(cap) = s.softcap {
        // kq_scaled_1, kq_tanh, kq_scaled_2 on the keys the query sees (the others are −inf)
        softcap_inplace(&mut row[s.first(t) - start..], cap);
    }
    match sinks {
        // a cacheless encoder's row is its sequence, not a padded cache: ggml's softmax ends
        // it with the C library's expf after the last whole vector
        None if T::F32 && !s.causal => {
            scale_inplace(row, s.kq_scale);
            softmax_row(row, kern.orders);
        }
        None => (kern.softmax)(row, s.kq_scale),
        Some(sk) => softmax_sink(row, s.kq_scale, sk[h], kern.orders),
    }
    T::round_slice(kern, row);
}

/// Output dimensions d0..d0+w of KV head `hkv`'s values over keys jlo..jlo+span.
#[derive(Clone, Copy)]
struct ValueBlock {
    hkv: usize,
    jlo: usize,
    span: usize,
    d0: usize,
    w: usize,
}

/// P·V over one block of output dimensions: query i (probabilities `p[i·span..]` of keys
/// jlo.., its keys lo[i]..=hi[i]) gets `ob[i·w..(i+1)·w]`; the block's values are converted once
/// (into `vf`) for all the queries.
#[allow(clippy::too_many_arguments)]
fn pv_block<T: KvElem>(
    kern: &Kernels,
    kv: &LayerKv<T>,
    keys: Keys,
    b: ValueBlock,
    vf: &mut [f32],
    lo: &[usize],
    hi: &[usize],
    p: &[f32],
    ob: &mut [f32],
    order: AttnOrder,
) {
    let vs = kv.vs;
    let ValueBlock { hkv, jlo, span, d0, w } = b;
    let jhi = jlo + span - 1;
    if let Some(pv) = kern.attn.pv_panels {
        let vt = &mut vf[..span.div_ceil(KT_LANES) * KT_LANES * w];
        match keys {
            Keys::Base(b) => T::attn_kt(kern)(w, &kv.v[vs.at(b + jlo, hkv) + d0..], vs.pos, span, vt),
            Keys::Cells(c) => T::attn_kt_gather(kern)(w, &kv.v[vs.at(0, hkv) + d0..], vs.pos, &c[jlo..=jhi], vt),
        }
        pv(w, vt, jlo, lo, hi, p, span, ob, order);
    } else {
        let (vrows, vstride) = match keys {
            Keys::Base(b) => T::v_rows(kern, &kv.v[vs.at(b + jlo, hkv) + d0..], vs.pos, w, span, vf),
            Keys::Cells(c) => T::v_rows_gather(kern, &kv.v[vs.at(0, hkv) + d0..], vs.pos, w, &c[jlo..=jhi], vf),
        };
        for i in 0..lo.len() {
            let pi = &p[i * span..(i + 1) * span];
            (kern.attn.pv)(w, vrows, vstride, jlo, lo[i], hi[i], pi, &mut ob[i * w..(i + 1) * w], order);
        }
    }
}

/// The orders llama.cpp sums Q·K and P·V in for this batch (`kernels::attn`), in the build of
/// `o`. An f16 cache: tinyBLAS for a batch of several tokens when it takes the product (the dot
/// length a multiple of its lanes — always for P·V, whose key count is padded — and the row count
/// a multiple of 4: the keys for Q·K, padded too, the value dimensions for P·V),
/// `ggml_vec_dot_f16` otherwise and for one token. f32 keys and values (`f32_kv`: a cacheless
/// encoder's, an f32 cache): ggml's mul_mat leaves Q (a permuted, non-contiguous view) in f32, so
/// Q·K never reaches tinyBLAS: `ggml_vec_dot_f32` over the head; P·V takes tinyBLAS for several
/// tokens when the key count is a multiple of its lanes (a padded cache's always, an encoder's
/// sequence length sometimes), else `ggml_vec_dot_f32` (over a padded cache: no tail, as
/// `ggml_vec_dot_f16`'s order).
fn orders(s: &AttnShape, o: SumOrders, f32_kv: bool) -> (AttnOrder, AttnOrder) {
    let (batch, single) = (o.attn_batch(), o.attn_single());
    if f32_kv {
        let whole_lanes = s.causal || (s.pos0 + s.n_tokens).is_multiple_of(batch.lanes());
        let pv = match (s.n_tokens > 1 && whole_lanes && s.head_v.is_multiple_of(4), s.causal) {
            (true, _) => batch,
            (false, true) => single,
            (false, false) => o.attn_single_f32(),
        };
        return (o.attn_single_f32(), pv);
    }
    if s.n_tokens > 1 {
        let kq = if s.head_k.is_multiple_of(batch.lanes()) { batch } else { single };
        let pv = if s.head_v.is_multiple_of(4) { batch } else { single };
        (kq, pv)
    } else {
        (single, single)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attn::reference::ggml_dot;
    use half::f16;

    /// llama.cpp's attention one (token, head) at a time: each score and output element a
    /// separate ggml dot over the padded key range (p = 0 outside the query's window).
    fn reference<T: KvElem>(kv: &LayerKv<T>, q: &[f32], s: AttnShape, o: SumOrders, sinks: Option<&[f32]>) -> Vec<f32> {
        let group = s.n_head / s.n_head_kv;
        let (kq_order, pv_order) = orders(&s, o, T::F32);
        let mut out = vec![0.0; s.n_tokens * s.n_head * s.head_v];
        for u in 0..s.n_tokens * s.n_head {
            let (t, h) = (u / s.n_head, u % s.n_head);
            let hk = h / group;
            let (first, n_kv) = (s.first(t), s.last(t) + 1);
            let qr: Vec<f32> = q[u * s.head_k..(u + 1) * s.head_k].iter().map(|&x| T::from_f32(x).to_f32()).collect();
            let mut scores = vec![0.0f32; n_kv];
            for (j, sj) in scores.iter_mut().enumerate() {
                if j < first {
                    *sj = f32::NEG_INFINITY;
                    continue;
                }
                let k: Vec<f32> =
                    kv.k[kv.ks.at(j, hk)..kv.ks.at(j, hk) + s.head_k].iter().map(|x| x.to_f32()).collect();
                *sj = ggml_dot(kq_order, &k, &qr);
                if let Some(cap) = s.softcap {
                    // llama.cpp: ggml_scale(kq, 1/cap), ggml_tanh, ggml_scale(cap), element by element
                    *sj = (*sj * (1.0 / cap)).tanh() * cap;
                }
            }
            match sinks {
                // an encoder's unpadded row: the C library's expf after the last whole vector
                None if T::F32 && !s.causal => {
                    scale_inplace(&mut scores, s.kq_scale);
                    softmax_row(&mut scores, o);
                }
                None => (crate::kernels::elementwise::reference(o).0)(&mut scores, s.kq_scale),
                Some(sk) => softmax_sink(&mut scores, s.kq_scale, sk[h], o),
            }
            // a cache is padded to 256 cells; a cacheless encoder's keys are its sequence
            let padded = if T::F32 && !s.causal { n_kv } else { n_kv.div_ceil(256) * 256 };
            let p: Vec<f32> =
                (0..padded).map(|j| if j < n_kv { T::from_f32(scores[j]).to_f32() } else { 0.0 }).collect();
            for d in 0..s.head_v {
                let col: Vec<f32> =
                    (0..padded).map(|j| if j < n_kv { kv.v[kv.vs.at(j, hk) + d].to_f32() } else { 0.0 }).collect();
                out[u * s.head_v + d] = ggml_dot(pv_order, &col, &p);
            }
        }
        out
    }

    struct Rng(u64);
    impl Rng {
        fn f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn case<T: KvElem>(
        kern: &Kernels,
        s: AttnShape,
        n_threads: usize,
        seed: u64,
        with_sinks: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng(seed);
        let n_ctx = s.pos0 + s.n_tokens + 3;
        let (nk, nv) = (s.n_head_kv * s.head_k, s.n_head_kv * s.head_v);
        // heads major, as a context's cache
        let kv = LayerKv {
            k: (0..n_ctx * nk).map(|_| T::from_f32(3.0 * rng.f32())).collect(),
            v: (0..n_ctx * nv).map(|_| T::from_f32(rng.f32())).collect(),
            ks: Strides::heads_major(s.head_k, n_ctx),
            vs: Strides::heads_major(s.head_v, n_ctx),
        };
        let q: Vec<f32> = (0..s.n_tokens * s.n_head * s.head_k).map(|_| 2.0 * rng.f32()).collect();
        // sinks around the scores' range, so some heads' sinks dominate and others do not
        let sinks: Vec<f32> = (0..s.n_head).map(|_| 6.0 * rng.f32()).collect();
        let sinks = with_sinks.then_some(&sinks[..]);
        let pool = ThreadPool::new(n_threads);
        let scratch: Vec<_> = (0..n_threads)
            .map(|_| Mutex::new(AttnScratch::new(n_ctx, s.n_tokens, s.n_head, s.head_k, s.head_v)))
            .collect();
        let mut out = vec![f32::NAN; s.n_tokens * s.n_head * s.head_v + 5];
        attention_sinks_with(kern, &pool, &scratch, &kv, &q, &mut out, s, sinks);
        assert!(out[s.n_tokens * s.n_head * s.head_v..].iter().all(|x| x.is_nan()), "wrote past the end");
        out.truncate(s.n_tokens * s.n_head * s.head_v);
        (out, reference(&kv, &q, s, kern.orders, sinks))
    }

    fn shapes() -> Vec<AttnShape> {
        let base = AttnShape {
            n_tokens: 1,
            pos0: 0,
            n_head: 8,
            n_head_kv: 2,
            head_k: 64,
            head_v: 64,
            kq_scale: 0.125,
            n_swa: 0,
            softcap: None,
            causal: true,
        };
        let mut v = Vec::new();
        for &(n_tokens, pos0) in &[(1, 0), (1, 37), (1, 300), (7, 0), (40, 0), (13, 29), (70, 5)] {
            for &(n_head, n_head_kv, hk, hv) in
                &[(8, 2, 64, 64), (4, 4, 19, 19), (14, 2, 64, 64), (4, 1, 256, 256), (6, 3, 33, 17)]
            {
                for &n_swa in &[0, 4, 9] {
                    v.push(AttnShape { n_tokens, pos0, n_head, n_head_kv, head_k: hk, head_v: hv, n_swa, ..base });
                }
                // soft-capped scores: loose (full causal) and tight (most scores saturate; window)
                for (n_swa, cap) in [(0, 30.0), (4, 2.5)] {
                    let softcap = Some(cap);
                    v.push(AttnShape {
                        n_tokens,
                        pos0,
                        n_head,
                        n_head_kv,
                        head_k: hk,
                        head_v: hv,
                        n_swa,
                        softcap,
                        ..base
                    });
                }
            }
        }
        // encoders: every token sees its whole sequence; sequence lengths on and off the lanes
        for n_tokens in [2, 7, 16, 32, 40, 64, 70, 130] {
            for &(n_head, hk, hv) in &[(12, 32, 32), (6, 64, 64), (4, 19, 19)] {
                let (n_head_kv, causal) = (n_head, false);
                v.push(AttnShape { n_tokens, n_head, n_head_kv, head_k: hk, head_v: hv, causal, ..base });
            }
        }
        v
    }

    #[test]
    fn every_table_is_bit_identical_to_llama_cpps_loops() {
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for kern in Kernels::available() {
            for (ci, s) in shapes().into_iter().enumerate() {
                for nth in [1, 2, 3] {
                    let (a, r) = case::<f16>(&kern, s, nth, ci as u64 + 1, false);
                    assert!(bits(&a) == bits(&r), "{:?} f16 shape {ci} threads {nth}", kern.isa);
                    let (a, r) = case::<f32>(&kern, s, nth, ci as u64 + 1, false);
                    assert!(bits(&a) == bits(&r), "{:?} f32 shape {ci} threads {nth}", kern.isa);
                }
            }
        }
    }

    /// With sinks: every table bit-identical to llama.cpp's loops (one ggml soft_max with the
    /// head's sink per (token, head)).
    #[test]
    fn sinks_every_table_is_bit_identical_to_llama_cpps_loops() {
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for kern in Kernels::available() {
            for (ci, s) in shapes().into_iter().enumerate() {
                for nth in [1, 2] {
                    let (a, r) = case::<f16>(&kern, s, nth, ci as u64 + 7, true);
                    assert!(bits(&a) == bits(&r), "{:?} sinks f16 shape {ci} threads {nth}", kern.isa);
                    let (a, r) = case::<f32>(&kern, s, nth, ci as u64 + 7, true);
                    assert!(bits(&a) == bits(&r), "{:?} sinks f32 shape {ci} threads {nth}", kern.isa);
                }
            }
        }
    }

    /// Sinks against the definition in f64: o = Σ_j e^(s_j − m)·v_j / (Σ_j e^(s_j − m) + e^(sink − m))
    /// over the visible keys (f32 cache, so only the f32 roundings of scores and sums differ).
    #[test]
    fn sinks_match_the_definition() {
        let s = AttnShape {
            n_tokens: 9,
            pos0: 5,
            n_head: 4,
            n_head_kv: 2,
            head_k: 32,
            head_v: 32,
            kq_scale: 0.2,
            n_swa: 6,
            softcap: None,
            causal: true,
        };
        let mut rng = Rng(99);
        let n_ctx = s.pos0 + s.n_tokens;
        let (nk, nv) = (s.n_head_kv * s.head_k, s.n_head_kv * s.head_v);
        let kv = LayerKv::<f32>::positions_major(
            (0..n_ctx * nk).map(|_| 3.0 * rng.f32()).collect(),
            (0..n_ctx * nv).map(|_| rng.f32()).collect(),
            s.n_head_kv,
            s.head_k,
            s.head_v,
        );
        let q: Vec<f32> = (0..s.n_tokens * s.n_head * s.head_k).map(|_| 2.0 * rng.f32()).collect();
        let sinks = [-3.0f32, 0.5, 2.0, 30.0];
        let pool = ThreadPool::new(2);
        let scratch: Vec<_> = (0..2).map(|_| Mutex::new(AttnScratch::new(n_ctx, s.n_tokens, 4, 32, 32))).collect();
        let mut out = vec![0.0; s.n_tokens * s.n_head * s.head_v];
        attention_sinks_with(&Kernels::SCALAR, &pool, &scratch, &kv, &q, &mut out, s, Some(&sinks));
        for t in 0..s.n_tokens {
            for h in 0..s.n_head {
                let hk = h / 2;
                let keys = s.first(t)..=s.last(t);
                let score = |j: usize| -> f64 {
                    (0..32).map(|d| q[(t * 4 + h) * 32 + d] as f64 * kv.k[j * nk + hk * 32 + d] as f64).sum::<f64>()
                        * 0.2
                };
                let m = keys.clone().map(score).fold(sinks[h] as f64, f64::max);
                let denom: f64 = keys.clone().map(|j| (score(j) - m).exp()).sum::<f64>() + (sinks[h] as f64 - m).exp();
                for d in 0..32 {
                    let want: f64 =
                        keys.clone().map(|j| (score(j) - m).exp() * kv.v[j * nv + hk * 32 + d] as f64).sum::<f64>()
                            / denom;
                    let got = out[(t * 4 + h) * 32 + d] as f64;
                    assert!((got - want).abs() < 1e-5, "t {t} h {h} d {d}: {got} vs {want}");
                }
            }
        }
    }

    /// Several sequences in one cache: their positions in shuffled cells (a shared prefix in the
    /// same cells, one sequence in a contiguous run read in place), all groups in one call. Each
    /// group's rows equal, bit for bit, the sequence run alone over a cache holding only its own
    /// positions from cell 0 (the path every other test checks against llama.cpp's loops).
    #[test]
    fn groups_over_any_cells_equal_each_sequence_alone() {
        fn run<T: KvElem>(kern: &Kernels, s0: AttnShape, nth: usize, seed: u64) {
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut rng = Rng(seed);
            let (nk, nv) = (s0.n_head_kv * s0.head_k, s0.n_head_kv * s0.head_v);
            // (pos0, n_tokens) of each sequence; sequences 0 and 1 share positions 0..shared
            let seqs = [(37usize, 1usize), (20, 9), (0, 5), (70, 1)];
            let shared = 12;
            let n_cells = 400;
            // a random permutation of the cells; sequence 3 takes the run 300..371 (fast path)
            let mut perm: Vec<usize> = (0..300).collect();
            for i in (1..perm.len()).rev() {
                let j = (rng.0 % (i as u64 + 1)) as usize;
                rng.f32();
                perm.swap(i, j);
            }
            let mut free = perm.into_iter();
            let mut cells: Vec<Vec<usize>> = Vec::new();
            for (si, &(pos0, n)) in seqs.iter().enumerate() {
                let c: Vec<usize> = match si {
                    1 => (0..pos0 + n).map(|p| if p < shared { cells[0][p] } else { free.next().unwrap() }).collect(),
                    3 => (300..300 + pos0 + n).collect(),
                    _ => (0..pos0 + n).map(|_| free.next().unwrap()).collect(),
                };
                cells.push(c);
            }
            let kv = LayerKv::positions_major(
                (0..n_cells * nk).map(|_| T::from_f32(3.0 * rng.f32())).collect(),
                (0..n_cells * nv).map(|_| T::from_f32(rng.f32())).collect(),
                s0.n_head_kv,
                s0.head_k,
                s0.head_v,
            );
            let (qrow, orow) = (s0.n_head * s0.head_k, s0.n_head * s0.head_v);
            let n_rows: usize = seqs.iter().map(|s| s.1).sum();
            let q: Vec<f32> = (0..n_rows * qrow).map(|_| 2.0 * rng.f32()).collect();
            let mut groups = Vec::new();
            let mut row0 = 0;
            for (si, &(pos0, n)) in seqs.iter().enumerate() {
                let keys = if si == 3 { Keys::Base(300) } else { Keys::Cells(&cells[si]) };
                groups.push(AttnGroup { shape: AttnShape { n_tokens: n, pos0, ..s0 }, row0, keys });
                row0 += n;
            }
            let pool = ThreadPool::new(nth);
            let scratch: Vec<_> = (0..nth)
                .map(|_| Mutex::new(AttnScratch::new(n_cells, n_rows, s0.n_head, s0.head_k, s0.head_v)))
                .collect();
            let mut out = vec![f32::NAN; n_rows * orow];
            attention_groups_with(kern, &pool, &scratch, &kv, &q, &mut out, &groups, None);
            for (si, g) in groups.iter().enumerate() {
                let s = g.shape;
                // the sequence alone: its rows copied to cells 0.. in position order
                let alone = LayerKv::positions_major(
                    cells[si].iter().flat_map(|&c| kv.k[c * nk..(c + 1) * nk].to_vec()).collect(),
                    cells[si].iter().flat_map(|&c| kv.v[c * nv..(c + 1) * nv].to_vec()).collect(),
                    s0.n_head_kv,
                    s0.head_k,
                    s0.head_v,
                );
                let mut want = vec![0.0; s.n_tokens * orow];
                let qs = &q[g.row0 * qrow..(g.row0 + s.n_tokens) * qrow];
                attention_sinks_with(kern, &pool, &scratch, &alone, qs, &mut want, s, None);
                let got = &out[g.row0 * orow..(g.row0 + s.n_tokens) * orow];
                assert!(
                    bits(got) == bits(&want),
                    "{:?} sequence {si} threads {nth} swa {} {}",
                    kern.isa,
                    s.n_swa,
                    std::any::type_name::<T>()
                );
            }
        }
        let base = AttnShape {
            n_tokens: 1,
            pos0: 0,
            n_head: 8,
            n_head_kv: 2,
            head_k: 64,
            head_v: 64,
            kq_scale: 0.125,
            n_swa: 0,
            softcap: None,
            causal: true,
        };
        for kern in Kernels::available() {
            for (i, s) in [
                base,
                AttnShape { n_swa: 9, ..base },
                AttnShape { head_k: 33, head_v: 17, n_head: 6, n_head_kv: 3, ..base },
            ]
            .into_iter()
            .enumerate()
            {
                for nth in [1, 3] {
                    run::<f16>(&kern, s, nth, 40 + i as u64);
                    run::<f32>(&kern, s, nth, 50 + i as u64);
                }
            }
        }
    }

    #[test]
    fn plan_covers_every_query_once() {
        for s in shapes() {
            for nth in [1, 2, 4] {
                let p = Plan::new(&s, nth);
                let mut seen = vec![0u8; s.n_tokens * s.n_head];
                for u in 0..p.n_units(&s) {
                    let (t0, t1, hkv, h0, nh) = p.unit(&s, u);
                    assert!(nh * (t1 - t0) <= max_queries(s.n_head));
                    for t in t0..t1 {
                        for h in h0..h0 + nh {
                            assert_eq!(h / (s.n_head / s.n_head_kv), hkv);
                            seen[t * s.n_head + h] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&c| c == 1));
            }
        }
    }
}
