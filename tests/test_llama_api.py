"""`Llama`'s state handling (eval into `scores`, reset, prefix reuse, rewinding by n_tokens), its
public vocabulary/model methods, and the seed API layered on it. The tiny synthetic model is enough."""

import gc
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest

import llama
from conftest import DATA, gguf_with_tensors, model_path

THREADS = 2
PROMPT = [1, 9038, 2501, 263, 931, 29892, 727, 471, 263]


@pytest.fixture(scope="module")
def tiny():
    return model_path("synth-tiny-q4_0.gguf")


def test_eval_writes_scores_and_reset_empties_the_cache(tiny):
    llm = llama.Llama(tiny, n_ctx=64, n_batch=4, n_threads=THREADS, logits_all=True)
    llm.eval(PROMPT)
    assert llm.n_tokens == len(PROMPT)
    assert llm.input_ids[: llm.n_tokens].tolist() == PROMPT
    full = llm.scores[: len(PROMPT)].copy()
    # Batches of 4 (the core's loop) give the rows one token at a time gives.
    one = llama.Llama(tiny, n_ctx=64, n_threads=THREADS)
    for t in PROMPT:
        one.eval([t])
        assert np.array_equal(one.scores[one.n_tokens - 1], full[one.n_tokens - 1])
    llm.reset()
    assert llm.n_tokens == 0
    # reset() emptied the KV cache too: continuing at position 3 is now past the cache.
    llm.n_tokens = 3
    with pytest.raises(llama.InvalidArgumentError, match="holds only 0"):
        llm.eval([450])
    llm.n_tokens = 0
    llm.eval(PROMPT)
    assert np.array_equal(llm.scores[: len(PROMPT)], full)


def test_rewinding_by_n_tokens_and_prefix_reuse(tiny):
    llm = llama.Llama(tiny, n_ctx=64, n_threads=THREADS)
    llm.eval(PROMPT)
    last = llm.scores[len(PROMPT) - 1].copy()
    llm.n_tokens = 5  # as in llama-cpp-python: the next eval continues at 5
    llm.eval(PROMPT[5:])
    assert np.array_equal(llm.scores[len(PROMPT) - 1], last)
    # generate() keeps the common prefix and evaluates the rest.
    other = PROMPT[:6] + [450, 4799]
    fresh = llama.Llama(tiny, n_ctx=64, n_threads=THREADS)
    fresh.eval(other)
    next(llm.generate(other, temp=0))
    assert llm.n_tokens == len(other)
    assert np.array_equal(llm.scores[len(other) - 1], fresh.scores[len(other) - 1])


def test_eval_errors_name_the_problem(tiny):
    llm = llama.Llama(tiny, n_ctx=16, n_threads=THREADS)
    with pytest.raises(llama.InvalidArgumentError, match=r"token id -1 at index 1 .*n_vocab = 32000"):
        llm.eval([1, -1])
    with pytest.raises(llama.InvalidArgumentError, match=r"token id 32000 at index 0 .*n_vocab = 32000"):
        llm.eval([32000])
    with pytest.raises(llama.ContextOverflowError, match="0 cached \\+ 17 new tokens exceed the context window of 16"):
        llm.eval([1] * 17)
    assert llm.n_tokens == 0  # a rejected eval changes nothing
    llm.eval([1, 2])
    assert llm.n_tokens == 2


def test_vocabulary_and_model_info(tiny):
    llm = llama.Llama(tiny, n_ctx=32, n_threads=THREADS)
    assert llm.token_bos() == 1 and llm.token_eos() == 2
    assert llm.token_is_eog(2) and not llm.token_is_eog(1) and not llm.token_is_eog(-1)
    assert llm.add_bos_token()
    ids = llm.tokenize(b"Hello world", add_bos=False)
    assert b"".join(llm.token_to_piece(t) for t in ids) == llm.detokenize(ids)
    with pytest.raises(llama.InvalidArgumentError, match="32000"):
        llm.token_to_piece(32000)
    h = llm.hparams()
    assert h["arch"] == "llama" and h["n_vocab"] == 32000 and h["n_layer"] == 4 and h["n_embd"] == 256
    assert h["n_embd_head_k"] * h["n_head_kv"] == h["n_embd_k_gqa"]
    assert llm.n_threads == THREADS
    llm.n_threads = 1
    assert llm.n_threads == 1
    with pytest.raises(llama.InvalidArgumentError):
        llm.n_threads = 0
    assert llm.n_threads == 1


