#!/usr/bin/env python3
"""llama.cpp's embeddings for the embedding families without a real checkpoint here:
tests/data/embed/families.npz and families.json, for tests/test_embed.py.

    nomic_f32, nomic_f16   a random-weight nomic-bert (tests/synth_encoders.py: rope, fused Q/K/V,
                           SwiGLU; f32 and f16 matrices) on the inputs of sentences.json, mean
                           pooled, not normalized; NaN rows for inputs over 512 tokens (or none)
    qwen3_last             the qwen3 architecture fixture (tests/data/arch/qwen3, converted f32)
                           as Qwen3-Embedding runs: last-token pooling of the final-norm hidden
                           states, on the first 40 inputs
families.json holds each GGUF's sha256 (a changed numpy stream or converter fails the test before
the vectors are compared) and llama.cpp's token ids.

llama-cpp-python 0.3.36 (`embed`, one text per call, flash attention off):

    python tools/make_encoder_reference.py
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np

from llama import _llama

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "embed"
sys.path.insert(0, str(ROOT / "tests"))
from synth_encoders import nomic_bert_gguf  # noqa: E402

N_QWEN = 40


def embed_all(gguf: Path, texts: list[str], pooling: int) -> tuple[np.ndarray, list[list[int]]]:
    llm = llama_cpp.Llama(
        str(gguf),
        embedding=True,
        pooling_type=pooling,
        n_ctx=512,
        n_batch=512,
        n_ubatch=512,
        flash_attn=False,
        verbose=False,
    )
    rows, ids = [], []
    for t in texts:
        tok = llm.tokenize(t.encode("utf-8"))
        ids.append(tok)
        if not tok or len(tok) > 512:  # nothing to embed (qwen3 adds no BOS), or over the context
            rows.append(np.full(llm.n_embd(), np.nan, dtype=np.float32))
            continue
        rows.append(np.asarray(llm.embed(t, normalize=False), dtype=np.float32))
    return np.stack(rows), ids


def main() -> None:
    texts = json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))
    ref: dict[str, np.ndarray] = {}
    meta: dict = {"sha256": {}, "ids": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for t in ["f32", "f16"]:
            g = Path(tmp) / f"nomic-{t}.gguf"
            nomic_bert_gguf(g, t)
            meta["sha256"][f"nomic_{t}"] = hashlib.sha256(g.read_bytes()).hexdigest()
            ref[f"nomic_{t}"], meta["ids"][f"nomic_{t}"] = embed_all(g, texts, llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        g = Path(tmp) / "qwen3.gguf"
        _llama.convert(str(ROOT / "tests" / "data" / "arch" / "qwen3"), "f32", str(g), None, True)
        meta["sha256"]["qwen3_last"] = hashlib.sha256(g.read_bytes()).hexdigest()
        ref["qwen3_last"], meta["ids"]["qwen3_last"] = embed_all(g, texts[:N_QWEN], llama_cpp.LLAMA_POOLING_TYPE_LAST)
    np.savez_compressed(DATA / "families.npz", **ref)
    (DATA / "families.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    print(f"-> {DATA / 'families.npz'}")


if __name__ == "__main__":
    main()
