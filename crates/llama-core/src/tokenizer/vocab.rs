//! The vocabulary: token texts, scores, types and the special-token bookkeeping that llama.cpp
//! derives from `tokenizer.ggml.*` metadata (defaults per model kind, special-token detection by
//! token text, the end-of-generation set, per-model attribute rules, the longest-first
//! special-token list used to split raw text).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

use super::libstdcxx;
use super::pretokenize::{PreConfig, PreType};
use super::texts::{FastBuild, TokenTexts};
use crate::{Error, Result};

/// Which algorithm turns a text fragment into ids (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `llama`: SentencePiece-style score merges over U+2581-escaped text, `<0xNN>` byte fallback.
    Spm,
    /// `gpt2`: byte-level BPE with merge ranks and a regex pre-tokenizer.
    Bpe,
    /// `bert`: WordPiece, greedy longest match over U+2581-marked words (`wpm.rs`).
    Wpm,
}

impl VocabKind {
    pub fn from_model_name(name: &str) -> Result<VocabKind> {
        match name {
            "llama" => Ok(VocabKind::Spm),
            "gpt2" => Ok(VocabKind::Bpe),
            "bert" => Ok(VocabKind::Wpm),
            other => Err(Error::Tokenizer(format!(
                "unsupported tokenizer.ggml.model '{other}' (supported: llama, gpt2, bert)"
            ))),
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

/// Attribute bits (llama.cpp `llama_token_attr`). The metadata type gives one type bit; llama.cpp's
/// fix-ups add bits (a NORMAL `<|im_end|>` becomes NORMAL | CONTROL, an unused CONTROL token
/// CONTROL | UNUSED) or replace them (gpt-oss's `<|channel|>` becomes USER_DEFINED).
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
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_sep_token`: a separator between a reranker's query and document.
    pub add_sep: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub remove_extra_whitespaces: Option<bool>,
    /// `tokenizer.ggml.normalizer.lowercase` / `.strip_accents` (WPM; llama.cpp: lowercase
    /// defaults to true, strip_accents to lowercase).
    pub normalizer_lowercase: Option<bool>,
    pub normalizer_strip_accents: Option<bool>,
    /// `general.name` and `general.architecture`: llama.cpp sets per-token LSTRIP/RSTRIP
    /// attributes by model name (Phi-3: RSTRIP on the special tokens) and architecture.
    pub model_name: Option<String>,
    pub arch: Option<String>,
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
    pub(crate) fim_pre: Option<u32>,
    pub(crate) fim_suf: Option<u32>,
    pub(crate) fim_mid: Option<u32>,
    pub(crate) fim_pad: Option<u32>,
    pub(crate) fim_rep: Option<u32>,
    pub(crate) fim_sep: Option<u32>,
    /// Ids that end generation (llama.cpp `special_eog_ids`).
    pub(crate) eog: BTreeSet<u32>,

    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    /// A [SEP] between a reranker's query and document (llama.cpp's `add_sep`: WPM and the
    /// jina/roberta BPE pre-tokenizers by default, the metadata's otherwise).
    pub(crate) add_sep: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) remove_extra_whitespaces: bool,
    pub(crate) ignore_merges: bool,
    pub(crate) clean_spaces: bool,
    /// WPM normalizer: lower-case, and NFD + drop accent marks.
    pub(crate) lowercase: bool,
    pub(crate) strip_accents: bool,

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

// The token texts of llama.cpp's special-token detection (`llama_vocab::impl::load`), list by list.

/// EOT candidates: the first one met becomes `eot` (when the metadata has none) and CONTROL.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\u{ff5c}fim\u{2581}begin\u{ff5c}>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\u{ff5c}fim\u{2581}hole\u{ff5c}>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\u{ff5c}fim\u{2581}end\u{ff5c}>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Every token with one of these texts ends generation and is made CONTROL.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// gpt-oss (harmony) tokens llama.cpp always renders: made USER_DEFINED whatever their type.
const ALWAYS_RENDERED_TEXTS: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Which special id a detection list fills.
#[derive(Clone, Copy)]
enum Slot {
    Eot,
    Eom,
    FimPre,
    FimSuf,
    FimMid,
    FimPad,
    FimRep,
    FimSep,
}

const DETECTED: &[(Slot, &[&str])] = &[
    (Slot::Eot, EOT_TEXTS),
    (Slot::Eom, EOM_TEXTS),
    (Slot::FimPre, FIM_PRE_TEXTS),
    (Slot::FimSuf, FIM_SUF_TEXTS),
    (Slot::FimMid, FIM_MID_TEXTS),
    (Slot::FimPad, FIM_PAD_TEXTS),
    (Slot::FimRep, FIM_REP_TEXTS),
    (Slot::FimSep, FIM_SEP_TEXTS),
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

        let pre_cfg = match kind {
            VocabKind::Spm | VocabKind::Wpm => None,
            VocabKind::Bpe => Some(PreConfig::from_name(pre)?),
        };
        let mut v = Vocab {
            kind,
            pre: pre_cfg.map_or(PreType::Default, |c| c.pre),
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
            fim_pre: None,
            fim_suf: None,
            fim_mid: None,
            fim_pad: None,
            fim_rep: None,
            fim_sep: None,
            eog: BTreeSet::new(),
            add_bos: false,
            add_eos: false,
            add_sep: kind == VocabKind::Wpm || matches!(pre, "jina-v1-en" | "jina-v2-code" | "roberta-bpe"),
            add_space_prefix: false,
            remove_extra_whitespaces: false,
            ignore_merges: false,
            clean_spaces: false,
            lowercase: false,
            strip_accents: false,
            special_cache: Vec::new(),
            special_matchers: [OnceLock::new(), OnceLock::new()],
        };

        // Per-kind defaults (llama.cpp `llama_vocab::impl::load`).
        match pre_cfg {
            None if kind == VocabKind::Wpm => {
                v.bos = Some(101);
                v.unk = Some(100);
                v.sep = Some(102);
                v.pad = Some(0);
                v.mask = Some(103);
                v.clean_spaces = true;
                v.add_bos = true;
            }
            None => {
                v.bos = Some(1);
                v.eos = Some(2);
                v.unk = Some(0);
                v.add_space_prefix = true;
                v.add_bos = true;
            }
            Some(cfg) => {
                v.bos = Some(11);
                v.eos = Some(11);
                v.clean_spaces = cfg.clean_spaces.unwrap_or(true);
                v.ignore_merges = cfg.ignore_merges;
                if let Some(b) = cfg.add_bos {
                    v.add_bos = b;
                }
                v.build_ranks(merges)?;
            }
        }
        // Defaults that point outside a small vocabulary are dropped.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        v.bos = in_range(v.bos);
        v.eos = in_range(v.eos);
        v.unk = in_range(v.unk);
        v.sep = in_range(v.sep);
        v.pad = in_range(v.pad);
        v.mask = in_range(v.mask);

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
        set(&mut v.fim_pre, opts.fim_pre);
        set(&mut v.fim_suf, opts.fim_suf);
        set(&mut v.fim_mid, opts.fim_mid);
        set(&mut v.fim_pad, opts.fim_pad);
        set(&mut v.fim_rep, opts.fim_rep);
        set(&mut v.fim_sep, opts.fim_sep);
        if let Some(b) = opts.add_bos {
            v.add_bos = b;
        }
        if let Some(b) = opts.add_eos {
            v.add_eos = b;
        }
        if let Some(b) = opts.add_sep {
            v.add_sep = b;
        }
        if let Some(b) = opts.add_space_prefix {
            v.add_space_prefix = b;
        }
        if let Some(b) = opts.remove_extra_whitespaces {
            v.remove_extra_whitespaces = b;
        }
        v.lowercase = opts.normalizer_lowercase.unwrap_or(true);
        v.strip_accents = opts.normalizer_strip_accents.unwrap_or(v.lowercase);

        v.detect_special_by_text();
        v.build_eog();
        v.build_special_cache();
        v.set_model_attrs(pre, opts.model_name.as_deref().unwrap_or(""), opts.arch.as_deref().unwrap_or(""))?;
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

    fn slot(&mut self, slot: Slot) -> &mut Option<u32> {
        match slot {
            Slot::Eot => &mut self.eot,
            Slot::Eom => &mut self.eom,
            Slot::FimPre => &mut self.fim_pre,
            Slot::FimSuf => &mut self.fim_suf,
            Slot::FimMid => &mut self.fim_mid,
            Slot::FimPad => &mut self.fim_pad,
            Slot::FimRep => &mut self.fim_rep,
            Slot::FimSep => &mut self.fim_sep,
        }
    }

    /// llama.cpp's "auto-detect special tokens by text": each special id the metadata left unset
    /// takes the first token of its text list met while walking `token_to_id`, and that token
    /// becomes CONTROL. The walk order only matters when a vocabulary holds two texts of one list;
    /// then it is replayed (`libstdcxx`).
    fn detect_special_by_text(&mut self) {
        let mut order_pos: Option<HashMap<u32, usize>> = None;
        for &(slot, texts) in DETECTED {
            if self.slot(slot).is_some() {
                continue;
            }
            let mut found: Vec<u32> = texts.iter().filter_map(|t| self.tokens.find(t.as_bytes())).collect();
            found.dedup();
            let id = match found[..] {
                [] => continue,
                [id] => id,
                _ => {
                    let pos = order_pos.get_or_insert_with(|| {
                        libstdcxx::iteration_order(&self.tokens)
                            .into_iter()
                            .enumerate()
                            .map(|(p, id)| (id, p))
                            .collect()
                    });
                    *found.iter().min_by_key(|id| pos.get(id).copied().unwrap_or(usize::MAX)).expect("two or more")
                }
            };
            *self.slot(slot) = Some(id);
            self.attrs[id as usize] |= attr::CONTROL;
        }
        // CONTROL tokens whose text contains "unused" (C `strstr`: up to the first NUL) are UNUSED too.
        for id in 0..self.attrs.len() {
            if self.attrs[id] & attr::CONTROL != 0 {
                let t = &self.tokens[id];
                let t = &t[..memchr::memchr(0, t).unwrap_or(t.len())];
                if memchr::memmem::find(t, b"unused").is_some() {
                    self.attrs[id] |= attr::UNUSED;
                }
            }
        }
    }

    /// llama.cpp's `special_eog_ids`: FIM pad/repo/sep, every token with an EOG text (made
    /// CONTROL), EOS/EOT/EOM; then its two workarounds: with `<|return|>` and `<|call|>` (harmony)
    /// or `<|calls|>` and `<|flush|>` (solar-open), `<|end|>` does not end generation and becomes
    /// USER_DEFINED; with `<|tool_response>` or `<|plamo:eos|>`, `</s>` does not and becomes NORMAL.
    fn build_eog(&mut self) {
        let mut eog: BTreeSet<u32> = [self.fim_pad, self.fim_rep, self.fim_sep].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(id) = self.tokens.find(t.as_bytes()) {
                eog.insert(id);
                self.attrs[id as usize] |= attr::CONTROL;
            }
        }
        for t in ALWAYS_RENDERED_TEXTS {
            if let Some(id) = self.tokens.find(t.as_bytes()) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([self.eos, self.eot, self.eom].into_iter().flatten());

        let text_in_eog = |eog: &BTreeSet<u32>, texts: &[&str]| -> Option<u32> {
            eog.iter().copied().find(|&id| texts.iter().any(|t| &self.tokens[id as usize] == t.as_bytes()))
        };
        let has_return = text_in_eog(&eog, &["<|return|>"]).is_some();
        let has_call = text_in_eog(&eog, &["<|call|>", "<|calls|>"]).is_some();
        let has_flush = text_in_eog(&eog, &["<|flush|>"]).is_some();
        if let Some(end) = text_in_eog(&eog, &["<|end|>"]) {
            if has_call && (has_return || has_flush) {
                eog.remove(&end);
                self.attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        if text_in_eog(&eog, &["<|tool_response>", "<|plamo:eos|>"]).is_some() {
            if let Some(s) = text_in_eog(&eog, &["</s>"]) {
                eog.remove(&s);
                self.attrs[s as usize] = attr::NORMAL;
            }
        }
        self.eog = eog;
    }

    /// llama.cpp's per-token attributes by tokenizer, architecture or model name (applied after
    /// the special-token cache is built, so they only add LSTRIP/RSTRIP).
    fn set_model_attrs(&mut self, pre: &str, model_name: &str, arch: &str) -> Result<()> {
        let name = model_name.to_ascii_lowercase();
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
        // llama.cpp's `token_to_id.at(text)`: a missing text throws and the model does not load.
        let id_of = |v: &Vocab, text: &str| {
            v.tokens.find(text.as_bytes()).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "model name '{model_name}' asks for llama.cpp's Phi-3 token attributes but the vocabulary                      has no '{text}' token (llama.cpp refuses to load it too)"
                ))
            })
        };
        if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
            || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            if let Some(id) = self.tokens.find(b"<mask>") {
                self.attrs[id as usize] |= attr::LSTRIP;
            }
        } else if contains_any(&name, &["phi-3", "phi3"]) {
            for i in 0..self.special_cache.len() {
                let id = self.special_cache[i];
                self.attrs[id as usize] |= attr::RSTRIP;
            }
            let id = id_of(self, "</s>")?;
            self.attrs[id as usize] |= attr::RSTRIP;
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                let id = id_of(self, t)?;
                self.attrs[id as usize] &= !attr::RSTRIP;
            }
        } else if contains_any(&name, &["modern-bert"]) {
            if let Some(id) = self.tokens.find(b"[MASK]") {
                self.attrs[id as usize] |= attr::LSTRIP;
            }
        }
        Ok(())
    }

    /// llama.cpp's `cache_special_tokens`: CONTROL / USER_DEFINED / UNKNOWN ids, longest text
    /// first, in the order libstdc++'s (unstable) `std::sort` leaves equal lengths.
    fn build_special_cache(&mut self) {
        let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut ids: Vec<u32> = (0..self.tokens.len() as u32).filter(|&i| self.attrs[i as usize] & mask != 0).collect();
        let len = |id: &u32| self.tokens[*id as usize].len();
        libstdcxx::sort(&mut ids, &|a, b| len(a) > len(b));
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
