//! The two libstdc++ behaviours that llama.cpp's vocabulary loading depends on, replayed so that
//! we decide as llama.cpp's Linux builds (GCC / libstdc++) do.
//!
//! 1. The iteration order of `token_to_id`, a `std::unordered_map<std::string, llama_token>` filled
//!    with `token_to_id[text] = id` in id order. llama.cpp's text-based special-token detection
//!    walks that map and keeps the *first* token of each list it meets (EOT, FIM prefix, …). When a
//!    vocabulary holds two texts of one list (Llama 3: `<|eot_id|>` and `<|end_of_text|>`;
//!    SmolLM2: `<|im_end|>` and `<|endoftext|>`), which one becomes the EOT or FIM id — and, for the
//!    FIM lists, which one is forced to CONTROL and ends generation — is decided by the hash
//!    table's layout, fixed by libstdc++'s code: `std::_Hash_bytes` (seed 0xc70f6907), buckets =
//!    hash modulo the bucket count, the prime bucket counts of `_Prime_rehash_policy`, new nodes at
//!    the front of their bucket (or of the whole list when the bucket is empty), and rehashing that
//!    walks the list and relinks each node the same way.
//! 2. `std::sort` (introsort: median-of-three quicksort down to 16 elements, heapsort past the
//!    depth limit, then insertion sort), which orders the special-token list by length: it is not
//!    stable, and the order among equal-length special tokens decides which one is carved out of a
//!    text first when two of them overlap.

use super::texts::TokenTexts;

