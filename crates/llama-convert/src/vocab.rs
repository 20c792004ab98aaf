//! Tokenizer metadata as llama.cpp's converter writes it: SentencePiece (`tokenizer.model`) →
//! `tokenizer.ggml.model = "llama"`, byte-level BPE (`tokenizer.json`) → `"gpt2"` with merges and
//! a pre-tokenizer name; special token ids and add_bos/add_eos from the HF json files.

use std::path::Path;

use llama_core::tokenizer::spm_model::SpmModel;
use llama_core::{Error, Result};
use serde_json::Value as Json;

// tokenizer.ggml.token_type values (= SentencePiece's piece types).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

#[derive(Debug, Default)]
pub struct Vocab {
    /// "llama" or "gpt2"
    pub model: &'static str,
    pub pre: String,
    pub tokens: Vec<Vec<u8>>,
    /// SPM only.
    pub scores: Option<Vec<f32>>,
    pub types: Vec<i32>,
    /// BPE only, "a b" strings.
    pub merges: Option<Vec<String>>,
    /// (gguf key, id) in llama.cpp's order.
    pub special_ids: Vec<(&'static str, u32)>,
    pub add_special: Vec<(&'static str, bool)>,
    pub chat_template: Option<String>,
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map(Some).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// llama.cpp `does_token_look_special`: added tokens some models forget to mark special.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Vocabulary from `dir`: `tokenizer.model` if present, else `tokenizer.json`. `n_vocab` is the
/// model's embedding rows (None: the tokenizer's own size). `config` is the HF config (special ids)
/// if any; `model_type` helps name the BPE pre-tokenizer.
pub fn load_vocab(dir: &Path, n_vocab: Option<u32>, config: Option<&Json>) -> Result<Vocab> {
    let spm = dir.join("tokenizer.model");
    let mut v = if spm.is_file() {
        load_spm(&spm, n_vocab, dir)?
    } else if dir.join("tokenizer.json").is_file() {
        load_bpe(dir, n_vocab, config)?
    } else {
        return Err(Error::Tokenizer(format!(
            "no tokenizer.model or tokenizer.json in {} (use --vocab-dir)",
            dir.display()
        )));
    };
    special_vocab(dir, config, &mut v)?;
    Ok(v)
}

fn load_spm(path: &Path, n_vocab: Option<u32>, dir: &Path) -> Result<Vocab> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let m = SpmModel::parse(&bytes).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let n = n_vocab.map(|x| x as usize).unwrap_or(m.pieces.len());
    // Slots past the tokenizer's pieces (models with padded embeddings) as llama.cpp fills them.
    let mut tokens: Vec<Vec<u8>> = (0..n).map(|i| format!("[PAD{i}]").into_bytes()).collect(); // [n_vocab]
    let mut scores = vec![-10000f32; n]; // [n_vocab]
    let mut types = vec![UNUSED; n]; // [n_vocab]
    for (i, p) in m.pieces.iter().enumerate().take(n) {
        tokens[i] = p.piece.clone();
        scores[i] = p.score;
        // llama.cpp asks sentencepiece is_unknown/is_control/is_unused/is_byte; everything else
        // (USER_DEFINED included) is NORMAL.
        types[i] = match p.kind {
            UNKNOWN | CONTROL | UNUSED | BYTE => p.kind,
            _ => NORMAL,
        };
    }
    // added_tokens.json: {"token": id}
    if let Some(Json::Object(added)) = read_json(&dir.join("added_tokens.json"))? {
        for (tok, id) in added {
            if let Some(id) = id.as_u64().map(|x| x as usize).filter(|&x| x < n) {
                tokens[id] = tok.into_bytes();
                scores[id] = -1000.0;
                types[id] = USER_DEFINED;
            }
        }
    }
    // tokenizer_config.json added_tokens_decoder: {"id": {"content", "special"}}
    if let Some(cfg) = read_json(&dir.join("tokenizer_config.json"))? {
        if let Some(dec) = cfg.get("added_tokens_decoder").and_then(Json::as_object) {
            for (id, data) in dec {
                let Some(id) = id.parse::<usize>().ok().filter(|&x| x < n) else { continue };
                let Some(content) = data.get("content").and_then(Json::as_str) else { continue };
                let special = data.get("special").and_then(Json::as_bool).unwrap_or(false);
                if special || looks_special(content) {
                    types[id] = CONTROL;
                    tokens[id] = content.as_bytes().to_vec();
                } else {
                    types[id] = USER_DEFINED;
                    tokens[id] = content.replace('\u{2581}', " ").into_bytes();
                }
                scores[id] = -1000.0;
            }
        }
    }
    Ok(Vocab { model: "llama", pre: "default".into(), tokens, scores: Some(scores), types, ..Default::default() })
}

/// Pre-tokenizer name as llama.cpp would choose it. llama.cpp hashes the HF tokenizer's output on
/// a probe text; without the HF tokenizer we recognise the split regex instead.
fn bpe_pre_name(tok: &Json, config: Option<&Json>) -> Result<String> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let pre = tok.get("pre_tokenizer").map(|p| p.to_string()).unwrap_or_default();
    // The regex appears JSON-escaped inside the serialised pre_tokenizer.
    let esc = |s: &str| serde_json::to_string(s).unwrap();
    let esc = |s: &str| esc(s)[1..esc(s).len() - 1].to_string();
    if pre.contains(&esc(LLAMA3)) {
        return Ok("llama-bpe".into());
    }
    if pre.contains(&esc(QWEN2)) {
        return Ok("qwen2".into());
    }
    match config.and_then(|c| c.get("model_type")).and_then(Json::as_str) {
        Some("qwen2") => Ok("qwen2".into()),
        Some("llama") if pre.contains("ByteLevel") => Ok("llama-bpe".into()),
        other => Err(Error::Tokenizer(format!(
            "tokenizer.json: unrecognised BPE pre-tokenizer (model_type {other:?}); supported: llama-bpe, qwen2"
        ))),
    }
}

fn load_bpe(dir: &Path, n_vocab: Option<u32>, config: Option<&Json>) -> Result<Vocab> {
    let path = dir.join("tokenizer.json");
    let tok = read_json(&path)?.unwrap_or(Json::Null);
    let bad = |m: &str| Error::format(&path, m.to_string());
    let model = tok.get("model").ok_or_else(|| bad("missing 'model'"))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(bad("only BPE tokenizer.json models are supported"));
    }
    let vocab = model.get("vocab").and_then(Json::as_object).ok_or_else(|| bad("missing model.vocab"))?;
    let mut by_id: Vec<(u64, &str, Option<&Json>)> = Vec::with_capacity(vocab.len()); // (id, token, added entry)
    for (t, id) in vocab {
        by_id.push((id.as_u64().ok_or_else(|| bad("vocab id is not an integer"))?, t, None));
    }
    let added: Vec<&Json> =
        tok.get("added_tokens").and_then(Json::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    for a in &added {
        let id = a.get("id").and_then(Json::as_u64).ok_or_else(|| bad("added token without id"))?;
        let content = a.get("content").and_then(Json::as_str).ok_or_else(|| bad("added token without content"))?;
        by_id.retain(|(i, _, _)| *i != id);
        by_id.push((id, content, Some(*a)));
    }
    let max_id = by_id.iter().map(|x| x.0).max().unwrap_or(0);
    let n = match n_vocab {
        Some(n) if (n as u64) <= max_id => {
            return Err(bad(&format!("token id {max_id} does not fit the model's vocab_size {n}")))
        }
        Some(n) => n as usize,
        None => max_id as usize + 1,
    };
    let mut tokens: Vec<Vec<u8>> = (0..n).map(|i| format!("[PAD{i}]").into_bytes()).collect(); // [n_vocab]
                                                                                               // Ids the tokenizer does not define (embedding rows padded past it): "[PADn]", UNUSED.
    let mut types = vec![UNUSED; n]; // [n_vocab]
    for (id, t, a) in by_id {
        let id = id as usize;
        match a {
            None => {
                tokens[id] = t.as_bytes().to_vec();
                types[id] = NORMAL;
            }
            Some(a) => {
                let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
                if special || looks_special(t) {
                    tokens[id] = t.as_bytes().to_vec();
                    types[id] = CONTROL;
                } else {
                    tokens[id] = t.replace('\u{2581}', " ").into_bytes();
                    types[id] = USER_DEFINED;
                }
            }
        }
    }
    let merges = match model.get("merges").and_then(Json::as_array) {
        None => Vec::new(),
        Some(ms) => ms
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                    (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                    _ => Err(bad("merge pair is not two strings")),
                },
                _ => Err(bad("merge is neither a string nor a pair")),
            })
            .collect::<Result<_>>()?,
    };
    Ok(Vocab {
        model: "gpt2",
        pre: bpe_pre_name(&tok, config)?,
        tokens,
        scores: None,
        types,
        merges: Some(merges),
        ..Default::default()
    })
}

