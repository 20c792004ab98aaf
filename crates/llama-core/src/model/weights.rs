//! Weight lookup and shape validation. Matrices stay in the mmap (we keep the tensor's index and
//! borrow its bytes at use); 1-D tensors (norms, biases, rope factors) are small and copied to f32.

use super::hparams::{Arch, HParams};
use crate::gguf::GgufFile;
use crate::quant::dequantize_row;
use crate::{Error, Result};

/// A 2-D weight: `rows` rows of `cols` elements (ggml dims = [cols, rows]).
#[derive(Clone, Copy, Debug)]
pub struct WRef {
    pub idx: usize,
    pub rows: usize,
    pub cols: usize,
}

#[derive(Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,  // [n_embd]
    pub wq: WRef,             // [n_head*head_k][n_embd]
    pub wk: WRef,             // [n_head_kv*head_k][n_embd]
    pub wv: WRef,             // [n_head_kv*head_v][n_embd]
    pub wo: WRef,             // [n_embd][n_head*head_v]
    pub bq: Option<Vec<f32>>, // qwen2 biases
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub attn_q_norm: Option<Vec<f32>>, // gemma3 per-head norms [head_k]
    pub attn_k_norm: Option<Vec<f32>>,
    pub post_attention_norm: Option<Vec<f32>>, // gemma3 [n_embd]
    pub ffn_norm: Vec<f32>,                    // [n_embd]
    pub ffn_gate: WRef,                        // [n_ff][n_embd]
    pub ffn_up: WRef,                          // [n_ff][n_embd]
    pub ffn_down: WRef,                        // [n_embd][n_ff]
    pub post_ffw_norm: Option<Vec<f32>>,       // gemma3 [n_embd]
}

#[derive(Debug)]
pub struct Weights {
    pub tok_embd: WRef, // [n_vocab][n_embd]
    pub output_norm: Vec<f32>,
    /// `output.weight`, or the embedding matrix when the model ties them.
    pub output: WRef, // [n_vocab][n_embd]
    pub rope_freqs: Option<Vec<f32>>, // [n_rot/2]
    pub layers: Vec<Layer>,
}

struct Loader<'a> {
    f: &'a GgufFile,
}

impl Loader<'_> {
    fn find(&self, name: &str) -> Option<usize> {
        self.f.tensors().iter().position(|t| t.name == name)
    }

    fn matrix(&self, name: &str, rows: Option<usize>, cols: usize) -> Result<WRef> {
        self.opt_matrix(name, rows, cols)?.ok_or_else(|| Error::Model(format!("missing tensor {name}")))
    }

    /// A 2-D tensor of `cols` columns and (if given) `rows` rows, in a type we can compute with.
    fn opt_matrix(&self, name: &str, rows: Option<usize>, cols: usize) -> Result<Option<WRef>> {
        let Some(idx) = self.find(name) else {
            return Ok(None);
        };
        let t = &self.f.tensors()[idx];
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let shape_ok = dims.len() == 2 && dims[0] == cols && rows.is_none_or(|r| dims[1] == r);
        if !shape_ok {
            let want = rows.map_or(format!("[{cols}, *]"), |r| format!("[{cols}, {r}]"));
            return Err(Error::Model(format!("tensor {name} has shape {dims:?}, expected {want}")));
        }
        if !cols.is_multiple_of(t.ggml_type.block_size()) {
            return Err(Error::Model(format!(
                "tensor {name}: row length {cols} is not a multiple of the {} block size",
                t.ggml_type
            )));
        }
        Ok(Some(WRef { idx, rows: dims[1], cols }))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        self.opt_vector(name, n)?.ok_or_else(|| Error::Model(format!("missing tensor {name}")))
    }

    fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        let Some(idx) = self.find(name) else {
            return Ok(None);
        };
        let t = &self.f.tensors()[idx];
        let dims: Vec<u64> = t.dims.iter().copied().filter(|&d| d != 1).collect();
        if dims != [n as u64] && !(n == 1 && dims.is_empty()) {
            return Err(Error::Model(format!("tensor {name} has shape {:?}, expected [{n}]", t.dims)));
        }
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        if !n.is_multiple_of(t.ggml_type.block_size()) {
            return Err(Error::Model(format!(
                "tensor {name}: length {n} is not a multiple of the {} block size",
                t.ggml_type
            )));
        }
        let mut v = vec![0.0f32; n];
        dequantize_row(t.ggml_type, self.f.tensor_data(t), &mut v)
            .map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        Ok(Some(v))
    }
}

