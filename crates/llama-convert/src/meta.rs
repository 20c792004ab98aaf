//! Meta's original checkpoints: `params.json` + `consolidated.NN.pth` model-parallel shards.
//! Meta's q/k rows are already in the interleaved rotary layout llama.cpp uses: no permutation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use crate::plan::{Hparams, OutTensor, Plan};
use crate::pth::load_pth;
use crate::tensor::{Data, SrcTensor};

pub fn is_meta_dir(dir: &Path) -> bool {
    dir.join("params.json").is_file() && !shard_paths(dir).unwrap_or_default().is_empty()
}

fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("consolidated.") && n.ends_with(".pth"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// llama.cpp name and the dimension Meta split the tensor on across model-parallel ranks
/// (None: replicated).
fn map_name(name: &str) -> Option<(String, Option<usize>)> {
    let fixed = match name {
        "tok_embeddings.weight" => Some(("token_embd.weight".to_string(), Some(1))),
        "norm.weight" => Some(("output_norm.weight".to_string(), None)),
        "output.weight" => Some(("output.weight".to_string(), Some(0))),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let rest = name.strip_prefix("layers.")?;
    let (bid, rest) = rest.split_once('.')?;
    let bid: u32 = bid.parse().ok()?;
    let (suffix, dim) = match rest {
        "attention.wq.weight" => ("attn_q", Some(0)),
        "attention.wk.weight" => ("attn_k", Some(0)),
        "attention.wv.weight" => ("attn_v", Some(0)),
        "attention.wo.weight" => ("attn_output", Some(1)),
        "feed_forward.w1.weight" => ("ffn_gate", Some(0)),
        "feed_forward.w2.weight" => ("ffn_down", Some(1)),
        "feed_forward.w3.weight" => ("ffn_up", Some(0)),
        "attention_norm.weight" => ("attn_norm", None),
        "ffn_norm.weight" => ("ffn_norm", None),
        _ => return None,
    };
    Some((format!("blk.{bid}.{suffix}.weight"), dim))
}

fn merge(name: &str, parts: Vec<SrcTensor>, dim: Option<usize>) -> Result<SrcTensor> {
    let first = &parts[0];
    let bad = |m: String| Error::format(&first.file, format!("tensor '{name}': {m}"));
    for p in &parts[1..] {
        if p.dtype != first.dtype || p.shape.len() != first.shape.len() {
            return Err(bad(format!(
                "shards disagree on dtype/rank ({} {:?} vs {} {:?})",
                first.dtype.name(),
                first.shape,
                p.dtype.name(),
                p.shape
            )));
        }
    }
    let Some(dim) = dim else {
        // Replicated (norms): every shard holds the full tensor.
        if parts.iter().any(|p| p.shape != first.shape) {
            return Err(bad("replicated tensor has different shapes in different shards".into()));
        }
        return Ok(parts.into_iter().next().unwrap());
    };
    if dim >= first.shape.len() {
        return Err(bad(format!("rank {} tensor cannot be split on dim {dim}", first.shape.len())));
    }
    let mut shape = first.shape.clone();
    shape[dim] = 0;
    for p in &parts {
        for k in 0..shape.len() {
            if k != dim && p.shape[k] != first.shape[k] {
                return Err(bad(format!("shard shapes {:?} and {:?} differ outside dim {dim}", first.shape, p.shape)));
            }
        }
        shape[dim] += p.shape[dim];
    }
    Ok(SrcTensor {
        name: name.to_string(),
        file: first.file.clone(),
        dtype: first.dtype,
        shape,
        data: Data::Concat { parts, dim },
    })
}

fn req<'a>(params: &'a Json, key: &str, path: &Path) -> Result<&'a Json> {
    params.get(key).filter(|v| !v.is_null()).ok_or_else(|| Error::format(path, format!("missing required key '{key}'")))
}

fn as_u32(v: &Json, key: &str, path: &Path) -> Result<u32> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .filter(|&x| x > 0)
        .ok_or_else(|| Error::format(path, format!("'{key}' must be a positive integer, got {v}")))
}

