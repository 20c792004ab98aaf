//! Weights repacked at load into row-interleaved groups ("R16"), so one 512-bit `vpdpbusd` (or two
//! 256-bit ones, or four NEON `sdot`s) yields partial sums for 16 rows at once and a matvec needs no
//! horizontal reductions.
//!
//! A group is 16 consecutive weight rows. Within a group, for each block b (32 or 256 columns):
//!   header: `[nb][16]` f16 — the 16 rows' block scales (Q2_K, Q4_K, Q5_K: `[16 d][16 dmin]`), all blocks first;
//!   quants: `[nb][…]` — block b of the 16 rows in 64-byte "slots" of `[row 0..16][4 bytes]` (one
//!           zmm), 4 consecutive elements of a row per slot; see `write_block` for each type.
//! Repacking moves bytes only: a group takes exactly the bytes of its 16 rows in the file, so
//! generation (bound by memory bandwidth) reads no more than the plain layout.
//!
//! MXFP4 has no f16 header: its rows' e8m0 scale bytes sit after each block's quants.
//!
//! Activations: for Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4, "Q8_0S" blocks `f32 d | i32 Σq | 32 × i8 q | 8 × i32`, made from the
//! Q8_0 converter's output so the quantized values are the row-wise path's; Σq folds the weight
//! offset (−8, −16, −128 for the XOR-ed Q8_0) into the start of the integer accumulator. For
//! Q4_1/Q5_1, "Q8_1S" blocks of the same size `f32 d | f32 s | 32 × i8 q | 8 × i32 0`, made from the
//! Q8_1 converter's output (s = the block's d·Σq, which meets the weight minimum). For the K-quants
//! and IQ4_XS, plain Q8_K blocks (their bsums serve the same purpose).

use half::f16;

use std::ops::Range;
use std::sync::Arc;

use super::blocks::HugeBuf;
use super::GgmlType;

/// Rows per group.
pub const R: usize = 16;
/// Bytes of one Q8_0S activation block: `f32 d | i32 Σq | 32 × i8 q | 8 × i32 off·Σ q[4k..4k+4]`
/// (off the weight type's offset, see `to_r16_acts`). The per-lane terms let a kernel keep
/// llama.cpp's 8 lanes of 4 elements apart (see `kernels::x86::r16_avx512`). Q8_1S blocks (for
/// Q4_1/Q5_1) have the same size and layout, with `f32 s` in place of Σq and zero lane terms.
pub const Q8_0S_BLOCK: usize = 72;
/// Bytes of one Q8_K block: f32 d | 256 × i8 | 16 × i16 bsums.
pub const Q8_K_BLOCK: usize = 292;
/// Most tokens a `kernels::types::GemmR16Fn` call handles.
pub const MAX_T: usize = 8;
/// Most tokens a "wide" batch kernel (`kernels::types::R16Batch::max_t` > `MAX_T`) handles per
/// call: kernels that decode each weight block once per call run it over this many tokens.
pub const MAX_WIDE_T: usize = 64;

/// Bytes per block of a 16-row group: (header, quants).
pub fn block_bytes(t: GgmlType) -> Option<(usize, usize)> {
    Some(match t {
        GgmlType::Q4_0 | GgmlType::IQ4_NL => (R * 2, R * 16),
        GgmlType::Q4_1 => (R * 4, R * 16),
        GgmlType::Q5_0 => (R * 2, R * 4 + R * 16),
        GgmlType::Q5_1 => (R * 4, R * 4 + R * 16),
        GgmlType::Q8_0 => (R * 2, R * 32),
        GgmlType::Q2_K => (R * 4, R * 16 + R * 64),
        GgmlType::Q3_K => (R * 2, R * 12 + R * 32 + R * 64),
        GgmlType::Q4_K => (R * 4, R * 12 + R * 128),
        GgmlType::Q5_K => (R * 4, R * 12 + R * 128 + R * 32),
        GgmlType::Q6_K => (R * 2, R * 16 + R * 128 + R * 64),
        GgmlType::IQ4_XS => (R * 2, R * 128 + R * 4 + R * 2),
        // no f16 header: the 16 rows' e8m0 scale bytes follow the quants (`write_block`)
        GgmlType::MXFP4 => (0, R * 16 + R),
        _ => return None,
    })
}

