//! The orderings llama.cpp's samplers produce, reproduced step for step: libstdc++'s (GCC 12)
//! `std::sort` (introsort) and `std::partial_sort` (heap select + heap sort), and llama.cpp's bucket
//! partial sort built on them. Equal logits are not ordered by id in llama.cpp: where ties land
//! depends on these exact algorithms, and the order decides which token a seeded draw picks, so a
//! "correct" sort is not enough — this must be the same one.

use super::TokenData;

/// llama.cpp's comparator: `a.logit > b.logit` (a strict weak order on non-NaN logits).
#[inline]
fn comp(a: &TokenData, b: &TokenData) -> bool {
    a.logit > b.logit
}

/// `std::__adjust_heap` then `std::__push_heap`: sift the hole at `hole` down to a leaf, then
/// `value` up from there.
fn adjust_heap(v: &mut [TokenData], mut hole: usize, len: usize, value: TokenData) {
    let top = hole;
    let mut child = hole;
    while len > 0 && child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if comp(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len & 1 == 0 && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    // __push_heap
    while hole > top {
        let parent = (hole - 1) / 2;
        if !comp(&v[parent], &value) {
            break;
        }
        v[hole] = v[parent];
        hole = parent;
    }
    v[hole] = value;
}

/// `std::__make_heap` over `v`.
fn make_heap(v: &mut [TokenData]) {
    let len = v.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = v[parent];
        adjust_heap(v, parent, len, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// `std::partial_sort(v.begin(), v.begin() + mid, v.end(), comp)`: afterwards v[..mid] holds the
/// `mid` largest logits in descending order; the rest is in heap-select leftover order.
pub fn partial_sort(v: &mut [TokenData], mid: usize) {
    let mid = mid.min(v.len());
    if mid == 0 {
        return;
    }
    // __heap_select
    make_heap(&mut v[..mid]);
    for i in mid..v.len() {
        if comp(&v[i], &v[0]) {
            // __pop_heap(first, middle, i)
            let value = v[i];
            v[i] = v[0];
            adjust_heap(&mut v[..mid], 0, mid, value);
        }
    }
    sort_heap(&mut v[..mid]);
}

/// `std::__sort_heap`.
fn sort_heap(v: &mut [TokenData]) {
    let mut last = v.len();
    while last > 1 {
        last -= 1;
        let value = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last, value);
    }
}

const THRESHOLD: usize = 16;

/// `std::sort(v.begin(), v.end(), comp)`.
pub fn sort(v: &mut [TokenData]) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize; // 2·⌊log2 n⌋
    introsort_loop(v, 0, n, depth);
    final_insertion_sort(v);
}

fn introsort_loop(v: &mut [TokenData], first: usize, mut last: usize, mut depth: usize) {
    while last - first > THRESHOLD {
        if depth == 0 {
            // std::__partial_sort(first, last, last): heap sort
            let s = &mut v[first..last];
            make_heap(s);
            sort_heap(s);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last);
        introsort_loop(v, cut, last, depth);
        last = cut;
    }
}

fn unguarded_partition_pivot(v: &mut [TokenData], first: usize, last: usize) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1);
    unguarded_partition(v, first + 1, last, first)
}

fn move_median_to_first(v: &mut [TokenData], result: usize, a: usize, b: usize, c: usize) {
    let pick = if comp(&v[a], &v[b]) {
        if comp(&v[b], &v[c]) {
            b
        } else if comp(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if comp(&v[a], &v[c]) {
        a
    } else if comp(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn unguarded_partition(v: &mut [TokenData], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while comp(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while comp(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn final_insertion_sort(v: &mut [TokenData]) {
    let n = v.len();
    if n > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD]);
        for i in THRESHOLD..n {
            unguarded_linear_insert(v, i);
        }
    } else {
        insertion_sort(v);
    }
}

fn insertion_sort(v: &mut [TokenData]) {
    for i in 1..v.len() {
        if comp(&v[i], &v[0]) {
            let val = v[i];
            v.copy_within(0..i, 1);
            v[0] = val;
        } else {
            unguarded_linear_insert(v, i);
        }
    }
}

fn unguarded_linear_insert(v: &mut [TokenData], mut last: usize) {
    let val = v[last];
    while comp(&val, &v[last - 1]) {
        v[last] = v[last - 1];
        last -= 1;
    }
    v[last] = val;
}

/// llama.cpp's `llama_token_data_array_partial_sort`: 128 logit buckets over [-10, 10], the
/// buckets above the one holding the npartial-th element sorted whole with `std::sort`, that one
/// with `std::partial_sort`. Returns the bucketed prefix (≥ npartial entries; the first npartial
/// sorted); `cur` is not modified.
pub fn bucket_partial_sort(cur: &[TokenData], npartial: usize, res: &mut Vec<TokenData>) {
    const NBUCKETS: usize = 128;
    const LOW: f32 = -10.0;
    const HIGH: f32 = 10.0;
    const SCALE: f32 = NBUCKETS as f32 / (HIGH - LOW);
    const INTER: f32 = -LOW * SCALE;
    let mut histo = [0usize; NBUCKETS];
    let bucket_idx: Vec<u8> = cur
        .iter()
        .map(|t| {
            let ib = super::rng::c_int(SCALE * t.logit + INTER); // C's int(), as x86 computes it
            let ib = ib.clamp(0, NBUCKETS as i32 - 1) as usize;
            histo[ib] += 1;
            ib as u8
        })
        .collect();
    let mut nhave = 0;
    let mut ib = NBUCKETS as isize - 1;
    while ib >= 0 {
        nhave += histo[ib as usize];
        if nhave >= npartial {
            break;
        }
        ib -= 1;
    }
    let ib = ib.max(0) as usize;
    res.clear();
    res.resize(nhave, TokenData { id: 0, logit: 0.0, p: 0.0 });
    // Each bucket's start in `res`, highest bucket first.
    let mut start = [0usize; NBUCKETS];
    let mut off = 0;
    for j in (ib..NBUCKETS).rev() {
        start[j] = off;
        off += histo[j];
    }
    for (t, &j) in cur.iter().zip(&bucket_idx) {
        let j = j as usize;
        if j >= ib {
            res[start[j]] = *t;
            start[j] += 1;
        }
    }
    let mut ptr = 0;
    let mut ndone = 0;
    for j in (ib + 1..NBUCKETS).rev() {
        sort(&mut res[ptr..ptr + histo[j]]);
        ptr += histo[j];
        ndone += histo[j];
    }
    partial_sort(&mut res[ptr..ptr + histo[ib]], npartial - ndone);
}

/// `llama_token_data_array_partial_sort_inplace`: keep the npartial largest, sorted.
pub fn partial_sort_inplace(cur: &mut Vec<TokenData>, npartial: usize, tmp: &mut Vec<TokenData>) {
    if npartial <= 128 {
        partial_sort(cur, npartial);
        cur.truncate(npartial);
        return;
    }
    bucket_partial_sort(cur, npartial, tmp);
    cur.clear();
    cur.extend_from_slice(&tmp[..npartial]);
}
