//! Our tokenizer against llama.cpp's on every vocabulary the tests use: the answers of
//! llama-cpp-python (`Llama(path, vocab_only=True)`) recorded in tests/data/vocab/llamacpp/<name>.json
//! by tools/tokenizer_reference.py. Per vocabulary: what loading decided (special ids, the
//! end-of-generation set, every token's attribute bits, add_bos/add_eos, or the load error), ids
//! of hand-picked texts with add_special/parse_special 00/01/10/11, their detokenization
//! (llama-cpp-python's `detokenize` and llama.cpp's `llama_detokenize`), ids of generated lines.
//!
//! Vocabularies come from (the JSON's `source`): the committed tests/data/vocab GGUFs; the test
//! models (SKIP when absent); llama.cpp's `convert_hf_to_gguf.py --vocab-only` of a
//! tests/data/arch fixture, cached in the target dir (SKIP without python3 + llama.cpp's converter,
//! found through $LLAMA_CPP_DIR, default the llama-cpp-python sdist); variants of a committed GGUF
//! with metadata values or token texts/types replaced, written here with our GGUF writer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use llama_core::gguf::{GgufFile, GgufString, GgufWriter, Value};
use llama_core::tokenizer::{attr, token_type, Tokenizer};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn reference_dir() -> PathBuf {
    common::vocab_dir().join("llamacpp")
}

fn references(kinds: &[&str]) -> Vec<(String, Json)> {
    let mut out: Vec<(String, Json)> = std::fs::read_dir(reference_dir())
        .expect("tests/data/vocab/llamacpp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let j: Json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), j)
        })
        .filter(|(_, j)| kinds.contains(&j["source"]["kind"].as_str().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no reference of kinds {kinds:?}");
    out
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn llama_cpp_dir() -> PathBuf {
    std::env::var_os("LLAMA_CPP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"))
}

/// llama.cpp's vocab-only conversion of an arch fixture, cached under the target dir by a hash of
/// the fixture's config and tokenizer files and the converter arguments.
fn convert_arch(family: &str, args: &[String]) -> Result<PathBuf, String> {
    let dir = common::repo_data().join("arch").join(family);
    let script = llama_cpp_dir().join("convert_hf_to_gguf.py");
    if !script.exists() {
        return Err(format!("{} not found (set LLAMA_CPP_DIR)", script.display()));
    }
    let mut h = Sha256::new();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model"] {
        h.update(f.as_bytes());
        h.update(std::fs::read(dir.join(f)).unwrap_or_default());
    }
    h.update(args.join(" ").as_bytes());
    let key: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenizer-llamacpp");
    std::fs::create_dir_all(&cache).unwrap();
    let out = cache.join(format!("{family}-{key}.gguf"));
    if out.exists() {
        return Ok(out);
    }
    let part = cache.join(format!("{family}-{key}.part.gguf"));
    let r = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .arg("--vocab-only")
        .args(args)
        .arg("--outfile")
        .arg(&part)
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !r.status.success() {
        let err = String::from_utf8_lossy(&r.stderr);
        let why = format!("llama.cpp's converter failed: {}", err.lines().last().unwrap_or(""));
        return ours_if_llamacpps(&dir, &part, &out).map_err(|e| format!("{why}; {e}"));
    }
    std::fs::rename(&part, &out).unwrap();
    Ok(out)
}

/// Without llama.cpp's converter (it needs torch): our `convert` of the fixture to f32, used only
/// when its sha256 is that of llama.cpp's own f32 conversion recorded in llamacpp-conversion.json
/// — then it is llama.cpp's file, byte for byte, and its vocabulary is the one llama.cpp loads.
fn ours_if_llamacpps(dir: &Path, part: &Path, out: &Path) -> Result<PathBuf, String> {
    let conv: Json = serde_json::from_slice(
        &std::fs::read(dir.join("llamacpp-conversion.json")).map_err(|e| format!("no recorded conversion: {e}"))?,
    )
    .unwrap();
    let want = conv["conversions"]["f32"]["sha256"].as_str().ok_or("no recorded f32 conversion")?;
    let r = Command::new("python3")
        .args(["-m", "llama", "convert"])
        .arg(dir)
        .args(["--outtype", "f32", "--quiet", "-o"])
        .arg(part)
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !r.status.success() {
        return Err(format!("our converter failed: {}", String::from_utf8_lossy(&r.stderr).trim()));
    }
    let got: String = Sha256::digest(std::fs::read(part).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    if got != want {
        return Err(format!("our conversion's sha256 {got} is not llama.cpp's {want}"));
    }
    std::fs::rename(part, out).unwrap();
    Ok(out.to_path_buf())
}

/// The base GGUF with the JSON's metadata values and token texts/types replaced.
fn write_variant(src: &Json, out: &Path) -> Result<(), String> {
    let base = gguf_of(&src["base"])?;
    let f = GgufFile::open(&base).unwrap();
    let mut meta: Vec<(String, Value)> = f.metadata().to_vec();
    let edits = src["tokens"].as_array().unwrap();
    if !edits.is_empty() {
        for (k, v) in meta.iter_mut() {
            let Value::Array(t, items) = v else { continue };
            for e in edits {
                let i = e[0].as_u64().unwrap() as usize;
                match k.as_str() {
                    "tokenizer.ggml.tokens" => items[i] = Value::String(GgufString::from(e[1].as_str().unwrap())),
                    "tokenizer.ggml.token_type" => {
                        assert_eq!(*t, llama_core::gguf::ValueType::I32);
                        items[i] = Value::I32(e[2].as_i64().unwrap() as i32);
                    }
                    _ => {}
                }
            }
        }
    }
    for (k, v) in src["metadata"].as_object().unwrap() {
        let val = match v {
            Json::String(s) => Value::String(GgufString::from(s.as_str())),
            Json::Number(n) => Value::U32(n.as_u64().unwrap() as u32),
            other => panic!("metadata value {other}"),
        };
        match meta.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = val,
            None => meta.push((k.clone(), val)),
        }
    }
    let mut w = GgufWriter::new(out);
    for (k, v) in meta {
        w.add(k, v);
    }
    w.write(None).map_err(|e| e.to_string())
}

