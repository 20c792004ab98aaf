//! Request bodies: a JSON object read field by field with typed checks; any field left unread is
//! an error naming it (nothing a client sends is silently dropped).

use std::collections::BTreeSet;

use llama_core::sampler::ChainParams;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

pub struct Body {
    map: Map<String, Value>,
    seen: BTreeSet<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Body {
    pub fn parse(bytes: &[u8]) -> ApiResult<Body> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))?;
        match v {
            Value::Object(map) => Ok(Body { map, seen: BTreeSet::new() }),
            other => Err(ApiError::bad(format!("the body must be a JSON object, got {}", kind(&other)))),
        }
    }

    /// The field, if present and not null.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.seen.insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null()).cloned()
    }

    /// Marks a field as known without using it (a documented no-op such as `user`).
    pub fn ignore(&mut self, key: &str) {
        self.seen.insert(key.to_string());
    }

    pub fn f64(&mut self, key: &str) -> ApiResult<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(ApiError::bad(format!("'{key}' must be a finite number"))),
            },
            Some(v) => Err(ApiError::bad(format!("'{key}' must be a number, got {}", kind(&v)))),
        }
    }

    /// A number in [lo, hi].
    pub fn f64_in(&mut self, key: &str, lo: f64, hi: f64) -> ApiResult<Option<f64>> {
        match self.f64(key)? {
            Some(x) if !(lo..=hi).contains(&x) => {
                Err(ApiError::bad(format!("'{key}' must be between {lo} and {hi}, got {x}")))
            }
            x => Ok(x),
        }
    }

    pub fn i64(&mut self, key: &str) -> ApiResult<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9e15).map(|x| x as i64))
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("'{key}' must be an integer, got {n}"))),
            Some(v) => Err(ApiError::bad(format!("'{key}' must be an integer, got {}", kind(&v)))),
        }
    }

    pub fn i64_in(&mut self, key: &str, lo: i64, hi: i64) -> ApiResult<Option<i64>> {
        match self.i64(key)? {
            Some(x) if !(lo..=hi).contains(&x) => {
                Err(ApiError::bad(format!("'{key}' must be between {lo} and {hi}, got {x}")))
            }
            x => Ok(x),
        }
    }

    pub fn bool(&mut self, key: &str) -> ApiResult<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(ApiError::bad(format!("'{key}' must be a boolean, got {}", kind(&v)))),
        }
    }

    pub fn string(&mut self, key: &str) -> ApiResult<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ApiError::bad(format!("'{key}' must be a string, got {}", kind(&v)))),
        }
    }

    /// Every field was read: otherwise a 400 naming the unknown ones.
    pub fn finish(self) -> ApiResult<()> {
        let unknown: Vec<&str> = self.map.keys().filter(|k| !self.seen.contains(*k)).map(|k| k.as_str()).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad(format!("unknown field(s): {}", unknown.join(", "))).with_code("unknown_field"))
        }
    }
}

/// What both generation endpoints share.
pub struct Gen {
    pub chain: ChainParams,
    /// None: until the slot's context is full.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub ignore_eos: bool,
    /// GBNF text (llama-server's `grammar`).
    pub grammar: Option<String>,
    /// Reuse any cached prefix (see `engine::Request::cache_prompt`).
    pub cache_prompt: bool,
}

