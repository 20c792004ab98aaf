//! The elementwise operations of `kernels::elementwise` run over the thread pool, rows split into
//! one contiguous range per thread. Each row is computed by the very same function as on one thread
//! (SwiGLU: the table's `swiglu`), so results are bit-identical to the single-threaded calls; only
//! batches (more than one row) are split, a single row (token generation) or a few short ones (one
//! token's per-head Q/K norms) run inline on the caller.

use std::sync::Mutex;

use super::dispatch::kernels;
use super::elementwise::{self, Rope};
use super::pool::ThreadPool;

/// Fewer values than this run on the caller: waking the pool and meeting at the end costs a few
/// µs, what these elementwise passes do to ~4K values in about that time.
const PAR_MIN_VALUES: usize = 4096;

/// `f(first_row, a_rows, b_rows)` over contiguous row ranges of `a` (rows of `a_row` values) and the
/// matching rows of `b` (`b_row` values each; `b` may be empty with `b_row` = 0), in parallel.
fn par_rows<F>(pool: &ThreadPool, a: &mut [f32], a_row: usize, b: &[f32], b_row: usize, f: F)
where
    F: Fn(usize, &mut [f32], &[f32]) + Sync,
{
    let n_rows = a.len().checked_div(a_row).unwrap_or(0);
    let n_parts = pool.n_threads().min(n_rows);
    if n_parts <= 1 || a.len() < PAR_MIN_VALUES {
        f(0, a, b);
        return;
    }
    // Part p: rows n_rows·p/n_parts .. n_rows·(p+1)/n_parts. Each part is locked by the one thread
    // that takes it (parts ith, ith+nth, … so any pool size covers them all).
    let mut parts = Vec::with_capacity(n_parts);
    let mut rest = a;
    for p in 0..n_parts {
        let (r0, r1) = (n_rows * p / n_parts, n_rows * (p + 1) / n_parts);
        let (head, tail) = rest.split_at_mut((r1 - r0) * a_row);
        rest = tail;
        let bp = if b_row == 0 { &b[..0] } else { &b[r0 * b_row..r1 * b_row] };
        parts.push(Mutex::new((r0, head, bp)));
    }
    pool.run(|ith, nth| {
        for part in parts.iter().skip(ith).step_by(nth.max(1)) {
            let mut g = part.lock().unwrap_or_else(|e| e.into_inner());
            let (r0, ar, br) = &mut *g;
            f(*r0, ar, br);
        }
    });
}

/// `elementwise::rms_norm`, rows of `w.len()` split over the pool.
pub fn rms_norm(pool: &ThreadPool, out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = w.len();
    par_rows(pool, out, n, x, n, |_, o, xr| elementwise::rms_norm(o, xr, w, eps));
}

/// `elementwise::layer_norm`, rows of `w.len()` split over the pool.
pub fn layer_norm(pool: &ThreadPool, out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len();
    // the sum orders of the llama.cpp build the process-wide kernel table follows
    let width = super::kernels().orders.vector_width();
    par_rows(pool, out, n, x, n, |_, o, xr| elementwise::layer_norm(o, xr, w, b, eps, width));
}

/// `elementwise::gelu_inplace` on [n_rows][row].
pub fn gelu_inplace(pool: &ThreadPool, x: &mut [f32], row: usize) {
    par_rows(pool, x, row, &[], 0, |_, a, _| elementwise::gelu_inplace(a));
}

/// `elementwise::rms_norm_inplace` (rows of `w.len()`: per-head norms too) split over the pool.
pub fn rms_norm_inplace(pool: &ThreadPool, x: &mut [f32], w: &[f32], eps: f32) {
    par_rows(pool, x, w.len(), &[], 0, |_, xr, _| elementwise::rms_norm_inplace(xr, w, eps));
}

/// `elementwise::add_inplace` on [n_rows][row] buffers.
pub fn add_inplace(pool: &ThreadPool, x: &mut [f32], y: &[f32], row: usize) {
    par_rows(pool, x, row, y, row, |_, a, b| elementwise::add_inplace(a, b));
}

/// `elementwise::add_bias` split over the pool.
pub fn add_bias(pool: &ThreadPool, x: &mut [f32], bias: &[f32]) {
    par_rows(pool, x, bias.len(), &[], 0, |_, a, _| elementwise::add_bias(a, bias));
}

/// `elementwise::scale_inplace` on [n_rows][row].
pub fn scale_inplace(pool: &ThreadPool, x: &mut [f32], s: f32, row: usize) {
    par_rows(pool, x, row, &[], 0, |_, a, _| elementwise::scale_inplace(a, s));
}

/// `elementwise::weighted_sum` per token: `out[t] = Σ_j w[t][j] · rows[t][j]`. out: [n][row],
/// rows: [n][k][row], w: [n][k]
pub fn weighted_sum(pool: &ThreadPool, out: &mut [f32], rows: &[f32], w: &[f32], row: usize) {
    let k = w.len() / (out.len() / row).max(1);
    par_rows(pool, out, row, rows, k * row, |t0, o, r| {
        for (i, (ot, rt)) in o.chunks_exact_mut(row).zip(r.chunks_exact(k * row)).enumerate() {
            elementwise::weighted_sum(ot, rt, &w[(t0 + i) * k..(t0 + i + 1) * k]);
        }
    });
}

