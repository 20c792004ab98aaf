//! Elementwise operations of the forward pass, written to round the way ggml's CPU backend rounds
//! so our logits track llama.cpp's (see each function for the detail that matters). Softmax and
//! SwiGLU are also table slots (`Kernels::softmax` / `swiglu`): these scalar versions are the
//! scalar table's and the reference of the AVX-512 ones (`x86::act`), which give the same bits.
//! `kernels::parallel` runs these over the thread pool.

use half::f16;

use super::types::{SoftmaxFn, SumOrders, SwigluFn};

/// Runs `f(args)` compiled with FMA where the CPU has it. ggml's arithmetic is reproduced with
/// `mul_add`; in code built for baseline x86_64 that is a call to libm's `fmaf` (same result, ~20×
/// slower), so the bodies are `#[inline(always)]` and instantiated once more inside a function
/// with the `fma` target feature, chosen at run time. aarch64 always has FMA.
macro_rules! with_fma {
    ($f:ident($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("fma") {
                /// # Safety
                /// The CPU must support FMA.
                #[target_feature(enable = "fma")]
                #[inline]
                unsafe fn fast<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: the CPU has FMA (checked just above); `fast` only adds that feature.
                unsafe { fast(|| $f($($a),*)) }
            } else {
                $f($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f($($a),*)
        }
    }};
}
pub(crate) use with_fma;

/// RMSNorm of each row of `x` ([n_rows][n]) into `out` (same shape), times `w` ([n]).
/// ggml sums the f32 squares in double (`ggml_float`), scales in f32, and multiplies by the weight
/// as a separate op, i.e. `(x * scale) * w` with two f32 roundings.
pub fn rms_norm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = w.len();
    for (o, xr) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let scale = rms_scale(xr, eps);
        for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
            *o = (xv * scale) * wv;
        }
    }
}

/// LayerNorm of each `w.len()`-sized row of `x`, then `· w + b`: ggml's `ggml_norm` (a build of
/// `width`-lane vectors, `SumOrders::vector_width`) followed by `ggml_mul` and `ggml_add`, with
/// its roundings: mean = `(f32)(Σx in f64) / n` in f32; variance = the squared deviations summed
/// per chunk of `width` elements in f32 by the halving tree of `_mm512_reduce_add_ps` / `hsum`,
/// the chunk sums and the tail's squares in f64, `/ n`, then to f32 (`ggml_vec_cvar_f32`);
/// scale = `1 / sqrt(variance + eps)` in f32.
pub fn layer_norm(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32, width: usize) {
    let n = w.len();
    let mut sq = [0f32; 16];
    for (o, xr) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() as f32 / n as f32;
        let mut sum2 = 0f64;
        let full = n / width * width;
        for (oc, xc) in o[..full].chunks_exact_mut(width).zip(xr.chunks_exact(width)) {
            for ((q, y), &v) in sq.iter_mut().zip(oc.iter_mut()).zip(xc) {
                *y = v - mean;
                *q = *y * *y;
            }
            let mut lanes = width;
            while lanes > 1 {
                lanes /= 2;
                for i in 0..lanes {
                    sq[i] += sq[i + lanes];
                }
            }
            sum2 += sq[0] as f64;
        }
        for (y, &v) in o[full..].iter_mut().zip(&xr[full..]) {
            *y = v - mean;
            sum2 += (*y * *y) as f64;
        }
        let scale = 1.0 / ((sum2 / n as f64) as f32 + eps).sqrt();
        for ((o, &wv), &bv) in o.iter_mut().zip(w).zip(b) {
            *o = (*o * scale) * wv + bv;
        }
    }
}

/// In-place RMSNorm of each `w.len()`-sized row of `x` (used for per-head q/k norms).
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for xr in x.chunks_exact_mut(n) {
        let scale = rms_scale(xr, eps);
        for (xv, &wv) in xr.iter_mut().zip(w) {
            *xv = (*xv * scale) * wv;
        }
    }
}

/// llama.cpp's L2 norm of the gated DeltaNet's q and k (`build_gdn_l2_norm`):
/// `rms_norm(x, eps/n) · 1/sqrt(n)` on each row of `n` values, i.e. `x / sqrt(Σx² + eps)` with
/// ggml's two roundings (the RMS scale, then the constant).
pub fn l2_norm_rows(x: &mut [f32], n: usize, eps: f32) {
    let (eps_n, c) = (eps / n as f32, 1.0 / (n as f32).sqrt());
    for r in x.chunks_exact_mut(n) {
        let s = rms_scale(r, eps_n);
        r.iter_mut().for_each(|v| *v = (*v * s) * c);
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    1.0 / (mean_square(x) + eps).sqrt()
}

/// ggml's mean of the squares, `(f32)(Σ (f64)(x[i]·x[i]) / n)`: each square rounded in f32, then
/// summed in double in order — one chain of dependent double adds (~0.5 µs for 576 values, on the
/// critical path of every decoded token). Summed in 8 independent chains instead, the result is
/// the same whenever the rounding to f32 cannot tell the two sums apart: the terms are
/// non-negative, so both sums are within (n + 8)·2⁻⁵³ of the exact one, relatively (Higham,
/// recursive summation), and the mean, monotone in the sum, is the same f32 at both ends of a
/// wider interval around the fast sum. About one row in 10⁵ lands near an f32 rounding boundary
/// and takes the in-order chain (`mean_square_in_order`).
fn mean_square(x: &[f32]) -> f32 {
    mean_square_in_chains(x).unwrap_or_else(|| mean_square_in_order(x))
}

/// `mean_square` from the 8-chain sum, or None where that sum cannot decide the f32 mean.
fn mean_square_in_chains(x: &[f32]) -> Option<f32> {
    let n = x.len() as f64;
    let mut acc = [0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v * v) as f64;
        }
    }
    let mut sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &v in chunks.remainder() {
        sum += (v * v) as f64;
    }
    if sum == 0.0 {
        // every square +0: the in-order sum is +0 too
        return Some(0.0);
    }
    if !sum.is_finite() {
        return None;
    }
    // 4× the bound above, in units of f64::EPSILON (2⁻⁵²), covers the roundings of sum ± d too
    let d = sum * ((2.0 * n + 16.0) * f64::EPSILON);
    let (lo, hi) = (((sum - d) / n) as f32, ((sum + d) / n) as f32);
    (lo == hi).then_some(lo)
}

