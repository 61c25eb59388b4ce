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
``recv()`` return EOF at once, in any thread.
"""

from __future__ import annotations

import errno
import socket
import time
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import Any

from ...net import SHORTAGE_ERRNOS, close_quietly, input_waiting, read_arrived, shutdown_quietly
from ...service import Next, Phase, Session
from ..base import AcceptPause, Model, ServerStats

__all__ = ["DispatchModel", "serve_connection"]


# accept() errors that concern one connection or a passing shortage, not the listener
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}


def serve_connection(model: DispatchModel, conn: Any) -> None:
    """Serve one connection to the end with blocking calls; report to ``model.stats``.

    ``conn`` is a connected socket (a gevent one works the same way). The
    reply to each read is sent in full before the next read: a client that
    does not read its replies blocks this handler in ``sendall``, which is the
    blocking model's backpressure.

    Stopping: a handler blocked in ``recv`` is in ``model.idle`` and is woken
    by ``stop()`` with ``shutdown(SHUT_RD)`` (its recv returns EOF); a busy one
    sees ``model.stopping`` after its reply is out and stops its session, which
    then says whether to close or to linger (the rule is the session's).
    """
    session = model.new_session()
    read_size = model.options.read_size
    recv = conn.recv
    sendall = conn.sendall
    idle = model.idle
    bytes_in = bytes_out = 0
    error = False
    try:
        while True:
            idle.add(conn)
            if model.stopping:
                idle.discard(conn)
                bytes_in, bytes_out = _answer_arrived(model, conn, session, bytes_in, bytes_out)
                session.stop()
                break
            data = recv(read_size)
            idle.discard(conn)
            if not data:
                session.receive_eof()
                break
            bytes_in += len(data)
            session.receive_data(data)
            if session.waiting:  # a backend wait or CPU work in a pool: this handler waits for it
                model.wait_for_replies(session)
            out = session.take_data()
            if out:
                sendall(out)
                bytes_out += len(out)
        out = session.take_data()  # the service's last words, if any
        if out:
            sendall(out)
            bytes_out += len(out)
        action = session.next_action(lambda: model.input_waiting(conn))
        shutdown_quietly(conn, socket.SHUT_WR)
        if action is Next.SHUT_WRITE:
            while data := recv(read_size):  # dropped; ends at the client's EOF, or abort()
                session.discard_input(len(data))
    except OSError:
        error = session.phase is not Phase.LINGERING
    finally:
        idle.discard(conn)
        close_quietly(conn)
        model.stats.connection_done(bytes_in, bytes_out, error)


def _answer_arrived(model: DispatchModel, conn: Any, session: Session, bytes_in: int,
                    bytes_out: int) -> tuple[int, int]:
    """The stop's drain rule: answer what the client sent before the stop (read until EAGAIN);
    returns the byte counts. The client's EOF, if it came, is the session's."""
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
    return counts[0], counts[1]


class DispatchModel(Model):
    """Accept in a loop, hand each connection to :meth:`dispatch`."""

    family = "blocking"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conns: set[Any] = set()
        self.idle: set[Any] = set()  # connections whose handler is blocked in recv
        self._listener: Any = None
        self.stopping = False  # read by every handler once per request
        self._pause = AcceptPause()  # the log line at the fd limit: once a second, with a count

    # -- the steps a model fills in --------------------------------------------------
    def wrap_listener(self, listener: socket.socket) -> Any:
        """The listener to accept on (gevent wraps it in a cooperative socket)."""
        return listener

    @abstractmethod
    def dispatch(self, conn: Any) -> None:
        """Arrange for ``self.handle(conn)`` to run."""

    def wait_for_handlers(self) -> None:
        """After the accept loop ends: wait until every handler has finished."""

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
    def handle(self, conn: Any) -> None:
        try:
            serve_connection(self, conn)
        finally:
            self._conns.discard(conn)

    def serve(self, listener: socket.socket) -> ServerStats:
        self._listener = listener = self.wrap_listener(listener)
        accept = listener.accept
        while not self.stopping:
            try:
                conn, _ = accept()
            except OSError as exc:
                if self.stopping:
                    break
                if exc.errno in _TRANSIENT_ACCEPT:
                    continue
                if exc.errno in SHORTAGE_ERRNOS:
                    self._shortage(exc)
                    continue
                raise
            self.stats.connections += 1
            self._conns.add(conn)
            if self.stopping:  # accepted while stop() ran: serve what it sent, nothing more
                self.shutdown(conn, socket.SHUT_RD)
            self.dispatch(conn)
        close_quietly(listener)
        self.wait_for_handlers()
        return self.stats.snapshot()

    def _shortage(self, exc: OSError) -> None:
        # only the accepting thread (greenlet) waits here; the handlers go on serving
        self._pause.pause(exc)
        self.sleep(AcceptPause.RETRY)

    def stop(self) -> None:
        self.stopping = True
        if self._listener is not None:
            self.shutdown(self._listener, socket.SHUT_RDWR)
        for conn in tuple(self.idle):  # busy handlers see `stopping` once their reply is out
            self.shutdown(conn, socket.SHUT_RD)

    def abort(self) -> None:
        for conn in tuple(self._conns):
            self.shutdown(conn, socket.SHUT_RDWR)
