"""`llama pull` and `resolve_model` against servers on 127.0.0.1 started by the tests.

The expected checksums are computed here with hashlib from the bytes the server serves, never by the
code under test. huggingface_hub (the Hub form) runs unmodified against a fake Hub speaking the
requests it makes (HEAD/GET …/resolve/…, GET /api/models/…/revision/…, GET /api/models/…/tree/…).

`llama/__init__.py` imports the native module; pull.py and cli.py do not need it, so when it is not
built the tests load them under a bare `llama` package (no behaviour replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import gguf_with_tensors

ROOT = Path(__file__).resolve().parents[1]
PYDIR = ROOT / "python"

# Same bootstrap in-process and in subprocesses: the installed package if there is one (other test
# files import it too, so it must not be shadowed), else this checkout's, else a bare package over
# this checkout's python/llama (native module not built).
BOOT = f"""
import sys, types
try:
    import llama
except ImportError:
    sys.path.insert(0, {str(PYDIR)!r})
    for k in [k for k in sys.modules if k == "llama" or k.startswith("llama.")]:
        del sys.modules[k]
    try:
        import llama
    except ImportError:
        for k in [k for k in sys.modules if k == "llama" or k.startswith("llama.")]:
            del sys.modules[k]
        pkg = types.ModuleType("llama"); pkg.__path__ = [{str(PYDIR / "llama")!r}]; sys.modules["llama"] = pkg
"""
exec(BOOT)
pull = importlib.import_module("llama.pull")
cli = importlib.import_module("llama.cli")
errors = importlib.import_module("llama.errors")


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def blob(n: int, seed: int) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------------------------------
# A loopback HTTP server with Range support and fault switches


class Server:
    """files: URL path → bytes. Switches (each used once, then cleared):
    cut[path] = n: send headers for the whole answer, n body bytes, then drop the connection;
    stall[path] = n: send n bytes, then stop sending (until the test ends or 5 s);
    wrong[path] = bytes: serve these instead (for every request).
    redirect[path] = target URL (302). api[path] = JSON body. need_auth[path-prefix] = token.
    log: one dict per request."""

    def __init__(self):
        self.files, self.cut, self.stall, self.wrong = {}, {}, {}, {}
        self.redirect, self.api, self.extra_headers, self.need_auth = {}, {}, {}, {}
        self.need_query = None
        self.log = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _send(self, code, headers, body=b"", head=False):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _serve(self, head):
                url = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(url.path)
                with srv.lock:
                    srv.log.append(
                        {
                            "method": self.command,
                            "path": path,
                            "query": url.query,
                            "range": self.headers.get("Range"),
                            "auth": self.headers.get("Authorization"),
                        }
                    )
                for prefix, token in srv.need_auth.items():
                    if path.startswith(prefix) and self.headers.get("Authorization") != f"Bearer {token}":
                        return self._send(401, {"X-Error-Code": "GatedRepo"}, b"gated", head)
                if srv.need_query is not None and url.query != srv.need_query:
                    return self._send(403, {}, b"bad signature", head)
                if path in srv.api:
                    return self._send(
                        200, {"Content-Type": "application/json"}, json.dumps(srv.api[path]).encode(), head
                    )
                extra = dict(srv.extra_headers.get(path, {}))
                if path in srv.redirect:
                    extra["Location"] = srv.redirect[path]
                    return self._send(302, extra, b"", head)
                if path not in srv.files:
                    code = "RepoNotFound" if path.startswith("/api/") else "EntryNotFound"
                    return self._send(404, {"X-Error-Code": code}, b"not found", head)
                body = srv.wrong.get(path, srv.files[path])
                start, code = 0, 200
                m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
                if m:
                    start = int(m.group(1))
                    end = int(m.group(2)) + 1 if m.group(2) else len(body)
                    if start >= len(body):
                        return self._send(416, {"Content-Range": f"bytes */{len(body)}"}, b"", head)
                    extra["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
                    body, code = body[start:end], 206
                extra["Accept-Ranges"] = "bytes"
                with srv.lock:
                    cut = None if head else srv.cut.pop(path, None)
                    stall = None if head else srv.stall.pop(path, None)
                if cut is None and stall is None:
                    return self._send(code, extra, body, head)
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: cut if cut is not None else stall])
                self.wfile.flush()
                if stall is not None:
                    srv.release.wait(5)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def requests(self, path):
        with self.lock:
            return [r for r in self.log if r["path"] == path]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def cdn():
    """A second origin, standing for the Hub's CDN (huggingface_hub follows same-origin redirects)."""
    s = Server()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    # Nothing may reach a real network or a real cache/token.
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "LLAMA_MODEL", "HF_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(pull, "BACKOFF", 0.01)


