"""The sans-IO core: what the server says, written once and free of sockets.

A *service* turns the bytes a client sent into the bytes to send back. It is a
small object with two methods, ``on_data(bytes) -> bytes`` and
``on_eof() -> bytes``, made fresh for every connection by a *factory* (so a
service may keep per-connection state, such as a partial line).

A :class:`Session` wraps one service for one connection and holds everything an
IO model would otherwise have to write again: the queue of output not yet sent,
the high/low water marks that tell a model when to stop reading from a client
that does not read its replies (and when to start again), and the connection's
lifecycle: the half-close rule (after the client's EOF, send what is pending,
then close) and the stop rule (after the server's stop, send what is pending,
then close, or linger if the client is still sending). A model asks
:meth:`Session.next_action` what to do and does it; it keeps no booleans of
its own about how a connection ends.

Models only move bytes: ``receive_data`` what they read, send what
``data_to_send``/``take_data`` give them, report ``sent``. Nothing here touches
a socket, so it is tested in memory (``tests/test_service.py``), as h11 is.
"""

from __future__ import annotations

import enum
import importlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .costs import burn

if TYPE_CHECKING:
    from .costs import Work

__all__ = [
    "SERVICES",
    "EchoService",
    "Limits",
    "Next",
    "Phase",
    "Service",
    "ServiceFactory",
    "ServiceLoadError",
    "Session",
    "UpperService",
    "load_service",
]


class Service(Protocol):
    """What a pluggable service implements (one instance per connection).

    A service with no state may also name, as the class attribute ``stateless_reply``, a function
    that gives exactly what ``on_data`` gives for every input: the models' hot paths then call it
    in place of ``on_data`` (a C function such as ``bytes.upper`` costs no Python frame; see
    :meth:`Session.direct_reply`). If each of that function's replies is exactly as long as the
    input it answers, the service may also say so with ``reply_keeps_length = True``: the hot paths
    then count one byte out per byte in instead of measuring every reply (see
    :meth:`Session.same_length_reply`)."""

    def on_data(self, data: bytes) -> bytes:
        """Bytes received from the client -> bytes to send back (may be empty)."""
        ...

    def on_eof(self) -> bytes:
        """The client half-closed; return any last bytes to send before closing."""
        ...


ServiceFactory = Callable[[], Service]


class UpperService:
    """The lesson's service: reply with ``data.upper()``.

    ``bytes.upper`` changes only ASCII ``a``-``z``; every other byte passes
    untouched, so the reply does not depend on how reads split the stream.
    """

    __slots__ = ()
    stateless_reply = staticmethod(bytes.upper)  # what on_data does, as a C call
    reply_keeps_length = True  # bytes.upper maps each byte to one byte

    def on_data(self, data: bytes) -> bytes:
        return data.upper()

    def on_eof(self) -> bytes:
        return b""


class EchoService:
    """Reply with exactly what was received."""

    __slots__ = ()
    stateless_reply = bytes  # what on_data does (bytes(b) is b itself), as a C call
    reply_keeps_length = True

    def on_data(self, data: bytes) -> bytes:
        return data

    def on_eof(self) -> bytes:
        return b""


SERVICES: dict[str, ServiceFactory] = {"upper": UpperService, "echo": EchoService}


@dataclass(frozen=True)
class Limits:
    """Output-buffer water marks of a session, in bytes.

    Above ``high`` pending bytes a model stops reading from the client; it
    resumes once the client has drained the queue down to ``low``.
    """

    high: int = 256 * 1024
    low: int = 64 * 1024

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high or self.high <= 0:
            raise ValueError(f"need 0 <= low <= high and high > 0, got low={self.low} high={self.high}")


DEFAULT_LIMITS = Limits()


class Phase(enum.Enum):
    """Where a connection is in its life (see :meth:`Session.next_action`)."""

    OPEN = "open"  # serving: input is answered
    CLOSING = "closing"  # the client's EOF came: send what is pending, then close
    STOPPING = "stopping"  # the server stopped: send what is pending, input is dropped
    LINGERING = "lingering"  # writing is shut down; input is dropped until the client's EOF
    CLOSED = "closed"  # nothing more to do: close


_OPEN = Phase.OPEN


class Next(enum.Enum):
    """What a model does next with a connection, as :meth:`Session.next_action` says."""

    SERVE = "serve"  # carry on: read if ``wants_input``, send what is pending
    CLOSE = "close"  # close the socket now
    SHUT_WRITE = "shut_write"  # shut down writing now, then read and drop input until the client's EOF
    WAIT_EOF = "wait_eof"  # writing is shut: read and drop input until the client's EOF


def _nothing_waiting() -> bool:
    return False


