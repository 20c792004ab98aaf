//! Hugging Face checkpoints: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`). HF's conversion script permuted q/k rows for its rotary
//! implementation; for the llama architecture we undo it (llama.cpp's `LlamaModel.permute`).
//!
//! A family whose checkpoint needs more than the shared mapping below (its own config keys, written
//! through `Hparams::extra`; its own tensor names; tensors merged or split) keeps that in its own
//! file in this folder (`hf/<family>.rs`): a `Family` implementation, named by one line of the
//! registry `family`. Adding a family is that file and that line (and its class in `SUPPORTED`).

mod gpt_oss;
mod qwen35;
mod qwen3moe;

use std::collections::BTreeSet;
use std::path::Path;

use llama_core::{Error, Result};
use serde_json::Value as Json;

use crate::plan::{Hparams, OutTensor, Plan, RopeScaling};
use crate::safetensors::load_safetensors;
use crate::tensor::SrcTensor;
use crate::vocab::Vocab;

mod bert;
mod gemma2;
mod llama;
mod phi3;
mod smollm3;

pub const SUPPORTED: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM",
    "Qwen3_5ForCausalLM",
    "GptOssForCausalLM",
    "Gemma2ForCausalLM",
    "Phi3ForCausalLM",
    "SmolLM3ForCausalLM",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
];

/// What one Hugging Face architecture adds to the shared mapping of `load_hf`. Every method
/// defaults to "nothing of its own"; `hf/<family>.rs` implements what its checkpoints need.
pub trait Family {
    /// The GGUF `general.architecture` it converts to.
    fn arch(&self) -> &'static str;
    /// True when the family writes its rope scaling itself (in `finish`) rather than from the
    /// shared `rope_parameters` reading.
    fn own_rope_scaling(&self) -> bool {
        false
    }
    /// A LayerNorm family (BERT): `rms_norm_eps` is not required.
    fn layer_norm(&self) -> bool {
        false
    }
    /// llama.cpp's `LlamaModel.permute`: HF's rotary permutation of the q/k rows is undone.
    fn unpermute_qk(&self) -> bool {
        false
    }
    /// The output tensors of a checkpoint tensor the family maps itself (none yet when it waits
    /// for more, as stacked experts do), or the tensor handed back to the shared mapping.
    #[allow(clippy::result_large_err)] // the tensor handed back is moved, not copied
    fn take(&mut self, t: SrcTensor) -> std::result::Result<Result<Vec<OutTensor>>, SrcTensor> {
        Err(t)
    }
    /// The family's own llama.cpp name for a tensor the shared mapping also reads (`Ok(None)`:
    /// dropped; `Err(())`: not mappable), or None to use the shared name.
    fn map_name(&self, _name: &str) -> Option<std::result::Result<Option<String>, ()>> {
        None
    }
    /// After every tensor was read: checks that nothing is missing, then the family's metadata
    /// and the tensors made from its config, on the shared plan.
    fn finish(&self, _cfg: &Json, _cpath: &Path, _plan: &mut Plan) -> Result<()> {
        Ok(())
    }
    /// Its own tokenizer metadata on top of the shared reading (`vocab::load_vocab`).
    fn adapt_vocab(&self, _dir: &Path, _vocab: &mut Vocab) -> Result<()> {
        Ok(())
    }
}

/// A family the shared mapping converts as it is.
struct Plain(&'static str);

impl Family for Plain {
    fn arch(&self) -> &'static str {
        self.0
    }
}

/// The registry: `config.json`'s `architectures[0]` → the family that converts it.
fn family(class: &str, cfg: &Json, cpath: &Path) -> Result<Box<dyn Family>> {
    Ok(match class {
        "LlamaForCausalLM" | "MistralForCausalLM" => Box::new(llama::Llama),
        "SmolLM3ForCausalLM" => Box::new(smollm3::SmolLm3),
        "Qwen2ForCausalLM" => Box::new(Plain("qwen2")),
        "Qwen3ForCausalLM" => Box::new(Plain("qwen3")),
        "Qwen3MoeForCausalLM" => Box::new(qwen3moe::Qwen3Moe::new(cfg, cpath)?),
        "Qwen3_5ForCausalLM" => Box::new(qwen35::Qwen35::from_config(cfg, cpath)?),
        "GptOssForCausalLM" => Box::new(gpt_oss::GptOss),
        "Gemma2ForCausalLM" => Box::new(gemma2::Gemma2),
        "Phi3ForCausalLM" => Box::new(phi3::Phi3),
        "BertModel" | "BertForMaskedLM" | "BertForSequenceClassification" => Box::new(bert::Bert::new(cfg)),
        other => return Err(Error::UnknownArchitecture { arch: other.to_string(), supported: SUPPORTED.join(", ") }),
    })
}

pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

pub fn read_config(dir: &Path) -> Result<Json> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::format(&path, format!("invalid JSON: {e}")))
}

/// llama.cpp name of an HF tensor, or None for tensors it drops.
fn map_name(name: &str) -> std::result::Result<Option<String>, ()> {
    match name {
        "model.embed_tokens.weight" => return Ok(Some("token_embd.weight".into())),
        "model.norm.weight" => return Ok(Some("output_norm.weight".into())),
        "lm_head.weight" => return Ok(Some("output.weight".into())),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.").ok_or(())?;
    let (bid, rest) = rest.split_once('.').ok_or(())?;
    let bid: u32 = bid.parse().map_err(|_| ())?;
    let (stem, kind) = rest.rsplit_once('.').ok_or(())?;
    let suffix = match stem {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "mlp.gate" => "ffn_gate_inp",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.rotary_emb" if kind == "inv_freq" => return Ok(None),
        _ => return Err(()),
    };
    if kind != "weight" && kind != "bias" {
        return Err(());
    }
    Ok(Some(format!("blk.{bid}.{suffix}.{kind}")))
}

/// llama.cpp's config keys of the expert count and of the experts used per token.
const EXPERT_COUNT: &[&str] = &["num_local_experts", "num_experts", "n_routed_experts"];
const EXPERT_USED: &[&str] = &["num_experts_per_tok", "num_experts_per_token", "top_k_experts"];

fn get_u32(cfg: &Json, keys: &[&str], path: &Path) -> Result<u32> {
    for k in keys {
        if let Some(v) = cfg.get(*k).filter(|v| !v.is_null()) {
            return v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| Error::format(path, format!("'{k}' must be a non-negative integer, got {v}")));
        }
    }
    Err(Error::format(path, format!("missing required key '{}'", keys[0])))
}

