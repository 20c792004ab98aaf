//! Inputs kept from fuzzing `fuzz/fuzz_targets/gguf_reader.rs` (tests/data/gguf-fuzz/): each must
//! parse or fail with an error exactly as the fuzz target demands, without panicking.

use llama_core::gguf::GgufFile;

#[test]
fn fuzz_corpus_entries_parse_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf-fuzz");
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let (mut ok, mut err) = (0, 0);
    for p in &entries {
        let bytes = std::fs::read(p).unwrap();
        let expect_ok = p.file_name().unwrap().to_str().unwrap().starts_with("ok-");
        match GgufFile::from_bytes(bytes) {
            Ok(f) => {
                assert!(expect_ok, "{}: parsed but is expected to be rejected", p.display());
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
                assert!(!expect_ok, "{}: rejected: {e}", p.display());
                assert!(e.to_string().contains("invalid file"), "{e}");
                err += 1;
            }
        }
    }
    assert!(!entries.is_empty());
    eprintln!("{} fuzz entries: {ok} accepted, {err} rejected", entries.len());
}
