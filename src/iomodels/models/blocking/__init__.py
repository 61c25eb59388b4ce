"""The blocking family: one per-connection handler, several ways to run it.

Every model here is the lesson's *blocking IO*: a handler calls ``recv`` and
its thread of control waits in the kernel through both phases (waiting for
data, then copying it). The models differ only in *who* runs the handler for
each accepted connection, the :meth:`DispatchModel.dispatch` step: inline in
the accepting thread (``blocking``), a new thread (``threads``), a pool thread
(``threadpool``), or a greenlet on gevent's hub (``gevent``). The handler
never knows which, as in ``socketserver``: a model is a subclass of
:class:`DispatchModel` that overrides a few hooks (single inheritance, no
mix-ins whose order matters).

The hooks a model overrides:

* ``dispatch(conn)`` (required): arrange for ``self.handle(conn)`` to run;
* ``wait_for_handlers()``: after the accept loop ends, wait for every handler;
* ``wrap_listener(listener)``: the socket to accept on (gevent's cooperative one);
* ``shutdown(sock, how)`` / ``input_waiting(sock)``: the two socket calls that
  differ for gevent's sockets;
* ``sleep`` / ``wait_future(future)``: how this handler waits for time to pass
  (a shortage of file descriptors, ``--latency-ms``) or for ``--offload`` pool work.

Stopping relies on two Linux facts, so no loop ever wakes up just to check a
flag: ``shutdown()`` on a listening socket makes a blocked ``accept()`` fail
with EINVAL, and ``shutdown(SHUT_RD)`` on a connection makes a blocked
``recv()`` return EOF at once, in any thread. A stop *signal* needs one thing
more: its Python handler (our stop) runs only between bytecodes, so the
accepting thread waits in ``select`` on the listener and on the signal wakeup
descriptor (see :meth:`DispatchModel.wait_for_client`), never in a bare
``accept``.
"""

from __future__ import annotations

import errno
import select
import socket
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import Any

from ...net import (
    SHORTAGE_ERRNOS,
    Waker,
    close_quietly,
    input_waiting,
    peer_closed,
    read_arrived,
    shutdown_quietly,
)
from ...service import Next, Phase, Session
from ...sigmask import signals_blocked
from ..base import AcceptPause, IdleSweep, Model, ServerStats

__all__ = ["DispatchModel", "serve_connection"]


# accept() errors that concern one connection or a passing shortage, not the listener (EAGAIN:
# another process sharing the listener, prefork's, took the connection select() announced)
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.EAGAIN}
_HOLD_CHECK = 0.25  # at --max-connections, how often the accepting thread looks for a stop


BUSY = -1  # Waiting.since of a handler that is not blocked in recv


class Waiting:
    """A handler's mark, read by stop() and the idle sweeper: ``since`` is the idle sweep count
    when its handler began to wait in ``recv``, or ``BUSY``. Two slot stores per request where a
    dict of waiting connections took an insert and a delete (~70 ns less per request)."""

    __slots__ = ("conn", "since")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.since = BUSY


