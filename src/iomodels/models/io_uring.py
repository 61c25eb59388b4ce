"""io_uring — completion-based asynchronous IO: the kernel waits *and* copies.

The lesson's *asynchronous IO*. Instead of asking "which sockets are ready?"
and then copying, the loop submits operations (accept, recv, send) to a ring
shared with the kernel and later reaps their completions: the data has
already been copied when a recv completes, and a send completes only when
the kernel has taken all of it. The process never blocks in a socket call;
it blocks only in ``ring.wait()`` for the next batch of completions.

* one multishot **accept** on the listener yields every new connection;
* one multishot **recv** per connection, with *provided buffers*: the kernel
  picks a buffer from one shared pool (``create_buf_group``) when data
  arrives, so an idle connection holds no buffer at all: memory at 10k
  connections is the pool, not 10k buffers;
* each reply is one **send-all** (the binding re-submits partial sends). A reply
  to a connection with nothing else with the kernel is sent *unreaped*: its
  success completion is not delivered to Python (only a failure is), and its
  handle tells later whether the kernel has taken it all (``res`` turns
  non-zero). Only while that is so is the next reply sent the same way;
  otherwise replies are counted (bytes and operations, for the water marks)
  and their completions handled. A close that must wait for an unreaped reply
  queues an empty send-all behind it (the binding runs one send-all per socket
  at a time) and waits for that one's completion. One reply in flight
  unreaped is all the water marks miss.

Submissions are batched: new operations are queued while a batch of
completions is handled and go to the kernel in one ``io_uring_enter`` when
the loop waits again. The ring is set up with ``SINGLE_ISSUER |
DEFER_TASKRUN`` where the kernel has them (6.1+): the kernel's completion
work then runs inside that enter, in batches. Errors (resets, EPIPE, ENOBUFS
when the pool is momentarily empty, ECANCELED) arrive as completions like
everything else. Backpressure: above the session's high-water mark of unsent
bytes the connection's recv is cancelled; it is re-armed once sends drain to
the low mark.

Cost: one thread; per connection a socket object, two completion handles
and the session; per request (echo, 1 KiB) one recv completion in Python and
one send SQE whose completion the binding drops, and no readiness step at
all. The two common completions are handled inline in the loop.

Choose it where syscall count matters (many connections, small messages)
and the kernel allows io_uring (some containers and hardened kernels turn it
off, which the probe reports). Binding: ``uring-api`` (pinned pre-release).
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from typing import Any

from ..net import SHORTAGE_ERRNOS, close_quietly, input_waiting, read_arrived, shutdown_quietly
from ..service import Next, Phase, Session
from .base import AcceptPause, IdleSweep, ServerStats, WakeableModel
from .deferred import Deferred

_BUFFER_SIZE = 4096  # one provided buffer: a 1 KiB request fits; larger ones take several
_BUFFER_COUNT = 2048  # the shared pool: 8 MiB, whatever the number of connections
_RING_ENTRIES = 1024
_MULTISHOT_ROOM = 256  # free --max-connections slots below which accepts go one at a time
_WAKE = object()  # user_data of the waker's recv
_ACCEPT = object()  # user_data of the multishot accept
_OPEN = Phase.OPEN


class _Connection:
    __slots__ = ("bytes_in", "bytes_out", "error", "fd", "idle", "measured_in", "paused", "recv", "reply",
                 "seen_in", "sending_bytes", "sending_ops", "session", "sock", "starved_at", "stop_mark",
                 "unreaped")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        # the loop's hot path's; None with a request cost (no hot path), and once finished
        self.reply = session.direct_reply()
        self.recv: Any = None  # the armed multishot recv, or None
        self.paused = False  # its recv was cancelled for backpressure
        # bytes_in when its recv last found the buffer pool empty (-1: never); the same again at
        # the next ENOBUFS means no data came in between (kept off the hot path that way)
        self.starved_at = -1
        # bytes_in when the stop came (-1: not yet); while the session is still open after it, the
        # recv is being cancelled and the drain waits for its last completion
        self.stop_mark = -1
        self.idle = 0  # sweeps of --idle-timeout this connection has been quiet through
        self.seen_in = 0  # bytes_in at the last sweep (input since then: not quiet)
        self.sending_bytes = 0  # replies handed to the kernel, not yet completed
        self.sending_ops = 0
        # the last reply sent without a success completion (module docstring), or None; its
        # ``res`` turns non-zero when the kernel has taken all of it (or failed)
        self.unreaped: Any = None
        self.bytes_in = 0
        self.bytes_out = 0
        # bytes_in whose replies are counted in bytes_out: all of it, except (when each reply is as
        # long as its request) what the hot path sent unreaped, counted as bytes_in - measured_in
        self.measured_in = 0
        self.error = False


def _quiet(conn: _Connection) -> bool:
    """Serving, nothing to send or in flight, no reply held back: the silence --idle-timeout counts."""
    session = conn.session
    return (session.phase is _OPEN and not _sending(conn) and not session.pending
            and not session.waiting and not conn.error)


def _sending(conn: _Connection) -> bool:
    """A reply is still with the kernel (counted, or sent unreaped and not yet complete)."""
    return bool(conn.sending_ops) or (conn.unreaped is not None and not conn.unreaped.res)


def _new_ring(u: Any) -> Any:
    """The ring, with completion work deferred to this thread's waits where the kernel allows it
    (Linux 6.1+): task work then runs in batches inside ``ring.wait``, not as an interrupt of the
    loop's Python code. +8% req/s on the minimal echo anchor here."""
    try:
        return u.Ring(entries=_RING_ENTRIES, cq_entries=_RING_ENTRIES * 8,
                      flags=u.IORING_SETUP_SINGLE_ISSUER | u.IORING_SETUP_DEFER_TASKRUN)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # an older kernel refuses the flags: plain ring below
            raise
    return u.Ring(entries=_RING_ENTRIES, cq_entries=_RING_ENTRIES * 8)


