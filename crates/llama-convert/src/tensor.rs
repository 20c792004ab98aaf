//! Source tensors (views into mmapped checkpoint files, possibly strided or split over shards),
//! read lazily one at a time, and the conversion of their elements to the output GGUF type.

use std::path::PathBuf;
use std::sync::Arc;

use half::{bf16, f16};
use llama_core::quant::{quantize, GgmlType};
use llama_core::{Error, Result};
use memmap2::Mmap;

pub use crate::pickle::DType;

/// Where a tensor's elements live.
#[derive(Clone)]
pub enum Data {
    /// A strided view into `mmap[base..]`: element (i0, i1, …) is at `offset + Σ i_k·stride_k`
    /// elements from `base`. Bounds were checked when the view was built.
    View { mmap: Arc<Mmap>, base: usize, offset: u64, stride: Vec<u64> },
    /// Model-parallel shards laid end to end along `dim` (Meta checkpoints).
    Concat { parts: Vec<SrcTensor>, dim: usize },
    /// Elements the converter computed (llama3's `rope_freqs`), row-major little-endian bytes.
    Owned(Arc<Vec<u8>>),
}

#[derive(Clone)]
pub struct SrcTensor {
    /// Name in the checkpoint (for errors).
    pub name: String,
    /// File it comes from (for errors).
    pub file: PathBuf,
    pub dtype: DType,
    /// PyTorch order: shape[0] is the slowest dimension (rows).
    pub shape: Vec<u64>,
    pub data: Data,
}

impl std::fmt::Debug for SrcTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SrcTensor({} {} {:?} in {})", self.name, self.dtype.name(), self.shape, self.file.display())
    }
}

impl SrcTensor {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Checks that a strided view stays within `avail` elements from its base.
    pub fn check_view_bounds(
        shape: &[u64],
        offset: u64,
        stride: &[u64],
        avail: u64,
    ) -> std::result::Result<(), String> {
        if shape.contains(&0) {
            return Ok(());
        }
        let mut last = offset;
        for (&d, &s) in shape.iter().zip(stride) {
            last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or("view extent overflows")?;
        }
        if last >= avail {
            return Err(format!(
                "view (offset {offset}, shape {shape:?}, stride {stride:?}) reaches element {last} of a storage of {avail}"
            ));
        }
        Ok(())
    }

    /// The elements in row-major (C) order, as little-endian bytes of `self.dtype`.
    pub fn read(&self) -> Result<Vec<u8>> {
        let es = self.dtype.size();
        let n = usize::try_from(self.n_elements()).map_err(|_| self.err("too many elements"))?;
        let mut out = Vec::with_capacity(n * es); // [n_elements * elem_size]
        self.read_into(&mut out)?;
        Ok(out)
    }

    fn err(&self, msg: &str) -> Error {
        Error::format(&self.file, format!("tensor '{}': {msg}", self.name))
    }

    fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let es = self.dtype.size();
        match &self.data {
            Data::View { mmap, base, offset, stride } => {
                let rank = self.shape.len();
                // Contiguous (row-major) strides: one copy.
                let mut contiguous = true;
                let mut expect = 1u64;
                for k in (0..rank).rev() {
                    if self.shape[k] != 1 && stride[k] != expect {
                        contiguous = false;
                    }
                    expect *= self.shape[k];
                }
                if contiguous {
                    let start = base + *offset as usize * es;
                    out.extend_from_slice(&mmap[start..start + self.n_elements() as usize * es]);
                    return Ok(());
                }
                // General case: walk the index space with an odometer.
                if self.n_elements() == 0 {
                    return Ok(());
                }
                let mut idx = vec![0u64; rank];
                loop {
                    let e: u64 = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<u64>();
                    let p = base + e as usize * es;
                    out.extend_from_slice(&mmap[p..p + es]);
                    let mut k = rank;
                    loop {
                        if k == 0 {
                            return Ok(());
                        }
                        k -= 1;
                        idx[k] += 1;
                        if idx[k] < self.shape[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
            }
            Data::Concat { parts, dim } => {
                let dim = *dim;
                let bufs: Vec<Vec<u8>> = parts.iter().map(|p| p.read()).collect::<Result<_>>()?; // one per shard
                                                                                                 // Bytes of one contiguous chunk of part p: its extent from `dim` inward.
                let inner: u64 = self.shape[dim + 1..].iter().product();
                let outer: u64 = self.shape[..dim].iter().product();
                for o in 0..outer as usize {
                    for (p, buf) in parts.iter().zip(&bufs) {
                        let chunk = (p.shape[dim] * inner) as usize * es;
                        out.extend_from_slice(&buf[o * chunk..(o + 1) * chunk]);
                    }
                }
                Ok(())
            }
            Data::Owned(bytes) => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// A computed 1-D f32 tensor (`file`: the checkpoint it derives from, for errors).
    pub fn from_f32(name: &str, file: PathBuf, values: &[f32]) -> SrcTensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect(); // [n * 4]
        SrcTensor {
            name: name.to_string(),
            file,
            dtype: DType::F32,
            shape: vec![values.len() as u64],
            data: Data::Owned(Arc::new(bytes)),
        }
    }
}

/// One little-endian element widened to f32 (exact).
#[inline]
fn elem_to_f32(dtype: DType, c: &[u8]) -> f32 {
    match dtype {
        DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        DType::F16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
        DType::BF16 => bf16::from_le_bytes([c[0], c[1]]).to_f32(),
    }
}

/// Widens raw elements to f32 (exact for all three source types).
pub fn to_f32(dtype: DType, raw: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
        DType::BF16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
    }
}

/// Converts raw source elements to `target` bytes. As llama.cpp's converter: the data go through
/// f32 (exact), then are rounded once to the target; F16 data kept as F16 are copied unchanged.
pub fn convert_elements(dtype: DType, raw: Vec<u8>, target: GgmlType) -> Result<Vec<u8>> {
    match (dtype, target) {
        (DType::F16, GgmlType::F16) | (DType::F32, GgmlType::F32) | (DType::BF16, GgmlType::BF16) => Ok(raw),
        (_, GgmlType::F32) => {
            // Straight to bytes: peak is the source plus the output, no intermediate f32 copy.
            let mut out = Vec::with_capacity(raw.len() / dtype.size() * 4); // [n_elements * 4]
            for c in raw.chunks_exact(dtype.size()) {
                out.extend_from_slice(&elem_to_f32(dtype, c).to_le_bytes());
            }
            Ok(out)
        }
        (_, t) => {
            let f = to_f32(dtype, &raw); // [n_elements]
            drop(raw);
            quantize(t, &f)
        }
    }
}

/// Undoes Hugging Face's rotary-embedding row permutation of a q/k projection, giving the layout
/// llama.cpp (and Meta's checkpoints) use: rows are grouped per head as [all even-index pairs
/// halves | odd halves] in HF and interleaved in llama.cpp. Equivalent to llama.cpp's
/// `w.reshape(n_head, 2, rows/n_head/2, *rest).swapaxes(1, 2).reshape(w.shape)`.
///
/// `raw` holds `rows` rows of `row_bytes` bytes each (any element type; also works for biases
/// with `row_bytes` = one element).
pub fn unpermute_rope_rows(
    raw: &[u8],
    rows: usize,
    row_bytes: usize,
    n_head: usize,
) -> std::result::Result<Vec<u8>, String> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || raw.len() != rows * row_bytes {
        return Err(format!("cannot un-permute {rows} rows for {n_head} heads (rows must be a multiple of 2·n_head)"));
    }
    let per_head = rows / n_head; // rows of one head
    let half = per_head / 2;
    let mut out = vec![0u8; raw.len()]; // [rows * row_bytes]
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                // out[h][i][j] = in[h][j][i]
                let dst = h * per_head + i * 2 + j;
                let src = h * per_head + j * half + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&raw[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_matches_reshape_swapaxes() {
        // n_head=2, rows=8, 1 col: numpy: arange(8).reshape(2,2,2).swapaxes(1,2).reshape(8)
        // = [0,2,1,3, 4,6,5,7]
        let raw: Vec<u8> = (0..8u8).collect();
        let out = unpermute_rope_rows(&raw, 8, 1, 2).unwrap();
        assert_eq!(out, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        // rows=12, n_head=1: arange(12).reshape(1,2,6).swapaxes(1,2) → [0,6,1,7,2,8,3,9,4,10,5,11]
        let raw: Vec<u8> = (0..12u8).collect();
        assert_eq!(unpermute_rope_rows(&raw, 12, 1, 1).unwrap(), vec![0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]);
        assert!(unpermute_rope_rows(&raw, 12, 1, 4).is_err());
    }
}
