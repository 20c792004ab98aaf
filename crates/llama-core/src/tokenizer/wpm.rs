//! WordPiece (`tokenizer.ggml.model = "bert"`), llama.cpp's `llm_tokenizer_wpm`: BERT's
//! normalization and splitting (`preprocess`), then a greedy longest match per word over the
//! vocabulary, whose word-initial pieces carry the U+2581 mark (the converter rewrote BERT's
//! `##` continuation pieces to bare text and the others to "▁" + text).
//!
//! Code point classes, lower-casing and the (single code point) NFD come from llama.cpp's own
//! Unicode tables (`unicode_data.rs`), so the ids are llama.cpp's, not HF's, where the two differ.

use std::sync::OnceLock;

use super::pretokenize::{cpts_from_utf8, push_cpt_utf8};
use super::unicode_data::{LOWERCASE, RANGES_FLAGS, RANGES_NFD, WHITESPACE};
use super::vocab::Vocab;

// llama.cpp `unicode_cpt_flags` bits.
const ACCENT_MARK: u16 = 0x0010;
const PUNCTUATION: u16 = 0x0020;
const SYMBOL: u16 = 0x0040;
const CONTROL: u16 = 0x0080;
const WHITESPACE_FLAG: u16 = 0x0100;
const UNDEFINED: u16 = 0x0001;
const MAX_CODEPOINTS: u32 = 0x110000;

/// llama.cpp `unicode_cpt_flags_from_cpt`: the range's category flags, plus WHITESPACE for the
/// whitespace set; code points past U+10FFFF are UNDEFINED.
pub(crate) fn cpt_flags(cpt: u32) -> u16 {
    if cpt >= MAX_CODEPOINTS {
        return UNDEFINED;
    }
    // Ranges: [(start, flags)], a range ends where the next starts; the last starts at MAX.
    let i = RANGES_FLAGS.partition_point(|&(start, _)| start <= cpt) - 1;
    let mut f = RANGES_FLAGS[i].1;
    if whitespace_set().binary_search(&cpt).is_ok() {
        f |= WHITESPACE_FLAG;
    }
    f
}

fn whitespace_set() -> &'static [u32] {
    static SET: OnceLock<Vec<u32>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut v = WHITESPACE.to_vec();
        v.sort_unstable();
        v
    })
}

/// llama.cpp `unicode_tolower`: the table's mapping, else the code point itself.
pub(crate) fn tolower(cpt: u32) -> u32 {
    match LOWERCASE.binary_search_by_key(&cpt, |&(c, _)| c) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => cpt,
    }
}

/// llama.cpp `unicode_cpts_normalize_nfd` on one code point: the first code point of its
/// decomposition (accents are separate code points only in already-decomposed text).
pub(crate) fn nfd(cpt: u32) -> u32 {
    let i = RANGES_NFD.partition_point(|&(first, _, _)| first <= cpt);
    match i.checked_sub(1).map(|i| RANGES_NFD[i]) {
        Some((first, last, to)) if first <= cpt && cpt <= last => to,
        _ => cpt,
    }
}

/// The code points a character becomes before the split: itself, or with accent stripping its NFD
/// as llama.cpp takes it (the first code point) except Hangul syllables, which decompose into
/// their two or three jamo as in the model's own (Hugging Face) tokenizer. llama.cpp keeps only
/// the leading consonant there, turning every Korean word into a few consonants: a deliberate
/// difference (docs/MODELS.md).
fn decompose(cpt: u32, strip_accents: bool) -> impl Iterator<Item = u32> {
    const S_BASE: u32 = 0xAC00;
    const S_COUNT: u32 = 11172;
    let mut out = [cpt, 0, 0];
    let mut n = 1;
    if strip_accents {
        if (S_BASE..S_BASE + S_COUNT).contains(&cpt) {
            // Unicode's algorithmic Hangul decomposition: L + V (+ T)
            let s = cpt - S_BASE;
            out = [0x1100 + s / 588, 0x1161 + (s % 588) / 28, 0x11A7 + s % 28];
            n = if s.is_multiple_of(28) { 2 } else { 3 };
        } else {
            out[0] = nfd(cpt);
        }
    }
    out.into_iter().take(n)
}

