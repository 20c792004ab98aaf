//! An OpenAI-compatible HTTP server over llama-core's engine (N slots, continuous batching).
//!
//! axum on tokio: the HTTP side is async and never computes; each request becomes an
//! `engine::Request` whose events come back over a channel, so a slow client never holds a slot
//! (its stream is a channel) and a client that goes away drops its receiver, which cancels the
//! generation in the engine's next step. Started by `serve` (blocking, from Python with the GIL
//! released) and stopped by SIGINT/SIGTERM: no new connections, running streams finish, exit.

mod error;
mod openapi;
mod params;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use llama_core::engine::{Engine, EngineConfig};
use llama_core::grammar::TokEnv;
use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams, Pooling};
use llama_core::tokenizer::Tokenizer;

/// `python -m llama serve` options.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model: PathBuf,
    pub host: String,
    /// 0: any free port (the chosen one is printed).
    pub port: u16,
    /// Slots (sequences generated at once).
    pub parallel: usize,
    /// Context of each slot in tokens; 0: the model's training context.
    pub n_ctx: usize,
    pub n_threads: usize,
    /// Prompt tokens per step.
    pub n_batch: usize,
    /// Requests waiting for a slot before new ones get 503.
    pub queue: usize,
    pub api_key: Option<String>,
    /// The model id clients use (default: the file name without `.gguf`).
    pub alias: Option<String>,
    /// Largest request body in bytes (413 past it).
    pub body_limit: usize,
    pub quiet: bool,
    /// Serve `/v1/embeddings` (llama-server's `--embeddings`); always on for an embedding-only
    /// model (BERT), which serves nothing else.
    pub embeddings: bool,
    /// Pooling of `/v1/embeddings` (none, mean, cls, last); None: the model's.
    pub pooling: Option<String>,
    /// Serve `/v1/rerank` (llama-server's `--reranking`): the embeddings context pools with the
    /// model's classification head (`Pooling::Rank`), so `/v1/embeddings` gives no vectors.
    pub reranking: bool,
    /// Flash attention (llama-server's `--flash-attn`): llama.cpp's flash-attention arithmetic;
    /// needed for a quantized cache.
    pub flash_attn: bool,
    /// KV cache types (llama-server's `--cache-type-k/v`); `type_v` None: K's.
    pub type_k: KvType,
    pub type_v: Option<KvType>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            model: PathBuf::new(),
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            n_ctx: 4096,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_batch: 512,
            queue: 64,
            api_key: None,
            alias: None,
            body_limit: 8 << 20,
            quiet: false,
            embeddings: false,
            pooling: None,
            reranking: false,
            flash_attn: false,
            type_k: KvType::F16,
            type_v: None,
        }
    }
}

/// What exists once the model is loaded.
pub(crate) struct Loaded {
    /// The generation engine; None for an embedding-only model.
    pub engine: Option<Engine>,
    /// The embeddings context (`--embeddings`, or an embedding-only model) and its pooling.
    pub embd: Option<(std::sync::Mutex<Context>, Pooling)>,
    pub model: Arc<Model>,
    pub tok: Arc<Tokenizer>,
    /// The token trie grammars need (built on the first constrained request).
    pub env: OnceLock<Result<Arc<TokEnv>, String>>,
    pub template: Option<String>,
    pub bos_text: String,
    pub eos_text: String,
    pub n_ctx_slot: usize,
}

pub(crate) struct App {
    pub opts: ServeOptions,
    pub alias: String,
    pub created: u64,
    pub loaded: OnceLock<Loaded>,
}

fn log(opts: &ServeOptions, msg: &str) {
    if !opts.quiet {
        eprintln!("{msg}");
    }
}

