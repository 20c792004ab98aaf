"""`llama pull`: fetch weights, and find the model a command should load.

Two forms:

* Meta's layout (`pull -m data/model/7B -s 7B [--source URL]`): `7B/checklist.chk`, the files it
  lists, and `tokenizer.model` + `tokenizer_checklist.chk` one folder up, each checked against the md5
  of its checklist. The source is a base URL under which those relative paths sit; a `*` in it (as in
  Meta's presigned URL) stands for the relative path. Without `--source`, a Hugging Face repo that holds
  the same files (`7B` → `meta-llama/Llama-2-7b`).
* A Hugging Face repo (`pull REPO [--file PATTERN]`), through `huggingface_hub` and its shared cache.

Our own downloader (Meta form) is resumable: bytes go to `<file>.part`, a cut connection or a timeout
is retried with an HTTP Range request from where it stopped, and the `.part` file is renamed only once
complete and verified. A checksum mismatch removes the download and raises `ChecksumError`.

This module imports only the standard library and `.errors` at import time (no native module), so
`llama pull` works without the compiled extension; `huggingface_hub` is imported when needed.
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import hashlib
import http.client
import json
import os
import queue
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Protocol

from .errors import ChecksumError, InvalidArgumentError, LlamaError, ModelFileNotFoundError, ModelFormatError

# The model `run`/`chat` pull on first use when neither -m nor $LLAMA_MODEL is given (~400 MB).
DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
DEFAULT_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"

CHUNK = 1 << 20  # bytes per read: large enough for throughput, small enough for a live progress bar
TIMEOUT = 30.0  # seconds without a byte (connect or read) before an attempt counts as failed
RETRIES = 5  # consecutive failed attempts that made no progress before giving up
MAX_ATTEMPTS = 100  # hard cap on attempts per file, even if each one makes some progress
BACKOFF = 1.0  # first wait between attempts (doubles, capped at 30 s)
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EISDIR, errno.ENOTDIR}

_SIZE_RE = re.compile(r"^(?:llama-?2-)?(7|13|70)b(-chat)?$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# Names and URLs


def meta_repo_for(size: str) -> str:
    """Hugging Face repo holding Meta's original layout for a size name: 7B → meta-llama/Llama-2-7b."""
    m = _SIZE_RE.match(size.strip())
    if not m:
        raise InvalidArgumentError(
            f"-s {size}: no Hugging Face repo is known for this size; give one of 7B, 13B, 70B "
            f"(optionally -chat), or --source URL"
        )
    return f"meta-llama/Llama-2-{m.group(1)}b{'-chat' if m.group(2) else ''}"