/// `mean_square` as ggml sums it: in order (the reference, and the rows near a boundary).
fn mean_square_in_order(x: &[f32]) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    (sum / x.len() as f64) as f32
}

/// `x += y` elementwise (residual connections).
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `out = Σ_j w[j] · rows[j]` over the k rows of `rows` ([k][n]), as llama.cpp's MoE aggregate:
/// each weighted row rounded on its own (ggml_mul), then added left to right (ggml_add chain).
pub fn weighted_sum(out: &mut [f32], rows: &[f32], w: &[f32]) {
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        let mut acc = rows[i] * w[0];
        for (j, &wj) in w.iter().enumerate().skip(1) {
            let p = rows[j * n + i] * wj;
            acc += p;
        }
        *o = acc;
    }
}

/// Add a bias ([n]) to every row of `x` ([n_rows][n]).
pub fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        add_inplace(row, b);
    }
}

pub fn scale_inplace(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// SwiGLU: `gate = silu(gate) * up` (llama.cpp's ffn_gate_par with SILU) on rows of `n_ff`.
/// ggml_vec_swiglu_f32 computes silu(x) = x / (1 + e^-x) with its vector exp on whole groups of
/// the build's vector width from the start of each row and with the C library's expf on the rest.
/// The scalar emulation of an AVX-512 build's vector SwiGLU ([`ggml_expf`], groups of 16): the
/// scalar table's, and the reference of the AVX-512 table's.
pub fn swiglu_scalar(gate: &mut [f32], up: &[f32], n_ff: usize) {
    with_fma!(swiglu_avx512_body(gate, up, n_ff))
}

/// The scalar emulation of an AVX2 build's vector SwiGLU ([`ggml_expf_avx2`], groups of 8): the
/// reference of the AVX2 table's.
pub fn swiglu_scalar_avx2(gate: &mut [f32], up: &[f32], n_ff: usize) {
    with_fma!(swiglu_avx2_body(gate, up, n_ff))
}

#[inline(always)]
fn swiglu_avx512_body(gate: &mut [f32], up: &[f32], n_ff: usize) {
    swiglu_body(gate, up, n_ff, 16, ggml_expf)
}

#[inline(always)]
fn swiglu_avx2_body(gate: &mut [f32], up: &[f32], n_ff: usize) {
    swiglu_body(gate, up, n_ff, 8, ggml_expf_avx2)
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32], n_ff: usize, width: usize, expf: impl Fn(f32) -> f32) {
    for (gr, ur) in gate.chunks_exact_mut(n_ff).zip(up.chunks_exact(n_ff)) {
        let simd = n_ff / width * width;
        for (i, (g, &u)) in gr.iter_mut().zip(ur).enumerate() {
            let x = *g;
            let e = if i < simd { expf(-x) } else { (-x).exp() };
            *g = x / (1.0 + e) * u;
        }
    }
}

/// The scalar emulations of `orders`' softmax and SwiGLU: what a table with those orders must
/// give bit for bit.
pub fn reference(orders: SumOrders) -> (SoftmaxFn, SwigluFn) {
    match orders {
        SumOrders::Avx512 => (softmax_scalar, swiglu_scalar),
        SumOrders::Avx2 => (softmax_scalar_avx2, swiglu_scalar_avx2),
    }
}

/// ggml's vectorised expf (ggml-cpu vec.h `ggml_v_expf`, AVX-512 variant, from ARM's optimized
/// routines), one lane: a degree-5 polynomial on the reduced argument, scaled by 2^n. It differs
/// from the C library's expf in the last bit for some inputs, and llama.cpp uses it in softmax and
/// SiLU, so we use it there too. Every `mul_add` is one of its fused multiply-adds.
#[inline(always)]
pub fn ggml_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(c(0x3fb8_aa3b), r); // x·log2(e) + r
    let n = z - r;
    // b = x - n·ln2, with ln2 split in two parts (fnmadd = fma(-a, b, c)).
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // _mm512_scalef_ps(j, n) = j·2^n, rounded once (n is an integer in [-192, 192]).
    // 2^n built from its exponent bits: exact, and no libm call in the hot loop.
    (j as f64 * f64::from_bits(((n as i64 + 1023) as u64) << 52)) as f32
}

