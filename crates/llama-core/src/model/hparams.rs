//! Hyper-parameters every family shares, read from GGUF metadata (`{arch}.*` keys, llama.cpp's
//! names and defaults, as llama.cpp's `llama_model::load_hparams` reads them before its
//! per-architecture switch). What only one family has (a sliding window, a query scale, a logit
//! soft-cap …) is read by that family's file in `arch/`, through [`Meta`].

use crate::gguf::{GgufFile, Value};
use crate::kernels::elementwise::{Rope, RopeExt, RopeType};
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
    /// YaRN and magnitude scaling of the rope (llama.cpp's `cparams.yarn_*`).
    pub rope_ext: RopeExt,
}

impl HParams {
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_k
    }
    pub fn n_embd_v_gqa(&self) -> usize {
        self.n_head_kv * self.n_embd_head_v
    }

    /// The file's rope (base, scaling, YaRN) with pairs of `kind`, no frequency divisors.
    pub fn rope(&self, kind: RopeType) -> Rope<'static> {
        Rope {
            n_rot: self.n_rot,
            freq_base: self.rope_freq_base,
            freq_scale: self.rope_freq_scale,
            kind,
            freq_factors: None,
            ext: self.rope_ext,
        }
    }

    /// Reads everything but `n_vocab` (taken from the embedding tensor once the weights load).
    pub(super) fn from_gguf(f: &GgufFile, arch: Arch) -> Result<HParams> {
        let m = Meta { f, arch };
        let a = arch.name();
        let n_embd = m.req_usize("embedding_length")?;
        let n_layer = m.req_usize("block_count")?;
        let n_head = m.req_usize("attention.head_count")?;
        if n_embd == 0 || n_layer == 0 || n_head == 0 {
            return Err(Error::Model(format!("{a}: embedding_length, block_count and head_count must be > 0")));
        }
        let n_head_kv = m.opt_usize("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(Error::Model(format!(
                "{a}.attention.head_count_kv = {n_head_kv} does not divide head_count = {n_head}"
            )));
        }
        let n_embd_head_k = m.opt_usize("attention.key_length")?.unwrap_or(n_embd / n_head);
        let n_embd_head_v = m.opt_usize("attention.value_length")?.unwrap_or(n_embd / n_head);
        let n_rot = m.opt_usize("rope.dimension_count")?.unwrap_or(n_embd_head_k);
        if n_rot > n_embd_head_k || n_rot % 2 != 0 {
            return Err(Error::Model(format!(
                "{a}.rope.dimension_count = {n_rot} must be even and ≤ head size {n_embd_head_k}"
            )));
        }
        let rms_eps = m
            .opt_f32("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| Error::Model(format!("missing metadata key {a}.attention.layer_norm_rms_epsilon")))?;

        let n_ctx_train = m.opt_usize("context_length")?.unwrap_or(2048);
        let (rope_freq_scale, rope_ext) = rope_scaling(&m, n_ctx_train)?;

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
            rope_ext,
        })
    }
}

