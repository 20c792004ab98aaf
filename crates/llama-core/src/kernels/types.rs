//! The kernel table's types: kernel signatures, the per-type traits (`TypeKernels`, in the shape of
//! ggml's `type_traits_cpu`), the attention and elementwise slots, and the `Kernels` table itself.
//! Every ISA module fills these; nothing here depends on an ISA module.

use half::f16;

use crate::quant::repack::MAX_T;
use crate::quant::GgmlType;

/// `(n elements, weight row bytes, activation row bytes) -> dot`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;
/// `(x: [n] f32, out: row bytes of the type)`.
pub type FromFloatFn = fn(&[f32], &mut [u8]);
/// `(row bytes of the type, out: [n] f32)`.
pub type ToFloatFn = fn(&[u8], &mut [f32]);
/// Most weight rows of a `TileFn`.
pub const TILE: usize = 4;
/// Most tokens of a `TileFn` (kernels whose weight decoding dominates share it over this many).
pub const TILE_T: usize = 8;
/// Multi-token tile: `(n, w, w_stride, nr, a, a_stride, nt) -> out[r][t]` = dot of weight row r
/// (bytes `w[r*w_stride..]`) with activation row t (`a[t*a_stride..]`), for r < nr ≤ TILE,
/// t < nt ≤ TILE_T. Bit-identical to calling the table's `VecDotFn` for each pair.
pub type TileFn = fn(usize, &[u8], usize, usize, &[u8], usize, usize) -> [[f32; TILE_T]; TILE];
/// Most weight rows of a `BatchGemmFn` call (one band).
pub const GEMM_ROWS: usize = 16;
/// Batch GEMM over plain rows: `(n, w, w_stride, nr, a, a_stride, nt, out)` writes
/// `out[t * GEMM_ROWS + r]` = dot of weight row r (`w[r*w_stride..]`) with activation row t
/// (`a[t*a_stride..]`), for r < nr ≤ GEMM_ROWS and any t < nt (`out.len() ≥ nt·GEMM_ROWS`): each
/// weight block decoded once for all nt tokens. Bit-identical to its dot per pair.
pub type BatchGemmFn = fn(usize, &[u8], usize, usize, &[u8], usize, usize, &mut [f32]);
/// Over R16-repacked weights (`quant::repack`): `(nb, group, acts, act_stride, nt, out,
/// out_stride)`: for the 16 rows of `group` (nb blocks) and `nt ≤ repack::MAX_T` activation rows
/// (Q8_0S or Q8_K, `act_stride` bytes apart), writes `out[t * out_stride + r]` for r < 16, t < nt.
pub type GemmR16Fn = fn(usize, &[u8], &[u8], usize, usize, &mut [f32], usize);
/// One token against several R16 groups at once: `(nb, w, w_stride, a, out, out_stride)`, group j
/// at `w[j·w_stride..]`, its 16 results at `out[j·out_stride..]` (`R16Gemv::groups` of them).
pub type GemvR16Fn = fn(usize, &[u8], usize, &[u8], &mut [f32], usize);

