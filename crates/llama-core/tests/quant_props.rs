//! Properties that need no external reference (so they run everywhere, CI included): round-trip
//! error of every quantizer on Gaussian rows, exactness on rows a format can represent, dots equal
//! to the f64 dot of the dequantized rows, unaligned buffers, and length errors.

use llama_core::kernels::scalar::VecDot;
use llama_core::quant::*;

/// xorshift64* → standard normal via Box–Muller; deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
    fn row(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

const QUANTIZABLE: [GgmlType; 15] = {
    use GgmlType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K]
};

/// Relative RMS error bound on N(0, σ²) rows: about 1.5× what each format achieves (measured
/// values in docs/notes/quant.md); a packing or scale bug lands far above.
fn rel_rmse_bound(t: GgmlType) -> f64 {
    use GgmlType::*;
    match t {
        F32 => 0.0,
        F16 => 5e-4,
        BF16 => 4e-3,
        Q4_0 => 0.15,
        Q4_1 => 0.13,
        Q5_0 => 0.075,
        Q5_1 => 0.065,
        Q8_0 | Q8_1 => 0.006,
        Q2_K => 0.45,
        Q3_K => 0.23,
        Q4_K => 0.13,
        Q5_K => 0.055,
        Q6_K => 0.035,
        Q8_K => 0.011,
        _ => unreachable!(),
    }
}

fn rel_rmse(x: &[f32], y: &[f32]) -> f64 {
    let e: f64 = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let s: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
    (e / s).sqrt()
}

#[test]
fn round_trip_error_is_bounded() {
    let mut rng = Rng(0x1234_5678);
    for t in QUANTIZABLE {
        for scale in [1e-3f32, 1.0, 100.0] {
            let x = rng.row(4096, scale); // [4096]
            let q = quantize(t, &x).unwrap();
            let y = dequantize(t, &q, x.len()).unwrap();
            let err = rel_rmse(&x, &y);
            eprintln!("{t} σ={scale}: relative RMS error {err:.2e}");
            assert!(err <= rel_rmse_bound(t), "{t} σ={scale}: relative RMS error {err:.3e} > {}", rel_rmse_bound(t));
        }
    }
}

#[test]
fn special_rows() {
    for t in QUANTIZABLE {
        let n = 512;
        // All zeros must come back as zeros (no NaN from 0/0 scales).
        let y = dequantize(t, &quantize(t, &vec![0f32; n]).unwrap(), n).unwrap();
        assert!(y.iter().all(|v| *v == 0.0), "{t}: zeros → {:?}", &y[..4]);
        // A constant row: exact or within the f16 rounding of the scales.
        // (Magnitudes where every format's f16 scale stays a normal number.)
        for c in [0.25f32, -3.0, 1.5] {
            let y = dequantize(t, &quantize(t, &vec![c; n]).unwrap(), n).unwrap();
            let tol = if matches!(t, GgmlType::BF16) { 4e-3 } else { 2e-3 } * c.abs();
            assert!(y.iter().all(|v| (v - c).abs() <= tol), "{t}: constant {c} → {}", y[0]);
        }
        // Small integers with one value of largest magnitude are exact in the 8-bit formats.
        if matches!(t, GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8_K) {
            let x: Vec<f32> = (0..n).map(|i| if i % 32 == 0 { -127.0 } else { (i % 7) as f32 - 3.0 }).collect();
            let y = dequantize(t, &quantize(t, &x).unwrap(), n).unwrap();
            assert_eq!(x, y, "{t}: integers not exact");
        }
    }
}

#[test]
fn unaligned_buffers_give_same_bytes() {
    let mut rng = Rng(99);
    let x = rng.row(512, 1.0);
    for t in QUANTIZABLE {
        let want = quantize(t, &x).unwrap();
        let mut buf = vec![0u8; want.len() + 3];
        for off in 1..4 {
            quantize_row(t, &x, &mut buf[off..off + want.len()]).unwrap();
            assert_eq!(&buf[off..off + want.len()], &want[..], "{t} at offset {off}");
            let mut y = vec![0f32; x.len()];
            dequantize_row(t, &buf[off..off + want.len()], &mut y).unwrap();
            assert_eq!(y, dequantize(t, &want, x.len()).unwrap(), "{t} dequantize at offset {off}");
        }
    }
}

#[test]
fn length_errors_name_the_problem() {
    let x = vec![0f32; 64];
    let e = quantize_row(GgmlType::Q4_0, &x, &mut [0u8; 35]).unwrap_err().to_string();
    assert!(e.contains("q4_0") && e.contains("35") && e.contains("36"), "{e}");
    let e = quantize_row(GgmlType::Q4_K, &x, &mut [0u8; 144]).unwrap_err().to_string();
    assert!(e.contains("q4_K") && e.contains("64"), "{e}");
    let e = quantize(GgmlType::IQ3_XXS, &x).unwrap_err().to_string();
    assert!(e.contains("iq3_xxs"), "{e}");
    let e = dequantize(GgmlType::Q8_0, &[0u8; 34], 64).unwrap_err().to_string();
    assert!(e.contains("34") && e.contains("68"), "{e}");
}

