"""Shared test helpers: where the test models, the test data and ../shared live, and skips that say why."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from llama import _llama

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("LLAMA_SHARED", REPO.parent / "shared"))
MODELS = Path(os.environ.get("LLAMA_TEST_MODELS", Path.home() / ".cache" / "llama-test-models"))

GOLDEN_MODELS = [
    "synth-tiny-q4_0",
    "synth-1b-q4_0",
    "synth-1b-q8_0",
    "qwen2.5-coder-0.5b-q4_k_m",
    "gemma3-270m-q4_k_m",
]


def model_path(name: str) -> str:
    """Path of a test model; skips the test (with the reason) when it is absent."""
    p = MODELS / name
    if not p.exists():
        pytest.skip(f"test model {p} is absent (run scripts/fetch-models.sh --dest {MODELS})")
    return str(p)


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared is not beside this checkout)")
    return p


# llama.cpp sums in orders that depend on the ISA its build uses, so its answers are recorded per ISA
# class (tools/gen_golden.py) and compared with our kernel table for that class.
# The llama.cpp build whose summation orders our kernel table reproduces: the AVX2 table follows
# llama.cpp's AVX2 build, every other table (AVX-512, NEON, scalar) its AVX-512 build.
ISA = "avx2" if _llama.cpu_info() == "avx2" else "avx512"


def golden(name: str) -> dict:
    """llama.cpp's answers on a test model for this machine's ISA class; skips when none is recorded."""
    p = DATA / "golden" / ISA / f"{name}.json"
    if not p.exists():
        pytest.skip(f"no llama.cpp golden for {name} on {ISA} (record one with tools/gen_golden.py)")
    return json.loads(p.read_text())


def golden_inputs(name: str) -> dict:
    """A golden file of any ISA class, for what does not depend on it (prompts, token ids, n_vocab)."""
    for p in sorted((DATA / "golden").glob(f"*/{name}.json")):
        return json.loads(p.read_text())
    pytest.skip(f"no llama.cpp golden for {name}")


def gguf_with_tensors(
    src: str | Path, dst: str | Path, extra: dict, edit: Any = None, split_max_tensors: int = 0
) -> None:
    """Copies the GGUF `src` to `dst` with the float32 arrays of `extra` added as tensors (gguf-py
    reads and writes it: an independent writer): e.g. a head the converter does not write.
    `edit(writer)`, when given, adds metadata (a chat template …) before the file is written.
    `split_max_tensors` > 0 writes a split model instead, as llama.cpp's gguf-split: parts
    `DST_STEM-0000i-of-0000N.gguf` beside `dst`, at most that many tensors each."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents(), split_max_tensors=split_max_tensors)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = f.types[0]
        w.add_key_value(name, f.contents(), vt, f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    if edit is not None:
        edit(w)
    for t in r.tensors:
        # the stored array's shape: bytes per row for a quantized type (gguf-py's raw_shape)
        data = np.asarray(t.data)
        w.add_tensor(t.name, data, raw_shape=list(data.shape), raw_dtype=t.tensor_type)
    for name, a in extra.items():
        w.add_tensor(name, np.asarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