class Session:
    """One connection's state: a service, the output queue, backpressure and the lifecycle.

    Typical use by a readiness loop::

        session.receive_data(data)          # what recv() returned
        view = session.data_to_send()       # send(view) -> n
        session.sent(n)
        if session.reading_paused: ...      # stop watching for reads
        session.next_action(peek)           # SERVE, CLOSE, SHUT_WRITE or WAIT_EOF

    Models whose transport buffers by itself (blocking ``sendall``, asyncio
    transports) use ``take_data()`` instead of ``data_to_send``/``sent``.

    The lifecycle, in one place for every model::

        OPEN --client EOF--> CLOSING --all sent--> CLOSED
        OPEN --stop()------> STOPPING --all sent, client quiet--> CLOSED
                             STOPPING --all sent, client still sending--> LINGERING
                             LINGERING --client EOF--> CLOSED

    Why linger: a close with unread input makes the kernel send RST, and an RST
    can destroy replies the client has not read yet. So a connection stopped by
    the server whose client is still sending shuts down writing after its last
    reply and reads (and drops) input until the client's EOF; an idle one is
    closed at once, so a client that ignores EOF cannot hold the server.
    """

    __slots__ = ("_chunks", "_dropped", "_eof_deferred", "_high", "_jobs", "_low", "_offset", "_paused",
                 "_peer_eof", "_pending", "_queued_in", "_sending", "_service", "_work", "on_ready", "phase")

    def __init__(self, service: Service, limits: Limits = DEFAULT_LIMITS, work: Work | None = None) -> None:
        self._service = service
        self._work = work  # None: replies are made at once (the fast path)
        self._jobs: deque[_Job] = deque()  # received chunks whose reply is not released yet
        self._queued_in = 0  # bytes held in _jobs (they count towards the water marks)
        self._eof_deferred = False  # on_eof() waits for the jobs before it
        # called (from any thread) when a job's pool work completes; the model sets it to wake
        # its loop, and then calls release() from the serving thread
        self.on_ready: Callable[[], None] | None = None
        self._high = limits.high
        self._low = limits.low
        self._chunks: list[bytes] = []
        self._offset = 0  # bytes of _chunks[0] already sent
        self._pending = 0
        self._paused = False
        self.phase = Phase.OPEN
        self._peer_eof = False  # the client's EOF came after the stop
        self._dropped = 0  # input bytes that came after the stop (not served)
        self._sending = False  # the client was sending when the stop came (see stop())

    # -- input ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; the service's reply is queued.

        After the server's stop, input is dropped (and remembered: the client
        is still sending, so the connection will linger)."""
        if self.phase is not _OPEN:  # a module constant: Phase.OPEN costs ~85 ns per read on 3.11
            self.discard_input(len(data))
            return
        if self._work is not None:
            self._defer(data)
            return
        out = self._service.on_data(data)
        if out:
            self._chunks.append(out)
            self._pending += len(out)
            if self._pending > self._high:
                self._paused = True

    def answer(self, data: bytes) -> bytes:
        """``receive_data(data)`` then ``take_data()``, for transports that buffer: the hot path.

        With nothing queued, no request cost and the connection open (the usual case), the reply
        is the service's, handed straight back: no queue, no water-mark arithmetic."""
        if self.phase is _OPEN and self._work is None and not self._chunks:
            return self._service.on_data(data)
        self.receive_data(data)
        return self.take_data()

    def direct_reply(self) -> Callable[[bytes], bytes] | None:
        """The service's own ``on_data``, for a model's hot path; None if requests have a cost.

        Calling it is exactly what :meth:`answer` does while the session is OPEN with nothing
        queued, one Python call (~700 instructions of ~25,000 per request on the asyncio loop)
        cheaper; the service's ``stateless_reply`` if it names one (no Python frame at all). The
        caller must know both conditions hold, as the models' hot paths do (they check the phase,
        and their queue is empty by construction); otherwise use :meth:`answer`."""
        if self._work is not None:
            return None
        service = self._service
        return getattr(service, "stateless_reply", None) or service.on_data

    def same_length_reply(self) -> Callable[[bytes], bytes] | None:
        """:meth:`direct_reply`'s stateless function if the service says each of its replies is as
        long as its input (``reply_keeps_length``); else None.

        A model's hot path then sends ``reply(data)`` without testing it for emptiness (a read is
        never empty) and counts its bytes out as its bytes in: on uvloop, measuring each reply and
        adding it to a counter cost ~700 of ~12,300 user-space instructions per 1 KiB request
        (two int allocations, a ``len`` call and ~10 bytecodes)."""
        service = self._service
        if self._work is not None or not getattr(service, "reply_keeps_length", False):
            return None
        return getattr(service, "stateless_reply", None)

    def hold_unsent(self, reply: bytes, sent: int) -> None:
        """The kernel took only ``sent`` bytes of a reply (from :meth:`answer` or the service): queue the
        rest (it then counts towards the water marks, and goes out through ``data_to_send``)."""
        rest = len(reply) - sent
        if rest <= 0:
            return
        if self._chunks:  # answer() leaves the queue empty; anything else is a model's bug
            raise RuntimeError("hold_unsent() with output already queued")
        self._chunks.append(reply)
        self._offset = sent
        self._pending += rest
        if self._pending + self._queued_in > self._high:
            self._paused = True

    def discard_input(self, n: int) -> None:
        """``n`` bytes came after the stop and were dropped unread (models that can skip the copy)."""
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            raise RuntimeError("data received after EOF")
        self._dropped += n

    def receive_eof(self) -> None:
        """The client half-closed (or reading failed for good)."""
        phase = self.phase
        if phase is Phase.OPEN:
            self.phase = Phase.CLOSING
            self._end_of_input()
        elif phase is Phase.STOPPING:
            self._peer_eof = True
        elif phase is Phase.LINGERING:
            self.phase = Phase.CLOSED

    def stop(self, sending: bool = False) -> None:
        """The server stops: serve no more input; the service's last words are queued.

        Models first answer what the client had sent when the stop came (the drain rule: see
        ``net.read_arrived``); ``sending`` says that there was some. Such a client is likely to be
        still sending, so the connection lingers instead of closing (a close with input arriving
        resets it, destroying replies the client has not read), even if a peek finds nothing at
        the moment the last reply goes out."""
        if self.phase is Phase.OPEN:
            self.phase = Phase.STOPPING
            self._sending = sending
            self._end_of_input()

    def _end_of_input(self) -> None:
        if self._jobs:  # the service's last words come after the replies still being worked on
            self._eof_deferred = True
        else:
            self._queue(self._service.on_eof())

    def _queue(self, out: bytes) -> None:
        if out:
            self._chunks.append(out)
            self._pending += len(out)

    # -- deferred replies (a backend wait, CPU work, a pool) -------------------------------
    def _defer(self, data: bytes) -> None:
        work = self._work
        assert work is not None
        job = _Job(data, time.monotonic() + work.latency)
        if work.iterations:
            if work.executor is None:
                burn(work.iterations)  # in the serving thread: everyone else on it waits
            else:
                job.future = future = work.submit()
                future.add_done_callback(self._job_done)
        self._jobs.append(job)
        self._queued_in += len(data)
        self._update_paused()
        if job.future is None and not work.latency:
            self.release()

    def _job_done(self, future: Future[tuple[int, int, int]]) -> None:
        work = self._work
        if work is not None:
            work.record(future)
        if self.on_ready is not None:
            self.on_ready()

    def release(self, now: float | None = None) -> bool:
        """Queue the replies of the jobs that are ready, in order; True if any was.

        A job is ready once its wait is over (``now`` >= its due time) and its
        pool work, if any, is done; a job waits for the ones before it."""
        jobs = self._jobs
        if not jobs:
            return False
        if now is None:
            now = time.monotonic()
        released = False
        service = self._service
        while jobs:
            job = jobs[0]
            if job.due > now or (job.future is not None and not job.future.done()):
                break
            jobs.popleft()
            self._queued_in -= len(job.data)
            released = True
            self._queue(service.on_data(job.data))
        if not jobs and self._eof_deferred:
            self._eof_deferred = False
            self._queue(service.on_eof())
        if released:
            self._update_paused()
        return released

    @property
    def waiting(self) -> bool:
        """Replies are held back (a backend wait or pool work not over yet)."""
        return bool(self._jobs)

    @property
    def next_due(self) -> float | None:
        """When the first held-back reply is due (``time.monotonic()``), or None if it waits for
        its pool work (``on_ready`` will say) or nothing is held back."""
        jobs = self._jobs
        if not jobs or self.pool_future() is not None:
            return None
        return jobs[0].due

    def pool_future(self) -> Future[tuple[int, int, int]] | None:
        """The first held-back job's pool work while it is not done (for blocking handlers)."""
        jobs = self._jobs
        if jobs and jobs[0].future is not None and not jobs[0].future.done():
            return jobs[0].future
        return None

    def _update_paused(self) -> None:
        held = self._pending + self._queued_in
        if self._paused:
            if held <= self._low:
                self._paused = False
        elif held > self._high:
            self._paused = True

    # -- output --------------------------------------------------------------
    def data_to_send(self) -> bytes | memoryview:
        """Everything pending, as one contiguous buffer (empty if nothing is)."""
        chunks = self._chunks
        if not chunks:
            return b""
        if len(chunks) > 1:
            first = chunks[0][self._offset :] if self._offset else chunks[0]
            chunks[:] = [b"".join([first, *chunks[1:]])]
            self._offset = 0
        if self._offset:
            return memoryview(chunks[0])[self._offset :]
        return chunks[0]

    def sent(self, n: int) -> None:
        """``n`` bytes of what ``data_to_send`` returned went out."""
        if n < 0 or n > self._pending:
            raise ValueError(f"sent({n}) with {self._pending} bytes pending")
        self._pending -= n
        offset = self._offset + n
        chunks = self._chunks
        while chunks and offset >= len(chunks[0]):
            offset -= len(chunks.pop(0))
        self._offset = offset
        if self._paused and self._pending + self._queued_in <= self._low:
            self._paused = False

    def take_data(self) -> bytes:
        """Remove and return everything pending (for transports that buffer)."""
        chunks = self._chunks
        if not chunks:
            return b""
        if len(chunks) == 1 and not self._offset:
            out = chunks[0]
        else:
            out = b"".join([chunks[0][self._offset :], *chunks[1:]])
        self._chunks = []
        self._offset = 0
        self._pending = 0
        self._paused = self._queued_in > self._high
        return out

    # -- the lifecycle -------------------------------------------------------
    def next_action(self, input_waiting: Callable[[], bool] = _nothing_waiting) -> Next:
        """What the model does next; call it after any IO on a connection that is not OPEN.

        ``input_waiting()`` answers "has the client sent bytes we have not read?"
        (a ``MSG_PEEK``); it is asked only when a stopped connection has sent
        its last reply and no input has been dropped yet. A model whose own
        transport still holds output (io_uring sends in flight) asks only once
        that output is out.
        """
        phase = self.phase
        if phase is Phase.OPEN:
            return Next.SERVE
        if phase is Phase.CLOSING:
            if self._pending or self._jobs:
                return Next.SERVE
            self.phase = Phase.CLOSED
            return Next.CLOSE
        if phase is Phase.STOPPING:
            if self._pending or self._jobs:
                return Next.SERVE
            if not self._peer_eof and (self._dropped or self._sending or input_waiting()):
                self.phase = Phase.LINGERING
                return Next.SHUT_WRITE
            self.phase = Phase.CLOSED
            return Next.CLOSE
        if phase is Phase.LINGERING:
            return Next.WAIT_EOF
        return Next.CLOSE

    # -- state ---------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Bytes queued but not yet sent."""
        return self._pending

    @property
    def reading_paused(self) -> bool:
        """True from above the high-water mark until drained to the low one."""
        return self._paused

    @property
    def wants_input(self) -> bool:
        """Should the model read from the client now? (Also after the stop: to drop, not serve.)"""
        phase = self.phase
        if phase is Phase.OPEN:
            return not self._paused
        return phase is Phase.STOPPING or phase is Phase.LINGERING

    @property
    def eof_received(self) -> bool:
        """No more input will be served (the client's EOF, or the server's stop)."""
        return self.phase is not Phase.OPEN

    @property
    def dropped(self) -> int:
        """Input bytes that came after the stop and were not served."""
        return self._dropped

    @property
    def finished(self) -> bool:
        """Nothing left to send and no reason to wait: the model should close now."""
        return self.phase is Phase.CLOSED or (
            self.phase is Phase.CLOSING and not self._pending and not self._jobs)


