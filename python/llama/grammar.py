"""`LlamaGrammar`: llama-cpp-python's grammar class, backed by llguidance in the Rust core.

The constraint is compiled when the object is made, so a malformed grammar or a schema feature
the engine cannot handle raises `InvalidArgumentError` (with the parser's reason) before any
token is generated. `from_json_schema` compiles the schema natively (llguidance's JSON-schema
compiler) instead of going through GBNF as llama-cpp-python does; the accepted language is
the schema's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import _llama
from .errors import InvalidArgumentError

LLAMA_GRAMMAR_DEFAULT_ROOT = "root"


class LlamaGrammar:
    """A compiled constraint. Make one with `from_string`, `from_file`, `from_json_schema`
    (or `json_object` / `from_regex`); use `matcher(model)` for one generation."""

    def __init__(self, *args: Any, _grammar: str, _kind: str = "gbnf", _compiled: Any = None, **kwargs: Any):
        self._grammar = _grammar
        self._root = LLAMA_GRAMMAR_DEFAULT_ROOT
        self._kind = _kind
        if _compiled is None:
            _compiled = _llama.Grammar.from_gbnf(_grammar, self._root)
        self._compiled = _compiled

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> LlamaGrammar:
        """GBNF text as llama.cpp writes it (start rule `root`)."""
        if not isinstance(grammar, str):
            raise InvalidArgumentError(f"grammar must be a str, got {type(grammar).__name__}")
        return cls(
            _grammar=grammar, _kind="gbnf", _compiled=_llama.Grammar.from_gbnf(grammar, LLAMA_GRAMMAR_DEFAULT_ROOT)
        )

    @classmethod
    def from_file(cls, file: str | Path, verbose: bool = True) -> LlamaGrammar:
        try:
            grammar = Path(file).read_text(encoding="utf-8")
        except OSError as err:
            raise InvalidArgumentError(f"{file}: cannot read grammar file: {err}") from err
        if not grammar.strip():
            raise InvalidArgumentError(f"{file}: grammar file is empty")
        return cls.from_string(grammar, verbose=verbose)

    @classmethod
    def from_json_schema(cls, json_schema: str | dict, verbose: bool = True) -> LlamaGrammar:
        """A JSON schema as JSON text (llama-cpp-python's signature) or a dict."""
        text = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
        return cls(_grammar=text, _kind="json_schema", _compiled=_llama.Grammar.from_json_schema(text))

    @classmethod
    def json_object(cls) -> LlamaGrammar:
        """Any JSON object (`response_format={"type": "json_object"}`)."""
        return cls(_grammar='{"type": "object"}', _kind="json_object", _compiled=_llama.Grammar.json_object())

    @classmethod
    def from_regex(cls, pattern: str) -> LlamaGrammar:
        """The whole output must match `pattern` (Rust `regex` syntax)."""
        return cls(_grammar=pattern, _kind="regex", _compiled=_llama.Grammar.from_regex(pattern))

    def matcher(self, model: Any) -> Any:
        """A fresh `GrammarMatcher` (mask_logits / accept / is_accepting / is_stopped / reset /
        clone) for `model` (a `llama._llama.Model`, or an object with a `_model` attribute)."""
        m = getattr(model, "_model", model)
        return _llama.GrammarMatcher(self._compiled, m)

    def __repr__(self) -> str:
        return f"LlamaGrammar(kind={self._kind!r}, {len(self._grammar)} chars)"


__all__ = ["LlamaGrammar", "LLAMA_GRAMMAR_DEFAULT_ROOT"]