/// The conversion plan of the checkpoint in `dir`, and the family that made it (its
/// `adapt_vocab` comes next).
pub fn load_hf(dir: &Path) -> Result<(Plan, Box<dyn Family>)> {
    let cpath = dir.join("config.json");
    let cfg = read_config(dir)?;
    let class = cfg
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Json::as_str)
        .ok_or_else(|| Error::format(&cpath, "missing 'architectures'"))?;
    let mut fam = family(class, &cfg, &cpath)?;
    let arch = fam.arch();

    let n_embd = get_u32(&cfg, &["hidden_size", "n_embd"], &cpath)?;
    let n_layer = get_u32(&cfg, &["num_hidden_layers", "n_layer"], &cpath)?;
    let n_ff = get_u32(&cfg, &["intermediate_size", "n_inner"], &cpath)?;
    let n_head = get_u32(&cfg, &["num_attention_heads", "n_head"], &cpath)?;
    let n_head_kv = get_u32(&cfg, &["num_key_value_heads"], &cpath).unwrap_or(n_head);
    let n_ctx = get_u32(&cfg, &["max_position_embeddings", "n_ctx", "n_positions"], &cpath)?;
    let n_vocab = get_u32(&cfg, &["vocab_size"], &cpath)?;
    let eps = |keys: &[&str]| keys.iter().find_map(|k| cfg.get(*k).and_then(Json::as_f64)).map(|x| x as f32);
    let rms_eps = eps(&["rms_norm_eps", "norm_eps"]);
    let layer_norm_eps = eps(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"]);
    // Our RMSNorm families cannot run without their epsilon (llama.cpp's loader requires it).
    if rms_eps.is_none() && !fam.layer_norm() {
        return Err(Error::format(&cpath, "missing required key 'rms_norm_eps'"));
    }
    // llama.cpp writes head_count_kv when its AutoConfig has it: every decoder config class fills
    // it in (default n_head); BertConfig has none.
    let head_count_kv_stated = !fam.layer_norm()
        || ["num_key_value_heads", "n_kv_heads"].iter().any(|k| cfg.get(*k).is_some_and(|v| !v.is_null()));
    if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_embd % n_head != 0 {
        return Err(Error::format(
            &cpath,
            format!(
                "num_attention_heads {n_head}, num_key_value_heads {n_head_kv}, hidden_size {n_embd} are inconsistent"
            ),
        ));
    }
    // llama.cpp's base converter writes these for every model whose config states them.
    let opt_u32 = |keys: &[&str]| keys.iter().any(|k| cfg.get(*k).is_some_and(|v| !v.is_null()));
    let n_expert = if opt_u32(EXPERT_COUNT) { Some(get_u32(&cfg, EXPERT_COUNT, &cpath)?) } else { None };
    let n_expert_used = if opt_u32(EXPERT_USED) { Some(get_u32(&cfg, EXPERT_USED, &cpath)?) } else { None };
    let head_dim = cfg.get("head_dim").and_then(Json::as_u64).map(|x| x as u32);
    // llama.cpp writes rope.freq_base from a top-level `rope_theta`. transformers ≥ 5 moved it
    // into `rope_parameters`; we take it from there only when it differs from the default 10000
    // (so files for default-theta models stay identical to llama.cpp's, and others stay correct).
    let rope = rope_parameters(&cfg);
    let rope_theta = cfg
        .get("rope_theta")
        .and_then(Json::as_f64)
        .or_else(|| rope.get("rope_theta").and_then(Json::as_f64).filter(|&t| t != 10000.0));
    let rope_scaling = if fam.own_rope_scaling() { None } else { rope_scaling(&rope, &cpath)? };

    // Tensor files: an index naming shards, or one model.safetensors.
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<std::path::PathBuf> = if index.is_file() {
        let text = std::fs::read(&index).map_err(|e| Error::io(&index, e))?;
        let j: Json = serde_json::from_slice(&text).map_err(|e| Error::format(&index, format!("invalid JSON: {e}")))?;
        let map = j
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| Error::format(&index, "missing 'weight_map'"))?;
        let mut set = BTreeSet::new();
        for v in map.values() {
            let f = v.as_str().ok_or_else(|| Error::format(&index, "weight_map value is not a file name"))?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::format(&index, format!("shard name '{f}' is not a plain file name")));
            }
            set.insert(dir.join(f));
        }
        set.into_iter().collect()
    } else if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else {
        return Err(Error::format(dir, "no model.safetensors or model.safetensors.index.json"));
    };

    let mut tensors = Vec::new();
    let mut n_params = 0u64;
    for f in &files {
        for t in load_safetensors(f)? {
            // The family's own mapping first (merged, split or renamed tensors), then the shared one.
            let t = match fam.take(t) {
                Ok(done) => {
                    for o in done? {
                        n_params += o.src.n_elements();
                        tensors.push(o);
                    }
                    continue;
                }
                Err(t) => t,
            };
            let name = match fam.map_name(&t.name).unwrap_or_else(|| map_name(&t.name)) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(()) => return Err(Error::format(f, format!("cannot map tensor '{}' to a llama.cpp name", t.name))),
            };
            let unpermute_heads = if !fam.unpermute_qk() {
                None
            } else if name.contains(".attn_q.") {
                Some(n_head)
            } else if name.contains(".attn_k.") {
                Some(n_head_kv)
            } else {
                None
            };
            n_params += t.n_elements();
            tensors.push(OutTensor { name, src: t, unpermute_heads, transform: None });
        }
    }
    let hparams = Hparams {
        arch,
        n_ctx,
        n_embd,
        n_layer,
        n_ff,
        n_head,
        n_head_kv,
        head_count_kv_stated,
        rms_eps,
        layer_norm_eps,
        rope_theta: rope_theta.map(|x| x as f32),
        head_dim,
        n_rot: head_dim.unwrap_or(n_embd / n_head),
        n_vocab,
        rope_scaling,
        n_expert,
        n_expert_used,
        rope_sections: None,
        extra: Vec::new(),
        key_order: Vec::new(),
    };
    let mut plan = Plan { hparams, tensors, n_params };
    fam.finish(&cfg, &cpath, &mut plan)?;
    Ok((plan, fam))
}

/// llama.cpp's `TextModel.rope_parameters`: `rope_parameters` (transformers ≥ 5) or
/// `rope_scaling`, the `full_attention` entry when it has per-layer-type ones, with the top-level
/// `rope_theta`, `type` and `original_max_position_embeddings` mirrored in when it does not state
/// them.
pub(crate) fn rope_parameters(cfg: &Json) -> serde_json::Map<String, Json> {
    let src = cfg.get("rope_parameters").or_else(|| cfg.get("rope_scaling"));
    let mut p = src.and_then(Json::as_object).cloned().unwrap_or_default();
    if !p.contains_key("full_attention") && !p.contains_key("sliding_attention") {
        for (key, from) in [
            ("rope_theta", cfg.get("rope_theta")),
            ("rope_type", p.get("type").cloned().as_ref()),
            ("original_max_position_embeddings", cfg.get("original_max_position_embeddings")),
        ] {
            if let Some(v) = from.filter(|v| !v.is_null()).cloned() {
                p.entry(key).or_insert(v);
            }
        }
    }
    match p.get("full_attention").and_then(Json::as_object) {
        Some(full) => full.clone(),
        None => p,
    }
}

