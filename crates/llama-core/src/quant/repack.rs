//! Weights repacked at load into row-interleaved groups ("R16"), so one 512-bit `vpdpbusd` (or two
//! 256-bit ones, or four NEON `sdot`s) yields partial sums for 16 rows at once and a matvec needs no
//! horizontal reductions.
//!
//! A group is 16 consecutive weight rows. Within a group, for each block b of 32 columns:
//!   scales: `[nb][16]` f16 — the 16 rows' block scales, stored first for the whole group;
//!   quants: `[nb][QB]` bytes — block b's quants of the 16 rows, 4 bytes per row per "slot":
//!           slot s holds `[row 0..16][4 bytes]` (64 bytes, one zmm).
//! Slot contents per type (the 4 bytes of a row in a slot are 4 consecutive elements):
//!   Q4_0 (4 slots): bytes 4s..4s+4 of the row's 16 nibble bytes: low nibbles are elements
//!         4s..4s+4, high nibbles elements 16+4s..16+4s+4 (unsigned 0..15; value = q − 8).
//!   Q8_0 (8 slots): elements 4s..4s+4 as `x ^ 0x80`, i.e. x + 128 as an unsigned byte.
//! Repacking moves bytes only: a group takes exactly the bytes of its 16 rows in the file, so
//! generation (bound by memory bandwidth) reads no more than the plain layout.
//!
//! Activations for these kernels are "Q8_0S": per block `f32 d | i32 Σq | 32 × i8 q`, made from the
//! Q8_0 converter's output so the quantized values are the same as the row-wise path's. Σq folds the
//! weight offset (−8 for Q4_0, −128 for the XOR-ed Q8_0) into the integer accumulator's start.

use half::f16;

use super::GgmlType;

/// Rows per group.
pub const R: usize = 16;
/// Bytes of one Q8_0S activation block.
pub const Q8_0S_BLOCK: usize = 40;
/// Most tokens a `GemmR16Fn` call handles.
pub const MAX_T: usize = 8;

/// `(nb, group, acts, act_stride, nt, out, out_stride)`: for the 16 rows of `group` (nb blocks of
/// 32 columns) and `nt ≤ MAX_T` activation rows (Q8_0S, `act_stride` bytes apart), writes
/// `out[t * out_stride + r]` for r < 16, t < nt.
pub type GemmR16Fn = fn(usize, &[u8], &[u8], usize, usize, &mut [f32], usize);

/// Quant bytes of one block of a 16-row group (the f16 scales are stored apart).
pub fn quant_bytes(t: GgmlType) -> Option<usize> {
    match t {
        GgmlType::Q4_0 => Some(R * 16),
        GgmlType::Q8_0 => Some(R * 32),
        _ => None,
    }
}

/// Bytes of one 16-row group of `cols` columns.
pub fn group_bytes(t: GgmlType, cols: usize) -> Option<usize> {
    Some((cols / 32) * (R * 2 + quant_bytes(t)?))
}

/// 64-byte aligned storage, so every slot load is one aligned zmm load when `nb` is even.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A weight matrix in R16 layout.
pub struct Packed {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    buf: Vec<Line>,
    len: usize,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} {}x{})", self.ggml_type.name(), self.rows, self.cols)
    }
}

impl Packed {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `Line` is plain bytes with no padding; `len` ≤ buf.len() * 64.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, self.len) }
    }

    /// Bytes of group g (rows 16g .. 16g+16).
    pub fn group(&self, g: usize) -> &[u8] {
        let gb = group_bytes(self.ggml_type, self.cols).unwrap();
        &self.bytes()[g * gb..(g + 1) * gb]
    }

    pub fn n_groups(&self) -> usize {
        self.rows / R
    }
}

