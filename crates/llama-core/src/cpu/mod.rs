//! CPU dispatch: which instruction set the kernels use, chosen once per process.
//!
//! `kernels()` fills a table of function pointers on first use from runtime feature detection
//! (`is_x86_feature_detected!` / `is_aarch64_feature_detected!`), so one binary runs on any
//! x86_64/aarch64 machine and still uses AVX-512 VNNI where present. `LLAMA_ISA=scalar|avx2|avx512|neon`
//! forces a level (for testing and benchmarking); an unknown value or an ISA this CPU lacks falls back
//! to the best available one with a warning on stderr.
//!
//! Slots a SIMD level does not implement keep the scalar kernel, so every table is complete.

pub mod attn;
pub mod pool;
pub mod scalar;

pub use attn::AttnOrder;

pub use pool::ThreadPool;

use crate::quant::repack::GemmR16Fn;
use crate::quant::GgmlType;
use half::f16;
use std::sync::OnceLock;

/// `(n elements, weight row bytes, activation row bytes) -> dot`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;
/// `(x: [n] f32, out: row bytes of the activation type)`.
pub type FromFloatFn = fn(&[f32], &mut [u8]);
/// Largest tile edge of a `TileFn`.
pub const TILE: usize = 4;
/// Multi-token tile: `(n, w, w_stride, nr, a, a_stride, nt) -> out[r][t]` = dot of weight row r
/// (bytes `w[r*w_stride..]`) with activation row t (`a[t*a_stride..]`), for r < nr ≤ TILE,
/// t < nt ≤ TILE. Bit-identical to calling the table's `VecDotFn` for each pair.
pub type TileFn = fn(usize, &[u8], usize, usize, &[u8], usize, usize) -> [[f32; TILE]; TILE];
/// Lanes of a key panel (`AttnKtFn` / `AttnKqFn`).
pub const KT_LANES: usize = 16;
/// Key panels `(n, k, k_stride, n_keys, kt)`: keys converted to f32 and transposed in panels of
/// `KT_LANES` keys, `kt[(c*n + d)*KT_LANES + l] = k[(c*KT_LANES + l)*k_stride + d]`; lanes past
/// n_keys are set to 0. `kt` holds at least n_keys.div_ceil(KT_LANES) * n * KT_LANES values.
pub type AttnKtFn<T> = fn(usize, &[T], usize, usize, &mut [f32]);
/// Attention scores `(n, kt, n_keys, q, n_q, out, out_stride, order)` from key panels:
/// `out[i*out_stride + j] = Σ_{d<n} k_j[d] · q[i*n + d]` for i < n_q, j < n_keys, summed over d in
/// llama.cpp's `order` (`cpu::attn`), bit-identical in every ISA. `q` is already rounded to the
/// cache type.
pub type AttnKqFn = fn(usize, &[f32], usize, &[f32], usize, &mut [f32], usize, AttnOrder);
/// f16 value rows to f32 `(n, v, v_stride, n_rows, out)`: `out[j*n + d] = v[j*v_stride + d]`.
pub type AttnVfFn = fn(usize, &[f16], usize, usize, &mut [f32]);
/// Attention output `(n, v, v_stride, j0, lo, hi, p, o, order)` of one query:
/// `o[d] = Σ_{j=lo..=hi} p[j-j0] · v[(j-j0)*v_stride + d]` for d < n, over the absolute key index
/// j (which picks lanes and accumulators) in llama.cpp's `order`, bit-identical in every ISA.
pub type AttnPvFn = fn(usize, &[f32], usize, usize, usize, usize, &[f32], &mut [f32], AttnOrder);
/// `AttnPvFn` for several queries over value panels `(n, vt, j0, lo, hi, p, p_stride, o, order)`:
/// the values of keys j0.. in the `AttnKtFn` panel layout (j0 a multiple of 64); query i sees
/// keys lo[i]..=hi[i] with probabilities p[i*p_stride + j - j0], writes o[i*n..(i+1)*n]; the
/// same sums and bits as `AttnPvFn` per query.
pub type AttnPvPanelsFn = fn(usize, &[f32], usize, &[usize], &[usize], &[f32], usize, &mut [f32], AttnOrder);
/// Rounds every element through f16 (round to nearest even) in place; bit-identical to
/// `half::f16::from_f32(x).to_f32()`.
pub type RoundFn = fn(&mut [f32]);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }
}

