//! AVX-512 single-token dots of the grid i-quants with Q8_K (`VecDotFn`): IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, bit-identical to the AVX2 dots of `iq` (llama.cpp's x86
//! `ggml_vec_dot_iq*_q8_K` order, which its AVX-512 build runs as AVX2).
//!
//! Why faster: the AVX2 dots build every grid vector from scalar table loads joined by
//! `vpinsrq`/`vinserti128` and every sign vector from `ksigns64` loads the same way, so port 5
//! (the shuffle port) bounds them. Here one zmm covers two 32-element sub-blocks: the grid points of
//! the 8-byte grids (IQ2_*, IQ1_*) come from 8 scalar table loads with their indices made by BMI2's
//! `pdep` (Zen 4 runs `vpgatherqq` microcoded: scalar loads measured 1.2–1.5× faster per dot), those
//! of the 4-byte IQ3 grids from 16-bit codes held in registers (`CodeTable`), the signs
//! are a 64-bit mask register (the packed sign bytes as they are, or the 7-bit sign codes turned
//! into sign bytes by one `vpermi2b` over the 128-entry `KSIGNS_IQ2XS` table held in two
//! registers), and the scales one `vpermw` of the super-block's scale vector per sub-block pair.
//!
//! Exactness (the same i32 lanes as the AVX2 dots): the grid magnitudes g (< 64) are split by the
//! sign mask into the positive and the negative elements, `maddubs(g⁺, q8) − maddubs(g⁻, q8)` is
//! exact for every activation byte (|pair| ≤ 2·62·128), and `vpdpwssd` with the sub-block scales
//! forms `Σ ls·(pair + pair)` in lane k of each 256-bit half: elements 4k..4k+3 of the half's
//! sub-block, the AVX2 dots' lane k. The two halves are added once per super-block (integer sums:
//! exact in any order), then the float steps are the AVX2 dots' own (`iq::sum_iq`).

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_epi32, hsum_ps};
use super::iq::{prefetch_block, q8k};
use crate::kernels::types::VecDotFn;
use crate::quant::iq::IQ1S_DELTA;
use crate::quant::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use crate::quant::QK_K;

