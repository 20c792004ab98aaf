//! Embeddings: a list of token sequences packed into batches of several sequences (one forward
//! per batch, not one per text), each sequence's hidden states pooled into one vector (or kept
//! per token) and optionally L2-normalized. The context must be in embeddings mode
//! (`ContextParams::embeddings`), where the forward writes hidden states instead of logits.

use super::context::{Batch, Context, ContextParams};
use super::kv_cells::MAX_SEQ;
use super::Model;
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
    /// A reranker's relevance score (needs the model's classification head).
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
            Pooling::None | Pooling::Rank => rows.to_vec(),
            Pooling::Cls => rows[..n_embd].to_vec(),
            Pooling::Last => rows[(n - 1) * n_embd..].to_vec(),
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
            return Err(Error::InvalidArgument(
                "pooling_type 'rank' needs a reranker's classification head, which is not supported yet".into(),
            ));
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
        let n_embd = model.hparams().n_embd;
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
            let mut row0 = 0;
            for s in &seqs[i..j] {
                let mut v = pooling.pool(&hidden[row0 * n_embd..(row0 + s.len()) * n_embd], n_embd);
                if normalize {
                    l2_normalize(&mut v, n_embd);
                }
                out.push(v);
                row0 += s.len();
            }
            i = j;
        }
        self.seq_rm(None, ..)?;
        Ok(out)
    }
}
