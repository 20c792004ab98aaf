//! Model forward pass over a KV cache: `Model` (hyper-parameters + weight views into the GGUF
//! mmap) and `Context` (KV cache, preallocated activations, logits).
//!
//! One file per architecture family in `arch/` (its hyper-parameters, tensors and forward, llama2.c
//! style with llama.cpp's stage names) and the registry mapping `general.architecture` to them
//! (`arch/mod.rs`); the forwards are written with the shared stages of `blocks.rs`, whose
//! attention is `attention.rs` over the cache of `kv_cache.rs`; linear-attention layers keep their
//! state in `recurrent.rs`.

mod arch;
mod attention;
mod blocks;
mod context;
mod embed;
mod flash_attn;
pub mod hparams;
mod kv_cache;
#[allow(dead_code)] // `visible`/`visible_cells`: the mask rule, kept for the tests and the notes
mod kv_cells;
mod recurrent;
mod weights;

pub use arch::supported_archs;
pub use context::{Batch, Context, ContextParams};
pub use embed::{l2_normalize, rerank_tokens, Pooling};
pub use hparams::{Arch, HParams};
pub use kv_cache::KvType;

use std::collections::HashMap;
use std::path::Path;

use crate::gguf::GgufFile;
use crate::kernels::QTensor;
use crate::quant::repack::{self, Packed};
use crate::quant::GgmlType;
use crate::Result;
use arch::Network;
use weights::WRef;

/// One batch through the forward pass of the model's family (the context owns batching and the
/// batch's plan: positions, cells, sequence groups, outputs).
fn forward(model: &Model, ctx: &mut Context, tokens: &[u32]) {
    model.net.forward(model, ctx, tokens)
}

/// Options for loading a model.
#[derive(Clone, Debug, Default)]
pub struct ModelParams {
    /// Read the file into memory instead of mapping it (llama.cpp's `use_mmap = false`).
    pub no_mmap: bool,
}

/// A loaded model: owns the GGUF file; weights are read in place from its mmap.
pub struct Model {
    file: GgufFile,
    hparams: HParams,
    /// The family's weights and forward (`arch/`).
    net: Box<dyn Network>,
    /// Per tensor (by index): where its bytes are and its R16 copy (`Slot`).
    slots: Vec<Slot>,
    /// R16-repacked copies of the other experts' matrices (first row > 0), by (tensor index,
    /// first row) (see `quant::repack`).
    packed_rows: HashMap<(usize, usize), Packed>,
    /// A reranker's classification head (`cls`, `cls.output`), when the file has one.
    cls_head: Option<embed::ClsHead>,
}

impl Model {
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        let file = if params.no_mmap { GgufFile::read(path.as_ref())? } else { GgufFile::open(path.as_ref())? };
        Self::from_gguf(file)
    }

    /// Builds a model from an already opened file (validates metadata and every tensor).
    pub fn from_gguf(file: GgufFile) -> Result<Model> {
        let family = arch::find(&hparams::read_arch_name(&file)?)?;
        let mut hparams = HParams::from_gguf(&file, family.arch(), family.attention)?;
        let net = (family.load)(&file, &hparams)?;
        hparams.n_vocab = net.tok_embd().rows;
        let cls_head = embed::ClsHead::load(&file, &hparams)?;
        let slots = file
            .tensors()
            .iter()
            .map(|t| Slot {
                ggml_type: t.ggml_type,
                shard: t.shard,
                offset: t.offset,
                n_bytes: t.n_bytes,
                packed: None,
            })
            .collect();
        let mut model = Model { file, hparams, net, slots, packed_rows: HashMap::new(), cls_head };
        for ((idx, row0), p) in repack_weights(&model, model.net.matrices()) {
            match row0 {
                0 => model.slots[idx].packed = Some(p),
                _ => _ = model.packed_rows.insert((idx, row0), p),
            }
        }
        Ok(model)
    }

    /// An encoder that gives embeddings only (no next-token logits): contexts over it must be in
    /// embeddings mode.
    pub fn embeddings_only(&self) -> bool {
        self.net.embeddings_only()
    }

    /// Scores per input of a reranker's classification head (`Pooling::Rank` gives this many
    /// values per sequence); None without a head.
    pub fn n_cls_out(&self) -> Option<usize> {
        self.cls_head.as_ref().map(|h| h.n_out(self.hparams.n_embd))
    }

    /// Whether some layers keep a recurrent state (one sequence per context).
    pub fn is_recurrent(&self) -> bool {
        self.net.recurrent_sizes().iter().any(|s| *s != recurrent::RecurrentSize::default())
    }

    /// Whether recurrent layers sit beside attention layers (llama.cpp's `llama_model_is_hybrid`:
    /// Qwen3.5); a model whose every layer is recurrent (Mamba) is recurrent, not hybrid.
    pub fn is_hybrid(&self) -> bool {
        let sizes = self.net.recurrent_sizes();
        let recurrent = sizes.iter().filter(|s| **s != recurrent::RecurrentSize::default()).count();
        recurrent > 0 && recurrent < self.hparams.n_layer
    }

    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub fn n_vocab(&self) -> usize {
        self.hparams.n_vocab
    }

    /// Total bytes of the weights (for `info`).
    pub fn n_bytes(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_bytes).sum()
    }

    /// Total number of weight elements.
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements()).sum()
    }

    fn qt(&self, w: &WRef) -> QTensor<'_> {
        let packed = match w.row0 {
            0 => self.slots[w.idx].packed.as_ref(),
            r => self.packed_rows.get(&(w.idx, r)),
        };
        QTensor { packed, ..self.plain(w) }
    }

    /// The matrix's rows in the file layout.
    fn plain(&self, w: &WRef) -> QTensor<'_> {
        let s = &self.slots[w.idx];
        let row_bytes = s.ggml_type.row_size(w.cols as u64).expect("shape checked at load") as usize;
        let data = &self.file.data_at(s.shard, s.offset, s.n_bytes)[w.row0 * row_bytes..(w.row0 + w.rows) * row_bytes];
        QTensor { ggml_type: s.ggml_type, data, rows: w.rows, cols: w.cols, packed: None }
    }
}

