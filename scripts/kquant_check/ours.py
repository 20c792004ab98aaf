"""Our logits (llama.Llama, logits_all) on the same tokens as ref.py's llama.cpp run: the prompt
in one batch, then the extra tokens one at a time; top-1 agreement and max |Δ| per path."""

import sys

import numpy as np

# a copy of python/llama with this branch's _llama.abi3.so, on PYTHONPATH (see README)
import llama

print("llama from", llama.__file__)
path, ref = sys.argv[1], np.load(sys.argv[2])
m = llama.Llama(path, logits_all=True, n_ctx=256, n_threads=1)
i, rows = 0, {"prompt": [], "gen": []}
while f"tokens{i}" in ref:
    toks, n_p, want = list(ref[f"tokens{i}"]), int(ref[f"n_prompt{i}"]), ref[f"logits{i}"]
    m.reset()
    m.eval(toks[:n_p])
    for t in toks[n_p:]:
        m.eval([t])
    got = np.array(m.scores[: len(toks)], dtype=np.float32)
    for r in range(len(toks)):
        rows["prompt" if r < n_p else "gen"].append(
            (got[r].argmax() == want[r].argmax(), np.abs(got[r] - want[r]).max(), np.abs(want[r]).max())
        )
    i += 1
for k, v in rows.items():
    agree = sum(a for a, _, _ in v)
    dmax, lmax = max(d for _, d, _ in v), max(s for _, _, s in v)
    name = path.split("/")[-1]
    print(f"{name:28s} {k:6s}: top-1 {agree}/{len(v)}, max|Δ| {dmax:.3g} (max|logit| {lmax:.3g})")