# --------------------------------------------------------------------------------------------------
# Meta's layout


def meta_layout(size="7B", n_pth=1):
    """Relative path → bytes of a small fake Meta download, checklists holding hashlib md5s."""
    files = {f"{size}/consolidated.{i:02d}.pth": blob(3 * 2**20 + 12345 + i, seed=i) for i in range(n_pth)}
    files[f"{size}/params.json"] = json.dumps({"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": -1}).encode()
    names = sorted(Path(k).name for k in files)
    files[f"{size}/checklist.chk"] = "".join(f"{md5(files[f'{size}/{n}'])}  {n}\n" for n in names).encode()
    files["tokenizer.model"] = blob(200_000, seed=99)
    files["tokenizer_checklist.chk"] = f"{md5(files['tokenizer.model'])}  tokenizer.model\n".encode()
    return files


def local_path(root: Path, rel: str) -> Path:
    return root / "model" / rel


def assert_layout(root: Path, files: dict):
    for rel, data in files.items():
        p = local_path(root, rel)
        assert p.is_file(), f"{p} missing"
        assert md5(p.read_bytes()) == md5(data), f"{p} differs"
    parts = list(root.rglob("*.part"))
    assert parts == [], parts


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_meta_layout_base_url(server, tmp_path, capsys):
    files = meta_layout(n_pth=2)
    for rel, data in files.items():
        server.files[f"/base/{rel}"] = data
    code, out, err = run_cli(
        ["pull", "-m", str(tmp_path / "model" / "7B"), "-s", "7B", "--source", f"{server.url}/base", "--quiet"], capsys
    )
    assert code == 0, err
    assert_layout(tmp_path, files)
    # stdout lists every local file
    assert sorted(Path(p).resolve() for p in out.split()) == sorted(local_path(tmp_path, r).resolve() for r in files)
    # A second pull finds every file present and verified: only the two checklists are fetched again.
    server.log.clear()
    code, _, err = run_cli(["pull", "-m", str(tmp_path / "model" / "7B"), "--source", f"{server.url}/base"], capsys)
    assert code == 0, err
    assert sorted(r["path"] for r in server.log) == ["/base/7B/checklist.chk", "/base/tokenizer_checklist.chk"]


def test_meta_layout_star_url_keeps_query(server, tmp_path, capsys):
    files = meta_layout()
    for rel, data in files.items():
        server.files[f"/{rel}"] = data
    server.need_query = "sig=abc"  # every request must carry the signature, as a presigned URL does
    code, out, err = run_cli(
        ["pull", "-m", str(tmp_path / "model" / "7B"), "-s", "7B", "--source", f"{server.url}/*?sig=abc", "--quiet"],
        capsys,
    )
    assert code == 0, err
    assert_layout(tmp_path, files)
    assert {r["path"] for r in server.log} == {f"/{rel}" for rel in files}
    assert all(r["query"] == "sig=abc" for r in server.log)


def test_resume_after_cut_connection(server, tmp_path, capsys):
    files = meta_layout()
    for rel, data in files.items():
        server.files[f"/b/{rel}"] = data
    pth = "/b/7B/consolidated.00.pth"
    cut_at = 1_500_000
    server.cut[pth] = cut_at
    code, _, err = run_cli(
        ["pull", "-m", str(tmp_path / "model" / "7B"), "--source", f"{server.url}/b", "--quiet"], capsys
    )
    assert code == 0, err
    assert_layout(tmp_path, files)
    reqs = server.requests(pth)
    assert len(reqs) == 2, reqs
    assert reqs[0]["range"] is None
    assert reqs[1]["range"] == f"bytes={cut_at}-"  # continued where the cut left the .part file


