//! `Grammar` and `GrammarMatcher`: the core's llguidance-backed constraints, thin wrappers
//! (`llama.grammar.LlamaGrammar` is the llama-cpp-python-shaped class on top).

use std::sync::Mutex;

use llama_core::grammar::{Grammar, Matcher, TokEnv};
use llama_core::Error;
use numpy::PyReadwriteArray1;
use pyo3::prelude::*;

use crate::errors::{to_py, IntoPy};
use crate::model::PyModel;

#[pyclass(name = "Grammar", module = "llama._llama", frozen)]
pub struct PyGrammar {
    pub inner: Grammar,
}

#[pymethods]
impl PyGrammar {
    /// GBNF as llama.cpp writes it; InvalidArgumentError with the parse error otherwise.
    #[staticmethod]
    #[pyo3(signature = (text, root="root"))]
    fn from_gbnf(py: Python<'_>, text: &str, root: &str) -> PyResult<Self> {
        let inner = py.detach(|| Grammar::from_gbnf(text, root)).py_err()?;
        Ok(PyGrammar { inner })
    }

    /// A JSON schema given as JSON text.
    #[staticmethod]
    fn from_json_schema(py: Python<'_>, schema: &str) -> PyResult<Self> {
        let v: serde_json::Value = serde_json::from_str(schema)
            .map_err(|e| to_py(Error::Grammar(format!("JSON schema is not valid JSON: {e}"))))?;
        let inner = py.detach(|| Grammar::from_json_schema(&v)).py_err()?;
        Ok(PyGrammar { inner })
    }

    #[staticmethod]
    fn json_object() -> Self {
        PyGrammar { inner: Grammar::json_object() }
    }

    #[staticmethod]
    fn from_regex(pattern: &str) -> PyResult<Self> {
        Ok(PyGrammar { inner: Grammar::from_regex(pattern).py_err()? })
    }

    #[staticmethod]
    fn from_lark(text: &str) -> PyResult<Self> {
        Ok(PyGrammar { inner: Grammar::from_lark(text).py_err()? })
    }

    /// The Lark text llguidance compiled (GBNF: its translation), or None.
    fn lark(&self) -> Option<String> {
        self.inner.lark().map(str::to_string)
    }
}

/// A matcher for one generation with `model`'s vocabulary (the vocabulary's token trie is built
/// on first use and kept on the model).
pub fn matcher_for(py: Python<'_>, grammar: &Bound<'_, PyGrammar>, model: &Bound<'_, PyModel>) -> PyResult<Matcher> {
    let g = grammar.get();
    let m = model.get();
    let env = match m.tok_env.get() {
        Some(e) => e.clone(),
        None => {
            let e = py.detach(|| TokEnv::new(&m.tokenizer)).py_err()?;
            m.tok_env.get_or_init(|| e).clone()
        }
    };
    py.detach(|| Matcher::new(&g.inner, &env)).py_err()
}

#[pyclass(name = "GrammarMatcher", module = "llama._llama")]
pub struct PyGrammarMatcher {
    inner: Mutex<Matcher>,
}

impl PyGrammarMatcher {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Matcher>> {
        self.inner
            .lock()
            .map_err(|_| to_py(Error::InvalidArgument("grammar matcher poisoned by an earlier panic".into())))
    }
}

#[pymethods]
impl PyGrammarMatcher {
    /// A matcher for one generation with `model`'s vocabulary (the vocabulary's token trie is
    /// built on first use and kept on the model).
    #[new]
    fn new(py: Python<'_>, grammar: &Bound<'_, PyGrammar>, model: &Bound<'_, PyModel>) -> PyResult<Self> {
        Ok(PyGrammarMatcher { inner: Mutex::new(matcher_for(py, grammar, model)?) })
    }

    /// Sets the logits of forbidden tokens to -inf, in place (1-D float32, C-contiguous).
    fn mask_logits(&self, py: Python<'_>, mut logits: PyReadwriteArray1<'_, f32>) -> PyResult<()> {
        let dst =
            logits.as_slice_mut().map_err(|_| to_py(Error::InvalidArgument("logits must be C-contiguous".into())))?;
        let mut guard = self.lock()?;
        let m: &mut Matcher = &mut guard;
        py.detach(|| m.mask_logits(dst)).py_err()
    }

    fn accept(&self, token: i64) -> PyResult<()> {
        let t = u32::try_from(token)
            .map_err(|_| to_py(Error::InvalidArgument(format!("token id {token} is negative or too large"))))?;
        self.lock()?.accept(t).py_err()
    }

    fn is_accepting(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_accepting())
    }

    fn is_stopped(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_stopped())
    }

    fn reset(&self) -> PyResult<()> {
        self.lock()?.reset();
        Ok(())
    }

    fn clone(&self) -> PyResult<Self> {
        Ok(PyGrammarMatcher { inner: Mutex::new(self.lock()?.clone()) })
    }
}
