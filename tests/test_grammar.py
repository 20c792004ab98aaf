"""LlamaGrammar (llama-cpp-python's API) over the core's llguidance matcher, and the independent
check of the end-to-end outputs written by crates/llama-core/tests/grammar_model.rs:
every JSON-schema output validates with `jsonschema` + `FormatChecker` (a `date` is a real
calendar date, a `uuid` a real UUID), json_object outputs are objects, arithmetic lines parse
with Python's `ast`, regex outputs match with `re`."""

import ast
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import llama
from conftest import DATA, REPO
from llama import _llama

GRAMMARS = sorted((DATA / "grammars").glob("*.gbnf"))
E2E = Path(os.environ.get("GRAMMAR_E2E_OUT", REPO / "target" / "grammar_e2e.jsonl"))


@pytest.mark.parametrize("path", GRAMMARS, ids=[p.stem for p in GRAMMARS])
def test_llamacpp_grammars_load(path):
    g = llama.LlamaGrammar.from_file(path)
    assert g._grammar == path.read_text(encoding="utf-8")
    assert llama.LlamaGrammar.from_string(path.read_text(encoding="utf-8"), verbose=False)._kind == "gbnf"


def test_typed_errors(tmp_path):
    with pytest.raises(llama.InvalidArgumentError, match="Undefined rule identifier 'nope'"):
        llama.LlamaGrammar.from_string("root ::= nope")
    with pytest.raises(llama.InvalidArgumentError, match="expecting ::="):
        llama.LlamaGrammar.from_string("root = x")
    with pytest.raises(llama.InvalidArgumentError, match="not"):
        llama.LlamaGrammar.from_json_schema(json.dumps({"type": "string", "not": {"const": "a"}}))
    with pytest.raises(llama.InvalidArgumentError, match="not valid JSON"):
        llama.LlamaGrammar.from_json_schema("{oops")
    with pytest.raises(llama.InvalidArgumentError):
        llama.LlamaGrammar.from_file(tmp_path / "missing.gbnf")
    (tmp_path / "empty.gbnf").write_text("")
    with pytest.raises(llama.InvalidArgumentError, match="empty"):
        llama.LlamaGrammar.from_file(tmp_path / "empty.gbnf")
    assert issubclass(llama.InvalidArgumentError, ValueError)


def test_matcher_on_a_vocab():
    model = _llama.Model(str(DATA / "vocab" / "ggml-vocab-gpt-2.gguf"), vocab_only=True)
    g = llama.LlamaGrammar.from_json_schema({"enum": ["yes", "no"]})
    m = g.matcher(model)
    logits = np.zeros(model.n_vocab(), dtype=np.float32)
    m.mask_logits(logits)
    allowed = np.flatnonzero(np.isfinite(logits))
    pieces = {model.token_to_piece(int(t), True) for t in allowed}
    # Only a quote can start either answer (and whatever whitespace the JSON grammar allows none here).
    assert pieces and all(p.startswith(b'"') or p == b'"' for p in pieces), pieces
    quote = model.tokenize(b'"', False, False)[0]
    m2 = m.clone()
    m.accept(quote)
    assert not m.is_accepting()
    for t in model.tokenize(b'no"', False, False):
        m.accept(t)
    assert m.is_accepting()
    with pytest.raises(llama.InvalidArgumentError):
        m.accept(quote)
    m.reset()
    m.accept(quote)
    # The clone was taken before any token and is unaffected.
    logits = np.zeros(model.n_vocab(), dtype=np.float32)
    m2.mask_logits(logits)
    assert np.isfinite(logits[quote])


def _records(kind):
    if not E2E.exists():
        pytest.skip(f"{E2E} absent: run `cargo test -p llama-core --test grammar_model` first")
    recs = [json.loads(line) for line in E2E.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in recs if r["kind"] == kind]


def test_e2e_schema_outputs_validate():
    jsonschema = pytest.importorskip("jsonschema")
    recs = _records("schema")
    assert len({r["name"] for r in recs}) >= 20
    for r in recs:
        assert r["ended"], r
        value = json.loads(r["text"])
        cls = jsonschema.validators.validator_for(r["schema"], default=jsonschema.Draft202012Validator)
        # The draft's own FormatChecker: the global FormatChecker() mixes in draft 3's "time" (no zone).
        cls(r["schema"], format_checker=cls.FORMAT_CHECKER).validate(value)


def test_e2e_json_object_outputs():
    recs = _records("json_object")
    assert recs
    for r in recs:
        assert r["ended"] and isinstance(json.loads(r["text"]), dict), r


def test_e2e_arithmetic_outputs_parse():
    recs = _records("arithmetic")
    assert recs
    for r in recs:
        text = r["text"] if r["ended"] else r["text"][: r["text"].rfind("\n") + 1]
        lines = [ln for ln in text.split("\n") if ln.strip()]
        assert lines, r
        for ln in lines:
            lhs, rhs = ln.split("=", 1)
            ast.parse(lhs.strip(), mode="eval")
            ast.parse(rhs.strip(), mode="eval")


def test_e2e_regex_outputs_match():
    recs = _records("regex")
    assert recs
    for r in recs:
        assert r["ended"] and re.fullmatch(r["pattern"], r["text"]), r
