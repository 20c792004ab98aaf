"""llama.cpp (llama-cpp-python) logits for a few prompts: the whole prompt in one batch (prompt
path), then 4 more tokens one at a time (generation path). Saves tokens + logits per file."""

import sys

import llama_cpp
import numpy as np

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "1, 2, 3, 5, 8, 13,",
]
EXTRA = [13, 450, 263, 29871]
path, out = sys.argv[1], sys.argv[2]
llm = llama_cpp.Llama(path, logits_all=True, verbose=False, n_ctx=256, n_threads=1, n_threads_batch=1, seed=0)
res = {}
for i, p in enumerate(PROMPTS):
    toks = llm.tokenize(p.encode())
    extra = [t % llm.n_vocab() for t in EXTRA]
    llm.reset()
    llm.eval(toks)
    for t in extra:
        llm.eval([t])
    n = len(toks) + len(extra)
    res[f"tokens{i}"] = np.array(toks + extra, dtype=np.int32)
    res[f"n_prompt{i}"] = np.array(len(toks))
    res[f"logits{i}"] = np.array(llm.scores[:n], dtype=np.float32)
np.savez(out, **res)
print("ok", out)
