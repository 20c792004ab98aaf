"""Structured output through the drop-in API: `response_format` and `grammar=` on
`Llama.create_chat_completion` / `create_completion`, checked independently — every JSON-schema
answer parses with `json` and validates with `jsonschema` and its draft's FormatChecker (a `date`
is a real calendar date, a `uuid` a real UUID), json_object answers are objects, GBNF answers are
accepted by Python's own parsers.

The acceptance set: 54 schemas (the 24 of the Rust end-to-end test plus 30 more in
tests/data/json_schemas/acceptance_extra.json) × 3 seeds at temperature 0.8, each answer within
400 new tokens, on qwen2.5-coder-0.5b-q4_k_m."""

import ast
import json
import os

import pytest

import llama
from conftest import DATA, REPO, model_path

THREADS = min(2, os.cpu_count() or 1)
SEEDS = (1, 2, 3)
MAX_NEW = 400


def _schemas():
    rust = REPO / "crates" / "llama-core" / "tests" / "data" / "grammar_e2e_schemas.json"
    extra = DATA / "json_schemas" / "acceptance_extra.json"
    cases = json.loads(rust.read_text(encoding="utf-8")) + json.loads(extra.read_text(encoding="utf-8"))
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "schema names repeat"
    return cases


SCHEMAS = _schemas()


@pytest.fixture(scope="module")
def qwen():
    return llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), n_ctx=2048, n_threads=THREADS)


def _validator(schema):
    jsonschema = pytest.importorskip("jsonschema")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    # The draft's own FormatChecker: the global FormatChecker() mixes in draft 3's "time" (no zone).
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _ask(prompt, schema):
    return [
        {"role": "system", "content": "You answer with JSON only."},
        {"role": "user", "content": f"{prompt} Reply with JSON following this JSON schema: {json.dumps(schema)}"},
    ]


def test_acceptance_set_is_large_and_valid():
    assert len(SCHEMAS) >= 50
    for c in SCHEMAS:
        _validator(c["schema"]).check_schema(c["schema"])


@pytest.mark.parametrize("case", SCHEMAS, ids=[c["name"] for c in SCHEMAS])
def test_json_schema_answers_validate(qwen, case):
    """OpenAI's response_format shape; 3 seeds at T=0.8; every answer ends by itself (EOS where the
    grammar ends) within 400 tokens, parses and validates."""
    v = _validator(case["schema"])
    rf = {"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"], "strict": True}}
    bad = []
    for seed in SEEDS:
        r = qwen.create_chat_completion(
            _ask(case["prompt"], case["schema"]), response_format=rf, temperature=0.8, seed=seed, max_tokens=MAX_NEW
        )
        choice = r["choices"][0]
        text = choice["message"]["content"]
        try:
            assert choice["finish_reason"] == "stop", f"did not end within {MAX_NEW} tokens"
            v.validate(json.loads(text))
        except Exception as e:  # noqa: BLE001 (collected, reported with the text)
            bad.append(f"seed {seed}: {type(e).__name__}: {str(e)[:200]} in {text!r}")
    assert not bad, "\n".join(bad)


def test_json_object_mode(qwen):
    """`{"type": "json_object"}`: any JSON object; llama-cpp-python's `{"type": "json_object",
    "schema": ...}` follows the schema."""
    for seed in SEEDS:
        for prompt in ("Describe a cat.", "List three cities and their countries.", "Give a product review."):
            r = qwen.create_chat_completion(
                [{"role": "user", "content": prompt + " Answer in JSON."}],
                response_format={"type": "json_object"},
                temperature=0.8,
                seed=seed,
                max_tokens=MAX_NEW,
            )
            c = r["choices"][0]
            assert c["finish_reason"] == "stop" and isinstance(json.loads(c["message"]["content"]), dict), c
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    r = qwen.create_chat_completion(
        [{"role": "user", "content": "A number, in JSON."}],
        response_format={"type": "json_object", "schema": schema},
        temperature=0.8,
        seed=4,
        max_tokens=MAX_NEW,
    )
    _validator(schema).validate(json.loads(r["choices"][0]["message"]["content"]))


