//! Hyper-parameters every family shares, read from GGUF metadata (`{arch}.*` keys, llama.cpp's
//! names and defaults, as llama.cpp's `llama_model::load_hparams` reads them before its
//! per-architecture switch). What only one family has (a sliding window, a query scale, a logit
//! soft-cap …) is read by that family's file in `arch/`, through [`Meta`].

use crate::gguf::{GgufFile, Value};
use crate::kernels::elementwise::{Rope, RopeType, Yarn};
use crate::{Error, Result};

/// The value of `general.architecture` this model was loaded as (one of `arch::FAMILIES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch(pub(super) &'static str);

impl Arch {
    pub fn name(self) -> &'static str {
        self.0
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
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    /// `rope.scaling.type` = "yarn": the positions the model was trained on before scaling
    /// (`rope.scaling.original_context_length`, else the context length); see [`HParams::yarn`].
    pub rope_yarn: Option<usize>,
    /// `rope.scaling.attn_factor` (1.0 when absent): the rope's `attn_factor`, multiplying cos
    /// and sin (LongRoPE's attention factor; with YaRN, a factor of YaRN's own).
    pub rope_attn_factor: f32,
    /// `attention.layer_norm_epsilon`: the epsilon of the LayerNorm families (BERT); the RMS
    /// epsilon when the file has only that.
    pub norm_eps: f32,
    /// `attention.causal` (true when absent): false for encoders, whose tokens attend to every
    /// token of their sequence, later ones included.
    pub causal: bool,
    /// `pooling_type` as the file stores it (llama.cpp's `enum llama_pooling_type`: 0 none,
    /// 1 mean, 2 cls, 3 last, 4 rank), when it names one.
    pub pooling_type: Option<u32>,
}

