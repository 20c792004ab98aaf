//! x86_64 SIMD kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI; DQ for softmax/SwiGLU).
//!
//! Every kernel is a `#[target_feature]` function behind a safe entry that checks its arguments;
//! the tables returned by `avx2_table` / `avx512_table` are the only way to reach them and are
//! handed out only after runtime detection confirms the features, so a single build runs on any
//! x86_64 CPU.
//!
//! Files per kind: `quantize` (activation quantizers), `dot` (row dots), `mxfp4` (the MXFP4
//! dot), `iq` (the grid i-quant dots), `iq512` (their AVX-512 single-token dots, same sums), `iq4` / `tq`
//! (the IQ4_NL/IQ4_XS and TQ1_0/TQ2_0 dots, which llama.cpp's AVX-512 build runs as AVX2; TQ2_0 has an
//! AVX-512 dot with the same sums), `tile` (AVX-512 4×4 multi-token tiles of Q4_0/Q8_0), `iq_batch` / `mxfp4_batch` /
//! `tq_batch` (AVX2 multi-token tiles of the types without R16 kernels: each weight block decoded once
//! for several tokens, bit-identical to their dots), `r16_avx2` / `r16_avx512` (GEMMs over
//! R16-repacked weights), `r16_tiled` (AVX-512 VNNI batch GEMMs that decode each weight block once
//! per call of up to 64 tokens), `sgemm` (F16/F32 batch GEMMs in llamafile's tinyBLAS order),
//! `attn` (attention), `act` (AVX-512 softmax and SwiGLU).

mod act;
mod attn;
mod dot;
mod iq;
// before the other batch files: defines `row_tile_entry!`
#[macro_use]
mod iq_batch;
mod iq4;
mod iq512;
mod iq_gemm;
mod mxfp4;
mod mxfp4_batch;
mod quantize;
mod r16_avx2;
mod r16_avx512;
mod r16_tiled;
mod sgemm;
mod tile;
mod tq;
mod tq_batch;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kernels::ggml_x86;
use crate::kernels::types::{BatchGemmFn, FaLanes, Isa, Kernels, R16Batch, SumOrders, VecDotFn};
use crate::quant::GgmlType::*;

/// How far ahead of their reads the weight kernels prefetch, into L2, by CPU vendor. On AMD Zen 4
/// the hardware prefetchers leave a single-token GEMV well under the read bandwidth (an R16
/// block's slots are read out of order, with jumps inside 1–3 KB): Q5_K generated 20 tok/s without
/// software prefetch, 34 with it 4 KB ahead into L1, 43 with it 8 KB ahead into L2 (more misses in
/// flight than L1's buffers allow). On the Sapphire Rapids Xeon 2 KB ahead reads DRAM fastest:
/// qwen2.5-coder decode +3 % over 8 KB, the Q5_0/Q4_K/Q6_K GEMVs 3–5 %; docs/PERFORMANCE.md.
static PREFETCH_DISTANCE: AtomicUsize = AtomicUsize::new(8192);

