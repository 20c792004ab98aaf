//! Flash attention (`flash_attn=True`), computed as llama.cpp's CPU backend computes
//! `ggml_flash_attn_ext` (ggml-cpu ops.cpp), so our logits equal llama.cpp's with flash attention
//! on, bit for bit. No score row is ever materialized: each query keeps a running maximum M, a
//! running sum S and an unnormalized output, rescaled when a larger score arrives ("online
//! softmax"). llama.cpp takes one of three paths per attention call, and so do we:
//!
//! - online, one key at a time (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`): Q converted
//!   to K's dot partner type (f16, or Q8_0 for a quantized cache), each score `K·Q` by the type's
//!   dot (`ggml_vec_dot_f16` for f16), scaled (and soft-capped); a new maximum rescales the
//!   output by `expf(M_old − M)`, otherwise the key's weight is `expf(s − M)` (the C library's
//!   expf); `output += v·weight` in f16 for an f16 V (rounded after every key) or in f32 after
//!   dequantizing V. Prompt batches under 64 tokens and every quantized cache take it.
//! - split keys (decode rows over an f16 cache of at least 512 padded cells): the keys are cut in
//!   one chunk per thread, each chunk runs the online path into a partial (M, S, output), and the
//!   partials are merged in chunk order (`ggml_flash_attn_ext_reduce_partials`). The chunks follow
//!   the thread count, so, as in llama.cpp, the bits depend on it.
//! - tiles (prompt batches of 64 tokens or more over an f16 cache,
//!   `ggml_compute_forward_flash_attn_ext_tiled`): 64 keys at a time, scores by an f32 GEMM over
//!   the unrounded Q (one fused multiply-add chain per score), the tile's maximum, then
//!   `ggml_vec_soft_max_f32` (ggml's vector expf) into S, and the output += P·V by a second GEMM.
//!
//! Scores ahead of the recurrence: a score does not depend on M or S, so the online path scores a
//! block of keys for every query head of a KV head at once with the attention panel kernels
//! (`AttnKernels::kq` in `ggml_vec_dot_f16`'s order), then runs the recurrence over them.
//!
//! Cache cells: llama.cpp pads the cells it attends over to a multiple of 256 (`get_n_kv`) and
//! masks the ones a query may not see; the padding decides where the split path cuts and whether
//! it is taken, so the count is reproduced (`padded_kv`). Keys are addressed by position (key j is
//! the sequence's position j, wherever its cell is).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use half::f16;

use super::attention::{AttnGroup, AttnScratch, AttnShape, FaScratch, Keys};
use super::kv_cache::{KvElem, LayerKv};
use crate::kernels::elementwise::{exp_sum_tile, with_fma};
use crate::kernels::types::{FaStep, Kernels, FA_LANES, FA_LANE_KEYS, FA_LANE_MAX_N, KT_LANES};
use crate::kernels::ThreadPool;
use crate::quant::GgmlType;

/// llama.cpp's tile sizes (ggml-cpu common.h `GGML_FA_TILE_Q`, `GGML_FA_TILE_KV`).
const Q_TILE: usize = 64;
const KV_TILE: usize = 64;
/// A decode row over at least this many padded cells takes the split path.
const SPLIT_MIN_KV: usize = 512;
/// Keys scored at once by the online path.
const KEY_BLOCK: usize = 128;
/// Query rows per KV head from which the lane path pays: a lane group costs about the same per
/// key with 1 or 16 live lanes, ~4 rows of the online path (gemma3-270m's decode, 4 rows over
/// its one KV head, runs at the same speed on both: 70.7 vs 72.1 tok/s at depth 4096).
const LANES_MIN_ROWS: usize = 4;

/// A head's sink after its last key (both of ggml's paths): one more logit in the sum, raising the
/// maximum (and rescaling the f32 output) when larger; `S = fma(S, ms, vs)`, as GCC compiles ggml's
/// C++ (contraction on).
fn add_sink(sink: f32, m: &mut f32, s: &mut f32, acc: &mut [f32]) {
    let (ms, vs) = if sink > *m { ((*m - sink).exp(), 1.0) } else { (1.0, (sink - *m).exp()) };
    if sink > *m {
        *m = sink;
        acc.iter_mut().for_each(|a| *a *= ms);
    }
    *s = s.mul_add(ms, vs);
}

/// The score scale: ggml divides it by the soft-cap first, then takes `cap·tanhf(s·scale)`.
fn fa_scale(s: &AttnShape) -> f32 {
    match s.softcap {
        Some(cap) => s.kq_scale / cap,
        None => s.kq_scale,
    }
}

