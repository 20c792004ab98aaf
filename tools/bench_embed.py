#!/usr/bin/env python3
"""Embedding throughput: 256 sentences through `Llama.embed` in one call, the same as 256 single
calls, and llama-cpp-python's `embed` of the same list on the same GGUF (same thread count), in one
run. Prints one JSON line per setup (texts/s) and the ratios.

    python tools/bench_embed.py MODEL.gguf [-t 2] [-r 3]

The sentences are tests/data/embed/sentences.json without the texts longer than 128 tokens,
repeated to 256.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best(f, reps: int) -> float:
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return min(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3)
    a = ap.parse_args()
    from llama import Llama

    texts = json.loads((ROOT / "tests" / "data" / "embed" / "sentences.json").read_text(encoding="utf-8"))
    ours = Llama(a.model, embedding=True, n_threads=a.threads, n_ctx=512)
    texts = [t for t in texts if len(ours.tokenize(t.encode())) <= 128]
    texts = (texts * 3)[:256]
    n_tok = sum(len(ours.tokenize(t.encode())) for t in texts)
    rows = {}
    rows["ours_list"] = best(lambda: ours.embed(texts), a.reps)
    rows["ours_single"] = best(lambda: [ours.embed(t) for t in texts], a.reps)
    try:
        import llama_cpp

        ref = llama_cpp.Llama(
            a.model,
            embedding=True,
            n_threads=a.threads,
            n_threads_batch=a.threads,
            n_ctx=512,
            n_batch=512,
            n_ubatch=512,
            verbose=False,
        )
        rows["llama_cpp_python_list"] = best(lambda: ref.embed(texts), a.reps)
        rows["llama_cpp_python_single"] = best(lambda: [ref.embed(t) for t in texts], a.reps)
    except ImportError:
        pass
    for k, v in rows.items():
        print(
            json.dumps(
                {
                    "setup": k,
                    "texts": len(texts),
                    "tokens": n_tok,
                    "seconds": round(v, 4),
                    "texts_per_s": round(len(texts) / v, 1),
                }
            )
        )
    print(
        json.dumps(
            {
                "list_vs_single": round(rows["ours_single"] / rows["ours_list"], 2),
                **(
                    {"ours_vs_llama_cpp_python": round(rows["llama_cpp_python_list"] / rows["ours_list"], 2)}
                    if "llama_cpp_python_list" in rows
                    else {}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
