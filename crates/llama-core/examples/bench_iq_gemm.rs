//! One prompt batch through a grid i-quant's batch GEMM: `cargo run --release -p llama-core
//! --example bench_iq_gemm -- TYPE [reps] [rows] [cols] [tokens per call]` (TYPE: iq1_m, iq2_xs,
//! iq3_xxs, …). 512 tokens × `rows`×`cols` weights, 1 thread, the best table; prints CPU time per
//! `matmul_with` (min over reps) and a checksum of its outputs (so before/after runs can be
//! compared for equality), then, with a tokens-per-call count, the type's batch GEMM alone
//! (`BatchDot::gemm`, the activations converted once beforehand) over the same product in calls of
//! that many tokens.
//! A fixed workload for instruction counts (`perf stat -e instructions`) or timing.

use llama_core::kernels::{matmul_with, Kernels, MatmulScratch, QTensor, ThreadPool, GEMM_ROWS};
use llama_core::quant::GgmlType;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(|s| s.to_lowercase()).unwrap_or_else(|| "iq1_m".into());
    let ty = GgmlType::ALL.iter().copied().find(|t| t.name().to_lowercase() == name).expect("unknown type");
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let rows: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(256);
    let cols: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let per_call: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(0);
    let n_tokens = 512;
    let row_bytes = ty.row_size(cols as u64).unwrap() as usize;
    // xorshift bytes; every block's leading f16 scale small and finite
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut data: Vec<u8> = (0..rows * row_bytes).map(|_| next() as u8).collect();
    let ts = ty.type_size();
    if ty != GgmlType::IQ1_M {
        for blk in data.chunks_exact_mut(ts) {
            blk[0..2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
    let w = QTensor::new(ty, &data, rows, cols);
    let pool = ThreadPool::new(1);
    let k = Kernels::available().into_iter().last().expect("a kernel table");
    let mut scratch = MatmulScratch::new();
    let mut out = vec![0f32; n_tokens * rows];
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let c0 = cpu_seconds();
        matmul_with(&k, &pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap();
        best = best.min(cpu_seconds() - c0);
    }
    if per_call > 0 {
        let Some(gemm) = k.traits(ty).and_then(|r| r.batch_dot).and_then(|b| b.gemm) else {
            println!("{} has no batch GEMM in this table", ty.name());
            return;
        };
        let act = k.vec_dot_type(ty).unwrap();
        let a_row = act.row_size(cols as u64).unwrap() as usize;
        let from_float = k.from_float(act).unwrap();
        let mut acts = vec![0u8; n_tokens * a_row]; // [n_tokens][a_row]
        for (t, ar) in acts.chunks_exact_mut(a_row).enumerate() {
            from_float(&x[t * cols..(t + 1) * cols], ar);
        }
        let mut tile = vec![0f32; per_call * GEMM_ROWS]; // [per_call][GEMM_ROWS]
        let mut best_gemm = f64::INFINITY;
        let mut h = 0u64;
        for _ in 0..reps {
            let c0 = cpu_seconds();
            for rb in (0..rows).step_by(GEMM_ROWS) {
                let nr = GEMM_ROWS.min(rows - rb);
                for tb in (0..n_tokens).step_by(per_call) {
                    let nt = per_call.min(n_tokens - tb);
                    gemm(cols, &data[rb * row_bytes..], row_bytes, nr, &acts[tb * a_row..], a_row, nt, &mut tile);
                    h = h.rotate_left(3) ^ tile[0].to_bits() as u64;
                }
            }
            best_gemm = best_gemm.min(cpu_seconds() - c0);
        }
        println!("  gemm alone, {per_call} tokens a call: {:.3} ms (min of {reps}) [{h:x}]", best_gemm * 1e3);
    }
    let sum = out.iter().fold(0u64, |h, v| h.rotate_left(5) ^ v.to_bits() as u64);
    println!(
        "{} {:?} {rows}x{cols} x {n_tokens} tokens: {:.3} ms/call (min of {reps}), checksum {sum:016x}",
        ty.name(),
        k.isa,
        best * 1e3
    );
}

/// This thread's CPU time (the first field of its schedstat, in ns): on a shared machine wall
/// time mostly measures the other processes. The work runs on this thread (a 1-thread pool).
fn cpu_seconds() -> f64 {
    // the kernel brings the counter up to date on a scheduling event; a yield is one
    std::thread::yield_now();
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) * 1e-9
}
