#!/usr/bin/env python3
"""llama.cpp's tokenizer answers, recorded as test data: tests/data/vocab/llamacpp/<name>.json.

    python tools/tokenizer_reference.py [NAME ...]      (all vocabularies by default)
    python tools/tokenizer_reference.py --list

For each vocabulary, llama-cpp-python (`Llama(path, vocab_only=True)`) gives:
  - what its load decided: n_vocab, add_bos/add_eos, the special ids (bos, eos, eot, sep, pad, nl,
    fim_*), the end-of-generation set (`llama_vocab_is_eog` over every id), and every token whose
    attribute (`llama_vocab_get_attr`) differs from the one its metadata token_type gives (the
    "control-looking token" overrides, UNUSED, RSTRIP, …; as runs [first_id, last_id, attr]) — or
    the load error;
  - `cases`: hand-picked texts (control-looking tokens inside text, FIM, chat markup, unicode,
    numbers, whitespace runs, code), each tokenized with add_special/parse_special = 00, 01, 10, 11
    (`Llama.tokenize(text, add_bos=..., special=...)`), and the parse_special ids ("11") turned back
    into text by llama-cpp-python's `detokenize(ids, special=False/True)` and by llama.cpp's
    `llama_detokenize(remove_special, unparse_special)` for the four flag pairs;
  - `lines`: generated lines (crates/llama-core/tests/tools/spm_reference.py), tokenized 00 and 11
    (00 only, but more lines, for the pre-tokenizer variants).

Vocabularies:
  - tests/data/vocab/ggml-vocab-*.gguf (committed);
  - the test models in $LLAMA_TEST_MODELS (default ~/.cache/llama-test-models);
  - arch-<family>: llama.cpp's `convert_hf_to_gguf.py tests/data/arch/<family> --vocab-only`, checked
    against the tokenizer metadata of its full conversion recorded in llamacpp-conversion.json;
  - variants of the committed vocabs: another tokenizer.ggml.pre (pre-tokenizers and the flags
    tied to each name), token texts/types replaced by control-looking ones (NORMAL / USER_DEFINED
    `<|im_end|>`, several texts of one detection list, harmony's `<|return|>`/`<|call|>`/`<|end|>`,
    …, equal-length special tokens overlapping in text), metadata FIM/EOT ids, a Phi-3 model name
    (cases: TEXTS + the variant's own "texts"). Their `source` records the edit, which the Rust
    test (crates/llama-core/tests/tokenizer_llamacpp.rs) applies to the same base file.

llama-cpp-python's own `detokenize` reads each piece into a 32-byte buffer; pieces are read here
with a large buffer and the same leading-space rule, and checked equal to it when all are short.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "crates" / "llama-core" / "tests" / "tools"))

import make_arch_fixtures as fx  # noqa: E402
from spm_reference import line  # noqa: E402

OUT = REPO / "tests" / "data" / "vocab" / "llamacpp"
VOCAB_DIR = REPO / "tests" / "data" / "vocab"
MODELS = Path(os.environ.get("LLAMA_TEST_MODELS", Path.home() / ".cache" / "llama-test-models"))
SPECIAL_IDS = [
    "bos",
    "eos",
    "eot",
    "sep",
    "pad",
    "nl",
    "fim_pre",
    "fim_suf",
    "fim_mid",
    "fim_pad",
    "fim_rep",
    "fim_sep",
]
N_LINES = 80  # tokenized 00 and 11
N_LINES_PRE = 250  # the pre-tokenizer variants: tokenized 00 only

TEXTS = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\t",
    "Hello world",
    " Hello world",
    "Hello World! How are you?",
    "a<|im_end|>b",
    "<|endoftext|>",
    "<|endoftext|><|endoftext|>x",
    "<|fim_prefix|>x<|fim_suffix|>",
    "<|fim_prefix|>def f():\n    <|fim_suffix|>\n    return 1<|fim_middle|>",
    "<end_of_turn>",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<|eot_id|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<s>",
    "</s>",
    "a</s>b",
    "<s>[INST] hi [/INST] ok</s>",
    "<unk>",
    "<|end|>",
    "<|user|>\nhello <|end|>\n<|assistant|>  ok<|end|>  \n",
    "<|start|>assistant<|channel|>analysis<|message|>think<|end|><|return|><|call|>",
    "<|constrain|>json<|message|>{}<|call|>",
    "<|tool_response>ok</s><turn|>",
    "<|calls|>x<|flush|>y<|end|>",
    "<|fim_pad|><|repo_name|><|file_sep|><|fim_repo|><reponame>",
    "<PRE> a <SUF> b <MID>",
    "<fim-prefix><fim_prefix><PAD>[PAD]",
    "<unused0><|unused_1|>",
    "<|eom_id|><|end_of_text|><eos>[e~[",
    "<pad><bos><mask>",
    "Привет, мир! Как дела?",
    "日本語のテキストと漢字",
    "🦙 llama 🦙🦙 👨‍👩‍👧‍👦",
    "naïve café résumé",
    "e\u0301 a\u0308\u0304 \u0915\u094d\u0937 नमस्ते",
    "1234567890 3.14159 1,000,000 0x1F",
    "a    b\t\tc\n\n  d   ",
    "   leading and trailing   ",
    "def f(x):\n    return x**2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "I'm you're he's we've they'll I'd DON'T it's",
    "Hello , world ! it 's a ' b",
]


def gguf():
    return fx.gguf_module()


def enc(b: bytes) -> Any:
    """Bytes as a JSON string when valid UTF-8, else {"hex": ...}."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


