//! scratch: one table, one type, packed weights (LLAMA_ISA picks the table):
//!   bench_r16 TYPE N_TOKENS ITERS [ROWS N_MATS THREADS]
//! runs N_TOKENS tokens through N_MATS packed ROWS×2048 matrices of TYPE in turn (default one
//! 2048×2048 matrix, 1 thread) and prints the time per matrix and the weight bytes read per second;
//! with enough matrices every read comes from memory (docs/PERFORMANCE.md: `q4_0 1 3 65536 2 2`).
use llama_core::kernels::{kernels, matmul_with, MatmulScratch, QTensor, ThreadPool};
use llama_core::quant::GgmlType;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty = match a[1].as_str() {
        "q8_0" => GgmlType::Q8_0,
        "q5_0" => GgmlType::Q5_0,
        "q4_1" => GgmlType::Q4_1,
        "q5_1" => GgmlType::Q5_1,
        "q4_k" => GgmlType::Q4_K,
        "q6_k" => GgmlType::Q6_K,
        _ => GgmlType::Q4_0,
    };
    let nt: usize = a[2].parse().unwrap();
    let iters: usize = a[3].parse().unwrap();
    let arg = |i: usize, d: usize| a.get(i).map_or(d, |v| v.parse().unwrap());
    let (rows, n_mats, n_threads) = (arg(4, 2048), arg(5, 1), arg(6, 1));
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
    let (_, ts) = ty.block_layout();
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for blk in data.chunks_exact_mut(ts) {
        match ty {
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&scale),
            GgmlType::Q4_K | GgmlType::Q4_1 | GgmlType::Q5_1 => {
                blk[0..2].copy_from_slice(&scale);
                blk[2..4].copy_from_slice(&scale);
            }
            _ => blk[0..2].copy_from_slice(&scale),
        }
    }
    // one arena, as a model's matrices are packed (huge pages for small matrices too)
    use llama_core::quant::repack::{pack_into, PackArena};
    let mut arena = PackArena::new(&vec![(ty, rows, cols); n_mats]).expect("an R16 type and shape");
    for slot in arena.slots() {
        pack_into(ty, &data, rows, cols, slot).unwrap();
    }
    let packs = arena.finish(&vec![true; n_mats]);
    let pool = ThreadPool::new(n_threads);
    let mut scratch = MatmulScratch::new();
    let x: Vec<f32> = (0..nt * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
    let mut out = vec![0f32; nt * rows];
    let k = kernels();
    let t0 = std::time::Instant::now();
    for _ in 0..iters {
        for p in &packs {
            let w = QTensor { packed: p.as_ref(), ..QTensor::new(ty, &data, rows, cols) };
            matmul_with(k, &pool, &w, &x, nt, &mut out, &mut scratch).unwrap();
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let calls = (n_mats * iters) as f64;
    eprintln!(
        "{} {:?} {rows}x{cols} nt={nt} mats={n_mats} threads={n_threads}: {:.3} ms/matrix, {:.1} GB/s of weights (sum {})",
        ty.name(),
        k.isa,
        dt * 1e3 / calls,
        (rows * row_bytes) as f64 * calls / dt / 1e9,
        out.iter().sum::<f32>()
    );
}
