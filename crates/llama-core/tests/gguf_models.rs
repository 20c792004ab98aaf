//! Every real GGUF we have: opens, matches gguf-py's parse exactly, and survives
//! read → write → byte-identical file.

mod gguf_common;

use gguf_common::*;
use llama_core::gguf::{GgufFile, GgufWriter, TensorSource};

#[test]
fn all_models_open_and_match_gguf_py() {
    let files = model_files_for_whole_file_tests();
    if files.is_empty() {
        eprintln!("SKIP: no GGUF model files found");
        return;
    }
    let py = have_gguf_py();
    if !py {
        eprintln!("SKIP gguf-py comparison: python3 cannot import gguf");
    }
    for path in &files {
        let t0 = std::time::Instant::now();
        let f = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: v{} {} kv, {} tensors, data at {} (opened in {:?})",
            path.display(),
            f.version,
            f.metadata().len(),
            f.tensors().len(),
            f.data_offset,
            t0.elapsed()
        );
        // Every tensor slice is reachable and has the validated length.
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes, "{}", t.name);
            assert_eq!(t.n_bytes, t.n_rows() * t.ggml_type.row_size(t.dims[0]).unwrap());
            assert_eq!(f.tensor(&t.name), Some(t));
        }
        if !py {
            continue;
        }
        let r = gguf_py_dump(path);
        assert_eq!(r["version"].as_u64().unwrap(), f.version as u64);
        assert_eq!(r["alignment"].as_u64().unwrap(), f.alignment);
        assert_eq!(r["data_offset"].as_u64().unwrap(), f.data_offset);
        let meta = r["metadata"].as_array().unwrap();
        assert_eq!(meta.len(), f.metadata().len(), "{}: kv count", path.display());
        for (i, ((k, v), py)) in f.metadata().iter().zip(meta).enumerate() {
            assert_eq!(py[0].as_str().unwrap(), k, "{}: key #{i}", path.display());
            assert!(py[1] == value_json(v), "{}: value of '{k}' differs from gguf-py", path.display());
            assert_eq!(f.get(k), Some(v));
        }
        let tens = r["tensors"].as_array().unwrap();
        assert_eq!(tens.len(), f.tensors().len());
        for (t, py) in f.tensors().iter().zip(tens) {
            assert_eq!(py["name"].as_str().unwrap(), t.name);
            let dims: Vec<u64> = py["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            assert_eq!(dims, t.dims, "{}", t.name);
            assert_eq!(py["type"].as_u64().unwrap(), t.ggml_type.id() as u64, "{}", t.name);
            assert_eq!(py["offset"].as_u64().unwrap(), t.offset, "{}", t.name);
            assert_eq!(py["n_bytes"].as_u64().unwrap(), t.n_bytes, "{}", t.name);
            assert_eq!(py["data_offset"].as_u64().unwrap(), f.data_offset + t.offset, "{}", t.name);
        }
        eprintln!("  matches gguf-py: {} keys, {} tensors", meta.len(), tens.len());
    }
}

#[test]
fn all_models_round_trip_byte_identical() {
    let files = model_files_for_whole_file_tests();
    if files.is_empty() {
        eprintln!("SKIP: no GGUF model files found");
        return;
    }
    let dir = TempDir::new("roundtrip");
    for path in &files {
        let f = GgufFile::open(path).unwrap();
        let out = dir.path().join(path.file_name().unwrap());
        let mut w = GgufWriter::new(&out);
        w.set_version(f.version);
        // Metadata-only files: reproduce whether the original ends padded.
        w.set_pad_empty(f.file_size() >= f.data_offset);
        for (k, v) in f.metadata() {
            w.add(k.clone(), v.clone());
        }
        for t in f.tensors() {
            w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, TensorSource::Bytes(f.tensor_data(t))).unwrap();
        }
        let mut calls = 0usize;
        let mut last = (0u64, 0u64);
        let mut cb = |p: &llama_core::gguf::WriteProgress| {
            calls += 1;
            last = (p.bytes_written, p.bytes_total);
        };
        let t0 = std::time::Instant::now();
        w.write(Some(&mut cb)).unwrap();
        assert_eq!(calls, f.tensors().len());
        assert_eq!(last.0, last.1);
        assert!(!dir.path().join(format!("{}.tmp", out.file_name().unwrap().to_str().unwrap())).exists());
        let diff = first_difference(path, &out);
        assert_eq!(diff, None, "{}: rewritten file differs at byte {:?}", path.display(), diff);
        eprintln!(
            "{}: round trip byte-identical ({} bytes, written in {:?})",
            path.display(),
            f.file_size(),
            t0.elapsed()
        );
        std::fs::remove_file(&out).unwrap();
    }
}
