#!/usr/bin/env python3
"""Regenerates tests/data/llama_cpp_expected.json: what llama.cpp (through PyPI llama-cpp-python)
prints for the CLI acceptance prompts. Run with llama-cpp-python installed:

    python tools/gen_expectations.py ~/.cache/llama-test-models
"""

import json
import sys
from pathlib import Path

import llama_cpp

CASES = [
    {"model": "qwen2.5-coder-0.5b-q4_k_m.gguf", "prompt": "def fibonacci(n):", "n": 48},
]


def main():
    models = Path(sys.argv[1])
    out = []
    for c in CASES:
        llm = llama_cpp.Llama(str(models / c["model"]), n_ctx=512, n_threads=2, verbose=False)
        r = llm(c["prompt"], max_tokens=c["n"], temperature=0.0)
        out.append({**c, "text": r["choices"][0]["text"], "reference": f"llama-cpp-python {llama_cpp.__version__}"})
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "llama_cpp_expected.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