/// Repacks a row-major ggml matrix (`rows` × `cols`, plain blocks) into R16 groups. `None` if the
/// type has no R16 layout or the shape does not fit one (rows not a multiple of 16).
pub fn pack(t: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
    let qb = quant_bytes(t)?;
    if rows == 0 || rows % R != 0 || cols % 32 != 0 {
        return None;
    }
    let row_bytes = t.row_size(cols as u64)? as usize;
    if data.len() != rows * row_bytes {
        return None;
    }
    let nb = cols / 32;
    let gb = group_bytes(t, cols)?;
    let len = gb * (rows / R);
    let mut p = Packed { ggml_type: t, rows, cols, buf: vec![Line([0; 64]); len.div_ceil(64)], len };
    let out = p.bytes_mut();
    let src_block = row_bytes / nb; // 18 (Q4_0) or 34 (Q8_0): f16 d then the quants
    for g in 0..rows / R {
        let dst = &mut out[g * gb..(g + 1) * gb];
        let (scales, quants) = dst.split_at_mut(nb * R * 2);
        for r in 0..R {
            let row = &data[(g * R + r) * row_bytes..(g * R + r + 1) * row_bytes];
            for b in 0..nb {
                let blk = &row[b * src_block..(b + 1) * src_block];
                scales[(b * R + r) * 2..(b * R + r) * 2 + 2].copy_from_slice(&blk[0..2]);
                let q = &blk[2..];
                let qd = &mut quants[b * qb..(b + 1) * qb];
                for s in 0..qb / (R * 4) {
                    for i in 0..4 {
                        let v = q[4 * s + i];
                        qd[s * R * 4 + r * 4 + i] = if t == GgmlType::Q8_0 { v ^ 0x80 } else { v };
                    }
                }
            }
        }
    }
    Some(p)
}

/// Q8_0 activation rows (34-byte blocks, as the kernel table's converter writes them) → Q8_0S.
pub fn q8_0_to_q8_0s(src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(34).zip(dst.chunks_exact_mut(Q8_0S_BLOCK)) {
        let scale = f16::from_le_bytes([s[0], s[1]]).to_f32();
        let sum: i32 = s[2..34].iter().map(|&v| v as i8 as i32).sum();
        d[0..4].copy_from_slice(&scale.to_le_bytes());
        d[4..8].copy_from_slice(&sum.to_le_bytes());
        d[8..40].copy_from_slice(&s[2..34]);
    }
}

/// Checks a `GemmR16Fn` call's buffer lengths (the SIMD entries call this before any raw access).
pub fn check_gemm_args(t: GgmlType, nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &[f32], out_stride: usize) {
    let gb = nb * (R * 2 + quant_bytes(t).expect("R16 type"));
    assert!(nt >= 1 && nt <= MAX_T, "R16 gemm: nt {nt} not in 1..={MAX_T}");
    assert!(w.len() >= gb, "R16 gemm: group has {} bytes, need {gb}", w.len());
    assert!(a.len() >= (nt - 1) * a_stride + nb * Q8_0S_BLOCK, "R16 gemm: activations too short");
    assert!(out.len() >= (nt - 1) * out_stride + R, "R16 gemm: out too short");
}

/// The weight value of element j (0..32) of row r in block `qd` (its R16 quant bytes).
#[inline(always)]
fn weight_at(t: GgmlType, qd: &[u8], r: usize, j: usize) -> i32 {
    match t {
        GgmlType::Q4_0 => {
            let (s, i, hi) = ((j % 16) / 4, j % 4, j >= 16);
            let v = qd[s * R * 4 + r * 4 + i];
            (if hi { v >> 4 } else { v & 0x0F }) as i32 - 8
        }
        GgmlType::Q8_0 => (qd[(j / 4) * R * 4 + r * 4 + j % 4] ^ 0x80) as i8 as i32,
        _ => unreachable!("no R16 layout for {t:?}"),
    }
}

/// Scalar reference: per row, `Σ_b sumi_b · (d_w · d_a)` in block order, as `cpu::scalar`'s dots.
fn gemm_scalar(t: GgmlType, nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
    check_gemm_args(t, nb, w, a, a_stride, nt, out, out_stride);
    let qb = quant_bytes(t).unwrap();
    let (scales, quants) = w.split_at(nb * R * 2);
    for tk in 0..nt {
        let act = &a[tk * a_stride..];
        for r in 0..R {
            let mut sumf = 0.0f32;
            for b in 0..nb {
                let y = &act[b * Q8_0S_BLOCK..(b + 1) * Q8_0S_BLOCK];
                let qd = &quants[b * qb..(b + 1) * qb];
                let sumi: i32 = (0..32).map(|j| weight_at(t, qd, r, j) * y[8 + j] as i8 as i32).sum();
                let dw = f16::from_le_bytes([scales[(b * R + r) * 2], scales[(b * R + r) * 2 + 1]]).to_f32();
                let da = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                sumf += sumi as f32 * (dw * da);
            }
            out[tk * out_stride + r] = sumf;
        }
    }
}

pub fn gemm_q4_0_scalar(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
    gemm_scalar(GgmlType::Q4_0, nb, w, a, a_stride, nt, out, out_stride)
}

pub fn gemm_q8_0_scalar(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
    gemm_scalar(GgmlType::Q8_0, nb, w, a, a_stride, nt, out, out_stride)
}
