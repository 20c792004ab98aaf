//! `quantize_file` against llama.cpp itself:
//! - the per-tensor sha256 of llama.cpp's `--pure` quantizations of the HF fixtures
//!   (fixtures/llama.cpp-conversions.json), from inputs rebuilt with gguf-py whose own hashes are
//!   checked against the same JSON first;
//! - whole files, byte for byte, against `llama_model_quantize` (llama-cpp-python's libllama) run
//!   on the same input, for every file type, pure and mixed: this covers metadata order, tensor
//!   order, the per-tensor type rules and the quantizers at once;
//! - rows against ggml's `ggml_quantize_chunk` for the K-quants the mixes use.
//!
//! Everything skips (with a message) when python3, gguf-py or llama-cpp-python is missing.

mod quant_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use llama_core::gguf::{GgufFile, Value};
use llama_core::quant::{quantize, GgmlType};
use llama_core::quantize_file::{self as qf, FileType, QuantizeOptions, TensorEvent};
use llama_core::Error;
use quant_common::*;

fn ref_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/llama_cpp_ref.py")
}

/// Runs the reference script; `None` (after saying why) when a Python package is missing.
fn py(args: &[&str]) -> Option<()> {
    let out = match Command::new("python3").arg(ref_script()).args(args).stderr(Stdio::piped()).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP: cannot run python3: {e}");
            return None;
        }
    };
    match out.status.code() {
        Some(0) => Some(()),
        Some(3) => {
            eprintln!("SKIP: {}", String::from_utf8_lossy(&out.stderr).trim());
            None
        }
        _ => panic!("llama_cpp_ref.py {args:?} failed: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file type llama.cpp makes without an importance matrix (all of ours but Q2_K_S).
const NO_IMATRIX: [FileType; 14] = {
    use FileType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K]
};

fn opts(t: FileType, pure: bool) -> QuantizeOptions {
    QuantizeOptions::new(t, pure, 2)
}

fn ours(input: &Path, out: &Path, t: FileType, pure: bool) {
    qf::quantize_file(input, Some(out), &opts(t, pure), None)
        .unwrap_or_else(|e| panic!("quantize {t} pure={pure}: {e}"));
}

fn llama_cpp(input: &Path, out: &Path, t: FileType, pure: bool) -> Option<()> {
    py(&["llama-quantize", s(input), s(out), &t.id().to_string(), if pure { "1" } else { "0" }, "2"])
}

/// Panics with the first structural difference (metadata, tensor list, tensor bytes) unless the
/// two files are byte-identical.
fn assert_same_file(what: &str, ours: &Path, theirs: &Path) {
    let (a, b) = (std::fs::read(ours).unwrap(), std::fs::read(theirs).unwrap());
    if a == b {
        return;
    }
    let (fa, fb) = (GgufFile::open(ours).unwrap(), GgufFile::open(theirs).unwrap());
    let ka: Vec<_> = fa.metadata().iter().map(|(k, v)| (k.clone(), v.value_type())).collect();
    let kb: Vec<_> = fb.metadata().iter().map(|(k, v)| (k.clone(), v.value_type())).collect();
    assert_eq!(ka, kb, "{what}: metadata keys/types differ");
    for ((k, va), (_, vb)) in fa.metadata().iter().zip(fb.metadata()) {
        assert!(va == vb, "{what}: metadata {k} differs: {va:?} vs {vb:?}");
    }
    let ta: Vec<_> = fa.tensors().iter().map(|t| (t.name.clone(), t.ggml_type, t.dims.clone())).collect();
    let tb: Vec<_> = fb.tensors().iter().map(|t| (t.name.clone(), t.ggml_type, t.dims.clone())).collect();
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x, y, "{what}: tensor list differs (ours vs llama.cpp)");
    }
    assert_eq!(ta.len(), tb.len(), "{what}: tensor count");
    for (x, y) in fa.tensors().iter().zip(fb.tensors()) {
        assert!(fa.tensor_data(x) == fb.tensor_data(y), "{what}: data of {} ({}) differs", x.name, x.ggml_type);
    }
    panic!("{what}: files differ ({} vs {} bytes) outside metadata and tensor data", a.len(), b.len());
}

