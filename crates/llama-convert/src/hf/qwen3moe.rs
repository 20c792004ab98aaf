//! Qwen3MoeForCausalLM (llama.cpp's `Qwen3MoeModel`, from `Qwen2MoeModel`): the experts' HF
//! matrices stacked into 3-D tensors `ffn_{down,gate,up}_exps` ([n_expert][rows][cols]), and the
//! experts' width written as `expert_feed_forward_length`. Checkpoints store experts either one
//! matrix per expert (`mlp.experts.{e}.{gate,up,down}_proj.weight`: stacked once a layer's are all
//! read, at the place of its last one, down then gate then up) or already fused
//! (`mlp.experts.gate_up_proj` [n_expert][2·n_ff][n_embd], split into gate and up, and
//! `mlp.experts.down_proj`), as transformers 5 may save them.

use std::collections::HashMap;
use std::path::Path;

use llama_core::gguf::Value;
use llama_core::{Error, Result};
use serde_json::Value as Json;

use super::Family;
use crate::plan::{OutTensor, Plan};
use crate::tensor::{Data, SrcTensor};

/// `{arch}.expert_feed_forward_length` from `moe_intermediate_size`.
fn extra(cfg: &Json) -> Vec<(String, Value)> {
    let n_ff = cfg.get("moe_intermediate_size").and_then(Json::as_u64).and_then(|x| u32::try_from(x).ok());
    n_ff.map(|n| ("expert_feed_forward_length".to_string(), Value::U32(n))).into_iter().collect()
}

pub(super) struct Qwen3Moe {
    experts: ExpertStacker,
}

impl Qwen3Moe {
    pub(super) fn new(cfg: &Json, cpath: &Path) -> Result<Qwen3Moe> {
        let present = super::EXPERT_COUNT.iter().any(|k| cfg.get(*k).is_some_and(|v| !v.is_null()));
        if !present {
            return Err(Error::format(cpath, "missing required key 'num_experts'"));
        }
        let n_expert = super::get_u32(cfg, super::EXPERT_COUNT, cpath)?;
        Ok(Qwen3Moe { experts: ExpertStacker::new(n_expert) })
    }
}

impl Family for Qwen3Moe {
    fn arch(&self) -> &'static str {
        "qwen3moe"
    }

    fn take(&mut self, t: SrcTensor) -> std::result::Result<Result<Vec<OutTensor>>, SrcTensor> {
        self.experts.take(t)
    }

    fn finish(&self, cfg: &Json, cpath: &Path, plan: &mut Plan) -> Result<()> {
        self.experts.finish(cpath.parent().unwrap_or(cpath))?;
        plan.hparams.extra = extra(cfg);
        Ok(())
    }
}

/// Collects a layer's per-expert matrices until all are read.
struct ExpertStacker {
    n_expert: u32,
    /// Per layer: (expert, projection) → matrix.
    pending: HashMap<u32, HashMap<(u32, String), SrcTensor>>,
}

/// The projections in llama.cpp's output order, with their llama.cpp names.
const PROJS: [(&str, &str); 3] =
    [("down_proj", "ffn_down_exps"), ("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps")];

impl ExpertStacker {
    fn new(n_expert: u32) -> ExpertStacker {
        ExpertStacker { n_expert, pending: HashMap::new() }
    }

