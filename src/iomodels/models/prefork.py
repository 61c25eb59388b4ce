"""prefork — N worker processes made once, all serving one listening port.

The lesson's *process pool*, as servers do it (Apache prefork, gunicorn):
the parent binds the port, forks ``--workers`` processes (default: one per
CPU) and supervises them; each worker runs an inner model (``--inner``:
threads, asyncio, uvloop or epoll; by default uvloop, else epoll) on the
inherited listening socket, and the kernel hands each new connection to
one of the workers blocked in accept. With ``--reuse-port`` every worker
but the first binds its own SO_REUSEPORT socket instead, and the kernel
spreads connections over them by hash (better balance, no shared accept
queue; a worker that dies loses the connections queued on its socket).

The parent only waits: a worker that dies is reported and replaced; SIGTERM
is passed on to every worker, and the parent reaps them all and adds up
their statistics (each sends its own through a pipe as it exits).

Cost: a whole interpreter per worker (tens of MiB each), fork time once;
in exchange, real parallelism across cores for Python code, which no
single-process model here has.

Choose it to use every core of a machine with a single-threaded model
inside; it is the only way here past one core of Python.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import traceback
from dataclasses import replace
from typing import Any

from ..net import make_listener
from .base import Model, ServerStats
from .serving import serve_until_signalled

log = logging.getLogger(__name__)

INNER_MODELS = ("uvloop", "epoll", "asyncio", "threads")
_PR_SET_PDEATHSIG = 1


def default_inner() -> str:
    from . import probe

    return next(name for name in INNER_MODELS if probe(name) is None)


class PreforkModel(Model):
    name = "prefork"
    family = "process"
    summary = "N pre-forked worker processes, each running an inner model"
    accepts = frozenset({"workers", "inner", "reuse_port"})
    owns_connections = False  # each worker runs the request cost (and its own pool)

    @classmethod
    def probe(cls) -> str | None:
        if not hasattr(os, "fork"):
            return "os.fork is missing on this platform"
        return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = self.options.workers or os.cpu_count() or 1
        self.inner = self.options.inner or default_inner()
        self._children: dict[int, tuple[int, int]] = {}  # pid -> (slot, stats pipe read end)
        self._stopping = False
        self._total = ServerStats()
        self._died = 0  # workers that ended without their statistics (killed, crashed)
        self._replaced = 0

    def serve(self, listener: socket.socket) -> ServerStats:
        self._listener = listener
        for slot in range(self.workers):
            self._spawn(slot)
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in self._children:
                continue
            slot, pipe = self._children.pop(pid)
            clean = self._collect(pipe)
            if not clean:
                self._died += 1
            if not self._stopping:
                self._replaced += 1
                log.warning("worker %d (pid %d) died (%s); starting a new one", slot, pid,
                            _describe(status))
                self._spawn(slot)
        listener.close()
        total = self._total + self.stats.snapshot()
        return replace(total, workers_died=self._died, workers_replaced=self._replaced)

    def _collect(self, pipe: int) -> bool:
        """Add a worker's statistics; False if it died without sending them."""
        with contextlib.closing(os.fdopen(pipe, "rb")) as f:
            data = f.read()
        if not data:
            return False
        self._total = self._total + ServerStats.from_dict(json.loads(data))
        return True

    def _spawn(self, slot: int) -> None:
        read_end, write_end = os.pipe()
        guarded = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, guarded)  # none may hit the child early
        try:
            pid = os.fork()
            if pid == 0:  # the child never returns from here
                os.close(read_end)
                self._child(slot, write_end)
            os.close(write_end)
            self._children[pid] = (slot, read_end)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if self._stopping:  # stop() ran while we forked
            _kill(pid, signal.SIGTERM)

    def _child(self, slot: int, pipe: int) -> None:
        code = 0
        try:
            from . import load_model

            for signum in (signal.SIGTERM, signal.SIGALRM):
                signal.signal(signum, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group: a worker waits for the parent's SIGTERM,
            # or that would be its second signal and it would abort instead of finishing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _die_with_parent()
            listener = self._listener
            if self.options.reuse_port and slot > 0:
                host, port = listener.getsockname()[:2]
                listener.close()
                listener = make_listener(host, port, reuse_port=True)
            model = load_model(self.inner)(self.options)
            stats = serve_until_signalled(model, listener, self.options.grace,
                                          stop_signals=(signal.SIGTERM,))
            os.write(pipe, json.dumps(stats.as_dict()).encode())
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def stop(self) -> None:
        self._stopping = True
        for pid in tuple(self._children):
            _kill(pid, signal.SIGTERM)

    def abort(self) -> None:
        for pid in tuple(self._children):
            _kill(pid, signal.SIGTERM)  # a worker's second signal makes it abort


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the parent dies (a parent killed by SIGKILL
    cannot pass SIGTERM on; without this its workers would serve on as orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
