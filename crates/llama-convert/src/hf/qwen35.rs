//! `Qwen3_5ForCausalLM` → `qwen35`, as llama.cpp's `Qwen3_5TextModel` writes it
//! (conversion/qwen.py: `_Qwen35MRopeMixin` over `_LinearAttentionVReorderBase` over
//! `Qwen3NextModel`), without the multi-token-prediction head (its `--no-mtp`; transformers'
//! `Qwen3_5ForCausalLM` has none).
//!
//! What differs from the shared mapping:
//! - the gated DeltaNet layers' tensors (`linear_attn.*` → `ssm_*`, `attn_qkv`, `attn_gate`);
//! - `post_attention_layernorm` is `post_attention_norm` (the family has no `ffn_norm`);
//! - every `*norm.weight` but the DeltaNet's own `linear_attn.norm` is stored as `1 + w`
//!   (Qwen3-Next's RMSNorm multiplies by `1 + w`);
//! - `A_log` is stored as `ssm_a = -exp(A_log)`, `conv1d.weight` [C, 1, K] squeezed to [C, K];
//! - with fewer K heads than V heads, the V heads are reordered from grouped by K head
//!   (`[k0: v0 v1 …][k1: v0 v1 …]`) to tiled (`[v0: k0 k1 …][v1: k0 k1 …]`), so that V head h uses
//!   K head `h mod n_k_heads` (`_reorder_v_heads`): the V rows of `in_proj_qkv`, the rows of
//!   `in_proj_z`, `in_proj_a`, `in_proj_b`, the entries of `A_log` and `dt_bias`, the V channels of
//!   `conv1d`, the columns of `out_proj`;
//! - metadata: `ssm.*` sizes, `attention.recurrent_layers`, `full_attention_interval`,
//!   `rope.dimension_count` (partial rotary) and the M-RoPE `rope.dimension_sections`.

use std::path::Path;
use std::sync::Arc;

use llama_core::gguf::{Value, ValueType};
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::{get_u32, map_name, Family};
use crate::plan::{Hparams, OutTensor, Plan, Transform};
use crate::tensor::SrcTensor;

/// llama.cpp's default M-RoPE sections for Qwen3.5, written when the config has none.
const DEFAULT_MROPE_SECTIONS: [i32; 4] = [11, 11, 10, 0];

/// The config values the mapping needs.
pub(super) struct Qwen35 {
    /// linear_num_key_heads, linear_num_value_heads, linear_key_head_dim, linear_value_head_dim
    n_k_heads: usize,
    n_v_heads: usize,
    head_k: usize,
    head_v: usize,
    conv_kernel: u32,
    /// `layer_types[i] == "linear_attention"`, when the config lists the layer types.
    recurrent: Option<Vec<bool>>,
    full_attention_interval: u32,
    n_rot: u32,
    /// `mrope_section` padded to 4, or None (then the default goes last, as llama.cpp's mixin adds
    /// it after everything else).
    sections: Option<[i32; 4]>,
}

