//! Grammar-constrained decoding with llguidance (the engine llama.cpp, vLLM and SGLang use: an
//! Earley parser over lexemes, walked against a token trie to get the set of allowed tokens).
//!
//! * [`Grammar`]: a compiled constraint from GBNF (llama.cpp's format, translated to llguidance's
//!   Lark dialect by `gbnf.rs`), a JSON Schema, "any JSON object", a regex or Lark. Compiling
//!   needs no tokenizer, so a bad grammar or an unsupported schema is an [`Error::Grammar`]
//!   before any model work.
//! * [`TokEnv`]: llguidance's view of OUR tokenizer — the bytes of every token id (SPM `▁` →
//!   space and `<0xNN>` → the byte, byte-level BPE decoded, exactly what `token_to_piece` gives),
//!   control tokens marked special (llguidance never matches them as text), the EOG ids as the
//!   tokens that end a sequence. Build once per model; cheap to clone.
//! * [`Matcher`]: one generation's state: `mask_logits` (forbidden tokens → -inf, EOG only when
//!   the grammar may end), `accept` of the sampled token, `reset`, `Clone`.

mod gbnf;

use std::sync::Arc;

use llguidance::api::{GrammarInit, ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{self, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::ParserFactory;

use crate::sampler::TokenData;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

fn err(msg: impl std::fmt::Display) -> Error {
    Error::Grammar(msg.to_string())
}

/// A compiled constraint. Cheap to clone (the compiled grammar is shared by value, not by state).
#[derive(Clone)]
pub struct Grammar {
    init: GrammarInit,
    /// The Lark text llguidance compiled (for GBNF: the translation), for diagnostics.
    lark: Option<String>,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar").field("lark", &self.lark).finish_non_exhaustive()
    }
}

/// llama.cpp's json-schema-to-grammar whitespace between JSON tokens: nothing, one space, or one or
/// two newlines and up to 20 spaces/tabs of indent. Bounded, so a sampled sequence cannot
/// spend its whole budget on whitespace. Used unless the schema sets `x-guidance` itself.
const JSON_WHITESPACE: &str = r"(?:\x20|\n{1,2}[\x20\t]{0,20})";

impl Grammar {
    /// GBNF as llama.cpp and llama-cpp-python write it, with `root` as the start rule.
    pub fn from_gbnf(text: &str, root: &str) -> Result<Grammar> {
        let g = gbnf::Gbnf::parse(text, root).map_err(|m| err(format!("cannot parse GBNF grammar: {m}")))?;
        let lark = g.to_lark().map_err(|m| err(format!("cannot translate GBNF grammar: {m}")))?;
        Self::compile(TopLevelGrammar::from_lark(lark.clone()), Some(lark), "GBNF grammar")
    }

    /// llguidance's Lark dialect (also what `%llguidance`-prefixed grammars in llama.cpp are).
    pub fn from_lark(text: &str) -> Result<Grammar> {
        Self::compile(TopLevelGrammar::from_lark(text.to_string()), Some(text.to_string()), "Lark grammar")
    }

    /// A JSON Schema (the draft 2020-12 subset llguidance implements; unknown or unsupported
    /// keywords are an error naming them).
    pub fn from_json_schema(schema: &serde_json::Value) -> Result<Grammar> {
        let mut schema = schema.clone();
        normalize_schema(&mut schema);
        match &mut schema {
            serde_json::Value::Object(m) => {
                if !m.contains_key("x-guidance") {
                    m.insert("x-guidance".into(), serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }));
                }
            }
            serde_json::Value::Bool(_) => {}
            other => return Err(err(format!("JSON schema must be an object or a boolean, got {other}"))),
        }
        Self::compile(TopLevelGrammar::from_json_schema(schema), None, "JSON schema")
    }

    /// Any JSON object (`response_format={"type": "json_object"}`).
    pub fn json_object() -> Grammar {
        Self::from_json_schema(&serde_json::json!({ "type": "object" })).expect("the any-object schema compiles")
    }

    /// A regular expression (Rust `regex` syntax) the whole output must match.
    pub fn from_regex(pattern: &str) -> Result<Grammar> {
        Self::compile(TopLevelGrammar::from_regex(pattern), None, "regex")
    }

    fn compile(g: TopLevelGrammar, lark: Option<String>, what: &str) -> Result<Grammar> {
        let init = GrammarInit::Serialized(g);
        let (grammar, lexer_spec) = llguidance::panic_utils::catch_unwind(std::panic::AssertUnwindSafe(|| {
            init.to_internal(None, ParserLimits::default())
        }))
        .map_err(|e| err(format!("invalid {what}: {e}")))?;
        Ok(Grammar { init: GrammarInit::Internal(grammar, lexer_spec), lark })
    }

    /// The Lark text given to llguidance (GBNF: its translation), when there is one.
    pub fn lark(&self) -> Option<&str> {
        self.lark.as_deref()
    }
}

