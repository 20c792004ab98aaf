//! Tokenizer metadata as llama.cpp's converter writes it: SentencePiece (`tokenizer.model`) →
//! `tokenizer.ggml.model = "llama"`, byte-level BPE (`tokenizer.json`) → `"gpt2"` with merges and
//! a pre-tokenizer name; special token ids and add_bos/add_eos from the HF json files.

use std::path::Path;

use llama_core::tokenizer::spm_model::SpmModel;
use llama_core::{Error, Result};
use serde_json::Value as Json;

// tokenizer.ggml.token_type values (= SentencePiece's piece types).
pub(crate) const NORMAL: i32 = 1;
pub(crate) const UNKNOWN: i32 = 2;
pub(crate) const CONTROL: i32 = 3;
pub(crate) const USER_DEFINED: i32 = 4;
pub(crate) const UNUSED: i32 = 5;
pub(crate) const BYTE: i32 = 6;

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
    /// Flags a family's converter writes after the chat template (Gemma 2's `add_space_prefix`).
    pub flags_after_template: Vec<(&'static str, bool)>,
    /// `tokenizer.ggml.token_type_count` (BERT's `type_vocab_size`), written first.
    pub token_type_count: Option<u32>,
    /// `tokenizer.ggml.normalizer.lowercase` / `.strip_accents` from tokenizer.json's normalizer
    /// (gguf-py `SpecialVocab._parse_normalizer`).
    pub normalizer_lowercase: Option<bool>,
    pub normalizer_strip_accents: Option<bool>,
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
    } else if is_wordpiece(dir)? {
        load_wordpiece(dir, n_vocab, config)?
    } else if dir.join("tokenizer.json").is_file() {
        load_bpe(dir, n_vocab, config)?
    } else {
        return Err(Error::Tokenizer(format!(
            "no tokenizer.model or tokenizer.json in {} (use --vocab-dir)",
            dir.display()
        )));
    };
    special_vocab(dir, config, &mut v)?;
    if v.model == "bert" {
        v.pre = wordpiece_pre_name(&v)?;
    }
    Ok(v)
}

fn is_wordpiece(dir: &Path) -> Result<bool> {
    let Some(tok) = read_json(&dir.join("tokenizer.json"))? else { return Ok(false) };
    Ok(tok.get("model").and_then(|m| m.get("type")).and_then(Json::as_str) == Some("WordPiece"))
}

/// The tokens of a `tokenizer.json` (`model.vocab` as a map token → id, then `added_tokens`) as
/// llama.cpp's `get_vocab_base` lists them: [n_vocab] texts and types (added special or
/// special-looking tokens CONTROL, other added ones USER_DEFINED with U+2581 as a space, ids the
/// tokenizer does not define "[PADn]" UNUSED).
fn vocab_base(path: &Path, tok: &Json, n_vocab: Option<u32>) -> Result<(Vec<Vec<u8>>, Vec<i32>)> {
    let bad = |m: &str| Error::format(path, m.to_string());
    let model = tok.get("model").ok_or_else(|| bad("missing 'model'"))?;
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
    Ok((tokens, types))
}

/// A WordPiece `tokenizer.json` as llama.cpp's `BertModel.set_vocab` writes it
/// (`tokenizer.ggml.model = "bert"`): the base vocabulary with every non-CONTROL token turned into
/// its "phantom space" form, `##piece` → `piece` and `word` → `▁word`; the token type count from
/// `type_vocab_size` (default 1).
fn load_wordpiece(dir: &Path, n_vocab: Option<u32>, config: Option<&Json>) -> Result<Vocab> {
    let path = dir.join("tokenizer.json");
    let tok = read_json(&path)?.unwrap_or(Json::Null);
    let (tokens, types) = vocab_base(&path, &tok, n_vocab)?;
    let tokens = tokens
        .into_iter()
        .zip(&types)
        .map(|(t, &ty)| {
            if ty == CONTROL {
                t
            } else if let Some(rest) = t.strip_prefix(b"##") {
                rest.to_vec()
            } else {
                let mut p = "\u{2581}".as_bytes().to_vec();
                p.extend_from_slice(&t);
                p
            }
        })
        .collect();
    let type_count = config.and_then(|c| c.get("type_vocab_size")).and_then(Json::as_u64).unwrap_or(1);
    Ok(Vocab { model: "bert", tokens, types, token_type_count: Some(type_count as u32), ..Default::default() })
}

