//! `Model` (weights + vocabulary, or the vocabulary alone) and `Context` (KV cache, evaluation).

use std::sync::{Arc, Mutex};

use llama_core::gguf::GgufFile;
use llama_core::model::{Batch, Context, ContextParams, KvType, Model, ModelParams, Pooling};
use llama_core::tokenizer::{StreamDecoder, Tokenizer};
use llama_core::Error;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{to_py, IntoPy};
use crate::gguf_info::metadata_strings;

enum Weights {
    Full(Arc<Model>),
    VocabOnly(Box<GgufFile>),
}

#[pyclass(name = "Model", module = "llama._llama", frozen)]
pub struct PyModel {
    weights: Weights,
    pub(crate) tokenizer: Tokenizer,
    path: String,
    /// llguidance's view of the vocabulary, built on the first grammar use (a trie and token-set
    /// slices over the whole vocabulary: ~0.1-0.5 s on 150k tokens).
    pub(crate) tok_env: std::sync::OnceLock<llama_core::grammar::TokEnv>,
}

impl PyModel {
    fn gguf(&self) -> &GgufFile {
        match &self.weights {
            Weights::Full(m) => m.gguf(),
            Weights::VocabOnly(f) => f,
        }
    }

    pub(crate) fn model(&self) -> PyResult<&Arc<Model>> {
        match &self.weights {
            Weights::Full(m) => Ok(m),
            Weights::VocabOnly(_) => Err(to_py(Error::InvalidArgument(format!(
                "{}: loaded with vocab_only=True, so it cannot evaluate",
                self.path
            )))),
        }
    }

    fn load(py: Python<'_>, path: &str, vocab_only: bool, use_mmap: bool) -> PyResult<PyModel> {
        let p = path.to_string();
        let (weights, tokenizer) = py
            .detach(move || -> llama_core::Result<(Weights, Tokenizer)> {
                if vocab_only {
                    let f = GgufFile::open(&p)?;
                    let t = Tokenizer::from_gguf(&f)?;
                    Ok((Weights::VocabOnly(Box::new(f)), t))
                } else {
                    let m = Model::load(&p, &ModelParams { no_mmap: !use_mmap })?;
                    let t = Tokenizer::from_gguf(m.gguf())?;
                    Ok((Weights::Full(Arc::new(m)), t))
                }
            })
            .map_err(|e| to_py(with_path(e, path)))?;
        Ok(PyModel { weights, tokenizer, path: path.to_string(), tok_env: std::sync::OnceLock::new() })
    }

    fn check_id(&self, id: i64) -> PyResult<u32> {
        if id < 0 || id as usize >= self.tokenizer.n_vocab() {
            return Err(to_py(Error::InvalidArgument(format!(
                "token id {id} is outside the vocabulary (n_vocab = {})",
                self.tokenizer.n_vocab()
            ))));
        }
        Ok(id as u32)
    }
}

