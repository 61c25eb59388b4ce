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

import threading
from typing import Any

from ...sigmask import signals_blocked
from . import DispatchModel


class ThreadsModel(DispatchModel):
    name = "threads"
    summary = "a thread per connection, blocking calls in each"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threads: set[threading.Thread] = set()

    def _run(self, conn: Any) -> None:
        try:
            self.handle(conn)
        finally:
            self._threads.discard(threading.current_thread())

    def dispatch(self, conn: Any) -> None:
        thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._threads.add(thread)
        with signals_blocked():  # SIGTERM must reach the main thread, blocked in accept()
            thread.start()

    def wait_for_handlers(self) -> None:
        for thread in tuple(self._threads):
            thread.join()