/// Sampling fields with llama-server's defaults (temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no penalties, a random seed).
pub fn gen(b: &mut Body, n_vocab: usize, max_tokens_keys: &[&str], default_max: Option<usize>) -> ApiResult<Gen> {
    let mut c = ChainParams::new(n_vocab);
    if let Some(t) = b.f64_in("temperature", 0.0, 100.0)? {
        c.temp = t as f32;
    }
    if let Some(x) = b.f64_in("top_p", 0.0, 1.0)? {
        c.top_p = x as f32;
    }
    if let Some(x) = b.i64_in("top_k", 0, n_vocab as i64)? {
        c.top_k = x as i32;
    }
    if let Some(x) = b.f64_in("min_p", 0.0, 1.0)? {
        c.min_p = x as f32;
    }
    if let Some(x) = b.f64_in("typical_p", 0.0, 1.0)? {
        c.typical_p = x as f32;
    }
    if let Some(x) = b.f64_in("repeat_penalty", 0.0, 100.0)? {
        c.repeat_penalty = x as f32;
    }
    if let Some(x) = b.f64_in("presence_penalty", -2.0, 2.0)? {
        c.presence_penalty = x as f32;
    }
    if let Some(x) = b.f64_in("frequency_penalty", -2.0, 2.0)? {
        c.frequency_penalty = x as f32;
    }
    if let Some(x) = b.i64_in("repeat_last_n", -1, 1 << 20)? {
        c.penalty_last_n = x as i32;
    }
    if let Some(x) = b.i64_in("mirostat", 0, 2)? {
        c.mirostat_mode = x as i32;
    }
    if let Some(x) = b.f64_in("mirostat_tau", 0.0, 100.0)? {
        c.mirostat_tau = x as f32;
    }
    if let Some(x) = b.f64_in("mirostat_eta", 0.0, 1.0)? {
        c.mirostat_eta = x as f32;
    }
    if let Some(s) = b.i64_in("seed", -1, u32::MAX as i64)? {
        c.seed = if s < 0 { u32::MAX } else { s as u32 };
    }
    if let Some(v) = b.take("logit_bias") {
        let Value::Object(m) = v else {
            return Err(ApiError::bad("'logit_bias' must be an object of token id → bias"));
        };
        for (k, bias) in m {
            let id: u32 =
                k.parse().ok().filter(|&i: &u32| (i as usize) < n_vocab).ok_or_else(|| {
                    ApiError::bad(format!("'logit_bias' key '{k}' is not a token id below {n_vocab}"))
                })?;
            let bias = bias
                .as_f64()
                .filter(|x| x.is_finite() || *x == f64::NEG_INFINITY)
                .ok_or_else(|| ApiError::bad(format!("'logit_bias' value of token {k} must be a number")))?;
            c.logit_bias.push((id, bias));
        }
    }
    let mut max_tokens = default_max;
    for key in max_tokens_keys {
        if let Some(m) = b.i64_in(key, -1, 1 << 30)? {
            max_tokens = match m {
                -1 => None,
                0 => {
                    return Err(ApiError::bad(format!("'{key}' must be at least 1 (or -1: until the context is full)")))
                }
                m => Some(m as usize),
            };
        }
    }
    let stop = match b.take("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad("'stop' must be a string or an array of strings")),
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::bad("'stop' must be a string or an array of strings")),
    };
    if let Some(n) = b.i64("n")? {
        if n != 1 {
            return Err(ApiError::bad(format!("'n' = {n}: this server returns one choice per request (n = 1)")));
        }
    }
    let stream = b.bool("stream")?.unwrap_or(false);
    let include_usage = match b.take("stream_options") {
        None => false,
        Some(Value::Object(m)) => {
            let mut o = Body { map: m, seen: BTreeSet::new() };
            let u = o.bool("include_usage")?.unwrap_or(false);
            if o.bool("continuous_usage_stats")?.unwrap_or(false) {
                return Err(ApiError::bad(
                    "stream_options.continuous_usage_stats is not supported (usage comes in the last chunk)",
                ));
            }
            o.finish().map_err(|e| ApiError::bad(format!("stream_options: {}", e.message)))?;
            u
        }
        Some(_) => return Err(ApiError::bad("'stream_options' must be an object")),
    };
    if include_usage && !stream {
        return Err(ApiError::bad("'stream_options' is only allowed with 'stream': true"));
    }
    let ignore_eos = b.bool("ignore_eos")?.unwrap_or(false);
    let grammar = b.string("grammar")?;
    let cache_prompt = b.bool("cache_prompt")?.unwrap_or(false);
    // OpenAI's end-user id: metadata for abuse tracking, no effect on generation (documented no-op)
    b.ignore("user");
    Ok(Gen { chain: c, max_tokens, stop, stream, include_usage, ignore_eos, grammar, cache_prompt })
}
