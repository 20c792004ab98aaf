//! The seed API, kept working: `LLaMA.load(path, n_ctx, GGMLType.F32)`, `estimate_mem_per_token`,
//! `apply(tokens, n_past, mem_per_token, n_threads)` → logits, `sample_next_token`,
//! `get_tokenizer()` with `encode` / `decode`.

use std::sync::{Arc, Mutex, OnceLock};

use llama_core::model::{ContextParams, KvType};
use llama_core::sampler::{Rng, Sampler, SamplerParams};
use llama_core::tokenizer::StreamDecoder;
use llama_core::Error;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::errors::{to_py, IntoPy};
use crate::model::{PyContext, PyModel};

/// The KV cache ("memory") type of the seed API.
#[pyclass(name = "GGMLType", module = "llama._llama", eq, eq_int, frozen)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyGgmlType {
    F32 = 0,
    F16 = 1,
}

#[pyclass(name = "LLaMA", module = "llama._llama", frozen)]
pub struct PyLLaMA {
    model: Arc<PyModel>,
    n_ctx: usize,
    kv_type: KvType,
    /// Created on the first `apply`, with that call's thread count.
    ctx: OnceLock<PyContext>,
}

#[pymethods]
impl PyLLaMA {
    #[staticmethod]
    #[pyo3(signature = (path, n_ctx=512, memory_type=None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        n_ctx: usize,
        memory_type: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let memory_type = match memory_type {
            None => PyGgmlType::F16,
            Some(v) => match v.cast::<PyGgmlType>() {
                Ok(t) => *t.get(),
                Err(_) => match v.extract::<i64>() {
                    Ok(0) => PyGgmlType::F32,
                    Ok(1) => PyGgmlType::F16,
                    _ => {
                        return Err(to_py(Error::InvalidArgument(format!(
                            "memory_type must be GGMLType.F32 or GGMLType.F16, not {v}"
                        ))))
                    }
                },
            },
        };
        if n_ctx == 0 {
            return Err(to_py(Error::InvalidArgument("n_ctx must be > 0".into())));
        }
        let model = PyModel::load(py, &path.to_string_lossy(), false)?;
        let kv_type = match memory_type {
            PyGgmlType::F32 => KvType::F32,
            PyGgmlType::F16 => KvType::F16,
        };
        Ok(PyLLaMA { model: Arc::new(model), n_ctx, kv_type, ctx: OnceLock::new() })
    }

    /// Bytes of activation memory one token needs (the buffers are preallocated; informative).
    #[pyo3(signature = (n_threads=1))]
    fn estimate_mem_per_token(&self, n_threads: usize) -> PyResult<usize> {
        let _ = n_threads;
        let h = self.model.model()?.hparams();
        let per_token = 4 * (4 * h.n_embd + 2 * h.n_head * h.n_embd_head_k + 2 * h.n_ff + h.n_vocab)
            + 2 * h.n_layer * (h.n_embd_k_gqa() + h.n_embd_v_gqa());
        Ok(per_token)
    }

    /// Evaluates `tokens` at positions n_past… and returns the last token's logits ([n_vocab] float32).
    #[pyo3(signature = (tokens, n_past, mem_per_token=0, n_threads=1))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<i64>,
        n_past: usize,
        mem_per_token: usize,
        n_threads: usize,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let _ = mem_per_token;
        let n_vocab = self.model.tokenizer.n_vocab();
        if tokens.is_empty() {
            return Err(to_py(Error::InvalidArgument("apply: no tokens".into())));
        }
        let toks: Vec<u32> = tokens
            .iter()
            .map(|&t| {
                if t < 0 || t as usize >= n_vocab {
                    Err(to_py(Error::InvalidArgument(format!(
                        "token id {t} is outside the vocabulary (n_vocab = {n_vocab})"
                    ))))
                } else {
                    Ok(t as u32)
                }
            })
            .collect::<PyResult<_>>()?;
        let ctx = match self.ctx.get() {
            Some(c) => c,
            None => {
                let p = ContextParams {
                    n_ctx: self.n_ctx,
                    n_batch: self.n_ctx.min(512),
                    n_threads: n_threads.max(1),
                    kv_type: self.kv_type,
                    logits_all: false,
                };
                let c = PyContext::create(py, self.model.model()?.clone(), p)?;
                let _ = self.ctx.set(c);
                self.ctx.get().expect("just set")
            }
        };
        {
            let mut g = ctx.lock()?;
            // The seed API rewinds by passing a smaller n_past.
            if n_past < g.kv_len() {
                g.truncate(n_past).py_err()?;
            }
        }
        ctx.eval_vec(py, &toks, n_past)?;
        let g = ctx.lock()?;
        let l = g.logits();
        Ok(PyArray1::from_slice(py, &l[l.len() - n_vocab..]))
    }

    fn get_tokenizer(&self) -> PyTokenizer {
        PyTokenizer { model: self.model.clone(), stream: Mutex::new(StreamDecoder::new()) }
    }

    fn n_vocab(&self) -> usize {
        self.model.tokenizer.n_vocab()
    }
}

