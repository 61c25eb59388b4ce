"""Run one model as a server: in this process until a signal, or as a child process.

* :func:`run_server` (what ``iomodels serve`` does): probe, listen, print the
  ready line ``listening on HOST:PORT model=M`` (flushed, so scripts can wait
  for it), serve until SIGINT/SIGTERM, print ``stats: {...}`` (JSON).
* :func:`serve_until_signalled`: one model instance on one listener, with
  the stop signals wired to ``stop()`` and, after the grace period or a second
  signal, ``abort()``. prefork's workers use it too.
* :class:`ServerProcess`: ``iomodels serve`` started as a child process, for
  tests, ``compare`` and ``smoke``; its log (stderr) is kept apart from the
  ready and stats lines (stdout).

Connections that arrive before a model's loop starts wait in the backlog.
Nothing here imports the CLI, compare or report: they import this.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TextIO

from ..costs import RequestCost, start_work
from ..net import make_listener, raise_fd_limit
from . import load_model, probe
from .base import Model, ServeOptions, ServerStats

__all__ = ["READY_PREFIX", "STATS_PREFIX", "ModelUnavailable", "ServerProcess", "ServerStartError",
           "run_server", "serve_until_signalled"]

READY_PREFIX = "listening on "
STATS_PREFIX = "stats: "
LOG_PREFIX = "iomodels: "  # how `iomodels serve` starts each log line (stderr)


class ModelUnavailable(Exception):
    pass


def run_server(
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: ServeOptions | None = None,
    *,
    out: TextIO | None = None,
) -> ServerStats:
    """Serve until SIGINT/SIGTERM; return the statistics (also printed)."""
    out = out or sys.stdout
    options = options or ServeOptions()
    reason = probe(model_name)
    if reason is not None:
        raise ModelUnavailable(f"model {model_name!r} is not available here: {reason}")
    raise_fd_limit()
    # `kill -USR1 PID` prints every thread's stack to stderr: what a server that does not stop is
    # blocked in (ServerProcess.stop does it before it kills one, so tests show where it hung)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    model = load_model(model_name)(options)
    listener = make_listener(host, port, reuse_port=options.reuse_port)
    bound_host, bound_port = listener.getsockname()[:2]

    def announce() -> None:
        address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        print(f"{READY_PREFIX}{address} model={model_name}", file=out, flush=True)

    stats = serve_until_signalled(model, listener, options.grace, on_ready=announce)
    print(STATS_PREFIX + json.dumps(stats.as_dict()), file=out, flush=True)
    return stats


def serve_until_signalled(
    model: Model,
    listener: socket.socket,
    grace: float = 5.0,
    on_ready: Callable[[], None] | None = None,
    stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> ServerStats:
    """``model.serve(listener)`` with ``stop_signals`` wired to stop, then abort.

    The first signal calls ``model.stop()`` and starts a ``grace``-second
    timer (SIGALRM); the timer or a second signal calls ``model.abort()``.
    The previous handlers are restored afterwards.
    """
    signals_seen = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1 and signum != signal.SIGALRM:
            model.stop()
            signal.setitimer(signal.ITIMER_REAL, grace)
        else:
            model.abort()

    previous = {signum: signal.signal(signum, on_signal) for signum in (*stop_signals, signal.SIGALRM)}
    wakeup = model.signal_wakeup_fd()  # see Model.signal_wakeup_fd: a stop must not wait for a timeout
    previous_wakeup = signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False) if wakeup is not None else None
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(previous))
    cost = model.options.cost if model.owns_connections else RequestCost()
    try:
        with start_work(cost) as work:
            model.work = work
            if on_ready is not None:
                on_ready()
            stats = model.serve(listener)
            if work is not None and work.offloaded:
                info = work.stats()
                stats = replace(stats, offloaded=info["offloaded"], worker_pids=tuple(info["worker_pids"]))
            return stats
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if previous_wakeup is not None:
            signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class ServerStartError(Exception):
    pass


@dataclass
class ServerProcess:
    """``with ServerProcess("epoll") as srv: ... srv.port ...``; stopped by SIGTERM on exit.

    ``lines`` is everything the server printed (both streams, in arrival order);
    ``log`` only its log lines (stderr, prefix removed): the warnings that say why
    it struggled; ``stats`` the parsed stats line once it stopped.
    """

    model: str
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    start_timeout: float = 20.0
    stop_timeout: float = 20.0
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    lines: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    stats: dict[str, int] | None = None
    cpus: set[int] | None = None  # pin the server to these cores
    _readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "iomodels", "serve", "--model", self.model,
               "--host", self.host, "--port", "0", *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cpus = self.cpus
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, preexec_fn=pin)
        ready = threading.Event()

        def read_stdout(stream: IO[str]) -> None:
            for line in stream:
                line = line.rstrip("\n")
                self.lines.append(line)
                if line.startswith(READY_PREFIX):
                    self.port = int(line[len(READY_PREFIX):].split()[0].rsplit(":", 1)[1])
                    ready.set()
                elif line.startswith(STATS_PREFIX):
                    self.stats = json.loads(line[len(STATS_PREFIX):])
            ready.set()

        def read_stderr(stream: IO[str]) -> None:
            for line in stream:
                line = line.rstrip("\n")
                self.lines.append(line)
                self.log.append(line.removeprefix(LOG_PREFIX))

        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True),
                         threading.Thread(target=read_stderr, args=(self.proc.stderr,), daemon=True)]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(f"{self.model}: no ready line within {self.start_timeout}s")
        if not self.port:
            self.proc.wait(5)
            self._readers[1].join(5)
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
            except subprocess.TimeoutExpired:  # hung: the stacks say where, in `lines` and `log`
                self.lines.append(f"(no exit {self.stop_timeout:g} s after signal {sig}: stack dump)")
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.kill()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
