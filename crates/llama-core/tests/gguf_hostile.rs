//! Malformed GGUF files: every one must give `Err` with a message naming the problem — never a
//! panic, a huge allocation or a hang. Files are crafted byte by byte here (not with our writer),
//! so the tests do not share assumptions with the code under test.

mod gguf_common;

use llama_core::gguf::{GgufFile, Value, ValueType};
use llama_core::quant::GgmlType;

/// Little-endian GGUF image builder.
#[derive(Clone, Default)]
struct B(Vec<u8>);

impl B {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> B {
        let mut b = B::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn raw(&mut self, x: &[u8]) -> &mut Self {
        self.0.extend_from_slice(x);
        self
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.raw(&x.to_le_bytes())
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.raw(&x.to_le_bytes())
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).raw(s)
    }
    fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.str(k.as_bytes()).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, off: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(off)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn err_of(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(bytes: Vec<u8>, needle: &str) {
    let msg = err_of(bytes);
    assert!(msg.contains(needle), "error {msg:?} does not mention {needle:?}");
}

/// A valid two-tensor file: f32 [4, 2] at 0 and q4_0 [32] at 32.
fn good() -> B {
    let mut b = B::header(3, 2, 2);
    b.kv_u32("general.alignment", 32);
    b.str(b"general.name").u32(8).str(b"tiny");
    b.tensor("a", &[4, 2], 0, 0);
    b.tensor("b", &[32], 2, 32);
    b.pad(32).zeros(32).zeros(18);
    b
}

#[test]
fn crafted_good_file_parses_exactly() {
    let f = GgufFile::from_bytes(good().0).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 32);
    assert_eq!(f.get_u32("general.alignment").unwrap(), Some(32));
    assert_eq!(f.get_str("general.name").unwrap(), Some("tiny"));
    assert!(f.get_u32("general.name").unwrap_err().to_string().contains("general.name"));
    assert_eq!(f.tensors().len(), 2);
    let a = f.tensor("a").unwrap();
    assert_eq!((a.dims.clone(), a.ggml_type, a.offset, a.n_bytes), (vec![4, 2], GgmlType::F32, 0, 32));
    assert_eq!((a.n_elements(), a.n_rows()), (8, 2));
    let b = f.tensor("b").unwrap();
    assert_eq!((b.ggml_type, b.offset, b.n_bytes), (GgmlType::Q4_0, 32, 18));
    assert_eq!(f.tensor_data(b).len(), 18);
    // One byte short of the last tensor's data.
    let mut short = good().0;
    short.pop();
    assert_err(short, "past the end");
}

#[test]
fn v2_accepted_v1_and_others_rejected() {
    let mut b = good();
    b.0[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(GgufFile::from_bytes(b.0).unwrap().version, 2);
    for (v, needle) in [(1u32, "version 1"), (4, "version 4"), (0x0300_0000, "big-endian")] {
        let mut b = good();
        b.0[4..8].copy_from_slice(&v.to_le_bytes());
        assert_err(b.0, needle);
    }
    assert_err(b"GGUG\x03\0\0\0".to_vec(), "not a GGUF file");
    assert_err(Vec::new(), "truncated");
}

#[test]
fn huge_counts_rejected_before_allocation() {
    assert_err(B::header(3, 0, u64::MAX).0, "metadata section claims");
    assert_err(B::header(3, u64::MAX, 0).0, "tensor info section claims");
    assert_err(B::header(3, 1 << 40, 1 << 40).0, "claims");
    // Array of 2^62 u8 / strings / arrays.
    for et in [0u32, 8, 9] {
        let mut b = B::header(3, 0, 1);
        b.str(b"k").u32(9).u32(et).u64(1 << 62).zeros(64);
        assert_err(b.0, "array of key 'k' claims");
    }
}

#[test]
fn string_length_past_end() {
    let mut b = B::header(3, 0, 1);
    b.u64(1 << 40).raw(b"key").zeros(16);
    assert_err(b.0, "past the end");
    let mut b = B::header(3, 0, 1);
    b.str(b"k").u32(8).u64(100).raw(b"short");
    assert_err(b.0, "past the end");
    let mut b = B::header(3, 0, 1);
    b.str(b"k").u32(8).u64(u64::MAX);
    assert_err(b.0, "past the end");
}

#[test]
fn bad_value_types() {
    let mut b = B::header(3, 0, 1);
    b.str(b"k").u32(13).u32(0);
    assert_err(b.0, "unknown value type id 13");
    let mut b = B::header(3, 0, 1);
    b.str(b"k").u32(9).u32(0xffff_ffff).u64(1).u32(0);
    assert_err(b.0, "unknown value type id 4294967295");
    let mut b = B::header(3, 0, 1);
    b.str(b"k").u32(7).raw(&[2]);
    assert_err(b.0, "bool");
    let mut b = B::header(3, 0, 1);
    b.str(&[0xff, 0xfe]).u32(0).raw(&[1]);
    assert_err(b.0, "not valid UTF-8");
}

#[test]
fn deeply_nested_arrays_rejected_without_stack_overflow() {
    let depth = 100_000;
    let mut b = B::header(3, 0, 1);
    b.str(b"deep").u32(9);
    for _ in 0..depth {
        b.u32(9).u64(1);
    }
    b.u32(0).u64(0);
    assert_err(b.0, "nests arrays deeper");
}

#[test]
fn nested_arrays_parse() {
    // [[1u16, 2u16], []] as arr<arr<u16>>
    let mut b = B::header(3, 0, 1);
    b.str(b"n").u32(9).u32(9).u64(2);
    b.u32(2).u64(2).raw(&1u16.to_le_bytes()).raw(&2u16.to_le_bytes());
    b.u32(2).u64(0);
    let f = GgufFile::from_bytes(b.0).unwrap();
    let (et, items) = f.get_arr("n").unwrap().unwrap();
    assert_eq!(et, ValueType::Array);
    assert_eq!(items[0], Value::Array(ValueType::U16, vec![Value::U16(1), Value::U16(2)]));
    assert_eq!(items[1], Value::Array(ValueType::U16, vec![]));
}

#[test]
fn duplicates_rejected() {
    let mut b = B::header(3, 0, 2);
    b.kv_u32("a", 1).kv_u32("a", 2);
    assert_err(b.0, "duplicate metadata key 'a'");
    let mut b = B::header(3, 2, 0);
    b.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).pad(32).zeros(64);
    assert_err(b.0, "duplicate tensor name 't'");
}

#[test]
fn bad_alignment_rejected() {
    for (v, needle) in [(0u32, "power of two"), (3, "power of two")] {
        let mut b = B::header(3, 0, 1);
        b.kv_u32("general.alignment", v);
        assert_err(b.0, needle);
    }
    let mut b = B::header(3, 0, 1);
    b.str(b"general.alignment").u32(10).u64(32);
    assert_err(b.0, "general.alignment has type u64");
    // Alignment 64 is honoured: the data section starts at a multiple of 64.
    let mut b = B::header(3, 1, 1);
    b.kv_u32("general.alignment", 64).tensor("t", &[4], 0, 0).pad(64).zeros(16);
    let f = GgufFile::from_bytes(b.0).unwrap();
    assert_eq!((f.alignment, f.data_offset % 64), (64, 0));
}

fn one_tensor(dims: &[u64], ty: u32, off: u64, data: usize) -> Vec<u8> {
    let mut b = B::header(3, 1, 0);
    b.tensor("w", dims, ty, off).pad(32).zeros(data);
    b.0
}

#[test]
fn bad_tensor_infos_rejected() {
    assert_err(one_tensor(&[1, 1, 1, 1, 1], 0, 0, 4), "n_dims = 5");
    assert_err(one_tensor(&[], 0, 0, 4), "n_dims = 0");
    assert_err(one_tensor(&[4, 0], 0, 0, 16), "zero dimension");
    assert_err(one_tensor(&[4], 99, 0, 16), "unknown ggml type id 99");
    assert_err(one_tensor(&[4], 4, 0, 16), "unknown ggml type id 4"); // Q4_2, removed from ggml
    assert_err(one_tensor(&[1 << 40, 1 << 40], 0, 0, 16), "overflow");
    assert_err(one_tensor(&[1 << 62, 4], 0, 0, 16), "overflow"); // elements fit i64, bytes do not
    assert_err(one_tensor(&[33], 2, 0, 64), "not a multiple of the q4_0 block size 32");
    assert_err(one_tensor(&[4], 0, 16, 64), "not a multiple of the alignment");
    assert_err(one_tensor(&[4], 0, 32, 32), "past the end");
    assert_err(one_tensor(&[4], 0, u64::MAX - 31, 32), "past the end");
    assert_err(one_tensor(&[1 << 20], 0, 0, 16), "past the end");
    // Overlap: b starts inside a.
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).pad(32).zeros(128);
    assert_err(b.0, "overlap");
    // File ends inside a tensor info (after the dims, before the type).
    let mut b = B::header(3, 1, 0);
    b.str(b"tttttttttttt").u32(1).u64(4);
    assert_err(b.0, "truncated");
}