dot_entry!(dot_iq2_xxs_entry, dot_iq2_xxs, QK_K, 66, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq2_xs_entry, dot_iq2_xs, QK_K, 74, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq2_s_entry, dot_iq2_s, QK_K, 82, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq3_xxs_entry, dot_iq3_xxs, QK_K, 98, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq3_s_entry, dot_iq3_s, QK_K, 110, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq1_s_entry, dot_iq1_s, QK_K, 50, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");
dot_entry!(dot_iq1_m_entry, dot_iq1_m, QK_K, 56, 292, "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,bmi2");

/// The AVX-512 grid i-quant dots (they need AVX-512 VBMI besides the table's features):
/// (weight type, kernel).
pub(super) const DOTS_AVX512_VBMI: [(crate::quant::GgmlType, VecDotFn); 7] = {
    use crate::quant::GgmlType::*;
    [
        (IQ2_XXS, dot_iq2_xxs_entry),
        (IQ2_XS, dot_iq2_xs_entry),
        (IQ2_S, dot_iq2_s_entry),
        (IQ3_XXS, dot_iq3_xxs_entry),
        (IQ3_S, dot_iq3_s_entry),
        (IQ1_S, dot_iq1_s_entry),
        (IQ1_M, dot_iq1_m_entry),
    ]
};

/// `vpermw` indices: lane p (of 32) takes element `p / div` (plus the caller's offset).
const fn lanes_div(div: usize) -> [u16; 32] {
    let mut a = [0u16; 32];
    let mut p = 0;
    while p < 32 {
        a[p] = (p / div) as u16;
        p += 1;
    }
    a
}
static DIV8: [u16; 32] = lanes_div(8);
static DIV16: [u16; 32] = lanes_div(16);

/// IQ2_XXS / IQ3_XXS-style sign codes: `vpmultishiftqb` controls taking the four 7-bit codes at
/// bit `base + 7l` of each qword into its bytes 0..4 (bytes 4..8 repeat them).
const fn code_shifts(base: u8) -> [u8; 64] {
    let mut a = [0u8; 64];
    let mut b = 0;
    while b < 64 {
        a[b] = base + 7 * (b % 4) as u8;
        b += 1;
    }
    a
}
static CODES_HI: [u8; 64] = code_shifts(32);
static CODES_LO: [u8; 64] = code_shifts(0);

/// A grid of 256 or 512 entries as 16-bit codes: byte k of entry e is
/// `vals[(code_e >> (bits·k)) & mask]`. The codes fit in 8 or 16 zmm, so 32 lookups are four (eight)
/// `vpermi2w` and a few blends, where a gather loads every entry (Zen 4 runs `vpgatherqq` slowly:
/// ~40 % of `dot_iq1_s` there).
const fn grid_codes<const E: usize, const N: usize>(
    grid: &[u64; E],
    bytes: usize,
    bits: usize,
    vals: &[u8; N],
) -> [u16; E] {
    let mut out = [0u16; E];
    let mut e = 0;
    while e < E {
        let mut code = 0u16;
        let mut k = 0;
        while k < bytes {
            let b = (grid[e] >> (8 * k)) as u8;
            let mut v = 0;
            while vals[v] != b {
                v += 1; // every grid byte is one of `vals` (else this indexes out of bounds at compile time)
            }
            code |= (v as u16) << (bits * k);
            k += 1;
        }
        out[e] = code;
        e += 1;
    }
    out
}

const IQ3XXS_VALS: [u8; 8] = [0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3e];
const IQ3S_VALS: [u8; 8] = [1, 3, 5, 7, 9, 11, 13, 15];
static IQ3XXS_CODES: [u16; 256] = grid_codes(&widen(&IQ3XXS_GRID), 4, 3, &IQ3XXS_VALS);
static IQ3S_CODES: [u16; 512] = grid_codes(&widen(&IQ3S_GRID), 4, 3, &IQ3S_VALS);

const fn widen<const E: usize>(g: &[u32; E]) -> [u64; E] {
    let mut out = [0u64; E];
    let mut e = 0;
    while e < E {
        out[e] = g[e] as u64;
        e += 1;
    }
    out
}

/// `vpermb` table: entry t is `vals[t mod 2^bits]` (the index bits above a code are ignored).
const fn code_vals<const N: usize>(vals: &[u8; N], bits: usize) -> [u8; 64] {
    let mut a = [0u8; 64];
    let mut t = 0;
    while t < 64 {
        let c = t & ((1 << bits) - 1);
        a[t] = if c < N { vals[c] } else { 0 };
        t += 1;
    }
    a
}
static IQ3XXS_VALS64: [u8; 64] = code_vals(&IQ3XXS_VALS, 3);
static IQ3S_VALS64: [u8; 64] = code_vals(&IQ3S_VALS, 3);

/// `vpmultishiftqb` controls: byte k of each qword takes bits `3(k mod 4) + 32(k div 4)..` (4 codes
/// of 3 bits in each dword: one IQ3 entry per dword).
static SHIFT_3BIT: [u8; 64] = {
    let mut a = [0u8; 64];
    let mut b = 0;
    while b < 64 {
        a[b] = (3 * (b % 4) + 32 * ((b % 8) / 4)) as u8;
        b += 1;
    }
    a
};

static DIV2: [u16; 32] = lanes_div(2);

/// The 16-bit codes of a grid of `32·R` entries (`grid_codes`; R = 8 or 16) in R registers.
struct CodeTable<const R: usize>([__m512i; R]);

impl<const R: usize> CodeTable<R> {
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[inline(always)]
    unsafe fn load(codes: &'static [u16]) -> Self {
        assert_eq!(codes.len(), 32 * R);
        // SAFETY: R × 64 bytes = the 32·R codes (checked above).
        unsafe { CodeTable(std::array::from_fn(|r| _mm512_loadu_si512(codes.as_ptr().add(32 * r) as *const _))) }
    }

    /// The codes of the 32 entries whose indices (0..32·R) are the u16 lanes of `idx`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 BW (register-only).
    #[inline(always)]
    unsafe fn lookup(&self, idx: __m512i) -> __m512i {
        // SAFETY: register-only AVX-512 operations; the caller guarantees the features.
        unsafe {
            // vpermi2w reads the low 6 bits: one result per 64-entry chunk, then the index bits
            // from 6 up pick among them
            let mut r = [_mm512_setzero_si512(); 8];
            for (q, rq) in r.iter_mut().enumerate().take(R / 2) {
                *rq = _mm512_permutex2var_epi16(self.0[2 * q], idx, self.0[2 * q + 1]);
            }
            let (mut n, mut bit) = (R / 2, 64);
            while n > 1 {
                let k = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(bit));
                for q in 0..n / 2 {
                    r[q] = _mm512_mask_blend_epi16(k, r[2 * q], r[2 * q + 1]);
                }
                (n, bit) = (n / 2, 2 * bit);
            }
            r[0]
        }
    }
}

