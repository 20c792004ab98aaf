//! Multi-token tiles (`TileFn`, prompt processing) of MXFP4 with Q8_0: each weight block is
//! unpacked (nibbles looked up in `kvalues_mxfp4`, `mxfp4::values32`) ONCE per tile and multiplied
//! with up to `TILE_T` tokens' activations. Per (row, token) pair the operations are those of
//! `mxfp4::dot_mxfp4_avx2` in its order (even blocks into `acc0`, odd ones into `acc1`,
//! `hsum_float_8(acc0 + acc1)`, an odd last block added as `d·f32(sumi)`), so results are
//! bit-identical to the table's `vec_dot` (tests/batch_tiles.rs `batch_tiles_match_pairwise_dots`).

// Index loops over tokens mirror the register arrays they fill (`acc0[t]`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::dot::{f16_load, hsum_ps, mul_sum_i8};
use super::mxfp4::values32;
use crate::kernels::types::{TileFn, TILE, TILE_T};
use crate::quant::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};

row_tile_entry!(tile_mxfp4_entry, tile_mxfp4, 32, 17, 34);

/// The MXFP4 tile (AVX2 table; the AVX-512 one inherits it, as it does the dot).
pub(super) const TILE_MXFP4_AVX2: TileFn = tile_mxfp4_entry;

#[target_feature(enable = "avx2,fma,f16c")]
/// One MXFP4 row × T Q8_0 rows.
///
/// # Safety
/// The CPU must support this function's target features; `w` must point to the `nb` readable blocks
/// of the weight row, `a` to `T` rows of `nb` readable Q8_0 blocks, `as_` bytes apart.
unsafe fn tile_mxfp4<const T: usize>(nb: usize, w: *const u8, a: *const u8, as_: usize) -> [f32; TILE_T] {
    // SAFETY: the caller upholds this function's `# Safety` contract (target features,
    // pointer ranges), which covers every unsafe operation below.
    unsafe {
        let y = |t: usize, i: usize| a.add(t * as_ + 34 * i);
        let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
        let mut ib = 0;
        while ib + 1 < nb {
            for (k, acc) in [&mut acc0, &mut acc1].into_iter().enumerate() {
                let x = w.add(17 * (ib + k));
                let (v, dx) = (values32(x), e8m0_to_fp32_half(*x));
                for t in 0..T {
                    let yb = y(t, ib + k);
                    let p = mul_sum_i8(v, _mm256_loadu_si256(yb.add(2) as *const __m256i));
                    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(yb) * dx), _mm256_cvtepi32_ps(p), acc[t]);
                }
            }
            ib += 2;
        }
        let mut out = [0f32; TILE_T];
        for t in 0..T {
            let mut sumf = hsum_ps(_mm256_add_ps(acc0[t], acc1[t]));
            if ib < nb {
                let (x, yb) = (w.add(17 * ib), y(t, ib));
                let (qs, ys) =
                    (std::slice::from_raw_parts(x.add(1), 16), std::slice::from_raw_parts(yb.add(2) as *const i8, 32));
                let mut sumi = 0i32;
                for j in 0..16 {
                    sumi += ys[j] as i32 * KVALUES_MXFP4[(qs[j] & 0x0F) as usize] as i32
                        + ys[j + 16] as i32 * KVALUES_MXFP4[(qs[j] >> 4) as usize] as i32;
                }
                sumf += f16_load(yb) * e8m0_to_fp32_half(*x) * sumi as f32;
            }
            out[t] = sumf;
        }
        out
    }
}