/// One complete set of kernels for a given ISA.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    pub quantize_q8_0: FromFloatFn,
    pub quantize_q8_1: FromFloatFn,
    pub quantize_q8_k: FromFloatFn,
    pub convert_f16: FromFloatFn,
    pub convert_bf16: FromFloatFn,
    pub convert_f32: FromFloatFn,
    pub dot_q4_0: VecDotFn,
    pub dot_q4_1: VecDotFn,
    pub dot_q5_0: VecDotFn,
    pub dot_q5_1: VecDotFn,
    pub dot_q8_0: VecDotFn,
    pub dot_q2_k: VecDotFn,
    pub dot_q3_k: VecDotFn,
    pub dot_q4_k: VecDotFn,
    pub dot_q5_k: VecDotFn,
    pub dot_q6_k: VecDotFn,
    pub dot_f16: VecDotFn,
    pub dot_bf16: VecDotFn,
    pub dot_f32: VecDotFn,
    /// Optional multi-token tiles (prompt processing); `None` = use the dot kernel per pair.
    pub tile_q4_0: Option<TileFn>,
    pub tile_q8_0: Option<TileFn>,
    /// Kernels over R16-repacked weights (`quant::repack`); a weight type is repacked at load only
    /// when the process-wide table has its kernel.
    pub gemm_r16_q4_0: Option<GemmR16Fn>,
    pub gemm_r16_q5_0: Option<GemmR16Fn>,
    pub gemm_r16_q8_0: Option<GemmR16Fn>,
    pub gemm_r16_q4_k: Option<GemmR16Fn>,
    pub gemm_r16_q6_k: Option<GemmR16Fn>,
    /// Q4_K in llama.cpp's order for prompt tokens in full groups of 4 (`x86_r16`); `None` = the
    /// plain Q4_K kernel serves those tokens too.
    pub gemm_r16_q4_k_g4: Option<GemmR16Fn>,
    /// Q6_K in llama.cpp's order for batches of 8 tokens or more (`x86_r16`); `None` = the plain
    /// Q6_K kernel serves those too.
    pub gemm_r16_q6_k_tiled: Option<GemmR16Fn>,
    /// Attention over the KV cache (model::attention), per cache type.
    pub attn_kt_f16: AttnKtFn<f16>,
    pub attn_kt_f32: AttnKtFn<f32>,
    pub attn_kq: AttnKqFn,
    pub attn_vf_f16: AttnVfFn,
    pub attn_pv: AttnPvFn,
    /// The same from value panels, where a table has it (faster: keys in lanes).
    pub attn_pv_panels: Option<AttnPvPanelsFn>,
    pub round_f16: RoundFn,
}

/// The activation type a weight type is multiplied with (ggml's `vec_dot_type`).
pub fn vec_dot_type(w: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    Some(match w {
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Q8_K,
        F16 => F16,
        BF16 => BF16,
        F32 => F32,
        _ => return None,
    })
}

impl Kernels {
    pub const SCALAR: Kernels = Kernels {
        isa: Isa::Scalar,
        quantize_q8_0: scalar::quantize_row_q8_0,
        quantize_q8_1: scalar::quantize_row_q8_1,
        quantize_q8_k: scalar::quantize_row_q8_k,
        convert_f16: scalar::convert_row_f16,
        convert_bf16: scalar::convert_row_bf16,
        convert_f32: scalar::convert_row_f32,
        dot_q4_0: scalar::dot_q4_0_q8_0,
        dot_q4_1: scalar::dot_q4_1_q8_1,
        dot_q5_0: scalar::dot_q5_0_q8_0,
        dot_q5_1: scalar::dot_q5_1_q8_1,
        dot_q8_0: scalar::dot_q8_0_q8_0,
        dot_q2_k: scalar::dot_q2_k_q8_k,
        dot_q3_k: scalar::dot_q3_k_q8_k,
        dot_q4_k: scalar::dot_q4_k_q8_k,
        dot_q5_k: scalar::dot_q5_k_q8_k,
        dot_q6_k: scalar::dot_q6_k_q8_k,
        dot_f16: scalar::dot_f16_f16,
        dot_bf16: scalar::dot_bf16_bf16,
        dot_f32: scalar::dot_f32_f32,
        tile_q4_0: None,
        tile_q8_0: None,
        gemm_r16_q4_0: None,
        gemm_r16_q5_0: None,
        gemm_r16_q8_0: None,
        gemm_r16_q4_k: None,
        gemm_r16_q6_k: None,
        gemm_r16_q4_k_g4: None,
        gemm_r16_q6_k_tiled: None,
        attn_kt_f16: scalar::attn_kt_f16,
        attn_kt_f32: scalar::attn_kt_f32,
        attn_kq: scalar::attn_kq,
        attn_vf_f16: scalar::attn_vf_f16,
        attn_pv: scalar::attn_pv,
        attn_pv_panels: None,
        round_f16: scalar::round_f16,
    };