impl HParams {
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_k
    }
    pub fn n_embd_v_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_v
    }

    /// The rope every layer of the model uses unless its family says otherwise: the file's base,
    /// linear scale, attention factor and YaRN, rotating `kind`'s pairs.
    pub fn rope(&self, kind: RopeType) -> Rope<'static> {
        Rope {
            n_rot: self.n_rot,
            freq_base: self.rope_freq_base,
            freq_scale: self.rope_freq_scale,
            kind,
            freq_factors: None,
            attn_factor: self.rope_attn_factor,
            yarn: self.yarn(self.rope_freq_base),
        }
    }

    /// The YaRN rope parameters of a layer with base `freq_base`, when the file asks for YaRN
    /// (llama.cpp's defaults: beta_fast 32, beta_slow 1; it does not read them from the file).
    pub fn yarn(&self, freq_base: f32) -> Option<Yarn> {
        let n_ctx_orig = self.rope_yarn?;
        Some(Yarn::llama(self.n_rot, n_ctx_orig, freq_base, self.rope_freq_scale, 32.0, 1.0, self.rope_attn_factor))
    }

    /// Reads everything but `n_vocab` (taken from the embedding tensor once the weights load).
    /// The shared hyper-parameters; `attention`: whether the family has attention layers (one
    /// without them, Mamba, stores `attention.head_count` 0 and gets no heads here).
    pub(super) fn from_gguf(f: &GgufFile, arch: Arch, attention: bool) -> Result<HParams> {
        let m = Meta { f, arch };
        let a = arch.name();
        let n_embd = m.req_usize("embedding_length")?;
        let n_layer = m.req_usize("block_count")?;
        let n_head = if attention { m.req_usize("attention.head_count")? } else { 0 };
        if n_embd == 0 || n_layer == 0 || (attention && n_head == 0) {
            return Err(Error::Model(format!("{a}: embedding_length, block_count and head_count must be > 0")));
        }
        let n_head_kv = if attention { m.opt_usize("attention.head_count_kv")?.unwrap_or(n_head) } else { 0 };
        if attention && (n_head_kv == 0 || n_head % n_head_kv != 0) {
            return Err(Error::Model(format!(
                "{a}.attention.head_count_kv = {n_head_kv} does not divide head_count = {n_head}"
            )));
        }
        let head = n_embd.checked_div(n_head).unwrap_or(0);
        let n_embd_head_k = if attention { m.opt_usize("attention.key_length")?.unwrap_or(head) } else { 0 };
        let n_embd_head_v = if attention { m.opt_usize("attention.value_length")?.unwrap_or(head) } else { 0 };
        let n_rot = m.opt_usize("rope.dimension_count")?.unwrap_or(n_embd_head_k);
        if n_rot > n_embd_head_k || n_rot % 2 != 0 {
            return Err(Error::Model(format!(
                "{a}.rope.dimension_count = {n_rot} must be even and ≤ head size {n_embd_head_k}"
            )));
        }
        // RMS-norm families store `layer_norm_rms_epsilon`, LayerNorm ones (BERT)
        // `layer_norm_epsilon`: one of the two must be there.
        let norm_eps = m.opt_f32("attention.layer_norm_epsilon")?;
        let rms_eps = m.opt_f32("attention.layer_norm_rms_epsilon")?.or(norm_eps).ok_or_else(|| {
            Error::Model(format!("missing metadata key {a}.attention.layer_norm_rms_epsilon (or layer_norm_epsilon)"))
        })?;
        // llama.cpp writes -1 for "unspecified" in some files: that, like a kind newer than
        // rank, leaves the choice to the caller.
        let pooling_type = match m.opt_usize("pooling_type") {
            Ok(Some(p @ 0..=4)) => Some(p as u32),
            _ => None,
        };

        // Rope scaling by a factor: llama.cpp reads `rope.scale_linear`, else `rope.scaling.factor`;
        // linear divides every angle by it, YaRN only the low frequencies (`Yarn`).
        let scaling = m.opt_str("rope.scaling.type")?;
        if let Some(t) = &scaling {
            if t != "linear" && t != "none" && t != "yarn" {
                return Err(Error::Model(format!("{a}.rope.scaling.type = '{t}' is not supported (linear or yarn)")));
            }
        }
        let mut factor = m.opt_f32("rope.scale_linear")?.unwrap_or(0.0);
        if factor == 0.0 {
            factor = m.opt_f32("rope.scaling.factor")?.unwrap_or(0.0);
        }
        let rope_freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
        let n_ctx_train = m.opt_usize("context_length")?.unwrap_or(2048);
        let rope_yarn = match scaling.as_deref() {
            Some("yarn") => Some(m.opt_usize("rope.scaling.original_context_length")?.unwrap_or(n_ctx_train)),
            _ => None,
        };

        Ok(HParams {
            arch,
            n_vocab: 0,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_embd_head_k,
            n_embd_head_v,
            n_ff: m.opt_usize("feed_forward_length")?.unwrap_or(0),
            n_rot,
            rms_eps,
            rope_freq_base: m.opt_f32("rope.freq_base")?.unwrap_or(10000.0),
            rope_freq_scale,
            rope_yarn,
            rope_attn_factor: m.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0),
            norm_eps: norm_eps.unwrap_or(rms_eps),
            causal: m.opt_bool("attention.causal")?.unwrap_or(true),
            pooling_type,
        })
    }
}

/// The `{arch}.*` metadata keys of one file: `Meta::opt_usize("attention.sliding_window")` reads
/// `<general.architecture>.attention.sliding_window`.
pub(super) struct Meta<'a> {
    pub f: &'a GgufFile,
    pub arch: Arch,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch.name())
    }
    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        opt_usize(self.f, &self.key(k))
    }
    pub fn req_usize(&self, k: &str) -> Result<usize> {
        let k = self.key(k);
        opt_usize(self.f, &k)?.ok_or_else(|| Error::Model(format!("missing metadata key {k}")))
    }
    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        opt_f32(self.f, &self.key(k))
    }
    pub fn opt_str(&self, k: &str) -> Result<Option<String>> {
        opt_str(self.f, &self.key(k))
    }
    pub fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        let k = self.key(k);
        Ok(match self.f.get(&k) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(Error::Model(format!("metadata key {k} must be a boolean"))),
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

/// `general.architecture`, as written (the registry in `arch/` decides whether it is supported).
pub(super) fn read_arch_name(f: &GgufFile) -> Result<String> {
    opt_str(f, "general.architecture")?.ok_or_else(|| Error::Model("missing metadata key general.architecture".into()))
}