impl Qwen35 {
    pub fn from_config(cfg: &Json, path: &Path) -> Result<Qwen35> {
        let u = |k: &str| get_u32(cfg, &[k], path).map(|v| v as usize);
        let (n_k_heads, n_v_heads) = (u("linear_num_key_heads")?, u("linear_num_value_heads")?);
        if n_k_heads == 0 || n_v_heads % n_k_heads != 0 {
            return Err(Error::format(
                path,
                format!("linear_num_value_heads {n_v_heads} is not a multiple of linear_num_key_heads {n_k_heads}"),
            ));
        }
        let n_layer = u("num_hidden_layers")?;
        let recurrent = match cfg.get("layer_types").filter(|v| !v.is_null()) {
            None => None,
            Some(v) => {
                let types = v.as_array().ok_or_else(|| Error::format(path, "'layer_types' must be a list"))?;
                if types.len() != n_layer {
                    return Err(Error::format(
                        path,
                        format!("layer_types has {} entries, expected num_hidden_layers ({n_layer})", types.len()),
                    ));
                }
                Some(types.iter().map(|t| t.as_str() == Some("linear_attention")).collect())
            }
        };
        let full_attention_interval = get_u32(cfg, &["full_attention_interval"], path).unwrap_or(4);
        // llama.cpp's `rope_parameters`: the config's `rope_parameters` (transformers ≥ 5) or
        // `rope_scaling`, `partial_rotary_factor` from the top level when absent there.
        let rope = cfg.get("rope_parameters").or_else(|| cfg.get("rope_scaling")).filter(|v| v.is_object());
        let partial = rope
            .and_then(|r| r.get("partial_rotary_factor"))
            .or_else(|| cfg.get("partial_rotary_factor"))
            .and_then(Json::as_f64)
            .unwrap_or(0.25);
        let n_head = u("num_attention_heads")?;
        let head_dim = match cfg.get("head_dim").and_then(Json::as_u64) {
            Some(d) => d as usize,
            None => u("hidden_size")? / n_head.max(1),
        };
        let sections = match rope.and_then(|r| r.get("mrope_section")) {
            None => None,
            Some(s) => {
                let v: Vec<i32> = s
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_i64().and_then(|x| i32::try_from(x).ok())).collect())
                    .ok_or_else(|| Error::format(path, "'mrope_section' must be a list of integers"))?;
                let mut out = [0i32; 4];
                for (o, x) in out.iter_mut().zip(v) {
                    *o = x;
                }
                Some(out)
            }
        };
        Ok(Qwen35 {
            n_k_heads,
            n_v_heads,
            head_k: u("linear_key_head_dim")?,
            head_v: u("linear_value_head_dim")?,
            conv_kernel: get_u32(cfg, &["linear_conv_kernel_dim"], path)?,
            recurrent,
            full_attention_interval,
            // Python's int(head_dim * factor)
            n_rot: (head_dim as f64 * partial) as u32,
            sections,
        })
    }

    /// The family's metadata, in llama.cpp's order.
    fn set_hparams(&self, h: &mut Hparams) {
        h.rope_sections = self.sections;
        let u = |x: usize| Value::U32(x as u32);
        let mut extra = vec![
            ("ssm.conv_kernel".to_string(), Value::U32(self.conv_kernel)),
            ("ssm.state_size".into(), u(self.head_k)),
            ("ssm.group_count".into(), u(self.n_k_heads)),
            ("ssm.time_step_rank".into(), u(self.n_v_heads)),
            ("ssm.inner_size".into(), u(self.head_v * self.n_v_heads)),
        ];
        if let Some(r) = &self.recurrent {
            let items = r.iter().map(|&b| Value::Bool(b)).collect();
            extra.push(("attention.recurrent_layers".into(), Value::Array(ValueType::Bool, items)));
        }
        extra.push(("full_attention_interval".into(), Value::U32(self.full_attention_interval)));
        extra.push(("rope.dimension_count".into(), Value::U32(self.n_rot)));
        if self.sections.is_none() {
            extra.push(("rope.dimension_sections".into(), Value::i32_array(DEFAULT_MROPE_SECTIONS)));
        }
        h.extra.extend(extra);
    }

    /// The output tensor of one checkpoint tensor, or None for those llama.cpp drops.
    fn map_tensor(&self, t: SrcTensor) -> Result<Option<OutTensor>> {
        let hf = t.name.clone();
        if hf.starts_with("mtp.") || hf.starts_with("model.mtp.") {
            return Ok(None); // the MTP head (llama.cpp's --no-mtp)
        }
        let file = t.file.clone();
        let unmapped = || Error::format(&file, format!("cannot map tensor '{hf}' to a llama.cpp name"));
        let mut t = t;
        let mut steps: Vec<Transform> = Vec::new();
        let v = VHeads { n_k: self.n_k_heads, per_k: self.n_v_heads / self.n_k_heads };
        let reorder = v.per_k > 1;
        let name = match hf.strip_prefix("model.layers.").and_then(|r| r.split_once('.')) {
            Some((bid, rest)) if rest.starts_with("linear_attn.") => {
                let key_dim = self.head_k * self.n_k_heads;
                if rest == "linear_attn.conv1d.weight" {
                    t = t.squeezed(); // [C, 1, K] → [C, K]
                }
                // (output name, the reordered stretch: head size, first entry, axis)
                let (suffix, heads) = match &rest["linear_attn.".len()..] {
                    "A_log" => ("ssm_a", Some((1, 0, 0))),
                    "dt_bias" => ("ssm_dt.bias", Some((1, 0, 0))),
                    "conv1d.weight" => ("ssm_conv1d.weight", Some((self.head_v, 2 * key_dim, 0))),
                    "in_proj_a.weight" => ("ssm_alpha.weight", Some((1, 0, 0))),
                    "in_proj_b.weight" => ("ssm_beta.weight", Some((1, 0, 0))),
                    "in_proj_qkv.weight" => ("attn_qkv.weight", Some((self.head_v, 2 * key_dim, 0))),
                    "in_proj_z.weight" => ("attn_gate.weight", Some((self.head_v, 0, 0))),
                    "out_proj.weight" => ("ssm_out.weight", Some((self.head_v, 0, 1))),
                    "norm.weight" => ("ssm_norm.weight", None),
                    _ => return Err(unmapped()),
                };
                if let Some((hd, start, axis)) = heads.filter(|_| reorder) {
                    let bad = || {
                        Error::format(
                            &t.file,
                            format!(
                                "tensor '{hf}' has shape {:?}: too small for {} V heads of {hd}",
                                t.shape, self.n_v_heads
                            ),
                        )
                    };
                    steps.push(v.along(hd, start, axis, &t.shape).ok_or_else(bad)?);
                }
                if suffix == "ssm_a" {
                    // A = -exp(A_log)
                    steps.push(Arc::new(|x: Vec<f32>| x.into_iter().map(|a| -a.exp()).collect()));
                }
                format!("blk.{bid}.{suffix}")
            }
            Some((bid, "post_attention_layernorm.weight")) => format!("blk.{bid}.post_attention_norm.weight"),
            _ => map_name(&hf).map_err(|()| unmapped())?.ok_or_else(unmapped)?,
        };
        if hf.ends_with("norm.weight") && !hf.ends_with("linear_attn.norm.weight") {
            steps.push(Arc::new(|x: Vec<f32>| x.into_iter().map(|w| w + 1.0).collect()));
        }
        let transform: Option<Transform> = match steps.len() {
            0 => None,
            _ => Some(Arc::new(move |x| steps.iter().fold(x, |x, f| f(x)))),
        };
        Ok(Some(OutTensor { name, src: t, unpermute_heads: None, transform }))
    }
}