/// Errors from model/tokenizer code do not know the file; name it.
fn with_path(e: Error, path: &str) -> Error {
    match e {
        Error::Model(m) => Error::Model(format!("{path}: {m}")),
        Error::Tokenizer(m) => Error::Tokenizer(format!("{path}: {m}")),
        Error::UnsupportedType(m) => Error::UnsupportedType(format!("{m} in {path}")),
        other => other,
    }
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (path, vocab_only=false, use_mmap=true))]
    fn new(py: Python<'_>, path: std::path::PathBuf, vocab_only: bool, use_mmap: bool) -> PyResult<Self> {
        PyModel::load(py, &path.to_string_lossy(), vocab_only, use_mmap)
    }

    fn n_vocab(&self) -> usize {
        self.tokenizer.n_vocab()
    }

    fn n_ctx_train(&self) -> usize {
        match &self.weights {
            Weights::Full(m) => m.hparams().n_ctx_train,
            Weights::VocabOnly(f) => {
                let arch = f.get_str("general.architecture").ok().flatten().unwrap_or("llama").to_string();
                f.get_u32(&format!("{arch}.context_length")).ok().flatten().unwrap_or(0) as usize
            }
        }
    }

    fn n_embd(&self) -> PyResult<usize> {
        Ok(self.model()?.hparams().n_embd)
    }

    /// Whether every layer keeps a recurrent state (llama.cpp's `llama_model_is_recurrent`: Mamba).
    fn is_recurrent(&self) -> PyResult<bool> {
        let m = self.model()?;
        Ok(m.is_recurrent() && !m.is_hybrid())
    }

    /// Whether recurrent layers sit beside attention layers (`llama_model_is_hybrid`: Qwen3.5).
    fn is_hybrid(&self) -> PyResult<bool> {
        Ok(self.model()?.is_hybrid())
    }

    fn metadata(&self) -> Vec<(String, String)> {
        metadata_strings(self.gguf())
    }

    fn chat_template(&self) -> Option<String> {
        self.gguf().get_str("tokenizer.chat_template").ok().flatten().map(|s| s.to_string())
    }

    /// The pooling the model's embeddings use unless told otherwise (its `pooling_type`, else
    /// mean): none, mean, cls, last or rank.
    fn embeddings_only(&self) -> PyResult<bool> {
        Ok(self.model()?.embeddings_only())
    }

    fn pooling_type(&self) -> PyResult<&'static str> {
        Ok(Pooling::of_model(self.model()?).name())
    }

    /// Scores per input of the model's reranking head (`pooling="rank"`); None without one.
    fn n_cls_out(&self) -> PyResult<Option<usize>> {
        Ok(self.model()?.n_cls_out())
    }

    /// A reranker's tokens for one (query, document) pair, as llama-server builds them.
    fn rerank_tokens(&self, py: Python<'_>, query: &str, document: &str) -> PyResult<Vec<u32>> {
        let model = self.model()?;
        let tok = &self.tokenizer;
        Ok(py.detach(|| llama_core::model::rerank_tokens(model, tok, query, document)))
    }

    fn architecture(&self) -> Option<String> {
        self.gguf().get_str("general.architecture").ok().flatten().map(|s| s.to_string())
    }

    #[pyo3(signature = (text, add_special=true, parse_special=false))]
    fn tokenize(&self, py: Python<'_>, text: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
        let tok = &self.tokenizer;
        py.detach(|| tok.tokenize(text, add_special, parse_special))
    }

    #[pyo3(signature = (ids, special=false))]
    fn detokenize<'py>(&self, py: Python<'py>, ids: Vec<i64>, special: bool) -> PyResult<Bound<'py, PyBytes>> {
        let ids: Vec<u32> = ids.into_iter().map(|i| self.check_id(i)).collect::<PyResult<_>>()?;
        Ok(PyBytes::new(py, &self.tokenizer.detokenize(&ids, special)))
    }

    #[pyo3(signature = (id, special=false))]
    fn token_to_piece<'py>(&self, py: Python<'py>, id: i64, special: bool) -> PyResult<Bound<'py, PyBytes>> {
        let id = self.check_id(id)?;
        Ok(PyBytes::new(py, &self.tokenizer.token_to_piece(id, special)))
    }

    fn token_bos(&self) -> Option<u32> {
        self.tokenizer.bos()
    }

    fn token_eos(&self) -> Option<u32> {
        self.tokenizer.eos()
    }

    fn add_bos(&self) -> bool {
        self.tokenizer.add_bos()
    }

    fn is_eog(&self, id: i64) -> bool {
        id >= 0 && self.tokenizer.is_eog(id as u32)
    }

    /// The hyperparameters: "arch" (a str) and the sizes (ints).
    fn hparams<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.model()?.hparams();
        let d = PyDict::new(py);
        d.set_item("arch", h.arch.name())?;
        let sizes = [
            ("n_vocab", h.n_vocab),
            ("n_ctx_train", h.n_ctx_train),
            ("n_embd", h.n_embd),
            ("n_layer", h.n_layer),
            ("n_head", h.n_head),
            ("n_head_kv", h.n_head_kv),
            ("n_embd_head_k", h.n_embd_head_k),
            ("n_embd_head_v", h.n_embd_head_v),
            ("n_embd_k_gqa", h.n_embd_k_gqa()),
            ("n_embd_v_gqa", h.n_embd_v_gqa()),
            ("n_ff", h.n_ff),
        ];
        for (k, v) in sizes {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("Model({:?}, n_vocab={})", self.path, self.tokenizer.n_vocab())
    }
}

