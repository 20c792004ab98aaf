//! `SamplerChain`: llama.cpp-shaped sampler chains in Rust (the stages run over 10⁵ logits per
//! token). Built from llama-cpp-python's sampling arguments or from named stages; Python keeps one
//! per generation and calls `sample` once per token.

use std::collections::HashMap;
use std::sync::Mutex;

use llama_core::sampler::grammar::GrammarStage;
use llama_core::sampler::{params, Chain, ChainParams, Sampler};
use numpy::{PyArray1, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{to_py, IntoPy};
use crate::grammar::{matcher_for, PyGrammar};

fn invalid(msg: String) -> PyErr {
    to_py(llama_core::Error::InvalidArgument(msg))
}

/// A seed as llama-cpp-python passes it to llama.cpp (a uint32_t: taken mod 2³²; -1 and
/// 0xFFFFFFFF mean "random").
fn seed_u32(seed: i128) -> u32 {
    seed.rem_euclid(1 << 32) as u32
}

#[pyclass(name = "SamplerChain", module = "llama._llama")]
pub struct PySamplerChain {
    inner: Mutex<Chain>,
}

impl PySamplerChain {
    /// A copy with the same state (RNG, penalty history, grammar position).
    pub(crate) fn clone_chain(&self) -> Chain {
        self.chain().clone()
    }

    fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn row<'a>(logits: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    if logits.len() == 0 {
        return Err(invalid("empty logits".into()));
    }
    logits.as_slice().map_err(|_| invalid("logits must be a contiguous float32 array".into()))
}

#[pymethods]
impl PySamplerChain {
    /// The chain llama-cpp-python's `Llama._init_sampler` builds from these arguments:
    /// [logit-bias] → penalties → greedy (temperature 0) | dist (< 0) | mirostat (mode 1, 2) |
    /// top-k → typical → top-p → min-p → [xtc] → temp[-ext] → dist.
    #[new]
    #[pyo3(signature = (n_vocab, *, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                        repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64,
                        mirostat_mode=0, mirostat_tau=5.0, mirostat_eta=0.1, logit_bias=None, seed=0xFFFF_FFFF,
                        xtc_probability=0.0, xtc_threshold=0.1, dynatemp_range=0.0, dynatemp_exponent=1.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_vocab: usize,
        temperature: f32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        typical_p: f32,
        repeat_penalty: f32,
        frequency_penalty: f32,
        presence_penalty: f32,
        penalty_last_n: i32,
        mirostat_mode: i32,
        mirostat_tau: f32,
        mirostat_eta: f32,
        logit_bias: Option<Vec<(i64, f64)>>,
        seed: i128,
        xtc_probability: f32,
        xtc_threshold: f32,
        dynatemp_range: f32,
        dynatemp_exponent: f32,
    ) -> PyResult<Self> {
        let mut bias = Vec::new();
        for (id, b) in logit_bias.unwrap_or_default() {
            let id = u32::try_from(id).map_err(|_| invalid(format!("logit_bias token {id} is not a token id")))?;
            bias.push((id, b));
        }
        let p = ChainParams {
            n_vocab,
            temp: temperature,
            top_k,
            top_p,
            min_p,
            typical_p,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
            penalty_last_n,
            mirostat_mode,
            mirostat_tau,
            mirostat_eta,
            logit_bias: bias,
            seed: seed_u32(seed),
            xtc_probability,
            xtc_threshold,
            dynatemp_range,
            dynatemp_exponent,
        };
        Ok(PySamplerChain { inner: Mutex::new(p.build().py_err()?) })
    }

    /// A chain of named stages, each as llama.cpp's `llama_sampler_init_<name>` takes its
    /// arguments: ``[("top_k", {"k": 40}), ("temp", {"t": 0.8}), ("dist", {"seed": 1})]``.
    #[staticmethod]
    fn from_stages(stages: Vec<(String, HashMap<String, f64>)>) -> PyResult<Self> {
        let specs: Vec<params::StageSpec> = stages
            .into_iter()
            .map(|(n, a)| {
                let mut a: Vec<(String, f64)> = a.into_iter().collect();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                (n, a)
            })
            .collect();
        Ok(PySamplerChain { inner: Mutex::new(params::chain_from_names(&specs).py_err()?) })
    }

    /// Picks a token from `logits` (float32 [n_vocab], read only) and accepts it.
    fn sample(&self, py: Python<'_>, logits: PyReadonlyArray1<'_, f32>) -> PyResult<u32> {
        let l = row(&logits)?;
        py.detach(|| self.chain().sample(l)).py_err()
    }

    /// Runs the stages without accepting: (ids int32, logits float32, p float32, selected index or
    /// None) of the surviving candidates, in the chain's final order.
    #[allow(clippy::type_complexity)]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        logits: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<(Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>, Option<usize>)>
    {
        let l = row(&logits)?;
        let mut c = self.chain();
        let cur = c.apply_logits(l).py_err()?;
        let ids: Vec<i32> = cur.data.iter().map(|t| t.id as i32).collect();
        let lg: Vec<f32> = cur.data.iter().map(|t| t.logit).collect();
        let p: Vec<f32> = cur.data.iter().map(|t| t.p).collect();
        let sel = cur.selected;
        Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, lg), PyArray1::from_vec(py, p), sel))
    }

    /// Adds `grammar` (over `model`'s vocabulary) where llama-cpp-python puts its grammar sampler:
    /// after logit bias and penalties, before the stages that sort, cut or pick. Forbidden tokens
    /// get logit -inf; the picked token advances the grammar (a token it rejects is an error).
    fn add_grammar(
        &self,
        py: Python<'_>,
        grammar: &Bound<'_, PyGrammar>,
        model: &Bound<'_, crate::model::PyModel>,
    ) -> PyResult<()> {
        let m = matcher_for(py, grammar, model)?;
        self.chain().insert_grammar(Box::new(GrammarStage::new(m)));
        Ok(())
    }

    /// Tells every stage that `token` was chosen (penalties remember it; a grammar that
    /// forbids it raises).
    fn accept(&self, token: u32) -> PyResult<()> {
        let mut c = self.chain();
        c.accept(token);
        c.check().py_err()
    }

    /// Back to the state after construction (RNGs reseeded, penalty history forgotten).
    fn reset(&self) {
        self.chain().reset();
    }

    /// The stage names, in order (llama.cpp's names: "penalties", "top-k", "dist" …).
    fn names(&self) -> Vec<&'static str> {
        self.chain().names()
    }

    /// An independent copy with the same state (RNG position, history).
    fn clone(&self) -> Self {
        PySamplerChain { inner: Mutex::new(self.chain().clone()) }
    }

    fn __repr__(&self) -> String {
        format!("SamplerChain([{}])", self.chain().names().join(", "))
    }
}
