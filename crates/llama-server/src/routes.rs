//! The routes: OpenAI's completions / chat completions / models, and llama-server's health,
//! tokenize, detokenize, metrics; every error in OpenAI's shape.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use llama_core::engine::{Engine, Event, Request, SubmitError, TokenOut, Usage};
use llama_core::grammar::{Grammar, Matcher, TokEnv};
use llama_core::model::Pooling;
use llama_core::sampler::grammar::GrammarStage;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::{ApiError, ApiResult};
use crate::params::{gen, Body, Gen};
use crate::{App, Loaded};

type AppState = State<Arc<App>>;

pub(crate) fn router(app: Arc<App>) -> Router {
    let limit = app.opts.body_limit;
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(health))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/rerank", post(rerank))
        .route("/rerank", post(rerank))
        .route("/v1/reranking", post(rerank))
        .route("/reranking", post(rerank))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::status(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error while handling the request")
                .into_response()
        }))
        .with_state(app)
}

/// `--api-key`: every route but /health wants `Authorization: Bearer <key>`.
async fn auth(State(app): AppState, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &app.opts.api_key {
        if req.uri().path() != "/health" {
            let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let ok = given
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|k| constant_eq(k.as_bytes(), key.as_bytes()));
            if !ok {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference (the key's prefix is not timed out).
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn loaded(app: &App) -> ApiResult<&Loaded> {
    app.loaded.get().ok_or_else(|| ApiError::unavailable("the model is still loading"))
}

/// The generation engine: absent when the model gives embeddings only.
fn engine(l: &Loaded) -> ApiResult<&Engine> {
    l.engine.as_ref().ok_or_else(|| {
        ApiError::bad(format!(
            "this server's model ({}) is an embedding model: it answers /v1/embeddings, not completions",
            l.model.hparams().arch.name()
        ))
        .with_code("model_not_supported")
    })
}

fn body(b: Result<Bytes, BytesRejection>) -> ApiResult<Body> {
    let bytes = b.map_err(|r| {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server's limit".to_string()
        } else {
            format!("cannot read the request body: {}", r.body_text())
        };
        ApiError::status(status, msg)
    })?;
    Body::parse(&bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn next_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{:x}{:06x}", now(), N.fetch_add(1, Ordering::Relaxed))
}

/// `model`, when given, must name this server's model.
fn check_model(app: &App, b: &mut Body) -> ApiResult<()> {
    if let Some(m) = b.string("model")? {
        let file = app.opts.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !m.is_empty() && m != app.alias && m != file {
            return Err(ApiError::bad(format!("model '{m}' is not served here (this server has '{}')", app.alias))
                .with_code("model_not_found"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// generation

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Completion,
    Chat,
}

/// How a request's output is shaped.
struct Out {
    api: Api,
    id: String,
    created: u64,
    model: String,
    /// Log-probabilities asked for (top n; Some(0): only the chosen token's).
    logprobs: Option<usize>,
    /// `echo`: the prompt's text in front of the completion.
    echo: String,
    include_usage: bool,
    tok: Arc<llama_core::tokenizer::Tokenizer>,
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

impl Out {
    fn piece(&self, id: u32) -> (String, Vec<u8>) {
        let b = self.tok.token_to_piece(id, false);
        (String::from_utf8_lossy(&b).into_owned(), b)
    }

    /// The logprobs object of `toks` in the endpoint's format (`offset`: text before them).
    fn logprobs_json(&self, toks: &[TokenOut], offset: usize) -> Value {
        match self.api {
            Api::Chat => {
                let content: Vec<Value> = toks
                    .iter()
                    .map(|t| {
                        let (s, b) = self.piece(t.id);
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|&(i, lp)| {
                                let (s, b) = self.piece(i);
                                json!({"token": s, "logprob": lp, "bytes": b})
                            })
                            .collect();
                        json!({"token": s, "logprob": t.logprob, "bytes": b, "top_logprobs": top})
                    })
                    .collect();
                json!({ "content": content })
            }
            Api::Completion => {
                let mut off = offset;
                let (mut tokens, mut lps, mut tops, mut offs) = (vec![], vec![], vec![], vec![]);
                for t in toks {
                    let (s, _) = self.piece(t.id);
                    offs.push(off);
                    off += s.len();
                    tokens.push(s);
                    lps.push(t.logprob);
                    let top: serde_json::Map<String, Value> =
                        t.top.iter().map(|&(i, lp)| (self.piece(i).0, json!(lp))).collect();
                    tops.push(Value::Object(top));
                }
                json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs})
            }
        }
    }

    fn whole(&self, text: &str, toks: &[TokenOut], finish: &str, usage: &Usage) -> Value {
        let lp = self.logprobs.map(|_| self.logprobs_json(toks, self.echo.len()));
        match self.api {
            Api::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": format!("{}{text}", self.echo), "logprobs": lp, "finish_reason": finish}],
                "usage": usage_json(usage),
            }),
            Api::Chat => json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": lp, "finish_reason": finish}],
                "usage": usage_json(usage),
            }),
        }
    }

    /// A streamed chunk with `text` (and the logprobs of the tokens it came with).
    fn chunk(&self, text: &str, toks: &[TokenOut], offset: usize, finish: Option<&str>) -> Value {
        let lp = self.logprobs.filter(|_| !toks.is_empty()).map(|_| self.logprobs_json(toks, offset));
        match self.api {
            Api::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}],
            }),
            Api::Chat => {
                let delta = if finish.is_some() && text.is_empty() { json!({}) } else { json!({"content": text}) };
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}],
                })
            }
        }
    }

    fn first_chunk(&self) -> Option<Value> {
        match self.api {
            Api::Chat => Some(json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}],
            })),
            Api::Completion if !self.echo.is_empty() => Some(self.chunk(&self.echo, &[], 0, None)),
            Api::Completion => None,
        }
    }

    fn usage_chunk(&self, usage: &Usage) -> Value {
        let object = if self.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [], "usage": usage_json(usage)})
    }
}