/// A single token's matvec over groups far apart in the matrix, each group's sums exactly those of
/// its `gemm_r16` call: a thread reading one sequential stream of weights stalls at every 4 KiB
/// page where the hardware prefetcher restarts; with 2–4 streams in flight the others keep the
/// memory busy (docs/PERFORMANCE.md: a Q4_0 GEMV 26 → 30 GB/s on the two-vCPU Xeon).
#[derive(Clone, Copy, Debug)]
pub struct R16Gemv {
    pub f: GemvR16Fn,
    /// Groups per call (the streams).
    pub groups: usize,
}
/// Lanes of a key panel (`AttnKtFn` / `AttnKqFn`).
pub const KT_LANES: usize = 16;
/// Key panels `(n, k, k_stride, n_keys, kt)`: keys converted to f32 and transposed in panels of
/// `KT_LANES` keys, `kt[(c*n + d)*KT_LANES + l] = k[(c*KT_LANES + l)*k_stride + d]`; lanes past
/// n_keys are set to 0. `kt` holds at least n_keys.div_ceil(KT_LANES) * n * KT_LANES values.
pub type AttnKtFn<T> = fn(usize, &[T], usize, usize, &mut [f32]);
/// Attention scores `(n, kt, n_keys, q, n_q, out, out_stride, order)` from key panels:
/// `out[i*out_stride + j] = Σ_{d<n} k_j[d] · q[i*n + d]` for i < n_q, j < n_keys, summed over d in
/// llama.cpp's `order` (`kernels::attn`), bit-identical in every ISA. `q` is already rounded to the
/// cache type.
pub type AttnKqFn = fn(usize, &[f32], usize, &[f32], usize, &mut [f32], usize, AttnOrder);
/// f16 value rows to f32 `(n, v, v_stride, n_rows, out)`: `out[j*n + d] = v[j*v_stride + d]`.
pub type AttnVfFn = fn(usize, &[f16], usize, usize, &mut [f32]);
/// `AttnKtFn` over rows named one by one `(n, k, k_stride, cells, kt)`: key l is
/// `k[cells[l]*k_stride..][..n]` (the cache rows of a sequence's positions, wherever they sit),
/// the panels exactly `AttnKtFn`'s on those rows gathered; n_keys = cells.len().
pub type AttnKtGatherFn<T> = fn(usize, &[T], usize, &[usize], &mut [f32]);
/// `AttnVfFn` over rows named one by one `(n, v, v_stride, cells, out)`:
/// `out[j*n + d] = v[cells[j]*v_stride + d]`.
pub type AttnVfGatherFn = fn(usize, &[f16], usize, &[usize], &mut [f32]);
/// Attention output `(n, v, v_stride, j0, lo, hi, p, o, order)` of one query:
/// `o[d] = Σ_{j=lo..=hi} p[j-j0] · v[(j-j0)*v_stride + d]` for d < n, over the absolute key index
/// j (which picks lanes and accumulators) in llama.cpp's `order`, bit-identical in every ISA.
pub type AttnPvFn = fn(usize, &[f32], usize, usize, usize, usize, &[f32], &mut [f32], AttnOrder);
/// `AttnPvFn` for several queries over value panels `(n, vt, j0, lo, hi, p, p_stride, o, order)`:
/// the values of keys j0.. in the `AttnKtFn` panel layout (j0 a multiple of 64); query i sees
/// keys lo[i]..=hi[i] with probabilities p[i*p_stride + j - j0], writes o[i*n..(i+1)*n]; the
/// same sums and bits as `AttnPvFn` per query.
pub type AttnPvPanelsFn = fn(usize, &[f32], usize, &[usize], &[usize], &[f32], usize, &mut [f32], AttnOrder);
/// Flash attention's online step for one query over a block of keys `(n, scores, v, acc, state,
/// step)`: `scores` [nb] raw K·Q, `v` [nb][n] the keys' values as f32, `acc` [n] the running
/// output, `state` the running maximum and sum; see `kernels::attn::fa_online_body`.
pub type FaOnlineFn = fn(usize, &[f32], &[f32], &mut [f32], &mut [f32; 2], FaStep);

/// Flash attention's tile GEMMs (llama.cpp's `simd_gemm`: each output one fused multiply-add
/// chain over the summed index, in order):
/// `FaTileKqFn (n, kt, q, nq, out)`: scores of `nq` query rows (`q` [nq rounded up to 4][n]) against
/// 64 keys in 4 panels (`kt`, `AttnKtFn` layout), `out[i·64 + j] = Σ_d q[i][d]·k_j[d]` from 0;
/// `FaTilePvFn (n, p, v, nq, acc)`: `acc[i][d] += Σ_j p[i][j]·v[j][d]` over the tile's 64 keys
/// (`p` [nq rounded up to 4][64], `v` [64][n], `acc` [nq rounded up to 4][n]).
pub type FaTileKqFn = fn(usize, &[f32], &[f32], usize, &mut [f32]);
pub type FaTilePvFn = fn(usize, &[f32], &[f32], usize, &mut [f32]);

/// A quantized cache row · a query row in its partner type `(type, x, y)`, in ggml's x86
/// `vec_dot` order (`kernels::attn::fa_kv_dot_body`).
pub type FaKvDotFn = fn(GgmlType, &[u8], &[u8]) -> f32;

