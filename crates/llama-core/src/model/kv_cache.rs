//! The KV cache: per layer, K and V rows for every position, in F16 (llama.cpp's default), F32, or
//! a quantized type of llama.cpp's `--cache-type-k/v` (rows of blocks, read by flash attention).

use half::f16;

use crate::kernels::kernels;
use crate::kernels::types::{AttnKtFn, AttnKtGatherFn, Kernels};
use crate::quant::GgmlType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
    /// The quantized types of llama.cpp's `--cache-type-k/v` (flash attention only, as there:
    /// a quantized V needs it, and a quantized K takes the same path here).
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
}

impl KvType {
    pub const ALL: [KvType; 7] =
        [KvType::F16, KvType::F32, KvType::Q8_0, KvType::Q4_0, KvType::Q4_1, KvType::Q5_0, KvType::Q5_1];
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
            KvType::Q4_1 => "q4_1",
            KvType::Q5_0 => "q5_0",
            KvType::Q5_1 => "q5_1",
        }
    }
    pub fn from_name(s: &str) -> Option<KvType> {
        KvType::ALL.into_iter().find(|t| t.name() == s.to_ascii_lowercase())
    }
    /// The ggml type of the cache's elements.
    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::F32 => GgmlType::F32,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q4_0 => GgmlType::Q4_0,
            KvType::Q4_1 => GgmlType::Q4_1,
            KvType::Q5_0 => GgmlType::Q5_0,
            KvType::Q5_1 => GgmlType::Q5_1,
        }
    }
    pub fn is_quantized(self) -> bool {
        !matches!(self, KvType::F16 | KvType::F32)
    }
    /// Bytes of a row of `n` elements (n a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        let (bs, ts) = self.ggml().block_layout();
        n / bs * ts
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
    /// `from_f32` of every element of `src` into `dst` (same length).
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(x);
        }
    }
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
    /// Eight at a time with F16C where the CPU has it (the same round-to-nearest-even as
    /// `from_f32`, one element at a time, and as ggml's conversion): a token's K/V store.
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src)
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

    /// Byte ranges (address, length) of head h's keys and values in cells c0..c0+n (heads major:
    /// one contiguous run each), clipped to the layer's storage.
    fn head_ranges(&self, h: usize, c0: usize, n: usize) -> [(usize, usize); 2] {
        let range = |buf: &[T], s: Strides| {
            let start = s.at(c0, h).min(buf.len());
            let end = (start + n * s.pos).min(buf.len());
            (buf[start..].as_ptr() as usize, (end - start) * std::mem::size_of::<T>())
        };
        [range(&self.k, self.ks), range(&self.v, self.vs)]
    }
}

