//! Compute operations on tensors, parallelized over a `cpu::ThreadPool`.

pub mod matmul;

pub use matmul::{matmul, matmul_with, try_matmul, MatmulScratch, QTensor};
