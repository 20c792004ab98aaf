"""`python -m llama …` / `llama …`: the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import InvalidArgumentError, LlamaError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .high_level import Llama

# llama.cpp's `enum llama_ftype` names, for `info`.
FILE_TYPES = {
    0: "ALL_F32",
    1: "MOSTLY_F16",
    2: "MOSTLY_Q4_0",
    3: "MOSTLY_Q4_1",
    7: "MOSTLY_Q8_0",
    8: "MOSTLY_Q5_0",
    9: "MOSTLY_Q5_1",
    10: "MOSTLY_Q2_K",
    11: "MOSTLY_Q3_K_S",
    12: "MOSTLY_Q3_K_M",
    13: "MOSTLY_Q3_K_L",
    14: "MOSTLY_Q4_K_S",
    15: "MOSTLY_Q4_K_M",
    16: "MOSTLY_Q5_K_S",
    17: "MOSTLY_Q5_K_M",
    18: "MOSTLY_Q6_K",
    32: "MOSTLY_BF16",
}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def cmd_info(a: argparse.Namespace) -> int:
    from . import _llama

    info = _llama.gguf_info(a.model)
    if a.json:
        print(json.dumps(info, ensure_ascii=False, indent=1))
        return 0
    md = info["metadata"]
    arch = md.get("general.architecture", "?")
    print(f"file:          {a.model}")
    print(f"GGUF version:  {info['version']}")
    print(f"architecture:  {arch}")
    if "general.name" in md:
        print(f"name:          {md['general.name']}")
    ft = md.get("general.file_type")
    if ft is not None:
        print(f"file type:     {FILE_TYPES.get(ft, ft)}")
    print(f"size:          {_human(info['file_size'])}  ({info['n_params']:,} parameters)")
    tok_model = md.get("tokenizer.ggml.model")
    toks = md.get("tokenizer.ggml.tokens")
    n_vocab = toks["len"] if isinstance(toks, dict) else None
    print(
        f"vocab:         {n_vocab} tokens, type {tok_model}"
        + (f", pre-tokenizer {md['tokenizer.ggml.pre']}" if "tokenizer.ggml.pre" in md else "")
    )
    print("hparams:")
    for k, v in md.items():
        if k.startswith(arch + "."):
            print(f"  {k[len(arch) + 1 :]:<36} {v}")
    print(f"tensors ({len(info['tensors'])}):")
    w = max((len(t["name"]) for t in info["tensors"]), default=10)
    for t in info["tensors"]:
        shape = " x ".join(str(d) for d in t["shape"])
        print(f"  {t['name']:<{w}}  {t['type']:<7} {shape}")
    return 0


def cmd_tokenize(a: argparse.Namespace) -> int:
    from .high_level import Llama

    llm = Llama(a.model, vocab_only=True)
    print(json.dumps(llm.tokenize(a.text.encode("utf-8"), add_bos=not a.no_bos, special=a.special)))
    return 0


def _load(a: argparse.Namespace, **kw: Any) -> Llama:
    from .high_level import Llama
    from .pull import resolve_model

    a.model = resolve_model(a.model)
    t0 = time.perf_counter()
    seed = a.seed if a.seed is not None else -1
    llm = Llama(a.model, n_ctx=a.ctx_size, n_threads=a.threads, seed=seed, **_cache_kwargs(a), **kw)
    if a.verbose:
        print(f"load time: {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return llm


def _stream(llm: Llama, prompt_tokens: list[int], a: argparse.Namespace, n_predict: int) -> str:
    """Stream a continuation to stdout; return the text. Timings on stderr with --verbose."""
    from . import _llama

    t0 = time.perf_counter()
    t_first = None
    dec = _llama.StreamDecoder()
    out: list[str] = []
    n = 0
    if a.seed is not None:
        llm.set_seed(a.seed)
    llm.last_n_tokens_size = a.repeat_last_n
    gen = llm.generate(
        prompt_tokens,
        top_k=a.top_k,
        top_p=a.top_p,
        min_p=a.min_p,
        typical_p=a.typical,
        temp=a.temp,
        repeat_penalty=a.repeat_penalty,
        presence_penalty=a.presence_penalty,
        frequency_penalty=a.frequency_penalty,
        mirostat_mode=a.mirostat,
        mirostat_tau=a.mirostat_ent,
        mirostat_eta=a.mirostat_lr,
    )
    try:
        for tok in gen:
            if t_first is None:
                t_first = time.perf_counter()
            if llm.token_is_eog(tok) or n >= n_predict:
                break
            n += 1
            piece = dec.push(llm.token_to_piece(tok))
            out.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
            if llm.n_tokens >= llm.n_ctx():
                print("\n[context full]", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("\n[interrupted]", file=sys.stderr)
    tail = dec.flush()
    sys.stdout.write(tail)
    sys.stdout.flush()
    t1 = time.perf_counter()
    if a.verbose and t_first is not None:
        pp = len(prompt_tokens) / max(t_first - t0, 1e-9)
        tg = (n - 1) / max(t1 - t_first, 1e-9) if n > 1 else float("nan")
        print(
            f"\nprompt: {len(prompt_tokens)} tokens, {pp:.2f} tok/s; generation: {n} tokens, {tg:.2f} tok/s",
            file=sys.stderr,
        )
    return "".join(out) + tail


def cmd_embed(a: argparse.Namespace) -> int:
    """One embedding per input line (FILE, or stdin for '-'/none): the vector's numbers separated by
    spaces, or with --json one JSON array per line (per-token vectors with --pooling none: an
    array of arrays; a reranker's head scores of each line with --pooling rank, not normalized).
    Empty lines are embedded as empty texts."""
    kw: dict[str, Any] = {"embedding": True}
    if a.pooling is not None:
        kw["pooling_type"] = a.pooling
    llm = _load(a, **kw)
    text = sys.stdin.read() if a.file in (None, "-") else Path(a.file).read_text(encoding="utf-8")
    lines = text.splitlines()
    normalize = not a.no_normalize and a.pooling != "rank"  # scores are not vectors
    vecs = llm.embed(lines, normalize=normalize, truncate=not a.no_truncate) if lines else []
    out = sys.stdout
    for v in vecs:
        if a.json:
            out.write(json.dumps(v) + "\n")
        elif v and isinstance(v[0], list):  # pooling none: a line per token, a blank line after
            out.write("".join(" ".join(f"{x:.7g}" for x in row) + "\n" for row in v) + "\n")
        else:
            out.write(" ".join(f"{x:.7g}" for x in v) + "\n")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    llm = _load(a)
    if a.prompt is not None:
        tokens = llm.tokenize(a.prompt.encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            raise LlamaError("the prompt is empty and the model has no BOS token to start from")
        sys.stdout.write(a.prompt)
        _stream(llm, tokens, a, a.n_predict)
        sys.stdout.write("\n")
        return 0
    # Interactive: each line is a fresh prompt.
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line.strip():
            continue
        tokens = llm.tokenize(line.encode("utf-8"), add_bos=True, special=True)
        _stream(llm, tokens, a, a.n_predict)
        sys.stdout.write("\n")


def cmd_chat(a: argparse.Namespace) -> int:
    llm = _load(a)
    messages = []
    if a.system:
        messages.append({"role": "system", "content": a.system})
    inputs = [a.prompt] if a.prompt else None
    while True:
        if inputs is not None:
            if not inputs:
                return 0
            line = inputs.pop(0)
            print(f"> {line}")
        else:
            try:
                line = input("> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        tokens = llm.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        # generate() reuses the cached prefix, so earlier turns are not evaluated again.
        reply = _stream(llm, tokens, a, a.n_predict if a.n_predict > 0 else llm.n_ctx())
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": reply})


def cmd_perplexity(a: argparse.Namespace) -> int:
    from . import _llama

    llm = _load(a, logits_all=True, n_batch=a.ctx_size)
    with open(a.file, "rb") as f:
        text = f.read()
    tokens = llm.tokenize(text, add_bos=False, special=False)
    c = a.ctx_size
    n_chunks = len(tokens) // c
    if a.chunks is not None and a.chunks > 0:
        n_chunks = min(n_chunks, a.chunks)
    if n_chunks == 0:
        raise LlamaError(f"{a.file}: {len(tokens)} tokens is less than one chunk of {c}")
    bos = llm.token_bos()
    add_bos = llm.add_bos_token() and bos >= 0
    nll = 0.0
    count = 0
    first = c // 2
    for i in range(n_chunks):
        chunk = tokens[i * c : (i + 1) * c]
        if add_bos:
            chunk = [bos] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        chunk_nll, n = _llama.nll(llm.scores[:c], chunk, first)
        nll += chunk_nll
        count += n
        if not a.quiet:
            print(f"[{i + 1}]{math.exp(nll / count):.4f}", end=" ", file=sys.stderr, flush=True)
    if not a.quiet:
        print(file=sys.stderr)
    print(f"ppl = {math.exp(nll / count):.6f}")
    return 0


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


class _Evaluator(Protocol):
    """What the bench needs of a `Llama` (ours or llama-cpp-python's)."""

    n_tokens: int

    def eval(self, tokens: Sequence[int]) -> None: ...
    def reset(self) -> None: ...
    def n_vocab(self) -> int: ...
    def token_bos(self) -> int: ...


def _bench_runs(llm: _Evaluator, p: int, n: int, r: int, depth: int) -> tuple[float | None, float | None]:
    """llama-bench's method: pp = one batch of p tokens; tg = n single-token steps; both after
    `depth` tokens are in the cache (a BOS at depth 0, for tg). The depth is filled once and each
    run starts from it again (n_tokens = depth drops what the previous run added, as llama-bench's
    state restore). Returns (pp tok/s, tg tok/s), medians of r runs after one warm-up."""
    import random

    rnd = random.Random(1234)
    n_vocab = llm.n_vocab()
    bos = llm.token_bos() if llm.token_bos() >= 0 else 0
    rand = lambda k: [rnd.randrange(n_vocab) for _ in range(k)]  # noqa: E731
    llm.reset()
    if depth:
        llm.eval([bos] + rand(depth - 1))
    prompt = ([] if depth else [bos]) + rand(max(p - (0 if depth else 1), 0))
    pp: list[float] = []
    tg: list[float] = []
    for i in range(r + 1):
        if p > 0:
            llm.n_tokens = depth
            t0 = time.perf_counter()
            llm.eval(prompt[:p])
            dt = time.perf_counter() - t0
            if i:
                pp.append(p / dt)
        if n > 0:
            llm.n_tokens = depth
            if not depth:
                llm.eval([bos])
            t0 = time.perf_counter()
            for _ in range(n):
                llm.eval([rnd.randrange(n_vocab)])
            dt = time.perf_counter() - t0
            if i:
                tg.append(n / dt)
    return (_median(pp) if pp else None), (_median(tg) if tg else None)


def _bench_ours(a: argparse.Namespace, depth: int) -> tuple[float | None, float | None]:
    from .high_level import Llama

    llm = Llama(a.model, n_ctx=depth + a.p + a.n + 8, n_batch=max(a.p, 1), n_threads=a.threads, **_cache_kwargs(a))
    return _bench_runs(llm, a.p, a.n, a.repetitions, depth)


def _bench_llama_cpp(a: argparse.Namespace, depth: int, flash_attn: bool) -> tuple[float | None, float | None] | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(
        a.model,
        n_ctx=depth + a.p + a.n + 8,
        n_batch=max(a.p, 1),
        n_ubatch=max(a.p, 1),
        n_threads=a.threads,
        n_threads_batch=a.threads,
        flash_attn=flash_attn,
        type_k=_GGML_ID[a.cache_type_k],
        type_v=_GGML_ID[a.cache_type_v or a.cache_type_k],
        verbose=False,
    )
    return _bench_runs(llm, a.p, a.n, a.repetitions, depth)


# the cache types' ggml ids, as llama-cpp-python takes them
_GGML_ID = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8}


def _bench_grammar(a: argparse.Namespace) -> int:
    """Constrained vs free generation in one run: the same sampling chain (temperature 0.8, one
    seed per repetition) with and without the grammar stage, n tokens after a chat prompt asking for
    output in that grammar; then the mask time per token, replaying the constrained tokens through a
    fresh matcher. When the grammar ends, it restarts (the token stream goes on)."""
    import numpy as np  # noqa: F811 (the runtime import of the TYPE_CHECKING name)

    from . import _llama
    from .grammar import LlamaGrammar
    from .high_level import Llama

    if a.json_schema:
        spec = Path(a.json_schema).read_text(encoding="utf-8")
        grammar = LlamaGrammar.from_json_schema(spec)
        ask = f"Reply with JSON that follows this JSON schema:\n{spec}"
    else:
        grammar = LlamaGrammar.from_file(a.grammar)
        ask = f"Reply with text in this grammar (GBNF):\n{grammar._grammar}"
    llm = Llama(a.model, n_ctx=4096, n_threads=a.threads, verbose=False)
    prompt = llm.apply_chat_template([{"role": "user", "content": ask}], tokenize=True)
    if len(prompt) + a.n + 1 > llm.n_ctx():
        raise InvalidArgumentError(f"the prompt ({len(prompt)} tokens) and -n {a.n} do not fit 4096 tokens")

    def run(seed: int, constrained: bool) -> tuple[float, list[npt.NDArray[np.single]], list[int]]:
        llm.set_seed(seed)
        chain = llm._init_sampler(temp=0.8, grammar=grammar if constrained else None)
        llm.reset()
        llm.eval(prompt)
        rows: list[npt.NDArray[np.single]] = []
        toks: list[int] = []
        t0 = time.perf_counter()
        for _ in range(a.n):
            row = llm.scores[llm.n_tokens - 1]
            if constrained:
                rows.append(row.copy())
            tok = chain.sample(row)
            toks.append(tok)
            if constrained and llm.token_is_eog(tok):
                chain.reset()
            llm.eval([tok])
        return a.n / (time.perf_counter() - t0), rows, toks

    free: list[float] = []
    con: list[float] = []
    mask_us: list[float] = []
    for i in range(a.repetitions + 1):
        f, _, _ = run(1000 + i, False)
        c, rows, toks = run(1000 + i, True)
        if i == 0:
            continue  # warm-up (and the vocabulary's token trie is built once)
        free.append(f)
        con.append(c)
        m = grammar.matcher(llm._model)
        for row, tok in zip(rows, toks):
            x = np.array(row, dtype=np.float32)
            t0 = time.perf_counter()
            m.mask_logits(x)
            mask_us.append((time.perf_counter() - t0) * 1e6)
            if llm.token_is_eog(tok):
                m.reset()
            else:
                m.accept(tok)
    mask_us.sort()
    p50, p99 = mask_us[len(mask_us) // 2], mask_us[min(len(mask_us) - 1, int(len(mask_us) * 0.99))]
    fr, cr = _median(free), _median(con)
    what = a.json_schema or a.grammar
    print(f"model: {os.path.basename(a.model)}  threads: {a.threads}  runs: {a.repetitions}  isa: {_llama.cpu_info()}")
    print(f"constraint: {what}  vocabulary: {llm.n_vocab()} tokens")
    print(f"{'test':<14} {'tok/s':>9}")
    print(f"{'tg' + str(a.n) + ' free':<14} {fr:>9.2f}")
    print(f"{'tg' + str(a.n) + ' grammar':<14} {cr:>9.2f}   ratio {cr / fr:.3f}")
    print(f"mask time per token: p50 {p50:.0f} µs  p99 {p99:.0f} µs  ({len(mask_us)} tokens)")
    if a.json:
        out = {f"tg{a.n}": round(fr, 3), f"tg{a.n}_grammar": round(cr, 3), "mask_p50_us": round(p50, 1)}
        out["mask_p99_us"] = round(p99, 1)
        print(json.dumps(out))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from . import _llama

    a.threads = a.threads or (os.cpu_count() or 1)
    if a.llama_cpp_fa != "off" and not a.compare_llama_cpp:
        raise InvalidArgumentError("--llama-cpp-fa applies to --compare-llama-cpp only")
    if (a.grammar or a.json_schema) and a.depth != "0":
        raise InvalidArgumentError("-d/--depth does not apply to --grammar/--json-schema")
    if a.grammar or a.json_schema:
        if a.compare_llama_cpp:
            raise InvalidArgumentError("--compare-llama-cpp does not apply to --grammar/--json-schema")
        return _bench_grammar(a)
    depths = _int_list(a.depth, "-d/--depth")
    fa = {"off": [False], "on": [True], "both": [False, True]}[a.llama_cpp_fa]
    # one row per test and depth, named as llama-bench's: pp512, tg128, pp512@d4096
    rows: list[str] = []
    ours: dict[str, float] = {}
    ref: dict[bool, dict[str, float]] = {}
    for d in depths:
        names = ([f"pp{a.p}"] if a.p > 0 else []) + ([f"tg{a.n}"] if a.n > 0 else [])
        names = [k if d == 0 else f"{k}@d{d}" for k in names]
        rows += names
        ours.update(zip(names, [v for v in _bench_ours(a, d) if v is not None]))
        if a.compare_llama_cpp:
            for f in fa:
                res = _bench_llama_cpp(a, d, f)
                if res is not None:
                    ref.setdefault(f, {}).update(zip(names, [v for v in res if v is not None]))
    if a.compare_llama_cpp and not ref:
        print("llama-cpp-python is not installed: no comparison", file=sys.stderr)
    name = os.path.basename(a.model)
    print(f"model: {name}  threads: {a.threads}  runs: {a.repetitions}  isa: {_llama.cpu_info()}")
    w = max(8, *(len(k) for k in rows))
    head = f"{'test':<{w}} {'llama.py tok/s':>15}"
    for f in ref:
        fa_name = "llama.cpp fa" if f else "llama.cpp"
        head += f" {fa_name + ' tok/s':>19} {'ratio':>7}"
    print(head)
    for k in rows:
        line = f"{k:<{w}} {ours[k]:>15.2f}"
        for f in ref:
            line += f" {ref[f][k]:>19.2f} {ours[k] / ref[f][k]:>7.2f}"
        print(line)
    if a.json:
        out: dict[str, Any] = {k: round(v, 3) for k, v in ours.items()}
        for f, vals in ref.items():
            out["llama_cpp_fa" if f else "llama_cpp"] = {k: round(v, 3) for k, v in vals.items()}
        print(json.dumps(out))
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    """'0,4096' -> [0, 4096] (non-negative, as llama-bench's comma lists)."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidArgumentError(f"{flag} takes comma-separated integers, not {text!r}") from None
    if not vals or min(vals) < 0:
        raise InvalidArgumentError(f"{flag} takes non-negative integers, not {text!r}")
    return vals


def cmd_serve(a: argparse.Namespace) -> int:
    """The OpenAI-compatible server (Rust, axum): runs until Ctrl-C / SIGTERM. With --ray, replicas of
    it on Ray Serve behind one endpoint (llama.serve.ray)."""
    if a.ray:
        if not os.environ.get("RAY_ADDRESS"):
            # The local cluster started for the run is one node on the loopback (127.0.0.1), not on the
            # machine's network address: Ray's switch for single-node platforms, read when ray is
            # imported. Nodes join a cluster started with `ray start --head` (RAY_ADDRESS).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            # and sends no usage statistics anywhere (RAY_USAGE_STATS_ENABLED=1 to opt in)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            from .serve.ray import serve_cli
        except ImportError as e:
            raise InvalidArgumentError(f"--ray: {e}") from None
        return serve_cli(a)
    ray_only = [
        f"--{k.replace('_', '-')}"
        for k in (
            "replicas",
            "min_replicas",
            "max_replicas",
            "target_ongoing_requests",
            "num_cpus",
            "max_ongoing_requests",
        )
        if getattr(a, k) is not None
    ]
    if a.no_affinity:
        ray_only.append("--no-affinity")
    if ray_only:
        raise InvalidArgumentError(f"{', '.join(ray_only)} apply to --ray (replicas on Ray Serve) only")
    from ._llama import serve

    path = Path(a.model)
    if path.is_dir():
        raise InvalidArgumentError(f"{path} is a folder: give the .gguf file to serve")
    api_key = a.api_key if a.api_key is not None else os.environ.get("LLAMA_API_KEY")
    # SIGINT is how the server is stopped: when serve returns it has shut down cleanly
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            str(path),
            host=a.host,
            port=a.port,
            parallel=a.parallel,
            n_ctx=a.ctx_size,
            n_threads=a.threads,
            n_batch=a.batch_size,
            queue=a.queue,
            api_key=api_key or None,
            alias=a.model_alias,
            body_limit=a.body_limit,
            quiet=a.quiet,
            embeddings=a.embeddings,
            pooling=a.pooling,
            reranking=a.reranking,
            **_cache_kwargs(a),
        )
    return 0


def cmd_bench_serve(a: argparse.Namespace) -> int:
    from .bench_serve import run

    return run(a)


def cmd_pull(a: argparse.Namespace) -> int:
    from .pull import cmd_pull as pull

    return pull(a)


def cmd_quantize(a: argparse.Namespace) -> int:
    from . import _llama

    _llama.quantize(a.path, a.type, a.output, a.pure, a.threads or 0, a.quiet, a.imatrix)
    return 0


def cmd_convert(a: argparse.Namespace) -> int:
    from . import _llama

    out = _llama.convert(a.path, a.outtype, a.outfile, a.vocab_dir, a.quiet)
    if not a.quiet:
        print(out)
    return 0


def _add_model_args(p: argparse.ArgumentParser, need_model: bool = True) -> None:
    p.add_argument(
        "-m",
        "--model",
        required=need_model,
        help="GGUF file, a folder holding one, or hf:OWNER/REPO[/FILE]"
        + ("" if need_model else " (default: $LLAMA_MODEL, else Qwen2.5-0.5B-Instruct Q4_K_M pulled on first use)"),
    )
    p.add_argument("-c", "--ctx-size", type=int, default=0, help="context size (0 = the model's, capped at 4096)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    p.add_argument("--verbose", action="store_true", help="print load time and tokens/s on stderr")
    _add_cache_args(p)


_CACHE_TYPES = ("f16", "f32", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    """llama.cpp's attention options: -fa, -ctk, -ctv."""
    p.add_argument(
        "-fa",
        "--flash-attn",
        action="store_true",
        help="llama.cpp's flash-attention arithmetic (needed for a quantized cache)",
    )
    p.add_argument("-ctk", "--cache-type-k", choices=_CACHE_TYPES, default="f16", help="KV cache type of K")
    p.add_argument(
        "-ctv", "--cache-type-v", choices=_CACHE_TYPES, default=None, help="KV cache type of V (default: as K)"
    )


def _cache_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    return {"flash_attn": a.flash_attn, "type_k": a.cache_type_k, "type_v": a.cache_type_v}


def _add_sampling_args(p: argparse.ArgumentParser, n_default: int = 128) -> None:
    p.add_argument("-n", "--n-predict", type=int, default=n_default, help="tokens to generate")
    p.add_argument("--temp", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--repeat-last-n", type=int, default=64, help="tokens the penalties look back over")
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("--typical", type=float, default=1.0, help="locally typical sampling p (1 = off)")
    p.add_argument("--mirostat", type=int, default=0, choices=(0, 1, 2), help="mirostat version (0 = off)")
    p.add_argument("--mirostat-lr", type=float, default=0.1, help="mirostat eta")
    p.add_argument("--mirostat-ent", type=float, default=5.0, help="mirostat tau")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="llama", description="LLaMA-family inference on CPU (GGUF models).")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("info", help="describe a GGUF file: architecture, hparams, vocab, tensors")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("tokenize", help="print the token ids of TEXT as a JSON list")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--no-bos", action="store_true", help="do not add BOS even where the model asks for it")
    p.add_argument("--special", action="store_true", help="match special/control tokens written in the text")
    p.add_argument("text")
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("run", help="stream a continuation of a prompt (interactive without -p)")
    _add_model_args(p, need_model=False)
    _add_sampling_args(p)
    p.add_argument("-p", "--prompt", default=None)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("embed", help="embeddings of each line of FILE (or stdin), one vector per line")
    _add_model_args(p)
    p.add_argument("file", nargs="?", default=None, help="text file, one input per line ('-' or none: stdin)")
    p.add_argument("--json", action="store_true", help="one JSON array per line")
    p.add_argument(
        "--pooling", choices=("none", "mean", "cls", "last", "rank"), default=None, help="(default: the model's)"
    )
    p.add_argument("--no-normalize", action="store_true", help="raw vectors (default: L2-normalized)")
    p.add_argument("--no-truncate", action="store_true", help="fail on a line longer than the context")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("chat", help="multi-turn chat with the model's chat template")
    _add_model_args(p, need_model=False)
    _add_sampling_args(p, n_default=-1)
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("-p", "--prompt", default=None, help="a single user turn (non-interactive)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("perplexity", help="perplexity of a text file, computed as llama-perplexity does")
    _add_model_args(p)
    p.add_argument("-f", "--file", required=True)
    p.add_argument("--chunks", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_perplexity, ctx_size=256)  # also the default of -c
    p = sub.add_parser("bench", help="prompt processing and generation speed (llama-bench's method)")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-p", type=int, default=512, help="prompt tokens (pp test)")
    p.add_argument("-n", type=int, default=128, help="generated tokens (tg test)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-r", "--repetitions", type=int, default=3)
    p.add_argument("--json", action="store_true", help='print {"ppP": X, "tgN": Y} as the last line')
    p.add_argument("-d", "--depth", default="0", help="tokens in the cache before each test, comma list (0,4096)")
    p.add_argument("--compare-llama-cpp", action="store_true", help="also run llama-cpp-python on the same file")
    p.add_argument(
        "--llama-cpp-fa",
        choices=["off", "on", "both"],
        default="off",
        help="llama.cpp's flash attention in the comparison (ours: -fa)",
    )
    _add_cache_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--grammar", metavar="FILE", help="GBNF file: constrained vs free tg-N and mask time per token")
    g.add_argument("--json-schema", metavar="FILE", help="JSON schema file: as --grammar")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server with N slots and continuous batching")
    p.add_argument("-m", "--model", required=True, help="GGUF file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    p.add_argument("-np", "--parallel", type=int, default=4, help="slots: requests generated at once")
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help="context of each slot (0: the model's)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt tokens per step")
    p.add_argument("--queue", type=int, default=64, help="requests waiting for a slot before 503")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or $LLAMA_API_KEY)")
    p.add_argument("--model-alias", "-a", default=None, help="model id for clients (default: the file name)")
    p.add_argument("--body-limit", type=int, default=8 << 20, help="largest request body in bytes (413 past it)")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    p.add_argument(
        "--embeddings", action="store_true", help="serve /v1/embeddings too (always on for an embedding model)"
    )
    p.add_argument("--pooling", choices=("none", "mean", "cls", "last"), default=None, help="(default: the model's)")
    _add_cache_args(p)
    p.add_argument(
        "--reranking",
        "--rerank",
        action="store_true",
        help="serve /v1/rerank (and /rerank, /reranking) with the model's classification head",
    )
    rg = p.add_argument_group(
        "replicas on Ray Serve (pip install 'llama-py[ray]'; docs/RAY.md)",
        "--ray serves replicas of this server behind one endpoint on the Ray cluster at $RAY_ADDRESS, else on a "
        "local one started for the run; -np/-c/-t/... apply to each replica.",
    )
    rg.add_argument("--ray", action="store_true", help="run on Ray Serve")
    rg.add_argument(
        "--replicas", type=int, default=None, help="replicas (default 1; the initial count when autoscaling)"
    )
    rg.add_argument("--min-replicas", type=int, default=None, help="autoscale: fewest replicas")
    rg.add_argument("--max-replicas", type=int, default=None, help="autoscale: most replicas")
    rg.add_argument(
        "--target-ongoing-requests", type=float, default=None, help="autoscale: requests per replica (default: -np)"
    )
    rg.add_argument("--num-cpus", type=float, default=None, help="CPUs Ray reserves per replica (default: -t, else 1)")
    rg.add_argument(
        "--max-ongoing-requests", type=int, default=None, help="requests a replica takes at once (default: -np)"
    )
    rg.add_argument(
        "--no-affinity",
        action="store_true",
        help="route by load only (default: a conversation's turns go to the replica holding its prefix)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench-serve", help="aggregate tokens/s, TTFT and per-token latency of C concurrent clients")
    p.add_argument("-m", "--model", default=None, help="GGUF file: a server is started for the run")
    p.add_argument("--url", default=None, help="benchmark a running server instead (e.g. llama-server)")
    p.add_argument("--clients", default="1,2,4,8", help="comma-separated client counts (default 1,2,4,8)")
    p.add_argument("-n", type=int, default=128, help="tokens each client generates")
    p.add_argument("-p", type=int, default=32, help="prompt length in words")
    p.add_argument("-np", "--parallel", type=int, default=4, help="slots of the started server")
    p.add_argument("-c", "--ctx-size", type=int, default=1024, help="context per slot of the started server")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--model-alias", default=None, help="model name sent to --url")
    p.add_argument("--quiet", action="store_true", help="only the JSON line")
    p.set_defaults(func=cmd_bench_serve)

    p = sub.add_parser(
        "convert", help="Meta .pth or Hugging Face safetensors checkpoint → GGUF (as llama.cpp's converter)"
    )
    p.add_argument("path", help="model folder (params.json + consolidated.*.pth, or config.json + *.safetensors)")
    p.add_argument("--outtype", choices=["f16", "f32", "bf16", "q8_0"], default="f16", help="type of 2-D weights")
    p.add_argument("-o", "--outfile", default=None, help="output path (default: PATH/ggml-model-OUTTYPE.gguf)")
    p.add_argument("--vocab-dir", default=None, help="folder with tokenizer.model / tokenizer.json")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_convert)

    from .pull import PARSER_KW, add_pull_args

    p = sub.add_parser("pull", **PARSER_KW)
    add_pull_args(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("quantize", help="quantize an F32/F16/BF16 GGUF (as llama-quantize does)")
    p.add_argument("path", help="GGUF file, or a model folder holding ggml-model-f16.gguf")
    p.add_argument(
        "--type",
        default="q4_0",
        help="llama.cpp file type: q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, "
        "q5_k_s, q5_k_m, q6_k, or q2_k_s (needs --imatrix) (default q4_0)",
    )
    p.add_argument(
        "--imatrix",
        default=None,
        metavar="FILE",
        help="importance matrix from llama-imatrix (GGUF or legacy .dat), as llama-quantize --imatrix",
    )
    p.add_argument("--pure", action="store_true", help="every 2-D weight in TYPE (no llama.cpp mix)")
    p.add_argument("-o", "--output", default=None, help="output file (default: ggml-model-TYPE.gguf beside the input)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_quantize)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except LlamaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
