//! Single-token matvec read rate (docs/PERFORMANCE.md): bench_gemv TYPE ROWS N_MATS THREADS ITERS
//! runs one token through N_MATS packed ROWS×2048 matrices of TYPE (q4_0, q5_0, q8_0, q4_k, q6_k)
//! in turn, so with enough of them every read comes from memory, and prints the weight bytes read
//! per second.
use llama_core::kernels::{kernels, matmul_with, MatmulScratch, QTensor, ThreadPool};
use llama_core::quant::GgmlType;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty = match a[1].as_str() {
        "q8_0" => GgmlType::Q8_0,
        "q5_0" => GgmlType::Q5_0,
        "q4_k" => GgmlType::Q4_K,
        "q6_k" => GgmlType::Q6_K,
        _ => GgmlType::Q4_0,
    };
    let rows: usize = a[2].parse().unwrap();
    let nm: usize = a[3].parse().unwrap();
    let nth: usize = a[4].parse().unwrap();
    let iters: usize = a[5].parse().unwrap();
    let cols = 2048usize;
    let row_bytes = ty.row_size(cols as u64).unwrap() as usize;
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut data: Vec<u8> = (0..rows * row_bytes)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    // small finite scales (random bytes could be NaN or huge)
    let (_, ts) = ty.block_layout();
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for blk in data.chunks_exact_mut(ts) {
        match ty {
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&scale),
            GgmlType::Q4_K => {
                blk[0..2].copy_from_slice(&scale);
                blk[2..4].copy_from_slice(&scale);
            }
            _ => blk[0..2].copy_from_slice(&scale),
        }
    }
    let packs: Vec<_> = (0..nm).map(|_| llama_core::quant::repack::pack(ty, &data, rows, cols).unwrap()).collect();
    let pool = ThreadPool::new(nth);
    let mut scratch = MatmulScratch::new();
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
    let mut out = vec![0f32; rows];
    let k = kernels();
    let t0 = std::time::Instant::now();
    for _ in 0..iters {
        for p in &packs {
            let w = QTensor { packed: Some(p), ..QTensor::new(ty, &data, rows, cols) };
            matmul_with(k, &pool, &w, &x, 1, &mut out, &mut scratch).unwrap();
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let bytes = (rows * row_bytes * nm * iters) as f64;
    eprintln!(
        "rows {rows} mats {nm} threads {nth}: {:.1} GB/s, {:.1} us/mat",
        bytes / dt / 1e9,
        dt * 1e6 / (nm * iters) as f64
    );
}
