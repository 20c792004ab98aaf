//! `SmolLM3ForCausalLM` (llama.cpp's `SmolLM3Model`, a `LlamaModel`): the llama mapping under
//! architecture `smollm3` with `vocab_size` and `rope.dimension_count` as LlamaModel writes them.
//! Its layers without RoPE are not written: llama.cpp fixes them at every 4th layer
//! (`n_no_rope_layer_step = 4`), so a checkpoint whose `no_rope_layers` says otherwise is refused
//! rather than converted into a file that runs wrongly.

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::Plan;

/// llama.cpp's `n_no_rope_layer_step` for smollm3: layer il (0-based) skips RoPE when
/// (il + 1) is a multiple of it.
const NO_ROPE_LAYER_STEP: usize = 4;

pub(super) struct SmolLm3;

impl Family for SmolLm3 {
    fn arch(&self) -> &'static str {
        "smollm3"
    }

    /// (`SmolLM3Model` is a `LlamaModel`.)
    fn unpermute_qk(&self) -> bool {
        true
    }

    fn finish(&self, cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        check_no_rope_layers(cfg, cpath, plan.hparams.n_layer as usize)?;
        let h = &mut plan.hparams;
        h.extra.push(("vocab_size".into(), Value::U32(h.n_vocab)));
        h.extra.push(("rope.dimension_count".into(), Value::U32(h.n_rot)));
        super::llama::add_llama3_rope_freqs(cfg, cpath, plan)
    }
}

/// The config's RoPE layers (transformers: `no_rope_layers[il]` = 1 when layer il uses RoPE,
/// by default every layer but each `no_rope_layer_interval`-th) must be llama.cpp's.
fn check_no_rope_layers(cfg: &Json, cpath: &Path, n_layer: usize) -> Result<()> {
    let interval = match cfg.get("no_rope_layer_interval").filter(|v| !v.is_null()) {
        None => NO_ROPE_LAYER_STEP,
        Some(v) => v.as_u64().filter(|&x| x > 0).map(|x| x as usize).ok_or_else(|| {
            Error::format(cpath, format!("'no_rope_layer_interval' must be a positive integer, got {v}"))
        })?,
    };
    let uses_rope: Vec<bool> = match cfg.get("no_rope_layers").filter(|v| !v.is_null()) {
        None => (0..n_layer).map(|il| !(il + 1).is_multiple_of(interval)).collect(),
        Some(v) => {
            let bad = || Error::format(cpath, format!("'no_rope_layers' must be {n_layer} integers 0/1, got {v}"));
            let a = v.as_array().filter(|a| a.len() == n_layer).ok_or_else(bad)?;
            a.iter().map(|x| x.as_u64().filter(|&x| x <= 1).map(|x| x == 1).ok_or_else(bad)).collect::<Result<_>>()?
        }
    };
    for (il, &rope) in uses_rope.iter().enumerate() {
        let llamacpp_rope = !(il + 1).is_multiple_of(NO_ROPE_LAYER_STEP);
        if rope != llamacpp_rope {
            return Err(Error::format(
                cpath,
                format!(
                    "layer {il} {} RoPE, but llama.cpp's smollm3 skips RoPE exactly on every \
                     {NO_ROPE_LAYER_STEP}th layer (the GGUF cannot say otherwise)",
                    if rope { "uses" } else { "skips" }
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rope_layers_must_be_every_fourth() {
        let p = Path::new("config.json");
        let ok = serde_json::json!({"no_rope_layer_interval": 4, "no_rope_layers": [1, 1, 1, 0, 1, 1, 1, 0]});
        assert!(check_no_rope_layers(&ok, p, 8).is_ok());
        // The default list (from the interval) is llama.cpp's pattern too.
        assert!(check_no_rope_layers(&serde_json::json!({}), p, 6).is_ok());
        let other = serde_json::json!({"no_rope_layers": [1, 1, 0, 1]});
        let e = check_no_rope_layers(&other, p, 4).unwrap_err().to_string();
        assert!(e.contains("layer 2 skips RoPE"), "{e}");
        let interval3 = serde_json::json!({"no_rope_layer_interval": 3});
        assert!(check_no_rope_layers(&interval3, p, 4).is_err());
        let short = serde_json::json!({"no_rope_layers": [1, 1, 1]});
        assert!(check_no_rope_layers(&short, p, 4).unwrap_err().to_string().contains("4 integers"));
    }
}
