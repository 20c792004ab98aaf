//! `serve`: the HTTP server (crate llama-server) run with the GIL released until SIGINT/SIGTERM.

use std::path::PathBuf;

use pyo3::prelude::*;

/// Runs the OpenAI-compatible server on `host:port` until SIGINT/SIGTERM (blocking).
#[pyfunction]
#[pyo3(signature = (model, host="127.0.0.1", port=8080, parallel=4, n_ctx=4096, n_threads=None,
                    n_batch=512, queue=64, api_key=None, alias=None, body_limit=8388608, quiet=false,
                    embeddings=false, pooling=None, reranking=false, flash_attn=false, type_k="f16",
                    type_v=None))]
#[allow(clippy::too_many_arguments)]
pub fn serve(
    py: Python<'_>,
    model: PathBuf,
    host: &str,
    port: u16,
    parallel: usize,
    n_ctx: usize,
    n_threads: Option<usize>,
    n_batch: usize,
    queue: usize,
    api_key: Option<String>,
    alias: Option<String>,
    body_limit: usize,
    quiet: bool,
    embeddings: bool,
    pooling: Option<String>,
    reranking: bool,
    flash_attn: bool,
    type_k: &str,
    type_v: Option<&str>,
) -> PyResult<()> {
    let type_k = crate::model::parse_kv_type(type_k)?;
    let type_v = type_v.map(crate::model::parse_kv_type).transpose()?;
    let d = llama_server::ServeOptions::default();
    let opts = llama_server::ServeOptions {
        model,
        host: host.to_string(),
        port,
        parallel,
        n_ctx,
        n_threads: n_threads.unwrap_or(d.n_threads),
        n_batch,
        queue,
        api_key,
        alias,
        body_limit,
        quiet,
        embeddings,
        pooling,
        reranking,
        flash_attn,
        type_k,
        type_v,
    };
    py.detach(move || llama_server::serve(opts)).map_err(|m| crate::errors::named("LlamaError", m))
}
