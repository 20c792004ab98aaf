//! The attention kernels of every table this machine can run (`Kernels::attn`)
//! against the scalar reference: random inputs, odd lengths and strides, extreme values.
//! All of them are bit-identical to the scalar table (the same portable dots in llama.cpp's orders,
//! compiled per ISA, and exact conversions); the scalar dots themselves are checked against ggml's
//! loops in `cpu::attn`'s unit tests.

use half::f16;
use llama_core::kernels::{AttnOrder, Kernels, KT_LANES};

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
fn attn_kt_and_kq_are_bit_identical_to_scalar() {
    let mut rng = Rng(7);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for k in Kernels::available() {
        for &n in &LENS {
            for &(nk, nq, pad) in &[(1, 1, 0), (5, 3, 1), (9, 4, 3), (17, 9, 0), (3, 13, 5), (40, 28, 2), (33, 8, 0)] {
                let ks = n + pad;
                let os = nk + pad;
                let keys: Vec<f32> = (0..nk * ks).map(|_| rng.wild()).collect();
                let k16: Vec<f16> = keys.iter().map(|&v| f16::from_f32(v)).collect();
                let q = rounded(&(0..nq * n).map(|_| rng.wild()).collect::<Vec<_>>());
                let kt_len = nk.div_ceil(KT_LANES) * n * KT_LANES;
                // Panels: converted and transposed exactly, padding lanes zero.
                let (mut w16, mut g16) = (vec![f32::NAN; kt_len], vec![f32::NAN; kt_len]);
                let (mut w32, mut g32) = (vec![f32::NAN; kt_len], vec![f32::NAN; kt_len]);
                (Kernels::SCALAR.attn.kt_f16)(n, &k16, ks, nk, &mut w16);
                (k.attn.kt_f16)(n, &k16, ks, nk, &mut g16);
                (Kernels::SCALAR.attn.kt_f32)(n, &keys, ks, nk, &mut w32);
                (k.attn.kt_f32)(n, &keys, ks, nk, &mut g32);
                assert_eq!(bits(&g16), bits(&w16), "{:?} kt f16 n={n} nk={nk}", k.isa);
                assert_eq!(bits(&g32), bits(&w32), "{:?} kt f32 n={n} nk={nk}", k.isa);
                for (j, d) in (0..nk).flat_map(|j| (0..n).map(move |d| (j, d))) {
                    let at = ((j / KT_LANES) * n + d) * KT_LANES + j % KT_LANES;
                    assert_eq!(w16[at], k16[j * ks + d].to_f32());
                    assert_eq!(w32[at].to_bits(), keys[j * ks + d].to_bits());
                }
                // Scores in both orders, equal to the scalar table bit for bit.
                for kt in [&w16, &w32] {
                    for order in AttnOrder::ALL {
                        let (mut want, mut got) = (vec![7.0f32; nq * os], vec![7.0f32; nq * os]);
                        (Kernels::SCALAR.attn.kq)(n, kt, nk, &q, nq, &mut want, os, order);
                        (k.attn.kq)(n, kt, nk, &q, nq, &mut got, os, order);
                        assert_eq!(bits(&got), bits(&want), "{:?} kq {order:?} n={n} nk={nk} nq={nq}", k.isa);
                        for i in 0..nq {
                            // stride padding untouched
                            assert!(want[i * os + nk..(i + 1) * os].iter().all(|&x| x == 7.0));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn attn_vf_and_pv_are_bit_identical_to_scalar() {
    let mut rng = Rng(11);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for k in Kernels::available() {
        for &n in &LENS {
            for &(nv, pad, j0, lo_off) in
                &[(1, 0, 0, 0), (6, 1, 64, 2), (33, 0, 0, 0), (70, 3, 128, 17), (130, 2, 0, 64)]
            {
                let vs = n + pad;
                let v16: Vec<f16> = (0..nv * vs).map(|_| f16::from_f32(rng.wild())).collect();
                let (mut w, mut g) = (vec![f32::NAN; nv * n], vec![f32::NAN; nv * n]);
                (Kernels::SCALAR.attn.vf_f16)(n, &v16, vs, nv, &mut w);
                (k.attn.vf_f16)(n, &v16, vs, nv, &mut g);
                assert_eq!(bits(&g), bits(&w), "{:?} vf n={n} nv={nv}", k.isa);
                for j in 0..nv {
                    for d in 0..n {
                        assert_eq!(w[j * n + d], v16[j * vs + d].to_f32());
                    }
                }
                let v32: Vec<f32> = (0..nv * vs).map(|_| rng.wild()).collect();
                // Probabilities in [0, 1], f16-valued, some zero.
                let p: Vec<f32> = (0..nv)
                    .map(|_| if rng.next().is_multiple_of(5) { 0.0 } else { f16::from_f32(rng.f32().abs()).to_f32() })
                    .collect();
                let (lo, hi) = (j0 + lo_off.min(nv - 1), j0 + nv - 1);
                for (rows, stride) in [(&w, n), (&v32, vs)] {
                    // the same values as key panels, for the tables that read those
                    let mut vt = vec![f32::NAN; nv.div_ceil(KT_LANES) * n * KT_LANES];
                    (Kernels::SCALAR.attn.kt_f32)(n, rows, stride, nv, &mut vt);
                    for order in AttnOrder::ALL {
                        let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
                        (Kernels::SCALAR.attn.pv)(n, rows, stride, j0, lo, hi, &p, &mut want, order);
                        (k.attn.pv)(n, rows, stride, j0, lo, hi, &p, &mut got, order);
                        assert_eq!(bits(&got), bits(&want), "{:?} pv {order:?} n={n} nv={nv}", k.isa);
                        if let Some(pvp) = k.attn.pv_panels {
                            let mut gp = vec![0f32; n];
                            pvp(n, &vt, j0, &[lo], &[hi], &p, p.len(), &mut gp, order);
                            assert_eq!(bits(&gp), bits(&want), "{:?} pv panels {order:?} n={n} nv={nv} lo={lo}", k.isa);
                            // Several queries, their own probabilities: runs of queries over the
                            // same keys (the kernels take those in pairs) and one over fewer.
                            let lo2 = (lo + 1).min(hi);
                            let ranges = [(lo, hi), (lo, hi), (lo2, hi), (lo, hi), (lo, hi), (lo, hi)];
                            let pq: Vec<f32> = (0..ranges.len())
                                .flat_map(|i| {
                                    p.iter().enumerate().map(move |(j, &x)| if (i + j) % 3 == 0 { 0.5 * x } else { x })
                                })
                                .map(|x| f16::from_f32(x).to_f32())
                                .collect();
                            let (los, his): (Vec<usize>, Vec<usize>) = ranges.iter().copied().unzip();
                            let mut gq = vec![0f32; ranges.len() * n];
                            pvp(n, &vt, j0, &los, &his, &pq, nv, &mut gq, order);
                            for (i, &(l, h)) in ranges.iter().enumerate() {
                                let mut wq = vec![0f32; n];
                                (Kernels::SCALAR.attn.pv)(
                                    n,
                                    rows,
                                    stride,
                                    j0,
                                    l,
                                    h,
                                    &pq[i * nv..(i + 1) * nv],
                                    &mut wq,
                                    order,
                                );
                                let got = &gq[i * n..(i + 1) * n];
                                assert_eq!(
                                    bits(got),
                                    bits(&wq),
                                    "{:?} pv panels {order:?} n={n} nv={nv} query {i}",
                                    k.isa
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The gather kernels (a sequence's cells named one by one, `kt_*_gather`, `vf_f16_gather`) equal
/// the strided kernels of the same table (and so the scalar reference) on the rows gathered into
/// a contiguous copy: shuffled cells, repeats, odd lengths and strides.
#[test]
fn attn_gather_kernels_equal_strided_on_gathered_rows() {
    let mut rng = Rng(23);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for k in Kernels::available() {
        for &n in &LENS {
            for &(n_cells, nk, pad) in
                &[(1usize, 1usize, 0usize), (7, 5, 1), (40, 17, 3), (90, 33, 0), (64, 64, 2), (200, 70, 5)]
            {
                let stride = n + pad;
                let k32: Vec<f32> = (0..n_cells * stride).map(|_| rng.wild()).collect();
                let k16: Vec<f16> = k32.iter().map(|&v| f16::from_f32(v)).collect();
                // nk cells out of n_cells, in a random order (a cell may repeat)
                let cells: Vec<usize> = (0..nk).map(|_| (rng.next() % n_cells as u64) as usize).collect();
                let g16: Vec<f16> = cells.iter().flat_map(|&c| k16[c * stride..c * stride + n].to_vec()).collect();
                let g32: Vec<f32> = cells.iter().flat_map(|&c| k32[c * stride..c * stride + n].to_vec()).collect();
                let kt_len = nk.div_ceil(KT_LANES) * n * KT_LANES;
                let run = |f: &dyn Fn(&mut [f32]), len: usize| {
                    let mut o = vec![f32::NAN; len];
                    f(&mut o);
                    o
                };
                let want = run(&|o| (k.attn.kt_f16)(n, &g16, n, nk, o), kt_len);
                let got = run(&|o| (k.attn.kt_f16_gather)(n, &k16, stride, &cells, o), kt_len);
                let reference = run(&|o| (Kernels::SCALAR.attn.kt_f16_gather)(n, &k16, stride, &cells, o), kt_len);
                assert_eq!(bits(&got), bits(&want), "{:?} kt f16 gather n={n} nk={nk}", k.isa);
                assert_eq!(bits(&reference), bits(&want), "scalar kt f16 gather n={n} nk={nk}");
                let want = run(&|o| (k.attn.kt_f32)(n, &g32, n, nk, o), kt_len);
                let got = run(&|o| (k.attn.kt_f32_gather)(n, &k32, stride, &cells, o), kt_len);
                assert_eq!(bits(&got), bits(&want), "{:?} kt f32 gather n={n} nk={nk}", k.isa);
                let want = run(&|o| (k.attn.vf_f16)(n, &g16, n, nk, o), nk * n);
                let got = run(&|o| (k.attn.vf_f16_gather)(n, &k16, stride, &cells, o), nk * n);
                assert_eq!(bits(&got), bits(&want), "{:?} vf f16 gather n={n} nk={nk}", k.isa);
                // and the values are the cells' own
                for (j, &c) in cells.iter().enumerate() {
                    for d in 0..n {
                        assert_eq!(got[j * n + d].to_bits(), k16[c * stride + d].to_f32().to_bits());
                    }
                }
            }
        }
    }
}

/// A cell past the end of the cache is refused before any read.
#[test]
#[should_panic(expected = "attn gather: row out of range")]
fn attn_gather_checks_its_rows() {
    let k = vec![f16::ZERO; 4 * 8];
    let mut kt = vec![0.0; KT_LANES * 8];
    (Kernels::SCALAR.attn.kt_f16_gather)(8, &k, 8, &[0, 4], &mut kt);
}

#[test]
fn round_f16_is_bit_identical_to_half() {
    let mut rng = Rng(5);
    let mut x: Vec<f32> = (0..1000).map(|_| rng.wild()).collect();
    x.extend([
        65504.0,
        65519.99,
        65520.0,
        1e9,
        -1e9,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        5.96e-8,
        2.98e-8,
        2.99e-8,
        1e-8,
        6.1e-5,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        -0.0,
        f32::NAN,
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
            (k.attn.round_f16)(&mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "{:?} x={:e}: {g:e} vs {w:e}",
                    k.isa,
                    x[i]
                );
            }
        }
    }
}

/// Flash attention's online step: every table's equals the scalar table's, and the scalar table's
/// follows llama.cpp's loop written out here (f16 output rounded after each key, or f32).
#[test]
fn fa_online_matches_the_scalar_step_and_ggml_loop() {
    use llama_core::kernels::types::FaStep;
    let mut rng = Rng(11);
    for n in [16usize, 64, 80, 128] {
        for (softcap, f16_acc) in [(0.0, true), (0.0, false), (30.0, true)] {
            let p = FaStep { scale: 0.125, softcap, f16_acc };
            let nb = 37;
            let scores: Vec<f32> = (0..nb).map(|_| 40.0 * rng.f32()).collect();
            let v: Vec<f32> =
                (0..nb * n).map(|_| rng.f32()).map(|x| if f16_acc { f16::from_f32(x).to_f32() } else { x }).collect();
            // ggml's one_chunk loop
            let (mut m, mut s) = (f32::NEG_INFINITY, 0f32);
            let mut want = vec![0f32; n];
            for (j, &raw) in scores.iter().enumerate() {
                let mut sc = raw * p.scale;
                if p.softcap != 0.0 {
                    sc = p.softcap * sc.tanh();
                }
                let (mut ms, mut vs) = (1.0f32, 1.0f32);
                if sc > m {
                    ms = (m - sc).exp();
                    m = sc;
                    for a in want.iter_mut() {
                        *a *= ms;
                        if f16_acc {
                            *a = f16::from_f32(*a).to_f32();
                        }
                    }
                } else {
                    vs = (sc - m).exp();
                }
                for (a, &x) in want.iter_mut().zip(&v[j * n..(j + 1) * n]) {
                    *a = x.mul_add(vs, *a);
                    if f16_acc {
                        *a = f16::from_f32(*a).to_f32();
                    }
                }
                s = s.mul_add(ms, vs);
            }
            for k in Kernels::available() {
                // two blocks in a row carry the state across
                let (mut acc, mut st) = (vec![0f32; n], [f32::NEG_INFINITY, 0f32]);
                (k.attn.fa_online)(n, &scores[..20], &v[..20 * n], &mut acc, &mut st, p);
                (k.attn.fa_online)(n, &scores[20..], &v[20 * n..], &mut acc, &mut st, p);
                assert_eq!(st[0].to_bits(), m.to_bits(), "{:?} n={n}", k.isa);
                assert_eq!(st[1].to_bits(), s.to_bits(), "{:?} n={n}", k.isa);
                for (g, w) in acc.iter().zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "{:?} n={n} f16={f16_acc}", k.isa);
                }
            }
        }
    }
}

/// Flash attention's tile GEMMs: every table's equals the scalar table's, which is one fused
/// multiply-add chain per output in index order (llama.cpp's `simd_gemm`), checked here directly.
#[test]
fn fa_tile_gemms_are_one_chain_per_output() {
    let mut rng = Rng(13);
    for n in [16usize, 40, 64, 128] {
        for nq in [1usize, 4, 7, 64] {
            let rows = nq.div_ceil(4) * 4;
            let keys: Vec<f32> = (0..64 * n).map(|_| rng.wild()).collect();
            // panels of 16 keys: kt[(p*n + d)*16 + l] = key (16p + l), dimension d
            let mut kt = vec![0f32; 64 * n];
            for j in 0..64 {
                for d in 0..n {
                    kt[((j / 16) * n + d) * 16 + j % 16] = keys[j * n + d];
                }
            }
            let q: Vec<f32> = (0..rows * n).map(|_| rng.f32()).collect();
            let mut want = vec![0f32; rows * 64];
            for i in 0..nq {
                for j in 0..64 {
                    want[i * 64 + j] = (0..n).fold(0f32, |a, d| q[i * n + d].mul_add(keys[j * n + d], a));
                }
            }
            let p: Vec<f32> = (0..rows * 64).map(|_| rng.f32().abs()).collect();
            let v: Vec<f32> = (0..64 * n).map(|_| rng.wild()).collect();
            let acc0: Vec<f32> = (0..rows * n).map(|_| rng.f32()).collect();
            let mut want_pv = acc0.clone();
            for i in 0..nq {
                for d in 0..n {
                    want_pv[i * n + d] = (0..64).fold(acc0[i * n + d], |a, j| p[i * 64 + j].mul_add(v[j * n + d], a));
                }
            }
            for k in Kernels::available() {
                let mut got = vec![0f32; rows * 64];
                (k.attn.fa_tile_kq)(n, &kt, &q, nq, &mut got);
                for i in 0..nq * 64 {
                    assert_eq!(got[i].to_bits(), want[i].to_bits(), "{:?} kq n={n} nq={nq} [{i}]", k.isa);
                }
                let mut acc = acc0.clone();
                (k.attn.fa_tile_pv)(n, &p, &v, nq, &mut acc);
                for i in 0..nq * n {
                    assert_eq!(acc[i].to_bits(), want_pv[i].to_bits(), "{:?} pv n={n} nq={nq} [{i}]", k.isa);
                }
            }
        }
    }
}

/// The quantized cache's dots: every table's equals the scalar table's on random rows of each
/// cache type (whose agreement with llama.cpp the Python tests check end to end).
#[test]
fn fa_kv_dot_tables_agree() {
    use llama_core::quant::GgmlType;
    let mut rng = Rng(17);
    for t in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1] {
        let k = Kernels::SCALAR.traits(t).unwrap();
        let dt = Kernels::SCALAR.traits(k.vec_dot_type.unwrap()).unwrap();
        for n in [32usize, 64, 128] {
            let x: Vec<f32> = (0..n).map(|_| rng.wild()).collect();
            let y: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let mut xb = vec![0u8; n / 32 * k.type_size];
            let mut yb = vec![0u8; n / 32 * dt.type_size];
            (k.from_float.unwrap())(&x, &mut xb);
            (dt.from_float.unwrap())(&y, &mut yb);
            let want = (Kernels::SCALAR.attn.fa_kv_dot)(t, &xb, &yb);
            for kk in Kernels::available() {
                assert_eq!((kk.attn.fa_kv_dot)(t, &xb, &yb).to_bits(), want.to_bits(), "{:?} {t} n={n}", kk.isa);
            }
        }
    }
}

/// Flash attention in lanes (a quantized cache, 16 query rows at once): each table's lane kernels
/// equal the references, lane by lane the one-row dot and step, on every cache type, head sizes
/// 32–256, rows that see different keys (bits of `vis`), dead lanes, and scores whose maximum rises
/// now and then with differences past expf's special threshold.
#[test]
fn fa_lanes_equal_the_one_row_path() {
    use llama_core::kernels::attn::{fa_lanes_kq_ref, fa_lanes_online_ref};
    use llama_core::kernels::types::{FaLaneQueries, FaLanesOnlineFn, FaStep, FA_LANES, FA_LANE_KEYS};
    use llama_core::quant::GgmlType;
    let mut rng = Rng(31);
    let tables: Vec<Kernels> = Kernels::available().into_iter().filter(|k| k.attn.fa_lanes.is_some()).collect();
    if tables.is_empty() {
        eprintln!("no table with lane kernels on this CPU");
        return;
    }
    for t in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1] {
        let kt = Kernels::SCALAR.traits(t).unwrap();
        let dt = Kernels::SCALAR.traits(kt.vec_dot_type.unwrap()).unwrap();
        for n in [32usize, 64, 128, 256] {
            for live in [16usize, 7, 1] {
                let rows: Vec<Vec<f32>> = (0..live).map(|_| (0..n).map(|_| rng.wild()).collect()).collect();
                let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
                let mut q = FaLaneQueries::default();
                q.fill(t, n, &refs, dt.from_float.unwrap());
                let nk = if n == 256 { 37 } else { FA_LANE_KEYS };
                let kb = n / 32 * kt.type_size;
                let mut k = vec![0u8; nk * kb];
                for j in 0..nk {
                    let x: Vec<f32> = (0..n).map(|_| rng.wild()).collect();
                    (kt.from_float.unwrap())(&x, &mut k[j * kb..(j + 1) * kb]);
                }
                let mut want = vec![0f32; nk * FA_LANES];
                fa_lanes_kq_ref(t, &k, nk, &q, &mut want);
                for kk in &tables {
                    let mut got = vec![0f32; nk * FA_LANES];
                    (kk.attn.fa_lanes.unwrap().kq)(t, &k, nk, &q, &mut got);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            w.to_bits(),
                            "{:?} {t} n={n} kq key {} lane {}",
                            kk.isa,
                            i / 16,
                            i % 16
                        );
                    }
                }
                if t != GgmlType::Q8_0 {
                    continue;
                }
                // the recurrence over two calls, on scores with wide ranges
                let nk2 = 2 * FA_LANE_KEYS - 9;
                let sc: Vec<f32> = (0..nk2 * FA_LANES)
                    .map(|i| if i % 97 == 5 { 300.0 * rng.f32() } else { 8.0 * rng.f32() + (i / 16) as f32 * 0.03 })
                    .collect();
                let vis: Vec<u16> = (0..nk2)
                    .map(|j| {
                        let live_mask = ((1u32 << live) - 1) as u16;
                        let r = rng.next() as u16 | if j % 3 == 0 { 0xffff } else { 0 };
                        r & live_mask
                    })
                    .collect();
                let v: Vec<f32> = (0..nk2 * n).map(|_| rng.wild()).collect();
                let p = FaStep { scale: 0.125, softcap: 0.0, f16_acc: false };
                let run = |f: FaLanesOnlineFn| {
                    let (mut acc, mut st) = (vec![0f32; n * FA_LANES], [[f32::NEG_INFINITY; 16], [0f32; 16]]);
                    for c in (0..nk2).step_by(FA_LANE_KEYS) {
                        let e = (c + FA_LANE_KEYS).min(nk2);
                        f(n, &sc[c * 16..e * 16], &vis[c..e], &v[c * n..e * n], &mut acc, &mut st, p);
                    }
                    (acc, st[0], st[1])
                };
                let (wa, wm, ws) = run(fa_lanes_online_ref);
                for kk in &tables {
                    let (ga, gm, gs) = run(kk.attn.fa_lanes.unwrap().online);
                    for i in 0..live {
                        assert_eq!(
                            (gm[i].to_bits(), gs[i].to_bits()),
                            (wm[i].to_bits(), ws[i].to_bits()),
                            "{:?} n={n} lane {i}",
                            kk.isa
                        );
                    }
                    for (x, (g, w)) in ga.iter().zip(&wa).enumerate() {
                        assert_eq!(g.to_bits(), w.to_bits(), "{:?} n={n} dim {} lane {}", kk.isa, x / 16, x % 16);
                    }
                }
            }
        }
    }
}

/// The emulation of glibc's expf equals the C library's on a dense sweep of the inputs flash
/// attention gives it (every 3rd float in [−104, 0], then a sparse one over all floats). This is
/// glibc's FMA variant: x86-64 with FMA only.
#[cfg(target_arch = "x86_64")]
#[test]
fn glibc_expf_equals_the_c_library() {
    if !std::arch::is_x86_feature_detected!("fma") {
        return;
    }
    use llama_core::kernels::elementwise::glibc_expf::expf;
    let lo = (-104.0f32).to_bits();
    let mut bad = 0u64;
    let mut check = |x: f32| {
        let (a, b) = (expf(x), x.exp());
        if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) {
            bad += 1;
            assert!(bad < 10, "expf({x:e}) = {a:e}, libm {b:e}");
        }
    };
    let mut b = 0x8000_0000u32;
    while b <= lo {
        check(f32::from_bits(b));
        b += 3;
    }
    for b in (0..=u32::MAX).step_by(9973) {
        check(f32::from_bits(b));
    }
    assert_eq!(bad, 0);
}

/// The flash-attention step with real-looking score ranges (the maximum rising now and then,
/// differences past the library's special threshold): every table equals the scalar one.
#[test]
fn fa_online_tables_agree_on_wide_scores() {
    use llama_core::kernels::types::FaStep;
    let mut rng = Rng(23);
    for n in [64usize, 128, 48] {
        for f16_acc in [true, false] {
            let p = FaStep { scale: 1.0, softcap: 0.0, f16_acc };
            let nb = 300;
            let scores: Vec<f32> = (0..nb)
                .map(|j| if j % 50 == 7 { 200.0 * rng.f32() } else { 10.0 * rng.f32() + j as f32 * 0.05 })
                .collect();
            let v: Vec<f32> = (0..nb * n).map(|_| rng.f32()).collect();
            let run = |k: &Kernels| {
                let (mut acc, mut st) = (vec![0f32; n], [f32::NEG_INFINITY, 0f32]);
                for c in (0..nb).step_by(128) {
                    let e = (c + 128).min(nb);
                    (k.attn.fa_online)(n, &scores[c..e], &v[c * n..e * n], &mut acc, &mut st, p);
                }
                (acc, st)
            };
            let (want, wst) = run(&Kernels::SCALAR);
            for k in Kernels::available() {
                let (got, st) = run(&k);
                assert_eq!([st[0].to_bits(), st[1].to_bits()], [wst[0].to_bits(), wst[1].to_bits()], "{:?}", k.isa);
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "{:?} n={n} f16={f16_acc}", k.isa);
                }
            }
        }
    }
}

/// Flash attention's tile softmax sum: a table's vectorised `exp_sum` equals the scalar
/// emulation of its build's `ggml_vec_soft_max_f32` (values and sum).
#[test]
fn exp_sum_matches_the_scalar_emulation() {
    use llama_core::kernels::elementwise::exp_sum_tile;
    let mut rng = Rng(29);
    for k in Kernels::available() {
        let Some(f) = k.exp_sum else { continue };
        for _ in 0..200 {
            let mut x: Vec<f32> =
                (0..64).map(|i| if i % 9 == 4 { f32::NEG_INFINITY } else { 30.0 * rng.f32() }).collect();
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) + rng.f32().abs();
            let mut want = x.clone();
            let ws = exp_sum_tile(&mut want, max, k.orders);
            let gs = f(&mut x, max);
            assert_eq!(gs.to_bits(), ws.to_bits(), "{:?}", k.isa);
            for (g, w) in x.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{:?}", k.isa);
            }
        }
    }
}