/// Rope scaling as llama.cpp sets it up (`llama_model::load_hparams`, then the context's
/// `cparams`): the frequency scale 1/`rope.scaling.factor` (or the older `rope.scale_linear`)
/// unless `rope.scaling.type` is "none"; for "yarn", ext_factor 1, the original context from
/// `rope.scaling.original_context_length`, and the attention factor that cancels ggml's own
/// magnitude correction (so cos/sin end up scaled by `rope.scaling.attn_factor`, default 1, up to
/// rounding). The type defaults to "linear" as in llama.cpp; any type but none/linear/yarn is an
/// error naming it.
fn rope_scaling(m: &Meta, n_ctx_train: usize) -> Result<(f32, RopeExt)> {
    let a = m.arch.name();
    let ty = m.opt_str("rope.scaling.type")?.unwrap_or_else(|| "linear".into());
    if !matches!(ty.as_str(), "none" | "linear" | "yarn") {
        return Err(Error::Model(format!(
            "{a}.rope.scaling.type = '{ty}' is not supported (supported: none, linear, yarn)"
        )));
    }
    let factor = match m.opt_f32("rope.scaling.factor")? {
        Some(f) => f,
        None => m.opt_f32("rope.scale_linear")?.unwrap_or(0.0),
    };
    let freq_scale = if ty == "none" || factor == 0.0 { 1.0 } else { 1.0 / factor };
    let mut ext = RopeExt {
        n_ctx_orig: m.opt_usize("rope.scaling.original_context_length")?.filter(|&n| n > 0).unwrap_or(n_ctx_train),
        ..RopeExt::NONE
    };
    if ty == "yarn" {
        ext.ext_factor = 1.0;
        // llama_context: attn_factor = get_mscale(factor) / (1 + 0.1·ln(factor)), which cancels
        // the 1 + 0.1·ln(1/freq_scale) ggml multiplies by (in f32, as llama.cpp computes it).
        let factor = 1.0 / freq_scale;
        let mscale = if factor <= 1.0 { 1.0 } else { 0.1 * 1.0 * factor.ln() + 1.0 };
        ext.attn_factor = mscale * (1.0 / (1.0 + 0.1 * factor.ln()));
    }
    ext.attn_factor *= m.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
    Ok((freq_scale, ext))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    /// A llama file's metadata (no tensors) with `extra` keys, read back.
    fn hparams(extra: &[(&str, Value)]) -> Result<HParams> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("llama-hparams-{}-{n}.gguf", std::process::id()));
        let mut w = GgufWriter::new(&path);
        w.add("general.architecture", Value::from("llama"));
        for (k, v) in [("llama.context_length", 4096u32), ("llama.embedding_length", 64), ("llama.block_count", 1)] {
            w.add(k, Value::U32(v));
        }
        w.add("llama.attention.head_count", Value::U32(4));
        w.add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
        for (k, v) in extra {
            w.add(format!("llama.{k}"), v.clone());
        }
        w.write(None).unwrap();
        let f = GgufFile::open(&path);
        let _ = std::fs::remove_file(&path);
        HParams::from_gguf(&f?, Arch("llama"))
    }

    #[test]
    fn rope_scaling_as_llamacpp_reads_it() {
        // No keys: plain rope; the original context is the training context.
        let h = hparams(&[]).unwrap();
        assert_eq!((h.rope_freq_scale, h.rope_ext), (1.0, RopeExt { n_ctx_orig: 4096, ..RopeExt::NONE }));
        // A factor without a type is linear (llama.cpp's default type).
        let h = hparams(&[("rope.scaling.factor", Value::F32(4.0))]).unwrap();
        assert_eq!((h.rope_freq_scale, h.rope_ext.ext_factor), (0.25, 0.0));
        // "none" ignores the factor.
        let h = hparams(&[("rope.scaling.type", Value::from("none")), ("rope.scaling.factor", Value::F32(4.0))]);
        assert_eq!(h.unwrap().rope_freq_scale, 1.0);
        // YaRN: extrapolation mix on, its original context, and an attention factor that cancels
        // ggml's 1 + 0.1·ln(factor) up to rounding.
        let h = hparams(&[
            ("rope.scaling.type", Value::from("yarn")),
            ("rope.scaling.factor", Value::F32(4.0)),
            ("rope.scaling.original_context_length", Value::U32(64)),
        ])
        .unwrap();
        assert_eq!((h.rope_freq_scale, h.rope_ext.ext_factor, h.rope_ext.n_ctx_orig), (0.25, 1.0, 64));
        assert!((h.rope_ext.attn_factor - 1.0).abs() < 1e-6, "{}", h.rope_ext.attn_factor);
        // Types we do not implement are refused by name.
        let e = hparams(&[("rope.scaling.type", Value::from("longrope"))]).unwrap_err();
        assert!(matches!(&e, Error::Model(m) if m.contains("'longrope' is not supported")), "{e}");
    }
}