/// The cache of one layer as flash attention reads it.
#[derive(Clone, Copy)]
pub enum FaCache<'a> {
    /// f16 K and V (llama.cpp's default cache).
    F16(&'a LayerKv<f16>),
    /// K and V rows as bytes of their ggml types (a quantized cache; strides in bytes).
    Raw { kv: &'a LayerKv<u8>, k: GgmlType, v: GgmlType },
}

impl FaCache<'_> {
    fn f16_both(&self) -> bool {
        matches!(self, FaCache::F16(_))
    }
}

fn grow<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// Cells llama.cpp attends over for a sequence of `n` positions: a multiple of 256, at least 256.
pub fn padded_kv(n: usize) -> usize {
    n.div_ceil(256).max(1) * 256
}

/// One piece of work: the online path over keys `c0..c1` for query heads `h0..h0+nh` of token t
/// (all on KV head hkv), into `out` or into partial `part`; or a tile of tokens `t0..t1` × head h.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Row {
        g: usize,
        t: usize,
        hkv: usize,
        h0: usize,
        nh: usize,
        c0: usize,
        c1: usize,
        part: Option<usize>,
    },
    Tile {
        g: usize,
        t0: usize,
        t1: usize,
        h: usize,
    },
    /// Lane group c of KV head hkv: the group's (token, query head) pairs 16c.. (token-major).
    Lanes {
        g: usize,
        hkv: usize,
        c: usize,
    },
}

