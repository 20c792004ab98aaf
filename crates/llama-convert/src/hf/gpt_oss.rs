//! GptOssForCausalLM (llama.cpp's `GptOssModel`, conversion/gpt_oss.py): the experts are stored
//! fused and transposed (`mlp.experts.gate_up_proj` [n_expert][n_embd][2·n_ff] with gate and up
//! interleaved column by column, `mlp.experts.down_proj` [n_expert][n_ff][n_embd]) and become
//! `ffn_{gate,up,down}_exps` ([n_expert][rows][cols], llama.cpp's `transpose(-1, -2)` then
//! `[:, ::2, :]` / `[:, 1::2, :]`), their biases split the same way; the router is
//! `mlp.router`, the attention sinks `self_attn.sinks`, and the norm before the FFN keeps its
//! place as `post_attention_norm`. Metadata: `sliding_window` and the experts' width
//! (`expert_feed_forward_length` = `intermediate_size`).
//!
//! Not read: experts already in MXFP4 (`*_blocks`/`*_scales`, as OpenAI's own checkpoints ship
//! them), which llama.cpp repacks into GGML_TYPE_MXFP4; such a checkpoint is reported as
//! unsupported (its tensors are uint8, which the safetensors reader refuses).

use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::{OutTensor, Plan};
use crate::tensor::{Data, SrcTensor};

/// `{arch}.attention.sliding_window` and `{arch}.expert_feed_forward_length`, in llama.cpp's order.
fn extra(cfg: &Json) -> Vec<(String, Value)> {
    let u32_of = |k: &str| cfg.get(k).and_then(Json::as_u64).and_then(|x| u32::try_from(x).ok());
    let mut v = Vec::new();
    if let Some(w) = u32_of("sliding_window") {
        v.push(("attention.sliding_window".to_string(), Value::U32(w)));
    }
    if let Some(n) = u32_of("intermediate_size") {
        v.push(("expert_feed_forward_length".to_string(), Value::U32(n)));
    }
    v
}

/// The HF tensors whose mapping is gpt-oss's own (`take` maps them).
fn owns(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("model.layers.").and_then(|r| r.split_once('.')).map(|(_, r)| r) else {
        return false;
    };
    rest.starts_with("mlp.experts.")
        || matches!(
            rest,
            "mlp.router.weight" | "mlp.router.bias" | "post_attention_layernorm.weight" | "self_attn.sinks"
        )
}

/// The output tensors of one of gpt-oss's own HF tensors (`owns`), in llama.cpp's order.
fn take(t: SrcTensor) -> Result<Vec<OutTensor>> {
    let bad = |t: &SrcTensor| Error::format(&t.file, format!("tensor '{}' is not one llama.cpp maps", t.name));
    let Some((bid, rest)) = t
        .name
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(b, r)| Some((b.parse::<u32>().ok()?, r.to_string())))
    else {
        return Err(bad(&t));
    };
    let out = |suffix: &str, src: SrcTensor| OutTensor {
        name: format!("blk.{bid}.{suffix}"),
        src,
        unpermute_heads: None,
        transform: None,
    };
    Ok(match rest.as_str() {
        "mlp.experts.down_proj" => vec![out("ffn_down_exps.weight", transpose_last(t)?)],
        "mlp.experts.down_proj_bias" => vec![out("ffn_down_exps.bias", t)],
        "mlp.experts.gate_up_proj" => {
            let gu = transpose_last(t)?;
            let (g, u) = (every_other(&gu, 1, 0)?, every_other(&gu, 1, 1)?);
            vec![out("ffn_gate_exps.weight", g), out("ffn_up_exps.weight", u)]
        }
        "mlp.experts.gate_up_proj_bias" => {
            let last = t.shape.len().saturating_sub(1);
            let (g, u) = (every_other(&t, last, 0)?, every_other(&t, last, 1)?);
            vec![out("ffn_gate_exps.bias", g), out("ffn_up_exps.bias", u)]
        }
        "mlp.router.weight" => vec![out("ffn_gate_inp.weight", t)],
        "mlp.router.bias" => vec![out("ffn_gate_inp.bias", t)],
        "post_attention_layernorm.weight" => vec![out("post_attention_norm.weight", t)],
        "self_attn.sinks" => vec![out("attn_sinks.weight", t)],
        r if r.starts_with("mlp.experts.") && (r.ends_with("_blocks") || r.ends_with("_scales")) => {
            return Err(Error::format(
                &t.file,
                format!("tensor '{}': experts in MXFP4 (_blocks/_scales) are not supported yet", t.name),
            ));
        }
        _ => return Err(bad(&t)),
    })
}

/// The strided view of `t` with its own `shape`, `offset` and `stride`, bounds checked.
fn view(t: &SrcTensor, name: &str, shape: Vec<u64>, offset: u64, stride: Vec<u64>) -> Result<SrcTensor> {
    let bad = |m: String| Error::format(&t.file, format!("tensor '{}': {m}", t.name));
    let Data::View { mmap, base, .. } = &t.data else {
        return Err(bad("must be stored in one file".into()));
    };
    let avail = ((mmap.len() - base) / t.dtype.size()) as u64;
    SrcTensor::check_view_bounds(&shape, offset, &stride, avail).map_err(bad)?;
    let data = Data::View { mmap: mmap.clone(), base: *base, offset, stride };
    Ok(SrcTensor { name: name.to_string(), file: t.file.clone(), dtype: t.dtype, shape, data })
}

/// `t.transpose(-1, -2)` of a 3-D tensor.
fn transpose_last(t: SrcTensor) -> Result<SrcTensor> {
    let Data::View { offset, stride, .. } = &t.data else {
        return Err(Error::format(&t.file, format!("tensor '{}' must be stored in one file", t.name)));
    };
    if t.shape.len() != 3 {
        return Err(Error::format(&t.file, format!("tensor '{}': expected 3 dims, got {:?}", t.name, t.shape)));
    }
    let (shape, stride) = (vec![t.shape[0], t.shape[2], t.shape[1]], vec![stride[0], stride[2], stride[1]]);
    view(&t, &t.name, shape, *offset, stride)
}

/// Every other index of dimension `dim` from `first` (`[..., first::2, ...]`).
fn every_other(t: &SrcTensor, dim: usize, first: u64) -> Result<SrcTensor> {
    let Data::View { offset, stride, .. } = &t.data else {
        return Err(Error::format(&t.file, format!("tensor '{}' must be stored in one file", t.name)));
    };
    if dim >= t.shape.len() || !t.shape[dim].is_multiple_of(2) {
        return Err(Error::format(&t.file, format!("tensor '{}': cannot split {:?} on dim {dim}", t.name, t.shape)));
    }
    let (mut shape, mut st) = (t.shape.clone(), stride.clone());
    shape[dim] /= 2;
    st[dim] *= 2;
    view(t, &t.name, shape, offset + first * stride[dim], st)
}

pub(super) struct GptOss;

impl Family for GptOss {
    fn arch(&self) -> &'static str {
        "gpt-oss"
    }

    fn take(&mut self, t: SrcTensor) -> std::result::Result<Result<Vec<OutTensor>>, SrcTensor> {
        if owns(&t.name) {
            Ok(take(t))
        } else {
            Err(t)
        }
    }

    fn finish(&self, cfg: &Json, _cpath: &Path, plan: &mut Plan) -> Result<()> {
        plan.hparams.extra = extra(cfg);
        Ok(())
    }
}
