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
    def from_json_schema(cls, json_schema: str | dict | bool, verbose: bool = True) -> LlamaGrammar:
        """A JSON schema as JSON text (llama-cpp-python's signature), a dict, or `true`/`false`."""
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


def as_grammar(grammar: Any) -> LlamaGrammar | None:
    """The `grammar=` argument of the sampling APIs: a `LlamaGrammar`, GBNF text, or None."""
    if grammar is None or isinstance(grammar, LlamaGrammar):
        return grammar
    if isinstance(grammar, str):
        return LlamaGrammar.from_string(grammar)
    raise InvalidArgumentError(f"grammar must be a LlamaGrammar or GBNF text, got {type(grammar).__name__}")


_FORMAT_KEYS = {"text": {"type"}, "json_object": {"type", "schema"}, "json_schema": {"type", "json_schema"}}


def response_format_grammar(response_format: Any) -> LlamaGrammar | None:
    """The constraint of a chat `response_format`: OpenAI's ``{"type": "text"}`` (none),
    ``{"type": "json_object"}`` (any JSON object), ``{"type": "json_schema", "json_schema":
    {"name", "schema", "strict", "description"}}``, and llama-cpp-python's ``{"type":
    "json_object", "schema": {...}}``. The schema is always enforced (``strict`` or not); any other
    shape raises InvalidArgumentError naming the problem."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or not isinstance(response_format.get("type"), str):
        raise InvalidArgumentError(f'response_format must be a dict with a "type" (got {response_format!r})')
    kind = response_format["type"]
    if kind not in _FORMAT_KEYS:
        raise InvalidArgumentError(f"response_format type {kind!r} is not one of {sorted(_FORMAT_KEYS)}")
    extra = set(response_format) - _FORMAT_KEYS[kind]
    if extra:
        raise InvalidArgumentError(f"response_format {kind!r} does not take {sorted(extra)}")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return LlamaGrammar.json_object() if schema is None else LlamaGrammar.from_json_schema(_schema(schema))
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidArgumentError('response_format "json_schema" needs a "json_schema" object with a "schema"')
    extra = set(spec) - {"name", "schema", "strict", "description"}
    if extra:
        raise InvalidArgumentError(f"response_format.json_schema does not take {sorted(extra)}")
    if "schema" not in spec:
        return LlamaGrammar.json_object()
    return LlamaGrammar.from_json_schema(_schema(spec["schema"]))


def _schema(schema: Any) -> dict[str, Any] | bool:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as err:
            raise InvalidArgumentError(f"the JSON schema is not valid JSON: {err}") from err
    if not isinstance(schema, (dict, bool)):
        raise InvalidArgumentError(f"a JSON schema must be an object, got {type(schema).__name__}")
    return schema


__all__ = ["LlamaGrammar", "LLAMA_GRAMMAR_DEFAULT_ROOT"]
