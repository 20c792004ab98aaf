"""The Python API and CLI give llama.cpp's answers (golden files written by llama-cpp-python)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import llama
from conftest import DATA, golden, golden_inputs, model_path

THREADS = 2


def _compare_case(llm, case, greedy=True):
    """(top-1 agreements, positions, sum |Δ| over llama.cpp's top-10, count, greedy identical?)"""
    llm.reset()
    llm.eval(case["tokens"])
    scores = llm.scores[: len(case["tokens"])]
    agree = 0
    dsum = 0.0
    dn = 0
    for pos, top in enumerate(case["top10"]):
        row = scores[pos]
        agree += int(np.argmax(row)) == top[0][0]
        for tid, ref in top:
            dsum += abs(float(row[tid]) - ref)
            dn += 1
    out = []
    for _ in range(len(case["greedy"]) if greedy else 0):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(t)
        if llm.n_tokens >= llm.n_ctx():
            break
        llm.eval([t])
    return agree, len(case["top10"]), dsum, dn, greedy and out == case["greedy"]


# Every golden model; the forward pass reproduces llama.cpp's summation orders, so whole-batch
# logits equal llama.cpp's bit for bit (docs/notes/inference.md) and the bounds are the issue's.
MODELS = [
    "synth-tiny-q4_0",
    "synth-1b-q4_0",
    "synth-1b-q8_0",
    "qwen2.5-coder-0.5b-q4_k_m",
    "gemma3-270m-q4_k_m",
    "smollm2-135m-instruct-q4_1",
]
LOGIT_CASES = [(m, 0.05 if m.startswith("synth") else 0.1) for m in MODELS]
# Greedy continuations token by token through the Python API; the two 1B synthetic models take the
# longest and the Rust golden test already runs theirs.
GREEDY_CASES = [m for m in MODELS if not m.startswith("synth-1b")]


@pytest.mark.parametrize("name,tol", LOGIT_CASES)
def test_logits_match_llama_cpp(name, tol):
    g = golden(name)
    llm = llama.Llama(model_path(g["model"]), n_ctx=512, n_threads=THREADS, logits_all=True)
    agree = n = dn = 0
    dsum = 0.0
    for case in g["cases"]:
        a, p, s, d, _ = _compare_case(llm, case, greedy=False)
        agree, n, dsum, dn = agree + a, n + p, dsum + s, dn + d
    assert agree / n >= 0.98, f"top-1 agreement {agree}/{n}"
    assert dsum / dn <= tol, f"mean |Δ| {dsum / dn:.4f}"


@pytest.mark.parametrize("name", GREEDY_CASES)
def test_greedy_matches_llama_cpp(name):
    g = golden(name)
    llm = llama.Llama(model_path(g["model"]), n_ctx=512, n_threads=THREADS, logits_all=True)
    bad = sum(not _compare_case(llm, case)[4] for case in g["cases"])
    assert bad <= 1, f"{bad} greedy continuations differ"


def test_perplexity_cli_matches_llama_cpp():
    g = golden("qwen2.5-coder-0.5b-q4_k_m")
    text = DATA / "gpl-3.txt"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "llama",
            "perplexity",
            "-m",
            model_path(g["model"]),
            "-f",
            str(text),
            "-c",
            "256",
            "--chunks",
            "4",
            "-t",
            str(THREADS),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("ppl = ")
    ppl = float(last.split("=")[1])
    ref = g["perplexity"]["ppl"]
    assert abs(ppl - ref) / ref <= 0.01, (ppl, ref)


def test_perplexity_cli_prints_llama_cpp_digits():
    # SmolLM2's logits equal llama.cpp's bit for bit (the golden test), so does the printed figure.
    g = golden("smollm2-135m-instruct-q4_1")
    cmd = ["perplexity", "-m", model_path(g["model"]), "-f", str(DATA / "gpl-3.txt"), "-c", "256", "--chunks", "4"]
    r = subprocess.run(
        [sys.executable, "-m", "llama", *cmd, "-t", str(THREADS), "--quiet"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"ppl = {g['perplexity']['ppl']:.6f}"


def test_run_cli_prints_what_llama_cpp_prints():
    # Recorded from llama-cpp-python by tools/gen_golden.py, per ISA class as the logits are.
    expected = golden("run-cli")
    for c in expected:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "llama",
                "run",
                "-m",
                model_path(c["model"]),
                "-p",
                c["prompt"],
                "-n",
                str(c["n"]),
                "--temp",
                "0",
                "-t",
                str(THREADS),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == c["prompt"] + c["text"] + "\n"


def test_seed_api_walkthrough():
    path = model_path("synth-tiny-q4_0.gguf")
    model = llama.LLaMA.load(path, 256, llama.GGMLType.F32)
    tok = model.get_tokenizer()
    tokens = tok.encode("Once upon a time")
    g = golden_inputs("synth-tiny-q4_0")
    assert tokens == tok.encode(g["cases"][0]["prompt"])[: len(tokens)]
    mem = model.estimate_mem_per_token(THREADS)
    assert mem > 0
    n_past = 0
    text = ""
    for _ in range(8):
        logits = model.apply(tokens[n_past:], n_past, mem, THREADS)
        assert logits.dtype == np.float32 and logits.shape == (32000,)
        n_past = len(tokens)
        nxt = llama.sample_next_token(tokens, logits, seed=1)
        tokens.append(nxt)
        text += tok.decode(nxt)
    assert len(tokens) == n_past + 1
    assert isinstance(text, str) and text
    # Same logits and seed → same token; greedy equals argmax.
    assert llama.sample_next_token(tokens, logits, seed=5) == llama.sample_next_token(tokens, logits, seed=5)
    assert llama.sample_next_token(tokens, logits, temp=0.0, repeat_penalty=1.0) == int(np.argmax(logits))


def test_completion_api_shapes_and_seeds():
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=256, n_threads=THREADS)
    a = llm("The capital of France is", max_tokens=8, temperature=0.8, seed=42)
    b = llm("The capital of France is", max_tokens=8, temperature=0.8, seed=42)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    assert a["object"] == "text_completion" and a["usage"]["prompt_tokens"] == 5
    assert a["usage"]["completion_tokens"] <= 8
    chunks = list(llm("The capital of France is", max_tokens=6, temperature=0, stream=True))
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    full = llm("The capital of France is", max_tokens=6, temperature=0)
    assert streamed == full["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    stopped = llm("The capital of France is", max_tokens=16, temperature=0, stop=["."])
    assert "." not in stopped["choices"][0]["text"] and stopped["choices"][0]["finish_reason"] == "stop"


def test_chat_two_turns_keep_the_cache():
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=1024, n_threads=THREADS)
    msgs = [{"role": "user", "content": "What is 2 + 2? Answer with one number."}]
    r1 = llm.create_chat_completion(msgs, temperature=0, max_tokens=16)
    ans = r1["choices"][0]["message"]["content"]
    assert "4" in ans
    msgs += [{"role": "assistant", "content": ans}, {"role": "user", "content": "And 3 + 3?"}]
    n_before = llm.n_tokens
    r2 = llm.create_chat_completion(msgs, temperature=0, max_tokens=16)
    assert "6" in r2["choices"][0]["message"]["content"]
    assert n_before > 0


def test_chat_template_matches_jinja2():
    jinja2 = pytest.importorskip("jinja2")
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi  there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    checked = 0
    for name in ["qwen2.5-coder-0.5b-q4_k_m.gguf", "gemma3-270m-q4_k_m.gguf"]:
        llm = llama.Llama(model_path(name), vocab_only=True)
        if "tokenizer.chat_template" not in llm.metadata:
            continue  # Gemma-3-270M (base) ships none; ChatML then applies, as in llama.cpp
        checked += 1
        tmpl = llm.metadata["tokenizer.chat_template"]
        env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=False, lstrip_blocks=False)

        def raise_exception(m):
            raise ValueError(m)

        env.globals["raise_exception"] = raise_exception
        ref = env.from_string(tmpl).render(
            messages=msgs,
            add_generation_prompt=True,
            bos_token=llm.detokenize([llm.token_bos()], special=True).decode() if llm.token_bos() >= 0 else "",
            eos_token=llm.detokenize([llm.token_eos()], special=True).decode(),
        )
        assert llm.apply_chat_template(msgs) == ref, name
    assert checked >= 1


def test_bad_use_raises_typed_errors():
    path = model_path("synth-tiny-q4_0.gguf")
    llm = llama.Llama(path, n_ctx=32, n_threads=THREADS)
    with pytest.raises(llama.ContextOverflowError):
        llm.eval(list(range(1, 40)))
    with pytest.raises(llama.InvalidArgumentError):
        llm.eval([])
    with pytest.raises(llama.InvalidArgumentError):
        llm.eval([32000])
    with pytest.raises(llama.InvalidArgumentError):
        llm.eval([-1])
    with pytest.raises(llama.ContextOverflowError):
        llm.create_completion(list(range(1, 40)), max_tokens=4)
    model = llama.LLaMA.load(path, 16, llama.GGMLType.F16)
    with pytest.raises(llama.LlamaError):
        model.apply([1, 2, 3], 10, 0, 1)  # n_past past the cache
    with pytest.raises(llama.InvalidArgumentError):
        model.apply([], 0, 0, 1)
    with pytest.raises(llama.ContextOverflowError):
        model.apply(list(range(1, 20)), 0, 0, 1)


def test_resident_memory_stays_near_file_size():
    path = model_path("synth-1b-q4_0.gguf")
    code = (
        "import llama\n"
        f"llm = llama.Llama({path!r}, n_ctx=512, n_threads=2)\n"
        "llm.eval([1, 2, 3])\n"
        # VmRSS, not ru_maxrss: the latter survives fork+exec and would report pytest's own peak.
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rss = int(r.stdout.strip()) * 1024
    size = os.path.getsize(path)
    kv = 2 * 22 * 512 * 256 * 2  # K and V, 22 layers, 512 positions, 4 kv heads × 64, f16
    base = 150 * 2**20  # the Python interpreter and numpy
    assert rss <= (size + kv) * 1.10 + base, (rss, size, kv)


def test_bench_cli_runs_every_depth_and_names_rows_as_llama_bench():
    """`bench -d 0,D`: one pp and one tg row per depth, named as llama-bench's (pp8, tg4, pp8@d40,
    tg4@d40), in the table and the JSON line; a bad depth list is a one-line error."""
    cmd = [sys.executable, "-m", "llama", "bench", "-m", model_path("synth-tiny-q4_0.gguf"), "-t", str(THREADS)]
    r = subprocess.run(
        [*cmd, "-p", "8", "-n", "4", "-r", "1", "-d", "0,40", "--json"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {"pp8", "tg4", "pp8@d40", "tg4@d40"} and all(v > 0 for v in out.values())
    table = [line.split()[0] for line in r.stdout.splitlines()[2:-1]]
    assert table == ["pp8", "tg4", "pp8@d40", "tg4@d40"]
    bad = subprocess.run([*cmd, "-d", "0,x"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "-d/--depth" in bad.stderr and "Traceback" not in bad.stderr
    unused = subprocess.run([*cmd, "--llama-cpp-fa", "on"], capture_output=True, text=True, timeout=600)
    assert unused.returncode != 0 and "--compare-llama-cpp" in unused.stderr and "Traceback" not in unused.stderr
