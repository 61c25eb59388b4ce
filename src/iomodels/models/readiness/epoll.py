"""epoll — IO multiplexing with Linux ``epoll``: the kernel keeps the watch list.

The lesson's *IO multiplexing* done the scalable way: sockets are registered
once with ``epoll_ctl``; ``epoll_wait`` returns only the ready ones, so a
wakeup costs O(ready), not O(connections). Then the loop copies with
non-blocking ``recv``/``send``.

Level-triggered by default (a socket is reported for as long as it is
ready; one read per report keeps clients fair). ``--edge`` registers each
socket once for input and output with EPOLLET: a change is reported once,
so the loop reads and writes until EAGAIN and never calls ``epoll_ctl``
again; fewer syscalls per request, at the price of draining each socket
before moving on.

Cost: one thread, one fd for the epoll instance; ``epoll_ctl`` only when a
connection starts or stops wanting to write (level-triggered).

Choose it for many connections on Linux in one thread; it is what asyncio,
uvloop and gevent use underneath.
"""

from __future__ import annotations

import select

from . import READ, WRITE, ReadinessModel, Wait


class EpollWait(Wait):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.epoll = select.epoll()
        self.edge = self.options.edge
        self.maxevents = 1024

    def add(self, fd: int, events: int) -> None:
        if self.edge:
            events = READ | WRITE | select.EPOLLET
        self.epoll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if not self.edge:
            self.epoll.modify(fd, events)

    def remove(self, fd: int) -> None:
        self.epoll.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        return self.epoll.poll(-1 if timeout is None else timeout, self.maxevents)

    def close(self) -> None:
        self.epoll.close()


class EpollModel(ReadinessModel):
    name = "epoll"
    summary = "epoll: O(ready) wakeups; level-triggered, or --edge for edge-triggered"
    accepts = frozenset({"edge"})

    @classmethod
    def probe(cls) -> str | None:
        if not hasattr(select, "epoll"):
            return "select.epoll is missing (epoll is Linux-only)"
        try:
            select.epoll().close()
        except OSError as exc:
            return f"epoll_create failed: {exc.strerror}"
        return None

    def new_wait(self) -> Wait:
        return EpollWait(self.options)