/// libstdc++'s `std::hash<std::string>`: `std::_Hash_bytes(data, len, 0xc70f6907)` (64-bit
/// MurmurHash2 variant, little-endian loads).
pub(crate) fn std_hash(b: &[u8]) -> u64 {
    const MUL: u64 = (0xc6a4_a793u64 << 32) + 0x5bd1_e995;
    let shift_mix = |v: u64| v ^ (v >> 47);
    let mut hash = 0xc70f_6907u64 ^ (b.len() as u64).wrapping_mul(MUL);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let data =
            shift_mix(u64::from_le_bytes(c.try_into().expect("8-byte chunk")).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    let r = chunks.remainder();
    if !r.is_empty() {
        // load_bytes: the tail as a little-endian integer.
        let data = r.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

/// Bucket counts of a default-constructed libstdc++ unordered_map (max_load_factor 1) growing one
/// insertion at a time: (element count whose insertion rehashes, new bucket count). Printed by
/// `_Prime_rehash_policy::_M_need_rehash` of the libstdc++ llama-cpp-python links (GCC 12).
const GROWTH: &[(u64, u64)] = &[
    (1, 13),
    (14, 29),
    (30, 59),
    (60, 127),
    (128, 257),
    (258, 541),
    (542, 1109),
    (1110, 2357),
    (2358, 5087),
    (5088, 10273),
    (10274, 20753),
    (20754, 42043),
    (42044, 85229),
    (85230, 172933),
    (172934, 351061),
    (351062, 712697),
    (712698, 1447153),
    (1447154, 2938679),
    (2938680, 5967347),
    (5967348, 12117689),
    (12117690, 24607243),
    (24607244, 49969847),
    (49969848, 101473717),
    (101473718, 206062531),
    (206062532, 418451333),
    (418451334, 849749479),
    (849749480, 1725587117),
    (1725587118, 3504151727),
];

const NIL: u32 = u32::MAX;
/// `_M_before_begin`, the list head, as a bucket's "node before".
const BEFORE_BEGIN: u32 = u32::MAX - 1;

/// The singly linked node list and bucket table of the replayed `_Hashtable`.
struct Table {
    /// [n_nodes] next node, NIL at the end.
    next: Vec<u32>,
    /// [n_nodes] cached hash code of each node.
    hash: Vec<u64>,
    /// [n_buckets] node before the bucket's first node (BEFORE_BEGIN or a node), NIL = empty.
    buckets: Vec<u32>,
    head: u32,
}

impl Table {
    fn next_of(&self, node: u32) -> u32 {
        if node == BEFORE_BEGIN {
            self.head
        } else {
            self.next[node as usize]
        }
    }

    fn set_next(&mut self, node: u32, to: u32) {
        if node == BEFORE_BEGIN {
            self.head = to;
        } else {
            self.next[node as usize] = to;
        }
    }

    fn bucket(&self, node: u32) -> usize {
        (self.hash[node as usize] % self.buckets.len() as u64) as usize
    }

    /// `_M_insert_bucket_begin`.
    fn insert(&mut self, x: u32) {
        let bkt = self.bucket(x);
        let before = self.buckets[bkt];
        if before != NIL {
            self.next[x as usize] = self.next_of(before);
            self.set_next(before, x);
        } else {
            self.next[x as usize] = self.head;
            self.head = x;
            let nx = self.next[x as usize];
            if nx != NIL {
                let b = self.bucket(nx);
                self.buckets[b] = x;
            }
            self.buckets[bkt] = BEFORE_BEGIN;
        }
    }

    /// `_M_rehash_aux` for unique keys.
    fn rehash(&mut self, n_buckets: usize) {
        self.buckets = vec![NIL; n_buckets];
        let mut p = self.head;
        self.head = NIL;
        let mut bbegin_bkt = 0usize;
        while p != NIL {
            let nx = self.next[p as usize];
            let bkt = self.bucket(p);
            let before = self.buckets[bkt];
            if before == NIL {
                self.next[p as usize] = self.head;
                self.head = p;
                self.buckets[bkt] = BEFORE_BEGIN;
                if self.next[p as usize] != NIL {
                    self.buckets[bbegin_bkt] = p;
                }
                bbegin_bkt = bkt;
            } else {
                self.next[p as usize] = self.next_of(before);
                self.set_next(before, p);
            }
            p = nx;
        }
    }
}

/// Token ids in the iteration order of llama.cpp's `token_to_id` (one per distinct text; with
/// duplicate texts, which llama.cpp refuses to load, the node carries the last id, as
/// `token_to_id[text] = id` leaves it). `texts` must be indexed.
pub(crate) fn iteration_order(texts: &TokenTexts) -> Vec<u32> {
    let n = texts.len();
    // [n] node of the i-th distinct text → the id it maps to.
    let mut node_id: Vec<u32> = Vec::with_capacity(n);
    let mut t = Table { next: Vec::with_capacity(n), hash: Vec::with_capacity(n), buckets: vec![NIL; 1], head: NIL };
    // [n] whether the text whose last id is i already has a node.
    let mut seen = vec![false; n];
    let mut growth = GROWTH.iter().peekable();
    for id in 0..n {
        let text = &texts[id];
        let last = texts.find(text).unwrap_or(id as u32) as usize;
        if std::mem::replace(&mut seen[last], true) {
            continue;
        }
        let count = node_id.len() as u64 + 1;
        if let Some(&&(at, n_buckets)) = growth.peek() {
            if count == at {
                growth.next();
                t.rehash(n_buckets as usize);
            }
        }
        let x = node_id.len() as u32;
        node_id.push(last as u32);
        t.next.push(NIL);
        t.hash.push(std_hash(text));
        t.insert(x);
    }
    let mut order = Vec::with_capacity(node_id.len());
    let mut p = t.head;
    while p != NIL {
        order.push(node_id[p as usize]);
        p = t.next[p as usize];
    }
    order
}

/// libstdc++'s `std::sort(v.begin(), v.end(), less)`, element moves included, so that equal
/// elements end in the same order.
pub(crate) fn sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if v.len() > 1 {
        let depth_limit = 2 * (usize::BITS - 1 - v.len().leading_zeros()) as usize;
        introsort_loop(v, depth_limit, less);
        final_insertion_sort(v, less);
    }
}

/// `_S_threshold`: introsort leaves ranges this short to the final insertion sort.
const THRESHOLD: usize = 16;

fn introsort_loop<T: Copy>(v: &mut [T], mut depth_limit: usize, less: &impl Fn(&T, &T) -> bool) {
    let mut last = v.len();
    while last > THRESHOLD {
        if depth_limit == 0 {
            heap_sort(&mut v[..last], less); // std::__partial_sort(first, last, last)
            return;
        }
        depth_limit -= 1;
        let cut = partition_pivot(&mut v[..last], less);
        introsort_loop(&mut v[cut..last], depth_limit, less);
        last = cut;
    }
}

/// `__unguarded_partition_pivot`: median of (v[1], v[mid], v[last - 1]) moved to v[0], then an
/// unguarded Hoare partition of v[1..] around it; returns the cut.
fn partition_pivot<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) -> usize {
    let n = v.len();
    let (a, b, c) = (1, n / 2, n - 1);
    // __move_median_to_first(result = 0, a, b, c)
    let m = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(0, m);
    // __unguarded_partition(first + 1, last, pivot = first)
    let (mut first, mut last) = (1, n);
    loop {
        while less(&v[first], &v[0]) {
            first += 1;
        }
        last -= 1;
        while less(&v[0], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn final_insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if v.len() > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD], less);
        for i in THRESHOLD..v.len() {
            unguarded_linear_insert(v, i, less);
        }
    } else {
        insertion_sort(v, less);
    }
}

fn insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        if less(&v[i], &v[0]) {
            let val = v[i];
            v.copy_within(0..i, 1);
            v[0] = val;
        } else {
            unguarded_linear_insert(v, i, less);
        }
    }
}

fn unguarded_linear_insert<T: Copy>(v: &mut [T], mut last: usize, less: &impl Fn(&T, &T) -> bool) {
    let val = v[last];
    while less(&val, &v[last - 1]) {
        v[last] = v[last - 1];
        last -= 1;
    }
    v[last] = val;
}

/// `std::__partial_sort(first, last, last)`: `make_heap` then `sort_heap`.
fn heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let value = v[parent];
            adjust_heap(v, parent, len, value, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        // __pop_heap(first, last, result = last)
        let value = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last, value, less);
    }
}

