//! AVX-512 VNNI "decode once" prompt GEMMs over R16-repacked K-quant and IQ4_XS weights, in the
//! batch orders of llama.cpp's x86 builds (`kernels::ggml_x86`: `q3_k_tiled`, `q5_k_tiled`,
//! `iq4_xs_tiled`, `q2_k_gemm4`).
//!
//! The plain batch kernels (`r16_avx2`, `r16_avx512`) unpack every weight block again for each
//! pass of 1–4 tokens; at hundreds of tokens that decoding dominates. These kernels take up to
//! `repack::MAX_WIDE_T` tokens per call (`types::R16Batch::max_t`) and, for each super-block of
//! the 16 rows, decode the weights ONCE into 64 zmm of unsigned byte codes (slot s: elements
//! 4s..4s+4 of each row, the layout `vpdpbusd` wants) plus the sub-block scales as i32 lanes; then
//! every token of the call runs over that buffer in register blocks of `TB` tokens. Per sub-block
//! the exact integer `Σ code·y` (started at −offset·bsum, so it equals `Σ q·y`) is multiplied by its
//! scale (`vpmulld`); per super-block and token the float update is the reference's, with the
//! running float sums kept in the output rows (and, for Q2_K's minimums, a stack tile).
//! Integer sums are exact in any order, so results are bit-identical to the references.

// Index loops over tokens mirror the register arrays they fill (`acc[t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::kernels::shared::{gemm_r16_check_upto, q8k_block, R16Call};
use crate::kernels::types::GemmR16Fn;
use crate::quant::iq4::KVALUES_IQ4NL;
use crate::quant::repack::{MAX_WIDE_T, Q8_K_BLOCK, R};
use crate::quant::GgmlType;

/// Tokens per register block: 8 chains of `vpdpbusd` in flight hide its latency, and 8 sub-block
/// sums + 8 running sums + the weight slots fit the 32 zmm.
const TB: usize = 8;

/// `wide_entry!(name, inner, type)`: `fn name` (a `GemmR16Fn` taking up to `MAX_WIDE_T` tokens)
/// checking every buffer length, then running `inner(c, nt)`.
macro_rules! wide_entry {
    ($name:ident, $inner:ident, $t:expr) => {
        fn $name(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
            gemm_r16_check_upto($t, MAX_WIDE_T, nb, w, a, a_stride, nt, out, out_stride);
            let c = R16Call {
                nb,
                w: w.as_ptr(),
                part: 0,
                a: a.as_ptr(),
                as_: a_stride,
                out: out.as_mut_ptr(),
                os: out_stride,
            };
            // SAFETY: reachable only through the AVX-512 table (features detected at run time); the
            // lengths of the group, the nt activation rows and the nt output rows were checked above.
            unsafe { $inner(c, nt) }
        }
    };
}

wide_entry!(gemm_q3_k_entry, gemm_q3_k, GgmlType::Q3_K);
wide_entry!(gemm_q5_k_entry, gemm_q5_k, GgmlType::Q5_K);
wide_entry!(gemm_iq4_xs_entry, gemm_iq4_xs, GgmlType::IQ4_XS);
wide_entry!(gemm_q2_k_g4_entry, gemm_q2_k_g4, GgmlType::Q2_K);

/// The AVX-512 table's wide batch kernels (`types::R16Batch::gemm` with `max_t = MAX_WIDE_T`):
/// Q3_K's, Q5_K's and IQ4_XS's tiled GEMM order, Q2_K's 8×8-repack GEMM order (groups of 4 tokens).
pub(super) const WIDE_BATCH_GEMMS: [(GgmlType, GemmR16Fn); 4] = [
    (GgmlType::Q3_K, gemm_q3_k_entry),
    (GgmlType::Q5_K, gemm_q5_k_entry),
    (GgmlType::IQ4_XS, gemm_iq4_xs_entry),
    (GgmlType::Q2_K, gemm_q2_k_g4_entry),
];

/// One super-block of 16 rows decoded: `codes[s]` holds elements 4s..4s+4 of every row (row r in
/// bytes 4r..4r+4) as unsigned codes; `sc[j]` sub-block j's scale per row (i32 lanes; 16 sub-blocks
/// of 16 elements or 8 of 32); `mn[k]` (Q5_K, Q2_K) the minimums of sub-blocks 2k, 2k+1 as i16
/// pairs per row, for `vpmaddwd` with the activations' bsum pairs.
#[repr(C, align(64))]
struct Decoded {
    codes: [__m512i; 64],
    sc: [__m512i; 16],
    mn: [__m512i; 8],
}

impl Decoded {
    fn new() -> Self {
        // SAFETY: all-zero bits are valid __m512i values.
        unsafe { std::mem::zeroed() }
    }
}

