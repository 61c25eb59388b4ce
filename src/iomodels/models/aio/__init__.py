"""The asyncio family: one Protocol, any event loop that speaks asyncio.

asyncio and uvloop are event loops built on IO multiplexing (epoll): the loop
waits for readiness on every socket, reads for the protocol, and calls it
back. The protocol here is written once; the models differ only in the loop
they run it on: a model overrides one hook, :meth:`ProtocolModel.new_loop`.

The protocol is a plain ``Protocol`` (``data_received``): one Python call per
read. (It was a ``BufferedProtocol``, which saves allocating each read's bytes
but costs two Python calls per read, ``get_buffer`` and ``buffer_updated``,
and the reply needed a copy out of the shared buffer anyway: the plain one
measured faster on both loops.) Flow control uses the transport's own water
marks, set from the session's limits: above ``high`` buffered output the
transport calls ``pause_writing`` and we stop reading from that client; at
``low`` it calls ``resume_writing`` and we read again.
"""

from __future__ import annotations

import logging
import socket
import time
from abc import abstractmethod

# names from asyncio, not `import asyncio`: once the submodule aio/asyncio.py is imported, the
# package's global name `asyncio` is that submodule (a package's attributes are its globals)
from asyncio import AbstractEventLoop, Event, Protocol, get_running_loop
from typing import Any

from ...net import SHORTAGE_ERRNOS, read_arrived
from ...service import Phase
from ..base import AcceptPause, IdleSweep, Model, ServerStats, ThrottledLog

_ACCEPT_BATCH = 256  # connections taken per readiness report of the listener
_log = logging.getLogger(__name__)
_OPEN = Phase.OPEN

__all__ = ["ProtocolModel", "ServiceProtocol"]


class ServiceProtocol(Protocol):
    """One connection: bytes from the loop into the session, replies to the transport."""

    __slots__ = ("bytes_in", "bytes_out", "draining", "idle", "model", "reply", "seen_in", "sending_at_stop",
                 "session", "sock", "transport")

    def __init__(self, model: ProtocolModel, sock: socket.socket) -> None:
        self.model = model
        self.sock = sock  # the accepted socket, read directly only by the stop's drain rule
        self.session = model.new_session()
        # this class serves only without a request cost (DeferredProtocol otherwise), and the
        # transport takes every reply at once (nothing is ever queued in the session): the
        # service's on_data is the whole answer
        self.reply = self.session.direct_reply()
        self.transport: Any = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.draining = False  # stopped by the server: replies go out, input is dropped
        self.idle = 0  # sweeps of --idle-timeout this connection has been quiet through
        self.seen_in = 0  # bytes_in at the last sweep (input since then: not quiet)
        self.sending_at_stop = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        model = self.model
        model.stats.connections += 1
        model._adopting.discard(self.sock)  # from being adopted to serving: counted once by room()
        model.protocols.add(self)
        limits = model.options.limits
        transport.set_write_buffer_limits(high=limits.high, low=limits.low)
        if model.stopping:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return  # after the stop: not served, only read so the client's sends can finish
        self.bytes_in += len(data)
        # OPEN here: after the stop `draining` returned above, and after the EOF no data comes
        reply = self.reply  # (loaded, then called: a specialised slot load, not a method lookup)
        out = reply(data)
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
        self.answer_arrived()
        self.session.stop()
        out = self.session.take_data()  # the service's last words, if any
        if out and not transport.is_closing():
            self.bytes_out += len(out)
            transport.write(out)
        if transport.is_closing():
            return
        if not transport.get_write_buffer_size() and not self.sending_at_stop:
            transport.close()
            return
        self.draining = True
        transport.resume_reading()
        transport.write_eof()  # after what is buffered

    def answer_arrived(self) -> None:
        """The stop's drain rule: answer what the client sent before the stop.

        The loop reads only when it next polls; the bytes that arrived before
        the stop may still be in the kernel. Read them now, without waiting
        (the transport has delivered everything it read: nothing is reordered),
        and serve them as if the loop had (:func:`net.read_arrived`). The client's
        EOF, if it came, is left for the transport to see. If anything was read,
        the client was sending when the stop came (``sending_at_stop``): the
        connection will linger rather than close."""
        if self.session.phase is not _OPEN or self.transport.is_closing():
            return
        before = self.bytes_in

        def on_data(data: bytes) -> None:
            if not self.transport.is_closing():
                self.data_received(data)

        read_arrived(self.sock, self.model.options.read_size, on_data)
        self.sending_at_stop = self.bytes_in > before

    def quiet(self) -> bool:
        """Serving, nothing to send, no reply held back: the silence --idle-timeout counts."""
        session = self.session
        return (session.phase is _OPEN and not session.waiting and not self.draining
                and not self.transport.is_closing() and not self.transport.get_write_buffer_size())

    def bytes_sent(self) -> int:
        """The reply bytes handed to the transport."""
        return self.bytes_out

    def connection_lost(self, exc: Exception | None) -> None:
        model = self.model
        model.stats.connection_done(self.bytes_in, self.bytes_sent(), exc is not None)
        model.protocols.discard(self)
        model.slot_freed()
        if model.stopping and not model.protocols and model.all_closed is not None:
            model.all_closed.set()