/// Query rows flash attention runs in lanes (up to `FA_LANES` rows over one KV head at once),
/// prepared by `kernels::attn::FaLaneQueries::new` for a quantized K of one type.
#[derive(Clone, Debug, Default)]
pub struct FaLaneQueries {
    /// The cache type of the keys.
    pub k_type: Option<GgmlType>,
    /// Elements per row (the head size).
    pub n: usize,
    /// Bytes of one row in K's dot partner type.
    pub row_bytes: usize,
    /// [FA_LANES][row_bytes] each lane's row in K's dot partner type (lanes past the live ones 0).
    pub qq: Vec<u8>,
    /// [n/4][FA_LANES][4] the rows' quants, 4 consecutive elements of lane i at [g][i].
    pub qt: Vec<i8>,
    /// [n/32][FA_LANES] the rows' block scales.
    pub qd: Vec<f32>,
    /// [n/32][FA_LANES] the rows' block sums `s` (a Q8_1 partner), else empty.
    pub qs: Vec<f32>,
    /// [n/4][FA_LANES] −offset · the sum of the 4 quants at [g][i]: a key's quants enter the lane
    /// kernels as unsigned bytes, value + offset (`kernels::attn::lane_key_offset`).
    pub corr: Vec<i32>,
}

/// Query rows per lane group (one AVX-512 vector of f32).
pub const FA_LANES: usize = 16;
/// Keys per lane-group call (`FaLanesKqFn`, `FaLanesOnlineFn`).
pub const FA_LANE_KEYS: usize = 128;
/// The largest head the lane kernels take (larger ones take the online path).
pub const FA_LANE_MAX_N: usize = 512;

/// Flash attention in lanes, each lane one query row with the exact arithmetic of the online path
/// (`FaKvDotFn`, `FaOnlineFn`) for that row alone:
/// `FaLanesKqFn (t, k, nk, q, out)`: `out[j·16 + i]` = `FaKvDotFn(t, k_j, q.qq_i)` for the `nk`
/// rows of `k` ([nk][row bytes of t], `nk ≤ FA_LANE_KEYS`);
/// `FaLanesOnlineFn (n, scores, vis, v, acc, state, step)`: for each lane i, the online recurrence
/// over the keys j whose `vis[j]` has bit i, in order: scores [nk][16], v [nk][n] as f32, acc
/// [n][16] the running outputs (dimension-major), state the running maxima and sums. An f32
/// output only (`step.f16_acc` false) and no soft-cap.
pub type FaLanesKqFn = fn(GgmlType, &[u8], usize, &FaLaneQueries, &mut [f32]);
pub type FaLanesOnlineFn = fn(usize, &[f32], &[u16], &[f32], &mut [f32], &mut [[f32; 16]; 2], FaStep);

/// The lane kernels of a table that has them.
#[derive(Clone, Copy, Debug)]
pub struct FaLanes {
    pub kq: FaLanesKqFn,
    pub online: FaLanesOnlineFn,
}

/// How a flash-attention score becomes a weight: `scale` (divided by the cap when soft-capped),
/// `softcap` (0 = none), and whether the output accumulates in f16 (an f16 V).
#[derive(Clone, Copy, Debug)]
pub struct FaStep {
    pub scale: f32,
    pub softcap: f32,
    pub f16_acc: bool,
}

/// Rounds every element through f16 (round to nearest even) in place; bit-identical to
/// `half::f16::from_f32(x).to_f32()`.
pub type RoundFn = fn(&mut [f32]);
/// Softmax of a row in place after `x * scale` (`kernels::elementwise::softmax_inplace`'s sums).
pub type SoftmaxFn = fn(&mut [f32], f32);
/// `x = exp(x − max)` in place over whole vectors, returning the f64 sum of the vectors' sums
/// (`kernels::elementwise::exp_sum_tile` in the table's orders).
pub type ExpSumFn = fn(&mut [f32], f32) -> f64;
/// `gate = silu(gate) · up` over rows of `n_ff` (`kernels::elementwise::swiglu_inplace`).
pub type SwigluFn = fn(&mut [f32], &[f32], usize);
/// `x = gelu(x)`, times `up` when given (GeGLU), through ggml's f16 GELU table
/// (`kernels::elementwise::gelu_table`: 65,536 entries and one of padding, so a 32-bit gather of
/// the last one stays inside): `kernels::elementwise::gelu_scalar`.
pub type GeluFn = fn(&mut [f32], Option<&[f32]>, &[u16]);

