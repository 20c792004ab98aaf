//! Which ggml type each tensor gets: llama.cpp's rules (src/llama-quant.cpp:
//! `tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`) for the file
//! types we write, re-expressed over tensor names and the model's hparams.
//!
//! The rules are stateful in the same way as llama.cpp's: attn_v and ffn_down tensors are counted
//! in file order (which is why the caller must visit tensors in llama.cpp's sorted order).

use crate::quant::GgmlType;
use crate::{Error, Result};

/// The llama.cpp file types (`enum llama_ftype`) this quantizer writes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    /// Q2_K with fewer exceptions; llama.cpp makes it only with an importance matrix.
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

impl FileType {
    pub const ALL: [FileType; 15] = {
        use FileType::*;
        [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K]
    };

    /// llama.cpp's `llama_ftype` number, stored as `general.file_type`.
    pub fn id(self) -> u32 {
        use FileType::*;
        match self {
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q2_K_S => 21,
            Q3_K_S => 11,
            Q3_K_M => 12,
            Q3_K_L => 13,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
        }
    }

    /// The name used on the command line and in the default output file name.
    pub fn name(self) -> &'static str {
        use FileType::*;
        match self {
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q2_K => "q2_k",
            Q2_K_S => "q2_k_s",
            Q3_K_S => "q3_k_s",
            Q3_K_M => "q3_k_m",
            Q3_K_L => "q3_k_l",
            Q4_K_S => "q4_k_s",
            Q4_K_M => "q4_k_m",
            Q5_K_S => "q5_k_s",
            Q5_K_M => "q5_k_m",
            Q6_K => "q6_k",
        }
    }

    /// llama.cpp file types whose quantizers llama-quantize only runs with an importance matrix
    /// (`tensor_requires_imatrix`: IQ1_*, IQ2_* and IQ3_XXS tensors, which these file types choose
    /// for most weights; IQ3_XS: for attn_k and the middle ffn_gate/up). We have no IQ quantizers,
    /// so these are refused by name. (Q2_K_S, the other one, is a FileType: `plan` refuses it
    /// without an imatrix.)
    pub const NEED_IMATRIX: [&'static str; 8] =
        ["iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs"];

    /// Case-insensitive; also accepts llama.cpp's spelling (`Q4_K_M`).
    pub fn parse(s: &str) -> Result<FileType> {
        let l = s.trim().to_ascii_lowercase();
        let names = || Self::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
        if Self::NEED_IMATRIX.contains(&l.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "quantization type '{s}' is made only with an importance matrix (llama-quantize refuses it \
                 without --imatrix), and this quantizer has no {s} quantizer; types available: {}",
                names()
            )));
        }
        Self::ALL.into_iter().find(|t| t.name() == l).ok_or_else(|| {
            Error::InvalidArgument(format!("unknown quantization type '{s}' (expected one of: {})", names()))
        })
    }

    /// llama.cpp's `llama_ftype_get_default_type`: the type of most 2-D weights.
    pub fn default_type(self) -> GgmlType {
        use FileType::*;
        match self {
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2_K | Q2_K_S => GgmlType::Q2_K,
            Q3_K_S | Q3_K_M | Q3_K_L => GgmlType::Q3_K,
            Q4_K_S | Q4_K_M => GgmlType::Q4_K,
            Q5_K_S | Q5_K_M => GgmlType::Q5_K,
            Q6_K => GgmlType::Q6_K,
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the type rules need to know about the model (llama.cpp reads the same from hparams).
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    pub arch: String,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_expert: u32,
}

impl ModelInfo {
    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }

    /// llama.cpp's LLM_TYPE_70B, as each architecture's `load_arch_hparams` sets it from the layer
    /// count: LLaMA (and its embedding variant) with 80 layers and grouped-query attention (not
    /// the 8-expert models, which get their own sizes), Qwen2 / DeciLM / OLMo with 80, Jais2 with 68.
    fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" | "llama-embed" => self.n_expert != 8 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" | "deci" | "olmo" => self.n_layer == 80,
            "jais2" => self.n_layer == 68,
            _ => false,
        }
    }

    /// hparams.n_gqa(0): query heads per KV head (0 when there are no KV heads).
    fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }
}

/// Broad tensor roles, as llama.cpp's `tensor_get_category` (first match wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

