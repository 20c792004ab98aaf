//! Inputs kept from fuzzing `fuzz/fuzz_targets/gguf_reader.rs` (tests/data/gguf-fuzz/; the file name
//! prefix says what is expected): each must parse or fail with an error, never panic.

use llama_core::gguf::GgufFile;

#[test]
fn fuzz_corpus_entries_parse_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf-fuzz");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let (mut ok, mut err) = (0, 0);
    for p in &entries {
        let bytes = std::fs::read(p).unwrap();
        // ok-*: must parse; err-*: must be rejected; any-*: fuzz corpus, only "no panic + invariants".
        let fname = p.file_name().unwrap().to_str().unwrap();
        let expect = if fname.starts_with("ok-") {
            Some(true)
        } else if fname.starts_with("err-") {
            Some(false)
        } else {
            None
        };
        match GgufFile::from_bytes(bytes) {
            Ok(f) => {
                assert_ne!(expect, Some(false), "{}: parsed but is expected to be rejected", p.display());
                for t in f.tensors() {
                    assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                    assert_eq!(t.n_bytes, t.row_size() * t.n_rows());
                }
                for (k, v) in f.metadata() {
                    assert!(std::ptr::eq(f.get(k).unwrap(), v), "{k}");
                }
                ok += 1;
            }
            Err(e) => {
                assert_ne!(expect, Some(true), "{}: rejected: {e}", p.display());
                assert!(e.to_string().contains("invalid file"), "{e}");
                err += 1;
            }
        }
    }
    assert!(!entries.is_empty());
    eprintln!("{} fuzz entries: {ok} accepted, {err} rejected", entries.len());
}
