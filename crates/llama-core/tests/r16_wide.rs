//! The AVX-512 "decode once" batch GEMMs (kernels/x86/r16_tiled.rs: Q3_K, Q5_K, IQ4_XS in
//! llama.cpp's tiled GEMM order, Q2_K in its AVX-512 8×8-repack GEMM order), which take up to
//! `repack::MAX_WIDE_T` tokens per call, against the typed references of those orders
//! (`kernels::ggml_x86`), bit for bit:
//!
//! - `wide_gemms_match_references`: direct kernel calls on random, extreme and zero blocks, token
//!   counts 1..=64 that are not multiples of the register block, padded activation and output
//!   strides, rows of 1, 3 and 17 super-blocks.
//! - `matmul_wide_matches_references_and_narrow`: whole `matmul_with` / `matmul_id` calls over
//!   packed weights (several groups, ragged batches, 1–2 threads) equal the references per
//!   (row, token) with the plan's activation converters, and equal the table with the previous
//!   ≤ 8-token batch kernels (`x86::avx512_table_narrow`).
//! - `wide_vs_narrow_timing` (ignored): a rough single-thread A/B of the two tables.
#![cfg(target_arch = "x86_64")]

use half::f16;
use llama_core::kernels::{ggml_x86 as g, matmul_id, matmul_with, x86, IdRoutes, Isa, Kernels, MatmulScratch};
use llama_core::kernels::{FromFloatFn, QTensor, ThreadPool};
use llama_core::quant::repack::{self, MAX_T, MAX_WIDE_T};
use llama_core::quant::GgmlType::{self, *};

type Ref = fn(usize, &[u8], &[u8]) -> f32;
/// (type, reference of the batch order, reference of the plain kernel).
type Wide = (GgmlType, Ref, Ref);

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Random,
    /// All quant bits set, huge f16 scales.
    Extreme,
    /// Zero scales.
    Zero,
}

/// Byte offsets of the f16 scales in a block of `t`.
fn scale_offsets(t: GgmlType) -> &'static [usize] {
    match t {
        IQ4_XS => &[0],
        Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        _ => unreachable!(),
    }
}

