"""Roofline figures of a GGUF model for docs/PERFORMANCE.md.

    python tools/roofline.py MODEL.gguf [--bw GB/s] [--peak GOPS]

Generation (tg) reads every matrix once per token: bytes/token ÷ memory bandwidth bounds tg.
Prompt processing (pp) does 2·params integer ops per token on the matrices: ops/token ÷ peak
bounds pp (attention and elementwise work are left out: a few % at 512 tokens).
"""

import argparse

import gguf

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--bw", type=float, default=21.0, help="read bandwidth, GB/s (measured: 2 threads)")
ap.add_argument("--peak", type=float, default=589.0, help="int8 GOPS: 2 cores x 2.3 GHz x 64 MAC x 2")
a = ap.parse_args()
r = gguf.GGUFReader(a.model)
arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
bytes_tok = 0
macs_tok = 0
tied = not any(t.name == "output.weight" for t in r.tensors)
for t in r.tensors:
    if len(t.shape) < 2:
        continue
    n = int(t.n_elements)
    if t.name == "token_embd.weight" and not tied:
        continue  # get_rows reads one row per token
    bytes_tok += int(t.n_bytes)
    macs_tok += n
print(
    f"{a.model.split('/')[-1]}: arch {arch}, matrices {bytes_tok / 1e6:.1f} MB read per token, "
    f"{2 * macs_tok / 1e9:.2f} GOP per token"
)
print(f"  tg bound at {a.bw:.0f} GB/s: {a.bw * 1e9 / bytes_tok:.1f} tok/s")
print(f"  pp bound at {a.peak:.0f} GOPS: {a.peak * 1e9 / (2 * macs_tok):.0f} tok/s")