#[test]
fn unsupported_but_known_types_are_read() {
    for t in [GgmlType::IQ2_XXS, GgmlType::IQ4_NL, GgmlType::TQ1_0, GgmlType::TQ2_0, GgmlType::MXFP4, GgmlType::I64] {
        let (bs, ts) = t.block_layout();
        let f = GgufFile::from_bytes(one_tensor(&[bs as u64 * 2, 3], t.id(), 0, ts * 6)).unwrap();
        let w = f.tensor("w").unwrap();
        assert_eq!((w.ggml_type, w.n_bytes), (t, ts as u64 * 6), "{t}");
    }
}

/// Bytes `v` occupies in a file (value payload only).
fn encoded_len(v: &Value) -> usize {
    match v {
        Value::U8(_) | Value::I8(_) | Value::Bool(_) => 1,
        Value::U16(_) | Value::I16(_) => 2,
        Value::U32(_) | Value::I32(_) | Value::F32(_) => 4,
        Value::U64(_) | Value::I64(_) | Value::F64(_) => 8,
        Value::String(s) => 8 + s.as_bytes().len(),
        Value::Array(_, items) => 12 + items.iter().map(encoded_len).sum::<usize>(),
    }
}

/// Cuts a real file at every byte of its header + metadata + tensor-info region (`every_byte`),
/// or at every byte except in the interiors of big arrays (every 4001st byte) and of the
/// tensor-info list (every 61st byte): the parser repeats the same per-item code there, and each
/// cut costs a parse of the whole prefix, so "every byte" is quadratic (hours on a busy machine).
/// The first and last 256 bytes of each such region stay exhaustive.
fn truncate_real_header(every_byte: bool) {
    let Some(path) = gguf_common::find_model("synth-tiny-q4_0.gguf")
        .or_else(|| gguf_common::find_model("ggml-vocab-llama-spm.gguf"))
    else {
        eprintln!("SKIP: neither synth-tiny-q4_0.gguf nor ggml-vocab-llama-spm.gguf found");
        return;
    };
    let full = std::fs::read(&path).unwrap();
    let f = GgufFile::from_bytes(full.clone()).unwrap();
    // (range, stride): interiors of big arrays, located from the entry sizes.
    let mut sampled: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
    let mut pos = 24usize;
    for (k, v) in f.metadata() {
        let value_start = pos + 8 + k.len() + 4;
        pos = value_start + encoded_len(v);
        if matches!(v, Value::Array(_, items) if items.len() > 64) && pos - value_start > 1024 {
            sampled.push((value_start + 256..pos - 256, 4001));
        }
    }
    let end = (f.data_offset as usize).min(full.len());
    assert!(pos <= end);
    if end - pos > 1024 {
        sampled.push((pos + 256..end - 256, 61));
    }
    drop(f);
    let t0 = std::time::Instant::now();
    let mut n = 0usize;
    for cut in 0..end {
        if !every_byte && sampled.iter().any(|(r, stride)| r.contains(&cut) && (cut - r.start) % stride != 0) {
            continue;
        }
        let r = GgufFile::from_bytes(full[..cut].to_vec());
        assert!(r.is_err(), "{}: truncation at {cut} parsed", path.display());
        n += 1;
    }
    // Cuts inside the tensor data fail on the data bounds check.
    for cut in (end..full.len()).step_by(4093) {
        assert!(GgufFile::from_bytes(full[..cut].to_vec()).is_err(), "truncation at {cut} parsed");
        n += 1;
    }
    eprintln!("{}: {n} truncations (region of {end} bytes) all rejected in {:?}", path.display(), t0.elapsed());
}

#[test]
fn real_header_truncated_everywhere() {
    truncate_real_header(false);
}

/// The same at literally every byte (quadratic: minutes). `cargo test -- --ignored` to run.
#[test]
#[ignore]
fn real_header_truncated_at_every_byte() {
    truncate_real_header(true);
}
