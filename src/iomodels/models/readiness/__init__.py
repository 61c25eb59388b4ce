"""The readiness family: one event loop over non-blocking sockets, a pluggable wait.

Every model here keeps all sockets non-blocking and runs the same loop:
wait until some sockets are (probably) ready, then accept, ``recv_into`` one
buffer allocated once per loop, hand the bytes to the connection's session,
``send`` what it queues, and watch for writability only while output is
pending. Backpressure comes from the session's water marks: above the high
mark a connection is no longer watched for reading. Half-close, errors and the
graceful stop are handled here, once.

The models differ only in the :class:`Wait` step, the one OS call that tells
the loop what is ready:

* busy polling (``nonblocking``): no readiness call at all, every socket is
  tried and EAGAIN is the answer most of the time;
* ``select`` / ``poll`` / ``epoll``: IO multiplexing, one call for many sockets;
* SIGIO (``sigio``): the kernel queues a signal per readiness change.

A wait is *level-triggered* (it reports a socket for as long as it is ready:
one ``recv`` per report is enough, and fair) or *edge-triggered* (it reports
a change once: the loop must read and write until EAGAIN, and must remember
a socket it left unread because of backpressure). ``Wait.edge`` says which.

A model is a :class:`ReadinessModel` with one hook, ``new_wait()``; a
:class:`Wait` overrides ``add``, ``modify``, ``remove`` and ``wait`` (and
``refuse``/``close`` where it has a limit or holds a resource), as the
``selectors`` module's selectors do. How a connection ends (half-close,
stop, linger) is the session's rule (:meth:`Session.next_action`).
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Iterable
from select import POLLERR, POLLHUP, POLLIN, POLLOUT

from ...net import SHORTAGE_ERRNOS, close_quietly, input_waiting, read_arrived, shutdown_quietly
from ...service import Next, Phase, Session
from ..base import AcceptPause, IdleSweep, ServeOptions, ServerStats, WakeableModel
from ..deferred import Deferred

__all__ = ["ERROR", "ONCE", "READ", "WRITE", "ReadinessModel", "Wait"]

# `from select import ...`, not `import select`: once the submodule readiness/select.py is imported,
# the package's global name `select` is that submodule (a package's attributes are its globals)
READ = POLLIN  # == EPOLLIN
WRITE = POLLOUT  # == EPOLLOUT
ERROR = POLLERR | POLLHUP  # reported whether asked for or not
# From an edge-triggered wait: this report stands for exactly one readiness change, so a read
# shorter than the buffer took everything it announced (data or a FIN that came later raises a
# report of its own): no read to EAGAIN is needed. Only a wait that counts changes can say it.
ONCE = 1 << 30
_ACCEPT_BATCH = 256  # connections taken per readiness report of the listener (level-triggered)
_OPEN = Phase.OPEN


class Wait(ABC):
    """The step that differs: tell the loop which registered fds are ready for what."""

    edge = False  # True: each readiness change is reported once (read/write until EAGAIN)

    def __init__(self, options: ServeOptions) -> None:
        self.options = options

    @abstractmethod
    def add(self, fd: int, events: int) -> None:
        """Start watching ``fd`` for ``events`` (READ/WRITE bits)."""

    @abstractmethod
    def modify(self, fd: int, events: int) -> None:
        """Change what ``fd`` is watched for (only called when it changes)."""

    @abstractmethod
    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (called before it is closed)."""

    @abstractmethod
    def wait(self, timeout: float | None) -> Iterable[tuple[int, int]]:
        """Block until something may be ready, or ``timeout`` seconds (None: no limit) have passed;
        return ``(fd, events)`` pairs (empty after a timeout)."""

    def refuse(self, fd: int) -> str | None:
        """Why a new connection on ``fd`` cannot be watched (None: it can)."""
        return None

    def close(self) -> None:  # noqa: B027 - most waits hold nothing
        """Release what the wait holds."""


class _Connection:
    __slots__ = ("bytes_in", "bytes_out", "events", "fd", "idle", "reply", "seen_in", "session", "sock")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.reply = session.direct_reply()  # the loop's hot path's (None with a request cost: no hot path)
        self.bytes_in = 0
        self.bytes_out = 0
        self.events = READ
        self.idle = 0  # sweeps of --idle-timeout this connection has been quiet through
        self.seen_in = 0  # bytes_in at the last sweep (input since then: not quiet)


def _quiet(conn: _Connection) -> bool:
    """Serving, nothing to send, no reply held back: the silence --idle-timeout counts."""
    session = conn.session
    return session.phase is _OPEN and not session.pending and not session.waiting


