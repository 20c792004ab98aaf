//! Weight lookup and shape validation, for the families' `load` in `arch/`. Matrices stay in the
//! mmap (we keep the tensor's index and borrow its bytes at use); 1-D tensors (norms, biases, rope
//! factors) are small and copied to f32.

use crate::gguf::GgufFile;
use crate::quant::dequantize_row;
use crate::{Error, Result};

/// A 2-D weight: rows `row0..row0 + rows` of tensor `idx`, of `cols` elements each (ggml dims =
/// [cols, rows] for a matrix, row0 = 0; one expert's slice of a 3-D expert tensor otherwise).
#[derive(Clone, Copy, Debug)]
pub struct WRef {
    pub idx: usize,
    pub row0: usize,
    pub rows: usize,
    pub cols: usize,
}

/// A 3-D expert tensor (ggml dims = [cols, rows, n_expert]): `n_expert` matrices of `rows` rows
/// stored one after the other.
#[derive(Clone, Copy, Debug)]
pub struct Experts {
    pub idx: usize,
    pub n_expert: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Experts {
    /// Expert e's matrix. [rows][cols]
    pub fn expert(&self, e: usize) -> WRef {
        WRef { idx: self.idx, row0: e * self.rows, rows: self.rows, cols: self.cols }
    }

    /// Every expert's matrix (for repacking).
    pub fn matrices(&self) -> impl Iterator<Item = WRef> + '_ {
        (0..self.n_expert).map(|e| self.expert(e))
    }
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
        Ok(Some(WRef { idx, row0: 0, rows: dims[1], cols }))
    }

    /// A 3-D expert tensor of `n_expert` matrices of `cols` columns and (if given) `rows` rows.
    pub fn experts(&self, name: &str, n_expert: usize, rows: Option<usize>, cols: usize) -> Result<Experts> {
        let idx = self.find(name).ok_or_else(|| Error::Model(format!("missing tensor {name}")))?;
        let t = &self.f.tensors()[idx];
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let shape_ok = dims.len() == 3 && dims[0] == cols && rows.is_none_or(|r| dims[1] == r) && dims[2] == n_expert;
        if !shape_ok {
            let r = rows.map_or("*".to_string(), |r| r.to_string());
            return Err(Error::Model(format!("tensor {name} has shape {dims:?}, expected [{cols}, {r}, {n_expert}]")));
        }
        if !cols.is_multiple_of(t.ggml_type.block_size()) {
            return Err(Error::Model(format!(
                "tensor {name}: row length {cols} is not a multiple of the {} block size",
                t.ggml_type
            )));
        }
        Ok(Experts { idx, n_expert, rows: dims[1], cols })
    }

    /// A small 2-D tensor of `n_rows` rows of `n` values, as f32 (the experts' biases).
    /// [n_rows][n]
    pub fn vectors(&self, name: &str, n_rows: usize, n: usize) -> Result<Vec<f32>> {
        let idx = self.find(name).ok_or_else(|| Error::Model(format!("missing tensor {name}")))?;
        let t = &self.f.tensors()[idx];
        if t.dims != [n as u64, n_rows as u64] {
            return Err(Error::Model(format!("tensor {name} has shape {:?}, expected [{n}, {n_rows}]", t.dims)));
        }
        t.ggml_type.ensure_supported().map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        let mut v = vec![0.0f32; n_rows * n];
        let row_bytes = t.ggml_type.row_size(n as u64).ok_or_else(|| {
            Error::Model(format!("tensor {name}: length {n} is not a multiple of the {} block size", t.ggml_type))
        })? as usize;
        let data = self.f.tensor_data(t);
        for (r, out) in v.chunks_exact_mut(n).enumerate() {
            dequantize_row(t.ggml_type, &data[r * row_bytes..(r + 1) * row_bytes], out)
                .map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
        }
        Ok(v)
    }

    /// The elements of an F32 matrix (None for other types). [rows][cols]
    pub fn f32_matrix(&self, w: &WRef) -> Result<Option<Vec<f32>>> {
        let t = &self.f.tensors()[w.idx];
        if t.ggml_type != crate::quant::GgmlType::F32 {
            return Ok(None);
        }
        let mut v = vec![0.0f32; w.rows * w.cols];
        let data = &self.f.tensor_data(t)[w.row0 * w.cols * 4..(w.row0 + w.rows) * w.cols * 4];
        dequantize_row(t.ggml_type, data, &mut v).map_err(|e| Error::Model(format!("tensor {}: {e}", t.name)))?;
        Ok(Some(v))
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
