//! `quantize(path, type, out, pure, n_threads, quiet) -> str`: llama_core::quantize_file with
//! llama-quantize-style progress on stderr. Runs without the GIL; Ctrl-C stops it cleanly (the
//! temp file is removed) at the next tensor boundary.

use std::io::Write;
use std::path::{Path, PathBuf};

use llama_core::quantize_file::{self as qf, FileType, QuantizeOptions, TensorEvent};
use pyo3::prelude::*;

use crate::errors::IntoPy;

const MIB: f64 = 1024.0 * 1024.0;

fn shape(dims: &[u64]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
}

/// Quantizes a F32/F16/BF16 GGUF (or the model folder holding ggml-model-f16.gguf) and returns the
/// output path (default: ggml-model-<type>.gguf beside the input).
#[pyfunction]
#[pyo3(signature = (path, r#type = "q4_0", out = None, pure = false, n_threads = 0, quiet = false, imatrix = None))]
#[allow(clippy::too_many_arguments)]
pub fn quantize(
    py: Python<'_>,
    path: PathBuf,
    r#type: &str,
    out: Option<PathBuf>,
    pure: bool,
    n_threads: usize,
    quiet: bool,
    imatrix: Option<PathBuf>,
) -> PyResult<String> {
    let file_type = FileType::parse(r#type).py_err()?;
    let input = qf::resolve_input(&path).py_err()?;
    let output = out.unwrap_or_else(|| qf::default_output(&input, file_type));
    let mut opts = QuantizeOptions::new(file_type, pure, n_threads);
    if let Some(p) = imatrix {
        let m = py.detach(|| qf::Imatrix::load(&p)).py_err()?;
        if !quiet {
            let fmt = if m.is_legacy { "legacy .dat" } else { "GGUF" };
            eprintln!(
                "importance matrix {} ({fmt}): {} entries, {} chunks",
                p.display(),
                m.entries.len(),
                m.chunk_count
            );
        }
        opts.imatrix = Some(std::sync::Arc::new(m));
    }
    if !quiet {
        let mix = if pure { "pure" } else { "llama.cpp mix" };
        eprintln!("quantizing {} -> {} as {file_type} ({mix})", input.display(), output.display());
    }
    let report = py
        .detach(|| {
            let mut progress = |e: &TensorEvent| {
                if !quiet {
                    let p = e.plan;
                    let sizes = if p.converts() {
                        format!(
                            "{:>6} -> {:<6} {:9.2} MiB -> {:8.2} MiB",
                            p.src_type.name(),
                            p.dst_type.name(),
                            p.src_bytes as f64 / MIB,
                            p.dst_bytes as f64 / MIB
                        )
                    } else {
                        format!("{:>6} (kept)   {:9.2} MiB", p.src_type.name(), p.src_bytes as f64 / MIB)
                    };
                    eprintln!("[{:>4}/{:>4}] {:<36} [{}] {sizes}", e.index + 1, e.n_tensors, p.name, shape(&p.dims));
                    let _ = std::io::stderr().flush();
                }
                // Ctrl-C: Python's handler only sets a flag; check it between tensors.
                Python::attach(|py| py.check_signals().is_ok())
            };
            qf::quantize_file(Path::new(&input), Some(&output), &opts, Some(&mut progress))
        })
        .py_err()?;
    if !quiet {
        let bpw = |b: u64| b as f64 * 8.0 / report.n_elements.max(1) as f64;
        eprintln!(
            "model size: {:.2} MiB ({:.2} BPW) -> {:.2} MiB ({:.2} BPW); {} of {} tensors quantized{}; {:.1} s on {} threads",
            report.src_tensor_bytes as f64 / MIB,
            bpw(report.src_tensor_bytes),
            report.dst_tensor_bytes as f64 / MIB,
            bpw(report.dst_tensor_bytes),
            report.n_quantized,
            report.n_tensors,
            if report.n_fallback > 0 { format!(" ({} with a fallback type: rows not a multiple of 256)", report.n_fallback) } else { String::new() },
            report.seconds,
            report.n_threads
        );
        eprintln!(
            "file: {:.2} MiB -> {:.2} MiB: {}",
            report.src_file_bytes as f64 / MIB,
            report.dst_file_bytes as f64 / MIB,
            report.output.display()
        );
    }
    Ok(report.output.to_string_lossy().into_owned())
}