/// Path of the GGUF a `source` describes, or why it is skipped.
fn gguf_of(src: &Json) -> Result<PathBuf, String> {
    let file = || src["file"].as_str().unwrap();
    let p = match src["kind"].as_str().unwrap() {
        "vocab" => common::vocab_dir().join(file()),
        "model" => common::models_dir().join(file()),
        "arch" => {
            let args: Vec<String> =
                src["convert_args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
            return convert_arch(src["family"].as_str().unwrap(), &args);
        }
        "variant" => {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenizer-llamacpp");
            std::fs::create_dir_all(&dir).unwrap();
            let h = Sha256::digest(src.to_string().as_bytes());
            let key: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let out = dir.join(format!("variant-{key}.gguf"));
            write_variant(src, &out)?;
            return Ok(out);
        }
        other => panic!("unknown source kind {other}"),
    };
    if p.exists() {
        Ok(p)
    } else {
        Err(format!("{} not found", p.display()))
    }
}

fn attr_of_type(t: i32) -> u32 {
    match t {
        token_type::NORMAL => attr::NORMAL,
        token_type::UNKNOWN => attr::UNKNOWN,
        token_type::CONTROL => attr::CONTROL,
        token_type::USER_DEFINED => attr::USER_DEFINED,
        token_type::UNUSED => attr::UNUSED,
        token_type::BYTE => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Compare one vocabulary; returns a one-line summary, panics with the differences.
fn check(name: &str, r: &Json) -> String {
    let path = match gguf_of(&r["source"]) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP: {name}: {why}");
            return format!("{name}: skipped ({why})");
        }
    };
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let loaded = Tokenizer::from_gguf(&f);
    if let Some(err) = r.get("load_error") {
        let e = match loaded {
            Ok(_) => panic!("{name}: llama.cpp refuses this vocabulary ({err}) but we load it"),
            Err(e) => e,
        };
        assert!(matches!(e, llama_core::Error::Tokenizer(_)), "{name}: {e:?} is not a tokenizer error");
        return format!("{name}: refused like llama.cpp ({e})");
    }
    let tok = loaded.unwrap_or_else(|e| panic!("{name}: llama.cpp loads it, we do not: {e}"));
    let mut bad: Vec<String> = Vec::new();
    let n = tok.n_vocab();
    assert_eq!(n as u64, r["n_vocab"].as_u64().unwrap(), "{name}: n_vocab");

    // What loading decided.
    let sp = &r["special"];
    let want = |k: &str| sp[k].as_u64().map(|x| x as u32);
    let ours = [
        ("bos", tok.bos()),
        ("eos", tok.eos()),
        ("eot", tok.eot()),
        ("sep", tok.sep()),
        ("pad", tok.pad()),
        ("fim_pre", tok.fim_pre()),
        ("fim_suf", tok.fim_suf()),
        ("fim_mid", tok.fim_mid()),
        ("fim_pad", tok.fim_pad()),
        ("fim_rep", tok.fim_rep()),
        ("fim_sep", tok.fim_sep()),
    ];
    for (k, got) in ours {
        if got != want(k) {
            bad.push(format!("special {k}: llama.cpp {:?}, ours {got:?}", want(k)));
        }
    }
    if tok.add_bos() != r["add_bos"].as_bool().unwrap() || tok.add_eos() != r["add_eos"].as_bool().unwrap() {
        bad.push(format!("add_bos/add_eos: ours {} {}", tok.add_bos(), tok.add_eos()));
    }
    let eog: Vec<u32> = (0..n as u32).filter(|&i| tok.is_eog(i)).collect();
    if eog != ids(&r["eog"]) {
        bad.push(format!("EOG set: llama.cpp {:?}, ours {eog:?}", ids(&r["eog"])));
    }
    // Runs [first_id, last_id, attr] of tokens whose attribute is not the one of their metadata type.
    let mut changed = std::collections::HashMap::new();
    for run in r["attr_changed"].as_array().unwrap() {
        let (first, last, a) = (run[0].as_u64().unwrap(), run[1].as_u64().unwrap(), run[2].as_u64().unwrap());
        changed.extend((first..=last).map(|id| (id as u32, a as u32)));
    }
    let mut n_attr_bad = 0;
    for id in 0..n as u32 {
        let want = changed.get(&id).copied().unwrap_or_else(|| attr_of_type(tok.token_type(id).unwrap()));
        let got = tok.token_attr(id);
        if got != want {
            n_attr_bad += 1;
            if n_attr_bad <= 5 {
                let text = String::from_utf8_lossy(tok.token_text(id).unwrap());
                bad.push(format!("attr of {id} {text:?}: llama.cpp {want:#x}, ours {got:#x}"));
            }
        }
    }

    // Tokenize / detokenize.
    let mut n_checks = 0;
    let cases = r["cases"].as_array().unwrap();
    for c in cases {
        let text = common::json_bytes(&c["text"]);
        let shown = String::from_utf8_lossy(&text);
        for (flags, want) in c["ids"].as_object().unwrap() {
            let (add, special) = (flags.as_bytes()[0] == b'1', flags.as_bytes()[1] == b'1');
            let got = tok.tokenize(&text, add, special);
            n_checks += 1;
            if got != ids(want) {
                bad.push(format!("tokenize {shown:?} {flags}: llama.cpp {:?}, ours {got:?}", ids(want)));
            }
        }
        let ids11 = ids(&c["ids"]["11"]);
        for (flag, want) in c["detokenize"].as_object().unwrap() {
            let got = tok.detokenize(&ids11, flag == "1");
            n_checks += 1;
            if got != common::json_bytes(want) {
                bad.push(format!(
                    "detokenize {ids11:?} special={flag}: llama.cpp {:?}, ours {:?}",
                    String::from_utf8_lossy(&common::json_bytes(want)),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        for (flags, want) in c["llama_detokenize"].as_object().unwrap() {
            let (rm, unparse) = (flags.as_bytes()[0] == b'1', flags.as_bytes()[1] == b'1');
            let got = tok.detokenize_llama(&ids11, rm, unparse);
            n_checks += 1;
            if got != common::json_bytes(want) {
                bad.push(format!(
                    "llama_detokenize {ids11:?} {flags}: llama.cpp {:?}, ours {:?}",
                    String::from_utf8_lossy(&common::json_bytes(want)),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    let lines = r["lines"].as_array().unwrap();
    for l in lines {
        let text = common::json_bytes(&l["text"]);
        for (flags, want) in l["ids"].as_object().unwrap() {
            let (add, special) = (flags.as_bytes()[0] == b'1', flags.as_bytes()[1] == b'1');
            let got = tok.tokenize(&text, add, special);
            n_checks += 1;
            if got != ids(want) {
                bad.push(format!(
                    "tokenize line {:?} {flags}: llama.cpp {:?}, ours {got:?}",
                    String::from_utf8_lossy(&text),
                    ids(want)
                ));
            }
        }
    }
    if !bad.is_empty() {
        for b in bad.iter().take(20) {
            eprintln!("{name}: {b}");
        }
        panic!("{name}: {} differences from llama.cpp ({n_attr_bad} attributes)", bad.len());
    }
    format!(
        "{name}: {n} tokens, {} EOG, {} attribute overrides, specials equal; {n_checks} tokenize/detokenize \
         answers of {} texts + {} lines identical",
        eog.len(),
        changed.len(),
        cases.len(),
        lines.len()
    )
}

fn check_all(kinds: &[&str]) {
    let mut failed = Vec::new();
    for (name, r) in references(kinds) {
        match std::panic::catch_unwind(|| check(&name, &r)) {
            Ok(summary) => eprintln!("{summary}"),
            Err(_) => failed.push(name),
        }
    }
    assert!(failed.is_empty(), "differences from llama.cpp in: {failed:?}");
}

/// tests/data/vocab's GGUFs and their variants (other pre-tokenizers, control-looking texts, …).
#[test]
fn committed_vocabs_and_variants_match_llamacpp() {
    check_all(&["vocab", "variant"]);
}

/// The six test models' vocabularies.
#[test]
fn test_model_vocabs_match_llamacpp() {
    check_all(&["model"]);
}

/// llama.cpp's conversions of the tests/data/arch fixtures.
#[test]
fn arch_fixture_vocabs_match_llamacpp() {
    check_all(&["arch"]);
}