def source_url(base: str, rel: str) -> str:
    """URL of `rel` under `base`: `*` in base stands for rel, else rel is appended to base's path
    (any query string, e.g. a signature, is kept)."""
    quoted = urllib.parse.quote(rel)
    if "*" in base:
        return base.replace("*", quoted, 1)
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + "/" + quoted
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _redact(url: str) -> str:
    """The URL without its query string: a presigned URL's signature is a credential."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + ("?…" if parts.query else "")


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_token() -> str | None:
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if tok:
        return tok
    try:  # the token `hf auth login` saved, if huggingface_hub is there to find it
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def parse_checklist(path: Path) -> list[tuple[str, str]]:
    """`<md5>  <name>` lines (md5sum's format; `*name` = binary mode) → [(md5, name)].
    Names must be plain file names: a checklist cannot make us write outside its folder."""
    out = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-fA-F]{32}) [ *](.+)$", line.rstrip("\r"))
        if not m:
            raise ModelFormatError(f"{path}:{i}: not an md5sum line ('<md5>  <file name>'): {line[:80]!r}")
        name = m.group(2).strip()
        if name.startswith("./"):
            name = name[2:]
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ModelFormatError(f"{path}:{i}: {name!r} is not a plain file name")
        out.append((m.group(1).lower(), name))
    if not out:
        raise ModelFormatError(f"{path}: the checklist lists no file")
    return out


# --------------------------------------------------------------------------------------------------
# Progress


class _TextBar:
    """Fallback progress bar on stderr when tqdm is not installed; redrawn at most 4 times a second."""

    def __init__(self, total: int | None, initial: int, desc: str):
        self.total, self.n, self.desc = total, initial, desc
        self.t0, self.n0, self.last = time.monotonic(), initial, 0.0

    def update(self, k: int) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= 0.25:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.n - self.n0) / max(now - self.t0, 1e-9) / 2**20
        if self.total:
            frac = min(self.n / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"\r{self.desc} [{bar:<30}] {frac * 100:5.1f}% {self.n / 2**20:.1f}/{self.total / 2**20:.1f} MiB"
        else:
            line = f"\r{self.desc} {self.n / 2**20:.1f} MiB"
        sys.stderr.write(f"{line} {rate:.1f} MiB/s")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        sys.stderr.write("\n")
        sys.stderr.flush()


class _Bar(Protocol):
    def update(self, k: int) -> object: ...
    def close(self) -> None: ...


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, initial: int, desc: str, quiet: bool) -> _Bar:
    if quiet:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _TextBar(total, initial, desc)
    bar: _Bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )
    return bar


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Resumable download


class _NoHash:
    def update(self, buf: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _BgHash:
    """A hash computed in a worker thread (hashlib releases the GIL on large updates), so hashing
    overlaps receiving: md5 runs at 0.1-0.5 GB/s per core, as fast as a good connection."""

    def __init__(self, algo: str):
        self._h = hashlib.new(algo)
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=16)  # ≤ 16 chunks of ≤ CHUNK bytes
        self._t = threading.Thread(target=self._run, name="llama-pull-hash", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            buf = self._q.get()
            if buf is None:
                return
            self._h.update(buf)

    def update(self, buf: bytes) -> None:
        self._q.put(buf)

    def close(self) -> None:
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()


class _Cut(Exception):
    """The body ended before Content-Length bytes: retried like a network error."""


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while True:
            buf = f.read(CHUNK)
            if not buf:
                return h.hexdigest()
            h.update(buf)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """`bytes 100-199/1000` → (100, 1000); `bytes */1000` → (None, 1000)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    digest: tuple[str, str] | None = None,
    quiet: bool = False,
    token: str | None = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    backoff: float | None = None,
    desc: str | None = None,
) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming a `.part` left by an earlier run.

    digest = (algorithm, hex), e.g. ("md5", "…"): checked before the rename; a mismatch removes the
    download and raises ChecksumError. `token` goes in an Authorization header that is not forwarded
    on a redirect (a CDN's signed URL must not receive it). Returns dest.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise InvalidArgumentError(f"{_redact(url)}: not an http(s) URL")
    backoff = BACKOFF if backoff is None else backoff
    dest.parent.mkdir(parents=True, exist_ok=True)
    desc = desc or dest.name
    algo = digest[0] if digest else "md5"
    # md5 runs at ~0.5 GB/s per core: skip it when there is nothing to check against.
    new_hasher: Callable = (lambda: _BgHash(algo)) if digest else _NoHash
    hasher = new_hasher()
    try:
        hashed = 0  # bytes of `part` already fed to hasher (so a resume does not read the file twice)
        failures = 0  # consecutive failed attempts without progress
        attempts = 0
        while True:
            attempts += 1
            have = part.stat().st_size if part.exists() else 0
            req = urllib.request.Request(url, headers={"User-Agent": "llama.py-pull", "Accept-Encoding": "identity"})
            if have:
                req.add_header("Range", f"bytes={have}-")
            if token:
                req.add_unredirected_header("Authorization", f"Bearer {token}")
            start_have = have
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    total = None
                    if have and resp.status == 206:
                        start, total = _content_range(resp.headers.get("Content-Range"))
                        if start != have:  # not the range we asked for: start over rather than guess
                            part.unlink()
                            raise _Cut(f"asked for bytes {have}-, the server sent another range")
                    elif have:
                        have = 0  # the server ignored Range and sends the whole file
                    if total is None and resp.headers.get("Content-Length") is not None:
                        total = have + int(resp.headers["Content-Length"])
                    if have == 0:
                        hasher.close()
                        hasher, hashed = new_hasher(), 0
                        start_have = 0
                    elif digest and hashed != have:  # a .part from an earlier run: hash its bytes once
                        hasher.close()
                        hasher, hashed = new_hasher(), 0
                        with open(part, "rb") as f:
                            while hashed < have:
                                buf = f.read(min(CHUNK, have - hashed))
                                if not buf:
                                    break
                                hasher.update(buf)
                                hashed += len(buf)
                    bar = _progress(total, have, desc, quiet)
                    try:
                        with open(part, "r+b" if have else "wb") as f:
                            f.seek(have)
                            f.truncate()
                            while True:
                                # read1: what has arrived (≤ CHUNK); read() would lose a partial chunk on a timeout
                                buf = resp.read1(CHUNK)
                                if not buf:
                                    break
                                f.write(buf)
                                hasher.update(buf)
                                hashed += len(buf)
                                bar.update(len(buf))
                    finally:
                        bar.close()
                    size = part.stat().st_size
                    if total is not None and size < total:
                        raise _Cut(f"connection closed after {size} of {total} bytes")
                    if total is not None and size > total:
                        part.unlink()
                        raise LlamaError(
                            f"{dest}: server sent {size} bytes, more than the {total} announced; "
                            f"the download was removed"
                        )
                    break
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:
                    # Range not satisfiable: the .part may already hold the whole file.
                    _, total = _content_range(e.headers.get("Content-Range"))
                    if total == have:
                        break
                    part.unlink()
                    err: Exception = e
                elif e.code in RETRY_STATUS:
                    err = e
                else:
                    raise LlamaError(_http_message(url, dest, e)) from None
            except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError, _Cut) as e:
                if isinstance(e, OSError) and e.errno in _LOCAL_ERRNOS:  # our disk, not the network: no retry
                    raise LlamaError(f"{part}: {e.strerror}") from None
                err = e
            except ValueError as e:  # malformed URL
                raise InvalidArgumentError(f"{_redact(url)}: {e}") from None
            progressed = part.exists() and part.stat().st_size > start_have
            failures = 0 if progressed else failures + 1
            if failures > retries or attempts >= MAX_ATTEMPTS:
                kept = f"; {part} is kept, run again to resume" if part.exists() else ""
                raise LlamaError(
                    f"{dest.name}: download from {_redact(url)} failed after {attempts} attempts: {_reason(err)}{kept}"
                )
            wait = min(backoff * 2 ** max(failures - 1, 0), 30.0)
            _say(quiet, f"{desc}: {_reason(err)}; retrying in {wait:.1f} s (attempt {attempts + 1})")
            time.sleep(wait)

        if digest:
            # hashed short of the size: e.g. the 416 path, nothing was hashed in this run
            got = _hash_file(part, algo) if hashed != part.stat().st_size else hasher.hexdigest()
            if got != digest[1].lower():
                part.unlink()
                raise ChecksumError(
                    f"{dest}: {algo} {got} does not match the expected {digest[1].lower()}; the download was removed"
                )
        os.replace(part, dest)
        return dest
    finally:
        hasher.close()  # stops the worker thread of the current hash (replaced ones are closed)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"{e.reason}"
    if isinstance(e, socket.timeout):
        return "timed out"
    return str(e) or type(e).__name__


