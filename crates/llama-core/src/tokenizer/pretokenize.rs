//! BPE pre-tokenization: split text into words with the regexes llama.cpp picks from
//! `tokenizer.ggml.pre`, then map every byte to its GPT-2 "byte-level" character.
//!
//! llama.cpp runs the regexes either with hand-written matchers (gpt-2, llama3) or with std::regex
//! over a "collapsed" text where each non-ASCII code point becomes one byte standing for its
//! Unicode category. Both are meant to equal the plain Unicode regex, which is what we run with
//! fancy-regex. One deliberate rewrite: llama3's `(?i:'s|…)` is spelled with ASCII classes
//! (`'[sS]|…`), the form llama.cpp itself accepts, because Unicode case folding would also match
//! `ſ` where llama.cpp's `unicode_tolower` comparison does not.

use std::sync::OnceLock;

use fancy_regex::Regex;

use crate::{Error, Result};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5: combining marks (\p{M}) join letters.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// o200k (gpt-4o, gpt-oss, llama4) as llama.cpp rewrites it: `(?=[\p{L}])([^a-z])` for the
/// upper-case classes and `(?=[\p{L}])([^A-Z])` for the lower-case ones, so every non-ASCII letter
/// counts as both and combining marks are not letters (llama.cpp's collapsed std::regex has no
/// \p{Lu}/\p{Ll}); the contractions spelled with ASCII classes.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer regex families (llama.cpp `llama_vocab_pre_type`, grouped by the regex list
/// they run) that we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreType {
    Default,
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    Gpt4o,
    Starcoder,
    Falcon,
}

/// What `tokenizer.ggml.pre` selects in llama.cpp's `llama_vocab::impl::load`: the regex family
/// and the flags tied to the name (None = the BPE defaults: merges used, add_bos from the
/// metadata, clean_spaces on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConfig {
    pub pre: PreType,
    pub ignore_merges: bool,
    pub add_bos: Option<bool>,
    pub clean_spaces: Option<bool>,
}

impl PreType {
    const ALL: [PreType; 8] = [
        PreType::Default,
        PreType::Gpt2,
        PreType::Llama3,
        PreType::Qwen2,
        PreType::Qwen35,
        PreType::Gpt4o,
        PreType::Starcoder,
        PreType::Falcon,
    ];

    /// The regex family of a `tokenizer.ggml.pre` name; unknown names are an error as in llama.cpp.
    pub fn from_name(name: &str) -> Result<PreType> {
        PreConfig::from_name(name).map(|c| c.pre)
    }

    fn regex_sources(self) -> &'static [&'static str] {
        match self {
            PreType::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            PreType::Gpt2 => &[GPT2],
            PreType::Llama3 => &[LLAMA3],
            PreType::Qwen2 => &[QWEN2],
            PreType::Qwen35 => &[QWEN35],
            PreType::Gpt4o => &[GPT4O],
            PreType::Starcoder => &[r"\p{N}", GPT2],
            PreType::Falcon => &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        }
    }

    /// The compiled regexes, built once per process and shared.
    pub(crate) fn regexes(self) -> &'static [Regex] {
        static CACHE: OnceLock<Vec<(PreType, Vec<Regex>)>> = OnceLock::new();
        let all = CACHE.get_or_init(|| {
            PreType::ALL
                .into_iter()
                .map(|p| {
                    let rs = p
                        .regex_sources()
                        .iter()
                        .map(|s| {
                            fancy_regex::RegexBuilder::new(s)
                                .backtrack_limit(50_000_000)
                                .build()
                                .expect("built-in pre-tokenizer regex compiles")
                        })
                        .collect();
                    (p, rs)
                })
                .collect()
        });
        &all.iter().find(|(p, _)| *p == self).expect("every PreType is cached").1
    }
}