/// Bytes of one 16-row group of `cols` columns.
pub fn group_bytes(t: GgmlType, cols: usize) -> Option<usize> {
    let (h, q) = block_bytes(t)?;
    Some(cols / t.block_size() * (h + q))
}

/// Bytes of one activation block for weights of type `t`: Q8_0S, Q8_1S or Q8_K.
pub fn act_block_bytes(t: GgmlType) -> usize {
    if t.block_size() == 256 {
        Q8_K_BLOCK
    } else {
        Q8_0S_BLOCK
    }
}

/// A weight matrix in R16 layout.
pub struct Packed {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// Page-aligned storage, so every slot load is one aligned zmm load when `nb` is even.
    buf: Store,
}

/// Where a `Packed` matrix's bytes live: its own buffer, or a page-aligned range of an arena that
/// all of a model's matrices share (`PackArena`).
enum Store {
    Own(HugeBuf),
    Arena { arena: Arc<HugeBuf>, range: Range<usize> },
}

/// One buffer for all the matrices a model repacks. A matrix under 2 MiB alone would sit on
/// 4 KiB pages (`HugeBuf` advises only whole huge pages), and so would the last part of every
/// bigger one: the layers' matrices of a 0.5B model are 0.1–3.6 MB, and on 4 KiB pages their GEMVs
/// read DRAM ~10 % slower (the hardware prefetchers stop at each page; docs/PERFORMANCE.md). In
/// one arena nearly every byte is on huge pages. Each matrix starts on a 4 KiB page (≤ 4 KiB of
/// slack each).
pub struct PackArena {
    buf: HugeBuf,
    /// each matrix's `(ggml_type, rows, cols)` and its range of `buf`
    mats: Vec<((GgmlType, usize, usize), Range<usize>)>,
}

/// Alignment of a matrix inside a `PackArena`.
const ARENA_ALIGN: usize = 4096;

impl PackArena {
    /// Room for matrices of these shapes `(ggml_type, rows, cols)`, in order; `Err` when one has no
    /// R16 layout (`packed_len`) or the system has no memory for them.
    pub fn new(shapes: &[(GgmlType, usize, usize)]) -> std::io::Result<PackArena> {
        let mut mats = Vec::with_capacity(shapes.len());
        let mut end = 0;
        for &(t, rows, cols) in shapes {
            let len = packed_len(t, rows, cols).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no R16 layout for {t} {rows}x{cols}"))
            })?;
            mats.push(((t, rows, cols), end..end + len));
            end = (end + len).next_multiple_of(ARENA_ALIGN);
        }
        Ok(PackArena { buf: HugeBuf::zeroed(end)?, mats })
    }

    /// Each matrix's (zeroed) bytes, in the order of `new`'s shapes, for `pack_into`.
    pub fn slots(&mut self) -> Vec<&mut [u8]> {
        let mut rest = self.buf.bytes_mut();
        let mut at = 0;
        let mut out = Vec::with_capacity(self.mats.len());
        for (_, r) in &self.mats {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
            let (slot, tail) = tail.split_at_mut(r.len());
            out.push(slot);
            rest = tail;
            at = r.end;
        }
        out
    }

    /// The matrices once packed, in the order of `new`'s shapes: `None` where `packed[i]` is false
    /// (`pack_into` declined the slot).
    pub fn finish(self, packed: &[bool]) -> Vec<Option<Packed>> {
        let arena = Arc::new(self.buf);
        self.mats
            .into_iter()
            .zip(packed)
            .map(|(((ggml_type, rows, cols), range), &ok)| {
                ok.then(|| Packed { ggml_type, rows, cols, buf: Store::Arena { arena: arena.clone(), range } })
            })
            .collect()
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} {}x{})", self.ggml_type.name(), self.rows, self.cols)
    }
}

