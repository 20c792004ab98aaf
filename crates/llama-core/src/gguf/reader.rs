//! GGUF parser. Every count, length and offset is checked against the bytes that remain before it
//! is used, so a hostile file yields `Error::Format` (naming the file and what is wrong) and never a
//! panic, a huge allocation or a hang: all work is bounded by the file size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::value::{GgufString, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// One tensor's header entry, validated against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (contiguous), 1 ≤ len ≤ 4, every dim ≥ 1.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to `GgufFile::data_offset`; a multiple of the file's alignment.
    pub offset: u64,
    /// Exact byte size of the data (`n_rows × row_size(dims[0])`), without padding.
    pub n_bytes: u64,
    /// Part of a split model holding the data (0: this file; i: `GgufFile`'s i-th other part).
    pub shard: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // Validated at parse time not to overflow.
        self.dims.iter().product()
    }

    /// Number of rows: product of every dim but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }

    /// Bytes of one row (`dims[0]` elements); validated at parse time.
    pub fn row_size(&self) -> u64 {
        self.ggml_type.row_size(self.dims[0]).unwrap_or(0)
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
}

/// A parsed GGUF file. Tensor data stays in the (read-only) mapping; `tensor_data` hands out
/// zero-copy slices of it.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub alignment: u64,
    /// Absolute file offset of the tensor data section (aligned end of the tensor infos).
    pub data_offset: u64,
    metadata: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    backing: Backing,
    /// The other parts of a split model (llama.cpp's gguf-split: `PREFIX-0000i-of-0000N.gguf`),
    /// whose tensors are listed in `tensors` with their `shard`.
    parts: Vec<GgufFile>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps the file read-only and parses its header; tensor data is not touched. The first part
    /// of a split model opens the others too (`with_parts`).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        Self::map_one(path.as_ref())?.with_parts(Self::map_one)
    }

    fn map_one(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::format(path, "file is empty (not a GGUF file)"));
        }
        // SAFETY: the mapping is read-only and lives as long as `self`; all access goes through
        // bounds-checked slices. Like every mmap-based loader (llama.cpp included) we accept that
        // another process truncating or rewriting the file while it is mapped is undefined
        // behaviour; model files are not modified in place.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), Backing::Mmap(mmap))
    }

    /// Reads the whole file (every part of a split model) into memory and parses its header
    /// (llama.cpp's `--no-mmap`): the weights then live in this process's memory, not in the page
    /// cache's mapping of the file.
    pub fn read(path: impl AsRef<Path>) -> Result<GgufFile> {
        Self::read_one(path.as_ref())?.with_parts(Self::read_one)
    }

    fn read_one(path: &Path) -> Result<GgufFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.is_empty() {
            return Err(Error::format(path, "file is empty (not a GGUF file)"));
        }
        Self::parse(path.to_path_buf(), Backing::Bytes(bytes))
    }

    /// The first part of a split model gathers the others (found by llama.cpp's naming, beside
    /// it) and lists their tensors too; a file that is not split is returned as it is. Opening a
    /// later part, a missing or mismatched part, or a tensor in two parts is an error naming it.
    fn with_parts(mut self, open: impl Fn(&Path) -> Result<GgufFile>) -> Result<GgufFile> {
        let count = self.get_u32("split.count")?.unwrap_or(1) as usize;
        if count <= 1 {
            return Ok(self);
        }
        let no = self.get_u32("split.no")?.unwrap_or(0) as usize;
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let suffix = format!("-{:05}-of-{count:05}.gguf", no + 1);
        let Some(prefix) = name.strip_suffix(&suffix) else {
            return Err(Error::format(
                &self.path,
                format!(
                    "part {} of a {count}-part split model, but not named PREFIX{suffix} as llama.cpp names parts",
                    no + 1
                ),
            ));
        };
        if no != 0 {
            let first = self.path.with_file_name(format!("{prefix}-00001-of-{count:05}.gguf"));
            return Err(Error::format(
                &self.path,
                format!("part {} of a {count}-part split model: open the first part, {}", no + 1, first.display()),
            ));
        }
        for i in 1..count {
            let p = self.path.with_file_name(format!("{prefix}-{:05}-of-{count:05}.gguf", i + 1));
            if !p.exists() {
                return Err(Error::format(
                    &self.path,
                    format!("part {} of this {count}-part split model is missing: {}", i + 1, p.display()),
                ));
            }
            let part = open(&p)?;
            let (pno, pcount) = (part.get_u32("split.no")?, part.get_u32("split.count")?);
            if pno != Some(i as u32) || pcount != Some(count as u32) {
                return Err(Error::format(
                    &p,
                    format!("not part {} of {count} (its split.no / split.count disagree)", i + 1),
                ));
            }
            for t in &part.tensors {
                if self.tensor_index.contains_key(&t.name) {
                    return Err(Error::format(&p, format!("tensor '{}' is also in an earlier part", t.name)));
                }
                self.tensor_index.insert(t.name.clone(), self.tensors.len());
                self.tensors.push(TensorInfo { shard: i, ..t.clone() });
            }
            self.parts.push(part);
        }
        if let Some(n) = self.get_u64("split.tensors.count")? {
            if n != self.tensors.len() as u64 {
                return Err(Error::format(
                    &self.path,
                    format!("split.tensors.count = {n}, but the {count} parts hold {} tensors", self.tensors.len()),
                ));
            }
        }
        Ok(self)
    }

    /// Parses an in-memory GGUF image (same parser as `open`; used by fuzzing and tests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(PathBuf::from("<memory>"), Backing::Bytes(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<GgufFile> {
        let bytes: &[u8] = match &backing {
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        };
        let p = parse_header(&path, bytes)?;
        Ok(GgufFile {
            path,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            kv_index: p.kv_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            backing,
            parts: Vec::new(),
        })
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        }
    }

    pub fn file_size(&self) -> u64 {
        self.as_bytes().len() as u64
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong_type(&self, key: &str, v: &Value, expected: &str) -> Error {
        Error::format(&self.path, format!("metadata key '{key}' has type {}, expected {expected}", v.value_type()))
    }

    /// A UTF-8 string value; a non-string or invalid UTF-8 is an error naming the key.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => s
                .to_str()
                .map(Some)
                .map_err(|e| Error::format(&self.path, format!("metadata key '{key}' is not valid UTF-8: {e}"))),
            Some(v) => Err(self.wrong_type(key, v, "str")),
        }
    }

    /// Any integer type whose value fits (converters disagree on u32/i32/u64 for counts).
    fn get_int<T: TryFrom<i128>>(&self, key: &str, tname: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let i = v.as_int().ok_or_else(|| self.wrong_type(key, v, tname))?;
                T::try_from(i).map(Some).map_err(|_| {
                    Error::format(&self.path, format!("metadata key '{key}' = {i} does not fit in {tname}"))
                })
            }
        }
    }

    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get_int(key, "u32")
    }

    pub fn get_i32(&self, key: &str) -> Result<Option<i32>> {
        self.get_int(key, "i32")
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_int(key, "u64")
    }

    /// F32 (or F64, narrowed).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f32().map(Some).ok_or_else(|| self.wrong_type(key, v, "f32")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.wrong_type(key, v, "bool")),
        }
    }

    /// An array value: (element type, items).
    pub fn get_arr(&self, key: &str) -> Result<Option<(ValueType, &[Value])>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| self.wrong_type(key, v, "arr")),
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Zero-copy view of a tensor's bytes (`info.n_bytes` long), in whichever part of a split
    /// model holds them. Infos of this file were validated at open; an info from elsewhere that
    /// does not fit yields an empty slice rather than a panic.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        self.data_at(info.shard, info.offset, info.n_bytes)
    }

    /// `tensor_data` of a tensor at `offset` (`n_bytes` long) in part `shard`'s data.
    pub fn data_at(&self, shard: usize, offset: u64, n_bytes: u64) -> &[u8] {
        let file = match shard {
            0 => self,
            i => match self.parts.get(i - 1) {
                Some(p) => p,
                None => return &[],
            },
        };
        let start = file.data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= file.file_size() => &file.as_bytes()[s as usize..e as usize],
            _ => &[],
        }
    }

    /// Tells the kernel the mapped pages of a tensor are not needed now (after the tensor was
    /// copied elsewhere, e.g. repacked), so they stop counting as resident. They stay readable:
    /// a later access faults them back in from the file. No-op for in-memory files.
    pub fn release_tensor_pages(&self, info: &TensorInfo) {
        self.release_pages(self.tensor_data(info));
    }

    /// `release_tensor_pages` for part of a tensor's bytes (one expert of an expert tensor); `data`
    /// must be a slice of `tensor_data`.
    pub fn release_pages(&self, data: &[u8]) {
        if !self.release_own_pages(data) {
            self.parts.iter().for_each(|p| {
                p.release_own_pages(data);
            });
        }
    }

    /// `release_pages` within this file's own mapping: false when `data` is not in it.
    fn release_own_pages(&self, data: &[u8]) -> bool {
        let Backing::Mmap(m) = &self.backing else { return false };
        let page = 4096usize;
        let Some(start) = (data.as_ptr() as usize).checked_sub(m.as_ptr() as usize).filter(|&s| s < m.len()) else {
            return false;
        };
        let end = (start + data.len()).min(m.len());
        // Only whole pages inside the range: neighbours may still be in use.
        let (s, e) = (start.div_ceil(page) * page, end / page * page);
        if e > s {
            // SAFETY: the mapping is private and read-only and was never written, so MADV_DONTNEED
            // only drops clean page-cache pages; their contents (the file's) are re-read on access,
            // so every outstanding `&[u8]` into the mapping still sees the same bytes.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, s, e - s) };
        }
        true
    }
}

struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// Bounds-checked little-endian reader over the file image.
struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.path, msg)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated: {} needs {n} bytes at offset {}, but the file ends at {}",
                what(),
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Raw string bytes: u64 length then bytes; the length is checked before anything is copied.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "{} has length {len} at offset {}, past the end of the file ({} bytes remain)",
                what(),
                self.pos - 8,
                self.remaining()
            )));
        }
        self.take(len as usize, what)
    }

    /// Rejects `count` items of at least `min_size` bytes each that cannot fit in what remains,
    /// before anything is allocated; returns the count as usize.
    fn check_count(&self, count: u64, min_size: usize, what: &dyn Fn() -> String) -> Result<usize> {
        let need = (count as u128) * (min_size as u128);
        if need > self.remaining() as u128 {
            return Err(self.err(format!(
                "{} claims {count} items (≥ {need} bytes) at offset {}, but only {} bytes remain",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        Ok(count as usize)
    }

    fn value(&mut self, ty: ValueType, depth: usize, key: &str) -> Result<Value> {
        let what = || format!("value of key '{key}'");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => {
                let b = self.array::<1>(&what)?[0];
                // Only 0/1 survive a round trip byte-identically; anything else is corruption.
                match b {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => return Err(self.err(format!("bool in key '{key}' has byte value {b} (must be 0 or 1)"))),
                }
            }
            ValueType::String => Value::String(GgufString(self.string(&what)?.to_vec())),
            ValueType::Array => {
                let at = self.pos;
                let et_id = self.u32(&|| format!("array element type of key '{key}'"))?;
                let et = ValueType::from_id(et_id).ok_or_else(|| {
                    self.err(format!("key '{key}' has an array of unknown value type id {et_id} (offset {at})"))
                })?;
                if et == ValueType::Array && depth + 1 >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("key '{key}' nests arrays deeper than {MAX_ARRAY_DEPTH} levels")));
                }
                let count = self.u64(&|| format!("array length of key '{key}'"))?;
                let n = self.check_count(count, et.min_encoded_size(), &|| format!("array of key '{key}'"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(et, depth + 1, key)?);
                }
                Value::Array(et, items)
            }
        })
    }
}

