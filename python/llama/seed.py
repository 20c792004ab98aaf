"""The seed API, kept working as a thin layer over `Llama`: ``LLaMA.load(path, n_ctx, GGMLType.F32)``,
``estimate_mem_per_token``, ``apply(tokens, n_past, mem_per_token, n_threads)`` → logits,
``sample_next_token``, ``get_tokenizer()`` with ``encode`` / ``decode``."""

from __future__ import annotations

import operator
import os
import random
from collections.abc import Sequence
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from . import _llama
from .errors import InvalidArgumentError
from .high_level import Llama
from .sampling import build_chain


class GGMLType(IntEnum):
    """The KV cache ("memory") type."""

    F32 = 0
    F16 = 1


class Tokenizer:
    """Text ↔ ids for a loaded `LLaMA` (from `LLaMA.get_tokenizer`)."""

    def __init__(self, llm: Llama):
        self._llm = llm
        self._stream = _llama.StreamDecoder()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Text → ids; `bos` adds the BOS token (where the model has one)."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        b = self._llm.token_bos()
        return [b, *ids] if bos and b >= 0 else ids

    def decode(self, ids: int | Sequence[int]) -> str:
        """ids → text. A single id is decoded as a stream: a character split over several tokens
        comes out whole with the token that completes it, so printing tokens one by one is safe."""
        if isinstance(ids, (Sequence, np.ndarray)):
            return self._llm.detokenize([operator.index(i) for i in ids]).decode("utf-8", errors="replace")
        return self._stream.push(self._llm.token_to_piece(operator.index(ids)))

    def n_vocab(self) -> int:
        return self._llm.n_vocab()

    def bos(self) -> int | None:
        b = self._llm.token_bos()
        return None if b < 0 else b

    def eos(self) -> int | None:
        e = self._llm.token_eos()
        return None if e < 0 else e


class LLaMA:
    """A model and its context, driven by explicit positions (`apply(tokens, n_past)`)."""

    def __init__(self, llm: Llama):
        """Use `LLaMA.load`."""
        self._llm = llm

    @staticmethod
    def load(path: str | os.PathLike, n_ctx: int = 512, memory_type: GGMLType = GGMLType.F16) -> LLaMA:
        try:
            kv = GGMLType(operator.index(memory_type))
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"memory_type must be GGMLType.F32 or GGMLType.F16, not {memory_type!r}"
            ) from None
        if operator.index(n_ctx) <= 0:
            raise InvalidArgumentError(f"n_ctx must be > 0 (got {n_ctx})")
        type_k = "f32" if kv == GGMLType.F32 else "f16"
        # One thread until `apply` says how many.
        return LLaMA(Llama(path, n_ctx=n_ctx, n_batch=min(n_ctx, 512), n_threads=1, type_k=type_k))

    def estimate_mem_per_token(self, n_threads: int = 1) -> int:
        """Bytes of activation memory one token needs (the buffers are preallocated; informative).
        `n_threads` does not change it."""
        h = self._llm.hparams()
        activations = 4 * h["n_embd"] + 2 * h["n_head"] * h["n_embd_head_k"] + 2 * h["n_ff"] + h["n_vocab"]
        kv = 2 * h["n_layer"] * (h["n_embd_k_gqa"] + h["n_embd_v_gqa"])
        return int(4 * activations + kv)

    def apply(
        self, tokens: Sequence[int], n_past: int, mem_per_token: int = 0, n_threads: int = 1
    ) -> npt.NDArray[np.float32]:
        """Evaluates `tokens` at positions n_past… (a smaller n_past rewinds) and returns the last
        token's logits, a new [n_vocab] float32 array. `mem_per_token` is accepted for compatibility:
        the buffers are preallocated."""
        llm = self._llm
        llm.n_threads = max(operator.index(n_threads), 1)
        kept = llm.n_tokens
        llm.n_tokens = n_past
        try:
            llm.eval(tokens)
        except Exception:
            llm.n_tokens = kept  # the core checks the arguments before it touches the cache
            raise
        row: npt.NDArray[np.float32] = llm.scores[llm.n_tokens - 1]
        return row.copy()

    def get_tokenizer(self) -> Tokenizer:
        return Tokenizer(self._llm)

    def n_vocab(self) -> int:
        return self._llm.n_vocab()


_global_seeds: random.Random | None = None


def sample_next_token(
    tokens: Sequence[int],
    logits: npt.NDArray[np.float32],
    top_k: int = 40,
    top_p: float = 0.95,
    temp: float = 0.8,
    repeat_penalty: float = 1.1,
    seed: int | None = None,
) -> int:
    """The seed API's sampler: repeat penalty over the last 64 of `tokens`, then top-k, top-p,
    temperature (≤ 0: greedy), drawn by llama.cpp's seeded `dist` (a 64-bit seed is taken mod 2³²,
    as llama.cpp's uint32 seed). A `seed` gives a reproducible draw; without one, seeds come from a
    process-wide generator seeded from the OS."""
    global _global_seeds
    if seed is None:
        if _global_seeds is None:
            _global_seeds = random.Random()
        seed = _global_seeds.randrange(0, 0xFFFFFFFF)
    elif seed < 0:
        raise InvalidArgumentError(f"seed must be ≥ 0 or None (got {seed})")
    logits = np.asarray(logits, dtype=np.float32)
    chain = build_chain(
        logits.shape[-1],
        top_k=top_k,
        top_p=top_p,
        min_p=0.0,
        temp=max(temp, 0.0),
        repeat_penalty=repeat_penalty,
        penalty_last_n=64,
        seed=seed,
    )
    for t in list(tokens)[-64:]:
        chain.accept(operator.index(t))
    return int(chain.sample(logits))


__all__ = ["GGMLType", "LLaMA", "Tokenizer", "sample_next_token"]