/// The grammar trie, built once per server.
fn tok_env(l: &Loaded) -> ApiResult<Arc<TokEnv>> {
    l.env.get_or_init(|| TokEnv::new(&l.tok).map(Arc::new).map_err(|e| e.to_string())).clone().map_err(|e| {
        ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, format!("grammars are unavailable for this model: {e}"))
    })
}

/// Validates against the slot's context, builds the chain, submits, and answers (SSE or whole).
async fn generate(l: &Loaded, prompt: Vec<u32>, g: Gen, grammar: Option<Grammar>, out: Out) -> ApiResult<Response> {
    let engine = engine(l)?;
    let n_ctx = l.n_ctx_slot;
    if prompt.is_empty() {
        return Err(ApiError::bad("the prompt is empty (no tokens)"));
    }
    if prompt.len() >= n_ctx {
        return Err(ApiError::bad(format!(
            "the prompt has {} tokens but the context of a slot is {n_ctx} tokens (prompt + at least one new token)",
            prompt.len()
        ))
        .with_code("context_length_exceeded"));
    }
    if let Some(m) = g.max_tokens {
        if prompt.len() + m > n_ctx {
            return Err(ApiError::bad(format!(
                "max_tokens = {m} with a prompt of {} tokens exceeds the context of {n_ctx} tokens",
                prompt.len()
            ))
            .with_code("context_length_exceeded"));
        }
    }
    let mut chain = g.chain.build().map_err(ApiError::from_core)?;
    let grammar = match (grammar, &g.grammar) {
        (Some(_), Some(_)) => return Err(ApiError::bad("give either 'grammar' or 'response_format', not both")),
        (Some(gr), None) => Some(gr),
        (None, Some(text)) => Some(Grammar::from_gbnf(text, "root").map_err(ApiError::from_core)?),
        (None, None) => None,
    };
    if let Some(gr) = grammar {
        let env = tokio::task::block_in_place(|| tok_env(l))?;
        let m = Matcher::new(&gr, &env).map_err(ApiError::from_core)?;
        chain.insert_grammar(Box::new(GrammarStage::new(m)));
    }
    let (tx, rx) = unbounded_channel();
    let mut req = Request::new(prompt, chain, Box::new(move |e| tx.send(e).is_ok()));
    req.max_tokens = g.max_tokens;
    req.stop = g.stop;
    req.ignore_eos = g.ignore_eos;
    req.cache_prompt = g.cache_prompt;
    req.n_probs = out.logprobs.map_or(0, |n| n.max(1)); // the chosen token's own needs one
    engine.submit(req).map_err(|e| match e {
        SubmitError::QueueFull => ApiError::unavailable("every slot is busy and the queue is full: retry later"),
        SubmitError::ShuttingDown => ApiError::unavailable("the server is shutting down"),
    })?;
    let out = Out { include_usage: g.include_usage, ..out };
    if g.stream {
        Ok(Sse::new(sse(rx, out)).keep_alive(KeepAlive::default()).into_response())
    } else {
        whole(rx, out).await
    }
}

