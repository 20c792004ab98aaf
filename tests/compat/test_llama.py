"""llama-cpp-python's tests/test_llama.py (upstream commit 3691546f, release 0.3.35), ported to run
against `llama` instead of `llama_cpp`. Every upstream test has a test of the same name here that
checks the same facts; the code is written anew.

Adaptations:

- Models. Upstream downloads its models from the Hugging Face Hub; here they are local (conftest's
  `model_path` skips, saying so, when a test model is absent) or written on the spot:

  * the vocab-only llama SPM GGUF: the same file, tests/data/vocab/ggml-vocab-llama-spm.gguf;
  * Qwen3.5-0.8B, the "real" model: qwen2.5-coder-0.5b-q4_k_m.gguf, which gives the answers upstream
    expects to the same prompts (llama-cpp-python 0.3.36 gives the same ones on it);
  * stories15M, the plain transformer of the prompt-cache cases: smollm2-135m-instruct-q4_1.gguf;
  * Falcon-H1-Tiny, the hybrid (attention + recurrent layers): the qwen3_5 architecture fixture
    (tests/data/arch/qwen3_5: gated-DeltaNet layers and an attention layer) converted to GGUF;
    llama.cpp classes qwen35 as hybrid too;
  * mamba-130m, the recurrent-only model: a random-weight Mamba GGUF written here with gguf-py (with
    the llama SPM vocabulary); llama-cpp-python loads it as recurrent and passes these tests on it;
  * bge-small-en-v1.5, the embedding model: the BERT fixture tests/data/embed/bert-tiny converted.

- Every model is opened with `flash_attn=True`, as upstream's tests do. Two threads instead of
  every core.
- Assertions on llama-cpp-python's internals are not ported where they are its C plumbing
  (`Llama._ctx.ctx`, a ctypes handle); its `_is_recurrent` / `_is_hybrid` flags, which the
  prompt-cache tests assert, are checked in `test_model_kind_flags` alone.
- `test_real_model` drives llama.cpp's C API through `llama_cpp._internals`: kept, skipped.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import llama
from conftest import DATA, model_path
from llama import _llama
from synth_mamba import write_random_mamba

THREADS = 2
SPM_VOCAB = DATA / "vocab" / "ggml-vocab-llama-spm.gguf"
FOX = "The quick brown fox jumps over the lazy dog. The quick brown fox"
SHORT_FOX = "The quick brown fox"
NUMBER_GRAMMAR = "root ::= " + " | ".join(f'"{n}"' for n in range(1, 11)) + "\n"


def _open(path: str, n_ctx: int = 32, **kwargs) -> llama.Llama:
    """A Llama sized as upstream's tests make them: batch = ubatch = context, one logits row."""
    return llama.Llama(
        path,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        logits_all=False,
        verbose=False,
        **{"flash_attn": True, **kwargs},
    )


def _text(completion: dict) -> str:
    return completion["choices"][0]["text"]


def _greedy(llm: llama.Llama, prompt: list[int], n: int = 3) -> list[int]:
    """The first `n` tokens `generate` yields at temperature 0 (the generator is left suspended)."""
    return list(itertools.islice(llm.generate(prompt, temp=0.0), n))


# -- models ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen() -> str:
    return model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")


@pytest.fixture(scope="module")
def transformer_model() -> str:
    return model_path("smollm2-135m-instruct-q4_1.gguf")


