//! What the ISA modules share besides the signatures: the bounds every kernel call must satisfy
//! (the SIMD entries check them before any raw access), readers of activation blocks at raw
//! pointers, and llama.cpp's runtime activation-quantizer arithmetic.

use crate::quant::repack::{act_block_bytes, block_bytes, MAX_T, MAX_WIDE_T, R};
use crate::quant::{GgmlType, QK_K};

use super::types::{CacheElem, KT_LANES};

// ---- argument checks ----------------------------------------------------------------------------

/// Panics unless every index an `AttnKtFn` call touches is in bounds.
pub(crate) fn attn_kt_check(n: usize, k: usize, ks: usize, nk: usize, kt: usize) {
    assert!(n >= 1, "attention: empty head");
    if nk == 0 {
        return;
    }
    assert!(ks >= n && k >= (nk - 1) * ks + n, "attn_kt: k too short");
    assert!(kt >= nk.div_ceil(KT_LANES) * n * KT_LANES, "attn_kt: kt too short");
}

/// Panics unless every index an `AttnKqFn` call touches is in bounds.
pub(crate) fn attn_kq_check(n: usize, kt: usize, nk: usize, q: usize, nq: usize, out: usize, os: usize) {
    assert!(n >= 1, "attention: empty head");
    if nk == 0 || nq == 0 {
        return;
    }
    assert!(kt >= nk.div_ceil(KT_LANES) * n * KT_LANES, "attn_kq: kt too short");
    assert!(q >= nq * n, "attn_kq: q too short");
    assert!(os >= nk && out >= (nq - 1) * os + nk, "attn_kq: out too short");
}

/// Bounds every `AttnPvFn` call must satisfy.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_pv_check(n: usize, v: usize, vs: usize, j0: usize, lo: usize, hi: usize, p: usize, o: usize) {
    assert!(lo >= j0 && lo <= hi, "attn_pv: bad key range");
    assert!(vs >= n && v >= (hi - j0) * vs + n, "attn_pv: v too short");
    assert!(p > hi - j0, "attn_pv: p too short");
    assert!(o >= n, "attn_pv: o too short");
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
/// Bounds every `AttnPvPanelsFn` call must satisfy (`vt`: value panels in the `AttnKtFn` layout
/// from key j0, a multiple of 64; query i sees keys lo[i]..=hi[i], its probabilities at p[i·ps..]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_pv_panels_check(
    n: usize,
    vt: usize,
    j0: usize,
    lo: &[usize],
    hi: &[usize],
    p: usize,
    ps: usize,
    o: usize,
) {
    assert!(j0.is_multiple_of(64) && lo.len() == hi.len(), "attn_pv_panels: bad arguments");
    for (i, (&l, &h)) in lo.iter().zip(hi).enumerate() {
        assert!(l >= j0 && l <= h && h - j0 < ps, "attn_pv_panels: bad key range");
        assert!(vt >= ((h - j0) / 16 + 1) * n * 16, "attn_pv_panels: vt too short");
        assert!(p > i * ps + (h - j0), "attn_pv_panels: p too short");
    }
    assert!(o >= lo.len() * n, "attn_pv_panels: o too short");
}

/// Bounds of an `AttnVfFn` call: `nv` f16 rows of `n` values (`vs` apart) into `out[j*n + d]`.
pub(crate) fn attn_vf_check(n: usize, v: usize, vs: usize, nv: usize, out: usize) {
    if nv == 0 {
        return;
    }
    assert!(vs >= n && v >= (nv - 1) * vs + n, "attn_vf: v too short");
    assert!(out >= nv * n, "attn_vf: out too short");
}

/// Panics unless a flash-attention step's slices hold `scores.len()` value rows of `n` and an
/// output of `n`.
pub(crate) fn fa_online_check(n: usize, scores: usize, v: usize, acc: usize) {
    assert!(v >= scores * n && acc >= n, "fa_online: v or acc too short");
}

