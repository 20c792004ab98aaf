//! `out = x · Wᵀ` for a quantized weight W, the op that dominates inference time.
//!
//! Steps (as ggml's mul_mat): the activations are converted ONCE per call to the weight's partner
//! type (`Kernels::vec_dot_type`: Q8_0, Q8_1, Q8_K, F16, BF16 or F32) into a reusable scratch buffer,
//! then the weight rows are split in chunks that threads claim from a shared counter (so threads on
//! a busy, shared machine still finish together), and each chunk computes every token against a
//! tile of weight rows while that tile is hot in cache.

use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

use super::dispatch::kernels;
use super::pool::{ThreadPool, WarmSeg, WARM_SEGS};
use super::types::{
    BatchGemmFn, FromFloatFn, GemmR16Fn, Kernels, MatShape, R16Plan, TileFn, VecDotFn, GEMM_ROWS, TILE, TILE_T,
};
use crate::quant::repack::{self, Packed, MAX_T, MAX_WIDE_T, R};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A weight matrix: `rows` rows of `cols` elements each, row-major, in ggml block layout.
#[derive(Clone, Copy, Debug)]
pub struct QTensor<'a> {
    pub ggml_type: GgmlType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
    /// The same matrix repacked into R16 groups, when the model loader made one.
    pub packed: Option<&'a Packed>,
}

impl<'a> QTensor<'a> {
    pub fn new(ggml_type: GgmlType, data: &'a [u8], rows: usize, cols: usize) -> Self {
        QTensor { ggml_type, data, rows, cols, packed: None }
    }
}

/// Reusable buffer for the converted activations; grows to the largest call and then stays, so
/// steady-state decoding allocates nothing.
#[derive(Default)]
pub struct MatmulScratch {
    /// [n_tokens][act_row_bytes]; u64 storage keeps block structs (f32 scale of Q8_K) aligned.
    buf: Vec<u64>,
    ahead: Lookahead,
    /// [n_threads]: a single-token job's first claims per thread (`first_claims`).
    warm: Vec<[WarmSeg; WARM_SEGS]>,
}

/// The matrices of one job (Q, K and V; gate and up; one): kept on the stack. A decoded token's
/// ~150 jobs made four small heap vectors each, and `perf` put ~1 % of a token's samples in the
/// allocator (whose bookkeeping the weight stream flushes from the caches between calls;
/// docs/PERFORMANCE.md, session 30).
type MatrixList<T> = SmallVec<[T; 4]>;

/// What the threads warm for the next single-token job (`ThreadPool::run_warming`), learned from
/// the previous forward: a forward runs the same matrices in the same order every token, so job i
/// of this forward is job i of the last one and job i + 1 follows it again, and what was read
/// between the two (`MatmulScratch::note_reads`: the attention's keys and values after a Q/K/V
/// job) is read there again (a wrong guess costs a few wasted reads, never a wrong result). The
/// tables are indexed by the job's place in the forward (`MatmulScratch::start_forward` starts
/// the count): a token's weights have flushed them from the caches by the next token, and a hash
/// map's bucket and per-entry vectors were a miss each, ~0.4 µs per job (docs/PERFORMANCE.md,
/// session 29); these rows are read in order.
#[derive(Default)]
struct Lookahead {
    /// The next job's place in the forward.
    seq: usize,
    /// Threads per job the `claims` rows were recorded for.
    nth: usize,
    /// [job]: each job's key (its first matrix's packed-bytes address).
    keys: Vec<usize>,
    /// [job][nth]: each job's first claims, per thread.
    claims: Vec<[WarmSeg; WARM_SEGS]>,
    /// [job]: the ranges read after the job, before the next one.
    between: Vec<Vec<WarmSeg>>,
    /// `plan`'s answer: each thread's ranges, what comes between first (reused buffer).
    plan: Vec<[WarmSeg; WARM_SEGS]>,
}

/// Jobs of one forward remembered at most; a longer forward (or a caller that never starts one)
/// starts over at its first.
const LOOKAHEAD_JOBS: usize = 4096;

/// Weight bytes a thread warms for the next job at most: what one gap between jobs (serial work,
/// a job's tail) can fetch, well inside L2.
const WARM_BYTES: usize = 512 << 10;
/// Ranges of a job's first claims per thread (`first_claims`); the other `WARM_SEGS` slots are for
/// what is read between two jobs.
const CLAIM_SEGS: usize = 4;
/// Bytes of one range read between two jobs (`note_reads`) warmed at most: an attention head's
/// keys or values up to depth 1,024 (head 64, f16) — deeper, the gap is too short for more.
const BETWEEN_BYTES: usize = 128 << 10;

impl Lookahead {
    /// Records `warm` (job `key`'s first claims, one entry per thread) at the job's place in the
    /// forward and returns what each of `nth` threads warms after it: first its share of what was
    /// read between this job and the next last time (range i to thread nth−1−i mod nth: the
    /// workers, idle first, take the attention's keys, read first; the caller, which warms only
    /// at its job's end, the values, read after the softmax), then its first claims of the next
    /// job. Nothing when this place held another job last time (the forward changed).
    fn plan(&mut self, key: usize, warm: &[[WarmSeg; WARM_SEGS]], nth: usize) -> &[[WarmSeg; WARM_SEGS]] {
        if nth != self.nth || warm.len() != nth {
            self.keys.clear();
            self.claims.clear();
            self.between.clear();
            self.nth = nth;
        }
        if self.seq >= LOOKAHEAD_JOBS {
            self.seq = 0;
        }
        let i = self.seq;
        self.seq += 1;
        if i > self.keys.len() {
            // the rows started over mid-forward: they fill again from the next forward's first job
            return &[];
        }
        if i == self.keys.len() {
            self.keys.push(key);
            self.claims.extend_from_slice(warm);
            self.between.push(Vec::new());
            return &[];
        }
        self.claims[i * nth..(i + 1) * nth].copy_from_slice(warm);
        if std::mem::replace(&mut self.keys[i], key) != key {
            self.between[i].clear();
            return &[];
        }
        let next = self.claims.get((i + 1) * nth..(i + 2) * nth).unwrap_or(&[]);
        let between = &self.between[i];
        if between.is_empty() {
            return next;
        }
        self.plan.clear();
        self.plan.resize(nth, [(0, 0); WARM_SEGS]);
        for (th, segs) in self.plan.iter_mut().enumerate() {
            let mine = between.iter().enumerate().filter(|&(i, _)| nth - 1 - i % nth == th).map(|(_, &r)| r);
            let claims = next.get(th).into_iter().flatten().copied().filter(|r| r.1 > 0);
            for (slot, r) in segs.iter_mut().zip(mine.take(WARM_SEGS - CLAIM_SEGS).chain(claims)) {
                *slot = r;
            }
        }
        &self.plan
    }
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `reads` (byte ranges: an attention layer's keys and values) are read after
    /// the last single-token job, before the next one: the next time that job runs, its threads
    /// warm them (at most `BETWEEN_BYTES` of each) once done with it, before the next job's first
    /// claims.
    pub fn note_reads(&mut self, reads: impl Iterator<Item = WarmSeg>) {
        let la = &mut self.ahead;
        if let Some(e) = la.seq.checked_sub(1).and_then(|i| la.between.get_mut(i)) {
            e.clear();
            e.extend(reads.map(|(a, n)| (a, n.min(BETWEEN_BYTES))));
        }
    }

    /// A forward pass starts: its single-token jobs are counted from the first again (what the
    /// threads warm is learned by the jobs' places in the forward, `Lookahead`).
    pub fn start_forward(&mut self) {
        self.ahead.seq = 0;
    }

    fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        grown_bytes(&mut self.buf, n)
    }
}

