//! Building a tokenizer from GGUF metadata (`tokenizer.ggml.*`), with llama.cpp's defaults for
//! every optional key.

use super::texts::TokenTexts;
use super::vocab::{Vocab, VocabKind, VocabOptions};
use super::Tokenizer;
use crate::gguf::{GgufFile, Value};
use crate::{Error, Result};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

fn bad(f: &GgufFile, key: &str, what: &str) -> Error {
    Error::Tokenizer(format!("{}: metadata key '{key}' {what}", f.path.display()))
}

fn array<'a>(f: &'a GgufFile, key: &str) -> Result<Option<&'a [Value]>> {
    Ok(f.get_arr(key)?.map(|(_, items)| items))
}

fn strings(f: &GgufFile, key: &str) -> Result<Option<Vec<Vec<u8>>>> {
    let Some(items) = array(f, key)? else { return Ok(None) };
    items
        .iter()
        .map(|v| v.as_bytes().map(|b| b.to_vec()).ok_or_else(|| bad(f, key, "must be an array of strings")))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Token id keys: llama.cpp reads them as u32; a negative or non-integer value means "none".
fn id(f: &GgufFile, key: &str) -> Option<u32> {
    f.get(key).and_then(|v| v.as_int()).and_then(|i| u32::try_from(i).ok())
}

/// A FIM id that also has a deprecated key (`prefix_token_id` …): llama.cpp reads the deprecated key
/// after the new one, so an in-range deprecated value wins.
fn fim(f: &GgufFile, key: &str, deprecated: &str, n_tokens: usize) -> Option<u32> {
    id(f, deprecated).filter(|&i| (i as usize) < n_tokens).or(id(f, key))
}

impl Tokenizer {
    /// Build the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer> {
        Ok(Tokenizer::from_vocab(vocab_from_gguf(f)?))
    }
}

pub fn vocab_from_gguf(f: &GgufFile) -> Result<Vocab> {
    let model = f.get_str(KEY_MODEL)?.ok_or_else(|| bad(f, KEY_MODEL, "is missing"))?;
    let kind = VocabKind::from_model_name(model).map_err(|e| {
        Error::Tokenizer(format!("{}: {}", f.path.display(), e.to_string().trim_start_matches("tokenizer: ")))
    })?;
    let pre = f.get_str(KEY_PRE)?.unwrap_or("");
    let items = array(f, KEY_TOKENS)?.ok_or_else(|| bad(f, KEY_TOKENS, "is missing"))?;
    let n_bytes = items.iter().map(|v| v.as_bytes().map_or(0, |b| b.len())).sum();
    let mut tokens = TokenTexts::with_capacity(items.len(), n_bytes);
    for v in items {
        tokens.push(v.as_bytes().ok_or_else(|| bad(f, KEY_TOKENS, "must be an array of strings"))?)?;
    }
    let scores = match array(f, KEY_SCORES)? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| v.as_f32().ok_or_else(|| bad(f, KEY_SCORES, "must be an array of f32")))
            .collect::<Result<_>>()?,
    };
    let types = match array(f, KEY_TYPES)? {
        None => Vec::new(),
        Some(items) => items
            .iter()
            .map(|v| {
                v.as_int()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| bad(f, KEY_TYPES, "must be an array of i32"))
            })
            .collect::<Result<_>>()?,
    };
    let merges = match kind {
        VocabKind::Bpe => {
            strings(f, KEY_MERGES)?.ok_or_else(|| bad(f, KEY_MERGES, "is missing (required for gpt2)"))?
        }
        VocabKind::Spm | VocabKind::Wpm => Vec::new(),
    };
    let n_tokens = items.len();
    let opts = VocabOptions {
        bos: id(f, "tokenizer.ggml.bos_token_id"),
        eos: id(f, "tokenizer.ggml.eos_token_id"),
        eot: id(f, "tokenizer.ggml.eot_token_id"),
        eom: id(f, "tokenizer.ggml.eom_token_id"),
        unk: id(f, "tokenizer.ggml.unknown_token_id"),
        sep: id(f, "tokenizer.ggml.seperator_token_id"),
        pad: id(f, "tokenizer.ggml.padding_token_id"),
        mask: id(f, "tokenizer.ggml.mask_token_id"),
        // The deprecated prefix/suffix/middle keys come after the fim_* ones in llama.cpp's list,
        // so they win when both are present.
        fim_pre: fim(f, "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id", n_tokens),
        fim_suf: fim(f, "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id", n_tokens),
        fim_mid: fim(f, "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id", n_tokens),
        fim_pad: id(f, "tokenizer.ggml.fim_pad_token_id"),
        fim_rep: id(f, "tokenizer.ggml.fim_rep_token_id"),
        fim_sep: id(f, "tokenizer.ggml.fim_sep_token_id"),
        add_bos: f.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: f.get_bool("tokenizer.ggml.add_eos_token")?,
        add_sep: f.get_bool("tokenizer.ggml.add_sep_token")?,
        add_space_prefix: f.get_bool("tokenizer.ggml.add_space_prefix")?,
        remove_extra_whitespaces: f.get_bool("tokenizer.ggml.remove_extra_whitespaces")?,
        normalizer_lowercase: f.get_bool("tokenizer.ggml.normalizer.lowercase")?,
        normalizer_strip_accents: f.get_bool("tokenizer.ggml.normalizer.strip_accents")?,
        model_name: f.get("general.name").and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()),
        arch: f.get("general.architecture").and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()),
    };
    Vocab::build(kind, tokens, scores, types, merges, pre, opts).map_err(|e| {
        Error::Tokenizer(format!("{}: {}", f.path.display(), e.to_string().trim_start_matches("tokenizer: ")))
    })
}
