"""`python -m llama serve --ray`: replicas of the server on Ray Serve behind one OpenAI endpoint.

The end-to-end test starts a local Ray cluster (through the command line) with 2 replicas of
qwen2.5-coder-0.5b at 1 thread each, runs the official `openai` client against the Serve endpoint
(completions, chat, streaming), checks that both replicas serve and that one conversation stays on
one replica, kills a replica's actor with `ray.kill` while requests run, and checks that its server
process goes with it, that Serve starts a new replica and that no request fails afterwards. The
affinity key, the rendezvous ranking and the option checks are tested without a cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import model_path

MODEL = "qwen2.5-coder-0.5b-q4_k_m.gguf"
ALIAS = "qwen2.5-coder-0.5b-q4_k_m"  # the model id the server answers to
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed (pip install 'llama-py[ray]')")
PYTHONPATH = str(Path(__file__).resolve().parent.parent / "python")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_with_package() -> dict[str, str]:
    """This process's environment, with the package it imports importable in children too."""
    import llama

    env = dict(os.environ)
    root = str(Path(llama.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


# --------------------------------------------------------------------------------------------------
# Without a cluster


def test_affinity_key_follows_a_conversation() -> None:
    from llama.serve.affinity import affinity_key

    sys_msg = {"role": "system", "content": "You are terse."}
    turn1 = [sys_msg, {"role": "user", "content": "Name a prime."}]
    turn2 = [*turn1, {"role": "assistant", "content": "7"}, {"role": "user", "content": "Another."}]
    other = [sys_msg, {"role": "user", "content": "Name a color."}]

    def chat(msgs: list[dict[str, str]]) -> str | None:
        return affinity_key("/v1/chat/completions", json.dumps({"messages": msgs, "max_tokens": 4}).encode())

    assert chat(turn1) is not None and chat(turn1) == chat(turn2)
    assert chat(other) != chat(turn1)
    # a completion's key is its prompt's first characters: a follow-up that extends the prompt keeps it
    p = "x" * 300
    assert affinity_key("/v1/completions", {"prompt": p}) == affinity_key("/v1/completions", {"prompt": p + "more"})
    assert affinity_key("/v1/completions", {"prompt": "a"}) != affinity_key("/v1/completions", {"prompt": "b"})
    assert affinity_key("/v1/completions", {"prompt": ["a", "b"]}) == affinity_key("/v1/completions", {"prompt": "a"})
    # routes without a conversation, and bodies that are not a JSON object, have none
    assert affinity_key("/v1/embeddings", {"input": "a"}) is None
    assert affinity_key("/v1/chat/completions", b"not json") is None
    assert affinity_key("/v1/chat/completions", {"messages": []}) is None


def test_rendezvous_ranking_moves_only_the_keys_of_a_removed_replica() -> None:
    from llama.serve.affinity import rank

    replicas = ["r1", "r2", "r3", "r4"]
    keys = [f"chat:{i:04x}" for i in range(2000)]
    home = {k: rank(k, replicas)[0] for k in keys}
    counts = {r: sum(1 for h in home.values() if h == r) for r in replicas}
    assert all(350 < c < 650 for c in counts.values()), counts  # 500 each on average
    survivors = ["r1", "r2", "r4"]
    for k in keys:
        new_home = rank(k, survivors)[0]
        if home[k] != "r3":
            assert new_home == home[k]  # untouched keys stay
        else:
            assert new_home == rank(k, replicas)[1]  # r3's keys go to their second choice


def test_ray_flags_without_ray_are_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "llama", "serve", "-m", "x.gguf", "--replicas", "2"],
        capture_output=True,
        text=True,
        env=env_with_package(),
        timeout=60,
    )
    assert r.returncode == 1 and "--replicas apply to --ray" in r.stderr


def test_ray_not_installed_says_how_to_install_it() -> None:
    # sys.modules["ray"] = None makes `import ray` fail as it does where Ray is not installed
    code = "import sys; sys.modules['ray'] = None; from llama.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", code, "serve", "--ray", "-m", "x.gguf", "--replicas", "2"],
        capture_output=True,
        text=True,
        env=env_with_package(),
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert "pip install 'llama-py[ray]'" in r.stderr and "Traceback" not in r.stderr