/// The first `n` bytes of `buf`, grown to hold them.
fn grown_bytes(buf: &mut Vec<u64>, n: usize) -> &mut [u8] {
    let words = n.div_ceil(8);
    if buf.len() < words {
        buf.resize(words, 0);
    }
    let bytes: &mut [u8] = bytemuck_u64(&mut buf[..words]);
    &mut bytes[..n]
}

fn bytemuck_u64(w: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers exactly the same memory.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 8) }
}

/// Weight rows handled per inner tile: their bytes (≤ 16 × a few KB) stay in L1/L2 while every
/// token's activation row streams past them.
const ROW_TILE: usize = 16;
/// Tokens per outer tile: their converted activations (32 × ~4 KB for 4096 columns of Q8_0) stay
/// in L2 while the chunk's weight tiles pass over them, instead of re-streaming every token's
/// activations for each 16-row weight tile.
const TOKEN_TILE: usize = 32;
/// Tokens per `BatchGemmFn` call: its weight decoding (once per call and 16-row band) is paid
/// once for this many tokens; 512 (llama-bench's pp batch) decodes each band once per prompt batch
/// (was 256: twice), at the cost of a [512][16] f32 result tile (32 KB) per thread.
const GEMM_TOKENS: usize = 512;
/// A thread's result buffers: a row tile's, and (made on first use, so single tokens allocate
/// nothing) one `BatchGemmFn` call's [GEMM_TOKENS][GEMM_ROWS].
#[derive(Default)]
struct RowBuf {
    tile: [f32; ROW_TILE],
    gemm: Vec<f32>,
}
/// Below this many activation elements, converting on the calling thread beats waking the pool.
const PAR_CONVERT_MIN: usize = 1 << 15;

/// Raw pointer that may be shared between pool threads for disjoint writes.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: only used inside `pool.run` jobs that write disjoint index ranges (argued at each use).
unsafe impl<T> Sync for SharedMut<T> {}
unsafe impl<T> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not its field).
    fn ptr(&self) -> *mut T {
        self.0
    }
}

/// Runs `convert(t, row)` for every token t on its `row_bytes` slice of `buf`, on the pool when
/// there is enough work to pay for waking it.
fn convert_rows(
    pool: &ThreadPool,
    n_tokens: usize,
    cols: usize,
    buf: &mut [u8],
    row_bytes: usize,
    convert: impl Fn(usize, &mut [u8]) + Sync,
) {
    if n_tokens * cols < PAR_CONVERT_MIN || pool.n_threads() == 1 || n_tokens == 1 {
        for (t, row) in buf.chunks_exact_mut(row_bytes).take(n_tokens).enumerate() {
            convert(t, row);
        }
        return;
    }
    assert!(buf.len() >= n_tokens * row_bytes);
    let bp = SharedMut(buf.as_mut_ptr());
    pool.run(|ith, nth| {
        for t in (ith..n_tokens).step_by(nth) {
            // SAFETY: token rows are disjoint, each t is visited by exactly one thread, and the
            // asserted length covers row t; `buf` outlives the run (run returns when all are done).
            let row = unsafe { std::slice::from_raw_parts_mut(bp.ptr().add(t * row_bytes), row_bytes) };
            convert(t, row);
        }
    });
}

/// Runs `f(state, first, end)` over `0..n_items` in chunks of `chunk` items that the pool's
/// threads claim from a shared counter (so threads on a busy, shared machine still finish
/// together); each thread makes its `state` (scratch) once. One chunk runs on the caller.
fn for_each_chunk<S>(
    pool: &ThreadPool,
    n_items: usize,
    chunk: usize,
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, usize) + Sync,
) {
    let n_chunks = n_items.div_ceil(chunk);
    let next = AtomicUsize::new(0);
    let work = |_ith: usize, _nth: usize| {
        let mut st = state();
        loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            f(&mut st, c * chunk, ((c + 1) * chunk).min(n_items));
        }
    };
    if n_chunks == 1 {
        work(0, 1);
    } else {
        pool.run(work);
    }
}

/// `for_each_chunk` with chunks that shrink as the work runs out (guided scheduling): each claim
/// takes a `1/(2·threads)` share of what is left, at least `min_chunk` items, so the threads' last
/// chunks are short and they finish together (a matvec's fixed eighths left one thread waiting
/// for the other's last eighth). Thread ith warms `warm[ith]` when done (`ThreadPool::run_warming`).
fn for_each_guided<S>(
    pool: &ThreadPool,
    n_items: usize,
    min_chunk: usize,
    warm: &[[WarmSeg; WARM_SEGS]],
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, usize) + Sync,
) {
    let min_chunk = min_chunk.max(1);
    let next = AtomicUsize::new(0);
    let work = |_ith: usize, nth: usize| {
        let mut st = state();
        let mut first = next.load(Ordering::Relaxed);
        while first < n_items {
            let size = guided_size(n_items - first, nth, min_chunk);
            match next.compare_exchange_weak(first, first + size, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    f(&mut st, first, first + size);
                    first = next.load(Ordering::Relaxed);
                }
                Err(now) => first = now,
            }
        }
    };
    if n_items <= min_chunk {
        work(0, 1);
    } else {
        pool.run_warming(warm, work);
    }
}

/// The next guided claim when `left` items are left (see `for_each_guided`).
fn guided_size(left: usize, nth: usize, min_chunk: usize) -> usize {
    (left / (2 * nth)).max(min_chunk.max(1)).min(left)
}

