//! Against llama.cpp's own compiled ggml (the copy bundled with llama-cpp-python, driven through
//! ctypes by tests/py/quant_ref.py; skipped when that package is absent): reference quantizers
//! byte for byte, dequantization bit for bit, and vec_dot against ggml's generic and SIMD dots.

mod quant_common;

use llama_core::kernels::scalar::VecDot;
use llama_core::quant::*;
use llama_core::Error;
use quant_common::*;
use std::path::Path;

/// Runs `quant_ref.py MODE DIR SEED` (the ggml side) into a fresh directory; `None` (after a SKIP
/// line) when llama-cpp-python's ggml, gguf-py or numpy is unavailable.
fn run_reference(mode: &str, seed: &str) -> Option<std::path::PathBuf> {
    let dir = temp_dir(mode);
    let st =
        std::process::Command::new("python3").arg(script()).args([mode, dir.to_str().unwrap(), seed]).status().ok()?;
    match st.code() {
        Some(0) => Some(dir),
        Some(3) | Some(4) => {
            eprintln!("SKIP: llama-cpp-python's ggml (or gguf-py/numpy) is not available");
            None
        }
        _ => panic!("reference script failed: {st:?}"),
    }
}

/// The `llamacpp` reference files, made once per test binary run.
fn ggml_dir() -> Option<std::path::PathBuf> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| run_reference("llamacpp", "7")).clone()
}

const TYPES: [GgmlType; 17] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, MXFP4, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0]
};
const COLS: usize = 1024;

fn file(dir: &Path, t: GgmlType, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{}.{ext}", t.name()))
}

#[test]
fn quantize_matches_ggml_reference() {
    let Some(dir) = ggml_dir() else { return };
    let mut checked = 0;
    for t in TYPES {
        let src = read_f32(&file(&dir, t, "src.f32"));
        let want = std::fs::read(file(&dir, t, "q")).unwrap();
        let got = match quantize(t, &src) {
            Ok(g) => g,
            Err(Error::UnsupportedType(_)) => {
                eprintln!("{t}: quantization not implemented, skipped");
                continue;
            }
            Err(e) => panic!("{t}: {e}"),
        };
        let row = t.type_size() * COLS / t.block_size();
        let bad: Vec<usize> =
            (0..src.len() / COLS).filter(|&r| got[r * row..][..row] != want[r * row..][..row]).collect();
        // (IQ4_NL: `quantize` is llama-quantize's quantize_iq4_nl, see the script)
        assert!(bad.is_empty(), "{t}: rows {bad:?} differ from quantize_row_{}_ref", t.name());
        eprintln!("{t}: {} rows byte-identical to ggml", src.len() / COLS);
        checked += 1;
    }
    assert_eq!(checked, TYPES.len(), "every type must be quantizable");
}

#[test]
fn dequantize_matches_ggml() {
    let Some(dir) = ggml_dir() else { return };
    for t in TYPES {
        let path = file(&dir, t, "deq.f32");
        if !path.exists() {
            continue; // ggml has no dequantize_row for Q8_1
        }
        let q = std::fs::read(file(&dir, t, "q")).unwrap();
        let want = read_f32(&path);
        let got = dequantize(t, &q, want.len()).unwrap();
        let n = assert_bits_eq(&format!("{t} vs ggml dequantize_row"), &got, &want);
        eprintln!("{t}: {n} values bit-identical to ggml");
    }
}

// Not bit-identical by design: ggml's compiled generic dots let the compiler fuse the per-block
// float update into an FMA (x86 builds with -march=native), and its SIMD dots sum in 8 lanes; our
// reference keeps plain C float semantics (no FMA) so every target computes the same bits. The
// integer parts are exact everywhere, so the difference is a few float roundings: we bound it by
// 4e-6 · Σ|x·y| (observed ≤ ~3e-7; a wrong nibble or scale is orders of magnitude larger).

/// Σ|x·y| over the dequantized rows: the scale that float rounding errors of a dot are relative to.
fn abs_dot(t: GgmlType, w: &[u8], p: GgmlType, a: &[u8]) -> f64 {
    let x = dequantize(t, w, COLS).unwrap();
    let y = dequantize(p, a, COLS).unwrap();
    x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum()
}

