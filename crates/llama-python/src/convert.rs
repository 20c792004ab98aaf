//! `convert(path, outtype, out, vocab_dir, quiet) -> str`: checkpoint → GGUF (llama-convert),
//! with the GIL released while it runs. Returns the path written.

use std::path::PathBuf;

use llama_convert::{ConvertOptions, OutType};
use pyo3::prelude::*;

use crate::errors::IntoPy;

#[pyfunction]
#[pyo3(signature = (path, outtype="f16", out=None, vocab_dir=None, quiet=false))]
pub fn convert(
    py: Python<'_>,
    path: PathBuf,
    outtype: &str,
    out: Option<PathBuf>,
    vocab_dir: Option<PathBuf>,
    quiet: bool,
) -> PyResult<String> {
    let outtype = OutType::parse(outtype).py_err()?;
    let opts = ConvertOptions { path, outtype, out, vocab_dir, progress: !quiet };
    let written = py.detach(move || llama_convert::convert(&opts)).py_err()?;
    Ok(written.to_string_lossy().into_owned())
}
