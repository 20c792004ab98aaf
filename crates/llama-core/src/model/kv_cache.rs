//! The KV cache: per layer, K and V rows for every position, in F16 (llama.cpp's default) or F32.

use half::f16;

use crate::kernels::types::{AttnKtFn, Kernels};

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
    fn from_f32(x: f32) -> Self;
    #[allow(dead_code)] // the kernels read the cache; kept for the reference loop in the tests
    fn to_f32(self) -> f32;
    fn round_slice(k: &Kernels, x: &mut [f32]);
    fn attn_kt(k: &Kernels) -> AttnKtFn<Self>;
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

/// One layer's cache, positions major (empty for a layer without attention).
pub struct LayerKv<T> {
    pub k: Vec<T>, // [n_ctx][n_embd_k_gqa]
    pub v: Vec<T>, // [n_ctx][n_embd_v_gqa]
}

impl<T> LayerKv<T> {
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
}

impl KvCache {
    /// A cache of n_ctx positions for each layer whose `attends` entry is true (the others, a
    /// hybrid model's recurrent layers, get no storage).
    pub fn new(kv_type: KvType, attends: &[bool], n_ctx: usize, n_embd_k: usize, n_embd_v: usize) -> KvCache {
        fn layers<T: KvElem>(attends: &[bool], n_ctx: usize, nk: usize, nv: usize) -> Vec<LayerKv<T>> {
            let z = T::from_f32(0.0);
            let n = |a: bool, d: usize| if a { n_ctx * d } else { 0 };
            attends.iter().map(|&a| LayerKv { k: vec![z; n(a, nk)], v: vec![z; n(a, nv)] }).collect()
        }
        let store = match kv_type {
            KvType::F16 => KvStore::F16(layers(attends, n_ctx, n_embd_k, n_embd_v)),
            KvType::F32 => KvStore::F32(layers(attends, n_ctx, n_embd_k, n_embd_v)),
        };
        KvCache { store, n_embd_k, n_embd_v }
    }

    pub fn kv_type(&self) -> KvType {
        match self.store {
            KvStore::F16(_) => KvType::F16,
            KvStore::F32(_) => KvType::F32,
        }
    }

    /// Writes the K and V rows of `n` consecutive positions starting at `pos0` into layer `il`.
    /// `k`: [n][n_embd_k], `v`: [n][n_embd_v].
    pub fn store(&mut self, il: usize, pos0: usize, k: &[f32], v: &[f32]) {
        fn put<T: KvElem>(l: &mut LayerKv<T>, pos0: usize, nk: usize, nv: usize, k: &[f32], v: &[f32]) {
            for (d, &s) in l.k[pos0 * nk..pos0 * nk + k.len()].iter_mut().zip(k) {
                *d = T::from_f32(s);
            }
            for (d, &s) in l.v[pos0 * nv..pos0 * nv + v.len()].iter_mut().zip(v) {
                *d = T::from_f32(s);
            }
        }
        let (nk, nv) = (self.n_embd_k, self.n_embd_v);
        match &mut self.store {
            KvStore::F16(l) => put(&mut l[il], pos0, nk, nv, k, v),
            KvStore::F32(l) => put(&mut l[il], pos0, nk, nv, k, v),
        }
    }

    /// Bytes of the first `n` positions of every layer, as little-endian K then V per layer.
    pub fn save(&self, n: usize, out: &mut Vec<u8>) {
        fn dump<T: KvElem>(
            layers: &[LayerKv<T>],
            n: usize,
            nk: usize,
            nv: usize,
            out: &mut Vec<u8>,
            f: impl Fn(T, &mut Vec<u8>),
        ) {
            for l in layers.iter().filter(|l| l.attends()) {
                l.k[..n * nk].iter().for_each(|&x| f(x, out));
                l.v[..n * nv].iter().for_each(|&x| f(x, out));
            }
        }
        let (nk, nv) = (self.n_embd_k, self.n_embd_v);
        match &self.store {
            KvStore::F16(l) => dump(l, n, nk, nv, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
            KvStore::F32(l) => dump(l, n, nk, nv, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
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

    /// Inverse of `save`; `data.len()` must equal `saved_len(n)` (checked by the caller).
    pub fn load(&mut self, n: usize, data: &[u8]) {
        let (nk, nv) = (self.n_embd_k, self.n_embd_v);
        match &mut self.store {
            KvStore::F16(layers) => {
                let mut it = data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]));
                for l in layers.iter_mut().filter(|l| l.attends()) {
                    l.k[..n * nk].iter_mut().zip(&mut it).for_each(|(d, s)| *d = s);
                    l.v[..n * nv].iter_mut().zip(&mut it).for_each(|(d, s)| *d = s);
                }
            }
            KvStore::F32(layers) => {
                let mut it = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                for l in layers.iter_mut().filter(|l| l.attends()) {
                    l.k[..n * nk].iter_mut().zip(&mut it).for_each(|(d, s)| *d = s);
                    l.v[..n * nv].iter_mut().zip(&mut it).for_each(|(d, s)| *d = s);
                }
            }
        }
    }
}