/// The special token types gguf-py's `SpecialVocab` looks for, in its order (the post-processor
/// may append `eot`, `eom`).
const SPECIAL_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// The GGUF key gguf-py writes a special token type's id under (`GGUFWriter.add_{typ}_token_id`;
/// it has none for `cls`, so that id is found but not written).
fn special_id_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        _ => return None,
    })
}

/// The GGUF key of an add-special flag (`GGUFWriter.add_add_{typ}_token`: bos, eos, sep only).
fn add_special_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.add_bos_token",
        "eos" => "tokenizer.ggml.add_eos_token",
        "sep" => "tokenizer.ggml.add_sep_token",
        _ => return None,
    })
}

/// Python's truth value of an optional JSON value (`not x`: None, "", {}, [], 0, False).
fn truthy(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(Json::Number(n)) => n.as_f64() != Some(0.0),
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        Some(Json::Object(o)) => !o.is_empty(),
    }
}

/// `token == v` with Python's semantics for a token name against a tokenizer_config entry (a dict
/// entry never equals a string).
fn is(token: &str, v: &Option<Json>) -> bool {
    v.as_ref().and_then(Json::as_str) == Some(token)
}

/// What gguf-py's `SpecialVocab` learns from tokenizer.json's `post_processor` (a processor or a
/// `Sequence` of them): which special tokens the tokenizer adds (`add_special`, in the order it
/// first sets them), and the tokenizer_config entries it fills in or overrides (`tc`: bos/cls/eos/
/// sep/eot/eom tokens, named as in the templates) — `types` grows by `eot`/`eom` when the
/// template's last token is not the configured EOS. Like gguf-py, only simple templates are read
/// correctly ("crude parsing" in its own words); llama.cpp's converter output is the reference.
fn post_processor_specials(
    tok: &Json,
    tc: &mut Option<serde_json::Map<String, Json>>,
    types: &mut Vec<&'static str>,
    add: &mut Vec<(&'static str, bool)>,
) {
    fn set(add: &mut Vec<(&'static str, bool)>, typ: &'static str, b: bool) {
        match add.iter_mut().find(|(t, _)| *t == typ) {
            Some(e) => e.1 = b,
            None => add.push((typ, b)),
        }
    }
    fn set_default(add: &mut Vec<(&'static str, bool)>, typ: &'static str, b: bool) {
        if !add.iter().any(|(t, _)| *t == typ) {
            add.push((typ, b));
        }
    }
    let special_id = |e: Option<&Json>| -> Option<String> {
        e.and_then(|e| e.get("SpecialToken")).and_then(|s| s.get("id")).and_then(Json::as_str).map(str::to_string)
    };
    let seq_id = |e: &Json| e.get("Sequence").and_then(|s| s.get("id")).and_then(Json::as_str).map(str::to_string);
    let get = |tc: &Option<serde_json::Map<String, Json>>, k: &str| tc.as_ref().and_then(|m| m.get(k)).cloned();
    let has_tc = |tc: &Option<serde_json::Map<String, Json>>| tc.as_ref().is_some_and(|m| !m.is_empty());
    let put = |tc: &mut Option<serde_json::Map<String, Json>>, k: &str, v: &Option<Json>| {
        if let Some(m) = tc.as_mut() {
            m.insert(k.to_string(), v.clone().unwrap_or(Json::Null));
        }
    };

    let (mut bos, mut cls, mut eos, mut sep) =
        (get(tc, "bos_token"), get(tc, "cls_token"), get(tc, "eos_token"), get(tc, "sep_token"));
    if !truthy(bos.as_ref()) && truthy(cls.as_ref()) && has_tc(tc) {
        bos = cls.clone();
        put(tc, "bos_token", &bos);
    }
    if !truthy(eos.as_ref()) && truthy(sep.as_ref()) && has_tc(tc) {
        eos = sep.clone();
        put(tc, "eos_token", &eos);
    }
    let Some(pp) = tok.get("post_processor").filter(|p| truthy(Some(p))) else { return };
    let single_list = [pp.clone()];
    let processors: &[Json] = match pp.get("processors") {
        Some(Json::Array(a)) => a,
        _ => &single_list,
    };
    for p in processors {
        match p.get("type").and_then(Json::as_str) {
            Some("ByteLevel") => {
                set_default(add, "bos", false);
                set_default(add, "eos", false);
            }
            Some("RobertaProcessing") => {
                set(add, "bos", true);
                set(add, "eos", true);
                set(add, "sep", true);
                if !truthy(cls.as_ref()) && has_tc(tc) {
                    cls = p.get("cls").and_then(|c| c.get(0)).cloned().or_else(|| bos.clone());
                    put(tc, "cls_token", &cls);
                }
                if !truthy(sep.as_ref()) && has_tc(tc) {
                    sep = p.get("sep").and_then(|c| c.get(0)).cloned().or_else(|| eos.clone());
                    put(tc, "sep_token", &sep);
                }
            }
            Some("TemplateProcessing") => {
                let empty = Vec::new();
                let single = p.get("single").and_then(Json::as_array).unwrap_or(&empty);
                let pair = p.get("pair").and_then(Json::as_array).unwrap_or(&empty);
                let (mut first, mut last) = (None, None);
                if single.len() > 1 {
                    first = special_id(single.first()).filter(|s| !s.is_empty());
                    if let Some(f) = &first {
                        if !has_tc(tc) {
                            bos = Some(Json::String(f.clone()));
                        } else if !is(f, &bos) && !is(f, &cls) {
                            if !truthy(bos.as_ref()) {
                                bos = Some(Json::String(f.clone()));
                                put(tc, "bos_token", &bos);
                            }
                            if !truthy(cls.as_ref()) {
                                cls = Some(Json::String(f.clone()));
                                put(tc, "cls_token", &cls);
                            }
                        }
                        set(add, "bos", is(f, &bos) || is(f, &cls));
                    }
                    last = special_id(single.last()).filter(|s| !s.is_empty());
                    if let Some(l) = &last {
                        if !has_tc(tc) {
                            eos = Some(Json::String(l.clone()));
                        } else if !is(l, &eos) {
                            // The configured EOS becomes EOT (or EOM) and the template's last
                            // token the EOS.
                            for (typ, key) in [("eot", "eot_token"), ("eom", "eom_token")] {
                                if !types.contains(&typ) {
                                    types.push(typ);
                                    put(tc, key, &eos);
                                    break;
                                }
                            }
                            eos = Some(Json::String(l.clone()));
                            put(tc, "eos_token", &eos);
                        }
                        set(add, "eos", is(l, &eos));
                    }
                }
                if pair.is_empty() {
                    continue;
                }
                // The pair template without the single template's leading/trailing specials.
                let start = usize::from(first.is_some() && special_id(pair.first()) == first);
                let stop = pair.len() - usize::from(last.is_some() && special_id(pair.last()) == last);
                let pair = if start < stop { &pair[start..stop] } else { &pair[..0] };
                let (Some(a), Some(b)) = (pair.first(), pair.last()) else { continue };
                if seq_id(a).as_deref() != Some("A") || seq_id(b).as_deref() != Some("B") || pair.len() <= 2 {
                    continue;
                }
                // A [sep] [eos] B
                let middle = &pair[1..pair.len() - 1];
                let mut add_sep = false;
                if let Some(s) = special_id(middle.first()).filter(|s| !s.is_empty()) {
                    if (is(&s, &sep) || is(&s, &eos)) && last.is_none() {
                        add_sep = true;
                    }
                }
                if middle.len() == 2 {
                    if let Some(s) = special_id(middle.get(1)).filter(|s| !s.is_empty()) {
                        if is(&s, &sep) || is(&s, &eos) {
                            add_sep = true;
                        }
                    }
                }
                set(add, "sep", add_sep);
                if add_sep && !truthy(sep.as_ref()) && has_tc(tc) {
                    put(tc, "sep_token", &eos);
                }
            }
            _ => {}
        }
    }
}

/// gguf-py `SpecialVocab`: what tokenizer.json's post-processor adds, then ids named in
/// tokenizer_config.json (looked up among tokenizer.json's added tokens), then `<typ>_token_id`
/// from config.json; add_bos/add_eos/add_sep flags; chat template.
fn special_vocab(dir: &Path, config: Option<&Json>, v: &mut Vocab) -> Result<()> {
    let n = v.tokens.len() as u64;
    let tok_json = read_json(&dir.join("tokenizer.json"))?;
    let mut tc = match read_json(&dir.join("tokenizer_config.json"))? {
        Some(Json::Object(m)) => Some(m),
        _ => None,
    };
    let mut types: Vec<&'static str> = SPECIAL_TYPES.to_vec();
    let mut add: Vec<(&'static str, bool)> = Vec::new();
    if let Some(tok) = &tok_json {
        post_processor_specials(tok, &mut tc, &mut types, &mut add);
    }
    let added: Vec<(String, u64)> = tok_json
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter().filter_map(|x| Some((x.get("content")?.as_str()?.to_string(), x.get("id")?.as_u64()?))).collect()
        })
        .unwrap_or_default();
    let mut ids: Vec<(&'static str, u64)> = Vec::new(); // (type, id) in the order gguf-py sets them
    let mut set = |typ: &'static str, id: Option<u64>| {
        if let Some(id) = id.filter(|&i| i < n) {
            if !ids.iter().any(|(t, _)| *t == typ) {
                ids.push((typ, id));
            }
        }
    };
    if let Some(tc) = tc.filter(|m| !m.is_empty()) {
        if let Some(t) = tc.get("chat_template").and_then(Json::as_str) {
            v.chat_template = Some(t.to_string());
        }
        for &typ in &types {
            if let Some(b) = tc.get(&format!("add_{typ}_token")).and_then(Json::as_bool) {
                // The post-processor's answer wins over tokenizer_config's.
                if !add.iter().any(|(t, _)| *t == typ) {
                    add.push((typ, b));
                }
            }
            let content = match tc.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => Some(s.as_str()),
                Some(Json::Object(o)) => o.get("content").and_then(Json::as_str),
                _ => None,
            };
            if let Some(c) = content {
                set(typ, added.iter().find(|(a, _)| a == c).map(|x| x.1));
            }
        }
    }
    if let Some(cfg) = config {
        for &typ in &types {
            set(typ, cfg.get(format!("{typ}_token_id")).and_then(Json::as_u64));
        }
    }
    v.special_ids.extend(ids.into_iter().filter_map(|(t, id)| Some((special_id_key(t)?, id as u32))));
    v.add_special.extend(add.into_iter().filter_map(|(t, b)| Some((add_special_key(t)?, b))));
    Ok(())
}

/// bos/eos/unk ids straight from a SentencePiece model (Meta checkpoints have no json files).
pub fn spm_special_ids(dir: &Path, v: &mut Vocab) -> Result<()> {
    let path = dir.join("tokenizer.model");
    if !path.is_file() || !v.special_ids.is_empty() {
        return Ok(());
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let m = SpmModel::parse(&bytes).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let n = v.tokens.len() as i64;
    for (id, key) in [
        (m.bos_id, "tokenizer.ggml.bos_token_id"),
        (m.eos_id, "tokenizer.ggml.eos_token_id"),
        (m.unk_id, "tokenizer.ggml.unknown_token_id"),
    ] {
        if id >= 0 && (id as i64) < n {
            v.special_ids.push((key, id as u32));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokenizer.json pre_tokenizer sections as Meta's Llama-3 and Qwen2 ship them.
    fn with_split(pattern: &str) -> Json {
        serde_json::json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}})
    }

    #[test]
    fn bpe_pre_tokenizer_names_as_llamacpp() {
        let llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        let qwen2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        assert_eq!(bpe_pre_name(&with_split(llama3), None).unwrap(), "llama-bpe");
        assert_eq!(bpe_pre_name(&with_split(qwen2), None).unwrap(), "qwen2");
        let gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
        let e = bpe_pre_name(&with_split(gpt2), None).unwrap_err().to_string();
        assert!(e.contains("unrecognised BPE pre-tokenizer"), "{e}");
        let cfg = serde_json::json!({"model_type": "qwen2"});
        assert_eq!(bpe_pre_name(&with_split(gpt2), Some(&cfg)).unwrap(), "qwen2");
    }

    /// tokenizer.json post-processors and tokenizer_config.json entries against what gguf-py's
    /// `SpecialVocab` (llama.cpp's converter) makes of the same files: special ids (cls has no
    /// GGUF key) and add-special flags, in its order.
    #[test]
    fn special_vocab_follows_the_post_processor_as_gguf_py() {
        use serde_json::json;
        let st = |id: &str| json!({"SpecialToken": {"id": id, "type_id": 0}});
        let sq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
        let added: Vec<Json> = ["<s>", "</s>", "[CLS]", "[SEP]", "<|eot|>", "<pad>"]
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"id": i, "content": c, "special": true}))
            .collect();
        type Want = (&'static [(&'static str, u32)], &'static [(&'static str, bool)]);
        let cases: Vec<(&str, Json, Option<Json>, Want)> = vec![
            (
                "bert",
                json!({"type": "TemplateProcessing", "single": [st("[CLS]"), sq("A"), st("[SEP]")],
                       "pair": [st("[CLS]"), sq("A"), st("[SEP]"), sq("B"), st("[SEP]")]}),
                Some(json!({"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "<pad>"})),
                (&[("bos", 2), ("eos", 3), ("sep", 3), ("pad", 5)], &[("bos", true), ("eos", true), ("sep", false)]),
            ),
            (
                "eot",
                json!({"type": "TemplateProcessing", "single": [st("<s>"), sq("A"), st("</s>")],
                       "pair": [st("<s>"), sq("A"), st("</s>"), st("<s>"), sq("B"), st("</s>")]}),
                Some(json!({"bos_token": "<s>", "eos_token": "<|eot|>", "add_eos_token": false})),
                (&[("bos", 0), ("eos", 1), ("eot", 4)], &[("bos", true), ("eos", true), ("sep", false)]),
            ),
            (
                "sep_between",
                json!({"type": "TemplateProcessing", "single": [st("<s>"), sq("A")],
                       "pair": [st("<s>"), sq("A"), st("</s>"), sq("B")]}),
                Some(json!({"bos_token": "<s>", "eos_token": "</s>"})),
                (&[("bos", 0), ("eos", 1), ("sep", 1)], &[("bos", true), ("sep", true)]),
            ),
            (
                "roberta",
                json!({"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0]}),
                Some(json!({"bos_token": "<s>", "eos_token": "</s>"})),
                (&[("bos", 0), ("eos", 1), ("sep", 1)], &[("bos", true), ("eos", true), ("sep", true)]),
            ),
            (
                "bytelevel_seq",
                json!({"type": "Sequence", "processors": [{"type": "ByteLevel"},
                       {"type": "TemplateProcessing", "single": [st("<s>"), sq("A")],
                        "pair": [st("<s>"), sq("A"), st("<s>"), sq("B")]}]}),
                Some(json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false, "add_eos_token": true})),
                (&[("bos", 0), ("eos", 1)], &[("bos", true), ("eos", false), ("sep", false)]),
            ),
            (
                "no_config",
                json!({"type": "TemplateProcessing", "single": [st("<s>"), sq("A"), st("</s>")], "pair": []}),
                None,
                (&[], &[("bos", true), ("eos", true)]),
            ),
        ];
        let tmp = std::env::temp_dir().join(format!("llama-convert-special-vocab-{}", std::process::id()));
        for (name, pp, tc, (ids, add)) in cases {
            let dir = tmp.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let tok = json!({"added_tokens": added, "post_processor": pp});
            std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
            if let Some(tc) = tc {
                std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
            }
            let mut v = Vocab { tokens: vec![Vec::new(); 6], ..Default::default() };
            special_vocab(&dir, None, &mut v).unwrap();
            let want_ids: Vec<(&str, u32)> = ids.iter().map(|&(t, id)| (special_id_key(t).unwrap(), id)).collect();
            let want_add: Vec<(&str, bool)> = add.iter().map(|&(t, b)| (add_special_key(t).unwrap(), b)).collect();
            assert_eq!(v.special_ids, want_ids, "{name}: special ids");
            assert_eq!(v.add_special, want_add, "{name}: add-special flags");
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn special_looking_tokens() {
        assert!(looks_special("<|im_end|>") && looks_special("<pad>") && looks_special("<unused12>"));
        assert!(!looks_special("<s>x") && !looks_special("hello"));
    }
}