/// The summation order of one attention dot (llama.cpp's tinyBLAS and `ggml_vec_dot_f16` of its
/// AVX-512 and AVX2 builds, see `kernels::attn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnOrder {
    /// tinyBLAS, 16 lanes (AVX-512 build, prompt batches).
    Lanes16,
    /// `ggml_vec_dot_f16`, 4 × 16 lanes (AVX-512 build, single tokens).
    Lanes64,
    /// tinyBLAS, 8 lanes (AVX2 build, prompt batches).
    Lanes8,
    /// `ggml_vec_dot_f16`, 4 × 8 lanes (AVX2 build, single tokens).
    Lanes32,
    /// `ggml_vec_dot_f32`, 4 × 16 lanes (AVX-512 build): f32 keys or values (a cacheless
    /// encoder's, an f32 cache's) where tinyBLAS does not take the product. As `Lanes64`, but the
    /// elements after the last whole step of 64 add their rounded products to the f32 sum; a P·V
    /// dot runs over keys 0..=hi (the encoder's whole sequence), not a padded cache.
    F32Lanes64,
    /// `ggml_vec_dot_f32`, 4 × 8 lanes (AVX2 build), as `F32Lanes64`.
    F32Lanes32,
}

/// The llama.cpp x86 CPU build whose float summation orders a table reproduces. Its vector width
/// decides the attention orders (tinyBLAS and `ggml_vec_dot_f16` lanes), the chunks of softmax
/// sums and the exp/SiLU variant (`ggml_v_expf` differs between the two). The quantized matrix
/// products sum in the same orders in both builds (`kernels::ggml_x86`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumOrders {
    /// llama.cpp built for AVX-512 (F, BW, DQ, VL, VNNI): 16-lane vectors. The scalar and NEON
    /// tables follow it too.
    Avx512,
    /// llama.cpp built for AVX2 + FMA + F16C without AVX-512: 8-lane vectors.
    Avx2,
}

impl SumOrders {
    /// The name of the build ("avx512", "avx2"): where its golden outputs live in `tests/data/golden`.
    pub const fn name(self) -> &'static str {
        match self {
            SumOrders::Avx512 => "avx512",
            SumOrders::Avx2 => "avx2",
        }
    }

    /// The order of an attention dot in a prompt batch (tinyBLAS), when its length is a multiple
    /// of the order's lanes.
    pub const fn attn_batch(self) -> AttnOrder {
        match self {
            SumOrders::Avx512 => AttnOrder::Lanes16,
            SumOrders::Avx2 => AttnOrder::Lanes8,
        }
    }

    /// The order of an attention dot otherwise (`ggml_vec_dot_f16`).
    pub const fn attn_single(self) -> AttnOrder {
        match self {
            SumOrders::Avx512 => AttnOrder::Lanes64,
            SumOrders::Avx2 => AttnOrder::Lanes32,
        }
    }

    /// The order of an attention dot over f32 keys or values that tinyBLAS does not take
    /// (`ggml_vec_dot_f32`).
    pub const fn attn_single_f32(self) -> AttnOrder {
        match self {
            SumOrders::Avx512 => AttnOrder::F32Lanes64,
            SumOrders::Avx2 => AttnOrder::F32Lanes32,
        }
    }

    /// f32 lanes of the build's vectors: softmax sums its exponentials in chunks of this many
    /// entries from the row's start, SwiGLU takes its vector path on whole groups of it.
    pub const fn vector_width(self) -> usize {
        match self {
            SumOrders::Avx512 => 16,
            SumOrders::Avx2 => 8,
        }
    }
}

/// A KV cache element (f16 or f32) as the attention kernels read it.
pub(crate) trait CacheElem: Copy {
    fn f32(self) -> f32;
}
impl CacheElem for f16 {
    #[inline]
    fn f32(self) -> f32 {
        self.to_f32()
    }
}
impl CacheElem for f32 {
    #[inline]
    fn f32(self) -> f32 {
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            "neon" => Some(Isa::Neon),
            _ => None,
        }
    }
}

