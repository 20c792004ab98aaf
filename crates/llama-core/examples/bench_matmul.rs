//! matmul throughput per ISA:
//! `cargo run --release -p llama-core --example bench_matmul [threads] [type] [n_tokens]`
//! (type: any ggml type name, default q4_0; n_tokens: 1 or 512, default both).
//! Prints GFLOP/s (2·rows·cols·n_tokens per call) and weight GB/s (weight bytes per call).

use llama_core::kernels::{matmul_with, Kernels, MatmulScratch, QTensor, ThreadPool};
use llama_core::quant::GgmlType;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let name = args.get(2).map(|s| s.to_lowercase()).unwrap_or_else(|| "q4_0".into());
    let ty = GgmlType::ALL
        .into_iter()
        .find(|t| t.name().to_lowercase() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"));
    let token_counts: Vec<usize> = match args.get(3).and_then(|s| s.parse().ok()) {
        Some(n) => vec![n],
        None => vec![1, 512],
    };
    let (rows, cols) = (4096usize, 4096usize);
    let row_bytes = ty.row_size(cols as u64).unwrap() as usize;
    // Random bytes with small, finite f16 scales in every block.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut data: Vec<u8> = (0..rows * row_bytes)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    let (bs, ts) = ty.block_layout();
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for blk in data.chunks_exact_mut(ts) {
        match ty {
            GgmlType::F16 => blk.copy_from_slice(&scale),
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&scale),
            GgmlType::Q4_K => {
                blk[0..2].copy_from_slice(&scale);
                blk[2..4].copy_from_slice(&scale);
            }
            _ => blk[0..2].copy_from_slice(&scale),
        }
    }
    let _ = bs;
    let plain = QTensor::new(ty, &data, rows, cols);
    let packed = llama_core::quant::repack::pack(ty, &data, rows, cols);
    let pool = ThreadPool::new(threads);
    let mut scratch = MatmulScratch::new();
    println!("{} {rows}x{cols}, {threads} threads", ty.name());
    for k in Kernels::available() {
        for w in [plain, QTensor { packed: packed.as_ref(), ..plain }] {
            if w.packed.is_some() && k.gemm_r16(ty).is_none() {
                continue;
            }
            for &n_tokens in &token_counts {
                let x: Vec<f32> = (0..n_tokens * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
                let mut out = vec![0f32; n_tokens * rows];
                matmul_with(&k, &pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap(); // warm-up
                let iters = if n_tokens == 1 { 300 } else { 3 };
                let c0 = cpu_seconds();
                let t0 = Instant::now();
                for _ in 0..iters {
                    matmul_with(&k, &pool, &w, &x, n_tokens, &mut out, &mut scratch).unwrap();
                }
                let dt = t0.elapsed().as_secs_f64() / iters as f64;
                // CPU time actually received: on a shared, oversubscribed machine wall time mostly
                // measures the other processes, so also report throughput per CPU-second.
                let cpu = (cpu_seconds() - c0) / iters as f64;
                let gflops = 2.0 * (rows * cols * n_tokens) as f64 / dt / 1e9;
                let gbs = data.len() as f64 / dt / 1e9;
                let gflops_cpu = 2.0 * (rows * cols * n_tokens) as f64 / cpu / 1e9;
                let gbs_cpu = data.len() as f64 / cpu / 1e9;
                println!(
                "  {:7}{} n_tokens={n_tokens:4}: wall {:9.3} ms {gflops:7.1} GFLOP/s {gbs:6.2} GB/s | per CPU-s: {gflops_cpu:7.1} GFLOP/s {gbs_cpu:6.2} GB/s",
                k.isa.name(),
                if w.packed.is_some() { " r16" } else { "    " },
                dt * 1e3
            );
            }
        }
    }
}

/// utime + stime of this process from /proc/self/stat (clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = s.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}
