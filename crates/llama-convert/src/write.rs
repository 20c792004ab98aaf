//! The GGUF output: metadata in llama.cpp's key order, tensor types as its converter picks them,
//! tensors streamed one at a time through `GgufWriter`'s `TensorSource::Stream`.

use std::path::Path;

use llama_core::gguf::{GgufWriter, TensorSource, Value, WriteProgress};
use llama_core::quant::GgmlType;
use llama_core::{Error, Result};

use crate::card::py_title;
use crate::plan::{OutTensor, Plan, RopeScaling};
use crate::tensor::{convert_elements, to_f32, unpermute_rope_rows};
use crate::vocab::Vocab;
use crate::OutType;

/// gguf-py `model_weight_count_rounded_notation(n, min_digits=2)`: "8.6M", "7B", "13B".
pub fn size_label(n: u64) -> String {
    let n = n as f64;
    let (x, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let r = x.round_ties_even() as u64; // Python's round()
    let digits = if r == 0 { 0 } else { r.to_string().len() };
    let fix = 2usize.saturating_sub(digits);
    format!("{x:.fix$}{suffix}")
}

/// gguf-py's `size_label` over the output tensors: with expert tensors (`*_exps.*`, 3-D),
/// "{n_expert}x{shared + one expert's parameters}", else the total.
fn plan_size_label(plan: &Plan) -> String {
    let (mut shared, mut expert, mut expert_sum, mut n_expert_tensors) = (0u64, 0u64, 0u64, 0u64);
    for t in &plan.tensors {
        let size = t.src.n_elements();
        // gguf-py: the expert count is dim -2 of a bias ([n_expert][n]), dim -3 of a weight
        let back = if t.name.contains(".bias") { 2 } else { 3 };
        if t.name.contains("_exps.") && t.src.shape.len() >= back {
            let n = t.src.shape[t.src.shape.len() - back];
            expert += size / n.max(1);
            expert_sum += n;
            n_expert_tensors += 1;
        } else {
            shared += size;
        }
    }
    match expert_sum.checked_div(n_expert_tensors) {
        Some(n) if n > 0 => format!("{n}x{}", size_label(shared + expert)),
        _ => size_label(plan.n_params),
    }
}

/// `general.name` as gguf-py's metadata heuristics derive it from the model folder name
/// (`Metadata.id_to_title`): dashes become spaces, all-lowercase words are title-cased unless
/// they look like a version ("v2") or start with a digit.
pub fn title_name(dir: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let id = canon.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    id.replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let has_cased = w.chars().any(|c| c.is_lowercase() || c.is_uppercase());
            let is_lower = has_cased && !w.chars().any(|c| c.is_uppercase());
            let versionish = w.starts_with(|c: char| c.is_ascii_digit())
                || (w.starts_with('v')
                    && w.len() > 1
                    && w[1..].split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())));
            if is_lower && !versionish {
                py_title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// llama.cpp's converter: 1-D tensors, norms, MoE routers (`ffn_gate_inp`), the SSM convolution
/// kernels and non-`.weight` tensors (biases) stay F32; other weights take the requested type;
/// Q8_0 rows not a multiple of 32 fall back to F16.
fn tensor_type(name: &str, n_dims: usize, row_len: u64, outtype: OutType) -> GgmlType {
    let router = name.ends_with(".ffn_gate_inp.weight") || name.ends_with(".ffn_gate_inp_shexp.weight");
    let ssm_conv = name.ends_with(".ssm_conv1d.weight");
    let positions = name == "position_embd.weight" || name == "token_types.weight";
    if n_dims <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight") || router || ssm_conv || positions {
        return GgmlType::F32;
    }
    match outtype {
        OutType::F32 => GgmlType::F32,
        OutType::F16 => GgmlType::F16,
        OutType::BF16 => GgmlType::BF16,
        OutType::Q8_0 if row_len.is_multiple_of(32) => GgmlType::Q8_0,
        OutType::Q8_0 => GgmlType::F16,
    }
}

