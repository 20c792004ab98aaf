//! aarch64 NEON kernels (dotprod where the CPU has it).

use crate::cpu::Kernels;

pub fn neon_kernels() -> Option<Kernels> {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        return None;
    }
    Some(Kernels { isa: crate::cpu::Isa::Neon, ..Kernels::SCALAR })
}
