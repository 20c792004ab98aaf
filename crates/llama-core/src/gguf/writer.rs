//! GGUF writer. Produces the layout llama.cpp and gguf-py produce — header, metadata in the order
//! given, tensor infos with offsets, zero padding to the alignment, then each tensor's data padded
//! to the alignment — so that reading a file and writing it back is byte-identical.
//!
//! Tensor data is pulled one tensor at a time (`TensorSource::Stream`), so a converter never holds
//! more than one tensor in memory. The output goes to `<path>.tmp` and is renamed on success; a
//! failed write leaves no partial file behind.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::reader::tensor_size;
use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// Where a tensor's bytes come from at write time.
pub enum TensorSource<'a> {
    /// Borrowed bytes (e.g. a slice of another mmapped GGUF).
    Bytes(&'a [u8]),
    /// Bytes already owned.
    Owned(Vec<u8>),
    /// Produced on demand, right before the tensor is written (streaming conversion).
    Stream(Box<dyn FnOnce() -> Result<Vec<u8>> + 'a>),
}

impl<'a> TensorSource<'a> {
    pub fn stream(f: impl FnOnce() -> Result<Vec<u8>> + 'a) -> Self {
        TensorSource::Stream(Box::new(f))
    }
}

/// Reported after each tensor has been written.
#[derive(Debug, Clone, Copy)]
pub struct WriteProgress<'n> {
    /// Index of the tensor just written (0-based).
    pub tensor_index: usize,
    pub n_tensors: usize,
    pub name: &'n str,
    /// Tensor data bytes written so far (padding included) / total.
    pub bytes_written: u64,
    pub bytes_total: u64,
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    n_bytes: u64,
    source: TensorSource<'a>,
}

pub struct GgufWriter<'a> {
    path: PathBuf,
    version: u32,
    pad_empty: bool,
    kv: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl<'a> GgufWriter<'a> {
    pub fn new(path: impl AsRef<Path>) -> Self {
        GgufWriter {
            path: path.as_ref().to_path_buf(),
            version: 3,
            pad_empty: false,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// GGUF version to write (2 or 3; the layouts are identical for little-endian files).
    /// Default 3. Used to reproduce v2 files byte for byte.
    pub fn set_version(&mut self, version: u32) {
        self.version = version;
    }

    /// Whether a file *without tensors* is padded to the alignment after its metadata. Both exist
    /// in the wild: gguf-py's vocab-only output ends right after the metadata (the default here),
    /// `write_tensors_to_file` with no tensors pads. Files with tensors are always padded.
    pub fn set_pad_empty(&mut self, pad: bool) {
        self.pad_empty = pad;
    }

    /// Appends a metadata entry; order is kept. Duplicates and ill-typed arrays are reported by
    /// `write`.
    pub fn add(&mut self, key: impl Into<String>, value: Value) {
        self.kv.push((key.into(), value));
    }

    /// Appends a tensor (dims in ggml order, `dims[0]` = row length). Fails if the dims do not fit
    /// the type's block layout.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: impl AsRef<[u64]>,
        ggml_type: GgmlType,
        source: TensorSource<'a>,
    ) -> Result<()> {
        let name = name.into();
        let dims = dims.as_ref().to_vec();
        let n_bytes = tensor_size(&name, &dims, ggml_type).map_err(|m| Error::format(&self.path, m))?;
        self.tensors.push(PendingTensor { name, dims, ggml_type, n_bytes, source });
        Ok(())
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(&self.path, msg)
    }

    fn alignment(&self) -> Result<u64> {
        match self.kv.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(*a as u64),
            Some(v) => Err(self.err(format!("general.alignment must be a power-of-two u32, got {v:?}"))),
        }
    }

    fn validate(&self) -> Result<()> {
        if !matches!(self.version, 2 | 3) {
            return Err(self.err(format!("cannot write GGUF version {}", self.version)));
        }
        let mut keys = HashSet::new();
        for (k, v) in &self.kv {
            if !keys.insert(k.as_str()) {
                return Err(self.err(format!("duplicate metadata key '{k}'")));
            }
            check_value(v, 0).map_err(|m| self.err(format!("metadata key '{k}': {m}")))?;
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(self.err(format!("duplicate tensor name '{}'", t.name)));
            }
        }
        Ok(())
    }

    /// Writes the file (to `<path>.tmp`, then renamed over `path`). `progress` is called after
    /// every tensor.
    pub fn write(self, progress: Option<&mut dyn FnMut(&WriteProgress)>) -> Result<()> {
        self.validate()?;
        let mut tmp: OsString = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let path = self.path.clone();
        let result = self.write_to(&tmp, progress);
        match result {
            Ok(()) => std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(&path, e)
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn write_to(self, tmp: &Path, mut progress: Option<&mut dyn FnMut(&WriteProgress)>) -> Result<()> {
        let align = self.alignment()?;
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let mut w = CountingWriter { inner: BufWriter::with_capacity(1 << 20, file), pos: 0, path: tmp };

        // Header.
        w.put(GGUF_MAGIC)?;
        w.put(&self.version.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.kv.len() as u64).to_le_bytes())?;

        for (k, v) in &self.kv {
            w.put_str(k.as_bytes())?;
            w.put(&v.value_type().id().to_le_bytes())?;
            write_value(&mut w, v)?;
        }

        // Tensor infos: offsets are assigned consecutively, each tensor padded to `align`.
        let mut offset = 0u64;
        for t in &self.tensors {
            w.put_str(t.name.as_bytes())?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ggml_type.id().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            offset = offset
                .checked_add(t.n_bytes.div_ceil(align) * align)
                .ok_or_else(|| Error::format(&self.path, "total tensor data size overflows u64"))?;
        }
        let bytes_total = offset;

        // A metadata-only file normally ends right after the metadata (see `set_pad_empty`).
        if !self.tensors.is_empty() || self.pad_empty {
            w.pad(align)?;
        }

        let n_tensors = self.tensors.len();
        let data_start = w.pos;
        for (i, t) in self.tensors.into_iter().enumerate() {
            let owned;
            let data: &[u8] = match t.source {
                TensorSource::Bytes(b) => b,
                TensorSource::Owned(v) => {
                    owned = v;
                    &owned
                }
                TensorSource::Stream(f) => {
                    owned = f()?;
                    &owned
                }
            };
            if data.len() as u64 != t.n_bytes {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "tensor '{}' ({} {:?}) needs {} bytes of data, its source gave {}",
                        t.name,
                        t.ggml_type,
                        t.dims,
                        t.n_bytes,
                        data.len()
                    ),
                ));
            }
            w.put(data)?;
            w.pad(align)?;
            if let Some(cb) = progress.as_mut() {
                cb(&WriteProgress {
                    tensor_index: i,
                    n_tensors,
                    name: &t.name,
                    bytes_written: w.pos - data_start,
                    bytes_total,
                });
            }
        }
        w.inner.flush().map_err(|e| Error::io(tmp, e))?;
        Ok(())
    }
}