/// Where llama.cpp sums a prompt batch of a type in another order than single tokens, and so do
/// we: Q4_K (its 4-row GEMM over the batch's full groups of 4 tokens, whose activations its own
/// quantizer makes), Q3_K, Q5_K and Q6_K (its tiled GEMM from 8 tokens). The rule belongs to the type (the scalar
/// table states it); a table supplies `gemm` where it has that order.
#[derive(Clone, Copy, Debug)]
pub struct R16Batch {
    /// Batches of fewer tokens take the plain `gemm_r16` for every token.
    pub min_tokens: usize,
    /// The batch's first `n - n % group` tokens take this order; the rest the plain kernel.
    pub group: usize,
    /// Activation converter for those tokens, when it differs from the type's `vec_dot_type`'s.
    pub from_float: Option<FromFloatFn>,
    /// The kernel in this order; `None` = the plain `gemm_r16` serves those tokens too.
    pub gemm: Option<GemmR16Fn>,
    /// Most tokens `gemm` takes per call: `repack::MAX_T`, or up to `repack::MAX_WIDE_T` for a
    /// kernel that decodes each weight block once per call (more tokens per decode).
    pub max_t: usize,
}

/// Where llama.cpp sums a prompt batch of a type without an R16 layout in another order than single
/// tokens: the grid i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), which its
/// x86 builds run through the tiled GEMM (`ggml_compute_forward_mul_mat_tiled`) from 8 tokens on:
/// per super-block one exact integer sum, `acc = fma(f32(isum)·d_w, d_a, acc)`
/// (`kernels::ggml_x86::grid_iq_tiled`). The rule belongs to the type (the scalar table states
/// it); a table supplies `dot` where it has that order.
///
/// F16 and F32 weights: llama.cpp's x86 builds run a `mul_mat` of 2 tokens or more whose weight
/// rows are a multiple of 4 and whose row length a multiple of the vector width through
/// llamafile's tinyBLAS: per output one vector of lanes accumulating `fma(w, a, acc)` in steps of
/// the width, then summed as a halving tree (`kernels::ggml_x86::sgemm_lanes`); its
/// `mul_mat_id` never does.
#[derive(Clone, Copy, Debug)]
pub struct BatchDot {
    /// Batches of at least this many tokens take `dot` for every token; smaller ones `vec_dot`.
    pub min_tokens: usize,
    /// The order applies only to matrices whose row count is a multiple of this (1: any).
    pub rows_multiple: usize,
    /// … and whose row length is a multiple of this (1: any); the table sets it with `dot`.
    pub cols_multiple: usize,
    /// Whether `mul_mat_id` (a group of expert rows) takes the order too.
    pub in_mul_mat_id: bool,
    /// The dot in the batch order; `None` = `vec_dot` serves batches too.
    pub dot: Option<VecDotFn>,
    /// Multi-token tiles in the batch order (bit-identical to `dot` per pair); `None` = `dot` per
    /// pair.
    pub tile: Option<TileFn>,
    /// Batch GEMM in the batch order (bit-identical to `dot` per pair); preferred over `tile`.
    pub gemm: Option<BatchGemmFn>,
}

/// One matrix product asking for its kernels (`Kernels::row_dot`): `n_tokens` activation rows
/// against a `rows` × `cols` weight matrix, in a `mul_mat` or a `mul_mat_id` (`id`).
#[derive(Clone, Copy, Debug)]
pub struct MatShape {
    pub n_tokens: usize,
    pub rows: usize,
    pub cols: usize,
    pub id: bool,
}

impl BatchDot {
    /// Whether this batch order (with a dot from the table) applies to the product `s`.
    pub fn applies(&self, s: MatShape) -> bool {
        self.dot.is_some()
            && s.n_tokens >= self.min_tokens
            && s.rows.is_multiple_of(self.rows_multiple)
            && s.cols.is_multiple_of(self.cols_multiple)
            && (self.in_mul_mat_id || !s.id)
    }
}

/// What one table knows about one ggml type: ggml's `type_traits_cpu` (`from_float`, `vec_dot`,
/// `vec_dot_type`) with its block layout and `to_float`, candle's `GgmlType` as a table row, plus
/// the kernels over R16-repacked weights.
#[derive(Clone, Copy, Debug)]
pub struct TypeKernels {
    pub ggml_type: GgmlType,
    /// Elements per block.
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    /// f32 → this type, as the runtime converts: the activation quantizers (llama.cpp's runtime
    /// ones) for Q8_0/Q8_1/Q8_K, conversions for F16/BF16/F32, the reference quantizer otherwise.
    pub from_float: Option<FromFloatFn>,
    /// This type → f32 (the reference dequantizer).
    pub to_float: Option<ToFloatFn>,
    /// The activation type a weight of this type is multiplied with.
    pub vec_dot_type: Option<GgmlType>,
    /// Weight row of this type · activation row of `vec_dot_type`.
    pub vec_dot: Option<VecDotFn>,
    /// Multi-token tiles (prompt processing); `None` = `vec_dot` per pair.
    pub tile: Option<TileFn>,
    /// Kernel over R16-repacked weights; a matrix is repacked at load only when the process-wide
    /// table has one for its type.
    pub gemm_r16: Option<GemmR16Fn>,
    /// Its single-token form over several groups at once, where the table has one.
    pub gemv_r16: Option<R16Gemv>,
    /// llama.cpp's batch order for the type, where it has one.
    pub r16_batch: Option<R16Batch>,
    /// llama.cpp's batch order over plain (not repacked) rows, where it has one.
    pub batch_dot: Option<BatchDot>,
}

