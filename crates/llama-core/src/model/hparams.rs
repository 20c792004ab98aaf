//! Hyper-parameters read from GGUF metadata (`{arch}.*` keys, llama.cpp's names and defaults).

use crate::gguf::{GgufFile, Value};
use crate::kernels::elementwise::RopeType;
use crate::{Error, Result};

/// The architectures this runtime implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

pub const SUPPORTED_ARCHS: &str = "llama, qwen2, gemma3";

impl Arch {
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "gemma3" => Ok(Arch::Gemma3),
            _ => Err(Error::UnknownArchitecture { arch: name.to_string(), supported: SUPPORTED_ARCHS.to_string() }),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

#[derive(Clone, Debug)]
pub struct HParams {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head width of K (and Q) and of V.
    pub n_embd_head_k: usize,
    pub n_embd_head_v: usize,
    /// `feed_forward_length` as stored (layers may differ; the weights' shapes are authoritative).
    pub n_ff: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_type: RopeType,
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    /// Gemma 3 local (sliding-window) layers: rope base 10000, window `n_swa`, all layers except
    /// every `swa_pattern`-th (1-based) one. `n_swa == 0` means no sliding window.
    pub rope_freq_base_swa: f32,
    pub n_swa: usize,
    pub swa_pattern: usize,
    /// Multiplier applied to Q before Q·K (1/sqrt(head_dim) unless the model says otherwise).
    pub f_attention_scale: f32,
    pub final_logit_softcap: Option<f32>,
}

impl HParams {
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_k
    }
    pub fn n_embd_v_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_v
    }
    /// True when layer `il` attends only within the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.n_swa > 0 && self.swa_pattern > 0 && il % self.swa_pattern < self.swa_pattern - 1
    }

    /// Reads everything but `n_vocab` (taken from the embedding tensor by the caller).
    pub fn from_gguf(f: &GgufFile, arch: Arch) -> Result<HParams> {
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let n_embd = req_usize(f, &key("embedding_length"))?;
        let n_layer = req_usize(f, &key("block_count"))?;
        let n_head = req_usize(f, &key("attention.head_count"))?;
        if n_embd == 0 || n_layer == 0 || n_head == 0 {
            return Err(Error::Model(format!("{a}: embedding_length, block_count and head_count must be > 0")));
        }
        let n_head_kv = opt_usize(f, &key("attention.head_count_kv"))?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(Error::Model(format!(
                "{a}.attention.head_count_kv = {n_head_kv} does not divide head_count = {n_head}"
            )));
        }
        let n_embd_head_k = opt_usize(f, &key("attention.key_length"))?.unwrap_or(n_embd / n_head);
        let n_embd_head_v = opt_usize(f, &key("attention.value_length"))?.unwrap_or(n_embd / n_head);
        let n_rot = opt_usize(f, &key("rope.dimension_count"))?.unwrap_or(n_embd_head_k);
        if n_rot > n_embd_head_k || n_rot % 2 != 0 {
            return Err(Error::Model(format!(
                "{a}.rope.dimension_count = {n_rot} must be even and ≤ head size {n_embd_head_k}"
            )));
        }
        let rms_eps = opt_f32(f, &key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| Error::Model(format!("missing metadata key {a}.attention.layer_norm_rms_epsilon")))?;

        // Linear rope scaling: llama.cpp reads `rope.scale_linear`, else `rope.scaling.factor`.
        if let Some(t) = opt_str(f, &key("rope.scaling.type"))? {
            if t != "linear" && t != "none" {
                return Err(Error::Model(format!("{a}.rope.scaling.type = '{t}' is not supported (only linear)")));
            }
        }
        let mut factor = opt_f32(f, &key("rope.scale_linear"))?.unwrap_or(0.0);
        if factor == 0.0 {
            factor = opt_f32(f, &key("rope.scaling.factor"))?.unwrap_or(0.0);
        }
        let rope_freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };

        let (rope_type, n_swa, swa_pattern, f_attention_scale) = match arch {
            Arch::Llama => (RopeType::Norm, 0, 0, 1.0 / (n_embd_head_k as f32).sqrt()),
            Arch::Qwen2 => (RopeType::Neox, 0, 0, 1.0 / (n_embd_head_k as f32).sqrt()),
            // llama.cpp: Gemma 3 scales queries by 1/sqrt(key_length) (query_pre_attn_scalar =
            // head_dim for all sizes but 27B, which uses n_embd/n_head), 5 local : 1 global layers.
            Arch::Gemma3 => {
                let scale = if n_layer == 62 {
                    1.0 / ((n_embd / n_head) as f32).sqrt()
                } else {
                    1.0 / (n_embd_head_k as f32).sqrt()
                };
                (RopeType::Neox, opt_usize(f, &key("attention.sliding_window"))?.unwrap_or(0), 6, scale)
            }
        };
        Ok(HParams {
            arch,
            n_vocab: 0,
            n_ctx_train: opt_usize(f, &key("context_length"))?.unwrap_or(2048),
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_embd_head_k,
            n_embd_head_v,
            n_ff: opt_usize(f, &key("feed_forward_length"))?.unwrap_or(0),
            n_rot,
            rms_eps,
            rope_type,
            rope_freq_base: opt_f32(f, &key("rope.freq_base"))?.unwrap_or(10000.0),
            rope_freq_scale,
            rope_freq_base_swa: 10000.0,
            n_swa,
            swa_pattern,
            f_attention_scale,
            final_logit_softcap: opt_f32(f, &key("final_logit_softcapping"))?.filter(|&c| c > 0.0),
        })
    }
}

/// Integer metadata of any integer width (writers differ: u32, u64, i32 …).
fn opt_usize(f: &GgufFile, k: &str) -> Result<Option<usize>> {
    let bad = || Error::Model(format!("metadata key {k} must be a non-negative integer"));
    Ok(match f.get(k) {
        None => None,
        Some(v) => Some(match v {
            Value::U8(x) => *x as usize,
            Value::U16(x) => *x as usize,
            Value::U32(x) => *x as usize,
            Value::U64(x) => usize::try_from(*x).map_err(|_| bad())?,
            Value::I8(x) => usize::try_from(*x).map_err(|_| bad())?,
            Value::I16(x) => usize::try_from(*x).map_err(|_| bad())?,
            Value::I32(x) => usize::try_from(*x).map_err(|_| bad())?,
            Value::I64(x) => usize::try_from(*x).map_err(|_| bad())?,
            _ => return Err(bad()),
        }),
    })
}

fn req_usize(f: &GgufFile, k: &str) -> Result<usize> {
    opt_usize(f, k)?.ok_or_else(|| Error::Model(format!("missing metadata key {k}")))
}

fn opt_f32(f: &GgufFile, k: &str) -> Result<Option<f32>> {
    Ok(match f.get(k) {
        None => None,
        Some(Value::F32(x)) => Some(*x),
        Some(Value::F64(x)) => Some(*x as f32),
        Some(_) => return Err(Error::Model(format!("metadata key {k} must be a float"))),
    })
}

fn opt_str(f: &GgufFile, k: &str) -> Result<Option<String>> {
    Ok(match f.get(k) {
        None => None,
        Some(Value::String(s)) => Some(s.to_string_lossy().into_owned()),
        Some(_) => return Err(Error::Model(format!("metadata key {k} must be a string"))),
    })
}

/// `general.architecture`, as a supported [`Arch`].
pub fn read_arch(f: &GgufFile) -> Result<Arch> {
    let name = opt_str(f, "general.architecture")?
        .ok_or_else(|| Error::Model("missing metadata key general.architecture".into()))?;
    Arch::from_name(&name)
}