async fn whole(mut rx: UnboundedReceiver<Event>, out: Out) -> ApiResult<Response> {
    let mut text = String::new();
    let mut toks = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token(t) => {
                text.push_str(&t.text);
                if out.logprobs.is_some() {
                    toks.push(t);
                }
            }
            Event::Done { text: tail, finish, usage } => {
                text.push_str(&tail);
                return Ok(Json(out.whole(&text, &toks, finish.as_str(), &usage)).into_response());
            }
            Event::Error(e) => return Err(ApiError::from_core(e)),
        }
    }
    Err(ApiError::unavailable("the server is shutting down"))
}

/// The SSE stream: chunks as tokens come, the finish chunk, the usage chunk if asked, `[DONE]`.
fn sse(rx: UnboundedReceiver<Event>, out: Out) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct St {
        rx: UnboundedReceiver<Event>,
        out: Out,
        started: bool,
        offset: usize,
        queue: std::collections::VecDeque<String>,
        ended: bool,
    }
    let st = St { rx, out, started: false, offset: 0, queue: Default::default(), ended: false };
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(data) = st.queue.pop_front() {
                return Some((Ok(SseEvent::default().data(data)), st));
            }
            if st.ended {
                return None;
            }
            if !st.started {
                st.started = true;
                st.offset = st.out.echo.len();
                if let Some(c) = st.out.first_chunk() {
                    st.queue.push_back(c.to_string());
                }
                continue;
            }
            match st.rx.recv().await {
                Some(Event::Token(t)) => {
                    if !t.text.is_empty() || st.out.logprobs.is_some() {
                        let text = t.text.clone();
                        let c = st.out.chunk(&text, std::slice::from_ref(&t), st.offset, None);
                        st.offset += text.len();
                        st.queue.push_back(c.to_string());
                    }
                }
                Some(Event::Done { text, finish, usage }) => {
                    if !text.is_empty() {
                        st.queue.push_back(st.out.chunk(&text, &[], st.offset, None).to_string());
                    }
                    st.queue.push_back(st.out.chunk("", &[], st.offset, Some(finish.as_str())).to_string());
                    if st.out.include_usage {
                        st.queue.push_back(st.out.usage_chunk(&usage).to_string());
                    }
                    st.queue.push_back("[DONE]".into());
                    st.ended = true;
                }
                Some(Event::Error(e)) => {
                    st.queue.push_back(ApiError::from_core(e).body().to_string());
                    st.ended = true;
                }
                None => {
                    st.queue.push_back(ApiError::unavailable("the server is shutting down").body().to_string());
                    st.ended = true;
                }
            }
        }
    })
}