/// ggml's vectorised expf of an AVX2 build (vec.h `ggml_v_expf(__m256)`), one lane: the same
/// reduction and polynomial as [`ggml_expf`] but without the polynomial's constant term, scaled as
/// `fma(j, 2^n, 2^n)` with 2^n built in the exponent bits; for |n| > 126 the scale is split in two
/// factors (`fma(s2, j, s2) · s1`), for |n| > 192 the result saturates (`s1 · s1`). It rounds
/// differently from the AVX-512 variant for about a quarter of all inputs.
#[inline(always)]
pub fn ggml_expf_avx2(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    // the integer n sits in z's low mantissa bits: shifted into the exponent field (wrapping),
    // plus the bits of 1.0, it is 2^n
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    // `!(|n| > 126)` rather than `|n| <= 126`: a NaN takes this branch, as in ggml
    if n.abs().partial_cmp(&126.0) != Some(std::cmp::Ordering::Greater) {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves added pairwise (8, then 4), then lanes
/// {0+2, 1+3}, then the two.
#[inline]
fn reduce_add16(v: &[f32; 16]) -> f32 {
    let mut t8 = [0f32; 8];
    for i in 0..8 {
        t8[i] = v[i + 8] + v[i];
    }
    let mut t4 = [0f32; 4];
    for i in 0..4 {
        t4[i] = t8[i + 4] + t8[i];
    }
    let (a, b) = (t4[0] + t4[2], t4[1] + t4[3]);
    a + b
}

/// GELU (tanh approximation) gated: `gate = gelu(gate) * up`.
/// ggml evaluates GELU through a table indexed by the f16 value of x and storing f16 results
/// (GGML_GELU_FP16), so x and gelu(x) are both rounded to f16; |x| ≥ 10 bypasses the table.
/// The table's `gelu` kernel (a vector gather where the CPU has one, `gelu_scalar` else).
pub fn geglu_inplace(gate: &mut [f32], up: &[f32]) {
    (super::kernels().gelu)(gate, Some(up), gelu_table())
}

/// GELU (tanh approximation) in place: ggml_gelu through the same f16 table as `geglu_inplace`.
pub fn gelu_inplace(x: &mut [f32]) {
    (super::kernels().gelu)(x, None, gelu_table())
}

/// `GeluFn` of the scalar table, and the reference of the SIMD ones: `x = gelu(x)` (· `up`) one
/// value at a time through `t`.
pub fn gelu_scalar(x: &mut [f32], up: Option<&[f32]>, t: &[u16]) {
    super::shared::gelu_check(x, up, t);
    match up {
        Some(up) => x.iter_mut().zip(up).for_each(|(g, &u)| *g = gelu_f16_table(t, *g) * u),
        None => x.iter_mut().for_each(|v| *v = gelu_f16_table(t, *v)),
    }
}

/// ggml's table: gelu of every f16 value, stored as f16 (built on first use, 128 KiB), then one
/// entry of padding: a SIMD kernel gathers 32 bits at entry i and keeps the low 16.
pub fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<u16> =
            (0..=u16::MAX).map(|h| f16::from_f32(gelu(f16::from_bits(h).to_f32())).to_bits()).collect();
        t.push(0);
        t
    })
}

/// Where `GeluFn` kernels leave the table (as `ggml_vec_gelu_f32` does): x ≤ −10 gives 0 and
/// x ≥ 10 gives x; anything else, NaN included, is looked up.
pub const GELU_TABLE_BOUND: f32 = 10.0;

#[inline]
fn gelu_f16_table(t: &[u16], x: f32) -> f32 {
    if x <= -GELU_TABLE_BOUND {
        0.0
    } else if x >= GELU_TABLE_BOUND {
        x
    } else {
        f16::from_bits(t[f16::from_f32(x).to_bits() as usize]).to_f32()
    }
}

/// ggml_gelu_f32 as GCC compiles it for llama.cpp's table: `1 + a·x·x` contracted into one FMA
/// (which decides the f16 rounding of a few table entries, e.g. x = -1.999).
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (GELU_COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// Softmax of `x` in place after `x * scale`; entries equal to -inf stay 0.
/// Like ggml's soft_max (ggml_vec_soft_max_f32, AVX-512): max subtraction, [`ggml_expf`] on groups
/// of 16 from the start of the row, each group summed in f32 (`_mm512_reduce_add_ps`) and the
/// group sums accumulated in double, then multiplied by (float)(1/sum). llama.cpp's rows are
/// padded with masked (-inf → 0) entries to a multiple of 256, so the last group never takes
/// its scalar tail; a partial last group here is padded with zeros, which sum the same.
/// The scalar emulation of an AVX-512 build's vector softmax: the scalar table's, and the reference
/// of the AVX-512 table's.
pub fn softmax_scalar(x: &mut [f32], scale: f32) {
    with_fma!(softmax_avx512_body(x, scale, None))
}

/// The scalar emulation of an AVX2 build's vector softmax (`ggml_vec_soft_max_f32`'s
/// `__AVX2__ && __FMA__` branch): [`ggml_expf_avx2`], chunks of 8 summed as its `hsum`
/// (`((e0+e4)+(e2+e6)) + ((e1+e5)+(e3+e7))`) into the f64 sum. The reference of the AVX2 table's.
pub fn softmax_scalar_avx2(x: &mut [f32], scale: f32) {
    with_fma!(softmax_avx2_body(x, scale, None))
}

/// ggml_soft_max (scale 1, no mask) of a short row of any length, as `ggml_vec_soft_max_f32`
/// computes it: whole vectors of the build's width (`orders`) with its vector expf, summed as its
/// horizontal add, the rest of the row with the C library's expf one by one, all into an f64
/// sum; then `x · (float)(1/sum)`. (Attention rows are padded to whole vectors: see
/// [`softmax_scalar`]; this is for rows that are not, like a MoE router's chosen logits.)
pub fn softmax_row(x: &mut [f32], orders: SumOrders) {
    with_fma!(softmax_row_body(x, orders))
}

#[inline(always)]
fn softmax_row_body(x: &mut [f32], orders: SumOrders) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| if m > v { m } else { v });
    let w = orders.vector_width();
    let whole = x.len() / w * w;
    let mut sum = exp_sum_tile_body(&mut x[..whole], max, orders);
    for v in &mut x[whole..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    scale_inplace(x, (1.0 / sum) as f32);
}

/// `ggml_vec_soft_max_f32(n, x, x, max)` as flash attention's tiles call it: `x = exp(x − max)`
/// in place by the build's vector expf (`orders`), in whole vectors (a tile is 64 keys), each
/// vector summed by its horizontal add into the returned f64 sum. −inf entries become 0.
pub fn exp_sum_tile(x: &mut [f32], max: f32, orders: SumOrders) -> f64 {
    with_fma!(exp_sum_tile_body(x, max, orders))
}

