"""The contract every IO model keeps, and the records it reports with.

A model is a class with a name, a family, a one-line summary and a real
availability ``probe()``. An instance serves one listening socket with a
service until ``stop()`` is called, then returns a frozen :class:`ServerStats`.

Stopping is in two steps, both safe to call from a signal handler running in
the serving (main) thread: ``stop()`` stops accepting and lets every
connection finish the replies to what was already read (no more input is
served); ``abort()`` closes what is left at once. ``iomodels serve`` calls
``stop()`` on the first SIGINT/SIGTERM and ``abort()`` after a grace period or
on a second signal.
"""

from __future__ import annotations

import importlib.util
import logging
import resource
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from ..costs import RequestCost, Work
from ..net import Waker, close_quietly, input_waiting
from ..service import DEFAULT_LIMITS, Limits, ServiceFactory, Session, UpperService

__all__ = ["AcceptPause", "IdleSweep", "Model", "ServeOptions", "ServerStats", "StatsCounter",
           "ThrottledLog", "WakeableModel", "missing_module", "model_options"]

NO_COST = RequestCost()
_log = logging.getLogger("iomodels.models")
FD_RESERVE = 32  # descriptors kept for the server's own use below the fd limit (--max-connections)
READ_SIZE = 64 * 1024  # below glibc's mmap threshold: a read never costs an mmap/munmap pair


