"""`llama.Engine`: many prompts at once from Python through the serving engine. Greedy answers equal
`Llama.create_completion` run one at a time (the path the golden tests hold to llama.cpp)."""

from __future__ import annotations

import threading

import pytest

from conftest import model_path
from llama import Engine, EngineBusyError, Llama

MODEL = "qwen2.5-coder-0.5b-q4_k_m.gguf"
PROMPTS = [
    "def is_prime(n):",
    "The largest planet in the solar system is",
    "// binary search in C\nint search(int *a, int n, int x) {",
    "Translate to French: good morning ->",
    "SELECT * FROM",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(model_path(MODEL), n_slots=3, n_ctx=512, n_threads=2)


def test_a_list_of_prompts_equals_one_at_a_time(engine: Engine) -> None:
    llm = Llama(model_path(MODEL), n_ctx=512, n_threads=2, verbose=False)
    want = [llm.create_completion(p, max_tokens=24, temperature=0)["choices"][0]["text"] for p in PROMPTS]
    got = engine.create_completions(PROMPTS, max_tokens=24, temperature=0)
    assert [g["choices"][0]["text"] for g in got] == want
    assert all(g["usage"]["completion_tokens"] <= 24 for g in got)
    assert engine.metrics()["busy_slots"] == 0


def test_threads_streams_and_cancel(engine: Engine) -> None:
    whole = engine.submit(PROMPTS[1], max_tokens=16, temperature=0).result()["choices"][0]["text"]
    out: dict[int, str] = {}

    def run(i: int) -> None:
        out[i] = "".join(engine.submit(PROMPTS[1], max_tokens=16, temperature=0))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert list(out.values()) == [whole] * 4
    g = engine.submit(PROMPTS[0], max_tokens=400, ignore_eos=True)
    it = iter(g)
    next(it)
    g.cancel()
    rest = list(it)
    assert g.finish_reason == "cancelled" and len(g.tokens) < 400, rest


def test_stop_logprobs_and_errors(engine: Engine) -> None:
    full = engine.submit(PROMPTS[0], max_tokens=30, temperature=0).result()["choices"][0]["text"]
    stop = full.strip()[:3]
    g = engine.submit(PROMPTS[0], max_tokens=30, temperature=0, stop=stop)
    assert g.result()["choices"][0]["text"] == full[: full.index(stop)] and g.finish_reason == "stop"
    g = engine.submit(PROMPTS[1], max_tokens=4, temperature=0, logprobs=2)
    g.result()
    assert len(g.logprobs) == len(g.tokens) and all(len(top) == 2 and top[0][1] == lp for lp, top in g.logprobs)
    with pytest.raises(ValueError, match="context"):
        engine.submit("word " * 600, max_tokens=4).result()
    with pytest.raises(ValueError, match="vocabulary"):
        engine.submit([10**9], max_tokens=4)


def test_a_full_queue_raises_at_once() -> None:
    eng = Engine(model_path(MODEL), n_slots=1, n_ctx=256, n_threads=1, queue=0)
    g = eng.submit(PROMPTS[0], max_tokens=200, ignore_eos=True)
    next(iter(g))  # it runs: the slot is taken
    with pytest.raises(EngineBusyError):
        eng.submit(PROMPTS[1], max_tokens=2)
    g.cancel()
    g.result()
    assert eng.create_completions(PROMPTS[:3], max_tokens=2, temperature=0)[2]["choices"][0]["text"]