/// Sets `prefetch_distance` for this CPU; the SIMD tables call it when they are built (a hot
/// loop then only loads the value).
fn tune_prefetch_distance() {
    // CPUID leaf 0's vendor string: "Genu" "ineI" "ntel" in ebx, edx, ecx
    let v = std::arch::x86_64::__cpuid(0);
    let intel = (v.ebx, v.edx, v.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
    PREFETCH_DISTANCE.store(if intel { 2048 } else { 8192 }, Ordering::Relaxed);
}

#[inline(always)]
pub(crate) fn prefetch_distance() -> usize {
    PREFETCH_DISTANCE.load(Ordering::Relaxed)
}

/// Asks for the cache lines of `[p + d, p + d + bytes)` (`d` = `prefetch_distance`): a kernel
/// calls it for each step's share of a block (`bytes` = block bytes / steps), so the requests
/// spread over the block's work (asking for a whole block at once stalls the loads behind them).
/// A prefetch never faults: the addresses, past the weights' end for the last blocks, are
/// computed with wrapping arithmetic and only hint the cache.
#[inline(always)]
fn prefetch_ahead(p: *const u8, bytes: usize) {
    let start = p.wrapping_add(prefetch_distance());
    // one request per 64 bytes (a constant count once inlined): the next call's first address
    // follows this call's last, so together they cover every line of the stream
    for i in 0..bytes.div_ceil(64) {
        crate::kernels::prefetch_line(start.wrapping_add(64 * i) as usize);
    }
}

/// `base` (the scalar table) with the AVX2 kernels, if the CPU has AVX2, FMA and F16C.
pub fn avx2_table(base: &Kernels) -> Option<Kernels> {
    let mut k = avx2_table_narrow(base)?;
    // decode-once batch GEMMs in the same orders (Q3_K, Q5_K tiled), up to `MAX_WIDE_T` tokens
    // per call
    for (t, f) in r16_tiled::WIDE_BATCH_GEMMS_AVX2 {
        if let Some(b) = k.traits_mut(t).r16_batch.as_mut() {
            b.gemm = Some(f);
            b.max_t = crate::quant::repack::MAX_WIDE_T;
        }
    }
    Some(k)
}

/// `avx2_table` with the batch kernels that take at most `repack::MAX_T` tokens per call in place
/// of `r16_tiled`'s: the same sums, kept so tests and A/B timings can compare the two.
pub fn avx2_table_narrow(base: &Kernels) -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")) {
        return None;
    }
    tune_prefetch_distance();
    let mut k = Kernels { isa: Isa::Avx2, orders: SumOrders::Avx2, ..*base };
    k.traits_mut(Q8_0).from_float = Some(quantize::FROM_FLOAT_Q8_0_AVX2);
    k.traits_mut(Q8_0).to_float = Some(quantize::TO_FLOAT_Q8_0_AVX2);
    k.traits_mut(Q4_0).to_float = Some(quantize::TO_FLOAT_Q4_0_AVX2);
    k.traits_mut(Q8_1).from_float = Some(quantize::FROM_FLOAT_Q8_1_AVX2);
    k.traits_mut(Q8_K).from_float = Some(quantize::FROM_FLOAT_Q8_K_AVX2);
    k.traits_mut(F16).from_float = Some(quantize::FROM_FLOAT_F16_AVX2);
    for (t, f) in dot::DOTS_AVX2 {
        k.traits_mut(t).vec_dot = Some(f);
    }
    k.traits_mut(MXFP4).vec_dot = Some(mxfp4::DOT_MXFP4_AVX2);
    for (t, f) in iq::DOTS_AVX2 {
        k.traits_mut(t).vec_dot = Some(f);
    }
    // llama.cpp's tiled GEMM order for grid i-quant batches (the rule is the scalar table's)
    for (t, f) in iq::TILED_AVX2 {
        if let Some(b) = k.traits_mut(t).batch_dot.as_mut() {
            b.dot = Some(f);
        }
    }
    for (t, f) in iq_batch::TILED_TILES_AVX2 {
        if let Some(b) = k.traits_mut(t).batch_dot.as_mut() {
            b.tile = Some(f);
        }
    }
    // F16/F32 batches in tinyBLAS's AVX2 order (8 lanes)
    sgemm_orders(&mut k, sgemm::AVX2, [ggml_x86::f16_sgemm8, ggml_x86::f32_sgemm8]);
    k.traits_mut(IQ4_NL).vec_dot = Some(iq4::DOT_IQ4_NL_AVX2);
    k.traits_mut(IQ4_XS).vec_dot = Some(iq4::DOT_IQ4_XS_AVX2);
    k.traits_mut(TQ1_0).vec_dot = Some(tq::DOT_TQ1_0_AVX2);
    k.traits_mut(TQ2_0).vec_dot = Some(tq::DOT_TQ2_0_AVX2);
    // multi-token tiles of the types without R16 kernels (bit-identical to their dots)
    for (t, f) in iq_batch::TILES_AVX2 {
        k.traits_mut(t).tile = Some(f);
    }
    k.traits_mut(MXFP4).tile = Some(mxfp4_batch::TILE_MXFP4_AVX2);
    k.traits_mut(TQ1_0).tile = Some(tq_batch::TILE_TQ1_0_AVX2);
    k.traits_mut(TQ2_0).tile = Some(tq_batch::TILE_TQ2_0_AVX2);
    for (t, f) in r16_avx2::GEMMS {
        k.traits_mut(t).gemm_r16 = Some(f);
    }
    // llama.cpp's batch orders (the rules are the scalar table's, see `types::R16Batch`)
    for (t, f) in r16_avx2::BATCH_GEMMS {
        if let Some(b) = k.traits_mut(t).r16_batch.as_mut() {
            b.gemm = Some(f);
        }
    }
    k.attn.kt_f16 = attn::attn_kt_f16_avx2;
    k.attn.kq = attn::attn_kq_avx2;
    k.attn.vf_f16 = attn::attn_vf_f16_avx2;
    k.attn.kt_f16_gather = attn::attn_kt_f16_gather_avx2;
    k.attn.vf_f16_gather = attn::attn_vf_f16_gather_avx2;
    k.attn.pv = attn::attn_pv_avx2;
    k.attn.round_f16 = attn::round_f16_avx2;
    k.attn.fa_online = attn::fa_online_avx2;
    k.attn.fa_kv_dot = attn::fa_kv_dot_avx2;
    k.attn.fa_tile_kq = attn::fa_tile_kq_avx2;
    k.attn.fa_tile_pv = attn::fa_tile_pv_avx2;
    k.softmax = act::SOFTMAX_AVX2;
    k.swiglu = act::SWIGLU_AVX2;
    k.gelu = act::GELU_AVX2;
    Some(k)
}

