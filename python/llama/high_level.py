"""`llama.Llama`: the high-level API, shaped like llama-cpp-python's so its users switch by
changing an import. Text generation, OpenAI-shaped completions and chat, state save/load."""

from __future__ import annotations

import functools
import inspect
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from . import _llama
from .cache import BaseLlamaCache, longest_token_prefix
from .chat_formats import FORMATS, check_format, format_messages
from .errors import ContextOverflowError, InvalidArgumentError, LlamaError
from .grammar import LlamaGrammar, as_grammar, response_format_grammar
from .sampling import (
    LLAMA_DEFAULT_SEED,
    Processors,
    StoppingCriteriaList,
    apply_processors,
    build_chain,
    logits_to_logprobs,
    top_logprobs,
    unsupported,
)
from .tools import (
    ToolFormat,
    ToolStream,
    check_tool_choice,
    check_tools,
    detect_format,
    legacy_tool_choice,
    legacy_tools,
    template_messages,
)
from .tools import message as tool_message

_MAX_DEFAULT_CTX = 4096

Completion = dict[str, Any]


def _one_at_a_time(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A `Llama` method that runs alone on its instance: a call from another thread waits its turn
    (the instance's re-entrant lock), a returned generator (a stream) holds the turn while it is
    iterated, until it ends or is closed."""

    @functools.wraps(fn)
    def wrapper(self: Llama, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            out = fn(self, *args, **kwargs)
        return _locked(self._lock, out) if inspect.isgenerator(out) else out

    return wrapper


def _locked(lock: threading.RLock, gen: Any) -> Any:
    with lock:
        return (yield from gen)


@dataclass
class LlamaState:
    """A snapshot of the context: the evaluated tokens, their scores and the KV cache, and the
    seed the next completion derives its sampler's from. Without logits_all, `scores` holds the
    rows of `logits_pos`: the last token's and those of the ends of multi-token evaluations
    (a prompt's), whose logits re-evaluating that one token would not give bit for bit."""

    input_ids: npt.NDArray[np.intc]
    scores: npt.NDArray[np.single]
    n_tokens: int
    kv_state: bytes
    seed: int
    logits_pos: npt.NDArray[np.intc] | None = None


class Llama:
    """Load a GGUF model and run it.

    Parameters follow llama-cpp-python: ``n_ctx=0`` takes the model's trained context (capped at
    4096), ``n_threads=None`` uses every core, ``type_k``/``type_v`` are the KV cache types (f16,
    f32; with ``flash_attn=True`` also q8_0, q4_0, q4_1, q5_0, q5_1, as llama.cpp's
    ``--cache-type-k/v``; ``type_v=None`` is K's type, or f16 beside a quantized K),
    ``flash_attn=True`` runs llama.cpp's flash-attention arithmetic (its logits with flash attention
    on, bit for bit; the default is its exact non-flash path; encoder models, which keep no KV
    cache, always take the non-flash path),
    ``last_n_tokens_size`` the window of the repeat/frequency/presence penalties. ``seed`` seeds the
    sampler chains as in llama-cpp-python (LLAMA_DEFAULT_SEED = 0xFFFFFFFF, and -1: a random draw
    per chain; a completion without ``seed=`` takes the next seed of ``random.Random(seed)``).
    ``use_mmap=False`` reads the file into memory instead of mapping it (then the originals of
    repacked matrices stay resident too: the mapped default gives their pages back).

    State, as in llama-cpp-python: ``input_ids[:n_tokens]`` are the evaluated tokens and
    ``scores[i]`` the logits after token i (every row with ``logits_all``, else the last one).
    Setting ``n_tokens`` lower rewinds: the next ``eval`` continues from there.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        n_gpu_layers: int = 0,
        split_mode: int = 1,
        main_gpu: int = 0,
        tensor_split: list[float] | None = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: dict[str, Any] | None = None,
        seed: int = LLAMA_DEFAULT_SEED,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        rope_scaling_type: int | None = -1,
        pooling_type: int | str = -1,
        attention_type: int = -1,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0,
        yarn_attn_factor: float = 1.0,
        yarn_beta_fast: float = 32.0,
        yarn_beta_slow: float = 1.0,
        yarn_orig_ctx: int = 0,
        logits_all: bool = False,
        embedding: bool = False,
        offload_kqv: bool = True,
        flash_attn: bool = False,
        op_offload: bool | None = None,
        swa_full: bool | None = None,
        no_perf: bool = False,
        last_n_tokens_size: int = 64,
        lora_base: str | None = None,
        lora_scale: float = 1.0,
        lora_path: str | None = None,
        numa: bool | int = False,
        chat_format: str | None = None,
        chat_handler: Any = None,
        draft_model: Any = None,
        tokenizer: Any = None,
        type_k: str | int | None = "f16",
        type_v: str | int | None = None,
        spm_infill: bool = False,
        verbose: bool = False,
    ):
        """Every keyword of llama-cpp-python's ``Llama.__init__`` is accepted here and either works,
        is a documented no-op on this CPU-only runtime (``n_gpu_layers``, ``split_mode``,
        ``main_gpu``, ``tensor_split``, ``use_mlock``, ``offload_kqv``, ``op_offload``,
        ``no_perf``, ``swa_full``: the outputs do not depend on them), or raises
        InvalidArgumentError naming it when given a value this runtime cannot honour. An unknown
        keyword is a TypeError."""
        _check_init_args(
            kv_overrides=kv_overrides,
            n_threads_batch=(n_threads_batch, n_threads),
            rope_scaling_type=rope_scaling_type,
            attention_type=attention_type,
            rope_freq_base=rope_freq_base,
            rope_freq_scale=rope_freq_scale,
            yarn=(yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow, yarn_orig_ctx),
            lora=(lora_base, lora_scale, lora_path),
            numa=numa,
            chat_handler=chat_handler,
            draft_model=draft_model,
            tokenizer=tokenizer,
            spm_infill=spm_infill,
        )
        if n_ubatch <= 0:
            raise InvalidArgumentError(f"n_ubatch must be > 0 (got {n_ubatch})")
        # n_ubatch is the physical batch: tokens go through the network n_ubatch at a time
        n_batch = min(n_batch, n_ubatch) if n_batch > 0 else n_batch
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        t0 = time.perf_counter()
        self._model = _llama.Model(self.model_path, vocab_only=vocab_only, use_mmap=use_mmap)
        self._n_vocab = self._model.n_vocab()
        self.metadata: dict[str, str] = dict(self._model.metadata())
        self.chat_format = check_format(chat_format)
        self._logits_all = logits_all
        self.cache: BaseLlamaCache | None = None  # set_cache
        self._lock = threading.RLock()  # `_one_at_a_time`: one call at a time from any thread
        self._seed = seed
        if last_n_tokens_size < 0:
            raise InvalidArgumentError(f"last_n_tokens_size must be ≥ 0 (got {last_n_tokens_size})")
        self.last_n_tokens_size = last_n_tokens_size
        # The chain of the generation in progress (`sample` uses it); None between generations.
        self._sampler: _llama.SamplerChain | None = None
        self._stopped_by_criteria = False
        self._ctx: _llama.Context | None = None
        if n_ctx < 0 or n_batch <= 0:
            raise InvalidArgumentError(f"n_ctx must be ≥ 0 and n_batch > 0 (got n_ctx={n_ctx}, n_batch={n_batch})")
        train_ctx = self._model.n_ctx_train()
        self._n_ctx = n_ctx if n_ctx > 0 else min(train_ctx or _MAX_DEFAULT_CTX, _MAX_DEFAULT_CTX)
        self.n_batch = min(n_batch, self._n_ctx)
        self._n_threads = n_threads or (os.cpu_count() or 1)
        # Embeddings (`embed`): a context of their own in embeddings mode, made on first use.
        self._embedding = embedding
        self._pooling = _pooling_name(pooling_type)
        self._embd_ctx: _llama.Context | None = None
        self._embeddings_only = not vocab_only and self._model.embeddings_only()
        # type_v=None: f16 beside a quantized K (llama.cpp's default V), else K's type (f16 or f32)
        tk = _kv_type_name(type_k)
        tv = _kv_type_name(type_v, "type_v") if type_v is not None else (tk if tk in ("f16", "f32") else "f16")
        if not vocab_only and not self._embeddings_only:
            self._ctx = _llama.Context(
                self._model,
                n_ctx=self._n_ctx,
                n_batch=self.n_batch,
                n_threads=self._n_threads,
                type_k=tk,
                type_v=tv,
                flash_attn=flash_attn,
                logits_all=logits_all,
            )
        # llama-cpp-python's model kind flags: recurrent (every layer a state: mamba) and hybrid
        # (recurrent layers beside attention: qwen35).
        self._is_recurrent = self._ctx is not None and self._model.is_recurrent()
        self._is_hybrid = self._ctx is not None and self._model.is_hybrid()
        self.input_ids: npt.NDArray[np.intc] = np.zeros((self._n_ctx,), dtype=np.intc)
        # As llama-cpp-python: one row per position with logits_all, else n_batch rows (a 32k
        # context of a 262k vocabulary would be 32 GiB), position p's logits in row p mod n_batch
        # (`_row`). np.empty does not touch the pages: rows cost memory once written.
        self._n_rows = self._n_ctx if logits_all else self.n_batch
        try:
            self.scores: npt.NDArray[np.single] = np.empty((self._n_rows, self._n_vocab), dtype=np.single)
        except MemoryError:
            need = self._n_rows * self._n_vocab * 4
            raise LlamaError(
                f"scores: {self._n_rows} rows x {self._n_vocab} logits need {need} bytes ({need / 2**30:.1f} GiB), "
                "more than this machine gives"
                + (": logits_all=True keeps a row per position of n_ctx; use a smaller n_ctx" if logits_all else "")
            ) from None
        # Which positions' logits their row of `scores` holds (without logits_all an eval writes
        # only its last position's, and a row is shared by the positions n_batch apart), and which
        # of those came from an evaluation of several tokens (`save_state` keeps them).
        self._has_logits = np.zeros((self._n_ctx,), dtype=bool)
        self._from_batch = np.zeros((self._n_ctx,), dtype=bool)
        self.n_tokens = 0
        if verbose:
            print(f"llama: loaded {self.model_path} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        filename: str | None = None,
        additional_files: list[str] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        local_dir_use_symlinks: bool | str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Llama:
        """A model from the Hugging Face Hub, as llama-cpp-python's ``from_pretrained``:
        ``filename`` is a file of ``repo_id`` or a glob matching exactly one (``"*q4_k_m.gguf"``;
        None picks its Q4_K_M, else Q4_0, GGUF), downloaded with huggingface_hub into ``local_dir``
        or the HF cache (``cache_dir``; HF_TOKEN and HF_ENDPOINT honoured), with the files matching
        ``additional_files``; ``kwargs`` go to ``Llama``. ``local_dir_use_symlinks`` is a
        documented no-op (huggingface_hub no longer uses it). Offline, a file named without a glob
        comes from the cache; otherwise a LlamaError says the Hub is unreachable, at once."""
        from .pull import hub_model_file

        del local_dir_use_symlinks
        path = hub_model_file(
            repo_id, filename, additional_files, local_dir, cache_dir, quiet=not kwargs.get("verbose", True)
        )
        return cls(path, **kwargs)

    # -- vocabulary and model -----------------------------------------------------------------

    def tokenize(self, text: bytes | str, add_bos: bool = True, special: bool = False) -> list[int]:
        if isinstance(text, str):
            text = text.encode("utf-8")
        return self._model.tokenize(text, add_bos, special)

    def detokenize(
        self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None, special: bool = False
    ) -> bytes:
        return self._model.detokenize(list(tokens), special)

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (a piece of a UTF-8 character possibly: see `llama.StreamDecoder`)."""
        return self._model.token_to_piece(token, special)

    def token_is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, <|im_end|> …), as llama.cpp's llama_token_is_eog."""
        return self._model.is_eog(token)

    def token_bos(self) -> int:
        b = self._model.token_bos()
        return -1 if b is None else b

    def token_eos(self) -> int:
        e = self._model.token_eos()
        return -1 if e is None else e

    def token_nl(self) -> int:
        return self.tokenize(b"\n", add_bos=False, special=False)[-1]

    def add_bos_token(self) -> bool:
        """Whether the model wants a BOS token in front of a prompt (GGUF tokenizer.ggml.add_bos_token)."""
        return self._model.add_bos()

    def n_vocab(self) -> int:
        return self._n_vocab

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_embd(self) -> int:
        return self._model.n_embd()

    def hparams(self) -> dict[str, Any]:
        """The model's hyperparameters: ``arch`` and the sizes (n_vocab, n_ctx_train, n_embd, n_layer,
        n_head, n_head_kv, n_embd_head_k, n_embd_head_v, n_embd_k_gqa, n_embd_v_gqa, n_ff)."""
        return self._model.hparams()

    @property
    def n_threads(self) -> int:
        """Threads the evaluation uses; may be changed between calls (the logits do not depend on it)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n: int) -> None:
        if self._ctx is not None:
            self._ctx.set_n_threads(n)
        elif n < 1:
            raise InvalidArgumentError(f"n_threads must be at least 1 (got {n})")
        self._n_threads = n

    # -- embeddings ---------------------------------------------------------------------------

    def _need_embd_ctx(self) -> _llama.Context:
        if not self._embedding:
            raise LlamaError("Llama model must be created with embedding=True to call this method")
        if self._embd_ctx is None:
            self._embd_ctx = _llama.Context.for_embeddings(self._model, self._n_ctx, self._n_threads)
        return self._embd_ctx

    def _embed_tokens(self, texts: list[str], truncate: bool) -> list[list[int]]:
        """Each text's tokens (the model's BOS/CLS and EOS/SEP as its GGUF says), cut to the context
        when `truncate` (a final EOS/SEP kept, as Hugging Face's tokenizers truncate), else an
        InvalidArgumentError for a text that does not fit."""
        limit = self._n_ctx
        eos = self._model.token_eos()
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidArgumentError(f"input {i} must be a string, not {type(text).__name__}")
            ids = self._model.tokenize(text.encode("utf-8"), True, False)
            if not ids:
                raise InvalidArgumentError(f"input {i} has no tokens (an empty text and a model without BOS)")
            if len(ids) > limit:
                if not truncate:
                    raise InvalidArgumentError(
                        f"input {i} has {len(ids)} tokens, more than the context of {limit} (truncate=True cuts it)"
                    )
                ids = ids[: limit - 1] + [ids[-1]] if ids[-1] == eos else ids[:limit]
            out.append(ids)
        return out

    @_one_at_a_time
    def embed(
        self,
        input: str | list[str],
        normalize: bool = False,
        truncate: bool = True,
        return_count: bool = False,
    ) -> Any:
        """Embeddings of a text or a list of texts, as llama-cpp-python's ``embed``: one vector per
        text (``list[float]`` for a str, ``list[list[float]]`` for a list), or one per token when the
        pooling is ``none``. The pooling is the model's (its GGUF ``pooling_type``; mean for a model
        that names none) unless ``pooling_type=`` was given at load. ``normalize=True`` divides each
        vector by its Euclidean norm (llama-cpp-python's default is False, and so is ours).
        ``truncate=True`` cuts a text longer than the context (keeping its final [SEP]/EOS);
        ``truncate=False`` raises InvalidArgumentError for it. A list is packed into batches of
        whole texts: one forward per batch, not one per text. ``return_count`` also returns the
        number of tokens embedded."""
        ctx = self._need_embd_ctx()
        single = isinstance(input, str)
        texts: list[str] = [input] if isinstance(input, str) else list(input)
        seqs = self._embed_tokens(texts, truncate)
        n_tokens = sum(len(s) for s in seqs)
        vecs = [v.tolist() for v in ctx.embed(seqs, self._pooling, normalize)] if seqs else []
        result: Any = vecs[0] if single else vecs
        return (result, n_tokens) if return_count else result

    @_one_at_a_time
    def rank(self, query: str, documents: list[str]) -> list[float]:
        """Relevance of each document to ``query`` by a reranker (a cross-encoder such as a
        BertForSequenceClassification or bge-reranker converted to GGUF; ``embedding=True``), in
        the documents' order, as llama-server's ``/rerank`` scores them: each pair is one sequence
        (the model's rerank template, else ``[CLS] query [SEP] document [SEP]``), its [CLS] row
        (the last token's for a causal model) through the model's classification head, the first
        value. All pairs go through in packed batches. A model without a head raises
        InvalidArgumentError, as does a pair longer than the context."""
        ctx = self._need_embd_ctx()
        if not isinstance(query, str):
            raise InvalidArgumentError(f"query must be a string, not {type(query).__name__}")
        if isinstance(documents, str) or not all(isinstance(d, str) for d in documents):
            raise InvalidArgumentError("documents must be a list of strings")
        if self._model.n_cls_out() is None:
            raise InvalidArgumentError(
                f"{self.model_path}: rank needs a reranker (a classification head: cls / cls.output tensors)"
            )
        seqs = []
        for i, d in enumerate(documents):
            ids = self._model.rerank_tokens(query, d)
            if len(ids) > self._n_ctx:
                raise InvalidArgumentError(
                    f"document {i}: query and document are {len(ids)} tokens, more than the context of {self._n_ctx}"
                )
            seqs.append(ids)
        return [float(v[0]) for v in ctx.embed(seqs, "rank", False)] if seqs else []

    @_one_at_a_time
    def create_embedding(self, input: str | list[str], model: str | None = None) -> dict[str, Any]:
        """OpenAI's embeddings response (``object: list``, one ``embedding`` per input with its
        ``index``, ``usage``), as llama-cpp-python's ``create_embedding`` (vectors not normalized)."""
        texts = [input] if isinstance(input, str) else list(input)
        vecs, n_tokens = self.embed(texts, return_count=True)
        return {
            "object": "list",
            "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vecs)],
            "model": model if model is not None else self.model_path,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }

    # -- evaluation ---------------------------------------------------------------------------

    def _need_ctx(self) -> _llama.Context:
        if self._ctx is None and self._embeddings_only:
            raise LlamaError(
                f"{self.model_path}: {self._model.architecture()} is an embedding model: it gives "
                "embeddings (Llama(..., embedding=True).embed(text)), not text"
            )
        if self._ctx is None:
            raise LlamaError(f"{self.model_path}: this model was loaded with vocab_only=True and cannot evaluate")
        return self._ctx

    @_one_at_a_time
    def reset(self) -> None:
        """Forget the evaluated tokens: n_tokens = 0 and the KV cache emptied."""
        self.n_tokens = 0
        self._has_logits[:] = False
        if self._ctx is not None:
            self._ctx.truncate(0)

    @_one_at_a_time
    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate `tokens` at positions n_tokens… (what the cache held from there on is dropped).

        One call into the core, which checks the ids and the window, runs the tokens in batches of
        n_batch and writes the logits straight into their rows of `scores`."""
        ctx = self._need_ctx()
        tokens = list(tokens)
        n_past, n = self.n_tokens, len(tokens)
        self._has_logits[n_past:] = False
        if self._logits_all:
            ctx.eval(tokens, n_past, self.scores[n_past : n_past + n])
            self._has_logits[n_past : n_past + n] = True
        else:
            last = n_past + n - 1
            r = self._row(last)
            self._has_logits[r :: self._n_rows] = False  # the row's earlier position loses it
            ctx.eval(tokens, n_past, self.scores[r : r + 1])
            self._has_logits[last] = True
            self._from_batch[last] = n > 1
        self.input_ids[n_past : n_past + n] = tokens
        self.n_tokens = n_past + n

    def _row(self, pos: int) -> int:
        """The row of `scores` holding position `pos`'s logits (when `_has_logits[pos]`)."""
        return pos % self._n_rows

    @property
    def _input_ids(self) -> npt.NDArray[np.intc]:
        return self.input_ids[: self.n_tokens]

    @property
    def _scores(self) -> npt.NDArray[np.single]:
        return self.scores[: self.n_tokens]  # without logits_all, as llama-cpp-python's: the first rows

    #: log-softmax as llama-cpp-python computes it (``Llama.logits_to_logprobs``).
    logits_to_logprobs = staticmethod(logits_to_logprobs)

    def set_seed(self, seed: int) -> None:
        """The seed the next sampler chain starts from (llama-cpp-python: ``Llama.set_seed``)."""
        self._seed = seed

    def _init_sampler(
        self,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        temp: float = 0.80,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_eta: float = 0.1,
        mirostat_tau: float = 5.0,
        penalize_nl: bool = True,
        logit_bias: dict[Any, float] | None = None,
        grammar: LlamaGrammar | str | None = None,
    ) -> _llama.SamplerChain:
        """One sampler chain, as llama-cpp-python's ``_init_sampler`` builds it (tfs_z and
        penalize_nl are accepted and ignored there too: llama.cpp dropped them), seeded with the
        current seed; a grammar goes after the penalties, before top-k."""
        chain = build_chain(
            self._n_vocab,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            temp=temp,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            penalty_last_n=self.last_n_tokens_size,
            mirostat_mode=mirostat_mode,
            mirostat_tau=mirostat_tau,
            mirostat_eta=mirostat_eta,
            logit_bias=logit_bias,
            seed=self._seed,
        )
        g = as_grammar(grammar)
        if g is not None:
            chain.add_grammar(g._compiled, self._model)
        return chain

    @_one_at_a_time
    def sample(
        self,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        temp: float = 0.80,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_eta: float = 0.1,
        mirostat_tau: float = 5.0,
        penalize_nl: bool = True,
        logits_processor: Processors = None,
        grammar: LlamaGrammar | str | None = None,
        idx: int | None = None,
    ) -> int:
        """Sample a token from the logits of row `idx` (default: the last evaluated position).

        Inside `generate` the generation's chain is used (its RNG, penalty history and grammar
        state carry on); called alone, as in llama-cpp-python, a fresh chain seeded with the
        current seed (a `grammar` then constrains this one token from the grammar's start)."""
        if self.n_tokens == 0:
            raise InvalidArgumentError("sample: nothing has been evaluated yet")
        chain = self._sampler
        if chain is None:
            chain = self._init_sampler(
                top_k=top_k,
                top_p=top_p,
                min_p=min_p,
                typical_p=typical_p,
                temp=temp,
                repeat_penalty=repeat_penalty,
                frequency_penalty=frequency_penalty,
                presence_penalty=presence_penalty,
                mirostat_mode=mirostat_mode,
                mirostat_tau=mirostat_tau,
                mirostat_eta=mirostat_eta,
                grammar=grammar,
            )
        row = self.n_tokens - 1 if idx is None else idx
        if not 0 <= row < self.n_tokens:
            raise InvalidArgumentError(f"sample: idx {row} is outside the evaluated 0..{self.n_tokens - 1}")
        logits = apply_processors(logits_processor, self._input_ids, self.scores[self._row(row)])
        return int(chain.sample(logits))

    def _prefix_reuse(self, tokens: list[int]) -> list[int]:
        """Keep the longest evaluated prefix of `tokens`; return what still has to be evaluated (eval
        drops the cache beyond n_tokens). A prompt evaluated whole before, whose last logits are still
        kept, needs nothing: the same prompt and seed then sample exactly as the first time (a
        re-evaluated last token would be a batch of one, whose sums llama.cpp orders differently).
        Otherwise at least one token is re-evaluated so fresh logits exist."""
        n = 0
        limit = min(self.n_tokens, len(tokens))
        cached = self.input_ids
        while n < limit and cached[n] == tokens[n]:
            n += 1
        if n == len(tokens) and not self._has_logits[n - 1]:
            n -= 1
        if n < self.n_tokens and self._ctx is not None and self._ctx.is_recurrent():
            # a recurrent state cannot go back to an earlier position: start over
            n = 0
        self.n_tokens = n
        return tokens[n:]

    @_one_at_a_time
    def generate(
        self,
        tokens: Sequence[int],
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        temp: float = 0.80,
        repeat_penalty: float = 1.0,
        reset: bool = True,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        penalize_nl: bool = True,
        logits_processor: Processors = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        grammar: LlamaGrammar | str | None = None,
    ) -> Iterator[int]:
        """Yield sampled tokens until the caller stops or a stopping criterion fires; one sampler
        chain (and grammar state) for the whole generation; the cached prefix of `tokens` is
        reused. Under a grammar, end-of-generation is only sampled where the grammar may end."""
        chain = self._init_sampler(
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            temp=temp,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            mirostat_mode=mirostat_mode,
            mirostat_tau=mirostat_tau,
            mirostat_eta=mirostat_eta,
            grammar=grammar,
        )
        return self._generate(tokens, chain, reset, logits_processor, stopping_criteria)

    def _generate(
        self,
        tokens: Sequence[int],
        chain: _llama.SamplerChain,
        reset: bool = True,
        logits_processor: Processors = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        on_row: Callable[[npt.NDArray[np.single]], None] | None = None,
    ) -> Iterator[int]:
        """The generation loop over a built chain. `on_row` sees the raw logits each token is
        sampled from (before any processor or stage), for logprobs."""
        tokens = list(tokens)
        if not tokens:
            raise InvalidArgumentError("generate: empty prompt")
        if reset and self.n_tokens > 0:
            tokens = self._prefix_reuse(tokens)
        elif reset:
            self.reset()
        self._stopped_by_criteria = False
        while True:
            if tokens:
                self.eval(tokens)
            row = self.scores[self._row(self.n_tokens - 1)]
            if on_row is not None:
                on_row(row)
            self._sampler = chain
            try:
                token = self.sample(logits_processor=logits_processor)
            finally:
                self._sampler = None
            if stopping_criteria is not None and stopping_criteria(self._input_ids, row):
                self._stopped_by_criteria = True
                return
            tokens_or_none = yield token
            tokens = [token]
            if tokens_or_none is not None:
                tokens.extend(tokens_or_none)

    # -- completions --------------------------------------------------------------------------

    @_one_at_a_time
    def create_completion(
        self,
        prompt: str | list[int],
        suffix: str | None = None,
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: int | None = None,
        echo: bool = False,
        stop: str | list[str] | None = [],  # noqa: B006 (llama-cpp-python's default, never mutated)
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: int | None = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: str | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        logits_processor: Processors = None,
        grammar: LlamaGrammar | str | None = None,
        logit_bias: dict[Any, float] | None = None,
    ) -> Completion | Iterator[Completion]:
        """Generate text from a prompt (llama-cpp-python's arguments and response shape).

        ``logprobs=N`` adds OpenAI's legacy logprobs (tokens, token_logprobs, top_logprobs,
        text_offset) from the raw logits; ``grammar`` (a `LlamaGrammar` or GBNF text) constrains
        the text, which then ends only where the grammar may; ``tfs_z`` is ignored as in
        llama-cpp-python; ``suffix`` raises InvalidArgumentError (infill is not supported)."""
        unsupported("suffix", suffix, why="(infill) is not supported")
        grammar = as_grammar(grammar)
        if logprobs is not None and (isinstance(logprobs, bool) or int(logprobs) < 0):
            raise InvalidArgumentError(f"logprobs must be a number of top tokens ≥ 0 (got {logprobs!r})")
        it = self._completion(
            prompt,
            max_tokens=max_tokens,
            echo=echo,
            stop=stop,
            seed=seed,
            stream=stream,
            logprobs=logprobs,
            model=model,
            stopping_criteria=stopping_criteria,
            logits_processor=logits_processor,
            sampling={
                "top_k": top_k,
                "top_p": top_p,
                "min_p": min_p,
                "typical_p": typical_p,
                "temp": temperature,
                "repeat_penalty": repeat_penalty,
                "frequency_penalty": frequency_penalty,
                "presence_penalty": presence_penalty,
                "mirostat_mode": mirostat_mode,
                "mirostat_tau": mirostat_tau,
                "mirostat_eta": mirostat_eta,
                "logit_bias": logit_bias,
                "grammar": grammar,
            },
        )
        if stream:
            return it
        return next(it)

    __call__ = create_completion

    def _completion(
        self,
        prompt: str | list[int],
        *,
        max_tokens: int | None,
        echo: bool,
        stop: str | list[str] | None,
        seed: int | None,
        stream: bool,
        logprobs: int | None,
        model: str | None,
        stopping_criteria: StoppingCriteriaList | None,
        logits_processor: Processors,
        sampling: dict[str, Any],
        keep_special: frozenset[int] = frozenset(),
    ) -> Iterator[Completion]:
        """The completion loop. `keep_special`: control tokens whose text is kept in the output (a
        tool-call marker such as Mistral's [TOOL_CALLS]); other control tokens print as nothing."""
        self._need_ctx()
        cid = f"cmpl-{uuid.uuid4()}"
        created = int(time.time())
        model_name = model if model is not None else self.model_path
        if isinstance(prompt, str):
            prompt_tokens = self.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        else:
            prompt_tokens = list(prompt)
        if not prompt_tokens:
            # An empty string still has a BOS when the model uses one; otherwise there is nothing to run.
            bos = self.token_bos()
            if bos < 0:
                raise InvalidArgumentError("create_completion: the prompt is empty")
            prompt_tokens = [bos]
        if len(prompt_tokens) >= self._n_ctx:
            raise ContextOverflowError(f"the prompt is {len(prompt_tokens)} tokens, the context holds {self._n_ctx}")
        if logprobs is not None and echo:
            if stream:
                raise InvalidArgumentError("logprobs with echo=True and stream=True is not supported")
            if not self._logits_all:
                raise InvalidArgumentError("logprobs with echo=True needs Llama(logits_all=True): the prompt's logits")
        if max_tokens is None or max_tokens <= 0:
            max_tokens = self._n_ctx - len(prompt_tokens)
        max_tokens = min(max_tokens, self._n_ctx - len(prompt_tokens))
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        stops = [s for s in stops if s]
        # As llama-cpp-python: without a seed the next one comes from a generator seeded with the last.
        self.set_seed(seed if seed is not None else random.Random(self._seed).randint(0, 2**32))
        chain = self._init_sampler(**sampling)

        decoder = _llama.StreamDecoder()
        prompt_text = self.detokenize(prompt_tokens).decode("utf-8", errors="replace") if echo else ""
        text = ""  # everything generated so far, stop strings not yet cut
        emitted = 0  # chars of `text` already streamed
        finish = "length"
        completion_tokens: list[int] = []
        rows: list[npt.NDArray[np.single]] = []  # [n_completion] log-softmax rows, with logprobs
        on_row = None
        if logprobs is not None:
            on_row = lambda r: rows.append(logits_to_logprobs(r))  # noqa: E731
        lp_prompt_len = (
            len(prompt) if isinstance(prompt, str) else len(self.detokenize(prompt_tokens).decode("utf-8", "ignore"))
        )
        lp_sent = 0  # completion tokens whose logprobs were streamed
        if stream and echo and prompt_text:
            yield self._chunk(cid, created, model_name, prompt_text, None)

        if self.cache is not None:
            self._load_cached(prompt_tokens)
        for token in self._generate(prompt_tokens, chain, True, logits_processor, stopping_criteria, on_row):
            if self.token_is_eog(token):
                finish = "stop"
                break
            completion_tokens.append(token)
            text += decoder.push(self.token_to_piece(token, token in keep_special))
            cut = _find_stop(text, stops)
            if cut is not None:
                text = text[:cut]
                finish = "stop"
                break
            if stream:
                safe = len(text) - _stop_prefix_len(text, stops)
                if safe > emitted:
                    lp = None
                    if logprobs is not None:
                        lp = self._logprobs(completion_tokens, rows, logprobs, lp_prompt_len, lp_sent)
                        lp_sent = len(completion_tokens)
                    yield self._chunk(cid, created, model_name, text[emitted:safe], None, lp)
                    emitted = safe
            if len(completion_tokens) >= max_tokens:
                break
        if self._stopped_by_criteria:
            finish = "stop"
        text += decoder.flush() if finish == "length" else ""
        cut = _find_stop(text, stops)
        if cut is not None:
            text = text[:cut]
            finish = "stop"
        usage = {
            "prompt_tokens": len(prompt_tokens),
            "completion_tokens": len(completion_tokens),
            "total_tokens": len(prompt_tokens) + len(completion_tokens),
        }
        if self.cache is not None:
            self.cache[self._input_ids.tolist()] = self.save_state()
        if stream:
            lp = None
            if logprobs is not None and lp_sent < len(completion_tokens):
                lp = self._logprobs(completion_tokens, rows, logprobs, lp_prompt_len, lp_sent)
            if len(text) > emitted or lp is not None:
                yield self._chunk(cid, created, model_name, text[emitted:], None, lp)
            yield self._chunk(cid, created, model_name, "", finish)
            return
        lp = None
        if logprobs is not None and echo:
            # The prompt too (its logits are kept with logits_all): token j from row j-1; the first
            # token has none (OpenAI's shape: null), a leading BOS is left out as llama-cpp-python does.
            start = 1 if prompt_tokens[0] == self.token_bos() else 0
            prompt_rows: list[npt.NDArray[np.single] | None] = [
                None if j == 0 else logits_to_logprobs(self.scores[j - 1]) for j in range(start, len(prompt_tokens))
            ]
            lp = self._logprobs(prompt_tokens[start:] + completion_tokens, [*prompt_rows, *rows], logprobs, 0, 0)
            if lp["tokens"]:
                lp["token_logprobs"][0] = None
                lp["top_logprobs"][0] = None
        elif logprobs is not None:
            lp = self._logprobs(completion_tokens, rows, logprobs, lp_prompt_len, 0)
        yield {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model_name,
            "choices": [{"text": prompt_text + text, "index": 0, "logprobs": lp, "finish_reason": finish}],
            "usage": usage,
        }

    def _logprobs(
        self,
        tokens: list[int],
        rows: Sequence[npt.NDArray[np.single] | None],
        n: int,
        text_offset: int,
        first: int,
    ) -> dict[str, Any]:
        """OpenAI's legacy completion logprobs for tokens[first:], as llama-cpp-python writes them:
        the token's text, its offset in the whole text, its logprob and the n most likely
        alternatives (the chosen token added to them)."""
        bos = self.token_bos()
        out: dict[str, list[Any]] = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        for i in range(first, len(tokens)):
            token = tokens[i]
            if token == bos:
                continue
            lp = rows[i]
            token_str = self.detokenize([token]).decode("utf-8", errors="ignore")
            out["text_offset"].append(text_offset + len(self.detokenize(tokens[:i]).decode("utf-8", errors="ignore")))
            out["tokens"].append(token_str)
            if lp is None:
                out["token_logprobs"].append(None)
                out["top_logprobs"].append(None)
                continue
            out["token_logprobs"].append(float(lp[token]))
            top = {self.detokenize([j]).decode("utf-8", errors="ignore"): v for v, j in top_logprobs(lp, n)}
            top.update({token_str: float(lp[token])})
            out["top_logprobs"].append(top)
        return out

    def _chunk(
        self, cid: str, created: int, model: str, text: str, finish: str | None, logprobs: Any = None
    ) -> Completion:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}],
        }

    # -- chat -----------------------------------------------------------------------------------

    @overload
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = ...,
        tokenize: Literal[False] = ...,
        *,
        tools: list[dict[str, Any]] | None = ...,
        chat_template_kwargs: dict[str, Any] | None = ...,
    ) -> str: ...

    @overload
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = ...,
        *,
        tokenize: Literal[True],
        tools: list[dict[str, Any]] | None = ...,
        chat_template_kwargs: dict[str, Any] | None = ...,
    ) -> list[int]: ...

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        *,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str | list[int]:
        """The model's chat template applied to `messages` (InvalidArgumentError when the GGUF has none). With
        ``tokenize=True`` (as in transformers) the token ids, special tokens parsed and a BOS put in
        front where the model wants one and the template did not write it.

        ``tools`` (OpenAI's tool objects) is the template's ``tools`` variable and
        ``chat_template_kwargs`` more variables (e.g. ``{"enable_thinking": False}``), as
        transformers' ``apply_chat_template(tools=..., **kwargs)`` passes them. Messages are given
        to the template as llama.cpp's chat code gives them: an assistant's
        ``tool_calls[].function.arguments`` written as JSON text is parsed to an object (templates
        print it with ``tojson``), a missing content is "", legacy ``function_call`` / role
        "function" become tool calls / role "tool"."""
        if self._model.chat_template() is None:
            raise InvalidArgumentError(
                f"{self.model_path} has no chat template (tokenizer.chat_template): create the Llama with "
                f"chat_format= one of {', '.join(sorted(FORMATS))}"
            )
        bos, eos = self.token_bos(), self.token_eos()
        bos_text = self.token_to_piece(bos, True).decode("utf-8", "replace") if bos >= 0 else ""
        eos_text = self.token_to_piece(eos, True).decode("utf-8", "replace") if eos >= 0 else ""
        extra: dict[str, Any] = {}
        if chat_template_kwargs is not None:
            if not isinstance(chat_template_kwargs, dict):
                raise InvalidArgumentError("chat_template_kwargs must be a dict of template variables")
            extra.update(chat_template_kwargs)
        if tools is not None:
            if not isinstance(tools, (list, tuple)):
                raise InvalidArgumentError(f"tools must be a list of tool objects, got {type(tools).__name__}")
            extra["tools"] = list(tools)
        prompt = _llama.render_chat_template(
            self._model.chat_template(),
            template_messages(messages),
            add_generation_prompt,
            bos_text,
            eos_text,
            extra or None,
        )
        if not tokenize:
            return prompt
        tokens = self.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if self.add_bos_token() and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens = [bos, *tokens]
        return tokens

    def _single_special(self, text: str) -> int | None:
        """The id of `text` if it is one control token (rendered only with special=True), else None."""
        ids = self.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) != 1 or self.token_to_piece(ids[0], False):
            return None
        return ids[0] if self.token_to_piece(ids[0], True) == text.encode("utf-8") else None

    def _family_format(self) -> str | None:
        """None when the GGUF has a chat template; for a model without one, its family's known format
        (Gemma's turns), said once on stderr; otherwise InvalidArgumentError (never a silent ChatML)."""
        if self._model.chat_template() is not None:
            return None
        arch = self.metadata.get("general.architecture", "")
        if arch in ("gemma", "gemma2", "gemma3", "gemma3n"):
            if not getattr(self, "_family_format_said", False):
                print(f"llama: {self.model_path} has no chat template: using chat_format='gemma'", file=sys.stderr)
                self._family_format_said = True
            return "gemma"
        raise InvalidArgumentError(
            f"{self.model_path} has no chat template (tokenizer.chat_template) and its family ({arch}) has no "
            f"known format: create the Llama with chat_format= one of {', '.join(sorted(FORMATS))}"
        )

    def tool_format(self) -> ToolFormat:
        """The tool-call syntax of this model, read from its chat template (see `llama.tools`)."""
        return detect_format(self._model.chat_template(), self._single_special)

    @_one_at_a_time
    def create_chat_completion(
        self,
        messages: list[dict[str, Any]],
        functions: list[dict[str, Any]] | None = None,
        function_call: Any = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: str | list[str] | None = [],  # noqa: B006 (llama-cpp-python's default, never mutated)
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: str | None = None,
        logits_processor: Processors = None,
        grammar: LlamaGrammar | str | None = None,
        logit_bias: dict[Any, float] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        *,
        chat_template_kwargs: dict[str, Any] | None = None,
        parallel_tool_calls: bool = False,
    ) -> Completion | Iterator[Completion]:
        """A chat turn with the model's chat template (llama-cpp-python's arguments and response
        shape). ``logprobs=True`` (with ``top_logprobs=N`` alternatives) adds OpenAI's chat logprobs;
        ``response_format`` (OpenAI's json_object / json_schema, llama-cpp-python's json_object with
        a schema) or ``grammar`` constrain the answer.

        Tools (see `llama.tools`): ``tools`` (OpenAI's ``[{"type": "function", "function": {"name",
        "description", "parameters"}}]``) reach the chat template, and the calls the model writes in
        its own syntax come back as OpenAI's ``message.tool_calls`` (``arguments`` the JSON text,
        ``finish_reason`` "tool_calls"; streamed as ``delta.tool_calls``). ``tool_choice``: "auto"
        (the default with tools: calls parsed if written), "none" (text only), "required" or
        ``{"type": "function", "function": {"name": X}}`` (a grammar forces a call whose arguments
        follow the tool's ``parameters`` schema; one call unless ``parallel_tool_calls=True``).
        The legacy ``functions`` / ``function_call`` answer with ``message.function_call``.

        Beyond llama-cpp-python's arguments: ``chat_template_kwargs`` (more template variables, e.g.
        ``{"enable_thinking": False}``) and ``parallel_tool_calls`` (OpenAI's; default False as in
        llama.cpp: a forced answer is one call)."""
        legacy = functions is not None or function_call is not None
        if legacy:
            if tools is not None or tool_choice is not None:
                raise InvalidArgumentError("give functions/function_call or tools/tool_choice, not both")
            tools, tool_choice = legacy_tools(functions), legacy_tool_choice(function_call)
        spec = check_tools(tools)
        choice = check_tool_choice(tool_choice, spec)
        constraint = response_format_grammar(response_format)
        if constraint is not None and grammar is not None:
            raise InvalidArgumentError("give response_format or grammar, not both")
        constraint = constraint or as_grammar(grammar)
        if top_logprobs is not None and (isinstance(top_logprobs, bool) or int(top_logprobs) < 0):
            raise InvalidArgumentError(f"top_logprobs must be ≥ 0 (got {top_logprobs!r})")
        fmt: ToolFormat | None = None
        keep: frozenset[int] = frozenset()
        template_tools: list[dict[str, Any]] | None = None
        msgs = template_messages(messages)
        if spec:
            fmt = self.tool_format()
            msgs, template_tools = fmt.prepare(msgs, spec)
            if choice.mode != "none":
                if constraint is not None:
                    raise InvalidArgumentError("tools cannot be combined with response_format or grammar")
                allowed = [t for t in spec if t.name in choice.names]
                lark = fmt.lark(allowed, parallel_tool_calls and not legacy, auto=choice.mode == "auto")
                if lark is not None:
                    constraint = LlamaGrammar(_grammar=lark, _kind="lark", _compiled=_llama.Grammar.from_lark(lark))
                keep = frozenset(t for t in map(self._single_special, fmt.markers) if t is not None)
        chat_format = self.chat_format or self._family_format()
        if chat_format is not None:
            # llama-cpp-python's named format: its prompt (tokenized with BOS and special tokens)
            # and its stop strings after the caller's
            if spec or chat_template_kwargs is not None:
                raise InvalidArgumentError(
                    f"chat_format={chat_format!r} takes plain messages: tools and chat_template_kwargs need a "
                    "chat template in the GGUF (and chat_format=None)"
                )
            text, format_stop = format_messages(chat_format, msgs)
            tokens = self.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            stop = ([stop] if isinstance(stop, str) else list(stop or [])) + format_stop
        else:
            tokens = self.apply_chat_template(
                msgs,
                add_generation_prompt=True,
                tokenize=True,
                tools=template_tools,
                chat_template_kwargs=chat_template_kwargs,
            )
        result = self._completion(
            tokens,
            max_tokens=max_tokens,
            echo=False,
            stop=stop,
            seed=seed,
            stream=stream,
            logprobs=(top_logprobs or 0) if logprobs else None,
            model=model,
            stopping_criteria=None,
            logits_processor=logits_processor,
            sampling={
                "top_k": top_k,
                "top_p": top_p,
                "min_p": min_p,
                "typical_p": typical_p,
                "temp": temperature,
                "repeat_penalty": repeat_penalty,
                "frequency_penalty": frequency_penalty,
                "presence_penalty": presence_penalty,
                "mirostat_mode": mirostat_mode,
                "mirostat_tau": mirostat_tau,
                "mirostat_eta": mirostat_eta,
                "logit_bias": logit_bias,
                "grammar": constraint,
            },
            keep_special=keep,
        )
        cid = f"chatcmpl-{uuid.uuid4()}"
        parse = fmt if fmt is not None and choice.mode != "none" else None
        if not stream:
            done = next(result)
            return self._chat_response(cid, done, parse, legacy)
        if parse is None:
            return self._chat_stream(cid, result)
        return self._tool_chat_stream(cid, result, ToolStream(parse, legacy))

    def _chat_response(self, cid: str, done: Completion, fmt: ToolFormat | None, legacy: bool) -> Completion:
        choice = done["choices"][0]
        msg: dict[str, Any] = {"role": "assistant", "content": choice["text"]}
        finish = choice["finish_reason"]
        if fmt is not None:
            parsed = fmt.parse(choice["text"])
            msg = tool_message(parsed, fmt, legacy)
            if parsed.calls and finish == "stop":
                finish = "function_call" if legacy else "tool_calls"
        return {
            "id": cid,
            "object": "chat.completion",
            "created": done["created"],
            "model": done["model"],
            "choices": [
                {"index": 0, "message": msg, "logprobs": _chat_logprobs(choice["logprobs"]), "finish_reason": finish}
            ],
            "usage": done["usage"],
        }

    def _chat_stream(self, cid: str, chunks: Iterator[Completion]) -> Iterator[Completion]:
        first = True
        for chunk in chunks:
            choice = chunk["choices"][0]
            head = {"id": cid, "object": "chat.completion.chunk", "created": chunk["created"], "model": chunk["model"]}
            if first:
                first = False
                role = {"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}
                yield {**head, "choices": [role]}
            delta = {"content": choice["text"]} if choice["text"] else {}
            lp = _chat_logprobs(choice["logprobs"])
            yield {
                **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": choice["finish_reason"]}],
            }

    def _tool_chat_stream(self, cid: str, chunks: Iterator[Completion], deltas: ToolStream) -> Iterator[Completion]:
        """Streamed chat with tools: the completion's text re-parsed as it grows; content and
        tool-call deltas as the parse grows (what may still become a call is held back)."""
        text = ""
        first = True
        for chunk in chunks:
            choice = chunk["choices"][0]
            head = {"id": cid, "object": "chat.completion.chunk", "created": chunk["created"], "model": chunk["model"]}
            if first:
                first = False
                role = {"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}
                yield {**head, "choices": [role]}
            text += choice["text"]
            finish = choice["finish_reason"]
            lp = _chat_logprobs(choice["logprobs"])
            for delta in deltas.feed(text, final=finish is not None):
                yield {**head, "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": None}]}
                lp = None
            if lp is not None:
                yield {**head, "choices": [{"index": 0, "delta": {}, "logprobs": lp, "finish_reason": None}]}
            if finish is not None:
                if deltas.sent and finish == "stop":
                    finish = "function_call" if deltas.legacy else "tool_calls"
                yield {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}

    # -- state ----------------------------------------------------------------------------------

    def set_cache(self, cache: BaseLlamaCache | None) -> None:
        """A prompt cache (`LlamaRAMCache`, `LlamaDiskCache`), as llama-cpp-python's: each
        completion starts from the cached state sharing the longest prefix with its prompt when
        that is longer than what the context holds, and leaves its own state in the cache. The
        answers are the ones without a cache (the state carries the logits a prompt left); None
        removes it."""
        if cache is not None and not isinstance(cache, BaseLlamaCache):
            raise InvalidArgumentError(f"set_cache takes a LlamaRAMCache or LlamaDiskCache, not {type(cache).__name__}")
        self.cache = cache

    #: How many leading tokens two sequences share (llama-cpp-python's ``Llama.longest_token_prefix``).
    longest_token_prefix = staticmethod(longest_token_prefix)

    def _load_cached(self, tokens: list[int]) -> None:
        assert self.cache is not None
        try:
            state = self.cache[tokens]
        except KeyError:
            return
        if longest_token_prefix(state.input_ids.tolist(), tokens) > longest_token_prefix(
            self._input_ids.tolist(), tokens
        ):
            seed = self._seed  # this completion's, already drawn: the cache only saves evaluation
            self.load_state(state)
            self._seed = seed

    @_one_at_a_time
    def save_state(self) -> LlamaState:
        """The context as it stands: tokens, KV cache, the seed the next completion derives its
        sampler's from, and the logits (every evaluated row with logits_all, else the last
        token's), so that a completion after `load_state` samples as the original did."""
        ctx = self._need_ctx()
        n = self.n_tokens
        if self._logits_all:
            pos = np.arange(n, dtype=np.intc)
        else:
            keep = self._has_logits[:n] & self._from_batch[:n]
            if n:
                keep[n - 1] = self._has_logits[n - 1]
            pos = np.flatnonzero(keep).astype(np.intc)
        return LlamaState(
            input_ids=self.input_ids[:n].copy(),
            scores=self.scores[[self._row(int(p)) for p in pos]].copy(),
            n_tokens=n,
            kv_state=ctx.save_state(n),
            seed=self._seed,
            logits_pos=pos,
        )

    @_one_at_a_time
    def load_state(self, state: LlamaState) -> None:
        ctx = self._need_ctx()
        ctx.load_state(state.kv_state)
        n = self.n_tokens = state.n_tokens
        self.input_ids[:n] = state.input_ids
        self._seed = state.seed
        self._has_logits[:] = False
        self._from_batch[:] = False
        pos = state.logits_pos
        if pos is None:  # a state made without positions: its rows are the first ones, as saved
            pos = np.arange(min(n, len(state.scores)), dtype=np.intc)
        for p, row in zip(pos, state.scores):
            p = int(p)
            if p < n:  # ascending: a later position sharing the row takes it
                self._has_logits[self._row(p) :: self._n_rows] = False
                self.scores[self._row(p)] = row
                self._has_logits[p] = self._from_batch[p] = True

    def close(self) -> None:
        self._ctx = None
        self._embd_ctx = None

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_init_args(**args: Any) -> None:
    """The `Llama.__init__` keywords this runtime takes but cannot honour with a non-default value."""
    why = {
        "kv_overrides": "kv_overrides (metadata overrides) are not supported",
        "n_threads_batch": "n_threads_batch different from n_threads is not supported (one thread pool)",
        "rope_scaling_type": "rope_scaling_type overrides are not supported: the GGUF's rope settings are used",
        "attention_type": "attention_type overrides are not supported: the model's own (causal or not) is used",
        "rope_freq_base": "rope_freq_base overrides are not supported: the GGUF's value is used",
        "rope_freq_scale": "rope_freq_scale overrides are not supported: the GGUF's value is used",
        "yarn": "YaRN overrides (yarn_*) are not supported: the GGUF's rope settings are used",
        "lora": "LoRA adapters (lora_base, lora_path, lora_scale) are not supported",
        "numa": "NUMA placement is not supported",
        "chat_handler": "chat_handler is not supported yet: the GGUF's chat template is used",
        "draft_model": "speculative decoding (draft_model) is not supported",
        "tokenizer": "a custom tokenizer is not supported: the GGUF's vocabulary is used",
        "spm_infill": "spm_infill is not supported",
    }
    defaults: dict[str, Any] = {
        "rope_scaling_type": -1,
        "attention_type": -1,
        "rope_freq_base": 0.0,
        "rope_freq_scale": 0.0,
        "yarn": (-1.0, 1.0, 32.0, 1.0, 0),
        "lora": (None, 1.0, None),
        "numa": False,
        "spm_infill": False,
    }
    for name, value in args.items():
        if name == "n_threads_batch":
            nb, n = value
            if nb is not None and nb != n:
                raise InvalidArgumentError(f"{why[name]} (got n_threads_batch={nb}, n_threads={n})")
            continue
        if name == "rope_scaling_type" and value is None:
            continue
        default = defaults.get(name)
        if value != default and not (value is None and default is None):
            raise InvalidArgumentError(f"{why[name]} (got {name}={value!r})")


