"""One `python -m llama serve` process owned by a Python process (a Ray Serve replica): started on
127.0.0.1 and a port the kernel picks, ready when /health answers 200, and gone when its owner is.

The owner holds the write end of a pipe whose read end the child watches (`python -m
llama.serve.child`): when the owner exits, however it dies (SIGKILL included, as `ray.kill` sends),
the kernel closes that end, the child reads EOF and stops the server with SIGTERM (SIGKILL after a
grace period). A pipe, not PR_SET_PDEATHSIG: that fires when the *thread* that forked the child
exits, and a replica starts its child from whichever thread runs its constructor."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence

from ..errors import LlamaError

_LISTENING = re.compile(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)")


class ChildServer:
    """`python -m llama serve -m MODEL --port 0 ARGS…` as a child process.

    `start()` returns once the model is loaded (GET /health is 200) or raises `LlamaError` with the
    child's last lines of stderr. `stop()` ends it (SIGTERM, SIGKILL after `grace` seconds)."""

    def __init__(self, model: str, args: Sequence[str] = (), *, log_prefix: str = "", quiet: bool = False) -> None:
        self.model = model
        # the child must log its address: --quiet is ours (its lines are not passed on)
        self.args = [a for a in args if a != "--quiet"]
        self.log_prefix = log_prefix
        self.quiet = quiet or "--quiet" in args
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None  # write end of the pipe the child watches
        self._tail: deque[str] = deque(maxlen=20)
        self._port_seen = threading.Event()
        self._pump_thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 600) -> None:
        r, w = os.pipe()
        cmd = [sys.executable, "-m", "llama.serve.child", str(r), "serve", "-m", self.model]
        cmd += ["--host", self.host, "--port", "0", *self.args]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(r,)
            )
        finally:
            os.close(r)
        self._lifeline = w
        self._pump_thread = threading.Thread(target=self._pump, name="llama-child-stderr", daemon=True)
        self._pump_thread.start()
        self._wait_ready(timeout)

    def _pump(self) -> None:
        """Reads the child's stderr: finds the port it listens on, keeps the last lines for errors,
        passes each line on to ours (a Ray worker's log) unless quiet."""
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if not self._port_seen.is_set():
                m = _LISTENING.search(line)
                if m:
                    self.port = int(m.group(2))
                    self._port_seen.set()
            if not self.quiet:
                print(f"{self.log_prefix}{line}", file=sys.stderr, flush=True)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self._pump_thread is not None:
                    self._pump_thread.join(2)  # the child's last lines, for the message
                raise LlamaError(
                    f"`llama serve -m {self.model}` exited with code {self.proc.returncode}: " + " | ".join(self._tail)
                )
            if self._port_seen.wait(0.1) and self.healthy(timeout=2):
                return
        self.stop()
        raise LlamaError(f"`llama serve -m {self.model}` was not ready after {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 5) -> bool:
        """The child runs and answers GET /health with 200 (its model is loaded)."""
        if not self.alive() or not self.port:
            return False
        try:
            c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                c.request("GET", "/health")
                return c.getresponse().status == 200
            finally:
                c.close()
        except OSError:
            return False

    def stop(self, grace: float = 10) -> int | None:
        """SIGTERM (the server stops cleanly), SIGKILL after `grace` s; returns the exit code."""
        proc, self.proc = self.proc, None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


def _watch(fd: int, grace: float = 10) -> None:
    """Blocks until the owner's end of the pipe closes, then stops this process."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """`python -m llama.serve.child FD serve …`: the command line of `python -m llama` with a
    watcher on pipe FD (see the module's docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].isdigit():
        print("usage: python -m llama.serve.child FD serve -m MODEL …", file=sys.stderr)
        return 2
    fd = int(argv.pop(0))
    threading.Thread(target=_watch, args=(fd,), name="llama-lifeline", daemon=True).start()
    from ..cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