/// Grid bytes from codes: lane w of `codes` holds an entry's code; `rep` (u16 lane indices)
/// places each entry's code at the start of its dword, `shifts` (`SHIFT_3BIT`) brings byte k's
/// code to the bottom of byte k, and `vals64`
/// (`code_vals`) maps it to the grid value.
///
/// # Safety
/// The CPU must support AVX-512 BW and VBMI (register-only).
#[inline(always)]
unsafe fn expand_codes(codes: __m512i, rep: __m512i, shifts: __m512i, vals64: __m512i) -> __m512i {
    // SAFETY: register-only AVX-512 operations; the caller guarantees the features.
    unsafe {
        let c = _mm512_permutexvar_epi16(rep, codes);
        _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(shifts, c), vals64)
    }
}

/// # Safety
/// `p..p+64` readable.
#[inline(always)]
unsafe fn ld64<T>(p: &T) -> __m512i {
    // SAFETY: the caller guarantees 64 readable bytes (the statics above are 64 bytes).
    unsafe { _mm512_loadu_si512(p as *const T as *const _) }
}

/// The 128 sign bytes of `KSIGNS_IQ2XS` as two registers (`vpermi2b` looks up a 7-bit code).
///
/// # Safety
/// The CPU must support AVX-512 F.
#[inline(always)]
unsafe fn ksigns_regs() -> (__m512i, __m512i) {
    // SAFETY: KSIGNS_IQ2XS is 128 bytes.
    unsafe { (ld64(&KSIGNS_IQ2XS[0]), ld64(&KSIGNS_IQ2XS[64])) }
}

/// `acc + Σ ls·(g·±q8)` over one sub-block pair: `g` 64 grid magnitudes (< 64), `neg` the sign
/// mask (bit b: element b negative), `y` the 64 activations, `ls` the i16 scales of each element
/// pair. Lane k of each 256-bit half sums elements 4k..4k+3 of its sub-block (exact).
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI (register-only).
#[inline(always)]
unsafe fn signed_dot64(acc: __m512i, g: __m512i, neg: __mmask64, y: __m512i, ls: __m512i) -> __m512i {
    // SAFETY: register-only AVX-512 operations; the caller guarantees the features.
    unsafe {
        let pos = _mm512_maddubs_epi16(_mm512_maskz_mov_epi8(!neg, g), y);
        let negp = _mm512_maddubs_epi16(_mm512_maskz_mov_epi8(neg, g), y);
        _mm512_dpwssd_epi32(acc, _mm512_sub_epi16(pos, negp), ls)
    }
}

/// The 256-bit halves of `v` added: lane k = lanes k and k + 8.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[inline(always)]
unsafe fn fold(v: __m512i) -> __m256i {
    // SAFETY: register-only AVX-512 operations; the caller guarantees the features.
    unsafe { _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)) }
}

/// The 16 i16 scales `2·nibble + 1` of 8 scale bytes (nibble f: low of byte f/2 for even f).
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn nibble_scales(sc: u64) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller guarantees the features.
    unsafe {
        let b = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc as i64));
        let v =
            _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(15)), _mm256_slli_epi32(_mm256_srli_epi32(b, 4), 16));
        _mm256_or_si256(_mm256_slli_epi16(v, 1), _mm256_set1_epi16(1))
    }
}

