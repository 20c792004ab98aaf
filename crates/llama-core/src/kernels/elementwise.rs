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

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    // ggml: `sum += (ggml_float)(x[i]*x[i])`: the square is rounded in f32, then summed in double.
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `x += y` elementwise (residual connections).
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
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
pub fn geglu_inplace(gate: &mut [f32], up: &[f32]) {
    let t = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_f16_table(t, *g) * u;
    }
}

/// ggml's table: gelu of every f16 value, stored as f16 (built on first use, 128 KiB).
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|h| f16::from_f32(gelu(f16::from_bits(h).to_f32())).to_bits()).collect())
}

#[inline]
fn gelu_f16_table(t: &[u16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
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
    with_fma!(softmax_avx512_body(x, scale))
}

/// The scalar emulation of an AVX2 build's vector softmax (`ggml_vec_soft_max_f32`'s
/// `__AVX2__ && __FMA__` branch): [`ggml_expf_avx2`], chunks of 8 summed as its `hsum`
/// (`((e0+e4)+(e2+e6)) + ((e1+e5)+(e3+e7))`) into the f64 sum. The reference of the AVX2 table's.
pub fn softmax_scalar_avx2(x: &mut [f32], scale: f32) {
    with_fma!(softmax_avx2_body(x, scale))
}

#[inline(always)]
fn softmax_avx512_body(x: &mut [f32], scale: f32) {
    softmax_body::<16>(x, scale, ggml_expf, reduce_add16)
}

#[inline(always)]
fn softmax_avx2_body(x: &mut [f32], scale: f32) {
    softmax_body::<8>(x, scale, ggml_expf_avx2, |e: &[f32; 8]| {
        ((e[0] + e[4]) + (e[2] + e[6])) + ((e[1] + e[5]) + (e[3] + e[7]))
    })
}

#[inline(always)]
fn softmax_body<const W: usize>(
    x: &mut [f32],
    scale: f32,
    expf: impl Fn(f32) -> f32,
    reduce: impl Fn(&[f32; W]) -> f32,
) {
    let mut max = f32::NEG_INFINITY;
    for v in x.iter_mut() {
        *v *= scale;
        max = max.max(*v);
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
    let inv = (1.0 / sum) as f32;
    scale_inplace(x, inv);
}

/// Final logit soft-capping: `cap * tanh(x / cap)`.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    for v in x {
        *v = (*v / cap).tanh() * cap;
    }
}

/// How a head's dimensions are paired for rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    /// Adjacent pairs (2i, 2i+1): LLaMA (its q/k were permuted by the converter to allow this).
    Norm,
    /// Split halves (i, i + n_rot/2): GPT-NeoX style, used by Qwen2 and Gemma.
    Neox,
}

/// ggml_rope_ext's scaling parameters beyond the frequency scale: YaRN's extrapolation mix and
/// the magnitude factor (llama.cpp's `cparams.yarn_*`, from the file's `rope.scaling.*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeExt {
    /// YaRN's mix of interpolated and extrapolated angles (0 = plain rope, 1 for YaRN).
    pub ext_factor: f32,
    /// cos and sin are multiplied by it (and by YaRN's 1 + 0.1·ln(1/freq_scale) when
    /// ext_factor ≠ 0).
    pub attn_factor: f32,
    /// YaRN's correction range: the pairs that rotate more than beta_fast (fully extrapolated) or
    /// fewer than beta_slow (fully interpolated) times over the original context.
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The context the model was trained with before scaling (`rope.scaling.original_context_length`).
    pub n_ctx_orig: usize,
}

impl RopeExt {
    /// Plain rope: no extrapolation mix, unit magnitude.
    pub const NONE: RopeExt =
        RopeExt { ext_factor: 0.0, attn_factor: 1.0, beta_fast: 32.0, beta_slow: 1.0, n_ctx_orig: 0 };

    /// ggml_rope_yarn_corr_dims: the first and last pair index (as floats) of YaRN's ramp.
    fn corr_dims(&self, n_rot: usize, freq_base: f32) -> [f32; 2] {
        // ggml_rope_yarn_corr_dim: the pair index rotating `n` times over n_ctx_orig positions.
        let dim = |n: f32| {
            n_rot as f32 * (self.n_ctx_orig as f32 / (n * 2.0 * std::f32::consts::PI)).ln() / (2.0 * freq_base.ln())
        };
        let (start, end) = (dim(self.beta_fast).floor(), dim(self.beta_slow).ceil());
        [start.max(0.0), end.min(n_rot as f32 - 1.0)]
    }
}

/// Rotary position parameters of one layer.
#[derive(Clone, Copy, Debug)]
pub struct Rope<'a> {
    pub n_rot: usize,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub kind: RopeType,
    /// llama3-style per-pair frequency divisors ([n_rot/2]), from `rope_freqs.weight`.
    pub freq_factors: Option<&'a [f32]>,
    /// YaRN and magnitude scaling (`RopeExt::NONE` unless the file asks for them).
    pub ext: RopeExt,
}

