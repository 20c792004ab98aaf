"""The seed's whole walk, end to end: pull (Meta layout, md5-checked, from a loopback server) →
convert → quantize → LLaMA.load → apply → sample_next_token → decode."""

import hashlib
import json
import subprocess
import sys

import numpy as np

import llama
from conftest import shared_path
from test_pull import Server


def _cli(*args):
    r = subprocess.run([sys.executable, "-m", "llama", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_pull_convert_quantize_load_apply_decode(tmp_path):
    src = shared_path("fixtures", "meta-llama1")
    server = Server()
    try:
        for p in src.rglob("*"):
            if p.is_file():
                server.files["/meta/" + p.relative_to(src).as_posix()] = p.read_bytes()
        model_dir = tmp_path / "data" / "model" / "tiny"
        _cli("pull", "-m", str(model_dir), "-s", "tiny", "--source", f"{server.url}/meta", "--quiet")
    finally:
        server.stop()
    for name in ("consolidated.00.pth", "params.json"):
        assert (
            hashlib.md5((model_dir / name).read_bytes()).hexdigest()
            == hashlib.md5((src / "tiny" / name).read_bytes()).hexdigest()
        )
    assert (model_dir.parent / "tokenizer.model").is_file()

    _cli("convert", str(model_dir), "--quiet")
    f16 = model_dir / "ggml-model-f16.gguf"
    assert f16.is_file()
    _cli("quantize", str(model_dir), "--type", "q4_0", "--quiet")
    q4 = model_dir / "ggml-model-q4_0.gguf"
    info = json.loads(_cli("info", str(q4), "--json"))
    assert info["metadata"]["general.file_type"] == 2  # MOSTLY_Q4_0
    assert any(t["type"] == "q4_0" for t in info["tensors"])

    model = llama.LLaMA.load(str(q4), 64, llama.GGMLType.F32)
    tok = model.get_tokenizer()
    tokens = tok.encode("Once upon a time, there was a little llama.")
    ref = json.loads(shared_path("fixtures", "reference.json").read_text())["models"]["llama1"][0]
    assert tokens == ref["tokens"]  # SentencePiece ids, as transformers' tokenizer gave them
    mem = model.estimate_mem_per_token(2)
    logits = model.apply(tokens, 0, mem, 2)
    assert logits.shape == (32000,) and np.isfinite(logits).all()
    # 4-bit weights: the best token should still be among transformers' top 10 for the last position.
    assert int(np.argmax(logits)) in [t for t, _ in ref["top10"][-1]]
    nxt = llama.sample_next_token(tokens, logits, seed=3)
    text = tok.decode(tokens + [nxt])
    assert text.startswith("Once upon a time, there was a little llama.")