/// Checks shapes; the error names the offending argument.
fn validate(k: &Kernels, w: &QTensor, x: &[f32], n_tokens: usize, out: &[f32]) -> Result<GgmlType> {
    let t = w.ggml_type;
    let act = k.vec_dot_type(t).ok_or_else(|| {
        Error::UnsupportedType(format!("{} (ggml id {}): matmul has no kernel for it", t.name(), t.id()))
    })?;
    let row_bytes = t.row_size(w.cols as u64).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "matmul: {} weight row of {} elements is not a whole number of blocks",
            t.name(),
            w.cols
        ))
    })?;
    if (w.data.len() as u64) != row_bytes * w.rows as u64 {
        return Err(Error::InvalidArgument(format!(
            "matmul: {} weight of {}x{} needs {} bytes, got {}",
            t.name(),
            w.rows,
            w.cols,
            row_bytes * w.rows as u64,
            w.data.len()
        )));
    }
    // "matmul: x has 7 values, need n_tokens 2 x cols 4"
    let need = |arg: &str, len: usize, dim: &str, d: usize| {
        if len >= n_tokens * d {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!("matmul: {arg} has {len} values, need n_tokens {n_tokens} x {dim} {d}")))
    };
    need("x", x.len(), "cols", w.cols)?;
    need("out", out.len(), "rows", w.rows)?;
    Ok(act)
}

/// `out[t][r] = Σ_c W[r][c] · x[t][c]` with the process-wide kernels.
///
/// Panics with a message naming the problem if shapes or type are invalid; the model loader checks
/// types and shapes up front, so this only fires on a programming error. Use `try_matmul` for a `Result`.
pub fn matmul(
    pool: &ThreadPool,
    w: &QTensor,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    if let Err(e) = matmul_with(kernels(), pool, w, x, n_tokens, out, scratch) {
        panic!("{e}");
    }
}

/// As `matmul`, returning an error instead of panicking.
pub fn try_matmul(
    pool: &ThreadPool,
    w: &QTensor,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    matmul_with(kernels(), pool, w, x, n_tokens, out, scratch)
}

/// As `try_matmul` with an explicit kernel table (tests and benchmarks compare ISAs with it).
pub fn matmul_with(
    k: &Kernels,
    pool: &ThreadPool,
    w: &QTensor,
    x: &[f32], // [n_tokens][cols]
    n_tokens: usize,
    out: &mut [f32], // [n_tokens][rows]
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let act = validate(k, w, x, n_tokens, out)?;
    if n_tokens == 0 || w.rows == 0 {
        return Ok(());
    }
    if let (Some(p), Some(plan)) = (w.packed, k.r16_plan(w.ggml_type, n_tokens)) {
        if p.ggml_type == w.ggml_type && p.rows == w.rows && p.cols == w.cols {
            if n_tokens == 1 {
                gemv_r16(k, pool, &[(p, plan)], &x[..w.cols], &mut [out], scratch);
            } else {
                matmul_r16(k, plan, pool, p, x, n_tokens, out, scratch);
            }
            return Ok(());
        }
    }
    let (rows, cols) = (w.rows, w.cols);
    let from_float = k.from_float(act).expect("every vec_dot_type has a converter");
    // llama.cpp's batch order where the type has one (`types::BatchDot`), else its single-token dot;
    // tiles (several tokens per decoded weight block) in the same order where the table has them
    let shape = MatShape { n_tokens, rows: w.rows, cols: w.cols, id: false };
    let (dot, _) = k.row_dot(w.ggml_type, shape).expect("validated type has a dot kernel");
    let tile_fn = if n_tokens > 1 { k.row_tile(w.ggml_type, shape) } else { None };
    let w_row = w.ggml_type.row_size(cols as u64).unwrap() as usize;
    let a_row = act.row_size(cols as u64).expect("partner type has the same block size or smaller") as usize;

    // 1. Convert activations: [n_tokens][a_row] bytes.
    let acts = scratch.bytes_mut(n_tokens * a_row);
    convert_rows(pool, n_tokens, cols, acts, a_row, |t, ar| from_float(&x[t * cols..(t + 1) * cols], ar));
    let acts: &[u8] = acts;

    // 2. Dot products, row chunks claimed dynamically.
    let nth = pool.n_threads();
    let chunk = rows.div_ceil(nth * 8).max(ROW_TILE).div_ceil(ROW_TILE) * ROW_TILE;
    let op = SharedMut(out.as_mut_ptr());
    let gemm = k.row_gemm(w.ggml_type, shape);
    let kern = RowKernels { dot, tile_fn, gemm, cols, w_row, a_row };
    for_each_chunk(
        pool,
        rows,
        chunk,
        RowBuf::default,
        // SAFETY: rows [r0, r1) belong to this chunk, claimed by this thread only, so out[t·rows +
        // r0 .. t·rows + r1] is written by nobody else; t·rows + r1 ≤ n_tokens·rows ≤ out.len().
        |tile, r0, r1| unsafe { kern.run(w.data, acts, 0..n_tokens, r0..r1, op, rows, |t| t, tile) },
    );
    Ok(())
}

/// The row-wise kernels of one weight type, for `RowKernels::run`.
#[derive(Clone, Copy)]
struct RowKernels {
    dot: VecDotFn,
    tile_fn: Option<TileFn>,
    /// Batch GEMM in the dot's order (decodes each weight block once per call); preferred.
    gemm: Option<BatchGemmFn>,
    /// Elements of a row.
    cols: usize,
    /// Bytes of a weight row and of a converted activation row.
    w_row: usize,
    a_row: usize,
}