/// llama.cpp's `is_chinese_char` (with HF's 0x2B920 typo kept).
fn is_chinese_char(cpt: u32) -> bool {
    matches!(cpt,
        0x04E00..=0x09FFF
        | 0x03400..=0x04DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0x0F900..=0x0FAFF
        | 0x2F800..=0x2FA1F)
}

/// `llm_tokenizer_wpm_session::preprocess`: (NFD when stripping accents), drop control
/// characters and (when stripping) accent marks, lower-case, split on whitespace, and make each
/// punctuation mark, ASCII symbol and CJK ideograph a word of its own. Words are UTF-8.
pub(crate) fn preprocess(text: &[u8], lowercase: bool, strip_accents: bool) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = vec![Vec::new()];
    for cpt in cpts_from_utf8(text).into_iter().flat_map(|c| decompose(c, strip_accents)) {
        let flags = cpt_flags(cpt);
        if flags & WHITESPACE_FLAG != 0 {
            if !words.last().is_some_and(Vec::is_empty) {
                words.push(Vec::new());
            }
            continue;
        }
        if cpt == 0 || cpt == 0xFFFD || flags & CONTROL != 0 {
            continue;
        }
        if strip_accents && flags & ACCENT_MARK != 0 {
            continue;
        }
        let c = if lowercase { tolower(cpt) } else { cpt };
        if flags & PUNCTUATION != 0 || (cpt < 0x7F && flags & SYMBOL != 0) || is_chinese_char(cpt) {
            // the mark is a word of its own: close the current word (if any), then start a new one
            if !words.last().is_some_and(Vec::is_empty) {
                words.push(Vec::new());
            }
            let w = words.last_mut().expect("words is never empty");
            push_cpt_utf8(w, c);
            words.push(Vec::new());
        } else {
            push_cpt_utf8(words.last_mut().expect("words is never empty"), c);
        }
    }
    if words.last().is_some_and(Vec::is_empty) {
        words.pop();
    }
    words
}

/// `llm_tokenizer_wpm_session::tokenize`: per word, "▁" + word matched greedily from the left
/// with the longest vocabulary entry (at most `max_token_len` bytes); a word with any unmatched
/// position becomes the single unknown token.
pub(crate) fn tokenize(v: &Vocab, text: &[u8], out: &mut Vec<u32>) {
    for word in preprocess(text, v.lowercase, v.strip_accents) {
        if word.is_empty() {
            continue;
        }
        let mut w1 = Vec::with_capacity(word.len() + 3); // [3 + word bytes]
        w1.extend_from_slice("\u{2581}".as_bytes());
        w1.extend_from_slice(&word);
        let n = w1.len();
        let start = out.len();
        let mut i = 0;
        while i < n {
            // Byte offsets, as llama.cpp's std::string::substr: candidates may end mid-character,
            // but only whole-character texts are in the vocabulary, so matches end on characters.
            let mut matched = None;
            let mut j = n.min(i + v.max_token_len + 1);
            while j > i {
                if let Some(id) = v.text_to_token(&w1[i..j]) {
                    matched = Some((id, j));
                    break;
                }
                j -= 1;
            }
            match matched {
                Some((id, j)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(start);
                    break;
                }
            }
        }
        if out.len() == start {
            // llama.cpp pushes token_unk() even when the vocabulary has none (-1); we skip it
            if let Some(unk) = v.unk {
                out.push(unk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_splits_as_llamacpp() {
        let w = |t: &str| -> Vec<String> {
            preprocess(t.as_bytes(), true, true).into_iter().map(|b| String::from_utf8(b).unwrap()).collect()
        };
        assert_eq!(w("Hello, World!"), ["hello", ",", "world", "!"]);
        assert_eq!(w("  a\t\tb  "), ["a", "b"]);
        assert_eq!(w("Café"), ["cafe"]);
        assert_eq!(w("我想"), ["我", "想"]);
        assert_eq!(w("a$b"), ["a", "$", "b"]);
        assert!(w("").is_empty());
    }
}