#[pyclass(name = "Context", module = "llama._llama", frozen)]
pub struct PyContext {
    model: Arc<Model>,
    ctx: Mutex<Context>,
}

impl PyContext {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Context>> {
        self.ctx
            .try_lock()
            .map_err(|_| to_py(Error::InvalidArgument("this context is being used by another thread".into())))
    }
}

pub fn parse_kv_type(s: &str) -> PyResult<KvType> {
    KvType::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = KvType::ALL.iter().map(|t| t.name()).collect();
        to_py(Error::InvalidArgument(format!("KV cache type {s:?} is not supported (use one of {})", names.join(", "))))
    })
}

#[pymethods]
impl PyContext {
    #[new]
    #[pyo3(signature = (model, n_ctx=512, n_batch=512, n_threads=None, type_k="f16", logits_all=false, n_seq_max=1, embeddings=false, type_v=None, flash_attn=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &PyModel,
        n_ctx: usize,
        n_batch: usize,
        n_threads: Option<usize>,
        type_k: &str,
        logits_all: bool,
        n_seq_max: usize,
        embeddings: bool,
        type_v: Option<&str>,
        flash_attn: bool,
    ) -> PyResult<Self> {
        let m = model.model()?.clone();
        let n_threads = n_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let kv_type = parse_kv_type(type_k)?;
        let type_v = type_v.map(parse_kv_type).transpose()?;
        let p = ContextParams {
            n_ctx,
            n_batch,
            n_threads: n_threads.max(1),
            kv_type,
            type_v,
            flash_attn,
            logits_all,
            n_seq_max,
            embeddings,
        };
        let model = m.clone();
        let ctx = py.detach(move || Context::new(&m, p)).py_err()?;
        Ok(PyContext { model, ctx: Mutex::new(ctx) })
    }

    /// A context for `embed` (the core's `ContextParams::for_embeddings`: whole texts of up to
    /// n_ctx tokens per batch, up to 64 texts at once, one for a recurrent model).
    #[staticmethod]
    #[pyo3(signature = (model, n_ctx=0, n_threads=None))]
    fn for_embeddings(py: Python<'_>, model: &PyModel, n_ctx: usize, n_threads: Option<usize>) -> PyResult<Self> {
        let m = model.model()?.clone();
        let n_threads = n_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let p = ContextParams::for_embeddings(&m, n_ctx, n_threads.max(1));
        let model = m.clone();
        let ctx = py.detach(move || Context::new(&m, p)).py_err()?;
        Ok(PyContext { model, ctx: Mutex::new(ctx) })
    }

    /// Evaluates `tokens` at positions n_past… (GIL released) and writes the logits into `out`
    /// ([n_outputs, n_vocab] float32, C-contiguous: the caller's rows, no copy in between). The
    /// ids, n_past, the window and the size of `out` are checked by the core's `Context::eval_into`.
    fn eval(
        &self,
        py: Python<'_>,
        tokens: Vec<i64>,
        n_past: usize,
        mut out: PyReadwriteArray2<'_, f32>,
    ) -> PyResult<()> {
        let dst = out.as_slice_mut().map_err(|_| to_py(Error::InvalidArgument("out must be C-contiguous".into())))?;
        let mut guard = self.lock()?;
        let ctx: &mut Context = &mut guard;
        let model = &self.model;
        py.detach(|| ctx.eval_into(model, &tokens, n_past, Some(dst))).py_err()
    }

    /// Embeddings of token sequences (GIL released; the core's `Context::embed`: packed into
    /// batches, pooled, normalized when asked). `pooling` names llama.cpp's kinds (none, mean,
    /// cls, last, rank); None takes the model's own. Returns one float32 array per sequence:
    /// [n_embd], or [n_tokens, n_embd] with pooling "none".
    #[pyo3(signature = (seqs, pooling=None, normalize=true))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        seqs: Vec<Vec<i64>>,
        pooling: Option<&str>,
        normalize: bool,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let pooling = match pooling {
            Some(p) => Pooling::parse(p).py_err()?,
            None => Pooling::of_model(&self.model),
        };
        let ids = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.iter()
                    .map(|&t| {
                        u32::try_from(t).map_err(|_| {
                            to_py(Error::InvalidArgument(format!("input {i}: token id {t} is outside the vocabulary")))
                        })
                    })
                    .collect::<PyResult<Vec<u32>>>()
            })
            .collect::<PyResult<Vec<Vec<u32>>>>()?;
        let mut guard = self.lock()?;
        let ctx: &mut Context = &mut guard;
        let model = &self.model;
        let refs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
        let out = py.detach(|| ctx.embed(model, &refs, pooling, normalize)).py_err()?;
        let n_embd = model.hparams().n_embd;
        out.iter()
            .map(|v| {
                let a = PyArray1::from_slice(py, v);
                if pooling == Pooling::None {
                    Ok(a.reshape([v.len() / n_embd, n_embd])?.into_any())
                } else {
                    Ok(a.into_any())
                }
            })
            .collect()
    }

    /// Threads used by the next evals (the logits do not depend on it).
    fn set_n_threads(&self, n_threads: usize) -> PyResult<()> {
        self.lock()?.set_n_threads(&self.model, n_threads).py_err()
    }

    fn n_threads(&self) -> PyResult<usize> {
        Ok(self.lock()?.n_threads())
    }

    fn n_ctx(&self) -> PyResult<usize> {
        Ok(self.lock()?.n_ctx())
    }

    fn kv_len(&self) -> PyResult<usize> {
        Ok(self.lock()?.kv_len())
    }

    /// True when the model has recurrent (linear-attention) layers: the cache then goes back only
    /// to 0, not to an earlier position.
    fn is_recurrent(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_recurrent())
    }

    /// Forget everything after the first `n` positions (prefix reuse).
    fn truncate(&self, n: usize) -> PyResult<()> {
        self.lock()?.truncate(n).py_err()
    }

    #[pyo3(signature = (n_tokens=None))]
    fn save_state<'py>(&self, py: Python<'py>, n_tokens: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
        let ctx = self.lock()?;
        if let Some(n) = n_tokens {
            if n != ctx.kv_len() {
                drop(ctx);
                self.lock()?.truncate(n).py_err()?;
                return Ok(PyBytes::new(py, &self.lock()?.state()));
            }
        }
        Ok(PyBytes::new(py, &ctx.state()))
    }

    fn load_state(&self, data: &[u8]) -> PyResult<()> {
        self.lock()?.set_state(data).py_err()
    }

    /// One mixed batch (GIL released): token i of sequence `seq_ids[i]` at `positions[i]`, its
    /// logits kept when `logits[i]`. Returns [n_flagged, n_vocab] float32, one row per flagged
    /// token in batch order. Everything is checked by the core's `Context::decode`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<i64>,
        seq_ids: Vec<usize>,
        positions: Vec<u32>,
        logits: Vec<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                u32::try_from(t).map_err(|_| {
                    to_py(Error::InvalidArgument(format!("token id {t} at index {i} is outside the vocabulary")))
                })
            })
            .collect::<PyResult<Vec<u32>>>()?;
        let batch = Batch { tokens: ids, seq: seq_ids, pos: positions, logits };
        let mut guard = self.lock()?;
        let ctx: &mut Context = &mut guard;
        let model = &self.model;
        py.detach(|| ctx.decode(model, &batch)).py_err()?;
        let (n_out, n_vocab) = (ctx.n_outputs(), model.n_vocab());
        PyArray1::from_slice(py, ctx.logits()).reshape([n_out, n_vocab])
    }

    /// Drops positions [p0, p1) (p1 None = to the end) of sequence `seq_id` (all when None).
    #[pyo3(signature = (seq_id, p0=0, p1=None))]
    fn seq_rm(&self, seq_id: Option<usize>, p0: u32, p1: Option<u32>) -> PyResult<()> {
        let mut ctx = self.lock()?;
        match p1 {
            Some(p1) => ctx.seq_rm(seq_id, p0..p1),
            None => ctx.seq_rm(seq_id, p0..),
        }
        .py_err()
    }

    /// Sequence `dst` shares `src`'s positions [p0, p1) (no copy).
    #[pyo3(signature = (src, dst, p0=0, p1=None))]
    fn seq_cp(&self, src: usize, dst: usize, p0: u32, p1: Option<u32>) -> PyResult<()> {
        let mut ctx = self.lock()?;
        match p1 {
            Some(p1) => ctx.seq_cp(src, dst, p0..p1),
            None => ctx.seq_cp(src, dst, p0..),
        }
        .py_err()
    }

    fn seq_keep(&self, seq_id: usize) -> PyResult<()> {
        self.lock()?.seq_keep(seq_id).py_err()
    }

    fn seq_pos_max(&self, seq_id: usize) -> PyResult<Option<u32>> {
        self.lock()?.seq_pos_max(seq_id).py_err()
    }
}

