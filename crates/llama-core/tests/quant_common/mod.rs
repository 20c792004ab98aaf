//! Shared helpers for the quant tests: running the gguf-py reference script, reading f32 files,
//! a tiny safetensors reader, and bitwise comparison with a useful first-mismatch message.
#![allow(dead_code)]

#[path = "../testdata/mod.rs"]
mod testdata;
#[allow(unused_imports)]
pub use testdata::{fixtures_dir, full, models_dir};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/quant_ref.py")
}

/// Runs `python3 quant_ref.py args…`; `None` (after printing why) when python3 or gguf-py is
/// missing, so the calling test can skip.
pub fn run_ref(args: &[&str]) -> Option<()> {
    let out = match Command::new("python3").arg(script()).args(args).stderr(Stdio::inherit()).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP: cannot run python3: {e}");
            return None;
        }
    };
    match out.status.code() {
        Some(0) => Some(()),
        Some(3) => {
            eprintln!("SKIP: gguf-py (import gguf) is not available");
            None
        }
        _ => panic!("reference script failed: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stdout)),
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llama-quant-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Panics with the first differing element (bits and values) unless `ours` and `theirs` are
/// bit-identical. Returns the element count compared.
pub fn assert_bits_eq(what: &str, ours: &[f32], theirs: &[f32]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "{what}: length differs");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != theirs[i].to_bits()) {
        let n_diff = (0..ours.len()).filter(|&i| ours[i].to_bits() != theirs[i].to_bits()).count();
        panic!(
            "{what}: {n_diff} of {} elements differ; first at {i}: ours {:e} ({:#010x}) vs reference {:e} ({:#010x})",
            ours.len(),
            ours[i],
            ours[i].to_bits(),
            theirs[i],
            theirs[i].to_bits()
        );
    }
    ours.len()
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// One tensor of a safetensors file, widened to f32. `shape` is in PyTorch order (rows first).
pub struct StTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>, // [prod(shape)]
}

/// Minimal safetensors reader: u64 LE header length, JSON header, raw little-endian data.
pub fn read_safetensors(path: &Path) -> Vec<StTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let data = &bytes[8 + hlen..];
    let mut out = Vec::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap().to_string();
        let shape: Vec<usize> =
            info["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let off = info["data_offsets"].as_array().unwrap();
        let raw = &data[off[0].as_u64().unwrap() as usize..off[1].as_u64().unwrap() as usize];
        let vals: Vec<f32> = match dtype.as_str() {
            "F32" => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            "F16" => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes(c.try_into().unwrap()) as u32) << 16))
                .collect(),
            d => panic!("{}: tensor {name}: unsupported dtype {d}", path.display()),
        };
        out.push(StTensor { name: name.clone(), dtype, shape, data: vals });
    }
    out
}