#[inline(always)]
fn exp_sum_tile_body(x: &mut [f32], max: f32, orders: SumOrders) -> f64 {
    let w = orders.vector_width();
    assert!(x.len().is_multiple_of(w), "exp_sum_tile: whole vectors only");
    let mut sum = 0.0f64;
    for chunk in x.chunks_exact_mut(w) {
        for v in chunk.iter_mut() {
            *v = match orders {
                SumOrders::Avx512 => ggml_expf(*v - max),
                SumOrders::Avx2 => ggml_expf_avx2(*v - max),
            };
        }
        sum += match orders {
            SumOrders::Avx512 => reduce_add16((&*chunk).try_into().expect("16 lanes")),
            SumOrders::Avx2 => {
                let e: &[f32; 8] = (&*chunk).try_into().expect("8 lanes");
                ((e[0] + e[4]) + (e[2] + e[6])) + ((e[1] + e[5]) + (e[3] + e[7]))
            }
        } as f64;
    }
    sum
}

/// The orthonormal Walsh-Hadamard rotation of every row of `n` elements of `x` (n a power of 2),
/// as ggml's `fwht` computes llama.cpp's `llama_mul_mat_hadamard`: each element times
/// `1/sqrtf(n)`, then the butterflies `(u + v, u − v)` over spans 1, 2, 4, … n/2. llama.cpp
/// rotates Q and K when the K cache is quantized, V and the attention output when the V cache is.
pub fn fwht_rows(x: &mut [f32], n: usize) {
    assert!(n.is_power_of_two() && x.len().is_multiple_of(n), "fwht: rows of a power of 2");
    let scale = 1.0 / (n as f32).sqrt();
    for row in x.chunks_exact_mut(n) {
        row.iter_mut().for_each(|v| *v *= scale);
        let mut len = 1;
        while len < n {
            for i in (0..n).step_by(2 * len) {
                for j in i..i + len {
                    let (u, v) = (row[j], row[j + len]);
                    row[j] = u + v;
                    row[j + len] = u - v;
                }
            }
            len *= 2;
        }
    }
}

/// glibc's `expf` (2.28 and later, from ARM's optimized routines) as its x86-64 FMA variant
/// (`__expf_fma`) computes it, which is what llama.cpp's scalar `expf` calls run on a machine with
/// FMA: x·N/ln2 = k + r in double (N = 32, both products fused), 2^(k/N) from a 32-entry table and
/// the exponent bits, a degree-3 polynomial in r (fused), one product, rounded to float once.
/// |x| ≥ 88 (overflow, underflow, infinities, NaN) is left to the C library itself. Equal to the
/// library's `expf` on every input (tested over a dense sweep), so vector code can use it.
pub mod glibc_expf {
    /// `__exp2f_data.invln2_scaled`, `shift`, `poly_scaled` and `tab`.
    pub const INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
    pub const SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
    pub const C: [f64; 3] = [
        f64::from_bits(0x3ebc_6af8_4b91_2394),
        f64::from_bits(0x3f2e_bfce_50fa_c4f3),
        f64::from_bits(0x3f96_2e42_ff0c_52d6),
    ];
    pub const T: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// The exponent field at and above which the library's special cases take over (88.0).
    pub const SPECIAL_TOP: u32 = 0x42b;

    /// One value; needs FMA to be fast (`mul_add` on f64).
    #[inline(always)]
    pub fn expf(x: f32) -> f32 {
        if (x.to_bits() >> 20) & 0x7ff >= SPECIAL_TOP {
            return x.exp();
        }
        let xd = x as f64;
        let kd0 = INV_LN2_N.mul_add(xd, SHIFT);
        let ki = kd0.to_bits();
        let kd = kd0 - SHIFT;
        let r = INV_LN2_N.mul_add(xd, -kd);
        let t = T[(ki & 31) as usize].wrapping_add(ki << 47);
        let z = r.mul_add(C[0], C[1]);
        let r2 = r * r;
        let y = r.mul_add(C[2], 1.0);
        (z.mul_add(r2, y) * f64::from_bits(t)) as f32
    }
}

/// The OpenAI-style SwiGLU (`ggml_swiglu_oai`, llama.cpp's LLM_FFN_SWIGLU_OAI_MOE): with the gate
/// clamped above at `limit` and the linear part to ±`limit`,
/// `gate = gate/(1 + e^(−alpha·gate)) · (up + 1)` (ggml's scalar loop, the C library's expf).
/// gate, up: [n]
pub fn swiglu_oai(gate: &mut [f32], up: &[f32], alpha: f32, limit: f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        // std::min(x, limit) and std::clamp(y, -limit, limit), NaNs passing through as in C++
        let x = if limit < *g { limit } else { *g };
        let y = if u < -limit {
            -limit
        } else if limit < u {
            limit
        } else {
            u
        };
        let glu = x / (1.0 + (alpha * -x).exp());
        *g = glu * (y + 1.0);
    }
}

/// Softmax of `x` in place after `x * scale` with an attention sink: `sink` is one more logit in
/// the denominator, not scaled and not in the row (ggml_soft_max_ext with
/// `ggml_soft_max_add_sinks`: the row's maximum raised to the sink, and after the row's chunked
/// sum `+ expf(sink − max)` with the C library's expf). `orders` picks the build whose vector
/// softmax the row's part follows (that of [`softmax_scalar`] or [`softmax_scalar_avx2`]).
pub fn softmax_sink(x: &mut [f32], scale: f32, sink: f32, orders: SumOrders) {
    match orders {
        SumOrders::Avx512 => with_fma!(softmax_avx512_body(x, scale, Some(sink))),
        SumOrders::Avx2 => with_fma!(softmax_avx2_body(x, scale, Some(sink))),
    }
}