# ---------------------------------------------------------------------------------------------
# Vocabulary sources


def pre_variant(pre: str) -> dict[str, Any]:
    return {
        "kind": "variant",
        "base": {"kind": "vocab", "file": "ggml-vocab-gpt-2.gguf"},
        "metadata": {"tokenizer.ggml.pre": pre},
        "tokens": [],
    }


N, UNK, C, U, UNUSED = 1, 2, 3, 4, 5

# Control-looking texts given to rare gpt-2 tokens (ids 50200..), with the type they get.
GPT2_CONTROL_TEXTS = [
    ("<|im_end|>", N),
    ("<|im_start|>", N),
    ("<|eot_id|>", U),
    ("<end_of_turn>", N),
    ("<|fim_prefix|>", N),
    ("<PRE>", U),
    ("<fim-prefix>", N),
    ("<|fim_suffix|>", N),
    ("<SUF>", N),
    ("<|fim_middle|>", U),
    ("<|fim_pad|>", N),
    ("<PAD>", N),
    ("[PAD]", U),
    ("<|repo_name|>", N),
    ("<reponame>", N),
    ("<|file_sep|>", N),
    ("<|eom_id|>", N),
    ("<unused0>", C),
    ("<|unused_1|>", U),
    ("</s>", N),
    ("<|channel|>", C),
    ("<|message|>", N),
    ("<eos>", N),
    ("[e~[", N),
    ("<s>", U),
    ("<|end_of_text|>", C),
    ("<|fim_repo|>", C),
    ("<fim_prefix>", U),
]


def edits(base_id: int, texts: list[tuple[str, int]]) -> list[list[Any]]:
    return [[base_id + i, t, ty] for i, (t, ty) in enumerate(texts)]


def variant(base: str, tokens: list[list[Any]], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "variant", "base": {"kind": "vocab", "file": base}, "metadata": metadata or {}, "tokens": tokens}


