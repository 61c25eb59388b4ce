"""threads — a new OS thread per connection, blocking calls inside it.

*Blocking IO*, made concurrent by the kernel's scheduler: the main thread
blocks in ``accept``; each connection's thread blocks in ``recv`` and
``sendall``. The GIL is released in every blocking call, so threads overlap
their waiting, not their Python code.

Cost: a thread per connection (a stack of virtual memory, tens of KiB
resident, a kernel task), a thread creation per connection, and context
switches between threads under load. Thousands of connections mean thousands
of threads.

Choose it for modest numbers of long-lived connections with blocking
libraries inside the handler; prefer ``threadpool`` to bound the threads, or a
readiness/asyncio model for many idle connections.
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

from ...sigmask import signals_blocked
from . import DispatchModel


class ThreadsModel(DispatchModel):
    name = "threads"
    summary = "a thread per connection, blocking calls in each"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._running = 0  # handler threads alive
        self._done = threading.Condition(threading.Lock())

    def _run(self, conn: Any) -> None:
        try:
            self.handle(conn)
        finally:
            with self._done:
                self._running -= 1
                if not self._running:
                    self._done.notify_all()

    def dispatch(self, conn: Any) -> None:
        # _thread, not threading.Thread: start() would wait until the new thread has run (one more
        # turn for the GIL, which the accepting thread needs most after a mass disconnect leaves
        # thousands of threads competing for it), and threading's bookkeeping (a registry entry, a
        # per-thread lock) makes every thread's start and exit dearer. We count them ourselves.
        with self._done:
            self._running += 1
        self.tune_switch_interval(self._running)  # thousands of threads may wait for the GIL at once
        try:
            with signals_blocked():  # SIGTERM must reach the main thread, blocked in accept()
                _thread.start_new_thread(self._run, (conn,))
        except RuntimeError:
            with self._done:
                self._running -= 1
            raise

    def wait_for_handlers(self) -> None:
        with self._done:
            while self._running:
                self._done.wait()