#[inline(always)]
fn softmax_avx512_body(x: &mut [f32], scale: f32, sink: Option<f32>) {
    softmax_body::<16>(x, scale, sink, ggml_expf, reduce_add16)
}

#[inline(always)]
fn softmax_avx2_body(x: &mut [f32], scale: f32, sink: Option<f32>) {
    softmax_body::<8>(x, scale, sink, ggml_expf_avx2, |e: &[f32; 8]| {
        ((e[0] + e[4]) + (e[2] + e[6])) + ((e[1] + e[5]) + (e[3] + e[7]))
    })
}

#[inline(always)]
fn softmax_body<const W: usize>(
    x: &mut [f32],
    scale: f32,
    sink: Option<f32>,
    expf: impl Fn(f32) -> f32,
    reduce: impl Fn(&[f32; W]) -> f32,
) {
    let mut max = f32::NEG_INFINITY;
    for v in x.iter_mut() {
        *v *= scale;
        max = max.max(*v);
    }
    if let Some(s) = sink {
        // C's MAX(max, sink)
        max = if max > s { max } else { s };
    }
    let mut sum = 0.0f64;
    for chunk in x.chunks_mut(W) {
        let mut e = [0f32; W];
        for (ei, v) in e.iter_mut().zip(chunk.iter_mut()) {
            *ei = expf(*v - max);
            *v = *ei;
        }
        sum += reduce(&e) as f64;
    }
    if let Some(s) = sink {
        sum += (s - max).exp() as f64;
    }
    let inv = (1.0 / sum) as f32;
    scale_inplace(x, inv);
}

/// Soft-capping `cap · tanh(x / cap)` (final logits; attention scores before the softmax), as
/// llama.cpp's graph computes it: `ggml_scale(x, 1/cap)` (a product by the f32 reciprocal, which
/// rounds differently from a division), `ggml_tanh` (the C library's tanhf, scalar in ggml too),
/// `ggml_scale(·, cap)`.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x {
        *v = (*v * inv).tanh() * cap;
    }
}

/// Logistic sigmoid in place: ggml's `op_sigmoid`, `1 / (1 + expf(-x))` with the C library's expf.
pub fn sigmoid_inplace(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}

/// ggml's `op_softplus`: `log(1 + e^x)`, or x itself above 20 (where the two agree in f32).
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

/// SiLU `x / (1 + e^-x)` in place on each row of `row` values: `ggml_vec_silu_f32`, which takes its
/// vector exp (`ggml_v_expf` of the build in `orders`) on whole groups of the vector width from
/// the start of the row and the C library's expf on the rest.
pub fn silu_rows(x: &mut [f32], row: usize, orders: SumOrders) {
    with_fma!(silu_rows_body(x, row, orders))
}

#[inline(always)]
fn silu_rows_body(x: &mut [f32], row: usize, orders: SumOrders) {
    let (width, expf): (usize, fn(f32) -> f32) = match orders {
        SumOrders::Avx512 => (16, ggml_expf),
        SumOrders::Avx2 => (8, ggml_expf_avx2),
    };
    for r in x.chunks_exact_mut(row) {
        let simd = row / width * width;
        for (i, v) in r.iter_mut().enumerate() {
            let e = if i < simd { expf(-*v) } else { (-*v).exp() };
            *v /= 1.0 + e;
        }
    }
}

/// `ggml_vec_dot_f32` of the build in `orders`: four accumulators of the vector width over steps
/// of four vectors (FMA, element e in accumulator (e mod 4L)/L, lane e mod L), combined as
/// `GGML_F32_VEC_REDUCE` does ((a0+a2)+(a1+a3), then the lanes), then the elements past the last
/// whole step added in f32 as GCC compiles that loop ([`ggml_f32_tail`]).
pub fn ggml_vec_dot_f32(orders: SumOrders, x: &[f32], y: &[f32]) -> f32 {
    with_fma!(vec_dot_f32_body(orders, x, y))
}

#[inline(always)]
fn vec_dot_f32_body(orders: SumOrders, x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let l = match orders {
        SumOrders::Avx512 => 16,
        SumOrders::Avx2 => 8,
    };
    let np = n & !(4 * l - 1);
    let mut acc = [[0f32; 16]; 4];
    for i in (0..np).step_by(4 * l) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (e, lane) in a.iter_mut().enumerate().take(l) {
                let k = i + j * l + e;
                *lane = x[k].mul_add(y[k], *lane);
            }
        }
    }
    let v: [f32; 16] = std::array::from_fn(|e| (acc[0][e] + acc[2][e]) + (acc[1][e] + acc[3][e]));
    let sum = match orders {
        SumOrders::Avx512 => reduce_add16(&v),
        // low half + high half, then two `_mm_hadd_ps`
        SumOrders::Avx2 => {
            let t: [f32; 4] = std::array::from_fn(|e| v[e] + v[e + 4]);
            (t[0] + t[1]) + (t[2] + t[3])
        }
    };
    ggml_f32_tail(orders, sum, &x[np..n], &y[np..n])
}

/// `acc + Σ x[i]·y[i]` as GCC (-O3, FMA contraction) compiles ggml's scalar loops
/// `sum += x[i]*y[i]` (the tail of `ggml_vec_dot_f32`, `ssm_conv`'s row dot) for the build in
/// `orders`: it vectorizes the products of whole vectors (AVX2: groups of 8, then one of 4;
/// AVX-512: groups of 16, then one of 8), rounds them and adds them one by one in order; the last
/// few (< 4, < 8) are fused multiply-adds. Read from the disassembly of llama.cpp's AVX2 and
/// AVX-512 builds (`ggml_vec_dot_f32`, `ggml_compute_forward_ssm_conv_f32`).
#[inline(always)]
pub fn ggml_f32_tail(orders: SumOrders, mut acc: f32, x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    // the products rounded before their add: every whole vector of the narrowest width used
    let unfused = match orders {
        SumOrders::Avx512 => n & !7,
        SumOrders::Avx2 => n & !3,
    };
    for j in 0..unfused {
        acc += x[j] * y[j];
    }
    for j in unfused..n {
        acc = x[j].mul_add(y[j], acc);
    }
    acc
}

