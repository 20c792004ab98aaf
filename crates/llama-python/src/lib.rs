//! Python bindings: the only crate that sees pyo3. Each wrapper extracts arguments, releases the
//! GIL around computation and maps core errors to the typed exceptions of `llama.errors`.

mod convert;
mod engine;
mod errors;
mod gguf_info;
mod grammar;
mod model;
mod quantize;
mod sampling;
mod serve;

use pyo3::prelude::*;

#[pymodule]
fn _llama(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(gguf_info::gguf_info, m)?)?;
    m.add_function(wrap_pyfunction!(convert::convert, m)?)?;
    m.add_function(wrap_pyfunction!(model::render_chat_template, m)?)?;
    m.add_function(wrap_pyfunction!(model::nll, m)?)?;
    m.add_function(wrap_pyfunction!(model::cpu_info, m)?)?;
    m.add_function(wrap_pyfunction!(quantize::quantize, m)?)?;
    m.add_function(wrap_pyfunction!(serve::serve, m)?)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<engine::PyEngineRequest>()?;
    m.add_class::<model::PyContext>()?;
    m.add_class::<model::PyStreamDecoder>()?;
    m.add_class::<sampling::PySamplerChain>()?;
    m.add_class::<grammar::PyGrammar>()?;
    m.add_class::<grammar::PyGrammarMatcher>()?;
    Ok(())
}
