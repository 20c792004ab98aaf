//! The KV cache: per layer, K and V rows for every position, in F16 (llama.cpp's default) or F32.

use half::f16;

use crate::kernels::types::{AttnKtFn, AttnKtGatherFn, Kernels};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
}

impl KvType {
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        }
    }
    pub fn from_name(s: &str) -> Option<KvType> {
        match s {
            "f16" => Some(KvType::F16),
            "f32" => Some(KvType::F32),
            _ => None,
        }
    }
    fn elem_size(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// A cache element type. `round_slice` is what happens to an f32 operand that ggml converts to
/// this type before a dot product with the cache (Q before Q·K, softmax(KQ) before ·V).
/// The attention kernels of `Kernels` for this type (key panels, value rows as f32) and
/// `round_slice` (= `round` on every element).
pub trait KvElem: Copy + Send + Sync + 'static {
    /// f32 elements (an encoder's cacheless K/V, an f32 cache): ggml's attention products keep Q
    /// and P in f32, which changes their sum orders (`model::attention::orders`).
    const F32: bool;
    fn from_f32(x: f32) -> Self;
    #[allow(dead_code)] // the kernels read the cache; kept for the reference loop in the tests
    fn to_f32(self) -> f32;
    fn round_slice(k: &Kernels, x: &mut [f32]);
    fn attn_kt(k: &Kernels) -> AttnKtFn<Self>;
    fn attn_kt_gather(k: &Kernels) -> AttnKtGatherFn<Self>;
    /// `v_rows` of the rows `cells[j]·stride..` (`cells.len()` of them), always into `scratch`.
    fn v_rows_gather<'a>(
        k: &Kernels,
        v: &[Self],
        stride: usize,
        n: usize,
        cells: &[usize],
        scratch: &'a mut [f32],
    ) -> (&'a [f32], usize);
    /// `n_rows` value rows of `n` (`stride` apart) as f32 rows: `(rows, their stride)`, converted
    /// into `scratch` unless the cache already holds f32.
    fn v_rows<'a>(
        k: &Kernels,
        v: &'a [Self],
        stride: usize,
        n: usize,
        n_rows: usize,
        scratch: &'a mut [f32],
    ) -> (&'a [f32], usize);
}

impl KvElem for f16 {
    const F32: bool = false;
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn round_slice(k: &Kernels, x: &mut [f32]) {
        (k.attn.round_f16)(x)
    }
    fn attn_kt(k: &Kernels) -> AttnKtFn<Self> {
        k.attn.kt_f16
    }
    fn attn_kt_gather(k: &Kernels) -> AttnKtGatherFn<Self> {
        k.attn.kt_f16_gather
    }
    fn v_rows_gather<'a>(
        k: &Kernels,
        v: &[Self],
        stride: usize,
        n: usize,
        cells: &[usize],
        scratch: &'a mut [f32],
    ) -> (&'a [f32], usize) {
        let len = cells.len() * n;
        (k.attn.vf_f16_gather)(n, v, stride, cells, &mut scratch[..len]);
        (&scratch[..len], n)
    }
    fn v_rows<'a>(
        k: &Kernels,
        v: &'a [Self],
        stride: usize,
        n: usize,
        n_rows: usize,
        scratch: &'a mut [f32],
    ) -> (&'a [f32], usize) {
        (k.attn.vf_f16)(n, v, stride, n_rows, &mut scratch[..n_rows * n]);
        (&scratch[..n_rows * n], n)
    }
}

impl KvElem for f32 {
    const F32: bool = true;
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn round_slice(_: &Kernels, _: &mut [f32]) {}
    fn attn_kt(k: &Kernels) -> AttnKtFn<Self> {
        k.attn.kt_f32
    }
    fn attn_kt_gather(k: &Kernels) -> AttnKtGatherFn<Self> {
        k.attn.kt_f32_gather
    }
    /// The rows copied as they are (an f32 cache needs no conversion, only the gather).
    fn v_rows_gather<'a>(
        _: &Kernels,
        v: &[Self],
        stride: usize,
        n: usize,
        cells: &[usize],
        scratch: &'a mut [f32],
    ) -> (&'a [f32], usize) {
        for (j, &c) in cells.iter().enumerate() {
            scratch[j * n..(j + 1) * n].copy_from_slice(&v[c * stride..c * stride + n]);
        }
        (&scratch[..cells.len() * n], n)
    }
    fn v_rows<'a>(
        _: &Kernels,
        v: &'a [Self],
        stride: usize,
        _n: usize,
        _n_rows: usize,
        _: &'a mut [f32],
    ) -> (&'a [f32], usize) {
        (v, stride)
    }
}

