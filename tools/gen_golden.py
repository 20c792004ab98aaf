#!/usr/bin/env python3
"""Records llama.cpp's answers on the test models: tests/data/golden/<isa>/<model>.json.

llama.cpp sums in an order that depends on the instruction set its build uses (AVX-512 VNNI and AVX2
builds give logits that differ in the last bits, and greedy texts that part after a near tie), so
the goldens are kept per ISA class, and the tests compare our kernel table for that class with them.
Run with llama-cpp-python built for this machine (`pip install llama-cpp-python==0.3.36`, which
compiles llama.cpp with GGML_NATIVE; under a hypervisor that reports AMX in CPUID but does not
enable it, gcc's -march=native turns AMX on and llama.cpp crashes in its first decode: build with
CMAKE_ARGS="-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='…same…'"):

    python tools/gen_golden.py ~/.cache/llama-test-models [--isa avx2] [MODEL ...]

Also run-cli.json: the text `llama(prompt, temperature=0)` gives for the CLI test's prompts.
Per model: for each case of the prompt set (the prompts and token ids of the existing golden files,
so every ISA is checked on the same input) llama.cpp's top-10 logits at every prompt position (the
prompt in one batch, logits_all) and its greedy continuation of 32 tokens (argmax of the logits,
one token at a time through the KV cache); and perplexity on tests/data/gpl-3.txt as
llama-perplexity computes it (ctx 256, 4 chunks, BOS as each chunk's first token when the model
adds one, scored over the second half of each chunk).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "golden"
MODELS = [
    "synth-tiny-q4_0",
    "synth-1b-q4_0",
    "synth-1b-q8_0",
    "qwen2.5-coder-0.5b-q4_k_m",
    "gemma3-270m-q4_k_m",
    "smollm2-135m-instruct-q4_1",
]
PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Les élèves ont mangé 3 pommes et 12 poires — ¿verdad? 東京は日本の首都です。",
]
# What `python -m llama run ... --temp 0` must print (tests/test_inference.py), as llama-cpp-python prints it.
CLI_CASES = [{"model": "qwen2.5-coder-0.5b-q4_k_m.gguf", "prompt": "def fibonacci(n):", "n": 48}]
N_GREEDY = 32
PPL_CTX, PPL_CHUNKS = 256, 4


def host_isa() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    if "avx512f" in flags and "avx512_vnni" in flags and "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags and "f16c" in flags:
        return "avx2"
    sys.exit("gen_golden: this host has neither AVX-512 VNNI nor AVX2+FMA+F16C")


def top10(row: np.ndarray) -> list:
    idx = np.argsort(-row, kind="stable")[:10]
    return [[int(i), float(row[i])] for i in idx]


def cases_for(name: str, llm) -> list:
    """The prompts and ids of an existing golden of this model (any ISA), else tokenized here."""
    for p in sorted(GOLDEN.glob(f"*/{name}.json")):
        return [{"prompt": c["prompt"], "tokens": c["tokens"]} for c in json.loads(p.read_text())["cases"]]
    return [{"prompt": p, "tokens": llm.tokenize(p.encode(), add_bos=True, special=False)} for p in PROMPTS]


def record(path: Path, llama_cpp) -> dict:
    llm = llama_cpp.Llama(
        str(path), n_ctx=128, n_batch=512, n_ubatch=512, logits_all=True, n_threads=2, flash_attn=False, verbose=False
    )
    name = path.stem
    out = {"model": path.name, "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}", "cases": []}
    out["n_vocab"] = llm.n_vocab()
    for case in cases_for(name, llm):
        toks = case["tokens"]
        llm.reset()
        llm.eval(toks)
        scores = np.array(llm.scores[: len(toks)], dtype=np.float32)
        greedy = []
        for _ in range(N_GREEDY):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(t)
            if len(greedy) == N_GREEDY:
                break
            llm.eval([t])
        text = llm.detokenize(greedy).decode("utf-8", errors="replace")
        out["cases"].append({**case, "top10": [top10(r) for r in scores], "greedy": greedy, "greedy_text": text})
    del llm
    out["perplexity"] = perplexity(path, llama_cpp)
    return out


def perplexity(path: Path, llama_cpp) -> dict:
    llm = llama_cpp.Llama(
        str(path),
        n_ctx=PPL_CTX,
        n_batch=PPL_CTX,
        n_ubatch=PPL_CTX,
        logits_all=True,
        n_threads=2,
        flash_attn=False,
        verbose=False,
    )
    text = (REPO / "tests" / "data" / "gpl-3.txt").read_bytes()
    tokens = llm.tokenize(text, add_bos=False, special=False)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else True
    nll, n = 0.0, 0
    first = PPL_CTX // 2
    for c in range(PPL_CHUNKS):
        chunk = tokens[c * PPL_CTX : (c + 1) * PPL_CTX]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:PPL_CTX], dtype=np.float64)
        for j in range(first, PPL_CTX - 1):
            row = logits[j]
            m = row.max()
            lse = math.log(np.exp(row - m).sum()) + m
            nll += lse - row[chunk[j + 1]]
            n += 1
    return {"ctx": PPL_CTX, "chunks": PPL_CHUNKS, "scored": n, "ppl": math.exp(nll / n)}


def record_cli(models: Path, llama_cpp) -> list:
    out = []
    for c in CLI_CASES:
        if not (models / c["model"]).exists():
            continue
        llm = llama_cpp.Llama(str(models / c["model"]), n_ctx=512, n_threads=2, verbose=False)
        r = llm(c["prompt"], max_tokens=c["n"], temperature=0.0)
        out.append({**c, "text": r["choices"][0]["text"], "reference": f"llama-cpp-python {llama_cpp.__version__}"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models_dir", type=Path)
    ap.add_argument("--isa", help="ISA class of the goldens (default: this host's)")
    ap.add_argument("model", nargs="*", help=f"model names (default: {', '.join(MODELS)})")
    a = ap.parse_intermixed_args()
    import llama_cpp

    isa = a.isa or host_isa()
    dest = GOLDEN / isa
    dest.mkdir(parents=True, exist_ok=True)
    for name in a.model or MODELS:
        path = a.models_dir / f"{name}.gguf"
        if not path.exists():
            print(f"skip {name}: {path} is absent", file=sys.stderr)
            continue
        g = record(path, llama_cpp)
        (dest / f"{name}.json").write_text(json.dumps(g, ensure_ascii=False) + "\n")
        print(f"{isa}/{name}: ppl {g['perplexity']['ppl']:.6f}", file=sys.stderr)
    if not a.model:
        (dest / "run-cli.json").write_text(json.dumps(record_cli(a.models_dir, llama_cpp), indent=1) + "\n")


if __name__ == "__main__":
    main()