/// `elementwise::swiglu_oai` on [n_rows][row] gate/up buffers.
pub fn swiglu_oai_inplace(pool: &ThreadPool, gate: &mut [f32], up: &[f32], row: usize, alpha: f32, limit: f32) {
    par_rows(pool, gate, row, up, row, |_, g, u| elementwise::swiglu_oai(g, u, alpha, limit));
}

/// `rows[r] += table[ids[r]]` for each row r of `rows` ([n_rows][row]; table: [n_ids][row]):
/// ggml's `add_id` (a MoE expert's bias on the rows routed to it).
pub fn add_id(pool: &ThreadPool, rows: &mut [f32], table: &[f32], ids: &[u32], row: usize) {
    par_rows(pool, rows, row, &[], 0, |r0, a, _| {
        for (i, r) in a.chunks_exact_mut(row).enumerate() {
            let id = ids[r0 + i] as usize;
            elementwise::add_inplace(r, &table[id * row..(id + 1) * row]);
        }
    });
}

/// The process-wide table's `swiglu` on [n_rows][row] gate/up buffers.
pub fn swiglu_inplace(pool: &ThreadPool, gate: &mut [f32], up: &[f32], row: usize) {
    let swiglu = kernels().swiglu;
    par_rows(pool, gate, row, up, row, |_, g, u| swiglu(g, u, row));
}

/// `elementwise::geglu_inplace` on [n_rows][row] gate/up buffers.
pub fn geglu_inplace(pool: &ThreadPool, gate: &mut [f32], up: &[f32], row: usize) {
    par_rows(pool, gate, row, up, row, |_, g, u| elementwise::geglu_inplace(g, u));
}

/// `rope.rotate` of every token row (`row` values, heads of `head_dim`) of `x` by its angles:
/// row t by `angles[t·n_rot/2..]` (`Rope::angles` at its position; rows of several sequences
/// each have their own). angles: [n_rows][n_rot/2]
pub fn rope(pool: &ThreadPool, rope: &Rope, x: &mut [f32], row: usize, head_dim: usize, angles: &[(f32, f32)]) {
    let half = rope.n_rot / 2;
    if half == 0 {
        return;
    }
    assert_eq!(angles.len() / half * row, x.len(), "rope: one angle row per row");
    par_rows(pool, x, row, &[], 0, |t0, a, _| {
        for (i, r) in a.chunks_exact_mut(row).enumerate() {
            rope.rotate(r, head_dim, &angles[(t0 + i) * half..(t0 + i + 1) * half]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::elementwise::RopeType;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn parallel_ops_are_bit_identical_to_sequential() {
        let (row, head) = (48, 16);
        let w = data(row, 1);
        let rp = Rope {
            n_rot: 16,
            freq_base: 10000.0,
            freq_scale: 1.0,
            kind: RopeType::Neox,
            freq_factors: None,
            yarn: None,
            attn_factor: 1.0,
        };
        for n_threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n_threads);
            // 100 and 171 rows are over PAR_MIN_VALUES: split across the pool
            for n_rows in [1, 2, 3, 7, 16, 100, 171] {
                let x = data(n_rows * row, 2);
                let y = data(n_rows * row, 3);
                let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                rms_norm(&pool, &mut a, &x, &w, 1e-5);
                elementwise::rms_norm(&mut b, &x, &w, 1e-5);
                assert_eq!(a, b);
                let (mut a, mut b) = (x.clone(), x.clone());
                rms_norm_inplace(&pool, &mut a, &w[..head], 1e-6);
                elementwise::rms_norm_inplace(&mut b, &w[..head], 1e-6);
                assert_eq!(a, b);
                let (mut a, mut b) = (x.clone(), x.clone());
                add_inplace(&pool, &mut a, &y, row);
                elementwise::add_inplace(&mut b, &y);
                assert_eq!(a, b);
                add_bias(&pool, &mut a, &w);
                elementwise::add_bias(&mut b, &w);
                assert_eq!(a, b);
                scale_inplace(&pool, &mut a, 1.7, row);
                elementwise::scale_inplace(&mut b, 1.7);
                assert_eq!(a, b);
                swiglu_inplace(&pool, &mut a, &y, row);
                (kernels().swiglu)(&mut b, &y, row);
                assert_eq!(a, b);
                geglu_inplace(&pool, &mut a, &x, row);
                elementwise::geglu_inplace(&mut b, &x);
                assert_eq!(a, b);
                // positions in any order (rows of several sequences)
                let pos: Vec<u32> = (0..a.len() / row).map(|t| (5 + 7 * t % 13) as u32).collect();
                let mut angles = vec![(0.0, 0.0); pos.len() * rp.n_rot / 2];
                rp.angle_rows(&pos, &mut angles);
                rope(&pool, &rp, &mut a, row, head, &angles);
                for (t, r) in b.chunks_exact_mut(row).enumerate() {
                    rp.apply(r, head, pos[t] as usize);
                }
                assert_eq!(a, b);
            }
        }
    }
}