def sources() -> dict[str, dict[str, Any]]:
    s: dict[str, dict[str, Any]] = {}
    for p in sorted(VOCAB_DIR.glob("ggml-vocab-*.gguf")):
        s[p.stem.removeprefix("ggml-vocab-")] = {"kind": "vocab", "file": p.name}
    for m in [
        "gemma3-270m-q4_k_m",
        "qwen2.5-coder-0.5b-q4_k_m",
        "smollm2-135m-instruct-q4_1",
        "synth-tiny-q4_0",
        "synth-1b-q4_0",
        "synth-1b-q8_0",
    ]:
        s[m] = {"kind": "model", "file": f"{m}.gguf"}
    for fam in fx.FAMILIES:
        s[f"arch-{fam}"] = {"kind": "arch", "family": fam, "convert_args": fx.FAMILIES[fam].convert_args}
    for pre in [
        "default",
        "llama-bpe",
        "dbrx",
        "qwen2",
        "stablelm2",
        "qwen35",
        "gpt-4o",
        "starcoder",
        "smollm",
        "command-r",
        "falcon",
        "mpt",
        "trillion",
        "no-such-pre",
    ]:
        s[f"gpt-2+pre={pre}"] = pre_variant(pre)
    s["gpt-2+control-texts"] = variant("ggml-vocab-gpt-2.gguf", edits(50200, GPT2_CONTROL_TEXTS))
    s["gpt-2+harmony"] = variant(
        "ggml-vocab-gpt-2.gguf",
        edits(
            50200,
            [
                ("<|return|>", N),
                ("<|call|>", N),
                ("<|end|>", N),
                ("<|start|>", N),
                ("<|constrain|>", C),
                ("<|channel|>", N),
                ("<|message|>", U),
            ],
        ),
    )
    s["gpt-2+solar-open"] = variant(
        "ggml-vocab-gpt-2.gguf", edits(50200, [("<|calls|>", N), ("<|flush|>", U), ("<|end|>", C)])
    )
    s["gpt-2+tool-response"] = variant(
        "ggml-vocab-gpt-2.gguf", edits(50200, [("<|tool_response>", N), ("</s>", U), ("<turn|>", N)])
    )
    s["gpt-2+fim-metadata"] = variant(
        "ggml-vocab-gpt-2.gguf",
        edits(50200, [("<|im_end|>", N), ("<|fim_prefix|>", N), ("<|fim_suffix|>", N), ("<|fim_pad|>", N)]),
        {
            "tokenizer.ggml.eot_token_id": 50101,
            "tokenizer.ggml.fim_pre_token_id": 50102,
            "tokenizer.ggml.fim_suf_token_id": 50103,
            "tokenizer.ggml.suffix_token_id": 50104,
            "tokenizer.ggml.fim_pad_token_id": 50105,
        },
    )
    # Equal-length special tokens that overlap in text: which is carved out first follows the order
    # llama.cpp's std::sort (unstable) leaves them in.
    # (Greek capitals: no gpt-2 token text is raw Greek, so no text becomes a duplicate.)
    abc = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ"
    windows = [(abc[i : i + 3], U if i % 3 else C) for i in range(22)]
    windows += [(abc[i : i + 3][::-1], U) for i in range(0, 22, 2)]
    s["gpt-2+overlapping-specials"] = variant("ggml-vocab-gpt-2.gguf", edits(50200, windows))
    s["gpt-2+overlapping-specials"]["texts"] = [abc, abc[::-1], abc + " " + abc[::-1], "xΑΒΓΔx ΒΓΔΕΖ ΓΒΑ"]
    spm_texts = [
        ("<|im_end|>", N),
        ("<end_of_turn>", U),
        ("<|fim_prefix|>", N),
        ("<|channel|>", N),
        ("<unused5>", C),
        ("<|endoftext|>", N),
        ("<|user|>", U),
        ("<|assistant|>", C),
        ("<|end|>", N),
    ]
    s["llama-spm+control-texts"] = variant("ggml-vocab-llama-spm.gguf", edits(31900, spm_texts))
    s["llama-spm+phi3-name"] = variant(
        "ggml-vocab-llama-spm.gguf", edits(31900, spm_texts), {"general.name": "Phi-3 mini (test)"}
    )
    s["llama-spm+phi3-name-no-endoftext"] = variant(
        "ggml-vocab-llama-spm.gguf", edits(31900, spm_texts[:5]), {"general.name": "my phi3 finetune"}
    )
    return s


def base_path(src: dict[str, Any]) -> Path:
    if src["kind"] == "vocab":
        return VOCAB_DIR / src["file"]
    if src["kind"] == "model":
        return MODELS / src["file"]
    raise ValueError(src)