impl TypeKernels {
    /// A row with the block layout of `t` and no kernels.
    pub const fn empty(t: GgmlType) -> TypeKernels {
        let (block_size, type_size) = t.block_layout();
        TypeKernels {
            ggml_type: t,
            block_size,
            type_size,
            from_float: None,
            to_float: None,
            vec_dot_type: None,
            vec_dot: None,
            tile: None,
            gemm_r16: None,
            gemv_r16: None,
            r16_batch: None,
            batch_dot: None,
        }
    }
}

/// The attention kernels over the KV cache (model::attention).
#[derive(Clone, Copy, Debug)]
pub struct AttnKernels {
    pub kt_f16: AttnKtFn<f16>,
    pub kt_f32: AttnKtFn<f32>,
    pub kq: AttnKqFn,
    pub vf_f16: AttnVfFn,
    /// `kt_*` and `vf_f16` over a list of cache rows (a sequence's cells in position order, when
    /// they are not one contiguous run): the gather costs no extra pass over memory.
    pub kt_f16_gather: AttnKtGatherFn<f16>,
    pub kt_f32_gather: AttnKtGatherFn<f32>,
    pub vf_f16_gather: AttnVfGatherFn,
    pub pv: AttnPvFn,
    /// The same from value panels, where a table has it (faster: keys in lanes).
    pub pv_panels: Option<AttnPvPanelsFn>,
    pub round_f16: RoundFn,
    pub fa_online: FaOnlineFn,
    pub fa_tile_kq: FaTileKqFn,
    pub fa_tile_pv: FaTilePvFn,
    pub fa_kv_dot: FaKvDotFn,
    /// Flash attention over a quantized cache in lanes of query rows, where a table has it.
    pub fa_lanes: Option<FaLanes>,
}

/// Number of ggml type ids (the largest id + 1): the size of the per-type part of a table.
pub const N_TYPE_IDS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < GgmlType::ALL.len() {
        let id = GgmlType::ALL[i] as usize;
        if id > max {
            max = id;
        }
        i += 1;
    }
    max + 1
};

/// One complete set of kernels for a given ISA: per type (indexed by the ggml type id), attention
/// and elementwise. Slots a SIMD level does not implement keep the scalar kernel.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    /// The llama.cpp build whose summation orders this table reproduces.
    pub orders: SumOrders,
    pub types: [Option<TypeKernels>; N_TYPE_IDS],
    pub attn: AttnKernels,
    pub softmax: SoftmaxFn,
    /// A vectorised `exp_sum_tile` of the table's orders, where it has one.
    pub exp_sum: Option<ExpSumFn>,
    pub swiglu: SwigluFn,
    pub gelu: GeluFn,
}

impl Kernels {
    /// The row of type `t`, if this table computes with it.
    #[inline]
    pub fn traits(&self, t: GgmlType) -> Option<&TypeKernels> {
        self.types[t as usize].as_ref()
    }

    /// Mutable row of type `t` (tables are built by overriding the rows of the one they extend).
    ///
    /// Panics if the table has no row for `t`.
    pub fn traits_mut(&mut self, t: GgmlType) -> &mut TypeKernels {
        self.types[t as usize].as_mut().unwrap_or_else(|| panic!("kernel table has no row for {t}"))
    }

    /// The dot kernel for weights of type `w` (paired with `vec_dot_type` activations).
    #[inline]
    pub fn vec_dot(&self, w: GgmlType) -> Option<VecDotFn> {
        self.traits(w)?.vec_dot
    }

    /// The converter from f32 to type `t`.
    #[inline]
    pub fn from_float(&self, t: GgmlType) -> Option<FromFloatFn> {
        self.traits(t)?.from_float
    }

