//! Every kernel table this machine can run (AVX2, AVX-512, NEON …) against the scalar reference on
//! random and extreme inputs, and `matmul` against a naive per-row loop for several token and thread
//! counts.

use half::{bf16, f16};
use llama_core::kernels::{
    matmul_id, matmul_with, matvec_many, vec_dot_type, IdRoutes, Kernels, MatShape, MatmulScratch, QTensor, ThreadPool,
};
use llama_core::quant::GgmlType;

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

/// Byte offsets of the f16 scale fields inside one block, so random bytes can be given sane scales.
fn scale_offsets(t: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match t {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        TQ1_0 => &[52],
        TQ2_0 => &[64],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S => &[0],
        _ => &[],
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Random,
    /// Largest quant magnitudes (all bits set / -128), huge f16 scales.
    Extreme,
    /// Zero scales.
    Zero,
}

/// One random weight row of `n` elements of type `t`.
fn weight_row(rng: &mut Rng, t: GgmlType, n: usize, mode: Mode) -> Vec<u8> {
    let (bs, ts) = t.block_layout();
    match t {
        GgmlType::F16 => (0..n)
            .flat_map(|_| {
                let v = match mode {
                    Mode::Random => rng.f32() * 4.0,
                    Mode::Extreme => 60000.0 * rng.f32().signum(),
                    Mode::Zero => 0.0,
                };
                f16::from_f32(v).to_le_bytes()
            })
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| {
                let v = match mode {
                    Mode::Random => rng.f32() * 4.0,
                    Mode::Extreme => 1e30 * rng.f32(),
                    Mode::Zero => 0.0,
                };
                bf16::from_f32(v).to_le_bytes()
            })
            .collect(),
        GgmlType::F32 => (0..n).flat_map(|_| (rng.f32() * 4.0).to_le_bytes()).collect(),
        _ => {
            let nb = n / bs;
            let mut b = if mode == Mode::Extreme { vec![0xFFu8; nb * ts] } else { rng.bytes(nb * ts) };
            if mode == Mode::Extreme && t == GgmlType::Q8_0 {
                for blk in b.chunks_exact_mut(ts) {
                    blk[2..].fill(0x80); // -128, beyond what the quantizer emits
                }
            }
            if t == GgmlType::MXFP4 {
                // the E8M0 exponent byte: scales 2^-16 .. 2^-2 (Extreme: 2^126, Zero: 2^-128)
                for blk in b.chunks_exact_mut(ts) {
                    blk[0] = match mode {
                        Mode::Random => 112 + (rng.next() % 15) as u8,
                        Mode::Extreme => 254,
                        Mode::Zero => 0,
                    };
                }
            }
            if t == GgmlType::IQ1_M {
                // the f16 scale is the top nibbles of the 4 u16s at bytes 48..56
                for blk in b.chunks_exact_mut(ts) {
                    let v = match mode {
                        Mode::Random => rng.f32() * 0.05,
                        Mode::Extreme => 30000.0,
                        Mode::Zero => 0.0,
                    };
                    let d = f16::from_f32(v).to_bits();
                    for k in 0..4 {
                        let o = 48 + 2 * k;
                        let sc = u16::from_le_bytes([blk[o], blk[o + 1]]) & 0x0FFF | ((d >> (4 * k)) & 0xF) << 12;
                        blk[o..o + 2].copy_from_slice(&sc.to_le_bytes());
                    }
                }
            }
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
    }
}

fn activations(rng: &mut Rng, n: usize, mode: Mode) -> Vec<f32> {
    match mode {
        Mode::Random => (0..n).map(|_| rng.f32() * 3.0).collect(),
        Mode::Extreme => (0..n).map(|i| if i % 7 == 0 { -1e4 } else { 1e4 * rng.f32() }).collect(),
        Mode::Zero => vec![0.0; n],
    }
}

const WEIGHT_TYPES: [GgmlType; 25] = {
    use GgmlType::*;
    [
        Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, IQ2_XXS,
        IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, F16, BF16, F32,
    ]
};

/// The grid i-quants: weight types we read but do not make.
const GRID_IQ: [GgmlType; 7] = {
    use GgmlType::*;
    [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M]
};

fn sizes(t: GgmlType) -> Vec<usize> {
    if t.block_size() == 256 {
        vec![256, 512, 256 * 5, 4096]
    } else {
        vec![32, 64, 96, 256 + 32, 256 * 3 + 96, 4096 + 32]
    }
}

#[test]
fn activation_converters_match_scalar_exactly() {
    let mut rng = Rng(0x1234_5678);
    let scalar = Kernels::SCALAR;
    for k in Kernels::available() {
        for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for n in [256usize, 512, 4096 + 256] {
                    let x = activations(&mut rng, n, mode);
                    let len = act.row_size(n as u64).unwrap() as usize;
                    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                    (scalar.from_float(act).unwrap())(&x, &mut a);
                    (k.from_float(act).unwrap())(&x, &mut b);
                    assert!(a == b, "{:?} {} n={n}: converter differs from scalar", k.isa, act.name());
                }
            }
        }
    }
}

#[test]
fn dot_kernels_match_scalar() {
    let mut rng = Rng(0xfeed_beef);
    let scalar = Kernels::SCALAR;
    for k in Kernels::available() {
        for t in WEIGHT_TYPES {
            let act = vec_dot_type(t).unwrap();
            for n in sizes(t) {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    let mut pairs = Vec::new();
                    for _ in 0..24 {
                        let w = weight_row(&mut rng, t, n, mode);
                        let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                        let mut a = vec![0u8; act.row_size(n as u64).unwrap() as usize];
                        (scalar.from_float(act).unwrap())(&x, &mut a);
                        let r = (scalar.vec_dot(t).unwrap())(n, &w, &a);
                        let s = (k.vec_dot(t).unwrap())(n, &w, &a);
                        pairs.push((r, s));
                    }
                    // Integer parts are exact; only the order of float block sums differs, so the
                    // error is relative to the typical magnitude of the result.
                    let typical = pairs.iter().map(|p| p.0.abs() as f64).sum::<f64>() / pairs.len() as f64;
                    for (r, s) in pairs {
                        assert!(r.is_finite() == s.is_finite(), "{:?} {} n={n}: {r} vs {s}", k.isa, t.name());
                        if !r.is_finite() {
                            continue;
                        }
                        let tol = 1e-5 * typical.max(r.abs() as f64) + 1e-30;
                        assert!(
                            ((r - s) as f64).abs() <= tol,
                            "{:?} {} n={n} {:?}: scalar {r} simd {s}",
                            k.isa,
                            t.name(),
                            mode as u8
                        );
                    }
                }
            }
        }
    }
}

/// NEON: the K-quant dots keep the scalar reference's per-block float formula, so they equal it
/// bit for bit (integer parts exact, the same float steps in the same order).
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_k_quant_dots_equal_scalar_bit_for_bit() {
    use GgmlType::*;
    let mut rng = Rng(0x5eed_0a64);
    let mut checked = 0;
    for k in Kernels::available().into_iter().filter(|k| k.isa == llama_core::kernels::Isa::Neon) {
        for t in [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for n in [256usize, 512, 4096 + 256] {
                    let w = weight_row(&mut rng, t, n, mode);
                    let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                    let mut a = vec![0u8; Q8_K.row_size(n as u64).unwrap() as usize];
                    (Kernels::SCALAR.from_float(Q8_K).unwrap())(&x, &mut a);
                    let want = (Kernels::SCALAR.vec_dot(t).unwrap())(n, &w, &a);
                    let got = (k.vec_dot(t).unwrap())(n, &w, &a);
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "{} {mode:?} n={n}: neon {got} vs scalar {want}",
                        t.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("neon K-quant dots: {checked} bit-identical to scalar");
}

/// The x86 tables' MXFP4 dot sums in llama.cpp's AVX2 order (`ggml_x86::mxfp4_lanes`) bit for
/// bit, on even and odd block counts (quant_ggml.rs checks that order against llama.cpp itself).
#[test]
fn mxfp4_x86_dot_follows_llama_cpp_order() {
    let mut rng = Rng(0x3fb8_aa3b);
    let t = GgmlType::MXFP4;
    let mut checked = 0;
    for k in Kernels::available() {
        if !matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512) {
            continue;
        }
        for n in [32usize, 64, 96, 256 + 32, 4096 + 32] {
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                let w = weight_row(&mut rng, t, n, mode);
                let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                let mut a = vec![0u8; n / 32 * 34];
                (k.from_float(GgmlType::Q8_0).unwrap())(&x, &mut a);
                let got = (k.vec_dot(t).unwrap())(n, &w, &a);
                let want = llama_core::kernels::ggml_x86::mxfp4_lanes(n, &w, &a);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{:?} n={n}: {got} vs {want}",
                    k.isa
                );
                checked += 1;
            }
        }
    }
    eprintln!("mxfp4: {checked} x86 dots in llama.cpp's order");
}

