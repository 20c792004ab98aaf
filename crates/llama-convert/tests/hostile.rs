//! Hostile and broken inputs: each gets a clear error naming the problem and leaves no output
//! file (neither the GGUF nor its temp file).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use llama_convert::{convert, ConvertOptions, OutType};

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("llama-convert-hostile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mirrors a fixture folder with symlinks (the fixtures are read-only and large).
fn mirror(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn replace(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    std::fs::write(p, bytes).unwrap();
}

/// Converts `dir`; expects an error whose message contains `needle`, and no output left behind.
fn expect_err(dir: &Path, needle: &str) -> String {
    let out = dir.join("out.gguf");
    let e = convert(&ConvertOptions {
        path: dir.to_path_buf(),
        outtype: OutType::F16,
        out: Some(out.clone()),
        vocab_dir: None,
        progress: false,
    })
    .expect_err("conversion should fail")
    .to_string();
    assert!(e.contains(needle), "error '{e}' does not mention '{needle}'");
    assert!(!out.exists(), "output left behind after: {e}");
    assert!(!dir.join("out.gguf.tmp").exists(), "temp file left behind after: {e}");
    e
}

/// A torch-style zip: `archive/data.pkl` plus stored storages `archive/data/<key>`.
fn pth_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opt).unwrap();
        z.write_all(pickle).unwrap();
        for (k, d) in storages {
            z.start_file(format!("archive/data/{k}"), opt).unwrap();
            z.write_all(d).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn binunicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}

/// Protocol-2 pickle of `{name: _rebuild_tensor_v2(FloatStorage '0' numel, offset, shape, stride)}`.
fn state_dict_pickle(name: &str, numel: u32, offset: u8, shape: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    p.extend(binunicode(name));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    p.extend(binunicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(binunicode("0"));
    p.extend(binunicode("cpu"));
    p.push(b'J');
    p.extend(numel.to_le_bytes());
    p.extend([b't', b'Q', b'K', offset]);
    let tuple = |p: &mut Vec<u8>, xs: &[u8]| {
        p.push(b'(');
        for &x in xs {
            p.extend([b'K', x]);
        }
        p.push(b't');
    };
    tuple(&mut p, shape);
    tuple(&mut p, stride);
    p.extend([0x89, b'N', b't', b'R', b'u', b'.']);
    p
}

#[test]
fn pth_strided_view_is_read_in_logical_order() {
    let t = Tmp::new("strided");
    let data: Vec<u8> = (0..13).flat_map(|i| (i as f32).to_le_bytes()).collect(); // storage [13]
                                                                                  // 3×4 view at offset 1 with strides (1, 3): element (i, j) = storage[1 + i + 3j] (a transpose).
    let zip = pth_zip(&state_dict_pickle("w", 13, 1, &[3, 4], &[1, 3]), &[("0", &data)]);
    replace(&t.0, "x.pth", &zip);
    let ts = llama_convert::pth::load_pth(&t.0.join("x.pth")).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].shape, vec![3, 4]);
    let got = llama_convert::tensor::to_f32(ts[0].dtype, &ts[0].read().unwrap());
    let want: Vec<f32> = (0..3).flat_map(|i| (0..4).map(move |j| (1 + i + 3 * j) as f32)).collect();
    assert_eq!(got, want);
}

#[test]
fn pth_view_past_its_storage_is_refused() {
    let t = Tmp::new("oob");
    let data: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let zip = pth_zip(&state_dict_pickle("w", 12, 1, &[3, 4], &[4, 1]), &[("0", &data)]);
    replace(&t.0, "x.pth", &zip);
    let e = llama_convert::pth::load_pth(&t.0.join("x.pth")).unwrap_err().to_string();
    assert!(e.contains("'w'") && e.contains("reaches element 12"), "{e}");
    // Storage entry smaller than the pickle claims.
    let zip = pth_zip(&state_dict_pickle("w", 12, 0, &[3, 4], &[4, 1]), &[("0", &data[..40])]);
    replace(&t.0, "x.pth", &zip);
    let e = llama_convert::pth::load_pth(&t.0.join("x.pth")).unwrap_err().to_string();
    assert!(e.contains("claims 12 elements"), "{e}");
}

#[test]
fn pickle_naming_os_system_is_refused() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("ossystem");
    mirror(&fx.join("meta-llama1/tiny"), &t.0);
    let mut p = vec![0x80, 2];
    p.extend(b"cos\nsystem\n");
    p.extend(binunicode("touch /tmp/pwned"));
    p.extend([0x85, b'R', b'.']);
    replace(&t.0, "consolidated.00.pth", &pth_zip(&p, &[]));
    let e = expect_err(&t.0, "os.system");
    assert!(e.contains("consolidated.00.pth"), "{e}");
    // Any other global outside the allow-list too.
    let mut p = vec![0x80, 2];
    p.extend(b"cbuiltins\neval\n");
    replace(&t.0, "consolidated.00.pth", &pth_zip(&p, &[]));
    expect_err(&t.0, "builtins.eval");
}

#[test]
fn truncated_pth_is_refused() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("trunc");
    mirror(&fx.join("meta-llama1/tiny"), &t.0);
    let full = std::fs::read(fx.join("meta-llama1/tiny/consolidated.00.pth")).unwrap();
    replace(&t.0, "consolidated.00.pth", &full[..full.len() / 2]);
    expect_err(&t.0, "consolidated.00.pth");
}