/// The scales of sub-block pair `i` from 16 per-16-element scales `l16`: 128-bit quarter q of the
/// result holds scale `4i + q`.
///
/// # Safety
/// The CPU must support AVX-512 BW.
#[inline(always)]
unsafe fn pair_ls16(l16: __m256i, i: usize) -> __m512i {
    // SAFETY: register-only AVX-512 operations (DIV8 is 64 bytes); features from the caller.
    unsafe {
        let idx = _mm512_add_epi16(ld64(&DIV8), _mm512_set1_epi16(4 * i as i16));
        _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(l16))
    }
}

/// The scales of sub-block pair `i` from `l`, whose i16 lane `stride·j + off` holds the scale of
/// sub-block j: the low half gets sub-block 2i's, the high half 2i + 1's.
///
/// # Safety
/// The CPU must support AVX-512 BW.
#[inline(always)]
unsafe fn pair_ls32(l: __m512i, i: usize, stride: i16, off: i16) -> __m512i {
    // SAFETY: register-only AVX-512 operations (DIV16 is 64 bytes); features from the caller.
    unsafe {
        let idx = _mm512_mullo_epi16(ld64(&DIV16), _mm512_set1_epi16(stride));
        let idx = _mm512_add_epi16(idx, _mm512_set1_epi16(2 * stride * i as i16 + off));
        _mm512_permutexvar_epi16(idx, l)
    }
}

/// 32 sign bytes (256 bits, element order) as 4 sign masks of 64 elements.
///
/// # Safety
/// The CPU must support AVX.
#[inline(always)]
unsafe fn masks4(s: __m256i) -> [u64; 4] {
    // SAFETY: AVX register/stack operations; features from the caller.
    unsafe { std::mem::transmute::<__m256i, [u64; 4]>(s) }
}

/// `iq::sum_iq` (the AVX2 dots' float steps, `prefetch_block` per super-block) over block pointers.
///
/// # Safety
/// As `iq::sum_iq`.
#[inline(always)]
unsafe fn sum_iq<const WB: usize>(
    n: usize,
    w: *const u8,
    a: *const u8,
    block: impl Fn(*const u8, *const u8) -> __m256i,
) -> f32 {
    // SAFETY: the caller guarantees the pointer ranges and the features.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..n / QK_K {
            let x = w.add(WB * i);
            prefetch_block(x);
            let (yd, q8, _) = q8k(a.add(292 * i));
            let lanes = block(x, q8);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(x) * yd), _mm256_cvtepi32_ps(lanes), acc);
        }
        hsum_ps(acc)
    }
}

/// Declares a dot `f · sum_iq(block)` over a 512-bit lanes function.
macro_rules! dot512 {
    ($dot:ident, $lanes:ident, $wb:expr, $f:expr, $what:literal) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")]
        #[doc = concat!($what, " × Q8_K in llama.cpp's `vec_dot` order (AVX-512).")]
        ///
        /// # Safety
        /// The CPU must support this function's target features; `w` and `a` must point to the
        /// readable whole blocks of `n` elements of the weight row and of the activation row (the
        /// table entry checks the row lengths).
        unsafe fn $dot(n: usize, w: *const u8, a: *const u8) -> f32 {
            // SAFETY: the caller upholds this function's `# Safety` contract.
            unsafe { $f * sum_iq::<$wb>(n, w, a, |x, q8| $lanes(x, q8)) }
        }
    };
}

dot512!(dot_iq2_xxs, lanes_iq2_xxs, 66, 0.125, "IQ2_XXS");
dot512!(dot_iq2_xs, lanes_iq2_xs, 74, 0.125, "IQ2_XS");
dot512!(dot_iq2_s, lanes_iq2_s, 82, 0.125, "IQ2_S");
dot512!(dot_iq3_xxs, lanes_iq3_xxs, 98, 0.25, "IQ3_XXS");
dot512!(dot_iq3_s, lanes_iq3_s, 110, 1.0, "IQ3_S");

