#!/usr/bin/env python3
"""Prefix-affinity hit rate of a replicated endpoint (`python -m llama serve --ray`): M multi-turn
chats, each turn the whole conversation so far plus a new user message, sent by C workers.

    python tools/ray_affinity.py --url http://127.0.0.1:8000 [--conversations 16] [--turns 4] [--clients 4]
                                 [--sequential] [--background B]

The workers take turns from one queue: at first the M first turns (in a seeded random order); when a
turn's answer comes, the conversation's next turn joins the back of the queue. Other conversations'
turns so come between two turns of one conversation, as with users who read and type. With
--sequential a worker sends all turns of a conversation in a row instead (then Serve's default routing
is sticky by itself, the replica the worker just left being the least loaded, unless --background
workers send one-turn chats of their own meanwhile, as other users would).

Reports, over the follow-up turns (turn 2 onwards):
  * stickiness: the fraction served by the replica that served the conversation's first turn
    (the `x-llama-replica` header of each answer);
  * cached: prompt tokens the serving replica reused from a slot's cache over all prompt tokens
    (`usage.prompt_tokens_details.cached_tokens`; the requests ask `cache_prompt: true`, so any cached
    prefix counts, not only whole --batch-size chunks; the system prompt, the same in every
    conversation, is part of it).
Run it once against `serve --ray` and once against `serve --ray --no-affinity` (Serve's default
power-of-two routing) to compare. Only the loopback is meant: the tool sends to --url."""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import random
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


class Conversation:
    def __init__(self, i: int) -> None:
        topic = TOPICS[i % len(TOPICS)] + (f" (part {i // len(TOPICS) + 1})" if i >= len(TOPICS) else "")
        self.i = i
        self.msgs: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Explain {topic}."},
        ]
        self.turns: list[dict[str, Any]] = []

    def step(self, url: urllib.parse.SplitResult, model: str, n: int) -> None:
        body = {"model": model, "messages": self.msgs, "max_tokens": n, "temperature": 0, "cache_prompt": True}
        r, replica = post(url, body)
        u = r["usage"]
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        t = len(self.turns)
        self.turns.append({"turn": t, "replica": replica, "prompt": u["prompt_tokens"], "cached": cached})
        follow = {"role": "user", "content": FOLLOW_UPS[t % len(FOLLOW_UPS)]}
        self.msgs = [*self.msgs, r["choices"][0]["message"], follow]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="the endpoint (http://127.0.0.1:PORT)")
    ap.add_argument("--model", default="", help="model id sent (default: none, the server's own)")
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4, help="workers: requests under way at once")
    ap.add_argument("-n", type=int, default=16, help="tokens per answer")
    ap.add_argument("--seed", type=int, default=0, help="order of the first turns")
    ap.add_argument("--sequential", action="store_true", help="a worker sends all turns of a conversation in a row")
    ap.add_argument("--background", type=int, default=0, help="workers sending one-turn chats meanwhile (not counted)")
    a = ap.parse_args()
    url = urllib.parse.urlsplit(a.url)
    convs = [Conversation(i) for i in range(a.conversations)]
    random.Random(a.seed).shuffle(convs)
    ready: queue.Queue[Conversation | None] = queue.Queue()
    for c in convs:
        ready.put(c)
    left = [a.conversations * a.turns]
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while True:
            c = ready.get()
            if c is None:
                return
            try:
                c.step(url, a.model, a.n)
                while a.sequential and len(c.turns) < a.turns:
                    c.step(url, a.model, a.n)
            except Exception as e:  # reported below
                errors.append(f"conversation {c.i} turn {len(c.turns)}: {e}")
            with lock:
                left[0] -= 1 if not a.sequential else a.turns
                if len(c.turns) < a.turns and not errors:
                    ready.put(c)
                elif left[0] <= 0 or errors:
                    for _ in range(a.clients):
                        ready.put(None)

    done = threading.Event()

    def background(k: int) -> None:
        """One-turn chats of their own (not counted) until the conversations are done."""
        j = 0
        while not done.is_set():
            msgs = [{"role": "user", "content": f"Background question {k}-{j}: name a color."}]
            try:
                post(url, {"model": a.model, "messages": msgs, "max_tokens": a.n, "temperature": 0})
            except Exception as e:
                errors.append(f"background {k}-{j}: {e}")
                return
            j += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    others = [threading.Thread(target=background, args=(k,)) for k in range(a.background)]
    for t in threads + others:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in others:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    results = {c.i: c.turns for c in convs}
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
        "sequential": a.sequential,
        "background": a.background,
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
