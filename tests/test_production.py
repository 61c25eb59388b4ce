"""Servers that hold up in production: the drain rule on stop, idle timeout, connection limits."""

from __future__ import annotations

import selectors
import signal
import socket
import time

import pytest

from iomodels.models import REGISTRY

from .conformance.clients import connect, roundtrip
from .helpers.running import start_or_skip

# the models that serve one client (blocking) or a fixed number (threadpool) at a time: clients
# beyond those wait in the kernel's backlog, never accepted, and a stop loses them by design
_BOUNDED = {"blocking", "threadpool"}


def _read_all(socks: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """Read every socket to its EOF (or error, or ``timeout``) at once; what each one got."""
    got = {sock: bytearray() for sock in socks}
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            try:
                chunk = sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if chunk:
                got[sock] += chunk
            else:
                sel.unregister(sock)
    sel.close()
    return {sock: bytes(data) for sock, data in got.items()}


@pytest.mark.parametrize("model", list(REGISTRY))
def test_a_stop_answers_everything_that_arrived_before_it(model: str) -> None:
    """200 clients each send 64 KiB while the server is stopped (SIGSTOP); then SIGTERM and SIGCONT.
    Every byte was in the server's socket buffers before the stop, so every accepted connection
    gets its whole reply, then EOF (one rule in every family: read until EAGAIN, answer, then stop)."""
    srv = start_or_skip(model)
    count, size = 200, 64 * 1024
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(connect(srv.port))
        if model not in _BOUNDED:
            for sock in socks:  # accepted, and its handler (if any) waiting for input
                assert roundtrip(sock, b"a") == b"A"
        else:
            time.sleep(0.5)
        srv.proc.send_signal(signal.SIGSTOP)
        try:
            message = b"x" * size
            for sock in socks:
                sock.sendall(message)  # fits in the buffers: the server reads none of it yet
            srv.proc.send_signal(signal.SIGTERM)
        finally:
            srv.proc.send_signal(signal.SIGCONT)
        replies = _read_all(socks, timeout=20)
        assert srv.proc.wait(20) == 0
        srv.stop()
    finally:
        for sock in socks:
            sock.close()
        srv.kill()
    answered = sum(reply == b"X" * size for reply in replies.values())
    assert srv.stats is not None
    accepted = srv.stats["connections"]
    if model in _BOUNDED:
        assert 0 < accepted < count
    else:
        assert accepted == count
    assert answered == accepted, f"{accepted - answered} accepted connections lost their replies"