/// Panics unless a flash-attention tile's slices hold what `FaTileKqFn` / `FaTilePvFn` touch:
/// `nq` rounded up to 4 rows of `n` (queries, outputs) or 64 (scores), 64 keys of `n`.
pub(crate) fn fa_tile_check(n: usize, keys: usize, rows_src: usize, nq: usize, out: usize, kq: bool) {
    let r = nq.div_ceil(4) * 4;
    assert!(keys >= 64 * n, "fa_tile: keys too short");
    if kq {
        assert!(rows_src >= r * n && out >= r * 64, "fa_tile_kq: q or out too short");
    } else {
        assert!(rows_src >= r * 64 && out >= r * n, "fa_tile_pv: p or acc too short");
    }
}

/// Panics unless a cache row `x` of type `t` is whole blocks and `y` holds as many blocks of its
/// Q8_0 (Q8_1 for Q4_1/Q5_1) partner.
pub(crate) fn fa_kv_dot_check(t: crate::quant::GgmlType, x: usize, y: usize) {
    use crate::quant::GgmlType as T;
    let ts = t.block_layout().1;
    let yts = if matches!(t, T::Q4_1 | T::Q5_1) { 36 } else { 34 };
    assert!(matches!(t, T::Q8_0 | T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1), "fa_kv_dot: no dot for {t}");
    assert!(x.is_multiple_of(ts) && y >= x / ts * yts, "fa_kv_dot: rows do not match");
}

/// Panics unless a `FaLanesKqFn` call is in bounds: queries laid out for keys of type `t` with a
/// head of at most `FA_LANE_MAX_N`, `nk ≤ FA_LANE_KEYS` whole key rows, 16 scores per key.
#[cfg(target_arch = "x86_64")] // only the x86 kernels have these entries
pub(crate) fn fa_lanes_kq_check(
    t: crate::quant::GgmlType,
    k: usize,
    nk: usize,
    q: &super::types::FaLaneQueries,
    out: usize,
) {
    use super::types::{FA_LANES, FA_LANE_KEYS, FA_LANE_MAX_N};
    let n = q.n;
    assert!(q.k_type == Some(t), "fa_lanes_kq: queries were laid out for {:?}, keys are {t}", q.k_type);
    assert!(n.is_multiple_of(32) && n <= FA_LANE_MAX_N && nk <= FA_LANE_KEYS, "fa_lanes_kq: n={n} nk={nk}");
    assert!(k >= nk * (n / 32) * t.block_layout().1 && out >= nk * FA_LANES, "fa_lanes_kq: short keys or output");
    let nb = n / 32;
    assert!(q.qt.len() >= n * FA_LANES && q.corr.len() >= n / 4 * FA_LANES && q.qd.len() >= nb * FA_LANES);
    assert!(q.qs.is_empty() || q.qs.len() >= nb * FA_LANES, "fa_lanes_kq: short block sums");
}

/// Panics unless a `FaLanesOnlineFn` call is in bounds: `nk ≤ FA_LANE_KEYS` keys of 16 scores and
/// `n` values (n a multiple of 16), `n` × 16 outputs, an f32 output without a soft-cap.
#[cfg(target_arch = "x86_64")] // only the x86 kernels have these entries
pub(crate) fn fa_lanes_online_check(n: usize, scores: usize, nk: usize, v: usize, acc: usize, p: super::types::FaStep) {
    use super::types::{FA_LANES, FA_LANE_KEYS};
    assert!(n.is_multiple_of(16) && nk <= FA_LANE_KEYS, "fa_lanes_online: n={n} nk={nk}");
    assert!(scores >= nk * FA_LANES && v >= nk * n && acc >= n * FA_LANES, "fa_lanes_online: short slices");
    assert!(!p.f16_acc && p.softcap == 0.0, "fa_lanes_online: f32 outputs without a soft-cap only");
}

