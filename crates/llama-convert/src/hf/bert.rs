//! `BertModel` / `BertForMaskedLM` / `BertForSequenceClassification` (llama.cpp's `BertModel`,
//! architecture `bert`): the encoder's tensors under llama.cpp's names (the `bert.` prefix,
//! `.gamma`/`.beta`, position ids, the pooler and the masked-LM / next-sentence heads dropped, as
//! its `filter_tensors` does), LayerNorm epsilon, non-causal attention, the sentence-transformers
//! pooling type (`_try_set_pooling_type`) and, for a classifier (cross-encoder / reranker), its
//! head as `cls.output` with the `classifier.output_labels`. The WordPiece vocabulary is
//! `vocab::load_wordpiece`.

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::Plan;

pub(super) struct Bert {
    /// `id2label` values in id order, unless they are transformers' two dummy labels.
    labels: Option<Vec<String>>,
}

impl Bert {
    pub(super) fn new(cfg: &Json) -> Bert {
        let labels = cfg.get("id2label").and_then(Json::as_object).and_then(|m| {
            if m.len() == 2 && m.get("0").and_then(Json::as_str) == Some("LABEL_0") {
                return None; // AutoConfig's default labels
            }
            let mut l: Vec<(i64, String)> = m
                .iter()
                .map(|(k, v)| (k.parse().unwrap_or(i64::MAX), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
            l.sort();
            Some(l.into_iter().map(|x| x.1).collect::<Vec<_>>()).filter(|l| !l.is_empty())
        });
        Bert { labels }
    }
}

/// gguf-py's `PoolingType`.
const POOLING_MEAN: u32 = 1;
const POOLING_CLS: u32 = 2;
const POOLING_LAST: u32 = 3;

impl Family for Bert {
    fn arch(&self) -> &'static str {
        "bert"
    }

    fn layer_norm(&self) -> bool {
        true
    }

    fn map_name(&self, name: &str) -> Option<std::result::Result<Option<String>, ()>> {
        // The classifier: a direct projection `cls.output` with labels, else llama.cpp's `cls`.
        if let Some(kind) = name.strip_prefix("classifier.") {
            if kind != "weight" && kind != "bias" {
                return Some(Err(()));
            }
            let head = if self.labels.is_some() { "cls.output" } else { "cls" };
            return Some(Ok(Some(format!("{head}.{kind}"))));
        }
        Some(bert_name(name))
    }

    fn finish(&self, _cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        for what in ["token_embd.weight", "position_embd.weight", "token_embd_norm.weight"] {
            if !plan.tensors.iter().any(|t| t.name == what) {
                return Err(Error::format(cpath, format!("BERT checkpoint without '{what}'")));
            }
        }
        let h = &mut plan.hparams;
        h.extra.push(("attention.causal".into(), Value::Bool(false)));
        let dir = cpath.parent().unwrap_or(Path::new("."));
        if let Some(p) = pooling_type(dir)? {
            h.extra.push(("pooling_type".into(), Value::U32(p)));
        }
        if let Some(l) = &self.labels {
            h.extra.push(("classifier.output_labels".into(), Value::str_array(l)));
        }
        Ok(())
    }
}

/// llama.cpp's name of a BERT checkpoint tensor (`Ok(None)`: dropped).
fn bert_name(name: &str) -> std::result::Result<Option<String>, ()> {
    let mut n = name.strip_prefix("bert.").unwrap_or(name).to_string();
    if let Some(s) = n.strip_suffix(".gamma") {
        n = format!("{s}.weight");
    }
    if let Some(s) = n.strip_suffix(".beta") {
        n = format!("{s}.bias");
    }
    if matches!(n.as_str(), "embeddings.position_ids" | "pooler.dense.weight" | "pooler.dense.bias")
        || n.starts_with("cls.predictions")
        || n.starts_with("cls.seq_relationship")
    {
        return Ok(None);
    }
    let (stem, kind) = n.rsplit_once('.').ok_or(())?;
    if kind != "weight" && kind != "bias" {
        return Err(());
    }
    let global = match stem {
        "embeddings.word_embeddings" => Some("token_embd"),
        "embeddings.position_embeddings" => Some("position_embd"),
        "embeddings.token_type_embeddings" => Some("token_types"),
        "embeddings.LayerNorm" => Some("token_embd_norm"),
        _ => None,
    };
    if let Some(g) = global {
        return Ok(Some(format!("{g}.{kind}")));
    }
    let rest = stem.strip_prefix("encoder.layer.").ok_or(())?;
    let (bid, rest) = rest.split_once('.').ok_or(())?;
    let bid: u32 = bid.parse().map_err(|_| ())?;
    let suffix = match rest {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return Err(()),
    };
    Ok(Some(format!("blk.{bid}.{suffix}.{kind}")))
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// llama.cpp `_try_set_pooling_type`: the first sentence-transformers module of `modules.json`
/// whose type ends in "Pooling" names a folder whose `config.json` says the mode (mean, then cls,
/// then last token); no such module, no key.
fn pooling_type(dir: &Path) -> Result<Option<u32>> {
    let modules = dir.join("modules.json");
    if !modules.is_file() {
        return Ok(None);
    }
    let m = read_json(&modules)?;
    let Some(path) = m
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x.get("type").and_then(Json::as_str).is_some_and(|t| t.ends_with("Pooling")))
        .map(|x| x.get("path").and_then(Json::as_str).unwrap_or(""))
    else {
        return Ok(None);
    };
    if path.contains("..") || path.starts_with('/') {
        return Err(Error::format(&modules, format!("pooling module path '{path}' leaves the model folder")));
    }
    let cpath = dir.join(path).join("config.json");
    let p = read_json(&cpath)?;
    let on = |k: &str| p.get(k).and_then(Json::as_bool).unwrap_or(false);
    Ok(Some(if on("pooling_mode_mean_tokens") {
        POOLING_MEAN
    } else if on("pooling_mode_cls_token") {
        POOLING_CLS
    } else if on("pooling_mode_lasttoken") {
        POOLING_LAST
    } else {
        match p.get("pooling_mode").and_then(Json::as_str) {
            Some("mean") => POOLING_MEAN,
            Some("cls") => POOLING_CLS,
            Some("lasttoken") => POOLING_LAST,
            _ => return Err(Error::format(&cpath, "only mean, cls and last-token pooling are supported")),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_llamacpp() {
        let n = |s: &str| bert_name(s).unwrap();
        assert_eq!(n("bert.embeddings.LayerNorm.gamma").as_deref(), Some("token_embd_norm.weight"));
        assert_eq!(n("encoder.layer.3.attention.self.query.bias").as_deref(), Some("blk.3.attn_q.bias"));
        assert_eq!(n("encoder.layer.0.output.LayerNorm.weight").as_deref(), Some("blk.0.layer_output_norm.weight"));
        assert_eq!(n("pooler.dense.weight"), None);
        assert_eq!(n("cls.predictions.bias"), None);
        assert!(bert_name("encoder.layer.0.crossattention.x.weight").is_err());
    }
}
