//! Dequantization against gguf-py's `gguf.quants.dequantize`, bit for bit: random blocks of every
//! type gguf-py implements, and every tensor of the Qwen and Gemma test models.

mod quant_common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use llama_core::quant::{dequantize, dequantize_row, GgmlType};
use quant_common::*;

#[test]
fn random_blocks_match_gguf_py() {
    let dir = temp_dir("deq");
    if run_ref(&["random", dir.to_str().unwrap(), "1234"]).is_none() {
        return;
    }
    use GgmlType::*;
    let mut total = 0;
    for t in [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, IQ4_NL, IQ4_XS, TQ1_0,
        TQ2_0, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
    ] {
        let name = format!("{t:?}");
        let raw = std::fs::read(dir.join(format!("{name}.raw"))).unwrap();
        let want = read_f32(&dir.join(format!("{name}.f32")));
        let got = dequantize(t, &raw, want.len()).unwrap();
        total += assert_bits_eq(&format!("random {t}"), &got, &want);
        // Same bytes at an odd address (rows inside an mmap need not be aligned).
        let mut shifted = vec![0u8; raw.len() + 1];
        shifted[1..].copy_from_slice(&raw);
        let got2 = dequantize(t, &shifted[1..], want.len()).unwrap();
        assert_bits_eq(&format!("random {t} misaligned"), &got2, &want);
    }
    eprintln!("random blocks: {total} elements bit-identical to gguf-py");
    std::fs::remove_dir_all(&dir).ok();
}

/// Streams gguf-py's dequantization of every tensor in `file` and compares ours row by row.
/// Returns (tensors compared, elements compared), or None when skipped. Only with LLAMA_TEST_FULL:
/// gguf-py alone takes ~30 s to open a file with a 150k-262k token vocabulary (every type is also
/// checked against gguf-py on random blocks by `random_blocks_match_gguf_py`).
fn compare_model(file: &str) -> Option<(usize, usize)> {
    if !full() {
        eprintln!("SKIP {file}: every tensor against gguf-py runs with LLAMA_TEST_FULL=1");
        return None;
    }
    let path = models_dir().join(file);
    if !path.exists() {
        eprintln!("SKIP: {} not found (set LLAMA_TEST_MODELS)", path.display());
        return None;
    }
    let mut child = Command::new("python3")
        .arg(script())
        .args(["model", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut out = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
    let f = std::fs::File::open(&path).unwrap();
    let (mut n_tensors, mut n_elems) = (0, 0);
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let h: serde_json::Value = serde_json::from_str(&line).unwrap();
        let n = h["n_elements"].as_u64().unwrap() as usize;
        let t = GgmlType::from_id(h["type"].as_u64().unwrap() as u32).unwrap();
        let mut want = vec![0u8; n * 4];
        out.read_exact(&mut want).unwrap();
        let want: Vec<f32> = want.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let mut raw = vec![0u8; h["nbytes"].as_u64().unwrap() as usize];
        f.read_exact_at(&mut raw, h["offset"].as_u64().unwrap()).unwrap();
        let mut got = vec![0f32; n];
        dequantize_row(t, &raw, &mut got).unwrap();
        assert_bits_eq(&format!("{file} {} ({t})", h["name"]), &got, &want);
        n_tensors += 1;
        n_elems += n;
        *by_type.entry(t.to_string()).or_default() += 1;
    }
    let status = child.wait().unwrap();
    if status.code() == Some(3) {
        eprintln!("SKIP: gguf-py (import gguf) is not available");
        return None;
    }
    assert!(status.success(), "reference script failed: {status:?}");
    eprintln!("{file}: {n_tensors} tensors, {n_elems} elements bit-identical to gguf-py; by type {by_type:?}");
    Some((n_tensors, n_elems))
}

#[test]
fn qwen_tensors_match_gguf_py() {
    if let Some((n, _)) = compare_model("qwen2.5-coder-0.5b-q4_k_m.gguf") {
        assert!(n > 100, "expected the whole model, compared {n} tensors");
    }
}

#[test]
fn gemma_tensors_match_gguf_py() {
    if let Some((n, _)) = compare_model("gemma3-270m-q4_k_m.gguf") {
        assert!(n > 100, "expected the whole model, compared {n} tensors");
    }
}

#[test]
fn length_and_type_errors() {
    let mut y = [0f32; 32];
    let e = dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut y).unwrap_err().to_string();
    assert!(e.contains("q4_0") && e.contains("17"), "{e}");
    let mut y = [0f32; 33];
    let e = dequantize_row(GgmlType::Q4_0, &[0u8; 18], &mut y).unwrap_err().to_string();
    assert!(e.contains("33") && e.contains("q4_0"), "{e}");
    let e = dequantize_row(GgmlType::I8, &[0u8; 4], &mut [0f32; 4]).unwrap_err().to_string();
    assert!(e.contains("i8"), "{e}");
    let e = dequantize_row(GgmlType::IQ2_XXS, &[0u8; 65], &mut [0f32; 256]).unwrap_err().to_string();
    assert!(e.contains("iq2_xxs") && e.contains("65"), "{e}");
    let e = llama_core::quant::quantize_row(GgmlType::IQ3_S, &[0f32; 256], &mut [0u8; 110]).unwrap_err().to_string();
    assert!(e.contains("iq3_s"), "{e}");
}
