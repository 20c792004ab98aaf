//! `Phi3ForCausalLM` → `phi3`, as llama.cpp's `Phi3MiniModel` converts it: the fused projections
//! keep their shape (`qkv_proj` → `attn_qkv`, `gate_up_proj` → `ffn_up`), LongRoPE's per-pair
//! factors become the tensors `rope_factors_long` and `rope_factors_short` (written first) with
//! the attention factor `rope.scaling.attn_factor`, its metadata (rope base always, rope
//! dimensions from `partial_rotary_factor`, the original context length, the sliding window, 0
//! when none), and its vocabulary: SentencePiece with the added tokens of tokenizer_config.json
//! and tokenizer.json taken as they are (CONTROL when special, USER_DEFINED otherwise).

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::{OutTensor, Plan};
use crate::tensor::SrcTensor;
use crate::vocab::{Vocab, CONTROL, USER_DEFINED};

pub(super) struct Phi3;

impl Family for Phi3 {
    fn arch(&self) -> &'static str {
        "phi3"
    }

    /// (LongRoPE: its factors are tensors, written by `finish`.)
    fn own_rope_scaling(&self) -> bool {
        true
    }

    /// llama.cpp names of Phi-3's own tensors; None for the shared mapping's.
    fn map_name(&self, name: &str) -> Option<std::result::Result<Option<String>, ()>> {
        let rest = name.strip_prefix("model.layers.")?;
        let (bid, rest) = rest.split_once('.')?;
        let (stem, kind) = rest.rsplit_once('.')?;
        let suffix = match stem {
            "self_attn.qkv_proj" => "attn_qkv",
            "mlp.gate_up_proj" => "ffn_up",
            _ => return None,
        };
        Some(if kind == "weight" { Ok(Some(format!("blk.{bid}.{suffix}.weight"))) } else { Err(()) })
    }

    /// Phi-3's metadata and its LongRoPE tensors, on the shared plan.
    fn finish(&self, cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        let bad = |m: String| Error::format(cpath, m);
        let rp = rope_parameters(cfg);
        let h = &mut plan.hparams;
        let n_ctx_orig = rp
            .get("original_max_position_embeddings")
            .and_then(Json::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad("missing integer 'original_max_position_embeddings'".into()))?;
        let rot_pct = rp.get("partial_rotary_factor").and_then(Json::as_f64).unwrap_or(1.0);
        // Python's int(rot_pct * n_embd) // n_head
        let n_rot = (rot_pct * h.n_embd as f64) as u32 / h.n_head;
        let theta = rp
            .get("full_attention")
            .and_then(Json::as_object)
            .unwrap_or(&rp)
            .get("rope_theta")
            .and_then(Json::as_f64)
            .ok_or_else(|| bad("missing number 'rope_theta'".into()))?;
        let n_swa = match cfg.get("sliding_window").filter(|v| !v.is_null()) {
            None => 0, // "use zero value of sliding_window to distinguish Phi-4 from other PHI3 models"
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| bad(format!("'sliding_window' must be a non-negative integer, got {v}")))?,
        };
        h.rope_theta = Some(theta as f32);
        h.head_dim = None; // Phi3MiniModel writes no key/value length
        h.n_rot = n_rot;
        h.extra = vec![
            ("rope.scaling.original_context_length".into(), Value::U32(n_ctx_orig)),
            ("rope.dimension_count".into(), Value::U32(n_rot)),
            ("attention.sliding_window".into(), Value::U32(n_swa)),
        ];
        // Phi3MiniModel's own order; the attention factor (set while its LongRoPE tensors are made,
        // which llama.cpp does first) right after the architecture
        h.key_order = vec![
            "general.architecture",
            "rope.scaling.attn_factor",
            "general.type",
            "general.name",
            "general.size_label",
            "context_length",
            "rope.scaling.original_context_length",
            "embedding_length",
            "feed_forward_length",
            "block_count",
            "attention.head_count",
            "attention.head_count_kv",
            "attention.layer_norm_rms_epsilon",
            "rope.dimension_count",
            "rope.freq_base",
            "general.file_type",
            "attention.sliding_window",
        ];

        // LongRoPE (128k-context models): the factors as tensors, and the attention factor.
        let factors = |k: &str| -> Result<Option<Vec<f32>>> {
            match rp.get(k).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(Json::Array(a)) if a.is_empty() => Ok(None),
                Some(Json::Array(a)) => a
                    .iter()
                    .map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| bad(format!("'{k}' holds a non-number {x}"))))
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                Some(v) => Err(bad(format!("'{k}' must be a list of numbers, got {v}"))),
            }
        };
        let Some(long) = factors("long_factor")? else { return Ok(()) };
        let scale = h.n_ctx as f64 / n_ctx_orig as f64;
        let rope_type = rp.get("rope_type").and_then(Json::as_str).unwrap_or("").to_lowercase();
        let attn_factor = match rope_type.as_str() {
            "" => return Err(bad("LongRoPE factors without a rope type ('rope_type')".into())),
            "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / (n_ctx_orig as f64).ln()).sqrt(),
            "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
            "su" | "longrope" | "yarn" => 1.0,
            other => return Err(bad(format!("rope type '{other}' is not supported with LongRoPE factors"))),
        };
        h.extra.push(("rope.scaling.attn_factor".into(), Value::F32(attn_factor as f32)));
        let short =
            factors("short_factor")?.ok_or_else(|| bad("LongRoPE 'long_factor' without 'short_factor'".into()))?;
        if long.len() != short.len() || 2 * long.len() != n_rot as usize {
            return Err(bad(format!(
                "rope long and short factors must have {} values each (rope dimensions / 2): {} and {}",
                n_rot as f64 / 2.0,
                long.len(),
                short.len()
            )));
        }
        let tensor = |name: &str, v: &[f32]| OutTensor {
            name: name.into(),
            src: SrcTensor::owned_f32(name.into(), cpath.to_path_buf(), vec![v.len() as u64], v),
            unpermute_heads: None,
            transform: None,
        };
        // generate_extra_tensors: before the checkpoint's tensors
        plan.tensors
            .splice(0..0, [tensor("rope_factors_long.weight", &long), tensor("rope_factors_short.weight", &short)]);
        Ok(())
    }

    /// Phi-3's SentencePiece vocabulary: the shared reading, then every added token (tokenizer_config's
    /// `added_tokens_decoder`, then tokenizer.json's `added_tokens`) as it is written, score −1000,
    /// CONTROL when special and USER_DEFINED otherwise. (Phi-4's GPT2Tokenizer vocabularies are BPE.)
    fn adapt_vocab(&self, dir: &Path, vocab: &mut Vocab) -> Result<()> {
        let cfg_path = dir.join("tokenizer_config.json");
        let gpt2 = match std::fs::read(&cfg_path) {
            Ok(text) => {
                serde_json::from_slice::<Json>(&text)
                    .map_err(|e| Error::format(&cfg_path, format!("invalid JSON: {e}")))?
                    .get("tokenizer_class")
                    .and_then(Json::as_str)
                    == Some("GPT2Tokenizer")
            }
            Err(_) => false,
        };
        match (gpt2, vocab.model) {
            (true, "gpt2") => return Ok(()),
            (false, "llama") => {}
            (true, _) => {
                return Err(Error::Tokenizer(format!(
                    "{}: tokenizer_class GPT2Tokenizer wants the BPE vocabulary of tokenizer.json, not tokenizer.model",
                    dir.display()
                )))
            }
            (false, _) => return Err(Error::Tokenizer(format!("{}: Phi-3 needs its tokenizer.model", dir.display()))),
        }
        let Some(scores) = vocab.scores.as_mut() else { return Ok(()) };
        for (id, content, special) in added_tokens(dir)? {
            if id >= vocab.tokens.len() {
                return Err(Error::Tokenizer(format!("added token {content:?}: id {id} is past the vocabulary")));
            }
            vocab.tokens[id] = content.into_bytes();
            scores[id] = -1000.0;
            vocab.types[id] = if special { CONTROL } else { USER_DEFINED };
        }
        Ok(())
    }
}

