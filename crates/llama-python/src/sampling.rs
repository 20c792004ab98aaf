//! `Sampler` and `Rng`: token sampling in Rust (the chain runs over 10⁵ logits per token).

use llama_core::sampler::{Rng, Sampler, SamplerParams};
use numpy::{PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{to_py, IntoPy};

#[pyclass(name = "Rng", module = "llama._llama")]
pub struct PyRng {
    pub inner: Rng,
}

#[pymethods]
impl PyRng {
    /// seed < 0 (llama-cpp-python's -1) draws a seed from the clock; otherwise any 64-bit seed.
    #[new]
    #[pyo3(signature = (seed=-1), text_signature = "(seed=-1)")]
    fn new(seed: i128) -> PyResult<Self> {
        let inner = if seed < 0 {
            Rng::from_entropy()
        } else {
            Rng::new(u64::try_from(seed).map_err(|_| {
                to_py(llama_core::Error::InvalidArgument(format!("seed {seed} does not fit in 64 bits")))
            })?)
        };
        Ok(PyRng { inner })
    }
}

#[pyclass(name = "Sampler", module = "llama._llama")]
#[derive(Default)]
pub struct PySampler {
    inner: Sampler,
}

#[pymethods]
impl PySampler {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Picks a token from `logits` (float32 [n_vocab], read in place: the penalties apply to the
    /// sampler's own candidate list, so a row of `Llama.scores` can be passed without a copy).
    #[pyo3(signature = (logits, recent, rng, temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                        frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64))]
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        logits: PyReadonlyArray1<'_, f32>,
        recent: Vec<u32>,
        rng: &mut PyRng,
        temp: f32,
        top_k: i32,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        frequency_penalty: f32,
        presence_penalty: f32,
        penalty_last_n: usize,
    ) -> PyResult<u32> {
        let p = SamplerParams {
            temp,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            frequency_penalty,
            presence_penalty,
            penalty_last_n,
        };
        if logits.len() == 0 {
            return Err(to_py(llama_core::Error::InvalidArgument("empty logits".into())));
        }
        let l = logits.as_slice().map_err(|_| {
            to_py(llama_core::Error::InvalidArgument("logits must be a contiguous float32 array".into()))
        })?;
        self.inner.sample(l, &recent, &p, &mut rng.inner).py_err()
    }
}