def _model_option(default: Any, help: str) -> Any:
    """A field of :class:`ServeOptions` that only some models read (they list it in ``accepts``)."""
    return field(default=default, metadata={"model_option": True, "help": help})


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: the service, its limits, and the knobs that some models read.

    Every field is typed. The fields made with ``_model_option`` mean something
    to some models only: each model names the ones it reads in
    :attr:`Model.accepts`, and ``iomodels serve`` refuses such an option for a
    model that does not accept it (the check is built from those declarations).
    """

    service: ServiceFactory = UpperService
    limits: Limits = DEFAULT_LIMITS
    read_size: int = READ_SIZE
    grace: float = 5.0  # seconds a stop may take before abort (prefork passes it to its workers)
    cost: RequestCost = NO_COST  # backend wait, CPU work, offload: every model honours it
    idle_timeout: float = 60.0  # close a connection quiet this long (no input, nothing to send); 0: never
    max_connections: int | None = None  # stop accepting at this many; None: from the fd limit; 0: none
    workers: int | None = _model_option(None, "threads (threadpool) or processes (prefork)")
    inner: str | None = _model_option(None, "the model each prefork worker runs")
    reuse_port: bool = _model_option(False, "a SO_REUSEPORT listener per prefork worker")
    edge: bool = _model_option(False, "edge-triggered epoll")
    poll_interval: float = _model_option(0.0, "sleep between busy-poll sweeps")


def model_options() -> tuple[str, ...]:
    """Names of the :class:`ServeOptions` fields that only some models read."""
    return tuple(f.name for f in fields(ServeOptions) if f.metadata.get("model_option"))


@dataclass(frozen=True)
class ServerStats:
    """What a server did, as one immutable record."""

    connections: int = 0  # accepted
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0  # connections that ended on an error (reset, broken pipe, ...)
    offloaded: int = 0  # jobs whose CPU work ran in the --offload pool
    worker_pids: tuple[int, ...] = ()  # the processes that ran that work
    empty: int = 0  # of `connections`: closed without sending a byte (port probes, health checks)
    workers_died: int = 0  # prefork: workers that ended without their statistics (killed, crashed)
    workers_replaced: int = 0  # prefork: workers started again in their place
    refused: int = 0  # of `connections`: accepted, then closed at once (no room for them: said in the log)
    idle_closed: int = 0  # of `connections`: closed by the server after --idle-timeout of silence

    def __add__(self, other: ServerStats) -> ServerStats:
        return ServerStats(
            self.connections + other.connections,
            self.bytes_in + other.bytes_in,
            self.bytes_out + other.bytes_out,
            self.errors + other.errors,
            self.offloaded + other.offloaded,
            tuple(sorted({*self.worker_pids, *other.worker_pids})),
            self.empty + other.empty,
            self.workers_died + other.workers_died,
            self.workers_replaced + other.workers_replaced,
            self.refused + other.refused,
            self.idle_closed + other.idle_closed,
        )

    def as_dict(self) -> dict[str, object]:
        """The JSON form; the offload, empty and prefork fields only when there is something to say
        (``refused`` and ``idle_closed`` always: what the server turned away is always worth a look)."""
        out: dict[str, object] = asdict(self)
        if not self.offloaded:
            del out["offloaded"], out["worker_pids"]
        else:
            out["worker_pids"] = list(self.worker_pids)
        for key in ("empty", "workers_died", "workers_replaced"):
            if not out[key]:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ServerStats:
        return cls(**{**data, "worker_pids": tuple(data.get("worker_pids", ()))})  # type: ignore[arg-type]


class StatsCounter:
    """Mutable counters behind :class:`ServerStats`.

    Connections report their byte counts once, when they end, so the hot path
    only increments local variables; the lock makes the merge safe for
    threaded models and is uncontended elsewhere.
    """

    __slots__ = ("_lock", "bytes_in", "bytes_out", "connections", "empty", "errors", "idle_closed", "refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.errors = 0
        self.empty = 0
        self.refused = 0
        self.idle_closed = 0

    def connection_done(self, bytes_in: int, bytes_out: int, error: bool) -> None:
        with self._lock:
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out
            self.errors += error
            self.empty += not bytes_in and not error

    def refuse(self) -> None:
        """One connection accepted and closed at once (the caller logs why, rate-limited)."""
        with self._lock:
            self.connections += 1
            self.refused += 1

    def idle_close(self) -> None:
        """One connection closed after --idle-timeout (it reports its bytes with connection_done)."""
        with self._lock:
            self.idle_closed += 1

    def snapshot(self) -> ServerStats:
        with self._lock:
            return ServerStats(self.connections, self.bytes_in, self.bytes_out, self.errors,
                               empty=self.empty, refused=self.refused, idle_closed=self.idle_closed)


class Model(ABC):
    """One IO model serving the service. Subclasses set the class attributes."""

    name: ClassVar[str]
    family: ClassVar[str]  # blocking | process | readiness | completion | asyncio
    summary: ClassVar[str]  # one line for `iomodels models`
    accepts: ClassVar[frozenset[str]] = frozenset()  # model options (ServeOptions fields) it reads
    # False for a model that hands connections to other processes (prefork): they do the work
    owns_connections: ClassVar[bool] = True

    @classmethod
    def probe(cls) -> str | None:
        """``None`` if the model can run here, else the reason it cannot."""
        return None

    def __init__(self, options: ServeOptions | None = None) -> None:
        self.options = options or ServeOptions()
        self.stats = StatsCounter()
        self.work: Work | None = None  # the request cost's calibration and pool, set while serving
        self._refusals = ThrottledLog()

    @property
    def max_connections(self) -> int:
        """How many connections this server holds at most (``--max-connections``); beyond it, new
        clients wait in the kernel's backlog. By default the fd limit, less a reserve for the
        server's own descriptors (listener, waker, pools, logs)."""
        limit = self.options.max_connections
        if limit is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return max(1, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 1 << 30
        return limit or 1 << 30

    def refuse(self, sock: Any, reason: str) -> None:
        """Close a connection just accepted for which there is no room; count it and say why (one
        log line a second at most, with a count)."""
        close_quietly(sock)
        self.stats.refuse()
        self._refusals.log("refusing a connection: %s", reason)

    def new_session(self) -> Session:
        """A session for a new connection, with the service and the request cost."""
        return Session(self.options.service(), self.options.limits, self.work)

    def replies_keep_length(self) -> bool:
        """Whether every session's hot path may count bytes out as bytes in
        (:meth:`Session.same_length_reply`): a question about the service and the request cost,
        the same for every connection of this server."""
        return self.new_session().same_length_reply() is not None

    @abstractmethod
    def serve(self, listener: socket.socket) -> ServerStats:
        """Serve ``listener`` (bound, listening, blocking mode) until stopped."""

    def signal_wakeup_fd(self) -> int | None:
        """A descriptor for ``signal.set_wakeup_fd`` while serving, or None.

        A Python signal handler runs only between bytecodes: a signal that comes just before the
        loop enters its wait (``epoll_wait``, ``select``, ``io_uring_enter``) does not interrupt
        it, and the handler (our stop) would wait for the wait's timeout. With this descriptor the
        C-level handler writes a byte to it at once; a loop that watches its other end wakes."""
        return None

    @abstractmethod
    def stop(self) -> None:
        """Stop accepting; finish replies to what was read; then ``serve`` returns."""

    @abstractmethod
    def abort(self) -> None:
        """Close every connection now (after ``stop``, when the grace period ran out)."""


class WakeableModel(Model):
    """A model whose one loop watches a :class:`Waker`: ``stop``/``abort`` set a flag and poke it.

    The loop must watch ``self._waker.reader`` and, once it does, poke it once
    itself: a ``stop()`` that came before the loop watched the waker is then
    not lost.
    """

    def __init__(self, options: ServeOptions | None = None) -> None:
        super().__init__(options)
        self._waker = Waker()
        self._stop_requested = False
        self._abort_requested = False

    def stop(self) -> None:
        self._stop_requested = True
        self._waker.poke()

    def abort(self) -> None:
        self._abort_requested = True
        self._waker.poke()

    def signal_wakeup_fd(self) -> int | None:
        return self._waker.writer_fileno()


class ThrottledLog:
    """One kind of log line, at most once a second, saying how many times it happened since the
    last one: a storm of the same event (a failing accept, a refusal) must not flood the log."""

    def __init__(self, logger: logging.Logger = _log, level: int = logging.WARNING) -> None:
        self._logger = logger
        self._level = level
        self._count = 0
        self._last = -1e9

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        self._count += 1
        if now - self._last >= 1.0:
            self._logger.log(self._level, message + " (%d times since the last message)", *args,
                             self._count)
            self._last, self._count = now, 0


class AcceptPause:
    """Out of file descriptors: stop watching the listener, say so at most once a second, and
    watch it again after ``RETRY`` seconds or as soon as a connection closes (a descriptor is free).

    A level-triggered listener stays "ready" while accept fails with EMFILE: retrying at once spins
    the loop at 100% and floods the log; sleeping in the loop stalls every client it serves. The
    pending clients wait in the kernel's backlog meanwhile; none is accepted and dropped.
    """

    RETRY = 0.1

    def __init__(self) -> None:
        self.paused = False
        self.resume_at = 0.0
        self._failures = ThrottledLog()
        self._holds = ThrottledLog()

    def pause(self, exc: OSError) -> None:
        self.paused = True
        self.resume_at = time.monotonic() + self.RETRY
        self._failures.log("accept failed (%s): out of file descriptors or memory; pausing accepts "
                           "until a connection closes", exc.strerror)

    def hold(self, limit: int) -> None:
        """At ``--max-connections``: stop accepting until a connection closes (no retry timer)."""
        self.paused = True
        self.resume_at = float("inf")
        self._holds.log("%d connections open (--max-connections): new clients wait in the backlog "
                        "until one closes", limit)

    def bound(self, timeout: float | None) -> float | None:
        """A loop's wait ``timeout``, shortened so that the listener is tried again in time."""
        if not self.paused or self.resume_at == float("inf"):
            return timeout
        retry = max(0.0, self.resume_at - time.monotonic())
        return retry if timeout is None else min(timeout, retry)

    def due(self) -> bool:
        """Paused, and the retry time has come."""
        return self.paused and time.monotonic() >= self.resume_at

    def resume(self) -> bool:
        """Leave the pause; True if there was one (the caller watches the listener again)."""
        was, self.paused = self.paused, False
        return was


class IdleSweep:
    """``--idle-timeout``: a clock hand over the connections, every timeout/4 seconds.

    Each sweep adds one to the ``idle`` counter of every *quiet* connection (the
    model says which: serving, nothing to send, no reply held back) whose input
    count (``bytes_in``) has not moved since the last sweep, and zeroes the
    others; a connection quiet for ``TICKS + 1`` sweeps in a row has been silent
    for more than the timeout (at most a quarter more) and is closed. One timer
    per loop, whatever the number of connections; no timer work per request, and
    nothing on the hot path but the byte count it keeps anyway.
    """

    TICKS = 4

    def __init__(self, timeout: float) -> None:
        self.enabled = timeout > 0
        self.period = timeout / self.TICKS if self.enabled else float("inf")
        self.next_at = time.monotonic() + self.period

    def bound(self, timeout: float | None) -> float | None:
        """A loop's wait ``timeout``, shortened so that the next sweep comes in time."""
        if not self.enabled:
            return timeout
        left = max(0.0, self.next_at - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def due(self) -> bool:
        return self.enabled and time.monotonic() >= self.next_at

    def sweep(self, conns: Iterable[Any], quiet: Callable[[Any], bool]) -> list[Any]:
        """One turn of the hand: the connections (with ``idle``, ``seen_in``, ``bytes_in`` and
        ``sock``) whose silence has outlasted the timeout, for the model to close and count. A
        ``MSG_PEEK`` spares one whose input arrived since the loop last looked."""
        self.next_at = time.monotonic() + self.period
        expired = []
        for conn in conns:
            bytes_in = conn.bytes_in
            if bytes_in == conn.seen_in and quiet(conn):
                conn.idle += 1
                if conn.idle > self.TICKS:
                    if input_waiting(conn.sock):
                        conn.idle = 0
                    else:
                        expired.append(conn)
            else:
                conn.idle = 0
                conn.seen_in = bytes_in
        return expired


def missing_module(module: str, package: str | None = None) -> str | None:
    """A probe's reason when ``module`` cannot be imported here (None when it can)."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {package or module})"
    return None