#[test]
fn vec_dot_matches_ggml() {
    let Some(dir) = ggml_dir() else { return };
    use GgmlType::*;
    for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0] {
        let partner = match t {
            Q4_0 | Q5_0 | Q8_0 | MXFP4 | IQ4_NL => Q8_0,
            Q4_1 | Q5_1 => Q8_1,
            _ => Q8_K,
        };
        let w = std::fs::read(file(&dir, t, "q")).unwrap();
        let a = std::fs::read(file(&dir, t, "act")).unwrap();
        let dots = read_f32(&file(&dir, t, "dot.f32")); // [rows, 2]: generic, SIMD
        let (wr, ar) = (t.type_size() * COLS / t.block_size(), partner.type_size() * COLS / partner.block_size());
        let (mut exact, mut worst_generic, mut worst_simd, mut x86_exact) = (0, 0f64, 0f64, 0);
        let mut generic_off = Vec::new();
        let rows = dots.len() / 2;
        for r in 0..rows {
            let (wb, ab) = (&w[r * wr..][..wr], &a[r * ar..][..ar]);
            let ours = dot_bytes(t, wb, ab);
            let scale = abs_dot(t, wb, partner, ab).max(f64::MIN_POSITIVE);
            let (g, s) = (dots[2 * r], dots[2 * r + 1]);
            if !(ours.is_finite() && g.is_finite() && s.is_finite()) {
                // f16 scale overflow (huge rows): every implementation must agree on Inf / NaN.
                let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
                // (The ternary SIMD dots multiply 8 lane sums by an infinite scale, so a zero
                // lane makes them NaN where the generic dot's one block sum gives ±Inf.)
                let ternary = matches!(t, TQ1_0 | TQ2_0) && s.is_nan();
                assert!(same(ours, g) && (same(ours, s) || ternary), "{t} row {r}: ours {ours}, ggml {g} / {s}");
                exact += 1;
                continue;
            }
            if ours.to_bits() == g.to_bits() {
                exact += 1;
            }
            // llama.cpp's x86 order of this dot, written out (the reference of our x86 kernels),
            // is its SIMD dot bit for bit (llama-cpp-python's build here is x86 AVX2 or AVX-512)
            if let Some(order) = x86_order(t) {
                let o = order(COLS, wb, ab);
                assert_eq!(o.to_bits(), s.to_bits(), "{t} row {r}: kernels::ggml_x86 {o:e}, ggml SIMD {s:e}");
                x86_exact += 1;
            }
            let eg = (ours as f64 - g as f64).abs() / scale;
            let es = (ours as f64 - s as f64).abs() / scale;
            // The SIMD dot is what llama.cpp runs; hold us to it.
            assert!(es < 4e-6, "{t} row {r}: ours {ours:e}, ggml SIMD {s:e}, generic {g:e} (Σ|xy| {scale:e})");
            if eg < 4e-6 {
                worst_generic = worst_generic.max(eg);
            } else {
                // Seen for q5_0 on constant rows: this build's generic q5_0 dot disagrees with its
                // own SIMD dot and with the exact f64 sum; reported, not asserted.
                generic_off.push(r);
            }
            worst_simd = worst_simd.max(es);
        }
        if !generic_off.is_empty() {
            eprintln!("{t}: ggml generic disagrees with ggml SIMD and us on rows {generic_off:?}");
        }
        eprintln!("{t}: {exact}/{rows} rows bit-identical to ggml generic, {x86_exact} to ggml SIMD through kernels::ggml_x86; max error / Σ|xy|: generic {worst_generic:.1e}, SIMD {worst_simd:.1e}");
    }
}