async fn completions(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let l = loaded(&app)?;
    let mut b = body(b)?;
    check_model(&app, &mut b)?;
    let n_vocab = l.model.n_vocab();
    let prompt = match b.take("prompt") {
        None => return Err(ApiError::bad("'prompt' is required")),
        Some(v) => completion_prompt(l, v)?,
    };
    let g = gen(&mut b, n_vocab, &["max_tokens"], Some(16))?;
    let echo = b.bool("echo")?.unwrap_or(false);
    let logprobs = b.i64_in("logprobs", 0, 20)?.map(|n| n as usize);
    if let Some(s) = b.string("suffix")? {
        if !s.is_empty() {
            return Err(ApiError::bad("'suffix' (fill-in-the-middle) is not supported by this server"));
        }
    }
    if let Some(n) = b.i64("best_of")? {
        if n != 1 {
            return Err(ApiError::bad(format!("'best_of' = {n}: this server returns one choice (best_of = 1)")));
        }
    }
    b.finish()?;
    let echo =
        if echo { String::from_utf8_lossy(&l.tok.detokenize(&prompt, false)).into_owned() } else { String::new() };
    let out = Out {
        api: Api::Completion,
        id: next_id("cmpl"),
        created: now(),
        model: app.alias.clone(),
        logprobs,
        echo,
        include_usage: false,
        tok: l.tok.clone(),
    };
    generate(l, prompt, g, None, out).await
}

/// A JSON array of token ids, each an integer below n_vocab; else a 400 naming the entry.
fn token_ids(l: &Loaded, a: &[Value], what: &str) -> ApiResult<Vec<u32>> {
    let n = l.model.n_vocab();
    a.iter()
        .map(|x| {
            x.as_u64()
                .filter(|&i| (i as usize) < n)
                .map(|i| i as u32)
                .ok_or_else(|| ApiError::bad(format!("{what} token {x} is not an id below {n}")))
        })
        .collect()
}

/// `prompt`: a string, token ids, or a one-element array of either.
fn completion_prompt(l: &Loaded, v: Value) -> ApiResult<Vec<u32>> {
    let ids = |a: &[Value]| token_ids(l, a, "prompt");
    match v {
        Value::String(s) => Ok(l.tok.tokenize(s.as_bytes(), true, true)),
        Value::Array(a) if a.iter().all(|x| x.is_number()) && !a.is_empty() => ids(&a),
        Value::Array(a) if a.len() == 1 => completion_prompt(l, a.into_iter().next().unwrap_or(Value::Null)),
        Value::Array(a) if a.is_empty() => Err(ApiError::bad("'prompt' is an empty array")),
        Value::Array(_) => {
            Err(ApiError::bad("one prompt per request: 'prompt' must be a string, token ids, or a one-element array"))
        }
        _ => Err(ApiError::bad("'prompt' must be a string or an array of token ids")),
    }
}

