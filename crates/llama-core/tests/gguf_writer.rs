//! The writer against gguf-py (independent reader) and against its own contract: order kept,
//! alignment honoured, streaming sources, failures leave no file behind.

mod gguf_common;

use std::cell::RefCell;

use gguf_common::*;
use llama_core::gguf::{GgufFile, GgufString, GgufWriter, TensorSource, Value, ValueType};
use llama_core::quant::GgmlType;

/// Deterministic pseudo-random bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::from("llama")),
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(65000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX - 5)),
        ("t.i64", Value::I64(i64::MIN + 3)),
        ("t.f32", Value::F32(-1.25e-3)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::from("héllo ✓")),
        ("t.str_empty", Value::from("")),
        ("t.arr_str", Value::str_array(["a", "", "ß", "\u{1F600}"])),
        ("t.arr_f32", Value::f32_array([0.5, -2.0, f32::MIN_POSITIVE])),
        ("t.arr_i32", Value::i32_array([1, -1, i32::MAX])),
        ("t.arr_bool", Value::Array(ValueType::Bool, vec![Value::Bool(false), Value::Bool(true)])),
        ("t.arr_u64", Value::Array(ValueType::U64, vec![Value::U64(1 << 50)])),
        ("t.arr_f64", Value::Array(ValueType::F64, vec![Value::F64(-0.0), Value::F64(1e300)])),
        ("t.arr_empty", Value::Array(ValueType::U8, vec![])),
        (
            "t.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I16, vec![Value::I16(1), Value::I16(-2)]),
                    Value::Array(ValueType::I16, vec![Value::I16(3)]),
                ],
            ),
        ),
        ("t.nested_str", Value::Array(ValueType::Array, vec![Value::str_array(["x", "yz"]), Value::str_array(["w"])])),
        ("general.alignment", Value::U32(64)),
    ]
}

fn tensor_specs() -> Vec<(&'static str, Vec<u64>, GgmlType)> {
    vec![
        ("tok_embd.weight", vec![4, 3], GgmlType::F32),
        ("norm.weight", vec![8], GgmlType::F16),
        ("q4.weight", vec![64, 2], GgmlType::Q4_0),
        ("q8.weight", vec![32, 1, 2], GgmlType::Q8_0),
        ("q6k.weight", vec![256, 2], GgmlType::Q6_K),
        ("iq2.weight", vec![256], GgmlType::IQ2_XXS),
        ("bf.weight", vec![2, 2, 2, 2], GgmlType::BF16),
    ]
}

fn tensor_bytes(i: usize, dims: &[u64], t: GgmlType) -> Vec<u8> {
    let n = t.row_size(dims[0]).unwrap() * dims[1..].iter().product::<u64>();
    bytes(n as usize, i as u64 + 1)
}

#[test]
fn gguf_py_reads_what_we_write() {
    if !have_gguf_py() {
        eprintln!("SKIP: python3 cannot import gguf");
        return;
    }
    let dir = TempDir::new("writer-py");
    let path = dir.path().join("all.gguf");
    let specs = tensor_specs();
    let datas: Vec<Vec<u8>> = specs.iter().enumerate().map(|(i, (_, d, t))| tensor_bytes(i, d, *t)).collect();
    let mut w = GgufWriter::new(&path);
    for (k, v) in all_values() {
        w.add(k, v);
    }
    for (i, (name, dims, t)) in specs.iter().enumerate() {
        // Mix the three source kinds.
        let src = match i % 3 {
            0 => TensorSource::Bytes(&datas[i]),
            1 => TensorSource::Owned(datas[i].clone()),
            _ => {
                let d = datas[i].clone();
                TensorSource::stream(move || Ok(d))
            }
        };
        w.add_tensor(*name, dims, *t, src).unwrap();
    }
    w.write(None).unwrap();

    let r = gguf_py_dump_args(&path, &["--data"]);
    assert_eq!(r["version"], 3);
    assert_eq!(r["alignment"], 64);
    let meta = r["metadata"].as_array().unwrap();
    let want = all_values();
    assert_eq!(meta.len(), want.len());
    for ((k, v), py) in want.iter().zip(meta) {
        assert_eq!(py[0].as_str().unwrap(), *k, "key order");
        assert!(py[1] == value_json(v), "gguf-py sees {} = {} (wrote {v:?})", k, py[1]);
    }
    let tens = r["tensors"].as_array().unwrap();
    assert_eq!(tens.len(), specs.len());
    for (i, ((name, dims, t), py)) in specs.iter().zip(tens).enumerate() {
        assert_eq!(py["name"], *name);
        let pd: Vec<u64> = py["dims"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(&pd, dims, "{name}");
        assert_eq!(py["type"].as_u64().unwrap(), t.id() as u64, "{name}");
        assert_eq!(py["data_offset"].as_u64().unwrap() % 64, 0, "{name} not 64-aligned");
        assert_eq!(py["data"].as_str().unwrap(), hex(&datas[i]), "{name} data");
    }
    // The file ends with the last tensor padded to the alignment (gguf-py's layout).
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size % 64, 0);

    // And our reader gets back exactly what went in.
    let f = GgufFile::open(&path).unwrap();
    for ((k, v), (k2, v2)) in want.iter().zip(f.metadata()) {
        assert_eq!((*k, v), (k2.as_str(), v2));
    }
    for (i, t) in f.tensors().iter().enumerate() {
        assert_eq!(f.tensor_data(t), &datas[i][..]);
    }
}

