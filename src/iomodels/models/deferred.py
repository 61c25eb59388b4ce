"""Held-back replies in the hand-written loops (readiness, io_uring): one timer heap, one ready queue.

A session whose replies wait (``--latency-ms``: a timer; ``--offload``: a pool
future) tells the loop when to come back: :class:`Deferred` keeps the timer
heap whose first deadline bounds the loop's wait, and the queue into which a
pool's done-callback (running on a pool thread) puts the connection before it
pokes the loop's waker. The loop then calls ``session.release()`` for each
connection :meth:`Deferred.take_due` returns, in the serving thread, and sends.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from ..service import Session

__all__ = ["Deferred"]


class Deferred:
    """Timers and pool completions for the connections of one loop."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._scheduled: dict[Hashable, float] = {}  # conn -> the deadline already in the heap
        self._ready: deque[Any] = deque()  # appended from pool threads (deque.append is atomic)

    def watch(self, conn: Hashable, session: Session) -> None:
        """Route ``session``'s pool completions to this loop (call once per connection)."""
        ready, wake = self._ready, self._wake

        def on_ready() -> None:
            ready.append(conn)
            wake()

        session.on_ready = on_ready

    def schedule(self, conn: Hashable, session: Session) -> None:
        """After IO on ``conn``: set a timer for its first held-back reply, if it waits on time."""
        due = session.next_due
        if due is not None and self._scheduled.get(conn) != due:
            self._scheduled[conn] = due
            heapq.heappush(self._heap, (due, next(self._seq), conn))

    def timeout(self) -> float | None:
        """Seconds the loop may wait (None: no timer, wait for IO)."""
        if self._ready:
            return 0.0
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def take_due(self) -> list[Any]:
        """Connections to release now: pool work done, or a timer expired (each once)."""
        due: dict[Any, None] = {}
        ready = self._ready
        while ready:
            due[ready.popleft()] = None
        heap = self._heap
        if heap:
            now = time.monotonic()
            scheduled = self._scheduled
            while heap and heap[0][0] <= now:
                when, _, conn = heapq.heappop(heap)
                if scheduled.get(conn) == when:
                    del scheduled[conn]
                due[conn] = None
        return list(due)

    def forget(self, conn: Hashable) -> None:
        """``conn`` is closed (a stale heap entry is skipped by the loop, which no longer knows it)."""
        self._scheduled.pop(conn, None)
