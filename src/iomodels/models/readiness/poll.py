"""poll — IO multiplexing with ``poll()``: select without the FD_SETSIZE limit.

The lesson's *IO multiplexing*, as ``select``: one thread blocks in ``poll``
until sockets are ready, then copies with non-blocking ``recv``/``send``.

Cost: the array of watched fds still goes to the kernel and is scanned on
every call (O(connections) per wakeup), but fds of any value work and
interest changes are free (no syscall).

Choose it where epoll is missing (other Unixes) or for a few hundred
connections.
"""

from __future__ import annotations

import math
import select

from . import ReadinessModel, Wait


class PollWait(Wait):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.poller = select.poll()

    def add(self, fd: int, events: int) -> None:
        self.poller.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self.poller.modify(fd, events)

    def remove(self, fd: int) -> None:
        self.poller.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # milliseconds, rounded up: a timer due in 0.4 ms must not become a busy poll(0)
        return self.poller.poll(None if timeout is None else math.ceil(timeout * 1000))


class PollModel(ReadinessModel):
    name = "poll"
    summary = "poll(): select without the 1024-fd limit, still O(n) per call"

    def new_wait(self) -> Wait:
        return PollWait(self.options)
