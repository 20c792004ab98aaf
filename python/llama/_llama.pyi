"""Type stubs for the native module `llama._llama` (built from crates/llama-python).

Checked against the built module by `python -m mypy.stubtest llama._llama` (scripts/lint.sh). The
classes are pyo3 classes, which cannot be subclassed (@final)."""

import os
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "gguf_info",
    "convert",
    "render_chat_template",
    "nll",
    "cpu_info",
    "quantize",
    "serve",
    "Model",
    "Engine",
    "EngineRequest",
    "Context",
    "StreamDecoder",
    "SamplerChain",
    "Grammar",
    "GrammarMatcher",
]

_Path = str | os.PathLike[str]

__version__: str

def gguf_info(path: _Path) -> dict[str, Any]: ...
def convert(
    path: _Path,
    outtype: str = "f16",
    out: _Path | None = None,
    vocab_dir: _Path | None = None,
    quiet: bool = False,
) -> str: ...
def quantize(
    path: _Path,
    type: str = "q4_0",
    out: _Path | None = None,
    pure: bool = False,
    n_threads: int = 0,
    quiet: bool = False,
    imatrix: _Path | None = None,
) -> str: ...
def render_chat_template(
    template: str | None,
    messages: Any,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    extra: dict[str, Any] | None = None,
) -> str: ...
def nll(logits: npt.NDArray[np.float32], tokens: list[int], first: int) -> tuple[float, int]: ...
def cpu_info() -> str: ...
def serve(
    model: _Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    parallel: int = 4,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    n_batch: int = 512,
    queue: int = 64,
    api_key: str | None = None,
    alias: str | None = None,
    body_limit: int = 8388608,
    quiet: bool = False,
) -> None: ...

@final
class Model:
    def __new__(cls, path: _Path, vocab_only: bool = False) -> Model: ...
    def n_vocab(self) -> int: ...
    def n_ctx_train(self) -> int: ...
    def n_embd(self) -> int: ...
    def metadata(self) -> list[tuple[str, str]]: ...
    def chat_template(self) -> str | None: ...
    def architecture(self) -> str | None: ...
    def tokenize(self, text: bytes, add_special: bool = True, parse_special: bool = False) -> list[int]: ...
    def detokenize(self, ids: list[int], special: bool = False) -> bytes: ...
    def token_to_piece(self, id: int, special: bool = False) -> bytes: ...
    def token_bos(self) -> int | None: ...
    def token_eos(self) -> int | None: ...
    def add_bos(self) -> bool: ...
    def is_eog(self, id: int) -> bool: ...
    def hparams(self) -> dict[str, Any]: ...

@final
class Context:
    def __new__(
        cls,
        model: Model,
        n_ctx: int = 512,
        n_batch: int = 512,
        n_threads: int | None = None,
        type_k: str = "f16",
        logits_all: bool = False,
    ) -> Context: ...
    def eval(self, tokens: list[int], n_past: int, out: npt.NDArray[np.float32]) -> None: ...
    def set_n_threads(self, n_threads: int) -> None: ...
    def n_threads(self) -> int: ...
    def n_ctx(self) -> int: ...
    def kv_len(self) -> int: ...
    def is_recurrent(self) -> bool: ...
    def truncate(self, n: int) -> None: ...
    def save_state(self, n_tokens: int | None = None) -> bytes: ...
    def load_state(self, data: bytes) -> None: ...

@final
class StreamDecoder:
    def __new__(cls) -> StreamDecoder: ...
    def push(self, piece: bytes) -> str: ...
    def flush(self) -> str: ...

@final
class SamplerChain:
    def __new__(
        cls,
        n_vocab: int,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        logit_bias: list[tuple[int, float]] | None = None,
        seed: int = 4294967295,
        xtc_probability: float = 0.0,
        xtc_threshold: float = 0.1,
        dynatemp_range: float = 0.0,
        dynatemp_exponent: float = 1.0,
    ) -> SamplerChain: ...
    @staticmethod
    def from_stages(stages: list[tuple[str, dict[str, float]]]) -> SamplerChain: ...
    def sample(self, logits: npt.NDArray[np.float32]) -> int: ...
    def apply(
        self, logits: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.float32], int | None]: ...
    def add_grammar(self, grammar: Grammar, model: Model) -> None: ...
    def accept(self, token: int) -> None: ...
    def reset(self) -> None: ...
    def names(self) -> list[str]: ...
    def clone(self) -> SamplerChain: ...

@final
class Grammar:
    @staticmethod
    def from_gbnf(text: str, root: str = "root") -> Grammar: ...
    @staticmethod
    def from_json_schema(schema: str) -> Grammar: ...
    @staticmethod
    def json_object() -> Grammar: ...
    @staticmethod
    def from_regex(pattern: str) -> Grammar: ...
    @staticmethod
    def from_lark(text: str) -> Grammar: ...
    def lark(self) -> str | None: ...

@final
class GrammarMatcher:
    def __new__(cls, grammar: Grammar, model: Model) -> GrammarMatcher: ...
    def mask_logits(self, logits: npt.NDArray[np.float32]) -> None: ...
    def accept(self, token: int) -> None: ...
    def is_accepting(self) -> bool: ...
    def is_stopped(self) -> bool: ...
    def reset(self) -> None: ...
    def clone(self) -> GrammarMatcher: ...

@final
class Engine:
    def __new__(
        cls,
        model: Model,
        n_slots: int = 4,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        queue: int = 64,
    ) -> Engine: ...
    def submit(
        self,
        prompt: list[int],
        chain: SamplerChain,
        max_tokens: int | None = None,
        stop: list[str] = ...,
        ignore_eos: bool = False,
        n_probs: int = 0,
        cache_prompt: bool = False,
    ) -> EngineRequest: ...
    def metrics(self) -> dict[str, int]: ...

@final
class EngineRequest:
    def next_event(self, timeout: float | None = None) -> tuple[Any, ...] | None: ...
    def cancel(self) -> None: ...
