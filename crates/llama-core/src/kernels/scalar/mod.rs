//! The scalar kernels: THE reference implementation (SIMD tables are tested against it), the
//! `LLAMA_ISA=scalar` table, and the kernel behind every slot a SIMD table does not fill.
//!
//! Typed on the block structs of `quant` (candle's `GgmlType` with `vec_dot_unopt`): `VecDot` is a
//! weight type with its activation partner and dot, `FromFloat` an activation type with the
//! runtime's f32 converter. The table's byte-row entries (`vec_dot::<T>`, `from_float::<T>`) view
//! the rows as blocks in place (`quant::read_blocks` / `write_blocks`: no copy unless a row is
//! misaligned for its block type, which no runtime buffer is). The arithmetic follows ggml's
//! reference per block: an exact integer dot per (sub)block, then one float update per block.

pub mod attn;
mod dot;
mod quantize;

use crate::quant::blocks::{read_blocks, write_blocks, Block};
use crate::quant::repack::MAX_T;
use crate::quant::{BlockIQ1M, BlockIQ1S, BlockIQ2S, BlockIQ2XS, BlockIQ2XXS, BlockIQ3S, BlockIQ3XXS};
use crate::quant::{BlockIQ4NL, BlockIQ4XS, BlockTQ1_0, BlockTQ2_0};
use crate::quant::{BlockMXFP4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, GgmlType};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use half::{bf16, f16};

use super::elementwise;
use super::types::{AttnKernels, BatchDot, Kernels, R16Batch, TypeKernels, N_TYPE_IDS};

/// A weight type and its dot with its activation partner (ggml's `vec_dot` and `vec_dot_type`).
pub trait VecDot: Block {
    /// The activation type (ggml's `vec_dot_type`).
    type Act: Block;
    /// Σ over `n` elements (a whole number of blocks) of x·y.
    fn vec_dot(n: usize, x: &[Self], y: &[Self::Act]) -> f32;
}

/// An activation type: how the runtime converts f32 rows to it (ggml-cpu's `from_float`).
pub trait FromFloat: Block {
    /// `x.len() == y.len() * block size`.
    fn from_float(x: &[f32], y: &mut [Self]);
}

/// `VecDotFn` entry of `T`: the first `n` elements of both rows viewed as blocks.
pub fn vec_dot<T: VecDot>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / T::TYPE.block_size();
    let (w, a) = (&w[..nb * size_of::<T>()], &a[..nb * size_of::<T::Act>()]);
    T::vec_dot(n, &read_blocks::<T>(w), &read_blocks::<T::Act>(a))
}

/// `FromFloatFn` entry of `T`: `out` holds the blocks of `x` (and possibly more).
pub fn from_float<T: FromFloat>(x: &[f32], out: &mut [u8]) {
    let len = x.len() / T::TYPE.block_size() * size_of::<T>();
    write_blocks::<T>(&mut out[..len], |y| T::from_float(x, y))
}

/// `FromFloatFn` of a weight type: the reference quantizer (`quant::quantize_row`).
fn from_float_ref<T: Block>(x: &[f32], out: &mut [u8]) {
    let len = x.len() / T::TYPE.block_size() * size_of::<T>();
    crate::quant::quantize_row(T::TYPE, x, &mut out[..len]).expect("whole blocks of a supported type")
}

/// `ToFloatFn` of `T`: the reference dequantizer (`quant::dequantize_row`).
fn to_float<T: Block>(src: &[u8], dst: &mut [f32]) {
    let len = dst.len() / T::TYPE.block_size() * size_of::<T>();
    crate::quant::dequantize_row(T::TYPE, &src[..len], dst).expect("whole blocks of a supported type")
}

/// Row of a weight type that is not an activation type.
const fn weight<T: VecDot>() -> TypeKernels {
    TypeKernels {
        from_float: Some(from_float_ref::<T>),
        to_float: Some(to_float::<T>),
        vec_dot_type: Some(<T::Act as Block>::TYPE),
        vec_dot: Some(vec_dot::<T>),
        ..TypeKernels::empty(T::TYPE)
    }
}

/// Row of a weight type we read but do not make (the grid i-quants need an importance matrix):
/// no `from_float`.
const fn weight_read_only<T: VecDot>() -> TypeKernels {
    TypeKernels { from_float: None, ..weight::<T>() }
}

/// Row of an activation type that is not a weight type.
const fn activation<T: FromFloat>() -> TypeKernels {
    TypeKernels { from_float: Some(from_float::<T>), to_float: Some(to_float::<T>), ..TypeKernels::empty(T::TYPE) }
}

/// Row of a type that is both.
const fn both<T: VecDot + FromFloat>() -> TypeKernels {
    TypeKernels { from_float: Some(from_float::<T>), ..weight::<T>() }
}

/// The grid i-quants' batch rule (`types::BatchDot`): llama.cpp's tiled GEMM from 8 tokens; the x86
/// tables supply the dot in its order.
const TILED_FROM_8: Option<BatchDot> = Some(BatchDot {
    min_tokens: 8,
    rows_multiple: 1,
    cols_multiple: 1,
    in_mul_mat_id: true,
    dot: None,
    tile: None,
    gemm: None,
});

