"""`python -m llama bench-serve`: C concurrent streaming clients against an OpenAI-compatible server
(ours, started here, or any other at `--url`, e.g. llama.cpp's llama-server), reporting aggregate
output tokens/s, time to first token and time per output token (p50/p95)."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError, LlamaError

_WORD_TEXT = (
    "river mountain signal garden window copper lantern orbit meadow harbor violet engine puzzle "
    "canvas thunder pepper marble falcon quartz willow ember glacier"
)
WORDS = _WORD_TEXT.split()


@dataclass
class Run:
    """One streamed request: when it started, when its chunks came, how many tokens it got."""

    t0: float
    first: float | None
    last: float
    tokens: int


def prompt_text(i: int, n_words: int) -> str:
    """A prompt of about n_words words, different for every client from its first word (no shared
    prefix for a cache to reuse)."""
    words = [WORDS[(i * 7 + k * 3 + k // len(WORDS)) % len(WORDS)] for k in range(n_words)]
    return f"Client {i}: " + " ".join(words)


def stream_one(url: urllib.parse.SplitResult, model: str, prompt: str, n: int, key: str | None) -> Run:
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=600)
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": n,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    t0 = time.perf_counter()
    conn.request("POST", url.path.rstrip("/") + "/v1/completions", json.dumps(body), headers)
    r = conn.getresponse()
    if r.status != 200:
        raise LlamaError(f"server answered {r.status}: {r.read()[:300]!r}")
    first, chunks, usage = None, 0, None
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        if ev.get("choices") and ev["choices"][0].get("text"):
            chunks += 1
            if first is None:
                first = time.perf_counter()
    last = time.perf_counter()
    conn.close()
    return Run(t0, first, last, usage if usage is not None else chunks)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def measure(
    url: urllib.parse.SplitResult, model: str, clients: int, n: int, p_words: int, key: str | None
) -> dict[str, Any]:
    runs: list[Run | BaseException] = [RuntimeError("not run")] * clients

    def work(i: int) -> None:
        try:
            runs[i] = stream_one(url, model, prompt_text(i, p_words), n, key)
        except BaseException as e:  # reported below, with the client's number
            runs[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in runs if isinstance(r, Run)]
    if len(ok) != clients:
        err = next(r for r in runs if not isinstance(r, Run))
        raise LlamaError(f"{clients - len(ok)} of {clients} clients failed: {err}")
    total = sum(r.tokens for r in ok)
    ttft = [r.first - r.t0 for r in ok if r.first is not None]
    tpot = [(r.last - r.first) / (r.tokens - 1) for r in ok if r.first is not None and r.tokens > 1]
    return {
        "clients": clients,
        "tokens": total,
        "seconds": wall,
        "tok_s": total / wall,
        "ttft_p50": pct(ttft, 0.5),
        "ttft_p95": pct(ttft, 0.95),
        "tpot_p50": pct(tpot, 0.5),
        "tpot_p95": pct(tpot, 0.95),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: urllib.parse.SplitResult, proc: subprocess.Popen[bytes] | None, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LlamaError(f"the server exited with code {proc.returncode}")
        try:
            c = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=5)
            c.request("GET", url.path.rstrip("/") + "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise LlamaError(f"{url.geturl()} did not become ready in {timeout:.0f} s")


def run(a: Any) -> int:
    try:
        clients = [int(c) for c in str(a.clients).split(",")]
    except ValueError:
        raise InvalidArgumentError(f"--clients must be a comma-separated list of integers, got {a.clients!r}") from None
    if not clients or min(clients) < 1:
        raise InvalidArgumentError("--clients needs positive numbers")
    proc = None
    if a.url:
        url = urllib.parse.urlsplit(a.url)
        model = a.model_alias or "default"
    else:
        if not a.model:
            raise InvalidArgumentError("give -m MODEL (a server is started) or --url of a running server")
        port = free_port()
        url = urllib.parse.urlsplit(f"http://127.0.0.1:{port}")
        model = ""
        cmd = [
            sys.executable,
            "-m",
            "llama",
            "serve",
            "-m",
            a.model,
            "--port",
            str(port),
            "--parallel",
            str(a.parallel),
            "-c",
            str(a.ctx_size),
            "--quiet",
        ]
        if a.threads:
            cmd += ["-t", str(a.threads)]
        proc = subprocess.Popen(cmd)
    try:
        wait_ready(url, proc)
        stream_one(url, model, prompt_text(999, 8), 4, a.api_key)  # warm-up
        rows = []
        for c in clients:
            row = measure(url, model, c, a.n, a.p, a.api_key)
            rows.append(row)
            if not a.quiet:
                print(
                    f"clients {c:3d}  {row['tok_s']:8.2f} tok/s  ttft p50 {row['ttft_p50'] * 1e3:7.0f} ms "
                    f"p95 {row['ttft_p95'] * 1e3:7.0f} ms  tpot p50 {row['tpot_p50'] * 1e3:6.1f} ms "
                    f"p95 {row['tpot_p95'] * 1e3:6.1f} ms",
                    file=sys.stderr,
                )
        print(json.dumps({"url": url.geturl(), "n": a.n, "prompt_words": a.p, "rows": rows}))
        return 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
