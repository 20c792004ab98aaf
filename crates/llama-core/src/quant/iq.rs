//! The grid-based i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): super-blocks of
//! 256 weights in groups of 8 (or 4), each group an index into a fixed grid of points
//! (`iq_grids`) plus, for the 2- and 3-bit types, 8 sign bits; small per-32 (or per-16) integer
//! scales times one f16 scale. llama.cpp quantizes them only with an importance matrix, so this
//! runtime reads them (dequantize and dot) but does not make them.
//!
//! Dequantization follows ggml-quants.c `dequantize_row_iq*` byte for byte (same float products in
//! the same order). Sign bytes: bit j of a group's sign byte negates element j; the 2/3-bit types
//! store 7 sign bits per group and take the 8th from even parity (`ksigns_iq2xs`).

use half::f16;

use super::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use super::QK_K;

/// IQ1_S / IQ1_M: the grid values are shifted by ±this (`IQ1S_DELTA`, `IQ1M_DELTA`).
pub const IQ1S_DELTA: f32 = 0.125;

/// 2.0625 bpw: 32 u16s, read as 8 pairs of u32 (aux0, aux1) per 32 weights: the 4 bytes of aux0
/// index `iq2xxs_grid` for the 4 groups of 8; aux1 holds 4 × 7 sign bits and a 4-bit scale on top.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2XXS {
    pub d: f16,
    pub qs: [u16; QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2XXS>() == 66);

/// 2.3125 bpw: per group of 8 one u16 (9-bit `iq2xs_grid` index, 7 sign bits); a 4-bit scale per
/// 16 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2XS {
    pub d: f16,
    pub qs: [u16; QK_K / 8],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2XS>() == 74);

/// 2.5625 bpw: 10-bit `iq2s_grid` indices (low 8 bits in `qs[0..32]`, top 2 in `qh`), 8 explicit
/// sign bits per group (`qs[32..64]`), a 4-bit scale per 16 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ2S {
    pub d: f16,
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ2S>() == 82);

/// 3.0625 bpw: 64 `iq3xxs_grid` indices (4 weights each) in `qs[0..64]`, then per 32 weights a u32
/// of 4 × 7 sign bits and a 4-bit scale on top (`qs[64..96]`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ3XXS {
    pub d: f16,
    pub qs: [u8; 3 * QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIQ3XXS>() == 98);

/// 3.4375 bpw: 9-bit `iq3s_grid` indices (4 weights each; the 9th bit in `qh`), 8 explicit sign
/// bits per 8 weights, a 4-bit scale per 32 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ3S {
    pub d: f16,
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub signs: [u8; QK_K / 8],
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(std::mem::size_of::<BlockIQ3S>() == 110);

/// 1.5625 bpw: 11-bit `iq1s_grid` indices (low 8 in `qs`, 3 high bits per group in `qh`); each
/// `qh` u16 also holds its 32 weights' 3-bit scale (bits 12..15) and the delta's sign (bit 15).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ1S {
    pub d: f16,
    pub qs: [u8; QK_K / 8],
    pub qh: [u16; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ1S>() == 50);

/// 1.75 bpw: 11-bit `iq1s_grid` indices (low 8 in `qs`; a `qh` nibble per group: 3 high bits and
/// the delta's sign), 3-bit scales per 16 weights in `scales` (read as 4 u16s), whose top nibbles
/// together form the f16 super-block scale (`iq1m_scale`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ1M {
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ1M>() == 56);

/// The 8 grid values of a u64 grid point (element j = byte j).
#[inline(always)]
pub fn grid8(p: u64) -> [u8; 8] {
    p.to_le_bytes()
}

/// The 4 grid values of a u32 grid point.
#[inline(always)]
pub fn grid4(p: u32) -> [u8; 4] {
    p.to_le_bytes()
}

/// IQ2_XXS's (aux0, aux1) of the 32 weights `ib32`.
#[inline(always)]
pub fn iq2xxs_aux(b: &BlockIQ2XXS, ib32: usize) -> (u32, u32) {
    let q = &b.qs[4 * ib32..4 * ib32 + 4];
    (q[0] as u32 | (q[1] as u32) << 16, q[2] as u32 | (q[3] as u32) << 16)
}

/// IQ2_S's grid index of group l (0..4) of the 32 weights ib32.
#[inline(always)]
pub fn iq2s_index(b: &BlockIQ2S, ib32: usize, l: usize) -> usize {
    b.qs[4 * ib32 + l] as usize | ((b.qh[ib32] as usize) << (8 - 2 * l) & 0x300)
}

/// IQ3_XXS's u32 of 4 × 7 sign bits and the 4-bit scale, for the 32 weights ib32.
#[inline(always)]
pub fn iq3xxs_aux(b: &BlockIQ3XXS, ib32: usize) -> u32 {
    let o = QK_K / 4 + 4 * ib32;
    u32::from_le_bytes([b.qs[o], b.qs[o + 1], b.qs[o + 2], b.qs[o + 3]])
}

/// IQ3_S's two grid indices (4 weights each) of group l (0..4) of the 32 weights ib32.
#[inline(always)]
pub fn iq3s_indices(b: &BlockIQ3S, ib32: usize, l: usize) -> (usize, usize) {
    let (qs, qh) = (&b.qs[8 * ib32..], b.qh[ib32] as usize);
    (qs[2 * l] as usize | ((qh << (8 - 2 * l)) & 256), qs[2 * l + 1] as usize | ((qh << (7 - 2 * l)) & 256))
}

