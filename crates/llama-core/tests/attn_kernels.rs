//! The attention kernels of every table this machine can run (`Kernels::attn_*`, `round_f16`)
//! against the scalar reference: random inputs, odd lengths and strides, extreme values.
//! Q·K may differ only by summation order (≤ 1e-5 of Σ|k·q|); P·V and rounding are bit-identical.

use half::f16;
use llama_core::cpu::Kernels;

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
    /// Mostly ordinary values, sometimes huge, tiny (f16 subnormal range) or zero.
    fn wild(&mut self) -> f32 {
        let x = self.f32();
        match self.next() % 16 {
            0 => x * 60000.0,
            1 => x * 1e-6,
            2 => 0.0,
            3 => -0.0,
            _ => x * 4.0,
        }
    }
}

const LENS: [usize; 12] = [1, 3, 4, 7, 8, 15, 16, 17, 31, 64, 100, 256];

fn rounded(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

#[test]
fn attn_kq_matches_scalar() {
    let mut rng = Rng(7);
    for k in Kernels::available() {
        for &n in &LENS {
            for &(nk, nq, pad) in &[(1, 1, 0), (5, 3, 1), (9, 4, 3), (17, 9, 0), (3, 13, 5)] {
                let ks = n + pad;
                let os = nk + pad;
                let keys: Vec<f32> = (0..nk * ks).map(|_| rng.wild()).collect();
                let k16: Vec<f16> = keys.iter().map(|&v| f16::from_f32(v)).collect();
                let k32 = rounded(&keys); // f16-valued, finite
                let q = rounded(&(0..nq * n).map(|_| rng.wild()).collect::<Vec<_>>());
                let mut want16 = vec![0.0; nq * os];
                let mut got16 = want16.clone();
                let (mut want32, mut got32) = (want16.clone(), want16.clone());
                (Kernels::SCALAR.attn_kq_f16)(n, &k16, ks, nk, &q, nq, &mut want16, os);
                (k.attn_kq_f16)(n, &k16, ks, nk, &q, nq, &mut got16, os);
                (Kernels::SCALAR.attn_kq_f32)(n, &k32, ks, nk, &q, nq, &mut want32, os);
                (k.attn_kq_f32)(n, &k32, ks, nk, &q, nq, &mut got32, os);
                for i in 0..nq {
                    for j in 0..nk {
                        let mag: f64 = (0..n).map(|d| (k32[j * ks + d] as f64 * q[i * n + d] as f64).abs()).sum();
                        let tol = 1e-5 * mag + 1e-30;
                        for (w, g, name) in [(want16[i * os + j], got16[i * os + j], "f16"), (want32[i * os + j], got32[i * os + j], "f32")] {
                            assert!(((w - g) as f64).abs() <= tol, "{:?} {name} n={n} i={i} j={j}: {g} vs {w} (Σ|kq| {mag})", k.isa);
                        }
                    }
                }
                // Entries between rows (stride padding) untouched.
                for i in 0..nq {
                    for j in nk..os {
                        if i * os + j < got16.len() {
                            assert_eq!(got16[i * os + j], 0.0);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn attn_pv_is_bit_identical_to_scalar() {
    let mut rng = Rng(11);
    for k in Kernels::available() {
        for &n in &LENS {
            for &(nv, nq, pad) in &[(1, 1, 0), (6, 2, 1), (33, 4, 0), (10, 7, 3), (2, 9, 2)] {
                let vs = n + pad;
                let ps = nv + pad;
                let vals: Vec<f32> = rounded(&(0..nv * vs).map(|_| rng.wild()).collect::<Vec<_>>());
                let v16: Vec<f16> = vals.iter().map(|&x| f16::from_f32(x)).collect();
                let v32: Vec<f32> = (0..nv * vs).map(|_| rng.wild()).collect();
                // Probabilities in [0, 1], f16-valued (the f16 kernels require it), some zero.
                let p: Vec<f32> = rounded(&(0..nq * ps).map(|_| if rng.next() % 5 == 0 { 0.0 } else { rng.f32().abs() }).collect::<Vec<_>>());
                let o0: Vec<f32> = (0..nq * n).map(|_| rng.f32()).collect();
                let (mut w16, mut g16, mut w32, mut g32) = (o0.clone(), o0.clone(), o0.clone(), o0.clone());
                (Kernels::SCALAR.attn_pv_f16)(n, &v16, vs, nv, &p, ps, nq, &mut w16);
                (k.attn_pv_f16)(n, &v16, vs, nv, &p, ps, nq, &mut g16);
                (Kernels::SCALAR.attn_pv_f32)(n, &v32, vs, nv, &p, ps, nq, &mut w32);
                (k.attn_pv_f32)(n, &v32, vs, nv, &p, ps, nq, &mut g32);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&g16), bits(&w16), "{:?} f16 n={n} nv={nv} nq={nq}", k.isa);
                assert_eq!(bits(&g32), bits(&w32), "{:?} f32 n={n} nv={nv} nq={nq}", k.isa);
            }
        }
    }
}

#[test]
fn round_f16_is_bit_identical_to_half() {
    let mut rng = Rng(5);
    let mut x: Vec<f32> = (0..1000).map(|_| rng.wild()).collect();
    x.extend([
        65504.0, 65519.99, 65520.0, 1e9, -1e9, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE,
        5.96e-8, 2.98e-8, 2.99e-8, 1e-8, 6.1e-5, 1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0, -0.0, f32::NAN,
    ]);
    // Every f16 value and the midpoints next to it.
    for h in 0..=u16::MAX {
        let v = f16::from_bits(h).to_f32();
        if v.is_finite() {
            x.extend([v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().wrapping_sub(1))]);
        }
    }
    let want: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    for k in Kernels::available() {
        for len in [x.len(), 1, 7, 8, 9, 17] {
            let mut got = x[..len].to_vec();
            (k.round_f16)(&mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{:?} x={:e}: {g:e} vs {w:e}", k.isa, x[i]);
            }
        }
    }
}
