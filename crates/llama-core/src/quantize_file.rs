//! File-level quantization, as `llama-quantize` does it: an F32/F16/BF16 GGUF in, a GGUF with the
//! 2-D weights in a quantized type out.
//!
//! What llama.cpp does and we reproduce (so files are interchangeable, and byte-identical where the
//! quantizers are): tensors in llama.cpp's order (non-layer tensors by name, then `blk.N` by layer
//! number, then by name); every metadata entry copied in order, `general.quantization_version`
//! and `general.file_type` moved to the end with new values, split keys dropped; the per-tensor
//! type from llama.cpp's rules (`mix`), or the file's type for every 2-D weight with `pure`; the
//! data quantized row by row with the reference quantizers, no importance matrix.
//!
//! Memory stays at about one tensor: the source is mmapped, each output tensor is produced by a
//! `TensorSource::Stream` closure right before it is written, and the writer goes through a temp
//! file that is renamed at the end (an interrupted run leaves nothing behind).

mod imatrix;
mod mix;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub use imatrix::Imatrix;
pub use mix::{allows_quantization, category, layer_of, n_dims, Category, FileType, Mixer, ModelInfo};

use crate::gguf::{GgufFile, GgufWriter, TensorInfo, TensorSource, Value};
use crate::kernels::ThreadPool;
use crate::quant::{dequantize_row, quantize_row, quantize_row_weighted, GgmlType};
use crate::{Error, Result};

/// ggml's GGML_QNT_VERSION, written as `general.quantization_version`.
pub const QNT_VERSION: u32 = 2;

/// Keys llama.cpp drops: a quantized file is written whole, never as shards.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// Names tried, in order, when the input is a model folder.
pub const FOLDER_INPUTS: [&str; 3] = ["ggml-model-f16.gguf", "ggml-model-bf16.gguf", "ggml-model-f32.gguf"];

#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub file_type: FileType,
    /// Every quantizable weight in `file_type`'s type (row-length fallbacks still apply).
    pub pure: bool,
    /// 0 = all cores.
    pub n_threads: usize,
    /// llama-quantize's `--imatrix`: per-column importance weights for the quantizers (and the
    /// mix rules that change with one).
    pub imatrix: Option<std::sync::Arc<Imatrix>>,
}

impl QuantizeOptions {
    pub fn new(file_type: FileType, pure: bool, n_threads: usize) -> Self {
        QuantizeOptions { file_type, pure, n_threads, imatrix: None }
    }
}

/// One output tensor.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order (`dims[0]` = row length).
    pub dims: Vec<u64>,
    pub src_type: GgmlType,
    pub dst_type: GgmlType,
    pub src_bytes: u64,
    pub dst_bytes: u64,
}

impl TensorPlan {
    /// True when the data is converted (not copied as is).
    pub fn converts(&self) -> bool {
        self.src_type != self.dst_type
    }
}

/// The output layout: tensors in write order with their types.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tensors: Vec<TensorPlan>,
    pub model: ModelInfo,
    /// Tensors whose row length forced a fallback type.
    pub n_fallback: usize,
}

/// Reported after each tensor is written.
pub struct TensorEvent<'a> {
    /// 0-based.
    pub index: usize,
    pub n_tensors: usize,
    pub plan: &'a TensorPlan,
}

#[derive(Clone, Debug)]
pub struct QuantizeReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub file_type: FileType,
    pub n_tensors: usize,
    pub n_quantized: usize,
    pub n_fallback: usize,
    /// Parameters (elements of every tensor).
    pub n_elements: u64,
    /// Tensor data only, without padding.
    pub src_tensor_bytes: u64,
    pub dst_tensor_bytes: u64,
    pub src_file_bytes: u64,
    pub dst_file_bytes: u64,
    pub n_threads: usize,
    pub seconds: f64,
}

/// A model folder → the F16 (else BF16, else F32) GGUF in it; a file → itself.
pub fn resolve_input(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    FOLDER_INPUTS.iter().map(|n| path.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{}: a folder without {} (convert the model first, or pass the GGUF file)",
            path.display(),
            FOLDER_INPUTS.join(" / ")
        ))
    })
}

