"""Records llama-cpp-python's `Llama` method signatures (names, kinds, defaults) as test data:
    python tools/record_llama_cpp_signatures.py > tests/data/llama_cpp_python_signatures.json
tests/test_llama_api.py checks ours against it (every keyword exists; none accepted and ignored)."""

import inspect
import json

import llama_cpp

METHODS = [
    "__init__",
    "create_completion",
    "create_chat_completion",
    "generate",
    "sample",
    "eval",
    "tokenize",
    "detokenize",
    "embed",
    "create_embedding",
    "__call__",
    "save_state",
    "load_state",
]


def default(p: inspect.Parameter) -> object:
    if p.default is inspect.Parameter.empty:
        return {"required": True}
    try:
        json.dumps(p.default)
        return {"default": p.default}
    except TypeError:
        return {"default_repr": repr(p.default)}


out = {"llama_cpp_python": llama_cpp.__version__, "methods": {}}
for m in METHODS:
    sig = inspect.signature(getattr(llama_cpp.Llama, m))
    out["methods"][m] = [
        {"name": n, "kind": p.kind.name, **default(p)} for n, p in sig.parameters.items() if n != "self"
    ]
print(json.dumps(out, indent=1))