impl PreConfig {
    /// llama.cpp's `tokenizer_pre` switch, restricted to the names whose regex list we run.
    pub fn from_name(name: &str) -> Result<PreConfig> {
        let c = |pre, ignore_merges, add_bos, clean_spaces| PreConfig { pre, ignore_merges, add_bos, clean_spaces };
        Ok(match name {
            "" | "default" => c(PreType::Default, false, None, None),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" => c(PreType::Llama3, true, Some(true), None),
            // Same regex as llama3 (llama.cpp runs it with the same hand-written matcher), no flags.
            "dbrx" | "smaug-bpe" => c(PreType::Llama3, false, None, None),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
            | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "exaone4" | "mpt" | "olmo"
            | "jais" => c(PreType::Gpt2, false, None, None),
            "trillion" | "granite-docling" => c(PreType::Gpt2, false, None, Some(false)),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" | "grok-2" => {
                c(PreType::Qwen2, false, None, Some(false))
            }
            "stablelm2" | "megrez" => c(PreType::Qwen2, false, None, None),
            "qwen35" => c(PreType::Qwen35, false, None, Some(false)),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => c(PreType::Gpt4o, false, None, Some(false)),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                c(PreType::Starcoder, false, None, None)
            }
            "smollm" | "command-r" => c(PreType::Starcoder, false, None, Some(false)),
            "falcon" => c(PreType::Falcon, false, None, None),
            other => {
                return Err(Error::Tokenizer(format!(
                    "unknown pre-tokenizer type tokenizer.ggml.pre = '{other}' (llama.py implements the \
                     regexes of: default, gpt-2, llama-bpe, qwen2, qwen35, gpt-4o, starcoder, falcon and \
                     their aliases)"
                )))
            }
        })
    }
}

/// Decode UTF-8 the way llama.cpp's `unicode_cpts_from_utf8` does: no overlong/surrogate checks,
/// and each byte that cannot start a complete sequence becomes U+FFFD.
pub(crate) fn cpts_from_utf8(s: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let cont = |j: usize| j < s.len() && s[j] & 0xC0 == 0x80;
    while i < s.len() {
        let b = s[i] as u32;
        if b & 0x80 == 0 {
            out.push(b);
            i += 1;
        } else if b & 0x40 == 0 {
            out.push(0xFFFD);
            i += 1;
        } else if b & 0x20 == 0 {
            if cont(i + 1) {
                out.push(((b & 0x1F) << 6) | (s[i + 1] as u32 & 0x3F));
                i += 2;
            } else {
                out.push(0xFFFD);
                i += 1;
            }
        } else if b & 0x10 == 0 {
            if cont(i + 1) && cont(i + 2) {
                out.push(((b & 0x0F) << 12) | ((s[i + 1] as u32 & 0x3F) << 6) | (s[i + 2] as u32 & 0x3F));
                i += 3;
            } else {
                out.push(0xFFFD);
                i += 1;
            }
        } else if b & 0x08 == 0 {
            if cont(i + 1) && cont(i + 2) && cont(i + 3) {
                out.push(
                    ((b & 0x07) << 18)
                        | ((s[i + 1] as u32 & 0x3F) << 12)
                        | ((s[i + 2] as u32 & 0x3F) << 6)
                        | (s[i + 3] as u32 & 0x3F),
                );
                i += 4;
            } else {
                out.push(0xFFFD);
                i += 1;
            }
        } else {
            out.push(0xFFFD);
            i += 1;
        }
    }
    out
}

/// Encode a code point as llama.cpp's `unicode_cpt_to_utf8` (surrogates encoded as-is);
/// code points above U+10FFFF (llama.cpp throws) become U+FFFD.
pub(crate) fn push_cpt_utf8(out: &mut Vec<u8>, c: u32) {
    match c {
        0..=0x7F => out.push(c as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8]),
        0x800..=0xFFFF => {
            out.extend_from_slice(&[0xE0 | (c >> 12) as u8, 0x80 | ((c >> 6) & 0x3F) as u8, 0x80 | (c & 0x3F) as u8])
        }
        0x10000..=0x10FFFF => out.extend_from_slice(&[
            0xF0 | (c >> 18) as u8,
            0x80 | ((c >> 12) & 0x3F) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]),
        _ => out.extend_from_slice("\u{FFFD}".as_bytes()),
    }
}

/// GPT-2's byte → printable character table (`bytes_to_unicode`): [256].
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static T: OnceLock<[char; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
            let c = if printable {
                b
            } else {
                next += 1;
                next - 1
            };
            t[b as usize] = char::from_u32(c).expect("table code points are < 0x144");
        }
        t
    })
}