def test_chat_template_tokens():
    msgs = [{"role": "user", "content": "Hi"}]
    gemma = llama.Llama(model_path("gemma3-270m-q4_k_m.gguf"), vocab_only=True)
    with pytest.raises(llama.InvalidArgumentError, match="no chat template"):
        gemma.apply_chat_template(msgs)  # Gemma-3-270M (base) ships none: never a silent ChatML
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), vocab_only=True)
    text = llm.apply_chat_template(msgs)
    ids = llm.apply_chat_template(msgs, tokenize=True)
    bos = [llm.token_bos()] if llm.add_bos_token() else []
    assert ids == bos + llm.tokenize(text, add_bos=False, special=True)


def test_seed_api_over_llama(tiny):
    model = llama.LLaMA.load(tiny, 32, llama.GGMLType.F16)
    tok = model.get_tokenizer()
    assert tok.bos() == 1 and tok.eos() == 2 and tok.n_vocab() == model.n_vocab() == 32000
    a = model.apply(PROMPT, 0, 0, THREADS)
    b = model.apply(PROMPT[4:], 4, 0, 1)  # rewinds, and a thread count changes nothing
    assert np.array_equal(a, b)
    a[:] = 0  # a fresh array: not a view of the context's rows
    assert np.array_equal(model.apply(PROMPT[-1:], len(PROMPT) - 1), b)
    with pytest.raises(llama.LlamaError, match="n_past = 20"):
        model.apply([1], 20)
    assert np.array_equal(model.apply(PROMPT[-1:], len(PROMPT) - 1), b)  # the failed call changed nothing
    assert tok.decode(np.array(PROMPT[1:3])) == tok.decode(PROMPT[1:3]) == " Once upon"
    assert tok.decode(np.int64(PROMPT[1])).strip() == "Once"
    for bad in (2, "f16", None):
        with pytest.raises(llama.InvalidArgumentError, match="memory_type"):
            llama.LLaMA.load(tiny, 32, bad)
    assert llama.LLaMA.load(tiny, 32, 0).apply([1], 0).shape == (32000,)  # 0 is GGMLType.F32
    with pytest.raises(llama.InvalidArgumentError, match="n_ctx"):
        llama.LLaMA.load(tiny, 0)
    with pytest.raises(llama.InvalidArgumentError, match="seed"):
        llama.sample_next_token(PROMPT, b, seed=-1)
    assert llama.sample_next_token(PROMPT, b, seed=2**64 - 1) >= 0  # any 64-bit seed
    before = b.copy()
    llama.sample_next_token(PROMPT, b, repeat_penalty=2.0, seed=1)
    assert np.array_equal(b, before)  # the logits are read, not modified


SIGNATURES = json.loads((DATA / "llama_cpp_python_signatures.json").read_text())
# keywords of Llama.__init__ that change what runs (checked elsewhere) and documented no-ops
INIT_WORKS = {
    "model_path",
    "vocab_only",
    "seed",
    "n_ctx",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "logits_all",
    "last_n_tokens_size",
    "type_k",
    "type_v",
    "verbose",
    "n_threads_batch",
    "use_mmap",
    # tests/test_flash_attn.py
    "flash_attn",
    # tests/test_embed.py
    "embedding",
    "pooling_type",
}
INIT_NOOPS = {
    "n_gpu_layers",
    "split_mode",
    "main_gpu",
    "tensor_split",
    "use_mlock",
    "offload_kqv",
    "op_offload",
    "no_perf",
    "swa_full",
}


