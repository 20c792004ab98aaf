"""llama.cpp's own samplers (through llama-cpp-python 0.3.36's ctypes API) as the reference for
llama.py's sampler chain (crates/llama-core/src/sampler/).

Imported by tests/test_sampler.py to compare stage by stage, live. Run as a script it records the
end-to-end reference (llama_cpp.Llama(...).create_completion text, tokens and logprobs on
qwen2.5-coder-0.5b-q4_k_m) into tests/data/sampler_reference.json, which the tests use when
llama_cpp is not importable:

    python tools/sampler_reference.py [--models DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
from pathlib import Path

import numpy as np

# The same stage specs as llama.py's `SamplerChain.from_stages`: (name, {arg: value}).
Stage = tuple[str, dict[str, float]]

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])

E2E_CASES = [
    # (prompt, kwargs): the settings the completions are compared under.
    ("def fibonacci(n):", {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 1, "max_tokens": 32}),
    ("def fibonacci(n):", {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 2, "max_tokens": 32}),
    (
        "The capital of France is",
        {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": 7, "max_tokens": 32},
    ),
    (
        "The capital of France is",
        {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "min_p": 0.1, "seed": 123, "max_tokens": 32},
    ),
    (
        "# quicksort in python\n",
        {
            "temperature": 0.9,
            "top_k": 100,
            "top_p": 0.95,
            "typical_p": 0.9,
            "repeat_penalty": 1.1,
            "seed": 5,
            "max_tokens": 32,
        },
    ),
    (
        "# quicksort in python\n",
        {"temperature": 0.8, "frequency_penalty": 0.5, "presence_penalty": 0.3, "seed": 9, "max_tokens": 32},
    ),
    (
        "Once upon a time",
        {"temperature": 0.8, "mirostat_mode": 2, "mirostat_tau": 5.0, "mirostat_eta": 0.1, "seed": 3, "max_tokens": 32},
    ),
    (
        "Once upon a time",
        {"temperature": 0.8, "mirostat_mode": 1, "mirostat_tau": 4.0, "mirostat_eta": 0.2, "seed": 4, "max_tokens": 32},
    ),
    (
        "import numpy as np\n",
        {"temperature": 0.8, "logit_bias": {"198": -5.0, "220": 2.0}, "seed": 11, "max_tokens": 32},
    ),
    ("The capital of France is", {"temperature": 0.8, "seed": 42, "max_tokens": 16, "logprobs": 3}),
    ("The capital of France is", {"temperature": 0.0, "max_tokens": 16, "logprobs": 5}),
]


def _init(name: str, a: dict[str, float]):
    import llama_cpp as L

    seed = int(a.get("seed", 0xFFFFFFFF))
    keep = int(a.get("min_keep", 1))
    if name == "greedy":
        return L.llama_sampler_init_greedy()
    if name == "dist":
        return L.llama_sampler_init_dist(seed)
    if name == "top_k":
        return L.llama_sampler_init_top_k(int(a.get("k", 40)))
    if name == "top_p":
        return L.llama_sampler_init_top_p(float(a.get("p", 0.95)), keep)
    if name == "min_p":
        return L.llama_sampler_init_min_p(float(a.get("p", 0.05)), keep)
    if name == "typical":
        return L.llama_sampler_init_typical(float(a.get("p", 1.0)), keep)
    if name == "temp":
        return L.llama_sampler_init_temp(float(a.get("t", 0.8)))
    if name == "temp_ext":
        return L.llama_sampler_init_temp_ext(
            float(a.get("t", 0.8)), float(a.get("delta", 0.0)), float(a.get("exponent", 1.0))
        )
    if name == "xtc":
        return L.llama_sampler_init_xtc(float(a.get("p", 0.0)), float(a.get("t", 0.1)), keep, seed)
    if name == "penalties":
        return L.llama_sampler_init_penalties(
            int(a.get("n_vocab", 0)),
            int(a.get("last_n", 64)),
            float(a.get("repeat", 1.0)),
            float(a.get("freq", 0.0)),
            float(a.get("present", 0.0)),
        )
    if name == "mirostat":
        return L.llama_sampler_init_mirostat(
            int(a["n_vocab"]), seed, float(a.get("tau", 5.0)), float(a.get("eta", 0.1)), int(a.get("m", 100))
        )
    if name == "mirostat_v2":
        return L.llama_sampler_init_mirostat_v2(seed, float(a.get("tau", 5.0)), float(a.get("eta", 0.1)))
    raise ValueError(name)


class RefChain:
    """A llama.cpp sampler chain of the given stages."""

    def __init__(self, stages: list[Stage], chain=None):
        """`chain`: an existing llama_sampler pointer to drive instead (not freed here)."""
        import llama_cpp as L

        self.L = L
        self.owned = chain is None
        self.chain = chain if chain is not None else L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        for name, args in stages:
            L.llama_sampler_chain_add(self.chain, _init(name, args))

    def __del__(self):
        if self.owned:
            self.L.llama_sampler_free(self.chain)

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, int]:
        """The candidates after every stage (ids, logits, p in the chain's order) and `selected`."""
        L = self.L
        n = len(logits)
        buf = (L.llama_token_data * n)()
        view = np.frombuffer(buf, dtype=TOKEN_DATA)
        view["id"] = np.arange(n, dtype=np.int32)
        view["logit"] = logits
        view["p"] = 0.0
        cur = L.llama_token_data_array(data=buf, size=n, selected=-1, sorted=False)
        L.llama_sampler_apply(self.chain, ctypes.byref(cur))
        base = ctypes.addressof(cur.data.contents)
        out = np.frombuffer((ctypes.c_char * (cur.size * TOKEN_DATA.itemsize)).from_address(base), dtype=TOKEN_DATA)
        return out.copy(), int(cur.selected)

    def sample(self, logits: np.ndarray) -> int:
        cand, sel = self.apply(logits)
        tok = int(cand["id"][sel])
        self.L.llama_sampler_accept(self.chain, tok)
        return tok

    def accept(self, tok: int) -> None:
        self.L.llama_sampler_accept(self.chain, tok)


def record(models: Path, out: Path) -> None:
    import llama_cpp

    path = models / "qwen2.5-coder-0.5b-q4_k_m.gguf"
    llm = llama_cpp.Llama(str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=1)
    cases = []
    for prompt, kw in E2E_CASES:
        kw2 = dict(kw)
        if "logit_bias" in kw2:
            kw2["logit_bias"] = {int(k): v for k, v in kw2["logit_bias"].items()}
        llm.reset()
        r = llm.create_completion(prompt, **kw2)
        c = r["choices"][0]
        cases.append(
            {
                "prompt": prompt,
                "kwargs": kw,
                "text": c["text"],
                "finish_reason": c["finish_reason"],
                "logprobs": c["logprobs"],
            }
        )
        print(json.dumps(prompt), kw, "→", json.dumps(c["text"])[:80])
    out.write_text(
        json.dumps(
            {"model": path.name, "llama_cpp_python": llama_cpp.__version__, "cases": cases},
            indent=1,
            ensure_ascii=False,
            default=float,
        )
        + "\n"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("LLAMA_TEST_MODELS", Path.home() / ".cache" / "llama-test-models"))
    ap.add_argument("--models", type=Path, default=default)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "data" / "sampler_reference.json"
    )
    a = ap.parse_args()
    record(a.models, a.out)
