//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`) or a bare SentencePiece `tokenizer.model`.
//!
//! Ids match llama.cpp's `llama_tokenize` exactly: special tokens are carved out first
//! (`special.rs`), then each raw fragment goes through SPM merging (`spm.rs`) or byte-level BPE
//! (`pretokenize.rs` + `bpe.rs`). Pieces and `detokenize` follow llama.cpp's `token_to_piece`
//! and llama-cpp-python's `detokenize`.

mod bpe;
mod from_gguf;
mod libstdcxx;
mod pretokenize;
mod special;
mod spm;
pub mod spm_model;
mod stream;
mod texts;
mod unicode_data;
mod vocab;
mod wpm;

pub use pretokenize::{split_raw as pre_tokenize, PreConfig, PreType};
pub use spm_model::{SpmModel, SpmPiece};
pub use stream::StreamDecoder;
pub use vocab::{attr, token_type, Vocab, VocabKind, VocabOptions};

use crate::Result;
use special::Fragment;

/// A ready tokenizer; cheap to share by reference across threads (no interior mutability).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: Vocab,
}

impl Tokenizer {
    pub fn from_vocab(vocab: Vocab) -> Tokenizer {
        Tokenizer { vocab }
    }

    /// Build from a bare SentencePiece `tokenizer.model` (protobuf bytes).
    pub fn from_spm_model(bytes: &[u8]) -> Result<Tokenizer> {
        let model = SpmModel::parse(bytes)?;
        Ok(Tokenizer::from_vocab(model.to_vocab()?))
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Text → ids. `add_special`: prepend BOS / append EOS where the metadata asks;
    /// `parse_special`: recognise CONTROL token texts such as `<|im_end|>` in `text`.
    pub fn tokenize(&self, text: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let frags = special::partition(v, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        // WPM: llama.cpp adds [CLS] and [SEP] whenever add_special, whatever add_bos/add_eos say.
        let wpm = v.kind == VocabKind::Wpm;
        let add_bos = add_special && (v.add_bos || wpm) && v.bos.is_some();
        let add_eos = add_special && v.add_eos && v.eos.is_some() && !wpm;
        if add_bos {
            out.push(v.bos.unwrap_or(0));
        }
        match v.kind {
            VocabKind::Spm => {
                // llama.cpp prefixes a space to the first raw fragment and to every raw fragment
                // that follows a special token.
                let mut prev_special = true;
                let mut buf = Vec::new();
                for f in frags {
                    match f {
                        Fragment::Text { start, len } => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.extend_from_slice("\u{2581}".as_bytes());
                            }
                            spm::escape_whitespace(&text[start..start + len], &mut buf);
                            spm::tokenize(v, &buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            VocabKind::Bpe => {
                for f in frags {
                    match f {
                        Fragment::Text { start, len } => bpe::tokenize(v, &text[start..start + len], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            VocabKind::Wpm => {
                for f in frags {
                    match f {
                        Fragment::Text { start, len } => wpm::tokenize(v, &text[start..start + len], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special {
                    if let Some(sep) = v.sep {
                        out.push(sep);
                    }
                }
            }
        }
        if add_eos {
            out.push(v.eos.unwrap_or(0));
        }
        out
    }

    /// Bytes of one token. With `special = false`, CONTROL and UNKNOWN tokens render as nothing.
    /// Out-of-range ids render as nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let a = self.vocab.attr(id);
        if !special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return Vec::new();
        }
        if id as usize >= self.vocab.n_vocab() {
            return Vec::new();
        }
        render_piece(&self.vocab, id)
    }

    /// Ids → bytes as llama-cpp-python's `detokenize(ids, special)`: the concatenated pieces,
    /// minus one leading space when the first id is BOS (the SPM dummy prefix).
    pub fn detokenize(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(&self.token_to_piece(id, special));
        }
        if !ids.is_empty() && Some(ids[0]) == self.vocab.bos && out.first() == Some(&b' ') {
            out.remove(0);
        }
        out
    }

    /// Ids → bytes as llama.cpp's `llama_detokenize(remove_special, unparse_special)`,
    /// including its SPM leading-space removal and BPE `clean_spaces` pass.
    pub fn detokenize_llama(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos && !ids.is_empty() && Some(ids[0]) == v.bos {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos && !ids.is_empty() && Some(ids[ids.len() - 1]) == v.eos {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        for &id in ids {
            let p = self.token_to_piece(id, unparse_special);
            let skip = usize::from(remove_space && p.first() == Some(&b' '));
            out.extend_from_slice(&p[skip..]);
            remove_space = false;
        }
        if v.clean_spaces {
            out = clean_spaces(&out);
        }
        out
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_vocab()
    }
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }
    pub fn eot(&self) -> Option<u32> {
        self.vocab.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.vocab.eom
    }
    /// FIM prefix / suffix / middle / pad / repo / file-separator ids: from the metadata, else
    /// found by token text as llama.cpp finds them.
    pub fn fim_pre(&self) -> Option<u32> {
        self.vocab.fim_pre
    }
    pub fn fim_suf(&self) -> Option<u32> {
        self.vocab.fim_suf
    }
    pub fn fim_mid(&self) -> Option<u32> {
        self.vocab.fim_mid
    }
    pub fn fim_pad(&self) -> Option<u32> {
        self.vocab.fim_pad
    }
    pub fn fim_rep(&self) -> Option<u32> {
        self.vocab.fim_rep
    }
    pub fn fim_sep(&self) -> Option<u32> {
        self.vocab.fim_sep
    }
    pub fn sep(&self) -> Option<u32> {
        self.vocab.sep
    }
    pub fn unk(&self) -> Option<u32> {
        self.vocab.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.vocab.pad
    }
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
    /// Whether a reranker's input puts [SEP] between query and document (llama.cpp's
    /// `llama_vocab_get_add_sep`).
    pub fn add_sep(&self) -> bool {
        self.vocab.add_sep
    }
    pub fn add_space_prefix(&self) -> bool {
        self.vocab.add_space_prefix
    }
    /// End-of-generation, llama.cpp's `llama_vocab_is_eog`: EOS, EOT, EOM, FIM pad/repo/sep and
    /// the tokens whose text llama.cpp lists (`<|im_end|>`, `<end_of_turn>`, `<|return|>` …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog.iter().copied().collect()
    }
    /// llama.cpp's attribute bits of a token (`attr::*`, as `llama_vocab_get_attr`): the metadata
    /// type after llama.cpp's fix-ups; `attr::UNDEFINED` for out-of-range ids.
    pub fn token_attr(&self, id: u32) -> u32 {
        self.vocab.attr(id)
    }
    /// Token type from the metadata (`token_type::*`); None for out-of-range ids.
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.vocab.types.get(id as usize).copied()
    }
    /// Raw token text as stored in the vocabulary (SPM: with ▁; BPE: byte-level characters).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.vocab.token_text(id)
    }
    pub fn score(&self, id: u32) -> Option<f32> {
        self.vocab.scores.get(id as usize).copied()
    }
}

/// llama.cpp's `token_to_piece` with `special = true` (what llama.cpp caches; computed on
/// demand here, it is cheap and a 262k-entry cache would dominate load time).
fn render_piece(v: &Vocab, id: u32) -> Vec<u8> {
    let text = &v.tokens[id as usize];
    let a = v.attrs[id as usize];
    if a & (attr::CONTROL | attr::UNKNOWN | attr::USER_DEFINED) != 0 {
        return text.to_vec();
    }
    match v.kind {
        // WPM pieces render as SPM's: U+2581 → space (llama.cpp `llama_unescape_whitespace`).
        VocabKind::Spm | VocabKind::Wpm => {
            if a & attr::NORMAL != 0 {
                spm::unescape_whitespace(text)
            } else if a & attr::BYTE != 0 {
                vec![token_to_byte(text)]
            } else {
                Vec::new() // UNUSED / UNDEFINED render as nothing
            }
        }
        VocabKind::Bpe => {
            if a & attr::NORMAL != 0 {
                decode_byte_level(text)
            } else if a & attr::BYTE != 0 {
                vec![token_to_byte(text)]
            } else {
                Vec::new()
            }
        }
    }
}

/// `<0xNN>` → NN as llama.cpp's `token_to_byte`: C `strtol(text.substr(3, 2), 16)` (leading
/// whitespace and a sign allowed, stops at the first non-hex digit), truncated to a byte.
fn token_to_byte(text: &[u8]) -> u8 {
    let s = text.get(3..).unwrap_or(&[]);
    let s = &s[..s.len().min(2)];
    let mut i = s.iter().take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')).count();
    let neg = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut v: i64 = 0;
    for &c in &s[i..] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        v = v * 16 + d as i64;
    }
    (if neg { -v } else { v }) as u8
}

/// Byte-level characters → bytes (llama.cpp `llama_decode_text`); a character outside the
/// table becomes `[UNK_BYTE_0x<hex of its UTF-8>` + the token text + `]`, as llama.cpp writes it.
fn decode_byte_level(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut enc = Vec::with_capacity(4);
    for c in pretokenize::cpts_from_utf8(text) {
        match pretokenize::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                enc.clear();
                pretokenize::push_cpt_utf8(&mut enc, c);
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in &enc {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text);
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `clean_spaces` post-pass of `llama_detokenize` (BPE vocabularies):
/// " ?" " !" " ." " ," lose the space, " ' " loses both spaces, " 's" " 'm" " 're" " 've" lose it.
/// Done in place like llama.cpp, because pass 2 overwrites the dropped space with NUL and a later
/// look-behind sees that NUL.
fn clean_spaces(text: &[u8]) -> Vec<u8> {
    let mut t = text.to_vec();
    let mut total = t.len();
    if total == 0 {
        return t;
    }
    // Pass 1: space before ?!.,
    let n = total;
    total = 1;
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    // Pass 2: " ' " → "'".
    let n = total;
    total = 1;
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    // Pass 3: contractions " 's" " 'm" " 're" " 've".
    let n = total;
    total = 1;
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = t[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<StreamDecoder>();
    }

    #[test]
    fn clean_spaces_passes() {
        assert_eq!(clean_spaces(b"Hello , world !"), b"Hello, world!");
        assert_eq!(clean_spaces(b"it 's I 'm you 're we 've don 't"), b"it's I'm you're we've don 't");
        assert_eq!(clean_spaces(b"a ' b"), b"a'b");
    }
}