fn parse_header(path: &Path, buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { path, buf, pos: 0 };
    let magic = c.array::<4>(&|| "magic".into())?;
    if &magic != GGUF_MAGIC {
        return Err(c.err(format!("not a GGUF file (magic {:02x?}, expected \"GGUF\")", magic)));
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(c.err("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)")),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(c.err("big-endian GGUF files are not supported"));
        }
        v => return Err(c.err(format!("unsupported GGUF version {v} (supported: 2, 3)"))),
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;

    // Smallest possible entries: kv = key length (8) + type (4) + 1 byte value;
    // tensor info = name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
    let n_kv = c.check_count(n_kv, 13, &|| "metadata section".into())?;
    let n_tensors = c.check_count(n_tensors, 32, &|| "tensor info section".into())?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv);
    let mut kv_index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let at = c.pos;
        let raw = c.string(&|| format!("key of metadata entry #{i}"))?;
        let key = std::str::from_utf8(raw)
            .map_err(|_| c.err(format!("key of metadata entry #{i} (offset {at}) is not valid UTF-8")))?
            .to_owned();
        let tid = c.u32(&|| format!("value type of key '{key}'"))?;
        let ty = ValueType::from_id(tid)
            .ok_or_else(|| c.err(format!("key '{key}' has unknown value type id {tid} (offset {})", c.pos - 4)))?;
        let value = c.value(ty, 0, &key)?;
        if kv_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(c.err(format!("duplicate metadata key '{key}'")));
        }
        metadata.push((key, value));
    }

    let alignment = match kv_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
        Some(Value::U32(a)) => return Err(c.err(format!("general.alignment = {a} is not a power of two"))),
        Some(v) => return Err(c.err(format!("general.alignment has type {}, expected u32", v.value_type()))),
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut tensor_index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let at = c.pos;
        let raw = c.string(&|| format!("name of tensor #{i}"))?;
        let name = std::str::from_utf8(raw)
            .map_err(|_| c.err(format!("name of tensor #{i} (offset {at}) is not valid UTF-8")))?
            .to_owned();
        let n_dims = c.u32(&|| format!("n_dims of tensor '{name}'"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(c.err(format!("tensor '{name}' has n_dims = {n_dims} (must be 1..={MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dim {d} of tensor '{name}'"))?);
        }
        let tid = c.u32(&|| format!("type of tensor '{name}'"))?;
        let ggml_type =
            GgmlType::from_id(tid).map_err(|_| c.err(format!("tensor '{name}' has unknown ggml type id {tid}")))?;
        let offset = c.u64(&|| format!("data offset of tensor '{name}'"))?;
        let n_bytes = tensor_size(&name, &dims, ggml_type).map_err(|m| c.err(m))?;
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(c.err(format!("duplicate tensor name '{name}'")));
        }
        tensors.push(TensorInfo { name, dims, ggml_type, offset, n_bytes, shard: 0 });
    }

    let infos_end = c.pos as u64;
    let data_offset = infos_end.div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(c.err(format!(
                "tensor '{}' has offset {} that is not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(e) if e <= file_len => {}
            _ => {
                return Err(c.err(format!(
                    "tensor '{}' data (offset {} + {} bytes after data start {data_offset}) extends past the end of the file ({file_len} bytes)",
                    t.name, t.offset, t.n_bytes
                )))
            }
        }
    }
    // Overlap check: sorted by offset, each tensor must end before the next starts.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        if a.offset + a.n_bytes > b.offset {
            return Err(c.err(format!("tensors '{}' and '{}' overlap in the data section", a.name, b.name)));
        }
    }

    Ok(Parsed { version, alignment, data_offset, metadata, kv_index, tensors, tensor_index })
}

/// Validates dims against the type's block layout and returns the data size in bytes.
pub(crate) fn tensor_size(name: &str, dims: &[u64], t: GgmlType) -> std::result::Result<u64, String> {
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(format!("tensor '{name}' has {} dims (must be 1..={MAX_DIMS})", dims.len()));
    }
    if let Some(d) = dims.iter().position(|&d| d == 0) {
        return Err(format!("tensor '{name}' has a zero dimension (dims {dims:?}, index {d})"));
    }
    // ggml stores element counts as int64.
    let n_elem = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&n| n <= i64::MAX as u64));
    let overflow = || format!("tensor '{name}' dims {dims:?} overflow the element/byte count");
    n_elem.ok_or_else(overflow)?;
    let bs = t.block_size() as u64;
    if !dims[0].is_multiple_of(bs) {
        return Err(format!(
            "tensor '{name}' row length {} is not a multiple of the {} block size {bs}",
            dims[0],
            t.name()
        ));
    }
    let row = t.row_size(dims[0]).ok_or_else(overflow)?;
    let n_bytes = dims[1..].iter().try_fold(row, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    if n_bytes > isize::MAX as u64 {
        return Err(overflow());
    }
    Ok(n_bytes)
}