/// Flash attention of every group of a mixed batch (q: [rows][n_head·head_k] → out:
/// [rows][n_head·head_v]) with the kernel table `kern`, each group with the path and the bits it
/// would have alone.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_groups(
    kern: &Kernels,
    pool: &ThreadPool,
    scratch: &[Mutex<AttnScratch>],
    kv: FaCache,
    q: &[f32],
    out: &mut [f32],
    groups: &[AttnGroup],
    sinks: Option<&[f32]>,
) {
    let Some(g0) = groups.first() else { return };
    let s0 = g0.shape;
    assert!(!scratch.is_empty(), "flash attention: no scratch");
    assert!(s0.n_head_kv > 0 && s0.n_head.is_multiple_of(s0.n_head_kv), "flash attention: bad head counts");
    let (qrow, row) = (s0.n_head * s0.head_k, s0.n_head * s0.head_v);
    let group = s0.n_head / s0.n_head_kv;
    let nth = pool.n_threads();
    let n_rows = groups.iter().map(|g| g.row0 + g.shape.n_tokens).max().unwrap_or(0);
    assert!(q.len() >= n_rows * qrow && out.len() >= n_rows * row, "flash attention: q or out too short");

    // Work units, the most expensive first; partial slots of the split rows: [slot][heads][2 + hv].
    let mut units = Vec::new();
    let mut splits = Vec::new(); // (group, first slot)
    let mut n_parts = 0;
    for (gi, g) in groups.iter().enumerate() {
        let s = &g.shape;
        assert!(
            (s.n_head, s.n_head_kv, s.head_k, s.head_v) == (s0.n_head, s0.n_head_kv, s0.head_k, s0.head_v),
            "flash attention: groups disagree in heads"
        );
        if s.n_tokens == 0 {
            continue;
        }
        let n_kv = padded_kv(s.pos0 + s.n_tokens);
        if kv.f16_both() && s.n_tokens == 1 && n_kv >= SPLIT_MIN_KV {
            let chunk = n_kv.div_ceil(nth);
            splits.push((gi, n_parts));
            for c in 0..nth {
                for hkv in 0..s.n_head_kv {
                    let (c0, c1) = ((c * chunk).min(n_kv), ((c + 1) * chunk).min(n_kv));
                    let part = Some(n_parts + c * s.n_head_kv + hkv);
                    units.push(Unit::Row { g: gi, t: 0, hkv, h0: hkv * group, nh: group, c0, c1, part });
                }
            }
            n_parts += nth * s.n_head_kv;
        } else if kv.f16_both() && s.n_tokens >= Q_TILE {
            for t0 in (0..s.n_tokens).step_by(Q_TILE).rev() {
                for h in 0..s.n_head {
                    units.push(Unit::Tile { g: gi, t0, t1: (t0 + Q_TILE).min(s.n_tokens), h });
                }
            }
        } else if lanes_fit(kern, kv, s) {
            let n_pairs = s.n_tokens * group;
            for c in (0..n_pairs.div_ceil(FA_LANES)).rev() {
                for hkv in 0..s.n_head_kv {
                    units.push(Unit::Lanes { g: gi, hkv, c });
                }
            }
        } else {
            // a KV head's query heads together (one read of each key), split further when there
            // are too few units to keep the threads busy
            let n_sub =
                if s.n_tokens * s.n_head_kv < 4 * nth { (4 * nth).div_ceil(s.n_tokens * s.n_head_kv) } else { 1 };
            let n_sub = n_sub.min(group);
            for t in (0..s.n_tokens).rev() {
                for hkv in 0..s.n_head_kv {
                    for sub in 0..n_sub {
                        let (a, b) = (group * sub / n_sub, group * (sub + 1) / n_sub);
                        units.push(Unit::Row {
                            g: gi,
                            t,
                            hkv,
                            h0: hkv * group + a,
                            nh: b - a,
                            c0: 0,
                            c1: n_kv,
                            part: None,
                        });
                    }
                }
            }
        }
    }
    let part_len = group * (2 + s0.head_v);
    let parts: Vec<Mutex<Vec<f32>>> = (0..n_parts).map(|_| Mutex::new(vec![0.0; part_len])).collect();
    let out_rows: Vec<Mutex<&mut [f32]>> = out[..n_rows * row].chunks_mut(row).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    pool.run(|ith, _| {
        let mut guard = scratch[ith % scratch.len()].lock().unwrap_or_else(|e| e.into_inner());
        let fa = &mut guard.fa;
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            let Some(&unit) = units.get(u) else { break };
            match unit {
                Unit::Row { g, t, hkv, h0, nh, c0, c1, part } => {
                    let gr = &groups[g];
                    let s = &gr.shape;
                    let qt = &q[(gr.row0 + t) * qrow..(gr.row0 + t + 1) * qrow];
                    let first = c0 == 0;
                    with_fma!(online_row(
                        kern,
                        kv,
                        gr.keys,
                        s,
                        qt,
                        t,
                        hkv,
                        h0,
                        nh,
                        c0,
                        c1,
                        sinks.filter(|_| first),
                        fa
                    ));
                    let hv = s.head_v;
                    match part {
                        Some(p) => {
                            let mut dst = parts[p].lock().unwrap_or_else(|e| e.into_inner());
                            for i in 0..nh {
                                let d = &mut dst[i * (2 + hv)..(i + 1) * (2 + hv)];
                                (d[0], d[1]) = (fa.ms[i], fa.ss[i]);
                                d[2..].copy_from_slice(&fa.acc[i * hv..(i + 1) * hv]);
                            }
                        }
                        None => {
                            let mut dst = out_rows[gr.row0 + t].lock().unwrap_or_else(|e| e.into_inner());
                            for i in 0..nh {
                                let inv = if fa.ss[i] == 0.0 { 0.0 } else { 1.0 / fa.ss[i] };
                                let o = &mut dst[(h0 + i) * hv..(h0 + i + 1) * hv];
                                for (o, &a) in o.iter_mut().zip(&fa.acc[i * hv..(i + 1) * hv]) {
                                    *o = a * inv;
                                }
                            }
                        }
                    }
                }
                Unit::Lanes { g, hkv, c } => {
                    let gr = &groups[g];
                    let s = &gr.shape;
                    let n_pairs = s.n_tokens * group;
                    let pairs: Vec<(usize, usize)> = (c * FA_LANES..((c + 1) * FA_LANES).min(n_pairs))
                        .map(|p| (p / group, hkv * group + p % group))
                        .collect();
                    let rows: Vec<&[f32]> =
                        pairs.iter().map(|&(t, h)| &q[(gr.row0 + t) * qrow + h * s.head_k..][..s.head_k]).collect();
                    let FaCache::Raw { kv: l, k, v } = kv else { unreachable!("lanes need a quantized cache") };
                    lanes(kern, l, k, v, gr.keys, s, &rows, &pairs, hkv, fa);
                    let hv = s.head_v;
                    let mut a = vec![0f32; hv];
                    for (i, &(t, h)) in pairs.iter().enumerate() {
                        a.iter_mut().enumerate().for_each(|(d, x)| *x = fa.acc[d * FA_LANES + i]);
                        let (mut m, mut sum) = (fa.ms[i], fa.ss[i]);
                        if let Some(sk) = sinks {
                            add_sink(sk[h], &mut m, &mut sum, &mut a);
                        }
                        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                        let mut dst = out_rows[gr.row0 + t].lock().unwrap_or_else(|e| e.into_inner());
                        for (o, &x) in dst[h * hv..(h + 1) * hv].iter_mut().zip(&a) {
                            *o = x * inv;
                        }
                    }
                }
                Unit::Tile { g, t0, t1, h } => {
                    let FaCache::F16(layer) = kv else { unreachable!("tiles need an f16 cache") };
                    let gr = &groups[g];
                    let s = &gr.shape;
                    with_fma!(tile(kern, layer, gr.keys, s, &q[gr.row0 * qrow..], t0, t1, h, sinks, fa));
                    let hv = s.head_v;
                    for ti in 0..t1 - t0 {
                        let inv = if fa.ss[ti] == 0.0 { 0.0 } else { 1.0 / fa.ss[ti] };
                        let mut dst = out_rows[gr.row0 + t0 + ti].lock().unwrap_or_else(|e| e.into_inner());
                        for (o, &a) in dst[h * hv..(h + 1) * hv].iter_mut().zip(&fa.acc[ti * hv..(ti + 1) * hv]) {
                            *o = a * inv;
                        }
                    }
                }
            }
        }
    });
    if splits.is_empty() {
        return;
    }
    // Merge each split row's partials in chunk order, one query head per unit.
    let hv = s0.head_v;
    let reduce: Vec<(usize, usize, usize)> =
        splits.iter().flat_map(|&(g, p)| (0..s0.n_head).map(move |h| (g, p, h))).collect();
    let next = AtomicUsize::new(0);
    pool.run(|_, _| {
        let mut acc = vec![0f32; hv];
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(g, p0, h)) = reduce.get(u) else { break };
            let (hkv, i) = (h / group, h % group);
            let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
            acc.fill(0.0);
            for c in 0..nth {
                let part = parts[p0 + c * s0.n_head_kv + hkv].lock().unwrap_or_else(|e| e.into_inner());
                let d = &part[i * (2 + hv)..(i + 1) * (2 + hv)];
                let (mc, sc) = (d[0], d[1]);
                if sc == 0.0 {
                    continue;
                }
                let m_new = m.max(mc);
                let (so, sn) = ((m - m_new).exp(), (mc - m_new).exp());
                with_fma!(merge(&mut acc, &d[2..], so, sn));
                sum = sum.mul_add(so, sc * sn);
                m = m_new;
            }
            if sum != 0.0 {
                let inv = 1.0 / sum;
                acc.iter_mut().for_each(|a| *a *= inv);
            }
            let gr = &groups[g];
            let mut dst = out_rows[gr.row0].lock().unwrap_or_else(|e| e.into_inner());
            dst[h * hv..(h + 1) * hv].copy_from_slice(&acc);
        }
    });
}