/// IQ2_XXS super-block `x` (66 bytes) × the Q8_K quants at `q8`: the 8 lanes of `iq::lanes_iq2_xxs`.
///
/// # Safety
/// The CPU must support the dots' target features; `x..x+66` and `q8..q8+256` must be readable.
#[inline(always)]
unsafe fn lanes_iq2_xxs(x: *const u8, q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // 8 × (4 grid index bytes, aux32: four 7-bit sign codes, the 4-bit scale on top)
        let raw = _mm512_loadu_si512(x.add(2) as *const _);
        let (klo, khi) = ksigns_regs();
        let signs = _mm512_permutex2var_epi8(klo, _mm512_multishift_epi64_epi8(ld64(&CODES_HI), raw), khi);
        let neg = masks4(_mm512_cvtepi64_epi32(signs));
        // ls_j = 2·(aux_j >> 28) + 1 in i16 lane 4j + 2
        let l = _mm512_or_si512(_mm512_slli_epi32(_mm512_srli_epi32(raw, 28), 1), _mm512_set1_epi32(1));
        let mut acc = _mm512_setzero_si512();
        for (i, &neg) in neg.iter().enumerate() {
            // groups 2i, 2i + 1: 4 index bytes each, then their aux32
            let e = |k: usize| {
                let b = std::ptr::read_unaligned(x.add(2 + 16 * i + 8 * k) as *const u32) as u64;
                _pdep_u64(b, 0x00ff_00ff_00ff_00ff)
            };
            let g = grid8(&IQ2XXS_GRID, [e(0), e(1)]);
            let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
            acc = signed_dot64(acc, g, neg, y, pair_ls32(l, i, 4, 2));
        }
        fold(acc)
    }
}

/// IQ2_XS lanes (as `lanes_iq2_xxs`; 74-byte blocks).
///
/// # Safety
/// As `lanes_iq2_xxs` (`x..x+74`).
#[inline(always)]
unsafe fn lanes_iq2_xs(x: *const u8, q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // 32 u16 codes: grid index (9 bits), 7-bit sign code
        let raw = _mm512_loadu_si512(x.add(2) as *const _);
        let (klo, khi) = ksigns_regs();
        let signs = _mm512_permutex2var_epi8(klo, _mm512_srli_epi16(raw, 9), khi);
        let neg = masks4(_mm512_cvtepi16_epi8(signs));
        let l16 = nibble_scales(std::ptr::read_unaligned(x.add(66) as *const u64));
        let mut acc = _mm512_setzero_si512();
        for (i, &neg) in neg.iter().enumerate() {
            // entries 8i..8i + 8: the grid index in the low 9 bits of each u16
            let e =
                |k: usize| std::ptr::read_unaligned(x.add(2 + 16 * i + 8 * k) as *const u64) & 0x01ff_01ff_01ff_01ff;
            let g = grid8(&IQ2XS_GRID, [e(0), e(1)]);
            let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
            acc = signed_dot64(acc, g, neg, y, pair_ls16(l16, i));
        }
        fold(acc)
    }
}

/// IQ2_S lanes (as `lanes_iq2_xxs`; 82-byte blocks).
///
/// # Safety
/// As `lanes_iq2_xxs` (`x..x+82`).
#[inline(always)]
unsafe fn lanes_iq2_s(x: *const u8, q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // qs [32] @2, signs [32] @34, qh [8] @66, scales [8] @74
        let l16 = nibble_scales(std::ptr::read_unaligned(x.add(74) as *const u64));
        let mut acc = _mm512_setzero_si512();
        for i in 0..4 {
            // entry m: qs[8i + m] | ((qh[2i + m/4] >> 2(m%4)) & 3) << 8
            let h = std::ptr::read_unaligned(x.add(66 + 2 * i) as *const u16) as u64;
            let hi = [_pdep_u64(h, 0x0300_0300_0300_0300), _pdep_u64(h >> 8, 0x0300_0300_0300_0300)];
            let g = big_grid8(&IQ2S_GRID, x.add(2 + 8 * i), hi);
            let neg = std::ptr::read_unaligned(x.add(34 + 8 * i) as *const u64);
            let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
            acc = signed_dot64(acc, g, neg, y, pair_ls16(l16, i));
        }
        fold(acc)
    }
}