@pytest.fixture(scope="module")
def hybrid_model(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("hybrid") / "qwen3_5-fixture-f32.gguf"
    _llama.convert(str(DATA / "arch" / "qwen3_5"), "f32", str(out), None, True)
    return str(out)


@pytest.fixture(scope="module")
def recurrent_model(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("recurrent") / "mamba-random-f32.gguf"
    write_random_mamba(out, SPM_VOCAB)
    return str(out)


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("embedding") / "bert-tiny-f32.gguf"
    _llama.convert(str(DATA / "embed" / "bert-tiny"), "f32", str(out), None, True)
    return str(out)


# -- version and tokenizer ------------------------------------------------------------------------


def test_llama_cpp_version():
    assert isinstance(llama.__version__, str) and llama.__version__


def test_llama_cpp_tokenization():
    vocab = llama.Llama(model_path=str(SPM_VOCAB), vocab_only=True, verbose=False)
    bos, eos = vocab.token_bos(), vocab.token_eos()

    # BOS in front by default; decoding gives the text back.
    ids = vocab.tokenize(b"Hello World")
    assert ids == [1, 15043, 2787] and ids[0] == bos
    assert vocab.detokenize(ids) == b"Hello World"

    # Without BOS the first piece keeps SentencePiece's leading space: the text does not come back as is.
    ids = vocab.tokenize(b"Hello World", add_bos=False)
    assert ids == [15043, 2787] and ids[0] != bos
    assert vocab.detokenize(ids) != b"Hello World"

    # "</s>" is ordinary text unless special tokens are parsed; then it is EOS.
    ids = vocab.tokenize(b"Hello World</s>")
    assert ids == [1, 15043, 2787, 829, 29879, 29958] and ids[-1] != eos
    ids = vocab.tokenize(b"Hello World</s>", special=True)
    assert ids == [1, 15043, 2787, 2] and ids[-1] == eos

    # An empty text is BOS alone, which decodes to nothing.
    ids = vocab.tokenize(b"", add_bos=True, special=True)
    assert ids == [bos] and ids[-1] != eos
    assert vocab.detokenize(ids) == b""


def test_real_model():
    pytest.skip("needs llama.cpp's C API (llama_cpp.llama_model_default_params): not part of llama.py")


# -- completions on a real model ------------------------------------------------------------------


def test_real_llama(qwen):
    llm = _open(qwen)
    nucleus = {"top_k": 50, "top_p": 0.9}

    out = llm.create_completion(FOX, max_tokens=6, temperature=0.0, seed=1337, **nucleus)
    assert _text(out) == " jumps over the lazy dog."

    # Sampling at 0.8 under a two-word grammar: the model says "true".
    out = llm.create_completion(
        "The capital of france is paris, 'true' or 'false'?:\n",
        max_tokens=4,
        temperature=0.8,
        seed=1337,
        grammar=llama.LlamaGrammar.from_string('\nroot ::= "true" | "false"\n'),
        **nucleus,
    )
    assert _text(out) == "true"

    # A logits processor scaling the logits of the tokens of "rot" by 1000 makes them the answer.
    boosted = llm.tokenize(b"rot", add_bos=True, special=True)

    def scale_rot(input_ids, logits):
        for token in boosted:
            logits[token] = logits[token] * 1000
        return logits

    out = llm.create_completion(
        "The capital of france is par",
        max_tokens=4,
        temperature=0.8,
        seed=1337,
        logits_processor=llama.LogitsProcessorList([scale_rot]),
        **nucleus,
    )
    assert _text(out).lower().startswith("rot")

    # Completions without seed= draw their seeds in turn from set_seed's; a state saved before
    # them carries that seed, so loading it replays the first draw.
    def pick_a_number() -> str:
        out = llm.create_completion(
            "Pick a number from 1 to 10?:\n",
            max_tokens=4,
            temperature=1.0,
            grammar=llama.LlamaGrammar.from_string(NUMBER_GRAMMAR),
            **nucleus,
        )
        return _text(out)

    llm.set_seed(1337)
    saved = llm.save_state()
    first = pick_a_number()
    second = pick_a_number()
    llm.load_state(saved)
    replayed = pick_a_number()
    assert first != second
    assert replayed == first


def test_real_llama_repeated_prompt_cache(qwen):
    llm = _open(qwen)
    # The second call finds the whole prompt already evaluated; the answer must not change.
    answers = [_text(llm.create_completion(FOX, max_tokens=6, temperature=0.0, seed=1337)) for _ in range(2)]
    assert answers == [" jumps over the lazy dog."] * 2


def test_flash_attn_is_accepted(qwen):
    llm = _open(qwen, flash_attn=True)
    assert _text(llm.create_completion(FOX, max_tokens=6, temperature=0.0)) == " jumps over the lazy dog."


# -- prompt reuse on transformer, recurrent and hybrid models --------------------------------------

KINDS = [
    pytest.param("transformer_model", id="transformer"),
    pytest.param("recurrent_model", id="recurrent"),
    pytest.param("hybrid_model", id="hybrid"),
]


@pytest.mark.parametrize(
    ("kind", "recurrent", "hybrid"),
    [
        pytest.param("transformer_model", False, False, id="transformer"),
        pytest.param("recurrent_model", True, False, id="recurrent"),
        pytest.param("hybrid_model", False, True, id="hybrid"),
    ],
)
def test_model_kind_flags(request, kind, recurrent, hybrid):
    llm = _open(request.getfixturevalue(kind), n_ctx=64)
    assert llm._is_recurrent is recurrent
    assert llm._is_hybrid is hybrid


def _edit_history(path: str) -> None:
    """Two prompts that share their first token and then differ: the second completion has to drop
    what the first left in the context past that token (a recurrent state cannot be cut back)."""
    llm = _open(path)
    before = llm.tokenize(b"The quick brown fox", add_bos=True, special=True)
    after = llm.tokenize(b"The slow brown fox", add_bos=True, special=True)
    assert before != after and before[0] == after[0]
    for prompt in ("The quick brown fox", "The slow brown fox"):
        assert isinstance(_text(llm.create_completion(prompt, max_tokens=1, temperature=0.0)), str)


def test_recurrent_model_prompt_cache_reset(recurrent_model):
    _edit_history(recurrent_model)


def test_hybrid_model_prompt_cache_reset(hybrid_model):
    _edit_history(hybrid_model)


def _reference(path: str) -> tuple[list[int], list[int]]:
    """The short fox prompt's tokens and the first greedy tokens a fresh context gives after it."""
    fresh = _open(path, n_ctx=64)
    prompt = fresh.tokenize(SHORT_FOX.encode(), add_bos=True, special=True)
    return prompt, _greedy(fresh, prompt)


def _evaluate_decoy(llm: llama.Llama, prompt: list[int], unlike: int) -> None:
    """Leaves in `llm` a prompt as long as `prompt` but for its last token, chosen so that its greedy
    next token is not `unlike`: a state restored over it that did not replace it would show."""
    for last in (llm.token_eos(), llm.token_nl(), 0, 1, 2, llm.n_vocab() - 1):
        decoy = [*prompt[:-1], last]
        if decoy == prompt:
            continue
        llm.reset()
        llm.eval(decoy)
        if llm.sample(temp=0.0, idx=len(decoy) - 1) != unlike:
            return
    pytest.fail("no same-length decoy prompt changes the greedy next token")


@pytest.mark.parametrize("kind", KINDS)
def test_exact_cached_prompt_reuse_matches_fresh(request, monkeypatch, kind):
    path = request.getfixturevalue(kind)
    prompt, expected = _reference(path)

    llm = _open(path, n_ctx=64)
    llm.eval(prompt)
    assert llm.n_tokens == len(prompt)
    assert llm.input_ids[: llm.n_tokens].tolist() == prompt
    assert llm.sample(temp=0.0, idx=len(prompt) - 1) == expected[0]

    # generate() on exactly what the context holds continues from it: no reset, the same tokens.
    resets = []
    real_reset = llm.reset

    def counted_reset():
        resets.append(True)
        real_reset()

    monkeypatch.setattr(llm, "reset", counted_reset)
    got = _greedy(llm, prompt)
    assert not resets
    assert got == expected
    assert llm.n_tokens == len(prompt) + len(got) - 1  # the last yielded token is not evaluated yet


@pytest.mark.parametrize("kind", KINDS)
def test_loaded_exact_cached_prompt_reuse_matches_fresh(request, kind):
    path = request.getfixturevalue(kind)
    prompt, expected = _reference(path)

    source = _open(path, n_ctx=64)
    source.eval(prompt)
    state = source.save_state()

    llm = _open(path, n_ctx=64)
    _evaluate_decoy(llm, prompt, expected[0])
    llm.load_state(state)
    assert llm.n_tokens == len(prompt)
    assert llm.input_ids[: llm.n_tokens].tolist() == prompt

    got = _greedy(llm, prompt)
    assert got == expected
    assert llm.n_tokens == len(prompt) + len(got) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_ram_cache_exact_prompt_hit_matches_fresh(request, monkeypatch, kind):
    path = request.getfixturevalue(kind)
    prompt, _ = _reference(path)
    settings = {"max_tokens": 1, "temperature": 0.0, "seed": 1337}
    expected = _open(path, n_ctx=64).create_completion(prompt, **settings)

    # One instance fills the cache; another, fresh, must take its state from there (one load).
    cache = llama.LlamaRAMCache()
    writer = _open(path, n_ctx=64)
    writer.set_cache(cache)
    writer.create_completion(prompt, **settings)

    reader = _open(path, n_ctx=64)
    reader.set_cache(cache)
    loads = []
    real_load = reader.load_state

    def counted_load(state):
        loads.append(state)
        real_load(state)

    monkeypatch.setattr(reader, "load_state", counted_load)
    got = reader.create_completion(prompt, **settings)
    assert len(loads) == 1
    assert _text(got) == _text(expected)
    assert got["usage"]["completion_tokens"] == expected["usage"]["completion_tokens"]


@pytest.mark.parametrize("kind", KINDS)
def test_shorter_prompt_prefix_reuse_matches_fresh(request, kind):
    path = request.getfixturevalue(kind)
    prompt, expected = _reference(path)

    # The context holds the prompt and more; generating from the prompt alone must forget the rest.
    llm = _open(path, n_ctx=64)
    more = llm.tokenize(b" jumps over the lazy dog", add_bos=False, special=True)
    llm.eval(prompt + more)
    assert llm.n_tokens > len(prompt)
    assert llm.input_ids[: len(prompt)].tolist() == prompt
    assert _greedy(llm, prompt) == expected


# -- embeddings -----------------------------------------------------------------------------------


def test_real_llama_embeddings(embedding_model):
    llm = _open(embedding_model, embedding=True)
    vector = llm.embed("Hello World")
    assert len(vector) > 0

    texts = ["Hello World", "A different prompt"]
    alone = [llm.embed(t) for t in texts]
    batched = llm.embed(texts)
    assert len(batched) == len(texts)
    for b, a in zip(batched, alone):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)

    swapped = llm.embed(texts[::-1])
    assert len(swapped) == len(texts)
    assert all(len(v) == len(vector) for v in swapped)
