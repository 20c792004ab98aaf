"""Load time and resident memory of one GGUF file, ours or llama-cpp-python's (issue 17's 7B load).

    python tools/bench_load.py MODEL {ours,llama_cpp} [--n-ctx 512] [--threads 2] [--tg N]

Times the `Llama(...)` constructor (warm the page cache first: `cat MODEL > /dev/null`), then
evaluates three tokens and prints the process's resident memory and how much of it is on
transparent huge pages; with `--tg N`, also the speed of N more single-token evals. Alternate the two runtimes in one
sitting: this machine's figures swing between runs.
"""

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("runtime", choices=["ours", "llama_cpp"])
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tg", type=int, default=0, help="then time N single-token evals")
    a = ap.parse_args()
    if a.n_ctx < 1 or a.threads < 1 or a.tg < 0:
        ap.error("--n-ctx and --threads must be positive, --tg not negative")
    t0 = time.perf_counter()
    if a.runtime == "ours":
        import llama

        llm = llama.Llama(a.model, n_ctx=a.n_ctx, n_threads=a.threads, verbose=False)
    else:
        import llama_cpp

        llm = llama_cpp.Llama(a.model, n_ctx=a.n_ctx, n_threads=a.threads, verbose=False)
    t1 = time.perf_counter()
    llm.eval([1, 2, 3])
    with open("/proc/self/status") as f:
        rss = int(f.read().split("VmRSS:")[1].split()[0]) / 1024
    huge = ""
    if os.path.exists("/proc/self/smaps_rollup"):
        with open("/proc/self/smaps_rollup") as f:
            kb = [int(line.split()[1]) for line in f if line.startswith("AnonHugePages:")]
        huge = f" ({kb[0] // 1024} MiB on huge pages)" if kb else ""
    size = os.path.getsize(a.model) / 2**20
    tg = ""
    if a.tg > 0:
        t2 = time.perf_counter()
        for i in range(a.tg):
            llm.eval([100 + i])
        tg = f", tg{a.tg} {a.tg / (time.perf_counter() - t2):.2f} tok/s"
    print(f"{a.runtime}: load {t1 - t0:.2f} s, resident after eval {rss:.0f} MiB{huge}, file {size:.0f} MiB{tg}")


if __name__ == "__main__":
    main()