/// `ggml-model-<type>.gguf` beside the input file.
pub fn default_output(input: &Path, file_type: FileType) -> PathBuf {
    let dir = input.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!("ggml-model-{}.gguf", file_type.name()))
}

/// Order of llama.cpp's `weight_name_comparer`: by `blk.N` layer (non-layer tensors count as -1),
/// then by name (byte order).
pub fn llama_cpp_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (la, lb) = (layer_of(a).unwrap_or(-1), layer_of(b).unwrap_or(-1));
    la.cmp(&lb).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn model_info(f: &GgufFile) -> Result<ModelInfo> {
    let arch = f
        .get_str("general.architecture")?
        .ok_or_else(|| {
            Error::Model(format!("{}: no general.architecture, so this is not a model file", f.path.display()))
        })?
        .to_string();
    // Per-layer arrays (some architectures) count by their first entry.
    let int = |key: String| -> Result<Option<u32>> {
        let v = match f.get(&key) {
            None => return Ok(None),
            Some(Value::Array(_, items)) => items.first(),
            Some(v) => Some(v),
        };
        match v.and_then(|v| v.as_int()) {
            Some(i) if (0..=u32::MAX as i128).contains(&i) => Ok(Some(i as u32)),
            Some(i) => Err(Error::Model(format!("{}: {key} = {i} is out of range", f.path.display()))),
            None => Err(Error::Model(format!("{}: {key} is not an integer", f.path.display()))),
        }
    };
    let n_layer = int(format!("{arch}.block_count"))?
        .ok_or_else(|| Error::Model(format!("{}: no {arch}.block_count", f.path.display())))?;
    let n_head = int(format!("{arch}.attention.head_count"))?.unwrap_or(0);
    let n_head_kv = int(format!("{arch}.attention.head_count_kv"))?.unwrap_or(n_head);
    let n_expert = int(format!("{arch}.expert_count"))?.unwrap_or(0);
    Ok(ModelInfo { arch, n_layer, n_head, n_head_kv, n_expert })
}

/// Tensors in llama.cpp's order.
fn ordered(f: &GgufFile) -> Vec<&TensorInfo> {
    let mut v: Vec<&TensorInfo> = f.tensors().iter().collect();
    v.sort_by(|a, b| llama_cpp_order(&a.name, &b.name));
    v
}

/// Matrices (experts) in a tensor of ggml dims [ne0, ne1, ...]: the product past the first two.
/// llama.cpp sizes an importance matrix entry as ne0 × ne2; for the (unseen) 4-D weights this
/// also counts ne3, so every row's expert index stays inside the entry.
fn n_matrices(dims: &[u64]) -> u64 {
    dims.iter().skip(2).product()
}

/// Decides every tensor's output type without writing anything. With an importance matrix, also
/// checks it against the model: every tensor whose type needs one must have an entry, and entries
/// must have the tensor's size.
pub fn plan(f: &GgufFile, file_type: FileType, pure: bool, imatrix: Option<&Imatrix>) -> Result<Plan> {
    let model = model_info(f)?;
    let tensors = ordered(f);
    let mut mixer = Mixer::new(&model, file_type, pure, tensors.iter().map(|t| t.name.as_str()));
    mixer.has_imatrix = imatrix.is_some();
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let dst_type = mixer.choose(&t.name, &t.dims)?.unwrap_or(t.ggml_type);
        if dst_type != t.ggml_type && !matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(Error::InvalidArgument(format!(
                "{}: tensor '{}' is already {} (requantizing loses accuracy twice); quantize from the F32/F16/BF16 file",
                f.path.display(),
                t.name,
                t.ggml_type
            )));
        }
        if dst_type != t.ggml_type {
            let n_mat = n_matrices(&t.dims);
            let has_weights = match imatrix {
                Some(m) => m.for_tensor(&t.name, t.dims[0], n_mat)?.is_some(),
                None => false,
            };
            if !has_weights && mix::requires_imatrix(&t.name, dst_type, file_type) {
                return Err(Error::InvalidArgument(match imatrix {
                    None => format!(
                        "{file_type} needs an importance matrix (--imatrix FILE, as llama-quantize): tensor '{}' is {dst_type}",
                        t.name
                    ),
                    Some(m) => format!(
                        "{}: no importance matrix for tensor '{}', which {file_type} makes {dst_type} and \
                         llama.cpp quantizes only with one (an imatrix of another model, or one made \
                         with that tensor excluded)",
                        m.path.display(),
                        t.name
                    ),
                }));
            }
        }
        let dst_bytes = dst_type.row_size(t.dims[0]).map(|r| r * t.n_rows()).ok_or_else(|| {
            Error::InvalidArgument(format!("tensor '{}': row length {} does not fit {dst_type}", t.name, t.dims[0]))
        })?;
        out.push(TensorPlan {
            name: t.name.clone(),
            dims: t.dims.clone(),
            src_type: t.ggml_type,
            dst_type,
            src_bytes: t.n_bytes,
            dst_bytes,
        });
    }
    let n_fallback = mixer.n_fallback;
    Ok(Plan { tensors: out, model, n_fallback })
}

