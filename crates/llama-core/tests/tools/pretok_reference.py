#!/usr/bin/env python3
"""Reference pre-tokenizer splits with the Python `regex` module (an independent engine).

Usage: pretok_reference.py PRE N SEED → JSON list of {"text": str, "words": [str]} on stdout.
Applies llama.cpp's regex list for PRE in order; each regex splits every current chunk into its
matches and the gaps between them (llama.cpp's unicode_regex_split). Lines come from the same
deterministic generator as spm_reference.py.
"""

import json
import os
import random
import sys

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spm_reference import line  # noqa: E402

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
PRE = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt-2": [GPT2],
    "llama3": [
        CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ],
    "qwen2": [CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "qwen35": [
        CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ],
    # llama.cpp's rewrite of o200k's \p{Lu}/\p{Ll} classes (what its std::regex runs).
    "gpt-4o": [
        r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:" + CONTRACTIONS[3:] + r"?"
        r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:" + CONTRACTIONS[3:] + r"?"
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ],
    "starcoder": [r"\p{N}", GPT2],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
}


def split(pats, text):
    chunks = [text]
    for p in pats:
        r = regex.compile(p)
        nxt = []
        for c in chunks:
            done = 0
            for m in r.finditer(c):
                if m.start() == m.end():
                    continue
                if m.start() > done:
                    nxt.append(c[done : m.start()])
                nxt.append(m.group())
                done = m.end()
            if done < len(c):
                nxt.append(c[done:])
        chunks = nxt
    return chunks


def main():
    pre, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    r = random.Random(seed)
    out = []
    for i in range(n):
        t = line(r, i)
        out.append({"text": t, "words": split(PRE[pre], t)})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