    /// Takes an HF tensor of `model.layers.{bid}.mlp.experts.…`: returns the output tensors it
    /// completes (none until a layer's per-expert matrices are all read). Other tensors are
    /// handed back.
    #[allow(clippy::result_large_err)] // the tensor handed back is moved, not copied
    fn take(&mut self, t: SrcTensor) -> std::result::Result<Result<Vec<OutTensor>>, SrcTensor> {
        let Some((bid, rest)) = t
            .name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(b, r)| Some((b.parse::<u32>().ok()?, r.strip_prefix("mlp.experts.")?)))
        else {
            return Err(t);
        };
        let rest = rest.strip_suffix(".weight").unwrap_or(rest).to_string();
        let out = |suffix: &str, src: SrcTensor| OutTensor {
            name: format!("blk.{bid}.{suffix}.weight"),
            src,
            unpermute_heads: None,
            transform: None,
        };
        Ok(match rest.as_str() {
            "down_proj" => Ok(vec![out("ffn_down_exps", t)]),
            "gate_up_proj" => split_gate_up(t).map(|(g, u)| vec![out("ffn_gate_exps", g), out("ffn_up_exps", u)]),
            _ => self.add_expert(bid, &rest, t),
        })
    }

    fn add_expert(&mut self, bid: u32, rest: &str, t: SrcTensor) -> Result<Vec<OutTensor>> {
        let bad = |m: String| Error::format(&t.file, format!("tensor '{}': {m}", t.name));
        let Some((xid, proj)) = rest.split_once('.').and_then(|(x, p)| Some((x.parse::<u32>().ok()?, p))) else {
            return Err(bad("not an expert matrix llama.cpp knows".into()));
        };
        if xid >= self.n_expert || !PROJS.iter().any(|(p, _)| *p == proj) {
            return Err(bad(format!("expert {xid} of {} or projection '{proj}' unknown", self.n_expert)));
        }
        let layer = self.pending.entry(bid).or_default();
        layer.insert((xid, proj.to_string()), t);
        if layer.len() < 3 * self.n_expert as usize {
            return Ok(Vec::new());
        }
        let mut layer = self.pending.remove(&bid).unwrap_or_default();
        let mut outs = Vec::with_capacity(3);
        for (proj, name) in PROJS {
            let parts: Vec<SrcTensor> = (0..self.n_expert)
                .map(|x| layer.remove(&(x, proj.to_string())).expect("all 3·n_expert matrices present"))
                .collect();
            let src = stack(&format!("model.layers.{bid}.mlp.experts.{proj}.weight"), parts)?;
            outs.push(OutTensor {
                name: format!("blk.{bid}.{name}.weight"),
                src,
                unpermute_heads: None,
                transform: None,
            });
        }
        Ok(outs)
    }

    /// Fails if a layer's experts were not all found.
    fn finish(&self, path: &Path) -> Result<()> {
        match self.pending.iter().next() {
            None => Ok(()),
            Some((bid, l)) => Err(Error::format(
                path,
                format!("layer {bid}: {} of {} expert matrices found", l.len(), 3 * self.n_expert),
            )),
        }
    }
}

/// `torch.stack(parts, dim=0)`: every part viewed as [1][rows][cols], laid end to end.
fn stack(name: &str, parts: Vec<SrcTensor>) -> Result<SrcTensor> {
    let first = &parts[0];
    if let Some(p) = parts.iter().find(|p| p.dtype != first.dtype || p.shape != first.shape) {
        return Err(Error::format(
            &p.file,
            format!(
                "tensor '{}' is {} {:?}, unlike '{}' ({} {:?})",
                p.name,
                p.dtype.name(),
                p.shape,
                first.name,
                first.dtype.name(),
                first.shape
            ),
        ));
    }
    let mut shape = vec![parts.len() as u64];
    shape.extend_from_slice(&first.shape);
    let (file, dtype) = (first.file.clone(), first.dtype);
    let parts = parts.into_iter().map(with_leading_one).collect();
    Ok(SrcTensor { name: name.to_string(), file, dtype, shape, data: Data::Concat { parts, dim: 0 } })
}

/// The same tensor with a leading dimension of 1.
fn with_leading_one(mut t: SrcTensor) -> SrcTensor {
    t.shape.insert(0, 1);
    match &mut t.data {
        Data::View { stride, .. } => stride.insert(0, 0),
        Data::Concat { dim, .. } => *dim += 1,
        // contiguous: a leading 1 moves no element
        Data::Owned(_) => {}
    }
    t
}

