"""Issue 12's acceptance for every quant type, on synth-tiny: tools/type_matrix.py makes the file of
each type from synth-tiny-q4_0 (llama.cpp's own quantizer, pure; the imatrix-only i-quants through
ggml_quantize_chunk with an all-ones importance matrix), and our logits on fixed prompts must agree
with llama.cpp's (llama-cpp-python, the independent reference) on the same file: top-1 ≥ 99% of rows,
mean |Δ| over llama.cpp's top-10 logits ≤ 0.02. On x86_64 with the best kernel table (the one
llama-cpp-python's native build matches: same AVX-512/AVX2 summation orders, incl. its tiled GEMM
for grid i-quant batches and its repacked MXFP4/IQ4_NL GEMV/GEMM), every logit must be bit-identical."""

import importlib.util
import os
import platform
import sys

import pytest

from conftest import REPO, model_path

spec = importlib.util.spec_from_file_location("type_matrix", REPO / "tools" / "type_matrix.py")
assert spec is not None and spec.loader is not None
type_matrix = importlib.util.module_from_spec(spec)
sys.modules["type_matrix"] = type_matrix
spec.loader.exec_module(type_matrix)


@pytest.mark.parametrize("type_name", list(type_matrix.TYPES))
def test_type_agrees_with_llama_cpp(type_name, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (the reference) is not installed")
    pytest.importorskip("gguf", reason="gguf-py is not installed")
    src = model_path("synth-tiny-q4_0.gguf")
    r = type_matrix.run_type(src, str(tmp_path), type_name)
    assert r.rows == sum(type_matrix.PROMPT_LENS)
    assert r.top1 >= type_matrix.TOP1_MIN, f"{type_name}: top-1 {r.top1:.4f} (max |Δ| {r.max_abs:.4f})"
    assert r.mean_top10 <= type_matrix.MEAN_TOP10_MAX, f"{type_name}: mean |Δ| top-10 {r.mean_top10:.5f}"
    if platform.machine() in ("x86_64", "AMD64") and os.environ.get("LLAMA_ISA", "") == "":
        assert r.identical == 1.0, (
            f"{type_name}: {100 * r.identical:.2f}% of logits bit-identical to llama.cpp (max |Δ| {r.max_abs:.2e})"
        )