/// How a head's dimensions are paired for rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    /// Adjacent pairs (2i, 2i+1): llama.cpp's LLAMA_ROPE_TYPE_NORM (the converter permutes q/k for it).
    Norm,
    /// Split halves (i, i + n_rot/2): GPT-NeoX style (LLAMA_ROPE_TYPE_NEOX).
    Neox,
}

/// Rotary position parameters of one layer.
#[derive(Clone, Copy, Debug)]
pub struct Rope<'a> {
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub kind: RopeType,
    /// llama3-style per-pair frequency divisors ([n_rot/2]), from `rope_freqs.weight` (or
    /// LongRoPE's `rope_factors_short`/`rope_factors_long`).
    pub freq_factors: Option<&'a [f32]>,
    /// ggml's `attn_factor` (YaRN's mscale): cos and sin are multiplied by it before the
    /// rotation, so it scales Q·K by its square. 1.0 for most models (a product by 1 is exact). With `yarn`, YaRN's own
    /// `attn_factor` takes its place.
    pub attn_factor: f32,
    /// ggml_rope_ext's YaRN parameters, when the model scales rope that way.
    pub yarn: Option<Yarn>,
}

/// The YaRN part of ggml_rope_ext (`rope_yarn`): pairs below `corr_dims[0]` keep their
/// extrapolated (unscaled) angle, pairs above `corr_dims[1]` take the interpolated one
/// (`freq_scale`·angle), the ones between a linear mix; cos and sin are scaled by
/// `attn_factor·(1 + 0.1·ln(1/freq_scale))`.
#[derive(Clone, Copy, Debug)]
pub struct Yarn {
    /// How much of the ramp's extrapolation is mixed in (llama.cpp's yarn_ext_factor: 1 for YaRN).
    pub ext_factor: f32,
    /// llama.cpp's yarn_attn_factor (what the context passes to ggml_rope_ext).
    pub attn_factor: f32,
    /// First and last pair of the ramp (`ggml_rope_yarn_corr_dims`).
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// YaRN as llama.cpp sets it up for a model with rope scaling type "yarn": ext_factor 1,
    /// attn_factor = get_mscale(factor)·1/(1 + 0.1·ln factor)·`rope_attn_factor` (llama_context's
    /// arithmetic: plain f32, libllama is built without FMA), the correction dims of
    /// `beta_fast`/`beta_slow` for the `n_ctx_orig` positions the model was trained on.
    pub fn llama(
        n_rot: usize,
        n_ctx_orig: usize,
        freq_base: f32,
        freq_scale: f32,
        beta_fast: f32,
        beta_slow: f32,
        rope_attn_factor: f32,
    ) -> Yarn {
        let factor = 1.0 / freq_scale;
        let get_mscale = |scale: f32, mscale: f32| if scale <= 1.0 { 1.0 } else { 0.1 * mscale * scale.ln() + 1.0 };
        let mut attn_factor = get_mscale(factor, 1.0);
        // cancels the factor ggml's rope_yarn multiplies in (llama.cpp PR 17945)
        attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
        attn_factor *= rope_attn_factor;
        Yarn {
            ext_factor: 1.0,
            attn_factor,
            corr_dims: yarn_corr_dims(n_rot, n_ctx_orig, freq_base, beta_fast, beta_slow),
        }
    }
}

/// `ggml_rope_yarn_corr_dims`: the pairs whose wavelength spans `beta_fast` and `beta_slow`
/// rotations over the `n_ctx_orig` trained positions, floored and ceiled, clamped to the pairs.
pub fn yarn_corr_dims(n_dims: usize, n_ctx_orig: usize, freq_base: f32, beta_fast: f32, beta_slow: f32) -> [f32; 2] {
    // ggml_rope_yarn_corr_dim: n_dims·ln(n_ctx_orig / (n_rot·2π)) / (2·ln base)
    let corr_dim = |n_rot: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln() / (2.0 * freq_base.ln())
    };
    let (start, end) = (corr_dim(beta_fast).floor(), corr_dim(beta_slow).ceil());
    [if 0.0 > start { 0.0 } else { start }, if (n_dims - 1) as f32 > end { end } else { (n_dims - 1) as f32 }]
}

impl Rope<'_> {
    /// Rotate every head (`head_dim` wide) of one token's vector `x` ([n_heads][head_dim]) for
    /// position `pos`: `angles` then `rotate`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let mut angles = vec![(0.0, 0.0); self.n_rot / 2];
        self.angles(pos, &mut angles);
        self.rotate(x, head_dim, &angles);
    }

    /// (sin, cos) of each pair's angle at position `pos` ([n_rot/2]), times the attention
    /// factor. Angles follow ggml's rope cache: theta_base starts at pos and is multiplied by
    /// theta_scale = base^(-2/n_rot) once per pair (repeated f32 products, not powf per pair).
    pub fn angles(&self, pos: usize, out: &mut [(f32, f32)]) {
        with_fma!(rope_angles(self, pos, out))
    }

    /// `angles` of each position of `pos`, one row of n_rot/2 after another.
    /// out: [pos.len()][n_rot/2]
    pub fn angle_rows(&self, pos: &[u32], out: &mut [(f32, f32)]) {
        let half = self.n_rot / 2;
        if half == 0 {
            return;
        }
        for (&p, row) in pos.iter().zip(out.chunks_exact_mut(half)) {
            self.angles(p as usize, row);
        }
    }

    /// Rotates every head of one token's vector `x` ([n_heads][head_dim]) by `angles`
    /// ([n_rot/2], from `angles`).
    pub fn rotate(&self, x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
        with_fma!(rope_rotate(self, x, head_dim, angles))
    }

    /// What `angles` reads of the rope (not the pairing, `kind`, which is `rotate`'s): two ropes
    /// with equal keys give the same angles at every position. Frequency factors count by
    /// address (a model's own tensor).
    pub fn angle_key(&self) -> RopeKey {
        RopeKey {
            n_rot: self.n_rot,
            bits: [self.freq_base, self.freq_scale, self.attn_factor].map(f32::to_bits),
            freq_factors: self.freq_factors.map(|f| (f.as_ptr() as usize, f.len())),
            yarn: self.yarn.map(|y| [y.ext_factor, y.attn_factor, y.corr_dims[0], y.corr_dims[1]].map(f32::to_bits)),
        }
    }
}

