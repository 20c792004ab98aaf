// Shared by the tokenizer fuzz targets: vocabulary loading and the properties every input must
// satisfy (no panic, ids in range, lossless round trip where the format allows, streaming equals
// one-shot decoding).

use std::path::PathBuf;

use llama_core::gguf::GgufFile;
use llama_core::tokenizer::{StreamDecoder, Tokenizer, VocabKind};

pub fn load(file: &str) -> Option<Tokenizer> {
    let dir = std::env::var_os("LLAMA_FUZZ_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/vocab"));
    let p = dir.join(file);
    let p = if p.exists() {
        p
    } else {
        // Full models (e.g. qwen) live in the test-model cache.
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let m =
            std::env::var_os("LLAMA_TEST_MODELS").map(PathBuf::from).unwrap_or(home.join(".cache/llama-test-models"));
        m.join(file)
    };
    let f = GgufFile::open(&p).ok()?;
    Some(Tokenizer::from_gguf(&f).expect("test vocabulary loads"))
}

pub fn check(tok: &Tokenizer, data: &[u8]) {
    let Some((&flags, text)) = data.split_first() else { return };
    let add_special = flags & 1 != 0;
    let parse_special = flags & 2 != 0;
    let ids = tok.tokenize(text, add_special, parse_special);
    let n = tok.n_vocab() as u32;
    assert!(ids.iter().all(|&i| i < n), "id out of range");

    // Lossless round trip for valid UTF-8: BPE always (invalid bytes become U+FFFD); SPM unless the
    // text holds a literal U+2581, which SPM unescapes to a space. (SPM is not lossless on invalid
    // UTF-8 either: a stray lead byte such as 0xFB claims the next 3 bytes as one symbol, which can
    // swallow part of an escaped space; llama.cpp splits symbols the same way.)
    if !parse_special {
        let with_bos = tok.tokenize(text, true, false);
        let back = tok.detokenize(&with_bos, false);
        let lossless = std::str::from_utf8(text).is_ok()
            && match tok.vocab().kind() {
                VocabKind::Bpe => true,
                VocabKind::Spm => !text.windows(3).any(|w| w == "\u{2581}".as_bytes()),
            };
        if lossless {
            assert_eq!(back, text, "round trip via {with_bos:?}");
        }
    }

    // Streaming the pieces gives the lossy decoding of the whole output, never half a character.
    let special = flags & 4 != 0;
    let whole: Vec<u8> = ids.iter().flat_map(|&i| tok.token_to_piece(i, special)).collect();
    let mut d = StreamDecoder::new();
    let mut s = String::new();
    for &i in &ids {
        s += &d.push(&tok.token_to_piece(i, special));
    }
    s += &d.flush();
    assert_eq!(s, String::from_utf8_lossy(&whole));

    // Arbitrary ids (including out of range) never panic.
    let raw: Vec<u32> = text.chunks(4).map(|c| c.iter().fold(0u32, |a, &b| a << 8 | b as u32) % (n + 16)).collect();
    let _ = tok.detokenize(&raw, special);
    let _ = tok.detokenize_llama(&raw, flags & 8 != 0, special);
}