    /// The dot kernel for weights of type `w` (paired with `vec_dot_type(w)` activations).
    pub fn vec_dot(&self, w: GgmlType) -> Option<VecDotFn> {
        use GgmlType::*;
        Some(match w {
            Q4_0 => self.dot_q4_0,
            Q4_1 => self.dot_q4_1,
            Q5_0 => self.dot_q5_0,
            Q5_1 => self.dot_q5_1,
            Q8_0 => self.dot_q8_0,
            Q2_K => self.dot_q2_k,
            Q3_K => self.dot_q3_k,
            Q4_K => self.dot_q4_k,
            Q5_K => self.dot_q5_k,
            Q6_K => self.dot_q6_k,
            F16 => self.dot_f16,
            BF16 => self.dot_bf16,
            F32 => self.dot_f32,
            _ => return None,
        })
    }

    /// The multi-token tile kernel for weights of type `w`, if this table has one.
    pub fn tile(&self, w: GgmlType) -> Option<TileFn> {
        match w {
            GgmlType::Q4_0 => self.tile_q4_0,
            GgmlType::Q8_0 => self.tile_q8_0,
            _ => None,
        }
    }

    /// The kernel over R16-repacked weights of type `w`, if this table has one.
    pub fn gemm_r16(&self, w: GgmlType) -> Option<GemmR16Fn> {
        match w {
            GgmlType::Q4_0 => self.gemm_r16_q4_0,
            GgmlType::Q5_0 => self.gemm_r16_q5_0,
            GgmlType::Q8_0 => self.gemm_r16_q8_0,
            GgmlType::Q4_K => self.gemm_r16_q4_k,
            GgmlType::Q6_K => self.gemm_r16_q6_k,
            _ => None,
        }
    }

    /// The R16 kernels for a batch of `n_tokens` of weight type `w`: `(for tokens inside the
    /// batch's full groups of 4, for the rest)`. They differ from `gemm_r16(w)` where llama.cpp
    /// sums a prompt batch in another order than single tokens: Q4_K (its 4-row GEMM), Q6_K (its
    /// tiled GEMM from 8 rows).
    pub fn gemm_r16_batch(&self, w: GgmlType, n_tokens: usize) -> Option<(GemmR16Fn, GemmR16Fn)> {
        let plain = self.gemm_r16(w)?;
        Some(match w {
            GgmlType::Q4_K => (self.gemm_r16_q4_k_g4.unwrap_or(plain), plain),
            GgmlType::Q6_K if n_tokens >= 8 => {
                let tiled = self.gemm_r16_q6_k_tiled.unwrap_or(plain);
                (tiled, tiled)
            }
            _ => (plain, plain),
        })
    }

    /// The converter from f32 to activation type `a` (one of `vec_dot_type`'s results).
    pub fn from_float(&self, a: GgmlType) -> Option<FromFloatFn> {
        use GgmlType::*;
        Some(match a {
            Q8_0 => self.quantize_q8_0,
            Q8_1 => self.quantize_q8_1,
            Q8_K => self.quantize_q8_k,
            F16 => self.convert_f16,
            BF16 => self.convert_bf16,
            F32 => self.convert_f32,
            _ => return None,
        })
    }

    /// The table for `isa`, or `None` if this CPU (or this build's target) cannot run it.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        match isa {
            Isa::Scalar => Some(Kernels::SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::quant::x86::avx2_kernels(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => crate::quant::x86::avx512_kernels(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => crate::quant::neon::neon_kernels(),
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
    k
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The process-wide kernel table (chosen on first call; see module docs).
pub fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(select)
}
