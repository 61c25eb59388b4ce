"""The asyncio family: one Protocol, any event loop that speaks asyncio.

asyncio and uvloop are event loops built on IO multiplexing (epoll): the loop
waits for readiness on every socket, reads for the protocol, and calls it
back. The protocol here is written once; the models differ only in the loop
they run it on: a model overrides one hook, :meth:`ProtocolModel.new_loop`.

The protocol is a ``BufferedProtocol``: the loop reads straight into one
buffer allocated once per server (``get_buffer``), so no read allocates a
fresh 64-256 KiB bytes object. Flow control uses the transport's own water
marks, set from the session's limits: above ``high`` buffered output the
transport calls ``pause_writing`` and we stop reading from that client; at
``low`` it calls ``resume_writing`` and we read again.
"""

from __future__ import annotations

import socket
from abc import abstractmethod

# names from asyncio, not `import asyncio`: once the submodule aio/asyncio.py is imported, the
# package's global name `asyncio` is that submodule (a package's attributes are its globals)
from asyncio import AbstractEventLoop, BufferedProtocol, Event, get_running_loop
from typing import Any

from ...net import DEFAULT_BACKLOG
from ..base import Model, ServerStats

__all__ = ["ProtocolModel", "ServiceProtocol"]


class ServiceProtocol(BufferedProtocol):
    """One connection: bytes from the loop into the session, replies to the transport."""

    __slots__ = ("bytes_in", "bytes_out", "draining", "model", "session", "transport")

    def __init__(self, model: ProtocolModel) -> None:
        self.model = model
        self.session = model.options.new_session()
        self.transport: Any = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.draining = False  # stopped by the server: replies go out, input is dropped

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        model = self.model
        model.stats.connections += 1
        model.protocols.add(self)
        limits = model.options.limits
        transport.set_write_buffer_limits(high=limits.high, low=limits.low)
        if model.stopping:
            transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.model.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.draining:
            return  # after the stop: not served, only read so the client's sends can finish
        self.bytes_in += nbytes
        session = self.session
        session.receive_data(self.model.buffer[:nbytes].tobytes())
        out = session.take_data()
        if out:
            self.bytes_out += len(out)
            self.transport.write(out)

    def eof_received(self) -> bool:
        if self.draining:
            return False
        session = self.session
        session.receive_eof()
        out = session.take_data()
        if out:
            self.bytes_out += len(out)
            self.transport.write(out)
        return False  # the transport closes itself once its buffer is flushed

    def pause_writing(self) -> None:
        if not self.draining:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def stop(self) -> None:
        """Serve nothing more: the session's stop rule, on a transport that holds the output.

        This family keeps its own variant of :meth:`Session.next_action`, because the
        transport, not the session, holds the unsent replies (``take_data`` hands them
        over) and decides when ``write_eof`` happens; and neither loop lets a protocol
        peek at the socket. The rule is the same: with replies still buffered (the
        client is busy sending, not reading), a close would leave input unread and the
        kernel would reset the connection, destroying replies; so keep reading and
        dropping input, shut down writing once the replies are out, and close at the
        client's EOF (or abort after the grace). With nothing buffered, close now."""
        transport = self.transport
        self.session.stop()
        out = self.session.take_data()  # the service's last words, if any
        if out and not transport.is_closing():
            self.bytes_out += len(out)
            transport.write(out)
        if transport.is_closing():
            return
        if not transport.get_write_buffer_size():
            transport.close()
            return
        self.draining = True
        transport.resume_reading()
        transport.write_eof()  # after what is buffered

    def connection_lost(self, exc: Exception | None) -> None:
        model = self.model
        model.stats.connection_done(self.bytes_in, self.bytes_out, exc is not None)
        model.protocols.discard(self)
        if model.stopping and not model.protocols and model.all_closed is not None:
            model.all_closed.set()


class ProtocolModel(Model):
    """Serve :class:`ServiceProtocol` on the loop that :meth:`new_loop` makes."""

    family = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = memoryview(bytearray(self.options.read_size))
        self.protocols: set[ServiceProtocol] = set()
        self.stopping = False
        self.all_closed: Event | None = None
        self._loop: AbstractEventLoop | None = None
        self._stop_requested: Event | None = None
        self._stop_early = False  # stop() came before the loop ran

    @abstractmethod
    def new_loop(self) -> AbstractEventLoop:
        """A fresh event loop for this server."""

    def serve(self, listener: socket.socket) -> ServerStats:
        loop = self._loop = self.new_loop()
        try:
            loop.run_until_complete(self._serve(listener))
        finally:
            loop.close()
        return self.stats.snapshot()

    async def _serve(self, listener: socket.socket) -> None:
        self._stop_requested = Event()
        if self._stop_early:
            self._stop_requested.set()
        self.all_closed = Event()
        loop = get_running_loop()
        server = await loop.create_server(
            lambda: ServiceProtocol(self), sock=listener, backlog=DEFAULT_BACKLOG
        )
        await self._stop_requested.wait()
        server.close()
        self.stopping = True
        for protocol in tuple(self.protocols):
            protocol.stop()
        if self.protocols:
            await self.all_closed.wait()
        await server.wait_closed()

    def stop(self) -> None:
        self._stop_early = True
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)

    def abort(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._abort_all)

    def _abort_all(self) -> None:
        for protocol in tuple(self.protocols):
            protocol.transport.abort()