/// The 64-byte slot `i` at `q` (16 rows × 4 bytes).
#[inline(always)]
///
/// # Safety
/// AVX-512F; `q + 64i .. + 64` must be readable.
unsafe fn slot(q: *const u8, i: usize) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm512_loadu_si512(q.add(64 * i) as *const _) }
}

/// `(v >> sh) & mask` per i32 lane.
#[inline(always)]
///
/// # Safety
/// AVX-512F (register-only).
unsafe fn field(v: __m512i, sh: u32, mask: i32) -> __m512i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm512_and_si512(_mm512_srl_epi32(v, _mm_cvtsi32_si128(sh as i32)), _mm512_set1_epi32(mask)) }
}

/// The 4 activation bytes at `p`, broadcast to every i32 lane.
#[inline(always)]
///
/// # Safety
/// AVX-512F; `p..p+4` must be readable.
unsafe fn bcast4(p: *const u8) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm512_set1_epi32((p as *const i32).read_unaligned()) }
}

/// 16 f16 row scales at `p`, widened.
#[inline(always)]
///
/// # Safety
/// AVX-512F; `p..p+32` must be readable.
unsafe fn scales16(p: *const u8) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Bsum pair (2k, 2k+1) of Q8_K `bs` (or of the 32-element sums, `WIDE`: bsums 4k..4k+4) as one i32
/// of two i16 (low = the first), for `vpmaddwd` with `Decoded::mn`.
#[inline(always)]
///
/// # Safety
/// `bs` points to 16 readable i16.
unsafe fn bsum_pair<const WIDE: bool>(bs: *const i16, k: usize) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (lo, hi) = if WIDE {
            // Q5_K: sub-blocks of 32; |bsum_2j + bsum_2j+1| ≤ 2·16·128 fits i16
            (*bs.add(4 * k) as i32 + *bs.add(4 * k + 1) as i32, *bs.add(4 * k + 2) as i32 + *bs.add(4 * k + 3) as i32)
        } else {
            (*bs.add(2 * k) as i32, *bs.add(2 * k + 1) as i32)
        };
        _mm512_set1_epi32((lo & 0xFFFF) | (hi << 16))
    }
}

/// Runs `$block::<n>($args..., t0)` over the `nt` tokens in register blocks of ≤ `$tb` (≤ `TB`).
macro_rules! token_blocks {
    ($block:ident, $nt:expr, ($($arg:expr),*)) => {
        token_blocks!($block, $nt, ($($arg),*), TB)
    };
    ($block:ident, $nt:expr, ($($arg:expr),*), $tb:expr) => {{
        let mut t0 = 0;
        while t0 < $nt {
            let n = ($nt - t0).min($tb);
            match n {
                1 => $block::<1>($($arg,)* t0),
                2 => $block::<2>($($arg,)* t0),
                3 => $block::<3>($($arg,)* t0),
                4 => $block::<4>($($arg,)* t0),
                5 => $block::<5>($($arg,)* t0),
                6 => $block::<6>($($arg,)* t0),
                7 => $block::<7>($($arg,)* t0),
                _ => $block::<TB>($($arg,)* t0),
            }
            t0 += n;
        }
    }};
}

/// Zeroes the 16 results of each of the call's `nt` tokens (the running float sums).
///
/// # Safety
/// AVX-512F; `c.out + t·c.os .. + 16` writable for t < nt.
#[inline(always)]
unsafe fn zero_out(c: &R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        for t in 0..nt {
            _mm512_storeu_ps(c.out.add(t * c.os), _mm512_setzero_ps());
        }
    }
}

/// Σ_j sc_j · (Σ_{s in sub-block j} codes_s·y_s − off·bsum_j) for `T` tokens, sub-blocks of
/// `SPAN` slots (4: 16 elements, 8: 32) with per-sub-block offset terms `off(t, j)`: the exact
/// integer sum per (row, token) of one super-block.
///
/// # Safety
/// AVX-512F/VNNI; `y[t]` point to the tokens' 256 readable Q8_K quants.
#[inline(always)]
unsafe fn scaled_sums<const T: usize, const SPAN: usize>(
    d: &Decoded,
    y: &[*const u8; T],
    off: impl Fn(usize, usize) -> i32,
) -> [__m512i; T] {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..64 / SPAN {
            let mut acc: [__m512i; T] = std::array::from_fn(|t| _mm512_set1_epi32(off(t, j)));
            for s in SPAN * j..SPAN * (j + 1) {
                let w = d.codes[s];
                for t in 0..T {
                    acc[t] = _mm512_dpbusd_epi32(acc[t], w, bcast4(y[t].add(4 * s)));
                }
            }
            for t in 0..T {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc[t], d.sc[j]));
            }
        }
        isum
    }
}

// ---- Q3_K ---------------------------------------------------------------------------------------

