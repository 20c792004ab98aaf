//! Which instruction set the kernels use, chosen once per process.
//!
//! `kernels()` fills the table on first use from runtime feature detection
//! (`is_x86_feature_detected!` / `is_aarch64_feature_detected!`), so one binary runs on any
//! x86_64/aarch64 machine and still uses AVX-512 VNNI where present. `LLAMA_ISA=scalar|avx2|avx512|neon`
//! forces a level (for testing and benchmarking), `LLAMA_TILES=0` drops the multi-token tiles; an unknown value or an ISA this CPU lacks falls back
//! to the best available one with a warning on stderr.
//!
//! A SIMD table is built by overriding the rows of the table it extends (AVX2 and NEON: the scalar
//! one, AVX-512: the AVX2 one), so slots it does not implement keep the scalar kernel and every
//! table is complete.

use std::sync::OnceLock;

use super::scalar;
use super::types::{Isa, Kernels};
use crate::quant::GgmlType;

/// The activation type a weight type is multiplied with (ggml's `vec_dot_type`), the same in
/// every table.
pub fn vec_dot_type(w: GgmlType) -> Option<GgmlType> {
    Kernels::SCALAR.vec_dot_type(w)
}

impl Kernels {
    /// The scalar table (the reference; see `kernels::scalar`).
    pub const SCALAR: Kernels = scalar::TABLE;

    /// The table for `isa`, or `None` if this CPU (or this build's target) cannot run it.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        match isa {
            Isa::Scalar => Some(Kernels::SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86::avx2_table(&Kernels::SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::x86::avx512_table(&super::x86::avx2_table(&Kernels::SCALAR)?),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::neon::neon_table(&Kernels::SCALAR),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Every table this machine can run, best last (tests compare each against the scalar one).
    pub fn available() -> Vec<Kernels> {
        [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512].into_iter().filter_map(Kernels::for_isa).collect()
    }
}

fn best_available() -> Kernels {
    Kernels::available().pop().unwrap_or(Kernels::SCALAR)
}

/// The table for a `LLAMA_ISA` value (`None`/empty = best available), plus the warning to print
/// when the request cannot be honoured.
pub fn choose(requested: Option<&str>) -> (Kernels, Option<String>) {
    let best = best_available();
    let v = match requested {
        Some(v) if !v.trim().is_empty() => v,
        _ => return (best, None),
    };
    match Isa::parse(v) {
        Some(isa) => match Kernels::for_isa(isa) {
            Some(k) => (k, None),
            None => (
                best,
                Some(format!(
                    "llama: LLAMA_ISA={v}: this CPU/build does not support {}; using {} instead",
                    isa.name(),
                    best.isa.name()
                )),
            ),
        },
        None => (
            best,
            Some(format!("llama: LLAMA_ISA={v} is not one of scalar, avx2, avx512, neon; using {}", best.isa.name())),
        ),
    }
}

fn select() -> Kernels {
    let env = std::env::var("LLAMA_ISA").ok();
    let (k, warning) = choose(env.as_deref());
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    // LLAMA_TILES=0 drops the multi-token tiles (prompts take `vec_dot` per pair): for comparisons.
    if std::env::var("LLAMA_TILES").is_ok_and(|v| v.trim() == "0") {
        return k.without_tiles();
    }
    k
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The process-wide kernel table (chosen on first call; see module docs).
pub fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(select)
}
