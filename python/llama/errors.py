"""Typed exceptions. The native module raises these (looked up by name), so every error a user sees
is a `LlamaError` with a message that names the file or argument and the problem."""


class LlamaError(Exception):
    """Base class of every error raised by llama.py."""


class ModelFileNotFoundError(LlamaError, FileNotFoundError):
    """The model (or another input) file does not exist."""


class ModelFormatError(LlamaError, ValueError):
    """A file is malformed: truncated, out-of-range offsets, wrong magic, bad pickle …"""


class UnsupportedError(LlamaError, NotImplementedError):
    """A tensor type, architecture or checkpoint layout this runtime does not implement."""


class TokenizerError(LlamaError, ValueError):
    """The vocabulary in the file cannot be used."""


class ContextOverflowError(LlamaError, ValueError):
    """Evaluating would exceed the context window (n_ctx)."""


class InvalidArgumentError(LlamaError, ValueError):
    """An argument is outside its domain: a token id ≥ n_vocab, an empty prompt, n_past past the cache."""


class EngineBusyError(LlamaError):
    """Every slot of an Engine is busy and its queue is full: retry later."""


class ChecksumError(LlamaError):
    """A downloaded file does not match its checksum (the file has been removed)."""


__all__ = [
    "LlamaError",
    "EngineBusyError",
    "ModelFileNotFoundError",
    "ModelFormatError",
    "UnsupportedError",
    "TokenizerError",
    "ContextOverflowError",
    "InvalidArgumentError",
    "ChecksumError",
]