#[pyclass(name = "StreamDecoder", module = "llama._llama")]
pub struct PyStreamDecoder {
    inner: StreamDecoder,
}

#[pymethods]
impl PyStreamDecoder {
    #[new]
    fn new() -> Self {
        PyStreamDecoder { inner: StreamDecoder::new() }
    }

    /// Adds a piece's bytes; returns only whole UTF-8 characters (the rest waits for more bytes).
    fn push(&mut self, piece: &[u8]) -> String {
        self.inner.push(piece)
    }

    /// Whatever is pending (invalid bytes become U+FFFD).
    fn flush(&mut self) -> String {
        self.inner.flush()
    }
}

#[pyfunction]
#[pyo3(signature = (template, messages, add_generation_prompt=true, bos_token="", eos_token="", extra=None))]
pub fn render_chat_template(
    py: Python<'_>,
    template: Option<&str>,
    messages: &Bound<'_, PyAny>,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    extra: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let dumps = py.import("json")?.getattr("dumps")?;
    let json = dumps.call1((messages,))?.extract::<String>()?;
    let extra = extra.map(|e| dumps.call1((e,))?.extract::<String>()).transpose()?;
    llama_core::chat::render(template, &json, add_generation_prompt, bos_token, eos_token, extra.as_deref()).py_err()
}