/// Builds `<model>-<kind>.gguf` of an HF fixture with gguf-py (exits 4 → panic, if any tensor's
/// hash differs from llama.cpp's conversion).
fn hf_input(dir: &Path, model: &str, kind: &str) -> Option<PathBuf> {
    let fx = fixtures_dir();
    let json = fx.join("llama.cpp-conversions.json");
    if !json.exists() || !fx.join(model).is_dir() {
        eprintln!("SKIP: fixtures not found under {}", fx.display());
        return None;
    }
    let out = dir.join(format!("{model}-{kind}.gguf"));
    py(&["hf-gguf", s(&fx.join(model)), s(&json), kind, s(&out)])?;
    Some(out)
}

fn json_conversions() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures_dir().join("llama.cpp-conversions.json")).unwrap()).unwrap()
}

fn scalar_json(v: &Value) -> Option<serde_json::Value> {
    Some(match v {
        Value::String(s) => serde_json::json!(s.to_string_lossy()),
        Value::Bool(b) => serde_json::json!(b),
        Value::F32(x) => serde_json::json!(*x as f64),
        Value::Array(..) => return None,
        v => serde_json::json!(v.as_int()? as i64),
    })
}

#[test]
fn pure_quantizations_match_llama_cpp_fixture_hashes() {
    let dir = temp_dir("qf-fixture");
    let conv = json_conversions();
    for model in ["hf-llama1", "hf-llama2-gqa-sharded"] {
        // llama.cpp-conversions.json does not say which conversion llama-quantize read; both give the
        // same f32 values (every weight here is exact in f16), so both must reproduce the hashes.
        for kind in ["f16", "f32"] {
            let Some(input) = hf_input(&dir, model, kind) else { return };
            for t in [FileType::Q4_0, FileType::Q4_1, FileType::Q5_0, FileType::Q5_1, FileType::Q8_0, FileType::Q4_K_M]
            {
                let want = &conv[format!("{model}-{}.gguf", t.name())];
                let out = dir.join(format!("{model}-{kind}-{t}.gguf"));
                ours(&input, &out, t, true);
                let f = GgufFile::open(&out).unwrap();
                let want_t = want["tensors"].as_object().unwrap();
                // (Sets only: serde_json keeps insertion order once a crate in the build enables
                // `preserve_order`, as llguidance does; orders are checked by the whole-file tests below.)
                let mut names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
                names.sort();
                let mut want_names: Vec<&str> = want_t.keys().map(|k| k.as_str()).collect();
                want_names.sort();
                assert_eq!(names, want_names, "{model} {kind}→{t}: tensor names");
                for ti in f.tensors() {
                    let w = &want_t[&ti.name];
                    assert!(
                        ti.ggml_type.name().eq_ignore_ascii_case(w[0].as_str().unwrap()),
                        "{model} {t} {}: type {} vs {}",
                        ti.name,
                        ti.ggml_type,
                        w[0]
                    );
                    assert_eq!(
                        sha256_hex(f.tensor_data(ti)),
                        w[2].as_str().unwrap(),
                        "{model} {kind}→{t}: {} bytes differ",
                        ti.name
                    );
                }
                let mut keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
                keys.sort();
                let mut want_keys: Vec<&str> = want["kv"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
                want_keys.sort();
                assert_eq!(keys, want_keys, "{model} {t}: metadata keys");
                for (k, v) in f.metadata() {
                    if let Some(j) = scalar_json(v) {
                        let w = &want["kv"][k];
                        let same = match (j.as_f64(), w.as_f64()) {
                            (Some(a), Some(b)) => a == b,
                            _ => &j == w,
                        };
                        assert!(same, "{model} {t}: {k} = {j} vs llama.cpp {w}");
                    }
                }
                eprintln!("{model} {kind}→{t} --pure: {} tensors identical to llama.cpp's", f.tensors().len());
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every file type, pure and mixed, against llama_model_quantize on the same input.
fn same_as_llama_cpp(dir: &Path, input: &Path, tag: &str, types: &[FileType]) -> Option<()> {
    for &t in types {
        for pure in [false, true] {
            let (a, b) =
                (dir.join(format!("{tag}-{t}-{pure}-ours.gguf")), dir.join(format!("{tag}-{t}-{pure}-llama.gguf")));
            llama_cpp(input, &b, t, pure)?;
            ours(input, &a, t, pure);
            assert_same_file(&format!("{tag} → {t} (pure={pure})"), &a, &b);
            eprintln!(
                "{tag} → {t} pure={pure}: byte-identical to llama.cpp ({} bytes)",
                std::fs::metadata(&a).unwrap().len()
            );
            std::fs::remove_file(&a).ok();
            std::fs::remove_file(&b).ok();
        }
    }
    Some(())
}

#[test]
fn hf_fixture_files_identical_to_llama_quantize() {
    let dir = temp_dir("qf-hf");
    use FileType::*;
    for (model, kind, types) in
        [("hf-llama1", "f16", &NO_IMATRIX[..]), ("hf-llama2-gqa-sharded", "f32", &[Q4_0, Q4_K_M, Q6_K][..])]
    {
        let Some(input) = hf_input(&dir, model, kind) else { return };
        if same_as_llama_cpp(&dir, &input, model, types).is_none() {
            return;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// One synthetic model: a label and its `synth` arguments after the output path (N_LAYER N_EMBD
/// N_HEAD N_HEAD_KV N_FF N_VOCAB TYPE TIED SEED [N_EXPERT [ARCH]]).
struct Synth {
    label: &'static str,
    args: &'static [&'static str],
    types: &'static [FileType],
}

fn synth_cases(cases: &[Synth]) {
    let dir = temp_dir("qf-mix");
    for c in cases {
        let input = dir.join(format!("mix-{}.gguf", c.label));
        let mut args = vec!["synth", s(&input)];
        args.extend_from_slice(c.args);
        if py(&args).is_none() {
            return;
        }
        if same_as_llama_cpp(&dir, &input, &format!("mix-{}", c.label), c.types).is_none() {
            return;
        }
        std::fs::remove_file(&input).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// 22 layers of rows of 256 and 768, so the K-quant mixes really choose Q2_K…Q6_K and the
/// use_more_bits pattern shows; F16, BF16 and F32 inputs; tied and untied output; 4 query heads
/// per KV head (Q2_K's attn_v → Q4_K) and 1 (→ Q3_K).
#[test]
fn synthetic_mix_files_identical_to_llama_quantize() {
    use FileType::*;
    let all = [
        Synth { label: "f16", args: &["22", "256", "8", "2", "768", "512", "f16", "0", "7"], types: &NO_IMATRIX },
        Synth {
            label: "bf16-tied",
            args: &["22", "256", "8", "2", "768", "512", "bf16", "1", "7"],
            types: &[Q4_0, Q2_K, Q3_K_L, Q4_K_M, Q5_K_M, Q6_K],
        },
        Synth {
            label: "f32",
            args: &["22", "256", "8", "2", "768", "512", "f32", "0", "7"],
            types: &[Q3_K_S, Q4_K_S, Q5_K_S, Q8_0],
        },
        Synth {
            label: "f16-gqa1",
            args: &["22", "256", "8", "8", "768", "512", "f16", "0", "8"],
            types: &[Q2_K, Q3_K_S, Q3_K_M, Q3_K_L],
        },
    ];
    // Without LLAMA_TEST_FULL one input per new rule and few mixes (minutes less).
    let fast = [
        Synth {
            label: "bf16-tied",
            args: &["22", "256", "8", "2", "768", "512", "bf16", "1", "7"],
            types: &[Q4_0, Q4_K_M],
        },
        Synth {
            label: "f16-gqa1",
            args: &["22", "256", "8", "8", "768", "512", "f16", "0", "8"],
            types: &[Q2_K, Q3_K_M],
        },
    ];
    synth_cases(if full() { &all } else { &fast });
}

/// The rules that depend on the model rather than the layer: 8-expert MoE (attn_v / attn_k → Q8_0,
/// attn_output → Q5_K, 3-D expert tensors whose layer comes from the name), Falcon (its ffn_down
/// and attn_output schemes, Q8_0 output) and llama.cpp's 70B class (attn_v Q3_K/Q4_K → Q5_K).
#[test]
fn model_dependent_mix_rules_identical_to_llama_quantize() {
    use FileType::*;
    let all = [
        Synth {
            label: "moe8",
            args: &["8", "256", "8", "2", "256", "512", "f16", "0", "9", "8"],
            types: &[Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_M],
        },
        Synth {
            label: "falcon",
            args: &["16", "256", "8", "2", "256", "512", "f16", "0", "10", "0", "falcon"],
            types: &[Q2_K, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M],
        },
        Synth {
            label: "qwen2-70b",
            args: &["80", "256", "8", "8", "256", "256", "f16", "0", "11", "0", "qwen2"],
            types: &[Q2_K, Q3_K_S, Q4_K_S],
        },
    ];
    let fast = [
        Synth { label: "moe8", args: &["8", "256", "8", "2", "256", "512", "f16", "0", "9", "8"], types: &[Q3_K_M] },
        Synth {
            label: "falcon",
            args: &["16", "256", "8", "2", "256", "512", "f16", "0", "10", "0", "falcon"],
            types: &[Q3_K_M],
        },
    ];
    synth_cases(if full() { &all } else { &fast });
}

/// With an importance matrix, as the llama-quantize program runs with `--imatrix` (the reference
/// script reads the file as it does and passes the weights and the quantize.imatrix.* keys to
/// llama_model_quantize): GGUF and legacy .dat files, output.weight missing (it goes without),
/// MoE experts without data, the rules that change with an imatrix (Q4_0/Q5_0 ffn_down, Q2_K_S).
#[test]
fn imatrix_files_identical_to_llama_quantize() {
    use FileType::*;
    let dir = temp_dir("qf-imat");
    let all: &[(&str, &[&str], &[FileType])] = &[
        (
            "dense",
            &["22", "256", "8", "2", "512", "512", "f16", "0", "12"],
            &[Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K],
        ),
        ("moe8", &["4", "256", "8", "2", "256", "512", "f16", "0", "13", "8"], &[Q2_K_S, Q3_K_M, Q4_K_M, Q5_0]),
    ];
    let fast: &[(&str, &[&str], &[FileType])] = &[
        ("dense", &["22", "256", "8", "2", "512", "512", "f16", "0", "12"], &[Q4_0, Q2_K_S, Q4_K_M]),
        ("moe8", &["4", "256", "8", "2", "256", "512", "f16", "0", "13", "8"], &[Q3_K_M]),
    ];
    for &(label, args, types) in if full() { all } else { fast } {
        let input = dir.join(format!("{label}.gguf"));
        let mut a = vec!["synth", s(&input)];
        a.extend_from_slice(args);
        if py(&a).is_none() {
            return;
        }
        for fmt in ["gguf", "dat"] {
            let im = dir.join(format!("{label}-imatrix.{fmt}"));
            py(&["imatrix", s(&input), s(&im), fmt, "5", "output.weight"]).unwrap();
            let m = std::sync::Arc::new(qf::Imatrix::load(&im).unwrap());
            assert_eq!(m.is_legacy, fmt == "dat");
            for &t in types {
                let (ours_p, theirs_p) =
                    (dir.join(format!("{label}-{t}-ours.gguf")), dir.join(format!("{label}-{t}-llama.gguf")));
                py(&["llama-quantize", s(&input), s(&theirs_p), &t.id().to_string(), "0", "2", s(&im)]).unwrap();
                let mut o = opts(t, false);
                o.imatrix = Some(m.clone());
                qf::quantize_file(&input, Some(&ours_p), &o, None).unwrap_or_else(|e| panic!("{label} {t}: {e}"));
                assert_same_file(&format!("{label} → {t} with a {fmt} imatrix"), &ours_p, &theirs_p);
                eprintln!("{label} → {t} with a {fmt} imatrix: byte-identical to llama.cpp");
                std::fs::remove_file(&ours_p).ok();
                std::fs::remove_file(&theirs_p).ok();
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Typed errors: Q2_K_S without an imatrix; an imatrix of another model (sizes differ; an entry
/// a Q2_K_S tensor needs is missing); files that are no imatrix.
#[test]
fn imatrix_errors_are_typed() {
    let dir = temp_dir("qf-imerr");
    let (a, b) = (dir.join("a.gguf"), dir.join("b.gguf"));
    if py(&["synth", s(&a), "4", "256", "8", "2", "512", "512", "f16", "0", "1"]).is_none() {
        return;
    }
    py(&["synth", s(&b), "4", "512", "8", "2", "512", "512", "f16", "0", "1"]).unwrap();
    let out = dir.join("out.gguf");
    let e = qf::quantize_file(&a, Some(&out), &opts(FileType::Q2_K_S, false), None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("needs an importance matrix"), "{e}");
    // b's imatrix on a: rows of 512 vs 256.
    let imb = dir.join("b.imatrix");
    py(&["imatrix", s(&b), s(&imb), "gguf", "1"]).unwrap();
    let mut o = opts(FileType::Q4_K_M, false);
    o.imatrix = Some(std::sync::Arc::new(qf::Imatrix::load(&imb).unwrap()));
    let e = qf::quantize_file(&a, Some(&out), &o, None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("another model"), "{e}");
    assert!(!out.exists());
    // a's imatrix without blk.2.attn_q: fine for Q4_K_M (that tensor goes without), not for Q2_K_S.
    let ima = dir.join("a.imatrix");
    py(&["imatrix", s(&a), s(&ima), "dat", "1", "blk.2.attn_q.weight"]).unwrap();
    let mut o = opts(FileType::Q2_K_S, false);
    o.imatrix = Some(std::sync::Arc::new(qf::Imatrix::load(&ima).unwrap()));
    let e = qf::quantize_file(&a, Some(&out), &o, None).unwrap_err();
    assert!(e.to_string().contains("blk.2.attn_q.weight") && e.to_string().contains("another model"), "{e}");
    o.file_type = FileType::Q4_K_M;
    qf::quantize_file(&a, Some(&out), &o, None).unwrap();
    // Not an imatrix: a model GGUF (no imatrix.* keys), junk, a truncated .dat.
    let e = qf::Imatrix::load(&a).unwrap_err();
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("imatrix metadata"), "{e}");
    std::fs::write(dir.join("junk"), b"\x05\0\0\0\x03\0\0\0abc").unwrap();
    let e = qf::Imatrix::load(&dir.join("junk")).unwrap_err();
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("truncated"), "{e}");
    let e = qf::Imatrix::load(&dir.join("missing")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Rows with the cases the scale searches and clamps care about.
fn test_rows(n_per_row: usize, n_rows: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let mut v = Vec::with_capacity(n_per_row * n_rows); // [n_rows, n_per_row]
    for r in 0..n_rows {
        for i in 0..n_per_row {
            let x = next();
            v.push(match r % 8 {
                0 => 0.0,  // all zero
                1 => 0.25, // constant
                2 => {
                    if i == 17 {
                        50.0
                    } else {
                        x * 0.01
                    }
                } // one outlier
                3 => x * 1e-20, // tiny
                4 => x.abs() * 3.0, // all positive (min clamps to 0)
                5 => -x.abs(), // all negative
                _ => x * x * x * (1.0 + r as f32), // heavy tails
            });
        }
    }
    v
}

#[test]
fn k_quant_rows_match_ggml_quantize_chunk() {
    let dir = temp_dir("qf-rows");
    for t in [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q5_K, GgmlType::Q4_K, GgmlType::Q6_K] {
        let (n, rows) = (1024, 64);
        let src = test_rows(n, rows, t.id() as u64);
        let (fin, fout) = (dir.join("in.f32"), dir.join("out.q"));
        std::fs::write(&fin, f32_bytes(&src)).unwrap();
        if py(&["ggml-quantize", &t.id().to_string(), &n.to_string(), s(&fin), s(&fout)]).is_none() {
            return;
        }
        let want = std::fs::read(&fout).unwrap();
        let got = quantize(t, &src).unwrap();
        assert_eq!(got.len(), want.len(), "{t}: size");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            let bs = t.type_size();
            panic!("{t}: first differing byte {i} (block {}, row {})", i / bs, i / bs / (n / 256));
        }
        eprintln!("{t}: {rows} rows of {n} byte-identical to ggml_quantize_chunk");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Importance weights as llama-imatrix's are (means of squared activations): positive, over
/// several magnitudes, with a few zeros (columns no activation reached).
fn test_imatrix(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            if i % 97 == 5 {
                0.0
            } else {
                10f32.powf(4.0 * u - 3.0)
            }
        })
        .collect()
}

#[test]
fn weighted_rows_match_ggml_quantize_chunk_with_imatrix() {
    let dir = temp_dir("qf-wrows");
    use GgmlType::*;
    for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        let (n, rows) = (1024, 64);
        let src = test_rows(n, rows, 100 + t.id() as u64);
        let qw = test_imatrix(n, t.id() as u64);
        let (fin, fqw, fout) = (dir.join("in.f32"), dir.join("qw.f32"), dir.join("out.q"));
        std::fs::write(&fin, f32_bytes(&src)).unwrap();
        std::fs::write(&fqw, f32_bytes(&qw)).unwrap();
        if py(&["ggml-quantize", &t.id().to_string(), &n.to_string(), s(&fin), s(&fout), s(&fqw)]).is_none() {
            return;
        }
        let want = std::fs::read(&fout).unwrap();
        let row = t.row_size(n as u64).unwrap() as usize;
        let mut got = vec![0u8; row * rows];
        for (r, d) in got.chunks_exact_mut(row).enumerate() {
            llama_core::quant::quantize_row_weighted(t, &src[r * n..(r + 1) * n], d, &qw).unwrap();
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            let bs = t.type_size();
            panic!(
                "{t}: first differing byte {i} (block {}, row {}): ours {:?} vs ggml {:?}",
                i / bs,
                i / row,
                &got[i / bs * bs..][..bs],
                &want[i / bs * bs..][..bs]
            );
        }
        eprintln!("{t}: {rows} rows of {n} with importance weights byte-identical to ggml_quantize_chunk");
    }
    assert!(llama_core::quant::quantize_row_weighted(Q4_K, &[0.0; 256], &mut [0; 144], &[1.0; 255]).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn folder_input_default_name_progress_and_errors() {
    let dir = temp_dir("qf-misc");
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    // A folder without a converted model: clear error naming the expected file.
    let e = qf::quantize_file(&folder, None, &opts(FileType::Q4_0, false), None).unwrap_err();
    assert!(e.to_string().contains("ggml-model-f16.gguf"), "{e}");

    let Some(src) = hf_input(&dir, "hf-llama1", "f16") else { return };
    std::fs::rename(&src, folder.join("ggml-model-f16.gguf")).unwrap();
    let mut events = Vec::new();
    let mut cb = |e: &TensorEvent| {
        events.push((e.index, e.n_tensors, e.plan.name.clone(), e.plan.dst_type));
        true
    };
    let rep = qf::quantize_file(&folder, None, &opts(FileType::Q8_0, false), Some(&mut cb)).unwrap();
    assert_eq!(rep.output, folder.join("ggml-model-q8_0.gguf"));
    assert!(rep.output.is_file());
    let f = GgufFile::open(&rep.output).unwrap();
    assert_eq!(events.len(), f.tensors().len());
    for (i, (t, ev)) in f.tensors().iter().zip(&events).enumerate() {
        assert_eq!((ev.0, ev.1, &ev.2, ev.3), (i, events.len(), &t.name, t.ggml_type));
    }
    assert!(rep.dst_file_bytes < rep.src_file_bytes && rep.dst_tensor_bytes < rep.src_tensor_bytes);
    assert_eq!(f.get_u32("general.file_type").unwrap(), Some(7));

    // Already quantized input: refused, naming the tensor and its type.
    let e = qf::quantize_file(&rep.output, Some(&dir.join("re.gguf")), &opts(FileType::Q4_0, false), None).unwrap_err();
    assert!(e.to_string().contains("already q8_0"), "{e}");
    // Output over the input.
    let inp = folder.join("ggml-model-f16.gguf");
    let e = qf::quantize_file(&inp, Some(&inp), &opts(FileType::Q4_0, false), None).unwrap_err();
    assert!(e.to_string().contains("overwrite"), "{e}");
    // Not a GGUF.
    std::fs::write(dir.join("junk.gguf"), b"not a gguf file at all").unwrap();
    let e = qf::quantize_file(&dir.join("junk.gguf"), Some(&dir.join("j.gguf")), &opts(FileType::Q4_0, false), None)
        .unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    // Unknown type name.
    assert!(FileType::parse("q3_xx").unwrap_err().to_string().contains("q4_k_m"));
    assert_eq!(FileType::parse("Q4_K_M").unwrap(), FileType::Q4_K_M);
    assert_eq!(FileType::parse("q3_k_l").unwrap(), FileType::Q3_K_L);
    // Types llama-quantize only makes with an importance matrix: said so, not "unknown".
    for t in ["IQ2_XXS", "iq1_s", "iq3_xxs"] {
        let e = FileType::parse(t).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("importance matrix"), "{e}");
    }

    // Stopping from the progress callback: Interrupted, and neither the output nor its temp file.
    let out = dir.join("stopped.gguf");
    let mut stop_at_3 = |e: &TensorEvent| e.index < 3;
    let e = qf::quantize_file(&inp, Some(&out), &opts(FileType::Q4_0, false), Some(&mut stop_at_3)).unwrap_err();
    assert!(matches!(e, Error::Interrupted), "{e}");
    assert!(!out.exists() && !dir.join("stopped.gguf.tmp").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The brief's acceptance on a TinyLlama-1.1B-shaped F16 file (make it with
/// `python3 tools/synth_gguf.py ~/.cache/llama-test-models/synth-1b-f16.gguf --shape 1b
/// --type f16 --tokenizer tests/data/vocab/llama-tokenizer.model`). Several minutes on 2 cores,
/// so opt-in: `cargo test -p llama-core --test quantize_file -- --ignored`.
#[test]
#[ignore]
fn synth_1b_q4_0_and_q4_k_m_identical_to_llama_quantize() {
    let input = models_dir().join("synth-1b-f16.gguf");
    if !input.exists() {
        eprintln!("SKIP: {} not found", input.display());
        return;
    }
    let dir = temp_dir("qf-1b");
    for t in [FileType::Q4_0, FileType::Q4_K_M] {
        let (a, b) = (dir.join(format!("ours-{t}.gguf")), dir.join(format!("llama-{t}.gguf")));
        let t0 = std::time::Instant::now();
        if llama_cpp(&input, &b, t, false).is_none() {
            return;
        }
        let t1 = std::time::Instant::now();
        ours(&input, &a, t, false);
        let t2 = std::time::Instant::now();
        assert_same_file(&format!("synth-1b → {t}"), &a, &b);
        eprintln!(
            "synth-1b → {t}: byte-identical; llama.cpp {:.1} s, ours {:.1} s (2 threads)",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64()
        );
        std::fs::remove_file(&a).ok();
        std::fs::remove_file(&b).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}