#[test]
fn gguf_py_written_file_round_trips_through_us() {
    if !have_gguf_py() {
        eprintln!("SKIP: python3 cannot import gguf");
        return;
    }
    let dir = TempDir::new("py-writer");
    let src = dir.path().join("py.gguf");
    let script = r#"
import sys, numpy as np, gguf
w = gguf.GGUFWriter(sys.argv[1], 'llama')
w.add_uint32('a.u32', 5); w.add_string('a.s', 'x'); w.add_array('a.arr', [[1, 2], [3]])
w.add_array('a.tok', ['<s>', '</s>', 'é']); w.add_float32('a.f', 0.1); w.add_bool('a.b', False)
w.add_tensor('t0', np.arange(12, dtype=np.float32).reshape(3, 4))
w.add_tensor('t1', np.arange(7, dtype=np.float16))
w.add_tensor('t2', np.zeros((2, 34), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"#;
    let st = std::process::Command::new("python3").args(["-c", script]).arg(&src).status().unwrap();
    assert!(st.success());
    let f = GgufFile::open(&src).unwrap();
    assert_eq!(f.get_u32("a.u32").unwrap(), Some(5));
    assert_eq!(f.tensor("t2").unwrap().dims, vec![32, 2]);
    assert_eq!(f.tensor("t1").unwrap().n_bytes, 14);
    let out = dir.path().join("ours.gguf");
    let mut w = GgufWriter::new(&out);
    for (k, v) in f.metadata() {
        w.add(k.clone(), v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, TensorSource::Bytes(f.tensor_data(t))).unwrap();
    }
    w.write(None).unwrap();
    assert_eq!(first_difference(&src, &out), None, "gguf-py file not reproduced byte for byte");
}

/// Metadata-only files come both padded (gguf-py `write_tensors_to_file` with no tensors) and
/// unpadded (vocab-only conversions); `set_pad_empty` reproduces either.
#[test]
fn metadata_only_files_round_trip_padded_or_not() {
    if !have_gguf_py() {
        eprintln!("SKIP: python3 cannot import gguf");
        return;
    }
    let dir = TempDir::new("py-empty");
    let script = r#"
import sys, gguf
for path, pad in ((sys.argv[1], True), (sys.argv[2], False)):
    w = gguf.GGUFWriter(path, 'llama')
    w.add_string('tokenizer.ggml.model', 'llama'); w.add_array('tokenizer.ggml.tokens', ['a', 'bb', 'ccc'])
    w.write_header_to_file(); w.write_kv_data_to_file()
    if pad:
        w.write_tensors_to_file()
    w.close()
"#;
    let (padded, bare) = (dir.path().join("padded.gguf"), dir.path().join("bare.gguf"));
    let st = std::process::Command::new("python3").args(["-c", script]).arg(&padded).arg(&bare).status().unwrap();
    assert!(st.success());
    for (src, pad) in [(&padded, true), (&bare, false)] {
        let f = GgufFile::open(src).unwrap();
        assert_eq!(f.file_size() >= f.data_offset, pad);
        let out = dir.path().join("out.gguf");
        let mut w = GgufWriter::new(&out);
        w.set_pad_empty(pad);
        for (k, v) in f.metadata() {
            w.add(k.clone(), v.clone());
        }
        w.write(None).unwrap();
        assert_eq!(first_difference(src, &out), None, "{}", src.display());
    }
}

#[test]
fn write_failures_leave_no_file() {
    let dir = TempDir::new("writer-fail");
    let path = dir.path().join("bad.gguf");
    let tmp = dir.path().join("bad.gguf.tmp");

    // Source of the wrong length.
    let mut w = GgufWriter::new(&path);
    w.add("k", Value::U32(1));
    w.add_tensor("t", [8u64], GgmlType::F32, TensorSource::Owned(vec![0; 31])).unwrap();
    let e = w.write(None).unwrap_err().to_string();
    assert!(e.contains("tensor 't'") && e.contains("32 bytes"), "{e}");
    assert!(!path.exists() && !tmp.exists());

    // A streaming source that fails.
    let mut w = GgufWriter::new(&path);
    w.add_tensor("t", [8u64], GgmlType::F32, TensorSource::stream(|| Err(llama_core::Error::Interrupted))).unwrap();
    assert!(matches!(w.write(None), Err(llama_core::Error::Interrupted)));
    assert!(!path.exists() && !tmp.exists());

    // Duplicates, ill-typed arrays, bad alignment, bad dims.
    let mut w = GgufWriter::new(&path);
    w.add("k", Value::U32(1));
    w.add("k", Value::U32(2));
    assert!(w.write(None).unwrap_err().to_string().contains("duplicate metadata key 'k'"));
    let mut w = GgufWriter::new(&path);
    w.add("k", Value::Array(ValueType::U32, vec![Value::U32(1), Value::I32(2)]));
    assert!(w.write(None).unwrap_err().to_string().contains("metadata key 'k'"));
    let mut w = GgufWriter::new(&path);
    w.add("general.alignment", Value::U32(48));
    assert!(w.write(None).unwrap_err().to_string().contains("general.alignment"));
    let mut w = GgufWriter::new(&path);
    let d = [0u8; 64];
    w.add_tensor("t", [8u64], GgmlType::F32, TensorSource::Bytes(&d[..32])).unwrap();
    w.add_tensor("t", [8u64], GgmlType::F32, TensorSource::Bytes(&d[..32])).unwrap();
    assert!(w.write(None).unwrap_err().to_string().contains("duplicate tensor name 't'"));
    let mut w = GgufWriter::new(&path);
    assert!(w.add_tensor("q", [33u64], GgmlType::Q4_0, TensorSource::Bytes(&d)).is_err());
    assert!(w.add_tensor("z", [0u64], GgmlType::F32, TensorSource::Bytes(&d)).is_err());
    assert!(w.add_tensor("f", [1u64, 1, 1, 1, 1], GgmlType::F32, TensorSource::Bytes(&d)).is_err());
    assert!(!path.exists() && !tmp.exists());
}

#[test]
fn streaming_sources_run_one_at_a_time_in_order() {
    let dir = TempDir::new("writer-stream");
    let path = dir.path().join("s.gguf");
    let log = RefCell::new(Vec::new());
    let mut w = GgufWriter::new(&path);
    for i in 0..5u8 {
        let log = &log;
        w.add_tensor(
            format!("t{i}"),
            [4u64 * (i as u64 + 1)],
            GgmlType::F32,
            TensorSource::stream(move || {
                log.borrow_mut().push(format!("produce t{i}"));
                Ok(vec![i; 16 * (i as usize + 1)])
            }),
        )
        .unwrap();
    }
    let mut cb = |p: &llama_core::gguf::WriteProgress| log.borrow_mut().push(format!("wrote {}", p.name));
    w.write(Some(&mut cb)).unwrap();
    let want: Vec<String> = (0..5).flat_map(|i| [format!("produce t{i}"), format!("wrote t{i}")]).collect();
    assert_eq!(*log.borrow(), want);
    let f = GgufFile::open(&path).unwrap();
    for (i, t) in f.tensors().iter().enumerate() {
        assert!(f.tensor_data(t).iter().all(|&b| b == i as u8));
        assert_eq!(t.offset % 32, 0);
    }
}

/// A 262144-entry vocabulary (gemma-3 size) must load quickly.
#[test]
fn big_string_array_loads_fast() {
    let dir = TempDir::new("writer-vocab");
    let path = dir.path().join("v.gguf");
    let n = 262_144;
    let mut w = GgufWriter::new(&path);
    w.add("tokenizer.ggml.tokens", Value::str_array((0..n).map(|i| format!("tok{i}▁"))));
    w.add("tokenizer.ggml.scores", Value::f32_array((0..n).map(|i| -(i as f32))));
    w.add("tokenizer.ggml.token_type", Value::i32_array((0..n).map(|i| (i % 6) as i32)));
    w.write(None).unwrap();
    // CPU time of this thread (Linux schedstat, ns) so a loaded machine does not make the
    // measurement meaningless; wall time is printed too.
    fn cpu_ns() -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
    }
    let mut best = std::time::Duration::MAX;
    let mut best_wall = std::time::Duration::MAX;
    for _ in 0..3 {
        let (t0, c0) = (std::time::Instant::now(), cpu_ns());
        let f = GgufFile::open(&path).unwrap();
        let (wall, c1) = (t0.elapsed(), cpu_ns());
        best_wall = best_wall.min(wall);
        best = best.min(match (c0, c1) {
            (Some(a), Some(b)) => std::time::Duration::from_nanos(b - a),
            _ => wall,
        });
        let (_, toks) = f.get_arr("tokenizer.ggml.tokens").unwrap().unwrap();
        assert_eq!(toks.len(), n);
        assert_eq!(toks[n - 1], Value::String(GgufString::from(format!("tok{}▁", n - 1))));
    }
    eprintln!("open with 3 × 262144-entry arrays: {best:?} CPU, {best_wall:?} wall");
    assert!(best < std::time::Duration::from_millis(100), "took {best:?}");
}