impl RowKernels {
    /// Weight rows `rs` against converted activation rows `ts`; the result of activation row t goes
    /// to output row `dst(t)` (`out_row` floats apart), columns `rs`.
    ///
    /// # Safety
    /// `op` must point to an output of at least `(dst(t) + 1) · out_row` floats for every t in `ts`,
    /// whose elements `dst(t)·out_row + rs` no other thread writes during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        w: &[u8],
        acts: &[u8],
        ts: std::ops::Range<usize>,
        rs: std::ops::Range<usize>,
        op: SharedMut<f32>,
        out_row: usize,
        dst: impl Fn(usize) -> usize,
        buf: &mut RowBuf,
    ) {
        let (w_row, a_row) = (self.w_row, self.a_row);
        if let Some(gemm) = self.gemm {
            let tile = &mut buf.gemm;
            tile.resize(GEMM_TOKENS * GEMM_ROWS, 0.0);
            for tb in ts.clone().step_by(GEMM_TOKENS) {
                let te = (tb + GEMM_TOKENS).min(ts.end);
                for rb in rs.clone().step_by(GEMM_ROWS) {
                    let re = (rb + GEMM_ROWS).min(rs.end);
                    gemm(
                        self.cols,
                        &w[rb * w_row..],
                        w_row,
                        re - rb,
                        &acts[tb * a_row..],
                        a_row,
                        te - tb,
                        &mut tile[..],
                    );
                    for (j, res) in tile.chunks_exact(GEMM_ROWS).take(te - tb).enumerate() {
                        // SAFETY: see the function's contract.
                        let o = unsafe {
                            std::slice::from_raw_parts_mut(op.ptr().add(dst(tb + j) * out_row + rb), re - rb)
                        };
                        o.copy_from_slice(&res[..re - rb]);
                    }
                }
            }
            return;
        }
        let tile = &mut buf.tile;
        for tb in ts.clone().step_by(TOKEN_TILE) {
            let te = (tb + TOKEN_TILE).min(ts.end);
            for rb in rs.clone().step_by(ROW_TILE) {
                let re = (rb + ROW_TILE).min(rs.end);
                if let Some(tile_fn) = self.tile_fn {
                    for r4 in (rb..re).step_by(TILE) {
                        let nr = TILE.min(re - r4);
                        for t4 in (tb..te).step_by(TILE_T) {
                            let nt = TILE_T.min(te - t4);
                            let res = tile_fn(self.cols, &w[r4 * w_row..], w_row, nr, &acts[t4 * a_row..], a_row, nt);
                            for (i, res_r) in res.iter().enumerate().take(nr) {
                                for (j, v) in res_r.iter().enumerate().take(nt) {
                                    // SAFETY: see the function's contract.
                                    unsafe { *op.ptr().add(dst(t4 + j) * out_row + r4 + i) = *v };
                                }
                            }
                        }
                    }
                    continue;
                }
                for t in tb..te {
                    let a = &acts[t * a_row..(t + 1) * a_row];
                    for (i, r) in (rb..re).enumerate() {
                        tile[i] = (self.dot)(self.cols, &w[r * w_row..(r + 1) * w_row], a);
                    }
                    // SAFETY: see the function's contract.
                    let o = unsafe { std::slice::from_raw_parts_mut(op.ptr().add(dst(t) * out_row + rb), re - rb) };
                    o.copy_from_slice(&tile[..re - rb]);
                }
            }
        }
    }
}

/// Tokens whose Q8_0S activations stay in L2 while a chunk's weight groups pass over them.
const R16_TOKEN_TILE: usize = 64;

/// How activations are laid out for an R16 kernel over weights of one type: per row, the kernel's
/// input (Q8_K or Q8_0S, `s_row` bytes) then, for the 32-blocks, the Q8_0 staging bytes it is
/// transcoded from (`q_row`).
#[derive(Clone, Copy)]
struct R16Acts {
    ggml_type: GgmlType,
    nb: usize,
    s_row: usize,
    q_row: usize,
    /// The type's `vec_dot_type` converter (Q8_0, Q8_1 or Q8_K).
    to_act: FromFloatFn,
}

impl R16Acts {
    fn new(k: &Kernels, t: GgmlType, cols: usize) -> R16Acts {
        let nb = cols / t.block_size();
        let k_quant = t.block_size() == 256;
        // K-quants take the Q8_K converter's rows as they are; the others stage a row of their
        // `vec_dot_type` (Q8_0 or Q8_1) per token and transcode it to Q8_0S / Q8_1S.
        let act = k.vec_dot_type(t).expect("R16 type has an activation type");
        R16Acts {
            ggml_type: t,
            nb,
            s_row: nb * repack::act_block_bytes(t),
            q_row: if k_quant { 0 } else { nb * act.type_size() },
            to_act: k.from_float(act).expect("activation converter"),
        }
    }

    /// Bytes between rows.
    fn stride(&self) -> usize {
        self.s_row + self.q_row
    }

    /// One activation row `x` into `row` (`stride()` bytes); `batch` replaces the Q8_K converter
    /// for the K-quants (llama.cpp's batch-order tokens).
    fn convert(&self, x: &[f32], row: &mut [u8], batch: Option<FromFloatFn>) {
        let (ar, st) = row.split_at_mut(self.s_row);
        if self.q_row == 0 {
            batch.unwrap_or(self.to_act)(x, ar);
        } else {
            (self.to_act)(x, st);
            repack::to_r16_acts(self.ggml_type, st, ar);
        }
    }
}

/// `matmul` over R16-repacked weights: activations converted once (the table's Q8_0 or Q8_K
/// converter, so quantized values equal the row-wise path's; Q8_0 then to Q8_0S), then threads
/// claim chunks of 16-row groups and run every token tile over each group. `plan`: the kernel
/// (and activation converter) for the batch's leading tokens in llama.cpp's batch order, and the
/// plain kernel for the others (`Kernels::r16_plan`).
#[allow(clippy::too_many_arguments)]
fn matmul_r16(
    k: &Kernels,
    plan: R16Plan,
    pool: &ThreadPool,
    p: &Packed,
    x: &[f32], // [n_tokens][cols]
    n_tokens: usize,
    out: &mut [f32], // [n_tokens][rows]
    scratch: &mut MatmulScratch,
) {
    let (rows, cols) = (p.rows, p.cols);
    let conv = R16Acts::new(k, p.ggml_type, cols);
    let n_batch = plan.n_batch;
    // [n_tokens][s_row + q_row]: each token's kernel input, then its staging bytes.
    let a_stride = conv.stride();
    let acts = scratch.bytes_mut(n_tokens * a_stride);
    convert_rows(pool, n_tokens, cols, acts, a_stride, |t, row| {
        let batch = plan.batch_from_float.filter(|_| t < n_batch);
        conv.convert(&x[t * cols..(t + 1) * cols], row, batch)
    });
    let acts: &[u8] = acts;

    let n_groups = rows / R;
    let op = SharedMut(out.as_mut_ptr());
    // tile: [nt][16] results of one kernel call (up to MAX_WIDE_T tokens)
    let tile = || [0.0f32; MAX_WIDE_T * R];
    // SAFETY: columns [16·g0, 16·g1) of every token row belong to this chunk, claimed by this
    // thread only; t·rows + 16·g1 ≤ n_tokens·rows ≤ out.len().
    let run = |tile: &mut [f32; MAX_WIDE_T * R], g0: usize, g1: usize| unsafe {
        r16_run(plan, p, conv.nb, acts, a_stride, 0..n_tokens, g0..g1, op, rows, |t| t, tile)
    };
    // several chunks per thread so threads on a shared machine still finish together
    for_each_chunk(pool, n_groups, n_groups.div_ceil(pool.n_threads() * 4).max(1), tile, run);
}

