//! Token texts stored in one buffer with an open-addressing index, so that a 262k-token
//! vocabulary builds with two allocations instead of half a million small ones.

use std::hash::{BuildHasherDefault, Hasher};

use crate::{Error, Result};

/// Multiply-rotate hash over 8-byte words (FxHash style); collisions only cost probes.
pub(crate) fn hash_bytes(seed: u64, b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seed ^ (b.len() as u64).wrapping_mul(K);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8-byte chunk"))).wrapping_mul(K);
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        let mut w = [0u8; 8];
        w[..r.len()].copy_from_slice(r);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

/// `Hasher` over `hash_bytes` for the std `HashMap`s of the tokenizer (merge ranks).
#[derive(Default)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

#[derive(Clone, Debug, Default)]
pub(crate) struct TokenTexts {
    /// All token texts back to back.
    bytes: Vec<u8>,
    /// [n + 1]: token i is bytes[offsets[i]..offsets[i + 1]].
    offsets: Vec<u32>,
    /// [power of two ≥ 2n]: id + 1 of the token stored in the slot, 0 = empty (linear probing).
    table: Vec<u32>,
}

impl TokenTexts {
    pub(crate) fn with_capacity(n: usize, n_bytes: usize) -> TokenTexts {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        TokenTexts { bytes: Vec::with_capacity(n_bytes), offsets, table: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(text);
        let end = u32::try_from(self.bytes.len())
            .map_err(|_| Error::Tokenizer("token texts exceed 4 GiB in total".into()))?;
        self.offsets.push(end);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(crate) fn get(&self, id: usize) -> Option<&[u8]> {
        if id < self.len() {
            Some(&self.bytes[self.offsets[id] as usize..self.offsets[id + 1] as usize])
        } else {
            None
        }
    }

    fn slot(&self, h: u64) -> usize {
        // murmur3 fmix64 finaliser: the multiply-rotate hash alone clusters badly on token sets
        // such as `<unused0>`…`<unused6241>`.
        let mut h = h;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        let bits = self.table.len().trailing_zeros();
        (h >> (64 - bits)) as usize
    }

    /// Build the lookup index; with duplicate texts the later id wins (llama.cpp's map insert).
    pub(crate) fn build_index(&mut self) {
        let n = self.len();
        let size = (2 * n).next_power_of_two().max(2);
        self.table = vec![0; size];
        let mask = size - 1;
        for id in 0..n {
            let t = self.get(id).expect("id < len");
            let mut s = self.slot(hash_bytes(0, t));
            loop {
                let e = self.table[s];
                if e == 0 {
                    self.table[s] = id as u32 + 1;
                    break;
                }
                if self.get(e as usize - 1) == Some(t) {
                    self.table[s] = id as u32 + 1;
                    break;
                }
                s = (s + 1) & mask;
            }
        }
    }

    pub(crate) fn find(&self, text: &[u8]) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut s = self.slot(hash_bytes(0, text));
        loop {
            let e = self.table[s];
            if e == 0 {
                return None;
            }
            if self.get(e as usize - 1) == Some(text) {
                return Some(e - 1);
            }
            s = (s + 1) & mask;
        }
    }
}

impl std::ops::Index<usize> for TokenTexts {
    type Output = [u8];
    fn index(&self, id: usize) -> &[u8] {
        self.get(id).expect("token id in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_duplicates() {
        let mut t = TokenTexts::with_capacity(4, 16);
        for s in [&b"a"[..], b"bc", b"a", b"longer than eight bytes"] {
            t.push(s).unwrap();
        }
        t.build_index();
        assert_eq!(t.find(b"a"), Some(2));
        assert_eq!(t.find(b"bc"), Some(1));
        assert_eq!(t.find(b"longer than eight bytes"), Some(3));
        assert_eq!(t.find(b"b"), None);
        assert_eq!(t.find(b""), None);
        assert_eq!(&t[1], b"bc");
    }
}