/// A dot over byte rows, as a `VecDotFn`.
type DotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The `kernels::ggml_x86` order of ggml's SIMD `vec_dot` of `t`, where we reproduce it (x86 only).
#[cfg(target_arch = "x86_64")]
fn x86_order(t: GgmlType) -> Option<DotFn> {
    use llama_core::kernels::ggml_x86 as g;
    use GgmlType::*;
    Some(match t {
        Q4_1 => g::q4_1_lanes,
        Q5_0 => g::q5_0_lanes,
        Q5_1 => g::q5_1_lanes,
        Q8_0 => g::q8_0_lanes,
        Q2_K => g::q2_k_lanes,
        Q3_K => g::q3_k_lanes,
        Q5_K => g::q5_k_lanes,
        Q6_K => g::q6_k_lanes,
        _ => return None,
    })
}
#[cfg(not(target_arch = "x86_64"))]
fn x86_order(_: GgmlType) -> Option<DotFn> {
    None
}

fn dot_bytes(t: GgmlType, w: &[u8], a: &[u8]) -> f32 {
    use GgmlType::*;
    let n = COLS;
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
        MXFP4 => BlockMXFP4::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ4_NL => BlockIQ4NL::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ4_XS => BlockIQ4XS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        TQ1_0 => BlockTQ1_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        TQ2_0 => BlockTQ2_0::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_XXS => BlockIQ2XXS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_XS => BlockIQ2XS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ2_S => BlockIQ2S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ3_XXS => BlockIQ3XXS::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ3_S => BlockIQ3S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ1_S => BlockIQ1S::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        IQ1_M => BlockIQ1M::vec_dot(n, &read_blocks(w), &read_blocks(a)),
        _ => unreachable!(),
    }
}

/// MXFP4 × Q8_0 of every x86 table against the dot llama.cpp runs (`ggml_vec_dot_mxfp4_q8_0`, its
/// AVX2 path, from llama-cpp-python's library), bit for bit: rows of 32 blocks, and their first
/// 31 blocks (the AVX2 loop takes blocks in pairs and the odd last one apart).
#[test]
fn mxfp4_dot_is_bit_identical_to_llama_cpp() {
    let Some(dir) = ggml_dir() else { return };
    let t = GgmlType::MXFP4;
    let w = std::fs::read(file(&dir, t, "q")).unwrap();
    let a = std::fs::read(file(&dir, t, "act")).unwrap();
    let dots = read_f32(&file(&dir, t, "dot.f32")); // [rows, 2]: generic, SIMD
    let odd = read_f32(&file(&dir, t, "dot_odd.f32")); // [rows]: SIMD over 31 blocks
    let (wr, ar) = (17 * COLS / 32, 34 * COLS / 32);
    let mut checked = 0;
    for k in llama_core::kernels::Kernels::available() {
        if !matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512) {
            continue;
        }
        let dot = k.vec_dot(t).unwrap();
        for r in 0..odd.len() {
            let (wb, ab) = (&w[r * wr..][..wr], &a[r * ar..][..ar]);
            for (n, want) in [(COLS, dots[2 * r + 1]), (COLS - 32, odd[r])] {
                let got = dot(n, wb, ab);
                assert_eq!(got.to_bits(), want.to_bits(), "{:?} row {r} n={n}: {got} vs llama.cpp {want}", k.isa);
                // the portable statement of that order
                let order = llama_core::kernels::ggml_x86::mxfp4_lanes(n, wb, ab);
                assert_eq!(order.to_bits(), want.to_bits(), "ggml_x86::mxfp4_lanes row {r} n={n}");
                checked += 1;
            }
        }
    }
    eprintln!("mxfp4: {checked} dots bit-identical to llama.cpp's AVX2 ggml_vec_dot_mxfp4_q8_0");
}

