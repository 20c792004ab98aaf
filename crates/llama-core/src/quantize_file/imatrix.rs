//! Importance matrices as llama-quantize reads them (common/imatrix-loader.cpp + tools/quantize's
//! `load_imatrix`): the GGUF files llama-imatrix writes (`<tensor>.in_sum2` [n_mat][ne0] and
//! `<tensor>.counts` [n_mat], F32, with `imatrix.datasets` / `imatrix.chunk_count` /
//! `imatrix.chunk_size`), and the legacy `.dat` files (entries of name, ncall, values). Either way
//! each tensor gets one weight per column and expert: the mean squared activation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::gguf::{GgufFile, Value};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// Per-tensor importance weights, ready for the quantizers.
#[derive(Clone, Debug, Default)]
pub struct Imatrix {
    pub path: PathBuf,
    /// tensor name → weights [n_mat][ne0] (n_mat = experts, 1 for a plain matrix).
    pub entries: HashMap<String, Vec<f32>>,
    /// Dataset names recorded in the file (llama-quantize writes the first one into the model).
    pub datasets: Vec<String>,
    /// Chunks the statistics were computed on (0 when the file does not say).
    pub chunk_count: i32,
    pub is_legacy: bool,
}

impl Imatrix {
    /// Reads a GGUF imatrix, else (the file is not a GGUF) a legacy one, as llama.cpp does.
    pub fn load(path: &Path) -> Result<Imatrix> {
        let m = match GgufFile::open(path) {
            Ok(f) => Self::from_gguf(path, &f)?,
            Err(Error::Io { path, source }) => return Err(Error::Io { path, source }),
            Err(gguf_err) => {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                Self::from_legacy(path, &bytes).map_err(|legacy_err| {
                    Error::format(
                        path,
                        format!(
                            "neither a GGUF imatrix ({gguf_err}) nor a legacy .dat one ({})",
                            match legacy_err {
                                Error::Format { msg, .. } => msg,
                                e => e.to_string(),
                            }
                        ),
                    )
                })?
            }
        };
        for (name, v) in &m.entries {
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(Error::format(path, format!("entry '{name}' contains the non-finite value {x}")));
            }
        }
        Ok(m)
    }

    fn from_gguf(path: &Path, f: &GgufFile) -> Result<Imatrix> {
        let bad = |msg: String| Error::format(path, msg);
        if f.tensors().is_empty() {
            return Err(bad("no data (no tensors): not an imatrix file".into()));
        }
        let mut datasets = Vec::new();
        if let Some(Value::Array(_, items)) = f.get("imatrix.datasets") {
            datasets = items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
        }
        let has = |k: &str| f.get(k).is_some();
        if !(has("imatrix.datasets") && has("imatrix.chunk_count") && has("imatrix.chunk_size")) {
            return Err(bad("missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size): \
                 not an imatrix written by llama-imatrix"
                .into()));
        }
        let chunk_count = f.get_u32("imatrix.chunk_count")?.unwrap_or(0) as i32;
        // name → (in_sum2, counts)
        let mut pairs: HashMap<&str, (Option<usize>, Option<usize>)> = HashMap::new();
        for (i, t) in f.tensors().iter().enumerate() {
            if let Some(n) = t.name.strip_suffix(".in_sum2") {
                pairs.entry(n).or_default().0 = Some(i);
            } else if let Some(n) = t.name.strip_suffix(".counts") {
                pairs.entry(n).or_default().1 = Some(i);
            }
        }
        let mut entries = HashMap::new();
        for (name, (s, c)) in pairs {
            let (Some(s), Some(c)) = (s, c) else {
                return Err(bad(format!("mismatched sums and counts for '{name}'")));
            };
            let (ts, tc) = (&f.tensors()[s], &f.tensors()[c]);
            if ts.ggml_type != GgmlType::F32 || tc.ggml_type != GgmlType::F32 {
                return Err(bad(format!("sums and counts for '{name}' must be F32")));
            }
            let sums = f32s(f.tensor_data(ts));
            // C: std::lround of each count, kept as int64
            let counts: Vec<i64> = f32s(f.tensor_data(tc)).iter().map(|&c| c.round() as i64).collect();
            if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
                return Err(bad(format!("'{name}': {} sums do not split into {} experts", sums.len(), counts.len())));
            }
            let ne0 = sums.len() / counts.len();
            let mut e = vec![0f32; sums.len()];
            for (j, &count) in counts.iter().enumerate() {
                let count = count as f32;
                for i in 0..ne0 {
                    e[j * ne0 + i] = if count > 0.0 { sums[j * ne0 + i] / count } else { 1.0 };
                }
            }
            entries.insert(name.to_string(), e);
        }
        Ok(Imatrix { path: path.to_path_buf(), entries, datasets, chunk_count, is_legacy: false })
    }

    /// int32 n_entries, then per entry: int32 len, name, int32 ncall, int32 nval, f32[nval];
    /// optionally int32 chunk count and int32 len + dataset name.
    fn from_legacy(path: &Path, b: &[u8]) -> Result<Imatrix> {
        let mut pos = 0usize;
        let mut take = |n: usize, what: &str| -> Result<&[u8]> {
            let s = b
                .get(pos..pos.saturating_add(n))
                .ok_or_else(|| Error::format(path, format!("truncated at byte {pos} reading {what}")))?;
            pos += n;
            Ok(s)
        };
        fn i32_of(s: &[u8]) -> i32 {
            i32::from_le_bytes(s.try_into().expect("4 bytes"))
        }
        let n_entries = i32_of(take(4, "the entry count")?);
        if n_entries < 1 {
            return Err(Error::format(path, "no data in file"));
        }
        let mut entries = HashMap::new();
        for i in 0..n_entries {
            let len = i32_of(take(4, "a name length")?);
            let len = usize::try_from(len).map_err(|_| Error::format(path, format!("entry {i}: name length {len}")))?;
            let name = String::from_utf8_lossy(take(len, "a name")?);
            // C reads the name into a C string: it ends at the first NUL.
            let name = name.split('\0').next().unwrap_or("").to_string();
            let ncall = i32_of(take(4, "ncall")?) as i64;
            let nval = i32_of(take(4, "the value count")?);
            if nval < 1 {
                return Err(Error::format(path, format!("entry {i} ('{name}'): {nval} values")));
            }
            let sums = f32s(take(nval as usize * 4, "values")?);
            let e = if ncall > 0 { sums.iter().map(|&s| s / ncall as f32).collect() } else { sums };
            entries.insert(name, e);
        }
        let mut chunk_count = 0;
        let mut datasets = Vec::new();
        // The trailing chunk count and dataset name are optional.
        {
            if let Ok(n) = take(4, "the chunk count") {
                chunk_count = i32_of(n);
                if let Ok(l) = take(4, "the dataset name length") {
                    let l = i32_of(l);
                    if l > 0 {
                        if let Ok(d) = take(l as usize, "the dataset name") {
                            let d = String::from_utf8_lossy(d);
                            datasets.push(d.split('\0').next().unwrap_or("").to_string());
                        }
                    }
                }
            }
        }
        Ok(Imatrix { path: path.to_path_buf(), entries, datasets, chunk_count, is_legacy: true })
    }

    /// The weights for a tensor of `ne0` columns and `n_mat` matrices (experts), as llama.cpp
    /// picks them: none when the file has no entry for it; an error when the sizes disagree,
    /// except for the token embeddings, which then go without (llama.cpp's exception).
    pub fn for_tensor(&self, name: &str, ne0: u64, n_mat: u64) -> Result<Option<&[f32]>> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        if e.len() as u64 == ne0 * n_mat {
            return Ok(Some(e));
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return Ok(None);
        }
        Err(Error::InvalidArgument(format!(
            "{}: the importance matrix of '{name}' has {} values but the tensor has {ne0} columns × {n_mat} \
             matrices: this imatrix was computed for another model",
            self.path.display(),
            e.len()
        )))
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}