impl Rope<'_> {
    /// Rotate every head (`head_dim` wide) of one token's vector `x` ([n_heads][head_dim]) for
    /// position `pos`. Angles follow ggml's rope cache: theta_base starts at pos and is multiplied
    /// by theta_scale = base^(-2/n_rot) once per pair (repeated f32 products, not powf per pair).
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        with_fma!(rope_body(self, x, head_dim, pos))
    }
}

#[inline(always)]
fn rope_body(r: &Rope, x: &mut [f32], head_dim: usize, pos: usize) {
    {
        let theta_scale = r.freq_base.powf(-2.0 / r.n_rot as f32);
        let half = r.n_rot / 2;
        let ext = r.ext;
        // ggml's rope_yarn: with ext_factor ≠ 0 the magnitude grows by 1 + 0.1·ln(1/freq_scale),
        // and each pair's angle mixes the interpolated and the extrapolated one along a ramp
        // over the pair indices corr_dims[0]..corr_dims[1].
        let (corr, mscale) = if ext.ext_factor != 0.0 {
            let m = ext.attn_factor * 0.1f32.mul_add((1.0 / r.freq_scale).ln(), 1.0);
            (ext.corr_dims(r.n_rot, r.freq_base), m)
        } else {
            ([0.0; 2], ext.attn_factor)
        };
        let mut theta_base = pos as f32;
        for i in 0..half {
            let ff = r.freq_factors.map_or(1.0, |f| f[i]);
            let theta_extrap = theta_base / ff;
            let theta_interp = r.freq_scale * theta_extrap;
            let theta = if ext.ext_factor != 0.0 {
                // rope_yarn_ramp: 1 below corr_dims[0], 0 above corr_dims[1].
                let y = (i as f32 - corr[0]) / 0.001f32.max(corr[1] - corr[0]);
                let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * ext.ext_factor;
                // theta_interp·(1 − ramp_mix) + theta_extrap·ramp_mix, contracted as GCC does.
                theta_interp.mul_add(1.0 - ramp_mix, theta_extrap * ramp_mix)
            } else {
                theta_interp
            };
            // × mscale: exact when it is 1 (plain rope).
            let (sin, cos) = (theta.sin() * mscale, theta.cos() * mscale);
            theta_base *= theta_scale;
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

    /// YaRN against transformers' formulation (`_compute_yarn_parameters`, in f64): per-pair
    /// inverse frequencies blended between interpolated (÷ factor) and extrapolated ones along a
    /// linear ramp over the correction range, cos/sin scaled by 0.1·ln(factor) + 1.
    #[test]
    fn yarn_rope_matches_transformers_formula() {
        let (n_rot, base, factor, orig, beta_fast, beta_slow) = (32usize, 10000f64, 4f64, 4096f64, 32f64, 1f64);
        let ext = RopeExt { ext_factor: 1.0, attn_factor: 1.0, beta_fast: 32.0, beta_slow: 1.0, n_ctx_orig: 4096 };
        let r = Rope {
            n_rot,
            freq_base: base as f32,
            freq_scale: (1.0 / factor) as f32,
            kind: RopeType::Norm,
            freq_factors: None,
            ext,
        };
        let corr_dim = |rot: f64| n_rot as f64 * (orig / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln());
        let low = corr_dim(beta_fast).floor().max(0.0);
        let high = corr_dim(beta_slow).ceil().min(n_rot as f64 - 1.0);
        assert!(0.0 < low && high < (n_rot / 2) as f64, "the ramp lies inside the pairs: {low}..{high}");
        let mscale = 0.1 * factor.ln() + 1.0;
        for pos in [0usize, 1, 7, 100, 1000, 5000] {
            let x: Vec<f32> = (0..n_rot).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
            let mut got = x.clone();
            r.apply(&mut got, n_rot, pos);
            for i in 0..n_rot / 2 {
                let extrap = 1.0 / base.powf(2.0 * i as f64 / n_rot as f64);
                let extrap_weight = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                let inv_freq = extrap / factor * (1.0 - extrap_weight) + extrap * extrap_weight;
                let theta = pos as f64 * inv_freq;
                let (sin, cos) = (theta.sin() * mscale, theta.cos() * mscale);
                let (x0, x1) = (x[2 * i] as f64, x[2 * i + 1] as f64);
                let want = [x0 * cos - x1 * sin, x0 * sin + x1 * cos];
                for (g, w) in [got[2 * i], got[2 * i + 1]].into_iter().zip(want) {
                    // f32 angles at position 5000: a few 1e-4 rad.
                    assert!((g as f64 - w).abs() < 2e-3, "pos {pos} pair {i}: {g} vs {w}");
                }
            }
        }
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
            ext: RopeExt::NONE,
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
    fn rms_norm_unit_weight() {
        let x = [3.0, 4.0];
        let mut o = [0.0; 2];
        rms_norm(&mut o, &x, &[1.0, 1.0], 0.0);
        // rms = sqrt((9+16)/2)
        let r = (12.5f32).sqrt();
        assert!((o[0] - 3.0 / r).abs() < 1e-6 && (o[1] - 4.0 / r).abs() < 1e-6);
    }
}