pub fn load_meta(dir: &Path) -> Result<Plan> {
    let ppath = dir.join("params.json");
    let text = std::fs::read(&ppath).map_err(|e| Error::io(&ppath, e))?;
    let params: Json =
        serde_json::from_slice(&text).map_err(|e| Error::format(&ppath, format!("invalid JSON: {e}")))?;
    let n_embd = as_u32(req(&params, "dim", &ppath)?, "dim", &ppath)?;
    let n_layer = as_u32(req(&params, "n_layers", &ppath)?, "n_layers", &ppath)?;
    let n_head = as_u32(req(&params, "n_heads", &ppath)?, "n_heads", &ppath)?;
    let norm_eps = req(&params, "norm_eps", &ppath)?
        .as_f64()
        .ok_or_else(|| Error::format(&ppath, "'norm_eps' must be a number"))?;
    let n_head_kv = match params.get("n_kv_heads").filter(|v| !v.is_null()) {
        Some(v) => as_u32(v, "n_kv_heads", &ppath)?,
        None => n_head,
    };
    let rope_theta = params.get("rope_theta").and_then(Json::as_f64);
    if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
        return Err(Error::format(
            &ppath,
            format!("dim {n_embd}, n_heads {n_head}, n_kv_heads {n_head_kv} are inconsistent"),
        ));
    }

    let shards = shard_paths(dir)?;
    let loaded: Vec<Vec<SrcTensor>> = shards.iter().map(|p| load_pth(p)).collect::<Result<_>>()?;
    let mut by_name: Vec<HashMap<String, SrcTensor>> =
        loaded.iter().map(|v| v.iter().map(|t| (t.name.clone(), t.clone())).collect()).collect();

    let mut tensors = Vec::new();
    let mut n_params = 0u64;
    for t in &loaded[0] {
        if t.name == "rope.freqs" {
            continue; // recomputed at run time
        }
        let (gguf_name, dim) = map_name(&t.name).ok_or_else(|| {
            Error::format(&shards[0], format!("unexpected tensor '{}' in a LLaMA checkpoint", t.name))
        })?;
        let mut parts = Vec::with_capacity(by_name.len());
        for (i, m) in by_name.iter_mut().enumerate() {
            parts
                .push(m.remove(&t.name).ok_or_else(|| {
                    Error::format(&shards[i], format!("tensor '{}' missing from this shard", t.name))
                })?);
        }
        let src = merge(&t.name, parts, dim)?;
        n_params += src.n_elements();
        tensors.push(OutTensor { name: gguf_name, src, unpermute_heads: None, transform: None });
    }

    let shape_of = |n: &str| tensors.iter().find(|t| t.name == n).map(|t| t.src.shape.clone());
    let emb =
        shape_of("token_embd.weight").ok_or_else(|| Error::format(&shards[0], "no tok_embeddings.weight tensor"))?;
    let n_vocab = emb[0] as u32;
    if emb.len() != 2 || emb[1] != n_embd as u64 {
        return Err(Error::format(&shards[0], format!("tok_embeddings shape {emb:?} does not match dim {n_embd}")));
    }
    if let Some(v) = params.get("vocab_size").and_then(Json::as_i64).filter(|&v| v > 0) {
        if v != n_vocab as i64 {
            return Err(Error::format(&ppath, format!("vocab_size {v} but tok_embeddings has {n_vocab} rows")));
        }
    }
    let n_ff = shape_of("blk.0.ffn_gate.weight")
        .ok_or_else(|| Error::format(&shards[0], "no layers.0.feed_forward.w1.weight tensor"))?[0]
        as u32;
    let head_dim = n_embd / n_head;
    if let Some(k) = shape_of("blk.0.attn_k.weight") {
        if k[0] != (n_head_kv * head_dim) as u64 {
            return Err(Error::format(
                &ppath,
                format!("wk has {} rows, expected n_kv_heads·head_dim = {}", k[0], n_head_kv * head_dim),
            ));
        }
    }
    // Context length: Meta's params.json does not state it; llama.cpp's legacy converter guesses
    // from the release (LLaMA-1 2048, Llama-2 4096, CodeLlama 16384).
    let n_ctx = match params.get("max_seq_len").and_then(Json::as_u64) {
        Some(n) => n as u32,
        None if rope_theta == Some(1e6) => 16384,
        None if (norm_eps - 1e-5).abs() < 1e-12 => 4096,
        None => 2048,
    };
    let hparams = Hparams {
        arch: "llama",
        n_ctx,
        n_embd,
        n_layer,
        n_ff,
        n_head,
        n_head_kv,
        head_count_kv_stated: true,
        rms_eps: Some(norm_eps as f32),
        layer_norm_eps: None,
        rope_theta: rope_theta.map(|x| x as f32),
        head_dim: None,
        n_rot: head_dim,
        n_vocab,
        rope_scaling: None,
        n_expert: None,
        n_expert_used: None,
        rope_sections: None,
        // llama.cpp's LlamaModel writes these two after the shared keys
        extra: vec![("vocab_size".into(), Value::U32(n_vocab)), ("rope.dimension_count".into(), Value::U32(head_dim))],
        key_order: Vec::new(),
    };
    Ok(Plan { hparams, tensors, n_params })
}
