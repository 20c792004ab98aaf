#!/usr/bin/env python3
"""Reference reranking scores for tests/test_embed.py: tests/data/embed/bert-tiny-rerank/llamacpp-rank.json.

llama.cpp (llama-cpp-python 0.3.36, low-level API, pooling RANK, flash attention off) scores query /
document pairs (each within the fixture's 64 positions) on the f32 and f16 conversions of
tests/data/embed/bert-tiny-rerank (a random-weight BertForSequenceClassification). The GGUFs are
made by `llama._llama.convert` and checked here against the sha256 of llama.cpp's own conversion
(llamacpp-conversion.json, recorded by tools/make_bert_fixture.py), so llama.cpp runs its own file.
Each pair's tokens are built as llama-server's `format_prompt_rerank` builds them, from llama.cpp's
tokenizer and its vocabulary flags (add_bos, add_eos, add_sep). Recorded per conversion:

    tokens   llama.cpp's tokens of each pair
    single   each pair decoded alone (one sequence per batch)
    batch    all pairs of a query decoded in one batch, one sequence each (as llama-server batches
             its slots and as `Llama.rank` packs them)

and `cls`: the f32 file with a dense head layer added (`cls.weight` [16][16], `cls.bias`; seeded
normal values, recorded as `cls_tensors`): llama.cpp's RoBERTa-style head, cls → tanh → cls.output,
which a BERT conversion lacks (llama.cpp's converter drops BERT's pooler).

    python tools/make_rerank_reference.py
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import gguf_with_tensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "data" / "embed" / "bert-tiny-rerank"

QUERIES = {
    "How many people live in Berlin?": [
        "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
        "Berlin is well known for its museums.",
        "New York City is famous for the Metropolitan Museum of Art.",
        "",
        "The population of Berlin grew by about 50,000 people in 2014, the statistics office said.",
    ],
    "what is panda?": [
        "hi",
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
        "is a bear species endemic to China.",
        "Pandas eat bamboo.",
    ],
    "Wie spät ist es? 今何時ですか": ["Es ist drei Uhr.", "午後三時です。", "It is 3 pm."],
}


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def pair_tokens(llm: llama_cpp.Llama, query: str, doc: str) -> list[int]:
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos == -1:
        eos = llama_cpp.llama_vocab_sep(vocab)
    out: list[int] = []
    if llama_cpp.llama_vocab_get_add_bos(vocab):
        out.append(llama_cpp.llama_vocab_bos(vocab))
    out += llm.tokenize(query.encode("utf-8"), add_bos=False, special=False)
    if llama_cpp.llama_vocab_get_add_eos(vocab):
        out.append(eos)
    if llama_cpp.llama_vocab_get_add_sep(vocab):
        out.append(llama_cpp.llama_vocab_sep(vocab))
    out += llm.tokenize(doc.encode("utf-8"), add_bos=False, special=False)
    if llama_cpp.llama_vocab_get_add_eos(vocab):
        out.append(eos)
    return out


def decode(llm: llama_cpp.Llama, seqs: list[list[int]]) -> list[float]:
    """Scores of `seqs`, decoded in one batch (sequence i has id i)."""
    n = sum(len(s) for s in seqs)
    batch = llama_cpp.llama_batch_init(n, 0, len(seqs))
    try:
        k = 0
        for sid, s in enumerate(seqs):
            for pos, t in enumerate(s):
                batch.token[k] = t
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = sid
                batch.logits[k] = True
                k += 1
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(llm._ctx.ctx, batch)
        assert rc == 0, f"llama_decode: {rc}"
        return [float(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, sid)[0]) for sid in range(len(seqs))]
    finally:
        llama_cpp.llama_batch_free(batch)


def main() -> None:
    conv = json.loads((MODEL / "llamacpp-conversion.json").read_text(encoding="utf-8"))
    out: dict = {"model": MODEL.name, "queries": QUERIES}
    with tempfile.TemporaryDirectory() as tmp:
        for t in ["f32", "f16"]:
            gguf = Path(tmp) / f"rerank-{t}.gguf"
            _llama.convert(str(MODEL), t, str(gguf), None, True)
            assert sha256(gguf) == conv[t]["sha256"], f"{t}: not llama.cpp's conversion"
            if t == "f32":
                rng = np.random.default_rng(7)
                cls = {"cls.weight": rng.normal(0, 0.3, (16, 16)), "cls.bias": rng.normal(0, 0.3, 16)}
                out["cls_tensors"] = {k: v.astype(np.float32).tolist() for k, v in cls.items()}
                gguf_with_tensors(gguf, Path(tmp) / "rerank-cls.gguf", out["cls_tensors"])
                out["cls"] = score(Path(tmp) / "rerank-cls.gguf")
            out[t] = score(gguf)
    path = MODEL / "llamacpp-rank.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"-> {path}")


def score(gguf: Path) -> dict:
    """llama.cpp's tokens and scores of every pair on `gguf`."""
    llm = llama_cpp.Llama(
        str(gguf),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
        n_ctx=512,
        n_batch=512,
        n_ubatch=512,
        flash_attn=False,
        verbose=False,
    )
    rec: dict = {"tokens": {}, "single": {}, "batch": {}}
    for q, docs in QUERIES.items():
        seqs = [pair_tokens(llm, q, d) for d in docs]
        rec["tokens"][q] = seqs
        rec["single"][q] = [decode(llm, [s])[0] for s in seqs]
        rec["batch"][q] = decode(llm, seqs)
    return rec


if __name__ == "__main__":
    main()