/// `quantize_row_iq4_nl_ref` (no scale refinement, unlike the `quantize_iq4_nl` that `quantize`
/// runs) against ggml's byte for byte. A block below GROUP_MAX_EPS gets scale 0 and keeps
/// whatever levels ggml's reused stack buffer held (uninitialised for a row's first block), so
/// those blocks are compared on their scale bytes only.
#[test]
fn iq4_nl_ref_quantizer_matches_ggml() {
    let Some(dir) = ggml_dir() else { return };
    let t = GgmlType::IQ4_NL;
    let src = read_f32(&file(&dir, t, "src.f32"));
    let want = std::fs::read(file(&dir, t, "qref")).unwrap();
    let mut got = vec![BlockIQ4NL { d: half::f16::ZERO, qs: [0; 16] }; src.len() / 32];
    iq4::quantize_row_iq4_nl_ref(&src, &mut got);
    let got = blocks_as_bytes(&got);
    let (mut full, mut scale_only) = (0, 0);
    for (i, (g, w)) in got.chunks_exact(18).zip(want.chunks_exact(18)).enumerate() {
        if w[..2] == [0, 0] {
            assert_eq!(g[..2], w[..2], "block {i}: scale");
            scale_only += 1;
        } else {
            assert_eq!(g, w, "block {i} (row {})", i * 32 / COLS);
            full += 1;
        }
    }
    assert!(full > 3000, "too few non-zero blocks compared: {full}");
    eprintln!("iq4_nl ref: {full} blocks byte-identical to ggml, {scale_only} zero-scale blocks on their scale");
}

/// IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 dots of every x86 table against the SIMD dots llama.cpp runs
/// (`ggml_vec_dot_{iq4_nl_q8_0,iq4_xs_q8_K,tq1_0_q8_K,tq2_0_q8_K}`, AVX2 paths, from
/// llama-cpp-python's library), bit for bit; IQ4_NL also over each row's first 31 blocks (the AVX2
/// loop takes blocks in pairs and the odd last one apart).
#[test]
fn iq4_tq_dots_are_bit_identical_to_llama_cpp() {
    let Some(dir) = ggml_dir() else { return };
    use GgmlType::*;
    let mut checked = 0;
    for t in [IQ4_NL, IQ4_XS, TQ1_0, TQ2_0] {
        let p = if t == IQ4_NL { Q8_0 } else { Q8_K };
        let w = std::fs::read(file(&dir, t, "q")).unwrap();
        let a = std::fs::read(file(&dir, t, "act")).unwrap();
        let dots = read_f32(&file(&dir, t, "dot.f32")); // [rows, 2]: generic, SIMD
        let odd = (t == IQ4_NL).then(|| read_f32(&file(&dir, t, "dot_odd.f32"))); // [rows]
        let (wr, ar) = (t.type_size() * COLS / t.block_size(), p.type_size() * COLS / p.block_size());
        for k in llama_core::kernels::Kernels::available() {
            if !matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512) {
                continue;
            }
            let dot = k.vec_dot(t).unwrap();
            for r in 0..dots.len() / 2 {
                let (wb, ab) = (&w[r * wr..][..wr], &a[r * ar..][..ar]);
                let mut cases = vec![(COLS, dots[2 * r + 1])];
                if let Some(odd) = &odd {
                    cases.push((COLS - 32, odd[r]));
                }
                for (n, want) in cases {
                    let got = dot(n, wb, ab);
                    let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
                    // The odd last block goes through ggml's scalar tail `sumf += d * (sumi1 +
                    // sumi2)`, compiled for the host (-march=native): a build on an AMD EPYC
                    // host differs by one ulp there from the Intel build our tail follows (an
                    // FMA contraction or not: the product's rounding, seen as 1–2 ulps of the
                    // sum), so llama.cpp's own answer there is defined to a few ulps.
                    let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                    let tail_ok = n % 64 != 0 && ulp <= 4;
                    assert!(same || tail_ok, "{t} {:?} row {r} n={n}: {got:e} vs llama.cpp {want:e}", k.isa);
                    checked += 1;
                }
            }
        }
    }
    eprintln!("iq4/tq: {checked} x86 dots bit-identical to llama.cpp's SIMD dots");
}

/// The `gridiq` reference files (quant_ref.py), made once per test binary run.
fn gridiq_dir() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| run_reference("gridiq", "11")).as_deref()
}