/// `gate_up_proj` [n_expert][2·n_ff][n_embd] → its first and second halves on dim 1 (llama.cpp:
/// `data[..., :n_ff, :]`, `data[..., n_ff:, :]`).
fn split_gate_up(t: SrcTensor) -> Result<(SrcTensor, SrcTensor)> {
    let bad = |m: String| Error::format(&t.file, format!("tensor '{}': {m}", t.name));
    if t.shape.len() != 3 || !t.shape[1].is_multiple_of(2) {
        return Err(bad(format!("unexpected gate_up_proj shape {:?}", t.shape)));
    }
    let Data::View { mmap, base, offset, stride } = &t.data else {
        return Err(bad("gate_up_proj must be stored in one file".into()));
    };
    let n_ff = t.shape[1] / 2;
    let half = |k: u64, proj: &str| SrcTensor {
        name: t.name.replace("gate_up_proj", proj),
        file: t.file.clone(),
        dtype: t.dtype,
        shape: vec![t.shape[0], n_ff, t.shape[2]],
        data: Data::View {
            mmap: mmap.clone(),
            base: *base,
            offset: offset + k * n_ff * stride[1],
            stride: stride.clone(),
        },
    };
    Ok((half(0, "gate_proj"), half(1, "up_proj")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::load_safetensors;

    /// A safetensors file of F32 tensors (name, shape, values).
    fn write_st(path: &Path, tensors: &[(&str, Vec<u64>, Vec<f32>)]) {
        let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
        for (name, shape, vals) in tensors {
            let begin = data.len();
            data.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        let h = serde_json::to_vec(&Json::Object(header)).unwrap();
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend(h);
        bytes.extend(data);
        std::fs::write(path, bytes).unwrap();
    }

    fn f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// Per-expert matrices are stacked as torch.stack, fused gate_up is split on its rows, and both
    /// give the same 3-D tensors, in llama.cpp's order (down, gate, up) and names.
    #[test]
    fn per_expert_and_fused_experts_give_the_same_tensors() {
        let dir = std::env::temp_dir().join(format!("qwen3moe-experts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (n_exp, n_ff, n_embd) = (2usize, 3usize, 2usize);
        // value of expert e, projection p, row r, column c: distinct for every element
        let v = |e: usize, p: usize, r: usize, c: usize| (1000 * e + 100 * p + 10 * r + c) as f32;
        let mat = |e, p, rows, cols| (0..rows).flat_map(|r| (0..cols).map(move |c| v(e, p, r, c))).collect::<Vec<_>>();
        let mut per_expert = Vec::new();
        let names: Vec<String> = (0..n_exp)
            .flat_map(|e| {
                ["down_proj", "gate_proj", "up_proj"].map(|p| format!("model.layers.0.mlp.experts.{e}.{p}.weight"))
            })
            .collect();
        for (i, name) in names.iter().enumerate() {
            let (e, p) = (i / 3, i % 3);
            let (rows, cols) = if p == 0 { (n_embd, n_ff) } else { (n_ff, n_embd) };
            per_expert.push((name.as_str(), vec![rows as u64, cols as u64], mat(e, p, rows, cols)));
        }
        let a = dir.join("a.safetensors");
        write_st(&a, &per_expert);
        // fused: gate_up [n_exp][2·n_ff][n_embd] = gate rows then up rows; down [n_exp][n_embd][n_ff]
        let gate_up: Vec<f32> =
            (0..n_exp).flat_map(|e| [mat(e, 1, n_ff, n_embd), mat(e, 2, n_ff, n_embd)].concat()).collect();
        let down: Vec<f32> = (0..n_exp).flat_map(|e| mat(e, 0, n_embd, n_ff)).collect();
        let b = dir.join("b.safetensors");
        write_st(
            &b,
            &[
                ("model.layers.0.mlp.experts.down_proj", vec![2, 2, 3], down),
                ("model.layers.0.mlp.experts.gate_up_proj", vec![2, 6, 2], gate_up),
            ],
        );
        let run = |path: &Path| {
            let mut x = ExpertStacker::new(n_exp as u32);
            let mut outs = Vec::new();
            for t in load_safetensors(path).unwrap() {
                outs.extend(x.take(t).unwrap_or_else(|t| panic!("{} is an expert tensor", t.name)).unwrap());
            }
            x.finish(path).unwrap();
            outs.into_iter().map(|o| (o.name, o.src.shape.clone(), f32s(&o.src.read().unwrap()))).collect::<Vec<_>>()
        };
        let (stacked, split) = (run(&a), run(&b));
        let _ = std::fs::remove_dir_all(&dir);
        let want: Vec<(String, Vec<u64>, Vec<f32>)> =
            [("ffn_down_exps", 0, n_embd, n_ff), ("ffn_gate_exps", 1, n_ff, n_embd), ("ffn_up_exps", 2, n_ff, n_embd)]
                .into_iter()
                .map(|(name, p, rows, cols)| {
                    let vals = (0..n_exp).flat_map(|e| mat(e, p, rows, cols)).collect();
                    (format!("blk.0.{name}.weight"), vec![n_exp as u64, rows as u64, cols as u64], vals)
                })
                .collect();
        assert_eq!(stacked, want);
        assert_eq!(split, want);
    }

    #[test]
    fn missing_experts_are_reported() {
        let mut x = ExpertStacker::new(2);
        let dir = std::env::temp_dir().join(format!("qwen3moe-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.safetensors");
        write_st(&a, &[("model.layers.3.mlp.experts.0.up_proj.weight", vec![1, 2], vec![1.0, 2.0])]);
        for t in load_safetensors(&a).unwrap() {
            assert!(x.take(t).unwrap().unwrap().is_empty());
        }
        let e = x.finish(&a).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("layer 3: 1 of 6 expert matrices"), "{e}");
    }
}
