//! `LlamaForCausalLM`, `MistralForCausalLM` (llama.cpp's `LlamaModel`): the shared mapping plus
//! Llama 3.1's rope scaling, which llama.cpp stores as a tensor of per-pair frequency divisors
//! (`rope_freqs.weight`, written first) rather than as metadata. Mistral's `sliding_window` is
//! not written (llama.cpp's `LlamaModel` ignores it and its llama graph attends to every position).

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::{rope_parameters, Family};
use crate::plan::{OutTensor, Plan};
use crate::tensor::SrcTensor;

pub(super) struct Llama;

impl Family for Llama {
    fn arch(&self) -> &'static str {
        "llama"
    }

    fn unpermute_qk(&self) -> bool {
        true
    }

    fn finish(&self, cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        let h = &mut plan.hparams;
        h.extra.push(("vocab_size".into(), Value::U32(h.n_vocab)));
        h.extra.push(("rope.dimension_count".into(), Value::U32(h.n_rot)));
        add_llama3_rope_freqs(cfg, cpath, plan)
    }
}

/// `LlamaModel.generate_extra_tensors`: for `rope_type` llama3, `rope_freqs.weight` [n_rot/2]
/// goes before every other tensor.
pub(super) fn add_llama3_rope_freqs(cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
    let rope = rope_parameters(cfg);
    let is_llama3 = rope.get("rope_type").and_then(Json::as_str).is_some_and(|t| t.eq_ignore_ascii_case("llama3"));
    if !is_llama3 {
        return Ok(());
    }
    let num = |k: &str, default: f64| -> Result<f64> {
        match rope.get(k).filter(|v| !v.is_null()) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::format(cpath, format!("rope parameter '{k}' must be a number, got {v}"))),
        }
    };
    let p = Llama3Rope {
        base: num("rope_theta", 10000.0)?,
        dim: plan.hparams.n_rot,
        factor: num("factor", 8.0)?,
        low_freq_factor: num("low_freq_factor", 1.0)?,
        high_freq_factor: num("high_freq_factor", 4.0)?,
        original_context: num("original_max_position_embeddings", 8192.0)?,
    };
    let factors = p.factors();
    plan.n_params += factors.len() as u64;
    let src = SrcTensor::owned_f32("rope_freqs".into(), cpath.to_path_buf(), vec![factors.len() as u64], &factors);
    plan.tensors.insert(0, OutTensor { name: "rope_freqs.weight".into(), src, unpermute_heads: None, transform: None });
    Ok(())
}

/// Llama 3.1's frequency scaling (transformers' `_compute_llama3_parameters`): pairs whose
/// wavelength is below original_context/high_freq_factor keep their frequency, those above
/// original_context/low_freq_factor are divided by `factor`, the ones between by a smooth blend.
struct Llama3Rope {
    base: f64,
    dim: u32,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_context: f64,
}

impl Llama3Rope {
    /// The divisors [dim/2], computed with llama.cpp's converter's float32 torch operations in
    /// its order (Python numbers meeting a float32 tensor are rounded to f32 first; `a / t` is
    /// torch's `t.reciprocal() * a`), so the tensor's bytes are its bytes.
    ///
    /// One known limit: torch evaluates `base ** exponents` with SLEEF's vectorized powf (1-ulp)
    /// on the first ⌊(dim/2)/16⌋·16 pairs and with libm's powf on the rest; we use libm's for all.
    /// The two agree for Llama 3.x's (500000, 64) and (500000, 128), but for some other
    /// (base, dim) pairs with dim ≥ 32 one divisor in the blended band can differ in its last bit.
    fn factors(&self) -> Vec<f32> {
        let dim = self.dim as f32;
        let (factor, low, old) = (self.factor as f32, self.low_freq_factor as f32, self.original_context as f32);
        let low_freq_wavelen = (self.original_context / self.low_freq_factor) as f32;
        let high_freq_wavelen = (self.original_context / self.high_freq_factor) as f32;
        let band = (self.high_freq_factor - self.low_freq_factor) as f32;
        let two_pi = (2.0 * std::f64::consts::PI) as f32;
        (0..self.dim / 2)
            .map(|i| {
                // freqs = 1.0 / (base ** (arange(0, dim, 2) / dim))
                let freq = 1.0 / (self.base as f32).powf((2 * i) as f32 / dim);
                // wavelen = 2 * math.pi / freq
                let wavelen = (1.0 / freq) * two_pi;
                if wavelen < high_freq_wavelen {
                    1.0
                } else if wavelen > low_freq_wavelen {
                    factor
                } else {
                    // smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
                    let smooth = ((1.0 / wavelen) * old - low) / band;
                    // 1 / ((1 - smooth) / factor + smooth)
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(b: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
    }

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The released Llama 3.1 8B and Llama 3.2 1B settings against the sha256 of the f32 bytes
    /// llama.cpp's `LlamaModel.generate_extra_tensors` produces for them (torch 2.x).
    #[test]
    fn llama3_factors_are_llamacpps_bytes() {
        let llama31_8b = Llama3Rope {
            base: 500000.0,
            dim: 128,
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192.0,
        };
        let llama32_1b = Llama3Rope { dim: 64, factor: 32.0, ..llama31_8b };
        let (a, b) = (llama31_8b.factors(), llama32_1b.factors());
        assert_eq!((a.len(), b.len()), (64, 32));
        assert_eq!(sha256_hex(&bytes(&a)), LLAMA31_8B_SHA256);
        assert_eq!(sha256_hex(&bytes(&b)), LLAMA32_1B_SHA256);
    }

    const LLAMA31_8B_SHA256: &str = "8b516af9cb5db26ed32831eb6f493dd620843d1cd69ca7bbad760c76061cd565";
    const LLAMA32_1B_SHA256: &str = "d25a6d176d9313062b8f86440c88649f9e568d573ea66bfa4e85e2424cf35633";
}