/// `Rope::angle_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeKey {
    n_rot: usize,
    bits: [u32; 3],
    freq_factors: Option<(usize, usize)>,
    yarn: Option<[u32; 4]>,
}

#[inline(always)]
fn rope_angles(r: &Rope, pos: usize, out: &mut [(f32, f32)]) {
    let theta_scale = r.freq_base.powf(-2.0 / r.n_rot as f32);
    let mut theta_base = pos as f32;
    for (i, o) in out[..r.n_rot / 2].iter_mut().enumerate() {
        let ff = r.freq_factors.map_or(1.0, |f| f[i]);
        *o = match &r.yarn {
            None => {
                let theta = r.freq_scale * (theta_base / ff);
                // ggml's rope_yarn: `cosf(theta) * mscale`, `sinf(theta) * mscale`
                (theta.sin() * r.attn_factor, theta.cos() * r.attn_factor)
            }
            Some(y) => rope_yarn(theta_base / ff, r.freq_scale, y, i),
        };
        theta_base *= theta_scale;
    }
}

#[inline(always)]
fn rope_rotate(r: &Rope, x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
    let half = r.n_rot / 2;
    for (i, &(sin, cos)) in angles[..half].iter().enumerate() {
        let (a, b) = match r.kind {
            RopeType::Norm => (2 * i, 2 * i + 1),
            RopeType::Neox => (i, i + half),
        };
        for head in x.chunks_exact_mut(head_dim) {
            let (x0, x1) = (head[a], head[b]);
            // ggml's rotate_pairs as GCC contracts it (-ffp-contract=fast): the x0 products
            // are fused, the x1 products rounded first. Measured: bit-exact against
            // llama.cpp's roped Q/K, where unfused arithmetic is 1 ulp off in ~20%.
            head[a] = x0.mul_add(cos, -(x1 * sin));
            head[b] = x0.mul_add(sin, x1 * cos);
        }
    }
}