/// The grid i-quant dots of every table equal their reference bit for bit: the x86 tables
/// llama.cpp's x86 order (`ggml_x86::grid_iq_lanes`, which quant_ggml.rs checks against llama.cpp),
/// the others the typed scalar reference; the x86 batch-order dots (`types::BatchDot`) equal
/// `ggml_x86::grid_iq_tiled`. On random weight bytes and on random Q8_K bytes too: any quant byte
/// including −128 (which the quantizer never emits) and `bsums` that need not be the sums of the
/// quants (except for the batch order, see there).
#[test]
fn grid_iq_dots_are_bit_identical_to_their_reference() {
    let mut rng = Rng(0x1a2b_3c4d);
    let mut checked = 0;
    for k in Kernels::available() {
        for t in GRID_IQ {
            for n in [256usize, 512, 256 * 7] {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    for raw_act in [false, true] {
                        let w = weight_row(&mut rng, t, n, mode);
                        let a = if raw_act {
                            let mut a = rng.bytes(n / 256 * 292);
                            for blk in a.chunks_exact_mut(292) {
                                blk[..4].copy_from_slice(&(rng.f32() * 0.02).to_le_bytes());
                                blk[4] = 0x80; // one −128
                            }
                            a
                        } else {
                            let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                            q::quantize(GgmlType::Q8_K, &x).unwrap()
                        };
                        let x86 = matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512);
                        let want = if x86 {
                            llama_core::kernels::ggml_x86::grid_iq_lanes(t, n, &w, &a)
                        } else {
                            reference_dot(t, n, &w, &a)
                        };
                        let got = (k.vec_dot(t).unwrap())(n, &w, &a);
                        assert!(
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                            "{:?} {t} n={n} {mode:?} raw_act={raw_act}: {got} vs reference {want}",
                            k.isa
                        );
                        checked += 1;
                        // the batch-order dot (llama.cpp's tiled GEMM) against its statement; that
                        // order takes `bsums` to be the sums of the quants (its AVX-512 build
                        // subtracts the +128 bias through them), so they are made so here
                        if let Some(tiled) = k.traits(t).unwrap().batch_dot.and_then(|b| b.dot) {
                            #[cfg(target_arch = "x86_64")]
                            {
                                let mut a = a.clone();
                                for blk in a.chunks_exact_mut(292) {
                                    for j in 0..16 {
                                        let s: i32 =
                                            blk[4 + 16 * j..4 + 16 * j + 16].iter().map(|&q| q as i8 as i32).sum();
                                        blk[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                                    }
                                }
                                let want = llama_core::kernels::ggml_x86::grid_iq_tiled(t, n, &w, &a);
                                let got = tiled(n, &w, &a);
                                assert!(
                                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                                    "{:?} {t} tiled n={n} {mode:?} raw_act={raw_act}: {got} vs grid_iq_tiled {want}",
                                    k.isa
                                );
                                checked += 1;
                            }
                            #[cfg(not(target_arch = "x86_64"))]
                            let _ = tiled;
                        }
                    }
                }
            }
        }
    }
    eprintln!("grid i-quants: {checked} dots bit-identical to their reference");
}

