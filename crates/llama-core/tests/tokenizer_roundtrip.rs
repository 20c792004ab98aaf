//! Properties: detokenize(tokenize(x)) == x (BPE always; SPM with BOS, whose dummy-prefix space
//! llama-cpp-python strips), ids in range, and pathological inputs (100 KB of one character,
//! long whitespace runs) stay fast.

mod common;

use std::time::{Duration, Instant};

use llama_core::tokenizer::{StreamDecoder, Tokenizer, VocabKind};

fn samples() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "Hello world",
        " leading space",
        "  two",
        "trailing  ",
        "\n\n\ttabs\t\n",
        "naïve café Führer",
        "中文分词测试 日本語",
        "👨‍👩‍👧‍👦 🏳️‍🌈 🦙",
        "مرحبا שלום",
        "e\u{301} a\u{308}\u{304}",
        "\u{0}\u{1}\u{7f}",
        "def f(x):\n    return x * 2\n",
        "<s> </s> <unk> <|endoftext|> <|im_end|>",
        "▁▁x ▁",
        "<0x41>",
        "   ",
        "",
        "I'm don't we'll 12345 3.14159",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Deterministic pseudo-random valid UTF-8 strings over mixed scripts.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let pool: Vec<char> =
        "aZ09 \t\n.,!?'\"()[]{}<>|ßéñøΩЖא ب中あ한🦙👍\u{200d}\u{301}\u{a0}\u{3000}▁".chars().collect();
    for _ in 0..500 {
        let mut s = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for k in 0..(x % 40) {
            let r = x.wrapping_mul(k + 1).rotate_left(k as u32 % 64);
            s.push(pool[(r % pool.len() as u64) as usize]);
        }
        v.push(s.into_bytes());
    }
    v
}

fn roundtrip(tok: &Tokenizer, name: &str) {
    for s in samples() {
        // SPM escapes ' ' as U+2581 and unescapes every U+2581: a literal ▁ cannot survive.
        if tok.vocab().kind() == VocabKind::Spm && String::from_utf8_lossy(&s).contains('\u{2581}') {
            continue;
        }
        let ids = tok.tokenize(&s, true, false);
        assert!(ids.iter().all(|&i| (i as usize) < tok.n_vocab()), "{name}: id out of range");
        let back = tok.detokenize(&ids, false);
        assert_eq!(back, s, "{name}: roundtrip of {:?} via {ids:?}", String::from_utf8_lossy(&s));
        // Streaming the pieces reassembles the same text.
        let mut d = StreamDecoder::new();
        let mut streamed = String::new();
        for (k, &id) in ids.iter().enumerate() {
            let mut p = tok.token_to_piece(id, false);
            if k == 0 || (k == 1 && Some(ids[0]) == tok.bos()) {
                // the dummy-prefix space llama-cpp-python strips from the first piece
                if tok.add_space_prefix() && p.first() == Some(&b' ') {
                    p.remove(0);
                }
            }
            streamed += &d.push(&p);
        }
        streamed += &d.flush();
        assert_eq!(streamed.as_bytes(), &s[..], "{name}: streamed pieces");
    }
}

#[test]
fn roundtrip_spm_llama() {
    let Some(tok) = common::load("llama-spm") else { return };
    roundtrip(&tok, "llama-spm");
}

#[test]
fn roundtrip_bpe_gpt2() {
    let Some(tok) = common::load("gpt-2") else { return };
    roundtrip(&tok, "gpt-2");
}

#[test]
fn roundtrip_bpe_qwen() {
    let Some(tok) = common::load("qwen") else { return };
    roundtrip(&tok, "qwen");
}

#[test]
fn invalid_utf8_never_panics_and_spm_keeps_bytes() {
    let bad: &[&[u8]] =
        &[b"\xff\xfe", b"a\xc3", b"\xe4\xb8", b"\xf0\x9f\xa6", b"\xed\xa0\x80x", b"\xc0\x80", b"\xf7\xbf\xbf\xbf"];
    for name in ["llama-spm", "gpt-2", "qwen"] {
        let Some(tok) = common::load(name) else { return };
        for &b in bad {
            let ids = tok.tokenize(b, true, true);
            assert!(ids.iter().all(|&i| (i as usize) < tok.n_vocab()));
            if name == "llama-spm" {
                assert_eq!(tok.detokenize(&ids, false), b, "{name}: byte fallback keeps raw bytes");
            }
        }
    }
}

fn timed(tok: &Tokenizer, text: &[u8], what: &str) -> Duration {
    let (c0, t) = (common::thread_cpu_time(), Instant::now());
    let ids = tok.tokenize(text, true, true);
    let wall = t.elapsed();
    let dt = match (c0, common::thread_cpu_time()) {
        (Some(a), Some(b)) => b - a,
        _ => wall,
    };
    eprintln!("{what}: {} bytes → {} ids in {dt:?} CPU ({wall:?} wall)", text.len(), ids.len());
    assert!(dt < Duration::from_secs(1), "{what} took {dt:?} CPU");
    dt
}

#[test]
fn pathological_inputs_are_fast() {
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("100KB 'a'", vec![b'a'; 100_000]),
        ("100KB spaces", vec![b' '; 100_000]),
        ("100KB newlines", vec![b'\n'; 100_000]),
        ("100KB tabs+spaces", b" \t".repeat(50_000)),
        ("100KB spaces then x", [vec![b' '; 100_000], b"x".to_vec()].concat()),
        ("100KB '🦙'", "🦙".repeat(25_000).into_bytes()),
        ("100KB digits", b"1234567890".repeat(10_000)),
        ("100KB '<s>'", b"<s>".repeat(33_000)),
        ("100KB mixed", "ab  c\u{3000}\n\n'\u{301}".repeat(8_000).into_bytes()),
    ];
    for name in ["llama-spm", "gpt-2", "qwen", "gemma"] {
        let Some(tok) = common::load(name) else { continue };
        for (what, text) in &inputs {
            timed(&tok, text, &format!("{name} {what}"));
        }
    }
}
