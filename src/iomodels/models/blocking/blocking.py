"""blocking — iterative server: one client at a time, in one thread.

The lesson's baseline for *blocking IO*. The only thread blocks in ``accept``,
then in ``recv``/``sendall`` of that one client until it disconnects; every
other client waits in the kernel's listen backlog, connected but unserved.

Cost: one thread, no per-connection memory beyond the kernel's socket
buffers, two syscalls per request. Latency for everyone else is the whole
lifetime of the current client.

Choose it for a strictly sequential protocol or a teaching baseline; never for
concurrent clients.
"""

from __future__ import annotations

from typing import Any

from . import DispatchModel


class BlockingModel(DispatchModel):
    name = "blocking"
    summary = "one client at a time, in the accepting thread (the baseline)"

    def dispatch(self, conn: Any) -> None:
        self.handle(conn)