_POOLING = {-1: None, 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def _pooling_name(p: int | str | None) -> str | None:
    """`pooling_type=`: llama-cpp-python's ints (-1 = the model's own, 0 none, 1 mean, 2 cls,
    3 last, 4 rank) or those names."""
    if p is None or isinstance(p, str) and p.lower() in ("unspecified", ""):
        return None
    if isinstance(p, str):
        if p.lower() not in _POOLING.values():
            raise InvalidArgumentError(f"pooling_type {p!r}: expected none, mean, cls, last or rank")
        return p.lower()
    if isinstance(p, bool) or not isinstance(p, int) or p not in _POOLING:
        raise InvalidArgumentError(
            f"pooling_type {p!r}: expected -1 (the model's), 0 none, 1 mean, 2 cls, 3 last or 4 rank"
        )
    return _POOLING[p]


# llama.cpp's KV cache types (`--cache-type-k/v`) by ggml type id, as llama-cpp-python passes them.
_KV_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0"}


def _kv_type_name(t: str | int | None, which: str = "type_k") -> str:
    """A KV cache type given as a name or a ggml type id (None = f16)."""
    if t is None:
        return "f16"
    if isinstance(t, bool) or not isinstance(t, (int, str)):
        raise _bad_kv(t, which)
    name = _KV_TYPES.get(t) if isinstance(t, int) else t.lower()
    if name is None or name not in _KV_TYPES.values():
        raise _bad_kv(t, which)
    return name


def _bad_kv(t: object, which: str) -> InvalidArgumentError:
    names = ", ".join(_KV_TYPES.values())
    return InvalidArgumentError(f"{which} {t!r} is not supported: use one of {names} (or their ggml type ids)")


def _chat_logprobs(lp: dict[str, Any] | None) -> dict[str, Any] | None:
    """Completion logprobs → OpenAI's chat shape, as llama-cpp-python converts them."""
    if lp is None:
        return None
    return {
        "content": [
            {
                "token": token,
                "bytes": None,
                "logprob": logprob,
                "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top.items()],
            }
            for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"])
        ],
        "refusal": None,
    }


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that could be the start of a stop string (held back)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                best = max(best, n)
                break
    return best