def _http_message(url: str, dest: Path, e: urllib.error.HTTPError) -> str:
    msg = f"{dest.name}: {_redact(url)}: HTTP {e.code} {e.reason}"
    if e.code in (401, 403):
        if "huggingface" in url or urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(hf_endpoint()).netloc:
            msg += " (a gated repo: accept its licence on the Hub, then set HF_TOKEN)"
        else:
            msg += " (a presigned URL expires: ask for a new one)"
    return msg


# --------------------------------------------------------------------------------------------------
# Meta's layout


def _hub_get_json(url: str, token: str | None, what: str, timeout: float = TIMEOUT) -> tuple[Any, str | None]:
    """GET a JSON document from the Hub API; returns (json, next page URL or None)."""
    req = urllib.request.Request(url, headers={"User-Agent": "llama.py-pull", "Accept": "application/json"})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read().decode("utf-8"))
            m = re.search(r'<([^>]+)>;\s*rel="next"', resp.headers.get("Link") or "")
            return body, (m.group(1) if m else None)
    except urllib.error.HTTPError as e:
        hint = ""
        if e.code in (401, 403):
            hint = (
                " — a gated repo: accept its licence on the Hub, then set HF_TOKEN"
                if not token
                else " — HF_TOKEN has no access to it: accept the licence on the Hub"
            )
        elif e.code == 404:
            hint = " — no such repo (or it is private and HF_TOKEN is not set)"
        raise LlamaError(f"{what}: HTTP {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        raise LlamaError(f"{what}: {_reason(e)}") from None


def hub_list_files(repo: str, revision: str = "main", token: str | None = None) -> dict[str, dict]:
    """Every file of a Hub repo: path → tree entry ({'size', 'lfs': {'oid': sha256}} ...)."""
    rev = urllib.parse.quote(revision, safe="")
    url: str | None = f"{hf_endpoint()}/api/models/{repo}/tree/{rev}?recursive=true&expand=false"
    files: dict[str, dict] = {}
    for _ in range(1000):  # pagination is bounded: 1000 pages of 1000 entries
        if url is None:
            break
        page, url = _hub_get_json(url, token, f"listing {repo}")
        if not isinstance(page, list):
            raise LlamaError(f"listing {repo}: unexpected answer from {hf_endpoint()}")
        for entry in page:
            if isinstance(entry, dict) and entry.get("type") == "file" and "path" in entry:
                files[entry["path"]] = entry
    return files


def pull_meta(
    model_dir: str | os.PathLike[str],
    size: str | None = None,
    source: str | None = None,
    *,
    quiet: bool = False,
    **kw: Any,
) -> list[Path]:
    """Download Meta's layout: `model_dir/{checklist.chk, consolidated.NN.pth, params.json}` and
    `model_dir/../{tokenizer.model, tokenizer_checklist.chk}`, every file checked against its md5.
    `kw` goes to `download` (timeout, retries, backoff). Returns the local paths."""
    model_dir = Path(model_dir)
    size = size or model_dir.name
    root = model_dir.parent
    token = None
    if source:
        where = _redact(source)

        def url_for(rel: str) -> str:
            return source_url(source, rel)

        checklist, tok_checklist = f"{size}/checklist.chk", "tokenizer_checklist.chk"
        prefix_model, prefix_tok = f"{size}/", ""
        remote: dict[str, dict] | None = None
    else:
        repo = meta_repo_for(size)
        token = hf_token()
        where = f"{hf_endpoint()}/{repo}"
        remote = hub_list_files(repo, token=token)
        # The files sit at the repo root (Llama 2) or under original/ (repos that also hold HF weights).
        prefix = next((p for p in ("", "original/") if f"{p}params.json" in remote), None)
        if prefix is None:
            raise LlamaError(f"{repo}: holds no params.json at its root or under original/, so it is not Meta's layout")

        def url_for(rel: str) -> str:
            return f"{hf_endpoint()}/{repo}/resolve/main/{urllib.parse.quote(rel)}"

        checklist, tok_checklist = f"{prefix}checklist.chk", f"{prefix}tokenizer_checklist.chk"
        prefix_model = prefix_tok = prefix
    _say(quiet, f"pulling {size} from {where} into {model_dir}")

    def fetch(rel: str, dest: Path, md5: str | None) -> Path:
        if md5 is None and remote is not None:  # no checklist in the repo: use the Hub's LFS sha256
            oid = (remote.get(rel) or {}).get("lfs", {}) or {}
            digest = ("sha256", oid["oid"]) if oid.get("oid") else None
        else:
            digest = ("md5", md5) if md5 else None
        if digest and dest.exists():
            if _hash_file(dest, digest[0]) == digest[1].lower():
                _say(quiet, f"{dest}: present, {digest[0]} OK")
                return dest
            _say(quiet, f"{dest}: present but its {digest[0]} does not match: downloading again")
        return download(url_for(rel), dest, digest=digest, quiet=quiet, token=token, **kw)

    def group(checklist_rel: str, prefix: str, folder: Path, fallback: list[str]) -> list[Path]:
        out = []
        if remote is not None and checklist_rel not in remote:
            _say(quiet, f"{checklist_rel}: not in the repo; checking the Hub's sha256 instead")
            entries: list[tuple[str | None, str]] = [(None, n) for n in fallback]
        else:
            chk = download(url_for(checklist_rel), folder / Path(checklist_rel).name, quiet=True, token=token, **kw)
            out.append(chk)
            entries = list(parse_checklist(chk))
        for md5, name in entries:
            out.append(fetch(prefix + name, folder / name, md5))
        return out

    model_files = ["params.json"] + sorted(
        Path(p).name for p in (remote or {}) if re.fullmatch(re.escape(prefix_model) + r"consolidated\.\d+\.pth", p)
    )
    paths = group(checklist, prefix_model, model_dir, model_files)
    paths += group(tok_checklist, prefix_tok, root, ["tokenizer.model"])
    return paths


# --------------------------------------------------------------------------------------------------
# Hugging Face Hub


def _hf() -> Any:  # the huggingface_hub module, imported on first use
    try:
        import huggingface_hub
    except ImportError:
        raise LlamaError(
            "pulling from the Hugging Face Hub needs huggingface_hub: "
            "pip install huggingface_hub (a dependency of llama-py: reinstall it)"
        ) from None
    return huggingface_hub


def _hf_error(repo: str, e: Exception) -> LlamaError:
    """A huggingface_hub / HTTP client exception as a LlamaError naming the repo and a way out."""
    # LocalEntryNotFoundError ("not in the cache") wraps the Hub's answer: report that answer instead.
    known = (
        "GatedRepoError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "RemoteEntryNotFoundError",
    )
    found: BaseException = e
    c: BaseException | None = e
    seen = 0
    while c is not None and seen < 8:
        if type(c).__name__ in known:
            found = c
            break
        c, seen = c.__cause__ or c.__context__, seen + 1
    name = type(found).__name__
    first = (str(found).strip().splitlines() or [name])[0]
    if name == "GatedRepoError" or " 401" in first or " 403" in first:
        return LlamaError(
            f"{repo}: access denied ({first}) — a gated repo: accept its licence on the Hub, then set HF_TOKEN"
        )
    if name == "RepositoryNotFoundError":
        return LlamaError(f"{repo}: no such repo on {hf_endpoint()} (or it is private and HF_TOKEN is not set)")
    if name == "RevisionNotFoundError":
        return LlamaError(f"{repo}: no such revision ({first})")
    if name in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return LlamaError(f"{repo}: no such file ({first})")
    if name == "LocalEntryNotFoundError":
        return LlamaError(f"{repo}: cannot reach {hf_endpoint()} and the file is not in the cache ({first})")
    return LlamaError(f"{repo}: {name}: {first}")


def _is_hub_exception(e: Exception) -> bool:
    mod = type(e).__module__ or ""
    return mod.startswith(("huggingface_hub", "httpx", "requests", "urllib3")) or isinstance(e, OSError)


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def pull_hub(
    repo: str,
    pattern: str | None = None,
    revision: str | None = None,
    out_dir: str | None = None,
    *,
    quiet: bool = False,
) -> list[str]:
    """Download a file (or the files matching a glob, or the whole repo) of a Hub repo with
    huggingface_hub; returns the local paths. Honours HF_ENDPOINT, HF_TOKEN and the shared HF cache."""
    hf = _hf()
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InvalidArgumentError(f"{repo!r}: a Hub repo id is OWNER/NAME")
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # a CLI run: process-wide is fine
    try:
        if pattern and not _has_glob(pattern):
            return [hf.hf_hub_download(repo, pattern, revision=revision, local_dir=out_dir)]
        root = hf.snapshot_download(
            repo, revision=revision, local_dir=out_dir, allow_patterns=[pattern] if pattern else None
        )
    except LlamaError:
        raise
    except Exception as e:
        if _is_hub_exception(e):
            raise _hf_error(repo, e) from None
        raise
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".cache")  # local_dir keeps its metadata there
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if pattern is None or fnmatch.fnmatch(rel, pattern):
                found.append(path)
    if not found:
        raise LlamaError(f"{repo}: no file matches {pattern!r}" if pattern else f"{repo}: the repo holds no file")
    return found