@pytest.mark.parametrize("method", sorted(SIGNATURES["methods"]))
def test_every_llama_cpp_python_keyword_exists(method: str) -> None:
    """Each keyword of llama-cpp-python's Llama methods (recorded by
    tools/record_llama_cpp_signatures.py) is a parameter of ours, and none of ours swallows unknown
    keywords with **kwargs."""
    ours = inspect.signature(getattr(llama.Llama, method)).parameters
    theirs = [p["name"] for p in SIGNATURES["methods"][method] if p["kind"] not in ("VAR_KEYWORD", "VAR_POSITIONAL")]
    assert [n for n in theirs if n not in ours] == []
    assert not [p for p in ours.values() if p.kind == p.VAR_KEYWORD], f"{method} swallows unknown keywords"


def _other_value(p: dict) -> object:
    d = p.get("default")
    if isinstance(d, bool):
        return not d
    if isinstance(d, int):
        return d + 2
    if isinstance(d, float):
        return d + 0.5
    return "other"


@pytest.mark.parametrize("p", [p for p in SIGNATURES["methods"]["__init__"] if "default" in p], ids=lambda p: p["name"])
def test_no_init_keyword_is_accepted_and_ignored(tiny, p: dict) -> None:
    """A non-default value of each keyword either works, is a no-op the docstring names, or raises
    InvalidArgumentError naming the keyword."""
    name = p["name"]
    if name in INIT_WORKS:
        return  # covered by the tests of what they do
    if name in INIT_NOOPS:
        assert name in (llama.Llama.__init__.__doc__ or "")
        llama.Llama(tiny, vocab_only=True, **{name: _other_value(p)})
        return
    with pytest.raises(llama.InvalidArgumentError) as e:
        llama.Llama(tiny, vocab_only=True, **{name: _other_value(p)})
    stem = name.split("_")[0] if name.startswith(("yarn", "lora")) else name
    assert stem in str(e.value)


def test_use_mmap_false_reads_the_file_and_answers_the_same() -> None:
    """use_mmap=False loads the weights into memory (the file's pages are not mapped) and gives the
    same logits as the mapped default."""
    path = model_path("synth-tiny-q4_0.gguf")
    mapped = llama.Llama(path, n_ctx=64, n_threads=THREADS)
    read = llama.Llama(path, n_ctx=64, n_threads=THREADS, use_mmap=False)
    maps = Path(f"/proc/{os.getpid()}/maps")
    if maps.exists():
        # the mapped model shows the file in the process's mappings; drop it, and none is left
        assert os.path.realpath(path) in maps.read_text()
        del mapped
        gc.collect()
        assert os.path.realpath(path) not in maps.read_text()
        mapped = llama.Llama(path, n_ctx=64, n_threads=THREADS)
    for m in (mapped, read):
        m.eval(PROMPT)
    assert np.array_equal(read.scores[len(PROMPT) - 1], mapped.scores[len(PROMPT) - 1])