fn adjust_heap<T: Copy>(v: &mut [T], mut hole: usize, len: usize, value: T, less: &impl Fn(&T, &T) -> bool) {
    let top = hole;
    let mut second = hole;
    while second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if less(&v[second], &v[second - 1]) {
            second -= 1;
        }
        v[hole] = v[second];
        hole = second;
    }
    if len & 1 == 0 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        v[hole] = v[second - 1];
        hole = second - 1;
    }
    // __push_heap(first, hole, top, value)
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && less(&v[parent], &value) {
        v[hole] = v[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by `std::hash<std::string>{}(s)` with g++ 12 / libstdc++ on x86-64.
    #[test]
    fn hash_matches_libstdcxx() {
        assert_eq!(std_hash(b""), 6142509188972423790);
        assert_eq!(std_hash(b"a"), 4993892634952068459);
        assert_eq!(std_hash(b"ab"), 5498234120169091963);
        assert_eq!(std_hash(b"abcdefgh"), 8664279048047335611);
        assert_eq!(std_hash(b"abcdefghi"), 13036955925923793583);
        assert_eq!(std_hash(b"<|im_end|>"), 2038672007907099973);
        assert_eq!(std_hash(b"<|endoftext|>"), 3113324847494305268);
        assert_eq!(std_hash("\u{2581}<PRE>".as_bytes()), 19297942182329791);
    }

    /// Iteration order of `std::unordered_map<std::string, int>` after `m[std::to_string(i)] = i`
    /// for i in 0..40, printed by g++ 12 / libstdc++ (crosses the 13 → 29 → 59 rehashes).
    #[test]
    fn order_matches_libstdcxx() {
        let mut texts = TokenTexts::with_capacity(40, 80);
        for i in 0..40 {
            texts.push(i.to_string().as_bytes()).unwrap();
        }
        texts.build_index();
        assert_eq!(iteration_order(&texts), LIBSTDCXX_ORDER_0_40);
    }

    fn key(i: u32, m: u64) -> u64 {
        (i as u64 * 2654435761) % m
    }

    fn fnv(v: &[u32]) -> u64 {
        v.iter().fold(1469598103934665603u64, |h, &x| (h ^ x as u64).wrapping_mul(1099511628211))
    }

    /// `std::sort` and `std::partial_sort(first, last, last)` (our heap path) of 0..n by
    /// `key(a) > key(b)` (many ties): FNV-1a of the orders printed by g++ 12 / libstdc++.
    #[test]
    fn sort_matches_libstdcxx() {
        const REF: &[(u32, u64, u64, u64)] = &[
            (2, 3, 11125488673309971922, 11125488673309971922),
            (15, 3, 10551585628980209310, 5344856321437539766),
            (15, 13, 642725564855027600, 642725564855027600),
            (16, 3, 5592428196188342371, 4696206652569498199),
            (16, 13, 10687229660593050925, 4909942995677891667),
            (17, 3, 17475349408458592835, 7655106901923258387),
            (17, 13, 17219495531194405729, 12877364621062889873),
            (40, 3, 2241409584358263385, 7217254872606773633),
            (40, 13, 15852370556990791661, 4144037737202090997),
            (100, 3, 9182022490254257457, 7633703270410311623),
            (100, 13, 13609599035675931311, 2235674423424196923),
            (1000, 3, 9169317230348478457, 5373903255606988333),
            (1000, 13, 6031107471495737577, 2874122211009704215),
            (6243, 3, 7628168024054654564, 12229158975204581786),
            (6243, 13, 1251936208828991484, 15878255193213559806),
            (20000, 3, 9670873517404247175, 12942881892807757935),
            (20000, 13, 6311514227342639005, 5121249631902901311),
        ];
        for &(n, m, want_sort, want_heap) in REF {
            let less = |a: &u32, b: &u32| key(*a, m) > key(*b, m);
            let mut v: Vec<u32> = (0..n).collect();
            sort(&mut v, &less);
            assert_eq!(fnv(&v), want_sort, "std::sort n={n} m={m}");
            let mut w: Vec<u32> = (0..n).collect();
            heap_sort(&mut w, &less);
            assert_eq!(fnv(&w), want_heap, "std::partial_sort n={n} m={m}");
        }
        let mut v: Vec<u32> = (0..20).collect();
        sort(&mut v, &|a: &u32, b: &u32| key(*a, 3) > key(*b, 3));
        assert_eq!(v, [2, 17, 5, 14, 8, 11, 10, 19, 16, 13, 7, 4, 1, 0, 9, 12, 6, 15, 3, 18]);
    }

    const LIBSTDCXX_ORDER_0_40: &[u32] = &[
        38, 37, 33, 31, 29, 12, 39, 11, 18, 9, 36, 1, 22, 8, 0, 17, 28, 19, 4, 5, 30, 6, 3, 16, 7, 10, 35, 27, 13, 15,
        34, 14, 32, 26, 20, 21, 23, 24, 2, 25,
    ];
}