/// llama.cpp's probe text of `get_vocab_base_pre`.
const CHKTXT: &str = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\u{1F680} (normal) \u{1F636}\u{200D}\u{1F32B}\u{FE0F} (multiple emojis concatenated) \u{2705} \u{1F999}\u{1F999} 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \u{1780}\u{17B6}\u{1793}\u{17CB}\u{178F}\u{17C2}\u{1796}\u{17B7}\u{179F}\u{17C1}\u{179F}\u{17A2}\u{17B6}\u{1785}\u{1F601} ?\u{6211}\u{60F3}\u{5728}apple\u{5DE5}\u{4F5C}1314151\u{5929}\u{FF5E} ------======= \u{043D}\u{0435}\u{0449}\u{043E} \u{043D}\u{0430} \u{0411}\u{044A}\u{043B}\u{0433}\u{0430}\u{0440}\u{0441}\u{043A}\u{0438} ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

/// `tokenizer.ggml.pre` as llama.cpp's `get_vocab_base_pre` computes it for a WordPiece
/// tokenizer: sha256 of the Python list of the probe text's ids (HF's encode, with [CLS] and
/// [SEP]) looked up among the hashes it knows. HF's BERT tokenizer is emulated by our WPM
/// tokenizer on the converted vocabulary (llama.cpp's), which gives HF's ids on the probe text
/// (checked on all-MiniLM-L6-v2 and bge-small's vocabulary).
fn wordpiece_pre_name(v: &Vocab) -> Result<String> {
    use llama_core::tokenizer::{Vocab as CoreVocab, VocabKind, VocabOptions};
    let id = |k: &str| v.special_ids.iter().find(|(key, _)| *key == k).map(|x| x.1);
    let opts = VocabOptions {
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        unk: id("tokenizer.ggml.unknown_token_id"),
        sep: id("tokenizer.ggml.seperator_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        mask: id("tokenizer.ggml.mask_token_id"),
        normalizer_lowercase: v.normalizer_lowercase,
        normalizer_strip_accents: v.normalizer_strip_accents,
        ..VocabOptions::default()
    };
    let core = CoreVocab::new(VocabKind::Wpm, v.tokens.clone(), Vec::new(), v.types.clone(), Vec::new(), "", opts)?;
    let ids = llama_core::tokenizer::Tokenizer::from_vocab(core).tokenize(CHKTXT.as_bytes(), true, false);
    let list = format!("[{}]", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
    let hash: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(list.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    // Later entries of llama.cpp's list win (bge-small and jina-v2-en share a hash).
    Ok(match hash.as_str() {
        "0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f" => "jina-v2-en",
        "8e62295832751ca1e8f92f2226f403dea30dc5165e448b5bfa05af5340c64ec7" => "bert-bge-large",
        other => {
            return Err(Error::Tokenizer(format!(
                "WordPiece pre-tokenizer not recognised (chkhsh {other}); known: jina-v2-en (bert-bge), bert-bge-large"
            )))
        }
    }
    .to_string())
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
    // Qwen3.5's split (letters joined with marks, \p{M}). llama.cpp's hash of the probe text's
    // tokens names it "qwen35" with Qwen3.5's own 248320-token vocabulary, but "qwen2" with the
    // 151936 Qwen2 tokens (same ids on the probe text), which small Qwen3.5 checkpoints reuse.
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    if pre.contains(&esc(QWEN35)) {
        let qwen2_vocab = config.and_then(|c| c.get("vocab_size")).and_then(Json::as_u64) == Some(151936);
        return Ok(if qwen2_vocab { "qwen2" } else { "qwen35" }.into());
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
    let (tokens, types) = vocab_base(&path, &tok, n_vocab)?;
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

/// gguf-py `SpecialVocab`: ids named in tokenizer_config.json (looked up among tokenizer.json's
/// added tokens) first, then `<typ>_token_id` from config.json; add_bos/add_sep/add_eos flags (from
/// tokenizer.json's post-processor, then tokenizer_config.json's `add_<typ>_token`); chat template.
fn special_vocab(dir: &Path, config: Option<&Json>, v: &mut Vocab) -> Result<()> {
    let mut types: Vec<(&str, &str)> = vec![
        ("bos", "tokenizer.ggml.bos_token_id"),
        ("eos", "tokenizer.ggml.eos_token_id"),
        ("unk", "tokenizer.ggml.unknown_token_id"),
        ("sep", "tokenizer.ggml.seperator_token_id"),
        ("pad", "tokenizer.ggml.padding_token_id"),
        ("cls", "tokenizer.ggml.cls_token_id"),
        ("mask", "tokenizer.ggml.mask_token_id"),
    ];
    let n = v.tokens.len() as u64;
    let tok_json = read_json(&dir.join("tokenizer.json"))?;
    let added: Vec<(String, u64)> = tok_json
        .as_ref()
        .and_then(|t| t.get("added_tokens"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter().filter_map(|x| Some((x.get("content")?.as_str()?.to_string(), x.get("id")?.as_u64()?))).collect()
        })
        .unwrap_or_default();
    let set = |v: &mut Vocab, key: &'static str, id: Option<u64>| {
        if let Some(id) = id.filter(|&i| i < n) {
            if !v.special_ids.iter().any(|(k, _)| *k == key) {
                v.special_ids.push((key, id as u32));
            }
        }
    };
    let mut tc = read_json(&dir.join("tokenizer_config.json"))?.and_then(|j| match j {
        Json::Object(m) => Some(m),
        _ => None,
    });
    if let Some(n) = tok_json.as_ref().and_then(|t| t.get("normalizer")).filter(|n| !n.is_null()) {
        parse_normalizer(n, v);
    }
    // (type, flag) in gguf-py's insertion order
    let mut add: Vec<(&str, bool)> = Vec::new();
    if let Some(tok) = &tok_json {
        post_processor(tok, &mut tc, &mut add, &mut types);
    }
    if let Some(tc) = &tc {
        if let Some(t) = tc.get("chat_template").and_then(Json::as_str) {
            v.chat_template = Some(t.to_string());
        }
        for &(typ, key) in &types {
            // a flag the post-processor set wins over tokenizer_config's (gguf-py warns and keeps it)
            if let Some(b) = tc.get(&format!("add_{typ}_token")).and_then(Json::as_bool) {
                flag(&mut add, typ, b, false);
            }
            let content = match tc.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => Some(s.as_str()),
                Some(Json::Object(o)) => o.get("content").and_then(Json::as_str),
                _ => None,
            };
            if let Some(c) = content {
                set(v, key, added.iter().find(|(a, _)| a == c).map(|x| x.1));
            }
        }
    }
    // GGUFWriter has add_add_{bos,sep,eos}_token only (the others are dropped with a warning)
    for (typ, b) in add {
        match typ {
            "bos" => v.add_special.push(("tokenizer.ggml.add_bos_token", b)),
            "sep" => v.add_special.push(("tokenizer.ggml.add_sep_token", b)),
            "eos" => v.add_special.push(("tokenizer.ggml.add_eos_token", b)),
            _ => {}
        }
    }
    if let Some(cfg) = config {
        for &(typ, key) in &types {
            set(v, key, cfg.get(format!("{typ}_token_id")).and_then(Json::as_u64));
        }
    }
    Ok(())
}

/// gguf-py `SpecialVocab._parse_normalizer`: Lowercase / StripAccents, BertNormalizer's
/// `lowercase` / `strip_accents` when present (null included: then it is not written), and the
/// same inside a Sequence.
fn parse_normalizer(n: &Json, v: &mut Vocab) {
    match n.get("type").and_then(Json::as_str) {
        Some("Lowercase") => v.normalizer_lowercase = Some(true),
        Some("StripAccents") => v.normalizer_strip_accents = Some(true),
        Some("BertNormalizer") => {
            if let Some(x) = n.get("lowercase") {
                v.normalizer_lowercase = x.as_bool();
            }
            if let Some(x) = n.get("strip_accents") {
                v.normalizer_strip_accents = x.as_bool();
            }
        }
        Some("Sequence") => {
            for m in n.get("normalizers").and_then(Json::as_array).into_iter().flatten() {
                parse_normalizer(m, v);
            }
        }
        _ => {}
    }
}

/// Sets flag `typ` (keeping its place when already set), or only adds it when absent
/// (`overwrite` false: Python's `setdefault`).
fn flag<'a>(add: &mut Vec<(&'a str, bool)>, typ: &'a str, b: bool, overwrite: bool) {
    match add.iter_mut().find(|(t, _)| *t == typ) {
        Some(e) if overwrite => e.1 = b,
        Some(_) => {}
        None => add.push((typ, b)),
    }
}

/// gguf-py `SpecialVocab._try_load_from_tokenizer_json`'s reading of tokenizer.json's
/// `post_processor` (its "crude parsing", ported as is): ByteLevel leaves add_bos/add_eos false,
/// RobertaProcessing sets bos/eos/sep, TemplateProcessing sets add_bos from the single template's
/// leading special token, add_eos from its trailing one, add_sep from the pair template's middle;
/// missing bos/cls/eos/sep (and eot/eom, which then become special types) are filled into
/// tokenizer_config as gguf-py does.
fn post_processor<'a>(
    tok: &Json,
    tc: &mut Option<serde_json::Map<String, Json>>,
    add: &mut Vec<(&'a str, bool)>,
    types: &mut Vec<(&'a str, &'a str)>,
) {
    let truthy = |v: &Option<Json>| match v {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Object(o)) => !o.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        Some(Json::Bool(b)) => *b,
        Some(Json::Number(_)) => true,
    };
    let has_tc = tc.as_ref().is_some_and(|m| !m.is_empty());
    let get = |tc: &Option<serde_json::Map<String, Json>>, k: &str| tc.as_ref().and_then(|m| m.get(k).cloned());
    let (mut bos, cls, mut eos, mut sep) =
        (get(tc, "bos_token"), get(tc, "cls_token"), get(tc, "eos_token"), get(tc, "sep_token"));
    let mut cls = cls;
    let put = |tc: &mut Option<serde_json::Map<String, Json>>, k: &str, v: &Option<Json>| {
        if let (Some(m), Some(v)) = (tc.as_mut(), v) {
            m.insert(k.to_string(), v.clone());
        }
    };
    if !truthy(&bos) && truthy(&cls) && has_tc {
        bos = cls.clone();
        put(tc, "bos_token", &bos);
    }
    if !truthy(&eos) && truthy(&sep) && has_tc {
        eos = sep.clone();
        put(tc, "eos_token", &eos);
    }
    let Some(pp) = tok.get("post_processor").filter(|p| !p.is_null()) else { return };
    let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
        Some(a) => a.iter().collect(),
        None => vec![pp],
    };
    let special = |x: &Json| -> Option<Json> {
        x.get("SpecialToken").and_then(|s| s.get("id")).filter(|i| truthy(&Some((*i).clone()))).cloned()
    };
    for p in procs {
        match p.get("type").and_then(Json::as_str) {
            Some("ByteLevel") => {
                flag(add, "bos", false, false);
                flag(add, "eos", false, false);
            }
            Some("RobertaProcessing") => {
                for t in ["bos", "eos", "sep"] {
                    flag(add, t, true, true);
                }
                if !truthy(&cls) && has_tc {
                    cls = p.get("cls").and_then(|c| c.get(0)).cloned().or_else(|| bos.clone());
                    put(tc, "cls_token", &cls);
                }
                if !truthy(&sep) && has_tc {
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
                    first = special(&single[0]);
                    if let Some(f) = &first {
                        let known =
                            |bos: &Option<Json>, cls: &Option<Json>| bos.as_ref() == Some(f) || cls.as_ref() == Some(f);
                        if !has_tc {
                            bos = first.clone();
                        } else if !known(&bos, &cls) {
                            if !truthy(&bos) {
                                bos = first.clone();
                                put(tc, "bos_token", &bos);
                            }
                            if !truthy(&cls) {
                                cls = first.clone();
                                put(tc, "cls_token", &cls);
                            }
                        }
                        flag(add, "bos", known(&bos, &cls), true);
                    }
                    last = special(&single[single.len() - 1]);
                    if let Some(l) = &last {
                        if !has_tc {
                            eos = last.clone();
                        } else if eos.as_ref() != Some(l) {
                            // the old eos becomes an end-of-turn (or end-of-message) token
                            let names: Vec<&str> = types.iter().map(|t| t.0).collect();
                            if !names.contains(&"eot") {
                                types.push(("eot", "tokenizer.ggml.eot_token_id"));
                                put(tc, "eot_token", &eos);
                            } else if !names.contains(&"eom") {
                                types.push(("eom", "tokenizer.ggml.eom_token_id"));
                                put(tc, "eom_token", &eos);
                            }
                            eos = last.clone();
                            put(tc, "eos_token", &eos);
                        }
                        flag(add, "eos", eos.as_ref() == Some(l), true);
                    }
                }
                if !pair.is_empty() {
                    let start = usize::from(first.is_some() && special(&pair[0]) == first);
                    let stop = usize::from(last.is_some() && special(&pair[pair.len() - 1]) == last);
                    let pair = &pair[start.min(pair.len())..pair.len().saturating_sub(stop).max(start.min(pair.len()))];
                    let seq = |x: &Json| {
                        x.get("Sequence").and_then(|s| s.get("id")).and_then(Json::as_str).map(str::to_string)
                    };
                    if let (Some(a), Some(b)) = (pair.first(), pair.last()) {
                        // A [sep] [eos] B
                        if seq(a).as_deref() == Some("A") && seq(b).as_deref() == Some("B") && pair.len() > 2 {
                            let mid = &pair[1..pair.len() - 1];
                            let is_sep_or_eos = |e: &Json| sep.as_ref() == Some(e) || eos.as_ref() == Some(e);
                            let mut add_sep = false;
                            if let Some(e) = special(&mid[0]) {
                                if is_sep_or_eos(&e) && last.is_none() {
                                    add_sep = true;
                                }
                            }
                            if mid.len() == 2 {
                                if let Some(e) = special(&mid[1]) {
                                    if is_sep_or_eos(&e) {
                                        add_sep = true;
                                    }
                                }
                            }
                            flag(add, "sep", add_sep, true);
                            if add_sep && !truthy(&sep) && has_tc {
                                put(tc, "sep_token", &eos);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
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

    /// add_* flags and special ids from tokenizer.json's post-processor and tokenizer_config.json,
    /// against gguf-py's `SpecialVocab` (llama-cpp-python 0.3.36's gguf-py, run on the same two
    /// files with n_vocab 5: its `add_special_token` and `special_token_ids`, in their order).
    #[test]
    fn post_processor_flags_as_gguf_py() {
        use serde_json::json;
        let s = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
        let q = |a: &str| json!({"Sequence": {"id": a, "type_id": 0}});
        let added = json!([{"id": 0, "content": "<unk>"}, {"id": 1, "content": "<s>"}, {"id": 2, "content": "</s>"},
            {"id": 3, "content": "<sep>"}, {"id": 4, "content": "<cls>"}]);
        type Case<'a> = (&'a str, Json, Json, &'a [(&'a str, bool)], &'a [(&'a str, u32)]);
        let cases: Vec<Case> = vec![
            (
                "llama (bos only; '<s>' between a pair is no separator)",
                json!({"type": "TemplateProcessing", "single": [s("<s>"), q("A")], "pair": [s("<s>"), q("A"), s("<s>"), q("B")]}),
                json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true, "add_eos_token": false}),
                &[("bos", true), ("sep", false), ("eos", false)],
                &[("bos", 1), ("eos", 2)],
            ),
            (
                "bos and eos, eos twice between a pair",
                json!({"type": "TemplateProcessing", "single": [s("<s>"), q("A"), s("</s>")],
                    "pair": [s("<s>"), q("A"), s("</s>"), s("</s>"), q("B"), s("</s>")]}),
                json!({"bos_token": "<s>", "eos_token": "</s>"}),
                &[("bos", true), ("eos", true), ("sep", true)],
                &[("bos", 1), ("eos", 2), ("sep", 2)],
            ),
            (
                "bert-like: cls and sep stand for bos and eos",
                json!({"type": "TemplateProcessing", "single": [s("<cls>"), q("A"), s("<sep>")],
                    "pair": [s("<cls>"), q("A"), s("<sep>"), q("B"), s("<sep>")]}),
                json!({"cls_token": "<cls>", "sep_token": "<sep>"}),
                &[("bos", true), ("eos", true), ("sep", false)],
                &[("bos", 4), ("eos", 3), ("sep", 3), ("cls", 4)],
            ),
            (
                "separator between a pair",
                json!({"type": "TemplateProcessing", "single": [s("<s>"), q("A")], "pair": [s("<s>"), q("A"), s("<sep>"), q("B")]}),
                json!({"bos_token": "<s>", "sep_token": "<sep>"}),
                &[("bos", true), ("sep", true)],
                &[("bos", 1), ("eos", 3), ("sep", 3)],
            ),
            (
                "roberta",
                json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}),
                json!({"bos_token": "<s>", "eos_token": "</s>"}),
                &[("bos", true), ("eos", true), ("sep", true)],
                &[("bos", 1), ("eos", 2), ("sep", 2), ("cls", 1)],
            ),
            (
                "byte-level then template; the post-processor's eos wins over add_eos_token",
                json!({"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing",
                    "single": [s("<s>"), q("A")], "pair": [s("<s>"), q("A"), s("<s>"), q("B")]}]}),
                json!({"bos_token": "<s>", "add_eos_token": true}),
                &[("bos", true), ("eos", false), ("sep", false)],
                &[("bos", 1)],
            ),
            (
                "byte-level only",
                json!({"type": "ByteLevel"}),
                json!({"eos_token": "</s>", "add_bos_token": true}),
                &[("bos", false), ("eos", false)],
                &[("eos", 2)],
            ),
        ];
        let dir = std::env::temp_dir().join(format!("llama-convert-special-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pp, tc, want_add, want_ids) in cases {
            let tok = json!({"added_tokens": added, "post_processor": pp, "model": {"type": "BPE", "vocab": {}}});
            std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
            std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
            let mut v = Vocab { tokens: vec![Vec::new(); 5], ..Default::default() };
            special_vocab(&dir, None, &mut v).unwrap();
            let add: Vec<(String, bool)> =
                want_add.iter().map(|(t, b)| (format!("tokenizer.ggml.add_{t}_token"), *b)).collect();
            let got: Vec<(String, bool)> = v.add_special.iter().map(|(k, b)| (k.to_string(), *b)).collect();
            assert_eq!(got, add, "{name}: add_* flags");
            let key = |t: &str| match t {
                "sep" => "tokenizer.ggml.seperator_token_id".to_string(),
                t => format!("tokenizer.ggml.{t}_token_id"),
            };
            let ids: Vec<(String, u32)> = want_ids.iter().map(|(t, i)| (key(t), *i)).collect();
            let got: Vec<(String, u32)> = v.special_ids.iter().map(|(k, i)| (k.to_string(), *i)).collect();
            assert_eq!(got, ids, "{name}: special ids");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn special_looking_tokens() {
        assert!(looks_special("<|im_end|>") && looks_special("<pad>") && looks_special("<unused12>"));
        assert!(!looks_special("<s>x") && !looks_special("hello"));
    }
}
