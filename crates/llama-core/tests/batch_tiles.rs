//! The multi-token tiles of the types without R16 kernels (grid i-quants, TQ1_0/TQ2_0, MXFP4:
//! kernels/x86/iq_batch.rs, tq_batch.rs, mxfp4_batch.rs) against the table's own `vec_dot` per
//! (row, token) pair, bit for bit: the tiles decode each weight block once for several tokens but
//! keep every pair's operations and order, and llama.cpp computes every pair with its vec_dot.
//!
//! The grid i-quants have two orders (`types::BatchDot`): llama.cpp's `vec_dot` below 8 tokens and
//! its tiled GEMM's from 8 on; each has its tiles, each checked against its own dot.
//!
//! - `batch_tiles_match_pairwise_dots`: random and extreme blocks, odd row counts, token counts
//!   that are not multiples of the tile, rows of several blocks (MXFP4: odd block counts too),
//!   quantized and raw Q8_K activations (raw: −128 quants and arbitrary `bsums`).
//! - `batch_gemm_matches_batch_dot`: the grid i-quants' batch GEMMs (`BatchDot::gemm`, each weight
//!   block decoded once per call) against the batch dot per pair, bit for bit: every band height
//!   1..=16, token counts around the register block (1..=9, 17, 33, 70), random / extreme / zero
//!   blocks, quantized and raw activations (raw: −128 quants; `bsums` recomputed from the quants, as
//!   the Q8_K converter makes them: the GEMM takes Σq from them, as llama.cpp's VNNI kernel does).
//! - `batch_gemm_matches_batch_dot_at_extreme_sums`: the same at the largest lane sums the weights
//!   allow (activations ±127/−128 with each weight's sign; IQ1_M rows of ±9 at scale 15, the bound
//!   its i16 scale step relies on).
//! - `matmul_with_tiles_equals_without`, `matmul_id_with_tiles_equals_without`: the table vs the same
//!   table without tiles.
//! - `model_logits_with_tiles_equal_without`: synth-tiny with every matrix made of random blocks of
//!   each type, a 13-token and a 5-token prompt as one batch each, logits with the tiles vs
//!   `LLAMA_TILES=0` (two child runs).
//! - `tile_speed_ab` (ignored, timing only): one thread, 2048×2048, 64 tokens, tiles vs per pair.

use half::f16;
use llama_core::kernels::{
    matmul_with, vec_dot_type, Kernels, MatShape, MatmulScratch, QTensor, ThreadPool, GEMM_ROWS, TILE, TILE_T,
};
use llama_core::quant::GgmlType;

mod testdata;

/// A product whose batch rules all apply (64 tokens, 64 rows of 4096).
const WIDE: MatShape = MatShape { n_tokens: 64, rows: 64, cols: 4096, id: false };

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
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The types whose prompt batches run through the new tiles.
const TYPES: [GgmlType; 10] = {
    use GgmlType::*;
    [IQ3_S, IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, MXFP4, TQ2_0, TQ1_0, IQ1_S, IQ1_M]
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Random,
    /// Every quant bit set, huge scales.
    Extreme,
    /// Zero scales.
    Zero,
}

/// `nb` random blocks of `t` with sane scales (`Mode`): random bytes, the scale fields overwritten.
fn weight_blocks(rng: &mut Rng, t: GgmlType, nb: usize, mode: Mode) -> Vec<u8> {
    use GgmlType::*;
    let ts = t.type_size();
    let mut b = if mode == Mode::Extreme { vec![0xFFu8; nb * ts] } else { rng.bytes(nb * ts) };
    for blk in b.chunks_exact_mut(ts) {
        let v = match mode {
            Mode::Random => rng.f32() * 0.05,
            Mode::Extreme => 30000.0,
            Mode::Zero => 0.0,
        };
        let d = f16::from_f32(v);
        match t {
            MXFP4 => {
                // the E8M0 exponent byte: 2^-16 .. 2^-2 (Extreme 2^126, Zero 2^-128)
                blk[0] = match mode {
                    Mode::Random => 112 + (rng.next() % 15) as u8,
                    Mode::Extreme => 254,
                    Mode::Zero => 0,
                }
            }
            IQ1_M => {
                // the f16 scale is the top nibbles of the 4 u16s at bytes 48..56
                for k in 0..4 {
                    let o = 48 + 2 * k;
                    let sc = u16::from_le_bytes([blk[o], blk[o + 1]]) & 0x0FFF | ((d.to_bits() >> (4 * k)) & 0xF) << 12;
                    blk[o..o + 2].copy_from_slice(&sc.to_le_bytes());
                }
            }
            TQ1_0 => blk[52..54].copy_from_slice(&d.to_le_bytes()),
            TQ2_0 => blk[64..66].copy_from_slice(&d.to_le_bytes()),
            _ => blk[0..2].copy_from_slice(&d.to_le_bytes()),
        }
    }
    b
}