/// The grid i-quants against llama.cpp's ggml (`gridiq` in quant_ref.py: random blocks with sane
/// f16 scales, since ggml makes these types only with an imatrix; Q8_K activations from
/// `quantize_row_q8_K_ref`): `dequantize_row_iq*` bit for bit, and the typed scalar reference and
/// every table's dot against `ggml_vec_dot_iq*_q8_K` generic and SIMD within 4e-6 · Σ|x·y| (the
/// integer parts are exact; ggml's compiled generic fuses the float update into an FMA and its
/// AVX2 dot sums super-blocks in 8 lanes); the x86 tables and `ggml_x86::grid_iq_lanes` equal
/// ggml's SIMD dot bit for bit.
#[test]
fn grid_iq_match_ggml() {
    let Some(dir) = gridiq_dir() else { return };
    use GgmlType::*;
    for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M] {
        let w = std::fs::read(file(dir, t, "q")).unwrap();
        let a = std::fs::read(file(dir, t, "act")).unwrap();
        let want = read_f32(&file(dir, t, "deq.f32"));
        let n = assert_bits_eq(&format!("{t} vs ggml dequantize_row"), &dequantize(t, &w, want.len()).unwrap(), &want);
        let dots = read_f32(&file(dir, t, "dot.f32")); // [rows, 2]: generic, SIMD
        let (wr, ar) = (t.type_size() * COLS / 256, 292 * COLS / 256);
        let (mut exact, mut worst) = (0, 0f64);
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut simd_off: Vec<(usize, f32, f32)> = Vec::new();
        for r in 0..dots.len() / 2 {
            let (wb, ab) = (&w[r * wr..][..wr], &a[r * ar..][..ar]);
            let scale = abs_dot(t, wb, Q8_K, ab).max(f64::MIN_POSITIVE);
            let (g, s) = (dots[2 * r], dots[2 * r + 1]);
            let ours = dot_bytes(t, wb, ab);
            exact += (ours.to_bits() == g.to_bits()) as usize;
            let mut check = |what: &str, v: f32| {
                for (theirs, which) in [(g, "generic"), (s, "SIMD")] {
                    let e = (v as f64 - theirs as f64).abs() / scale;
                    assert!(e < 4e-6, "{t} row {r}: {what} {v:e}, ggml {which} {theirs:e} (Σ|xy| {scale:e})");
                    worst = worst.max(e);
                }
            };
            check("scalar reference", ours);
            // llama.cpp's x86 order, written out, is its SIMD dot bit for bit
            #[cfg(target_arch = "x86_64")]
            {
                let o = llama_core::kernels::ggml_x86::grid_iq_lanes(t, COLS, wb, ab);
                if o.to_bits() != s.to_bits() {
                    simd_off.push((r, o, s));
                }
            }
            for k in llama_core::kernels::Kernels::available() {
                let v = (k.vec_dot(t).unwrap())(COLS, wb, ab);
                check(k.isa.name(), v);
                if matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512) {
                    assert_eq!(v.to_bits(), s.to_bits(), "{t} row {r}: {:?} table {v:e}, ggml SIMD {s:e}", k.isa);
                }
            }
        }
        assert!(
            simd_off.is_empty(),
            "{t}: kernels::ggml_x86::grid_iq_lanes differs from ggml's SIMD dot on {} rows: {:?}",
            simd_off.len(),
            &simd_off[..simd_off.len().min(4)]
        );
        eprintln!(
            "{t}: {n} values bit-identical to ggml's dequantize_row; dots {exact}/{} rows bit-identical to ggml generic, max error / Σ|xy| {worst:.1e}",
            dots.len() / 2
        );
    }
}