impl Weights {
    /// Finds and checks every tensor of `hp.arch`; returns the weights and `n_vocab`.
    pub fn load(f: &GgufFile, hp: &HParams) -> Result<(Weights, usize)> {
        let l = Loader { f };
        let n_embd = hp.n_embd;
        let tok_embd = l.matrix("token_embd.weight", None, n_embd)?;
        let n_vocab = tok_embd.rows;
        let output = l.opt_matrix("output.weight", Some(n_vocab), n_embd)?.unwrap_or(tok_embd);
        let rope_freqs = l.opt_vector("rope_freqs.weight", hp.n_rot / 2)?;
        let (q_rows, kv_rows_k, kv_rows_v) = (hp.n_head * hp.n_embd_head_k, hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        let qwen2 = hp.arch == Arch::Qwen2;
        let gemma3 = hp.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for il in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let ffn_gate = l.matrix(&n("ffn_gate.weight"), None, n_embd)?;
            let n_ff = ffn_gate.rows;
            let need = |cond: bool, v: Option<Vec<f32>>, name: &str| -> Result<Option<Vec<f32>>> {
                if cond && v.is_none() {
                    return Err(Error::Model(format!("missing tensor {}", n(name))));
                }
                Ok(v)
            };
            layers.push(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
                wq: l.matrix(&n("attn_q.weight"), Some(q_rows), n_embd)?,
                wk: l.matrix(&n("attn_k.weight"), Some(kv_rows_k), n_embd)?,
                wv: l.matrix(&n("attn_v.weight"), Some(kv_rows_v), n_embd)?,
                wo: l.matrix(&n("attn_output.weight"), Some(n_embd), hp.n_head * hp.n_embd_head_v)?,
                bq: need(qwen2, l.opt_vector(&n("attn_q.bias"), q_rows)?, "attn_q.bias")?,
                bk: need(qwen2, l.opt_vector(&n("attn_k.bias"), kv_rows_k)?, "attn_k.bias")?,
                bv: need(qwen2, l.opt_vector(&n("attn_v.bias"), kv_rows_v)?, "attn_v.bias")?,
                attn_q_norm: need(
                    gemma3,
                    l.opt_vector(&n("attn_q_norm.weight"), hp.n_embd_head_k)?,
                    "attn_q_norm.weight",
                )?,
                attn_k_norm: need(
                    gemma3,
                    l.opt_vector(&n("attn_k_norm.weight"), hp.n_embd_head_k)?,
                    "attn_k_norm.weight",
                )?,
                post_attention_norm: need(
                    gemma3,
                    l.opt_vector(&n("post_attention_norm.weight"), n_embd)?,
                    "post_attention_norm.weight",
                )?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), n_embd)?,
                ffn_gate,
                ffn_up: l.matrix(&n("ffn_up.weight"), Some(n_ff), n_embd)?,
                ffn_down: l.matrix(&n("ffn_down.weight"), Some(n_embd), n_ff)?,
                post_ffw_norm: need(gemma3, l.opt_vector(&n("post_ffw_norm.weight"), n_embd)?, "post_ffw_norm.weight")?,
            });
        }
        let w = Weights { tok_embd, output_norm: l.vector("output_norm.weight", n_embd)?, output, rope_freqs, layers };
        Ok((w, n_vocab))
    }

    /// Widest feed-forward layer (buffer sizing).
    pub fn max_n_ff(&self) -> usize {
        self.layers.iter().map(|l| l.ffn_gate.rows).max().unwrap_or(0)
    }
}
