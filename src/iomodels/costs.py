"""What a request costs the server besides moving bytes: a backend wait, CPU work, and where it runs.

The lesson's point is that IO models differ when a request *waits* (on a
database, another service) or *computes*, not when it only echoes. These are
knobs of the service layer, so they combine with any service
(``--service mypkg:factory`` too) and every model:

* ``latency_ms``: each reply is held back this long after its data arrived,
  as if the service waited on a backend. A model must not hold up other
  connections meanwhile: threads and greenlets sleep; loops use a timer.
* ``cpu_us``: this many microseconds of real CPU work (a deterministic
  pure-Python computation that holds the GIL, calibrated once at start) per
  received chunk.
* ``offload``: where that work runs: ``none`` (in the serving thread),
  ``thread`` or ``process`` (a :mod:`concurrent.futures` pool, the lesson's
  pool with done-callbacks: the result comes back to the connection through
  the future's callback, replies stay in order per connection).

:class:`Work` is the running form (the calibration and the pool), made once
per serving process by :func:`start_work`; :class:`~iomodels.service.Session`
uses it to turn each received chunk into a *job* whose reply is released when
its wait is over and its work is done.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from .sigmask import signals_blocked

__all__ = ["CALIBRATION_ENV", "OFFLOAD_KINDS", "RequestCost", "Work", "burn", "calibrate", "start_work"]

OFFLOAD_KINDS = ("none", "thread", "process")
_CALIBRATION_ROUNDS = 200_000
# set by `iomodels compare` (calibrated once) so that every server of a comparison burns the same work
CALIBRATION_ENV = "IOMODELS_BURN_PER_US"


def burn(iterations: int) -> tuple[int, int, int]:
    """Deterministic CPU work that holds the GIL; returns (checksum, pid, thread id) of who ran it."""
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x, os.getpid(), threading.get_ident()


def calibrate(rounds: int = 3) -> float:
    """Iterations of :func:`burn` per microsecond on this machine (best of ``rounds`` short runs).

    ``$IOMODELS_BURN_PER_US``, when set, is taken as it is: a comparison calibrates once and
    gives every server it starts the same figure, so the same ``--cpu-us`` is the same work."""
    preset = os.environ.get(CALIBRATION_ENV)
    if preset:
        with contextlib.suppress(ValueError):
            value = float(preset)
            if math.isfinite(value) and value > 0:
                return value
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        burn(_CALIBRATION_ROUNDS)
        best = min(best, time.perf_counter() - start)
    return _CALIBRATION_ROUNDS / (best * 1e6)


@dataclass(frozen=True)
class RequestCost:
    """The knobs, as given on the command line."""

    latency_ms: float = 0.0
    cpu_us: float = 0.0
    offload: str = "none"
    pool_workers: int | None = None  # None: as concurrent.futures picks (processes: one per CPU)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {self.latency_ms}")
        if not (math.isfinite(self.cpu_us) and self.cpu_us >= 0):
            raise ValueError(f"cpu_us must be a finite number >= 0, got {self.cpu_us}")
        if self.offload not in OFFLOAD_KINDS:
            raise ValueError(f"offload must be one of {', '.join(OFFLOAD_KINDS)}, got {self.offload!r}")
        if self.offload != "none" and not self.cpu_us:
            raise ValueError("offload moves the CPU work to a pool: give cpu_us too")

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.cpu_us)


def _ignore_interrupts() -> None:  # pool processes: Ctrl-C is for the server, which stops them
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Work:
    """The running form of a :class:`RequestCost` in one serving process."""

    def __init__(self, cost: RequestCost) -> None:
        self.cost = cost
        self.latency = cost.latency_ms / 1000.0
        self.iterations = round(cost.cpu_us * calibrate()) if cost.cpu_us else 0
        self.executor: Executor | None = None
        self.offloaded = 0  # jobs whose work ran in the pool
        self.workers: set[tuple[int, int]] = set()  # (pid, thread id) of whoever did pool work
        self._lock = threading.Lock()
        if cost.offload == "process":
            # multiprocessing starts its helpers (forkserver, resource tracker) with SIGINT/SIGTERM
            # blocked and *unblocks* them afterwards: start them first, or that unblock would undo
            # the mask below for the threads started after it
            from multiprocessing import forkserver, resource_tracker

            forkserver.ensure_running()
            resource_tracker.ensure_running()
        # every thread of the pool (and a process pool's manager and feeder threads) is started
        # here, with the stop signals blocked: they must reach the serving thread (sigmask.py)
        with signals_blocked():
            if cost.offload == "thread":
                pool = ThreadPoolExecutor(cost.pool_workers, thread_name_prefix="offload")
                self.executor = pool
                size = pool._max_workers  # a new thread is made only while none is idle: keep
                gate = threading.Barrier(size + 1)  # them all busy until every one exists
                started = [pool.submit(gate.wait) for _ in range(size)]
                gate.wait()
                for future in started:
                    future.result()
            elif cost.offload == "process":
                # forkserver, not fork: a server with threads must not fork a copy of itself mid-request
                context = multiprocessing.get_context("forkserver")
                self.executor = ProcessPoolExecutor(cost.pool_workers, mp_context=context,
                                                    initializer=_ignore_interrupts)
                size = self.executor._max_workers
                for future in [self.executor.submit(burn, 1) for _ in range(size * 2)]:
                    future.result()

    def submit(self) -> Future[tuple[int, int, int]]:
        assert self.executor is not None
        return self.executor.submit(burn, self.iterations)

    def record(self, future: Future[tuple[int, int, int]]) -> None:
        """A pool job is done (called from whichever thread completes it)."""
        with contextlib.suppress(Exception):
            _, pid, tid = future.result()
            with self._lock:
                self.offloaded += 1
                self.workers.add((pid, tid))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"offloaded": self.offloaded,
                    "worker_pids": sorted({pid for pid, _ in self.workers}),
                    "worker_threads": len(self.workers)}


@contextlib.contextmanager
def start_work(cost: RequestCost) -> Iterator[Work | None]:
    """The :class:`Work` for ``cost`` while serving (None when the cost is nothing), then its pool
    shut down."""
    if not cost.active:
        yield None
        return
    work = Work(cost)
    try:
        yield work
    finally:
        work.close()
