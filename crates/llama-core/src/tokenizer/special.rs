//! Carving special tokens out of raw text before the model tokenizer runs
//! (llama.cpp `tokenizer_st_partition`).
//!
//! For each special token, longest text first, every raw fragment is split at all leftmost
//! non-overlapping occurrences. CONTROL and UNKNOWN tokens take part only with `parse_special`;
//! USER_DEFINED tokens always do (as in HF tokenizers). LSTRIP/RSTRIP attributes eat the
//! adjacent ASCII whitespace (C `isspace`).

use memchr::memmem;

use super::vocab::{attr, Vocab};

/// A piece of the input: raw text [start, start + len) of the original string, or a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text { start: usize, len: usize },
    Token(u32),
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

pub(crate) fn partition(vocab: &Vocab, text: &[u8], parse_special: bool) -> Vec<Fragment> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text { start: 0, len: text.len() });
    let matcher = vocab.special_matcher(parse_special);
    // [n_candidates] whether the token occurs anywhere in the text: a token absent from the
    // whole text is absent from every fragment, so it cannot split anything.
    let present: Vec<bool> = match &matcher.ac {
        Some(ac) => {
            let mut p = vec![false; matcher.ids.len()];
            for m in ac.find_overlapping_iter(text) {
                p[m.pattern().as_usize()] = true;
            }
            p
        }
        None => vec![true; matcher.ids.len()],
    };
    for (k, &id) in matcher.ids.iter().enumerate() {
        if !present[k] {
            continue;
        }
        let a = vocab.attrs[id as usize];
        let tok = &vocab.tokens[id as usize];
        let finder = memmem::Finder::new(tok);
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags.drain(..) {
            let Fragment::Text { start, len } = f else {
                next.push(f);
                continue;
            };
            let (mut off, mut rem) = (start, len);
            loop {
                let Some(pos) = finder.find(&text[off..off + rem]) else {
                    next.push(Fragment::Text { start: off, len: rem });
                    break;
                };
                let m = off + pos;
                let mut left_len = m - off;
                if a & attr::LSTRIP != 0 {
                    while left_len > 0 && is_c_space(text[off + left_len - 1]) {
                        left_len -= 1;
                    }
                }
                if left_len > 0 {
                    next.push(Fragment::Text { start: off, len: left_len });
                }
                next.push(Fragment::Token(id));
                let mut r_off = m + tok.len();
                let mut r_len = off + rem - r_off;
                if a & attr::RSTRIP != 0 {
                    while r_len > 0 && is_c_space(text[r_off]) {
                        r_off += 1;
                        r_len -= 1;
                    }
                }
                if r_len == 0 {
                    break;
                }
                off = r_off;
                rem = r_len;
            }
        }
        frags = next;
    }
    frags
}
