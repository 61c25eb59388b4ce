"""uvloop — the same asyncio Protocol on uvloop, a loop written in Cython over libuv.

IO multiplexing with callbacks, exactly as the ``asyncio`` model: libuv
blocks in ``epoll_wait``, reads into our buffer and calls the protocol. The
protocol and everything above it are the same code; only the loop differs,
and it runs its own machinery (readiness, buffering, timers) in C.

Cost: one thread; per connection a libuv handle plus the protocol object;
per request the recv/send syscalls and one Python callback, with far less
interpreter work than the stdlib loop.

Choose it whenever you would choose asyncio and can add a dependency.
"""

from __future__ import annotations

import asyncio

from ..base import missing_module
from . import ProtocolModel


class UvloopModel(ProtocolModel):
    name = "uvloop"
    summary = "the same Protocol on uvloop (libuv, in Cython)"

    @classmethod
    def probe(cls) -> str | None:
        reason = missing_module("uvloop")
        if reason is not None:
            return reason
        import uvloop

        uvloop.new_event_loop().close()
        return None

    def new_loop(self) -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()