_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def hub_model_file(
    repo: str,
    filename: str | None,
    additional_files: list[str] | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
) -> str:
    """The local path of the one file of Hub repo `repo` that `filename` names (a path or a glob
    such as "*q4_k_m.gguf"; None: its Q4_K_M, else Q4_0, GGUF), downloaded with huggingface_hub
    into `local_dir` or the HF cache (`cache_dir`), with every file matching one of
    `additional_files`. A part of a split model (llama.cpp's `PREFIX-0000i-of-0000N.gguf`, or a
    glob matching its parts) brings every part, and the first part's path is returned. The listing
    goes first, without retries: an unreachable Hub fails at once, saying so, unless the file
    (named without a glob) is already in the cache."""
    hf = _hf()
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InvalidArgumentError(f"{repo!r}: a Hub repo id is OWNER/NAME")
    try:
        names = sorted(hub_list_files(repo, token=hf_token()))
    except LlamaError as e:
        if filename and not _has_glob(filename):
            try:
                return str(
                    hf.hf_hub_download(repo, filename, local_dir=local_dir, cache_dir=cache_dir, local_files_only=True)
                )
            except Exception:
                pass
        if "HTTP" in str(e):
            raise
        raise LlamaError(
            f"{repo}: cannot reach {hf_endpoint()} ({str(e).split(': ', 1)[-1]}) and the file is not in the cache: "
            "check the network, or give a local GGUF path (Llama('model.gguf'))"
        ) from None

    def matching(pattern: str) -> list[str]:
        return [n for n in names if fnmatch.fnmatch(n, pattern)]

    if filename is None:
        file = pick_gguf(names, prefer_hub=True)
        if file is None:
            raise ModelFileNotFoundError(f"{repo}: the repo holds no .gguf file")
    else:
        hits = matching(filename)
        if not hits:
            ggufs = [n for n in names if n.endswith(".gguf")] or names
            raise ModelFileNotFoundError(f"{repo}: no file matches {filename!r}; it holds {', '.join(ggufs[:20])}")
        # the parts of one split model count as one file (its first part is loaded)
        heads = {_SPLIT.sub("", h) for h in hits}
        if len(heads) > 1:
            raise InvalidArgumentError(
                f"{repo}: {len(hits)} files match {filename!r} ({', '.join(hits[:10])}): name one"
            )
        file = min(hits)
    extra = [n for pattern in additional_files or [] for n in (matching(pattern) or [pattern])]
    m = _SPLIT.search(file)
    if m:
        # llama.cpp's gguf-split parts: every part downloaded beside the first, which is loaded
        count = int(m.group(2))
        parts = [_SPLIT.sub(f"-{i:05d}-of-{count:05d}.gguf", file) for i in range(1, count + 1)]
        missing = [p for p in parts if p not in names]
        if missing:
            raise ModelFileNotFoundError(
                f"{repo}: {file} is part of a {count}-part split whose {missing[0]} is not there"
            )
        file = parts[0]
        extra = parts[1:] + [n for n in extra if n not in parts]
    try:
        if quiet:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        path = hf.hf_hub_download(repo, file, local_dir=local_dir, cache_dir=cache_dir)
        for n in extra:
            hf.hf_hub_download(repo, n, local_dir=local_dir, cache_dir=cache_dir)
    except Exception as e:
        if _is_hub_exception(e):
            raise _hf_error(repo, e) from None
        raise
    return str(path)