/// ggml's `rope_yarn` for pair `i`: (sin, cos) of the mixed angle, times mscale. The
/// multiply-adds GCC contracts in llama.cpp's build (ggml-cpu has FMA) are `mul_add`s here:
/// bit-exact against ggml_rope_ext (tests/kernels.rs `yarn_rope_matches_ggml`).
#[inline(always)]
fn rope_yarn(theta_extrap: f32, freq_scale: f32, y: &Yarn, i: usize) -> (f32, f32) {
    let theta_interp = freq_scale * theta_extrap;
    let mut theta = theta_interp;
    let mut mscale = y.attn_factor;
    if y.ext_factor != 0.0 {
        // rope_yarn_ramp: 1 below corr_dims[0], 0 above corr_dims[1], linear between (C's MIN/MAX)
        let [low, high] = y.corr_dims;
        let d = high - low;
        let t = (i as f32 - low) / if 0.001 > d { 0.001 } else { d };
        let t = if 0.0 > t { 0.0 } else { t };
        let ramp = 1.0 - if 1.0 < t { 1.0 } else { t };
        let ramp_mix = ramp * y.ext_factor;
        // GCC fuses the first product of `θ_interp·(1 − mix) + θ_extrap·mix` (measured: the other
        // pairing or none differ from ggml in ~5 % of the mixed pairs)
        theta = theta_interp.mul_add(1.0 - ramp_mix, theta_extrap * ramp_mix);
        // (fused or not, the same f32 for every factor tried: 1.5 to 64)
        mscale *= 0.1f32.mul_add((1.0 / freq_scale).ln(), 1.0);
    }
    (theta.sin() * mscale, theta.cos() * mscale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_table_equals_direct_evaluation() {
        for i in -2000..2000 {
            let x = i as f32 * 0.0061;
            let direct = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                f16::from_f32(gelu(f16::from_f32(x).to_f32())).to_f32()
            };
            assert_eq!(gelu_f16_table(gelu_table(), x).to_bits(), direct.to_bits(), "x = {x}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_masks() {
        let mut x = [1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax_scalar(&mut x, 0.5);
        assert_eq!(x[2], 0.0);
        let s: f32 = x.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        // softmax([0.5, 1.0, 0.25]) computed independently
        let e = [0.5f64.exp(), 1.0f64.exp(), 0.25f64.exp()];
        let t: f64 = e.iter().sum();
        assert!((x[1] as f64 - e[1] / t).abs() < 1e-6);
    }

    #[test]
    fn rope_norm_vs_neox_pairing() {
        // One head of 4 dims, base 10000, pos 1: pair 0 rotates by 1 rad, pair 1 by 0.01 rad.
        let r = Rope {
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            kind: RopeType::Norm,
            freq_factors: None,
            yarn: None,
            attn_factor: 1.0,
        };
        let mut x = [1.0, 0.0, 1.0, 0.0];
        r.apply(&mut x, 4, 1);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        let r = Rope { kind: RopeType::Neox, ..r };
        let mut x = [1.0, 1.0, 0.0, 0.0];
        r.apply(&mut x, 4, 1);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert!((x[1] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn softcap_follows_cap_tanh_and_rounds_as_ggml() {
        for cap in [5.0f32, 30.0, 50.0] {
            let xs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.37).collect();
            let mut y = xs.clone();
            softcap_inplace(&mut y, cap);
            for (&x, &v) in xs.iter().zip(&y) {
                // cap·tanh(x/cap) in f64: within a few f32 ulps, odd, bounded by cap
                let want = cap as f64 * (x as f64 / cap as f64).tanh();
                assert!((v as f64 - want).abs() <= 4.0 * f32::EPSILON as f64 * cap as f64, "cap {cap} x {x}");
                assert!(v.abs() <= cap);
            }
        }
        // ggml scales by the f32 reciprocal (ggml_scale(x, 1/cap)), not by a division: for cap 30
        // and x = 0.1 the two round apart, and ours is the product's value.
        let (x, cap) = (0.1f32, 30.0f32);
        assert_ne!((x * (1.0 / cap)).to_bits(), (x / cap).to_bits());
        let mut y = [x];
        softcap_inplace(&mut y, cap);
        assert_eq!(y[0].to_bits(), ((x * (1.0 / cap)).tanh() * cap).to_bits());
    }

    #[test]
    fn rope_attn_factor_scales_cos_and_sin() {
        let r = Rope {
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            kind: RopeType::Neox,
            freq_factors: Some(&[1.0, 4.0]),
            yarn: None,
            attn_factor: 1.25,
        };
        let mut x = [1.0, 1.0, 0.0, 0.0];
        r.apply(&mut x, 4, 3);
        // pair 0: angle 3, pair 1: 3·0.01/4; both rotated vectors 1.25 long
        assert!((x[0] - 1.25 * 3f32.cos()).abs() < 1e-6 && (x[2] - 1.25 * 3f32.sin()).abs() < 1e-6);
        assert!((x[1] - 1.25 * 0.0075f32.cos()).abs() < 1e-6 && (x[3] - 1.25 * 0.0075f32.sin()).abs() < 1e-6);
        // attn_factor 1 leaves the bits of a rope without it
        let one = Rope { attn_factor: 1.0, ..r };
        let (mut a, mut b) = ([0.3f32, -1.7, 2.2, 0.9], [0.3f32, -1.7, 2.2, 0.9]);
        one.apply(&mut a, 4, 11);
        let (t0, t1) = (11.0f32, 11.0f32 * 10000f32.powf(-0.5) / 4.0);
        for (i, t) in [(0, t0), (1, t1)] {
            let (x0, x1) = (b[i], b[i + 2]);
            b[i] = x0.mul_add(t.cos(), -(x1 * t.sin()));
            b[i + 2] = x0.mul_add(t.sin(), x1 * t.cos());
        }
        assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
    }

    #[test]
    fn mean_square_equals_the_in_order_sum() {
        // xorshift rows of several lengths and dynamic ranges (the chains decide them), rows whose
        // two sums differ, and rows whose mean sits on an f32 rounding boundary (the chains
        // cannot decide: the in-order sum does)
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for &n in &[1usize, 7, 8, 9, 64, 576, 2048, 4099] {
            for spread in [0i32, 8, 40, 120] {
                let row: Vec<f32> = (0..n)
                    .map(|_| {
                        let r = next();
                        let m = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                        m * 2f32.powi((r % (spread as u64 + 1)) as i32 - spread / 2)
                    })
                    .collect();
                assert_eq!(mean_square(&row).to_bits(), mean_square_in_order(&row).to_bits(), "n {n} spread {spread}");
                assert!(mean_square_in_chains(&row).is_some(), "n {n} spread {spread}: a row far from a boundary");
            }
        }
        // a large term then many tiny ones: in order, each tiny square is lost against the large
        // sum; in 8 chains the tiny ones add up first, so the two sums differ (the mean must not)
        let mut differ = 0;
        for k in 0..64 {
            let mut row = vec![2f32.powi(-30) * (1.0 + k as f32 / 64.0); 4096];
            row[0] = 1.0 + k as f32 * 2f32.powi(-20);
            let in_order: f64 = row.iter().map(|&v| (v * v) as f64).sum();
            let mut chains = [0f64; 8];
            for (i, &v) in row.iter().enumerate() {
                chains[i % 8] += (v * v) as f64;
            }
            differ += usize::from(chains.iter().sum::<f64>() != in_order);
            assert_eq!(mean_square(&row).to_bits(), mean_square_in_order(&row).to_bits(), "k {k}");
        }
        assert!(differ > 32, "the rows meant to sum differently in 8 chains summed alike");
        // 1 + 2⁻²⁴ (2⁻¹² squared) over 8 values: the mean is exactly halfway between two f32s
        for n in [8, 16, 1024] {
            let mut row = vec![0.0f32; n];
            (row[0], row[n / 2]) = (1.0, 2f32.powi(-12));
            assert_eq!(mean_square_in_chains(&row), None, "n {n}: a mean on a rounding boundary");
            assert_eq!(mean_square(&row).to_bits(), mean_square_in_order(&row).to_bits(), "n {n}");
        }
        assert_eq!(mean_square(&[0.0, -0.0, 0.0]).to_bits(), 0f32.to_bits());
        assert!(mean_square(&[1.0, f32::NAN]).is_nan());
        assert_eq!(mean_square(&[f32::MAX; 9]), f32::INFINITY);
    }

    #[test]
    fn rms_norm_unit_weight() {
        let x = [3.0, 4.0];
        let mut o = [0.0; 2];
        rms_norm(&mut o, &x, &[1.0, 1.0], 0.0);
        // rms = sqrt((9+16)/2)
        let r = (12.5f32).sqrt();
        assert!((o[0] - 3.0 / r).abs() < 1e-6 && (o[1] - 4.0 / r).abs() < 1e-6);
    }
}