#[pyclass(name = "Tokenizer", module = "llama._llama", frozen)]
pub struct PyTokenizer {
    model: Arc<PyModel>,
    stream: Mutex<StreamDecoder>,
}

#[pymethods]
impl PyTokenizer {
    /// Text → ids; `bos` adds the BOS token (where the model has one).
    #[pyo3(signature = (text, bos=true))]
    fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let t = &self.model.tokenizer;
        let mut ids = t.tokenize(text.as_bytes(), false, false);
        if bos {
            if let Some(b) = t.bos() {
                ids.insert(0, b);
            }
        }
        ids
    }

    /// ids → text. A single id is decoded as a stream: a character split over several tokens
    /// comes out whole with the token that completes it, so printing tokens one by one is safe.
    fn decode(&self, ids: &Bound<'_, PyAny>) -> PyResult<String> {
        let t = &self.model.tokenizer;
        let n = t.n_vocab();
        let check = |i: i64| -> PyResult<u32> {
            if i < 0 || i as usize >= n {
                Err(to_py(Error::InvalidArgument(format!("token id {i} is outside the vocabulary (n_vocab = {n})"))))
            } else {
                Ok(i as u32)
            }
        };
        if let Ok(id) = ids.extract::<i64>() {
            let piece = t.token_to_piece(check(id)?, false);
            let mut s = self.stream.lock().map_err(|_| to_py(Error::InvalidArgument("tokenizer in use".into())))?;
            return Ok(s.push(&piece));
        }
        let list: Vec<i64> = ids.extract()?;
        let ids: Vec<u32> = list.into_iter().map(check).collect::<PyResult<_>>()?;
        Ok(String::from_utf8_lossy(&t.detokenize(&ids, false)).into_owned())
    }

    fn n_vocab(&self) -> usize {
        self.model.tokenizer.n_vocab()
    }

    fn bos(&self) -> Option<u32> {
        self.model.tokenizer.bos()
    }

    fn eos(&self) -> Option<u32> {
        self.model.tokenizer.eos()
    }
}

static GLOBAL_RNG: OnceLock<Mutex<Rng>> = OnceLock::new();

/// The seed API's sampler: repeat penalty over the given history, then top-k, top-p, temperature.
#[pyfunction]
#[pyo3(signature = (tokens, logits, top_k=40, top_p=0.95, temp=0.8, repeat_penalty=1.1, seed=None))]
pub fn sample_next_token(
    tokens: Vec<u32>,
    logits: PyReadonlyArray1<'_, f32>,
    top_k: i32,
    top_p: f32,
    temp: f32,
    repeat_penalty: f32,
    seed: Option<u64>,
) -> PyResult<u32> {
    let mut l =
        logits.as_slice().map_err(|_| to_py(Error::InvalidArgument("logits must be contiguous".into())))?.to_vec();
    let p = SamplerParams { temp, top_k, top_p, min_p: 0.0, repeat_penalty, penalty_last_n: 64, ..Default::default() };
    let mut sampler = Sampler::new();
    match seed {
        Some(s) => sampler.sample(&mut l, &tokens, &p, &mut Rng::new(s)).py_err(),
        None => {
            let rng = GLOBAL_RNG.get_or_init(|| Mutex::new(Rng::from_entropy()));
            let mut g = rng.lock().unwrap_or_else(|e| e.into_inner());
            sampler.sample(&mut l, &tokens, &p, &mut g).py_err()
        }
    }
}