/// Arrays must be homogeneous and not nested absurdly deep (the reader would reject them).
fn check_value(v: &Value, depth: usize) -> std::result::Result<(), String> {
    if let Value::Array(et, items) = v {
        if depth + 1 >= super::MAX_ARRAY_DEPTH && *et == ValueType::Array {
            return Err(format!("arrays nested deeper than {}", super::MAX_ARRAY_DEPTH));
        }
        for (i, it) in items.iter().enumerate() {
            if it.value_type() != *et {
                return Err(format!("array of {et} has an item #{i} of type {}", it.value_type()));
            }
            check_value(it, depth + 1)?;
        }
    }
    Ok(())
}

struct CountingWriter<'p> {
    inner: BufWriter<File>,
    /// Bytes written so far = current file offset.
    pos: u64,
    path: &'p Path,
}

impl CountingWriter<'_> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.inner.write_all(b).map_err(|e| Error::io(self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn put_str(&mut self, s: &[u8]) -> Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s)
    }

    /// Zero bytes up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> Result<()> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut n = (self.pos.div_ceil(align) * align - self.pos) as usize;
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.put(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }
}

/// The value payload (no type tag: the caller wrote it, or it is implied by the array type).
fn write_value(w: &mut CountingWriter, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => w.put(&x.to_le_bytes()),
        Value::I8(x) => w.put(&x.to_le_bytes()),
        Value::U16(x) => w.put(&x.to_le_bytes()),
        Value::I16(x) => w.put(&x.to_le_bytes()),
        Value::U32(x) => w.put(&x.to_le_bytes()),
        Value::I32(x) => w.put(&x.to_le_bytes()),
        Value::U64(x) => w.put(&x.to_le_bytes()),
        Value::I64(x) => w.put(&x.to_le_bytes()),
        Value::F32(x) => w.put(&x.to_le_bytes()),
        Value::F64(x) => w.put(&x.to_le_bytes()),
        Value::Bool(b) => w.put(&[*b as u8]),
        Value::String(s) => w.put_str(s.as_bytes()),
        Value::Array(et, items) => {
            w.put(&et.id().to_le_bytes())?;
            w.put(&(items.len() as u64).to_le_bytes())?;
            for it in items {
                write_value(w, it)?;
            }
            Ok(())
        }
    }
}