const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// Checks the messages and gives the template plain-text contents (text parts joined).
fn chat_messages(v: Value) -> ApiResult<Value> {
    let Value::Array(msgs) = v else { return Err(ApiError::bad("'messages' must be an array")) };
    if msgs.is_empty() {
        return Err(ApiError::bad("'messages' is empty"));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.into_iter().enumerate() {
        let Value::Object(mut m) = m else { return Err(ApiError::bad(format!("messages[{i}] must be an object"))) };
        let role = match m.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
            Some(Value::String(r)) => {
                return Err(ApiError::bad(format!("messages[{i}].role '{r}' is not one of {}", ROLES.join(", "))))
            }
            _ => return Err(ApiError::bad(format!("messages[{i}].role is required (a string)"))),
        };
        let content = match m.remove("content") {
            None | Some(Value::Null) if role == "assistant" && m.contains_key("tool_calls") => {
                Value::String(String::new())
            }
            None | Some(Value::Null) => return Err(ApiError::bad(format!("messages[{i}].content is required"))),
            Some(Value::String(s)) => Value::String(s),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        (Some(t), _) if t != "text" => {
                            return Err(ApiError::bad(format!(
                                "messages[{i}].content[{j}]: part type '{t}' is not supported (text only)"
                            )))
                        }
                        _ => {
                            return Err(ApiError::bad(format!(
                                "messages[{i}].content[{j}] must be {{\"type\": \"text\", \"text\": ...}}"
                            )))
                        }
                    }
                }
                Value::String(text)
            }
            Some(_) => {
                return Err(ApiError::bad(format!("messages[{i}].content must be a string or an array of text parts")))
            }
        };
        m.insert("content".into(), content);
        for (k, v) in &m {
            let ok = match k.as_str() {
                "role" | "content" => true,
                "name" | "tool_call_id" | "reasoning_content" => v.is_string() || v.is_null(),
                "tool_calls" => v.is_array() || v.is_null(),
                _ => false,
            };
            if !ok {
                return Err(ApiError::bad(format!("messages[{i}].{k}: unknown field or wrong type")));
            }
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

/// `response_format`: text, json_object (+ llama-cpp-python's `schema`), json_schema.
fn response_format(v: Value) -> ApiResult<Option<Grammar>> {
    let Value::Object(mut m) = v else { return Err(ApiError::bad("'response_format' must be an object")) };
    let ty = m.remove("type").and_then(|t| t.as_str().map(str::to_string));
    let g = match ty.as_deref() {
        Some("text") => None,
        Some("json_object") => match m.remove("schema") {
            Some(s) if !s.is_null() => Some(Grammar::from_json_schema(&s).map_err(ApiError::from_core)?),
            _ => Some(Grammar::json_object()),
        },
        Some("json_schema") => {
            let Some(Value::Object(mut js)) = m.remove("json_schema") else {
                return Err(ApiError::bad("response_format.json_schema must be an object with a 'schema'"));
            };
            let schema =
                js.remove("schema").ok_or_else(|| ApiError::bad("response_format.json_schema.schema is required"))?;
            for k in js.keys() {
                if !matches!(k.as_str(), "name" | "strict" | "description") {
                    return Err(ApiError::bad(format!("response_format.json_schema.{k}: unknown field")));
                }
            }
            Some(Grammar::from_json_schema(&schema).map_err(ApiError::from_core)?)
        }
        other => {
            return Err(ApiError::bad(format!(
                "response_format.type {other:?} is not one of text, json_object, json_schema"
            )))
        }
    };
    if let Some(k) = m.keys().next() {
        return Err(ApiError::bad(format!("response_format.{k}: unknown field")));
    }
    Ok(g)
}

async fn chat(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let l = loaded(&app)?;
    let mut b = body(b)?;
    check_model(&app, &mut b)?;
    let messages = chat_messages(b.take("messages").ok_or_else(|| ApiError::bad("'messages' is required"))?)?;
    let g = gen(&mut b, l.model.n_vocab(), &["max_tokens", "max_completion_tokens"], None)?;
    let logprobs = b.bool("logprobs")?.unwrap_or(false);
    let top = b.i64_in("top_logprobs", 0, 20)?;
    if top.is_some() && !logprobs {
        return Err(ApiError::bad("'top_logprobs' needs 'logprobs': true"));
    }
    let grammar = match b.take("response_format") {
        Some(v) => response_format(v)?,
        None => None,
    };
    if b.take("tools").is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty())) || b.take("functions").is_some() {
        return Err(ApiError::bad(
            "tool calls are not supported by this server yet (llama.Llama.create_chat_completion has them)",
        ));
    }
    if let Some(tc) = b.take("tool_choice") {
        if tc != json!("none") && tc != json!("auto") {
            return Err(ApiError::bad("'tool_choice' needs 'tools', which this server does not support yet"));
        }
    }
    // only meaningful with tools, which are refused above: a documented no-op (openapi.json)
    b.ignore("parallel_tool_calls");
    let extra = match b.take("chat_template_kwargs") {
        None => None,
        Some(Value::Object(m)) => Some(Value::Object(m).to_string()),
        Some(_) => return Err(ApiError::bad("'chat_template_kwargs' must be an object")),
    };
    b.finish()?;
    let text = llama_core::chat::render(
        l.template.as_deref(),
        &messages.to_string(),
        true,
        &l.bos_text,
        &l.eos_text,
        extra.as_deref(),
    )
    .map_err(ApiError::from_core)?;
    let mut prompt = l.tok.tokenize(text.as_bytes(), false, true);
    if let Some(bos) = l.tok.bos().filter(|_| l.tok.add_bos()) {
        if prompt.first() != Some(&bos) {
            prompt.insert(0, bos);
        }
    }
    let out = Out {
        api: Api::Chat,
        id: next_id("chatcmpl"),
        created: now(),
        model: app.alias.clone(),
        logprobs: logprobs.then(|| top.unwrap_or(0) as usize),
        echo: String::new(),
        include_usage: false,
        tok: l.tok.clone(),
    };
    generate(l, prompt, g, grammar, out).await
}

