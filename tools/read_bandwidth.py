"""Two-thread read bandwidth as docs/PERFORMANCE.md's roofline takes it: the best of 5 passes of
two threads each summing half of a float32 buffer with numpy (which releases the GIL).

    python tools/read_bandwidth.py [--threads N] [--mb MB]

The buffer is 1 GiB unless `--mb` gives a model's bytes per token: the host's last-level cache
(480 MiB reported on this VM, shared with other tenants) can hold part of a small model's weights
between tokens, and a read loop over the same footprint gets the same help.
"""

import argparse
import threading
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--mb", type=float, default=1 << 30 >> 20, help="buffer size, MB (default 1 GiB)")
args = ap.parse_args()
if args.threads < 1 or args.mb <= 0:
    ap.error("--threads and --mb must be positive")
n = args.threads
a = np.ones(max(int(args.mb * 1e6) // 4, n), dtype=np.float32)
parts = np.array_split(a, n)
passes = 5 if a.nbytes >= 1 << 28 else 20
best = float("inf")
for _ in range(passes):
    ts = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    best = min(best, time.perf_counter() - t)
print(f"{a.nbytes / best / 1e9:.1f} GB/s")