/// Bytes of weights each stream of a single token's chunk reads at least: a stream that restarts
/// sooner pays the hardware prefetcher's ramp again, one that runs longer leaves the threads an
/// unequal last chunk (a job ends when its slowest thread does).
const GEMV_STREAM_BYTES: usize = 32 << 10;

/// Fewest groups a single token's chunk takes: `GEMV_STREAM_BYTES` per stream of the type's
/// `R16Gemv` in whole groups of `group_bytes` (a wide matrix such as ffn_down's takes one group
/// per stream, so its job's tail stays a few µs).
fn gemv_min_chunk(plan: R16Plan, group_bytes: usize) -> usize {
    plan.gemv.map_or(1, |g| g.groups) * GEMV_STREAM_BYTES.div_ceil(group_bytes.max(1))
}

/// One token through several matrices that read the same activations (Q, K and V; gate and up)
/// as ONE pool job: their groups are claimed from one guided counter, so the threads meet once
/// instead of once per matrix (the small K and V matrices were mostly wake-up and wait). Each
/// output is what `matmul_with` gives for its matrix alone; matrices not all R16-packed go through
/// `matmul_with` one by one.
pub fn matvec_many(
    k: &Kernels,
    pool: &ThreadPool,
    ws: &[QTensor],
    x: &[f32],               // [cols]
    outs: &mut [&mut [f32]], // [ws.len()][rows of that matrix]
    scratch: &mut MatmulScratch,
) -> Result<()> {
    if ws.len() != outs.len() {
        return Err(Error::InvalidArgument(format!("matvec_many: {} matrices, {} outputs", ws.len(), outs.len())));
    }
    let mut plans: MatrixList<(&Packed, R16Plan)> = SmallVec::new();
    for (w, out) in ws.iter().zip(outs.iter()) {
        validate(k, w, x, 1, out)?;
        let packed = w.packed.filter(|p| p.ggml_type == w.ggml_type && p.rows == w.rows && p.cols == w.cols);
        match (packed, k.r16_plan(w.ggml_type, 1)) {
            (Some(p), Some(plan)) if w.cols == ws[0].cols && w.rows > 0 => plans.push((p, plan)),
            _ => break,
        }
    }
    if plans.len() != ws.len() {
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            matmul_with(k, pool, w, x, 1, out, scratch)?;
        }
        return Ok(());
    }
    gemv_r16(k, pool, &plans, &x[..ws[0].cols], outs, scratch);
    Ok(())
}

/// One matrix of a single-token job as `first_claims` sees it: the address of its packed groups,
/// their size, how many streams a chunk of them runs as, and its items of the job's count.
struct WarmSpan {
    base: usize,
    group_bytes: usize,
    streams: usize,
    items: std::ops::Range<usize>,
}

/// What each thread reads first of a single-token job over `spans` (`n_items` groups in all,
/// guided chunks of at least `min`): the chunks claimed in thread order (the caller claims as it
/// publishes the job, then the workers), each matrix's share of a chunk as its streams' byte
/// ranges (`r16_run`: stream j of h groups starts at group g0 + j·h), at most `WARM_BYTES` per
/// thread in all; into `warm` (one entry per thread, a buffer the scratch keeps).
fn first_claims(spans: &[WarmSpan], n_items: usize, min: usize, nth: usize, warm: &mut Vec<[WarmSeg; WARM_SEGS]>) {
    warm.clear();
    warm.resize(nth, [(0, 0); WARM_SEGS]);
    let mut i0 = 0;
    for segs in warm.iter_mut() {
        let i1 = i0 + guided_size(n_items - i0, nth, min);
        let mut n = 0;
        for m in spans {
            let (g0, g1) = (i0.max(m.items.start) - m.items.start, i1.min(m.items.end).saturating_sub(m.items.start));
            if g0 >= g1 {
                continue;
            }
            let h = ((g1 - g0) / m.streams).max(1);
            for j in 0..m.streams.min((g1 - g0) / h) {
                if n < CLAIM_SEGS {
                    segs[n] = (m.base + (g0 + j * h) * m.group_bytes, h * m.group_bytes);
                    n += 1;
                }
            }
        }
        for s in &mut segs[..n] {
            s.1 = s.1.min(WARM_BYTES / n);
        }
        i0 = i1;
    }
}

/// One token through R16-packed matrices of one width (`ms`: packing and plan, rows > 0; outputs
/// of their rows, checked by the callers) as one pool job: the activation row converted once per
/// weight type, then the threads claim chunks of 16-row groups from one guided count over all
/// matrices, each chunk through the type's `R16Gemv` streams. The job's threads warm what the
/// next job reads first (`Lookahead`).
fn gemv_r16(
    k: &Kernels,
    pool: &ThreadPool,
    ms: &[(&Packed, R16Plan)],
    x: &[f32],               // [cols]
    outs: &mut [&mut [f32]], // [ms.len()][rows of that matrix]
    scratch: &mut MatmulScratch,
) {
    let cols = x.len();
    // one converted row per weight type (matrices of one type share it): (type, converter, offset)
    let mut convs: MatrixList<(GgmlType, R16Acts, usize)> = SmallVec::new();
    let mut len = 0;
    for (p, _) in ms {
        if !convs.iter().any(|c| c.0 == p.ggml_type) {
            let conv = R16Acts::new(k, p.ggml_type, cols);
            let stride = conv.stride();
            convs.push((p.ggml_type, conv, len));
            len += stride;
        }
    }
    let MatmulScratch { buf, ahead, warm } = scratch;
    let buf = grown_bytes(buf, len);
    for (_, conv, off) in &convs {
        conv.convert(x, &mut buf[*off..*off + conv.stride()], None);
    }
    let buf: &[u8] = buf;
    // Matrix m: its groups first..end of the shared count, output, converted row.
    struct Part<'a> {
        p: &'a Packed,
        plan: R16Plan,
        first: usize,
        end: usize,
        op: SharedMut<f32>,
        act: &'a [u8],
        nb: usize,
    }
    let mut n_items = 0;
    let parts: MatrixList<Part> = ms
        .iter()
        .zip(outs.iter_mut())
        .map(|(&(p, plan), o)| {
            let (_, conv, off) = convs.iter().find(|c| c.0 == p.ggml_type).expect("made above");
            let first = n_items;
            n_items += p.n_groups();
            let act = &buf[*off..*off + conv.stride()];
            Part { p, plan, first, end: n_items, op: SharedMut(o.as_mut_ptr()), act, nb: conv.nb }
        })
        .collect();
    let min = parts.iter().map(|m| gemv_min_chunk(m.plan, m.p.group_bytes())).max().unwrap_or(1);

    let spans: MatrixList<WarmSpan> = parts
        .iter()
        .map(|m| WarmSpan {
            base: m.p.bytes().as_ptr() as usize,
            group_bytes: m.p.group_bytes(),
            streams: m.plan.gemv.map_or(1, |g| g.groups),
            items: m.first..m.end,
        })
        .collect();
    first_claims(&spans, n_items, min, pool.n_threads(), warm);
    let key = parts[0].p.bytes().as_ptr() as usize;
    for_each_guided(
        pool,
        n_items,
        min,
        ahead.plan(key, warm, pool.n_threads()),
        || [0.0f32; MAX_WIDE_T * R],
        |tile, i0, i1| {
            for m in &parts {
                let (g0, g1) = (i0.max(m.first) - m.first, i1.min(m.end).saturating_sub(m.first));
                if g0 >= g1 {
                    continue;
                }
                // SAFETY: columns [16·g0, 16·g1) of output m belong to this claim alone (claims
                // are disjoint ranges of the shared count); 16·g1 ≤ rows of matrix m ≤ its output's
                // length (checked by the callers).
                unsafe { r16_run(m.plan, m.p, m.nb, m.act, m.act.len(), 0..1, g0..g1, m.op, m.p.rows, |t| t, tile) }
            }
        },
    );
}

