//! The vocabulary: token texts, scores, types and the special-token bookkeeping that llama.cpp
//! derives from `tokenizer.ggml.*` metadata (defaults per model kind, EOG detection by token text,
//! the longest-first special-token list used to split raw text).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use super::pretokenize::PreType;
use super::texts::{FastBuild, TokenTexts};
use crate::{Error, Result};

/// Which algorithm turns a text fragment into ids (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `llama`: SentencePiece-style score merges over U+2581-escaped text, `<0xNN>` byte fallback.
    Spm,
    /// `gpt2`: byte-level BPE with merge ranks and a regex pre-tokenizer.
    Bpe,
}

impl VocabKind {
    pub fn from_model_name(name: &str) -> Result<VocabKind> {
        match name {
            "llama" => Ok(VocabKind::Spm),
            "gpt2" => Ok(VocabKind::Bpe),
            other => {
                Err(Error::Tokenizer(format!("unsupported tokenizer.ggml.model '{other}' (supported: llama, gpt2)")))
            }
        }
    }
}

/// Token types as stored in `tokenizer.ggml.token_type` (same numbering as SentencePiece).
pub mod token_type {
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Attribute bits (llama.cpp `llama_token_attr`); a token has exactly one type bit here.
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

fn attr_from_type(t: i32) -> u32 {
    match t {
        token_type::UNKNOWN => attr::UNKNOWN,
        token_type::UNUSED => attr::UNUSED,
        token_type::NORMAL => attr::NORMAL,
        token_type::CONTROL => attr::CONTROL,
        token_type::USER_DEFINED => attr::USER_DEFINED,
        token_type::BYTE => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Special token ids and behaviour flags; `None`/unset fields take llama.cpp's per-kind defaults.
#[derive(Clone, Debug, Default)]
pub struct VocabOptions {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub remove_extra_whitespaces: Option<bool>,
}

/// A vocabulary ready for tokenization (see `Vocab::new`).
#[derive(Clone, Debug)]
pub struct Vocab {
    pub(crate) kind: VocabKind,
    pub(crate) pre: PreType,
    /// [n_vocab] raw token bytes (empty texts replaced by `[EMPTY_i]` like llama.cpp), indexed.
    pub(crate) tokens: TokenTexts,
    /// [n_vocab] merge scores (SPM); 0.0 when the metadata has none.
    pub(crate) scores: Vec<f32>,
    /// [n_vocab] token types as given by the metadata.
    pub(crate) types: Vec<i32>,
    /// [n_vocab] attribute bits after llama.cpp's fix-ups (EOG-like texts forced to CONTROL).
    pub(crate) attrs: Vec<u32>,
    /// BPE merges: key = u32 length of the left part (LE) ++ left ++ right → rank (first wins).
    pub(crate) bpe_ranks: HashMap<Box<[u8]>, u32, FastBuild>,
    pub(crate) max_token_len: usize,

    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eom: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) sep: Option<u32>,
    pub(crate) pad: Option<u32>,
    pub(crate) mask: Option<u32>,
    pub(crate) eog: BTreeSet<u32>,

    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) remove_extra_whitespaces: bool,
    pub(crate) ignore_merges: bool,
    pub(crate) clean_spaces: bool,

    /// Ids of CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first: the order in which
    /// llama.cpp carves them out of raw text.
    pub(crate) special_cache: Vec<u32>,
    /// Lazily built multi-pattern matchers over the special tokens that take part in splitting,
    /// [0] without and [1] with `parse_special`: one pass tells which of thousands of special
    /// texts occur at all, so the ordered splitting only runs for those.
    pub(crate) special_matchers: [OnceLock<SpecialMatcher>; 2],
}

/// Aho-Corasick automaton over `ids` (a subsequence of `special_cache`, same order).
#[derive(Clone, Debug)]
pub(crate) struct SpecialMatcher {
    pub(crate) ac: Option<AhoCorasick>,
    pub(crate) ids: Vec<u32>,
}

/// Texts llama.cpp treats as end-of-generation (and forces to CONTROL) whatever their metadata type.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Texts used to guess the EOT id when the metadata has none.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// FIM pad/repo/sep texts: llama.cpp also stops generation on these.
const FIM_EOG_TEXTS: &[&[&str]] = &[
    &["<|fim_pad|>", "<fim-pad>", "<PAD>"],
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    &["<|file_sep|>", "<fim-sep>", "<SEP>"],
];
/// FIM prefix/suffix/middle texts: forced to CONTROL when found.
const FIM_CONTROL_TEXTS: &[&[&str]] = &[
    &["<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>"],
    &["<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>"],
    &["<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>"],
];

impl Vocab {
    /// Build a vocabulary from its parts.
    /// `tokens`/`scores`/`types`: [n_vocab] (scores/types may be empty = all 0.0 / NORMAL);
    /// `merges`: BPE merge lines "left right" in rank order (ignored for SPM);
    /// `pre`: `tokenizer.ggml.pre` (empty = default).
    pub fn new(
        kind: VocabKind,
        tokens: Vec<Vec<u8>>,
        scores: Vec<f32>,
        types: Vec<i32>,
        merges: Vec<Vec<u8>>,
        pre: &str,
        opts: VocabOptions,
    ) -> Result<Vocab> {
        let n_bytes = tokens.iter().map(|t| t.len()).sum();
        let mut texts = TokenTexts::with_capacity(tokens.len(), n_bytes);
        for t in &tokens {
            texts.push(t)?;
        }
        Vocab::build(kind, texts, scores, types, merges, pre, opts)
    }

