"""A/B decode speed of two or more builds of `examples/bench_model`, alternated so a neighbour on
the host slows each alike (docs/PERFORMANCE.md: the read bandwidth here moves by a third within a
minute). Each round runs every binary once (order reversed every other round) on
`MODEL 1 TOKENS 2 THREADS` and takes its tg figure; prints the median, best and all rounds.

    cargo build --release -p llama-core --example bench_model && cp target/release/examples/bench_model /tmp/a
    … change, build again, cp to /tmp/b …
    python tools/ab_tg.py MODEL.gguf ROUNDS /tmp/a /tmp/b [--tokens 64] [--threads 2]
"""

import argparse
import re
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("rounds", type=int)
ap.add_argument("bins", nargs="+")
ap.add_argument("--tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
if a.rounds < 1 or a.tokens < 1 or a.threads < 1:
    ap.error("rounds, --tokens and --threads must be positive")
res: dict[str, list[float]] = {b: [] for b in a.bins}
for r in range(a.rounds):
    for b in a.bins if r % 2 == 0 else a.bins[::-1]:
        cmd = [b, a.model, "1", str(a.tokens), "2", str(a.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = re.search(rf"tg{a.tokens} ([0-9.]+)", out)
        if m is None:
            raise SystemExit(f"{b}: no tg{a.tokens} figure in its output:\n{out}")
        res[b].append(float(m.group(1)))
for b, v in res.items():
    print(f"{b:24s} median {statistics.median(v):7.1f} best {max(v):7.1f}  {' '.join(f'{x:.1f}' for x in v)}")