def test_the_server_process_goes_with_its_owner() -> None:
    """The child of a replica ends when its owner is killed with SIGKILL (as `ray.kill` does)."""
    owner_code = (
        "import sys, time\n"
        "from llama.serve.child import ChildServer\n"
        "c = ChildServer(sys.argv[1], ['-t', '1', '-np', '1', '-c', '256'], quiet=True)\n"
        "c.start()\n"
        "print(c.pid, c.port, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", owner_code, model_path(MODEL)], stdout=subprocess.PIPE, text=True, env=env_with_package()
    )
    try:
        assert owner.stdout is not None
        pid, port = (int(x) for x in owner.stdout.readline().split())
        assert process_alive(pid)
        import http.client

        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/health")
        assert c.getresponse().status == 200
        owner.kill()
        owner.wait(30)
        assert wait_for(lambda: not process_alive(pid), 30), "the server outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


@needs_ray
def test_options_are_checked_and_become_the_deployments_config() -> None:
    from llama.errors import InvalidArgumentError
    from llama.serve.ray import Options, build_app

    with pytest.raises(InvalidArgumentError, match="unknown option.*replica_count"):
        Options.from_dict({"model": "m.gguf", "replica_count": 2})
    with pytest.raises(InvalidArgumentError, match="model is required"):
        Options.from_dict({})
    with pytest.raises(InvalidArgumentError, match="replicas must be an integer"):
        Options.from_dict({"model": "m.gguf", "replicas": 0})
    with pytest.raises(InvalidArgumentError, match="min_replicas .3. is above max_replicas .2."):
        Options.from_dict({"model": "m.gguf", "min_replicas": 3, "max_replicas": 2})
    with pytest.raises(InvalidArgumentError, match="num_cpus must be a number"):
        Options.from_dict({"model": "m.gguf", "num_cpus": "two"})

    o = Options.from_dict({"model": "m.gguf", "replicas": 3, "num-cpus": 2, "parallel": 2})
    assert o.n_threads == 2 and o.server_args()[:6] == ["--parallel", "2", "-c", "4096", "-t", "2"]
    d = o.replica_deployment_options()
    assert d["num_replicas"] == 3 and d["ray_actor_options"] == {"num_cpus": 2}
    assert d["max_ongoing_requests"] == 2
    assert d["request_router_config"]["request_router_class"] == "llama.serve.ray.PrefixAffinityRouter"

    auto = Options.from_dict({"model": "m.gguf", "min_replicas": 1, "max_replicas": 4, "threads": 1})
    d = auto.replica_deployment_options()
    assert d["num_replicas"] == "auto" and d["ray_actor_options"] == {"num_cpus": 1.0}
    assert d["autoscaling_config"] == {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 4,
    }
    assert (
        "request_router_config" not in Options.from_dict({"model": "m", "affinity": False}).replica_deployment_options()
    )

    app = build_app({"model": "m.gguf", "replicas": 2})
    assert type(app).__name__ == "Application"


# --------------------------------------------------------------------------------------------------
# A local cluster with 2 replicas


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def listening_port(pid: int) -> int:
    """The TCP port a process listens on (its sockets' inodes looked up in /proc/net/tcp)."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = {os.readlink(fd)[8:-1] for fd in fds.iterdir() if os.readlink(fd).startswith("socket:[")}
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # LISTEN
            return int(f[1].split(":")[1], 16)
    raise AssertionError(f"process {pid} listens on no TCP port")


def busy_slots(port: int) -> float:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("llamapy_slots_busy "))


def wait_for(cond: Any, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return False


class RayServe:
    """`python -m llama serve --ray` in a child process, and a driver connection to its cluster."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.env = env_with_package()
        self.env.pop("RAY_ADDRESS", None)  # a local cluster, started by the command
        # the cluster's token, for this test's own connection to it
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_USAGE_STATS_ENABLED="0")
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (open as long as the cluster runs)
        cmd = [sys.executable, "-m", "llama", "serve", "--ray", "-m", model_path(MODEL), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, *args], stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env, start_new_session=True
        )
        self.info: dict[str, Any] = {}
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        reader.join(300)
        if not self.info:
            self.stop()
            raise RuntimeError(f"`serve --ray` did not start:\n{self.log_tail()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.info = json.loads(line)
                return

    def log_tail(self, n: int = 60) -> str:
        self.log.flush()
        self.log.seek(0)
        return "".join(self.log.readlines()[-n:])

    def client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0, timeout=120)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayServe]:
    if not HAVE_RAY:
        pytest.skip("Ray Serve is not installed (pip install 'llama-py[ray]')")
    pytest.importorskip("openai", reason="the Serve endpoint is tested with the official openai client")
    model_path(MODEL)
    s = RayServe("--replicas", "2", "-t", "1", "-np", "2", "-c", "512")
    try:
        yield s
    finally:
        rc = s.stop()
        assert rc == 0, s.log_tail() if not s.log.closed else rc