/// IQ3_XXS lanes (as `lanes_iq2_xxs`; 98-byte blocks).
///
/// # Safety
/// As `lanes_iq2_xxs` (`x..x+98`).
#[inline(always)]
unsafe fn lanes_iq3_xxs(x: *const u8, q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // qs [64] @2 (grid index bytes), 8 × aux32 @66 (four 7-bit sign codes, 4-bit scale)
        let aux = _mm256_loadu_si256(x.add(66) as *const __m256i);
        let (klo, khi) = ksigns_regs();
        let codes = _mm512_multishift_epi64_epi8(ld64(&CODES_LO), _mm512_cvtepu32_epi64(aux));
        let neg = masks4(_mm512_cvtepi64_epi32(_mm512_permutex2var_epi8(klo, codes, khi)));
        // ls_j = 2·(aux_j >> 28) + 1 in i16 lane 2j
        let l = _mm256_or_si256(_mm256_slli_epi32(_mm256_srli_epi32(aux, 28), 1), _mm256_set1_epi32(1));
        let l = _mm512_castsi256_si512(l);
        let mut acc = _mm512_setzero_si512();
        // the 64 entries' codes, 32 per register (u16 lane e: entry e of the half)
        let table = CodeTable::<8>::load(&IQ3XXS_CODES);
        let codes: [__m512i; 2] = std::array::from_fn(|h| {
            table.lookup(_mm512_cvtepu8_epi16(_mm256_loadu_si256(x.add(2 + 32 * h) as *const __m256i)))
        });
        let (shifts, vals) = (ld64(&SHIFT_3BIT), ld64(&IQ3XXS_VALS64));
        for (i, &neg) in neg.iter().enumerate() {
            // dword d: entry 16i + d
            let rep = _mm512_add_epi16(ld64(&DIV2), _mm512_set1_epi16(16 * (i % 2) as i16));
            let g = expand_codes(codes[i / 2], rep, shifts, vals);
            let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
            acc = signed_dot64(acc, g, neg, y, pair_ls32(l, i, 2, 0));
        }
        fold(acc)
    }
}

/// IQ3_S lanes (as `lanes_iq2_xxs`; 110-byte blocks).
///
/// # Safety
/// As `lanes_iq2_xxs` (`x..x+110`).
#[inline(always)]
unsafe fn lanes_iq3_s(x: *const u8, q8: *const u8) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        // qs [64] @2, qh [8] @66, signs [32] @74, scales [4] @106
        let sc = std::ptr::read_unaligned(x.add(106) as *const u32) as u64;
        // nibble j (sub-block j's scale) in i16 lane j
        let l16 = nibble_scales(sc);
        let l = _mm512_castsi256_si512(l16);
        let mut acc = _mm512_setzero_si512();
        // the 64 entries' codes, 32 per register: index byte | bit e of qh << 8
        let table = CodeTable::<16>::load(&IQ3S_CODES);
        let codes: [__m512i; 2] = std::array::from_fn(|h| {
            let idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256(x.add(2 + 32 * h) as *const __m256i));
            let hbits = std::ptr::read_unaligned(x.add(66 + 4 * h) as *const u32);
            table.lookup(_mm512_mask_add_epi16(idx, hbits, idx, _mm512_set1_epi16(256)))
        });
        let (shifts, vals) = (ld64(&SHIFT_3BIT), ld64(&IQ3S_VALS64));
        for i in 0..4 {
            // dword d: entry 16i + d
            let rep = _mm512_add_epi16(ld64(&DIV2), _mm512_set1_epi16(16 * (i % 2) as i16));
            let g = expand_codes(codes[i / 2], rep, shifts, vals);
            let neg = std::ptr::read_unaligned(x.add(74 + 8 * i) as *const u64);
            let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
            acc = signed_dot64(acc, g, neg, y, pair_ls32(l, i, 1, 0));
        }
        fold(acc)
    }
}

/// `acc + Σ ls·(g·q8)` over one sub-block pair of IQ1 grid bytes g ∈ {−1, 0, 1}, as
/// `maddubs(g + 1, q8) − maddubs(1, q8)` (exact), and `maddubs(1, q8)` (for the IQ1_M delta part).
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI (register-only).
#[inline(always)]
unsafe fn iq1_dot64(acc: __m512i, g: __m512i, y: __m512i, ls: __m512i) -> (__m512i, __m512i) {
    // SAFETY: register-only AVX-512 operations; the caller guarantees the features.
    unsafe {
        let one = _mm512_set1_epi8(1);
        let s1 = _mm512_maddubs_epi16(one, y);
        let p = _mm512_sub_epi16(_mm512_maddubs_epi16(_mm512_add_epi8(g, one), y), s1);
        (_mm512_dpwssd_epi32(acc, p, ls), s1)
    }
}