// ---------------------------------------------------------------------------------------------
// the rest

// ---------------------------------------------------------------------------------------------
// embeddings

/// OpenAI's embeddings: `input` a string, an array of strings, token ids, or an array of token id
/// arrays; vectors L2-normalized (as llama-server); `encoding_format` "float" or "base64"
/// (little-endian f32, what the official client asks for); `dimensions` only as the model's.
/// All inputs in one call: packed into batches of whole inputs.
async fn embeddings(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let l = loaded(&app)?;
    match &l.embd {
        None => return Err(ApiError::bad("this server does not serve embeddings: start it with --embeddings")),
        Some((_, Pooling::Rank)) => {
            return Err(ApiError::bad("this server reranks (--reranking): it serves /v1/rerank, not embeddings"))
        }
        Some(_) => {}
    }
    let mut b = body(b)?;
    check_model(&app, &mut b)?;
    let input = b.take("input").ok_or_else(|| ApiError::bad("'input' is required"))?;
    let base64 = match b.string("encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => return Err(ApiError::bad(format!("'encoding_format' = '{f}': expected 'float' or 'base64'"))),
    };
    let n_embd = l.model.hparams().n_embd;
    if let Some(d) = b.i64("dimensions")? {
        if d != n_embd as i64 {
            return Err(ApiError::bad(format!("'dimensions' = {d}: this model's embeddings have {n_embd}")));
        }
    }
    b.ignore("user"); // OpenAI's end-user id: a documented no-op, as on completions
    b.finish()?;
    let seqs = embedding_inputs(l, input)?;
    let n_tokens: usize = seqs.iter().map(Vec::len).sum();
    let vecs = embed_blocking(&app, seqs, true).await?.map_err(ApiError::from_core)?;
    let data: Vec<Value> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let e = if base64 { json!(base64_f32(v)) } else { json!(v) };
            json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": app.alias,
                    "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})))
}

