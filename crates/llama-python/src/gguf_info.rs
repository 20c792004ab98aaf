//! `gguf_info(path)`: a GGUF file's header as Python data, for `python -m llama info`.

use llama_core::gguf::{GgufFile, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::IntoPy;

/// Arrays longer than this are summarized as {"type", "len"} (vocabularies have 10⁵ entries).
const MAX_LISTED: usize = 64;

pub fn value_to_py<'py>(py: Python<'py>, v: &Value, summarize: bool) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::U8(x) => x.into_pyobject(py)?.into_any(),
        Value::I8(x) => x.into_pyobject(py)?.into_any(),
        Value::U16(x) => x.into_pyobject(py)?.into_any(),
        Value::I16(x) => x.into_pyobject(py)?.into_any(),
        Value::U32(x) => x.into_pyobject(py)?.into_any(),
        Value::I32(x) => x.into_pyobject(py)?.into_any(),
        Value::U64(x) => x.into_pyobject(py)?.into_any(),
        Value::I64(x) => x.into_pyobject(py)?.into_any(),
        Value::F32(x) => x.into_pyobject(py)?.into_any(),
        Value::F64(x) => x.into_pyobject(py)?.into_any(),
        Value::Bool(x) => pyo3::types::PyBool::new(py, *x).to_owned().into_any(),
        Value::String(s) => s.to_string_lossy().into_pyobject(py)?.into_any(),
        Value::Array(t, items) => {
            if summarize && items.len() > MAX_LISTED {
                let d = PyDict::new(py);
                d.set_item("type", t.name())?;
                d.set_item("len", items.len())?;
                d.into_any()
            } else {
                let l = PyList::empty(py);
                for it in items {
                    l.append(value_to_py(py, it, summarize)?)?;
                }
                l.into_any()
            }
        }
    })
}

/// llama-cpp-python's `metadata`: every scalar key as a string (arrays are left out, as there).
pub fn metadata_strings(f: &GgufFile) -> Vec<(String, String)> {
    f.metadata()
        .iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::Array(..) => return None,
                Value::String(s) => s.to_string_lossy().into_owned(),
                Value::Bool(b) => b.to_string(),
                Value::F32(x) => x.to_string(),
                Value::F64(x) => x.to_string(),
                other => other.as_int().map(|i| i.to_string()).unwrap_or_default(),
            };
            Some((k.clone(), s))
        })
        .collect()
}

#[pyfunction]
pub fn gguf_info<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let f = py.detach(|| GgufFile::open(&path)).py_err()?;
    let d = PyDict::new(py);
    d.set_item("path", path.to_string_lossy())?;
    d.set_item("version", f.version)?;
    d.set_item("alignment", f.alignment)?;
    d.set_item("data_offset", f.data_offset)?;
    d.set_item("file_size", f.file_size())?;
    let md = PyDict::new(py);
    for (k, v) in f.metadata() {
        md.set_item(k, value_to_py(py, v, true)?)?;
    }
    d.set_item("metadata", md)?;
    let tensors = PyList::empty(py);
    let mut n_params: u64 = 0;
    for t in f.tensors() {
        let td = PyDict::new(py);
        td.set_item("name", &t.name)?;
        td.set_item("type", t.ggml_type.name())?;
        td.set_item("shape", t.dims.clone())?;
        td.set_item("offset", t.offset)?;
        td.set_item("n_bytes", t.n_bytes)?;
        n_params += t.n_elements();
        tensors.append(td)?;
    }
    d.set_item("tensors", tensors)?;
    d.set_item("n_params", n_params)?;
    Ok(d)
}
