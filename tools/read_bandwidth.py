"""Two-thread read bandwidth as docs/PERFORMANCE.md's roofline takes it: the best of 5 passes of
two threads each summing half of a 1 GiB float32 buffer with numpy (which releases the GIL).

    python tools/read_bandwidth.py [--threads N]
"""

import argparse
import threading
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
n = ap.parse_args().threads
a = np.ones(1 << 28, dtype=np.float32)
parts = np.array_split(a, n)
best = float("inf")
for _ in range(5):
    ts = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    best = min(best, time.perf_counter() - t)
print(f"{a.nbytes / best / 1e9:.1f} GB/s")
