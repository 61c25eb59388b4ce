"""asyncio — the stdlib event loop (epoll via ``selectors``) running one Protocol.

IO multiplexing with callbacks: the loop blocks in ``epoll_wait`` for all
sockets; when one is readable it ``recv_into``s our buffer and calls the
protocol, which queues the reply on the transport; the transport tries
``send`` at once and only watches for writability if the kernel buffer is
full. No task or coroutine is created per request.

Cost: one thread; per connection a transport and a protocol object (a few
KiB); per request the recv and send syscalls plus several Python-level
callbacks in the loop, which is where the time goes.

Choose it when the rest of your program is asyncio, for many concurrent
connections on one core; choose ``uvloop`` for the same code, faster.
"""

from __future__ import annotations

import asyncio

from . import ProtocolModel


class AsyncioModel(ProtocolModel):
    name = "asyncio"
    summary = "an asyncio Protocol on the stdlib event loop (epoll)"

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()
