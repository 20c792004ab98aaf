//! A [`Decoder`] with one single-sequence `Context` per sequence: each sequence's rows run as
//! their own forward (the weights are read once per sequence, not once per step). It is the
//! engine's decoder for models whose state cannot share a batch (recurrent layers) and the
//! reference the batched decoder is checked against.

use std::sync::Arc;

use super::{Decoder, Row};
use crate::model::{Context, ContextParams, Model};
use crate::{Error, Result};

pub struct PerSequence {
    model: Arc<Model>,
    ctxs: Vec<Context>,
    /// [n_outputs][n_vocab] of the last `decode`.
    out: Vec<f32>,
    n_vocab: usize,
}

impl PerSequence {
    /// `n_seq` contexts of `p` (each with `p.n_ctx` cells); `logits_all` is ignored (rows choose).
    pub fn new(model: Arc<Model>, n_seq: usize, p: ContextParams) -> Result<PerSequence> {
        let p = ContextParams { logits_all: false, ..p };
        let ctxs = (0..n_seq).map(|_| Context::new(&model, p.clone())).collect::<Result<Vec<_>>>()?;
        let n_vocab = model.n_vocab();
        Ok(PerSequence { model, ctxs, out: Vec::new(), n_vocab })
    }
}

impl Decoder for PerSequence {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn decode(&mut self, rows: &[Row]) -> Result<()> {
        let n_out = rows.iter().filter(|r| r.logits).count();
        self.out.resize(n_out * self.n_vocab, 0.0);
        // output k of the batch is the k-th flagged row: map each to its place
        let mut dst = vec![0usize; rows.len()];
        let mut k = 0;
        for (i, r) in rows.iter().enumerate() {
            if r.seq >= self.ctxs.len() {
                return Err(Error::InvalidArgument(format!("sequence id {} ≥ {} sequences", r.seq, self.ctxs.len())));
            }
            dst[i] = k;
            k += r.logits as usize;
        }
        for seq in 0..self.ctxs.len() {
            let mine: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].seq == seq).collect();
            // pieces ending at each flagged row (the last piece may end unflagged)
            let mut start = 0;
            while start < mine.len() {
                let end = mine[start..].iter().position(|&i| rows[i].logits).map_or(mine.len(), |p| start + p + 1);
                let piece = &mine[start..end];
                let ctx = &mut self.ctxs[seq];
                let pos0 = rows[piece[0]].pos;
                if pos0 != ctx.kv_len() || piece.iter().enumerate().any(|(o, &i)| rows[i].pos != pos0 + o) {
                    return Err(Error::InvalidArgument(format!(
                        "sequence {seq}: rows must continue at position {} in order",
                        ctx.kv_len()
                    )));
                }
                let tokens: Vec<u32> = piece.iter().map(|&i| rows[i].token).collect();
                ctx.eval(&self.model, &tokens, pos0)?;
                let last = *piece.last().expect("pieces are not empty");
                if rows[last].logits {
                    let o = dst[last] * self.n_vocab;
                    self.out[o..o + self.n_vocab].copy_from_slice(ctx.logits());
                }
                start = end;
            }
        }
        Ok(())
    }

    fn logits(&self, k: usize) -> &[f32] {
        &self.out[k * self.n_vocab..(k + 1) * self.n_vocab]
    }

    fn seq_rm(&mut self, seq: usize, from: usize) -> Result<()> {
        let ctx =
            self.ctxs.get_mut(seq).ok_or_else(|| Error::InvalidArgument(format!("sequence id {seq} out of range")))?;
        ctx.truncate(from.min(ctx.kv_len()))
    }
}