def chat(client: Any, content: str, **kw: Any) -> tuple[Any, str]:
    """A chat completion and the replica that answered it."""
    raw = client.chat.completions.with_raw_response.create(
        model=ALIAS, messages=[{"role": "user", "content": content}], max_tokens=kw.pop("max_tokens", 4), **kw
    )
    return raw.parse(), raw.headers["x-llama-replica"]


@needs_ray
def test_openai_client_against_the_serve_endpoint(cluster: RayServe) -> None:
    c = cluster.client()
    r = c.completions.create(model=ALIAS, prompt="def quicksort(arr):", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens <= 8
    ch = c.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Name a prime number."}], max_tokens=12, temperature=0
    )
    assert ch.choices[0].message.role == "assistant" and ch.choices[0].message.content
    # streaming: SSE passed through chunk by chunk; the pieces make the whole answer
    whole = c.completions.create(model=ALIAS, prompt="The three primary colors are", max_tokens=12, temperature=0)
    parts = list(
        c.completions.create(
            model=ALIAS, prompt="The three primary colors are", max_tokens=12, temperature=0, stream=True
        )
    )
    assert len(parts) > 2 and "".join(p.choices[0].text for p in parts if p.choices) == whole.choices[0].text
    chunks = list(
        c.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True
        )
    )
    text = "".join(p.choices[0].delta.content or "" for p in chunks if p.choices)
    assert len(chunks) > 2 and text
    assert [m.id for m in c.models.list().data] == [ALIAS]


@needs_ray
def test_both_replicas_serve_and_a_conversation_stays_on_one(cluster: RayServe) -> None:
    c = cluster.client()
    seen: set[str] = set()
    for i in range(24):  # distinct conversations: each lands on either replica (2^-23 to miss one)
        _, replica = chat(c, f"Conversation {i}: say hi.")
        seen.add(replica)
        if len(seen) == 2:
            break
    assert len(seen) == 2, seen
    # the turns of one conversation go to the replica that served its first turn (its prefix cached)
    first = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}]
    homes = set()
    msgs = list(first)
    for turn in range(3):
        raw = c.chat.completions.with_raw_response.create(model=ALIAS, messages=msgs, max_tokens=4, temperature=0)
        r = raw.parse()
        homes.add(raw.headers["x-llama-replica"])
        msgs += [{"role": "assistant", "content": r.choices[0].message.content}, {"role": "user", "content": f"{turn}"}]
    assert len(homes) == 1, homes


# Run in a child process as a second driver of the cluster: Ray reads its settings (the cluster's
# token, the loopback switch) when it is imported, so this process, which imports it for the option
# tests, could not connect. Each snippet ends by printing one JSON value.
DRIVER_PRELUDE = """
import json, os, sys, time
import ray
from ray import serve
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
"""