# --------------------------------------------------------------------------------------------------
# Which model to load


def pick_gguf(names: list[str], prefer_hub: bool = False) -> str | None:
    """The GGUF to load among names: ggml-model-q4_0.gguf (the seed's name) if there, else (in a Hub repo,
    where a file per quantization is usual) a Q4_K_M then a Q4_0 one, else the first by name."""
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
    if not ggufs:
        return None
    for n in ggufs:
        if n.rsplit("/", 1)[-1] == "ggml-model-q4_0.gguf":
            return n
    if prefer_hub:
        for key in ("q4_k_m", "q4_0"):
            hits = [n for n in ggufs if key in n.lower() and "mmproj" not in n.lower()]
            if hits:
                return hits[0]
    return ggufs[0]


def resolve_model(spec: str | None, *, quiet: bool = False) -> str:
    """The GGUF path a command should load, from its -m value.

    * a file path → itself;  a folder → ggml-model-q4_0.gguf in it, else its first *.gguf by name;
    * `hf:OWNER/REPO/FILE` → that file pulled into the HF cache; `hf:OWNER/REPO` → its Q4_K_M/Q4_0 GGUF;
    * None/empty → $LLAMA_MODEL (same forms), else DEFAULT_REPO/DEFAULT_FILE pulled on first use.
    """
    if not spec:
        env = os.environ.get("LLAMA_MODEL")
        if env:
            return resolve_model(env, quiet=quiet)
        _say(
            quiet,
            f"no model given (-m or $LLAMA_MODEL): using {DEFAULT_REPO}/{DEFAULT_FILE} "
            f"(pulled once into the Hugging Face cache)",
        )
        return resolve_model(f"hf:{DEFAULT_REPO}/{DEFAULT_FILE}", quiet=quiet)
    if spec.startswith("hf:"):
        parts = [p for p in spec[3:].split("/") if p]
        if len(parts) < 2:
            raise InvalidArgumentError(f"{spec}: write hf:OWNER/REPO or hf:OWNER/REPO/FILE")
        repo, file = "/".join(parts[:2]), "/".join(parts[2:]) or None
        if file is None:
            hf = _hf()
            try:
                names = hf.list_repo_files(repo)
            except Exception as e:
                if _is_hub_exception(e):
                    raise _hf_error(repo, e) from None
                raise
            file = pick_gguf(names, prefer_hub=True)
            if file is None:
                raise ModelFileNotFoundError(f"{spec}: the repo holds no .gguf file")
        return pull_hub(repo, file, quiet=quiet)[0]
    p = Path(spec).expanduser()
    if p.is_dir():
        name = pick_gguf([c.name for c in p.iterdir() if c.is_file()])
        if name is None:
            raise ModelFileNotFoundError(f"{p}: the folder holds no .gguf file")
        return str(p / name)
    if not p.exists():
        raise ModelFileNotFoundError(f"{spec}: no such file or folder (hf:OWNER/REPO/FILE pulls from the Hub)")
    return str(p)