/// `format: date`: a real calendar date (years 0001-9999, Feb 29 only in leap years), as Python's
/// `date.fromisoformat` (jsonschema's FormatChecker) accepts; llguidance's own format allows Feb
/// 29 in every year.
const DATE: &str = concat!(
    "(?:(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-",
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)"
);
/// `format: time`: RFC 3339 full-time; the fraction has at most 3 digits as in llama.cpp's
/// json-schema-to-grammar (unbounded, a small model can repeat `0` until the budget ends).
const TIME: &str =
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";

/// llama.cpp's readings of older array keywords, in every schema position: `items: [..]`
/// (draft-04 tuples) is `prefixItems: [..]` with nothing after; `prefixItems: {..}` (a single
/// schema) means `items: {..}` unless `items` is given. Formats date / time / date-time become
/// the equivalent patterns above. An object schema that lists `properties` without saying
/// `additionalProperties` admits only the listed ones, as llama.cpp's json-schema-to-grammar (and
/// llama-cpp-python's) build it, not JSON Schema's "anything else too"; except a branch of
/// `allOf`, whose properties llama.cpp merges with its siblings'.
fn normalize_schema(s: &mut serde_json::Value) {
    normalize_node(s, false)
}

fn normalize_node(s: &mut serde_json::Value, in_all_of: bool) {
    use serde_json::Value;
    let Value::Object(m) = s else { return };
    let unsaid =
        ["additionalProperties", "patternProperties", "unevaluatedProperties"].iter().all(|k| !m.contains_key(*k));
    if !in_all_of && m.contains_key("properties") && unsaid {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let (Some(Value::String(f)), false) = (m.get("format"), m.contains_key("pattern")) {
        let pat = match f.as_str() {
            "date" => Some(format!("^{DATE}$")),
            "time" => Some(format!("^{TIME}$")),
            "date-time" => Some(format!("^{DATE}T{TIME}$")),
            _ => None,
        };
        if let Some(p) = pat {
            m.remove("format");
            m.insert("pattern".into(), Value::String(p));
        }
    }
    if let Some(Value::Object(_)) = m.get("prefixItems") {
        let p = m.remove("prefixItems").unwrap();
        m.entry("items").or_insert(p);
    }
    if let Some(Value::Array(_)) = m.get("items") {
        let items = m.remove("items").unwrap();
        if !m.contains_key("prefixItems") {
            m.insert("prefixItems".into(), items);
            m.insert("items".into(), Value::Bool(false));
        }
    }
    for (k, v) in m.iter_mut() {
        match k.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" | "dependentSchemas" => {
                if let Value::Object(children) = v {
                    children.values_mut().for_each(normalize_schema);
                }
            }
            "items"
            | "additionalProperties"
            | "additionalItems"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedProperties"
            | "unevaluatedItems" => normalize_schema(v),
            "prefixItems" | "anyOf" | "oneOf" => {
                if let Value::Array(a) = v {
                    a.iter_mut().for_each(normalize_schema);
                }
            }
            "allOf" => {
                if let Value::Array(a) = v {
                    a.iter_mut().for_each(|b| normalize_node(b, true));
                }
            }
            _ => {}
        }
    }
}