/// Where element d of KV head h at cell c is: `c·pos + h·head + d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    pub pos: usize,
    pub head: usize,
}

impl Strides {
    /// Rows of all heads one after the other per cell ([n_ctx][n_head_kv][head]).
    #[cfg(test)]
    pub const fn positions_major(head: usize, n_head_kv: usize) -> Strides {
        Strides { pos: head * n_head_kv, head }
    }
    /// Each head's cells one after the other ([n_head_kv][n_ctx][head]): the keys (values) of
    /// one head, which attention reads for all its query heads, are one contiguous stream.
    pub const fn heads_major(head: usize, n_ctx: usize) -> Strides {
        Strides { pos: head, head: head * n_ctx }
    }
    /// Index of element 0 of head h at cell c.
    pub const fn at(self, c: usize, h: usize) -> usize {
        c * self.pos + h * self.head
    }
}

/// One layer's cache (empty for a layer without attention).
pub struct LayerKv<T> {
    pub k: Vec<T>, // [n_head_kv][n_ctx][head_k] (`ks`: heads major), or [n_ctx][n_embd_k_gqa]
    pub v: Vec<T>, // [n_head_kv][n_ctx][head_v], or [n_ctx][n_embd_v_gqa]
    pub ks: Strides,
    pub vs: Strides,
}

impl<T> LayerKv<T> {
    /// K and V rows per position, as a batch holds them (the tests' other layout).
    #[cfg(test)]
    pub fn positions_major(k: Vec<T>, v: Vec<T>, n_head_kv: usize, head_k: usize, head_v: usize) -> Self {
        let (ks, vs) = (Strides::positions_major(head_k, n_head_kv), Strides::positions_major(head_v, n_head_kv));
        LayerKv { k, v, ks, vs }
    }
    /// False for a layer that keeps no K/V (a recurrent layer of a hybrid model).
    fn attends(&self) -> bool {
        !(self.k.is_empty() && self.v.is_empty())
    }
}

pub enum KvStore {
    F16(Vec<LayerKv<f16>>),
    F32(Vec<LayerKv<f32>>),
}

pub struct KvCache {
    pub store: KvStore,
    pub n_embd_k: usize,
    pub n_embd_v: usize,
    head_k: usize,
    head_v: usize,
}

impl KvCache {
    /// A cache of n_ctx positions for each layer whose `attends` entry is true (the others, a
    /// hybrid model's recurrent layers, get no storage), heads major.
    pub fn new(
        kv_type: KvType,
        attends: &[bool],
        n_ctx: usize,
        n_embd_k: usize,
        n_embd_v: usize,
        head_k: usize,
        head_v: usize,
    ) -> KvCache {
        fn layers<T: KvElem>(
            attends: &[bool],
            n_ctx: usize,
            nk: usize,
            nv: usize,
            hk: usize,
            hv: usize,
        ) -> Vec<LayerKv<T>> {
            let z = T::from_f32(0.0);
            let n = |a: bool, d: usize| if a { n_ctx * d } else { 0 };
            let (ks, vs) = (Strides::heads_major(hk, n_ctx), Strides::heads_major(hv, n_ctx));
            attends.iter().map(|&a| LayerKv { k: vec![z; n(a, nk)], v: vec![z; n(a, nv)], ks, vs }).collect()
        }
        assert!(
            n_embd_k.is_multiple_of(head_k.max(1)) && n_embd_v.is_multiple_of(head_v.max(1)),
            "kv cache: bad head sizes"
        );
        let (nk, nv, hk, hv) = (n_embd_k, n_embd_v, head_k, head_v);
        let store = match kv_type {
            KvType::F16 => KvStore::F16(layers(attends, n_ctx, nk, nv, hk, hv)),
            KvType::F32 => KvStore::F32(layers(attends, n_ctx, nk, nv, hk, hv)),
        };
        KvCache { store, n_embd_k, n_embd_v, head_k, head_v }
    }

    pub fn kv_type(&self) -> KvType {
        match self.store {
            KvStore::F16(_) => KvType::F16,
            KvStore::F32(_) => KvType::F32,
        }
    }