/// Panics unless every index a gather call (`AttnKtGatherFn`: `panels`, or `AttnVfGatherFn`)
/// touches is in bounds: each named row `cells[j]·stride .. + n` inside `src`, and the output
/// large enough for `cells.len()` rows (as panels or packed rows).
pub(crate) fn attn_gather_check(n: usize, src: usize, stride: usize, cells: &[usize], out: usize, panels: bool) {
    assert!(n >= 1, "attention: empty head");
    let nk = cells.len();
    if nk == 0 {
        return;
    }
    assert!(stride >= n, "attn gather: stride below the row length");
    let max = cells.iter().copied().max().unwrap_or(0);
    assert!(
        max.checked_mul(stride).and_then(|o| o.checked_add(n)).is_some_and(|e| e <= src),
        "attn gather: row out of range"
    );
    let need = if panels { nk.div_ceil(KT_LANES) * n * KT_LANES } else { nk * n };
    assert!(out >= need, "attn gather: output too short");
}

/// Checks a `GemmR16Fn` call's buffer lengths for weights of type `t`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_r16_check(
    t: GgmlType,
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_stride: usize,
    nt: usize,
    out: &[f32],
    out_stride: usize,
) {
    gemm_r16_check_upto(t, MAX_T, nb, w, a, a_stride, nt, out, out_stride)
}

/// `gemm_r16_check` for a kernel taking up to `max_t` (≤ `MAX_WIDE_T`) tokens per call.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_r16_check_upto(
    t: GgmlType,
    max_t: usize,
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_stride: usize,
    nt: usize,
    out: &[f32],
    out_stride: usize,
) {
    let (hb, qb) = block_bytes(t).expect("R16 type");
    let ab = act_block_bytes(t);
    assert!(max_t <= MAX_WIDE_T && (1..=max_t).contains(&nt), "R16 gemm: nt {nt} not in 1..={max_t}");
    assert!(w.len() >= nb * (hb + qb), "R16 gemm: group has {} bytes, need {}", w.len(), nb * (hb + qb));
    assert!(nt == 1 || a_stride >= nb * ab, "R16 gemm: activation stride {a_stride} < {}", nb * ab);
    assert!(a.len() >= (nt - 1) * a_stride + nb * ab, "R16 gemm: activations too short");
    assert!(nt == 1 || out_stride >= R, "R16 gemm: out stride {out_stride} < {R}");
    assert!(out.len() >= (nt - 1) * out_stride + R, "R16 gemm: out too short");
}

/// `GemvR16Fn`'s argument checks (`groups` groups `w_stride` bytes apart, one activation row,
/// outputs `out_stride` floats apart); panics with the problem otherwise.
#[cfg(target_arch = "x86_64")] // only the x86 kernels have these entries
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv_r16_check(
    t: GgmlType,
    groups: usize,
    nb: usize,
    w: &[u8],
    w_stride: usize,
    a: &[u8],
    out: &[f32],
    out_stride: usize,
) {
    let (hb, qb) = block_bytes(t).expect("R16 type");
    let gb = nb * (hb + qb);
    assert!(groups == 1 || w_stride >= gb, "R16 gemv: group stride {w_stride} < {gb}");
    assert!(w.len() >= (groups - 1) * w_stride + gb, "R16 gemv: {} weight bytes for {groups} groups", w.len());
    assert!(a.len() >= nb * act_block_bytes(t), "R16 gemv: activations too short");
    assert!(groups == 1 || out_stride >= R, "R16 gemv: out stride {out_stride} < {R}");
    assert!(out.len() >= (groups - 1) * out_stride + R, "R16 gemv: out too short");
}

/// One `GemvR16Fn` call at raw pointers, after `gemv_r16_check`: group g of `nb` blocks at
/// `w + g·ws`, one activation row at `a`, group g's 16 results written at `out + g·os`.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct GemvCall {
    pub nb: usize,
    pub w: *const u8,
    pub ws: usize,
    pub a: *const u8,
    pub out: *mut f32,
    pub os: usize,
}

