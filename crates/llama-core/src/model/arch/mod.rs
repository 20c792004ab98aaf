//! The families, one file each, and the registry mapping `general.architecture` to them.
//!
//! A family's file holds what is that family's: the hyper-parameters only it reads (its
//! `{arch}.*` keys beyond the shared ones of `hparams.rs`), its tensors (its own layer struct),
//! and its forward, written with the stages of `model/blocks.rs`. Adding a family is one new file
//! and one line in [`FAMILIES`] (and the converter's mapping, if it converts from HF).

mod bert;
mod gemma2;
mod gemma3;
mod gpt_oss;
mod llama;
mod mamba;
mod nomic_bert;
mod phi3;
mod qwen2;
mod qwen3;
mod qwen35;
mod qwen3moe;
mod smollm3;

use super::context::Context;
use super::hparams::{Arch, HParams};
use super::recurrent::RecurrentSize;
use super::weights::WRef;
use super::Model;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// A family's loaded network: its weights (views into the mmap), its own hyper-parameters, and
/// its forward.
pub(super) trait Network: Send + Sync {
    /// One batch of `tokens` (positions, cells and sequence groups in the context's `BatchPlan`)
    /// through every layer, into the KV cache, and the logits of the rows the plan names into the
    /// context (the context owns batching).
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]);
    /// token_embd: [n_vocab][n_embd] (n_vocab is its row count).
    fn tok_embd(&self) -> WRef;
    /// Every matrix the forward multiplies by (candidates for R16 repacking).
    fn matrices(&self) -> Vec<WRef>;
    /// The widest feed-forward layer (activation buffer sizing); for a mixture of experts, the
    /// experts used per token times their width.
    fn max_n_ff(&self) -> usize;
    /// (n_expert, n_expert_used) of a mixture-of-experts family (routing buffer sizing).
    fn moe(&self) -> Option<(usize, usize)> {
        None
    }
    /// Per layer, the size of its recurrent state (`model/recurrent.rs`); none for attention-only
    /// families.
    fn recurrent_sizes(&self) -> Vec<RecurrentSize> {
        Vec::new()
    }
    /// The family's own activation buffers beyond the shared ones (`Buffers::extra`), in floats
    /// per batch row.
    fn extra_buffers(&self) -> Vec<usize> {
        Vec::new()
    }
    /// An encoder whose output is embeddings only (no output matrix): its contexts must be in
    /// embeddings mode.
    fn embeddings_only(&self) -> bool {
        false
    }
    /// The positions a family with learned absolute position embeddings has rows for (the
    /// context may not be longer); None for rope families.
    fn n_pos_max(&self) -> Option<usize> {
        None
    }
}

/// One registry entry.
pub(super) struct Family {
    /// Its `general.architecture`.
    pub name: &'static str,
    /// Reads the family's own hyper-parameters, then finds and checks its tensors.
    pub load: fn(&GgufFile, &HParams) -> Result<Box<dyn Network>>,
    /// Whether it has attention layers: a family without them (Mamba) stores
    /// `attention.head_count` 0.
    pub attention: bool,
}

impl Family {
    pub fn arch(&self) -> Arch {
        Arch(self.name)
    }
}

/// The registry.
const FAMILIES: &[Family] = &[
    Family { name: "llama", load: llama::load, attention: true },
    Family { name: "qwen2", load: qwen2::load, attention: true },
    Family { name: "gemma3", load: gemma3::load, attention: true },
    Family { name: "qwen3", load: qwen3::load, attention: true },
    Family { name: "qwen3moe", load: qwen3moe::load, attention: true },
    Family { name: "qwen35", load: qwen35::load, attention: true },
    Family { name: "gpt-oss", load: gpt_oss::load, attention: true },
    Family { name: "gemma2", load: gemma2::load, attention: true },
    Family { name: "phi3", load: phi3::load, attention: true },
    Family { name: "smollm3", load: smollm3::load, attention: true },
    Family { name: "bert", load: bert::load, attention: true },
    Family { name: "nomic-bert", load: nomic_bert::load, attention: true },
    Family { name: "mamba", load: mamba::load, attention: false },
];

/// The family of a `general.architecture` value.
pub(super) fn find(name: &str) -> Result<&'static Family> {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| Error::UnknownArchitecture { arch: name.to_string(), supported: supported_archs() })
}

/// The supported `general.architecture` values, comma-separated ("llama, qwen2, gemma3, …").
pub fn supported_archs() -> String {
    FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_every_family_and_rejects_others_by_name() {
        for f in FAMILIES {
            assert_eq!(find(f.name).map(|g| g.arch().name()).ok(), Some(f.name));
        }
        let Err(e) = find("falcon") else { panic!("falcon is not a family here") };
        let Error::UnknownArchitecture { arch, supported } = e else { panic!("wrong error: {e}") };
        assert_eq!(arch, "falcon");
        // The message lists every family by name.
        let listed: Vec<&str> = supported.split(", ").collect();
        assert_eq!(listed, FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>());
    }
}
