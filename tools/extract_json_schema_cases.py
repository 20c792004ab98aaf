#!/usr/bin/env python3
"""Extract the JSON-schema cases of llama.cpp's tests/test-json-schema-to-grammar.cpp as data.

Each `test({ STATUS, "name", <raw schema>, <raw grammar> })` block (C++ raw strings) becomes one record
{name, expected: "SUCCESS"|"FAILURE", schema (parsed JSON), grammar (the GBNF llama.cpp writes)}
in tests/data/json_schemas/llamacpp_cases.json. Only facts (schemas, statuses, expected grammars)
are taken; none of llama.cpp's code. Run:
    python tools/extract_json_schema_cases.py [path/to/llama.cpp]
"""

import json
import re
import sys
from pathlib import Path

DEFAULT = "/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"
root = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
src = (root / "tests/test-json-schema-to-grammar.cpp").read_text()

RAW = r'R"""\((.*?)\)"""'
STR = r'"((?:[^"\\]|\\.)*)"'
pat = re.compile(
    r"test\(\{\s*(SUCCESS|FAILURE)\s*,\s*" + STR + r"\s*,\s*(?:" + RAW + r'|"(\{\})")\s*,\s*(?:' + RAW + r'|"")\s*\}\)',
    re.S,
)
cases = []
for m in pat.finditer(src):
    status, name, schema_raw, schema_lit, grammar = m.groups()
    text = schema_raw if schema_raw is not None else schema_lit
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{name}: schema is not JSON: {e}") from e
    cases.append(
        {
            "name": bytes(name, "utf-8").decode("unicode_escape"),
            "expected": status,
            "schema": schema,
            "grammar": (grammar or "").strip("\n"),
        }
    )

n_blocks = len(re.findall(r"\btest\(\{", src))
if len(cases) != n_blocks:
    raise SystemExit(f"parsed {len(cases)} cases but the file has {n_blocks} test({{ blocks")
out = Path(__file__).resolve().parent.parent / "tests/data/json_schemas/llamacpp_cases.json"
out.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
print(f"{len(cases)} cases ({sum(c['expected'] == 'FAILURE' for c in cases)} expected failures) -> {out}")