class SameLengthProtocol(ServiceProtocol):
    """The protocol when every reply is as long as its request (the built-in services: see
    :meth:`Session.same_length_reply`): a read's reply goes to the transport unmeasured, and the
    bytes out are the bytes in plus the service's last words (``bytes_out`` here). Measured under
    callgrind on uvloop: 12.3k -> 11.6k user-space instructions per 1 KiB request (the bare
    Protocol: 11.1k)."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        self.bytes_in += len(data)
        reply = self.reply
        self.transport.write(reply(data))  # (a read is never empty, so neither is its reply)

    def bytes_sent(self) -> int:
        return self.bytes_in + self.bytes_out


class DeferredProtocol(ServiceProtocol):
    """The protocol when replies are held back (``--latency-ms``, ``--cpu-us``, ``--offload``).

    A separate class so that the plain echo path above stays as short as it is.
    A backend wait is a loop timer (``call_later``); pool work comes back
    through the future's done-callback, which hands over to the loop with
    ``call_soon_threadsafe`` (what ``run_in_executor`` does inside); either way
    ``_deliver`` releases the replies that are ready, in order, in the loop's
    thread. Input held in the session counts towards the water marks: above
    them this connection's reading pauses, like a full transport's.
    """

    __slots__ = ("eof_pending", "queue_paused", "stop_pending", "timer", "timer_due", "write_paused")

    def __init__(self, model: ProtocolModel, sock: socket.socket) -> None:
        super().__init__(model, sock)
        self.timer: Any = None
        self.timer_due = 0.0
        self.queue_paused = False  # reading paused: too much input held in the session
        self.write_paused = False  # reading paused: the transport's buffer is above its mark
        self.eof_pending = False  # the client's EOF came while replies were held back
        self.stop_pending = False  # the server's stop came while replies were held back

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        call_soon_threadsafe = self.model.loop.call_soon_threadsafe
        deliver = self._deliver
        self.session.on_ready = lambda: call_soon_threadsafe(deliver)

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        self.bytes_in += len(data)
        self.session.receive_data(data)  # dropped after a stop
        self._flush()

    def eof_received(self) -> bool:
        if self.draining:
            return False
        session = self.session
        session.receive_eof()
        if not session.waiting:
            self._flush()
            return False
        self.eof_pending = True  # keep the transport open until the held-back replies are out
        self._flush()
        return True

    def _deliver(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        self.session.release()
        self._flush()

    def _flush(self) -> None:
        session = self.session
        out = session.take_data()
        if out:
            self.bytes_out += len(out)
            self.transport.write(out)
        if session.waiting:
            due = session.next_due
            if due is not None and (self.timer is None or due < self.timer_due):
                if self.timer is not None:
                    self.timer.cancel()
                self.timer_due = due
                self.timer = self.model.loop.call_later(max(0.0, due - time.monotonic()), self._deliver)
        if session.reading_paused != self.queue_paused and not self.draining:
            self.queue_paused = session.reading_paused
            if self.queue_paused:
                self.transport.pause_reading()
            elif not self.write_paused:
                self.transport.resume_reading()
        if not session.waiting:
            if self.eof_pending:
                self.eof_pending = False
                self.transport.close()  # after what is buffered
            elif self.stop_pending:
                self.stop_pending = False
                super().stop()

    def pause_writing(self) -> None:
        self.write_paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.queue_paused:
            super().resume_writing()

    def stop(self) -> None:
        self.answer_arrived()
        if self.session.waiting and not self.transport.is_closing():
            self.session.stop()  # input is dropped from now on; the held-back replies still go
            self.stop_pending = True
            return
        super().stop()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().connection_lost(exc)


class ProtocolModel(Model):
    """Serve :class:`ServiceProtocol` on the loop that :meth:`new_loop` makes."""

    family = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: set[ServiceProtocol] = set()
        self.stopping = False
        self.all_closed: Event | None = None
        self._loop: AbstractEventLoop | None = None
        self._stop_requested: Event | None = None
        self._stop_early = False  # stop() came before the loop ran
        self._listener: socket.socket | None = None
        self._pause = AcceptPause()
        self._protocol_class: type[ServiceProtocol] = ServiceProtocol
        self._adopting: set[socket.socket] = set()  # accepted, not serving yet (no connection_made)
        self._loop_errors = ThrottledLog(_log, logging.ERROR)
        self._max = 0
        self._sweep: IdleSweep | None = None

    @property
    def loop(self) -> AbstractEventLoop:
        """The running loop (only while serving)."""
        assert self._loop is not None
        return self._loop

    @abstractmethod
    def new_loop(self) -> AbstractEventLoop:
        """A fresh event loop for this server."""

    def serve(self, listener: socket.socket) -> ServerStats:
        loop = self._loop = self.new_loop()
        loop.set_exception_handler(self._loop_exception)
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
        if self.work is not None:
            self._protocol_class = DeferredProtocol
        elif self.replies_keep_length():
            self._protocol_class = SameLengthProtocol
        else:
            self._protocol_class = ServiceProtocol
        # Our own accept loop, not loop.create_server: out of file descriptors, CPython 3.11's
        # accept loop keeps trying (once per backlog slot, 4,096 here) and logs a traceback each
        # time, 50,000 lines a second at 95% CPU; uvloop accepts and closes silently. Here the
        # listener is paused and tried again after a close or 100 ms, with one log line a second.
        listener.setblocking(False)
        self._listener = listener
        self._max = self.max_connections
        loop.add_reader(listener.fileno(), self._accept_ready)
        sweep = self._sweep = IdleSweep(self.options.idle_timeout)
        sweeper = loop.call_later(sweep.period, self._sweep_idle) if sweep.enabled else None
        try:
            await self._stop_requested.wait()
        finally:
            if sweeper is not None:
                sweeper.cancel()
            if not self._pause.paused:
                loop.remove_reader(listener.fileno())
            listener.close()
        self.stopping = True
        for protocol in tuple(self.protocols):
            protocol.stop()
        if self.protocols:
            await self.all_closed.wait()

    def room(self) -> bool:
        """Below --max-connections (counting the connections whose transport is being made)."""
        return len(self.protocols) + len(self._adopting) < self._max

    def slot_freed(self) -> None:
        """A connection, or one being adopted, is gone: a descriptor and a --max-connections slot
        are free, so a listener paused for either is tried again now."""
        if self._pause.paused and self.room():
            self.resume_accepting()

    def _sweep_idle(self) -> None:
        sweep = self._sweep
        assert sweep is not None
        for protocol in sweep.sweep(tuple(self.protocols), ServiceProtocol.quiet):
            self.stats.idle_close()
            protocol.transport.close()
        if not self.stopping:
            self.loop.call_later(sweep.period, self._sweep_idle)

    def _loop_exception(self, loop: AbstractEventLoop, context: dict[str, Any]) -> None:
        """Errors the loop could not hand to anyone: one log line a second at most, with a count, so
        that a storm of the same failure cannot flood the log and stall the loop (CPython logged a
        traceback per failure: 50,000 lines a second at the fd limit)."""
        exc = context.get("exception")
        self._loop_errors.log("event loop: %s%s", context.get("message", "error"),
                              f": {exc!r}" if exc is not None else "")

    def _accept_ready(self) -> None:
        listener, loop = self._listener, self.loop
        for _ in range(_ACCEPT_BATCH):
            if not self.room():  # --max-connections: the rest wait in the backlog
                loop.remove_reader(listener.fileno())
                self._pause.hold(self._max)
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in SHORTAGE_ERRNOS:
                    self._pause_accepting(exc)
                return  # a failure of one connection (ECONNABORTED...): the next event retries
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._adopting.add(sock)
            loop.create_task(self._adopt(sock))

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: self._protocol_class(self, sock), sock)
        except OSError as exc:  # out of resources for the transport, or the client is gone already
            self.refuse(sock, f"no transport for it ({exc.strerror or exc})")
        finally:
            if sock in self._adopting:  # it never served (connection_made takes it out)
                self._adopting.discard(sock)
                self.slot_freed()

    def _pause_accepting(self, exc: OSError) -> None:
        loop = self.loop
        loop.remove_reader(self._listener.fileno())
        self._pause.pause(exc)
        loop.call_later(AcceptPause.RETRY, self.resume_accepting)

    def resume_accepting(self) -> None:
        """Watch the listener again (after a shortage of file descriptors, or at --max-connections)."""
        if self._listener.fileno() >= 0 and self._pause.resume():  # closed at the stop: -1
            self.loop.add_reader(self._listener.fileno(), self._accept_ready)

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