/// `base` (the AVX2 table) with the AVX-512 kernels, if the CPU has AVX-512 F, BW, VL and VNNI.
pub fn avx512_table(base: &Kernels) -> Option<Kernels> {
    let mut k = avx512_table_narrow(base)?;
    // decode-once batch GEMMs in the same orders (Q3_K, Q5_K, IQ4_XS tiled; Q2_K's 8×8 gemm),
    // up to `MAX_WIDE_T` tokens per call
    for (t, f) in r16_tiled::WIDE_BATCH_GEMMS {
        if let Some(b) = k.traits_mut(t).r16_batch.as_mut() {
            b.gemm = Some(f);
            b.max_t = crate::quant::repack::MAX_WIDE_T;
        }
    }
    Some(k)
}

/// `avx512_table` with the batch kernels that take at most `repack::MAX_T` tokens per call (and
/// decode each weight block once per pass of 1–4 tokens) in place of `r16_tiled`'s: the same sums,
/// kept so tests and A/B timings can compare the two.
pub fn avx512_table_narrow(base: &Kernels) -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    if !ok {
        return None;
    }
    // The AVX-512 build's orders: attention and softmax/SwiGLU below (without AVX-512 DQ the
    // scalar emulation of its softmax/SwiGLU), the quantized products as in the AVX2 build.
    let mut k = Kernels {
        isa: Isa::Avx512,
        orders: SumOrders::Avx512,
        softmax: Kernels::SCALAR.softmax,
        swiglu: Kernels::SCALAR.swiglu,
        ..*base
    };
    for (t, f) in dot::DOTS_AVX512 {
        k.traits_mut(t).vec_dot = Some(f);
    }
    // the grid i-quant single-token dots with register-held grids or scalar lookups and
    // mask-register signs (the IQ1 dots index with BMI2's pdep)
    if is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("bmi2") {
        for (t, f) in iq512::DOTS_AVX512_VBMI {
            k.traits_mut(t).vec_dot = Some(f);
        }
    }
    for (t, f) in iq_batch::TILED_TILES_AVX512 {
        if let Some(b) = k.traits_mut(t).batch_dot.as_mut() {
            b.tile = Some(f);
        }
    }
    // grid i-quant batches: decode each weight block once per call (`iq_gemm`)
    for (t, f) in iq_gemm::GEMMS_AVX512 {
        if let Some(b) = k.traits_mut(t).batch_dot.as_mut() {
            b.gemm = Some(f);
        }
    }
    k.traits_mut(TQ2_0).vec_dot = Some(tq::DOT_TQ2_0_AVX512);
    k.traits_mut(TQ1_0).tile = Some(tq_batch::TILE_TQ1_0_AVX512);
    k.traits_mut(TQ2_0).tile = Some(tq_batch::TILE_TQ2_0_AVX512);
    k.traits_mut(Q4_0).tile = Some(tile::TILE_Q4_0_AVX512);
    k.traits_mut(Q8_0).tile = Some(tile::TILE_Q8_0_AVX512);
    // F16/F32 batches in tinyBLAS's AVX-512 order (16 lanes)
    sgemm_orders(&mut k, sgemm::AVX512, [ggml_x86::f16_sgemm16, ggml_x86::f32_sgemm16]);
    for (t, f) in r16_avx512::GEMMS {
        k.traits_mut(t).gemm_r16 = Some(f);
    }
    for (t, g) in r16_avx512::GEMVS {
        k.traits_mut(t).gemv_r16 = Some(g);
    }
    // llama.cpp's batch orders (the rules are the scalar table's, see `types::R16Batch`)
    // (the AVX2 table's narrow batch kernels back where `base` has wide ones)
    for (t, f) in r16_avx2::BATCH_GEMMS.into_iter().chain(r16_avx512::BATCH_GEMMS) {
        if let Some(b) = k.traits_mut(t).r16_batch.as_mut() {
            b.gemm = Some(f);
            b.max_t = crate::quant::repack::MAX_T;
        }
    }
    // llama.cpp's AVX-512 build repacks Q2_K (8×8 interleaved rows, its AVX2 build does not): its
    // gemv order for single tokens, its gemm's over a batch's full groups of 4 tokens with its own
    // Q8_K quantizer (Q4_K's rule), instead of the AVX2 build's tiled GEMM from 8 tokens.
    let q2 = k.traits_mut(Q2_K);
    q2.gemm_r16 = Some(r16_avx512::GEMM_Q2_K);
    q2.r16_batch = Some(R16Batch {
        min_tokens: 4,
        group: 4,
        from_float: Some(crate::kernels::scalar::from_float_q8_k_4x8),
        gemm: Some(r16_avx512::GEMM_Q2_K_G4),
        max_t: crate::quant::repack::MAX_T,
    });
    k.attn.kq = attn::attn_kq_avx512;
    k.attn.pv = attn::attn_pv_avx512;
    k.attn.pv_panels = Some(attn::attn_pv_panels_avx512);
    k.attn.kt_f16 = attn::attn_kt_f16_avx512;
    k.attn.kt_f32 = attn::attn_kt_f32_avx512;
    k.attn.kt_f16_gather = attn::attn_kt_f16_gather_avx512;
    k.attn.kt_f32_gather = attn::attn_kt_f32_gather_avx512;
    k.attn.fa_tile_kq = attn::fa_tile_kq_avx512;
    k.attn.fa_tile_pv = attn::fa_tile_pv_avx512;
    if is_x86_feature_detected!("avx512dq") {
        k.attn.fa_online = attn::fa_online_avx512;
        k.attn.fa_lanes = Some(FaLanes { kq: attn::fa_lanes_kq_avx512, online: attn::fa_lanes_online_avx512 });
        k.softmax = act::SOFTMAX_AVX512;
        k.exp_sum = Some(act::EXP_SUM_AVX512);
        k.swiglu = act::SWIGLU_AVX512;
        k.gelu = act::GELU_AVX512;
    }
    Some(k)
}

/// The F16 and F32 batch rule (`types::BatchDot`, stated by the scalar table) with this table's
/// vector width: `gemms` (lanes, F16 GEMM, F32 GEMM), `dots` the reference dots in that order.
fn sgemm_orders(k: &mut Kernels, gemms: (usize, BatchGemmFn, BatchGemmFn), dots: [VecDotFn; 2]) {
    let (lanes, f16, f32) = gemms;
    for (t, gemm, dot) in [(F16, f16, dots[0]), (F32, f32, dots[1])] {
        if let Some(b) = k.traits_mut(t).batch_dot.as_mut() {
            b.cols_multiple = lanes;
            b.dot = Some(dot);
            b.gemm = Some(gemm);
        }
    }
}