/// Decodes Q3_K R16 block `q` (layout in `quant::repack::write_block`): codes `q + 4` (0..7) and
/// the scales − 32 in i16 pairs (`sc[m]`: sub-blocks 2m, 2m+1).
///
/// # Safety
/// AVX-512F/BW; the 1728-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_q3_k(q: *const u8, d: &mut Decoded) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let m3 = _mm512_set1_epi8(3);
        for s in 0..64 {
            // element slot s = lane l of group g (32 elements): bits 2k..2k+2 of slot 11+8c+l
            // (g = 4c + k), high bit g of slot 3+l; q + 4 = lo + 4·hbit
            let (g, l) = (s / 8, s % 8);
            let (c, k) = (g / 4, g % 4);
            let lo = _mm512_and_si512(_mm512_srl_epi16(slot(q, 11 + 8 * c + l), _mm_cvtsi32_si128(2 * k as i32)), m3);
            let hbit = _mm512_test_epi8_mask(slot(q, 3 + l), _mm512_set1_epi8((1u8 << g) as i8));
            d.codes[s] = _mm512_mask_add_epi8(lo, hbit, lo, _mm512_set1_epi8(4));
        }
        let (s0, s1, s2) = (slot(q, 0), slot(q, 1), slot(q, 2));
        let scale = |k: usize| {
            // low nibble: byte k (k < 8) or the high half of byte k − 8; top 2 bits: byte 8 + k%4
            let lo_word = if k % 8 < 4 { s0 } else { s1 };
            let lo = field(lo_word, 8 * (k % 4) as u32 + 4 * (k / 8) as u32, 15);
            let hi = field(s2, 8 * (k % 4) as u32 + 2 * (k / 4) as u32, 3);
            _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32))
        };
        for m in 0..8 {
            // scales 2m, 2m+1 as one i32 of two i16 (low = 2m), for `vpdpwssd`
            let lo = _mm512_and_si512(scale(2 * m), _mm512_set1_epi32(0xFFFF));
            d.sc[m] = _mm512_or_si512(lo, _mm512_slli_epi32(scale(2 * m + 1), 16));
        }
    }
}

/// Tokens `t0..t0+T` of the call against decoded super-block `b`: `acc = fma(f32(isum)·d_w, d_a,
/// acc)` in the output rows.
///
/// # Safety
/// AVX-512F/BW/VNNI; `c` as `gemm_q3_k`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn q3_k_block<const T: usize>(c: &R16Call, d: &Decoded, b: usize, dw: __m512, t0: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        // per pair of sub-blocks (2m, 2m+1) of 16: Σ code·y − 4·bsum = Σ q·y, |·| ≤ 16·4·128 fits
        // i16, so both go into one lane's i16 halves and meet their scales in one `vpdpwssd`
        let mut isum = [_mm512_setzero_si512(); T];
        for m in 0..8 {
            let mut acc: [[__m512i; T]; 2] = std::array::from_fn(|h| {
                std::array::from_fn(|t| _mm512_set1_epi32(-4 * *blk[t].2.add(2 * m + h) as i32))
            });
            for s in 8 * m..8 * m + 8 {
                let w = d.codes[s];
                let h = (s - 8 * m) / 4;
                for t in 0..T {
                    acc[h][t] = _mm512_dpbusd_epi32(acc[h][t], w, bcast4(blk[t].1.add(4 * s)));
                }
            }
            for t in 0..T {
                let pair = _mm512_mask_blend_epi16(0xAAAA_AAAA, acc[0][t], _mm512_slli_epi32(acc[1][t], 16));
                isum[t] = _mm512_dpwssd_epi32(isum[t], pair, d.sc[m]);
            }
        }
        for t in 0..T {
            let o = c.out.add((t0 + t) * c.os);
            let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dw);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(x, _mm512_set1_ps(blk[t].0), _mm512_loadu_ps(o)));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
/// Q3_K in llama.cpp's tiled GEMM order (`kernels::ggml_x86::q3_k_tiled`): per super-block
/// `isum = Σ sc·q·y` (q = code − 4, the −4 through the bsums), `acc = fma(f32(isum)·d_w, d_a, acc)`.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_q3_k(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 2));
        let mut d = Decoded::new();
        zero_out(&c, nt);
        for b in 0..c.nb {
            decode_q3_k(quants.add(b * R * 108), &mut d);
            let dw = scales16(heads.add(b * R * 2));
            // 4 tokens × 2 sub-blocks = 8 `vpdpbusd` chains, and their 8 + 4 sums stay in registers
            token_blocks!(q3_k_block, nt, (&c, &d, b, dw), 4);
        }
    }
}

// ---- Q5_K ---------------------------------------------------------------------------------------

