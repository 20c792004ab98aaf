//! SentencePiece-style merging (llama.cpp `llm_tokenizer_spm`): start from UTF-8 characters,
//! repeatedly merge the adjacent pair whose concatenation is the highest-scoring token
//! (ties: leftmost), then emit each final symbol as its token or as `<0xNN>` byte tokens.
//! A binary heap with lazy invalidation keeps this O(n log n) in the text length.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;

/// One symbol of the doubly linked list over the text: bytes [start, start + n).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    n: usize,
    prev: i64,
    next: i64,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the pair when it was queued: a later mismatch means it is stale.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then smaller `left` (llama.cpp compares with `<`, so
    /// -0.0 == 0.0 and NaN compares equal to everything, which we mirror).
    fn cmp(&self, o: &Self) -> Ordering {
        if self.score < o.score {
            Ordering::Less
        } else if self.score > o.score {
            Ordering::Greater
        } else {
            o.left.cmp(&self.left)
        }
    }
}

/// Length of the UTF-8 sequence announced by a lead byte, llama.cpp style: continuation and
/// invalid bytes count as 1, 0xF8.. as 4.
pub(crate) fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[(b >> 4) as usize]
}

/// Tokenize one already space-escaped fragment, appending ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &[u8], out: &mut Vec<u32>) {
    if text.is_empty() {
        return;
    }
    // [n_symbols] initial symbols = UTF-8 characters (truncated at the end of text).
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut offs = 0;
    while offs < text.len() {
        let n = utf8_len(text[offs]).min(text.len() - offs);
        let idx = symbols.len() as i64;
        symbols.push(Symbol { start: offs, n, prev: idx - 1, next: if offs + n == text.len() { -1 } else { idx + 1 } });
        offs += n;
    }

    let mut heap: BinaryHeap<Bigram> = BinaryHeap::with_capacity(symbols.len());
    let try_add = |symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, left: i64, right: i64| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let size = l.n + r.n;
        if size > vocab.max_token_len {
            return;
        }
        if let Some(id) = vocab.text_to_token(&text[l.start..l.start + size]) {
            heap.push(Bigram { left: left as usize, right: right as usize, score: vocab.scores[id as usize], size });
        }
    };
    for i in 1..symbols.len() as i64 {
        try_add(&symbols, &mut heap, i - 1, i);
    }

    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.n == 0 || r.n == 0 || l.n + r.n != b.size {
            continue; // one side was merged away since this pair was queued
        }
        symbols[b.left].n += r.n;
        symbols[b.right].n = 0;
        symbols[b.left].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left as i64;
        }
        let (prev, next) = (symbols[b.left].prev, symbols[b.left].next);
        try_add(&symbols, &mut heap, prev, b.left as i64);
        try_add(&symbols, &mut heap, b.left as i64, next);
    }

    // Every merged symbol is a token by construction; only unmerged characters can be unknown.
    let mut i = 0i64;
    while i >= 0 {
        let s = symbols[i as usize];
        let piece = &text[s.start..s.start + s.n];
        match vocab.text_to_token(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece {
                    out.push(byte_to_token(vocab, byte));
                }
            }
        }
        i = s.next;
    }
}

/// `<0xNN>` token of a byte, else the byte itself as a one-byte token. llama.cpp throws when
/// neither exists; we fall back to the unknown token (or 0) so tokenization never fails.
pub(crate) fn byte_to_token(vocab: &Vocab, byte: u8) -> u32 {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let name = [b'<', b'0', b'x', HEX[(byte >> 4) as usize], HEX[(byte & 15) as usize], b'>'];
    vocab.text_to_token(&name).or_else(|| vocab.text_to_token(&[byte])).or(vocab.unk).unwrap_or(0)
}

/// Replace every ' ' by U+2581 (▁), SentencePiece's visible space.
pub(crate) fn escape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if b == b' ' {
            out.extend_from_slice("\u{2581}".as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Replace every U+2581 by ' '.
pub(crate) fn unescape_whitespace(text: &[u8]) -> Vec<u8> {
    let pat = "\u{2581}".as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(pat) {
            out.push(b' ');
            i += pat.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}