def test_resume_after_stall_times_out(server, tmp_path):
    data = blob(2 * 2**20 + 7, seed=5)
    server.files["/f.bin"] = data
    server.stall["/f.bin"] = 700_000
    dest = tmp_path / "f.bin"
    t0 = time.monotonic()
    pull.download(f"{server.url}/f.bin", dest, digest=("md5", md5(data)), quiet=True, timeout=0.5)
    assert time.monotonic() - t0 < 4.5  # the stalled attempt was abandoned after the timeout
    assert dest.read_bytes() == data
    reqs = server.requests("/f.bin")
    assert [r["range"] for r in reqs] == [None, "bytes=700000-"]


def test_resume_from_part_left_by_earlier_run(server, tmp_path):
    data = blob(3 * 2**20, seed=6)
    server.files["/g.bin"] = data
    dest = tmp_path / "g.bin"
    (tmp_path / "g.bin.part").write_bytes(data[:1_234_567])  # an interrupted earlier run
    pull.download(f"{server.url}/g.bin", dest, digest=("md5", md5(data)), quiet=True)
    assert dest.read_bytes() == data and not (tmp_path / "g.bin.part").exists()
    assert [r["range"] for r in server.requests("/g.bin")] == ["bytes=1234567-"]


def test_complete_part_gets_416_and_is_verified(server, tmp_path):
    data = blob(100_000, seed=7)
    server.files["/h.bin"] = data
    (tmp_path / "h.bin.part").write_bytes(data)
    pull.download(f"{server.url}/h.bin", tmp_path / "h.bin", digest=("md5", md5(data)), quiet=True)
    assert (tmp_path / "h.bin").read_bytes() == data
    assert [r["range"] for r in server.requests("/h.bin")] == ["bytes=100000-"]  # answered 416, not re-sent


def test_md5_mismatch_removes_file_and_fails(server, tmp_path, capsys):
    files = meta_layout()
    for rel, data in files.items():
        server.files[f"/b/{rel}"] = data
    bad = bytearray(files["7B/params.json"])
    bad[3] ^= 1
    server.wrong["/b/7B/params.json"] = bytes(bad)
    code, _, err = run_cli(
        ["pull", "-m", str(tmp_path / "model" / "7B"), "--source", f"{server.url}/b", "--quiet"], capsys
    )
    assert code != 0
    assert "params.json" in err and "md5" in err, err
    assert not (tmp_path / "model" / "7B" / "params.json").exists()
    assert list(tmp_path.rglob("*.part")) == []