/// `acc = acc·so + part·sn`, contracted as GCC does: `fma(acc, so, part·sn)`.
#[inline(always)]
fn merge(acc: &mut [f32], part: &[f32], so: f32, sn: f32) {
    for (a, &p) in acc.iter_mut().zip(part) {
        *a = a.mul_add(so, p * sn);
    }
}

/// The online path for query heads h0..h0+nh of token t over the visible keys among positions
/// c0..c1: per head `fa.ms[i]`, `fa.ss[i]` and the unnormalized output `fa.acc[i·hv..]`; sinks
/// (when given) are added after the last key.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn online_row(
    kern: &Kernels,
    kv: FaCache,
    keys: Keys,
    s: &AttnShape,
    qt: &[f32],
    t: usize,
    hkv: usize,
    h0: usize,
    nh: usize,
    c0: usize,
    c1: usize,
    sinks: Option<&[f32]>,
    fa: &mut FaScratch,
) {
    let (hk, hv) = (s.head_k, s.head_v);
    let (lo, hi) = (c0.max(s.first(t)), c1.min(s.last(t) + 1));
    grow(&mut fa.ms, nh);
    grow(&mut fa.ss, nh);
    grow(&mut fa.acc, nh * hv);
    grow(&mut fa.sc, nh * KEY_BLOCK);
    grow(&mut fa.vf, KEY_BLOCK * hv);
    fa.ms[..nh].fill(f32::NEG_INFINITY);
    fa.ss[..nh].fill(0.0);
    fa.acc[..nh * hv].fill(0.0);
    let (k_f16, v_f16) = match kv {
        FaCache::F16(_) => (true, true),
        FaCache::Raw { k, v, .. } => (k == GgmlType::F16, v == GgmlType::F16),
    };
    // Q in K's dot partner type.
    let qh = &qt[h0 * hk..(h0 + nh) * hk];
    if k_f16 {
        grow(&mut fa.qr, nh * hk);
        fa.qr[..nh * hk].copy_from_slice(qh);
        f16::round_slice(kern, &mut fa.qr[..nh * hk]);
        grow(&mut fa.kt, KEY_BLOCK.div_ceil(KT_LANES) * KT_LANES * hk);
    } else if let FaCache::Raw { k, .. } = kv {
        let tk = kern.traits(k).expect("flash attention: K type in the table");
        let dt = kern.traits(tk.vec_dot_type.expect("K type has a dot partner")).expect("dot partner in the table");
        let qb = hk / dt.block_size * dt.type_size;
        grow(&mut fa.qq, nh * qb);
        for i in 0..nh {
            (dt.from_float.expect("partner quantizer"))(&qh[i * hk..(i + 1) * hk], &mut fa.qq[i * qb..(i + 1) * qb]);
        }
    }
    let scale = fa_scale(s);
    let order = kern.orders.attn_single();
    let step = FaStep { scale, softcap: s.softcap.unwrap_or(0.0), f16_acc: v_f16 };
    for j0 in (lo..hi).step_by(KEY_BLOCK) {
        let nb = (hi - j0).min(KEY_BLOCK);
        // Scores [nh][KEY_BLOCK].
        match kv {
            FaCache::F16(l) => {
                let kt = &mut fa.kt[..nb.div_ceil(KT_LANES) * KT_LANES * hk];
                match keys {
                    Keys::Base(b) => (kern.attn.kt_f16)(hk, &l.k[l.ks.at(b + j0, hkv)..], l.ks.pos, nb, kt),
                    Keys::Cells(c) => {
                        (kern.attn.kt_f16_gather)(hk, &l.k[l.ks.at(0, hkv)..], l.ks.pos, &c[j0..j0 + nb], kt)
                    }
                }
                (kern.attn.kq)(hk, kt, nb, &fa.qr[..nh * hk], nh, &mut fa.sc, KEY_BLOCK, order);
            }
            FaCache::Raw { kv: l, k: GgmlType::F16, .. } => {
                grow(&mut fa.kh, KEY_BLOCK * hk);
                for jj in 0..nb {
                    let r = &l.k[l.ks.at(keys.cell(j0 + jj), hkv)..][..2 * hk];
                    for (d, b) in fa.kh[jj * hk..(jj + 1) * hk].iter_mut().zip(r.chunks_exact(2)) {
                        *d = f16::from_le_bytes([b[0], b[1]]);
                    }
                }
                let kt = &mut fa.kt[..nb.div_ceil(KT_LANES) * KT_LANES * hk];
                (kern.attn.kt_f16)(hk, &fa.kh, hk, nb, kt);
                (kern.attn.kq)(hk, kt, nb, &fa.qr[..nh * hk], nh, &mut fa.sc, KEY_BLOCK, order);
            }
            FaCache::Raw { kv: l, k, .. } => {
                let tk = kern.traits(k).expect("K type");
                let dt = kern.traits(tk.vec_dot_type.expect("partner")).expect("partner");
                let (kb, qb) = (hk / tk.block_size * tk.type_size, hk / dt.block_size * dt.type_size);
                for jj in 0..nb {
                    let r = &l.k[l.ks.at(keys.cell(j0 + jj), hkv)..][..kb];
                    for i in 0..nh {
                        fa.sc[i * KEY_BLOCK + jj] = (kern.attn.fa_kv_dot)(k, r, &fa.qq[i * qb..(i + 1) * qb]);
                    }
                }
            }
        }
        // Value rows [nb][hv] as f32.
        let vf = &mut fa.vf[..nb * hv];
        match kv {
            FaCache::F16(l) => match keys {
                Keys::Base(b) => (kern.attn.vf_f16)(hv, &l.v[l.vs.at(b + j0, hkv)..], l.vs.pos, nb, vf),
                Keys::Cells(c) => (kern.attn.vf_f16_gather)(hv, &l.v[l.vs.at(0, hkv)..], l.vs.pos, &c[j0..j0 + nb], vf),
            },
            FaCache::Raw { kv: l, v, .. } => {
                let tv = kern.traits(v).expect("V type");
                let vb = hv / tv.block_size * tv.type_size;
                for jj in 0..nb {
                    let r = &l.v[l.vs.at(keys.cell(j0 + jj), hkv)..][..vb];
                    let o = &mut vf[jj * hv..(jj + 1) * hv];
                    if v == GgmlType::F16 {
                        for (o, b) in o.iter_mut().zip(r.chunks_exact(2)) {
                            *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                        }
                    } else {
                        (tv.to_float.expect("V type dequantizes"))(r, o);
                    }
                }
            }
        }
        // The recurrence, key by key, one query head at a time (the heads are independent).
        for i in 0..nh {
            let mut st = [fa.ms[i], fa.ss[i]];
            let sc = &fa.sc[i * KEY_BLOCK..i * KEY_BLOCK + nb];
            (kern.attn.fa_online)(hv, sc, &fa.vf[..nb * hv], &mut fa.acc[i * hv..(i + 1) * hv], &mut st, step);
            [fa.ms[i], fa.ss[i]] = st;
        }
    }
    if let Some(sk) = sinks {
        for i in 0..nh {
            add_sink(sk[h0 + i], &mut fa.ms[i], &mut fa.ss[i], &mut fa.acc[i * hv..(i + 1) * hv]);
        }
    }
}