/// IQ1_S's grid index of group l (0..4) of the 32 weights ib.
#[inline(always)]
pub fn iq1s_index(b: &BlockIQ1S, ib: usize, l: usize) -> usize {
    b.qs[4 * ib + l] as usize | (((b.qh[ib] as usize >> (3 * l)) & 7) << 8)
}

/// IQ1_M's `scales` as the 4 u16s ggml reads.
#[inline(always)]
pub fn iq1m_sc(b: &BlockIQ1M) -> [u16; 4] {
    std::array::from_fn(|i| u16::from_le_bytes([b.scales[2 * i], b.scales[2 * i + 1]]))
}

/// IQ1_M's f16 super-block scale, assembled from the top nibbles of the 4 scale u16s.
#[inline(always)]
pub fn iq1m_scale(sc: &[u16; 4]) -> f16 {
    f16::from_bits((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000))
}

/// IQ1_M's grid index of group l (0..4) of the 32 weights ib, and whether its delta is negative.
#[inline(always)]
pub fn iq1m_index(b: &BlockIQ1M, ib: usize, l: usize) -> (usize, bool) {
    let h = b.qh[2 * ib + l / 2] as usize;
    let idx = b.qs[4 * ib + l] as usize | ((h << (8 - 4 * (l % 2))) & 0x700);
    (idx, h & (0x08 << (4 * (l % 2))) != 0)
}

/// y[j] = dl · grid[j] · (±1 by bit j of signs), for 8 (or fewer) values.
#[inline(always)]
fn signed(y: &mut [f32], dl: f32, grid: &[u8], signs: u8, bit0: usize) {
    for (j, (y, &g)) in y.iter_mut().zip(grid).enumerate() {
        *y = dl * g as f32 * if signs & (1 << (bit0 + j)) != 0 { -1.0 } else { 1.0 };
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq2_xxs`).
pub fn dequantize_row_iq2_xxs(x: &[BlockIQ2XXS], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let (aux0, aux1) = iq2xxs_aux(b, ib32);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let grid = grid8(IQ2XXS_GRID[(aux0 >> (8 * l)) as u8 as usize]);
                signed(y, db, &grid, KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize], 0);
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq2_xs`).
pub fn dequantize_row_iq2_xs(x: &[BlockIQ2XS], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db =
                [d * (0.5 + (b.scales[ib32] & 0xf) as f32) * 0.25, d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let q = b.qs[4 * ib32 + l];
                let grid = grid8(IQ2XS_GRID[(q & 511) as usize]);
                signed(y, db[l / 2], &grid, KSIGNS_IQ2XS[(q >> 9) as usize], 0);
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq2_s`).
pub fn dequantize_row_iq2_s(x: &[BlockIQ2S], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db =
                [d * (0.5 + (b.scales[ib32] & 0xf) as f32) * 0.25, d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let grid = grid8(IQ2S_GRID[iq2s_index(b, ib32, l)]);
                signed(y, db[l / 2], &grid, b.qs[QK_K / 8 + 4 * ib32 + l], 0);
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq3_xxs`).
pub fn dequantize_row_iq3_xxs(x: &[BlockIQ3XXS], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let aux = iq3xxs_aux(b, ib32);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let grid1 = grid4(IQ3XXS_GRID[b.qs[8 * ib32 + 2 * l] as usize]);
                let grid2 = grid4(IQ3XXS_GRID[b.qs[8 * ib32 + 2 * l + 1] as usize]);
                signed(&mut y[..4], db, &grid1, signs, 0);
                signed(&mut y[4..], db, &grid2, signs, 4);
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq3_s`).
pub fn dequantize_row_iq3_s(x: &[BlockIQ3S], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = b.scales[ib32 / 2] >> (4 * (ib32 % 2)) & 0xf;
            let db = d * (1 + 2 * sc as i32) as f32;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (i1, i2) = iq3s_indices(b, ib32, l);
                let signs = b.signs[4 * ib32 + l];
                signed(&mut y[..4], db, &grid4(IQ3S_GRID[i1]), signs, 0);
                signed(&mut y[4..], db, &grid4(IQ3S_GRID[i2]), signs, 4);
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq1_s`).
pub fn dequantize_row_iq1_s(x: &[BlockIQ1S], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = b.qh[ib];
            let dl = d * (2 * ((qh >> 12) & 7) as i32 + 1) as f32;
            let delta = if qh & 0x8000 != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let grid = grid8(IQ1S_GRID[iq1s_index(b, ib, l)]);
                for (y, &g) in y.iter_mut().zip(&grid) {
                    *y = dl * (g as i8 as f32 + delta);
                }
            }
        }
    }
}

/// y[256 * x.len()] = dequantized x (`dequantize_row_iq1_m`).
pub fn dequantize_row_iq1_m(x: &[BlockIQ1M], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let sc = iq1m_sc(b);
        let d = iq1m_scale(&sc).to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = sc[ib / 2] >> (6 * (ib % 2));
            let dl = [d * (2 * (s & 7) as i32 + 1) as f32, d * (2 * ((s >> 3) & 7) as i32 + 1) as f32];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (idx, neg) = iq1m_index(b, ib, l);
                let delta = if neg { -IQ1S_DELTA } else { IQ1S_DELTA };
                for (y, &g) in y.iter_mut().zip(&grid8(IQ1S_GRID[idx])) {
                    *y = dl[l / 2] * (g as i8 as f32 + delta);
                }
            }
        }
    }
}