/// The points of a grid too big for registers (IQ1_S/IQ1_M's 2048, IQ2_S's 1024 entries) for one
/// sub-block pair: entry m = qs[m] | u16 lane m of `hi` (entries 0..4 in `hi[0]`, 4..8 in
/// `hi[1]`; the high index bits at bit 8 and up, nothing else set). Scalar loads joined by
/// `vpinsrq`, as llama.cpp's AVX2 dots build them: Zen 4 runs `vpgatherqq` microcoded, and the
/// gathers took ~40 % of these dots (4096² GEMV on one core: IQ1_S 1.51 → 0.98 ms, IQ2_S 1.38 →
/// 0.93). The 512-entry IQ2_XS and 256-entry IQ2_XXS grids measured faster this way too than as
/// register-held codes (1.07 → 0.89, 0.99 → 0.85 ms): the code table does not stay in registers
/// across blocks.
///
/// # Safety
/// The CPU must support AVX-512 F and BMI2; `qs..qs+8` readable.
#[inline(always)]
unsafe fn big_grid8<const E: usize>(grid: &[u64; E], qs: *const u8, hi: [u64; 2]) -> __m512i {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let q = std::ptr::read_unaligned(qs as *const u64);
        grid8(grid, [_pdep_u64(q, 0x00ff_00ff_00ff_00ff) | hi[0], _pdep_u64(q >> 32, 0x00ff_00ff_00ff_00ff) | hi[1]])
    }
}

