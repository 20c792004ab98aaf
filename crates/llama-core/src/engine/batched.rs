//! The engine's [`Decoder`] over one multi-sequence `Context`: each step is one forward over the
//! mixed batch (every matmul reads each weight once for all its rows), the KV cache unified over
//! the slots' sequences (`Context::decode`, docs/notes/multiseq.md).

use std::sync::Arc;

use super::{Decoder, Row};
use crate::model::{Batch, Context, ContextParams, Model};
use crate::Result;

pub struct Batched {
    model: Arc<Model>,
    ctx: Context,
    batch: Batch,
    n_vocab: usize,
}

impl Batched {
    /// `n_seq` sequences of up to `p.n_ctx` tokens each (the cache holds n_seq × n_ctx cells); a
    /// step holds at most `p.n_batch` prompt rows plus one decoding row per sequence.
    pub fn new(model: Arc<Model>, n_seq: usize, p: ContextParams) -> Result<Batched> {
        let p = ContextParams {
            n_ctx: p.n_ctx * n_seq,
            n_batch: p.n_batch + n_seq,
            n_seq_max: n_seq,
            logits_all: false,
            ..p
        };
        let ctx = Context::new(&model, p)?;
        let n_vocab = model.n_vocab();
        Ok(Batched { model, ctx, batch: Batch::new(), n_vocab })
    }
}

impl Decoder for Batched {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn decode(&mut self, rows: &[Row]) -> Result<()> {
        // the batch's buffers are kept between steps (cleared, not reallocated)
        let b = &mut self.batch;
        b.clear();
        for r in rows {
            b.push(r.token, r.seq, r.pos as u32, r.logits);
        }
        self.ctx.decode(&self.model, b)
    }

    fn logits(&self, k: usize) -> &[f32] {
        &self.ctx.logits()[k * self.n_vocab..(k + 1) * self.n_vocab]
    }

    fn seq_rm(&mut self, seq: usize, from: usize) -> Result<()> {
        self.ctx.seq_rm(Some(seq), from as u32..)
    }
}