/// Forbid (-inf) the logits of the up to 32 tokens whose bit in `bits` is clear.
fn mask_word<'a>(bits: u32, logits: impl Iterator<Item = &'a mut f32>) {
    if bits == u32::MAX {
        return;
    }
    for (b, l) in logits.enumerate() {
        if bits >> b & 1 == 0 {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// llguidance's tokenizer environment for one of our tokenizers.
struct LlamaEnv {
    trie: TokTrie,
    tok: Tokenizer,
    /// SPM with a dummy prefix: `tokenize` adds a space the forced text does not have.
    canonical: bool,
}

impl TokenizerEnv for LlamaEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    /// Text the grammar forces, as tokens whose bytes are exactly `s`: our tokenizer (no BOS,
    /// special texts parsed, as llama.cpp's llguidance glue), else the trie's longest-match split.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        if self.canonical {
            let ids = self.tok.tokenize(s, false, true);
            let mut n = 0;
            let exact = ids.iter().all(|&t| {
                let b = self.trie.token(t);
                let ok = s.get(n..n + b.len()) == Some(b);
                n += b.len();
                ok
            });
            if exact && n == s.len() {
                return ids;
            }
        }
        self.trie.greedy_tokenize(s)
    }
    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }
}

/// The token trie plus llguidance's parser factory (its slicer precomputes token sets over the
/// vocabulary once). Build once per model and clone.
#[derive(Clone)]
pub struct TokEnv {
    factory: Arc<ParserFactory>,
    n_vocab: usize,
}

impl TokEnv {
    pub fn new(tok: &Tokenizer) -> Result<TokEnv> {
        let n_vocab = tok.n_vocab();
        if n_vocab == 0 {
            return Err(err("the tokenizer has an empty vocabulary"));
        }
        let mut words = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab as u32 {
            // As llama.cpp's llguidance glue: the plain piece; if that is empty but the piece
            // with specials is not, the token is special (0xFF marker + its text).
            let plain = tok.token_to_piece(id, false);
            if plain.is_empty() {
                let sp = tok.token_to_piece(id, true);
                if sp.is_empty() {
                    words.push(Vec::new());
                } else {
                    let mut w = Vec::with_capacity(sp.len() + 1);
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(&sp);
                    words.push(w);
                }
            } else {
                words.push(plain);
            }
        }
        let mut eog = tok.eog_ids();
        eog.sort_unstable();
        let first = tok.eot().or(tok.eos()).or_else(|| eog.first().copied());
        let Some(eos) = first else {
            return Err(err("the vocabulary has no end-of-generation token (EOS/EOT)"));
        };
        if eos as usize >= n_vocab || eog.iter().any(|&t| t as usize >= n_vocab) {
            return Err(err("an end-of-generation token id is outside the vocabulary"));
        }
        let info = TokRxInfo {
            vocab_size: n_vocab as u32,
            tok_eos: eos,
            tok_bos: tok.bos(),
            tok_pad: tok.pad(),
            tok_unk: tok.unk(),
            tok_end_of_turn: tok.eot(),
        };
        let mut eos_all = vec![eos];
        eos_all.extend(eog.iter().copied().filter(|&t| t != eos));
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos_all);
        let env: toktrie::TokEnv = Arc::new(LlamaEnv { trie, tok: tok.clone(), canonical: !tok.add_space_prefix() });
        let mut factory = ParserFactory::new_simple(&env).map_err(err)?;
        factory.quiet();
        Ok(TokEnv { factory: Arc::new(factory), n_vocab })
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The bytes llguidance sees for a token (special tokens: 0xFF + text).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let t = self.factory.tok_env().tok_trie();
        if (id as usize) < self.n_vocab {
            t.token(id).to_vec()
        } else {
            Vec::new()
        }
    }
}

/// One constrained generation: mask → sample → accept, until the grammar ends.
#[derive(Clone)]
pub struct Matcher {
    m: llguidance::Matcher,
    n_vocab: usize,
    eog: Arc<[u32]>,
    /// The state before any token, for `reset` (llguidance cannot reset out of an error state).
    start: Arc<llguidance::Matcher>,
}