/// Each dot equals the f64 dot of the dequantized rows up to f32 rounding.
#[test]
fn vec_dot_equals_dot_of_dequantized() {
    use GgmlType::*;
    let mut rng = Rng(7);
    let n = 2048;
    for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K] {
        let w = quantize(t, &rng.row(n, 0.05)).unwrap();
        let partner = match t {
            Q4_0 | Q5_0 | Q8_0 => Q8_0,
            Q4_1 | Q5_1 => Q8_1,
            _ => Q8_K,
        };
        let a = quantize(partner, &rng.row(n, 2.0)).unwrap();
        let x = dequantize(t, &w, n).unwrap();
        let y = dequantize(partner, &a, n).unwrap();
        let exact: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        let ours = match t {
            Q4_0 => BlockQ4_0::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q4_1 => BlockQ4_1::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q5_0 => BlockQ5_0::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q5_1 => BlockQ5_1::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q8_0 => BlockQ8_0::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q4_K => BlockQ4K::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q6_K => BlockQ6K::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            _ => unreachable!(),
        };
        // Q4_1/Q5_1 use the f16-rounded s = d·Σq of Q8_1, so their dot differs from the exact one
        // by up to |m|·|Σ rounding of s| — allow the f16 relative step on that term.
        let tol = if matches!(t, Q4_1 | Q5_1) { 1e-3 } else { 4e-6 } * scale;
        assert!((ours as f64 - exact).abs() <= tol, "{t}: {ours} vs {exact} (Σ|xy| {scale})");
    }
}

/// Q2_K, Q3_K, Q5_K (which we read but do not write): dot of random blocks vs dequantized dot.
#[test]
fn k_dots_on_random_blocks() {
    use GgmlType::*;
    let mut rng = Rng(11);
    let n = 1024;
    let a = quantize(Q8_K, &rng.row(n, 1.0)).unwrap();
    let y = dequantize(Q8_K, &a, n).unwrap();
    for t in [Q2_K, Q3_K, Q5_K] {
        let nb = n / 256;
        let mut w: Vec<u8> = (0..nb * t.type_size()).map(|_| (rng.uniform() * 256.0) as u8).collect();
        // sane f16 scales at the format's d/dmin offsets
        let offs: &[usize] = match t {
            Q2_K => &[80, 82],
            Q3_K => &[108],
            _ => &[0, 2],
        };
        for b in 0..nb {
            for &o in offs {
                let v = half::f16::from_f32(rng.normal() * 0.01);
                w[b * t.type_size() + o..][..2].copy_from_slice(&v.to_le_bytes());
            }
        }
        let x = dequantize(t, &w, n).unwrap();
        let exact: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let scale: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        let ours = match t {
            Q2_K => BlockQ2K::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            Q3_K => BlockQ3K::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
            _ => BlockQ5K::vec_dot(n, &read_blocks(&w), &read_blocks(&a)),
        };
        assert!((ours as f64 - exact).abs() <= 4e-6 * scale, "{t}: {ours} vs {exact} (Σ|xy| {scale})");
    }
}

/// Float weight rows against activations of the same type (the table's float dots): products
/// summed in f64, then rounded once.
#[test]
fn float_dots_equal_f64_dot() {
    use half::{bf16, f16};
    use llama_core::quant::float::*;
    let mut rng = Rng(5);
    let n = 1000;
    let x = rng.row(n, 0.1);
    let y = rng.row(n, 3.0);
    let (xh, yh): (Vec<f16>, Vec<f16>) =
        (x.iter().map(|&v| f16::from_f32(v)).collect(), y.iter().map(|&v| f16::from_f32(v)).collect());
    let (xb, yb): (Vec<bf16>, Vec<bf16>) =
        (x.iter().map(|&v| f32_to_bf16(v)).collect(), y.iter().map(|&v| f32_to_bf16(v)).collect());
    let exact = |w: &dyn Fn(usize) -> (f32, f32)| -> f64 { (0..n).map(|i| w(i).0 as f64 * w(i).1 as f64).sum() };
    let scale: f64 = (0..n).map(|i| (x[i] as f64 * y[i] as f64).abs()).sum();
    for (name, got, want) in [
        ("f32", f32::vec_dot(n, &x, &y), exact(&|i| (x[i], y[i]))),
        ("f16", f16::vec_dot(n, &xh, &yh), exact(&|i| (xh[i].to_f32(), yh[i].to_f32()))),
        ("bf16", bf16::vec_dot(n, &xb, &yb), exact(&|i| (bf16_to_f32(xb[i]), bf16_to_f32(yb[i])))),
    ] {
        // Only the f32 rounding of each product and of the final sum separate us from the f64 dot.
        assert!((got as f64 - want).abs() <= 1e-6 * scale, "{name}: {got} vs {want}");
    }
    // bf16 conversion: round to nearest even on the dropped 16 bits, NaN stays NaN (and quiet).
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80); // tie → even
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82); // tie → even (up)
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
    assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0); // sNaN → quiet NaN
    assert_eq!(f32_to_bf16(f32::from_bits(0x7f7f_ffff)).to_bits(), 0x7f80); // overflow → Inf
}