/// Sum of −log p(tokens[j+1] | logits[j]) for j in first…len−2 (llama-perplexity's scoring) and
/// the number of terms, computed in f64.
#[pyfunction]
pub fn nll(logits: PyReadonlyArray2<'_, f32>, tokens: Vec<u32>, first: usize) -> PyResult<(f64, usize)> {
    let shape = logits.shape();
    let (rows, n_vocab) = (shape[0], shape[1]);
    let l = logits.as_slice().map_err(|_| to_py(Error::InvalidArgument("logits must be C-contiguous".into())))?;
    if rows < tokens.len() {
        return Err(to_py(Error::InvalidArgument(format!("{rows} logit rows for {} tokens", tokens.len()))));
    }
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for j in first..tokens.len().saturating_sub(1) {
        let row = &l[j * n_vocab..(j + 1) * n_vocab];
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
        let t = tokens[j + 1] as usize;
        if t >= n_vocab {
            return Err(to_py(Error::InvalidArgument(format!("token {t} ≥ n_vocab {n_vocab}"))));
        }
        sum += lse - row[t] as f64;
        n += 1;
    }
    Ok((sum, n))
}

/// The instruction set the kernels were chosen for (e.g. "avx512"), for `bench` and bug reports.
#[pyfunction]
pub fn cpu_info() -> String {
    llama_core::kernels::kernels().isa.name().to_string()
}