pub fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    const BY_SUBSTRING: [(&str, Category); 10] = [
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
        ("", Other),
    ];
    BY_SUBSTRING.iter().find(|(s, _)| name.contains(s)).map(|&(_, c)| c).unwrap_or(Other)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// ggml_n_dims: dimensions up to the last one larger than 1 (a [n, 1] tensor is 1-D).
pub fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Substrings of tensors that stay in their type although they are ≥ 2-D weights: tiny or
/// precision-critical tensors of other architectures (list from llama.cpp).
const KEEP_SUBSTRINGS: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// llama.cpp's `tensor_allows_quantization`: 2-D (or 3-D expert) weights, minus norms, position /
/// token-type embeddings and the small special tensors above.
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    n_dims(dims) >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !KEEP_SUBSTRINGS.iter().any(|s| name.contains(s))
}

/// llama.cpp's `tensor_requires_imatrix` for the types we write: Q2_K tensors of a Q2_K_S file
/// (except token_embd / output).
pub fn requires_imatrix(name: &str, dst: GgmlType, ftype: FileType) -> bool {
    let embd_or_output = matches!(name, "token_embd.weight" | "per_layer_token_embd.weight" | "output.weight");
    !embd_or_output && dst == GgmlType::Q2_K && ftype == FileType::Q2_K_S
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third in between.
fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// The layer number `blk.N.` of a name, as `sscanf(name, "blk.%d.")` reads it.
pub fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

/// The per-file state of the type rules: counters over attn_v / ffn_* tensors, in visit order.
pub struct Mixer<'m> {
    model: &'m ModelInfo,
    ftype: FileType,
    pure: bool,
    has_tied_embeddings: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    /// An importance matrix is given (llama.cpp's qs.has_imatrix: some rules change with it).
    pub has_imatrix: bool,
    /// Tensors whose row length forced a fallback type.
    pub n_fallback: usize,
}

