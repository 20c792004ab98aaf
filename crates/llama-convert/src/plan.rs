//! What a checkpoint reader hands to the writer: hyper-parameters (llama.cpp's names) and the
//! output tensors in order, each tied to its source and the transform it needs.

use llama_core::gguf::Value;

use crate::tensor::SrcTensor;

#[derive(Clone, Debug)]
pub struct Hparams {
    /// GGUF architecture (`general.architecture`).
    pub arch: &'static str,
    pub n_ctx: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    /// `attention.head_count_kv` is written (llama.cpp: when the config states it).
    pub head_count_kv_stated: bool,
    /// `attention.layer_norm_rms_epsilon`, when the config states it.
    pub rms_eps: Option<f32>,
    /// `attention.layer_norm_epsilon` (LayerNorm families), when the config states it.
    pub layer_norm_eps: Option<f32>,
    /// Written as `rope.freq_base` when the checkpoint states it.
    pub rope_theta: Option<f32>,
    /// Written as `attention.key_length`/`value_length` when the checkpoint states a head_dim
    /// (as llama.cpp does).
    pub head_dim: Option<u32>,
    /// `rope.dimension_count`
    pub n_rot: u32,
    pub n_vocab: u32,
    /// `rope.scaling.*` keys, when the checkpoint scales its rope (linear or YaRN).
    pub rope_scaling: Option<RopeScaling>,
    /// `expert_count` and `expert_used_count`, when the checkpoint states them.
    pub n_expert: Option<u32>,
    pub n_expert_used: Option<u32>,
    /// M-RoPE `rope.dimension_sections` (time, height, width, extra), written after
    /// `attention.head_count_kv` as llama.cpp's `TextModel` does when the config has
    /// `mrope_section`.
    pub rope_sections: Option<[i32; 4]>,
    /// The family's own `{arch}.*` keys (named without the `{arch}.` prefix) that the shared
    /// fields above do not cover, written after them in this order.
    pub extra: Vec<(String, Value)>,
    /// The order of the model's keys when the family writes them in its own (llama.cpp families
    /// that override `set_gguf_parameters`): `general.*` names as they are, the family's keys
    /// without the `{arch}.` prefix. Empty: the shared order. Keys not listed follow, as written.
    pub key_order: Vec<&'static str>,
}

/// RoPE scaling as llama.cpp's converter writes it (`rope.scaling.type`, `.factor`, …); llama3's
/// scaling is a tensor (`rope_freqs.weight`), not metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    Linear {
        factor: f32,
    },
    Yarn {
        factor: f32,
        /// `rope.scaling.original_context_length`
        original_context_length: u32,
        /// `rope.scaling.yarn_ext_factor`, `yarn_attn_factor`, `yarn_beta_fast`, `yarn_beta_slow`,
        /// each when the checkpoint states it.
        ext_factor: Option<f32>,
        attn_factor: Option<f32>,
        beta_fast: Option<f32>,
        beta_slow: Option<f32>,
    },
}

/// One output tensor.
pub struct OutTensor {
    /// llama.cpp name (`blk.0.attn_q.weight` …).
    pub name: String,
    pub src: SrcTensor,
    /// Un-permute HF rotary rows with this many heads (q: n_head, k: n_head_kv).
    pub unpermute_heads: Option<u32>,
    /// A change of the values llama.cpp's converter makes in its `modify_tensors` (norm + 1,
    /// `-exp`, rows reordered …): applied to the elements widened to f32, before the rounding to
    /// the output type, as llama.cpp does (its converter widens BF16 to F32 first).
    pub transform: Option<Transform>,
}

/// The elements (row-major, widened to f32) in, the elements to store out (same count).
pub type Transform = std::sync::Arc<dyn Fn(Vec<f32>) -> Vec<f32> + Send + Sync>;

pub struct Plan {
    pub hparams: Hparams,
    pub tensors: Vec<OutTensor>,
    /// Parameter count (for `general.size_label`).
    pub n_params: u64,
}
