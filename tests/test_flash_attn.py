"""`flash_attn=True` and the quantized KV cache types, against llama.cpp itself (llama-cpp-python
with the same flags): the logits of every row must be the same floats, through each of llama.cpp's
three flash-attention paths (online for short prompt batches and quantized caches, 64×64 tiles for
prompt batches of 64+ tokens over an f16 cache, keys split across the threads for a decode step
over 512+ padded cells), with the Walsh-Hadamard rotation llama.cpp applies to a quantized cache."""

import numpy as np
import pytest

import llama
from conftest import model_path

THREADS = 2
# llama.cpp's ggml type ids of the cache types
GGML_ID = {"f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8}
# prompt batches: 20 tokens (online path), 100 (tiles over an f16 cache), 140 (again, now
# continuing at 120); then single tokens into the split-keys decode (from 257 positions the cache
# pads to 512 cells), then a short batch at depth
STEPS = [(0, 20), (20, 120), (120, 260)] + [(i, i + 1) for i in range(260, 266)] + [(266, 290)]


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: no reference")


@pytest.fixture(scope="module")
def tokens(llama_cpp):
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    ref = llama_cpp.Llama(path, n_ctx=64, vocab_only=True, verbose=False)
    text = (
        "The GNU General Public License is a free, copyleft license for software and other kinds of "
        "works. The licenses for most software and other practical works are designed to take away "
        "your freedom to share and change the works. "
    ) * 12
    toks = ref.tokenize(text.encode())
    assert len(toks) >= STEPS[-1][1]
    return toks[: STEPS[-1][1]]


def _run(llm, toks):
    rows = []
    for a, b in STEPS:
        llm.eval(toks[a:b])
        rows.append(np.array(llm.scores[a:b]))
    return rows


@pytest.mark.parametrize(
    "tk,tv",
    [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16"), ("f16", "q5_1"), ("q4_1", "q5_0")],
)
def test_logits_equal_llama_cpp_with_flash_attention(llama_cpp, tokens, tk, tv):
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    kw = {"n_ctx": 1024, "n_threads": THREADS, "flash_attn": True, "logits_all": True}
    ref = llama_cpp.Llama(path, verbose=False, type_k=GGML_ID[tk], type_v=GGML_ID[tv], **kw)
    want = _run(ref, tokens)
    del ref
    ours = llama.Llama(path, type_k=tk, type_v=tv, **kw)
    got = _run(ours, tokens)
    for (a, b), w, g in zip(STEPS, want, got):
        assert np.array_equal(w, g), f"rows {a}:{b}: max |Δ| {np.abs(w - g).max()}"


def test_sliding_window_model_with_flash_attention(llama_cpp):
    """gemma3 (sliding-window layers beside global ones) through the tiles and the online path."""
    path = model_path("gemma3-270m-q4_k_m.gguf")
    kw = {"n_ctx": 1024, "n_threads": THREADS, "flash_attn": True, "logits_all": True}
    ref = llama_cpp.Llama(path, verbose=False, **kw)
    toks = ref.tokenize(b"Once upon a time, in a land far away, " * 30)[:600]
    ref.eval(toks[:590])
    want = np.array(ref.scores[:590])
    for t in toks[590:]:
        ref.eval([t])
    want_tail = np.array(ref.scores[590:600])
    del ref
    ours = llama.Llama(path, **kw)
    ours.eval(toks[:590])
    assert np.array_equal(np.array(ours.scores[:590]), want)
    for t in toks[590:]:
        ours.eval([t])
    assert np.array_equal(np.array(ours.scores[590:600]), want_tail)


def test_flash_attention_is_its_own_arithmetic(tokens):
    """The flag changes the path: some logits differ from the default (exact non-flash) run, all
    stay close, and the greedy choice agrees."""
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    rows = {}
    for fa in (False, True):
        llm = llama.Llama(path, n_ctx=512, n_threads=THREADS, flash_attn=fa, logits_all=True)
        llm.eval(tokens[:120])
        rows[fa] = np.array(llm.scores[:120])
    assert not np.array_equal(rows[False], rows[True])
    assert np.abs(rows[False] - rows[True]).max() < 2.0
    assert (rows[False].argmax(-1) == rows[True].argmax(-1)).mean() > 0.9


def test_quantized_cache_halves_the_memory_and_replays_from_a_saved_state(tokens):
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    grow = {}
    for t in ("f16", "q8_0"):
        llm = llama.Llama(path, n_ctx=256, n_threads=THREADS, flash_attn=True, type_k=t, type_v=t)
        llm.eval(tokens[:40])
        s40 = llm.save_state()
        llm.eval(tokens[40:80])
        grow[t] = len(llm.save_state().kv_state) - len(s40.kv_state)  # the cache of 40 tokens
        if t == "q8_0":
            # a replay from the saved state gives the same floats
            a = np.array(llm.scores[llm.n_tokens - 1])
            llm.load_state(s40)
            llm.eval(tokens[40:80])
            assert np.array_equal(np.array(llm.scores[llm.n_tokens - 1]), a)
    # q8_0 keeps 34 bytes per 32 values: 17/32 of f16's
    assert grow["q8_0"] * 32 == grow["f16"] * 17, grow


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"type_k": "q8_0"}, "needs flash attention"),
        ({"type_k": "q8_0", "type_v": "q8_0"}, "needs flash attention"),
        ({"type_k": "f32", "flash_attn": True}, "f32 with flash attention"),
        ({"type_k": "q3_k", "flash_attn": True}, "not supported"),
        ({"type_v": 99, "flash_attn": True}, "type_v 99 is not supported"),
        ({"type_k": "f32", "type_v": "f16"}, "differ"),
    ],
)
def test_cache_types_that_cannot_work_raise(kw, match):
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    with pytest.raises(llama.InvalidArgumentError, match=match):
        llama.Llama(path, n_ctx=64, n_threads=THREADS, **kw)


def test_cli_flags_match_llama_cpp_greedy_text(llama_cpp):
    """`run -fa -ctk q8_0 -ctv q8_0` generates llama.cpp's greedy text with the same cache."""
    import subprocess
    import sys

    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    prompt = "def fibonacci(n):"
    ref = llama_cpp.Llama(path, n_ctx=256, n_threads=THREADS, flash_attn=True, type_k=8, type_v=8, verbose=False)
    want = ref.create_completion(prompt, max_tokens=24, temperature=0.0)["choices"][0]["text"]
    del ref
    args = ["-m", path, "-p", prompt, "-n", "24", "--temp", "0", "-t", str(THREADS), "-c", "256"]
    cmd = [sys.executable, "-m", "llama", "run", *args, "-fa", "-ctk", "q8_0", "-ctv", "q8_0"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (prompt + want).strip()
    bad = subprocess.run([sys.executable, "-m", "llama", "run", *args, "-ctk", "q8_0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "needs flash attention" in bad.stderr