/// One R16 kernel call at raw pointers, as a `GemmR16Fn` entry hands it to its `#[target_feature]`
/// body after `gemm_r16_check`: `w` points to a readable R16 group of `nb` blocks
/// (`quant::repack`), `a` to the call's activation rows of `nb` blocks (Q8_0S or Q8_K), `as_` bytes
/// apart, and `out` to its writable output rows of the 16 row results (a split kernel: at the first
/// row of its part `part`, which is 0 otherwise), `os` floats apart.
#[derive(Clone, Copy)]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) struct R16Call {
    pub nb: usize,
    pub w: *const u8,
    pub part: usize,
    pub a: *const u8,
    pub as_: usize,
    pub out: *mut f32,
    pub os: usize,
}

// ---- activation blocks at raw pointers ----------------------------------------------------------

/// A little-endian f16 at `p`, widened (exact). (x86 kernels convert with F16C instead.)
///
/// # Safety
/// `p..p+2` must be readable.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees the two bytes are readable; u16 reads need no alignment here.
    half::f16::from_bits(unsafe { (p as *const u16).read_unaligned() }).to_f32()
}

/// A little-endian f32 at `p`.
///
/// # Safety
/// `p..p+4` must be readable.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees the four bytes are readable; read_unaligned has no alignment need.
    unsafe { (p as *const f32).read_unaligned() }
}

/// A little-endian bf16 at `p`, widened (exact: its bits are the f32's top half).
///
/// # Safety
/// `p..p+2` must be readable.
#[inline(always)]
pub(crate) unsafe fn bf16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees the two bytes are readable.
    f32::from_bits((unsafe { (p as *const u16).read_unaligned() } as u32) << 16)
}

/// A Q8_0S activation block at `y` (`quant::repack`): (d_a, Σq, pointer to the 32 quants).
///
/// # Safety
/// `y..y + repack::Q8_0S_BLOCK` must be readable.
#[inline(always)]
pub(crate) unsafe fn q8_0s_block(y: *const u8) -> (f32, i32, *const u8) {
    // SAFETY: the first 8 bytes of the block are readable (caller); unaligned reads.
    unsafe { ((y as *const f32).read_unaligned(), (y.add(4) as *const i32).read_unaligned(), y.add(8)) }
}

/// A Q8_K activation block at `y`: (d, pointer to the 256 quants, pointer to the 16 i16 bsums).
///
/// # Safety
/// `y..y + 292` must be readable; the bsums pointer is dereferenced by callers as `*const i16`,
/// so `y` must be 2-byte aligned (Q8_K rows are 4-aligned in every activation buffer).
#[inline(always)]
pub(crate) unsafe fn q8k_block(y: *const u8) -> (f32, *const u8, *const i16) {
    // SAFETY: in bounds of the block (caller); the f32 read is unaligned.
    unsafe { ((y as *const f32).read_unaligned(), y.add(4), y.add(4 + QK_K) as *const i16) }
}

/// Bsum j (0..16) of the Q8_K block `y` (its bytes).
#[inline(always)]
pub(crate) fn q8k_bsum(y: &[u8], j: usize) -> i32 {
    i16::from_le_bytes([y[4 + QK_K + 2 * j], y[4 + QK_K + 2 * j + 1]]) as i32
}

// ---- llama.cpp's runtime activation quantizers --------------------------------------------------

/// Per-block scale and inverse scale of llama.cpp's runtime Q8_0/Q8_1 activation quantizer
/// (ggml-cpu arch/x86 quantize_row_q8_0/q8_1): d = amax/127 and id = 127/amax — not 1/d as in the
/// `_ref` weight quantizer; the two differ in the last bit for some amax.
#[inline(always)]
pub(crate) fn q8_scales(amax: f32) -> (f32, f32) {
    (amax / 127.0, if amax != 0.0 { 127.0 / amax } else { 0.0 })
}

