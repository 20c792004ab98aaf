//! Byte-level BPE (llama.cpp `llm_tokenizer_bpe`): each pre-tokenized word starts as its
//! characters; the adjacent pair with the lowest merge rank (ties: leftmost) is merged until no
//! ranked pair is left; final symbols that are not tokens fall back to single-byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::pretokenize::split_words;
use super::spm::utf8_len;
use super::vocab::{write_merge_key, Vocab};

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
    rank: u32,
    /// Start and length of the pair's bytes when queued; stale if the symbols changed since.
    start: usize,
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
    /// Max-heap order: lowest rank first, then leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        o.rank.cmp(&self.rank).then(o.left.cmp(&self.left))
    }
}

/// Tokenize one raw-text fragment, appending ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &[u8], out: &mut Vec<u32>) {
    let mut key = Vec::new();
    for word in split_words(vocab.pre, text) {
        tokenize_word(vocab, &word, &mut key, out);
    }
}

fn tokenize_word(vocab: &Vocab, word: &[u8], key: &mut Vec<u8>, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if vocab.ignore_merges {
        if let Some(id) = vocab.text_to_token(word) {
            out.push(id);
            return;
        }
    }
    // [n_symbols] characters of the (byte-level encoded) word.
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    let mut offs = 0;
    while offs < word.len() {
        let n = utf8_len(word[offs]).min(word.len() - offs);
        let idx = symbols.len() as i64;
        symbols.push(Symbol { start: offs, n, prev: idx - 1, next: if offs + n == word.len() { -1 } else { idx + 1 } });
        offs += n;
    }

    let mut heap: BinaryHeap<Bigram> = BinaryHeap::new();
    let mut try_add = |symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, left: i64, right: i64| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        write_merge_key(key, &word[l.start..l.start + l.n], &word[r.start..r.start + r.n]);
        if let Some(rank) = vocab.bpe_rank(key) {
            heap.push(Bigram { left: left as usize, right: right as usize, rank, start: l.start, size: l.n + r.n });
        }
    };
    for i in 1..symbols.len() as i64 {
        try_add(&symbols, &mut heap, i - 1, i);
    }

    while let Some(b) = heap.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // llama.cpp compares the pair's text; symbols only grow rightwards from a fixed start,
        // so equal start and total length means the same text.
        if l.n == 0 || r.n == 0 || l.start != b.start || l.n + r.n != b.size || l.next != b.right as i64 {
            continue;
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

    let mut i = 0i64;
    while i >= 0 {
        let s = symbols[i as usize];
        let piece = &word[s.start..s.start + s.n];
        match vocab.text_to_token(piece) {
            Some(id) => out.push(id),
            None => {
                // Fallback exactly as llama.cpp: each single byte that happens to be a token.
                for &byte in piece {
                    if let Some(id) = vocab.text_to_token(&[byte]) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