class _Job:
    """One received chunk whose reply is held back."""

    __slots__ = ("data", "due", "future")

    def __init__(self, data: bytes, due: float) -> None:
        self.data = data
        self.due = due
        self.future: Future[tuple[int, int, int]] | None = None


class ServiceLoadError(Exception):
    """A ``--service`` spec that does not name a usable factory."""


def load_service(spec: str) -> ServiceFactory:
    """Resolve ``upper``, ``echo`` or ``package.module:factory`` to a factory.

    The factory is called once per connection and must return an object with
    ``on_data`` and ``on_eof``; it is called once here to check that.
    """
    if spec in SERVICES:
        return SERVICES[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        known = ", ".join(SERVICES)
        raise ServiceLoadError(
            f"unknown service {spec!r}: use one of {known}, or 'package.module:factory'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServiceLoadError(f"cannot import {module_name!r} for service {spec!r}: {exc}") from exc
    factory = module
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise ServiceLoadError(f"{module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise ServiceLoadError(f"service factory {spec!r} is not callable")
    try:
        probe = factory()
    except Exception as exc:
        raise ServiceLoadError(f"service factory {spec!r} failed when called: {exc!r}") from exc
    missing = [m for m in ("on_data", "on_eof") if not callable(getattr(probe, m, None))]
    if missing:
        raise ServiceLoadError(
            f"service factory {spec!r} returned {type(probe).__name__}, which lacks {', '.join(missing)}"
        )
    return factory
