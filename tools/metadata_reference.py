#!/usr/bin/env python3
"""gguf-py's authorship-metadata heuristics, recorded for crates/llama-convert/tests/card.rs:
tests/data/convert/gguf_py_metadata.json.

    /work/venv-ref/bin/python tools/metadata_reference.py [--gguf-py DIR]

For model ids, `Metadata.get_model_id_components(id, total_params)`; for model folders (a name, a
README.md, a config.json with `_name_or_path`, a generation_config.json),
`Metadata.load(None, folder, None, total_params)`.
gguf-py is llama.cpp's (default: the llama-cpp-python 0.3.36 sdist's gguf-py).
"""

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IDS = [
    "Mixtral-8x7B-Instruct-v0.1",
    "meta-llama/Llama-2-7b-hf",
    "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "bigscience/bloom-7b1-petals",
    "nreimers/MiniLM-L6-H384-uncased",
    "sentence-transformers/all-MiniLM-L6-v2",
    "TheBloke/Mistral-7B-Instruct-v0.2-GGUF",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "google/gemma-3-270m-it",
    "microsoft/Phi-3.5-mini-instruct",
    "openai/gpt-oss-20b",
    "Qwen/Qwen3-30B-A3B",
    "deepseek-ai/DeepSeek-V3",
    "BAAI/bge-small-en-v1.5",
    "EleutherAI/pythia-1.4b-deduped-v0",
    "mistralai/Mixtral-8x22B-v0.1",
    "tiiuae/falcon-7b",
    "a-b--c",
    "./local-model",
    "model",
    "Llama-3.1-8B-128k",
    "Qwen3-0.6B",
    "x-small",
    "phi-2",
    "gpt2-xl",
    "stabilityai/stablelm-2-zephyr-1_6b",
    "lora-test-lora",
    "name with spaces",
]
TOTALS = [0, 22_700_000, 7_000_000_000, -100_000_000]

CARDS = {
    "plain": "---\nlicense: apache-2.0\nlanguage: en\ntags:\n- a\n- b\npipeline_tag: text-generation\n---\n# x\n",
    "lists": "---\nlicense:\n- mit\n- apache-2.0\nlanguage:\n- en\n- no\n- fr\ndatasets: [foo/bar, baz]\n"
    "base_model:\n- meta-llama/Llama-3.1-8B\n- https://huggingface.co/org/Name-v2\n---\n",
    "names": "---\nmodel_name: My Model\nmodel_creator: someone\nmodel_type: llama\nversion: v3\n"
    "description: >-\n  a folded\n  description\nlicense_name: custom\nlicense_link: LICENSE\n---\n",
    "datasets": "---\ndatasets:\n- https://huggingface.co/datasets/x\n- https://huggingface.co/org/ds-name\n"
    "- embedding-data/QQP\n- s2orc\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n---\n",
    "none": "# no front matter\n",
}
GENERATION = {
    "Qwen2.5-Coder-0.5B-Instruct": {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    },
    "model": {"temperature": 1, "penalty_repeat": None, "repetition_penalty": 1.1, "min_p": 0.05},
}
FOLDERS = [
    ("Qwen2.5-Coder-0.5B-Instruct", "plain", None),
    ("model", "lists", "org/Some-Model-7B-v1.5"),
    ("bert-tiny", "names", None),
    ("SmolLM2-135M", "datasets", "/abs/path/to/model"),
    ("Llama-3.2-1B", "none", "meta-llama/Llama-3.2-1B"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-py", default="/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py")
    sys.path.insert(0, ap.parse_args().gguf_py)
    from gguf.metadata import Metadata

    ids = []
    for i in IDS:
        for t in TOTALS:
            ids.append({"id": i, "total_params": t, "components": list(Metadata.get_model_id_components(i, t))})
    folders = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, card, nop in FOLDERS:
            d = Path(tmp) / name
            d.mkdir()
            (d / "README.md").write_text(CARDS[card])
            if name in GENERATION:
                (d / "generation_config.json").write_text(json.dumps(GENERATION[name]))
            if nop is not None:
                (d / "config.json").write_text(json.dumps({"_name_or_path": nop}))
            m = Metadata.load(None, d, None, 1_000_000_000)
            fields = {k: v for k, v in dataclasses.asdict(m).items() if v is not None}
            folders.append(
                {
                    "folder": name,
                    "card": CARDS[card],
                    "config_name_or_path": nop,
                    "generation_config": GENERATION.get(name),
                    "metadata": fields,
                }
            )
    out = ROOT / "tests/data/convert/gguf_py_metadata.json"
    out.write_text(json.dumps({"ids": ids, "folders": folders}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(ids)} ids, {len(folders)} folders")


if __name__ == "__main__":
    main()