/// Reranking, as llama-server's `/v1/rerank` (Jina/Cohere shape): `query` and `documents` (or
/// TEI's `texts`), each pair scored by the model's classification head (`Pooling::Rank`, all pairs
/// packed into batches); `results` sorted by `relevance_score`, highest first, cut to `top_n`.
/// With `texts` the answer is TEI's: a bare array of `{index, score}`, `text` too with
/// `return_text`.
async fn rerank(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let l = loaded(&app)?;
    if !matches!(l.embd, Some((_, Pooling::Rank))) {
        return Err(ApiError::bad("this server does not rerank: start it with --reranking and a reranker model"));
    }
    let mut b = body(b)?;
    check_model(&app, &mut b)?;
    let query = match b.take("query") {
        Some(Value::String(q)) => q,
        Some(_) => return Err(ApiError::bad("'query' must be a string")),
        None => return Err(ApiError::bad("'query' is required")),
    };
    let (docs, tei) = match (b.take("documents"), b.take("texts")) {
        (Some(_), Some(_)) => return Err(ApiError::bad("give 'documents' or 'texts', not both")),
        (Some(d), None) => (d, false),
        (None, Some(t)) => (t, true),
        (None, None) => return Err(ApiError::bad("'documents' is required")),
    };
    let docs: Vec<String> = match docs {
        Value::Array(a) if !a.is_empty() => a
            .into_iter()
            .map(|d| match d {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad("'documents' must be an array of strings")),
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(ApiError::bad("'documents' must be a non-empty array of strings")),
    };
    let top_n = match b.i64("top_n")? {
        Some(n) if n < 1 => return Err(ApiError::bad(format!("'top_n' = {n}: it must be at least 1"))),
        Some(n) => (n as usize).min(docs.len()),
        None => docs.len(),
    };
    let return_text = b.bool("return_text")?.unwrap_or(false);
    if return_text && !tei {
        return Err(ApiError::bad(
            "'return_text' goes with 'texts' (TEI's request); /v1/rerank results carry the index",
        ));
    }
    b.finish()?;
    let seqs: Vec<Vec<u32>> =
        docs.iter().map(|d| llama_core::model::rerank_tokens(&l.model, &l.tok, &query, d)).collect();
    let n_tokens: usize = seqs.iter().map(Vec::len).sum();
    let scores = embed_blocking(&app, seqs, false).await?.map_err(|e| match e {
        llama_core::Error::ContextOverflow(m) => {
            ApiError::bad(m.replace("embed: input", "document")).with_code("context_length_exceeded")
        }
        e => ApiError::from_core(e),
    })?;
    // llama-server's score is the head's first value
    let mut order: Vec<(usize, f32)> = scores.iter().map(|s| s[0]).enumerate().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    order.truncate(top_n);
    let label = if tei { "score" } else { "relevance_score" };
    let results: Vec<Value> = order
        .into_iter()
        .map(|(i, s)| {
            let mut r = json!({"index": i, label: s});
            if return_text {
                r["text"] = json!(docs[i]);
            }
            r
        })
        .collect();
    if tei {
        return Ok(Json(Value::Array(results)));
    }
    Ok(Json(json!({"model": app.alias, "object": "list", "results": results,
                    "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})))
}

/// `Context::embed` of `seqs` on the embeddings context with its pooling (the head's scores with
/// --reranking), on a blocking thread: the HTTP workers stay free (health, other requests)
/// meanwhile. The outer error: the task itself failed.
async fn embed_blocking(
    app: &Arc<App>,
    seqs: Vec<Vec<u32>>,
    normalize: bool,
) -> ApiResult<llama_core::Result<Vec<Vec<f32>>>> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let l = app.loaded.get().expect("loaded before a request is read");
        let (ctx, pooling) = l.embd.as_ref().expect("the route checked the embeddings context");
        let mut c = ctx.lock().unwrap_or_else(|e| e.into_inner());
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        c.embed(&l.model, &refs, *pooling, normalize)
    })
    .await
    .map_err(|e| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, format!("embedding task failed: {e}")))
}

/// The token ids of each embeddings input (a text gets the model's BOS/CLS and EOS/SEP).
fn embedding_inputs(l: &Loaded, v: Value) -> ApiResult<Vec<Vec<u32>>> {
    let ids = |a: &[Value]| token_ids(l, a, "input");
    let text = |s: &str| l.tok.tokenize(s.as_bytes(), true, false);
    let seqs = match v {
        Value::String(s) => vec![text(&s)],
        Value::Array(a) if a.is_empty() => return Err(ApiError::bad("'input' is an empty array")),
        Value::Array(a) if a.iter().all(Value::is_number) => vec![ids(&a)?],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(text(s)),
                Value::Array(t) => ids(t),
                _ => Err(ApiError::bad("'input' items must be strings or arrays of token ids")),
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(ApiError::bad("'input' must be a string, an array of strings, or token ids")),
    };
    if let Some(i) = seqs.iter().position(Vec::is_empty) {
        return Err(ApiError::bad(format!("input {i} has no tokens")));
    }
    Ok(seqs)
}

/// The vector's f32 values, little-endian, in standard base64 (OpenAI's `encoding_format: base64`).
fn base64_f32(v: &[f32]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn models(State(app): AppState) -> ApiResult<Json<Value>> {
    let mut meta = json!({});
    if let Some(l) = app.loaded.get() {
        meta = json!({"n_ctx_slot": l.n_ctx_slot, "n_slots": app.opts.parallel, "n_vocab": l.model.n_vocab(),
                      "n_params": l.model.n_params(), "size": l.model.n_bytes()});
    }
    Ok(Json(json!({"object": "list", "data": [{
        "id": app.alias, "object": "model", "created": app.created, "owned_by": "llama.py", "meta": meta,
    }]})))
}

async fn health(State(app): AppState) -> Response {
    match app.loaded.get() {
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response(),
        Some(l) => {
            let m = l.engine.as_ref().map(|e| e.metrics()).unwrap_or_default();
            let status = if m.busy_slots >= m.n_slots { "no slot free" } else { "ok" };
            Json(json!({"status": status, "slots_idle": m.n_slots - m.busy_slots, "slots_processing": m.busy_slots,
                        "queued": m.queued}))
            .into_response()
        }
    }
}

async fn tokenize(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let l = loaded(&app)?;
    let mut b = body(b)?;
    let content = b.string("content")?.ok_or_else(|| ApiError::bad("'content' is required (a string)"))?;
    let add_special = b.bool("add_special")?.unwrap_or(false);
    let parse_special = b.bool("parse_special")?.unwrap_or(true);
    let with_pieces = b.bool("with_pieces")?.unwrap_or(false);
    b.finish()?;
    let ids = l.tok.tokenize(content.as_bytes(), add_special, parse_special);
    let tokens: Vec<Value> = if with_pieces {
        ids.iter()
            .map(|&i| {
                let p = l.tok.token_to_piece(i, true);
                match String::from_utf8(p) {
                    Ok(s) => json!({"id": i, "piece": s}),
                    Err(e) => json!({"id": i, "piece": e.into_bytes()}),
                }
            })
            .collect()
    } else {
        ids.iter().map(|&i| json!(i)).collect()
    };
    Ok(Json(json!({ "tokens": tokens })))
}

async fn detokenize(State(app): AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let l = loaded(&app)?;
    let mut b = body(b)?;
    let Some(Value::Array(a)) = b.take("tokens") else {
        return Err(ApiError::bad("'tokens' is required (an array of ids)"));
    };
    b.finish()?;
    let n = l.model.n_vocab();
    let ids = a
        .iter()
        .map(|x| x.as_u64().filter(|&i| (i as usize) < n).map(|i| i as u32))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| ApiError::bad(format!("'tokens' must be token ids below {n}")))?;
    Ok(Json(json!({"content": String::from_utf8_lossy(&l.tok.detokenize(&ids, false))})))
}

async fn metrics(State(app): AppState) -> Response {
    let Some(l) = app.loaded.get() else {
        return ApiError::unavailable("the model is still loading").into_response();
    };
    let m = l.engine.as_ref().map(|e| e.metrics()).unwrap_or_default();
    let mut s = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: String| {
        s.push_str(&format!("# HELP llamapy_{name} {help}\n# TYPE llamapy_{name} {kind}\nllamapy_{name} {v}\n"));
    };
    put("requests_total", "counter", "Requests taken from the queue.", m.requests.to_string());
    put("requests_rejected_total", "counter", "Requests refused with 503 (queue full).", m.rejected.to_string());
    put("prompt_tokens_total", "counter", "Prompt tokens received.", m.prompt_tokens.to_string());
    put(
        "prompt_tokens_cached_total",
        "counter",
        "Prompt tokens reused from a slot's cache.",
        m.cached_tokens.to_string(),
    );
    put("tokens_predicted_total", "counter", "Tokens generated.", m.generated_tokens.to_string());
    put("requests_queued", "gauge", "Requests waiting for a slot.", m.queued.to_string());
    put("slots_busy", "gauge", "Slots running a request.", m.busy_slots.to_string());
    put("slots_total", "gauge", "Slots.", m.n_slots.to_string());
    put("time_to_first_token_seconds_sum", "counter", "Sum of times to first token.", format!("{:.6}", m.ttft_sum));
    put("time_to_first_token_seconds_count", "counter", "Requests with a first token.", m.ttft_count.to_string());
    put(
        "token_seconds_sum",
        "counter",
        "Sum over generated tokens of the time of the step that made them.",
        format!("{:.6}", m.token_time_sum),
    );
    put("decode_steps_total", "counter", "Batches evaluated.", m.steps.to_string());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::spec())
}