/// Whether a group over cache `kv` takes the lane path: a quantized K with a lane dot, a quantized
/// V (an f32 output), no soft-cap, a table with the lane kernels, and at least `LANES_MIN_ROWS`
/// query rows per KV head. The arithmetic per query row is the online path's, so the choice
/// changes speed only.
fn lanes_fit(kern: &Kernels, kv: FaCache, s: &AttnShape) -> bool {
    let FaCache::Raw { k, v, .. } = kv else { return false };
    kern.attn.fa_lanes.is_some()
        && s.n_tokens * (s.n_head / s.n_head_kv) >= LANES_MIN_ROWS
        && matches!(k, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1)
        && v != GgmlType::F16
        && kern.traits(v).is_some_and(|t| t.to_float.is_some())
        && s.softcap.is_none()
        && s.head_k <= FA_LANE_MAX_N
        && s.head_v.is_multiple_of(16)
}

/// The lane path for query rows `rows` (the (token, head) `pairs` of KV head hkv, at most
/// `FA_LANES`): each row's running maximum `fa.ms[i]`, sum `fa.ss[i]` and unnormalized output
/// `fa.acc[d·16 + i]`, over the keys the row sees, one `FA_LANE_KEYS` block at a time: the block's
/// K rows copied together, its V rows dequantized once for all the rows, the scores of every row
/// by `FaLanesKqFn`, the recurrence by `FaLanesOnlineFn`.
#[allow(clippy::too_many_arguments)]
fn lanes(
    kern: &Kernels,
    l: &LayerKv<u8>,
    k: GgmlType,
    v: GgmlType,
    keys: Keys,
    s: &AttnShape,
    rows: &[&[f32]],
    pairs: &[(usize, usize)],
    hkv: usize,
    fa: &mut FaScratch,
) {
    let (hk, hv) = (s.head_k, s.head_v);
    let fl = kern.attn.fa_lanes.expect("lane kernels");
    let tk = kern.traits(k).expect("K type");
    let dt = kern.traits(tk.vec_dot_type.expect("K type has a dot partner")).expect("dot partner in the table");
    let tv = kern.traits(v).expect("V type");
    let (kb, vb) = (hk / tk.block_size * tk.type_size, hv / tv.block_size * tv.type_size);
    fa.lq.fill(k, hk, rows, dt.from_float.expect("partner quantizer"));
    let span: Vec<(usize, usize)> = pairs.iter().map(|&(t, _)| (s.first(t), s.last(t))).collect();
    let lo = span.iter().map(|x| x.0).min().unwrap_or(0);
    let hi = span.iter().map(|x| x.1 + 1).max().unwrap_or(0);
    // keys every row sees (most of them: the rows are 1–3 neighbouring tokens)
    let all = (span.iter().map(|x| x.0).max().unwrap_or(0), span.iter().map(|x| x.1).min().unwrap_or(0));
    let every = ((1u32 << pairs.len()) - 1) as u16;
    grow(&mut fa.ms, FA_LANES);
    grow(&mut fa.ss, FA_LANES);
    grow(&mut fa.acc, FA_LANES * hv);
    grow(&mut fa.sc, FA_LANES * FA_LANE_KEYS);
    grow(&mut fa.vf, FA_LANE_KEYS * hv);
    grow(&mut fa.kraw, FA_LANE_KEYS * kb);
    grow(&mut fa.vis, FA_LANE_KEYS);
    let mut st = [[f32::NEG_INFINITY; FA_LANES], [0f32; FA_LANES]]; // running maxima, sums
    let acc = &mut fa.acc[..FA_LANES * hv];
    acc.fill(0.0);
    let step = FaStep { scale: fa_scale(s), softcap: 0.0, f16_acc: false };
    let to_float = tv.to_float.expect("V type dequantizes");
    for j0 in (lo..hi).step_by(FA_LANE_KEYS) {
        let nb = (hi - j0).min(FA_LANE_KEYS);
        for jj in 0..nb {
            let c = keys.cell(j0 + jj);
            fa.kraw[jj * kb..(jj + 1) * kb].copy_from_slice(&l.k[l.ks.at(c, hkv)..][..kb]);
            to_float(&l.v[l.vs.at(c, hkv)..][..vb], &mut fa.vf[jj * hv..(jj + 1) * hv]);
            let j = j0 + jj;
            fa.vis[jj] = if all.0 <= j && j <= all.1 {
                every
            } else {
                span.iter().enumerate().fold(0u16, |b, (i, &(f, la))| b | (((f <= j && j <= la) as u16) << i))
            };
        }
        (fl.kq)(k, &fa.kraw[..nb * kb], nb, &fa.lq, &mut fa.sc[..nb * FA_LANES]);
        (fl.online)(hv, &fa.sc[..nb * FA_LANES], &fa.vis[..nb], &fa.vf[..nb * hv], acc, &mut st, step);
    }
    fa.ms[..FA_LANES].copy_from_slice(&st[0]);
    fa.ss[..FA_LANES].copy_from_slice(&st[1]);
}