/// The `rope.scaling.*` metadata llama.cpp's `TextModel.set_gguf_parameters` writes: linear and
/// YaRN (with a factor) as keys; `llama3` is the llama family's `rope_freqs.weight` tensor
/// (`hf/llama.rs`), `default` is no scaling. Other types (longrope, dynamic …) would need their
/// own handling: a typed error rather than a model that silently runs unscaled.
fn rope_scaling(rope: &serde_json::Map<String, Json>, cpath: &Path) -> Result<Option<RopeScaling>> {
    let Some(ty) = rope.get("rope_type").filter(|v| !v.is_null()) else { return Ok(None) };
    let ty = ty.as_str().ok_or_else(|| Error::format(cpath, format!("rope type {ty} is not a string")))?;
    let f32_of = |k: &str| -> Result<Option<f32>> {
        match rope.get(k).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| Error::format(cpath, format!("rope parameter '{k}' must be a number, got {v}"))),
        }
    };
    let factor = f32_of("factor")?;
    Ok(match (ty, factor) {
        ("linear", Some(factor)) => Some(RopeScaling::Linear { factor }),
        ("yarn", Some(factor)) => {
            let orig = rope.get("original_max_position_embeddings").and_then(Json::as_u64);
            let original_context_length = orig.and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
                Error::format(cpath, "yarn rope scaling needs an integer 'original_max_position_embeddings'")
            })?;
            let attn_factor = match f32_of("attention_factor")? {
                Some(a) => Some(a),
                None => f32_of("attn_factor")?,
            };
            Some(RopeScaling::Yarn {
                factor,
                original_context_length,
                ext_factor: f32_of("extrapolation_factor")?,
                attn_factor,
                beta_fast: f32_of("beta_fast")?,
                beta_slow: f32_of("beta_slow")?,
            })
        }
        ("linear" | "yarn" | "default", _) => None,
        (t, _) if t.eq_ignore_ascii_case("llama3") => None,
        (other, _) => {
            return Err(Error::format(
                cpath,
                format!("rope scaling type '{other}' is not supported (supported: default, linear, yarn, llama3)"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scaling(cfg: Json) -> Result<Option<RopeScaling>> {
        rope_scaling(&rope_parameters(&cfg), Path::new("config.json"))
    }

    /// What llama.cpp's `TextModel.set_gguf_parameters` writes for each form of the config.
    #[test]
    fn rope_scaling_as_llamacpp_writes_it() {
        // transformers ≥ 5 (`rope_parameters`) and older (`rope_scaling` with `type`).
        let linear = Some(RopeScaling::Linear { factor: 2.0 });
        assert_eq!(scaling(json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0}})).unwrap(), linear);
        assert_eq!(scaling(json!({"rope_scaling": {"type": "linear", "factor": 2.0}})).unwrap(), linear);
        // YaRN: the original context is required (top level is mirrored in); the optional keys
        // only when stated (attention_factor, else attn_factor).
        let yarn = json!({"original_max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 16, "attn_factor": 0.5}});
        assert_eq!(
            scaling(yarn).unwrap(),
            Some(RopeScaling::Yarn {
                factor: 4.0,
                original_context_length: 4096,
                ext_factor: None,
                attn_factor: Some(0.5),
                beta_fast: Some(16.0),
                beta_slow: None,
            })
        );
        let e = scaling(json!({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}})).unwrap_err();
        assert!(e.to_string().contains("original_max_position_embeddings"), "{e}");
        // Per-layer-type parameters: the full-attention ones.
        let nested = json!({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0},
                                                "sliding_attention": {"rope_type": "default"}}});
        assert_eq!(scaling(nested).unwrap(), Some(RopeScaling::Linear { factor: 8.0 }));
        // No metadata: default, no factor, llama3 (a tensor instead).
        for cfg in [
            json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}),
            json!({"rope_parameters": {"rope_type": "linear"}}),
            json!({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}),
            json!({}),
        ] {
            assert_eq!(scaling(cfg).unwrap(), None);
        }
        let e = scaling(json!({"rope_scaling": {"type": "longrope", "factor": 4.0}})).unwrap_err();
        assert!(e.to_string().contains("'longrope' is not supported"), "{e}");
    }
}