/// Grid i-quant matmuls against ggml-cpu's own `ggml_mul_mat` (llama-cpp-python's library, 1
/// thread, same weights and float32 activations): 16 tokens, which llama.cpp's x86 builds run
/// through their tiled GEMM (`kernels::ggml_x86::grid_iq_tiled`), and 7 tokens, which take
/// `ggml_vec_dot` per pair. Every x86 table's `matmul_with` (its Q8_K converter, its
/// `types::BatchDot` from 8 tokens) equals ggml bit for bit; so does `grid_iq_tiled` over the
/// table's Q8_K activations. The scalar table (the typed reference, its own order) is within
/// 4e-6 · Σ|x·y|.
#[test]
fn grid_iq_matmul_matches_ggml_tiled() {
    let Some(dir) = gridiq_dir() else { return };
    use llama_core::kernels::{matmul_with, Isa, Kernels, MatmulScratch, QTensor, ThreadPool};
    use GgmlType::*;
    let (rows, cols) = (64, COLS);
    let pool = ThreadPool::new(2);
    for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M] {
        let w = std::fs::read(file(dir, t, "q")).unwrap();
        let x = read_f32(&file(dir, t, "mm.src.f32")); // [16][cols]
        let wr = t.type_size() * cols / 256;
        let qt = QTensor::new(t, &w, rows, cols);
        let mut checked = 0;
        for (n_tok, ext) in [(16, "mm.out.f32"), (7, "mm7.out.f32")] {
            let want = read_f32(&file(dir, t, ext)); // [n_tok][rows]
            assert_eq!(want.len(), n_tok * rows);
            for k in Kernels::available() {
                let mut out = vec![0f32; n_tok * rows];
                matmul_with(&k, &pool, &qt, &x[..n_tok * cols], n_tok, &mut out, &mut MatmulScratch::new()).unwrap();
                let x86 = matches!(k.isa, Isa::Avx2 | Isa::Avx512);
                // activations as this table converts them (the x86 converters are ggml's, bit for bit)
                let q8k = k.from_float(Q8_K).unwrap();
                let mut a = vec![0u8; 292 * cols / 256];
                for tok in 0..n_tok {
                    q8k(&x[tok * cols..(tok + 1) * cols], &mut a);
                    for r in 0..rows {
                        let (got, g) = (out[tok * rows + r], want[tok * rows + r]);
                        let wb = &w[r * wr..(r + 1) * wr];
                        if x86 {
                            assert_eq!(
                                got.to_bits(),
                                g.to_bits(),
                                "{t} {:?} {n_tok} tokens, token {tok} row {r}: {got:e} vs ggml {g:e}",
                                k.isa
                            );
                            #[cfg(target_arch = "x86_64")]
                            if n_tok >= 8 {
                                let o = llama_core::kernels::ggml_x86::grid_iq_tiled(t, cols, wb, &a);
                                assert_eq!(o.to_bits(), g.to_bits(), "{t} ggml_x86::grid_iq_tiled token {tok} row {r}");
                            }
                        } else {
                            let scale = abs_dot(t, wb, Q8_K, &a).max(f64::MIN_POSITIVE);
                            let e = (got as f64 - g as f64).abs() / scale;
                            assert!(
                                e < 4e-6,
                                "{t} {:?} token {tok} row {r}: {got:e} vs ggml {g:e} (Σ|xy| {scale:e})",
                                k.isa
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        eprintln!("{t}: {checked} matmul outputs checked against ggml_mul_mat (16 tokens: tiled GEMM, 7: vec_dot)");
    }
}

/// F16 and F32 matmuls against ggml-cpu's own `ggml_mul_mat` (`sgemm` in quant_ref.py: llama-cpp-
/// python's library, 1 thread): 16, 7 and 2 tokens over 64 rows of 1024, which llama.cpp's x86
/// builds run through llamafile's tinyBLAS, 1 token (`ggml_vec_dot_f16`/`_f32`), and the shapes
/// tinyBLAS declines (62 rows; rows of 1000 on an AVX-512 build), which take `vec_dot` per pair.
/// The table of the build's width (AVX-512 or AVX2) equals ggml bit for bit on every shape; the
/// other tables (their own widths) agree within 1e-6 · Σ|w·x|.
#[test]
fn f16_f32_matmul_matches_ggml() {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| run_reference("sgemm", "5")).as_deref() else { return };
    use llama_core::kernels::{matmul_with, Isa, Kernels, MatmulScratch, QTensor, ThreadPool};
    let build = std::fs::read_to_string(dir.join("sgemm.build")).unwrap();
    let pool = ThreadPool::new(2);
    let mut exact = 0;
    for (t, name) in [(GgmlType::F16, "f16"), (GgmlType::F32, "f32")] {
        for (rows, cols) in [(64, 1024), (62, 1024), (64, 1000)] {
            let stem = dir.join(format!("{name}_{rows}x{cols}"));
            let w = std::fs::read(stem.with_extension("w")).unwrap();
            let x = read_f32(&stem.with_extension("x.f32")); // [16][cols]
            let wf: Vec<f32> = match t {
                GgmlType::F16 => w.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                _ => w.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            };
            let qt = QTensor::new(t, &w, rows, cols);
            for n in [16usize, 7, 2, 1] {
                let want = read_f32(&stem.with_extension(format!("mm{n}.f32"))); // [n][rows]
                for k in Kernels::available() {
                    let mut out = vec![f32::NAN; n * rows];
                    matmul_with(&k, &pool, &qt, &x[..n * cols], n, &mut out, &mut MatmulScratch::new()).unwrap();
                    let same_build = matches!((k.isa, build.as_str()), (Isa::Avx512, "avx512") | (Isa::Avx2, "avx2"));
                    for tok in 0..n {
                        for r in 0..rows {
                            let (got, g) = (out[tok * rows + r], want[tok * rows + r]);
                            let ctx = format!("{name} {rows}x{cols} {:?} {n} tokens, token {tok} row {r}", k.isa);
                            if same_build {
                                assert_eq!(got.to_bits(), g.to_bits(), "{ctx}: {got:e} vs ggml {g:e}");
                                exact += 1;
                            } else {
                                let xs = &x[tok * cols..(tok + 1) * cols];
                                let scale: f64 = wf[r * cols..(r + 1) * cols]
                                    .iter()
                                    .zip(xs)
                                    .map(|(a, b)| (a * b).abs() as f64)
                                    .sum();
                                assert!((got as f64 - g as f64).abs() <= 1e-6 * scale, "{ctx}: {got:e} vs ggml {g:e}");
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("F16/F32 matmul: {exact} outputs bit-identical to ggml_mul_mat ({build} build)");
}

/// The directory of llama-cpp-python's shared libraries (`libggml-cpu.so`), or `None`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn ggml_lib_dir() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Single-thread speed of our single-token dots against llama.cpp's own `ggml_vec_dot_<type>_q8_K`
/// (llama-cpp-python's `libggml-cpu.so`, loaded into this process): the same weight and Q8_K
/// activation bytes (the `gridiq` / `llamacpp` reference data tiled to 512 rows of 2048 elements,
/// about L2-sized like a tg matmul's share; `DOT_SPEED_ROWS` sets another count), every result bit-identical to llama.cpp's, then per type
/// the best of 15 interleaved passes of thread CPU time, printed as a ratio (ggml time / our time:
/// above 1 means ours is faster). Ignored by default: a timing, run it on a quiet machine with
/// `cargo test --release -p llama-core --test quant_ggml dot_speed_vs_ggml -- --ignored --nocapture`.
#[test]
#[ignore]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn dot_speed_vs_ggml() {
    use std::ffi::{c_char, c_int, c_void, CString};
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
        fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
    }
    type GgmlDot = unsafe extern "C" fn(c_int, *mut f32, usize, *const c_void, usize, *const c_void, usize, c_int);
    const RTLD_NOW: c_int = 2;
    const RTLD_GLOBAL: c_int = 0x100;
    const CLOCK_THREAD_CPUTIME_ID: c_int = 3;
    let thread_secs = || {
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer of the C layout clock_gettime writes.
        unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.sec as f64 + ts.nsec as f64 * 1e-9
    };
    let (Some(lib), Some(grid), Some(tern)) = (ggml_lib_dir(), gridiq_dir(), ggml_dir()) else {
        eprintln!("SKIP: llama-cpp-python's ggml is not available");
        return;
    };
    let open = |name: &str| {
        let p = CString::new(format!("{lib}/{name}")).unwrap();
        // SAFETY: a NUL-terminated path; dlopen has no other precondition.
        let h = unsafe { dlopen(p.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
        assert!(!h.is_null(), "dlopen {name} failed");
        h
    };
    open("libggml-base.so");
    let cpu = open("libggml-cpu.so");
    let init = CString::new("ggml_cpu_init").unwrap();
    // SAFETY: a NUL-terminated symbol name of the loaded library.
    let init = unsafe { dlsym(cpu, init.as_ptr()) };
    assert!(!init.is_null(), "no ggml_cpu_init in libggml-cpu.so");
    // SAFETY: `void ggml_cpu_init(void)`; it fills the f16→f32 table the dots read scales through.
    unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(init)() };
    use GgmlType::*;
    // DOT_SPEED_ROWS: more rows to time a stream from L3 / memory as in a whole model's tg
    let rows = std::env::var("DOT_SPEED_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let cols = 2048;
    let kernels: Vec<_> = llama_core::kernels::Kernels::available()
        .into_iter()
        .filter(|k| matches!(k.isa, llama_core::kernels::Isa::Avx2 | llama_core::kernels::Isa::Avx512))
        .collect();
    // DOT_SPEED_TYPES: a comma-separated subset (type names as `iq2_xs`)
    let only = std::env::var("DOT_SPEED_TYPES").unwrap_or_default();
    for t in [IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0] {
        if !only.is_empty() && !only.split(',').any(|n| n == t.name()) {
            continue;
        }
        let dir = if matches!(t, TQ1_0 | TQ2_0) { tern.as_path() } else { grid };
        let w0 = std::fs::read(file(dir, t, "q")).unwrap();
        let a0 = std::fs::read(file(dir, t, "act")).unwrap();
        let (wr, ar) = (t.type_size() * cols / t.block_size(), 292 * cols / 256);
        // rows 16.. of the reference data only: the first ones hold the extreme scales (Inf, NaN)
        let (w0, a0) = (&w0[w0.len() / 4..], &a0[a0.len() / 4..]);
        let w: Vec<u8> = w0.iter().copied().cycle().take(rows * wr).collect();
        let a: Vec<u8> = a0.iter().copied().cycle().take(ar).collect();
        let sym = CString::new(format!("ggml_vec_dot_{}_q8_K", t.name())).unwrap();
        // SAFETY: a NUL-terminated symbol name of the loaded library.
        let f = unsafe { dlsym(cpu, sym.as_ptr()) };
        assert!(!f.is_null(), "no {sym:?} in libggml-cpu.so");
        // SAFETY: the symbol is ggml's `ggml_vec_dot_t` (ggml-cpu/quants.h).
        let ggml: GgmlDot = unsafe { std::mem::transmute::<*mut c_void, GgmlDot>(f) };
        let mut theirs = vec![0f32; rows];
        let run_ggml = |out: &mut [f32]| {
            for (r, o) in out.iter_mut().enumerate() {
                // SAFETY: whole blocks of `cols` elements of the weight row and the activations.
                unsafe { ggml(cols as c_int, o, 0, w[r * wr..].as_ptr().cast(), 0, a.as_ptr().cast(), 0, 1) };
            }
        };
        run_ggml(&mut theirs);
        for k in &kernels {
            let dot = k.vec_dot(t).unwrap();
            let run_ours = |out: &mut [f32]| {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = dot(cols, &w[r * wr..][..wr], &a);
                }
            };
            let mut ours = vec![0f32; rows];
            run_ours(&mut ours);
            for r in 0..rows {
                let same = ours[r].to_bits() == theirs[r].to_bits() || (ours[r].is_nan() && theirs[r].is_nan());
                assert!(same, "{t} {:?} row {r}: {:e} vs llama.cpp {:e}", k.isa, ours[r], theirs[r]);
            }
            let (mut best_ours, mut best_ggml) = (f64::MAX, f64::MAX);
            for _ in 0..15 {
                let t0 = thread_secs();
                run_ours(&mut ours);
                let t1 = thread_secs();
                run_ggml(&mut theirs);
                let t2 = thread_secs();
                best_ours = best_ours.min(t1 - t0);
                best_ggml = best_ggml.min(t2 - t1);
            }
            std::hint::black_box((&ours, &theirs));
            eprintln!(
                "{t:>8} {:>6}: ours {:9.1} µs, llama.cpp {:9.1} µs per {rows}×{cols} rows: ratio {:.2}",
                k.isa.name(),
                best_ours * 1e6,
                best_ggml * 1e6,
                best_ggml / best_ours
            );
        }
    }
}