/// Metadata of the output: the input's entries in order, minus split keys, with the quantization
/// version and file type re-set (llama.cpp's gguf_set_val removes a key and appends it), then
/// what llama-quantize records of an importance matrix (its path as given and first dataset, each
/// cut to 127 bytes, the entry count, the chunk count when known).
pub fn output_metadata(f: &GgufFile, file_type: FileType, imatrix: Option<&Imatrix>) -> Vec<(String, Value)> {
    const QV: &str = "general.quantization_version";
    const FT: &str = "general.file_type";
    let mut kv: Vec<(String, Value)> =
        f.metadata().iter().filter(|(k, _)| k != QV && k != FT && !SPLIT_KEYS.contains(&k.as_str())).cloned().collect();
    kv.push((QV.to_string(), Value::U32(QNT_VERSION)));
    kv.push((FT.to_string(), Value::U32(file_type.id())));
    if let Some(m) = imatrix {
        let mut set = |k: &str, v: Value| {
            kv.retain(|(key, _)| key != k);
            kv.push((k.to_string(), v));
        };
        let str127 = |s: &[u8]| Value::String(crate::gguf::GgufString(s[..s.len().min(127)].to_vec()));
        set("quantize.imatrix.file", str127(m.path.as_os_str().as_encoded_bytes()));
        if let Some(d) = m.datasets.first() {
            set("quantize.imatrix.dataset", str127(d.as_bytes()));
        }
        set("quantize.imatrix.entries_count", Value::U32(m.entries.len() as u32));
        if m.chunk_count > 0 {
            set("quantize.imatrix.chunks_count", Value::U32(m.chunk_count as u32));
        }
    }
    kv
}

