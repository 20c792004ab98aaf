"""Sampling helpers shaped like llama-cpp-python's: `LogitsProcessorList`, `StoppingCriteriaList`,
`logits_to_logprobs`, and the builder of the Rust sampler chain from its keyword arguments."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _llama
from .errors import InvalidArgumentError

LogitsProcessor = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], npt.NDArray[np.single]]
StoppingCriteria = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], bool]

#: llama.cpp's LLAMA_DEFAULT_SEED: "draw a seed".
LLAMA_DEFAULT_SEED = 0xFFFFFFFF


class LogitsProcessorList(list[LogitsProcessor]):
    """Callables ``(input_ids, scores) -> scores`` applied in order to the logits of the full
    vocabulary before any sampler stage (llama-cpp-python's semantics)."""

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class StoppingCriteriaList(list[StoppingCriteria]):
    """Callables ``(input_ids, logits) -> bool``; generation stops when any returns true."""

    def __call__(self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> bool:
        return any(criteria(input_ids, logits) for criteria in self)


def logits_to_logprobs(logits: npt.NDArray[np.single] | list, axis: int = -1) -> npt.NDArray[np.single]:
    """log-softmax in float32, computed exactly as llama-cpp-python's ``Llama.logits_to_logprobs``."""
    logits_maxs: np.ndarray = np.amax(logits, axis=axis, keepdims=True)
    if logits_maxs.ndim > 0:
        logits_maxs[~np.isfinite(logits_maxs)] = 0
    elif not np.isfinite(logits_maxs):
        logits_maxs = 0  # type: ignore[assignment]
    subtract_maxs = np.subtract(logits, logits_maxs, dtype=np.single)
    exp = np.exp(subtract_maxs)
    with np.errstate(divide="ignore"):
        summed = np.sum(exp, axis=axis, keepdims=True)
        out = np.log(summed)
    result: npt.NDArray[np.single] = subtract_maxs - out
    return result


def top_logprobs(logprobs: npt.NDArray[np.single], n: int) -> list[tuple[float, int]]:
    """The n largest (logprob, token) pairs as ``sorted(zip(lp, range(len(lp))), reverse=True)[:n]``
    orders them (equal logprobs: larger id first), without sorting the whole vocabulary."""
    if n <= 0:
        return []
    n = min(n, len(logprobs))
    kth = np.partition(logprobs, len(logprobs) - n)[len(logprobs) - n]
    idx = np.nonzero(logprobs >= kth)[0]
    pairs = sorted(zip(logprobs[idx].tolist(), idx.tolist()), reverse=True)
    return pairs[:n]


def apply_processors(
    processors: Iterable[LogitsProcessor] | LogitsProcessor | None,
    input_ids: npt.NDArray[np.intc],
    row: npt.NDArray[np.single],
) -> npt.NDArray[np.single]:
    """A copy of `row` passed through the processors (the model's scores are left as they were)."""
    if processors is None:
        return row
    scores = row.copy()
    items = [processors] if callable(processors) and not isinstance(processors, list) else list(processors)
    for p in items:
        out = p(input_ids, scores)
        scores = np.ascontiguousarray(out, dtype=np.single)
        if scores.shape != row.shape:
            raise InvalidArgumentError(f"logits_processor {p!r} returned shape {scores.shape}, expected {row.shape}")
    return scores


def seed_u32(seed: int) -> int:
    """A seed as llama.cpp receives it (uint32_t: mod 2³²; -1 is LLAMA_DEFAULT_SEED, "random")."""
    return int(seed) % (1 << 32)


def build_chain(
    n_vocab: int,
    *,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    typical_p: float = 1.0,
    temp: float = 0.80,
    repeat_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    penalty_last_n: int = 64,
    mirostat_mode: int = 0,
    mirostat_tau: float = 5.0,
    mirostat_eta: float = 0.1,
    logit_bias: dict[Any, float] | None = None,
    seed: int = LLAMA_DEFAULT_SEED,
) -> _llama.SamplerChain:
    """The chain llama-cpp-python's ``Llama._init_sampler`` builds for these arguments."""
    bias = None
    if logit_bias:
        try:
            bias = [(int(k), float(v)) for k, v in logit_bias.items()]
        except (TypeError, ValueError, AttributeError):
            raise InvalidArgumentError(f"logit_bias must map token ids to numbers (got {logit_bias!r})") from None
    return _llama.SamplerChain(
        n_vocab,
        temperature=float(temp),
        top_k=int(top_k),
        top_p=float(top_p),
        min_p=float(min_p),
        typical_p=float(typical_p),
        repeat_penalty=float(repeat_penalty),
        frequency_penalty=float(frequency_penalty),
        presence_penalty=float(presence_penalty),
        penalty_last_n=int(penalty_last_n),
        mirostat_mode=int(mirostat_mode),
        mirostat_tau=float(mirostat_tau),
        mirostat_eta=float(mirostat_eta),
        logit_bias=bias,
        seed=seed_u32(seed),
    )


def unsupported(name: str, value: Any, default: Any = None, why: str = "is not supported") -> None:
    """Raise InvalidArgumentError naming `name` when it is given a non-default value."""
    if value is not default and value != default:
        raise InvalidArgumentError(f"{name}= {why} (got {value!r})")


Processors = Union[LogitsProcessorList, list[LogitsProcessor], LogitsProcessor, None]

__all__ = [
    "LogitsProcessorList",
    "StoppingCriteriaList",
    "logits_to_logprobs",
    "build_chain",
    "LLAMA_DEFAULT_SEED",
]
