//! `Gemma2ForCausalLM` → `gemma2`, as llama.cpp's `Gemma2Model` converts it: norms before and
//! after attention and the FFN (`post_attention_norm`, `ffn_norm`, `post_ffw_norm`), every RMSNorm
//! weight stored as (1 + w) (Gemma's RMSNorm multiplies by 1 + w), `lm_head` dropped (the output
//! is the token embedding), its metadata (head_dim as key/value length, the two soft-caps, the
//! sliding window; no rope base), and a SentencePiece vocabulary without the ▁ prefix.

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::Plan;
use crate::tensor::{to_f32, DType, SrcTensor};
use crate::vocab::Vocab;

pub(super) struct Gemma2;

impl Family for Gemma2 {
    fn arch(&self) -> &'static str {
        "gemma2"
    }

    /// llama.cpp names of Gemma 2's own tensors; None for the shared mapping's.
    fn map_name(&self, name: &str) -> Option<std::result::Result<Option<String>, ()>> {
        if name == "lm_head.weight" {
            return Some(Ok(None)); // unused by llama.cpp (tied to the embedding)
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (bid, rest) = rest.split_once('.')?;
        let suffix = match rest.rsplit_once('.')?.0 {
            "post_attention_layernorm" => "post_attention_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            _ => return None,
        };
        let kind = rest.rsplit_once('.')?.1;
        Some(if kind == "weight" { Ok(Some(format!("blk.{bid}.{suffix}.weight"))) } else { Err(()) })
    }

    /// Gemma 2's metadata and the (1 + w) norm weights, on the shared plan.
    fn finish(&self, cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        let h = &mut plan.hparams;
        let num = |k: &str| {
            cfg.get(k).and_then(Json::as_f64).ok_or_else(|| Error::format(cpath, format!("missing number '{k}'")))
        };
        let head_dim = h.head_dim.ok_or_else(|| Error::format(cpath, "missing required key 'head_dim'"))?;
        let n_swa = cfg
            .get("sliding_window")
            .and_then(Json::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| Error::format(cpath, "missing integer 'sliding_window'"))?;
        // llama.cpp's Gemma2Model writes no rope base (Gemma 2's is the default 10000).
        h.rope_theta = None;
        h.head_dim = Some(head_dim);
        h.extra = vec![
            ("attn_logit_softcapping".into(), Value::F32(num("attn_logit_softcapping")? as f32)),
            ("final_logit_softcapping".into(), Value::F32(num("final_logit_softcapping")? as f32)),
            ("attention.sliding_window".into(), Value::U32(n_swa)),
        ];
        // Gemma2Model.set_gguf_parameters' own order
        h.key_order = vec![
            "general.architecture",
            "general.type",
            "general.name",
            "general.size_label",
            "context_length",
            "embedding_length",
            "block_count",
            "feed_forward_length",
            "attention.head_count",
            "attention.head_count_kv",
            "attention.layer_norm_rms_epsilon",
            "attention.key_length",
            "attention.value_length",
            "general.file_type",
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "attention.sliding_window",
        ];
        for t in &mut plan.tensors {
            // llama.cpp: `if name.endswith("norm.weight"): data_torch = data_torch + 1`, on the data
            // as it holds them: bf16 widened to f32 first, f16 kept (the sum rounded to f16).
            if t.src.name.ends_with("norm.weight") {
                let w = to_f32(t.src.dtype, &t.src.read()?); // [n]
                let plus1: Vec<f32> = match t.src.dtype {
                    DType::F16 => w.iter().map(|&x| half::f16::from_f32(x + 1.0).to_f32()).collect(),
                    DType::F32 | DType::BF16 => w.iter().map(|&x| x + 1.0).collect(),
                };
                t.src = SrcTensor::owned_f32(t.src.name.clone(), t.src.file.clone(), t.src.shape.clone(), &plus1);
            }
        }
        Ok(())
    }

    /// Gemma 2's vocabulary is SentencePiece's (`tokenizer.model`), without the ▁ prefix.
    fn adapt_vocab(&self, dir: &Path, vocab: &mut Vocab) -> Result<()> {
        if vocab.model != "llama" {
            return Err(Error::Tokenizer(format!("{}: Gemma 2 needs its tokenizer.model", dir.display())));
        }
        vocab.flags_after_template.push(("tokenizer.ggml.add_space_prefix", false));
        Ok(())
    }
}
