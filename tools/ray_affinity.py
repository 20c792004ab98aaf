#!/usr/bin/env python3
"""Prefix-affinity hit rate of a replicated endpoint (`python -m llama serve --ray`): M multi-turn
chats, C at a time, each turn the whole conversation so far plus a new user message.

    python tools/ray_affinity.py --url http://127.0.0.1:8000 [--conversations 16] [--turns 4] [--clients 4]

Reports, over the follow-up turns (turn 2 onwards):
  * stickiness: the fraction served by the replica that served the conversation's first turn
    (the `x-llama-replica` header of each answer);
  * cached: prompt tokens the serving replica reused from a slot's cache over all prompt tokens
    (`usage.prompt_tokens_details.cached_tokens`; the requests ask `cache_prompt: true`, so any cached
    prefix counts, not only whole --batch-size chunks).
Run it once against `serve --ray` and once against `serve --ray --no-affinity` (Serve's default
power-of-two routing) to compare. Only the loopback is meant: the tool sends to --url."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from typing import Any

SYSTEM = (
    "You are a careful assistant for a team of engineers. Answer in one short sentence, name concrete "
    "things, and never repeat the question. When asked for a list, give at most three items."
)
TOPICS = [
    "rust lifetimes",
    "python generators",
    "sql indexes",
    "tcp congestion control",
    "git rebase",
    "unicode normalization",
    "floating point rounding",
    "garbage collection",
    "hash tables",
    "regular expressions",
    "dns caching",
    "memory alignment",
    "utf-8 encoding",
    "b-trees",
    "bloom filters",
    "json schema",
]
FOLLOW_UPS = ["Give an example.", "What is a common mistake?", "How would you test it?", "Summarize in five words."]


def post(url: urllib.parse.SplitResult, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=600)
    try:
        c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {data[:300]!r}")
        return json.loads(data), r.getheader("x-llama-replica") or "?"
    finally:
        c.close()


def conversation(url: urllib.parse.SplitResult, model: str, i: int, turns: int, n: int) -> list[dict[str, Any]]:
    topic = TOPICS[i % len(TOPICS)] + (f" (part {i // len(TOPICS) + 1})" if i >= len(TOPICS) else "")
    msgs: list[dict[str, str]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Explain {topic}."},
    ]
    out = []
    for t in range(turns):
        body = {"model": model, "messages": msgs, "max_tokens": n, "temperature": 0, "cache_prompt": True}
        r, replica = post(url, body)
        u = r["usage"]
        out.append(
            {
                "turn": t,
                "replica": replica,
                "prompt": u["prompt_tokens"],
                "cached": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            }
        )
        msgs = [*msgs, r["choices"][0]["message"], {"role": "user", "content": FOLLOW_UPS[t % len(FOLLOW_UPS)]}]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the endpoint (http://127.0.0.1:PORT)")
    ap.add_argument("--model", default="", help="model id sent (default: none, the server's own)")
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4, help="conversations under way at once")
    ap.add_argument("-n", type=int, default=16, help="tokens per answer")
    a = ap.parse_args()
    url = urllib.parse.urlsplit(a.url)
    todo = list(range(a.conversations))
    lock = threading.Lock()
    results: dict[int, list[dict[str, Any]]] = {}
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            try:
                results[i] = conversation(url, a.model, i, a.turns, a.n)
            except Exception as e:  # reported below
                errors.append(f"conversation {i}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    follow = [(turns[0]["replica"], t) for turns in results.values() for t in turns[1:]]
    same = sum(1 for first, t in follow if t["replica"] == first)
    prompt = sum(t["prompt"] for _, t in follow)
    cached = sum(t["cached"] for _, t in follow)
    replicas = sorted({t["replica"] for turns in results.values() for t in turns})
    summary = {
        "url": a.url,
        "conversations": a.conversations,
        "turns": a.turns,
        "clients": a.clients,
        "replicas_seen": len(replicas),
        "first_turns_per_replica": {r: sum(1 for v in results.values() if v[0]["replica"] == r) for r in replicas},
        "follow_up_turns": len(follow),
        "stickiness": round(same / len(follow), 3) if follow else None,
        "cached_fraction": round(cached / prompt, 3) if prompt else None,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "seconds": round(wall, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