/// Groups `gs` of `p` against converted activation rows `ts` (`a_stride` bytes apart); the result
/// of activation row t goes to output row `dst(t)` (`out_row` floats apart), columns 16·gs.
///
/// # Safety
/// `op` must point to an output of at least `(dst(t) + 1) · out_row` floats for every t in `ts`,
/// whose elements `dst(t)·out_row + 16·gs` no other thread writes during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn r16_run(
    plan: R16Plan,
    p: &Packed,
    nb: usize,
    acts: &[u8],
    a_stride: usize,
    ts: std::ops::Range<usize>,
    gs: std::ops::Range<usize>,
    op: SharedMut<f32>,
    out_row: usize,
    dst: impl Fn(usize) -> usize,
    tile: &mut [f32; MAX_WIDE_T * R],
) {
    let n_batch = plan.n_batch;
    let mut gs = gs;
    if let (Some(gv), 1) = (plan.gemv, ts.len()) {
        if ts.start >= n_batch {
            // one token: the groups as `gv.groups` streams, group i of stream j at gs.start + j·h + i
            let t = ts.start;
            let h = gs.len() / gv.groups;
            let gb = p.group_bytes();
            let a = &acts[t * a_stride..];
            // Each stream's first bytes, asked for all at once: the kernel prefetches only
            // `prefetch_lead` ahead of its reads, so a chunk's streams would otherwise start on
            // line-by-line misses (SmolLM2's 14 µs jobs are ~5 such chunks; docs/PERFORMANCE.md
            // session 27: tg128 +3–9 % on Zen 4).
            let base = p.bytes().as_ptr() as usize + gs.start * gb;
            for off in (0..(h * gb).min(super::prefetch_lead())).step_by(64) {
                for j in 0..gv.groups {
                    super::prefetch_line(base + j * h * gb + off);
                }
            }
            for i in 0..h {
                let first = gs.start + i;
                let w = &p.bytes()[first * gb..(first + (gv.groups - 1) * h + 1) * gb];
                // SAFETY: see the function's contract (columns 16·gs of row dst(t); the last
                // stream's group ends inside gs).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(
                        op.ptr().add(dst(t) * out_row + first * R),
                        (gv.groups - 1) * h * R + R,
                    )
                };
                (gv.f)(nb, w, h * gb, a, o, h * R);
            }
            gs.start += gv.groups * h;
        }
    }
    for tb in ts.clone().step_by(R16_TOKEN_TILE) {
        let te = (tb + R16_TOKEN_TILE).min(ts.end);
        for g in gs.clone() {
            let mut t = tb;
            while t < te {
                // a call never straddles the end of the batch-order tokens
                let (f, end, max_t): (GemmR16Fn, usize, usize) = if t < n_batch {
                    (plan.batch, n_batch.min(te), plan.batch_max_t.min(MAX_WIDE_T))
                } else {
                    (plan.plain, te, MAX_T)
                };
                let nt = max_t.min(end - t);
                f(nb, p.group(g), &acts[t * a_stride..], a_stride, nt, &mut tile[..], R);
                for (j, res) in tile.chunks_exact(R).take(nt).enumerate() {
                    // SAFETY: see the function's contract.
                    let o = unsafe { std::slice::from_raw_parts_mut(op.ptr().add(dst(t + j) * out_row + g * R), R) };
                    o.copy_from_slice(res);
                }
                t += nt;
            }
        }
    }
}

/// Which activation rows go through which matrix in a [`matmul_id`]: the rows of group g (one
/// expert) are `first[g]..first[g + 1]`; row i reads activation row `src[i]` and writes output
/// row `dst[i]`.
#[derive(Clone, Copy, Debug)]
pub struct IdRoutes<'a> {
    pub first: &'a [usize], // [n_groups + 1]
    pub src: &'a [u32],     // [n_rows]
    pub dst: &'a [u32],     // [n_rows]
}

impl IdRoutes<'_> {
    fn n_groups(&self) -> usize {
        self.first.len().saturating_sub(1)
    }
}