def test_a_split_model_loads_from_its_first_part(tmp_path) -> None:
    """A model split by gguf-py's writer into llama.cpp's gguf-split parts loads from its first part
    (mapped or read) with the logits of the whole file, and llama.cpp gives the same logits on
    the parts; a later part, or a missing one, is an error naming the file to open or the part."""
    path = model_path("synth-tiny-q4_0.gguf")
    gguf_with_tensors(path, tmp_path / "tiny.gguf", {}, split_max_tensors=16)
    parts = sorted(tmp_path.glob("tiny-*-of-*.gguf"))
    assert [p.name for p in parts] == [f"tiny-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = llama.Llama(path, n_ctx=64, n_threads=THREADS)
    whole.eval(PROMPT)
    want = whole.scores[len(PROMPT) - 1]
    for use_mmap in (True, False):
        split = llama.Llama(str(parts[0]), n_ctx=64, n_threads=THREADS, use_mmap=use_mmap)
        split.eval(PROMPT)
        assert np.array_equal(split.scores[len(PROMPT) - 1], want)
    with pytest.raises(llama.ModelFormatError, match="open the first part.*tiny-00001-of-00003.gguf"):
        llama.Llama(str(parts[1]))
    parts[2].rename(tmp_path / "elsewhere.gguf")
    with pytest.raises(llama.ModelFormatError, match="part 3 .* is missing: .*tiny-00003-of-00003.gguf"):
        llama.Llama(str(parts[0]))
    (tmp_path / "elsewhere.gguf").rename(parts[2])
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: no cross-check")
    ref = llama_cpp.Llama(str(parts[0]), n_ctx=64, n_threads=THREADS, logits_all=True, verbose=False)
    ref.eval(PROMPT)
    assert np.array_equal(np.asarray(ref.scores[len(PROMPT) - 1], dtype=np.float32), want)


def test_unknown_keywords_are_type_errors(tiny) -> None:
    with pytest.raises(TypeError):
        llama.Llama(tiny, n_ctxx=16)
    llm = llama.Llama(tiny, n_ctx=64, verbose=False)
    with pytest.raises(TypeError):
        llm.create_completion("x", max_tokenz=3)


def test_scores_keep_n_batch_rows_so_a_long_context_fits():
    """As llama-cpp-python: `scores` holds n_batch rows unless logits_all (gemma3-270m's 262k
    vocabulary at 32k positions would be 32 GiB); position p's logits are in row p mod n_batch."""
    gemma = model_path("gemma3-270m-q4_k_m.gguf")
    llm = llama.Llama(gemma, n_ctx=32768, n_threads=THREADS)
    assert llm.scores.shape == (512, llm.n_vocab())
    out = llm.create_completion("Once upon a time", max_tokens=4, temperature=0)
    assert out["usage"]["completion_tokens"] == 4
    # the same text as a short context gives
    short = llama.Llama(gemma, n_ctx=256, n_threads=THREADS).create_completion(
        "Once upon a time", max_tokens=4, temperature=0
    )
    assert out["choices"][0]["text"] == short["choices"][0]["text"]
    # rows wrap: with n_batch 4 the logits of position 9 are in row 1, equal to a fresh eval's
    tiny = model_path("synth-tiny-q4_0.gguf")
    wrap = llama.Llama(tiny, n_ctx=64, n_batch=4, n_threads=THREADS)
    for t in PROMPT + [450]:
        wrap.eval([t])
    full = llama.Llama(tiny, n_ctx=64, n_threads=THREADS, logits_all=True)
    for t in PROMPT + [450]:
        full.eval([t])
    assert wrap.scores.shape[0] == 4
    assert np.array_equal(wrap.scores[len(PROMPT) % 4], full.scores[len(PROMPT)])
    with pytest.raises(llama.LlamaError, match="logits_all=True keeps a row per position"):
        llama.Llama(gemma, n_ctx=1 << 20, n_threads=THREADS, logits_all=True)


def test_load_state_replays_a_sampled_completion():
    """save_state/load_state restore what shapes the next token: the KV cache, the tokens, the
    seed the next completion derives its sampler's from, and the logits a prompt's evaluation left
    (re-evaluating its last token alone would give other bits: another activation quantizer)."""
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=256, seed=42, n_threads=THREADS)
    first = llm.create_completion("def fib(n):", max_tokens=4, temperature=0.8)["choices"][0]["text"]
    state = llm.save_state()
    assert state.n_tokens == llm.n_tokens and list(state.input_ids) == llm.input_ids[: llm.n_tokens].tolist()
    runs = []
    for _ in range(2):
        llm.load_state(state)
        again = llm.create_completion("def fib(n):", max_tokens=12, temperature=0.8)["choices"][0]["text"]
        more = llm.create_completion("def fib(n):" + first, max_tokens=12, temperature=0.8)["choices"][0]["text"]
        runs.append((again, more))
    assert runs[0] == runs[1]
    # the state carries the seed: restored into another instance, the same completions follow
    other = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=256, seed=7, n_threads=THREADS)
    other.load_state(state)
    assert other.create_completion("def fib(n):", max_tokens=12, temperature=0.8)["choices"][0]["text"] == runs[0][0]