/// Inverse of `byte_to_char`, indexed by code point: [0x144], -1 = not a byte character.
pub(crate) fn char_to_byte(c: u32) -> Option<u8> {
    static T: OnceLock<Vec<i16>> = OnceLock::new();
    let t = T.get_or_init(|| {
        let mut t = vec![-1i16; 0x144];
        for (b, &c) in byte_to_char().iter().enumerate() {
            t[c as usize] = b as i16;
        }
        t
    });
    t.get(c as usize).and_then(|&b| if b < 0 { None } else { Some(b as u8) })
}

/// Split `text` into pre-tokenized words, each already byte-level encoded (UTF-8 of the mapped
/// characters), in text order.
pub(crate) fn split_words(pre: PreType, text: &[u8]) -> Vec<Vec<u8>> {
    let map = byte_to_char();
    let mut buf = [0u8; 4];
    split_raw(pre, text)
        .into_iter()
        .map(|raw| {
            let mut w = Vec::with_capacity(raw.len() * 2);
            for &b in &raw {
                w.extend_from_slice(map[b as usize].encode_utf8(&mut buf).as_bytes());
            }
            w
        })
        .collect()
}

/// The pre-tokenizer's words as raw UTF-8 (before byte-level mapping), in text order. Invalid
/// UTF-8 comes out as U+FFFD per bad byte, as in llama.cpp.
pub fn split_raw(pre: PreType, text: &[u8]) -> Vec<Vec<u8>> {
    let cpts = cpts_from_utf8(text);
    // The regexes see a Rust string with one char per code point; code points Rust cannot hold
    // (surrogates, > U+10FFFF) stand in as U+FFFD, which has the same class for every regex here.
    let s: String = cpts.iter().map(|&c| char::from_u32(c).unwrap_or('\u{FFFD}')).collect();
    // [s.len() + 1]: code point index at each char-boundary byte offset.
    let mut cpt_at = vec![0u32; s.len() + 1];
    let mut byte_at = Vec::with_capacity(cpts.len() + 1); // [n_cpts + 1]
    for (k, (b, _)) in s.char_indices().enumerate() {
        cpt_at[b] = k as u32;
        byte_at.push(b);
    }
    cpt_at[s.len()] = cpts.len() as u32;
    byte_at.push(s.len());

    // Chunks as code point lengths; each regex splits every chunk into matches and the gaps between.
    let mut chunks: Vec<usize> = vec![cpts.len()];
    for re in pre.regexes() {
        let mut next = Vec::with_capacity(chunks.len() * 2);
        let mut start = 0usize;
        for &len in &chunks {
            let (b0, b1) = (byte_at[start], byte_at[start + len]);
            let hay = &s[b0..b1];
            let mut done = 0usize; // bytes of hay already emitted
            for m in re.find_iter(hay) {
                // A matcher error (backtrack limit) leaves the rest of the chunk as one piece.
                let Ok(m) = m else { break };
                if m.start() == m.end() {
                    continue;
                }
                if m.start() > done {
                    next.push((cpt_at[b0 + m.start()] - cpt_at[b0 + done]) as usize);
                }
                next.push((cpt_at[b0 + m.end()] - cpt_at[b0 + m.start()]) as usize);
                done = m.end();
            }
            if done < hay.len() {
                next.push((cpt_at[b1] - cpt_at[b0 + done]) as usize);
            }
            start += len;
        }
        chunks = next;
    }

    let mut words = Vec::with_capacity(chunks.len());
    let mut start = 0;
    for len in chunks {
        let mut raw = Vec::with_capacity(len * 2);
        for &c in &cpts[start..start + len] {
            push_cpt_utf8(&mut raw, c);
        }
        words.push(raw);
        start += len;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize] as u32), Some(b));
        }
    }

    #[test]
    fn gpt2_split() {
        let w = split_words(PreType::Gpt2, b"Hello world's  end");
        let s: Vec<String> = w.into_iter().map(|x| String::from_utf8(x).unwrap()).collect();
        assert_eq!(s, ["Hello", "Ġworld", "'s", "Ġ", "Ġend"]);
    }
}