# --------------------------------------------------------------------------------------------------
# Command line


PARSER_KW: dict[str, Any] = {
    "help": "download weights: Meta's layout (-m DIR -s 7B) or a Hugging Face repo (REPO)",
    "formatter_class": argparse.RawDescriptionHelpFormatter,
    "description": """\
Download model weights, resumably (a cut download continues from its .part file) and verified.

  llama pull -m data/model/7B -s 7B [--source URL]
      Meta's layout: data/model/7B/{checklist.chk, consolidated.NN.pth, params.json} and
      data/model/{tokenizer.model, tokenizer_checklist.chk}, each checked against the md5 in its
      checklist. URL is a base under which Meta's files sit (URL/7B/checklist.chk, URL/tokenizer.model);
      a * in URL stands for the file's path (Meta's presigned URL: 'https://…/*?Policy=…').
      Without --source, from the Hugging Face repo holding the same files (gated: set HF_TOKEN):
        7B → meta-llama/Llama-2-7b,  13B → meta-llama/Llama-2-13b,  70B → meta-llama/Llama-2-70b,
        7B-chat → meta-llama/Llama-2-7b-chat (and 13B-chat, 70B-chat); files at the repo root or
        under original/.

  llama pull REPO [--file PATTERN] [--revision REV] [-o DIR]
      A Hugging Face repo through huggingface_hub (HF_ENDPOINT, HF_TOKEN and the shared HF cache);
      PATTERN is a file name or a glob (e.g. '*q4_k_m.gguf'). Prints the local path(s).
""",
}