class ReadinessModel(WakeableModel):
    """The loop; a model supplies :meth:`new_wait`."""

    family = "readiness"

    def __init__(self, options: ServeOptions | None = None) -> None:
        super().__init__(options)
        self._conns: dict[int, _Connection] = {}
        self._deferred: Deferred | None = None  # held-back replies, when the request cost has any
        self._pause = AcceptPause()
        self._stopping = False

    @abstractmethod
    def new_wait(self) -> Wait:
        """The wait step this model uses."""

    # -- the loop ----------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> ServerStats:
        listener.setblocking(False)
        waker = self._waker
        wait = self._wait = self.new_wait()
        self._edge = wait.edge
        self._view = memoryview(bytearray(self.options.read_size))
        lfd, wfd = listener.fileno(), waker.reader.fileno()
        wait.add(lfd, READ)
        wait.add(wfd, READ)
        conns = self._conns
        deferred = self._deferred = Deferred(waker.poke) if self.work is not None else None
        pause = self._pause
        sweep = IdleSweep(self.options.idle_timeout)
        self._max = self.max_connections
        self._listener, self._lfd = listener, lfd
        stopping = self._stopping = False
        fast, edge = deferred is None, self._edge  # see the hot path below
        view = self._view
        view_size = len(view)
        if edge:  # connections queued before we watched the listener raised no event
            self._accept(listener)
        waker.poke()  # a stop() that came before the waker was watched (harmless otherwise)
        try:
            timers = deferred is not None or sweep.enabled  # else no wait has a timeout, but a pause's
            while not (stopping and not conns):
                timeout = None
                if timers or pause.paused:  # (the checks a turn makes for nothing, skipped: ~4 calls)
                    timeout = sweep.bound(pause.bound(deferred.timeout() if deferred is not None else None))
                for fd, events in wait.wait(timeout):
                    conn = conns.get(fd)
                    if conn is not None:
                        if fast and conn.events == READ and not events & ERROR:
                            # The hot path, inlined on purpose (a readiness loop that does one
                            # thing should beat asyncio; this saves two calls and ~10 attribute
                            # reads per request): no request cost, the connection only reading
                            # (nothing queued, not paused). Each read's reply goes straight to
                            # send(); the session's queue only if the kernel takes less than all
                            # of it. Level-triggered: one recv per report; edge-triggered: until
                            # EAGAIN. Anything else: _readable/_writable, the general path.
                            if not events & READ:
                                continue  # an edge-triggered write report, nothing to write
                            session = conn.session
                            if session.phase is _OPEN:
                                sock = conn.sock
                                while True:
                                    try:
                                        n = sock.recv_into(view)
                                    except (BlockingIOError, InterruptedError):
                                        break
                                    except OSError:
                                        self._close(conn, error=True)
                                        break
                                    if not n:
                                        session.receive_eof()
                                        self._after_io(conn)
                                        break
                                    conn.bytes_in += n
                                    reply = conn.reply  # (loaded, then called: a specialised slot load)
                                    out = reply(view[:n].tobytes())  # OPEN, nothing queued
                                    if out:
                                        try:
                                            sent = sock.send(out)
                                        except (BlockingIOError, InterruptedError):
                                            sent = 0
                                        except OSError:
                                            self._close(conn, error=True)
                                            break
                                        conn.bytes_out += sent
                                        if sent < len(out):
                                            session.hold_unsent(out, sent)
                                            self._after_io(conn)
                                            if edge:  # no new edge would come: read on, the general way
                                                self._readable(conn)
                                            break
                                    if not edge or (events & ONCE and n < view_size):
                                        break
                                continue
                        if events & (READ | ERROR):
                            self._readable(conn)
                        if events & (WRITE | ERROR) and fd in conns:
                            self._writable(conn)
                    elif fd == lfd and not stopping and not pause.paused:
                        self._accept(listener)
                    elif fd == wfd:
                        waker.drain()
                        if self._stop_requested and not stopping:
                            stopping = self._stopping = True
                            if not pause.resume():  # paused: the listener is out of the wait already
                                wait.remove(lfd)
                            close_quietly(listener)
                            self._stop_all()
                        if self._abort_requested:
                            for conn in tuple(conns.values()):
                                self._close(conn, error=True)
                if pause.paused and pause.due():
                    self._resume_accepting()
                if not timers:
                    continue
                if deferred is not None:
                    for conn in deferred.take_due():
                        if conns.get(conn.fd) is conn:
                            self._deliver(conn)
                if sweep.due():
                    for conn in sweep.sweep(tuple(conns.values()), _quiet):
                        self.stats.idle_close()
                        self._close(conn, error=False)
        finally:
            for conn in tuple(conns.values()):
                self._close(conn, error=True)
            wait.close()
            waker.close()
            close_quietly(listener)
        return self.stats.snapshot()

    def _stop_all(self) -> None:
        """The stop's drain rule: answer what each client sent before the stop, then serve nothing
        more; each session says when its connection closes."""
        conns = self._conns
        for conn in tuple(conns.values()):
            session = conn.session
            before = conn.bytes_in
            if session.phase is _OPEN:
                def on_data(data: bytes, conn: _Connection = conn) -> None:
                    conn.bytes_in += len(data)
                    conn.session.receive_data(data)
                    self._send(conn)

                eof = read_arrived(conn.sock, self.options.read_size, on_data)
                if conns.get(conn.fd) is not conn:  # a send failed: closed already
                    continue
                if eof is None:
                    self._close(conn, error=True)
                    continue
                if eof:
                    session.receive_eof()
            session.stop(sending=conn.bytes_in > before)
            if self._send(conn):
                self._after_io(conn)

    def _accept(self, listener: socket.socket) -> None:
        wait = self._wait
        limit = 1 << 30 if self._edge else _ACCEPT_BATCH
        conns = self._conns
        for _ in range(limit):
            if len(conns) >= self._max:  # --max-connections: the rest wait in the backlog
                if not self._pause.paused:
                    wait.remove(self._lfd)
                self._pause.hold(self._max)
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in SHORTAGE_ERRNOS:  # stop watching the listener; see AcceptPause
                    if not self._pause.paused:
                        wait.remove(self._lfd)
                    self._pause.pause(exc)
                return
            fd = sock.fileno()
            reason = wait.refuse(fd)
            if reason is not None:
                self.refuse(sock, reason)
                continue
            self.stats.connections += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, self.new_session())
            self._conns[fd] = conn
            if self._deferred is not None:
                self._deferred.watch(conn, conn.session)
            wait.add(fd, READ)
            if self._edge:  # data that came before we watched the socket raised no event
                self._readable(conn)

    def _resume_accepting(self) -> None:
        """Watch the listener again after a shortage (a timer, or a connection closed)."""
        if self._stopping or not self._pause.resume():
            return
        self._wait.add(self._lfd, READ)
        self._accept(self._listener)  # edge-triggered waits raise no event for what is queued

    def _readable(self, conn: _Connection) -> None:
        session = conn.session
        if session.phase is not _OPEN:
            if session.wants_input:
                self._drop_input(conn)
            return
        if session.reading_paused:
            return
        view = self._view
        recv_into = conn.sock.recv_into
        while True:
            try:
                n = recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn, error=True)
                return
            if not n:
                session.receive_eof()
                break
            conn.bytes_in += n
            session.receive_data(view[:n].tobytes())
            if not self._send(conn):
                return
            if not self._edge or session.reading_paused:
                break
        self._after_io(conn)

    def _writable(self, conn: _Connection) -> None:
        """Send what is pending; in edge mode, read again if that ended a pause for backpressure."""
        session = conn.session
        was_paused = session.reading_paused
        if not self._send(conn):
            return
        if self._edge and was_paused and not session.reading_paused:
            self._readable(conn)  # its read edge may have come and gone while paused
        else:
            self._after_io(conn)

    def _send(self, conn: _Connection) -> bool:
        """Send what is pending until the kernel takes no more; False if the connection died."""
        session = conn.session
        send = conn.sock.send
        while session.pending:
            data = session.data_to_send()
            try:
                n = send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn, error=True)
                return False
            session.sent(n)
            conn.bytes_out += n
            if n < len(data):
                break
        return True

    def _drop_input(self, conn: _Connection) -> None:
        """After the stop: read and drop input until EAGAIN (the session counts it), or EOF."""
        recv_into = conn.sock.recv_into
        view = self._view
        session = conn.session
        while True:
            try:
                n = recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the client is gone: nothing left to protect
                self._close(conn, error=False)
                return
            if not n:
                session.receive_eof()
                break
            session.discard_input(n)
        self._after_io(conn)

    def _deliver(self, conn: _Connection) -> None:
        """Held-back replies may be ready (a timer expired, pool work done): release and send."""
        conn.session.release()
        self._writable(conn)

    def _after_io(self, conn: _Connection) -> None:
        session = conn.session
        if self._deferred is not None and session.waiting:
            self._deferred.schedule(conn, session)
        if session.phase is _OPEN:  # the hot path: watch for input unless paused, output if pending
            events = 0 if session.reading_paused else READ
        else:
            action = session.next_action(lambda: input_waiting(conn.sock))
            if action is Next.CLOSE:
                self._close(conn, error=False)
                return
            if action is Next.SHUT_WRITE:
                shutdown_quietly(conn.sock, socket.SHUT_WR)
                if conn.events != READ:
                    conn.events = READ
                    self._wait.modify(conn.fd, READ)
                self._drop_input(conn)  # what is there already raises no edge-triggered event
                return
            events = READ if session.wants_input else 0
        if session.pending:
            events |= WRITE
        if events != conn.events:
            conn.events = events
            self._wait.modify(conn.fd, events)

    def _close(self, conn: _Connection, error: bool) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if self._deferred is not None:
            self._deferred.forget(conn)
        self._wait.remove(conn.fd)
        close_quietly(conn.sock)
        self.stats.connection_done(conn.bytes_in, conn.bytes_out, error)
        if self._pause.paused and len(self._conns) < self._max:  # a descriptor is free: try now
            self._resume_accepting()
