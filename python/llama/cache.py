"""Prompt caches for `Llama.set_cache`, as llama-cpp-python's: states (`Llama.save_state`) keyed by
their token sequence; a lookup returns the state whose tokens share the longest prefix with the
prompt, so a completion evaluates only what follows it. `LlamaRAMCache` keeps them in memory,
`LlamaDiskCache` in a folder (one file per state); both drop the least recently used past
`capacity_bytes`."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .high_level import LlamaState


def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def state_size(state: LlamaState) -> int:
    """Bytes a state holds (its KV cache, logits rows and tokens)."""
    return len(state.kv_state) + state.scores.nbytes + state.input_ids.nbytes


class BaseLlamaCache(ABC):
    """Token sequence → `LlamaState`, bounded by `capacity_bytes`."""

    def __init__(self, capacity_bytes: int = 2 << 30) -> None:
        if capacity_bytes <= 0:
            raise InvalidArgumentError(f"capacity_bytes must be positive (got {capacity_bytes})")
        self.capacity_bytes = capacity_bytes

    @property
    @abstractmethod
    def cache_size(self) -> int:
        """Bytes held now."""

    @abstractmethod
    def _keys(self) -> list[tuple[int, ...]]: ...

    def _find_prefix_key(self, key: tuple[int, ...]) -> tuple[int, ...] | None:
        best, best_len = None, 0
        for k in self._keys():
            n = longest_token_prefix(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    @abstractmethod
    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        """The state sharing the longest prefix with `key` (KeyError: none shares a token)."""

    @abstractmethod
    def __contains__(self, key: Sequence[int]) -> bool:
        """Whether some state shares a prefix with `key`."""

    @abstractmethod
    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None: ...


class LlamaRAMCache(BaseLlamaCache):
    """States in memory, least recently used dropped first."""

    def __init__(self, capacity_bytes: int = 2 << 30) -> None:
        super().__init__(capacity_bytes)
        self.cache_state: OrderedDict[tuple[int, ...], LlamaState] = OrderedDict()

    @property
    def cache_size(self) -> int:
        return sum(state_size(s) for s in self.cache_state.values())

    def _keys(self) -> list[tuple[int, ...]]:
        return list(self.cache_state)

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        k = self._find_prefix_key(tuple(key))
        if k is None:
            raise KeyError("no cached state shares a prefix with the key")
        self.cache_state.move_to_end(k)
        return self.cache_state[k]

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._find_prefix_key(tuple(key)) is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        k = tuple(key)
        self.cache_state.pop(k, None)
        self.cache_state[k] = value
        while self.cache_state and self.cache_size > self.capacity_bytes:
            self.cache_state.popitem(last=False)


class LlamaDiskCache(BaseLlamaCache):
    """States in `cache_dir`, one pickle per state (its mtime orders them), least
    recently used dropped first. Only open a folder you trust: states are pickles."""

    def __init__(self, cache_dir: str | os.PathLike[str] = ".cache/llama_cache", capacity_bytes: int = 2 << 30) -> None:
        super().__init__(capacity_bytes)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[tuple[int, ...], Path] = {}
        self._clock = 0  # the last mtime given (ns): strictly increasing, so LRU order is exact
        for p in self.cache_dir.glob("*.state"):
            try:
                with open(p, "rb") as f:
                    self._index[tuple(pickle.load(f))] = p  # the key is stored first
            except Exception:  # noqa: BLE001 (a damaged or foreign file is not ours to read)
                continue
            self._clock = max(self._clock, p.stat().st_mtime_ns)

    def _path(self, key: tuple[int, ...]) -> Path:
        return self.cache_dir / (hashlib.sha256(np.asarray(key, dtype=np.int64).tobytes()).hexdigest() + ".state")

    @property
    def cache_size(self) -> int:
        return sum(p.stat().st_size for p in self._index.values() if p.exists())

    def _keys(self) -> list[tuple[int, ...]]:
        return list(self._index)

    def _touch(self, p: Path) -> None:
        """Marks `p` the most recently used: its mtime, strictly after every other state's."""
        self._clock = max(time.time_ns(), self._clock + 1)
        os.utime(p, ns=(self._clock, self._clock))

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        k = self._find_prefix_key(tuple(key))
        if k is None:
            raise KeyError("no cached state shares a prefix with the key")
        p = self._index[k]
        with open(p, "rb") as f:
            pickle.load(f)  # the key
            state: LlamaState = pickle.load(f)
        self._touch(p)
        return state

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._find_prefix_key(tuple(key)) is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        k = tuple(key)
        p = self._path(k)
        tmp = p.with_suffix(".part")
        with open(tmp, "wb") as f:
            pickle.dump(list(k), f)
            pickle.dump(value, f)
        os.replace(tmp, p)  # never a half-written state under the real name
        self._index[k] = p
        self._touch(p)
        while len(self._index) > 1 and self.cache_size > self.capacity_bytes:
            oldest = min(self._index, key=lambda q: self._index[q].stat().st_mtime_ns)
            self._index.pop(oldest).unlink(missing_ok=True)
