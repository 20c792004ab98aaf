"""llama.py: LLaMA-family inference on CPU, a Rust core driven from Python.

High level (llama-cpp-python compatible)::

    from llama import Llama
    llm = Llama("model.gguf")
    print(llm("The capital of France is", max_tokens=16)["choices"][0]["text"])

Seed API::

    from llama import LLaMA, GGMLType, sample_next_token
    model = LLaMA.load("ggml-model-q4_0.gguf", 512, GGMLType.F32)
"""

from ._llama import __version__
from .cache import BaseLlamaCache, LlamaDiskCache, LlamaRAMCache
from .engine import Engine, Generation
from .errors import (
    ChecksumError,
    ContextOverflowError,
    EngineBusyError,
    InvalidArgumentError,
    LlamaError,
    ModelFileNotFoundError,
    ModelFormatError,
    TokenizerError,
    UnsupportedError,
)
from .grammar import LlamaGrammar
from .high_level import Llama, LlamaState
from .llama_types import (
    ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestFunctionMessage,
    ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage,
    ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage,
)
from .sampling import LogitsProcessorList, StoppingCriteriaList
from .seed import GGMLType, LLaMA, Tokenizer, sample_next_token

__all__ = [
    "Llama",
    "Engine",
    "Generation",
    "EngineBusyError",
    "LlamaGrammar",
    "LlamaState",
    "ChatCompletionRequestMessage",
    "ChatCompletionRequestSystemMessage",
    "ChatCompletionRequestUserMessage",
    "ChatCompletionRequestAssistantMessage",
    "ChatCompletionRequestToolMessage",
    "ChatCompletionRequestFunctionMessage",
    "BaseLlamaCache",
    "LlamaRAMCache",
    "LlamaDiskCache",
    "LogitsProcessorList",
    "StoppingCriteriaList",
    "LLaMA",
    "GGMLType",
    "Tokenizer",
    "sample_next_token",
    "LlamaError",
    "ModelFileNotFoundError",
    "ModelFormatError",
    "UnsupportedError",
    "TokenizerError",
    "ContextOverflowError",
    "InvalidArgumentError",
    "ChecksumError",
    "__version__",
]