    /// The activation type weights of type `w` are multiplied with (ggml's `vec_dot_type`).
    #[inline]
    pub fn vec_dot_type(&self, w: GgmlType) -> Option<GgmlType> {
        self.traits(w)?.vec_dot_type
    }

    /// The row dot for the product `s` over plain rows of type `w`: the batch-order dot
    /// (`BatchDot`) when its rule applies and this table has one, else `vec_dot`. The second value
    /// says whether it is the batch-order dot (then only its own tiles, `row_tile`, may replace it).
    pub fn row_dot(&self, w: GgmlType, s: MatShape) -> Option<(VecDotFn, bool)> {
        let row = self.traits(w)?;
        match row.batch_dot.filter(|b| b.applies(s)) {
            Some(b) => Some((b.dot?, true)),
            None => Some((row.vec_dot?, false)),
        }
    }

    /// The multi-token tiles for the product `s` (of more than one token) over plain rows of type
    /// `w`, in the order of `row_dot`'s dot (the batch order's tiles when it applies), if this table
    /// has them.
    pub fn row_tile(&self, w: GgmlType, s: MatShape) -> Option<TileFn> {
        let row = self.traits(w)?;
        match row.batch_dot.filter(|b| b.applies(s)) {
            Some(b) => b.tile,
            None => row.tile,
        }
    }

    /// The batch GEMM (`BatchDot::gemm`) for the product `s` over plain rows of type `w`, when the
    /// batch order applies and this table has one.
    pub fn row_gemm(&self, w: GgmlType, s: MatShape) -> Option<BatchGemmFn> {
        self.traits(w)?.batch_dot.filter(|b| b.applies(s))?.gemm
    }

    /// The multi-token tile kernel for weights of type `w`, if this table has one.
    #[inline]
    pub fn tile(&self, w: GgmlType) -> Option<TileFn> {
        self.traits(w)?.tile
    }

    /// This table without its multi-token tiles: every (row, token) pair of a prompt through
    /// `vec_dot` (tiles are bit-identical to it, so results do not change; tests compare the two).
    pub fn without_tiles(&self) -> Kernels {
        let mut k = *self;
        for row in k.types.iter_mut().flatten() {
            row.tile = None;
            if let Some(b) = row.batch_dot.as_mut() {
                b.tile = None;
                b.gemm = None;
            }
        }
        k
    }

    /// The kernel over R16-repacked weights of type `w`, if this table has one.
    #[inline]
    pub fn gemm_r16(&self, w: GgmlType) -> Option<GemmR16Fn> {
        self.traits(w)?.gemm_r16
    }

    /// How a batch of `n_tokens` of weight type `w` runs over R16 weights: `(batch kernel, number
    /// of leading tokens it serves, their activation converter if special, plain kernel)`; `None`
    /// if this table has no R16 kernel for `w`.
    pub fn r16_plan(&self, w: GgmlType, n_tokens: usize) -> Option<R16Plan> {
        let row = self.traits(w)?;
        let plain = row.gemm_r16?;
        let mut plan =
            R16Plan { batch: plain, n_batch: 0, batch_max_t: MAX_T, batch_from_float: None, plain, gemv: row.gemv_r16 };
        if let Some(b) = row.r16_batch.filter(|b| n_tokens >= b.min_tokens) {
            plan = R16Plan {
                batch: b.gemm.unwrap_or(plain),
                n_batch: n_tokens - n_tokens % b.group,
                batch_max_t: if b.gemm.is_some() { b.max_t } else { MAX_T },
                batch_from_float: b.from_float,
                plain,
                gemv: row.gemv_r16,
            };
        }
        Some(plan)
    }
}

/// See `Kernels::r16_plan`.
#[derive(Clone, Copy, Debug)]
pub struct R16Plan {
    /// The kernel for tokens `0..n_batch`.
    pub batch: GemmR16Fn,
    pub n_batch: usize,
    /// Most tokens per call of `batch` (`R16Batch::max_t`).
    pub batch_max_t: usize,
    /// Their activation converter, when it is not the table's converter for the activation type.
    pub batch_from_float: Option<FromFloatFn>,
    /// The kernel for tokens `n_batch..`.
    pub plain: GemmR16Fn,
    /// A single token's kernel over several groups, where the table has one.
    pub gemv: Option<R16Gemv>,
}