pub enum KvStore {
    F16(Vec<LayerKv<f16>>),
    F32(Vec<LayerKv<f32>>),
    /// Rows of K's and V's ggml types as bytes (strides in bytes): a quantized cache.
    Raw {
        layers: Vec<LayerKv<u8>>,
        k: KvType,
        v: KvType,
    },
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
    /// hybrid model's recurrent layers, get no storage), heads major. K and V of types `tk`, `tv`:
    /// both f16 or both f32 as element vectors, any other pair as rows of bytes (a quantized
    /// type's head size must be a multiple of its block; the caller checks).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tk: KvType,
        tv: KvType,
        attends: &[bool],
        n_ctx: usize,
        n_embd_k: usize,
        n_embd_v: usize,
        head_k: usize,
        head_v: usize,
    ) -> KvCache {
        /// Each layer's K and V, `dk`/`dv` elements per head row (bytes, for a raw cache).
        fn layers<T: Copy>(
            attends: &[bool],
            n_ctx: usize,
            n_heads: (usize, usize),
            dk: usize,
            dv: usize,
            z: T,
        ) -> Vec<LayerKv<T>> {
            let n = |a: bool, d: usize| if a { n_ctx * d } else { 0 };
            let (ks, vs) = (Strides::heads_major(dk, n_ctx), Strides::heads_major(dv, n_ctx));
            attends
                .iter()
                .map(|&a| LayerKv { k: vec![z; n(a, n_heads.0 * dk)], v: vec![z; n(a, n_heads.1 * dv)], ks, vs })
                .collect()
        }
        assert!(
            n_embd_k.is_multiple_of(head_k.max(1)) && n_embd_v.is_multiple_of(head_v.max(1)),
            "kv cache: bad head sizes"
        );
        let nh = (n_embd_k / head_k.max(1), n_embd_v / head_v.max(1));
        let store = match (tk, tv) {
            (KvType::F16, KvType::F16) => KvStore::F16(layers(attends, n_ctx, nh, head_k, head_v, f16::ZERO)),
            (KvType::F32, KvType::F32) => KvStore::F32(layers(attends, n_ctx, nh, head_k, head_v, 0f32)),
            (k, v) => {
                let (rk, rv) = (k.row_bytes(head_k), v.row_bytes(head_v));
                KvStore::Raw { layers: layers(attends, n_ctx, nh, rk, rv, 0u8), k, v }
            }
        };
        KvCache { store, n_embd_k, n_embd_v, head_k, head_v }
    }

    /// The Walsh-Hadamard rotation sizes llama.cpp applies for this cache (`llama_kv_cache`'s
    /// `attn_rot_k`/`attn_rot_v`): for a quantized K with a head a multiple of 64, Q and K rows of
    /// the largest power of 2 dividing the head; for a quantized V with such a head, V and output
    /// rows of 64.
    pub fn rotations(&self, head_k: usize, head_v: usize) -> (Option<usize>, Option<usize>) {
        let (k, v) = self.types();
        let rk = (k.is_quantized() && head_k.is_multiple_of(64)).then(|| {
            let mut n = 64;
            while head_k.is_multiple_of(2 * n) {
                n *= 2;
            }
            n
        });
        (rk, (v.is_quantized() && head_v.is_multiple_of(64)).then_some(64))
    }

    /// What attention over cells c0..c0+n of layer `il` reads, as byte ranges (address, length):
    /// head h's keys, then its values, for each head in turn (empty for a layer without a cache).
    pub fn read_ranges(&self, il: usize, c0: usize, n: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (nhk, nhv) = self.n_heads();
        (0..nhk.max(nhv)).flat_map(move |h| {
            let [k, v] = match &self.store {
                KvStore::F16(l) => l[il].head_ranges(h, c0, n),
                KvStore::F32(l) => l[il].head_ranges(h, c0, n),
                KvStore::Raw { layers, .. } => layers[il].head_ranges(h, c0, n),
            };
            [(h < nhk).then_some(k), (h < nhv).then_some(v)].into_iter().flatten().filter(|r| r.1 > 0)
        })
    }

    /// Types of K and V.
    pub fn types(&self) -> (KvType, KvType) {
        match self.store {
            KvStore::F16(_) => (KvType::F16, KvType::F16),
            KvStore::F32(_) => (KvType::F32, KvType::F32),
            KvStore::Raw { k, v, .. } => (k, v),
        }
    }

    /// Bytes of one cell's K and V rows of all heads, per layer that attends.
    pub fn bytes_per_cell(&self) -> usize {
        let (nhk, nhv) = self.n_heads();
        let (k, v) = self.types();
        let (ek, ev) = match self.store {
            KvStore::Raw { .. } => (k.row_bytes(self.head_k), v.row_bytes(self.head_v)),
            KvStore::F16(_) => (2 * self.head_k, 2 * self.head_v),
            KvStore::F32(_) => (4 * self.head_k, 4 * self.head_v),
        };
        nhk * ek + nhv * ev
    }

    /// Writes K and V row `i` of a batch into cell `cells[i]` of layer `il`.
    /// `k`: [cells.len()][n_embd_k], `v`: [cells.len()][n_embd_v].
    pub fn store_rows(&mut self, il: usize, cells: &[usize], k: &[f32], v: &[f32]) {
        fn put<T: KvElem>(dst: &mut [T], st: Strides, head: usize, cells: &[usize], src: &[f32]) {
            let row = src.len() / cells.len().max(1);
            for (&c, s) in cells.iter().zip(src.chunks_exact(row)) {
                for (h, sh) in s.chunks_exact(head).enumerate() {
                    T::from_f32_slice(&mut dst[st.at(c, h)..st.at(c, h) + head], sh);
                }
            }
        }
        /// Each head row converted by the type's runtime quantizer (ggml's set_rows).
        fn put_raw(dst: &mut [u8], st: Strides, head: usize, t: KvType, cells: &[usize], src: &[f32]) {
            let from_float = kernels().traits(t.ggml()).and_then(|k| k.from_float).expect("cache type converts");
            let (row, rb) = (src.len() / cells.len().max(1), t.row_bytes(head));
            for (&c, s) in cells.iter().zip(src.chunks_exact(row)) {
                for (h, sh) in s.chunks_exact(head).enumerate() {
                    from_float(sh, &mut dst[st.at(c, h)..st.at(c, h) + rb]);
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
            KvStore::Raw { layers, k: tk, v: tv } => {
                let l = &mut layers[il];
                put_raw(&mut l.k, l.ks, hk, *tk, cells, &k[..n * nk]);
                put_raw(&mut l.v, l.vs, hv, *tv, cells, &v[..n * nv]);
            }
        }
    }

    /// KV heads of K and of V.
    fn n_heads(&self) -> (usize, usize) {
        (self.n_embd_k / self.head_k.max(1), self.n_embd_v / self.head_v.max(1))
    }

    /// Elements per head row of K and V as stored (bytes for a raw cache).
    fn row_elems(&self) -> (usize, usize) {
        match self.store {
            KvStore::Raw { k, v, .. } => (k.row_bytes(self.head_k), v.row_bytes(self.head_v)),
            _ => (self.head_k, self.head_v),
        }
    }

    /// Bytes of the rows of `cells` (in that order: a sequence's cells in position order) of
    /// every layer, as little-endian K then V per layer, each cell's heads in order (the layout
    /// does not show in the bytes).
    pub fn save(&self, cells: &[usize], out: &mut Vec<u8>) {
        fn dump<T: Copy>(
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
        let (hs, nh) = (self.row_elems(), self.n_heads());
        match &self.store {
            KvStore::F16(l) => dump(l, cells, hs, nh, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
            KvStore::F32(l) => dump(l, cells, hs, nh, out, |x, o| o.extend_from_slice(&x.to_le_bytes())),
            KvStore::Raw { layers, .. } => dump(layers, cells, hs, nh, out, |x, o| o.push(x)),
        }
    }

    /// Bytes `save(n)` produces.
    pub fn saved_len(&self, n: usize) -> usize {
        let layers = match &self.store {
            KvStore::F16(l) => l.iter().filter(|l| l.attends()).count(),
            KvStore::F32(l) => l.iter().filter(|l| l.attends()).count(),
            KvStore::Raw { layers, .. } => layers.iter().filter(|l| l.attends()).count(),
        };
        layers * n * self.bytes_per_cell()
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
        let (hs, nh) = (self.row_elems(), self.n_heads());
        match &mut self.store {
            KvStore::F16(layers) => {
                fill(layers, cells, hs, nh, data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])))
            }
            KvStore::F32(layers) => {
                fill(layers, cells, hs, nh, data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            KvStore::Raw { layers, .. } => fill(layers, cells, hs, nh, data.iter().copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ranges_are_each_heads_cells() {
        // 2 layers (the second keeps no cache), 8 cells, 2 K/V heads of 4
        let c = KvCache::new(KvType::F16, KvType::F16, &[true, false], 8, 8, 8, 4, 4);
        let KvStore::F16(l) = &c.store else { unreachable!() };
        let at = |s: &[f16], i: usize| s[i..].as_ptr() as usize;
        let r: Vec<_> = c.read_ranges(0, 2, 3).collect();
        // head 0's keys and values of cells 2..5, then head 1's: 3 rows of 4 f16
        let want =
            [(at(&l[0].k, 2 * 4), 24), (at(&l[0].v, 2 * 4), 24), (at(&l[0].k, 8 * 4 + 8), 24), (at(&l[0].v, 40), 24)];
        assert_eq!(r, want);
        // past the last cell: clipped to the storage (head 1's last rows)
        let r: Vec<_> = c.read_ranges(0, 6, 5).collect();
        assert_eq!(r[2], (at(&l[0].k, 8 * 4 + 24), 2 * 4 * 2));
        assert_eq!(r[1], (at(&l[0].v, 24), 5 * 4 * 2), "head 0 runs into head 1's cells: a hint only");
        assert_eq!(c.read_ranges(1, 0, 8).count(), 0, "a layer without a cache reads nothing");
        // a quantized cache: rows of bytes (q8_0: 34 bytes per 32 values)
        let c = KvCache::new(KvType::Q8_0, KvType::Q8_0, &[true], 4, 64, 64, 32, 32);
        let r: Vec<_> = c.read_ranges(0, 1, 2).collect();
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), [68, 68, 68, 68]);
    }

    #[test]
    fn f16_slice_store_rounds_as_one_element_at_a_time() {
        // ties to even, subnormals, overflow to infinity, NaN, signed zeros; odd lengths run the
        // vector path and its scalar tail
        let mut src = vec![0.0f32, -0.0, 1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 65520.0, 65519.0];
        src.extend([2f32.powi(-24), 2f32.powi(-25), 1.5 * 2f32.powi(-25), -7e-8, f32::INFINITY, f32::NAN, 1e9]);
        let mut x = 0.37f32;
        for _ in 0..200 {
            x = (x * 3.7 + 0.11).fract();
            src.push((x - 0.5) * 2f32.powi((x * 40.0) as i32 - 20));
        }
        for n in [1, 7, 8, 9, src.len()] {
            let mut dst = vec![f16::ZERO; n];
            f16::from_f32_slice(&mut dst, &src[..n]);
            let one: Vec<u16> = src[..n].iter().map(|&v| f16::from_f32(v).to_bits()).collect();
            assert_eq!(dst.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), one, "n {n}");
        }
    }
}