def write_variant(src: dict[str, Any], out: Path) -> None:
    """The base GGUF with metadata values and token texts/types replaced (gguf-py)."""
    g = gguf()
    r = g.GGUFReader(base_path(src["base"]))
    arch = r.fields["general.architecture"].contents()
    w = g.GGUFWriter(str(out), arch)
    meta = dict(src["metadata"])
    tokens = types = None
    if src["tokens"]:
        tokens = list(r.fields["tokenizer.ggml.tokens"].contents())
        types = list(r.fields["tokenizer.ggml.token_type"].contents())
        for i, text, ty in src["tokens"]:
            tokens[i], types[i] = text, ty
        # llama.cpp aborts on duplicate texts (GGML_ASSERT on token_to_id's size).
        assert len(set(tokens)) == len(tokens), "a replaced text duplicates another token"
    for f in r.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == g.GGUFValueType.ARRAY else None
        v = f.contents()
        if f.name == "tokenizer.ggml.tokens" and tokens is not None:
            v = tokens
        elif f.name == "tokenizer.ggml.token_type" and types is not None:
            v = types
        elif f.name in meta:
            v = meta.pop(f.name)
        w.add_key_value(f.name, v, vt, sub_type=sub)
    for k, v in meta.items():
        w.add_key_value(k, v, g.GGUFValueType.STRING if isinstance(v, str) else g.GGUFValueType.UINT32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


def convert_arch(family: str, convert_args: list[str], out: Path) -> None:
    """llama.cpp's converter on the fixture, vocab only; its tokenizer metadata must equal that of the
    full conversion recorded in llamacpp-conversion.json."""
    folder = fx.OUT / family
    cmd = [sys.executable, str(fx.LLAMA_CPP / "convert_hf_to_gguf.py"), str(folder), "--vocab-only"]
    cmd += [*convert_args, "--outfile", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()[-2000:]}")
    got = fx.dump_gguf(out)["metadata"]
    want = json.loads((folder / "llamacpp-conversion.json").read_text())["gguf_f32"]["metadata"]
    keys = sorted(k for k in want if k.startswith("tokenizer.") or k == "general.name")
    diff = [k for k in keys if got.get(k) != want[k]] + [k for k in got if k.startswith("tokenizer.") and k not in want]
    if diff:
        raise RuntimeError(f"{family}: vocab-only conversion differs from the recorded one in {diff}")


# ---------------------------------------------------------------------------------------------
# llama.cpp's answers


def record(name: str, src: dict[str, Any], path: Path) -> dict[str, Any]:
    import llama_cpp

    out: dict[str, Any] = {
        "name": name,
        "source": src,
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} (vocab_only)",
    }
    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except Exception as e:  # noqa: BLE001 - the failure is the answer
        out["load_error"] = f"{type(e).__name__}: {e}".replace(str(path), path.name)
        return out
    v = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_vocab_n_tokens(v)
    g = gguf()
    rd = g.GGUFReader(path)
    types = list(rd.fields["tokenizer.ggml.token_type"].contents()) if "tokenizer.ggml.token_type" in rd.fields else []
    type_attr = {0: 0, 1: 1 << 2, 2: 1 << 0, 3: 1 << 3, 4: 1 << 4, 5: 1 << 1, 6: 1 << 5}
    out["n_vocab"] = n
    out["add_bos"] = bool(llama_cpp.llama_vocab_get_add_bos(v))
    out["add_eos"] = bool(llama_cpp.llama_vocab_get_add_eos(v))
    special = {}
    for k in SPECIAL_IDS:
        i = getattr(llama_cpp, f"llama_vocab_{k}")(v)
        special[k] = i if i >= 0 else None
    out["special"] = special
    out["eog"] = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(v, i)]
    changed = []
    for i in range(n):
        a = llama_cpp.llama_vocab_get_attr(v, i)
        if a != type_attr.get(types[i] if types else 1, 0):
            changed.append([i, a])
    out["attr_changed"] = runs(changed)

    buf = ctypes.create_string_buffer(1 << 16)

    def piece(t: int, special: bool) -> bytes:
        k = llama_cpp.llama_token_to_piece(v, t, buf, len(buf), 0, special)
        assert k >= 0
        return buf.raw[:k]

    bos = llama_cpp.llama_vocab_bos(v)

    def detokenize(ids: list[int], special: bool) -> bytes:
        pieces = [piece(t, special) for t in ids]
        b = b"".join(pieces)
        if ids and ids[0] == bos and b[:1] == b" ":
            b = b[1:]
        if all(len(p) <= 32 for p in pieces):
            assert b == llm.detokenize(ids, special=special), (ids, special)
        return b

    def llama_detokenize(ids: list[int], remove_special: bool, unparse_special: bool) -> bytes:
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        k = llama_cpp.llama_detokenize(v, arr, len(ids), buf, len(buf), remove_special, unparse_special)
        assert k >= 0
        return buf.raw[:k]

    def tok(text: bytes, add: bool, special: bool) -> list[int]:
        return llm.tokenize(text, add_bos=add, special=special)

    cases = []
    for t in TEXTS + src.get("texts", []):
        b = t.encode()
        ids = {f"{int(a)}{int(s)}": tok(b, a, s) for a in (False, True) for s in (False, True)}
        ids11 = ids["11"]
        cases.append(
            {
                "text": t,
                "ids": ids,
                "detokenize": {f"{int(s)}": enc(detokenize(ids11, s)) for s in (False, True)},
                "llama_detokenize": {
                    f"{int(r)}{int(u)}": enc(llama_detokenize(ids11, r, u))
                    for r in (False, True)
                    for u in (False, True)
                },
            }
        )
    out["cases"] = cases
    rng = random.Random(20250611)
    pre_only = src["kind"] == "variant" and "tokenizer.ggml.pre" in src["metadata"]
    lines = []
    for i in range(N_LINES_PRE if pre_only else N_LINES):
        b = line(rng, i).encode()
        ids = {"00": tok(b, False, False)}
        if not pre_only:
            ids["11"] = tok(b, True, True)
        lines.append({"text": b.decode(), "ids": ids})
    out["lines"] = lines
    return out