fn load(opts: &ServeOptions) -> llama_core::Result<Loaded> {
    let model = Arc::new(Model::load(&opts.model, &ModelParams::default())?);
    let tok = Arc::new(Tokenizer::from_gguf(model.gguf())?);
    let hp = model.hparams();
    let n_ctx_slot = if opts.n_ctx == 0 { hp.n_ctx_train } else { opts.n_ctx };
    let cp = ContextParams {
        n_ctx: n_ctx_slot,
        n_batch: opts.n_batch,
        n_threads: opts.n_threads,
        kv_type: opts.type_k,
        type_v: opts.type_v,
        flash_attn: opts.flash_attn,
        ..ContextParams::default()
    };
    let engine = if model.embeddings_only() {
        log(opts, &format!("{}: an embedding model: serving /v1/embeddings only", hp.arch.name()));
        None
    } else {
        let dec = llama_core::engine::decoder_for(model.clone(), opts.parallel, cp)?;
        let (tk, tv) = (opts.type_k, opts.type_v.unwrap_or(opts.type_k));
        let per_layer = hp.n_head_kv * (tk.row_bytes(hp.n_embd_head_k) + tv.row_bytes(hp.n_embd_head_v));
        let kv_bytes = opts.parallel * n_ctx_slot * hp.n_layer * per_layer;
        log(
            opts,
            &format!(
                "{} slots x {} tokens: KV cache {:.1} MiB (K {}, V {}{}), {} threads",
                opts.parallel,
                n_ctx_slot,
                kv_bytes as f64 / (1 << 20) as f64,
                tk.name(),
                tv.name(),
                if opts.flash_attn { ", flash attention" } else { "" },
                opts.n_threads
            ),
        );
        let cfg = EngineConfig { n_slots: opts.parallel, n_ctx_slot, n_batch: opts.n_batch, queue: opts.queue };
        Some(Engine::start(dec, tok.clone(), cfg)?)
    };
    // The pooling of the embeddings context: the classification head's with --reranking.
    let pooling = if opts.reranking {
        if opts.pooling.is_some() {
            return Err(llama_core::Error::InvalidArgument(
                "--reranking pools with the model's classification head: it takes no --pooling".into(),
            ));
        }
        if model.n_cls_out().is_none() {
            return Err(llama_core::Error::InvalidArgument(format!(
                "--reranking: {} has no classification head (cls / cls.output tensors): it is not a reranker",
                opts.model.display()
            )));
        }
        log(opts, "reranking: serving /v1/rerank");
        Some(Pooling::Rank)
    } else if opts.embeddings || model.embeddings_only() {
        let pooling = match &opts.pooling {
            Some(p) => Pooling::parse(p)?,
            None => Pooling::of_model(&model),
        };
        if matches!(pooling, Pooling::None | Pooling::Rank) {
            return Err(llama_core::Error::InvalidArgument(format!(
                "pooling '{}' does not give one vector per input, which /v1/embeddings returns: use mean, cls or last",
                pooling.name()
            )));
        }
        Some(pooling)
    } else {
        None
    };
    let embd = match pooling {
        Some(pooling) => {
            // An encoder's context is at most its learned positions (the slots' default is longer).
            let n_ctx = if model.embeddings_only() { n_ctx_slot.min(hp.n_ctx_train) } else { n_ctx_slot };
            let ctx = Context::new(&model, ContextParams::for_embeddings(&model, n_ctx, opts.n_threads))?;
            Some((std::sync::Mutex::new(ctx), pooling))
        }
        None => None,
    };
    let text = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(&tok.token_to_piece(i, true)).into_owned()).unwrap_or_default()
    };
    let template = model.gguf().get_str("tokenizer.chat_template").ok().flatten().map(str::to_string);
    Ok(Loaded {
        bos_text: text(tok.bos()),
        eos_text: text(tok.eos()),
        template,
        engine,
        embd,
        model,
        tok,
        env: OnceLock::new(),
        n_ctx_slot,
    })
}

/// Runs the server until SIGINT/SIGTERM. Binds first (so `/health` answers "loading" while the
/// model loads), then loads; a model that fails to load ends the server with that error.
pub fn serve(opts: ServeOptions) -> Result<(), String> {
    if opts.parallel == 0 || opts.parallel > 64 {
        return Err(format!("--parallel must be between 1 and 64, got {}", opts.parallel));
    }
    if opts.n_threads == 0 || opts.n_batch == 0 {
        return Err("--threads and --batch-size must be at least 1".into());
    }
    if !opts.model.is_file() {
        return Err(format!("{}: no such model file", opts.model.display()));
    }
    let alias = opts.alias.clone().unwrap_or_else(|| {
        let name = opts.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.strip_suffix(".gguf").unwrap_or(&name).to_string()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("llama-http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let app = Arc::new(App { opts: opts.clone(), alias, created, loaded: OnceLock::new() });
    rt.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener =
            tokio::net::TcpListener::bind(&addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        log(&opts, &format!("llama.py server listening on http://{local} (model '{}' loading)", app.alias));
        let (fail_tx, mut fail_rx) = tokio::sync::oneshot::channel::<String>();
        let loader = app.clone();
        tokio::task::spawn_blocking(move || match load(&loader.opts) {
            Ok(l) => {
                let _ = loader.loaded.set(l);
                log(&loader.opts, "model loaded: ready");
            }
            Err(e) => {
                let _ = fail_tx.send(format!("{}: {e}", loader.opts.model.display()));
            }
        });
        let router = routes::router(app.clone());
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let failed2 = failed.clone();
        let shutdown = async move {
            tokio::select! {
                _ = signal() => {}
                r = &mut fail_rx => match r {
                    Ok(msg) => *failed2.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg),
                    Err(_) => signal().await, // loaded: only a signal stops the server
                },
            }
        };
        axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("server error: {e}"))?;
        let msg = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
        match msg {
            Some(m) => Err(m),
            None => Ok(()),
        }
    })?;
    // the engine (inside `app`) stops when the last reference goes: running requests are cancelled
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
