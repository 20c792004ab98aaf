"""llama-cpp-python's tests/test_llama_grammar.py (upstream commit 3691546f, release 0.3.35), ported
to run against `llama` instead of `llama_cpp`; the code is written anew.

Upstream only builds three grammars and asserts that building them works (its checks of the
compiled rules are commented out, being llama.cpp internals): a GBNF grammar of binary trees, and
two JSON schemas, one with a `$ref` into `$defs` (the schema pydantic writes for a model nesting
another) and one with an `anyOf` of an enum and null. The same three are built here through
`llama.LlamaGrammar`. Beyond upstream, `test_grammars_constrain_a_completion` uses each in a
greedy completion of a small model and checks the text is in the grammar's language.

llama.py compiles JSON schemas natively (llguidance) rather than through GBNF, reading them as
llama.cpp's conversion does: an object that lists `properties` without `additionalProperties`
admits only the listed ones (`test_unlisted_properties_are_refused`).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

import llama
from conftest import model_path

TREE_GBNF = """
leaf ::= "."
node ::= leaf | "(" node node ")"
root ::= node
"""

# pydantic's schema for `class B(BaseModel): a: A; b: int` with `class A(BaseModel): a: int`
# (written out: no pydantic dependency).
NESTED_MODELS_SCHEMA = {
    "title": "B",
    "type": "object",
    "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"title": "B", "type": "integer"}},
    "required": ["a", "b"],
    "$defs": {
        "A": {
            "title": "A",
            "type": "object",
            "properties": {"a": {"title": "A", "type": "integer"}},
            "required": ["a"],
        }
    },
}

TEMPERATURE_SCHEMA = {
    "type": "object",
    "properties": {
        "temperature": {"type": "number", "description": "The temperature mentioned"},
        "unit": {
            "anyOf": [
                {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit for temperature"},
                {"type": "null"},
            ]
        },
    },
}


def test_grammar_from_string():
    assert isinstance(llama.LlamaGrammar.from_string(TREE_GBNF), llama.LlamaGrammar)


def test_composed_pydantic_grammar():
    grammar = llama.LlamaGrammar.from_json_schema(json.dumps(NESTED_MODELS_SCHEMA))
    assert isinstance(grammar, llama.LlamaGrammar)


def test_grammar_anyof():
    grammar = llama.LlamaGrammar.from_json_schema(json.dumps(TEMPERATURE_SCHEMA))
    assert isinstance(grammar, llama.LlamaGrammar)


def _tree_prefix(text: str) -> bool:
    """Whether `text` is a tree of TREE_GBNF or the start of one."""
    depth, done = 0, False
    for ch in text:
        if done or ch not in "().":
            return False
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
        done = depth == 0 and ch in ".)"
    return True


def _is_whole_tree(text: str) -> bool:
    return bool(text) and _tree_prefix(text) and text.count("(") == text.count(")")


@pytest.fixture(scope="module")
def small_llm():
    return llama.Llama(model_path("smollm2-135m-instruct-q4_1.gguf"), n_ctx=256, n_threads=2)


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("A binary tree written with dots and parentheses: ", "tree"),
        ("Output JSON with fields a (an object with integer a) and b: ", "nested"),
        ("It is 21 degrees celsius. As JSON: ", "temperature"),
    ],
)
def test_grammars_constrain_a_completion(small_llm, prompt, kind):
    grammar = {
        "tree": lambda: llama.LlamaGrammar.from_string(TREE_GBNF),
        "nested": lambda: llama.LlamaGrammar.from_json_schema(json.dumps(NESTED_MODELS_SCHEMA)),
        "temperature": lambda: llama.LlamaGrammar.from_json_schema(json.dumps(TEMPERATURE_SCHEMA)),
    }[kind]()
    choice = small_llm.create_completion(prompt, max_tokens=48, temperature=0.0, grammar=grammar)["choices"][0]
    text, finished = choice["text"], choice["finish_reason"] == "stop"
    if kind == "tree":
        assert _tree_prefix(text)
        assert _is_whole_tree(text) or not finished
        return
    assert finished, f"greedy JSON that did not end within 48 tokens: {text!r}"
    schema = NESTED_MODELS_SCHEMA if kind == "nested" else TEMPERATURE_SCHEMA
    jsonschema.validate(json.loads(text), schema)


def test_unlisted_properties_are_refused(small_llm):
    """Beyond upstream: a logits processor pushes the completion toward an object with an extra key;
    under llama-cpp-python's grammar the key cannot be written."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    prompt = "JSON: "
    start = len(small_llm.tokenize(prompt.encode(), add_bos=True))
    wanted = small_llm.tokenize(b'{"a": 1, "c": 2}', add_bos=False)

    def push_wanted(input_ids, logits):
        step = len(input_ids) - start
        if 0 <= step < len(wanted):
            logits[wanted[step]] += 100.0
        return logits

    out = small_llm.create_completion(
        prompt,
        max_tokens=16,
        temperature=0.0,
        grammar=llama.LlamaGrammar.from_json_schema(json.dumps(schema)),
        logits_processor=llama.LogitsProcessorList([push_wanted]),
    )
    assert set(json.loads(out["choices"][0]["text"])) == {"a"}