def add_pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", nargs="?", default=None, help="Hugging Face repo id (OWNER/NAME)")
    p.add_argument(
        "-m",
        "--model-dir",
        default=None,
        help="Meta layout: the model folder to fill, e.g. data/model/7B (tokenizer goes in its parent)",
    )
    p.add_argument("-s", "--size", default=None, help="Meta layout: 7B, 13B, 70B (-chat); default: the name of -m")
    p.add_argument("--source", default=None, help="Meta layout: base URL of the files ('*' = the file's path)")
    p.add_argument("--file", default=None, help="hub: file name or glob to download (default: the whole repo)")
    p.add_argument("--revision", default=None, help="hub: branch, tag or commit")
    p.add_argument("-o", "--output-dir", default=None, help="hub: copy into this folder instead of only the HF cache")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds without data before retrying")
    p.add_argument("--retries", type=int, default=RETRIES, help="retries without progress before giving up")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_pull(a: argparse.Namespace) -> int:
    meta = a.model_dir is not None or a.size is not None or a.source is not None
    if a.repo is not None and meta:
        raise InvalidArgumentError("pull: give either REPO (Hub) or -m/-s/--source (Meta's layout), not both")
    if a.repo is None and not meta:
        raise InvalidArgumentError("pull: give a Hub REPO, or -m DIR -s SIZE for Meta's layout (see --help)")
    if a.repo is not None:
        for name in pull_hub(a.repo, a.file, a.revision, a.output_dir, quiet=a.quiet):
            print(name)
        return 0
    if a.file or a.revision or a.output_dir:
        raise InvalidArgumentError("pull: --file, --revision and -o are for a Hub REPO; Meta's layout uses -m")
    model_dir = a.model_dir or os.path.join("data", "model", a.size)
    for path in pull_meta(model_dir, a.size, a.source, quiet=a.quiet, timeout=a.timeout, retries=a.retries):
        print(path)
    return 0
