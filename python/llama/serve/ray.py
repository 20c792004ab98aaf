"""Replicas of `python -m llama serve` on Ray Serve, behind one OpenAI endpoint.

    pip install 'llama-py[ray]'
    python -m llama serve --ray -m MODEL --replicas 2 -t 1          (a local Ray cluster, or $RAY_ADDRESS)
    serve run llama-ray.yaml                                         (import_path: llama.serve.ray:build_app)

Two deployments make the application `llama`:

* `LlamaReplica` (N replicas, or autoscaled between min and max): each starts one `python -m llama
  serve` on 127.0.0.1 (`llama.serve.child`: the model loaded once, its own slots and continuous
  batching; `-t` threads, by default the CPUs Ray reserves for the replica) and forwards requests to
  it, the response bytes streamed as they come (SSE included) with an `x-llama-replica` header
  naming the replica. Its health check fails when the server process has exited, so Serve replaces
  the replica; the server process ends with its replica, however the replica dies.
* `LlamaIngress` (the HTTP ingress, no CPU reserved): takes every route the server has
  (/v1/completions, /v1/chat/completions, /v1/models, /v1/embeddings, /health, /metrics …), computes
  the request's affinity key (`llama.serve.affinity`) and calls `LlamaReplica` through a
  DeploymentHandle. A request whose replica died, or found its server gone, before the first byte
  of the answer is sent again to another replica, so only a stream cut in the middle is lost.

`PrefixAffinityRouter` is `LlamaReplica`'s Serve request router: a request with a key goes to the
key's home replica (rendezvous hashing over the running replicas) while that replica has a free
place (fewer than `max_ongoing_requests` requests, by default its slots), else to the less loaded
of the key's next two replicas; a request without a key goes to the less loaded of two random
replicas (Serve's default policy). The turns of one conversation so find their prefix in the
replica's slot cache."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

try:
    import ray
    from ray import serve
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
    from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"serving on Ray needs Ray Serve ({e}): pip install 'llama-py[ray]'") from e

from ..errors import InvalidArgumentError, LlamaError
from .affinity import DEFAULT_PREFIX_CHARS, affinity_key, rank
from .child import ChildServer

APP_NAME = "llama"
REPLICA_HEADER = "x-llama-replica"

# Headers that belong to one connection, not to the request or answer forwarded.
_HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    )
)


@dataclass
class Forward:
    """A request as the ingress hands it to a replica (and the router reads its `affinity`)."""

    method: str
    path: str  # with the query string
    headers: list[tuple[str, str]]
    body: bytes
    affinity: str | None = None
    avoid: tuple[str, ...] = ()  # replicas (full ids) that could not serve it: a retry goes elsewhere


@dataclass
class Head:
    """The first item a replica yields: the child server's status and headers."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None = None  # the whole body of an answer that is not a stream (none follows)
    unavailable: str | None = None  # the replica (full id) whose server could not be reached


class ReplicaUnavailableError(LlamaError):
    """The replica's server process cannot be reached (its health check fails; Serve replaces it)."""


# --------------------------------------------------------------------------------------------------
# Options