/// ggml's `mul_mat_id` (mixture-of-experts matmuls): for every matrix m and group g,
/// `outs[m][dst[i]] = x[src[i]] · w(m, g)ᵀ` for the rows i of g (`IdRoutes`). The matrices m
/// (an expert's gate and up) share one conversion of the activations, so they must have one type
/// and width; each group's weights are read once for all its rows (tiles of tokens), and all
/// matrices and groups run as one job on the pool. Repacked weights take the plain R16 kernel
/// (ggml's per-row gemv); others `vec_dot` (or tiles, which equal it). Except: a group of 8 rows or
/// more of a type that llama.cpp's mul_mat_id runs through its tiled GEMM takes that order (or its tiles; the
/// grid i-quants' `types::BatchDot`; the R16 types whose `R16Batch` is that GEMM: group 1, no
/// converter of its own, e.g. Q3_K, Q5_K, Q6_K, IQ4_XS).
///
/// x: [n_src][cols], outs[m]: [n_dst][rows of matrix m]
#[allow(clippy::too_many_arguments)]
pub fn matmul_id<'w>(
    k: &Kernels,
    pool: &ThreadPool,
    n_mats: usize,
    w: impl Fn(usize, usize) -> QTensor<'w> + Sync,
    routes: IdRoutes,
    x: &[f32],
    outs: &mut [&mut [f32]],
    scratch: &mut MatmulScratch,
) -> Result<()> {
    let n_groups = routes.n_groups();
    if n_groups == 0 || outs.len() != n_mats || n_mats == 0 {
        return Err(Error::InvalidArgument(format!(
            "matmul_id: {n_groups} groups, {n_mats} matrices but {} outputs",
            outs.len()
        )));
    }
    let n_rows = routes.first[n_groups];
    let bad_routes = routes.src.len() != n_rows
        || routes.dst.len() != n_rows
        || routes.first.windows(2).any(|p| p[0] > p[1])
        || routes.first[0] != 0;
    if bad_routes {
        return Err(Error::InvalidArgument("matmul_id: routes are not consistent".into()));
    }
    let w0 = w(0, 0);
    let (t, cols) = (w0.ggml_type, w0.cols);
    let mut all_packed = k.gemm_r16(t).is_some();
    for (m, out) in outs.iter().enumerate() {
        let rows = w(m, 0).rows;
        for g in 0..n_groups {
            let wg = w(m, g);
            if wg.ggml_type != t || wg.cols != cols || wg.rows != rows {
                return Err(Error::InvalidArgument(format!(
                    "matmul_id: matrix ({m}, {g}) is {} {}x{}, expected {} {rows}x{cols}",
                    wg.ggml_type, wg.rows, wg.cols, t
                )));
            }
            validate(k, &wg, x, 0, out)?;
            all_packed &= wg.packed.is_some_and(|p| p.ggml_type == t && p.rows == rows && p.cols == cols);
        }
        let max_dst = routes.dst.iter().map(|&d| d as usize + 1).max().unwrap_or(0);
        if out.len() < max_dst * rows {
            return Err(Error::InvalidArgument(format!("matmul_id: output {m} is too short for row {max_dst}")));
        }
    }
    // Distinct output rows: the work items write them without locks.
    let mut seen = vec![0u64; routes.dst.iter().map(|&d| d as usize / 64 + 1).max().unwrap_or(0)];
    for &d in routes.dst {
        let (word, bit) = (d as usize / 64, 1u64 << (d % 64));
        if seen[word] & bit != 0 {
            return Err(Error::InvalidArgument(format!("matmul_id: output row {d} is routed twice")));
        }
        seen[word] |= bit;
    }
    let max_src = routes.src.iter().map(|&s| s as usize + 1).max().unwrap_or(0);
    if x.len() < max_src * cols {
        return Err(Error::InvalidArgument(format!("matmul_id: x is too short for row {max_src}")));
    }
    if n_rows == 0 {
        return Ok(());
    }
    let ops: Vec<(SharedMut<f32>, usize)> =
        outs.iter_mut().enumerate().map(|(m, o)| (SharedMut(o.as_mut_ptr()), w(m, 0).rows)).collect();
    // Work items: (matrix, group, chunk of its rows), items of one group adjacent; a few chunks per
    // matrix so that threads on a shared machine still finish together.
    const CHUNKS: usize = 4;
    let n_items = n_groups * n_mats * CHUNKS;
    let item = |i: usize| (i / CHUNKS % n_mats, i / (CHUNKS * n_mats), i % CHUNKS);
    let span = |c: usize, n: usize| (n * c / CHUNKS, n * (c + 1) / CHUNKS);
    let (src, dst) = (routes.src, routes.dst);

    if all_packed {
        let conv = R16Acts::new(k, t, cols);
        let plain = k.gemm_r16(t).expect("R16 kernel checked above");
        // a group's kernel: llama.cpp's tiled GEMM order for a group of enough rows where the type
        // has it (a batch rule on the same activations: group 1, no converter of its own; its
        // mul_mat_id runs such an expert through the tiled GEMM), else the plain (gemv) kernel
        let tiled = k.traits(t).and_then(|row| row.r16_batch).filter(|b| b.group == 1 && b.from_float.is_none());
        let gemv = k.traits(t).and_then(|row| row.gemv_r16);
        let plan = |n_rows: usize| {
            match tiled.filter(|b| n_rows >= b.min_tokens && b.gemm.is_some()) {
                // every row of the group in that order, `max_t` rows per call
                Some(b) => R16Plan {
                    batch: b.gemm.unwrap_or(plain),
                    n_batch: usize::MAX,
                    batch_max_t: b.max_t,
                    batch_from_float: None,
                    plain,
                    gemv: None,
                },
                None => R16Plan { batch: plain, n_batch: 0, batch_max_t: MAX_T, batch_from_float: None, plain, gemv },
            }
        };
        let a_stride = conv.stride();
        let acts = scratch.bytes_mut(n_rows * a_stride);
        convert_rows(pool, n_rows, cols, acts, a_stride, |i, row| {
            let s = src[i] as usize;
            conv.convert(&x[s * cols..(s + 1) * cols], row, None)
        });
        let acts: &[u8] = acts;
        for_each_chunk(
            pool,
            n_items,
            1,
            || [0.0f32; MAX_WIDE_T * R],
            |tile, i0, _| {
                let (m, g, c) = item(i0);
                let wg = w(m, g);
                let p = wg.packed.expect("checked above");
                let (g0, g1) = span(c, p.n_groups());
                let (op, rows) = ops[m];
                let ts = routes.first[g]..routes.first[g + 1];
                // SAFETY: item (m, g, c) alone writes columns [16·g0, 16·g1) of output m's rows
                // dst[ts] (each output row is written by one route row, and groups' rows are disjoint);
                // those rows were checked to lie within outs[m].
                unsafe {
                    r16_run(plan(ts.len()), p, conv.nb, acts, a_stride, ts, g0..g1, op, rows, |i| dst[i] as usize, tile)
                }
            },
        );
        return Ok(());
    }

    let act = k.vec_dot_type(t).expect("validated type has a partner");
    let from_float = k.from_float(act).expect("every vec_dot_type has a converter");
    let a_row = act.row_size(cols as u64).expect("partner type has the same block size or smaller") as usize;
    let w_row = t.row_size(cols as u64).expect("validated") as usize;
    // per group (expert), as llama.cpp's mul_mat_id: its tiled GEMM for a group of 8 rows or more
    // where the type has that order (`types::BatchDot`), else `vec_dot`; tiles in the same order
    let kern = |n_rows: usize, rows: usize| {
        let s = MatShape { n_tokens: n_rows, rows, cols, id: true };
        let (dot, _) = k.row_dot(t, s).expect("validated");
        RowKernels { dot, tile_fn: k.row_tile(t, s), gemm: k.row_gemm(t, s), cols, w_row, a_row }
    };
    let acts = scratch.bytes_mut(n_rows * a_row);
    convert_rows(pool, n_rows, cols, acts, a_row, |i, row| {
        let s = src[i] as usize;
        from_float(&x[s * cols..(s + 1) * cols], row)
    });
    let acts: &[u8] = acts;
    for_each_chunk(pool, n_items, 1, RowBuf::default, |tile, i0, _| {
        let (m, g, c) = item(i0);
        let wg = w(m, g);
        let (r0, r1) = span(c, wg.rows);
        let (op, rows) = ops[m];
        let ts = routes.first[g]..routes.first[g + 1];
        // SAFETY: item (m, g, c) alone writes columns [r0, r1) of output m's rows dst[ts] (as
        // above); those rows were checked to lie within outs[m].
        unsafe { kern(ts.len(), wg.rows).run(wg.data, acts, ts, r0..r1, op, rows, |i| dst[i] as usize, tile) }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::pool::tests::segs;
    use super::*;

    #[test]
    fn first_claims_follow_the_guided_order_inside_the_matrices() {
        // Q (64 groups of 1 KiB, 2 streams) then K (8 groups of 512 B, 1 stream); 2 threads, min 4:
        // the caller claims 72/4 = 18 items (all of Q's 0..18), the worker 54/4 = 13 (18..31)
        let spans = [
            WarmSpan { base: 1 << 20, group_bytes: 1024, streams: 2, items: 0..64 },
            WarmSpan { base: 1 << 24, group_bytes: 512, streams: 1, items: 64..72 },
        ];
        let mut w = Vec::new();
        first_claims(&spans, 72, 4, 2, &mut w);
        let q = |g: usize, n: usize| ((1 << 20) + g * 1024, n * 1024);
        assert_eq!(w[0], segs(&[q(0, 9), q(9, 9)]));
        assert_eq!(w[1], segs(&[q(18, 6), q(24, 6)]));
        // min 40: the caller takes Q 0..40, the worker the rest, Q 40..64 and all of K
        first_claims(&spans, 72, 40, 2, &mut w);
        assert_eq!(w[0], segs(&[q(0, 20), q(20, 20)]));
        assert_eq!(w[1], segs(&[q(40, 12), q(52, 12), ((1 << 24), 8 * 512)]));
        // the bytes per thread are capped
        let big = [WarmSpan { base: 0, group_bytes: 1 << 20, streams: 1, items: 0..64 }];
        first_claims(&big, 64, 1, 2, &mut w);
        assert_eq!(w[0][0], (0, WARM_BYTES));
    }

    #[test]
    fn lookahead_returns_what_followed_last_time() {
        let mut la = Lookahead::default();
        let r = |a: usize| vec![segs(&[(a, 64)])];
        for key in [10, 20, 30] {
            assert!(la.plan(key, &r(key), 1).is_empty(), "first forward: nothing learned yet");
        }
        la.seq = 0; // `start_forward`
        assert_eq!(la.plan(10, &r(10), 1), r(20).as_slice());
        assert_eq!(la.plan(20, &r(20), 1), r(30).as_slice());
        assert!(la.plan(30, &r(30), 1).is_empty(), "the last job: nothing after it");
        // the order changed at the second job: nothing is guessed there, then 40 follows 10
        la.seq = 0;
        assert_eq!(la.plan(10, &r(10), 1), r(20).as_slice());
        assert!(la.plan(40, &r(40), 1).is_empty());
        la.plan(30, &r(30), 1);
        la.seq = 0;
        assert_eq!(la.plan(10, &r(10), 1), r(40).as_slice());
        // another pool size: the rows start over
        assert!(la.plan(10, &[r(10)[0]; 2], 2).is_empty());
    }

    #[test]
    fn what_was_read_between_two_jobs_is_warmed_first_and_spread() {
        let mut mm = MatmulScratch::new();
        let claims = |a: usize| vec![segs(&[(a, 64), (a + 4096, 64)]), segs(&[(a + 8192, 64)])];
        mm.note_reads([(1, 64)].into_iter()); // no job yet: nothing to tie it to
        assert!(mm.ahead.between.is_empty());
        // token 1: Q/K/V job 10, the attention reads six ranges, job 20; token 2: job 10 again
        mm.ahead.plan(10, &claims(10), 2);
        let reads = [(100, 64), (200, 64), (300, 64), (400, 1 << 30), (500, 64), (600, 64)];
        mm.note_reads(reads.into_iter());
        mm.ahead.plan(20, &claims(20), 2);
        mm.start_forward();
        let p = mm.ahead.plan(10, &claims(10), 2).to_vec();
        // range i to thread 1 − i mod 2, at most WARM_SEGS − CLAIM_SEGS each, the long one capped,
        // then the thread's first claims of job 20
        assert_eq!(p[1], segs(&[(100, 64), (300, 64), (500, 64), (20 + 8192, 64)]));
        assert_eq!(p[0], segs(&[(200, 64), (400, BETWEEN_BYTES), (600, 64), (20, 64), (20 + 4096, 64)]));
        // more ranges than slots: each thread keeps its first WARM_SEGS − CLAIM_SEGS
        let many: Vec<WarmSeg> = (1..=20).map(|i| (i * 1000, 64)).collect();
        mm.note_reads(many.iter().copied());
        mm.ahead.plan(20, &claims(20), 2);
        mm.start_forward();
        let p = mm.ahead.plan(10, &claims(10), 2).to_vec();
        assert_eq!(p[1][..WARM_SEGS - CLAIM_SEGS], [(1000, 64), (3000, 64), (5000, 64), (7000, 64)]);
        assert_eq!(p[1][WARM_SEGS - CLAIM_SEGS], (20 + 8192, 64));
        // job 20 had nothing read after it: the plan is just what follows it, nothing here
        assert!(mm.ahead.plan(20, &claims(20), 2).is_empty());
        // a job whose place held another one last time: its reads are not guessed
        mm.start_forward();
        mm.ahead.plan(30, &claims(30), 2);
        mm.start_forward();
        assert_eq!(mm.ahead.plan(30, &claims(30), 2), claims(20).as_slice());
    }
}
