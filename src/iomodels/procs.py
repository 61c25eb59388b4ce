"""Start ``iomodels serve`` in a child process and wait for it (tests, compare, smoke)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .server import READY_PREFIX, STATS_PREFIX

__all__ = ["ServerProcess", "ServerStartError"]


class ServerStartError(Exception):
    pass


@dataclass
class ServerProcess:
    """``with ServerProcess("epoll") as srv: ... srv.port ...``; stopped by SIGTERM on exit."""

    model: str
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    start_timeout: float = 20.0
    stop_timeout: float = 20.0
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    lines: list[str] = field(default_factory=list)
    stats: dict[str, int] | None = None
    cpus: set[int] | None = None  # pin the server to these cores
    _reader: threading.Thread | None = None

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "iomodels", "serve", "--model", self.model,
               "--host", self.host, "--port", "0", *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cpus = self.cpus
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, preexec_fn=pin)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self.lines.append(line)
                if line.startswith(READY_PREFIX):
                    self.port = int(line[len(READY_PREFIX):].split()[0].rsplit(":", 1)[1])
                    ready.set()
                elif line.startswith(STATS_PREFIX):
                    self.stats = json.loads(line[len(STATS_PREFIX):])
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(f"{self.model}: no ready line within {self.start_timeout}s")
        if not self.port:
            self.proc.wait(5)
            raise ServerStartError(f"{self.model} exited before it was ready:\n"
                                   + "\n".join(self.lines))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server, wait for it to exit; return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
