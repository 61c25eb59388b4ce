"""select — IO multiplexing with ``select()``: one call waits on many sockets.

The lesson's *IO multiplexing*: the process blocks in ``select`` until one
of the sockets is ready (waiting phase), then copies with ``recv``/``send``,
which no longer block. One thread serves every client.

Cost: every call passes the full sets of watched fds to the kernel and back,
and the kernel scans all of them, so each wakeup is O(connections) on both
sides; fd sets are fixed bitmaps of FD_SETSIZE (1024) bits, so no fd at or
above 1024 can be watched. Such a connection is refused (closed, logged,
counted as an error) while the others are served.

Choose it for portability with a handful of connections; prefer poll or
epoll.
"""

from __future__ import annotations

import select
from collections.abc import Iterable
from itertools import repeat

from . import READ, WRITE, ReadinessModel, Wait

FD_SETSIZE = 1024  # glibc's fixed size of fd_set


class SelectWait(Wait):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.readers: set[int] = set()
        self.writers: set[int] = set()

    def add(self, fd: int, events: int) -> None:
        (self.readers.add if events & READ else self.readers.discard)(fd)
        (self.writers.add if events & WRITE else self.writers.discard)(fd)

    modify = add

    def remove(self, fd: int) -> None:
        self.readers.discard(fd)
        self.writers.discard(fd)

    def wait(self, timeout: float | None) -> Iterable[tuple[int, int]]:
        readable, writable, _ = select.select(self.readers, self.writers, (), timeout)
        if writable:
            return [(fd, READ) for fd in readable] + [(fd, WRITE) for fd in writable]
        return zip(readable, repeat(READ))  # the usual case: zip reuses its tuple, no list is built

    def refuse(self, fd: int) -> str | None:
        if fd >= FD_SETSIZE:
            return (f"fd {fd} is beyond select()'s FD_SETSIZE ({FD_SETSIZE}); "
                    "use poll or epoll for more connections")
        return None


class SelectModel(ReadinessModel):
    name = "select"
    summary = "select(): one call watches all sockets; at most FD_SETSIZE (1024) fds"

    def new_wait(self) -> Wait:
        return SelectWait(self.options)
