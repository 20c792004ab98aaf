//! safetensors: `u64` LE header length, JSON header `{name: {dtype, shape, data_offsets}}`, then
//! the raw little-endian data. Every entry is validated against the file before use: offsets in
//! range, `end - begin == product(shape) · dtype size`.

use std::path::Path;

use llama_core::{Error, Result};
use serde_json::Value as Json;

use crate::pth::mmap_file;
use crate::tensor::{DType, Data, SrcTensor};

/// Loads the tensor index of one safetensors file, tensors in name order (as llama.cpp iterates).
pub fn load_safetensors(path: &Path) -> Result<Vec<SrcTensor>> {
    let mmap = mmap_file(path)?;
    let bad = |msg: String| Error::format(path, msg);
    let len = mmap.len() as u64;
    if len < 8 {
        return Err(bad(format!("{len} bytes: too short for a safetensors header")));
    }
    let n = u64::from_le_bytes(mmap[..8].try_into().unwrap());
    let data_start = 8u64
        .checked_add(n)
        .filter(|&e| e <= len)
        .ok_or_else(|| bad(format!("header claims {n} bytes but the file has {}", len - 8)))?;
    let header: Json = serde_json::from_slice(&mmap[8..data_start as usize])
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let obj = header.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_len = len - data_start;

    let mut names: Vec<&String> = obj.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let e = &obj[name];
        let tbad = |m: &str| bad(format!("tensor '{name}': {m}"));
        // Integer position-id buffers (BERT's `embeddings.position_ids`, I64) are not weights:
        // every converter drops them, so they are skipped rather than refused.
        if name.ends_with("position_ids") && matches!(e.get("dtype").and_then(Json::as_str), Some("I64" | "I32")) {
            continue;
        }
        let dtype = match e.get("dtype").and_then(Json::as_str) {
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F32") => DType::F32,
            Some(other) => return Err(tbad(&format!("unsupported dtype {other} (F16, BF16, F32 are)"))),
            None => return Err(tbad("missing dtype")),
        };
        let shape: Vec<u64> = e
            .get("shape")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(Json::as_u64).collect())
            .ok_or_else(|| tbad("missing or invalid shape"))?;
        let offs: Vec<u64> = e
            .get("data_offsets")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(Json::as_u64).collect())
            .filter(|v: &Vec<u64>| v.len() == 2)
            .ok_or_else(|| tbad("missing or invalid data_offsets"))?;
        let (b, end) = (offs[0], offs[1]);
        if b > end || end > data_len {
            return Err(tbad(&format!(
                "data_offsets [{b}, {end}] outside the {data_len} data bytes of the file (truncated?)"
            )));
        }
        let want = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| tbad("shape product overflows"))?;
        if end - b != want {
            return Err(tbad(&format!("{} data bytes but shape {shape:?} of {} needs {want}", end - b, dtype.name())));
        }
        // Contiguous row-major strides.
        let mut stride = vec![1u64; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            stride[k] = stride[k + 1] * shape[k + 1];
        }
        out.push(SrcTensor {
            name: name.clone(),
            file: path.to_path_buf(),
            dtype,
            shape,
            data: Data::View { mmap: mmap.clone(), base: (data_start + b) as usize, offset: 0, stride },
        });
    }
    Ok(out)
}