/// `n_rows` activation rows of `n` elements in the type's `vec_dot_type`: quantized by the table's
/// converter, or (`raw`, Q8_K only) random bytes with a sane scale, a −128 in every block and
/// `bsums` that need not be the quants' sums.
fn activation_rows(rng: &mut Rng, k: &Kernels, t: GgmlType, n: usize, n_rows: usize, mode: Mode, raw: bool) -> Vec<u8> {
    let act = vec_dot_type(t).unwrap();
    let a_row = act.row_size(n as u64).unwrap() as usize;
    if raw && act == GgmlType::Q8_K {
        let mut a = rng.bytes(n_rows * a_row);
        for blk in a.chunks_exact_mut(292) {
            blk[..4].copy_from_slice(&(rng.f32() * 0.02).to_le_bytes());
            blk[4] = 0x80;
        }
        return a;
    }
    let mut a = vec![0u8; n_rows * a_row];
    for r in 0..n_rows {
        let x: Vec<f32> = match mode {
            Mode::Extreme => (0..n).map(|i| if i % 7 == 0 { -1e4 } else { 1e4 * rng.f32() }).collect(),
            _ => (0..n).map(|_| rng.f32() * 3.0).collect(),
        };
        (k.from_float(act).unwrap())(&x, &mut a[r * a_row..(r + 1) * a_row]);
    }
    a
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
#[allow(clippy::needless_range_loop)] // i, j index the tile and name the pair
fn batch_tiles_match_pairwise_dots() {
    let mut rng = Rng(0x7117_5eed);
    let (n_rows, n_tok) = (7usize, 11usize);
    let mut checked = 0usize;
    for k in Kernels::available() {
        for t in TYPES {
            // the vec_dot-order tiles, and the batch order's tiles (grid i-quants) against its dot
            let mut kinds = vec![("vec_dot", k.tile(t), k.vec_dot(t))];
            if let Some(b) = k.traits(t).and_then(|r| r.batch_dot) {
                kinds.push(("batch dot", b.tile, b.dot));
            }
            for (what, tile, dot) in kinds {
                let (Some(tile), Some(dot)) = (tile, dot) else { continue };
                let ns: &[usize] = if t.block_size() == 256 { &[256, 768, 256 * 7] } else { &[32, 96, 288, 1024 + 32] };
                for &n in ns {
                    for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                        for raw in [false, true] {
                            if raw && vec_dot_type(t) != Some(GgmlType::Q8_K) {
                                continue;
                            }
                            let w_row = t.row_size(n as u64).unwrap() as usize;
                            let w = weight_blocks(&mut rng, t, n_rows * n / t.block_size(), mode);
                            let a = activation_rows(&mut rng, &k, t, n, n_tok, mode, raw);
                            let a_row = a.len() / n_tok;
                            let want = |r: usize, j: usize| {
                                dot(n, &w[r * w_row..(r + 1) * w_row], &a[j * a_row..(j + 1) * a_row])
                            };
                            // as matmul calls them (TILE × TILE_T steps, ragged edges), then every shape
                            let mut calls: Vec<(usize, usize, usize, usize)> = Vec::new();
                            for r0 in (0..n_rows).step_by(TILE) {
                                for t0 in (0..n_tok).step_by(TILE_T) {
                                    calls.push((r0, t0, TILE.min(n_rows - r0), TILE_T.min(n_tok - t0)));
                                }
                            }
                            for nr in 1..=TILE {
                                for nt in 1..=TILE_T {
                                    calls.push((1, 1, nr, nt));
                                }
                            }
                            for (r0, t0, nr, nt) in calls {
                                let res = tile(n, &w[r0 * w_row..], w_row, nr, &a[t0 * a_row..], a_row, nt);
                                for i in 0..nr {
                                    for j in 0..nt {
                                        let (got, want) = (res[i][j], want(r0 + i, t0 + j));
                                        assert!(
                                        same(got, want),
                                        "{:?} {t} n={n} {mode:?} raw={raw} tile {nr}x{nt} at ({r0},{t0}) [{i}][{j}]: {got:e} vs {what} {want:e}",
                                        k.isa
                                    );
                                        checked += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("batch tiles: {checked} results bit-identical to their dots");
}

#[test]
fn batch_gemm_matches_batch_dot() {
    let mut rng = Rng(0x6e33);
    let (n_rows, n_tok) = (19usize, 70usize);
    let mut checked = 0usize;
    for k in Kernels::available() {
        for t in TYPES {
            let Some((Some(gemm), Some(dot))) = k.traits(t).and_then(|r| r.batch_dot).map(|b| (b.gemm, b.dot)) else {
                continue;
            };
            for n in [256usize, 768, 256 * 7] {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    for raw in [false, true] {
                        let w_row = t.row_size(n as u64).unwrap() as usize;
                        let w = weight_blocks(&mut rng, t, n_rows * n / t.block_size(), mode);
                        let mut a = activation_rows(&mut rng, &k, t, n, n_tok, mode, raw);
                        let a_row = a.len() / n_tok;
                        if raw {
                            // consistent bsums (the Q8_K converter always makes them so)
                            for blk in a.chunks_exact_mut(292) {
                                for s in 0..16 {
                                    let sum: i16 =
                                        blk[4 + 16 * s..4 + 16 * (s + 1)].iter().map(|&q| q as i8 as i16).sum();
                                    blk[260 + 2 * s..262 + 2 * s].copy_from_slice(&sum.to_le_bytes());
                                }
                            }
                        }
                        let want =
                            |r: usize, j: usize| dot(n, &w[r * w_row..(r + 1) * w_row], &a[j * a_row..(j + 1) * a_row]);
                        let mut calls: Vec<(usize, usize, usize, usize)> =
                            vec![(0, 0, GEMM_ROWS, n_tok), (GEMM_ROWS, 0, n_rows - GEMM_ROWS, n_tok)];
                        for nr in 1..=GEMM_ROWS {
                            for nt in (1..=9).chain([17, 33]) {
                                calls.push((n_rows - nr, n_tok - nt, nr, nt));
                            }
                        }
                        let mut out = vec![f32::NAN; n_tok * GEMM_ROWS];
                        for (r0, t0, nr, nt) in calls {
                            gemm(n, &w[r0 * w_row..], w_row, nr, &a[t0 * a_row..], a_row, nt, &mut out);
                            for i in 0..nr {
                                for j in 0..nt {
                                    let (got, want) = (out[j * GEMM_ROWS + i], want(r0 + i, t0 + j));
                                    assert!(
                                        same(got, want),
                                        "{:?} {t} n={n} {mode:?} raw={raw} gemm {nr}x{nt} at ({r0},{t0}) [{i}][{j}]: {got:e} vs batch dot {want:e}",
                                        k.isa
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("batch gemms: {checked} results bit-identical to the batch dot");
}

/// Q8_K blocks (292 bytes: f32 d, 256 quants, 16 i16 bsums) of one row whose quants have the sign
/// of `w` (+127 / −128 per element, 0 where w is 0; `flip` negates), so Σ w·q is as large as the
/// row's weights allow: the extreme lane sums of the GEMM's integer steps.
fn sign_matched_q8k(w: &[f32], flip: bool, d: f32) -> Vec<u8> {
    let mut a = vec![0u8; w.len() / 256 * 292];
    for (blk, wb) in a.chunks_exact_mut(292).zip(w.chunks_exact(256)) {
        blk[..4].copy_from_slice(&d.to_le_bytes());
        for (i, &x) in wb.iter().enumerate() {
            let pos = (x > 0.0) != flip;
            blk[4 + i] = if x == 0.0 {
                0
            } else if pos {
                127
            } else {
                0x80
            };
        }
        for s in 0..16 {
            let sum: i16 = blk[4 + 16 * s..4 + 16 * (s + 1)].iter().map(|&q| q as i8 as i16).sum();
            blk[260 + 2 * s..262 + 2 * s].copy_from_slice(&sum.to_le_bytes());
        }
    }
    a
}

/// The batch GEMMs at the largest integer sums their weights allow: every activation quant ±127/−128
/// with the sign of its weight (and the opposite), so each sub-block's Σ w·q is at its extreme
/// (IQ1_M: the GEMM multiplies those by the scale as i16 pairs, `vpdpwssd`, valid while
/// |Σ| ≤ 16·9·128 = 18432: here every weight is ±9 with the largest scale, reaching it exactly).
/// Bit-identical to the batch dot per pair, as `batch_gemm_matches_batch_dot`.
#[test]
fn batch_gemm_matches_batch_dot_at_extreme_sums() {
    let mut rng = Rng(0xe27e);
    let n = 512usize;
    let mut checked = 0usize;
    for k in Kernels::available() {
        for t in TYPES {
            let Some(b) = k.traits(t).and_then(|r| r.batch_dot) else { continue };
            let (Some(gemm), Some(dot)) = (b.gemm, b.dot) else { continue };
            let to_float = k.traits(t).and_then(|r| r.to_float).expect("grid type dequantizes");
            let (w_row, nr) = (t.row_size(n as u64).unwrap() as usize, GEMM_ROWS);
            // rows: random blocks, every quant bit set, and (IQ1_M) all weights +9 / −9 with scale 15
            let mut w = weight_blocks(&mut rng, t, nr / 2 * n / 256, Mode::Random);
            w.extend(weight_blocks(&mut rng, t, nr / 4 * n / 256, Mode::Extreme));
            let mut last = weight_blocks(&mut rng, t, nr / 4 * n / 256, Mode::Random);
            if t == GgmlType::IQ1_M {
                for (i, blk) in last.chunks_exact_mut(t.type_size()).enumerate() {
                    // qs 0xFF with qh 0x77: grid 2047 (all +1), delta +1: w = 9; qs 0, qh 0x88:
                    // grid 0 (all −1), delta −1: w = −9. Scales: every 3-bit field 7 (ls = 15).
                    let (qs, qh) = if i % 2 == 0 { (0xFF, 0x77) } else { (0x00, 0x88) };
                    blk[..32].fill(qs);
                    blk[32..48].fill(qh);
                    for o in [48, 50, 52, 54] {
                        let sc = u16::from_le_bytes([blk[o], blk[o + 1]]) | 0x0FFF;
                        blk[o..o + 2].copy_from_slice(&sc.to_le_bytes());
                    }
                }
            }
            w.extend(last);
            // activations: per weight row, its sign-matched row and the opposite one
            let mut a = Vec::new();
            let mut wf = vec![0f32; n];
            for r in 0..nr {
                to_float(&w[r * w_row..(r + 1) * w_row], &mut wf);
                if t == GgmlType::IQ1_M && r >= nr - nr / 4 {
                    for blk in wf.chunks_exact(256) {
                        let d = blk.iter().fold(0f32, |m, x| m.max(x.abs()));
                        assert!(blk.iter().all(|x| x.abs() == d), "{t}: crafted blocks are ±9·scale");
                    }
                }
                for flip in [false, true] {
                    a.extend(sign_matched_q8k(&wf, flip, 0.5 + rng.f32().abs()));
                }
            }
            let (a_row, n_tok) = (n / 256 * 292, 2 * nr);
            let mut out = vec![f32::NAN; n_tok * GEMM_ROWS];
            gemm(n, &w, w_row, nr, &a, a_row, n_tok, &mut out);
            for i in 0..nr {
                for j in 0..n_tok {
                    let want = dot(n, &w[i * w_row..(i + 1) * w_row], &a[j * a_row..(j + 1) * a_row]);
                    let got = out[j * GEMM_ROWS + i];
                    assert!(same(got, want), "{:?} {t} extreme sums [{i}][{j}]: {got:e} vs batch dot {want:e}", k.isa);
                    checked += 1;
                }
            }
        }
    }
    eprintln!("batch gemms at extreme sums: {checked} results bit-identical to the batch dot");
}

#[test]
fn matmul_with_tiles_equals_without() {
    let mut rng = Rng(0xba7c4);
    let pools: Vec<ThreadPool> = [1, 2].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    for k in Kernels::available() {
        let plain = k.without_tiles();
        for t in TYPES {
            if k.tile(t).is_none() && k.row_tile(t, WIDE).is_none() {
                continue;
            }
            let cols = if t.block_size() == 256 { 768 } else { 288 };
            let rows = 37;
            let w = weight_blocks(&mut rng, t, rows * cols / t.block_size(), Mode::Random);
            let q = QTensor::new(t, &w, rows, cols);
            for n_tokens in [2usize, 5, 9, 35] {
                let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32() * 3.0).collect();
                for pool in &pools {
                    let mut got = vec![f32::NAN; n_tokens * rows];
                    let mut want = vec![0f32; n_tokens * rows];
                    matmul_with(&k, pool, &q, &x, n_tokens, &mut got, &mut scratch).unwrap();
                    matmul_with(&plain, pool, &q, &x, n_tokens, &mut want, &mut scratch).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{:?} {t} n_tokens={n_tokens} threads={}",
                        k.isa,
                        pool.n_threads()
                    );
                }
            }
        }
    }
}

/// `matmul_id` (experts routed 9 and 3 rows: the grid i-quants' batch order and `vec_dot` order)
/// with the tiles equals it without them.
#[test]
fn matmul_id_with_tiles_equals_without() {
    use llama_core::kernels::{matmul_id, IdRoutes};
    let mut rng = Rng(0x1d);
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::new();
    for k in Kernels::available() {
        let plain = k.without_tiles();
        for t in TYPES {
            let cols = if t.block_size() == 256 { 512 } else { 96 };
            let (rows, n_src) = (21usize, 12usize);
            let ws: Vec<Vec<u8>> =
                (0..2).map(|_| weight_blocks(&mut rng, t, rows * cols / t.block_size(), Mode::Random)).collect();
            let x: Vec<f32> = (0..n_src * cols).map(|_| rng.f32() * 3.0).collect();
            let first = [0usize, 9, 12];
            let src: Vec<u32> = (3..12).chain(0..3).collect();
            let dst: Vec<u32> = (0..12).rev().collect();
            let qt = |_: usize, g: usize| QTensor::new(t, &ws[g], rows, cols);
            let routes = IdRoutes { first: &first, src: &src, dst: &dst };
            let (mut got, mut want) = (vec![f32::NAN; n_src * rows], vec![0f32; n_src * rows]);
            matmul_id(&k, &pool, 1, qt, routes, &x, &mut [&mut got], &mut scratch).unwrap();
            matmul_id(&plain, &pool, 1, qt, routes, &x, &mut [&mut want], &mut scratch).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{:?} {t}", k.isa);
        }
    }
}

/// synth-tiny with every 2-D tensor whose rows are whole blocks of `t` replaced by random blocks
/// of `t` (`weight_blocks`' sane scales).
fn random_model(src: &std::path::Path, out: &std::path::Path, t: GgmlType, seed: u64) {
    use llama_core::gguf::{GgufFile, GgufWriter, TensorSource};
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new(out);
    for (key, v) in f.metadata() {
        w.add(key.clone(), v.clone());
    }
    let mut rng = Rng(seed);
    for ti in f.tensors() {
        if ti.dims.len() == 2 && ti.dims[0] % t.block_size() as u64 == 0 {
            let nb = (ti.dims[0] * ti.dims[1]) as usize / t.block_size();
            let b = weight_blocks(&mut rng, t, nb, Mode::Random);
            w.add_tensor(ti.name.clone(), &ti.dims, t, TensorSource::Owned(b)).unwrap();
        } else {
            w.add_tensor(ti.name.clone(), &ti.dims, ti.ggml_type, TensorSource::Bytes(f.tensor_data(ti))).unwrap();
        }
    }
    w.write(None).unwrap();
}

const PROMPT: [u32; 13] = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 1058, 338, 263];

/// Child of `model_logits_with_tiles_equal_without`: evaluates PROMPT on `$BATCH_TILES_MODEL` as
/// one batch and writes every row's logits to `$BATCH_TILES_OUT` (f32 LE).
#[test]
#[ignore = "run by model_logits_with_tiles_equal_without in a child process"]
fn model_logits_child() {
    use llama_core::model::{Context, ContextParams, Model, ModelParams};
    let (Some(model), Some(out)) = (std::env::var_os("BATCH_TILES_MODEL"), std::env::var_os("BATCH_TILES_OUT")) else {
        return;
    };
    let m = Model::load(model, &ModelParams::default()).unwrap();
    // the whole prompt (grid i-quants: llama.cpp's batch order from 8 tokens), then its first 5
    // tokens alone (the vec_dot order)
    let mut bytes: Vec<u8> = Vec::new();
    for toks in [&PROMPT[..], &PROMPT[..5]] {
        let p = ContextParams { n_ctx: 64, n_batch: 64, n_threads: 2, logits_all: true, ..ContextParams::default() };
        let mut ctx = Context::new(&m, p).unwrap();
        ctx.eval(&m, toks, 0).unwrap();
        bytes.extend(ctx.logits().iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn model_logits_with_tiles_equal_without() {
    let src = testdata::models_dir().join("synth-tiny-q4_0.gguf");
    if !src.exists() {
        eprintln!("SKIP: {} not found", src.display());
        return;
    }
    if Kernels::available().iter().all(|k| TYPES.iter().all(|&t| k.tile(t).is_none() && k.row_tile(t, WIDE).is_none()))
    {
        eprintln!("SKIP: no table of this machine has tiles for these types");
        return;
    }
    let dir = std::env::temp_dir().join(format!("llama-batch-tiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    for (i, t) in TYPES.into_iter().enumerate() {
        let model = dir.join(format!("{t}.gguf"));
        random_model(&src, &model, t, 1000 + i as u64);
        let run = |tiles: bool| {
            let out = dir.join(format!("{t}.{tiles}.f32"));
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["--exact", "model_logits_child", "--ignored", "--test-threads=1"])
                .env("BATCH_TILES_MODEL", &model)
                .env("BATCH_TILES_OUT", &out)
                .env("LLAMA_TILES", if tiles { "1" } else { "0" });
            let st = cmd.output().unwrap();
            assert!(st.status.success(), "{t} child failed: {}", String::from_utf8_lossy(&st.stderr));
            let b = std::fs::read(&out).unwrap();
            b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<u32>>()
        };
        let (with, without) = (run(true), run(false));
        assert_eq!(with.len(), (PROMPT.len() + 5) * 32000, "{t}: logits");
        let finite = with.iter().filter(|&&b| f32::from_bits(b).is_finite()).count();
        assert!(finite == with.len(), "{t}: {} non-finite logits", with.len() - finite);
        let diff = with.iter().zip(&without).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{t}: {diff} of {} logits differ with tiles vs LLAMA_TILES=0", with.len());
        eprintln!("{t}: {} logits of a 13- and a 5-token batch bit-identical with and without tiles", with.len());
        std::fs::remove_file(&model).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Rough A/B timing (not a benchmark: the machine is shared): one thread, a 2048×2048 matrix,
/// 64 tokens, each x86 table with its tiles vs without; prints the ratio per type.
/// `cargo test --release -p llama-core --test batch_tiles tile_speed_ab -- --ignored --nocapture`
#[test]
#[ignore = "timing only"]
fn tile_speed_ab() {
    for k in Kernels::available() {
        if TYPES.iter().any(|&t| k.tile(t).is_some()) {
            time_tables(&k);
        }
    }
}

fn time_tables(k: &Kernels) {
    let plain = k.without_tiles();
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let mut rng = Rng(5);
    let (rows, cols, n_tokens) = (2048usize, 2048usize, 64usize);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32() * 3.0).collect();
    for t in TYPES {
        let w = weight_blocks(&mut rng, t, rows * cols / t.block_size(), Mode::Random);
        let qt = QTensor::new(t, &w, rows, cols);
        let mut out = vec![0f32; n_tokens * rows];
        let mut time = |kk: &Kernels, n_tok: usize| {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t0 = std::time::Instant::now();
                matmul_with(kk, &pool, &qt, &x, n_tok, &mut out, &mut scratch).unwrap();
                best = best.min(t0.elapsed().as_secs_f64());
            }
            best
        };
        let (tiles, pairs) = (time(k, n_tokens), time(&plain, n_tokens));
        let (one_new, one_old) = (time(k, 1), time(&plain, 1));
        eprintln!(
            "{:?} {t:8}: 64 tokens: tiles {:7.1} ms, per pair {:7.1} ms, ratio {:.2}x | 1 token: {:.3} ms vs {:.3} ms",
            k.isa,
            tiles * 1e3,
            pairs * 1e3,
            pairs / tiles,
            one_new * 1e3,
            one_old * 1e3
        );
    }
}

/// Rough A/B timing (not a benchmark: the machine is shared): one thread, a 2048×2048 matrix,
/// 512 tokens, the grid i-quants' batch GEMMs vs the same table's batch-order tiles (the table
/// with `BatchDot::gemm` removed); prints the ratio per type.
/// `cargo test --release -p llama-core --test batch_tiles gemm_speed_ab -- --ignored --nocapture`
#[test]
#[ignore = "timing only"]
fn gemm_speed_ab() {
    use llama_core::quant::GgmlType::*;
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let mut rng = Rng(7);
    let (rows, cols, n_tokens) = (2048usize, 2048usize, 512usize);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32() * 3.0).collect();
    for k in Kernels::available() {
        let mut old = k;
        let mut any = false;
        for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M] {
            if let Some(b) = old.types[t as usize].as_mut().and_then(|r| r.batch_dot.as_mut()) {
                any |= b.gemm.take().is_some();
            }
        }
        if !any {
            continue;
        }
        for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M] {
            let w = weight_blocks(&mut rng, t, rows * cols / t.block_size(), Mode::Random);
            let qt = QTensor::new(t, &w, rows, cols);
            let mut out = vec![0f32; n_tokens * rows];
            let mut time = |kk: &Kernels| {
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t0 = std::time::Instant::now();
                    matmul_with(kk, &pool, &qt, &x, n_tokens, &mut out, &mut scratch).unwrap();
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                best
            };
            let (new, tiles) = (time(&k), time(&old));
            let gmacs = |s: f64| (rows * cols * n_tokens) as f64 / s / 1e9;
            eprintln!(
                "{:?} {t:8}: 512 tokens: gemm {:7.1} ms ({:5.1} GMAC/s), tiles {:7.1} ms, ratio {:.2}x",
                k.isa,
                new * 1e3,
                gmacs(new),
                tiles * 1e3,
                tiles / new
            );
        }
    }
}

/// Rough single-token timing (not a benchmark: the machine is shared): one thread, a 2048×2048
/// matrix, one token (the `vec_dot` order), best of 20 per type.
/// `cargo test --release -p llama-core --test batch_tiles dot_speed -- --ignored --nocapture`
#[test]
#[ignore = "timing only"]
fn dot_speed() {
    use llama_core::quant::GgmlType::*;
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let mut rng = Rng(9);
    let (rows, cols) = (2048usize, 2048usize);
    let x: Vec<f32> = (0..cols).map(|_| rng.f32() * 3.0).collect();
    let k = *llama_core::kernels::kernels();
    for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M] {
        let w = weight_blocks(&mut rng, t, rows * cols / t.block_size(), Mode::Random);
        let qt = QTensor::new(t, &w, rows, cols);
        let mut out = vec![0f32; rows];
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t0 = std::time::Instant::now();
            for _ in 0..10 {
                matmul_with(&k, &pool, &qt, &x, 1, &mut out, &mut scratch).unwrap();
            }
            best = best.min(t0.elapsed().as_secs_f64() / 10.0);
        }
        eprintln!("{:?} {t:8}: 1 token: {:.3} ms ({:.2} GMAC/s)", k.isa, best * 1e3, (rows * cols) as f64 / best / 1e9);
    }
}
