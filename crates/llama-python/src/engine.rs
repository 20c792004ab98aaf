//! `Engine`: the serving engine (slots, continuous batching) for Python: requests submitted from
//! any thread run together; each returns an `EngineRequest` whose events are read with the GIL
//! released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llama_core::engine::{Engine, EngineConfig, Event, Request, SubmitError};
use llama_core::model::ContextParams;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{named, to_py, IntoPy};
use crate::model::PyModel;
use crate::sampling::PySamplerChain;

#[pyclass(name = "Engine", module = "llama._llama")]
pub struct PyEngine {
    engine: Engine,
    n_vocab: usize,
}

#[pyclass(name = "EngineRequest", module = "llama._llama")]
pub struct PyEngineRequest {
    rx: Mutex<Receiver<Event>>,
    cancel: Arc<AtomicBool>,
    finished: AtomicBool,
}

#[pymethods]
impl PyEngine {
    /// `n_slots` sequences generated at once, each with a context of `n_ctx` tokens.
    #[new]
    #[pyo3(signature = (model, n_slots=4, n_ctx=2048, n_threads=None, n_batch=512, queue=64))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyModel>,
        n_slots: usize,
        n_ctx: usize,
        n_threads: Option<usize>,
        n_batch: usize,
        queue: usize,
    ) -> PyResult<Self> {
        let m = model.borrow();
        let weights = m.model()?.clone();
        let tok = Arc::new(m.tokenizer.clone());
        let n_threads = n_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let n_ctx = if n_ctx == 0 { weights.hparams().n_ctx_train } else { n_ctx };
        let n_vocab = weights.n_vocab();
        let engine = py
            .detach(move || {
                let cp = ContextParams { n_ctx, n_batch, n_threads, ..ContextParams::default() };
                let dec = llama_core::engine::decoder_for(weights, n_slots, cp)?;
                Engine::start(dec, tok, EngineConfig { n_slots, n_ctx_slot: n_ctx, n_batch, queue })
            })
            .py_err()?;
        Ok(PyEngine { engine, n_vocab })
    }

    /// Queues a generation: `prompt` token ids, sampled with (a copy of) `chain`. Raises
    /// `EngineBusyError` when every slot is busy and the queue is full.
    #[pyo3(signature = (prompt, chain, max_tokens=None, stop=Vec::new(), ignore_eos=false, n_probs=0, cache_prompt=false))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        prompt: Vec<i64>,
        chain: &Bound<'_, PySamplerChain>,
        max_tokens: Option<usize>,
        stop: Vec<String>,
        ignore_eos: bool,
        n_probs: usize,
        cache_prompt: bool,
    ) -> PyResult<PyEngineRequest> {
        let ids = prompt
            .iter()
            .map(|&t| {
                u32::try_from(t).ok().filter(|&u| (u as usize) < self.n_vocab).ok_or_else(|| {
                    to_py(llama_core::Error::InvalidArgument(format!(
                        "token id {t} is outside the vocabulary (n_vocab = {})",
                        self.n_vocab
                    )))
                })
            })
            .collect::<PyResult<Vec<u32>>>()?;
        let (tx, rx) = channel();
        let mut req = Request::new(ids, chain.borrow().clone_chain(), Box::new(move |e| tx.send(e).is_ok()));
        req.max_tokens = max_tokens;
        req.stop = stop;
        req.ignore_eos = ignore_eos;
        req.n_probs = n_probs;
        req.cache_prompt = cache_prompt;
        let cancel = req.cancel.clone();
        self.engine.submit(req).map_err(|e| match e {
            SubmitError::QueueFull => named("EngineBusyError", "every slot is busy and the queue is full".into()),
            SubmitError::ShuttingDown => named("LlamaError", "the engine has stopped".into()),
        })?;
        Ok(PyEngineRequest { rx: Mutex::new(rx), cancel, finished: AtomicBool::new(false) })
    }

    /// Counters: requests, tokens, busy slots, queue length, times.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.engine.metrics();
        let d = PyDict::new(py);
        d.set_item("n_slots", m.n_slots)?;
        d.set_item("requests", m.requests)?;
        d.set_item("rejected", m.rejected)?;
        d.set_item("prompt_tokens", m.prompt_tokens)?;
        d.set_item("cached_tokens", m.cached_tokens)?;
        d.set_item("generated_tokens", m.generated_tokens)?;
        d.set_item("queued", m.queued)?;
        d.set_item("busy_slots", m.busy_slots)?;
        d.set_item("steps", m.steps)?;
        Ok(d)
    }
}

#[pymethods]
impl PyEngineRequest {
    /// The next event, waiting with the GIL released (Ctrl-C interrupts the wait):
    /// `("token", id, text, logprob, top)` or `("done", text, finish_reason, usage)`; None after
    /// the end (or when `timeout` seconds pass). A request that failed raises its error.
    #[pyo3(signature = (timeout=None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        if self.finished.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let deadline = timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let step = Duration::from_millis(100);
            let wait = deadline.map_or(step, |d| d.saturating_duration_since(std::time::Instant::now()).min(step));
            match py.detach(|| self.rx.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(wait)) {
                Ok(Event::Token(t)) => {
                    let obj = ("token", t.id, t.text, t.logprob, t.top).into_pyobject(py)?;
                    return Ok(Some(obj.into_any().unbind()));
                }
                Ok(Event::Done { text, finish, usage }) => {
                    self.finished.store(true, Ordering::Relaxed);
                    let u = PyDict::new(py);
                    u.set_item("prompt_tokens", usage.prompt_tokens)?;
                    u.set_item("completion_tokens", usage.completion_tokens)?;
                    u.set_item("total_tokens", usage.prompt_tokens + usage.completion_tokens)?;
                    u.set_item("cached_tokens", usage.cached_tokens)?;
                    let obj = ("done", text, finish.as_str(), u).into_pyobject(py)?;
                    return Ok(Some(obj.into_any().unbind()));
                }
                Ok(Event::Error(e)) => {
                    self.finished.store(true, Ordering::Relaxed);
                    return Err(to_py(e));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finished.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Stops the generation (its slot is freed within one step; a last "done" event follows).
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for PyEngineRequest {
    fn drop(&mut self) {
        // nobody will read the rest: free the slot
        self.cancel.store(true, Ordering::Relaxed);
    }
}