impl Packed {
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            Store::Own(b) => b.bytes(),
            Store::Arena { arena, range } => &arena.bytes()[range.clone()],
        }
    }

    /// Bytes of one group.
    pub fn group_bytes(&self) -> usize {
        group_bytes(self.ggml_type, self.cols).unwrap()
    }

    /// Bytes of group g (rows 16g .. 16g+16).
    pub fn group(&self, g: usize) -> &[u8] {
        let gb = self.group_bytes();
        &self.bytes()[g * gb..(g + 1) * gb]
    }

    pub fn n_groups(&self) -> usize {
        self.rows / R
    }
}

/// One plain block split into what the R16 layout stores: its header bytes (f16 scales in file
/// order), each element's quant as an unsigned value (Q8_0: the raw i8 bits), and the K-quants'
/// sub-block scale bytes.
struct Parts {
    head: [u8; 4],
    vals: [u8; 256],
    scales: [u8; 16],
}

fn split_block(t: GgmlType, b: &[u8]) -> Parts {
    let mut p = Parts { head: [0; 4], vals: [0; 256], scales: [0; 16] };
    match t {
        // IQ4_NL keeps Q4_0's layout (d @0, qs[16] @2); its nibbles index kvalues_iq4nl
        GgmlType::Q4_0 | GgmlType::IQ4_NL => {
            p.head[..2].copy_from_slice(&b[..2]);
            for j in 0..16 {
                p.vals[j] = b[2 + j] & 15;
                p.vals[j + 16] = b[2 + j] >> 4;
            }
        }
        GgmlType::MXFP4 => {
            // e @0 (e8m0 scale, kept in `scales[0]`), qs[16] @1, nibbles index kvalues_mxfp4
            p.scales[0] = b[0];
            for j in 0..16 {
                p.vals[j] = b[1 + j] & 15;
                p.vals[j + 16] = b[1 + j] >> 4;
            }
        }
        GgmlType::Q4_1 => {
            // d @0, m @2, qs[16] @4
            p.head.copy_from_slice(&b[..4]);
            for j in 0..16 {
                p.vals[j] = b[4 + j] & 15;
                p.vals[j + 16] = b[4 + j] >> 4;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // Q5_0: d @0, qh @2, qs @6; Q5_1: d @0, m @2, qh @4, qs @8
            let h = if t == GgmlType::Q5_1 { 4 } else { 2 };
            p.head[..h].copy_from_slice(&b[..h]);
            let qh = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
            for (j, &q) in b[h + 4..h + 20].iter().enumerate() {
                p.vals[j] = (q & 15) | ((((qh >> j) & 1) as u8) << 4);
                p.vals[j + 16] = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            }
        }
        GgmlType::Q8_0 => {
            p.head[..2].copy_from_slice(&b[..2]);
            p.vals[..32].copy_from_slice(&b[2..34]);
        }
        GgmlType::Q4_K => {
            // d @0, dmin @2, scales[12] @4, qs[128] @16: bytes 32h..32h+32 hold elements
            // 64h..64h+32 (low nibbles) and 64h+32..64h+64 (high nibbles).
            p.head.copy_from_slice(&b[..4]);
            p.scales[..12].copy_from_slice(&b[4..16]);
            for h in 0..4 {
                for l in 0..32 {
                    p.vals[64 * h + l] = b[16 + 32 * h + l] & 15;
                    p.vals[64 * h + 32 + l] = b[16 + 32 * h + l] >> 4;
                }
            }
        }
        GgmlType::Q2_K => {
            // scales[16] @0, qs[64] @16, d @80, dmin @82: kept as bytes (vals 0..80)
            p.head.copy_from_slice(&b[80..84]);
            p.vals[..80].copy_from_slice(&b[..80]);
        }
        GgmlType::Q3_K => {
            // hmask[32] @0, qs[64] @32, scales[12] @96, d @108: kept as bytes (vals 0..96)
            p.head[..2].copy_from_slice(&b[108..110]);
            p.scales[..12].copy_from_slice(&b[96..108]);
            p.vals[..96].copy_from_slice(&b[..96]);
        }
        GgmlType::Q5_K => {
            // as Q4_K with qh[32] @16 and qs[128] @48: the fifth bit of element 32j + l is bit j
            // of qh[l].
            p.head.copy_from_slice(&b[..4]);
            p.scales[..12].copy_from_slice(&b[4..16]);
            for h in 0..4 {
                for l in 0..32 {
                    let fifth = |j: usize| ((b[16 + l] >> j) & 1) << 4;
                    p.vals[64 * h + l] = (b[48 + 32 * h + l] & 15) | fifth(2 * h);
                    p.vals[64 * h + 32 + l] = (b[48 + 32 * h + l] >> 4) | fifth(2 * h + 1);
                }
            }
        }
        GgmlType::Q6_K => {
            // ql[128] @0, qh[64] @128, scales[16] @192, d @208 (ggml's dequantize_row_q6_K order).
            p.head[..2].copy_from_slice(&b[208..210]);
            p.scales.copy_from_slice(&b[192..208]);
            for h in 0..2 {
                let (ql, qh) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..128 + 32 * h + 32]);
                let v = &mut p.vals[128 * h..];
                for l in 0..32 {
                    v[l] = (ql[l] & 15) | ((qh[l] & 3) << 4);
                    v[l + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
                    v[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    v[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
        }
        GgmlType::IQ4_XS => {
            // d @0, scales_h @2, scales_l[4] @4, qs[128] @8: bytes 16ib..16ib+16 hold elements
            // 32ib..32ib+16 (low nibbles) and 32ib+16..32ib+32 (high nibbles)
            p.head[..2].copy_from_slice(&b[..2]);
            p.scales[..6].copy_from_slice(&b[2..8]);
            for ib in 0..8 {
                for j in 0..16 {
                    p.vals[32 * ib + j] = b[8 + 16 * ib + j] & 15;
                    p.vals[32 * ib + 16 + j] = b[8 + 16 * ib + j] >> 4;
                }
            }
        }
        _ => unreachable!("no R16 layout for {t:?}"),
    }
    p
}

/// Writes row r's block into a group block's quant bytes `qd` (4 bytes per row per 64-byte slot):
///   Q4_0, Q4_1, IQ4_NL, MXFP4: slots 0..4: low nibble = element 4s+i, high nibble = element
///         16+4s+i (IQ4_NL's and MXFP4's nibbles are indices into kvalues_iq4nl / kvalues_mxfp4,
///         looked up by the kernels); MXFP4 then the 16 rows' e8m0 scale bytes (`[row]`).
///   Q5_0, Q5_1: slot 0 holds the fifth bits: bit g of byte i = bit 4 of the element in nibble-slot
///         g (g < 4: low nibble of slot 1+g, g ≥ 4: high nibble of slot 1+g−4); slots 1..5 as Q4_0.
///   Q8_0: slots 0..8: element 4s+i XOR 0x80 (= x + 128 as an unsigned byte).
///   Q2_K: the file's bytes regrouped: slots 0..4: the 16 scale bytes (scale | min << 4), slots
///         4..20: qs (slot 4+m: bytes 4m..4m+4), so llama.cpp's lane l of group g = 4c+k is bits
///         2k..2k+2 of slot 4+8c+l.
///   Q3_K: slots 0..3: the 12 scale bytes; slots 3..11: hmask (slot 3+n: bytes 4n..4n+4);
///         slots 11..27: qs (slot 11+m: bytes 4m..4m+4), so llama.cpp's lane l of group
///         g = 4c+k (elements 32g+4l..32g+4l+4) is bits 2k..2k+2 of slot 11+8c+l, bit g of slot 3+l.
///   Q4_K: slots 0..3: the 12 scale bytes; slot 3+m: low nibble = element 8m+i, high nibble =
///         element 8m+4+i (so sub-block j of 32 is slots 3+4j .. 3+4j+4).
///   Q5_K: as Q4_K (its low 4 bits), then 8 fifth-bit slots: slot 35+l, bit j of byte i = bit 4
///         of element 32j+4l+i (so llama.cpp's lane l of sub-block j is nibble slot 3+4j+l/2,
///         low nibbles for even l, and bit j of slot 35+l).
///   IQ4_XS: slots 4ib..4ib+4 hold sub-block ib of 32 as Q4_0 (low nibble = element 32ib+4s+i,
///         high nibble = element 32ib+16+4s+i), then each row's 4 `scales_l` bytes (`[row][4]`,
///         one i32 lane per row), then its 2 `scales_h` bytes (`[row][2]`).
///   Q6_K: first `[j][row]` i8 scales (256 bytes), then 32 ql slots (slot m: low 4 bits of
///         element 8m+i | those of element 8m+4+i << 4), then 16 qh slots (slot n: bits 2k..2k+2
///         of byte i = high 2 bits of element 16n+4k+i), so sub-block j of 16 is ql slots 2j,
///         2j+1 and qh slot j.
fn write_block(t: GgmlType, p: &Parts, qd: &mut [u8], r: usize) {
    let at = |slot: usize, i: usize| slot * R * 4 + r * 4 + i;
    let v = &p.vals;
    match t {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::IQ4_NL | GgmlType::MXFP4 => {
            for s in 0..4 {
                for i in 0..4 {
                    qd[at(s, i)] = v[4 * s + i] | (v[16 + 4 * s + i] << 4);
                }
            }
            if t == GgmlType::MXFP4 {
                qd[R * 16 + r] = p.scales[0];
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            for i in 0..4 {
                let mut bits = 0u8;
                for g in 0..8 {
                    let e = if g < 4 { 4 * g + i } else { 16 + 4 * (g - 4) + i };
                    bits |= (v[e] >> 4) << g;
                }
                qd[at(0, i)] = bits;
            }
            for s in 0..4 {
                for i in 0..4 {
                    qd[at(1 + s, i)] = (v[4 * s + i] & 15) | ((v[16 + 4 * s + i] & 15) << 4);
                }
            }
        }
        GgmlType::Q8_0 => {
            for s in 0..8 {
                for i in 0..4 {
                    qd[at(s, i)] = v[4 * s + i] ^ 0x80;
                }
            }
        }
        GgmlType::Q2_K => {
            for m in 0..20 {
                for i in 0..4 {
                    qd[at(m, i)] = v[4 * m + i];
                }
            }
        }
        GgmlType::Q3_K => {
            for i in 0..12 {
                qd[at(i / 4, i % 4)] = p.scales[i];
            }
            for m in 0..24 {
                for i in 0..4 {
                    qd[at(3 + m, i)] = v[4 * m + i];
                }
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            for i in 0..12 {
                qd[at(i / 4, i % 4)] = p.scales[i];
            }
            for m in 0..32 {
                for i in 0..4 {
                    qd[at(3 + m, i)] = (v[8 * m + i] & 15) | ((v[8 * m + 4 + i] & 15) << 4);
                }
            }
            if t == GgmlType::Q5_K {
                for l in 0..8 {
                    for i in 0..4 {
                        qd[at(35 + l, i)] = (0..8).map(|j| ((v[32 * j + 4 * l + i] >> 4) & 1) << j).sum();
                    }
                }
            }
        }
        GgmlType::IQ4_XS => {
            for ib in 0..8 {
                for s in 0..4 {
                    for i in 0..4 {
                        qd[at(4 * ib + s, i)] = v[32 * ib + 4 * s + i] | (v[32 * ib + 16 + 4 * s + i] << 4);
                    }
                }
            }
            qd[R * 128 + 4 * r..R * 128 + 4 * r + 4].copy_from_slice(&p.scales[2..6]);
            qd[R * 132 + 2 * r..R * 132 + 2 * r + 2].copy_from_slice(&p.scales[..2]);
        }
        GgmlType::Q6_K => {
            for j in 0..16 {
                qd[j * R + r] = p.scales[j];
            }
            let (ql, qh) = qd[R * 16..].split_at_mut(32 * R * 4);
            for m in 0..32 {
                for i in 0..4 {
                    ql[at(m, i)] = (v[8 * m + i] & 15) | ((v[8 * m + 4 + i] & 15) << 4);
                }
            }
            for n in 0..16 {
                for i in 0..4 {
                    qh[at(n, i)] = (0..4).map(|k| ((v[16 * n + 4 * k + i] >> 4) & 3) << (2 * k)).sum();
                }
            }
        }
        _ => unreachable!("no R16 layout for {t:?}"),
    }
}

/// Repacks a row-major ggml matrix (`rows` × `cols`, plain blocks) into R16 groups. `None` if the
/// type has no R16 layout, the shape does not fit one (rows not a multiple of 16), or the buffer
/// cannot be mapped (an address-space limit): the model then keeps that matrix on the file's
/// pages for the row kernels, which needs no second copy, rather than failing the load.
pub fn pack(t: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Packed> {
    pack_with(t, data, rows, cols, false)
}

/// Q4_0 and IQ4_NL blocks into R16 groups by whole 4-byte runs: `write_block`'s slot byte
/// `vals[4s+i] | vals[16+4s+i] << 4` is the block's own quant byte `4s+i` (its low and high
/// nibble), so slot s of row r is the block's bytes 2+4s..2+4s+4 unchanged. `pack`'s general path
/// builds a 276-byte `Parts` per 18-byte block (a zeroing and a copy each: most of a 7B load).
#[allow(clippy::too_many_arguments)]
fn pack_nibbles(
    data: &[u8],
    out: &mut [u8],
    rows: usize,
    row_bytes: usize,
    nb: usize,
    gb: usize,
    hb: usize,
    qb: usize,
) {
    for g in 0..rows / R {
        let (heads, quants) = out[g * gb..(g + 1) * gb].split_at_mut(nb * hb);
        for r in 0..R {
            let row = &data[(g * R + r) * row_bytes..(g * R + r + 1) * row_bytes];
            for (b, blk) in row.chunks_exact(18).enumerate() {
                heads[b * hb + r * 2..b * hb + r * 2 + 2].copy_from_slice(&blk[..2]);
                let q = &mut quants[b * qb..(b + 1) * qb];
                for s in 0..4 {
                    q[s * R * 4 + r * 4..s * R * 4 + r * 4 + 4].copy_from_slice(&blk[2 + 4 * s..6 + 4 * s]);
                }
            }
        }
    }
}

/// Bytes of a `rows × cols` matrix of type `t` in R16 layout; `None` when it has no R16 layout
/// (type, or rows not a multiple of 16, or columns not of whole blocks).
pub fn packed_len(t: GgmlType, rows: usize, cols: usize) -> Option<usize> {
    block_bytes(t)?;
    if rows == 0 || !rows.is_multiple_of(R) || !cols.is_multiple_of(t.block_size()) {
        return None;
    }
    Some(group_bytes(t, cols)? * (rows / R))
}

/// `pack`, or with `generic` its block-by-block path for every type (tests compare the two).
fn pack_with(t: GgmlType, data: &[u8], rows: usize, cols: usize, generic: bool) -> Option<Packed> {
    let mut buf = HugeBuf::zeroed(packed_len(t, rows, cols)?).ok()?;
    write_r16(t, data, rows, cols, buf.bytes_mut(), generic)?;
    Some(Packed { ggml_type: t, rows, cols, buf: Store::Own(buf) })
}

/// Writes the R16 layout of the plain rows `data` into `out` (zeroed, `packed_len` bytes: a
/// `PackArena` slot); `None`, writing nothing, when the matrix has no R16 layout or `data` or
/// `out` has the wrong length.
pub fn pack_into(t: GgmlType, data: &[u8], rows: usize, cols: usize, out: &mut [u8]) -> Option<()> {
    write_r16(t, data, rows, cols, out, false)
}

/// `pack_into`, or with `generic` its block-by-block path for every type.
fn write_r16(t: GgmlType, data: &[u8], rows: usize, cols: usize, out: &mut [u8], generic: bool) -> Option<()> {
    let (hb, qb) = block_bytes(t)?;
    let bs = t.block_size();
    let len = packed_len(t, rows, cols)?;
    let row_bytes = t.row_size(cols as u64)? as usize;
    if data.len() != rows * row_bytes || out.len() != len {
        return None;
    }
    let nb = cols / bs;
    let gb = group_bytes(t, cols)?;
    if matches!(t, GgmlType::Q4_0 | GgmlType::IQ4_NL) && !generic {
        pack_nibbles(data, out, rows, row_bytes, nb, gb, hb, qb);
        return Some(());
    }
    let src_block = row_bytes / nb;
    let n_head = hb / (R * 2); // f16 values per row per block: 1 (d) or 2 (d, dmin)
    for g in 0..rows / R {
        let (heads, quants) = out[g * gb..(g + 1) * gb].split_at_mut(nb * hb);
        for r in 0..R {
            let row = &data[(g * R + r) * row_bytes..(g * R + r + 1) * row_bytes];
            for b in 0..nb {
                let parts = split_block(t, &row[b * src_block..(b + 1) * src_block]);
                for h in 0..n_head {
                    let o = b * hb + h * R * 2 + r * 2;
                    heads[o..o + 2].copy_from_slice(&parts.head[2 * h..2 * h + 2]);
                }
                write_block(t, &parts, &mut quants[b * qb..(b + 1) * qb], r);
            }
        }
    }
    Some(())
}

/// Activation rows of the weight's `vec_dot_type`, as the kernel table's converter writes them
/// (Q8_0: 34-byte blocks, Q8_1: 36-byte blocks) → Q8_0S (Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4) or Q8_1S (Q4_1, Q5_1)
/// blocks for weights of type `t`.
pub fn to_r16_acts(t: GgmlType, src: &[u8], dst: &mut [u8]) {
    if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1) {
        // Q8_1 (d, s, q): both f16 scales widened exactly; no offset, so the lane terms stay 0
        for (s, d) in src.chunks_exact(36).zip(dst.chunks_exact_mut(Q8_0S_BLOCK)) {
            for (k, h) in [&s[0..2], &s[2..4]].into_iter().enumerate() {
                d[4 * k..4 * k + 4].copy_from_slice(&f16::from_le_bytes([h[0], h[1]]).to_f32().to_le_bytes());
            }
            d[8..40].copy_from_slice(&s[4..36]);
            d[40..72].fill(0);
        }
        return;
    }
    // what a lane's integer sum starts at: the weight offset times the lane's Σq (Q5_0 −16, Q8_0
    // stored as x+128), so the kernel broadcasts it straight from memory
    let off = match t {
        GgmlType::Q5_0 => -16,
        GgmlType::Q8_0 => -128,
        _ => 0,
    };
    for (s, d) in src.chunks_exact(34).zip(dst.chunks_exact_mut(Q8_0S_BLOCK)) {
        let scale = f16::from_le_bytes([s[0], s[1]]).to_f32();
        // each lane's Σq (4 values), and the block's as their sum: integers, so any order is exact
        let q: &[u8; 32] = s[2..34].try_into().expect("34-byte block");
        let mut ls = [0i32; 8];
        for (k, l) in ls.iter_mut().enumerate() {
            *l = q[4 * k..4 * k + 4].iter().fold(0, |a, &v| a + v as i8 as i32);
        }
        let sum: i32 = ls.iter().sum();
        d[0..4].copy_from_slice(&scale.to_le_bytes());
        d[4..8].copy_from_slice(&sum.to_le_bytes());
        d[8..40].copy_from_slice(q);
        for (k, l) in ls.iter().enumerate() {
            d[40 + 4 * k..44 + 4 * k].copy_from_slice(&(off * l).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Q4_0 / IQ4_NL run copy writes the bytes the block-by-block path writes.
    #[test]
    fn nibble_fast_path_equals_block_path() {
        let (rows, cols) = (2 * R, 96);
        let data = noise(rows * cols / 32 * 18, 0x2545_f491);
        for t in [GgmlType::Q4_0, GgmlType::IQ4_NL] {
            let fast = pack_with(t, &data, rows, cols, false).unwrap();
            let slow = pack_with(t, &data, rows, cols, true).unwrap();
            assert_eq!(fast.bytes(), slow.bytes(), "{t}");
        }
    }

    /// `n` xorshift bytes from seed `x`.
    fn noise(n: usize, mut x: u32) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Matrices packed into one arena hold what each packed alone holds, each on its own 4 KiB
    /// aligned range, one after the other; a slot `pack_into` declines (no R16 layout, wrong
    /// length) comes back as `None` and leaves its neighbours intact.
    #[test]
    fn arena_holds_what_pack_alone_gives() {
        let mats = [
            (GgmlType::Q4_K, 2 * R, 512),
            (GgmlType::Q5_0, R, 96),
            (GgmlType::Q6_K, 3 * R, 256),
            (GgmlType::Q8_0, R, 64),
        ];
        let datas: Vec<Vec<u8>> = mats
            .iter()
            .enumerate()
            .map(|(i, &(t, rows, cols))| {
                noise(rows * t.row_size(cols as u64).unwrap() as usize, 0x9e37_79b9 + i as u32)
            })
            .collect();
        let mut arena = PackArena::new(&mats).unwrap();
        let mut packed = vec![false; mats.len()];
        for (i, slot) in arena.slots().into_iter().enumerate() {
            let (t, rows, cols) = mats[i];
            if i == 2 {
                // data one byte short: declined, nothing written
                assert!(pack_into(t, &datas[i][1..], rows, cols, slot).is_none());
                assert!(slot.iter().all(|&b| b == 0));
                continue;
            }
            pack_into(t, &datas[i], rows, cols, slot).unwrap();
            packed[i] = true;
        }
        let packed = arena.finish(&packed);
        let base = packed[0].as_ref().unwrap().bytes().as_ptr() as usize;
        for (i, p) in packed.iter().enumerate() {
            let Some(p) = p else {
                assert_eq!(i, 2);
                continue;
            };
            let (t, rows, cols) = mats[i];
            let alone = pack(t, &datas[i], rows, cols).unwrap();
            assert_eq!(p.bytes(), alone.bytes(), "{t}");
            assert_eq!((p.ggml_type, p.rows, p.cols), (t, rows, cols));
            assert_eq!((p.bytes().as_ptr() as usize - base) % ARENA_ALIGN, 0);
        }
        assert!(packed_len(GgmlType::Q4_K, R + 1, 256).is_none() && packed_len(GgmlType::F32, R, 32).is_none());
        assert!(PackArena::new(&[(GgmlType::Q4_K, R + 1, 256)]).is_err());
    }
}