/// `n` elements of type `t` (whole blocks), random bytes with sane (or extreme / zero) scales.
fn weights(rng: &mut Rng, t: GgmlType, n: usize, mode: Mode) -> Vec<u8> {
    let (bs, ts) = t.block_layout();
    let nb = n / bs;
    let mut b: Vec<u8> =
        if mode == Mode::Extreme { vec![0xFF; nb * ts] } else { (0..nb * ts).map(|_| rng.next() as u8).collect() };
    for blk in b.chunks_exact_mut(ts) {
        for &o in scale_offsets(t) {
            let v = match mode {
                Mode::Random => rng.f32() * 0.05,
                Mode::Extreme => 30000.0,
                Mode::Zero => 0.0,
            };
            blk[o..o + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    b
}

fn activations(rng: &mut Rng, n: usize, mode: Mode) -> Vec<f32> {
    match mode {
        Mode::Random => (0..n).map(|_| rng.f32() * 3.0).collect(),
        Mode::Extreme => (0..n).map(|i| if i % 7 == 0 { -1e4 } else { 1e4 * rng.f32() }).collect(),
        Mode::Zero => vec![0.0; n],
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The x86 tables this CPU runs (with the wide kernels), each with the same table with the narrow
/// ones, and the types it has wide kernels for (AVX-512: all of `WIDE`, AVX2: Q3_K, Q5_K).
fn tables() -> Vec<(Kernels, Kernels, Vec<Wide>)> {
    let mut v = Vec::new();
    let Some(avx2) = Kernels::for_isa(Isa::Avx2) else {
        return v;
    };
    let avx2_narrow = x86::avx2_table_narrow(&Kernels::SCALAR).unwrap();
    v.push((avx2, avx2_narrow, WIDE.iter().copied().filter(|w| matches!(w.0, Q3_K | Q5_K)).collect()));
    if let (Some(k), Some(n)) = (Kernels::for_isa(Isa::Avx512), x86::avx512_table_narrow(&avx2)) {
        v.push((k, n, WIDE.to_vec()));
    }
    for (k, n, types) in &v {
        for (t, _, _) in types {
            assert_eq!(k.traits(*t).unwrap().r16_batch.unwrap().max_t, MAX_WIDE_T, "{:?} {t}: wide", k.isa);
            assert_eq!(n.traits(*t).unwrap().r16_batch.unwrap().max_t, MAX_T, "{:?} {t}: narrow", n.isa);
        }
    }
    v
}

/// (type, reference of the batch order, reference of the plain kernel) of the wide kernels.
const WIDE: [Wide; 4] = [
    (Q3_K, g::q3_k_tiled, g::q3_k_lanes),
    (Q5_K, g::q5_k_tiled, g::q5_k_lanes),
    (IQ4_XS, g::iq4_xs_tiled, g::iq4_xs_lanes),
    (Q2_K, g::q2_k_gemm4, g::q2_k_gemv),
];

#[test]
fn wide_gemms_match_references() {
    let mut rng = Rng(0x5eed_1234);
    let mut checked = 0;
    for (k, _, types) in tables() {
        for (t, want, _) in types {
            let b = k.traits(t).unwrap().r16_batch.unwrap();
            let (gemm, from_float): (_, FromFloatFn) =
                (b.gemm.unwrap(), b.from_float.unwrap_or(k.from_float(GgmlType::Q8_K).unwrap()));
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for (cols, pad) in [(256usize, 0usize), (768, 4), (17 * 256, 0)] {
                    let nb = cols / 256;
                    let w = weights(&mut rng, t, 16 * cols, mode);
                    let p = repack::pack(t, &w, 16, cols).unwrap();
                    let w_row = t.row_size(cols as u64).unwrap() as usize;
                    let prow = nb * repack::Q8_K_BLOCK;
                    let a_stride = prow + pad;
                    for nt in [1usize, 3, 8, 9, 13, 31, 64] {
                        if cols > 1024 && mode != Mode::Random && nt != 64 {
                            continue;
                        }
                        let x = activations(&mut rng, nt * cols, mode);
                        let mut acts = vec![0u8; nt * a_stride];
                        for tk in 0..nt {
                            from_float(&x[tk * cols..(tk + 1) * cols], &mut acts[tk * a_stride..tk * a_stride + prow]);
                        }
                        let os = 16 + pad;
                        let mut got = vec![f32::NAN; nt * os];
                        gemm(nb, p.group(0), &acts, a_stride, nt, &mut got, os);
                        for tk in 0..nt {
                            let a = &acts[tk * a_stride..tk * a_stride + prow];
                            for r in 0..16 {
                                let e = want(cols, &w[r * w_row..(r + 1) * w_row], a);
                                let v = got[tk * os + r];
                                assert!(
                                    same(v, e),
                                    "{:?} {t} {mode:?} cols={cols} nt={nt} t={tk} row={r}: {v} vs {e}",
                                    k.isa
                                );
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!("wide gemms: {checked} calls checked");
}

#[test]
fn matmul_wide_matches_references_and_narrow() {
    let mut rng = Rng(99);
    let pools: Vec<ThreadPool> = [1, 2].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    for (k, narrow, types) in tables() {
        let q8k = k.from_float(GgmlType::Q8_K).unwrap();
        for (t, batch_ref, plain_ref) in types {
            let b = k.traits(t).unwrap().r16_batch.unwrap();
            let (rows, cols) = (48usize, 3 * 256);
            let w = weights(&mut rng, t, rows * cols, Mode::Random);
            let p = repack::pack(t, &w, rows, cols).unwrap();
            let q = QTensor { packed: Some(&p), ..QTensor::new(t, &w, rows, cols) };
            let w_row = t.row_size(cols as u64).unwrap() as usize;
            let a_row = GgmlType::Q8_K.row_size(cols as u64).unwrap() as usize;
            for n in [8usize, 11, 70, 130] {
                let x = activations(&mut rng, n * cols, Mode::Random);
                // the plan: tokens below n_batch in the batch order with its converter
                let n_batch = if n >= b.min_tokens { n - n % b.group } else { 0 };
                let mut want = vec![0f32; n * rows];
                let mut a = vec![0u8; a_row];
                for tk in 0..n {
                    let (conv, r): (FromFloatFn, Ref) =
                        if tk < n_batch { (b.from_float.unwrap_or(q8k), batch_ref) } else { (q8k, plain_ref) };
                    conv(&x[tk * cols..(tk + 1) * cols], &mut a);
                    for row in 0..rows {
                        want[tk * rows + row] = r(cols, &w[row * w_row..(row + 1) * w_row], &a);
                    }
                }
                for pool in &pools {
                    for table in [&k, &narrow] {
                        let mut got = vec![f32::NAN; n * rows];
                        matmul_with(table, pool, &q, &x, n, &mut got, &mut scratch).unwrap();
                        for (i, (v, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                same(*v, *e),
                                "{:?} {t} {} n={n} th={} [{i}]: {v} vs {e}",
                                k.isa,
                                if std::ptr::eq(table, &k) { "wide" } else { "narrow" },
                                pool.n_threads()
                            );
                        }
                    }
                }
            }
            // matmul_id: one expert with 70 rows routed (reversed), another with 3; the tiled order
            // (group 1, no own converter) takes a group of ≥ min_tokens rows, the plain kernel the rest
            if b.group != 1 || b.from_float.is_some() {
                continue;
            }
            let n_src = 73;
            let x = activations(&mut rng, n_src * cols, Mode::Random);
            let w2 = weights(&mut rng, t, rows * cols, Mode::Random);
            let p2 = repack::pack(t, &w2, rows, cols).unwrap();
            let src: Vec<u32> = (0..n_src as u32).rev().collect();
            let dst: Vec<u32> = (0..n_src as u32).collect();
            let first = [0usize, 70, n_src];
            let routes = IdRoutes { first: &first, src: &src, dst: &dst };
            let wg = |_m: usize, gi: usize| {
                let (wd, pk) = if gi == 0 { (&w[..], &p) } else { (&w2[..], &p2) };
                QTensor { packed: Some(pk), ..QTensor::new(t, wd, rows, cols) }
            };
            let mut want = vec![0f32; n_src * rows];
            let mut a = vec![0u8; a_row];
            for i in 0..n_src {
                let (wd, r): (&[u8], Ref) = if i < 70 { (&w, batch_ref) } else { (&w2, plain_ref) };
                let s = src[i] as usize;
                q8k(&x[s * cols..(s + 1) * cols], &mut a);
                for row in 0..rows {
                    want[dst[i] as usize * rows + row] = r(cols, &wd[row * w_row..(row + 1) * w_row], &a);
                }
            }
            let mut got = vec![f32::NAN; n_src * rows];
            matmul_id(&k, &pools[1], 1, wg, routes, &x, &mut [&mut got[..]], &mut scratch).unwrap();
            for (i, (v, e)) in got.iter().zip(&want).enumerate() {
                assert!(same(*v, *e), "{:?} {t} matmul_id [{i}]: {v} vs {e}", k.isa);
            }
        }
    }
}

/// This thread's CPU time in seconds (Linux schedstat), else wall time.
fn cpu_time() -> f64 {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    match ns {
        Some(ns) => ns as f64 * 1e-9,
        None => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
        }
    }
}

/// Rough single-thread A/B of the wide and narrow tables on a 2048×2048 matmul of 512 tokens per
/// type (`cargo test --release --test r16_wide -- --ignored --nocapture`); timings on a shared
/// machine are indicative only.
#[test]
#[ignore]
fn wide_vs_narrow_timing() {
    let mut rng = Rng(7);
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let (rows, cols, n) = (2048usize, 2048usize, 512usize);
    let x = activations(&mut rng, n * cols, Mode::Random);
    for (k, narrow, types) in tables() {
        for (t, _, _) in types {
            let w = weights(&mut rng, t, rows * cols, Mode::Random);
            let p = repack::pack(t, &w, rows, cols).unwrap();
            let q = QTensor { packed: Some(&p), ..QTensor::new(t, &w, rows, cols) };
            let mut out = vec![0f32; n * rows];
            // the best of 5 runs in this thread's CPU time (the pool of 1 runs on the caller), so
            // time other processes take the CPU is not counted
            let mut time = |table: &Kernels| {
                matmul_with(table, &pool, &q, &x, n, &mut out, &mut scratch).unwrap();
                (0..5)
                    .map(|_| {
                        let t0 = cpu_time();
                        matmul_with(table, &pool, &q, &x, n, &mut out, &mut scratch).unwrap();
                        cpu_time() - t0
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let (tn, tw) = (time(&narrow), time(&k));
            let gflop = 2.0 * (rows * cols * n) as f64 / 1e9;
            eprintln!(
            "{:?} {t}: narrow {:.1} ms ({:.0} GOP/s), wide {:.1} ms ({:.0} GOP/s): {:.2}x (max_t {MAX_T} vs {MAX_WIDE_T})",
            k.isa,
            tn * 1e3,
            gflop / tn,
            tw * 1e3,
            gflop / tw,
            tn / tw
        );
        }
    }
}