def test_streamed_constrained_answer_equals_the_whole_one(qwen):
    case = SCHEMAS[0]
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": case["schema"]}}
    kw = {"response_format": rf, "temperature": 0.8, "seed": 7, "max_tokens": MAX_NEW}
    whole = qwen.create_chat_completion(_ask(case["prompt"], case["schema"]), **kw)["choices"][0]["message"]["content"]
    parts = [
        ch["choices"][0]["delta"].get("content", "")
        for ch in qwen.create_chat_completion(_ask(case["prompt"], case["schema"]), stream=True, **kw)
    ]
    assert "".join(parts) == whole
    _validator(case["schema"]).validate(json.loads(whole))


def test_gbnf_grammar_on_completions(qwen):
    """llama.cpp's grammars/ through `grammar=` (a LlamaGrammar or GBNF text): json.gbnf answers
    parse with json.loads; arithmetic.gbnf lines parse with Python's ast."""
    g = llama.LlamaGrammar.from_file(DATA / "grammars" / "json.gbnf")
    for seed in SEEDS:
        r = qwen.create_completion(
            "A JSON description of a dog:", grammar=g, temperature=0.8, seed=seed, max_tokens=300
        )
        c = r["choices"][0]
        assert c["finish_reason"] == "stop", c
        json.loads(c["text"])
    arith = (DATA / "grammars" / "arithmetic.gbnf").read_text(encoding="utf-8")
    r = qwen.create_completion("Some sums:\n", grammar=arith, temperature=0.8, seed=1, max_tokens=48)
    text = r["choices"][0]["text"]
    lines = text.split("\n") if r["choices"][0]["finish_reason"] == "stop" else text.split("\n")[:-1]
    lines = [ln for ln in lines if ln.strip()]
    assert lines, text
    for ln in lines:
        lhs, rhs = ln.split("=", 1)
        ast.parse(lhs.strip(), mode="eval")
        ast.parse(rhs.strip(), mode="eval")


def test_generate_and_sample_take_a_grammar(qwen):
    g = llama.LlamaGrammar.from_regex(r"(yes|no)\.")
    toks = qwen.tokenize(b"Is the sky blue?", add_bos=False)
    out = []
    for t in qwen.generate(toks, temp=0.0, grammar=g):
        if qwen.token_is_eog(t):
            break
        out.append(t)
        assert len(out) < 10
    assert qwen.detokenize(out).decode() in ("yes.", "no.")
    # sample() alone: a fresh chain, the grammar from its start.
    qwen.reset()
    qwen.eval(toks)
    t = qwen.sample(temp=0.0, grammar=g)
    assert qwen.detokenize([t]).decode() in ("y", "ye", "yes", "yes.", "n", "no", "no.")


def test_bad_constraints_raise_before_generating(qwen):
    msgs = [{"role": "user", "content": "hi"}]
    bad_formats = [
        {"type": "xml"},
        {"json_schema": {}},
        "json",
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}, "bogus": 1}},
        {"type": "json_object", "schema": "{not json"},
        {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "wat"}}}}},
        {"type": "text", "schema": {}},
    ]
    for rf in bad_formats:
        with pytest.raises(llama.InvalidArgumentError):
            qwen.create_chat_completion(msgs, response_format=rf, max_tokens=4)
    with pytest.raises(llama.InvalidArgumentError, match="not both"):
        qwen.create_chat_completion(msgs, response_format={"type": "json_object"}, grammar='root ::= "a"')
    with pytest.raises(llama.InvalidArgumentError):
        qwen.create_completion("x", grammar="root ::= missing_rule", max_tokens=4)
    with pytest.raises(llama.InvalidArgumentError):
        qwen.create_completion("x", grammar=42, max_tokens=4)
    # text: no constraint at all (same answer as without response_format).
    a = qwen.create_chat_completion(msgs, response_format={"type": "text"}, temperature=0.0, max_tokens=8)
    b = qwen.create_chat_completion(msgs, temperature=0.0, max_tokens=8)
    assert a["choices"][0]["message"] == b["choices"][0]["message"]


def test_a_grammar_that_ends_stops_generation(qwen):
    """The sequence ends exactly where the grammar allows: a fixed string, then EOS."""
    r = qwen.create_completion("Say hello:", grammar='root ::= "Hello, world"', temperature=0.8, seed=3, max_tokens=50)
    c = r["choices"][0]
    assert c["text"] == "Hello, world" and c["finish_reason"] == "stop"