def start_driver(cluster: RayServe, code: str, *args: str) -> subprocess.Popen[str]:
    # the command's local cluster is on the loopback: so must be a driver's view of it
    env = {**cluster.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER_PRELUDE + code, cluster.info["ray_address"], *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def driver(cluster: RayServe, code: str, *args: str, timeout: float = 240) -> Any:
    p = start_driver(cluster, code, *args)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


PID_OF = """
actor = ray.get_actor(sys.argv[2], namespace="serve")
print(json.dumps(ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()))))
"""
# connected and holding the actor, it kills it when told to on stdin (no connection time in between)
KILL = """
actor = ray.get_actor(sys.argv[2], namespace="serve")
print("ready", flush=True)
sys.stdin.readline()
ray.kill(actor, no_restart=True)
print(json.dumps(True))
"""
# until the deployment has its replicas again, the killed one not among them (bounded)
REPLACED = """
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        dead = ray.get_actor(sys.argv[2], namespace="serve") is None
    except ValueError:  # no actor by that name any more
        dead = True
    d = serve.status().applications["llama"].deployments["LlamaReplica"]
    if dead and d.replica_states.get("RUNNING", 0) == int(sys.argv[3]) and set(d.replica_states) == {"RUNNING"}:
        print(json.dumps(d.replica_states))
        break
    time.sleep(0.5)
else:
    print(json.dumps(None))
"""


@needs_ray
def test_a_killed_replica_is_replaced_and_no_request_fails_after(cluster: RayServe) -> None:
    c = cluster.client()
    _, victim = chat(c, "Which replica are you?")
    victim_pid = driver(cluster, PID_OF, victim)
    servers = [p for p in children_of(victim_pid) if b"llama.serve.child" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(servers) == 1, servers

    # the victim dies while it writes a long answer (of its conversation: it is that key's home),
    # which the ingress then sends again (the replica died before answering); other requests keep
    # coming meanwhile
    killer = start_driver(cluster, KILL, victim)
    stop = threading.Event()
    results: list[tuple[str, Any]] = []
    long: list[Any] = []

    def load(worker: int) -> None:
        for i in range(300):
            if stop.is_set():
                return
            try:
                results.append(("ok", chat(c, f"Load {worker}-{i}: say hi.", max_tokens=8)[1]))
            except Exception as e:  # recorded, asserted below
                results.append(("error", repr(e)))

    def long_answer() -> None:
        try:
            long.append(chat(c, "Which replica are you?", max_tokens=200, extra_body={"ignore_eos": True}))
        except Exception as e:
            long.append(e)

    port = listening_port(servers[0])
    workers = [threading.Thread(target=long_answer)]
    workers[0].start()
    try:
        assert killer.stdout is not None and killer.stdin is not None
        assert killer.stdout.readline().strip() == "ready"
        assert wait_for(lambda: busy_slots(port) >= 1, 60)  # the long answer is under way on the victim
        workers += [threading.Thread(target=load, args=(w,)) for w in range(2)]
        for w in workers[1:]:
            w.start()
        killer.stdin.write("kill\n")
        killer.stdin.flush()
        out, err = killer.communicate(timeout=60)
        assert killer.returncode == 0 and json.loads(out.splitlines()[-1]) is True, err[-3000:]
        assert wait_for(lambda: not process_alive(servers[0]), 30), "the killed replica's server is still running"
        assert driver(cluster, REPLACED, victim, "2") == {"RUNNING": 2}
        # the new replica serves too
        assert wait_for(lambda: len({r for k, r in results if k == "ok"} - {victim}) >= 2, 120), results[-5:]
    finally:
        stop.set()
        if killer.poll() is None:
            killer.kill()
        for w in workers:
            w.join(180)
    assert len(long) == 1 and isinstance(long[0], tuple), long
    answer, replica = long[0]
    assert replica != victim and answer.usage.completion_tokens == 200
    errors = [r for kind, r in results if kind == "error"]
    assert not errors, errors

    # after the restart: whole and streamed answers, all succeed, from both replicas
    after: set[str] = set()
    for i in range(24):
        r, replica = chat(c, f"After the restart {i}: say hi.")
        assert r.choices[0].message.content is not None
        after.add(replica)
        parts = list(c.completions.create(model=ALIAS, prompt=f"After {i}:", max_tokens=4, stream=True))
        assert parts and all(p.choices is not None for p in parts)
        if len(after) == 2 and i >= 3:
            break
    assert len(after) == 2 and victim not in after, after


@needs_ray
def test_a_replica_whose_server_died_is_replaced(cluster: RayServe) -> None:
    """The server process of a replica dies (SIGKILL): the replica fails Serve's health check and is
    replaced; requests meanwhile go to the other replica or are sent again."""
    c = cluster.client()
    _, victim = chat(c, "Whose server dies?")
    victim_pid = driver(cluster, PID_OF, victim)
    (server,) = (p for p in children_of(victim_pid) if b"llama.serve.child" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(server, signal.SIGKILL)
    results = []
    for i in range(8):  # during the replacement (the health check runs every 5 s)
        results.append(chat(c, f"While the server is dead {i}: say hi.")[1])
    assert driver(cluster, REPLACED, victim, "2") == {"RUNNING": 2}
    assert victim not in results
    after = {chat(c, f"After the replacement {i}: say hi.")[1] for i in range(16)}
    assert len(after) == 2 and victim not in after, after
