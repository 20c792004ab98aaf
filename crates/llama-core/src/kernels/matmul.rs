//! `out = x · Wᵀ` for a quantized weight W, the op that dominates inference time.
//!
//! Steps (as ggml's mul_mat): the activations are converted ONCE per call to the weight's partner
//! type (`Kernels::vec_dot_type`: Q8_0, Q8_1, Q8_K, F16, BF16 or F32) into a reusable scratch buffer,
//! then the weight rows are split in chunks that threads claim from a shared counter (so threads on
//! a busy, shared machine still finish together), and each chunk computes every token against a
//! tile of weight rows while that tile is hot in cache.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::dispatch::kernels;
use super::pool::ThreadPool;
use super::types::{Kernels, R16Plan, TILE};
use crate::quant::repack::{self, Packed, MAX_T, R};
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
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }

    fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        let words = n.div_ceil(8);
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
        let bytes: &mut [u8] = bytemuck_u64(&mut self.buf[..words]);
        &mut bytes[..n]
    }
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
            matmul_r16(k, plan, pool, p, x, n_tokens, out, scratch);
            return Ok(());
        }
    }
    let (rows, cols) = (w.rows, w.cols);
    let from_float = k.from_float(act).expect("every vec_dot_type has a converter");
    let dot = k.vec_dot(w.ggml_type).expect("validated type has a dot kernel");
    let tile_fn = if n_tokens > 1 { k.tile(w.ggml_type) } else { None };
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
    for_each_chunk(
        pool,
        rows,
        chunk,
        || [0.0f32; ROW_TILE],
        |tile, r0, r1| {
            {
                for tb in (0..n_tokens).step_by(TOKEN_TILE) {
                    for rb in (r0..r1).step_by(ROW_TILE) {
                        let re = (rb + ROW_TILE).min(r1);
                        let te = (tb + TOKEN_TILE).min(n_tokens);
                        if let Some(tile_fn) = tile_fn {
                            for r4 in (rb..re).step_by(TILE) {
                                let nr = TILE.min(re - r4);
                                for t4 in (tb..te).step_by(TILE) {
                                    let nt = TILE.min(te - t4);
                                    let res =
                                        tile_fn(cols, &w.data[r4 * w_row..], w_row, nr, &acts[t4 * a_row..], a_row, nt);
                                    for (i, res_r) in res.iter().enumerate().take(nr) {
                                        for (j, v) in res_r.iter().enumerate().take(nt) {
                                            // SAFETY: row r4 + i lies in chunk c, owned by this thread
                                            // (see below); index < n_tokens * rows ≤ out.len().
                                            unsafe { *op.ptr().add((t4 + j) * rows + r4 + i) = *v };
                                        }
                                    }
                                }
                            }
                            continue;
                        }
                        for t in tb..te {
                            let a = &acts[t * a_row..(t + 1) * a_row];
                            for (i, r) in (rb..re).enumerate() {
                                tile[i] = dot(cols, &w.data[r * w_row..(r + 1) * w_row], a);
                            }
                            // SAFETY: rows [rb, re) belong to chunk c, claimed by this thread only, so
                            // out[t*rows + rb .. t*rows + re] is written by nobody else; `out` outlives the run.
                            let o = unsafe { std::slice::from_raw_parts_mut(op.ptr().add(t * rows + rb), re - rb) };
                            o.copy_from_slice(&tile[..re - rb]);
                        }
                    }
                }
            }
        },
    );
    Ok(())
}

/// Tokens whose Q8_0S activations stay in L2 while a chunk's weight groups pass over them.
const R16_TOKEN_TILE: usize = 64;

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
    let k_quant = p.ggml_type.block_size() == 256;
    let n_batch = plan.n_batch;
    let nb = cols / p.ggml_type.block_size();
    // K-quants take the Q8_K converter's rows as they are; the others stage a row of their
    // `vec_dot_type` (Q8_0 or Q8_1) per token and transcode it to Q8_0S / Q8_1S.
    let act = k.vec_dot_type(p.ggml_type).expect("R16 type has an activation type");
    let s_row = nb * repack::act_block_bytes(p.ggml_type);
    let q_row = if k_quant { 0 } else { nb * act.type_size() };
    let to_act = k.from_float(act).expect("activation converter");
    let batch_from_float = plan.batch_from_float;
    // [n_tokens][s_row + q_row]: each token's kernel input, then its staging bytes.
    let a_stride = s_row + q_row;
    let acts = scratch.bytes_mut(n_tokens * a_stride);
    convert_rows(pool, n_tokens, cols, acts, a_stride, |t, row| {
        let xr = &x[t * cols..(t + 1) * cols];
        let (ar, st) = row.split_at_mut(s_row);
        match batch_from_float {
            Some(f) if k_quant && t < n_batch => f(xr, ar),
            _ if k_quant => to_act(xr, ar),
            _ => {
                to_act(xr, st);
                repack::to_r16_acts(p.ggml_type, st, ar);
            }
        }
    });
    let acts: &[u8] = acts;

    let n_groups = rows / R;
    let nth = pool.n_threads();
    // Several chunks per thread so threads on a shared machine still finish together.
    let chunk = n_groups.div_ceil(nth * 4).max(1);
    let op = SharedMut(out.as_mut_ptr());
    // tile: [nt][16] results of one kernel call
    for_each_chunk(
        pool,
        n_groups,
        chunk,
        || [0.0f32; MAX_T * R],
        |tile, g0, g1| {
            {
                for tb in (0..n_tokens).step_by(R16_TOKEN_TILE) {
                    let te = (tb + R16_TOKEN_TILE).min(n_tokens);
                    for g in g0..g1 {
                        let mut t = tb;
                        while t < te {
                            // a call never straddles the end of the batch-order tokens
                            let (f, end) = if t < n_batch { (plan.batch, n_batch.min(te)) } else { (plan.plain, te) };
                            let nt = MAX_T.min(end - t);
                            f(nb, p.group(g), &acts[t * a_stride..], a_stride, nt, &mut tile[..], R);
                            for (j, res) in tile.chunks_exact(R).take(nt).enumerate() {
                                // SAFETY: columns [16g, 16g+16) of every token row belong to chunk c,
                                // claimed by this thread only, so nobody else writes these 16 floats;
                                // (t+j)*rows + 16g + 16 ≤ n_tokens*rows ≤ out.len(); `out` outlives the run.
                                let o =
                                    unsafe { std::slice::from_raw_parts_mut(op.ptr().add((t + j) * rows + g * R), R) };
                                o.copy_from_slice(res);
                            }
                            t += nt;
                        }
                    }
                }
            }
        },
    );
}