    /// Writes K and V row `i` of a batch into cell `cells[i]` of layer `il`.
    /// `k`: [cells.len()][n_embd_k], `v`: [cells.len()][n_embd_v].
    pub fn store_rows(&mut self, il: usize, cells: &[usize], k: &[f32], v: &[f32]) {
        fn put<T: KvElem>(dst: &mut [T], st: Strides, head: usize, cells: &[usize], src: &[f32]) {
            let row = src.len() / cells.len().max(1);
            for (&c, s) in cells.iter().zip(src.chunks_exact(row)) {
                for (h, sh) in s.chunks_exact(head).enumerate() {
                    for (d, &x) in dst[st.at(c, h)..st.at(c, h) + head].iter_mut().zip(sh) {
                        *d = T::from_f32(x);
                    }
                }
            }
        }
        let (nk, nv, hk, hv) = (self.n_embd_k, self.n_embd_v, self.head_k, self.head_v);
        let n = cells.len();
        match &mut self.store {
            KvStore::F16(l) => {
                let l = &mut l[il];
                put(&mut l.k, l.ks, hk, cells, &k[..n * nk]);
                put(&mut l.v, l.vs, hv, cells, &v[..n * nv]);
            }
            KvStore::F32(l) => {
                let l = &mut l[il];
                put(&mut l.k, l.ks, hk, cells, &k[..n * nk]);
                put(&mut l.v, l.vs, hv, cells, &v[..n * nv]);
            }
        }
    }

    /// KV heads of K and of V.
    fn n_heads(&self) -> (usize, usize) {
        (self.n_embd_k / self.head_k.max(1), self.n_embd_v / self.head_v.max(1))
    }

    /// Bytes of the rows of `cells` (in that order: a sequence's cells in position order) of
    /// every layer, as little-endian K then V per layer, each cell's heads in order (the layout
    /// does not show in the bytes).
    pub fn save(&self, cells: &[usize], out: &mut Vec<u8>) {
        fn dump<T: KvElem>(
            layers: &[LayerKv<T>],
            cells: &[usize],
            (hk, hv): (usize, usize),
            (nhk, nhv): (usize, usize),
            out: &mut Vec<u8>,
            f: impl Fn(T, &mut Vec<u8>),
        ) {
            let rows = |x: &[T], st: Strides, head: usize, n_head: usize, out: &mut Vec<u8>| {
                for &c in cells {
                    for h in 0..n_head {
                        x[st.at(c, h)..st.at(c, h) + head].iter().for_each(|&e| f(e, out));
                    }
                }
            };
            for l in layers.iter().filter(|l| l.attends()) {
                rows(&l.k, l.ks, hk, nhk, out);
                rows(&l.v, l.vs, hv, nhv, out);
            }
        }
        let (hs, nh) = ((self.head_k, self.head_v), self.n_heads());
        match &self.store {
            KvStore::F16(l) => dump(l, cells, hs, nh, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
            KvStore::F32(l) => dump(l, cells, hs, nh, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
        }
    }

    /// Bytes `save(n)` produces.
    pub fn saved_len(&self, n: usize) -> usize {
        let layers = match &self.store {
            KvStore::F16(l) => l.iter().filter(|l| l.attends()).count(),
            KvStore::F32(l) => l.iter().filter(|l| l.attends()).count(),
        };
        layers * n * (self.n_embd_k + self.n_embd_v) * self.kv_type().elem_size()
    }

    /// Inverse of `save` into `cells`; `data.len()` must equal `saved_len(cells.len())` (checked by
    /// the caller).
    pub fn load(&mut self, cells: &[usize], data: &[u8]) {
        fn fill<T: Copy>(
            layers: &mut [LayerKv<T>],
            cells: &[usize],
            (hk, hv): (usize, usize),
            (nhk, nhv): (usize, usize),
            mut it: impl Iterator<Item = T>,
        ) {
            let mut rows = |x: &mut [T], st: Strides, head: usize, n_head: usize| {
                for &c in cells {
                    for h in 0..n_head {
                        x[st.at(c, h)..st.at(c, h) + head].iter_mut().zip(&mut it).for_each(|(d, s)| *d = s);
                    }
                }
            };
            for l in layers.iter_mut().filter(|l| !(l.k.is_empty() && l.v.is_empty())) {
                rows(&mut l.k, l.ks, hk, nhk);
                rows(&mut l.v, l.vs, hv, nhv);
            }
        }
        let (hs, nh) = ((self.head_k, self.head_v), self.n_heads());
        match &mut self.store {
            KvStore::F16(layers) => {
                fill(layers, cells, hs, nh, data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])))
            }
            KvStore::F32(layers) => {
                fill(layers, cells, hs, nh, data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
        }
    }
}