def runs(changed: list[list[int]]) -> list[list[int]]:
    """[[id, attr], ...] as [[first_id, last_id, attr], ...] over consecutive ids with one attr."""
    out: list[list[int]] = []
    for i, a in changed:
        if out and out[-1][1] == i - 1 and out[-1][2] == a:
            out[-1][1] = i
        else:
            out.append([i, i, a])
    return out


def write(path: Path, obj: dict[str, Any]) -> None:
    """Top-level keys one per line, each case / line on one line (readable diffs, small files)."""
    parts = []
    for k, val in obj.items():
        if k in ("cases", "lines") or (k == "attr_changed" and len(val) > 0):
            items = ",\n".join("    " + json.dumps(x, ensure_ascii=False) for x in val)
            parts.append(f"  {json.dumps(k)}: [\n{items}\n  ]")
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(val, ensure_ascii=False)}")
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    srcs = sources()
    if a.list:
        print("\n".join(srcs))
        return
    names = a.names or list(srcs)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = srcs[name]
            if src["kind"] == "variant":
                path = Path(tmp) / f"{name}.gguf"
                write_variant(src, path)
            elif src["kind"] == "arch":
                path = Path(tmp) / f"{name}.gguf"
                convert_arch(src["family"], src["convert_args"], path)
            else:
                path = base_path(src)
                if not path.exists():
                    print(f"{name}: {path} not found, skipped", file=sys.stderr)
                    continue
            obj = record(name, src, path)
            write(OUT / f"{name}.json", obj)
            status = obj.get("load_error") or f"{len(obj['cases'])} cases, {len(obj['lines'])} lines"
            print(f"{name}: {status}", file=sys.stderr)
            if path.parent == Path(tmp):
                path.unlink()


if __name__ == "__main__":
    main()