/// llama.cpp's `rope_parameters`: `rope_parameters` or else `rope_scaling`, completed from the
/// top-level `rope_theta`, `partial_rotary_factor`, `original_max_position_embeddings` and with
/// `rope_type` from `type`.
fn rope_parameters(cfg: &Json) -> serde_json::Map<String, Json> {
    let mut rp = cfg
        .get("rope_parameters")
        .or_else(|| cfg.get("rope_scaling"))
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    if !rp.contains_key("full_attention") && !rp.contains_key("sliding_attention") {
        for (k, from) in [
            ("rope_theta", "rope_theta"),
            ("partial_rotary_factor", "partial_rotary_factor"),
            ("original_max_position_embeddings", "original_max_position_embeddings"),
        ] {
            if let Some(v) = cfg.get(from).filter(|v| !v.is_null()) {
                rp.entry(k).or_insert_with(|| v.clone());
            }
        }
        if let Some(t) = rp.get("type").cloned().filter(|v| !v.is_null()) {
            rp.entry("rope_type").or_insert(t);
        }
    }
    rp
}

/// tokenizer.json's (or tokenizer_config.json's) added tokens as Phi3MiniModel takes them.
fn added_tokens(dir: &Path) -> Result<Vec<(usize, String, bool)>> {
    let read = |name: &str| -> Result<Option<Json>> {
        let p = dir.join(name);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| Error::format(&p, format!("invalid JSON: {e}")))
    };
    let mut out = Vec::new(); // (id, content, special), in the order llama.cpp applies them
    if let Some(tc) = read("tokenizer_config.json")? {
        if let Some(dec) = tc.get("added_tokens_decoder").and_then(Json::as_object) {
            for (id, data) in dec {
                let (Ok(id), Some(content)) = (id.parse::<usize>(), data.get("content").and_then(Json::as_str)) else {
                    continue;
                };
                out.push((id, content.to_string(), data.get("special").and_then(Json::as_bool).unwrap_or(false)));
            }
        }
    }
    if let Some(tj) = read("tokenizer.json")? {
        for a in tj.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
            let (Some(id), Some(content)) =
                (a.get("id").and_then(Json::as_u64), a.get("content").and_then(Json::as_str))
            else {
                continue;
            };
            out.push((id as usize, content.to_string(), a.get("special").and_then(Json::as_bool).unwrap_or(false)));
        }
    }
    Ok(out)
}