@dataclass
class Options:
    """Everything `build_app` takes (a Serve config file's `args`, or `python -m llama serve --ray`'s
    flags). The server's own options are `python -m llama serve`'s; the rest are Serve's."""

    model: str = ""  # a GGUF path on every node, a folder holding one, or hf:OWNER/REPO[/FILE]
    # `python -m llama serve` of each replica
    parallel: int = 4
    ctx_size: int = 4096
    threads: int | None = None  # default: num_cpus (at least 1)
    batch_size: int = 512
    queue: int = 64
    api_key: str | None = None
    model_alias: str | None = None
    body_limit: int = 8 << 20
    embeddings: bool = False
    pooling: str | None = None
    reranking: bool = False
    flash_attn: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str | None = None
    quiet: bool = False
    # Serve
    replicas: int = 1  # fixed count, or the initial one when autoscaling
    min_replicas: int | None = None  # any of these three turns autoscaling on
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None  # default: parallel
    num_cpus: float | None = None  # CPUs Ray reserves per replica; default: threads, else 1
    max_ongoing_requests: int | None = None  # per replica; default: parallel
    affinity: bool = True  # PrefixAffinityRouter (False: Serve's default power-of-two choice)
    prefix_chars: int = DEFAULT_PREFIX_CHARS
    retries: int = 2  # re-sends of a request whose replica died before answering

    @classmethod
    def from_dict(cls, args: dict[str, Any]) -> Options:
        known = {f.name for f in fields(cls)}
        norm = {str(k).replace("-", "_"): v for k, v in args.items()}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise InvalidArgumentError(
                f"unknown option(s) {', '.join(unknown)}; the options are: {', '.join(sorted(known))}"
            )
        o = cls(**norm)
        o.check()
        return o

    def check(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise InvalidArgumentError(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        need(isinstance(self.model, str) and bool(self.model), "model is required: a GGUF path or hf:OWNER/REPO/FILE")
        for name in ("parallel", "batch_size", "queue", "body_limit", "replicas", "prefix_chars"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be an integer ≥ 1, got {v!r}")
        need(is_int(self.ctx_size) and self.ctx_size >= 0, f"ctx_size must be an integer ≥ 0, got {self.ctx_size!r}")
        need(is_int(self.retries) and self.retries >= 0, f"retries must be an integer ≥ 0, got {self.retries!r}")
        for name in ("threads", "min_replicas", "max_replicas", "max_ongoing_requests"):
            v = getattr(self, name)
            need(v is None or (is_int(v) and v >= (0 if name == "min_replicas" else 1)), f"bad {name}: {v!r}")
        for name in ("num_cpus", "target_ongoing_requests"):
            v = getattr(self, name)
            need(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
                f"{name} must be a number > 0, got {v!r}",
            )
        lo, hi = self.min_replicas, self.max_replicas
        if lo is not None and hi is not None:
            need(lo <= hi, f"min_replicas ({lo}) is above max_replicas ({hi})")
        if self.autoscaling:
            need(
                (lo or 0) <= self.replicas <= (hi if hi is not None else max(self.replicas, lo or 1)),
                f"replicas ({self.replicas}) must lie between min_replicas and max_replicas",
            )
        need(self.pooling in (None, "none", "mean", "cls", "last"), f"bad pooling {self.pooling!r}")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def autoscaling(self) -> bool:
        return (
            self.min_replicas is not None or self.max_replicas is not None or self.target_ongoing_requests is not None
        )

    @property
    def cpus(self) -> float:
        return self.num_cpus if self.num_cpus is not None else float(self.threads or 1)

    @property
    def n_threads(self) -> int:
        return self.threads if self.threads is not None else max(1, int(self.cpus))

    def server_args(self) -> list[str]:
        """The `python -m llama serve` flags of each replica (the model and port aside)."""
        a = ["--parallel", str(self.parallel), "-c", str(self.ctx_size), "-t", str(self.n_threads)]
        a += ["-b", str(self.batch_size), "--queue", str(self.queue), "--body-limit", str(self.body_limit)]
        if self.api_key:
            a += ["--api-key", self.api_key]
        if self.model_alias:
            a += ["--model-alias", self.model_alias]
        if self.embeddings:
            a.append("--embeddings")
        if self.pooling:
            a += ["--pooling", self.pooling]
        if self.reranking:
            a.append("--reranking")
        if self.flash_attn:
            a.append("--flash-attn")
        a += ["-ctk", self.cache_type_k] + (["-ctv", self.cache_type_v] if self.cache_type_v else [])
        return a

    def replica_deployment_options(self) -> dict[str, Any]:
        o: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.cpus},
            "max_ongoing_requests": self.max_ongoing_requests or self.parallel,
            "health_check_period_s": 5,
            "health_check_timeout_s": 30,
        }
        if self.autoscaling:
            o["num_replicas"] = "auto"
            o["autoscaling_config"] = {
                "min_replicas": self.min_replicas if self.min_replicas is not None else 1,
                "initial_replicas": self.replicas,
                "max_replicas": self.max_replicas if self.max_replicas is not None else max(self.replicas, 1),
                "target_ongoing_requests": self.target_ongoing_requests or self.parallel,
            }
        else:
            o["num_replicas"] = self.replicas
        if self.affinity:
            o["request_router_config"] = {"request_router_class": f"{__name__}.PrefixAffinityRouter"}
        return o


# --------------------------------------------------------------------------------------------------
# The request router


class PrefixAffinityRouter(RequestRouter):
    """Serve request router of `LlamaReplica`: a request's affinity key picks its home replica
    (rendezvous hashing), the key's next two replicas are the fallback when home is full; requests
    without a key go to the less loaded of two random replicas."""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        key = None
        if pending_request is not None:
            # every replica is a candidate on each try: the router backs off between tries
            pending_request.routing_context.should_backoff = True
            # by attribute, not isinstance: Serve may load this class from a pickled copy of the
            # module, whose Forward is not the class the ingress builds
            if pending_request.args:
                key = getattr(pending_request.args[0], "affinity", None)
                avoid = getattr(pending_request.args[0], "avoid", ())
                if avoid:
                    rest = [r for r in candidate_replicas if r.replica_id.to_full_id_str() not in avoid]
                    candidate_replicas = rest or candidate_replicas
        if key is None or len(candidate_replicas) == 1:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        ranked = rank(key, candidate_replicas, lambda r: r.replica_id.unique_id)
        # home first; when it has no free place the router tries the next rank (the lower queue of two)
        return [ranked[:1], ranked[1:3]]


# --------------------------------------------------------------------------------------------------
# The deployments


def _forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]


