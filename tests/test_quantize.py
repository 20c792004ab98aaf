"""`python -m llama quantize` against llama.cpp's own quantizer (llama-cpp-python's
llama_model_quantize) on the same F16 input: identical files, hence identical logits when
llama-cpp-python runs them. The input is the hf-llama1 fixture converted with gguf-py (its tensor
hashes are checked against llama.cpp's conversion by the helper script)."""

import ctypes
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared_path

REF = REPO / "crates" / "llama-core" / "tests" / "py" / "llama_cpp_ref.py"


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory):
    fx = shared_path("fixtures")
    pytest.importorskip("gguf")
    pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("quantize")
    out = d / "ggml-model-f16.gguf"
    r = subprocess.run(
        [
            sys.executable,
            str(REF),
            "hf-gguf",
            str(fx / "hf-llama1"),
            str(fx / "llama.cpp-conversions.json"),
            "f16",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return out


def llama_cpp_quantize(src, dst, ftype, pure):
    llama_cpp = pytest.importorskip("llama_cpp")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")  # llama.h's enum llama_ftype
    p.pure = pure
    p.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p)) == 0


def logits(path, tokens):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(path), logits_all=True, verbose=False, n_ctx=64, seed=0)
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)])


@pytest.mark.parametrize(
    "ftype,pure",
    [("q4_0", False), ("q4_k_m", False), ("q5_1", True), ("q8_0", True)]
    + [(t, False) for t in ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l")]
    + [("q2_k", True), ("q3_k_m", True)],
)
def test_cli_output_identical_to_llama_cpp(f16_model, tmp_path, ftype, pure, capfd):
    from llama.cli import main

    ours = tmp_path / f"ours-{ftype}.gguf"
    theirs = tmp_path / f"llama-{ftype}.gguf"
    llama_cpp_quantize(f16_model, theirs, ftype, pure)
    argv = ["quantize", str(f16_model), "--type", ftype, "-o", str(ours), "-t", "2"] + (["--pure"] if pure else [])
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "[  21/  21]" in err and "MiB" in err and "BPW" in err
    assert ours.read_bytes() == theirs.read_bytes()
    toks = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203]
    a, b = logits(ours, toks), logits(theirs, toks)
    assert np.isfinite(a).all() and np.array_equal(a, b)


@pytest.fixture(scope="module")
def synth_models(tmp_path_factory):
    """Random LLaMA-shaped F16 files with rows of 256 (hf-llama1's rows of 128 send every K-quant
    to its fallback): 22 layers with 4 query heads per KV head, and with 1."""
    pytest.importorskip("gguf")
    d = tmp_path_factory.mktemp("quantize-synth")
    out = {}
    for name, n_head_kv in (("gqa4", "2"), ("gqa1", "8")):
        p = d / f"synth-{name}.gguf"
        args = ["synth", str(p), "22", "256", "8", n_head_kv, "768", "512", "f16", "0", "7"]
        r = subprocess.run([sys.executable, str(REF)] + args, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[name] = p
    return out


@pytest.mark.parametrize("model", ["gqa4", "gqa1"])
@pytest.mark.parametrize("ftype", ["q2_k", "q3_k_s", "q3_k_m", "q3_k_l"])
def test_cli_k_mixes_identical_to_llama_cpp(synth_models, tmp_path, model, ftype):
    from llama import _llama
    from llama.cli import main

    src = synth_models[model]
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "llama.gguf"
    llama_cpp_quantize(src, theirs, ftype, False)
    assert main(["quantize", str(src), "--type", ftype, "-o", str(ours), "-t", "2", "--quiet"]) == 0
    assert ours.read_bytes() == theirs.read_bytes()
    # the mix really mixes: more than the default type and the 6-bit output (q3_k_s changes only
    # the output on a dense model)
    types = {t["type"] for t in _llama.gguf_info(str(ours))["tensors"]}
    assert len(types - {"f32"}) >= (2 if ftype == "q3_k_s" else 3), types


def test_folder_default_name_and_quiet(f16_model, capfd):
    from llama.cli import main

    assert main(["quantize", str(f16_model.parent), "--quiet"]) == 0
    assert capfd.readouterr().err == ""
    out = f16_model.parent / "ggml-model-q4_0.gguf"
    assert out.is_file()
    from llama import _llama

    info = _llama.gguf_info(str(out))
    assert info["metadata"]["general.file_type"] == 2
    assert info["metadata"]["general.quantization_version"] == 2


def test_errors_are_clear(f16_model, tmp_path, capfd):
    from llama.cli import main

    assert main(["quantize", str(tmp_path / "missing.gguf"), "--quiet"]) == 1
    assert "missing.gguf" in capfd.readouterr().err
    q = tmp_path / "q.gguf"
    assert main(["quantize", str(f16_model), "-o", str(q), "--quiet", "--type", "q8_0"]) == 0
    assert main(["quantize", str(q), "-o", str(tmp_path / "qq.gguf"), "--quiet"]) == 1
    assert "already q8_0" in capfd.readouterr().err
    assert main(["quantize", str(f16_model), "-o", str(tmp_path / "iq.gguf"), "--quiet", "--type", "iq2_xxs"]) == 1
    assert "importance matrix" in capfd.readouterr().err
    assert main(["quantize", str(f16_model), "-o", str(tmp_path / "x.gguf"), "--quiet", "--type", "q9_k"]) == 1
    assert "unknown quantization type 'q9_k'" in capfd.readouterr().err


def _ref(*args):
    r = subprocess.run([sys.executable, str(REF), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_cli_imatrix_identical_to_llama_cpp(synth_models, tmp_path, fmt, capfd):
    """--imatrix as llama-quantize's: the reference script reads the file as the llama-quantize
    program does and hands the weights (and the quantize.imatrix.* keys) to llama_model_quantize."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama.cli import main

    src = synth_models["gqa4"]
    im = tmp_path / f"imatrix.{fmt}"
    _ref("imatrix", src, im, fmt, 3)
    for ftype in ("q2_k_s", "q4_0", "q4_k_m"):
        ours, theirs = tmp_path / f"ours-{ftype}.gguf", tmp_path / f"llama-{ftype}.gguf"
        ftype_id = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")
        _ref("llama-quantize", src, theirs, ftype_id, 0, 2, im)
        argv = ["quantize", str(src), "--type", ftype, "--imatrix", str(im), "-o", str(ours), "-t", "2", "--quiet"]
        assert main(argv) == 0, capfd.readouterr().err
        assert ours.read_bytes() == theirs.read_bytes(), ftype


def test_cli_imatrix_errors(synth_models, tmp_path, capfd):
    from llama.cli import main

    src = synth_models["gqa4"]
    out = tmp_path / "o.gguf"
    assert main(["quantize", str(src), "--type", "q2_k_s", "-o", str(out), "--quiet"]) == 1
    assert "needs an importance matrix" in capfd.readouterr().err
    # an imatrix of another model (rows of 512, not 256)
    other, im = tmp_path / "other-model.gguf", tmp_path / "other.gguf"
    _ref("synth", other, 2, 512, 8, 2, 512, 512, "f16", 0, 1)
    _ref("imatrix", other, im, "gguf", 3)
    assert main(["quantize", str(src), "--type", "q4_k_m", "--imatrix", str(im), "-o", str(out), "--quiet"]) == 1
    assert "another model" in capfd.readouterr().err
    assert not out.exists()
    assert main(["quantize", str(src), "--imatrix", str(src), "-o", str(out), "--quiet"]) == 1
    assert "imatrix metadata" in capfd.readouterr().err