impl Family for Qwen35 {
    fn arch(&self) -> &'static str {
        "qwen35"
    }

    /// Every tensor is the family's (`map_tensor`), the MTP head dropped.
    fn take(&mut self, t: SrcTensor) -> std::result::Result<Result<Vec<OutTensor>>, SrcTensor> {
        Ok(self.map_tensor(t).map(|o| o.into_iter().collect()))
    }

    fn finish(&self, _cfg: &Json, _cpath: &Path, plan: &mut Plan) -> Result<()> {
        self.set_hparams(&mut plan.hparams);
        Ok(())
    }
}

/// The V-head reorder of `_reorder_v_heads`: n_k groups of per_k heads → per_k groups of n_k.
#[derive(Clone, Copy)]
struct VHeads {
    n_k: usize,
    per_k: usize,
}

impl VHeads {
    /// The reorder of dimension `axis` of a row-major tensor of `shape`: its entries
    /// `start..start + n_v·hd` (n_v heads of `hd`); entry (r, k, d) of the result is entry
    /// (k, r, d) of the input. None when the shape cannot hold them.
    fn along(self, hd: usize, start: usize, axis: usize, shape: &[u64]) -> Option<Transform> {
        let VHeads { n_k, per_k } = self;
        let span = n_k * per_k * hd;
        let dim = *shape.get(axis)? as usize;
        let inner: usize = shape[axis + 1..].iter().map(|&d| d as usize).product();
        if start + span > dim {
            return None;
        }
        Some(Arc::new(move |x: Vec<f32>| {
            let mut out = x.clone(); // [outer][dim][inner]
            for (src, dst) in x.chunks_exact(dim * inner).zip(out.chunks_exact_mut(dim * inner)) {
                for j in 0..span {
                    let (r, k, d) = (j / (n_k * hd), (j / hd) % n_k, j % hd);
                    let old = (k * per_k + r) * hd + d;
                    let (o, n) = ((start + old) * inner, (start + j) * inner);
                    dst[n..n + inner].copy_from_slice(&src[o..o + inner]);
                }
            }
            out
        }))
    }
}