    /// `new` over texts already collected in a `TokenTexts` (no index yet).
    pub(crate) fn build(
        kind: VocabKind,
        mut texts: TokenTexts,
        scores: Vec<f32>,
        types: Vec<i32>,
        merges: Vec<Vec<u8>>,
        pre: &str,
        opts: VocabOptions,
    ) -> Result<Vocab> {
        let n = texts.len();
        if n == 0 {
            return Err(Error::Tokenizer("vocabulary is empty".into()));
        }
        if n > u32::MAX as usize / 2 {
            return Err(Error::Tokenizer(format!("vocabulary too large ({n} tokens)")));
        }
        if !scores.is_empty() && scores.len() != n {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {n}",
                scores.len()
            )));
        }
        if !types.is_empty() && types.len() != n {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
                types.len()
            )));
        }
        let scores = if scores.is_empty() { vec![0.0; n] } else { scores };
        let types = if types.is_empty() { vec![token_type::NORMAL; n] } else { types };

        // llama.cpp renames empty tokens so that every text is non-empty and findable.
        if (0..n).any(|i| texts[i].is_empty()) {
            let mut t2 = TokenTexts::with_capacity(n, 0);
            for i in 0..n {
                if texts[i].is_empty() {
                    t2.push(format!("[EMPTY_{i}]").as_bytes())?;
                } else {
                    t2.push(&texts[i])?;
                }
            }
            texts = t2;
        }
        // Duplicate texts: the later id wins, as with llama.cpp's `token_to_id[word] = i`.
        texts.build_index();
        let max_token_len = (0..n).map(|i| texts[i].len()).max().unwrap_or(0);
        let toks = texts;
        let attrs: Vec<u32> = types.iter().map(|&t| attr_from_type(t)).collect();

        let (pre_type, mut v) = {
            let pre_type = match kind {
                VocabKind::Spm => PreType::Default,
                VocabKind::Bpe => PreType::from_name(pre)?,
            };
            let v = Vocab {
                kind,
                pre: pre_type,
                tokens: toks,
                scores,
                types,
                attrs,
                bpe_ranks: HashMap::default(),
                max_token_len,
                bos: None,
                eos: None,
                eot: None,
                eom: None,
                unk: None,
                sep: None,
                pad: None,
                mask: None,
                eog: BTreeSet::new(),
                add_bos: false,
                add_eos: false,
                add_space_prefix: false,
                remove_extra_whitespaces: false,
                ignore_merges: false,
                clean_spaces: false,
                special_cache: Vec::new(),
                special_matchers: [OnceLock::new(), OnceLock::new()],
            };
            (pre_type, v)
        };

        // Per-kind defaults (llama.cpp `llama_vocab::impl::load`).
        match kind {
            VocabKind::Spm => {
                v.bos = Some(1);
                v.eos = Some(2);
                v.unk = Some(0);
                v.add_space_prefix = true;
                v.add_bos = true;
            }
            VocabKind::Bpe => {
                v.bos = Some(11);
                v.eos = Some(11);
                v.clean_spaces = true;
                let (ignore_merges, add_bos, clean_spaces) = pre_type.flags();
                v.ignore_merges = ignore_merges;
                if let Some(b) = add_bos {
                    v.add_bos = b;
                }
                if let Some(c) = clean_spaces {
                    v.clean_spaces = c;
                }
                v.build_ranks(merges)?;
            }
        }
        // Defaults that point outside a small vocabulary are dropped.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        v.bos = in_range(v.bos);
        v.eos = in_range(v.eos);
        v.unk = in_range(v.unk);

        // Explicit metadata overrides; out-of-range ids are ignored (llama.cpp warns and keeps the old id).
        let set = |slot: &mut Option<u32>, val: Option<u32>| {
            if let Some(id) = val {
                if (id as usize) < n {
                    *slot = Some(id);
                }
            }
        };
        set(&mut v.bos, opts.bos);
        set(&mut v.eos, opts.eos);
        set(&mut v.eot, opts.eot);
        set(&mut v.eom, opts.eom);
        set(&mut v.unk, opts.unk);
        set(&mut v.sep, opts.sep);
        set(&mut v.pad, opts.pad);
        set(&mut v.mask, opts.mask);
        if let Some(b) = opts.add_bos {
            v.add_bos = b;
        }
        if let Some(b) = opts.add_eos {
            v.add_eos = b;
        }
        if let Some(b) = opts.add_space_prefix {
            v.add_space_prefix = b;
        }
        if let Some(b) = opts.remove_extra_whitespaces {
            v.remove_extra_whitespaces = b;
        }

        v.detect_special_by_text();
        v.build_special_cache();
        Ok(v)
    }

    fn build_ranks(&mut self, merges: Vec<Vec<u8>>) -> Result<()> {
        if merges.is_empty() {
            return Err(Error::Tokenizer("BPE vocabulary without tokenizer.ggml.merges".into()));
        }
        self.bpe_ranks.reserve(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after position 0 (a merge may start with a space
            // byte-mapped differently, never with a literal one); no space → ("", "").
            let (l, r) = match m.iter().skip(1).position(|&b| b == b' ') {
                Some(p) => (&m[..p + 1], &m[p + 2..]),
                None => (&m[..0], &m[..0]),
            };
            self.bpe_ranks.entry(merge_key(l, r)).or_insert(rank as u32);
        }
        Ok(())
    }

    /// llama.cpp's text-based fix-ups: guess EOT, force EOG/FIM texts to CONTROL, build the EOG set.
    fn detect_special_by_text(&mut self) {
        let find = |v: &Vocab, texts: &[&str]| -> Vec<u32> {
            texts.iter().filter_map(|t| v.tokens.find(t.as_bytes())).collect()
        };
        if self.eot.is_none() {
            if let Some(&id) = find(self, EOT_TEXTS).first() {
                self.eot = Some(id);
                self.force_control(id);
            }
        }
        if self.eom.is_none() {
            if let Some(&id) = find(self, &["<|eom_id|>"]).first() {
                self.eom = Some(id);
                self.force_control(id);
            }
        }
        for group in FIM_CONTROL_TEXTS {
            if let Some(&id) = find(self, group).first() {
                self.force_control(id);
            }
        }
        for group in FIM_EOG_TEXTS {
            if let Some(&id) = find(self, group).first() {
                self.force_control(id);
                self.eog.insert(id);
            }
        }
        for id in find(self, EOG_TEXTS) {
            self.eog.insert(id);
            self.force_control(id);
        }
        for id in [self.eos, self.eot, self.eom].into_iter().flatten() {
            self.eog.insert(id);
        }
    }

    fn force_control(&mut self, id: u32) {
        if self.attrs[id as usize] & attr::CONTROL == 0 {
            self.attrs[id as usize] = attr::CONTROL;
        }
    }

    fn build_special_cache(&mut self) {
        let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut ids: Vec<u32> = (0..self.tokens.len() as u32).filter(|&i| self.attrs[i as usize] & mask != 0).collect();
        // Longest first; llama.cpp's sort is unstable, ties only matter for overlapping texts.
        ids.sort_by(|&a, &b| self.tokens[b as usize].len().cmp(&self.tokens[a as usize].len()));
        self.special_cache = ids;
    }

    /// Matcher over the special tokens used with this `parse_special` setting: CONTROL and
    /// UNKNOWN only when parsing specials, USER_DEFINED always.
    pub(crate) fn special_matcher(&self, parse_special: bool) -> &SpecialMatcher {
        self.special_matchers[parse_special as usize].get_or_init(|| {
            let ids: Vec<u32> = self
                .special_cache
                .iter()
                .copied()
                .filter(|&id| parse_special || self.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) == 0)
                .collect();
            // Building can only fail past aho-corasick's size limits; then every token is tried.
            let ac = if ids.is_empty() {
                None
            } else {
                AhoCorasick::new(ids.iter().map(|&id| &self.tokens[id as usize][..])).ok()
            };
            SpecialMatcher { ac, ids }
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    pub fn text_to_token(&self, text: &[u8]) -> Option<u32> {
        self.tokens.find(text)
    }

    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize)
    }

    pub(crate) fn attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(attr::UNDEFINED)
    }

    pub(crate) fn bpe_rank(&self, key: &[u8]) -> Option<u32> {
        self.bpe_ranks.get(key).copied()
    }
}

/// Key of a BPE merge pair in `bpe_ranks` (length prefix keeps ("ab","c") and ("a","bc") apart).
pub(crate) fn merge_key(l: &[u8], r: &[u8]) -> Box<[u8]> {
    let mut k = Vec::with_capacity(4 + l.len() + r.len());
    write_merge_key(&mut k, l, r);
    k.into_boxed_slice()
}

pub(crate) fn write_merge_key(k: &mut Vec<u8>, l: &[u8], r: &[u8]) {
    k.clear();
    k.extend_from_slice(&(l.len() as u32).to_le_bytes());
    k.extend_from_slice(l);
    k.extend_from_slice(r);
}
