//! Computing with the tensor formats of `crate::quant`: the kernels per instruction set, the table
//! that dispatches to them, and the operations built on it.
//!
//! - `types`: kernel signatures and the table's types (`Kernels`, per-type `TypeKernels`).
//! - `scalar`, `x86`, `neon`: the kernels of each instruction set (files per kind: activation
//!   quantizers, dots, R16 GEMMs, attention, softmax/SwiGLU). `scalar` is the reference the SIMD
//!   tables are tested against and the kernel of every slot they leave empty.
//! - `shared`, `entry`: argument checks, raw block readers and the safe table-entry macros the ISA
//!   modules share; `attn`: llama.cpp's attention summation orders, portable.
//! - `dispatch`: `Isa`, `LLAMA_ISA`, the process-wide table (`kernels()`).
//! - `matmul`: `x · Wᵀ` over the thread pool (`pool`); `elementwise`: the forward pass's
//!   elementwise ops; `parallel`: those split by rows over the pool.
//!
//! Dependencies point one way: the ISA modules use `quant`, `types`, `shared` and `attn`;
//! `dispatch` uses the ISA modules; the operations use `dispatch`.

#[macro_use]
mod entry;
pub mod attn;
pub mod dispatch;
pub mod elementwise;
pub mod ggml_x86;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod parallel;
pub mod pool;
pub mod scalar;
pub(crate) mod shared;
pub mod types;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use dispatch::{choose, kernels, vec_dot_type};

/// Asks the cache hierarchy (into L2) for `row_bytes` bytes at the start of each of `n_rows` rows
/// `stride` elements apart in `s`, beginning with element 0: a hint for data read soon (the
/// attention's next key chunk), which the memory system fetches while the caller computes. Rows
/// past the end of `s` are skipped; a prefetch reads nothing into registers and cannot fault. A
/// no-op on targets without a stable prefetch instruction.
#[inline]
pub fn prefetch_rows<E>(s: &[E], stride: usize, n_rows: usize, row_bytes: usize) {
    let es = std::mem::size_of::<E>();
    let p = s.as_ptr() as usize;
    let total = std::mem::size_of_val(s);
    for j in 0..n_rows {
        let off = j * stride * es;
        if off >= total {
            break;
        }
        for b in (0..row_bytes.min(total - off)).step_by(64) {
            prefetch_line(p + off + b);
        }
    }
}
/// Asks the cache hierarchy (into L2) for the 64-byte line at address `a`: a hint only, which
/// reads nothing and cannot fault whatever the address (`pool`'s warming of the next job's
/// weights, the kernels' prefetch ahead, the attention's next rows). A no-op on targets without a stable prefetch instruction.
#[inline(always)]
pub fn prefetch_line(a: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` (SSE, baseline on x86_64) only hints the cache: it reads nothing
    // into registers and does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(a as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = a;
}

/// Bytes at the start of a weight stream that the kernels' own prefetch never asks for: each step
/// asks for the lines `prefetch_distance` ahead of its reads (x86 only; 0 elsewhere, where the
/// kernels leave streams to the hardware prefetchers).
#[inline]
pub fn prefetch_lead() -> usize {
    #[cfg(target_arch = "x86_64")]
    return x86::prefetch_distance();
    #[cfg(not(target_arch = "x86_64"))]
    0
}
pub use matmul::{matmul, matmul_id, matmul_with, matvec_many, try_matmul, IdRoutes, MatmulScratch, QTensor};
pub use pool::ThreadPool;
pub use types::{
    AttnKernels, AttnOrder, BatchDot, BatchGemmFn, FromFloatFn, GemmR16Fn, GemvR16Fn, Isa, Kernels, MatShape, R16Batch,
    R16Gemv, SumOrders, TileFn, ToFloatFn, TypeKernels, VecDotFn, GEMM_ROWS, KT_LANES, TILE, TILE_T,
};