/// Decodes Q5_K R16 block `q`: codes q (0..31), the 8 scales, the 8 minimums as i16 pairs.
///
/// # Safety
/// AVX-512F/BW; the 2752-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_q5_k(q: *const u8, d: &mut Decoded) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        for s in 0..64 {
            // element slot s = lane l of sub-block j: nibble slot 3+4j+l/2 (low nibbles for even l),
            // fifth bit j of slot 35+l
            let (j, l) = (s / 8, s % 8);
            let nib = slot(q, 3 + 4 * j + l / 2);
            let nib = if l % 2 == 0 { nib } else { _mm512_srli_epi16(nib, 4) };
            let lo = _mm512_and_si512(nib, m4);
            let fifth = _mm512_test_epi8_mask(slot(q, 35 + l), _mm512_set1_epi8((1u8 << j) as i8));
            d.codes[s] = _mm512_mask_add_epi8(lo, fifth, lo, _mm512_set1_epi8(0x10));
        }
        let (s0, s1, s2) = (slot(q, 0), slot(q, 1), slot(q, 2));
        let mut mn = [_mm512_setzero_si512(); 8];
        for j in 0..8 {
            if j < 4 {
                d.sc[j] = field(s0, 8 * j as u32, 63);
                mn[j] = field(s1, 8 * j as u32, 63);
            } else {
                let i = 8 * (j as u32 - 4);
                d.sc[j] = _mm512_or_si512(field(s2, i, 15), field(s0, i + 2, 0x30));
                mn[j] = _mm512_or_si512(field(s2, i + 4, 15), field(s1, i + 2, 0x30));
            }
        }
        for k in 0..4 {
            d.mn[k] = _mm512_or_si512(mn[2 * k], _mm512_slli_epi32(mn[2 * k + 1], 16));
        }
    }
}

/// Tokens `t0..t0+T` against decoded super-block `b`: `r = fnmadd(dmin_w, f32(s2), f32(s1)·d_w)`,
/// `acc = fma(r, d_a, acc)` in the output rows.
///
/// # Safety
/// AVX-512F/BW/VNNI; `c` as `gemm_q5_k`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn q5_k_block<const T: usize>(c: &R16Call, d: &Decoded, b: usize, dw: (__m512, __m512), t0: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        let y = blk.map(|k| k.1);
        let s1 = scaled_sums::<T, 8>(d, &y, |_, _| 0);
        for t in 0..T {
            // s2 = Σ min_j·(bsum_2j + bsum_2j+1): |each product pair| ≤ 2·63·4096, exact
            let mut s2 = _mm512_setzero_si512();
            for k in 0..4 {
                s2 = _mm512_add_epi32(s2, _mm512_madd_epi16(d.mn[k], bsum_pair::<true>(blk[t].2, k)));
            }
            let o = c.out.add((t0 + t) * c.os);
            let r = _mm512_fnmadd_ps(dw.1, _mm512_cvtepi32_ps(s2), _mm512_mul_ps(_mm512_cvtepi32_ps(s1[t]), dw.0));
            _mm512_storeu_ps(o, _mm512_fmadd_ps(r, _mm512_set1_ps(blk[t].0), _mm512_loadu_ps(o)));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
/// Q5_K in llama.cpp's tiled GEMM order (`kernels::ggml_x86::q5_k_tiled`): per super-block
/// `s1 = Σ sc·q·y`, `s2 = Σ min·bsums`, `r = fnmadd(dmin_w, f32(s2), f32(s1)·d_w)`,
/// `acc = fma(r, d_a, acc)`.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_q5_k(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 4));
        let mut d = Decoded::new();
        zero_out(&c, nt);
        for b in 0..c.nb {
            decode_q5_k(quants.add(b * R * 172), &mut d);
            let dw = (scales16(heads.add(b * R * 4)), scales16(heads.add(b * R * 4 + R * 2)));
            token_blocks!(q5_k_block, nt, (&c, &d, b, dw));
        }
    }
}

// ---- IQ4_XS -------------------------------------------------------------------------------------

/// Decodes IQ4_XS R16 block `q`: codes kvalues_iq4nl + 128 (1..241), the 8 scales ls − 32.
///
/// # Safety
/// AVX-512F/BW; the 2144-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_iq4_xs(q: *const u8, table: __m512i, d: &mut Decoded) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        for ib in 0..8 {
            for s in 0..4 {
                // element slots 8ib+s: low nibbles of slot 4ib+s; 8ib+4+s: its high nibbles
                let v = slot(q, 4 * ib + s);
                d.codes[8 * ib + s] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, m4));
                d.codes[8 * ib + 4 + s] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
        }
        // per row: scales_l as one u32, scales_h as one u16 widened
        let sl = _mm512_loadu_si512(q.add(R * 128) as *const _);
        let sh = _mm512_cvtepu16_epi32(_mm256_loadu_si256(q.add(R * 132) as *const __m256i));
        for ib in 0..8 {
            let ls = _mm512_or_si512(field(sl, 4 * ib as u32, 15), _mm512_slli_epi32(field(sh, 2 * ib as u32, 3), 4));
            d.sc[ib] = _mm512_sub_epi32(ls, _mm512_set1_epi32(32));
        }
    }
}