/// Converts one tensor to `dst` row by row on the pool. Rows are independent, so any split
/// gives the same bytes; chunks of ≥ 16K elements keep the per-chunk overhead negligible.
/// `qw`: importance weights [n_mat][ne0], the row's matrix (expert) chosen as row / ne1.
fn convert_tensor(
    f: &GgufFile,
    info: &TensorInfo,
    dst: GgmlType,
    qw: Option<&[f32]>,
    pool: &ThreadPool,
) -> Result<Vec<u8>> {
    let src = f.tensor_data(info);
    let ne0 = info.dims[0] as usize;
    let ne1 = info.dims.get(1).map_or(1, |&d| d as usize).max(1);
    let n_rows = info.n_rows() as usize;
    let src_row = info.row_size() as usize;
    let dst_row = dst
        .row_size(ne0 as u64)
        .ok_or_else(|| Error::InvalidArgument(format!("tensor '{}': row length {ne0} does not fit {dst}", info.name)))?
        as usize;
    let mut out = vec![0u8; n_rows * dst_row]; // [n_rows, dst_row] bytes
    if n_rows == 0 || dst_row == 0 {
        return Ok(out);
    }
    let rows_per_chunk = (32 * 512usize).div_ceil(ne0).max(1);
    let chunks: Vec<Mutex<&mut [u8]>> = out.chunks_mut(rows_per_chunk * dst_row).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    pool.run(|_, _| {
        let mut row = vec![0f32; ne0]; // [ne0] one source row in f32
        loop {
            let ci = next.fetch_add(1, Ordering::Relaxed);
            if ci >= chunks.len() {
                break;
            }
            // Each chunk index is taken by exactly one thread, so the lock is never contended.
            let mut chunk = chunks[ci].lock().unwrap_or_else(|e| e.into_inner());
            let r0 = ci * rows_per_chunk;
            let res = chunk.chunks_exact_mut(dst_row).enumerate().try_for_each(|(k, d)| {
                let r = r0 + k;
                dequantize_row(info.ggml_type, &src[r * src_row..(r + 1) * src_row], &mut row)?;
                if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                    return Err(Error::Model(format!(
                        "{}: tensor '{}' row {r} element {i} is {} (cannot be quantized)",
                        f.path.display(),
                        info.name,
                        row[i]
                    )));
                }
                match qw {
                    Some(w) => {
                        let m = r / ne1;
                        quantize_row_weighted(dst, &row, d, &w[m * ne0..(m + 1) * ne0])
                    }
                    None => quantize_row(dst, &row, d),
                }
            });
            if let Err(e) = res {
                let mut slot = first_err.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(e);
                next.store(chunks.len(), Ordering::Relaxed); // stop the other threads early
                break;
            }
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    drop(chunks);
    Ok(out)
}

/// Quantizes `input` (a GGUF file, or a model folder holding `ggml-model-f16.gguf`) to `output`
/// (default: `ggml-model-<type>.gguf` beside the input). `progress` is called after every tensor;
/// returning false stops the run with `Error::Interrupted` and no output file.
pub fn quantize_file(
    input: &Path,
    output: Option<&Path>,
    opts: &QuantizeOptions,
    mut progress: Option<&mut dyn FnMut(&TensorEvent) -> bool>,
) -> Result<QuantizeReport> {
    let t0 = Instant::now();
    let input = resolve_input(input)?;
    let output = output.map(Path::to_path_buf).unwrap_or_else(|| default_output(&input, opts.file_type));
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(Error::InvalidArgument(format!("{}: output would overwrite the input", output.display())));
        }
    }
    let f = GgufFile::open(&input)?;
    let imatrix = opts.imatrix.as_deref();
    let plan = plan(&f, opts.file_type, opts.pure, imatrix)?;
    let n_threads = match opts.n_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let pool = ThreadPool::new(n_threads);
    let stop = Cell::new(false);

    let mut w = GgufWriter::new(&output);
    for (k, v) in output_metadata(&f, opts.file_type, imatrix) {
        w.add(k, v);
    }
    for p in &plan.tensors {
        let info = f.tensor(&p.name).expect("planned tensors come from the file");
        let source = if p.converts() {
            let (f, pool, stop, dst) = (&f, &pool, &stop, p.dst_type);
            let n_mat = n_matrices(&info.dims);
            let qw = match imatrix {
                Some(m) => m.for_tensor(&info.name, info.dims[0], n_mat)?,
                None => None,
            };
            TensorSource::stream(move || {
                if stop.get() {
                    return Err(Error::Interrupted);
                }
                convert_tensor(f, info, dst, qw, pool)
            })
        } else {
            TensorSource::Bytes(f.tensor_data(info))
        };
        w.add_tensor(&p.name, &p.dims, p.dst_type, source)?;
    }
    let n_tensors = plan.tensors.len();
    let mut on_written = |wp: &crate::gguf::WriteProgress| {
        if let Some(cb) = progress.as_mut() {
            if !cb(&TensorEvent { index: wp.tensor_index, n_tensors, plan: &plan.tensors[wp.tensor_index] }) {
                stop.set(true);
            }
        }
    };
    w.write(Some(&mut on_written))?;
    if stop.get() {
        // The last tensor was written before the stop request was seen: discard the file anyway.
        let _ = std::fs::remove_file(&output);
        return Err(Error::Interrupted);
    }

    let file_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(|e| Error::io(p, e));
    Ok(QuantizeReport {
        src_file_bytes: file_size(&input)?,
        dst_file_bytes: file_size(&output)?,
        input,
        output,
        file_type: opts.file_type,
        n_tensors,
        n_quantized: plan.tensors.iter().filter(|p| p.converts()).count(),
        n_fallback: plan.n_fallback,
        n_elements: plan.tensors.iter().map(|p| p.dims.iter().product::<u64>()).sum(),
        src_tensor_bytes: plan.tensors.iter().map(|p| p.src_bytes).sum(),
        dst_tensor_bytes: plan.tensors.iter().map(|p| p.dst_bytes).sum(),
        n_threads,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