def _error(status: int, message: str, kind: str = "server_error") -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status_code=status)


class LlamaReplica:
    """One replica: a `python -m llama serve` child and the forwarding of requests to it."""

    def __init__(self, options: dict[str, Any]) -> None:
        import aiohttp  # noqa: F401  (Ray Serve's dependency: fail here, not at the first request)

        from ..pull import resolve_model

        self.options = Options.from_dict(options)
        ctx = serve.get_replica_context()
        self.replica_id = ctx.replica_id.to_full_id_str()
        model = resolve_model(self.options.model, quiet=self.options.quiet)  # hf: URIs pulled on this node
        self.child = ChildServer(
            model, self.options.server_args(), log_prefix=f"[{ctx.replica_tag}] ", quiet=self.options.quiet
        )
        self.child.start()
        self._session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=f"http://{self.child.host}:{self.child.port}",
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        return self._session

    async def __call__(self, req: Forward) -> AsyncIterator[Head | bytes]:
        import aiohttp

        try:
            resp = await self._client().request(
                req.method, req.path, headers=_forwardable(req.headers), data=req.body or None, allow_redirects=False
            )
        except aiohttp.ClientConnectionError as e:
            # the server died: Serve's health check will replace this replica; the ingress sends the
            # request to another one meanwhile
            logging.getLogger("ray.serve").warning("llama: %s: the server is unreachable: %r", self.replica_id, e)
            yield Head(503, [(REPLICA_HEADER, self.replica_id)], unavailable=self.replica_id)
            return
        done = False
        try:
            headers = [*_forwardable(resp.headers.items()), (REPLICA_HEADER, self.replica_id)]
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                # a whole answer goes in one item: the ingress has all of it or none (then it can
                # send the request again)
                body = await resp.read()
                done = True
                yield Head(resp.status, headers, body=body)
                return
            yield Head(resp.status, headers)
            async for chunk in resp.content.iter_any():
                yield chunk
            done = True
        finally:
            # an answer cut short (the client went away: Serve cancels this generator) closes the
            # connection, and the server frees the request's slot
            if done:
                resp.release()
            else:
                resp.close()

    async def check_health(self) -> None:
        """Serve's periodic check: raising makes Serve replace the replica."""
        import aiohttp

        if not self.child.alive():
            code = self.child.proc.returncode if self.child.proc is not None else None
            raise ReplicaUnavailableError(f"{self.replica_id}: the llama server exited (code {code})")
        try:
            async with self._client().get("/health", timeout=aiohttp.ClientTimeout(total=20)) as r:
                if r.status != 200:
                    raise ReplicaUnavailableError(f"{self.replica_id}: /health answered {r.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ReplicaUnavailableError(f"{self.replica_id}: /health failed: {e!r}") from None

    def __del__(self) -> None:
        child = getattr(self, "child", None)
        if child is not None:
            child.stop()


def _retryable(e: BaseException) -> bool:
    """A failure of the replica's actor, not of the request: it can go to another replica."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError))


class LlamaIngress:
    """The HTTP ingress: every route, forwarded to a replica picked by the request's affinity."""

    def __init__(self, replicas: DeploymentHandle, options: dict[str, Any]) -> None:
        self.options = Options.from_dict(options)
        self.replicas = replicas.options(stream=True)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response, StreamingResponse

        body = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        key = None
        if self.options.affinity and request.method == "POST":
            key = affinity_key(request.url.path, body, self.options.prefix_chars)
        fwd = Forward(request.method, path, list(request.headers.items()), body, key)
        last: BaseException | None = None
        for attempt in range(self.options.retries + 1):
            gen = cast(DeploymentResponseGenerator, self.replicas.remote(fwd))
            try:
                head = await gen.__anext__()
            except StopAsyncIteration:
                return _error(502, "the replica sent no answer")
            except Exception as e:
                if not _retryable(e):
                    raise
                last = e
                logging.getLogger("ray.serve").warning(
                    "llama: attempt %d of %s %s failed on its replica (%s)", attempt + 1, request.method, path, e
                )
                continue
            if not (hasattr(head, "status") and hasattr(head, "headers")):  # a Head (see PrefixAffinityRouter)
                return _error(502, f"the replica answered {type(head).__name__} first")
            unavailable = getattr(head, "unavailable", None)
            if unavailable:
                last = ReplicaUnavailableError(f"{unavailable}: its llama server is unreachable")
                fwd.avoid = (*fwd.avoid, unavailable)
                continue
            whole = getattr(head, "body", None)
            if whole is not None:
                return Response(whole, status_code=head.status, headers=dict(head.headers))
            return StreamingResponse(_rest(gen), status_code=head.status, headers=dict(head.headers))
        return _error(503, f"no replica could serve the request: {last}")


async def _rest(gen: DeploymentResponseGenerator) -> AsyncIterator[bytes]:
    async for chunk in gen:
        yield chunk


def build_app(args: dict[str, Any]) -> serve.Application:
    """The Serve application (`import_path: llama.serve.ray:build_app` in a Serve config file): `args`
    are `Options`' fields (model required)."""
    o = Options.from_dict(dict(args))
    plain = o.as_dict()
    replica = serve.deployment(name="LlamaReplica", **o.replica_deployment_options())(LlamaReplica)
    ingress = serve.deployment(
        name="LlamaIngress", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000
    )(LlamaIngress)
    return ingress.bind(replica.bind(plain), plain)


# --------------------------------------------------------------------------------------------------
# python -m llama serve --ray


def options_from_args(a: argparse.Namespace) -> Options:
    path = Path(a.model)
    if not a.model.startswith("hf:") and path.is_dir():
        raise InvalidArgumentError(f"{path} is a folder: give the .gguf file to serve")
    api_key = a.api_key if a.api_key is not None else os.environ.get("LLAMA_API_KEY")
    o = Options(
        model=a.model if a.model.startswith("hf:") else str(path.resolve()),
        parallel=a.parallel,
        ctx_size=a.ctx_size,
        threads=a.threads,
        batch_size=a.batch_size,
        queue=a.queue,
        api_key=api_key or None,
        model_alias=a.model_alias,
        body_limit=a.body_limit,
        embeddings=a.embeddings,
        pooling=a.pooling,
        reranking=a.reranking,
        flash_attn=a.flash_attn,
        cache_type_k=a.cache_type_k,
        cache_type_v=a.cache_type_v,
        quiet=a.quiet,
        replicas=a.replicas if a.replicas is not None else max(1, a.min_replicas or 1),
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
        target_ongoing_requests=a.target_ongoing_requests,
        num_cpus=a.num_cpus,
        max_ongoing_requests=a.max_ongoing_requests,
        affinity=not a.no_affinity,
    )
    o.check()
    if not o.model.startswith("hf:") and not path.is_file():
        raise InvalidArgumentError(f"{a.model}: no such model file")
    return o


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def serve_cli(a: argparse.Namespace) -> int:
    """Runs the application on the Ray cluster at $RAY_ADDRESS, else on a local one started here,
    until SIGINT/SIGTERM; then deletes it (and stops the local cluster)."""
    o = options_from_args(a)
    app = build_app(o.as_dict())
    address = os.environ.get("RAY_ADDRESS") or None
    # a local cluster: no dashboard (a process and CPU time; `ray start --head` has one)
    local: dict[str, Any] = {"include_dashboard": False} if address is None else {}
    ray.init(
        address=address,
        **local,
        logging_level=logging.WARNING,
        log_to_driver=not o.quiet,
        configure_logging=True,
    )
    started_here = address is None
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cpus = ray.cluster_resources().get("CPU", 0.0)
        want = o.cpus * (o.min_replicas if o.autoscaling and o.min_replicas is not None else o.replicas)
        if want > cpus:
            _say(
                o.quiet,
                f"warning: {want:g} CPUs asked for ({o.cpus:g} per replica) and the cluster has {cpus:g}: "
                "replicas wait for nodes (add some with `ray start --address`, or lower --num-cpus)",
            )
        t0 = time.monotonic()
        serve.start(http_options={"host": a.host, "port": a.port})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        gcs = ray.get_runtime_context().gcs_address
        _say(
            o.quiet,
            f"llama.py on Ray Serve: http://{a.host}:{a.port}/v1 — "
            f"{'autoscaled ' if o.autoscaling else ''}{o.replicas} replica(s) of {o.model}, {o.n_threads} thread(s) "
            f"and {o.cpus:g} CPU(s) each, ready in {time.monotonic() - t0:.1f} s; "
            f"Ray cluster {gcs} ({'started here' if started_here else 'RAY_ADDRESS'})",
        )
        print(json.dumps({"url": f"http://{a.host}:{a.port}", "ray_address": gcs}), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        try:
            serve.delete(APP_NAME)
            if started_here:
                serve.shutdown()
        finally:
            ray.shutdown()
    return 0