/// Tokens `t0..t0+T` against decoded super-block `b`: `acc = fma(f32(isum)·d_w, d_a, acc)`.
///
/// # Safety
/// AVX-512F/BW/VNNI; `c` as `gemm_iq4_xs`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn iq4_xs_block<const T: usize>(c: &R16Call, d: &Decoded, b: usize, dw: __m512, t0: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        let y = blk.map(|k| k.1);
        // Σ (v + 128)·y − 128·Σy over 32 elements: |·| ≤ 32·255·128, exact in i32
        let off = |t: usize, j: usize| -128 * (*blk[t].2.add(2 * j) as i32 + *blk[t].2.add(2 * j + 1) as i32);
        let isum = scaled_sums::<T, 8>(d, &y, off);
        for t in 0..T {
            let o = c.out.add((t0 + t) * c.os);
            let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dw);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(x, _mm512_set1_ps(blk[t].0), _mm512_loadu_ps(o)));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
/// IQ4_XS in llama.cpp's tiled GEMM order (`kernels::ggml_x86::iq4_xs_tiled`): per super-block
/// `isum = Σ (ls − 32)·v·y`, `acc = fma(f32(isum)·d_w, d_a, acc)`.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_iq4_xs(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 2));
        let lut: [u8; 16] = std::array::from_fn(|i| (KVALUES_IQ4NL[i] as i32 + 128) as u8);
        let table = _mm512_broadcast_i32x4(_mm_loadu_si128(lut.as_ptr() as *const __m128i));
        let mut d = Decoded::new();
        zero_out(&c, nt);
        for b in 0..c.nb {
            decode_iq4_xs(quants.add(b * R * 134), table, &mut d);
            let dw = scales16(heads.add(b * R * 2));
            token_blocks!(iq4_xs_block, nt, (&c, &d, b, dw));
        }
    }
}

// ---- Q2_K (llama.cpp's AVX-512 8×8 repack GEMM) -------------------------------------------------

/// Decodes Q2_K R16 block `q`: codes q·scale (0..45: the 4-bit scale folded into the 2-bit
/// value, so one `vpdpbusd` chain per half needs no `vpmulld`), the 16 minimums as i16 pairs.
///
/// # Safety
/// AVX-512F/BW; the 1280-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_q2_k(q: *const u8, d: &mut Decoded) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let m3 = _mm512_set1_epi8(3);
        let mut mn = [_mm512_setzero_si512(); 16];
        for j in 0..16 {
            // scale byte j = scale | min << 4, byte j%4 of slot j/4
            let v = slot(q, j / 4);
            let sc = field(v, 8 * (j % 4) as u32, 15);
            // the scale in both i16 halves of each lane
            d.sc[j] = _mm512_or_si512(sc, _mm512_slli_epi32(sc, 16));
            mn[j] = field(v, 8 * (j % 4) as u32 + 4, 15);
        }
        for k in 0..8 {
            d.mn[k] = _mm512_or_si512(mn[2 * k], _mm512_slli_epi32(mn[2 * k + 1], 16));
        }
        for s in 0..64 {
            // element slot s = lane l of group g: bits 2k..2k+2 of slot 4+8c+l (g = 4c + k)
            let (g, l) = (s / 8, s % 8);
            let (c, k) = (g / 4, g % 4);
            let v = _mm512_and_si512(_mm512_srl_epi16(slot(q, 4 + 8 * c + l), _mm_cvtsi32_si128(2 * k as i32)), m3);
            // i16 product of (hi byte << 8 | lo byte) and the scale: both byte products < 256, so
            // each byte of the result is its own q·scale
            d.codes[s] = _mm512_mullo_epi16(v, d.sc[s / 4]);
        }
    }
}

