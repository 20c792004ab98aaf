//! The kernel tables the forward pass uses (`kernels::Kernels`, scalar and every SIMD table this CPU
//! runs) against the quant references: activation quantizers byte-identical, dots within float
//! rounding of the reference dot (bound 4e-6·Σ|x·y|, as against llama.cpp in quant_ggml.rs).

use llama_core::kernels::scalar::VecDot;
use llama_core::kernels::{vec_dot_type, Kernels};
use llama_core::quant::*;

fn rows(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    // splitmix64 → roughly Gaussian by summing uniforms; deterministic, dependency-free.
    let mut s = seed;
    let mut u = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 53) as f32
    };
    (0..n).map(|_| ((0..4).map(|_| u()).sum::<f32>() - 2.0) * scale).collect()
}

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
        _ => unreachable!(),
    }
}

#[test]
fn activation_quantizers_are_byte_identical() {
    let n = 1024;
    for k in Kernels::available() {
        for (i, scale) in [0.0f32, 1e-3, 1.0, 300.0].into_iter().enumerate() {
            let x = rows(i as u64, n, scale);
            for t in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
                let want = quantize(t, &x).unwrap();
                let mut got = vec![0u8; want.len()];
                (k.from_float(t).unwrap())(&x, &mut got);
                assert_eq!(got, want, "{:?} {t} (σ={scale}) differs from quantize_row_{}_ref", k.isa, t.name());
            }
        }
    }
}

#[test]
fn dots_match_reference() {
    use GgmlType::*;
    let n = 2048;
    for k in Kernels::available() {
        for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
            let act = vec_dot_type(t).unwrap();
            for seed in 0..4u64 {
                let w = quantize(t, &rows(100 + seed, n, 0.05)).unwrap();
                let a = quantize(act, &rows(200 + seed, n, 1.5)).unwrap();
                let want = reference_dot(t, n, &w, &a);
                let got = (k.vec_dot(t).unwrap())(n, &w, &a);
                let x = dequantize(t, &w, n).unwrap();
                let y = dequantize(act, &a, n).unwrap();
                let scale: f64 = x.iter().zip(&y).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
                assert!(
                    (got as f64 - want as f64).abs() <= 4e-6 * scale,
                    "{:?} {t}: kernel {got} vs reference {want} (Σ|xy| {scale})",
                    k.isa
                );
            }
        }
        eprintln!("{:?}: 10 dot kernels within 4e-6·Σ|xy| of the references", k.isa);
    }
}
