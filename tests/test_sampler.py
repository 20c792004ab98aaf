"""The sampler chain (crates/llama-core/src/sampler/) against llama.cpp's own samplers, run through
llama-cpp-python 0.3.36's ctypes API (tools/sampler_reference.py): the same candidates, logits and
probabilities bit for bit, the same seeded draws; then end to end against llama-cpp-python's
`create_completion` (tests/data/sampler_reference.json, made by that tool), and the keyword
arguments of `Llama`'s generation methods."""

import json
import sys

import numpy as np
import pytest

import llama
from conftest import DATA, REPO, model_path
from llama import _llama
from llama.sampling import LogitsProcessorList, StoppingCriteriaList

sys.path.insert(0, str(REPO / "tools"))

THREADS = 2


def _ref():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is the reference for the samplers")
    import sampler_reference

    return sampler_reference


def _logits(seed: int, n: int, ties: bool) -> np.ndarray:
    """Model-like logits: a normal spread plus a few high outliers; `ties` rounds them to 0.1 so
    that many are equal (where only the same sort algorithm gives the same order)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32) * 2.5
    x[rng.integers(0, n, 20)] += 8.0
    if ties:
        x = np.round(x, 1).astype(np.float32)
    return x


STAGE_SETS = [
    [("top_k", {"k": 40})],
    [("top_k", {"k": 200})],  # > 128: llama.cpp's bucket sort
    [("top_k", {"k": 0}), ("top_p", {"p": 0.9})],  # top-p over an unsorted list (adaptive sort)
    [("top_p", {"p": 0.999})],  # top-p past the first 256: the full bucket sort
    [("min_p", {"p": 0.05})],
    [("min_p", {"p": 0.3, "min_keep": 50})],  # the sorted fallback
    [("typical", {"p": 0.9})],
    [("top_k", {"k": 60}), ("typical", {"p": 0.5}), ("top_p", {"p": 0.8}), ("min_p", {"p": 0.02})],
    [("temp", {"t": 0.7})],
    [("temp", {"t": 0.0})],
    [("temp_ext", {"t": 0.8, "delta": 0.5, "exponent": 1.5})],
    [("top_k", {"k": 40}), ("temp_ext", {"t": 1.0, "delta": 0.3, "exponent": 1.0})],
    [("xtc", {"p": 1.0, "t": 0.02, "seed": 3})],
    [("penalties", {"last_n": 64, "repeat": 1.3, "freq": 0.2, "present": 0.1})],
    [("top_k", {"k": 40}), ("top_p", {"p": 0.95}), ("min_p", {"p": 0.05}), ("temp", {"t": 0.8}), ("dist", {"seed": 7})],
    [("dist", {"seed": 1})],
    [("greedy", {})],
    [("mirostat_v2", {"seed": 5, "tau": 5.0, "eta": 0.1})],
    [("mirostat", {"seed": 5, "n_vocab": 0, "tau": 5.0, "eta": 0.1})],
]


def _fix(stages, n):
    return [(name, {**a, "n_vocab": n} if name == "mirostat" else a) for name, a in stages]


@pytest.mark.parametrize("n", [1000, 5000, 151936])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("si", range(len(STAGE_SETS)))
def test_stages_match_llama_cpp_bit_for_bit(si, ties, n):
    ref = _ref()
    stages = _fix(STAGE_SETS[si], n)
    for seed in range(2):
        logits = _logits(seed * 100 + si, n, ties)
        want, want_sel = ref.RefChain(stages).apply(logits)
        chain = _llama.SamplerChain.from_stages(stages)
        if stages[0][0] == "penalties":  # the same history in both
            hist = [int(t) for t in np.argsort(-logits)[:30:3]] * 2
            r = ref.RefChain(stages)
            for t in hist:
                r.accept(t)
                chain.accept(t)
            want, want_sel = r.apply(logits)
        ids, lg, p, sel = chain.apply(logits)
        assert np.array_equal(ids, want["id"]), stages
        assert np.array_equal(lg, want["logit"]), stages
        assert np.array_equal(p, want["p"]), stages
        assert (-1 if sel is None else sel) == want_sel


DRAW_CHAINS = [
    [
        ("top_k", {"k": 40}),
        ("top_p", {"p": 0.95}),
        ("min_p", {"p": 0.05}),
        ("temp", {"t": 0.8}),
        ("dist", {"seed": 42}),
    ],
    [
        ("penalties", {"last_n": 16, "repeat": 1.5, "freq": 0.5, "present": 0.5}),
        ("temp", {"t": 1.2}),
        ("dist", {"seed": 3}),
    ],
    [("dist", {"seed": 0})],
    [("mirostat", {"seed": 11, "tau": 3.0, "eta": 0.2})],
    [("mirostat_v2", {"seed": 12, "tau": 3.0, "eta": 0.2})],
    [("top_k", {"k": 100}), ("xtc", {"p": 0.5, "t": 0.05, "seed": 9}), ("dist", {"seed": 9})],
    [
        ("top_k", {"k": 50}),
        ("typical", {"p": 0.7}),
        ("temp_ext", {"t": 0.9, "delta": 0.4, "exponent": 1.0}),
        ("dist", {"seed": 4}),
    ],
]


@pytest.mark.parametrize("ci", range(len(DRAW_CHAINS)))
def test_seeded_draws_match_llama_cpp(ci):
    """Many draws through a stateful chain (RNG, penalty history, mirostat's mu) pick the same
    tokens as llama.cpp's, each draw's logits different and with ties."""
    ref = _ref()
    n = 3000
    stages = _fix(DRAW_CHAINS[ci], n)
    r = ref.RefChain(stages)
    ours = _llama.SamplerChain.from_stages(stages)
    got, want = [], []
    for i in range(600):
        logits = _logits(1000 + i, n, ties=i % 2 == 1) * (0.3 if i % 3 == 0 else 1.0)
        want.append(r.sample(logits))
        got.append(ours.sample(logits))
    assert got == want
    assert len(set(got)) > 5  # the draws are draws


def test_clone_and_reset_keep_the_stream():
    n = 500
    stages = [("penalties", {"last_n": 8, "repeat": 2.0}), ("dist", {"seed": 77})]
    a = _llama.SamplerChain.from_stages(stages)
    logits = _logits(5, n, False) * 0.2
    first = [a.sample(logits) for _ in range(20)]
    b = a.clone()
    assert [a.sample(logits) for _ in range(20)] == [b.sample(logits) for _ in range(20)]
    a.reset()
    assert [a.sample(logits) for _ in range(20)] == first
    assert a.names() == ["penalties", "dist"]


def test_build_equals_llama_cpp_python_init_sampler():
    """`SamplerChain(n_vocab, **args)` builds the chain llama-cpp-python's `Llama._init_sampler`
    builds (same stages in the same order), and both draw the same tokens."""
    ref = _ref()
    import llama_cpp

    n = 4000

    class Fake:  # what _init_sampler reads from a Llama
        _n_vocab = n
        last_n_tokens_size = 64

    settings = [
        {"temp": 0.8},
        {"temp": 0.0},
        {"temp": -1.0},
        {
            "temp": 0.7,
            "top_k": 10,
            "top_p": 0.8,
            "min_p": 0.1,
            "typical_p": 0.9,
            "repeat_penalty": 1.2,
            "frequency_penalty": 0.1,
        },
        {"temp": 0.8, "mirostat_mode": 1, "mirostat_tau": 4.0, "mirostat_eta": 0.2},
        {"temp": 0.8, "mirostat_mode": 2},
    ]
    for kw in settings:
        Fake._seed = 1234
        r = llama_cpp.Llama._init_sampler(Fake(), **kw)
        names = [
            llama_cpp.llama_sampler_name(llama_cpp.llama_sampler_chain_get(r.sampler, i)).decode()
            for i in range(llama_cpp.llama_sampler_chain_n(r.sampler))
        ]
        ours = llama.sampling.build_chain(n, seed=1234, **kw)
        # llama.cpp names a disabled stage "?name" (an empty sampler); ours keeps the stage, inert.
        assert [s.lstrip("?") for s in names] == ours.names(), kw
        rc = ref.RefChain([], chain=r.sampler)
        got = [ours.sample(_logits(i, n, i % 2 == 0)) for i in range(200)]
        want = [rc.sample(_logits(i, n, i % 2 == 0)) for i in range(200)]
        assert got == want, kw


def _e2e_reference():
    path = DATA / "sampler_reference.json"
    return json.loads(path.read_text())["cases"] if path.exists() else []


@pytest.fixture(scope="module")
def qwen():
    return llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=512, n_threads=THREADS)


@pytest.mark.parametrize("ci", range(len(_e2e_reference())))
def test_completion_matches_llama_cpp_python(qwen, ci):
    """The same prompt, settings and seed give llama-cpp-python's text; logprobs within 1e-5.
    (Reference recorded by tools/sampler_reference.py from llama_cpp.Llama.create_completion.)"""
    case = _e2e_reference()[ci]
    kw = dict(case["kwargs"])
    if "logit_bias" in kw:
        kw["logit_bias"] = {int(k): v for k, v in kw["logit_bias"].items()}
    qwen.reset()
    r = qwen.create_completion(case["prompt"], **kw)
    c = r["choices"][0]
    assert c["text"] == case["text"]
    assert c["finish_reason"] == case["finish_reason"]
    want = case["logprobs"]
    if want is None:
        assert c["logprobs"] is None
        return
    got = c["logprobs"]
    assert got["tokens"] == want["tokens"]
    assert got["text_offset"] == want["text_offset"]
    np.testing.assert_allclose(got["token_logprobs"], want["token_logprobs"], atol=1e-5, rtol=0)
    for g, w in zip(got["top_logprobs"], want["top_logprobs"]):
        assert list(g) == list(w)
        np.testing.assert_allclose(list(g.values()), list(w.values()), atol=1e-5, rtol=0)


def test_same_seed_same_text(qwen):
    a = qwen("def add(a, b):", max_tokens=12, temperature=1.0, seed=5)["choices"][0]["text"]
    b = qwen("def add(a, b):", max_tokens=12, temperature=1.0, seed=5)["choices"][0]["text"]
    assert a == b


def test_unknown_and_unsupported_keywords(qwen):
    with pytest.raises(TypeError):
        qwen.create_completion("x", max_tokens=1, no_such_argument=1)
    with pytest.raises(TypeError):
        qwen.create_chat_completion([{"role": "user", "content": "x"}], no_such_argument=1)
    with pytest.raises(TypeError):
        list(qwen.generate([1, 2], no_such_argument=1))
    with pytest.raises(TypeError):
        qwen.sample(no_such_argument=1)
    with pytest.raises(llama.InvalidArgumentError, match="suffix"):
        qwen.create_completion("x", max_tokens=1, suffix="y")
    with pytest.raises(llama.InvalidArgumentError, match="mirostat_mode"):
        qwen.create_completion("x", max_tokens=1, mirostat_mode=3)
    with pytest.raises(llama.InvalidArgumentError, match="logit_bias"):
        qwen.create_completion("x", max_tokens=1, logit_bias={10**9: 1.0})
    # accepted and ignored as in llama-cpp-python (llama.cpp has no tail-free sampling any more)
    qwen.create_completion("x", max_tokens=1, tfs_z=0.5, model="m")


def test_logits_processor_and_stopping_criteria(qwen):
    prompt = "def fibonacci(n):"
    greedy = qwen.create_completion(prompt, max_tokens=8, temperature=0)["choices"][0]["text"]
    first = qwen.tokenize(greedy.encode(), add_bos=False)[0]
    seen = []

    def ban_first(input_ids, scores):
        assert isinstance(input_ids, np.ndarray) and scores.dtype == np.float32
        seen.append(len(input_ids))
        scores[first] = -np.inf
        return scores

    out = qwen.create_completion(prompt, max_tokens=8, temperature=0, logits_processor=LogitsProcessorList([ban_first]))
    text = out["choices"][0]["text"]
    assert qwen.tokenize(text.encode(), add_bos=False)[0] != first
    assert seen and seen[1] == seen[0] + 1  # called once per token with the growing ids
    # the same as a logit bias of -inf
    biased = qwen.create_completion(prompt, max_tokens=8, temperature=0, logit_bias={first: -float("inf")})
    assert biased["choices"][0]["text"] == text

    calls = []

    def stop_after_3(input_ids, logits):
        calls.append(1)
        return len(calls) >= 3

    r = qwen.create_completion(
        prompt, max_tokens=16, temperature=0, stopping_criteria=StoppingCriteriaList([stop_after_3])
    )
    assert r["usage"]["completion_tokens"] == 2 and r["choices"][0]["finish_reason"] == "stop"


def test_logprobs_shapes(qwen):
    r = qwen.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    lp = r["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert "".join(lp["tokens"]) == r["choices"][0]["text"]
    assert all(v <= 0 for v in lp["token_logprobs"])
    # greedy: the chosen token is the most likely one
    assert all(max(t.values()) == v for t, v in zip(lp["top_logprobs"], lp["token_logprobs"]))
    streamed = list(
        qwen.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=2, stream=True)
    )
    toks = [t for c in streamed if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert toks == lp["tokens"]
    chat = qwen.create_chat_completion(
        [{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
    )
    content = chat["choices"][0]["logprobs"]["content"]
    assert len(content) == chat["usage"]["completion_tokens"] or len(content) == chat["usage"]["completion_tokens"] - 1
    assert all(len(c["top_logprobs"]) >= 3 and c["logprob"] <= 0 for c in content)


def test_echo_logprobs_cover_the_prompt():
    """With logits_all, echo=True adds the prompt's tokens: each one's logprob is the log-softmax
    (computed here in float64) of the row before it; the completion's entries are those of the same
    completion without echo."""
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=256, n_threads=THREADS, logits_all=True)
    prompt = "The capital of France is"
    plain = llm.create_completion(prompt, max_tokens=4, temperature=0, logprobs=2)["choices"][0]
    llm.reset()
    r = llm.create_completion(prompt, max_tokens=4, temperature=0, logprobs=2, echo=True)["choices"][0]
    lp = r["logprobs"]
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    n = len(ids)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert "".join(lp["tokens"]) == r["text"]
    assert lp["tokens"][n:] == plain["logprobs"]["tokens"]
    np.testing.assert_allclose(lp["token_logprobs"][n:], plain["logprobs"]["token_logprobs"], atol=1e-6, rtol=0)
    for j in range(1, n):
        row = llm.scores[j - 1].astype(np.float64)
        want = row[ids[j]] - row.max() - np.log(np.exp(row - row.max()).sum())
        assert abs(lp["token_logprobs"][j] - want) < 1e-4
    with pytest.raises(llama.InvalidArgumentError, match="logits_all"):
        llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=64, n_threads=THREADS).create_completion(
            prompt, max_tokens=1, logprobs=1, echo=True
        )
