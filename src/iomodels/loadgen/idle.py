"""Idle connections held open: the horde a server must carry while it serves the active clients.

Each connection makes one verified round trip (so the server has accepted it
and set up whatever it keeps per connection: a thread, a greenlet, a protocol
object), then sits idle until :meth:`IdleHorde.close`. Connecting is paced in
batches and bounded in time; what could not be opened or was not answered is
counted, never waited for without end.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time

__all__ = ["IdleHorde"]

_BATCH = 256  # connects in flight at once: do not overflow the server's listen backlog in one burst
_PROBE, _REPLY = b"i", b"I"


class IdleHorde:
    """``count`` idle connections to ``host:port`` (loopback), opened by :meth:`open`."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self.sockets: list[socket.socket] = []
        self.answered = 0  # connections whose round trip came back: the server holds them
        self.failed = 0  # refused, reset, closed by the server, or no answer in time

    def open(self, timeout: float = 15.0, stall: float = 3.0) -> int:
        """Open the horde; return how many connections the server answered.

        Gives up ``timeout`` seconds after the start, or ``stall`` seconds after the last
        progress (a server that serves one client at a time answers one and no more)."""
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        selector = selectors.DefaultSelector()
        pending = 0  # connects and round trips in flight
        started = 0
        try:
            while self.answered + self.failed < self.count:
                now = time.monotonic()
                if now > deadline or now - last_progress > stall:
                    break
                while started < self.count and pending < _BATCH:
                    sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
                    sock.setblocking(False)
                    self.sockets.append(sock)
                    started += 1
                    code = sock.connect_ex((self.host, self.port))
                    if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
                        self.failed += 1
                        continue
                    selector.register(sock, selectors.EVENT_WRITE, "connect")
                    pending += 1
                for key, _ in selector.select(0.2):
                    sock = key.fileobj  # type: ignore[assignment]
                    assert isinstance(sock, socket.socket)
                    if key.data == "connect":
                        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            selector.unregister(sock)
                            pending -= 1
                            self.failed += 1
                            continue
                        try:
                            sock.send(_PROBE)
                        except OSError:
                            selector.unregister(sock)
                            pending -= 1
                            self.failed += 1
                            continue
                        selector.modify(sock, selectors.EVENT_READ, "reply")
                    else:
                        try:
                            reply = sock.recv(1)
                        except OSError:
                            reply = b""
                        selector.unregister(sock)
                        pending -= 1
                        if reply == _REPLY:
                            self.answered += 1
                        else:
                            self.failed += 1
                        last_progress = time.monotonic()
        finally:
            selector.close()
        self.failed = self.count - self.answered
        return self.answered

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()

    def __enter__(self) -> IdleHorde:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
