"""`info`, `tokenize` and the vocab-only Llama against independent references: gguf-py's reader,
llama.cpp's token ids (golden files) and its metadata."""

import json
import subprocess
import sys

import pytest

import llama
from conftest import GOLDEN_MODELS, golden_inputs, model_path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "llama", *args], capture_output=True, text=True, timeout=600)


def test_info_prints_architecture_and_every_tensor():
    gguf = pytest.importorskip("gguf")
    path = model_path("synth-tiny-q4_0.gguf")
    r = _cli("info", path)
    assert r.returncode == 0, r.stderr
    assert "architecture:  llama" in r.stdout
    reader = gguf.GGUFReader(path)
    for t in reader.tensors:
        line = next((ln for ln in r.stdout.splitlines() if ln.split() and ln.split()[0] == t.name), None)
        assert line is not None, f"{t.name} missing from info"
        assert t.tensor_type.name.lower() in line.lower()
        assert " x ".join(str(int(d)) for d in t.shape) in line


def test_info_json_matches_gguf_py():
    gguf = pytest.importorskip("gguf")
    path = model_path("qwen2.5-coder-0.5b-q4_k_m.gguf")
    r = _cli("info", path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    reader = gguf.GGUFReader(path)
    assert [t["name"] for t in info["tensors"]] == [t.name for t in reader.tensors]
    assert [t["shape"] for t in info["tensors"]] == [[int(d) for d in t.shape] for t in reader.tensors]
    md = info["metadata"]
    assert md["general.architecture"] == "qwen2"
    assert md["qwen2.block_count"] == int(reader.fields["qwen2.block_count"].parts[-1][0])
    assert md["tokenizer.ggml.tokens"]["len"] == len(reader.fields["tokenizer.ggml.tokens"].data)


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_tokenize_matches_llama_cpp(name):
    g = golden_inputs(name)
    llm = llama.Llama(model_path(g["model"]), vocab_only=True)
    assert llm.n_vocab() == g["n_vocab"]
    for case in g["cases"]:
        assert llm.tokenize(case["prompt"].encode(), add_bos=True, special=False) == case["tokens"], case["prompt"]


def test_tokenize_cli_and_bos_rules():
    g = golden_inputs("qwen2.5-coder-0.5b-q4_k_m")
    path = model_path(g["model"])
    case = g["cases"][1]
    r = _cli("tokenize", "-m", path, case["prompt"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == case["tokens"]  # Qwen adds no BOS
    gem = golden_inputs("gemma3-270m-q4_k_m")
    r = _cli("tokenize", "-m", model_path(gem["model"]), "--no-bos", gem["cases"][1]["prompt"])
    assert json.loads(r.stdout) == gem["cases"][1]["tokens"][1:]  # Gemma's BOS dropped on request


def test_special_tokens_only_when_asked():
    llm = llama.Llama(model_path("qwen2.5-coder-0.5b-q4_k_m.gguf"), vocab_only=True)
    text = b"<|im_start|>user"
    with_special = llm.tokenize(text, add_bos=False, special=True)
    without = llm.tokenize(text, add_bos=False, special=False)
    assert with_special[0] == 151644  # <|im_start|> in Qwen2's vocabulary
    assert 151644 not in without
    assert llm.detokenize(with_special, special=True) == text
    assert llm.detokenize(with_special, special=False) == b"user"


@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b-q4_k_m.gguf", "gemma3-270m-q4_k_m.gguf", "synth-tiny-q4_0.gguf"])
def test_detokenize_roundtrip(name):
    llm = llama.Llama(model_path(name), vocab_only=True)
    for text in [
        "Hello world",
        "two  spaces\tand tab\n\n newlines  ",
        "日本語 😀👩‍👩‍👧 עברית é",
        "x = [1, 2]; // code",
    ]:
        # As in llama-cpp-python: a SentencePiece vocabulary adds a leading space when encoding, and
        # detokenize drops it again when the ids start with BOS.
        ids = llm.tokenize(text.encode(), add_bos=True)
        out = llm.detokenize(ids)
        assert out == text.encode(), (name, text, out)


def test_vocab_only_metadata_and_special_ids():
    llm = llama.Llama(model_path("gemma3-270m-q4_k_m.gguf"), vocab_only=True)
    assert llm.metadata["general.architecture"] == "gemma3"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in llm.metadata.items())
    assert llm.token_bos() == 2 and llm.token_eos() == 1
    with pytest.raises(llama.LlamaError, match="vocab_only"):
        llm.eval([2, 3])


def test_errors_are_typed_and_name_the_file(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(llama.ModelFileNotFoundError) as e:
        llama.Llama(str(missing), vocab_only=True)
    assert "nope.gguf" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(llama.ModelFormatError) as e:
        llama.Llama(str(bad), vocab_only=True)
    assert "bad.gguf" in str(e.value)
    r = _cli("info", str(bad))
    assert r.returncode == 1 and "bad.gguf" in r.stderr and "Traceback" not in r.stderr