def serve_connection(model: DispatchModel, conn: Any) -> None:
    """Serve one connection to the end with blocking calls; report to ``model.stats``.

    ``conn`` is a connected socket (a gevent one works the same way). The
    reply to each read is sent in full before the next read: a client that
    does not read its replies blocks this handler in ``sendall``, which is the
    blocking model's backpressure.

    Stopping: a handler blocked in ``recv`` says so in its :class:`Waiting` mark and is woken
    by ``stop()`` with ``shutdown(SHUT_RD)`` (its recv returns what had arrived,
    then EOF); a busy one sees ``model.stopping`` after its reply is out, answers
    what has arrived since, and stops its session, which then says whether to
    close or to linger (the rule is the session's). ``--idle-timeout``: the
    sweeper shuts down a connection whose handler has sat in ``recv`` too long, and
    its recv returns EOF the same way.
    """
    session = model.new_session()
    read_size = model.options.read_size
    # (conn.recv(...) and conn.sendall(...) are called as methods, not kept as bound methods: a
    # socket's are C functions taking a tuple, and CPython calls those ~60 instructions cheaper
    # through a method call than through a bound-method object)
    mark = model.waiting_mark(conn)
    # with no request cost nothing is held back, and each reply is sent before the next read (the
    # session is OPEN, its queue empty): the service's on_data is the whole answer
    answer = session.direct_reply()
    # and if each reply is as long as its read, it is sent unmeasured: `echoed` bytes in, as many out
    same = session.same_length_reply()
    bytes_in = bytes_out = echoed = 0
    error = False
    try:
        while True:
            mark.since = model.sweeps
            if model.stopping:
                mark.since = BUSY
                bytes_in, bytes_out = _answer_then_stop(model, conn, session, bytes_in, bytes_out)
                break
            data = conn.recv(read_size)
            mark.since = BUSY
            if not data:
                if model.stopping and not peer_closed(conn):  # stop()'s SHUT_RD, not the client's EOF:
                    # what was queued is still readable, and is answered
                    bytes_in, bytes_out = _answer_then_stop(model, conn, session, bytes_in, bytes_out)
                    break
                session.receive_eof()
                break
            if same is not None:
                echoed += len(data)  # (counted as handed over: a failed send ends the connection)
                conn.sendall(same(data))
                continue
            bytes_in += len(data)
            if answer is not None:
                out = answer(data)
            else:
                session.receive_data(data)
                if session.waiting:  # a backend wait or CPU work in a pool: this handler waits for it
                    model.wait_for_replies(session)
                out = session.take_data()
            if out:
                conn.sendall(out)
                bytes_out += len(out)
        out = session.take_data()  # the service's last words, if any
        if out:
            conn.sendall(out)
            bytes_out += len(out)
        action = session.next_action(lambda: model.input_waiting(conn))
        if action is Next.SHUT_WRITE:  # (for CLOSE, the close below sends the FIN: no extra syscall)
            shutdown_quietly(conn, socket.SHUT_WR)
            model.linger(conn, session)
    except OSError:
        error = session.phase is not Phase.LINGERING
    finally:
        model.marks.discard(mark)
        close_quietly(conn)
        model.stats.connection_done(bytes_in + echoed, bytes_out + echoed, error)


def _answer_then_stop(model: DispatchModel, conn: Any, session: Session, bytes_in: int,
                      bytes_out: int) -> tuple[int, int]:
    """The stop's drain rule: answer what the client had sent when the stop came, then stop the
    session (lingering if there was any); returns the byte counts. The client's EOF, if it came,
    is the session's."""
    counts = [bytes_in, bytes_out]

    def on_data(data: bytes) -> None:
        counts[0] += len(data)
        session.receive_data(data)
        if session.waiting:
            model.wait_for_replies(session)
        out = session.take_data()
        if out:
            conn.sendall(out)
            counts[1] += len(out)

    eof = model.read_arrived(conn, model.options.read_size, on_data)
    if eof is None:
        raise ConnectionError("the connection failed while the server stopped")
    if eof:
        session.receive_eof()
    session.stop(sending=counts[0] > bytes_in)
    return counts[0], counts[1]


