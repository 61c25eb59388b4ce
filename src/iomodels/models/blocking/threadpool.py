"""threadpool — a fixed pool of worker threads, fed connections by the accepting thread.

*Blocking IO*, with the lesson's mitigation: threads are created once (``--workers``,
default ``min(32, cpus + 4)`` like ``concurrent.futures``) and reused. The
accepting thread blocks in ``accept`` and hands each connection to a bounded
queue; a worker blocks in ``recv``/``sendall`` for the connection's whole
life. When every worker is busy and the queue is full, the accepting thread
blocks on the queue and stops accepting: new clients wait in the kernel's
listen backlog instead of piling up in our memory.

Cost: a fixed number of threads and stacks, whatever the load; no thread
creation per connection. But a connection holds a worker until it closes, so
at most ``workers`` clients are served at once and the rest wait: the pool
mitigates blocking IO, it does not remove it, and its size must be tuned to
the load (number of concurrent clients, how long each stays).

Choose it for short-lived connections or blocking libraries when you want a
bound on threads; pick the size from measurements, not by guess.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from ...sigmask import signals_blocked
from . import DispatchModel


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPoolModel(DispatchModel):
    name = "threadpool"
    summary = "a fixed pool of threads; extra clients wait in the kernel backlog"
    accepts = frozenset({"workers"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size = self.options.workers or default_workers()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.size)
        self._workers = [threading.Thread(target=self._work, daemon=True, name=f"pool-{i}")
                         for i in range(self.size)]
        with signals_blocked():  # SIGTERM must reach the main thread, blocked in accept()
            for worker in self._workers:
                worker.start()

    def _serve(self, listener: Any) -> Any:
        self.tune_switch_interval(self.size)  # a large pool waits for the GIL like many threads
        return super()._serve(listener)

    def _work(self) -> None:
        get = self._queue.get
        while (conn := get()) is not None:
            self.handle(conn)

    def dispatch(self, conn: Any) -> None:
        self._queue.put(conn)  # blocks while the pool and queue are full

    def wait_for_handlers(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join()
