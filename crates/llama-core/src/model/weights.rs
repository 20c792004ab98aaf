//! Weight lookup and shape validation, for the families' `load` in `arch/`. Matrices stay in the
//! mmap (we keep the tensor's index and borrow its bytes at use); 1-D tensors (norms, biases, rope
//! factors) are small and copied to f32.

use crate::gguf::GgufFile;
use crate::quant::dequantize_row;
use crate::{Error, Result};

/// A 2-D weight: `rows` rows of `cols` elements (ggml dims = [cols, rows]).
#[derive(Clone, Copy, Debug)]
pub struct WRef {
    pub idx: usize,
    pub rows: usize,
    pub cols: usize,
}

/// Finds tensors by name and checks their shapes and types: what every family's `load` uses.
pub(super) struct Loader<'a> {
    f: &'a GgufFile,
}

impl<'a> Loader<'a> {
    pub fn new(f: &'a GgufFile) -> Self {
        Loader { f }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.f.tensors().iter().position(|t| t.name == name)
    }

    pub fn matrix(&self, name: &str, rows: Option<usize>, cols: usize) -> Result<WRef> {
        self.opt_matrix(name, rows, cols)?.ok_or_else(|| Error::Model(format!("missing tensor {name}")))
    }

    /// A 2-D tensor of `cols` columns and (if given) `rows` rows, in a type we can compute with.
    pub fn opt_matrix(&self, name: &str, rows: Option<usize>, cols: usize) -> Result<Option<WRef>> {
        let Some(idx) = self.find(name) else {
            return Ok(None);
        };
        let t = &self.f.tensors()[idx];
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let shape_ok = dims.len() == 2 && dims[0] == cols && rows.is_none_or(|r| dims[1] == r);
        if !shape_ok {
            let want = rows.map_or(format!("[{cols}, *]"), |r| format!("[{cols}, {r}]"));
            return Err(Error::Model(format!("tensor {name} has shape {dims:?}, expected {want}")));
        }
        if !cols.is_multiple_of(t.ggml_type.block_size()) {
            return Err(Error::Model(format!(
                "tensor {name}: row length {cols} is not a multiple of the {} block size",
                t.ggml_type
            )));
        }
        Ok(Some(WRef { idx, rows: dims[1], cols }))
    }

    /// A small 2-D tensor copied to f32 ([rows][cols]; a convolution kernel …), like `vector`.
    pub fn small_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        let w = self.matrix(name, Some(rows), cols)?;
        let t = &self.f.tensors()[w.idx];
        let mut v = vec![0.0f32; rows * cols]; // [rows][cols]
        let row_bytes = self.f.tensor_data(t).len() / rows;
        for (r, out) in v.chunks_exact_mut(cols).enumerate() {
            dequantize_row(t.ggml_type, &self.f.tensor_data(t)[r * row_bytes..(r + 1) * row_bytes], out)
                .map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        }
        Ok(v)
    }

    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        self.opt_vector(name, n)?.ok_or_else(|| Error::Model(format!("missing tensor {name}")))
    }

    pub fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        let Some(idx) = self.find(name) else {
            return Ok(None);
        };
        let t = &self.f.tensors()[idx];
        let dims: Vec<u64> = t.dims.iter().copied().filter(|&d| d != 1).collect();
        if dims != [n as u64] && !(n == 1 && dims.is_empty()) {
            return Err(Error::Model(format!("tensor {name} has shape {:?}, expected [{n}]", t.dims)));
        }
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        if !n.is_multiple_of(t.ggml_type.block_size()) {
            return Err(Error::Model(format!(
                "tensor {name}: length {n} is not a multiple of the {} block size",
                t.ggml_type
            )));
        }
        let mut v = vec![0.0f32; n];
        dequantize_row(t.ggml_type, self.f.tensor_data(t), &mut v)
            .map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        Ok(Some(v))
    }
}