def test_mismatch_raises_checksum_error(server, tmp_path):
    server.files["/x.bin"] = b"hello world"
    with pytest.raises(errors.ChecksumError, match="x.bin"):
        pull.download(f"{server.url}/x.bin", tmp_path / "x.bin", digest=("md5", md5(b"hello there")), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_gives_up_after_bounded_retries(server, tmp_path):
    server.files["/flaky.bin"] = blob(50_000, seed=8)
    dest = tmp_path / "flaky.bin"
    # The connection is refused every time: a closed port.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(errors.LlamaError, match="failed after 3 attempts"):
        pull.download(f"http://127.0.0.1:{port}/flaky.bin", dest, quiet=True, retries=2, timeout=1)
    assert not dest.exists()


def test_bad_url_is_a_clear_error(tmp_path, capsys):
    code, _, err = run_cli(["pull", "-m", str(tmp_path / "7B"), "--source", "ftp://example/x", "--quiet"], capsys)
    assert code == 1 and "not an http(s) URL" in err


def test_http_404_names_file(server, tmp_path):
    with pytest.raises(errors.LlamaError, match=r"missing\.bin.*404"):
        pull.download(f"{server.url}/missing.bin?sig=secret", tmp_path / "missing.bin", quiet=True)
    assert len(server.log) == 1  # a 404 is not retried


def test_checklist_with_path_is_rejected(server, tmp_path, capsys):
    server.files["/b/7B/checklist.chk"] = f"{md5(b'x')}  ../../evil\n".encode()
    code, _, err = run_cli(
        ["pull", "-m", str(tmp_path / "model" / "7B"), "--source", f"{server.url}/b", "--quiet"], capsys
    )
    assert code != 0 and "not a plain file name" in err
    assert not (tmp_path / "evil").exists()


def test_text_progress_bar_without_tqdm(server, tmp_path, monkeypatch, capsys):
    data = blob(300_000, seed=9)
    server.files["/p.bin"] = data
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm → ImportError
    pull.download(f"{server.url}/p.bin", tmp_path / "p.bin", quiet=False)
    err = capsys.readouterr().err
    assert "100.0%" in err and "p.bin" in err


# --------------------------------------------------------------------------------------------------
# Meta's layout from the Hub, and the Hub form through huggingface_hub


SHA = "0123456789abcdef0123456789abcdef01234567"


def add_hub_repo(server, repo, files: dict, lfs=(), token=None, cdn=None):
    """Serve `files` (path → bytes) as a Hub repo: /api/models/REPO/{revision,tree}/…, /REPO/resolve/…"""
    for rev in ("main", SHA):
        server.api[f"/api/models/{repo}/revision/{rev}"] = {
            "id": repo,
            "sha": SHA,
            "private": False,
            "siblings": [{"rfilename": f} for f in files],
        }
        server.api[f"/api/models/{repo}/tree/{rev}"] = [
            {
                "type": "file",
                "path": f,
                "size": len(b),
                "oid": hashlib.sha1(b).hexdigest(),
                **(
                    {"lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}}
                    if f in lfs
                    else {}
                ),
            }
            for f, b in files.items()
        ]
        for f, b in files.items():
            path = f"/{repo}/resolve/{rev}/{f}"
            etag = f'"{hashlib.sha256(b).hexdigest() if f in lfs else hashlib.sha1(b).hexdigest()}"'
            head = {"X-Repo-Commit": SHA, "ETag": etag}
            if f in lfs and cdn:
                # Large files are redirected to a CDN, as on the Hub (metadata on the redirect).
                cdn_path = f"/cdn/{hashlib.sha256(b).hexdigest()}"
                cdn.files[cdn_path] = b
                server.redirect[path] = cdn.url + cdn_path + "?sig=x"
                server.extra_headers[path] = {**head, "X-Linked-Etag": etag, "X-Linked-Size": str(len(b))}
            else:
                server.files[path] = b
                server.extra_headers[path] = head
    if token:
        server.need_auth[f"/api/models/{repo}/"] = token
        server.need_auth[f"/{repo}/"] = token


@pytest.mark.parametrize("prefix", ["", "original/"])
def test_meta_layout_from_hub(server, cdn, tmp_path, monkeypatch, capsys, prefix):
    layout = meta_layout()
    files = {prefix + Path(rel).name: data for rel, data in layout.items()}
    files["README.md"] = b"# Llama 2\n"
    if prefix:
        files["model.safetensors"] = b"not Meta's layout"
    add_hub_repo(server, "meta-llama/Llama-2-7b", files, lfs={prefix + "consolidated.00.pth"}, token="tok", cdn=cdn)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    # Gated: without a token, a clear message.
    code, _, err = run_cli(["pull", "-m", str(tmp_path / "model" / "7B"), "-s", "7B", "--quiet"], capsys)
    assert code != 0 and "HF_TOKEN" in err and "meta-llama/Llama-2-7b" in err, err
    monkeypatch.setenv("HF_TOKEN", "tok")
    code, _, err = run_cli(["pull", "-m", str(tmp_path / "model" / "7B"), "-s", "7B", "--quiet"], capsys)
    assert code == 0, err
    assert_layout(tmp_path, layout)
    # The token went to the Hub, never to the CDN the big file is redirected to.
    assert cdn.log and all(r["auth"] is None for r in cdn.log)
    hub = [r for r in server.log if r["path"].startswith("/meta-llama/")]
    assert hub and all(r["auth"] == "Bearer tok" for r in hub[-4:])


def test_meta_repo_names():
    assert pull.meta_repo_for("7B") == "meta-llama/Llama-2-7b"
    assert pull.meta_repo_for("13b") == "meta-llama/Llama-2-13b"
    assert pull.meta_repo_for("70B-chat") == "meta-llama/Llama-2-70b-chat"
    assert pull.meta_repo_for("llama-2-7b-chat") == "meta-llama/Llama-2-7b-chat"
    with pytest.raises(errors.InvalidArgumentError, match="30B"):
        pull.meta_repo_for("30B")


def test_source_url_forms():
    assert pull.source_url("http://h/base/", "7B/params.json") == "http://h/base/7B/params.json"
    assert pull.source_url("http://h/base?x=1", "tokenizer.model") == "http://h/base/tokenizer.model?x=1"
    assert (
        pull.source_url("https://h/*?Policy=p&Sig=s", "7B/checklist.chk") == "https://h/7B/checklist.chk?Policy=p&Sig=s"
    )


def run_sub(code: str, env: dict, timeout=120):
    """Run `code` after BOOT in a fresh interpreter (huggingface_hub reads HF_* at import time)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", BOOT + code], env=full_env, capture_output=True, text=True, timeout=timeout
    )


def hub_env(server, tmp_path, **extra):
    return {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_CACHE": str(tmp_path / "hf_cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


CLI = "from llama.cli import main; sys.exit(main(sys.argv[1:]))"


def hub_files():
    return {
        "README.md": b"# fake\n",
        "config.json": b"{}",
        "m-q4_0.gguf": b"GGUF" + blob(150_000, seed=1),
        "m-q4_k_m.gguf": b"GGUF" + blob(160_000, seed=2),
        "sub/m-f16.gguf": b"GGUF" + blob(50_000, seed=3),
    }


def test_hub_single_file(server, cdn, tmp_path):
    pytest.importorskip("huggingface_hub")
    files = hub_files()
    add_hub_repo(server, "acme/tiny-GGUF", files, lfs={f for f in files if f.endswith(".gguf")}, cdn=cdn)
    code = "sys.argv = ['x', 'pull', 'acme/tiny-GGUF', '--file', 'm-q4_0.gguf', '--quiet']\n" + CLI
    r = run_sub(code, hub_env(server, tmp_path))
    assert r.returncode == 0, r.stderr
    paths = r.stdout.split()
    assert len(paths) == 1
    p = Path(paths[0])
    assert p.name == "m-q4_0.gguf" and str(tmp_path / "hf_cache") in str(p)  # in the shared HF cache
    assert md5(p.read_bytes()) == md5(files["m-q4_0.gguf"])
    assert any(r["method"] == "HEAD" for r in server.requests("/acme/tiny-GGUF/resolve/main/m-q4_0.gguf"))


def test_hub_gated_needs_token(server, cdn, tmp_path):
    pytest.importorskip("huggingface_hub")
    files = hub_files()
    add_hub_repo(server, "acme/gated", files, lfs={f for f in files if f.endswith(".gguf")}, token="s3cret", cdn=cdn)
    code = "sys.argv = ['x', 'pull', 'acme/gated', '--file', 'm-q4_0.gguf', '--quiet']\n" + CLI
    r = run_sub(code, hub_env(server, tmp_path))
    assert r.returncode == 1 and "acme/gated" in r.stderr and "HF_TOKEN" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_sub(code, hub_env(server, tmp_path, HF_TOKEN="s3cret"))
    assert r.returncode == 0, r.stderr
    assert md5(Path(r.stdout.strip()).read_bytes()) == md5(files["m-q4_0.gguf"])
    assert all(q["auth"] is None for q in cdn.log)  # the token stays on the Hub


def test_hub_glob_snapshot_to_dir(server, cdn, tmp_path):
    pytest.importorskip("huggingface_hub")
    files = hub_files()
    add_hub_repo(server, "acme/tiny-GGUF", files, lfs={f for f in files if f.endswith(".gguf")}, cdn=cdn)
    out = tmp_path / "out"
    code = f"sys.argv = ['x', 'pull', 'acme/tiny-GGUF', '--file', '*.gguf', '-o', {str(out)!r}, '--quiet']\n" + CLI
    r = run_sub(code, hub_env(server, tmp_path))
    assert r.returncode == 0, r.stderr
    got = sorted(Path(p).relative_to(out).as_posix() for p in r.stdout.split())
    # fnmatch's * crosses '/', as huggingface_hub's allow_patterns does
    assert got == ["m-q4_0.gguf", "m-q4_k_m.gguf", "sub/m-f16.gguf"]
    for rel in got:
        assert md5((out / rel).read_bytes()) == md5(files[rel])
    assert not (out / "README.md").exists()
    assert server.requests("/api/models/acme/tiny-GGUF/revision/main")


def test_hub_missing_file_and_repo(server, tmp_path):
    pytest.importorskip("huggingface_hub")
    add_hub_repo(server, "acme/tiny-GGUF", hub_files())
    code = "sys.argv = ['x', 'pull', 'acme/tiny-GGUF', '--file', 'nope.gguf', '--quiet']\n" + CLI
    r = run_sub(code, hub_env(server, tmp_path))
    assert r.returncode == 1 and "acme/tiny-GGUF" in r.stderr and "no such file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_sub("sys.argv = ['x', 'pull', 'acme/nope', '--quiet']\n" + CLI, hub_env(server, tmp_path))
    assert r.returncode == 1 and "acme/nope: no such repo" in r.stderr, r.stderr


def test_resolve_model_hub_and_default(server, cdn, tmp_path):
    pytest.importorskip("huggingface_hub")
    files = hub_files()
    add_hub_repo(server, "acme/tiny-GGUF", files, lfs={f for f in files if f.endswith(".gguf")}, cdn=cdn)
    default = {pull.DEFAULT_FILE: b"GGUF" + blob(70_000, seed=4), "README.md": b"qwen"}
    add_hub_repo(server, pull.DEFAULT_REPO, default, lfs={pull.DEFAULT_FILE}, cdn=cdn)
    code = "from llama.pull import resolve_model\nfor s in sys.argv[1:]: print(resolve_model(s or None, quiet=True))\n"
    r = run_sub(
        code.replace("sys.argv[1:]", "['hf:acme/tiny-GGUF/sub/m-f16.gguf', 'hf:acme/tiny-GGUF', '']"),
        hub_env(server, tmp_path),
    )
    assert r.returncode == 0, r.stderr
    a, b, c = r.stdout.split()
    assert md5(Path(a).read_bytes()) == md5(files["sub/m-f16.gguf"])
    assert Path(b).name == "m-q4_k_m.gguf"  # hf:REPO picks the Q4_K_M file
    assert Path(c).name == pull.DEFAULT_FILE and md5(Path(c).read_bytes()) == md5(default[pull.DEFAULT_FILE])
    # LLAMA_MODEL wins over the default
    r = run_sub(
        code.replace("sys.argv[1:]", "['']"), hub_env(server, tmp_path, LLAMA_MODEL="hf:acme/tiny-GGUF/m-q4_0.gguf")
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).name == "m-q4_0.gguf"


# --------------------------------------------------------------------------------------------------
# resolve_model for local paths


def test_resolve_model_local(tmp_path, monkeypatch):
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(errors.ModelFileNotFoundError, match="no .gguf"):
        pull.resolve_model(str(d))
    for n in ("b.gguf", "a.gguf", "notes.txt"):
        (d / n).write_bytes(b"GGUF")
    assert pull.resolve_model(str(d)) == str(d / "a.gguf")
    (d / "ggml-model-q4_0.gguf").write_bytes(b"GGUF")
    assert pull.resolve_model(str(d)) == str(d / "ggml-model-q4_0.gguf")
    assert pull.resolve_model(str(d / "b.gguf")) == str(d / "b.gguf")
    with pytest.raises(errors.ModelFileNotFoundError, match="nothere.gguf"):
        pull.resolve_model(str(tmp_path / "nothere.gguf"))
    monkeypatch.setenv("LLAMA_MODEL", str(d))
    assert pull.resolve_model(None) == str(d / "ggml-model-q4_0.gguf")
    with pytest.raises(errors.InvalidArgumentError):
        pull.resolve_model("hf:onlyowner")


def test_cli_argument_errors(capsys):
    code, _, err = run_cli(["pull"], capsys)
    assert code == 1 and "REPO" in err
    code, _, err = run_cli(["pull", "a/b", "-s", "7B"], capsys)
    assert code == 1 and "not both" in err
    # run/chat accept no -m now (the default model is resolved at load time)
    args = cli.build_parser().parse_args(["run", "-p", "hi"])
    assert args.model is None


# --------------------------------------------------------------------------------------------------
# Llama.from_pretrained (llama-cpp-python's), against the fake Hub


def test_from_pretrained(server, cdn, tmp_path):
    """A GGUF picked by glob, downloaded into the HF cache (or local_dir) through huggingface_hub
    and loaded with the keyword arguments, a split model with all its parts; one-line errors for no
    match, several matches, and an unreachable Hub (at once; a file named exactly then comes from
    the cache)."""
    pytest.importorskip("huggingface_hub")
    try:
        from llama import _llama
    except ImportError:
        pytest.skip("the native module is not built")
    gguf = tmp_path / "bert-tiny-f16.gguf"
    _llama.convert(str(ROOT / "tests" / "data" / "embed" / "bert-tiny"), "f16", str(gguf), None, True)
    # the same model split in two as llama.cpp's gguf-split writes it
    gguf_with_tensors(gguf, tmp_path / "big.gguf", {}, split_max_tensors=30)
    files = {
        "README.md": b"# bert\n",
        "bert-tiny-f16.gguf": gguf.read_bytes(),
        "bert-tiny-f32.gguf": gguf.read_bytes(),
        "big-00001-of-00002.gguf": (tmp_path / "big-00001-of-00002.gguf").read_bytes(),
        "big-00002-of-00002.gguf": (tmp_path / "big-00002-of-00002.gguf").read_bytes(),
    }
    add_hub_repo(server, "acme/bert-GGUF", files, lfs={f for f in files if f.endswith(".gguf")}, cdn=cdn)
    env = hub_env(server, tmp_path)
    load = (
        "from llama import Llama\n"
        "m = Llama.from_pretrained('acme/bert-GGUF', {f!r}, embedding=True, verbose=False{extra})\n"
        "print(m.model_path); print(len(m.embed('hello world')))\n"
    )
    r = run_sub(load.format(f="*f16.gguf", extra=""), env)
    assert r.returncode == 0, r.stderr
    path, n = r.stdout.split()
    assert (
        Path(path).name == "bert-tiny-f16.gguf" and str(tmp_path / "hf_cache") in path and n == "32"
    )  # bert-tiny: n_embd 32
    assert md5(Path(path).read_bytes()) == md5(files["bert-tiny-f16.gguf"])
    out = tmp_path / "out"
    r = run_sub(
        load.format(f="bert-tiny-f32.gguf", extra=f", local_dir={str(out)!r}, additional_files=['README.md']"), env
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.split()[0]) == out / "bert-tiny-f32.gguf" and (out / "README.md").read_bytes() == b"# bert\n"
    # a split model: a part named (or a glob over its parts) brings both, the first is loaded
    for f in ("big-00002-of-00002.gguf", "big-*.gguf"):
        r = run_sub(load.format(f=f, extra=""), env)
        assert r.returncode == 0, r.stderr
        path1, n = r.stdout.split()
        assert Path(path1).name == "big-00001-of-00002.gguf" and n == "32"
        assert (Path(path1).parent / "big-00002-of-00002.gguf").exists()
    for f, what in [("*.gguf", "name one"), ("*q4_0*", "no file matches")]:
        r = run_sub(load.format(f=f, extra=""), env)
        assert r.returncode == 1 and what in r.stderr, (f, r.stderr)
    # the Hub unreachable: a named file still in the cache loads; a glob cannot be resolved
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    offline = {**env, "HF_ENDPOINT": closed}
    r = run_sub(load.format(f="bert-tiny-f16.gguf", extra=""), offline, timeout=60)
    assert r.returncode == 0 and r.stdout.split()[0] == path, r.stderr
    r = run_sub(load.format(f="*f16.gguf", extra=""), offline, timeout=60)
    assert r.returncode == 1 and "cannot reach" in r.stderr and "local GGUF path" in r.stderr, r.stderr