impl Matcher {
    pub fn new(grammar: &Grammar, env: &TokEnv) -> Result<Matcher> {
        let parser = env.factory.create_parser_from_init_default(grammar.init.clone()).map_err(err)?;
        let m = llguidance::Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            return Err(err(e));
        }
        let eog = env.factory.tok_env().tok_trie().eos_tokens().into();
        let start = Arc::new(m.clone());
        Ok(Matcher { m, n_vocab: env.n_vocab, eog, start })
    }

    /// The allowed tokens now, as a bit set (bit `t % 32` of word `t / 32`), vocabulary-sized.
    /// Once the grammar has stopped only the EOG tokens are allowed.
    pub fn allowed(&mut self) -> Result<Vec<u32>> {
        let mask = self.m.compute_mask_or_eos().map_err(err)?;
        Ok(mask.as_slice().to_vec())
    }

    /// Set every logit the grammar forbids to -inf. `logits` may be longer than the vocabulary
    /// (padded output rows): the padding is forbidden too. EOG tokens stay only where the
    /// grammar can end.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.m.compute_mask_or_eos().map_err(err)?;
        let words = mask.as_slice();
        let n = logits.len().min(self.n_vocab);
        for (w, chunk) in logits[..n].chunks_mut(32).enumerate() {
            mask_word(words.get(w).copied().unwrap_or(0), chunk.iter_mut());
        }
        logits[n..].fill(f32::NEG_INFINITY);
        Ok(())
    }

    /// The same over sampler candidates (any order; ids outside the vocabulary are forbidden).
    /// Candidates still in id order from 0 (a grammar stage early in the chain) go a word of
    /// the mask at a time.
    pub fn mask_candidates(&mut self, data: &mut [TokenData]) -> Result<()> {
        let mask = self.m.compute_mask_or_eos().map_err(err)?;
        let words = mask.as_slice();
        let n = self.n_vocab;
        if data.iter().enumerate().all(|(i, t)| t.id as usize == i) {
            let k = data.len().min(n);
            for (w, chunk) in data[..k].chunks_mut(32).enumerate() {
                mask_word(words.get(w).copied().unwrap_or(0), chunk.iter_mut().map(|t| &mut t.logit));
            }
            data[k..].iter_mut().for_each(|t| t.logit = f32::NEG_INFINITY);
            return Ok(());
        }
        for t in data.iter_mut() {
            let id = t.id as usize;
            let ok = id < n && words.get(id / 32).is_some_and(|w| w >> (id % 32) & 1 == 1);
            if !ok {
                t.logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advance by the sampled token. A token the grammar forbids is an error (and leaves the
    /// matcher in its error state until `reset`).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        if token as usize >= self.n_vocab {
            return Err(Error::InvalidArgument(format!("token id {token} >= n_vocab {}", self.n_vocab)));
        }
        if self.m.is_stopped() && self.eog.contains(&token) && self.m.get_error().is_none() {
            // The grammar ended on its own (nothing can follow); the EOG that closes it is fine.
            return Ok(());
        }
        self.m.consume_token(token).map_err(|e| err(format!("token {token} rejected: {e}")))
    }

    /// Could the output end here (would EOG be allowed)?
    pub fn is_accepting(&mut self) -> bool {
        self.m.is_accepting().unwrap_or(false)
    }

    /// The grammar has ended (EOG accepted, or nothing more can follow) or failed.
    pub fn is_stopped(&self) -> bool {
        self.m.is_stopped()
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        self.m = (*self.start).clone();
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_schema;
    use serde_json::json;

    #[test]
    fn listed_properties_are_the_only_ones_unless_the_schema_says_otherwise() {
        let mut s = json!({
            "type": "object",
            "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}},
            "$defs": {"open": {"properties": {"c": {}}, "additionalProperties": true}},
            "anyOf": [{"properties": {"d": {}}}, {"type": "object"}],
            "allOf": [{"properties": {"e": {}}}]
        });
        normalize_schema(&mut s);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["a"]["additionalProperties"], json!(false));
        assert_eq!(s["$defs"]["open"]["additionalProperties"], json!(true));
        assert_eq!(s["anyOf"][0]["additionalProperties"], json!(false));
        // no properties listed: any object, as in llama.cpp
        assert!(s["anyOf"][1].get("additionalProperties").is_none());
        // allOf branches are merged by llama.cpp: each keeps JSON Schema's default
        assert!(s["allOf"][0].get("additionalProperties").is_none());
        let mut p = json!({"properties": {"a": {}}, "patternProperties": {"^x": {}}});
        normalize_schema(&mut p);
        assert!(p.get("additionalProperties").is_none());
    }
}