/// Tokens `t0..t0+T` against decoded super-block `b`, per 128-element half h:
/// `acc = fma(f32(isum_h), d_w·d_a, acc)` in the output rows, `accm = fma(f32(imin_h), dmin_w·d_a,
/// accm)` in `accm` (`[nt][16]`).
///
/// # Safety
/// AVX-512F/BW/VNNI; `c` as `gemm_q2_k_g4`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn q2_k_block<const T: usize>(
    c: &R16Call,
    d: &Decoded,
    b: usize,
    dw: (__m512, __m512),
    accm: *mut f32,
    t0: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        for h in 0..2 {
            // Σ (q·scale)·y over the half: |·| ≤ 128·45·128, exact in i32
            let mut isum = [_mm512_setzero_si512(); T];
            for s in 32 * h..32 * h + 32 {
                let w = d.codes[s];
                for t in 0..T {
                    isum[t] = _mm512_dpbusd_epi32(isum[t], w, bcast4(blk[t].1.add(4 * s)));
                }
            }
            for t in 0..T {
                let mut imin = _mm512_setzero_si512();
                for k in 4 * h..4 * h + 4 {
                    imin = _mm512_add_epi32(imin, _mm512_madd_epi16(d.mn[k], bsum_pair::<false>(blk[t].2, k)));
                }
                let dy = _mm512_set1_ps(blk[t].0);
                let o = c.out.add((t0 + t) * c.os);
                let m = accm.add((t0 + t) * R);
                _mm512_storeu_ps(
                    o,
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw.0, dy), _mm512_loadu_ps(o)),
                );
                _mm512_storeu_ps(
                    m,
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(dw.1, dy), _mm512_loadu_ps(m)),
                );
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
/// Q2_K in the order of llama.cpp's AVX-512 `ggml_gemm_q2_K_8x8_q8_K` (`kernels::ggml_x86::q2_k_gemm4`;
/// the rule feeds it only a batch's full groups of 4 tokens, but the order is per token): per
/// 128-element half `acc = fma(f32(isum), d_w·d_a, acc)`, `accm = fma(f32(imin), dmin_w·d_a, accm)`,
/// result `acc − accm`.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_q2_k_g4(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 4));
        let mut d = Decoded::new();
        // accm: [nt][16] minimum sums
        let mut accm = [0f32; MAX_WIDE_T * R];
        zero_out(&c, nt);
        for b in 0..c.nb {
            decode_q2_k(quants.add(b * R * 80), &mut d);
            let dw = (scales16(heads.add(b * R * 4)), scales16(heads.add(b * R * 4 + R * 2)));
            token_blocks!(q2_k_block, nt, (&c, &d, b, dw, accm.as_mut_ptr()));
        }
        for t in 0..nt {
            let o = c.out.add(t * c.os);
            _mm512_storeu_ps(o, _mm512_sub_ps(_mm512_loadu_ps(o), _mm512_loadu_ps(accm.as_ptr().add(t * R))));
        }
    }
}

// ---- AVX2 (maddubs) versions: Q3_K and Q5_K in the tiled order ---------------------------------
//
// The same decode-once scheme for the AVX2 table (llama.cpp's AVX2 build runs the same tiled
// order): each 8-row half of a super-block decoded once per call into 64 ymm of codes, then
// `vpmaddubsw` (codes ≤ 31, so the i16 pairs never saturate) and `vpmaddwd` by the scales.

wide_entry!(gemm_q3_k_avx2_entry, gemm_q3_k_avx2, GgmlType::Q3_K);
wide_entry!(gemm_q5_k_avx2_entry, gemm_q5_k_avx2, GgmlType::Q5_K);

/// The AVX2 table's wide batch kernels (`types::R16Batch::gemm` with `max_t = MAX_WIDE_T`).
pub(super) const WIDE_BATCH_GEMMS_AVX2: [(GgmlType, GemmR16Fn); 2] =
    [(GgmlType::Q3_K, gemm_q3_k_avx2_entry), (GgmlType::Q5_K, gemm_q5_k_avx2_entry)];

/// One 8-row half of a super-block decoded: `codes[s]` elements 4s..4s+4 of the 8 rows; `sc[j]`
/// sub-block j's scale in both i16 halves of each row's lane; `mn[k]` (Q5_K) the minimums of
/// sub-blocks 2k, 2k+1 as i16 pairs; `sp[m]` (Q3_K) scales 2m, 2m+1 as i16 pairs.
#[repr(C, align(32))]
struct Decoded8 {
    codes: [__m256i; 64],
    sc: [__m256i; 16],
    mn: [__m256i; 8],
}

impl Decoded8 {
    fn new() -> Self {
        // SAFETY: all-zero bits are valid __m256i values.
        unsafe { std::mem::zeroed() }
    }
}

/// The half-h ymm of 64-byte slot `i` at `q`.
#[inline(always)]
///
/// # Safety
/// AVX; `q + 64i + 32h .. + 32` must be readable.
unsafe fn slot8(q: *const u8, i: usize, h: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm256_loadu_si256(q.add(64 * i + 32 * h) as *const __m256i) }
}

/// `(v >> sh) & mask` per i32 lane.
#[inline(always)]
///
/// # Safety
/// AVX2 (register-only).
unsafe fn field8(v: __m256i, sh: u32, mask: i32) -> __m256i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm256_and_si256(_mm256_srl_epi32(v, _mm_cvtsi32_si128(sh as i32)), _mm256_set1_epi32(mask)) }
}

/// A small i32 per lane (|v| < 2^15) in both i16 halves of the lane.
#[inline(always)]
///
/// # Safety
/// AVX2 (register-only).
unsafe fn dup16_8(v: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(v, 16)) }
}

/// Two small i32 per lane (|v| < 2^15) as one lane of two i16 (low = `lo`).
#[inline(always)]
///
/// # Safety
/// AVX2 (register-only).
unsafe fn pair16_8(lo: __m256i, hi: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics of the caller's target features.
    unsafe { _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(hi, 16)) }
}

