//! Embeddings: a list of token sequences packed into batches of several sequences (one forward
//! per batch, not one per text), each sequence's hidden states pooled into one vector (or kept
//! per token) and optionally L2-normalized. The context must be in embeddings mode
//! (`ContextParams::embeddings`), where the forward writes hidden states instead of logits.

use super::context::{Batch, Context, ContextParams};
use super::hparams::HParams;
use super::kv_cells::MAX_SEQ;
use super::weights::{Loader, WRef};
use super::Model;
use crate::gguf::GgufFile;
use crate::kernels::elementwise::{add_bias, softmax_row};
use crate::kernels::{kernels, matmul::matmul};
use crate::{Error, Result};

/// How a sequence's hidden states become its embedding (llama.cpp's `enum llama_pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// One vector per token.
    None,
    /// The mean over the sequence's tokens.
    Mean,
    /// The first token's ([CLS]).
    Cls,
    /// The last token's (causal embedding models: it has seen the whole text).
    Last,
    /// A reranker's relevance score: the [CLS] row (the last token's for a causal model) through
    /// the model's classification head, `n_cls_out` values per sequence.
    Rank,
}

impl Pooling {
    pub const NAMES: &'static str = "none, mean, cls, last, rank";

    /// llama.cpp's numbering (the GGUF's `{arch}.pooling_type`).
    pub fn from_llama_cpp(v: u32) -> Option<Pooling> {
        Some(match v {
            0 => Pooling::None,
            1 => Pooling::Mean,
            2 => Pooling::Cls,
            3 => Pooling::Last,
            4 => Pooling::Rank,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Result<Pooling> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Pooling::None,
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" => Pooling::Last,
            "rank" => Pooling::Rank,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "pooling_type '{other}': expected one of {}",
                    Pooling::NAMES
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }

    /// The model's own pooling: the file's `pooling_type`, else mean for a model that does not
    /// name one (a generation model used for embeddings gets one vector per text).
    pub fn of_model(model: &Model) -> Pooling {
        model.hparams().pooling_type.and_then(Pooling::from_llama_cpp).unwrap_or(Pooling::Mean)
    }

    /// One sequence's embedding from its hidden states (rows: [n_tokens][n_embd]).
    fn pool(self, rows: &[f32], n_embd: usize) -> Vec<f32> {
        let n = rows.len() / n_embd;
        match self {
            Pooling::None => rows.to_vec(),
            Pooling::Cls => rows[..n_embd].to_vec(),
            Pooling::Last => rows[(n - 1) * n_embd..].to_vec(),
            // the row the head reads (llama.cpp's `inp_cls`); `Context::embed` applies the head
            Pooling::Rank => rows[..n_embd].to_vec(),
            Pooling::Mean => {
                // llama.cpp multiplies by a matrix of 1/n: each token's value times 1/n, summed
                let inv = 1.0 / n as f32;
                let mut out = vec![0f32; n_embd]; // [n_embd]
                for r in rows.chunks_exact(n_embd) {
                    for (o, &x) in out.iter_mut().zip(r) {
                        *o += x * inv;
                    }
                }
                out
            }
        }
    }
}

/// A reranker's classification head, llama.cpp's `cls`/`cls_b` (a dense layer and tanh:
/// RoBERTa-style heads) and `cls_out`/`cls_out_b` (the projection to the labels; BERT
/// cross-encoders as converted by llama.cpp have only this one), either optional; a softmax over
/// the labels for Qwen3 rerankers, as llama.cpp's `build_pooling`.
pub(super) struct ClsHead {
    dense: Option<(WRef, Option<Vec<f32>>)>, // cls: [n_embd][n_embd] + [n_embd]
    out: Option<(WRef, Option<Vec<f32>>)>,   // cls.output: [n_cls_out][n_embd] + [n_cls_out]
    softmax: bool,
}

impl ClsHead {
    pub fn load(f: &GgufFile, hp: &HParams) -> Result<Option<ClsHead>> {
        let l = Loader::new(f);
        let n_embd = hp.n_embd;
        let layer = |name: &str, rows: Option<usize>| -> Result<Option<(WRef, Option<Vec<f32>>)>> {
            let Some(w) = l.opt_matrix(&format!("{name}.weight"), rows, n_embd)? else {
                return Ok(None);
            };
            let b = l.opt_vector(&format!("{name}.bias"), w.rows)?;
            Ok(Some((w, b)))
        };
        let dense = layer("cls", Some(n_embd))?;
        let out = layer("cls.output", None)?;
        if dense.is_none() && out.is_none() {
            return Ok(None);
        }
        Ok(Some(ClsHead { dense, out, softmax: matches!(hp.arch.name(), "qwen3" | "qwen3vl") }))
    }

    /// Values per sequence: the labels of `cls.output`, else the dense layer's width.
    pub fn n_out(&self, n_embd: usize) -> usize {
        self.out.as_ref().map_or(n_embd, |(w, _)| w.rows)
    }
}

/// A reranker's input for one (query, document) pair, as llama-server's `format_prompt_rerank`:
/// the model's rerank template (`tokenizer.chat_template.rerank`, `{query}` and `{document}`
/// replaced, special tokens parsed) when it has one, else BOS query EOS SEP document EOS, each
/// special token where the vocabulary adds it (EOS falling back to SEP; BERT: [CLS] q [SEP] d
/// [SEP]).
pub fn rerank_tokens(model: &Model, tok: &crate::tokenizer::Tokenizer, query: &str, doc: &str) -> Vec<u32> {
    if let Ok(Some(t)) = model.gguf().get_str("tokenizer.chat_template.rerank") {
        let prompt = t.replace("{query}", query).replace("{document}", doc);
        return tok.tokenize(prompt.as_bytes(), false, true);
    }
    let eos = tok.eos().or(tok.sep());
    let mut out = Vec::new();
    if tok.add_bos() {
        out.extend(tok.bos());
    }
    out.extend(tok.tokenize(query.as_bytes(), false, false));
    if tok.add_eos() {
        out.extend(eos);
    }
    if tok.add_sep() {
        out.extend(tok.sep());
    }
    out.extend(tok.tokenize(doc.as_bytes(), false, false));
    if tok.add_eos() {
        out.extend(eos);
    }
    out
}

/// Divides each `n`-value row of `v` by its Euclidean norm (summed in double, as llama.cpp's
/// `common_embd_normalize`); an all-zero row stays zero.
pub fn l2_normalize(v: &mut [f32], n: usize) {
    for r in v.chunks_exact_mut(n) {
        let norm = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            let s = 1.0 / norm;
            r.iter_mut().for_each(|x| *x = (*x as f64 * s) as f32);
        }
    }
}

impl Context {
    /// A reranker's head over the rows `x` ([n_seq][n_embd]) of one batch, as one matmul per
    /// stage over all its sequences (llama.cpp's order): `cls` + bias, tanh, `cls.output` + bias,
    /// softmax for Qwen3. Returns each sequence's scores.
    fn classify(&mut self, model: &Model, x: &[f32]) -> Vec<Vec<f32>> {
        let head = model.cls_head.as_ref().expect("checked by embed");
        let n_embd = model.hparams().n_embd;
        let n = x.len() / n_embd;
        let mut cur = x.to_vec(); // [n][n_embd]
        let mut stage = |w: &WRef, b: &Option<Vec<f32>>, cur: &mut Vec<f32>| {
            let mut y = vec![0f32; n * w.rows]; // [n][w.rows]
            matmul(&self.pool, &model.qt(w), cur, n, &mut y, &mut self.mm);
            if let Some(b) = b {
                add_bias(&mut y, b);
            }
            *cur = y;
        };
        if let Some((w, b)) = &head.dense {
            stage(w, b, &mut cur);
            cur.iter_mut().for_each(|v| *v = v.tanh());
        }
        if let Some((w, b)) = &head.out {
            stage(w, b, &mut cur);
        }
        let width = cur.len() / n;
        let mut scores: Vec<Vec<f32>> = cur.chunks_exact(width).map(<[f32]>::to_vec).collect();
        if head.softmax {
            scores.iter_mut().for_each(|r| softmax_row(r, kernels().orders));
        }
        scores
    }
}

impl ContextParams {
    /// A context for `Context::embed`: whole texts of up to n_ctx tokens (0: the model's trained
    /// context) in one batch, as an encoder's tokens see their whole text; up to 64 texts per
    /// batch sharing the cells, one for a model with a recurrent state (it holds one sequence).
    pub fn for_embeddings(model: &Model, n_ctx: usize, n_threads: usize) -> ContextParams {
        let n_ctx = if n_ctx == 0 { model.hparams().n_ctx_train } else { n_ctx };
        ContextParams {
            n_ctx,
            n_batch: n_ctx,
            n_threads,
            n_seq_max: if model.is_recurrent() { 1 } else { MAX_SEQ },
            embeddings: true,
            ..ContextParams::default()
        }
    }
}

impl Context {
    /// The embedding of each sequence (`pooling`; with `Pooling::None`, [n_tokens][n_embd] per
    /// sequence), L2-normalized (per vector) when `normalize`. Sequences are packed into batches
    /// of up to n_batch tokens and n_seq_max sequences, each sequence whole in one batch (an
    /// encoder's tokens see their whole sequence), the cache cleared before each batch and after
    /// the last. Errors: a context not in embeddings mode, `Pooling::Rank` (no classification
    /// head yet), an empty sequence, a sequence longer than n_batch (`ContextOverflow`: the
    /// caller truncates), an id outside the vocabulary.
    pub fn embed(
        &mut self,
        model: &Model,
        seqs: &[&[u32]],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        if !self.embeddings {
            return Err(Error::InvalidArgument(
                "embed: this context gives logits; create it with embeddings (embedding=True)".into(),
            ));
        }
        if pooling == Pooling::Rank {
            if model.cls_head.is_none() {
                return Err(Error::InvalidArgument(
                    "pooling_type 'rank' needs a reranker's classification head (cls / cls.output tensors), which this model does not have".into(),
                ));
            }
            if normalize {
                return Err(Error::InvalidArgument(
                    "pooling_type 'rank' gives scores, not vectors: normalize does not apply to them".into(),
                ));
            }
        }
        for (i, s) in seqs.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::InvalidArgument(format!("embed: input {i} has no tokens")));
            }
            if s.len() > self.n_batch() {
                return Err(Error::ContextOverflow(format!(
                    "embed: input {i} has {} tokens, more than the {} one batch holds (n_batch, at most n_ctx): truncate it",
                    s.len(),
                    self.n_batch()
                )));
            }
        }
        let (n_embd, causal) = (model.hparams().n_embd, model.hparams().causal);
        let mut out = Vec::with_capacity(seqs.len());
        let mut batch = Batch::new();
        let mut i = 0;
        while i < seqs.len() {
            // The next batch: as many whole sequences as fit.
            let (mut j, mut n) = (i, 0);
            while j < seqs.len() && j - i < self.n_seq_max() && n + seqs[j].len() <= self.n_batch() {
                n += seqs[j].len();
                j += 1;
            }
            batch.clear();
            for (k, s) in seqs[i..j].iter().enumerate() {
                for (p, &t) in s.iter().enumerate() {
                    batch.push(t, k, p as u32, true);
                }
            }
            self.seq_rm(None, ..)?;
            self.decode(model, &batch)?;
            // Output rows in batch order: each sequence's tokens consecutive.
            let hidden = self.embeddings(); // [n][n_embd]
            let mut pooled = Vec::with_capacity(j - i);
            let mut row0 = 0;
            for s in &seqs[i..j] {
                let rows = &hidden[row0 * n_embd..(row0 + s.len()) * n_embd];
                // a causal reranker reads its last token: it alone has seen query and document
                let pooling = if pooling == Pooling::Rank && causal { Pooling::Last } else { pooling };
                let mut v = pooling.pool(rows, n_embd);
                if normalize {
                    l2_normalize(&mut v, n_embd);
                }
                pooled.push(v);
                row0 += s.len();
            }
            if pooling == Pooling::Rank {
                pooled = self.classify(model, &pooled.concat());
            }
            out.extend(pooled);
            i = j;
        }
        self.seq_rm(None, ..)?;
        Ok(out)
    }
}