def test_one_llama_from_several_threads_waits_its_turn(tiny):
    """Calls from several threads on one Llama run one at a time (none raises), each answer the
    one it gets alone; a stream holds the turn while it is read."""
    import threading

    llm = llama.Llama(tiny, n_ctx=128, n_threads=1)
    prompts = ["Once upon a time", "The quick brown fox", "In a hole in the ground", "It was a dark"]
    alone = {p: llm.create_completion(p, max_tokens=8, temperature=0)["choices"][0]["text"] for p in prompts}
    got: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(p: str) -> None:
        try:
            if p == prompts[0]:
                got[p] = "".join(
                    c["choices"][0]["text"] for c in llm.create_completion(p, max_tokens=8, temperature=0, stream=True)
                )
            else:
                got[p] = llm.create_completion(p, max_tokens=8, temperature=0)["choices"][0]["text"]
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in prompts * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert got == alone


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_set_cache_starts_from_the_longest_cached_prefix(kind, tmp_path):
    """set_cache(LlamaRAMCache / LlamaDiskCache), as llama-cpp-python's: a completion whose prompt
    extends a cached state evaluates only the rest, and answers as without a cache (greedy and
    sampled); the least recently used states go past capacity_bytes; a disk cache outlives its
    instance."""
    qwen = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    base = "def fibonacci(n):\n    "
    longer = base + "# compute the n-th Fibonacci number\n"
    plain = llama.Llama(qwen, n_ctx=256, seed=3, n_threads=THREADS)
    want = [plain(p, max_tokens=8, temperature=t)["choices"][0]["text"] for p, t in [(base, 0), (longer, 0.7)]]

    def make() -> llama.BaseLlamaCache:
        if kind == "ram":
            return llama.LlamaRAMCache(capacity_bytes=1 << 30)
        return llama.LlamaDiskCache(tmp_path / "cache", capacity_bytes=1 << 30)

    llm = llama.Llama(qwen, n_ctx=256, seed=3, n_threads=THREADS)
    llm.set_cache(make())
    evaluated: list[int] = []
    real_eval = llm.eval
    llm.eval = lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1]  # type: ignore[method-assign]
    got = [llm(base, max_tokens=8, temperature=0)["choices"][0]["text"]]
    assert llm.cache is not None and llm.cache.cache_size > 0 and llm.tokenize(base.encode()) in llm.cache
    llm.reset()  # the context forgets; the cache remembers
    if kind == "disk":
        llm.set_cache(make())  # a new instance on the same folder
    evaluated.clear()
    got.append(llm(longer, max_tokens=8, temperature=0.7)["choices"][0]["text"])
    assert got == want
    n_base, n_longer = len(llm.tokenize(base.encode())), len(llm.tokenize(longer.encode()))
    assert evaluated[0] <= n_longer - n_base + 1, evaluated  # only what follows the cached prefix
    # a capacity that holds one state keeps the most recent
    small = llama.LlamaRAMCache(capacity_bytes=llm.cache.cache_size // 2 + 1) if kind == "ram" else None
    if small is not None:
        llm.set_cache(small)
        llm(base, max_tokens=2, temperature=0)
        llm(longer, max_tokens=2, temperature=0)
        assert len(small.cache_state) == 1
    with pytest.raises(llama.InvalidArgumentError, match="capacity_bytes"):
        llama.LlamaRAMCache(capacity_bytes=0)
    with pytest.raises(llama.InvalidArgumentError, match="set_cache takes"):
        llm.set_cache({})  # type: ignore[arg-type]