/// Completes a Q8_K block `yb` (bytes) whose 256 quants are written: the 16 bsums and d = 1/iscale.
#[inline]
pub(crate) fn q8k_finish(yb: &mut [u8], iscale: f32) {
    for j in 0..QK_K / 16 {
        let s: i32 = yb[4 + 16 * j..4 + 16 * j + 16].iter().map(|&q| q as i8 as i32).sum();
        yb[4 + QK_K + 2 * j..4 + QK_K + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    yb[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

// ---- f16 conversion loops of the attention kernels ----------------------------------------------
// Written once, inlined into each ISA's `#[target_feature]` kernel, which supplies `wide(src, dst)`:
// widen the `W` f16 values at `src` (exactly) and store them at `dst`.

/// Key panels (`AttnKtFn`) from f16 keys, `W` values widened at a time.
///
/// # Safety
/// `k`, `kt` must cover what `attn_kt_check(n, k_len, ks, nk, kt_len)` requires, and `wide` must
/// be sound to call on `W` readable values and `W` writable floats.
#[inline(always)]
pub(crate) unsafe fn attn_kt_f16_by<const W: usize>(
    n: usize,
    k: *const half::f16,
    ks: usize,
    nk: usize,
    kt: *mut f32,
    wide: impl Fn(*const half::f16, *mut f32),
) {
    // SAFETY: key j starts at k + j·ks, inside the bounds the caller guarantees.
    unsafe { attn_kt_f16_rows::<W>(n, |j| k.add(j * ks), nk, kt, wide) }
}

/// Key panels from f16 keys wherever they are: key j (< nk) is the `n` values at `row(j)` (a
/// strided run of rows, or the cells of a sequence: `AttnKtGatherFn`), `W` widened at a time.
///
/// # Safety
/// `row(j)` must point at `n` readable values for every j < nk, `kt` must hold
/// nk.div_ceil(KT_LANES)·n·KT_LANES writable floats, and `wide` must be sound to call on `W`
/// readable values and `W` writable floats.
#[inline(always)]
pub(crate) unsafe fn attn_kt_f16_rows<const W: usize>(
    n: usize,
    row: impl Fn(usize) -> *const half::f16,
    nk: usize,
    kt: *mut f32,
    wide: impl Fn(*const half::f16, *mut f32),
) {
    // SAFETY: every index below is inside the bounds the caller guarantees.
    unsafe {
        let mut tmp = [0f32; W];
        for c in 0..nk.div_ceil(KT_LANES) {
            let panel = kt.add(c * n * KT_LANES);
            for l in 0..KT_LANES {
                let j = c * KT_LANES + l;
                if j >= nk {
                    for d in 0..n {
                        *panel.add(d * KT_LANES + l) = 0.0;
                    }
                    continue;
                }
                let kj = row(j);
                let mut d = 0;
                while d + W <= n {
                    wide(kj.add(d), tmp.as_mut_ptr());
                    for (e, &x) in tmp.iter().enumerate() {
                        *panel.add((d + e) * KT_LANES + l) = x;
                    }
                    d += W;
                }
                for e in d..n {
                    *panel.add(e * KT_LANES + l) = (*kj.add(e)).f32();
                }
            }
        }
    }
}

/// f16 value rows to packed f32 rows (`AttnVfFn`), `W` values widened at a time.
///
/// # Safety
/// `v`, `out` must cover what `attn_vf_check(n, v_len, vs, nv, out_len)` requires, and `wide`
/// must be sound to call on `W` readable values and `W` writable floats.
#[inline(always)]
pub(crate) unsafe fn attn_vf_f16_by<const W: usize>(
    n: usize,
    v: *const half::f16,
    vs: usize,
    nv: usize,
    out: *mut f32,
    wide: impl Fn(*const half::f16, *mut f32),
) {
    // SAFETY: row j starts at v + j·vs, inside the bounds the caller guarantees.
    unsafe { attn_vf_f16_rows::<W>(n, |j| v.add(j * vs), nv, out, wide) }
}

/// f16 value rows wherever they are (row j < nv is the `n` values at `row(j)`: strided, or the
/// cells of a sequence, `AttnVfGatherFn`) to packed f32 rows, `W` values widened at a time.
///
/// # Safety
/// `row(j)` must point at `n` readable values for every j < nv, `out` must hold nv·n writable
/// floats, and `wide` must be sound to call on `W` readable values and `W` writable floats.
#[inline(always)]
pub(crate) unsafe fn attn_vf_f16_rows<const W: usize>(
    n: usize,
    row: impl Fn(usize) -> *const half::f16,
    nv: usize,
    out: *mut f32,
    wide: impl Fn(*const half::f16, *mut f32),
) {
    // SAFETY: every index below is inside the bounds the caller guarantees.
    unsafe {
        for j in 0..nv {
            let (src, dst) = (row(j), out.add(j * n));
            let mut d = 0;
            while d + W <= n {
                wide(src.add(d), dst.add(d));
                d += W;
            }
            for e in d..n {
                *dst.add(e) = (*src.add(e)).f32();
            }
        }
    }
}

/// `RoundFn` body: `round(p)` rounds the `W` floats at `p` through f16 in place; the tail goes
/// through `half`.
///
/// # Safety
/// `round` must be sound to call on `W` readable and writable floats.
#[inline(always)]
pub(crate) unsafe fn round_f16_by<const W: usize>(x: &mut [f32], round: impl Fn(*mut f32)) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    while i + W <= n {
        // SAFETY: p + i .. p + i + W lies inside x.
        round(unsafe { p.add(i) });
        i += W;
    }
    for v in &mut x[i..] {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// Checks a `SwigluFn` call: `gate` whole rows of `n_ff`, `up` at least as long.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn swiglu_check(gate: &[f32], up: &[f32], n_ff: usize) {
    assert!(n_ff > 0 && gate.len().is_multiple_of(n_ff) && up.len() >= gate.len(), "swiglu: shapes");
}

/// Checks a `GeluFn` call: the padded table (`elementwise::gelu_table`, which the SIMD kernels'
/// gathers rely on), and `up` no shorter than `x`.
pub(crate) fn gelu_check(x: &[f32], up: Option<&[f32]>, t: &[u16]) {
    assert!(t.len() > u16::MAX as usize + 1, "gelu: the table needs 65,537 entries (gelu_table)");
    assert!(up.is_none_or(|u| u.len() >= x.len()), "gelu: up shorter than x");
}

/// `SwigluFn` body, `gate = silu(gate) · up` over rows of `n_ff` as `ggml_vec_swiglu_f32`: `wide(g,
/// u)` does the `W` lanes at `g`, `u` (ggml_v_silu), each row's tail (n_ff mod W) is ggml's scalar
/// loop (libm expf).
///
/// # Safety
/// `wide` must be sound to call on `W` readable and writable floats at `g` and `W` readable ones at
/// `u`; the shapes must pass `swiglu_check`.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) unsafe fn swiglu_by<const W: usize>(
    gate: &mut [f32],
    up: &[f32],
    n_ff: usize,
    wide: impl Fn(*mut f32, *const f32),
) {
    for (gr, ur) in gate.chunks_exact_mut(n_ff).zip(up.chunks_exact(n_ff)) {
        let simd = n_ff / W * W;
        let (g, u) = (gr.as_mut_ptr(), ur.as_ptr());
        let mut i = 0;
        while i < simd {
            // SAFETY: i + W ≤ n_ff: both pointers stay inside this row of gate and of up.
            unsafe { wide(g.add(i), u.add(i)) };
            i += W;
        }
        for j in simd..n_ff {
            let x = gr[j];
            gr[j] = x / (1.0 + (-x).exp()) * ur[j];
        }
    }
}