/// matmul (chunked, tiled, threaded) against a plain loop of scalar dots.
#[test]
fn matmul_matches_naive_loop() {
    let mut rng = Rng(42);
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    for k in Kernels::available() {
        for t in WEIGHT_TYPES {
            let act = vec_dot_type(t).unwrap();
            let cols = if t.block_size() == 256 { 512 } else { 96 };
            // 64 rows: a multiple of 4, so F16/F32 batches take tinyBLAS's order
            for rows in [1usize, 17, 64, 67] {
                let w = weight_row(&mut rng, t, rows * cols, Mode::Random);
                for n_tokens in [1usize, 2, 7, 64] {
                    let x = activations(&mut rng, n_tokens * cols, Mode::Random);
                    let a_row = act.row_size(cols as u64).unwrap() as usize;
                    let w_row = t.row_size(cols as u64).unwrap() as usize;
                    let mut want = vec![0f32; n_tokens * rows];
                    for tk in 0..n_tokens {
                        let mut a = vec![0u8; a_row];
                        (Kernels::SCALAR.from_float(act).unwrap())(&x[tk * cols..(tk + 1) * cols], &mut a);
                        // the table's dot for a batch of this shape (`types::BatchDot`: the grid
                        // i-quants' tiled order from 8 tokens, F16/F32 tinyBLAS's from 2, on x86)
                        let (dot, _) = k.row_dot(t, MatShape { n_tokens, rows, cols, id: false }).unwrap();
                        for r in 0..rows {
                            want[tk * rows + r] = dot(cols, &w[r * w_row..(r + 1) * w_row], &a);
                        }
                    }
                    for pool in &pools {
                        let mut out = vec![f32::NAN; n_tokens * rows];
                        let q = QTensor::new(t, &w, rows, cols);
                        matmul_with(&k, pool, &q, &x, n_tokens, &mut out, &mut scratch).unwrap();
                        assert_eq!(
                            out,
                            want,
                            "{:?} {} rows={rows} n_tokens={n_tokens} threads={}",
                            k.isa,
                            t.name(),
                            pool.n_threads()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_rejects_bad_shapes() {
    let pool = ThreadPool::new(1);
    let mut scratch = MatmulScratch::new();
    let w = vec![0u8; 18 * 2];
    let mut out = vec![0f32; 4];
    let q = QTensor::new(GgmlType::Q4_0, &w, 2, 48);
    let e = matmul_with(&Kernels::SCALAR, &pool, &q, &[0.0; 48], 1, &mut out, &mut scratch).unwrap_err();
    assert!(e.to_string().contains("whole number of blocks"), "{e}");
    let q = QTensor::new(GgmlType::Q4_0, &w, 3, 32);
    let e = matmul_with(&Kernels::SCALAR, &pool, &q, &[0.0; 32], 1, &mut out, &mut scratch).unwrap_err();
    assert!(e.to_string().contains("needs 54 bytes"), "{e}");
    let q = QTensor::new(GgmlType::I32, &[], 0, 256);
    let e = matmul_with(&Kernels::SCALAR, &pool, &q, &[], 0, &mut out, &mut scratch).unwrap_err();
    assert!(e.to_string().contains("i32"), "{e}");
}

// ---- against the quant module's references (independent scalar implementations) -----------------

use llama_core::kernels::scalar::VecDot;
use llama_core::quant::{self as q, read_blocks};
use llama_core::quant::{BlockIQ1M, BlockIQ1S, BlockIQ2S, BlockIQ2XS, BlockIQ2XXS, BlockIQ3S, BlockIQ3XXS};
use llama_core::quant::{BlockMXFP4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use llama_core::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

/// The typed scalar reference (`kernels::scalar::VecDot`) on byte rows viewed as blocks, reached
/// directly rather than through a table.
fn reference_dot(t: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    use GgmlType::*;
    match t {
        Q4_0 => BlockQ4_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q4_1 => BlockQ4_1::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q5_0 => BlockQ5_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q5_1 => BlockQ5_1::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q8_0 => BlockQ8_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q2_K => BlockQ2K::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q3_K => BlockQ3K::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q4_K => BlockQ4K::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q5_K => BlockQ5K::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        Q6_K => BlockQ6K::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        F16 => half::f16::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        BF16 => half::bf16::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        F32 => f32::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        MXFP4 => BlockMXFP4::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_XXS => BlockIQ2XXS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_XS => BlockIQ2XS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_S => BlockIQ2S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ3_XXS => BlockIQ3XXS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ3_S => BlockIQ3S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ1_S => BlockIQ1S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ1_M => BlockIQ1M::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ4_NL => q::BlockIQ4NL::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ4_XS => q::BlockIQ4XS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        TQ1_0 => q::BlockTQ1_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        TQ2_0 => q::BlockTQ2_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        _ => unreachable!(),
    }
}

/// Converters whose bytes equal the `quant` module's quantizer. Not Q8_0/Q8_1: for activations
/// llama.cpp runs its SIMD quantizers (id = 127/amax, halves to even), not the `_ref` the `quant`
/// module reproduces for weights; `activation_quantizers_match_llama_cpp_runtime` covers those.
/// Q8_K's runtime quantizer on x86 is the `_ref` one.
#[test]
fn converters_match_quant_reference_bytes() {
    let mut rng = Rng(0xabcdef);
    for k in Kernels::available() {
        for act in [GgmlType::Q8_K, GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
            for mode in [Mode::Random, Mode::Extreme] {
                for n in [256usize, 4096 + 256] {
                    let x = activations(&mut rng, n, mode);
                    let want = q::quantize(act, &x).unwrap();
                    let mut got = vec![0u8; want.len()];
                    (k.from_float(act).unwrap())(&x, &mut got);
                    assert!(got == want, "{:?} {}: differs from quant::quantize_row", k.isa, act.name());
                }
            }
        }
    }
}

#[test]
fn dots_match_quant_reference() {
    let mut rng = Rng(0x5eed);
    for k in Kernels::available() {
        for t in WEIGHT_TYPES {
            let act = vec_dot_type(t).unwrap();
            for n in sizes(t) {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    let mut pairs = Vec::new();
                    for _ in 0..16 {
                        let w = weight_row(&mut rng, t, n, mode);
                        let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                        let a = q::quantize(act, &x).unwrap();
                        pairs.push((reference_dot(t, n, &w, &a), (k.vec_dot(t).unwrap())(n, &w, &a)));
                    }
                    let typical = pairs.iter().map(|p| p.0.abs() as f64).sum::<f64>() / pairs.len() as f64;
                    for (r, s) in pairs {
                        if !r.is_finite() {
                            assert!(!s.is_finite(), "{:?} {} n={n}: ref {r} kernel {s}", k.isa, t.name());
                            continue;
                        }
                        let tol = 1e-5 * typical.max(r.abs() as f64) + 1e-30;
                        assert!(
                            ((r - s) as f64).abs() <= tol,
                            "{:?} {} n={n}: reference {r} kernel {s}",
                            k.isa,
                            t.name()
                        );
                    }
                }
            }
        }
    }
}

/// matmul against dequantize(W) · x in f64. The only approximation allowed is the activation
/// conversion (≤ half a quantization step per element: amax/254 for Q8 types, 2^-11 / 2^-8 relative
/// for f16 / bf16), which bounds |error| by Σ|w|·step.
#[test]
fn matmul_matches_dequantized_reference() {
    let mut rng = Rng(7);
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    for k in Kernels::available() {
        for t in WEIGHT_TYPES {
            let act = vec_dot_type(t).unwrap();
            let cols = if t.block_size() == 256 { 768 } else { 160 };
            let ab = act.block_size().max(1);
            let rows = 37;
            let w = weight_row(&mut rng, t, rows * cols, Mode::Random);
            let wf = q::dequantize(t, &w, rows * cols).unwrap(); // [rows][cols]
            for n_tokens in [1usize, 2, 7, 64] {
                let x = activations(&mut rng, n_tokens * cols, Mode::Random); // [n_tokens][cols]
                for pool in &pools {
                    let mut out = vec![f32::NAN; n_tokens * rows];
                    let qt = QTensor::new(t, &w, rows, cols);
                    matmul_with(&k, pool, &qt, &x, n_tokens, &mut out, &mut scratch).unwrap();
                    for tk in 0..n_tokens {
                        let xr = &x[tk * cols..(tk + 1) * cols];
                        for r in 0..rows {
                            let wr = &wf[r * cols..(r + 1) * cols];
                            let exact: f64 = wr.iter().zip(xr).map(|(a, b)| *a as f64 * *b as f64).sum();
                            let mut bound = 0f64;
                            for (wb, xb) in wr.chunks(ab).zip(xr.chunks(ab)) {
                                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                                for (a, b) in wb.iter().zip(xb) {
                                    let step = match act {
                                        GgmlType::F16 => b.abs() as f64 / 2048.0,
                                        GgmlType::BF16 => b.abs() as f64 / 256.0,
                                        GgmlType::F32 => 0.0,
                                        _ => amax / 254.0,
                                    };
                                    bound += a.abs() as f64 * (step * 1.001 + 1e-5 * b.abs() as f64);
                                }
                            }
                            let got = out[tk * rows + r] as f64;
                            assert!(
                                (got - exact).abs() <= bound + 1e-6,
                                "{:?} {} n_tokens={n_tokens} threads={} r={r}: {got} vs {exact} (bound {bound})",
                                k.isa,
                                t.name(),
                                pool.n_threads()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Tables must include every SIMD level this CPU supports (otherwise the tests above would silently
/// compare scalar with scalar).
#[test]
fn available_tables_cover_this_cpu() {
    let isas: Vec<_> = Kernels::available().iter().map(|k| k.isa).collect();
    assert_eq!(isas[0], llama_core::kernels::Isa::Scalar);
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            assert!(isas.contains(&llama_core::kernels::Isa::Avx2), "{isas:?}");
        }
        if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni") {
            assert!(isas.contains(&llama_core::kernels::Isa::Avx512), "{isas:?}");
        }
    }
    #[cfg(target_arch = "aarch64")]
    assert!(isas.contains(&llama_core::kernels::Isa::Neon), "{isas:?}");
    eprintln!("kernel tables tested: {isas:?}");
}

/// Multi-token tiles are bit-identical to the per-pair dot of the same table, for every tile shape.
#[test]
fn tiles_match_pairwise_dots() {
    let mut rng = Rng(99);
    for k in Kernels::available() {
        for t in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::F16] {
            let Some(tile) = k.tile(t) else { continue };
            // F16 rows of any length (an AVX2 tail after the 32-element steps)
            let ns: &[usize] =
                if t == GgmlType::F16 { &[32, 40, 96, 384, 4096 + 37] } else { &[32, 64, 96, 4096 + 32] };
            for &n in ns {
                for mode in [Mode::Random, Mode::Extreme] {
                    let w_row = t.row_size(n as u64).unwrap() as usize;
                    let w = weight_row(&mut rng, t, 4 * n, mode);
                    let x = activations(&mut rng, 8 * n, mode);
                    let act = if t == GgmlType::F16 { GgmlType::F16 } else { GgmlType::Q8_0 };
                    let a = q::quantize(act, &x).unwrap();
                    let a_row = a.len() / 8;
                    for nr in 1..=4 {
                        for nt in 1..=llama_core::kernels::TILE_T {
                            let res = tile(n, &w, w_row, nr, &a, a_row, nt);
                            for r in 0..nr {
                                for j in 0..nt {
                                    let want = (k.vec_dot(t).unwrap())(
                                        n,
                                        &w[r * w_row..(r + 1) * w_row],
                                        &a[j * a_row..(j + 1) * a_row],
                                    );
                                    assert_eq!(
                                        res[r][j].to_bits(),
                                        want.to_bits(),
                                        "{:?} {} n={n} tile {nr}x{nt} [{r}][{j}]",
                                        k.isa,
                                        t.name()
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn llama_isa_override() {
    use llama_core::kernels::{choose, Isa};
    let best = Kernels::available().last().unwrap().isa;
    assert_eq!(choose(None).0.isa, best);
    assert!(choose(Some("")).1.is_none());
    let (k, w) = choose(Some("scalar"));
    assert_eq!((k.isa, w), (Isa::Scalar, None));
    let (k, w) = choose(Some("AVX9000"));
    assert_eq!(k.isa, best);
    assert!(w.unwrap().contains("LLAMA_ISA=AVX9000 is not one of scalar, avx2, avx512, neon"));
    for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon] {
        let (k, w) = choose(Some(isa.name()));
        if Kernels::for_isa(isa).is_some() {
            assert_eq!((k.isa, w), (isa, None));
        } else {
            assert_eq!(k.isa, best);
            assert!(w.unwrap().contains(&format!("does not support {}", isa.name())));
        }
    }
}

// ---- R16-repacked weights (quant::repack) ----------------------------------------------------------
// The scalar reference of an R16 kernel is the scalar row dot on the original (unpacked) rows:
// repacking only moves bytes, so any difference beyond float reassociation is a packing or
// kernel bug.

use llama_core::quant::{dequantize, repack};

const R16_TYPES: [GgmlType; 13] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4]
};

/// Activation rows for `x` ([n_tokens][cols]) in both forms: plain (Q8_0 / Q8_1 / Q8_K, for the row
/// dot) and as the R16 kernels take them (Q8_0S / Q8_1S / Q8_K).
fn r16_acts(t: GgmlType, x: &[f32], cols: usize) -> (Vec<u8>, Vec<u8>, usize, usize) {
    let act = vec_dot_type(t).unwrap();
    let plain_row = act.row_size(cols as u64).unwrap() as usize;
    let nb = cols / t.block_size();
    let r16_row = nb * repack::act_block_bytes(t);
    let n = x.len() / cols;
    let (mut plain, mut r16) = (vec![0u8; n * plain_row], vec![0u8; n * r16_row]);
    for (i, xr) in x.chunks_exact(cols).enumerate() {
        let p = &mut plain[i * plain_row..(i + 1) * plain_row];
        (Kernels::SCALAR.from_float(act).unwrap())(xr, p);
        if act != GgmlType::Q8_K {
            repack::to_r16_acts(t, p, &mut r16[i * r16_row..(i + 1) * r16_row]);
        } else {
            r16[i * r16_row..(i + 1) * r16_row].copy_from_slice(p);
        }
    }
    (plain, r16, plain_row, r16_row)
}

#[test]
fn r16_kernels_match_scalar_row_dots() {
    let mut rng = Rng(2024);
    let mut checked = 0;
    for k in Kernels::available() {
        for t in R16_TYPES {
            let Some(gemm) = k.gemm_r16(t) else { continue };
            let act = vec_dot_type(t).unwrap();
            let bs = t.block_size();
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for cols in [bs, 2 * bs, 3 * bs, if bs == 32 { 2048 + 32 } else { 4096 + 256 }] {
                    let (rows, nb) = (32usize, cols / bs);
                    let w = weight_row(&mut rng, t, rows * cols, mode);
                    let p = repack::pack(t, &w, rows, cols).unwrap();
                    let w_row = t.row_size(cols as u64).unwrap() as usize;
                    for nt in 1..=repack::MAX_T {
                        let x = activations(&mut rng, nt * cols, mode);
                        let (plain, r16, prow, srow) = r16_acts(t, &x, cols);
                        for g in 0..rows / repack::R {
                            let mut got = vec![f32::NAN; nt * 16];
                            gemm(nb, p.group(g), &r16, srow, nt, &mut got, 16);
                            for tk in 0..nt {
                                let a = &plain[tk * prow..(tk + 1) * prow];
                                let da = dequantize(act, a, cols).unwrap();
                                for r in 0..16 {
                                    let row = &w[(16 * g + r) * w_row..(16 * g + r + 1) * w_row];
                                    let want = (Kernels::SCALAR.vec_dot(t).unwrap())(cols, row, a);
                                    // rounding scale: Σ|w_i·a_i| over the dequantized values
                                    let dw = dequantize(t, row, cols).unwrap();
                                    let scale: f32 = dw.iter().zip(&da).map(|(p, q)| (p * q).abs()).sum();
                                    let g_ = got[tk * 16 + r];
                                    let ok = g_ == want
                                        || (g_ - want).abs() <= 1e-5 * scale
                                        || (g_.is_nan() && want.is_nan());
                                    assert!(ok, "{:?} {} {mode:?} cols={cols} nt={nt} t={tk} row={}: {g_} vs {want} (scale {scale})", k.isa, t.name(), 16 * g + r);
                                }
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("r16: {checked} kernel calls checked");
}

/// Every single-token kernel over several groups (`gemv_r16`) gives each group exactly its
/// `gemm_r16` sums for that token, bit for bit, with the streams next to each other and apart.
#[test]
fn r16_gemvs_equal_their_one_token_gemm() {
    let mut rng = Rng(1606);
    let mut checked = 0;
    for k in Kernels::available() {
        for t in R16_TYPES {
            let (Some(gemm), Some(gv)) = (k.gemm_r16(t), k.traits(t).and_then(|r| r.gemv_r16)) else { continue };
            let bs = t.block_size();
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for cols in [bs, 3 * bs, if bs == 32 { 2048 + 32 } else { 4096 + 256 }] {
                    // h: groups between one stream's group and the next stream's
                    for h in [1usize, 3] {
                        let (rows, nb) = (repack::R * gv.groups * h, cols / bs);
                        let w = weight_row(&mut rng, t, rows * cols, mode);
                        let p = repack::pack(t, &w, rows, cols).unwrap();
                        let x = activations(&mut rng, cols, mode);
                        let (_, r16, _, srow) = r16_acts(t, &x, cols);
                        let gb = p.group_bytes();
                        for i in 0..h {
                            let mut got = vec![f32::NAN; rows];
                            (gv.f)(nb, &p.bytes()[i * gb..], h * gb, &r16, &mut got[i * 16..], h * 16);
                            for g in (0..gv.groups).map(|j| i + j * h) {
                                let mut want = [f32::NAN; 16];
                                gemm(nb, p.group(g), &r16, srow, 1, &mut want, 16);
                                let got = &got[g * 16..(g + 1) * 16];
                                assert!(
                                    got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                                    "{:?} {} {mode:?} cols={cols} h={h} group {g}: {got:?} vs {want:?}",
                                    k.isa,
                                    t.name()
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("r16 gemv: {checked} groups checked");
}

/// x86: the F16 and F32 kernels of every x86 table in llama.cpp's orders of a build of the same
/// width (`kernels::ggml_x86`): `vec_dot` as `ggml_vec_dot_f16`/`_f32` (every row length, leftovers
/// included), and the batch GEMMs (`types::BatchDot`: llamafile's tinyBLAS) as their batch dot for
/// every tile shape; bit for bit. (tests/quant_ggml.rs checks both against ggml's own matmul.)
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_float_kernels_sum_in_llama_cpp_orders() {
    use llama_core::kernels::{ggml_x86 as g, Isa, GEMM_ROWS};
    use GgmlType::*;
    let mut rng = Rng(0xf16);
    let mut checked = 0;
    for k in Kernels::available().into_iter().filter(|k| matches!(k.isa, Isa::Avx2 | Isa::Avx512)) {
        let wide = k.isa == Isa::Avx512;
        for t in [F16, F32] {
            let row = k.traits(t).unwrap();
            let want_dot = match (t, wide) {
                (F16, true) => g::f16_vec_dot16,
                (F16, false) => g::f16_vec_dot8,
                (_, true) => g::f32_vec_dot16,
                _ => g::f32_vec_dot8,
            };
            let conv = row.from_float.unwrap();
            let bytes = |x: &[f32]| {
                let mut b = vec![0u8; t.row_size(x.len() as u64).unwrap() as usize];
                conv(x, &mut b);
                b
            };
            for cols in [1usize, 15, 64, 65, 127, 1000, 1024] {
                let (w, a) = (
                    bytes(&activations(&mut rng, cols, Mode::Random)),
                    bytes(&activations(&mut rng, cols, Mode::Random)),
                );
                let (got, want) = ((row.vec_dot.unwrap())(cols, &w, &a), want_dot(cols, &w, &a));
                assert_eq!(got.to_bits(), want.to_bits(), "{:?} {t} vec_dot cols={cols}: {got} vs {want}", k.isa);
                checked += 1;
            }
            let b = row.batch_dot.unwrap();
            let (gemm, dot) = (b.gemm.unwrap(), b.dot.unwrap());
            assert_eq!(b.cols_multiple, if wide { 16 } else { 8 });
            for cols in [b.cols_multiple, 96, 1024] {
                let es = t.type_size();
                // rows and tokens a few elements longer than `cols`, as strided views
                let (ws, as_) = (es * (cols + 8), es * (cols + 24));
                let w: Vec<u8> =
                    (0..GEMM_ROWS).flat_map(|_| bytes(&activations(&mut rng, cols + 8, Mode::Random))).collect();
                let a: Vec<u8> = (0..13).flat_map(|_| bytes(&activations(&mut rng, cols + 24, Mode::Random))).collect();
                for nr in 1..=GEMM_ROWS {
                    for nt in [1usize, 2, 5, 6, 7, 13] {
                        let mut out = vec![f32::NAN; nt * GEMM_ROWS];
                        gemm(cols, &w, ws, nr, &a, as_, nt, &mut out);
                        for r in 0..nr {
                            for j in 0..nt {
                                let want = dot(cols, &w[r * ws..], &a[j * as_..]);
                                let got = out[j * GEMM_ROWS + r];
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{:?} {t} gemm cols={cols} {nr}x{nt} [{r}][{j}]",
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
    eprintln!("F16/F32 kernels in llama.cpp's orders: {checked} results bit-identical");
}

/// x86: the R16 kernels (plain and batch order) and the Q4_1/Q5_1 row dots of every x86 table sum
/// in llama.cpp's x86 orders, written out one dot at a time in `kernels::ggml_x86`: equal bit for
/// bit (the golden tests check the same on whole models).
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_kernels_sum_in_llama_cpp_orders() {
    use llama_core::kernels::{ggml_x86 as g, FromFloatFn, Isa};
    use GgmlType::*;
    type Ref = fn(usize, &[u8], &[u8]) -> f32;
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let mut rng = Rng(4242);
    let mut checked = 0;
    for k in Kernels::available().into_iter().filter(|k| matches!(k.isa, Isa::Avx2 | Isa::Avx512)) {
        for (t, want) in [
            (Q4_1, g::q4_1_lanes as Ref),
            (Q5_1, g::q5_1_lanes),
            (Q2_K, g::q2_k_lanes),
            (Q3_K, g::q3_k_lanes),
            (Q5_K, g::q5_k_lanes),
            (IQ4_XS, g::iq4_xs_lanes),
        ] {
            let (act, dot) = (vec_dot_type(t).unwrap(), k.vec_dot(t).unwrap());
            let bs = t.block_size();
            for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                for cols in [bs, 2 * bs, 65 * bs] {
                    let w = weight_row(&mut rng, t, cols, mode);
                    let mut a = vec![0u8; act.row_size(cols as u64).unwrap() as usize];
                    (k.from_float(act).unwrap())(&activations(&mut rng, cols, mode), &mut a);
                    let (got, want) = (dot(cols, &w, &a), want(cols, &w, &a));
                    assert!(same(got, want), "{:?} {} dot {mode:?} cols={cols}: {got} vs {want}", k.isa, t.name());
                }
            }
        }
        // (type, order of the plain kernel, order of the batch kernel)
        let orders: [(GgmlType, Ref, Option<Ref>); 13] = [
            (Q4_0, g::q4_0_repack, None),
            (IQ4_NL, g::iq4_nl_repack, None),
            (MXFP4, g::mxfp4_repack, None),
            (IQ4_XS, g::iq4_xs_lanes, Some(g::iq4_xs_tiled)),
            (Q4_1, g::q4_1_lanes, None),
            (Q5_0, g::q5_0_lanes, None),
            (Q5_1, g::q5_1_lanes, None),
            (Q8_0, g::q8_0_lanes, None),
            // llama.cpp's AVX-512 build repacks Q2_K, its AVX2 build does not
            if k.isa == Isa::Avx512 {
                (Q2_K, g::q2_k_gemv, Some(g::q2_k_gemm4))
            } else {
                (Q2_K, g::q2_k_lanes, Some(g::q2_k_tiled))
            },
            (Q3_K, g::q3_k_lanes, Some(g::q3_k_tiled)),
            (Q4_K, g::q4_k_gemv, Some(g::q4_k_gemm4)),
            (Q5_K, g::q5_k_lanes, Some(g::q5_k_tiled)),
            (Q6_K, g::q6_k_lanes, Some(g::q6_k_tiled)),
        ];
        for (t, plain_ref, batch_ref) in orders {
            let row = k.traits(t).unwrap();
            let act = vec_dot_type(t).unwrap();
            let table_from_float = k.from_float(act).unwrap();
            let mut kernels: Vec<(_, Ref, FromFloatFn)> = vec![(row.gemm_r16.unwrap(), plain_ref, table_from_float)];
            if let (Some(b), Some(r)) = (row.r16_batch, batch_ref) {
                kernels.push((b.gemm.unwrap(), r, b.from_float.unwrap_or(table_from_float)));
            }
            let bs = t.block_size();
            for (gemm, want, from_float) in kernels {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    for cols in [bs, 3 * bs, if bs == 32 { 2048 + 32 } else { 4096 + 256 }] {
                        let nb = cols / bs;
                        let w = weight_row(&mut rng, t, 16 * cols, mode);
                        let p = repack::pack(t, &w, 16, cols).unwrap();
                        let w_row = t.row_size(cols as u64).unwrap() as usize;
                        let (prow, srow) =
                            (act.row_size(cols as u64).unwrap() as usize, nb * repack::act_block_bytes(t));
                        for nt in 1..=repack::MAX_T {
                            let x = activations(&mut rng, nt * cols, mode);
                            let (mut plain, mut r16) = (vec![0u8; nt * prow], vec![0u8; nt * srow]);
                            for tk in 0..nt {
                                let pa = &mut plain[tk * prow..(tk + 1) * prow];
                                from_float(&x[tk * cols..(tk + 1) * cols], pa);
                                if act == Q8_K {
                                    r16[tk * srow..(tk + 1) * srow].copy_from_slice(pa);
                                } else {
                                    repack::to_r16_acts(t, pa, &mut r16[tk * srow..(tk + 1) * srow]);
                                }
                            }
                            let mut got = vec![f32::NAN; nt * 16];
                            gemm(nb, p.group(0), &r16, srow, nt, &mut got, 16);
                            for tk in 0..nt {
                                for r in 0..16 {
                                    let want = want(cols, &w[r * w_row..(r + 1) * w_row], &plain[tk * prow..]);
                                    let g_ = got[tk * 16 + r];
                                    assert!(
                                        same(g_, want),
                                        "{:?} {} {mode:?} cols={cols} nt={nt} t={tk} row={r}: {g_} vs {want}",
                                        k.isa,
                                        t.name()
                                    );
                                }
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("x86 orders: {checked} kernel calls checked");
}

/// One token through several matrices of mixed types as one job (`matvec_many`, as Q/K/V and
/// gate/up run) gives each output exactly its own `matmul_with`, packed or not, on 1–3 threads.
#[test]
fn matvec_many_equals_one_matmul_per_matrix() {
    use GgmlType::*;
    let mut rng = Rng(1612);
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    let cols = 512;
    for k in Kernels::available() {
        // rows: a matrix long enough for several streams per chunk, and small ones
        for set in [&[(Q4_0, 1024), (Q4_0, 64), (Q8_0, 64)][..], &[(Q5_0, 320), (Q4_K, 96), (Q6_K, 512), (Q4_1, 48)]] {
            let ws: Vec<Vec<u8>> =
                set.iter().map(|&(t, rows)| weight_row(&mut rng, t, rows * cols, Mode::Random)).collect();
            let ps: Vec<_> = set.iter().zip(&ws).map(|(&(t, rows), w)| repack::pack(t, w, rows, cols)).collect();
            for packed in [true, false] {
                let qs: Vec<QTensor> = set
                    .iter()
                    .zip(&ws)
                    .zip(&ps)
                    .map(|((&(t, rows), w), p)| QTensor {
                        packed: p.as_ref().filter(|_| packed && k.gemm_r16(t).is_some()),
                        ..QTensor::new(t, w, rows, cols)
                    })
                    .collect();
                // one value more than a row: only the first `cols` are the token's
                let x = activations(&mut rng, cols + 1, Mode::Random);
                for pool in &pools {
                    let mut got: Vec<Vec<f32>> = set.iter().map(|&(_, rows)| vec![f32::NAN; rows]).collect();
                    let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|o| &mut o[..]).collect();
                    matvec_many(&k, pool, &qs, &x, &mut outs, &mut scratch).unwrap();
                    for (q, got) in qs.iter().zip(&got) {
                        let mut want = vec![f32::NAN; q.rows];
                        matmul_with(&k, pool, q, &x, 1, &mut want, &mut scratch).unwrap();
                        assert!(
                            got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{:?} {} {}x{cols} packed={packed} th={}",
                            k.isa,
                            q.ggml_type.name(),
                            q.rows,
                            pool.n_threads()
                        );
                    }
                }
            }
        }
    }
    let pool = &pools[0];
    let w = vec![0u8; 32 * 18];
    let q = QTensor::new(Q4_0, &w, 32, 32);
    let mut o = [0f32; 32];
    let e = matvec_many(&Kernels::SCALAR, pool, &[q, q], &[0.0; 32], &mut [&mut o[..]], &mut scratch).unwrap_err();
    assert!(e.to_string().contains("2 matrices, 1 outputs"), "{e}");
}

#[test]
fn matmul_with_packed_weights_matches_row_path() {
    let mut rng = Rng(77);
    let pools: Vec<ThreadPool> = [1, 2, 3].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    for k in Kernels::available() {
        for t in R16_TYPES {
            if k.gemm_r16(t).is_none() {
                continue;
            }
            let bs = t.block_size();
            for (rows, cols) in [(16usize, 2 * bs), (48, 3 * bs), (160, 8 * bs)] {
                let w = weight_row(&mut rng, t, rows * cols, Mode::Random);
                let p = repack::pack(t, &w, rows, cols).unwrap();
                let dw = dequantize(t, &w, rows * cols).unwrap(); // [rows][cols]
                for n_tokens in [1usize, 3, 8, 9, 70] {
                    let x = activations(&mut rng, n_tokens * cols, Mode::Random);
                    let mut want = vec![0f32; n_tokens * rows];
                    matmul_with(
                        &Kernels::SCALAR,
                        &pools[0],
                        &QTensor::new(t, &w, rows, cols),
                        &x,
                        n_tokens,
                        &mut want,
                        &mut scratch,
                    )
                    .unwrap();
                    for pool in &pools {
                        let mut got = vec![f32::NAN; n_tokens * rows];
                        let q = QTensor { packed: Some(&p), ..QTensor::new(t, &w, rows, cols) };
                        matmul_with(&k, pool, &q, &x, n_tokens, &mut got, &mut scratch).unwrap();
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            // float reassociation bound: Σ|w·x| of this output
                            let (tk, r) = (i / rows, i % rows);
                            let scale: f32 = dw[r * cols..(r + 1) * cols]
                                .iter()
                                .zip(&x[tk * cols..(tk + 1) * cols])
                                .map(|(a, b)| (a * b).abs())
                                .sum();
                            assert!(
                                (g - e).abs() <= 2e-5 * scale,
                                "{:?} {} {rows}x{cols} n={n_tokens} th={} [{i}]: {g} vs {e} (scale {scale})",
                                k.isa,
                                t.name(),
                                pool.n_threads()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// matmul_id (experts' rows gathered, one job) against one single-token `matmul_with` per routed
/// row: equal bit for bit, repacked or not (llama.cpp's mul_mat_id sums every row in the
/// single-token order).
#[test]
fn matmul_id_equals_single_token_matmuls() {
    let mut rng = Rng(99);
    let pools: Vec<ThreadPool> = [1, 3].into_iter().map(ThreadPool::new).collect();
    let mut scratch = MatmulScratch::new();
    let (n_exp, n_src) = (4usize, 5usize);
    for k in Kernels::available() {
        for t in WEIGHT_TYPES {
            let cols = 2 * t.block_size().max(32);
            let rows = [32usize, 48]; // two matrices per expert (gate and up)
            let ws: Vec<Vec<Vec<u8>>> = rows
                .iter()
                .map(|&r| (0..n_exp).map(|_| weight_row(&mut rng, t, r * cols, Mode::Random)).collect())
                .collect();
            let packed: Vec<Vec<Option<repack::Packed>>> = rows
                .iter()
                .zip(&ws)
                .map(|(&r, we)| we.iter().map(|w| k.gemm_r16(t).and_then(|_| repack::pack(t, w, r, cols))).collect())
                .collect();
            let x = activations(&mut rng, n_src * cols, Mode::Random);
            // experts 2, 0, 3 (1 unused); route rows (src, dst), dst distinct
            let groups = [2usize, 0, 3];
            let first = [0usize, 3, 4, 7];
            let src = [0u32, 2, 4, 1, 0, 3, 4];
            let dst = [6u32, 0, 2, 5, 1, 3, 4];
            let qt = |m: usize, g: usize| QTensor {
                packed: packed[m][groups[g]].as_ref(),
                ..QTensor::new(t, &ws[m][groups[g]], rows[m], cols)
            };
            let mut want: Vec<Vec<f32>> = rows.iter().map(|&r| vec![0f32; 7 * r]).collect();
            for m in 0..2 {
                for g in 0..3 {
                    for i in first[g]..first[g + 1] {
                        let (s, d, r) = (src[i] as usize, dst[i] as usize, rows[m]);
                        let xr = &x[s * cols..(s + 1) * cols];
                        matmul_with(&k, &pools[0], &qt(m, g), xr, 1, &mut want[m][d * r..(d + 1) * r], &mut scratch)
                            .unwrap();
                    }
                }
            }
            for pool in &pools {
                let (mut o0, mut o1) = (vec![f32::NAN; 7 * rows[0]], vec![f32::NAN; 7 * rows[1]]);
                let routes = IdRoutes { first: &first, src: &src, dst: &dst };
                matmul_id(&k, pool, 2, qt, routes, &x, &mut [&mut o0, &mut o1], &mut scratch).unwrap();
                let what = format!("{:?} {} threads={}", k.isa, t.name(), pool.n_threads());
                assert_eq!(o0, want[0], "{what}");
                assert_eq!(o1, want[1], "{what}");
            }
            let routes = IdRoutes { first: &first, src: &src, dst: &[6, 0, 2, 5, 1, 3, 3] };
            let (mut o0, mut o1) = (vec![0f32; 7 * rows[0]], vec![0f32; 7 * rows[1]]);
            let e = matmul_id(&k, &pools[0], 2, qt, routes, &x, &mut [&mut o0, &mut o1], &mut scratch).unwrap_err();
            assert!(e.to_string().contains("routed twice"), "{e}");
        }
    }
}

/// An expert routed 9 rows takes the batch order where llama.cpp's mul_mat_id runs such an expert
/// through its tiled GEMM (8 rows or more: the grid i-quants; Q3_K, Q5_K, Q6_K, IQ4_XS, whose
/// weights we repack): it equals `matmul_with` over those 9 rows as one batch; an expert routed 2
/// rows equals single-token matmuls.
#[test]
fn matmul_id_takes_the_batch_order_for_large_groups() {
    let mut rng = Rng(1234);
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::new();
    use GgmlType::*;
    for k in Kernels::available() {
        for t in GRID_IQ.into_iter().chain([Q3_K, Q5_K, Q6_K, IQ4_XS]) {
            let (rows, cols, n_src) = (32usize, 512usize, 11usize);
            let ws: Vec<Vec<u8>> = (0..2).map(|_| weight_row(&mut rng, t, rows * cols, Mode::Random)).collect();
            let packed: Vec<Option<repack::Packed>> =
                ws.iter().map(|w| k.gemm_r16(t).and_then(|_| repack::pack(t, w, rows, cols))).collect();
            let x = activations(&mut rng, n_src * cols, Mode::Random);
            // expert 1: rows 0..9 (sources 2..11), expert 0: rows 9..11 (sources 0, 1)
            let (groups, first) = ([1usize, 0], [0usize, 9, 11]);
            let src: Vec<u32> = (2..11).chain(0..2).collect();
            let dst: Vec<u32> = (0..11).rev().collect();
            let qt = |_: usize, g: usize| QTensor {
                packed: packed[groups[g]].as_ref(),
                ..QTensor::new(t, &ws[groups[g]], rows, cols)
            };
            let mut want = vec![0f32; n_src * rows];
            let mut batch = vec![0f32; 9 * rows];
            matmul_with(&k, &pool, &qt(0, 0), &x[2 * cols..11 * cols], 9, &mut batch, &mut scratch).unwrap();
            for i in 0..11 {
                let d = dst[i] as usize;
                if i < 9 {
                    want[d * rows..(d + 1) * rows].copy_from_slice(&batch[i * rows..(i + 1) * rows]);
                } else {
                    let s = src[i] as usize;
                    let o = &mut want[d * rows..(d + 1) * rows];
                    matmul_with(&k, &pool, &qt(0, 1), &x[s * cols..(s + 1) * cols], 1, o, &mut scratch).unwrap();
                }
            }
            let mut out = vec![f32::NAN; n_src * rows];
            let routes = IdRoutes { first: &first, src: &src, dst: &dst };
            matmul_id(&k, &pool, 1, qt, routes, &x, &mut [&mut out], &mut scratch).unwrap();
            assert_eq!(out, want, "{:?} {t}", k.isa);
        }
    }
}

#[test]
fn pack_rejects_shapes_without_an_r16_layout() {
    let w = vec![0u8; 18 * 15];
    assert!(repack::pack(GgmlType::Q4_0, &w, 15, 32).is_none(), "15 rows are not whole groups");
    assert!(repack::pack(GgmlType::Q8_1, &vec![0u8; 36 * 16], 16, 32).is_none(), "no R16 layout for Q8_1");
    assert!(repack::pack(GgmlType::Q4_0, &vec![0u8; 18 * 15], 16, 32).is_none(), "short data");
    for t in R16_TYPES {
        let row = t.row_size(t.block_size() as u64).unwrap() as usize;
        let p = repack::pack(t, &vec![7u8; 16 * row], 16, t.block_size()).unwrap();
        assert_eq!(p.bytes().len(), 16 * row, "{}: repacking must not add bytes", t.name());
    }
}

/// Runs `tests/py/quant_ref.py MODE DIR SEED` (llama.cpp's outputs into DIR); false (after a SKIP
/// line naming `needs`) when python3 or the script's requirements are missing.
fn run_quant_ref(mode: &str, dir: &std::path::Path, seed: &str, needs: &str) -> bool {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/quant_ref.py");
    let st = match std::process::Command::new("python3").arg(script).args([mode, dir.to_str().unwrap(), seed]).status()
    {
        Ok(st) => st,
        Err(e) => {
            eprintln!("SKIP: cannot run python3: {e}");
            return false;
        }
    };
    match st.code() {
        Some(0) => true,
        Some(3) | Some(4) => {
            eprintln!("SKIP: {needs} is not available");
            false
        }
        _ => panic!("reference script failed: {st:?}"),
    }
}

/// Every table's Q8_0 / Q8_1 / Q8_K activation quantizer against the one llama.cpp actually runs
/// (ggml-cpu's `from_float` from llama-cpp-python's library, x86 SIMD path), byte for byte. Skips
/// when python3, numpy, llama-cpp-python or an AVX2 CPU is missing.
#[test]
fn activation_quantizers_match_llama_cpp_runtime() {
    let dir = std::env::temp_dir().join(format!("llama-kernels-acts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !run_quant_ref("activations", &dir, "11", "llama-cpp-python's ggml (x86 AVX2), gguf-py or numpy") {
        return;
    }
    const COLS: usize = 1024;
    for (act, name) in [(GgmlType::Q8_0, "q8_0"), (GgmlType::Q8_1, "q8_1"), (GgmlType::Q8_K, "q8_K")] {
        let src: Vec<f32> = std::fs::read(dir.join(format!("{name}.src.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let want = std::fs::read(dir.join(format!("{name}.act"))).unwrap();
        let row_bytes = want.len() / (src.len() / COLS);
        let (bs, ts) = act.block_layout();
        assert_eq!(row_bytes, COLS / bs * ts);
        for k in Kernels::available() {
            let conv = k.from_float(act).unwrap();
            for (r, (x, w)) in src.chunks_exact(COLS).zip(want.chunks_exact(row_bytes)).enumerate() {
                let mut got = vec![0u8; row_bytes];
                conv(x, &mut got);
                if let Some(i) = (0..row_bytes).find(|&i| got[i] != w[i]) {
                    panic!(
                        "{:?} {name} row {r}: byte {i} (block {}, offset {}) is {} vs llama.cpp {}",
                        k.isa,
                        i / ts,
                        i % ts,
                        got[i],
                        w[i]
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_f32_file(p: &std::path::Path) -> Vec<f32> {
    std::fs::read(p).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The process-wide table's softmax and SwiGLU (`Kernels::softmax` / `swiglu`) against ggml-cpu's soft_max and swiglu
/// (llama-cpp-python's library, run through a one-op ggml graph), bit for bit. These are the
/// AVX-512 build's results (vectorised expf, 16-wide partial sums), which the golden outputs come
/// from; on a CPU without AVX-512 ggml takes another path and the test skips.
#[test]
fn softmax_swiglu_and_layer_norm_match_ggml() {
    let k = llama_core::kernels::kernels();
    let dir = std::env::temp_dir().join(format!("llama-kernels-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let has_avx512 = {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    };
    if !has_avx512 {
        eprintln!("SKIP: ggml-cpu's AVX-512 softmax/swiglu path needs an AVX-512 CPU");
        return;
    }
    if !run_quant_ref("ops", &dir, "5", "llama-cpp-python's ggml, gguf-py or numpy") {
        return;
    }
    let src = read_f32_file(&dir.join("softmax.src.f32"));
    let want = read_f32_file(&dir.join("softmax.out.f32"));
    for (r, (x, w)) in src.chunks_exact(256).zip(want.chunks_exact(256)).enumerate() {
        let n = x.iter().position(|v| *v == f32::NEG_INFINITY).unwrap_or(256);
        let mut y = x[..n].to_vec();
        (k.softmax)(&mut y, 0.125);
        assert!(w[n..].iter().all(|&v| v == 0.0), "row {r}: masked entries");
        for i in 0..n {
            assert_eq!(
                y[i].to_bits(),
                w[i].to_bits(),
                "softmax row {r} (length {n}) entry {i}: {} vs ggml {}",
                y[i],
                w[i]
            );
        }
    }
    for n in [1000usize, 4864] {
        let mut x = read_f32_file(&dir.join(format!("swiglu{n}.x.f32")));
        let g = read_f32_file(&dir.join(format!("swiglu{n}.g.f32")));
        let want = read_f32_file(&dir.join(format!("swiglu{n}.out.f32")));
        (k.swiglu)(&mut x, &g, n);
        for i in 0..x.len() {
            assert_eq!(x[i].to_bits(), want[i].to_bits(), "swiglu n_ff={n} element {i}: {} vs ggml {}", x[i], want[i]);
        }
    }
    // LayerNorm (BERT's): ggml_norm, ggml_mul, ggml_add of its AVX-512 build
    for n in [384usize, 1000] {
        let f = |s: &str| read_f32_file(&dir.join(format!("norm{n}.{s}.f32")));
        let (x, w, b, want) = (f("x"), f("w"), f("b"), f("out"));
        let mut y = vec![0f32; x.len()];
        llama_core::kernels::elementwise::layer_norm(&mut y, &x, &w, &b, 1e-12, 16);
        for i in 0..y.len() {
            assert_eq!(y[i].to_bits(), want[i].to_bits(), "layer_norm n={n} element {i}: {} vs ggml {}", y[i], want[i]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every table's softmax and SwiGLU equal the scalar emulation (`kernels::elementwise`) bit for
/// bit, on odd lengths, masked entries and extreme values.
#[test]
fn softmax_and_swiglu_match_scalar() {
    use llama_core::kernels::elementwise::reference;
    let mut seed = 0x9e37_79b9u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    for k in Kernels::available() {
        let (softmax_scalar, swiglu_scalar) = reference(k.orders);
        for n in [1usize, 5, 15, 16, 17, 31, 64, 100, 257, 1000] {
            // 3000: scores hundreds under the maximum, whose exps and probabilities are subnormal
            // or round to 0 (the vector kernels build those in the integers)
            for mag in [1.0f32, 30.0, 300.0, 3000.0] {
                let x: Vec<f32> = (0..n).map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { rnd() * mag }).collect();
                let (mut a, mut b) = (x.clone(), x.clone());
                (k.softmax)(&mut a, 0.125);
                softmax_scalar(&mut b, 0.125);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{:?} softmax n={n} mag={mag}", k.isa);
                let g: Vec<f32> = (0..n * 3).map(|_| rnd() * mag).collect();
                let u: Vec<f32> = (0..n * 3).map(|_| rnd() * 4.0).collect();
                let (mut a, mut b) = (g.clone(), g.clone());
                (k.swiglu)(&mut a, &u, n);
                swiglu_scalar(&mut b, &u, n);
                assert_eq!(bits(&a), bits(&b), "{:?} swiglu n={n} mag={mag}", k.isa);
            }
        }
    }
}

/// Every table's GELU through ggml's f16 table (`Kernels::gelu`, plain and gated) equals the
/// scalar lookup (`elementwise::gelu_scalar`) bit for bit: on every f16 value (every table entry,
/// the last included), values that round across an f16 step, the ±10 bounds and past them, ±∞,
/// and lengths that leave every tail size; NaN stays NaN.
#[test]
fn gelu_matches_scalar() {
    use llama_core::kernels::elementwise::{gelu_scalar, gelu_table, GELU_TABLE_BOUND};
    let t = gelu_table();
    let b = GELU_TABLE_BOUND;
    let mut x: Vec<f32> = (0..=u16::MAX).map(|h| f16::from_bits(h).to_f32()).collect();
    let mut rng = Rng(0x5eed);
    x.extend((0..4000).map(|_| ((rng.next() >> 40) as f32 / (1u32 << 24) as f32 - 0.5) * 30.0));
    x.extend([b, -b, b.next_down(), b.next_up(), (-b).next_up(), (-b).next_down(), 65504.0, 65520.0, -65520.0]);
    x.extend([f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-8, -1e-8, 6.1e-5, -2.0f32.next_up()]);
    let up: Vec<f32> = (0..x.len()).map(|i| [1.5f32, -0.75, 0.0, -0.0, 3.0][i % 5]).collect();
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for k in Kernels::available() {
        for len in (0..40).chain([x.len()]) {
            for gated in [false, true] {
                let u = gated.then_some(&up[..len]);
                let (mut a, mut r) = (x[..len].to_vec(), x[..len].to_vec());
                (k.gelu)(&mut a, u, t);
                gelu_scalar(&mut r, u, t);
                assert_eq!(bits(&a), bits(&r), "{:?} gelu len={len} gated={gated}", k.isa);
            }
        }
        let mut nan = vec![f32::NAN; 20];
        (k.gelu)(&mut nan, None, t);
        assert!(nan.iter().all(|v| v.is_nan()), "{:?} gelu(NaN) = {nan:?}", k.isa);
    }
}

/// Every table has a row exactly for the types we compute with, with ggml's block layout, the
/// same `vec_dot_type` as ggml (`type_traits_cpu`), and `to_float` equal to `quant::dequantize_row`.
#[test]
fn table_rows_follow_ggml_type_traits() {
    use GgmlType::*;
    let supported: Vec<GgmlType> = GgmlType::ALL.into_iter().filter(|t| t.is_supported()).collect();
    assert_eq!(llama_core::kernels::scalar::types().collect::<Vec<_>>().len(), supported.len());
    let mut rng = Rng(31);
    for k in Kernels::available() {
        for t in GgmlType::ALL {
            let Some(row) = k.traits(t) else {
                assert!(!t.is_supported(), "{:?}: no row for {t}", k.isa);
                continue;
            };
            assert!(t.is_supported(), "{:?}: row for unsupported {t}", k.isa);
            assert_eq!((row.ggml_type, (row.block_size, row.type_size)), (t, t.block_layout()));
            let want = match t {
                Q4_0 | Q5_0 | Q8_0 | MXFP4 | IQ4_NL => Some(Q8_0),
                Q4_1 | Q5_1 => Some(Q8_1),
                Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS | TQ1_0 | TQ2_0 => Some(Q8_K),
                IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M => Some(Q8_K),
                F16 | BF16 | F32 => Some(t),
                _ => None,
            };
            assert_eq!(row.vec_dot_type, want, "{:?} {t}", k.isa);
            assert_eq!(row.vec_dot.is_some(), want.is_some(), "{:?} {t}", k.isa);
            // the grid i-quants are read, not made (llama.cpp needs an importance matrix for them)
            let made = !GRID_IQ.contains(&t);
            assert_eq!(row.from_float.is_some(), made, "{:?} {t}", k.isa);
            assert!(row.to_float.is_some(), "{:?} {t}", k.isa);
            let n = 512;
            let bytes = if made {
                q::quantize(t, &activations(&mut rng, n, Mode::Random)).unwrap()
            } else {
                weight_row(&mut rng, t, n, Mode::Random)
            };
            let mut got = vec![0f32; n];
            (row.to_float.unwrap())(&bytes, &mut got);
            assert_eq!(got, q::dequantize(t, &bytes, n).unwrap(), "{:?} {t} to_float", k.isa);
        }
    }
}

/// YaRN rope (`Rope` with `Yarn::llama`, as the gpt-oss family sets it up) against ggml_rope_ext
/// (llama-cpp-python's library, one-op graph) bit for bit, NeoX pairs, heads of 64 and 16, positions
/// 0..40 and up to 140000; and `Yarn::llama`'s attn_factor against llama_context's arithmetic.
#[test]
fn yarn_rope_matches_ggml() {
    use llama_core::kernels::elementwise::{Rope, RopeType, Yarn};
    let dir = std::env::temp_dir().join(format!("llama-kernels-rope-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !run_quant_ref("rope", &dir, "3", "llama-cpp-python's ggml, gguf-py or numpy") {
        return;
    }
    let want_attn = read_f32_file(&dir.join("rope.attn_factor.f32"))[0];
    let (n_head, freq_scale) = (4, 1.0 / 32.0);
    for hd in [64usize, 16] {
        let yarn = Yarn::llama(hd, 4096, 150000.0, freq_scale, 32.0, 1.0, 1.0);
        assert_eq!(yarn.attn_factor.to_bits(), want_attn.to_bits(), "attn_factor");
        let rope = Rope {
            n_rot: hd,
            freq_base: 150000.0,
            freq_scale,
            kind: RopeType::Neox,
            freq_factors: None,
            attn_factor: 1.0,
            yarn: Some(yarn),
        };
        let src = read_f32_file(&dir.join(format!("rope{hd}.src.f32")));
        let want = read_f32_file(&dir.join(format!("rope{hd}.out.f32")));
        let pos: Vec<i32> = std::fs::read(dir.join(format!("rope{hd}.pos.i32")))
            .unwrap()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let row = n_head * hd;
        for (t, &p) in pos.iter().enumerate() {
            let mut x = src[t * row..(t + 1) * row].to_vec();
            rope.apply(&mut x, hd, p as usize);
            for (i, (a, b)) in x.iter().zip(&want[t * row..(t + 1) * row]).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "head_dim {hd} pos {p} element {i}: {a} vs ggml {b}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Softmax with an attention sink (`elementwise::softmax_sink`, what attention runs for gpt-oss)
/// against ggml_soft_max_ext + ggml_soft_max_add_sinks (llama-cpp-python's library, one-op graph)
/// bit for bit, in the vector width of that build; sinks below, inside and above the scores.
#[test]
fn softmax_sink_matches_ggml() {
    use llama_core::kernels::elementwise::softmax_sink;
    use llama_core::kernels::SumOrders;
    let dir = std::env::temp_dir().join(format!("llama-kernels-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !run_quant_ref("sinks", &dir, "9", "llama-cpp-python's ggml (AVX2 or AVX-512), gguf-py or numpy") {
        return;
    }
    let orders = match std::fs::read_to_string(dir.join("sinks.build")).unwrap().trim() {
        "avx512" => SumOrders::Avx512,
        _ => SumOrders::Avx2,
    };
    let src = read_f32_file(&dir.join("sinks.src.f32"));
    let sk = read_f32_file(&dir.join("sinks.sk.f32"));
    let want = read_f32_file(&dir.join("sinks.out.f32"));
    let rows_per_head = src.len() / 256 / sk.len();
    for (r, (x, w)) in src.chunks_exact(256).zip(want.chunks_exact(256)).enumerate() {
        let mut y = x.to_vec();
        softmax_sink(&mut y, 0.125, sk[r / rows_per_head], orders);
        for i in 0..256 {
            assert_eq!(y[i].to_bits(), w[i].to_bits(), "{orders:?} row {r} entry {i}: {} vs ggml {}", y[i], w[i]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// NEON: the IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 dots apply the scalar reference's float formula in
/// its order over exact integer sums, so they equal the scalar table bit for bit.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_iq4_tq_dots_equal_scalar_bits() {
    use GgmlType::*;
    let mut rng = Rng(0x5eed_0a64);
    let mut checked = 0;
    for k in Kernels::available().into_iter().filter(|k| k.isa == llama_core::kernels::Isa::Neon) {
        for t in [IQ4_NL, IQ4_XS, TQ1_0, TQ2_0] {
            let act = vec_dot_type(t).unwrap();
            for n in sizes(t) {
                for mode in [Mode::Random, Mode::Extreme, Mode::Zero] {
                    let w = weight_row(&mut rng, t, n, mode);
                    let x = activations(&mut rng, n, if mode == Mode::Zero { Mode::Random } else { mode });
                    let mut a = vec![0u8; act.row_size(n as u64).unwrap() as usize];
                    (Kernels::SCALAR.from_float(act).unwrap())(&x, &mut a);
                    let (r, s) = ((Kernels::SCALAR.vec_dot(t).unwrap())(n, &w, &a), (k.vec_dot(t).unwrap())(n, &w, &a));
                    assert!(
                        r.to_bits() == s.to_bits() || (r.is_nan() && s.is_nan()),
                        "{} n={n} {mode:?}: {r} vs {s}",
                        t.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("neon iq4/tq: {checked} dots bit-identical to scalar");
}
