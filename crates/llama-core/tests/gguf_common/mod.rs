//! Shared helpers for the gguf_* integration tests.
#![allow(dead_code)]

#[path = "../testdata/mod.rs"]
mod testdata;
#[allow(unused_imports)]
pub use testdata::full;

use std::path::{Path, PathBuf};
use std::process::Command;

use llama_core::gguf::{Value, ValueType};

/// Every GGUF we can find: llama.cpp's vocab files in tests/data/vocab and the test models in
/// $LLAMA_TEST_MODELS (default ~/.cache/llama-test-models). Missing directories are reported, not fatal.
pub fn model_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [testdata::vocab_dir(), testdata::models_dir()] {
        match std::fs::read_dir(&dir) {
            Err(e) => eprintln!("SKIP models in {}: {e}", dir.display()),
            Ok(rd) => {
                let mut v: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                    .collect();
                v.sort();
                out.extend(v);
            }
        }
    }
    out
}

/// `model_files()` for the whole-file tests: without LLAMA_TEST_FULL only files under 200 MB (the
/// vocab files, synth-tiny, SmolLM2), the others reported as skipped (gguf-py alone takes ~30 s to
/// parse the 150k-262k token vocabularies of the larger ones).
pub fn model_files_for_whole_file_tests() -> Vec<PathBuf> {
    const FAST_LIMIT: u64 = 200 << 20;
    let (keep, skip): (Vec<PathBuf>, Vec<PathBuf>) =
        model_files().into_iter().partition(|p| full() || std::fs::metadata(p).is_ok_and(|m| m.len() < FAST_LIMIT));
    for p in skip {
        eprintln!("SKIP {} (over 200 MB: LLAMA_TEST_FULL=1 includes it)", p.display());
    }
    keep
}

/// Smallest real model file first is handy for quick tests.
pub fn find_model(name: &str) -> Option<PathBuf> {
    model_files().into_iter().find(|p| p.file_name().is_some_and(|f| f == name))
}

/// True if `python3 -c "import gguf"` works.
pub fn have_gguf_py() -> bool {
    Command::new("python3").args(["-c", "import gguf"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = std::env::var("LLAMA_TEST_TMP").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
        let p = base.join(format!("llama-gguf-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn et_name(t: ValueType) -> &'static str {
    t.name()
}

/// Our value in the JSON shape tests/data/gguf_dump.py emits.
pub fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::U8(x) => json!({"t": "u8", "v": x}),
        Value::I8(x) => json!({"t": "i8", "v": x}),
        Value::U16(x) => json!({"t": "u16", "v": x}),
        Value::I16(x) => json!({"t": "i16", "v": x}),
        Value::U32(x) => json!({"t": "u32", "v": x}),
        Value::I32(x) => json!({"t": "i32", "v": x}),
        Value::U64(x) => json!({"t": "u64", "v": x}),
        Value::I64(x) => json!({"t": "i64", "v": x}),
        Value::F32(x) => json!({"t": "f32", "v": x.to_bits()}),
        Value::F64(x) => json!({"t": "f64", "v": x.to_bits()}),
        Value::Bool(x) => json!({"t": "bool", "v": x}),
        Value::String(s) => json!({"t": "str", "v": hex(s.as_bytes())}),
        Value::Array(et, items) => {
            json!({"t": "arr", "et": et_name(*et), "v": items.iter().map(value_json).collect::<Vec<_>>()})
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Runs the gguf-py dump script on `path`.
pub fn gguf_py_dump(path: &Path) -> serde_json::Value {
    gguf_py_dump_args(path, &[])
}

/// Same, with extra script flags (`--data`: include tensor bytes as hex).
pub fn gguf_py_dump_args(path: &Path, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_dump.py");
    let out = Command::new("python3").arg(&script).arg(path).args(args).output().expect("run python3");
    assert!(out.status.success(), "gguf-py failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("gguf_dump.py JSON")
}

/// Compares two files chunk by chunk; returns the first differing offset.
pub fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    use std::io::Read;
    let mut fa = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(a).unwrap());
    let mut fb = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        let n = na.min(nb);
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).unwrap();
            return Some(off + i as u64);
        }
        if na != nb {
            return Some(off + n as u64);
        }
        if na == 0 {
            return None;
        }
        off += na as u64;
    }

    fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    }
}
