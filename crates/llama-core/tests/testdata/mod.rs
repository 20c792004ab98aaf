//! Where the tests find their data: the one place that knows the paths.
//!
//! - test models (GGUFs fetched by scripts/fetch-models.sh): `$LLAMA_TEST_MODELS`, default
//!   `~/.cache/llama-test-models`;
//! - the repository's own data, `tests/data/` at its root: llama.cpp's goldens per ISA class, its
//!   vocab-only GGUFs, gpl-3.txt;
//! - the read-only checkpoint fixtures beside the checkout (`$LLAMA_SHARED/fixtures`, default
//!   `../shared/fixtures`), too large to commit; tests that need them skip when they are absent.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn models_dir() -> PathBuf {
    match std::env::var_os("LLAMA_TEST_MODELS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llama-test-models"),
    }
}

/// `tests/data` at the repository root.
pub fn repo_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// llama.cpp's vocab-only GGUFs and tokenizer vectors.
pub fn vocab_dir() -> PathBuf {
    repo_data().join("vocab")
}

/// llama.cpp's answers on the test models for the llama.cpp build whose summation orders the kernel
/// table in use reproduces (`LLAMA_ISA` picks another table): llama.cpp's AVX2 and AVX-512 builds
/// sum in different orders; the scalar and NEON tables follow the AVX-512 build's.
pub fn golden_dir() -> PathBuf {
    repo_data().join("golden").join(llama_core::kernels::kernels().orders.name())
}

/// Golden files of any ISA class, for what does not depend on it (prompts, token ids).
pub fn any_golden(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(repo_data().join("golden")).ok()?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join(format!("{name}.json"))).find(|p| p.exists())
}

/// The checkpoint fixtures: `$LLAMA_FIXTURES`, else `$LLAMA_SHARED/fixtures`, else `shared/fixtures`
/// beside an ancestor of the crate (CI puts shared/ next to its clone).
pub fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("LLAMA_FIXTURES") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("LLAMA_SHARED") {
        return PathBuf::from(p).join("fixtures");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures"))
        .find(|c| c.is_dir())
        .unwrap_or_else(|| PathBuf::from("../shared/fixtures"))
}

/// Path if it exists, else print a SKIP line and return None.
pub fn require(p: PathBuf) -> Option<PathBuf> {
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not found", p.display());
        None
    }
}

/// The expensive cases run only with `LLAMA_TEST_FULL=1` (scripts/test.sh --full, and CI).
pub fn full() -> bool {
    std::env::var("LLAMA_TEST_FULL").is_ok_and(|v| v == "1")
}
