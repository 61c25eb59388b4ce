"""Socket plumbing shared by every model: listeners, limits, quiet closing."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import resource
import socket
import struct
import termios
from collections.abc import Callable

__all__ = ["SHORTAGE_ERRNOS", "ListenError", "Waker", "close_quietly", "input_waiting", "make_listener",
           "peer_closed", "raise_fd_limit", "read_arrived", "shutdown_quietly"]

DEFAULT_BACKLOG = 4096
# accept() errors that mean "out of file descriptors or memory for now", not a broken listener
SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ListenError(Exception):
    """The listening socket could not be set up; the message says what to do."""


def make_listener(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    backlog: int = DEFAULT_BACKLOG,
    reuse_port: bool = False,
) -> socket.socket:
    """A bound, listening TCP socket (IPv4 or IPv6 from ``host``), blocking mode.

    ``port=0`` lets the kernel pick a free port; read it back with
    ``getsockname()``.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, _, proto, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is already in use: stop the process that holds it, "
                "or pick another port with --port (0 picks a free one)"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ListenError(
                f"not allowed to listen on {host}:{port}: use a port above 1023"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(f"{host} is not an address of this machine") from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def shutdown_quietly(sock: socket.socket, how: int) -> None:
    """``sock.shutdown(how)``, ignoring a socket that is already gone."""
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class Waker:
    """A socketpair that wakes a loop from a signal handler or another thread.

    ``poke()`` is one non-blocking ``send`` (safe in a signal handler); the
    loop watches ``reader`` and calls ``drain()`` when it is readable.
    """

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        self._open = True

    def poke(self) -> None:
        if self._open:
            with contextlib.suppress(OSError):  # full: already poked; closed: already stopped
                self._writer.send(b"\0")

    def writer_fileno(self) -> int:
        """The writing end, for ``signal.set_wakeup_fd``: the C-level signal handler pokes it."""
        return self._writer.fileno()

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.reader.recv(4096):
                pass

    def close(self) -> None:
        self._open = False
        close_quietly(self.reader)
        close_quietly(self._writer)


def input_waiting(sock: socket.socket) -> bool:
    """True if the peer has sent bytes not read yet (never blocks; False on any error)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


def read_arrived(sock: socket.socket, size: int, on_data: Callable[[bytes], object]) -> bool | None:
    """The stop's drain rule: read what the client had sent when the stop came, without waiting.

    Reads the bytes queued in the socket's receive buffer now (``FIONREAD``),
    no more: a client that keeps sending cannot keep the stop going. Calls
    ``on_data`` for each chunk. Returns True if the client's EOF came (nothing
    was queued and the peer had closed), False otherwise, None if the socket
    failed (reset...). Works on a blocking socket too (``MSG_DONTWAIT``); a
    model whose socket object waits on EAGAIN (gevent's) passes a plain duplicate.
    """
    try:
        budget = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return None
    recv = sock.recv
    while True:
        try:
            data = recv(min(size, budget) if budget > 0 else size, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return None
        if not data:
            return True
        on_data(data)
        budget -= len(data)
        if budget <= 0:
            return False


# TCP states (linux/tcp_states.h) in which the peer's FIN has arrived
_PEER_CLOSED_STATES = frozenset({6, 7, 8, 9, 11})  # TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING


def peer_closed(sock: socket.socket) -> bool:
    """True if the peer has closed its side (its FIN came) or the connection is gone; unlike a recv
    returning b"", this holds after our own ``shutdown(SHUT_RD)`` too. Reads ``TCP_INFO``."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state in _PEER_CLOSED_STATES