impl<'m> Mixer<'m> {
    /// `names`: every tensor of the file (the counts llama.cpp takes before choosing).
    pub fn new<'a>(
        model: &'m ModelInfo,
        ftype: FileType,
        pure: bool,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let (mut n_attention_wv, mut has_output) = (0, false);
        for n in names {
            let c = category(n);
            n_attention_wv += is_attn_v_like(c) as i64;
            has_output |= c == Category::Output;
        }
        Mixer {
            model,
            ftype,
            pure,
            has_tied_embeddings: !has_output,
            n_attention_wv,
            i_attention_wv: 0,
            i_ffn_down: 0,
            has_imatrix: false,
            n_fallback: 0,
        }
    }

    /// The type for one tensor (call once per tensor, in file order). `None`: keep its type.
    pub fn choose(&mut self, name: &str, dims: &[u64]) -> Result<Option<GgmlType>> {
        if !allows_quantization(name, dims) {
            return Ok(None);
        }
        let mut t = self.ftype.default_type();
        if !self.pure {
            t = self.mix_type(t, name, dims)?;
        }
        Ok(Some(self.fallback(t, name, dims[0])?))
    }

    /// llama.cpp's `llama_tensor_get_type_impl`, restricted to the branches our file types reach
    /// (the IQ / TQ / MXFP4 file types and the imatrix-only rules are not among them).
    fn mix_type(&mut self, mut t: GgmlType, name: &str, dims: &[u64]) -> Result<GgmlType> {
        use Category::*;
        use FileType as F;
        use GgmlType as G;
        let (ft, m) = (self.ftype, self.model);
        let c = category(name);
        if c == Output || (self.has_tied_embeddings && c == TokenEmbd) {
            // The output projection (or the embeddings it shares) gets 6 bits unless it is Q8_0 already.
            if m.is_falcon() || !dims[0].is_multiple_of(t.block_size() as u64) {
                t = G::Q8_0;
            } else if t != G::Q8_0 {
                t = G::Q6_K;
            }
        } else if c == TokenEmbd {
            // Untied embeddings keep the file's type for these ftypes.
        } else if is_attn_v_like(c) {
            // attn_v is small (shared by the heads of a group) and sensitive: more bits.
            match ft {
                F::Q2_K => t = if m.n_gqa() >= 4 { G::Q4_K } else { G::Q3_K },
                F::Q2_K_S if m.n_gqa() >= 4 => t = G::Q4_K,
                F::Q3_K_M => t = if self.i_attention_wv < 2 { G::Q5_K } else { G::Q4_K },
                F::Q3_K_L => t = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(self.i_attention_wv, self.n_attention_wv) => t = G::Q6_K,
                F::Q4_K_S if self.i_attention_wv < 4 => t = G::Q5_K,
                _ => {}
            }
            if m.is_70b() && matches!(t, G::Q3_K | G::Q4_K) {
                t = G::Q5_K;
            }
            if m.n_expert == 8 {
                t = G::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if c == AttnK {
            if m.n_expert == 8 {
                t = G::Q8_0;
            }
        } else if c == FfnDown {
            let (i_layer, n_layer) = self.layer_info(self.i_ffn_down, name)?;
            match ft {
                F::Q2_K => t = G::Q3_K,
                F::Q2_K_S if i_layer < n_layer / 8 => t = G::Q4_K,
                F::Q3_K_M => {
                    t = if i_layer < n_layer / 16 {
                        G::Q5_K
                    } else if !m.is_falcon() || use_more_bits(i_layer, n_layer) {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                F::Q3_K_L => t = if m.is_falcon() { G::Q4_K } else { G::Q5_K },
                F::Q4_K_M => {
                    if m.is_falcon() {
                        t = if i_layer < n_layer / 16 {
                            G::Q6_K
                        } else if use_more_bits(i_layer, n_layer) {
                            G::Q5_K
                        } else {
                            G::Q4_K
                        };
                    } else if use_more_bits(i_layer, n_layer) {
                        t = G::Q6_K;
                    }
                }
                F::Q5_K_M if use_more_bits(i_layer, n_layer) => t = G::Q6_K,
                F::Q4_K_S if !m.is_falcon() && i_layer < n_layer / 8 => t = G::Q5_K,
                // Guards the first ffn_down layers of Q4_0/Q5_0, only with an imatrix (so files
                // made without one stay as they were).
                F::Q4_0 if self.has_imatrix && i_layer < n_layer / 8 => t = G::Q4_1,
                F::Q5_0 if self.has_imatrix && i_layer < n_layer / 8 => t = G::Q5_1,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if c == AttnOutput {
            if !m.is_falcon() {
                if m.n_expert == 8 {
                    if matches!(ft, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                        t = G::Q5_K;
                    }
                } else {
                    match ft {
                        F::Q2_K => t = G::Q3_K,
                        F::Q3_K_M => t = G::Q4_K,
                        F::Q3_K_L => t = G::Q5_K,
                        _ => {}
                    }
                }
            } else if ft == F::Q3_K_L {
                t = G::Q4_K;
            }
        } else if matches!(c, FfnGate | FfnUp) {
            // No rule of ours changes these, but llama.cpp still resolves their layer (and fails
            // on a name without one in a MoE model).
            self.layer_info(0, name)?;
        }
        // attn_qkv is attn_v-like above, so llama.cpp's own ATTENTION_QKV branch never runs.
        Ok(t)
    }

    /// Layer index for the ffn rules: the running counter, or for MoE models the name's `blk.N`.
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64)> {
        let n_layer = self.model.n_layer as i64;
        if self.model.n_expert > 1 {
            let l =
                layer_of(name).ok_or_else(|| Error::Model(format!("cannot determine the layer of tensor '{name}'")))?;
            if l < 0 || l >= n_layer {
                return Err(Error::Model(format!("tensor '{name}': layer {l} is outside [0, {n_layer})")));
            }
            return Ok((l, n_layer));
        }
        Ok((counter, n_layer))
    }

    /// llama.cpp's `tensor_type_fallback`: a row length that is not a whole number of blocks
    /// moves K-quants to the nearest 32-block type, and to F16 if even that does not fit.
    fn fallback(&mut self, t: GgmlType, name: &str, ne0: u64) -> Result<GgmlType> {
        use GgmlType as G;
        if ne0.is_multiple_of(t.block_size() as u64) {
            return Ok(t);
        }
        let f = match t {
            G::Q2_K | G::Q3_K => G::Q4_0,
            G::Q4_K => G::Q5_0,
            G::Q5_K => G::Q5_1,
            G::Q6_K => G::Q8_0,
            _ => {
                return Err(Error::InvalidArgument(format!(
                "tensor '{name}': row length {ne0} is not a multiple of {} as {t} needs, and {t} has no fallback type",
                t.block_size()
            )))
            }
        };
        self.n_fallback += 1;
        let f = if !ne0.is_multiple_of(f.block_size() as u64) { G::F16 } else { f };
        Ok(f)
    }
}