/// 8 f16 row scales of half h at `p` (a row of 16 f16), widened.
#[inline(always)]
///
/// # Safety
/// AVX, F16C; `p + 16h .. + 16` must be readable.
unsafe fn scales8(p: *const u8, h: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * h) as *const __m128i)) }
}

/// The 4 activation bytes at `p`, broadcast.
#[inline(always)]
///
/// # Safety
/// AVX; `p..p+4` must be readable.
unsafe fn bcast4_8(p: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe { _mm256_set1_epi32((p as *const i32).read_unaligned()) }
}

/// Bsum pair (2k, 2k+1) (or, `WIDE`, the 32-element pair (4k, 4k+1)+(4k+2, 4k+3)) as two i16.
#[inline(always)]
///
/// # Safety
/// `bs` points to 16 readable i16.
unsafe fn bsum_pair8<const WIDE: bool>(bs: *const i16, k: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (lo, hi) = if WIDE {
            (*bs.add(4 * k) as i32 + *bs.add(4 * k + 1) as i32, *bs.add(4 * k + 2) as i32 + *bs.add(4 * k + 3) as i32)
        } else {
            (*bs.add(2 * k) as i32, *bs.add(2 * k + 1) as i32)
        };
        _mm256_set1_epi32((lo & 0xFFFF) | (hi << 16))
    }
}

/// Decodes half h of Q3_K R16 block `q`: codes q + 4 (0..7), the scales − 32 (`sc`, dup16) and
/// their pairs (`mn[m]`: scales 2m, 2m+1, for the −4·bsum term).
///
/// # Safety
/// AVX2; the 1728-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_q3_k_avx2(q: *const u8, h: usize, d: &mut Decoded8) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (m3, four) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
        for s in 0..64 {
            let (g, l) = (s / 8, s % 8);
            let (c, k) = (g / 4, g % 4);
            let lo =
                _mm256_and_si256(_mm256_srl_epi16(slot8(q, 11 + 8 * c + l, h), _mm_cvtsi32_si128(2 * k as i32)), m3);
            let bit = _mm256_set1_epi8((1u8 << g) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(slot8(q, 3 + l, h), bit), bit);
            d.codes[s] = _mm256_or_si256(lo, _mm256_and_si256(set, four));
        }
        let (s0, s1, s2) = (slot8(q, 0, h), slot8(q, 1, h), slot8(q, 2, h));
        let mut sc = [_mm256_setzero_si256(); 16];
        for (k, sk) in sc.iter_mut().enumerate() {
            let lo_word = if k % 8 < 4 { s0 } else { s1 };
            let lo = field8(lo_word, 8 * (k % 4) as u32 + 4 * (k / 8) as u32, 15);
            let hi = field8(s2, 8 * (k % 4) as u32 + 2 * (k / 4) as u32, 3);
            *sk = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
            d.sc[k] = dup16_8(*sk);
        }
        for m in 0..8 {
            d.mn[m] = pair16_8(sc[2 * m], sc[2 * m + 1]);
        }
    }
}

/// Tokens `t0..t0+T` against decoded half `h` of super-block `b`: the tiled order's update.
///
/// # Safety
/// AVX2/FMA; `c` as `gemm_q3_k_avx2`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn q3_k_avx2_block<const T: usize>(c: &R16Call, d: &Decoded8, b: usize, hd: (usize, __m256), t0: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (h, dw) = hd;
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        // −4·Σ_j sc_j·bsum_j, then Σ_j sc_j·Σ code·y: = Σ sc·q·y exactly
        let mut isum: [__m256i; T] = std::array::from_fn(|t| {
            let mut o = _mm256_setzero_si256();
            for m in 0..8 {
                o = _mm256_add_epi32(o, _mm256_madd_epi16(d.mn[m], bsum_pair8::<false>(blk[t].2, m)));
            }
            _mm256_mullo_epi32(o, _mm256_set1_epi32(-4))
        });
        for j in 0..16 {
            // four slots' i16 pairs: |Σ| ≤ 4·2·7·127 fits i16
            let mut p = [_mm256_setzero_si256(); T];
            for s in 4 * j..4 * j + 4 {
                let w = d.codes[s];
                for t in 0..T {
                    p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(w, bcast4_8(blk[t].1.add(4 * s))));
                }
            }
            for t in 0..T {
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p[t], d.sc[j]));
            }
        }
        for t in 0..T {
            let o = c.out.add((t0 + t) * c.os + 8 * h);
            let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), dw);
            _mm256_storeu_ps(o, _mm256_fmadd_ps(x, _mm256_set1_ps(blk[t].0), _mm256_loadu_ps(o)));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q3_K in llama.cpp's tiled GEMM order (`kernels::ggml_x86::q3_k_tiled`), AVX2.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_q3_k_avx2(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 2));
        let mut d = Decoded8::new();
        for t in 0..nt {
            std::ptr::write_bytes(c.out.add(t * c.os), 0, R);
        }
        for b in 0..c.nb {
            for h in 0..2 {
                decode_q3_k_avx2(quants.add(b * R * 108), h, &mut d);
                let dw = scales8(heads.add(b * R * 2), h);
                token_blocks!(q3_k_avx2_block, nt, (&c, &d, b, (h, dw)), 4);
            }
        }
    }
}

