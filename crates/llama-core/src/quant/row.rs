//! Byte-level row API: length checks, then dispatch to the typed scalar reference of each format.

use half::{bf16, f16};

use super::blocks::{read_blocks, write_blocks, Block};
use super::*;
use crate::{Error, Result};

/// Bytes that `n` elements of `t` occupy, or an error naming the type and block size.
fn row_bytes(t: GgmlType, n: usize) -> Result<usize> {
    t.row_size(n as u64).map(|b| b as usize).ok_or_else(|| {
        Error::InvalidArgument(format!("{n} elements is not a whole number of {t} blocks of {}", t.block_size()))
    })
}

fn unsupported(t: GgmlType, what: &str) -> Error {
    Error::UnsupportedType(format!("{t} (ggml id {}): {what} is not implemented", t.id()))
}

/// Dequantizes typed blocks read from possibly misaligned bytes.
fn deq<T: Block>(src: &[u8], dst: &mut [f32], f: fn(&[T], &mut [f32])) {
    f(&read_blocks::<T>(src), dst)
}

/// Dequantizes one row: `src` holds exactly `row_size(dst.len())` bytes of type `t`.
pub fn dequantize_row(t: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    t.ensure_supported()?;
    let need = row_bytes(t, dst.len())?;
    if src.len() != need {
        return Err(Error::InvalidArgument(format!(
            "dequantize {t}: {} source bytes for {} elements (expected {need})",
            src.len(),
            dst.len()
        )));
    }
    use GgmlType::*;
    match t {
        F32 => deq::<f32>(src, dst, float::dequantize_row_f32),
        F16 => deq::<f16>(src, dst, float::dequantize_row_f16),
        BF16 => deq::<bf16>(src, dst, float::dequantize_row_bf16),
        Q4_0 => deq::<BlockQ4_0>(src, dst, q4_0::dequantize_row_q4_0),
        Q4_1 => deq::<BlockQ4_1>(src, dst, q4_1::dequantize_row_q4_1),
        Q5_0 => deq::<BlockQ5_0>(src, dst, q5_0::dequantize_row_q5_0),
        Q5_1 => deq::<BlockQ5_1>(src, dst, q5_1::dequantize_row_q5_1),
        Q8_0 => deq::<BlockQ8_0>(src, dst, q8_0::dequantize_row_q8_0),
        Q8_1 => deq::<BlockQ8_1>(src, dst, q8_1::dequantize_row_q8_1),
        Q2_K => deq::<BlockQ2K>(src, dst, k_quants::dequantize_row_q2_k),
        Q3_K => deq::<BlockQ3K>(src, dst, k_quants::dequantize_row_q3_k),
        Q4_K => deq::<BlockQ4K>(src, dst, k_quants::dequantize_row_q4_k),
        Q5_K => deq::<BlockQ5K>(src, dst, k_quants::dequantize_row_q5_k),
        Q6_K => deq::<BlockQ6K>(src, dst, k_quants::dequantize_row_q6_k),
        Q8_K => deq::<BlockQ8K>(src, dst, k_quants::dequantize_row_q8_k),
        MXFP4 => deq::<BlockMXFP4>(src, dst, mxfp4::dequantize_row_mxfp4),
        IQ2_XXS => deq::<BlockIQ2XXS>(src, dst, iq::dequantize_row_iq2_xxs),
        IQ2_XS => deq::<BlockIQ2XS>(src, dst, iq::dequantize_row_iq2_xs),
        IQ2_S => deq::<BlockIQ2S>(src, dst, iq::dequantize_row_iq2_s),
        IQ3_XXS => deq::<BlockIQ3XXS>(src, dst, iq::dequantize_row_iq3_xxs),
        IQ3_S => deq::<BlockIQ3S>(src, dst, iq::dequantize_row_iq3_s),
        IQ1_S => deq::<BlockIQ1S>(src, dst, iq::dequantize_row_iq1_s),
        IQ1_M => deq::<BlockIQ1M>(src, dst, iq::dequantize_row_iq1_m),
        IQ4_NL => deq::<BlockIQ4NL>(src, dst, iq4::dequantize_row_iq4_nl),
        IQ4_XS => deq::<BlockIQ4XS>(src, dst, iq4::dequantize_row_iq4_xs),
        TQ1_0 => deq::<BlockTQ1_0>(src, dst, tq::dequantize_row_tq1_0),
        TQ2_0 => deq::<BlockTQ2_0>(src, dst, tq::dequantize_row_tq2_0),
        _ => return Err(unsupported(t, "dequantization")),
    }
    Ok(())
}

/// Dequantizes `n_elements` values of type `t` (any number of rows laid end to end).
pub fn dequantize(t: GgmlType, src: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n_elements]; // [n_elements]
    dequantize_row(t, src, &mut out)?;
    Ok(out)
}

fn qnt<T: Block>(src: &[f32], dst: &mut [u8], f: fn(&[f32], &mut [T])) {
    write_blocks::<T>(dst, |b| f(src, b))
}