#[test]
fn safetensors_header_claiming_too_much_is_refused() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("st");
    mirror(&fx.join("hf-llama1"), &t.0);
    let full = std::fs::read(fx.join("hf-llama1/model.safetensors")).unwrap();
    // Header length beyond the file.
    let mut b = full.clone();
    b[..8].copy_from_slice(&(full.len() as u64).to_le_bytes());
    replace(&t.0, "model.safetensors", &b);
    expect_err(&t.0, "header claims");
    // Data cut short: the last tensors' offsets now point past the end.
    replace(&t.0, "model.safetensors", &full[..full.len() - 1000]);
    expect_err(&t.0, "outside the");
}

#[test]
fn params_json_missing_keys_is_refused() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("params");
    mirror(&fx.join("meta-llama1/tiny"), &t.0);
    replace(
        &t.0,
        "params.json",
        br#"{"dim": 128, "multiple_of": 32, "n_layers": 2, "norm_eps": 1e-06, "vocab_size": -1}"#,
    );
    let e = expect_err(&t.0, "'n_heads'");
    assert!(e.contains("params.json"), "{e}");
}

#[test]
fn unsupported_architecture_is_refused() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("arch");
    mirror(&fx.join("hf-llama1"), &t.0);
    let cfg = std::fs::read_to_string(fx.join("hf-llama1/config.json"))
        .unwrap()
        .replace("LlamaForCausalLM", "GPT2LMHeadModel");
    replace(&t.0, "config.json", cfg.as_bytes());
    expect_err(&t.0, "GPT2LMHeadModel");
}

/// A full disk while writing (RLIMIT_FSIZE in a child process, SIGXFSZ ignored so the write
/// returns EFBIG): the error is reported and neither the output nor its temp file remain.
#[test]
fn full_disk_leaves_no_output() {
    let Some(fx) = common::fixtures() else { return };
    if let Ok(dir) = std::env::var("LLAMA_CONVERT_FSIZE_CHILD") {
        let out = Path::new(&dir).join("out.gguf");
        let r = convert(&ConvertOptions {
            path: fx.join("hf-llama1"),
            outtype: OutType::F32,
            out: Some(out),
            vocab_dir: None,
            progress: false,
        });
        match r {
            Ok(_) => println!("CHILD: converted"),
            Err(e) => println!("CHILD ERROR: {e}"),
        }
        return;
    }
    let t = Tmp::new("fsize");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 2048; exec "$0" full_disk_leaves_no_output --exact --nocapture --test-threads=1"#)
        .arg(&exe)
        .env("LLAMA_CONVERT_FSIZE_CHILD", &t.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CHILD ERROR:") && stdout.contains("File too large"), "child said: {stdout}");
    assert!(!t.0.join("out.gguf").exists());
    assert!(!t.0.join("out.gguf.tmp").exists());
}

#[test]
fn vocab_dir_is_used_and_a_missing_tokenizer_is_named() {
    let Some(fx) = common::fixtures() else { return };
    let t = Tmp::new("vocabdir");
    mirror(&fx.join("hf-llama1"), &t.0);
    std::fs::remove_file(t.0.join("tokenizer.model")).unwrap();
    let e = expect_err(&t.0, "no tokenizer.model or tokenizer.json");
    assert!(e.contains("--vocab-dir"), "{e}");
    let out = t.0.join("v.gguf");
    convert(&ConvertOptions {
        path: t.0.clone(),
        outtype: OutType::F16,
        out: Some(out.clone()),
        vocab_dir: Some(fx.join("meta-llama1")),
        progress: false,
    })
    .unwrap();
    let f = llama_core::gguf::GgufFile::open(&out).unwrap();
    let (_, toks) = f.get_arr("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(toks.len(), 32000);
    assert_eq!(toks[1].as_str(), Some("<s>"));
}

/// BERT checkpoints (the committed tests/data/embed/bert-tiny) with broken parts: typed errors
/// naming the problem, no output.
#[test]
fn broken_bert_checkpoints_are_refused() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/embed/bert-tiny");
    let tok: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("tokenizer.json")).unwrap()).unwrap();

    // A WordPiece vocabulary llama.cpp does not know (its probe text hashes to an unlisted
    // value): refused as llama.cpp's converter refuses it.
    let copy = |tag: &str, pooling: bool| {
        let t = Tmp::new(tag);
        mirror(&src, &t.0);
        if pooling {
            std::os::unix::fs::symlink(src.join("1_Pooling"), t.0.join("1_Pooling")).unwrap();
        }
        t
    };
    let t = copy("bert-vocab", true);
    let mut small = tok.clone();
    let vocab = small["model"]["vocab"].as_object_mut().unwrap();
    vocab.retain(|_, id| id.as_u64().unwrap() < 2000);
    replace(&t.0, "tokenizer.json", small.to_string().as_bytes());
    expect_err(&t.0, "WordPiece pre-tokenizer not recognised");

    // A token id past the model's vocab_size.
    let t = copy("bert-id", true);
    let mut big = tok.clone();
    big["model"]["vocab"]["zzzz"] = serde_json::json!(40000);
    replace(&t.0, "tokenizer.json", big.to_string().as_bytes());
    expect_err(&t.0, "does not fit the model's vocab_size");

    // A pooling module whose config names no supported mode.
    let t = copy("bert-pool", false);
    std::fs::create_dir_all(t.0.join("1_Pooling")).unwrap();
    replace(&t.0, "1_Pooling/config.json", br#"{"pooling_mode_max_tokens": true}"#);
    expect_err(&t.0, "only mean, cls and last-token pooling");

    // A pooling module path leaving the folder.
    let t = copy("bert-pool-path", true);
    replace(&t.0, "modules.json", br#"[{"type": "sentence_transformers.models.Pooling", "path": "../x"}]"#);
    expect_err(&t.0, "leaves the model folder");
}