/// The grid points of 8 entries whose indices are the u16 lanes of `p` (entries 0..4 in `p[0]`),
/// by scalar loads joined by `vpinsrq` (see `big_grid8`).
///
/// # Safety
/// The CPU must support AVX-512 F.
#[inline(always)]
unsafe fn grid8<const E: usize>(grid: &[u64; E], p: [u64; 2]) -> __m512i {
    // SAFETY: every index is masked below E (a power of two).
    unsafe {
        let g = |p: u64, k: u32| *grid.get_unchecked((p >> (16 * k)) as usize & (E - 1)) as i64;
        let [p0, p1] = p;
        _mm512_set_epi64(g(p1, 3), g(p1, 2), g(p1, 1), g(p1, 0), g(p0, 3), g(p0, 2), g(p0, 1), g(p0, 0))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")]
/// IQ1_S × Q8_K in llama.cpp's `vec_dot` order (AVX-512; the float steps of `iq::dot_iq1_s`).
///
/// # Safety
/// The CPU must support this function's target features; `w` and `a` must point to the readable
/// whole blocks of `n` elements of the weight row and of the activation row (the table entry checks
/// the row lengths).
unsafe fn dot_iq1_s(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let (mut accum, mut accum1) = (_mm256_setzero_ps(), 0f32);
        for b in 0..n / QK_K {
            // qs [32] @2, qh [8] u16 @34 (3 index bits per entry, scale bits 12..15, delta sign 15)
            let x = w.add(50 * b);
            prefetch_block(x);
            let (yd, q8, bsums) = q8k(a.add(292 * b));
            let qh = _mm_loadu_si128(x.add(34) as *const __m128i);
            let ls = _mm_or_si128(
                _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)), 1),
                _mm_set1_epi16(1),
            );
            let l = _mm512_castsi128_si512(ls);
            let mut acc = _mm512_setzero_si512();
            for i in 0..4 {
                // qh[2i], qh[2i + 1]: 3 index bits for each of 4 entries in bits 0..12
                let h = std::ptr::read_unaligned(x.add(34 + 4 * i) as *const u32) as u64;
                let hi = [_pdep_u64(h, 0x0700_0700_0700_0700), _pdep_u64(h >> 16, 0x0700_0700_0700_0700)];
                let g = big_grid8(&IQ1S_GRID, x.add(2 + 8 * i), hi);
                let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
                acc = iq1_dot64(acc, g, y, pair_ls32(l, i, 1, 0)).0;
            }
            // delta part: Σ_j ±ls_j·(bsums[2j] + bsums[2j+1]) (exact)
            let s = _mm_srai_epi16(qh, 15);
            let sls = _mm_sub_epi16(_mm_xor_si128(ls, s), s);
            let d2 = _mm256_cvtepu16_epi32(sls);
            let d2 = _mm256_or_si256(d2, _mm256_slli_epi32(d2, 16));
            let bs = _mm256_loadu_si256(bsums.as_ptr() as *const __m256i);
            let sumi1 = hsum_epi32(_mm256_madd_epi16(bs, d2));
            let d = f16_load(x) * yd;
            accum = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(fold(acc)), accum);
            accum1 = d.mul_add(sumi1 as f32, accum1);
        }
        hsum_ps(accum) + IQ1S_DELTA * accum1
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c,bmi2")]
/// IQ1_M × Q8_K in llama.cpp's `vec_dot` order (AVX-512; the lanes and float steps of
/// `iq::dot_iq1_m`).
///
/// # Safety
/// As `dot_iq1_s`.
unsafe fn dot_iq1_m(n: usize, w: *const u8, a: *const u8) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        // u16 lane f takes sc[f / 4] (bytes 2(f/4), 2(f/4) + 1), shifted right by 3(f % 4)
        let pick = _mm256_set_epi8(
            7, 6, 7, 6, 7, 6, 7, 6, 5, 4, 5, 4, 5, 4, 5, 4, 3, 2, 3, 2, 3, 2, 3, 2, 1, 0, 1, 0, 1, 0, 1, 0,
        );
        let sh3 = _mm256_set_epi16(9, 6, 3, 0, 9, 6, 3, 0, 9, 6, 3, 0, 9, 6, 3, 0);
        let (mut accum1, mut accum2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for b in 0..n / QK_K {
            // qs [32] @0, qh [16] @32 (per 4-bit field: 3 index bits, delta sign), scales 4 × u16 @48
            let x = w.add(56 * b);
            prefetch_block(x);
            let (yd, q8, _) = q8k(a.add(292 * b));
            let sc64 = std::ptr::read_unaligned(x.add(48) as *const u64);
            let sc: [u16; 4] = std::array::from_fn(|k| (sc64 >> (16 * k)) as u16);
            let d = crate::quant::iq::iq1m_scale(&sc).to_f32();
            // 3-bit scale field f = 2·ib + half: 16 i16 scales 2·field + 1
            let v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_cvtsi64_si128(sc64 as i64)), pick);
            let l16 = _mm256_and_si256(_mm256_srlv_epi16(v, sh3), _mm256_set1_epi16(7));
            let l16 = _mm256_or_si256(_mm256_slli_epi16(l16, 1), _mm256_set1_epi16(1));
            let (mut acc1, mut acc2) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for i in 0..4 {
                // 8 nibbles: 3 index bits and the delta sign of each entry
                let h = std::ptr::read_unaligned(x.add(32 + 4 * i) as *const u32);
                let h64 = h as u64;
                let nib = |h: u64| _pdep_u64(h, 0x0f00_0f00_0f00_0f00) & 0x0700_0700_0700_0700;
                let hi = [nib(h64), nib(h64 >> 16)];
                let g = big_grid8(&IQ1S_GRID, x.add(8 * i), hi);
                let y = _mm512_loadu_si512(q8.add(64 * i) as *const _);
                let ls = pair_ls16(l16, i);
                let (a1, s1) = iq1_dot64(acc1, g, y, ls);
                acc1 = a1;
                // delta: i16 lane p is group m = p / 4 of the pair (4 elements), scale field
                // 4i + p/8, negative where bit 4m + 3 of h is set
                let kneg = ((h >> 3) & 0x1111_1111).wrapping_mul(15);
                let fv = _mm512_mask_sub_epi16(ls, kneg, _mm512_setzero_si512(), ls);
                acc2 = _mm512_dpwssd_epi32(acc2, s1, fv);
            }
            let dv = _mm256_set1_ps(d * yd);
            accum1 = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(fold(acc1)), accum1);
            accum2 = _mm256_fmadd_ps(dv, _mm256_cvtepi32_ps(fold(acc2)), accum2);
        }
        hsum_ps(accum1) + IQ1S_DELTA * hsum_ps(accum2)
    }
}
