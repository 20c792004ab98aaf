"""Mamba (llama.cpp's `mamba` architecture, FalconMamba's `ssm.dt_b_c_rms` included) against
llama.cpp's answers on the same files: random-weight GGUFs written by tests/synth_mamba.py, whose
answers tools/gen_golden.py recorded from llama-cpp-python per ISA class. Our kernel table
reproduces that build's sums, so the logits are compared bit for bit: every prompt position's
top-10 in one batch, the greedy continuation token by token (the recurrent state carried from
batch to batch), and the perplexity llama-perplexity prints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import llama
from conftest import DATA, golden
from synth_mamba import MODELS, write_all

THREADS = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pytest.importorskip("gguf")
    return {p.stem: p for p in write_all(tmp_path_factory.mktemp("mamba"))}


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_and_greedy_are_llama_cpp_s(files, name):
    g = golden(name)
    llm = llama.Llama(str(files[name]), n_ctx=128, n_batch=128, n_threads=THREADS, logits_all=True, verbose=False)
    assert llm._is_recurrent and not llm._is_hybrid
    for case in g["cases"]:
        toks = case["tokens"]
        assert llm.tokenize(case["prompt"].encode(), add_bos=True, special=False) == toks
        llm.reset()
        llm.eval(toks)
        for pos, want in enumerate(case["top10"]):
            row = np.asarray(llm.scores[pos], dtype=np.float32)
            got = [[int(i), float(row[i])] for i in np.argsort(-row, kind="stable")[:10]]
            assert got == want, f"{name}: position {pos} of {case['prompt']!r}"
        out = []
        for _ in range(len(case["greedy"])):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(t)
            llm.eval([t])
        assert out == case["greedy"], f"{name}: greedy continuation of {case['prompt']!r}"


@pytest.mark.parametrize("name", list(MODELS))
def test_perplexity_prints_llama_cpp_digits(files, name):
    g = golden(name)
    cmd = ["perplexity", "-m", str(files[name]), "-f", str(DATA / "gpl-3.txt"), "-c", "256", "--chunks", "4"]
    r = subprocess.run(
        [sys.executable, "-m", "llama", *cmd, "-t", str(THREADS), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    # The logits are llama.cpp's bit for bit; the recorded figure sums their exponentials in f64 in
    # numpy's order, ours in another: with a perplexity of ~4e10 (random weights) the 6 printed
    # decimals are past f64's precision, so the figures are compared to 1e-12.
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("ppl = ")
    assert float(last.split("=")[1]) == pytest.approx(g["perplexity"]["ppl"], rel=1e-12)


def test_state_round_trip_and_no_partial_rewind(files):
    """save_state/load_state carry the SSM and conv states: a replay after load_state gives the same
    logits bit for bit; a rewind to a position other than 0 is refused, as llama.cpp refuses it."""
    llm = llama.Llama(str(files["mamba-random-f32"]), n_ctx=64, n_threads=THREADS, verbose=False)
    toks = llm.tokenize(b"The quick brown fox jumps over the lazy dog")
    llm.eval(toks[:5])
    state = llm.save_state()
    llm.eval(toks[5:])
    first = np.array(llm.scores[llm._row(llm.n_tokens - 1)])
    llm.load_state(state)
    assert llm.n_tokens == 5
    llm.eval(toks[5:])
    assert np.array_equal(np.array(llm.scores[llm._row(llm.n_tokens - 1)]), first)
    with pytest.raises(llama.LlamaError, match="recurrent"):
        llm._ctx.truncate(3)