/// F16/F32 weights' batch rule (`types::BatchDot`): llamafile's tinyBLAS in llama.cpp's x86
/// `mul_mat` from 2 tokens, for matrices of a multiple of 4 rows; the x86 tables supply the dot
/// and the row-length multiple (their vector width).
const SGEMM_FROM_2: Option<BatchDot> = Some(BatchDot {
    min_tokens: 2,
    rows_multiple: 4,
    cols_multiple: 1,
    in_mul_mat_id: false,
    dot: None,
    tile: None,
    gemm: None,
});

/// The scalar table.
pub const TABLE: Kernels = {
    let mut types: [Option<TypeKernels>; N_TYPE_IDS] = [None; N_TYPE_IDS];
    let rows = [
        weight::<BlockQ4_0>(),
        weight::<BlockQ4_1>(),
        weight::<BlockQ5_0>(),
        weight::<BlockQ5_1>(),
        both::<BlockQ8_0>(),
        activation::<BlockQ8_1>(),
        TypeKernels {
            // llama.cpp's AVX2 build: tiled K-quant GEMM from 8 tokens (its AVX-512 build repacks
            // Q2_K instead, an order not reproduced yet).
            r16_batch: Some(R16Batch { min_tokens: 8, group: 1, from_float: None, gemm: None, max_t: MAX_T }),
            ..weight::<BlockQ2K>()
        },
        TypeKernels {
            // llama.cpp's tiled K-quant GEMM takes batches of 8 tokens or more.
            r16_batch: Some(R16Batch { min_tokens: 8, group: 1, from_float: None, gemm: None, max_t: MAX_T }),
            ..weight::<BlockQ3K>()
        },
        TypeKernels {
            // llama.cpp's Q4_K prompt GEMM (x86 repack: 4×8 interleaved rows) runs over the
            // batch's full groups of 4 tokens with activations from its own Q8_K quantizer.
            r16_batch: Some(R16Batch {
                min_tokens: 4,
                group: 4,
                from_float: Some(quantize::from_float_q8_k_4x8),
                gemm: None,
                max_t: MAX_T,
            }),
            ..weight::<BlockQ4K>()
        },
        TypeKernels {
            // llama.cpp's tiled K-quant GEMM takes batches of 8 tokens or more.
            r16_batch: Some(R16Batch { min_tokens: 8, group: 1, from_float: None, gemm: None, max_t: MAX_T }),
            ..weight::<BlockQ5K>()
        },
        TypeKernels {
            // llama.cpp's tiled K-quant GEMM takes batches of 8 tokens or more.
            r16_batch: Some(R16Batch { min_tokens: 8, group: 1, from_float: None, gemm: None, max_t: MAX_T }),
            ..weight::<BlockQ6K>()
        },
        activation::<BlockQ8K>(),
        weight::<BlockMXFP4>(),
        // llama.cpp's x86 builds take grid i-quant batches of 8 tokens or more through the tiled GEMM.
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ2XXS>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ2XS>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ2S>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ3XXS>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ3S>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ1S>() },
        TypeKernels { batch_dot: TILED_FROM_8, ..weight_read_only::<BlockIQ1M>() },
        weight::<BlockIQ4NL>(),
        TypeKernels {
            // llama.cpp's tiled GEMM takes IQ4_XS batches of 8 tokens or more, as Q6_K's.
            r16_batch: Some(R16Batch { min_tokens: 8, group: 1, from_float: None, gemm: None, max_t: MAX_T }),
            ..weight::<BlockIQ4XS>()
        },
        weight::<BlockTQ1_0>(),
        weight::<BlockTQ2_0>(),
        TypeKernels { batch_dot: SGEMM_FROM_2, ..both::<f16>() },
        both::<bf16>(),
        TypeKernels { batch_dot: SGEMM_FROM_2, ..both::<f32>() },
    ];
    let mut i = 0;
    while i < rows.len() {
        types[rows[i].ggml_type as usize] = Some(rows[i]);
        i += 1;
    }
    Kernels {
        isa: super::types::Isa::Scalar,
        orders: super::types::SumOrders::Avx512,
        types,
        attn: AttnKernels {
            kt_f16: attn::attn_kt_f16,
            kt_f32: attn::attn_kt_f32,
            kq: attn::attn_kq,
            vf_f16: attn::attn_vf_f16,
            kt_f16_gather: attn::attn_kt_f16_gather,
            kt_f32_gather: attn::attn_kt_f32_gather,
            vf_f16_gather: attn::attn_vf_f16_gather,
            pv: attn::attn_pv,
            pv_panels: None,
            round_f16: attn::round_f16,
            fa_online: attn::fa_online,
            fa_tile_kq: attn::fa_tile_kq,
            fa_tile_pv: attn::fa_tile_pv,
            fa_kv_dot: attn::fa_kv_dot,
            fa_lanes: None,
        },
        softmax: elementwise::softmax_scalar,
        exp_sum: None,
        swiglu: elementwise::swiglu_scalar,
        gelu: elementwise::gelu_scalar,
    }
};

/// The Q8_K converter of llama.cpp's Q4_K batch GEMM (`ggml_quantize_mat_q8_K_4x8`), bytes in.
pub use quantize::from_float_q8_k_4x8;

/// Every type with a scalar row; `GgmlType::is_supported` lists the same ones.
pub fn types() -> impl Iterator<Item = GgmlType> {
    TABLE.types.into_iter().flatten().map(|t| t.ggml_type)
}
