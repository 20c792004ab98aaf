"""Many generations at once from Python: the server's engine (N slots, continuous batching, prefix
reuse) without HTTP. Requests submitted from any thread, or as one list, run together::

    from llama import Engine
    eng = Engine("model.gguf", n_slots=4)
    outs = eng.create_completions(["def add(a, b):", "The sky is"], max_tokens=32, temperature=0)
    for g in [eng.submit("Once upon a time", max_tokens=64)]:
        for piece in g:          # text as it is generated
            print(piece, end="")
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import _llama
from .errors import EngineBusyError, InvalidArgumentError
from .grammar import LlamaGrammar, as_grammar
from .sampling import LLAMA_DEFAULT_SEED, build_chain


class Generation:
    """One submitted request: iterate for its text pieces, or `result()` for the whole completion."""

    def __init__(self, req: _llama.EngineRequest, model: str, prompt_tokens: list[int]) -> None:
        self._req = req
        self._model = model
        self.prompt_tokens = prompt_tokens
        self.text = ""
        self.tokens: list[int] = []
        self.logprobs: list[tuple[float, list[tuple[int, float]]]] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def __iter__(self) -> Iterator[str]:
        while True:
            ev = self._req.next_event()
            if ev is None:
                return
            if ev[0] == "token":
                _, tid, text, lp, top = ev
                self.tokens.append(tid)
                if lp is not None:
                    self.logprobs.append((lp, top))
                self.text += text
                if text:
                    yield text
            else:
                _, text, self.finish_reason, self.usage = ev
                self.text += text
                if text:
                    yield text
                return

    def result(self) -> dict[str, Any]:
        """The completion in llama-cpp-python's / OpenAI's shape (waits for the end)."""
        for _ in self:
            pass
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self._model,
            "choices": [{"text": self.text, "index": 0, "logprobs": None, "finish_reason": self.finish_reason}],
            "usage": {k: v for k, v in (self.usage or {}).items() if k != "cached_tokens"},
        }

    def cancel(self) -> None:
        """Stops the generation; its slot is free within one step."""
        self._req.cancel()


class Engine:
    """N slots over one model; `submit` queues a generation, `create_completions` runs a list."""

    def __init__(
        self,
        model_path: str,
        n_slots: int = 4,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        queue: int = 64,
    ) -> None:
        if n_slots < 1 or n_batch < 1 or queue < 0:
            raise InvalidArgumentError("n_slots and n_batch must be at least 1, queue at least 0")
        self.model_path = str(model_path)
        self._model = _llama.Model(self.model_path)
        self._engine = _llama.Engine(self._model, n_slots, n_ctx, n_threads, n_batch, queue)

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos, special))

    def submit(
        self,
        prompt: str | list[int],
        *,
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        seed: int | None = None,
        stop: str | list[str] | None = None,
        grammar: LlamaGrammar | str | None = None,
        logit_bias: dict[Any, float] | None = None,
        ignore_eos: bool = False,
        logprobs: int | None = None,
        cache_prompt: bool = False,
    ) -> Generation:
        """Queues one generation (raises EngineBusyError when the queue is full). Sampling arguments
        are llama-cpp-python's `create_completion` ones, with its defaults."""
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if max_tokens is not None and max_tokens < 1:
            max_tokens = None  # llama-cpp-python: <= 0 means until the context is full
        chain = build_chain(
            self._model.n_vocab(),
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            temp=temperature,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            logit_bias=logit_bias,
            seed=LLAMA_DEFAULT_SEED if seed is None else seed,
        )
        g = as_grammar(grammar)
        if g is not None:
            chain.add_grammar(g._compiled, self._model)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        req = self._engine.submit(ids, chain, max_tokens, stops, ignore_eos, int(logprobs or 0), cache_prompt)
        return Generation(req, self.model_path, ids)

    def create_completions(self, prompts: list[str | list[int]], **kwargs: Any) -> list[dict[str, Any]]:
        """Every prompt submitted at once (they share the slots and each step's batch), the
        completions returned in order."""
        gens: list[Generation] = []
        for p in prompts:
            while True:
                try:
                    gens.append(self.submit(p, **kwargs))
                    break
                except EngineBusyError:  # the queue is full: wait for the oldest running one
                    running = [g for g in gens if g.finish_reason is None]
                    if running:
                        running[0].result()
                    else:
                        time.sleep(0.01)  # the engine is between steps: its slot frees at once
        return [g.result() for g in gens]

    def metrics(self) -> dict[str, int]:
        return dict(self._engine.metrics())