/// Reads, un-permutes, transforms and converts one tensor (runs inside the writer, one tensor at a
/// time).
fn produce(t: &OutTensor, ty: GgmlType) -> Result<Vec<u8>> {
    let mut raw = t.src.read()?; // [n_elements * src elem size]
    if let Some(heads) = t.unpermute_heads {
        let rows = t.src.shape[0] as usize;
        let row_bytes = raw.len().checked_div(rows).unwrap_or(0);
        raw = unpermute_rope_rows(&raw, rows, row_bytes, heads as usize)
            .map_err(|m| Error::format(&t.src.file, format!("tensor '{}': {m}", t.src.name)))?;
    }
    let Some(f) = &t.transform else {
        return convert_elements(t.src.dtype, raw, ty);
    };
    let n = raw.len() / t.src.dtype.size();
    let x = f(to_f32(t.src.dtype, &raw)); // [n_elements]
    if x.len() != n {
        return Err(Error::format(
            &t.src.file,
            format!("tensor '{}': transform changed the element count", t.src.name),
        ));
    }
    let bytes = x.iter().flat_map(|v| v.to_le_bytes()).collect(); // [n_elements * 4]
    convert_elements(crate::tensor::DType::F32, bytes, ty)
}

/// `general` holds the authorship keys (`card::Metadata`), from `general.name` on; `None` for
/// `general.size_label` means the one computed from the tensors.
pub fn write_gguf(
    out: &Path,
    general: &crate::card::Metadata,
    plan: Plan,
    vocab: &Vocab,
    outtype: OutType,
    progress: bool,
) -> Result<()> {
    let h = &plan.hparams;
    let a = h.arch;
    let mut w = GgufWriter::new(out);
    // The model's keys, in the shared order unless the family states its own (`key_order`).
    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut add = |k: String, v: Value| kv.push((k, v));
    add("general.architecture".into(), Value::from(a));
    add("general.type".into(), Value::from("model"));
    let card = general.to_kv(plan_size_label(&plan));
    let card_keys: Vec<String> = card.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in card {
        add(k, v);
    }
    add(format!("{a}.block_count"), Value::U32(h.n_layer));
    add(format!("{a}.context_length"), Value::U32(h.n_ctx));
    add(format!("{a}.embedding_length"), Value::U32(h.n_embd));
    add(format!("{a}.feed_forward_length"), Value::U32(h.n_ff));
    add(format!("{a}.attention.head_count"), Value::U32(h.n_head));
    if h.head_count_kv_stated {
        add(format!("{a}.attention.head_count_kv"), Value::U32(h.n_head_kv));
    }
    if let Some(s) = h.rope_sections {
        add(format!("{a}.rope.dimension_sections"), Value::i32_array(s));
    }
    match &h.rope_scaling {
        None => {}
        Some(RopeScaling::Linear { factor }) => {
            add(format!("{a}.rope.scaling.type"), Value::from("linear"));
            add(format!("{a}.rope.scaling.factor"), Value::F32(*factor));
        }
        Some(RopeScaling::Yarn { factor, original_context_length, ext_factor, attn_factor, beta_fast, beta_slow }) => {
            add(format!("{a}.rope.scaling.type"), Value::from("yarn"));
            add(format!("{a}.rope.scaling.factor"), Value::F32(*factor));
            add(format!("{a}.rope.scaling.original_context_length"), Value::U32(*original_context_length));
            for (k, v) in [
                ("yarn_ext_factor", ext_factor),
                ("yarn_attn_factor", attn_factor),
                ("yarn_beta_fast", beta_fast),
                ("yarn_beta_slow", beta_slow),
            ] {
                if let Some(v) = v {
                    add(format!("{a}.rope.scaling.{k}"), Value::F32(*v));
                }
            }
        }
    }
    if let Some(t) = h.rope_theta {
        add(format!("{a}.rope.freq_base"), Value::F32(t));
    }
    if let Some(e) = h.rms_eps {
        add(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(e));
    }
    if let Some(e) = h.layer_norm_eps {
        add(format!("{a}.attention.layer_norm_epsilon"), Value::F32(e));
    }
    if let Some(n) = h.n_expert {
        add(format!("{a}.expert_count"), Value::U32(n));
    }
    if let Some(n) = h.n_expert_used {
        add(format!("{a}.expert_used_count"), Value::U32(n));
    }
    if let Some(d) = h.head_dim {
        add(format!("{a}.attention.key_length"), Value::U32(d));
        add(format!("{a}.attention.value_length"), Value::U32(d));
    }
    add("general.file_type".into(), Value::U32(outtype.file_type()));
    for (k, v) in &h.extra {
        add(format!("{a}.{k}"), v.clone());
    }
    if !h.key_order.is_empty() {
        let prefix = format!("{a}.");
        let rank = |k: &str| {
            // The authorship keys (name, size label, license, datasets …) stay one block, where
            // the family lists general.name: llama.cpp writes them before any model parameter.
            let k = if card_keys.iter().any(|c| c == k) { "general.name" } else { k };
            let short = if k.starts_with("general.") { k } else { k.strip_prefix(&prefix).unwrap_or(k) };
            h.key_order.iter().position(|o| *o == short).unwrap_or(usize::MAX)
        };
        kv.sort_by_key(|(k, _)| rank(k)); // stable: unlisted keys keep their order, last
    }
    for (k, v) in kv {
        w.add(k, v);
    }
    // llama.cpp's converter writes the quantization version with the model's keys, before the
    // tokenizer's (older ones wrote it last).
    w.add("general.quantization_version", Value::U32(2));
    if let Some(n) = vocab.token_type_count {
        w.add("tokenizer.ggml.token_type_count", Value::U32(n));
    }
    w.add("tokenizer.ggml.model", Value::from(vocab.model));
    w.add("tokenizer.ggml.pre", Value::from(vocab.pre.as_str()));
    w.add("tokenizer.ggml.tokens", Value::str_array(&vocab.tokens));
    if let Some(s) = &vocab.scores {
        w.add("tokenizer.ggml.scores", Value::f32_array(s.iter().copied()));
    }
    w.add("tokenizer.ggml.token_type", Value::i32_array(vocab.types.iter().copied()));
    if let Some(m) = &vocab.merges {
        w.add("tokenizer.ggml.merges", Value::str_array(m));
    }
    // gguf-py's GGUFWriter has no add_cls_token_id: SpecialVocab finds the id but drops it.
    for (k, id) in vocab.special_ids.iter().filter(|(k, _)| *k != "tokenizer.ggml.cls_token_id") {
        w.add(*k, Value::U32(*id));
    }
    for (k, b) in &vocab.add_special {
        w.add(*k, Value::Bool(*b));
    }
    if let Some(t) = &vocab.chat_template {
        w.add("tokenizer.chat_template", Value::from(t.as_str()));
    }
    if let Some(b) = vocab.normalizer_lowercase {
        w.add("tokenizer.ggml.normalizer.lowercase", Value::Bool(b));
    }
    if let Some(b) = vocab.normalizer_strip_accents {
        w.add("tokenizer.ggml.normalizer.strip_accents", Value::Bool(b));
    }
    for (k, b) in &vocab.flags_after_template {
        w.add(*k, Value::Bool(*b));
    }

    let mut descr = Vec::with_capacity(plan.tensors.len()); // one line per tensor, for progress
    for t in plan.tensors {
        let dims: Vec<u64> = t.src.shape.iter().rev().copied().collect(); // ggml order
        let ty = tensor_type(&t.name, dims.len(), dims.first().copied().unwrap_or(1), outtype);
        descr.push(format!("{:<28} {:<5} {:?}", t.name, ty.name(), dims));
        let name = t.name.clone();
        w.add_tensor(name, dims, ty, TensorSource::stream(move || produce(&t, ty)))?;
    }
    let n = descr.len();
    let mut report = |p: &WriteProgress| {
        eprintln!("[{:>3}/{n}] {}", p.tensor_index + 1, descr[p.tensor_index]);
    };
    w.write(if progress { Some(&mut report) } else { None })?;
    if progress {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
