#!/usr/bin/env python3
"""Reference ids from PyPI sentencepiece for the SPM tokenizer test.

Usage: spm_reference.py MODEL N SEED  → JSON list of {"text": str, "ids": [bos] + sp.encode(text)}
on stdout. The lines come from a deterministic generator covering code, whitespace runs, CJK,
emoji/ZWJ sequences, RTL scripts, combining marks, control characters and mixtures.
"""
import json
import random
import sys

import sentencepiece as spm

WORDS = ["the", "quick", "brown", "fox", "Hello", "world", "naïve", "café", "Führer", "Straße",
         "über", "résumé", "I'm", "don't", "we'll", "they're", "it's", "you've", "HTTP", "JSON",
         "llama", "tokenizer", "self", "return", "None", "12345", "3.14159", "0x1F", "1e-9"]
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
        "if __name__ == '__main__':\n    main()", "fn main() { println!(\"{}\", 1 + 2); }",
        "SELECT * FROM t WHERE id = 42;", "<div class=\"x\">&amp;</div>", "x = [1,2,3]  # list",
        "    \t\tindented\t  mixed", "#include <stdio.h>\nint main(void){return 0;}", "a->b; c::d; e=>f; g!=h"]
CJK = ["中文分词测试", "日本語のテキスト", "한국어 문장입니다", "漢字とかな交じり", "你好，世界！", "東京タワー"]
EMOJI = ["🦙", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🧑🏿‍💻", "❤️", "🇫🇷", "1️⃣", "🫠", "👩‍❤️‍💋‍👨"]
RTL = ["مرحبا بالعالم", "שלום עולם", "السلام عليكم", "עִבְרִית", "اللُّغَةُ العَرَبِيَّة", "فارسی‌نویسی"]
COMBINING = ["e\u0301", "a\u0308\u0304", "n\u0303", "\u0915\u094d\u0937", "Z\u0351\u036b\u0343\u036a",
             "o\u0338", "\u1100\u1161\u11a8", "ก\u0e31\u0e49"]
MISC = ["¡Hola!", "«quote»", "—dash—", "…", "½ ¼ ¾", "™ © ®", "∑∫√∞", "Ωμπ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "ℕ ⊂ ℤ", "\u00a0nbsp\u00a0", "zero\u200bwidth", "\ufeffbom", "<s>", "</s>", "<unk>",
        "<0x41>", "▁", "▁▁x", "[INST]", "<<SYS>>"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t \t", "\u3000", "\u2003"]


def rand_cpt(r):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF),
              (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF),
              (0xE000, 0xE0FF), (0x20000, 0x2A6DF)]
    lo, hi = r.choice(blocks)
    return chr(r.randint(lo, hi))


def control(r):
    return chr(r.choice(list(range(0x01, 0x20)) + [0x7F, 0x85, 0x9F]))


def line(r, i):
    kind = i % 12
    if kind == 0:
        return r.choice(CODE)
    if kind == 1:
        return "".join(r.choice(SPACES) for _ in range(r.randint(1, 6))) + r.choice(WORDS) + \
            "".join(r.choice(SPACES) for _ in range(r.randint(0, 4)))
    if kind == 2:
        return "".join(r.choice(CJK + [" ", "。", "、"]) for _ in range(r.randint(1, 4)))
    if kind == 3:
        return " ".join(r.choice(EMOJI + WORDS) for _ in range(r.randint(1, 6)))
    if kind == 4:
        return " ".join(r.choice(RTL + WORDS[:5]) for _ in range(r.randint(1, 4)))
    if kind == 5:
        return "".join(r.choice(COMBINING + WORDS) for _ in range(r.randint(1, 5)))
    if kind == 6:
        return "".join(r.choice([control(r), r.choice(WORDS), " "]) for _ in range(r.randint(1, 8)))
    if kind == 7:
        return "".join(rand_cpt(r) for _ in range(r.randint(1, 20)))
    if kind == 8:
        return r.choice(SPACES) * r.randint(1, 40)
    if kind == 9:
        return " ".join(r.choice(WORDS + MISC) for _ in range(r.randint(1, 10)))
    if kind == 10:
        pool = WORDS + CODE + CJK + EMOJI + RTL + COMBINING + MISC + SPACES
        return "".join(r.choice(pool) for _ in range(r.randint(1, 12)))
    return r.choice(WORDS) * r.randint(1, 30)


def main():
    model, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sp = spm.SentencePieceProcessor(model_file=model)
    r = random.Random(seed)
    out = []
    for i in range(n):
        t = line(r, i)
        out.append({"text": t, "ids": [sp.bos_id()] + sp.encode(t)})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