/// Decodes half h of Q5_K R16 block `q`: codes q (0..31), the 8 scales (dup16), the 8 minimums
/// as i16 pairs.
///
/// # Safety
/// AVX2; the 2752-byte block at `q` must be readable.
#[inline(always)]
unsafe fn decode_q5_k_avx2(q: *const u8, h: usize, d: &mut Decoded8) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (m4, x10) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        for s in 0..64 {
            let (j, l) = (s / 8, s % 8);
            let nib = slot8(q, 3 + 4 * j + l / 2, h);
            let nib = if l % 2 == 0 { nib } else { _mm256_srli_epi16(nib, 4) };
            let bit = _mm256_set1_epi8((1u8 << j) as i8);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(slot8(q, 35 + l, h), bit), bit);
            d.codes[s] = _mm256_or_si256(_mm256_and_si256(nib, m4), _mm256_and_si256(set, x10));
        }
        let (s0, s1, s2) = (slot8(q, 0, h), slot8(q, 1, h), slot8(q, 2, h));
        let mut mn = [_mm256_setzero_si256(); 8];
        for j in 0..8 {
            let sc = if j < 4 {
                mn[j] = field8(s1, 8 * j as u32, 63);
                field8(s0, 8 * j as u32, 63)
            } else {
                let i = 8 * (j as u32 - 4);
                mn[j] = _mm256_or_si256(field8(s2, i + 4, 15), field8(s1, i + 2, 0x30));
                _mm256_or_si256(field8(s2, i, 15), field8(s0, i + 2, 0x30))
            };
            d.sc[j] = dup16_8(sc);
        }
        for k in 0..4 {
            d.mn[k] = pair16_8(mn[2 * k], mn[2 * k + 1]);
        }
    }
}

/// Tokens `t0..t0+T` against decoded half `h` of super-block `b`: the tiled order's update.
///
/// # Safety
/// AVX2/FMA; `c` as `gemm_q5_k_avx2`'s, t0 + T ≤ its nt.
#[inline(always)]
unsafe fn q5_k_avx2_block<const T: usize>(c: &R16Call, d: &Decoded8, b: usize, hd: (usize, __m256, __m256), t0: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let (h, dw, dmin) = hd;
        let blk: [(f32, *const u8, *const i16); T] =
            std::array::from_fn(|t| q8k_block(c.a.add((t0 + t) * c.as_ + b * Q8_K_BLOCK)));
        let mut s1 = [_mm256_setzero_si256(); T];
        for j in 0..8 {
            for half in 0..2 {
                // four slots' i16 pairs: |Σ| ≤ 4·2·31·127 fits i16
                let mut p = [_mm256_setzero_si256(); T];
                for s in 8 * j + 4 * half..8 * j + 4 * half + 4 {
                    let w = d.codes[s];
                    for t in 0..T {
                        p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(w, bcast4_8(blk[t].1.add(4 * s))));
                    }
                }
                for t in 0..T {
                    s1[t] = _mm256_add_epi32(s1[t], _mm256_madd_epi16(p[t], d.sc[j]));
                }
            }
        }
        for t in 0..T {
            let mut s2 = _mm256_setzero_si256();
            for k in 0..4 {
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(d.mn[k], bsum_pair8::<true>(blk[t].2, k)));
            }
            let o = c.out.add((t0 + t) * c.os + 8 * h);
            let r = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(s2), _mm256_mul_ps(_mm256_cvtepi32_ps(s1[t]), dw));
            _mm256_storeu_ps(o, _mm256_fmadd_ps(r, _mm256_set1_ps(blk[t].0), _mm256_loadu_ps(o)));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
/// Q5_K in llama.cpp's tiled GEMM order (`kernels::ggml_x86::q5_k_tiled`), AVX2.
///
/// # Safety
/// The CPU must support this function's target features; `c` must be an `R16Call` of `nt` tokens.
unsafe fn gemm_q5_k_avx2(c: R16Call, nt: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (heads, quants) = (c.w, c.w.add(c.nb * R * 4));
        let mut d = Decoded8::new();
        for t in 0..nt {
            std::ptr::write_bytes(c.out.add(t * c.os), 0, R);
        }
        for b in 0..c.nb {
            for h in 0..2 {
                decode_q5_k_avx2(quants.add(b * R * 172), h, &mut d);
                let dw = scales8(heads.add(b * R * 4), h);
                let dmin = scales8(heads.add(b * R * 4 + R * 2), h);
                token_blocks!(q5_k_avx2_block, nt, (&c, &d, b, (h, dw, dmin)), 4);
            }
        }
    }
}