class UringModel(WakeableModel):
    name = "io_uring"
    family = "completion"
    summary = "io_uring: multishot accept/recv with a shared buffer pool, batched submits"

    @classmethod
    def probe(cls) -> str | None:
        try:
            import uring_api
        except ImportError as exc:
            return f"the io_uring binding is missing (pip install 'iomodels[io_uring]'): {exc}"
        try:
            features = uring_api.probe()
        except OSError as exc:
            return f"io_uring_setup failed: {exc.strerror or exc}"
        if not features.get("available"):
            return "the kernel refuses io_uring (kernel.io_uring_disabled, seccomp, or too old)"
        missing = [f for f in ("IORING_ACCEPT_MULTISHOT", "IORING_RECV_MULTISHOT", "IORING_BUF_RING")
                   if not features.get(f)]
        if missing:
            return f"the kernel lacks {', '.join(missing)} (needs Linux 6.0+)"
        return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conns: set[_Connection] = set()
        self._starved: deque[_Connection] = deque()  # recvs that found the buffer pool empty
        self._deferred: Deferred | None = None  # held-back replies, when the request cost has any
        self._measure = True  # False: each reply is as long as its request (see _Connection.measured_in)
        self._pause = AcceptPause()

    # -- the loop --------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> ServerStats:
        import uring_api

        self._u = uring_api
        ring = self._ring = _new_ring(uring_api)
        self._pool = ring.create_buf_group(_BUFFER_SIZE, _BUFFER_COUNT)
        wake_fd = self._waker.reader.fileno()
        wake_buf = bytearray(64)
        ring.prepare_recv(wake_fd, wake_buf, 0, _WAKE)
        self._waker.poke()  # a stop() that came before the waker was watched (harmless otherwise)
        self._listener: socket.socket | None = listener
        self._accept: Any = None
        self._accept_multi = False
        self._max = self.max_connections
        sweep = IdleSweep(self.options.idle_timeout)
        self._arm_accept()
        self._stopping = False
        kind_recv = uring_api.COMPLETION_KIND_RECV_MULTISHOT
        kind_send = uring_api.COMPLETION_KIND_SEND_ALL
        more_flag = uring_api.IORING_CQE_F_MORE
        deferred = self._deferred = Deferred(self._waker.poke) if self.work is not None else None
        # each reply as long as its request: the hot path's unreaped replies are not measured
        measure = not self.replies_keep_length()
        self._measure = measure
        conns = self._conns
        high = self.options.limits.high
        send_all, construct_send_all, prepare = ring.prepare_send_all, ring.construct_send_all, ring.prepare
        try:
            pause = self._pause
            timers = deferred is not None or sweep.enabled  # else no wait has a timeout, but a pause's
            while not (self._stopping and not conns and self._listener is None):
                timeout = None
                if timers or pause.paused:  # (the checks a turn makes for nothing, skipped: ~4 calls)
                    timeout = sweep.bound(pause.bound(deferred.timeout() if deferred is not None else None))
                try:
                    batch = ring.wait(timeout) or ()
                except InterruptedError:  # a signal handler ran (and may have poked the waker)
                    continue
                for c in batch:
                    kind = c.kind
                    if kind == kind_recv:
                        # inlined (~40% of the model's Python time per request, measured): data on a
                        # live multishot recv is _on_recv's res > 0 branch, then _send
                        if c.flags & more_flag:
                            conn = c.user_data
                            res = c.res
                            # None: a request cost (no hot path), or finished (a completion reaped
                            # before it was); loaded, then called: a specialised slot load
                            reply = conn.reply
                            if res > 0 and reply is not None and conn.session.phase is _OPEN:
                                conn.bytes_in += res
                                # OPEN, and its queue is empty (every reply is taken whole); the
                                # copy returns the provided buffer to the pool
                                out = reply(bytes(c.result))
                                if out:
                                    last = conn.unreaped
                                    if not conn.sending_ops and (last is None or last.res):
                                        # nothing with the kernel: send unreaped (module docstring)
                                        h = construct_send_all(conn.fd, out, 0, conn)
                                        h.skip_success = True
                                        prepare(h)
                                        conn.unreaped = h
                                        if measure:
                                            conn.bytes_out += len(out)
                                        continue  # nothing counted, nothing queued: no pressure
                                    conn.measured_in += res  # (its completion counts it)
                                    conn.sending_bytes += len(out)
                                    conn.sending_ops += 1
                                    send_all(conn.fd, out, 0, conn)
                                if conn.sending_bytes > high or conn.session.reading_paused:
                                    self._pressure(conn)
                                continue
                        self._on_recv(c)
                    elif kind == kind_send:
                        conn = c.take_user_data()
                        res = c.res
                        if c.skip_success:  # an unreaped send failed (successes are not delivered)
                            self._on_unreaped_failed(conn)
                            continue
                        if res >= 0 and not conn.paused and conn.session.phase is _OPEN and not conn.error:
                            # inlined _on_sent: nothing to resume, nothing to close
                            conn.sending_ops -= 1
                            conn.sending_bytes -= res
                            conn.bytes_out += res
                            continue
                        self._on_sent(conn, res)
                    else:
                        target = c.user_data
                        if target is _ACCEPT:
                            self._on_accept(c)
                        elif target is _WAKE:
                            self._on_wake(wake_fd, wake_buf)
                        # cancel acknowledgements carry no user data: nothing to do
                if self._starved:
                    self._rearm_starved()
                if pause.paused and pause.due():
                    self._resume_accepting()
                if not timers:
                    continue
                if deferred is not None:
                    for conn in deferred.take_due():
                        if conn in self._conns:
                            self._deliver(conn)
                if sweep.due():
                    for conn in sweep.sweep(tuple(self._conns), _quiet):
                        self.stats.idle_close()
                        self._finish(conn)
        finally:
            for conn in tuple(self._conns):
                self._finish(conn, force=True)
            if self._listener is not None:
                close_quietly(self._listener)
            ring.close()
            self._waker.close()
        return self.stats.snapshot()

    def _on_wake(self, wake_fd: int, wake_buf: bytearray) -> None:
        if self._stop_requested and not self._stopping:
            self._stopping = True
            if self._accept is not None:
                self._ring.prepare_cancel(self._accept)  # its last completion closes the listener
            elif self._listener is not None:  # paused for a shortage: no accept in flight
                self._pause.resume()
                close_quietly(self._listener)
                self._listener = None
            for conn in tuple(self._conns):
                self._stop_conn(conn)
        if self._abort_requested:
            for conn in tuple(self._conns):
                conn.error = True
                self._ring.prepare_shutdown_nowait(conn.fd, socket.SHUT_RDWR)
            self._ring.submit()
        self._ring.prepare_recv(wake_fd, wake_buf, 0, _WAKE)

    def _stop_conn(self, conn: _Connection) -> None:
        """The stop's drain rule: answer what the client sent before the stop, then stop its session.

        An armed multishot recv may still deliver data: it is cancelled first (what it already
        copied still arrives, and is served), and the socket is read directly only after its
        last completion, so nothing is reordered."""
        session = conn.session
        if conn.stop_mark < 0:
            conn.stop_mark = conn.bytes_in
        if session.phase is _OPEN and not conn.error:
            if conn.recv is not None:
                if not conn.paused:  # a recv paused for backpressure is being cancelled already
                    conn.paused = True
                    self._ring.prepare_cancel(conn.recv)
                return

            def on_data(data: bytes) -> None:
                conn.bytes_in += len(data)
                conn.measured_in += len(data)
                session.receive_data(data)
                self._send(conn)

            eof = read_arrived(conn.sock, self.options.read_size, on_data)
            if eof is None:
                conn.error = True
            elif eof:
                session.receive_eof()
                self._send(conn)
        session.stop(sending=conn.bytes_in > conn.stop_mark)
        if session.wants_input and conn.recv is None and not conn.error:
            self._arm_recv(conn)  # keep reading, to drop what the client still sends
        self._maybe_close(conn)

    def _on_accept(self, c: Any) -> None:
        res = c.res
        if res >= 0:
            self.stats.connections += 1
            sock = socket.socket(fileno=res)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, self.new_session())
            self._conns.add(conn)
            if self._deferred is not None:
                self._deferred.watch(conn, conn.session)
            if self._stopping:
                self._stop_conn(conn)
            else:
                self._arm_recv(conn)
                if (self._accept_multi and self._accept is not None and c.flags & self._u.IORING_CQE_F_MORE
                        and self._max - len(self._conns) <= _MULTISHOT_ROOM):
                    self._ring.prepare_cancel(self._accept)  # near --max-connections: one at a time
                    self._accept_multi = False
        elif -res in SHORTAGE_ERRNOS:  # re-armed at once it would fail again: see AcceptPause
            self._pause.pause(OSError(-res, os.strerror(-res)))
            if c.flags & self._u.IORING_CQE_F_MORE:
                self._ring.prepare_cancel(self._accept)
        if not c.flags & self._u.IORING_CQE_F_MORE:  # the multishot accept ended
            c.take_user_data()
            self._accept = None
            if self._listener is not None:
                if self._stopping:
                    close_quietly(self._listener)
                    self._listener = None
                elif not self._pause.paused:
                    self._arm_accept()

    def _arm_accept(self) -> None:
        """Accept again: multishot while there is room, one at a time near --max-connections (a
        multishot accept's completions in flight would pass it), not at all at it."""
        assert self._listener is not None
        room = self._max - len(self._conns)
        if room <= 0:
            self._pause.hold(self._max)  # a closing connection calls _resume_accepting
            return
        self._accept_multi = room > _MULTISHOT_ROOM
        prepare = self._ring.prepare_accept_multishot if self._accept_multi else self._ring.prepare_accept
        self._accept = prepare(self._listener.fileno(), 0, _ACCEPT)

    def _resume_accepting(self) -> None:
        """After a shortage: accept again (a timer ran out, or a connection closed)."""
        if self._stopping or self._listener is None or not self._pause.resume():
            return
        if self._accept is None:
            self._arm_accept()

    def _rearm_starved(self) -> None:
        """Re-arm starved recvs oldest first, no more than the pool can feed at once (fair, and
        no storm of ENOBUFS completions when connections far outnumber buffers)."""
        starved = self._starved
        budget = _BUFFER_COUNT // 2
        while starved and budget:
            conn = starved.popleft()
            if (conn in self._conns and conn.recv is None and not conn.paused and not conn.error
                    and conn.session.phase is _OPEN):
                self._arm_recv(conn)
                budget -= 1

    def _arm_recv(self, conn: _Connection) -> None:
        conn.paused = False
        conn.recv = self._ring.prepare_recv_multishot(conn.fd, self._pool, 0, conn)

    def _stop_reading(self, conn: _Connection) -> None:
        """Stop for good: nothing more of this recv is delivered; its buffers go back."""
        if conn.recv is not None:
            self._ring.prepare_cancel(conn.recv, None, no_deliver_multi=True)
            conn.recv = None

    def _on_recv(self, c: Any) -> None:
        more = c.flags & self._u.IORING_CQE_F_MORE
        conn: _Connection = c.user_data if more else c.take_user_data()
        res = c.res
        session = conn.session
        if conn not in self._conns:
            if res > 0:
                c.result.close()  # a late completion for a finished connection
            return
        if session.phase is not _OPEN:
            self._on_recv_stopped(conn, res, more, c)
            return
        if res > 0:
            conn.bytes_in += res
            conn.measured_in += res
            session.receive_data(bytes(c.result))  # copies out; the buffer returns to the pool
            self._send(conn)
            if self._deferred is not None and session.waiting:
                self._deferred.schedule(conn, session)
        if not more:  # this multishot recv is over
            conn.recv = None
            if conn.stop_mark >= 0:  # cancelled by the stop: now answer what is left, and stop
                if res == 0:
                    session.receive_eof()
                    self._send(conn)
                elif res < 0 and res not in (-errno.ENOBUFS, -errno.ECANCELED):
                    conn.error = True
                self._stop_conn(conn)
                return
            if res == 0:
                session.receive_eof()
                self._send(conn)
            elif res == -errno.ENOBUFS:
                # the pool ran dry: re-arm after this batch, once its buffers are back; re-arming
                # now would fail again at once, a storm of completions when connections >> buffers
                if conn.starved_at == conn.bytes_in:  # re-armed from the queue, no data, and
                    self._starved.appendleft(conn)  # unlucky again: keep its place
                else:
                    conn.starved_at = conn.bytes_in
                    self._starved.append(conn)
            elif res < 0 and res != -errno.ECANCELED:
                conn.error = True  # reset and friends
            elif not conn.paused and session.phase is _OPEN:
                self._arm_recv(conn)  # it drained while the cancel travelled
        self._maybe_close(conn)

    def _on_recv_stopped(self, conn: _Connection, res: int, more: int, c: Any) -> None:
        """After the stop (or the client's EOF): input is dropped, the client's EOF ends a linger."""
        session = conn.session
        if res > 0:
            c.result.close()  # not served: the buffer goes straight back to the pool
            if session.wants_input:
                session.discard_input(res)
        if not more:
            conn.recv = None
            if res == 0 or (res < 0 and res not in (-errno.ENOBUFS, -errno.ECANCELED)):
                session.receive_eof()  # the client's EOF, or it is gone: nothing left to protect
            elif session.wants_input:
                self._arm_recv(conn)
        self._maybe_close(conn)

    def _send(self, conn: _Connection) -> None:
        out = conn.session.take_data()
        if out:
            conn.sending_bytes += len(out)
            conn.sending_ops += 1
            self._ring.prepare_send_all(conn.fd, out, 0, conn)
        if conn.sending_bytes > self.options.limits.high or conn.session.reading_paused:
            self._pressure(conn)

    def _pressure(self, conn: _Connection) -> None:
        """Above the high-water mark: stop reading (data already copied is still delivered)."""
        if not conn.paused and conn.recv is not None:
            conn.paused = True
            self._ring.prepare_cancel(conn.recv)

    def _deliver(self, conn: _Connection) -> None:
        """Held-back replies may be ready (a timer expired, pool work done): release and send."""
        session = conn.session
        session.release()
        self._send(conn)
        self._maybe_resume(conn)
        if self._deferred is not None and session.waiting:
            self._deferred.schedule(conn, session)
        self._maybe_close(conn)

    def _maybe_resume(self, conn: _Connection) -> None:
        if conn.paused and conn.sending_bytes <= self.options.limits.low \
                and not conn.session.reading_paused:
            conn.paused = False
            if conn.recv is None and not conn.error and conn.session.phase is _OPEN:
                self._arm_recv(conn)  # else the cancelled recv's last leg re-arms it

    def _on_unreaped_failed(self, conn: _Connection) -> None:
        conn.error = True
        self._maybe_close(conn)

    def _on_sent(self, conn: _Connection, res: int) -> None:
        conn.sending_ops -= 1
        if res < 0:
            conn.error = True
        else:
            conn.sending_bytes -= res
            conn.bytes_out += res
        self._maybe_resume(conn)
        self._maybe_close(conn)

    def _maybe_close(self, conn: _Connection) -> None:
        """Once no send is in flight, do what the session says: close, or shut down writing and
        linger (read and drop until the client's EOF) when it was stopped while still sending."""
        if conn.sending_ops:
            return
        if conn.error:
            self._finish(conn)
            return
        session = conn.session
        if session.phase is _OPEN:
            return
        if conn.unreaped is not None:
            if not conn.unreaped.res:
                # a reply sent unreaped is still with the kernel: an empty send-all queues behind
                # it (the binding runs one send-all per socket at a time) and its completion,
                # delivered, brings us back here once the socket has taken everything before it
                conn.sending_ops += 1
                self._ring.prepare_send_all(conn.fd, b"", 0, conn)
                return
            conn.unreaped = None  # done: drop the handle (it refers back to conn)
        # no send in flight: the fd is idle, so a plain peek or shutdown is safe
        action = session.next_action(lambda: input_waiting(conn.sock))
        if action is Next.CLOSE:
            self._finish(conn)
        elif action is Next.SHUT_WRITE:
            shutdown_quietly(conn.sock, socket.SHUT_WR)
            if conn.recv is None:
                self._arm_recv(conn)

    def _finish(self, conn: _Connection, force: bool = False) -> None:
        if conn not in self._conns:
            return
        if self._deferred is not None:
            self._deferred.forget(conn)
        if conn.recv is not None:
            self._stop_reading(conn)
        self._conns.discard(conn)
        conn.unreaped = None
        conn.reply = None  # off the hot path
        close_quietly(conn.sock)
        bytes_out = conn.bytes_out
        if not self._measure:  # the replies sent unreaped, each as long as its request
            bytes_out += conn.bytes_in - conn.measured_in
        self.stats.connection_done(conn.bytes_in, bytes_out, conn.error or force)
        if self._pause.paused and len(self._conns) < self._max:  # a descriptor is free: accept now
            self._resume_accepting()