/// What `Model::qt` reads of a tensor, in one place. The file's tensor info (a name and dims
/// before these fields) and a hash map of the R16 copies were a cache miss each per matrix and
/// token once the token's weights had streamed through the caches (docs/PERFORMANCE.md,
/// session 29).
struct Slot {
    ggml_type: GgmlType,
    /// The file part, offset and length of the tensor's bytes (`GgufFile::data_at`).
    shard: usize,
    offset: u64,
    n_bytes: u64,
    /// The R16 copy of the tensor's first matrix (the whole matrix, or expert 0's).
    packed: Option<Packed>,
}

/// Repacks every matrix the process-wide kernel table has an R16 kernel for, on all cores, into
/// one arena (`repack::PackArena`: huge pages for small matrices too), then releases the mmap
/// pages of the originals so resident memory stays near the file size.
fn repack_weights(m: &Model, mut todo: Vec<WRef>) -> HashMap<(usize, usize), Packed> {
    let file = &m.file;
    let k = crate::kernels::kernels();
    let ty = |r: &WRef| file.tensors()[r.idx].ggml_type;
    // LLAMA_REPACK=0 keeps every matrix in the file layout (row-wise kernels): for comparisons.
    let off = std::env::var("LLAMA_REPACK").is_ok_and(|v| v.trim() == "0");
    todo.retain(|r| !off && k.gemm_r16(ty(r)).is_some() && repack::packed_len(ty(r), r.rows, r.cols).is_some());
    if todo.is_empty() {
        return HashMap::new();
    }
    let shapes: Vec<_> = todo.iter().map(|r| (ty(r), r.rows, r.cols)).collect();
    // no memory for the arena: every matrix stays in the file layout (slower, same answers)
    let Ok(mut arena) = repack::PackArena::new(&shapes) else { return HashMap::new() };
    let n_threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(todo.len());
    let mut packed = vec![false; todo.len()];
    {
        // (matrix, its arena slot), handed out one at a time to the threads
        let work = std::sync::Mutex::new(todo.iter().zip(arena.slots()).enumerate());
        let done: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n_threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let next = work.lock().unwrap_or_else(|e| e.into_inner()).next();
                            let Some((i, (r, slot))) = next else { break };
                            let w = m.plain(r);
                            if repack::pack_into(w.ggml_type, w.data, r.rows, r.cols, slot).is_some() {
                                file.release_pages(w.data);
                                mine.push(i);
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for i in done.into_iter().flatten() {
            packed[i] = true;
        }
    }
    let packed = arena.finish(&packed);
    todo.iter().zip(packed).filter_map(|(r, p)| Some(((r.idx, r.row0), p?))).collect()
}