/// The tiled path for tokens t0..t1 (at most `Q_TILE`) of query head h: per token `fa.ss[i]` and
/// the unnormalized output `fa.acc[i·hv..]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile(
    kern: &Kernels,
    l: &LayerKv<f16>,
    keys: Keys,
    s: &AttnShape,
    q: &[f32],
    t0: usize,
    t1: usize,
    h: usize,
    sinks: Option<&[f32]>,
    fa: &mut FaScratch,
) {
    let (hk, hv) = (s.head_k, s.head_v);
    let hkv = h / (s.n_head / s.n_head_kv);
    let nq = t1 - t0;
    let rows = nq.div_ceil(4) * 4; // the tile kernels take query rows 4 at a time
    grow(&mut fa.qr, Q_TILE * hk);
    grow(&mut fa.kt, KV_TILE * hk);
    grow(&mut fa.sc, Q_TILE * KV_TILE);
    grow(&mut fa.vf, KV_TILE * hv);
    grow(&mut fa.acc, Q_TILE * hv);
    grow(&mut fa.ms, Q_TILE);
    grow(&mut fa.ss, Q_TILE);
    let qrow = s.n_head * hk;
    for i in 0..nq {
        fa.qr[i * hk..(i + 1) * hk].copy_from_slice(&q[(t0 + i) * qrow + h * hk..][..hk]);
    }
    fa.qr[nq * hk..rows * hk].fill(0.0);
    fa.ms[..nq].fill(f32::NEG_INFINITY);
    fa.ss[..nq].fill(0.0);
    fa.acc[..rows * hv].fill(0.0);
    let scale = fa_scale(s);
    let n_keys = s.pos0 + s.n_tokens; // positions held for the sequence
    let (jlo, jhi) = (s.first(t0), s.last(t1 - 1)); // keys any of the tile's tokens sees
    for c in (jlo / KV_TILE * KV_TILE..=jhi).step_by(KV_TILE) {
        let nk = (n_keys - c).min(KV_TILE);
        // K tile as 4 panels of 16 keys ([dk][key] per panel, zero past nk), V tile [key][hv].
        let kt = &mut fa.kt[..KV_TILE * hk];
        let vf = &mut fa.vf[..KV_TILE * hv];
        match keys {
            Keys::Base(b) => {
                (kern.attn.kt_f16)(hk, &l.k[l.ks.at(b + c, hkv)..], l.ks.pos, nk, kt);
                (kern.attn.vf_f16)(hv, &l.v[l.vs.at(b + c, hkv)..], l.vs.pos, nk, &mut vf[..nk * hv]);
            }
            Keys::Cells(cells) => {
                (kern.attn.kt_f16_gather)(hk, &l.k[l.ks.at(0, hkv)..], l.ks.pos, &cells[c..c + nk], kt);
                (kern.attn.vf_f16_gather)(hv, &l.v[l.vs.at(0, hkv)..], l.vs.pos, &cells[c..c + nk], &mut vf[..nk * hv]);
            }
        }
        kt[nk.div_ceil(KT_LANES) * KT_LANES * hk..].fill(0.0);
        vf[nk * hv..].fill(0.0);
        // simd_gemm: each score one fused multiply-add chain over the head, from 0
        (kern.attn.fa_tile_kq)(hk, kt, &fa.qr[..rows * hk], nq, &mut fa.sc[..rows * KV_TILE]);
        for i in 0..nq {
            let t = t0 + i;
            let (first, last) = (s.first(t), s.last(t));
            let row = &mut fa.sc[i * KV_TILE..(i + 1) * KV_TILE];
            // scale, soft-cap, mask (keys the query may not see, and past the cache, are −inf)
            let mut any = false;
            for (j, x) in row.iter_mut().enumerate() {
                let key = c + j;
                if j >= nk || key < first || key > last {
                    *x = f32::NEG_INFINITY;
                    continue;
                }
                let mut v = *x * scale;
                if let Some(cap) = s.softcap {
                    v = v.tanh() * cap;
                }
                *x = v;
                any = true;
            }
            if !any {
                // no key of this tile for the row: ggml skips its update (weights 0)
                row.fill(0.0);
                continue;
            }
            let tile_max = row.iter().fold(f32::NEG_INFINITY, |m, &x| if m > x { m } else { x });
            let m_old = fa.ms[i];
            let m_new = m_old.max(tile_max);
            if m_new > m_old {
                let ms = (m_old - m_new).exp();
                fa.acc[i * hv..(i + 1) * hv].iter_mut().for_each(|a| *a *= ms);
                fa.ss[i] *= ms;
            }
            fa.ms[i] = m_new;
            let sum = match kern.exp_sum {
                Some(f) => f(row, m_new),
                None => exp_sum_tile(row, m_new, kern.orders),
            };
            fa.ss[i] = (fa.ss[i] as f64 + sum) as f32;
        }
        fa.sc[nq * KV_TILE..rows * KV_TILE].fill(0.0);
        // simd_gemm: output += P·V, each output element one chain over the tile's keys
        (kern.attn.fa_tile_pv)(hv, &fa.sc[..rows * KV_TILE], vf, nq, &mut fa.acc[..rows * hv]);
    }
    if let Some(sk) = sinks {
        for i in 0..nq {
            add_sink(sk[h], &mut fa.ms[i], &mut fa.ss[i], &mut fa.acc[i * hv..(i + 1) * hv]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::types::AttnKernels;
    use crate::model::attention::AttnGroup;
    use crate::model::kv_cache::Strides;

    /// The lane path equals the online path bit for bit (the same table without its lane
    /// kernels) on a mixed batch: decode rows and prompt blocks, sequences over scattered cells
    /// and one contiguous run, a sliding window, sinks, every quantized K type, and groups under
    /// `LANES_MIN_ROWS` rows beside ones over it.
    #[test]
    fn lanes_equal_the_online_path() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for kern in Kernels::available().into_iter().filter(|k| k.attn.fa_lanes.is_some()) {
            let online = Kernels { attn: AttnKernels { fa_lanes: None, ..kern.attn }, ..kern };
            let types = [
                (GgmlType::Q8_0, GgmlType::Q8_0),
                (GgmlType::Q4_0, GgmlType::Q4_0),
                (GgmlType::Q4_1, GgmlType::Q5_0),
                (GgmlType::Q5_1, GgmlType::Q8_0),
            ];
            let heads = [(8usize, 2usize, 64usize, 0usize), (14, 2, 64, 9), (4, 2, 128, 0), (4, 1, 32, 0)];
            for (ti, &(kt, vt)) in types.iter().enumerate() {
                for &(n_head, n_head_kv, hd, n_swa) in &heads {
                    let (tk, tv) = (kern.traits(kt).unwrap(), kern.traits(vt).unwrap());
                    let (kb, vb) = (hd / 32 * tk.type_size, hd / 32 * tv.type_size);
                    let n_cells = 200;
                    let quant =
                        |n: usize, f: crate::kernels::types::FromFloatFn, rb: usize, rnd: &mut dyn FnMut() -> f32| {
                            let mut out = vec![0u8; n * rb];
                            for r in out.chunks_mut(rb) {
                                let x: Vec<f32> = (0..hd).map(|_| 3.0 * rnd()).collect();
                                f(&x, r);
                            }
                            out
                        };
                    let k = quant(n_cells * n_head_kv, tk.from_float.unwrap(), kb, &mut rnd);
                    let v = quant(n_cells * n_head_kv, tv.from_float.unwrap(), vb, &mut rnd);
                    let layer = LayerKv {
                        k,
                        v,
                        ks: Strides { pos: kb * n_head_kv, head: kb },
                        vs: Strides { pos: vb * n_head_kv, head: vb },
                    };
                    // (pos0, n_tokens): decode rows, prompt blocks; the last on a contiguous run
                    let seqs = [(37usize, 1usize), (20, 9), (0, 5), (60, 1)];
                    let mut perm: Vec<usize> = (0..120).collect();
                    for i in (1..perm.len()).rev() {
                        let j = ((rnd() + 1.0) * 0.5 * (i + 1) as f32) as usize % (i + 1);
                        perm.swap(i, j);
                    }
                    let mut free = perm.into_iter();
                    let cells: Vec<Vec<usize>> =
                        seqs[..3].iter().map(|&(p, n)| (0..p + n).map(|_| free.next().unwrap()).collect()).collect();
                    let base = AttnShape {
                        n_tokens: 1,
                        pos0: 0,
                        n_head,
                        n_head_kv,
                        head_k: hd,
                        head_v: hd,
                        kq_scale: 0.125,
                        n_swa,
                        softcap: None,
                        causal: true,
                    };
                    let mut groups = Vec::new();
                    let mut row0 = 0;
                    for (si, &(pos0, n)) in seqs.iter().enumerate() {
                        let keys = if si == 3 { Keys::Base(130) } else { Keys::Cells(&cells[si]) };
                        groups.push(AttnGroup { shape: AttnShape { n_tokens: n, pos0, ..base }, row0, keys });
                        row0 += n;
                    }
                    let q: Vec<f32> = (0..row0 * n_head * hd).map(|_| 2.0 * rnd()).collect();
                    let sinks: Vec<f32> = (0..n_head).map(|_| 4.0 * rnd()).collect();
                    let cache = FaCache::Raw { kv: &layer, k: kt, v: vt };
                    for nth in [1, 2] {
                        let pool = ThreadPool::new(nth);
                        let scratch: Vec<_> =
                            (0..nth).map(|_| Mutex::new(AttnScratch::new(n_cells, row0, n_head, hd, hd))).collect();
                        let sk = (ti % 2 == 1).then_some(sinks.as_slice());
                        let run = |k: &Kernels| {
                            let mut out = vec![f32::NAN; row0 * n_head * hd];
                            flash_attention_groups(k, &pool, &scratch, cache, &q, &mut out, &groups, sk);
                            out
                        };
                        let (got, want) = (run(&kern), run(&online));
                        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{:?} {kt}/{vt} heads {n_head}/{n_head_kv} hd {hd} swa {n_swa} nth {nth}",
                            kern.isa
                        );
                    }
                }
            }
        }
    }
}
