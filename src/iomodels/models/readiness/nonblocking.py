"""nonblocking — non-blocking sockets swept in a loop, with no readiness call at all.

The lesson's *non-blocking IO*: the process keeps asking the kernel "is there
data yet?" by calling ``accept``/``recv``/``send`` on every socket; the answer
is EAGAIN until there is. Only the copy phase blocks (briefly); the waiting
phase is spent spinning in user space.

Cost: with ``--poll-interval 0`` (the default) one core runs at 100% even with
no clients, and every sweep costs a failed syscall (and a Python exception)
per idle socket, so it slows down as connections are added. A positive
``--poll-interval`` sleeps between sweeps: CPU drops, but a request waits on
average half an interval before it is even seen, and throughput falls with
it. That trade-off, CPU against latency, is the lesson's point.

Choose it never in production; it is here to show why readiness
notification (select/poll/epoll) exists.
"""

from __future__ import annotations

import time

from . import ReadinessModel, Wait


class BusyWait(Wait):
    """Report every socket as possibly ready for what it wants; sleep between sweeps if asked."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.interval = self.options.poll_interval
        self.interest: dict[int, int] = {}

    def add(self, fd: int, events: int) -> None:
        self.interest[fd] = events

    modify = add

    def remove(self, fd: int) -> None:
        self.interest.pop(fd, None)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        if self.interval:  # never past a timer: a sweep is cheap, a late reply is not
            time.sleep(self.interval if timeout is None else min(self.interval, timeout))
        return list(self.interest.items())


class NonblockingModel(ReadinessModel):
    name = "nonblocking"
    summary = "busy-poll non-blocking sockets; --poll-interval trades CPU for latency"
    accepts = frozenset({"poll_interval"})

    def new_wait(self) -> Wait:
        return BusyWait(self.options)