class DispatchModel(Model):
    """Accept in a loop, hand each connection to :meth:`dispatch`."""

    family = "blocking"
    LINGER_QUIET = 0.1  # seconds without input that end a linger (see linger())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conns: set[Any] = set()
        # one per handler: whether it is blocked in recv, and since which idle sweep
        self.marks: set[Waiting] = set()
        self.sweeps = 0  # turns of the --idle-timeout sweeper so far
        self._expired: set[Any] = set()  # shut down by the sweeper: counted as idle_closed
        self._slots: Any = None  # --max-connections
        self._switch = 0.0  # the GIL switch interval we set (see tune_switch_interval)
        self._listener: Any = None
        self.stopping = False  # read by every handler once per request
        self.aborted = False
        self._pause = AcceptPause()  # the log line at the fd limit: once a second, with a count
        # the signal wakeup descriptor's pair (see wait_for_client), made when serving asks for it;
        # kept open for the model's life: serving restores the previous descriptor only after serve()
        self._wakeup: Waker | None = None

    # -- the steps a model fills in --------------------------------------------------
    def wrap_listener(self, listener: socket.socket) -> Any:
        """The listener to accept on (gevent wraps it in a cooperative socket)."""
        return listener

    @abstractmethod
    def dispatch(self, conn: Any) -> None:
        """Arrange for ``self.handle(conn)`` to run."""

    def wait_for_handlers(self) -> None:
        """After the accept loop ends: wait until every handler has finished."""

    def spawn(self, target: Callable[[], None]) -> None:
        """Run ``target`` beside the accept loop (the idle sweeper): a thread; gevent, a greenlet."""
        thread = threading.Thread(target=target, daemon=True, name="idle-sweeper")
        with signals_blocked():
            thread.start()

    def new_slots(self, count: int) -> Any:
        """A semaphore of ``count`` connection slots (``--max-connections``) for this model's kind
        of concurrency."""
        return threading.Semaphore(count)

    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def shutdown(self, sock: Any, how: int) -> None:
        """Shut down one direction of ``sock`` so that a handler blocked on it wakes up."""
        shutdown_quietly(sock, how)

    def input_waiting(self, sock: Any) -> bool:
        """True if the client has sent bytes not read yet (never blocks)."""
        return input_waiting(sock)

    def read_arrived(self, sock: Any, size: int, on_data: Callable[[bytes], object]) -> bool | None:
        """Read what ``sock``'s client has sent so far without waiting (see :func:`net.read_arrived`)."""
        return read_arrived(sock, size, on_data)

    def signal_wakeup_fd(self) -> int | None:
        if self._wakeup is None:
            self._wakeup = Waker()
        return self._wakeup.writer_fileno()

    def wait_for_client(self, listener: Any) -> bool:
        """Block until ``listener`` may have a connection (True) or a signal came (False).

        A stop signal that comes just before a blocking ``accept()`` enters the kernel trips
        the C-level handler and interrupts nothing: the Python handler (our stop) would wait
        there for the next client (a SIGTERM test of threadpool hung, likely that way, once in a CI run
        on a loaded machine). select() also watches the signal wakeup descriptor, which the C-level
        handler writes to, so it returns either way; the listener is non-blocking, so an accept
        after it never waits. gevent overrides this: its cooperative accept already yields to the
        hub, where a greenlet reads the same descriptor."""
        wakeup = self._wakeup
        readable = select.select([listener] if wakeup is None else [listener, wakeup.reader], [], [])[0]
        if wakeup is not None and wakeup.reader in readable:
            wakeup.drain()
        return listener in readable

    def wait_future(self, future: Future[Any]) -> None:
        """Block this handler until ``future`` is done (its result is the session's business)."""
        futures_wait([future])

    def wait_for_replies(self, session: Session) -> None:
        """Wait out the held-back replies of ``session`` (backend wait, pool work), in order."""
        while session.waiting:
            future = session.pool_future()
            if future is not None:
                self.wait_future(future)
            due = session.next_due
            if due is not None:
                delay = due - time.monotonic()
                if delay > 0:
                    self.sleep(delay)
            session.release()

    # -- shared ----------------------------------------------------------------------
    def waiting_mark(self, conn: Any) -> Waiting:
        """The mark of the handler of ``conn``, known to stop() and the sweeper until it ends."""
        mark = Waiting(conn)
        self.marks.add(mark)
        return mark

    def handle(self, conn: Any) -> None:
        try:
            serve_connection(self, conn)
        finally:
            self._conns.discard(conn)
            if conn in self._expired:
                self._expired.discard(conn)
                self.stats.idle_close()
            self._slots.release()

    def serve(self, listener: socket.socket) -> ServerStats:
        previous = sys.getswitchinterval()
        listener.setblocking(False)  # accepted only once wait_for_client says so (accepted sockets block)
        try:
            return self._serve(listener)
        finally:
            sys.setswitchinterval(previous)

    def tune_switch_interval(self, threads: int) -> None:
        """Set the GIL's switch interval for ``threads`` threads that may wait for it at once.

        Each thread waiting for the GIL wakes once per interval to ask for it. After a mass
        disconnect every handler thread wakes (EOF) and waits: with Python's 5 ms, 2,048 of them woke
        ~400,000 times a second, burned 2.3 ms of CPU per exiting connection and kept a new client
        waiting 1.8 s (median); 10,000 stalled the server for a minute. The interval grows with the
        threads, 25 us each (50 ms at 2,000, 0.25 s at 10,000; 5 ms below 200, 0.5 s at most), so the
        wake-ups stay near 40,000 a second whatever their number. A handler's CPU burst shorter than
        the interval is unaffected (it releases the GIL at its next recv/send); a longer one delays
        the others up to the interval instead of 5 ms. Called on every accept: the number of handler
        threads alive includes those still exiting, so the interval stays up through a storm."""
        target = min(0.5, max(0.005, threads * 25e-6))
        if target != self._switch:
            self._switch = target
            sys.setswitchinterval(target)

    def _serve(self, listener: socket.socket) -> ServerStats:
        self._listener = listener = self.wrap_listener(listener)
        accept = listener.accept
        limit = self.max_connections
        slots = self._slots = self.new_slots(limit)
        if self.options.idle_timeout > 0:
            self.spawn(self._sweep_idle)
        while not self.stopping:
            if not slots.acquire(timeout=_HOLD_CHECK):  # --max-connections: the rest wait in the
                self._pause.hold(limit)                 # backlog; stop() is seen within 0.25 s
                continue
            if not self.wait_for_client(listener) or self.stopping:  # (a signal ran its handler)
                slots.release()
                continue
            try:
                conn, _ = accept()
            except OSError as exc:
                slots.release()
                if self.stopping:
                    break
                if exc.errno in _TRANSIENT_ACCEPT:
                    continue
                if exc.errno in SHORTAGE_ERRNOS:
                    self._shortage(exc)
                    continue
                raise
            self._conns.add(conn)
            if self.stopping:  # accepted while stop() ran: serve what it sent, nothing more
                self.shutdown(conn, socket.SHUT_RD)
            try:
                self.dispatch(conn)
            except RuntimeError as exc:  # no thread for it (RLIMIT_NPROC, memory)
                self._conns.discard(conn)
                slots.release()
                self.refuse(conn, f"no handler for it ({exc})")
                continue
            self.stats.connections += 1
        close_quietly(listener)
        self.wait_for_handlers()
        return self.stats.snapshot()

    def _shortage(self, exc: OSError) -> None:
        # only the accepting thread (greenlet) waits here; the handlers go on serving
        self._pause.pause(exc)
        self.sleep(AcceptPause.RETRY)

    def _sweep_idle(self) -> None:
        """--idle-timeout: every timeout/4 s, shut down the connections whose handler has waited in
        recv through more than four turns (its recv returns EOF; the handler closes and counts)."""
        period = self.options.idle_timeout / IdleSweep.TICKS
        while not self.stopping:
            self.sleep(period)
            self.sweeps += 1
            for mark in self.marks.copy():  # copy(): one C call, safe against handlers
                since, conn = mark.since, mark.conn
                if (since != BUSY and self.sweeps - since > IdleSweep.TICKS and mark.since == since
                        and not self.stopping and not self.input_waiting(conn)):
                    self._expired.add(conn)
                    self.shutdown(conn, socket.SHUT_RDWR)

    def stop(self) -> None:
        self.stopping = True
        if self._listener is not None:
            self.shutdown(self._listener, socket.SHUT_RDWR)
        for mark in self.marks.copy():  # busy handlers see `stopping` once their reply is out
            if mark.since != BUSY:
                self.shutdown(mark.conn, socket.SHUT_RD)

    def linger(self, conn: Any, session: Session) -> None:
        """Writing is shut: read and drop input until the client's EOF, until it has been quiet
        for ``LINGER_QUIET`` seconds, or abort().

        The quiet bound is this family's own: a handler that lingers holds its thread, and a
        pool's queued connections wait for it; a client quiet that long after our FIN is done
        sending (the rule's purpose, not resetting a client that is still sending, is kept).
        A recv woken by stop()'s ``shutdown(SHUT_RD)`` returns EOF whenever nothing is queued,
        even while the client is still sending; so an EOF counts only once the kernel says the
        client closed (its FIN came, ``TCP_INFO``), and the queue is polled every 10 ms until then."""
        recv = conn.recv
        size = self.options.read_size
        conn.settimeout(self.LINGER_QUIET)
        quiet_since = time.monotonic()
        while not self.aborted:
            try:
                data = recv(size)
            except TimeoutError:
                return
            if data:
                session.discard_input(len(data))
                quiet_since = time.monotonic()
            elif peer_closed(conn) or time.monotonic() - quiet_since > self.LINGER_QUIET:
                return
            else:
                self.sleep(0.01)

    def abort(self) -> None:
        self.aborted = True
        for conn in tuple(self._conns):
            self.shutdown(conn, socket.SHUT_RDWR)