/// Quantizes one row with llama.cpp's reference algorithm: `dst` holds exactly
/// `row_size(src.len())` bytes.
pub fn quantize_row(t: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    t.ensure_supported()?;
    let need = row_bytes(t, src.len())?;
    if dst.len() != need {
        return Err(Error::InvalidArgument(format!(
            "quantize {t}: {} destination bytes for {} elements (expected {need})",
            dst.len(),
            src.len()
        )));
    }
    use GgmlType::*;
    match t {
        F32 => qnt::<f32>(src, dst, float::quantize_row_f32),
        F16 => qnt::<f16>(src, dst, float::quantize_row_f16),
        BF16 => qnt::<bf16>(src, dst, float::quantize_row_bf16),
        Q4_0 => qnt::<BlockQ4_0>(src, dst, q4_0::quantize_row_q4_0),
        Q4_1 => qnt::<BlockQ4_1>(src, dst, q4_1::quantize_row_q4_1),
        Q5_0 => qnt::<BlockQ5_0>(src, dst, q5_0::quantize_row_q5_0),
        Q5_1 => qnt::<BlockQ5_1>(src, dst, q5_1::quantize_row_q5_1),
        Q8_0 => qnt::<BlockQ8_0>(src, dst, q8_0::quantize_row_q8_0_ref),
        Q8_1 => qnt::<BlockQ8_1>(src, dst, q8_1::quantize_row_q8_1_ref),
        Q2_K => qnt::<BlockQ2K>(src, dst, k_quantize::quantize_row_q2_k),
        Q3_K => qnt::<BlockQ3K>(src, dst, k_quantize::quantize_row_q3_k),
        Q4_K => qnt::<BlockQ4K>(src, dst, k_quantize::quantize_row_q4_k),
        Q5_K => qnt::<BlockQ5K>(src, dst, k_quantize::quantize_row_q5_k),
        Q6_K => qnt::<BlockQ6K>(src, dst, k_quantize::quantize_row_q6_k),
        Q8_K => qnt::<BlockQ8K>(src, dst, k_quantize::quantize_row_q8_k),
        MXFP4 => qnt::<BlockMXFP4>(src, dst, mxfp4::quantize_row_mxfp4),
        IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M => {
            return Err(unsupported(t, "quantization (llama.cpp makes it only with an importance matrix)"))
        }
        // llama-quantize's IQ4 quantizers without an imatrix (`quantize_iq4_nl`, which refines
        // the scale unlike `quantize_row_iq4_nl_ref`; for IQ4_XS the two are one).
        IQ4_NL => qnt::<BlockIQ4NL>(src, dst, |x, y| iq4::quantize_iq4_nl(x, y, None)),
        IQ4_XS => qnt::<BlockIQ4XS>(src, dst, iq4::quantize_row_iq4_xs_ref),
        TQ1_0 => qnt::<BlockTQ1_0>(src, dst, tq::quantize_row_tq1_0),
        TQ2_0 => qnt::<BlockTQ2_0>(src, dst, tq::quantize_row_tq2_0),
        _ => return Err(unsupported(t, "quantization")),
    }
    Ok(())
}

fn qntw<T: Block>(src: &[f32], dst: &mut [u8], qw: &[f32], f: fn(&[f32], &mut [T], &[f32])) {
    write_blocks::<T>(dst, |b| f(src, b, qw))
}

/// Quantizes one row as llama.cpp does with an importance matrix (`ggml_quantize_chunk` with
/// `quant_weights`): `qw` holds one weight per element of the row. Q8_0 (and the float types)
/// ignore the weights, as ggml does.
pub fn quantize_row_weighted(t: GgmlType, src: &[f32], dst: &mut [u8], qw: &[f32]) -> Result<()> {
    if qw.len() != src.len() {
        return Err(Error::InvalidArgument(format!(
            "quantize {t}: {} importance weights for a row of {}",
            qw.len(),
            src.len()
        )));
    }
    use GgmlType::*;
    let f = match t {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => t,
        _ => return quantize_row(t, src, dst),
    };
    let need = row_bytes(f, src.len())?;
    if dst.len() != need {
        return Err(Error::InvalidArgument(format!(
            "quantize {t}: {} destination bytes for {} elements (expected {need})",
            dst.len(),
            src.len()
        )));
    }
    match f {
        Q4_0 => qntw::<BlockQ4_0>(src, dst, qw, weighted::quantize_row_q4_0),
        Q4_1 => qntw::<BlockQ4_1>(src, dst, qw, weighted::quantize_row_q4_1),
        Q5_0 => qntw::<BlockQ5_0>(src, dst, qw, weighted::quantize_row_q5_0),
        Q5_1 => qntw::<BlockQ5_1>(src, dst, qw, weighted::quantize_row_q5_1),
        Q2_K => qntw::<BlockQ2K>(src, dst, qw, weighted::quantize_row_q2_k),
        Q3_K => qntw::<BlockQ3K>(src, dst, qw, weighted::quantize_row_q3_k),
        Q4_K => qntw::<BlockQ4K>(src, dst, qw, weighted::quantize_row_q4_k),
        Q5_K => qntw::<BlockQ5K>(src, dst, qw, weighted::quantize_row_q5_k),
        _ => qntw::<BlockQ6K>(src, dst, qw, weighted::quantize_row_q6_k),
    }
    Ok(())
}

/// Quantizes `src` (any number of whole rows) to a new byte vector.
pub fn quantize(t: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; row_bytes(t, src.len())?]; // [row_size(src.len())]
    quantize_row(t, src, &mut out)?;
    Ok(out)
}
