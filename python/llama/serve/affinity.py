"""Which replica a request prefers, so that the turns of one conversation land where its prefix
is cached.

A request's *affinity key* is a hash of what stays the same across a conversation's turns: for a
chat, its messages up to and including the first user message (the system prompt and the opening
question); for a completion, the prompt's first `prefix_chars` characters (the next turn's prompt
is the previous prompt plus the answer plus more). Other routes have none.

Replicas are ranked for a key by rendezvous hashing (highest random weight): each replica's score
is a hash of (key, replica id), the best score wins. Adding or removing a replica moves only the
keys that it wins or held; every router computes the same ranking from the same replica set,
without shared state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Characters of a completion prompt that make its key: enough to tell conversations apart, few
# enough that a follow-up whose first characters are the same prompt maps to the same key.
DEFAULT_PREFIX_CHARS = 256

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_COMPLETION_PATHS = ("/v1/completions", "/completions")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def conversation_head(messages: Any) -> list[Any] | None:
    """The messages up to and including the first user message (all of them when none is a
    user's); None when `messages` is not a non-empty list."""
    if not isinstance(messages, list) or not messages:
        return None
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return messages[: i + 1]
    return messages


def prompt_head(prompt: Any, prefix_chars: int) -> str | None:
    """The first `prefix_chars` characters of a completion prompt (of its first prompt when a batch
    of prompts is given; token ids count as their decimal text)."""
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) for t in prompt):
            prompt = " ".join(str(t) for t in prompt)
        else:
            prompt = prompt[0]
            if isinstance(prompt, list):
                prompt = " ".join(str(t) for t in prompt)
    if not isinstance(prompt, str) or not prompt:
        return None
    return prompt[:prefix_chars]


def affinity_key(path: str, body: bytes | dict[str, Any], prefix_chars: int = DEFAULT_PREFIX_CHARS) -> str | None:
    """The affinity key of a request to `path` with JSON `body` (bytes or parsed), or None (a
    route without one, a body that is not a JSON object: such requests go anywhere)."""
    path = path.rstrip("/")
    chat = path.endswith(_CHAT_PATHS)
    if not chat and not path.endswith(_COMPLETION_PATHS):
        return None
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(body, dict):
        return None
    if chat:
        head = conversation_head(body.get("messages"))
        if head is None:
            return None
        return "chat:" + _digest(json.dumps(head, sort_keys=True, ensure_ascii=False))
    text = prompt_head(body.get("prompt"), prefix_chars)
    return None if text is None else "completion:" + _digest(text)


def score(key: str, replica_id: str) -> int:
    """Rendezvous weight of a replica for a key (64 bits of BLAKE2b, stable across processes)."""
    h = hashlib.blake2b(f"{key}\x00{replica_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big")


def rank(key: str, replicas: Sequence[T], replica_id: Callable[[T], str] = str) -> list[T]:
    """`replicas` best first for `key`: the first is the key's home, the next ones its fallbacks."""
    return sorted(replicas, key=lambda r: score(key, replica_id(r)), reverse=True)
