"""The contract every IO model keeps, run against a real server process per model."""

from __future__ import annotations

import os
import random
import select
import socket
import time

import pytest

from iomodels.models import REGISTRY
from iomodels.models.serving import ServerProcess

from ..helpers.running import start_or_skip
from .clients import (
    connect,
    many_clients,
    recv_exactly,
    recv_until_eof,
    reset,
    roundtrip,
    send_in_thread,
)


def test_short_message(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        assert roundtrip(sock, b"hello, World! 123") == b"HELLO, WORLD! 123"


def test_thousand_sequential_round_trips(server: ServerProcess) -> None:
    rng = random.Random(1)
    with connect(server.port) as sock:
        for i in range(1000):
            message = rng.randbytes(rng.randint(1, 2048))
            assert roundtrip(sock, message) == message.upper(), f"round trip {i}"


@pytest.mark.parametrize("read_delay", [0.0, 0.5], ids=["reading", "slow-reader"])
def test_four_mib_in_one_go(server: ServerProcess, read_delay: float) -> None:
    """4 MiB sent at once; the client reads concurrently (or only after a pause,
    so the server has to hold back and resume instead of buffering it all)."""
    message = os.urandom(4 << 20)
    with connect(server.port) as sock:
        sender = send_in_thread(sock, message)
        time.sleep(read_delay)
        reply = recv_exactly(sock, len(message))
        sender.join(30)
        assert not sender.errors  # type: ignore[attr-defined]
        assert reply == message.upper()


def test_two_hundred_concurrent_connections(server: ServerProcess) -> None:
    # blocking serves them one after another; every other model at once
    assert many_clients(server.port, connections=200, trips=50, max_size=4096) == 200 * 50


def test_half_close_gets_full_reply_then_eof(server: ServerProcess) -> None:
    message = os.urandom(300_000)
    with connect(server.port) as sock:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == message.upper()


def test_reset_mid_stream_does_not_disturb_others(server: ServerProcess) -> None:
    # blocking would serve `other` first, forever (and a 2-thread pool the same, soon)
    concurrent = server.model != "blocking"
    other = connect(server.port) if concurrent else None
    victim = connect(server.port)
    victim.sendall(os.urandom(2 << 20))  # unread replies pile up on the server's side
    time.sleep(0.1)
    reset(victim)
    if other is not None:
        with other:
            assert roundtrip(other, b"still here") == b"STILL HERE"
    with connect(server.port) as fresh:
        assert roundtrip(fresh, b"after reset") == b"AFTER RESET"


def test_a_client_that_never_reads_cannot_grow_the_server_without_bound(server: ServerProcess) -> None:
    """Send up to 64 MiB without reading a byte: the server must stop reading
    (water marks, or a blocked sendall) so the sender stalls long before the end."""
    attempt = 64 << 20
    accepted = 0
    chunk = b"z" * (256 << 10)
    sock = connect(server.port)
    sock.setblocking(False)
    try:
        while accepted < attempt:
            _, writable, _ = select.select([], [sock], [], 0.5)
            if not writable:
                break  # stalled: the server has stopped taking our bytes
            try:
                accepted += sock.send(chunk)
            except BlockingIOError:
                continue
    finally:
        reset(sock)
    assert accepted < 40 << 20, f"server took {accepted >> 20} MiB without its replies being read"
    with connect(server.port) as fresh:
        assert roundtrip(fresh, b"next") == b"NEXT"


def test_connect_and_close_without_sending(server: ServerProcess) -> None:
    for _ in range(20):
        connect(server.port).close()
    with connect(server.port) as sock:
        assert roundtrip(sock, b"anyone there?") == b"ANYONE THERE?"


def test_non_ascii_and_binary_pass_through(server: ServerProcess) -> None:
    message = bytes(range(256)) * 64 + "naïve café ünïcode".encode()
    with connect(server.port) as sock:
        reply = roundtrip(sock, message)
    assert reply == message.upper()
    changed = [i for i, (a, b) in enumerate(zip(message, reply, strict=True)) if a != b]
    assert all(ord("a") <= message[i] <= ord("z") for i in changed)


@pytest.mark.parametrize("model", list(REGISTRY))
def test_sigterm_stops_cleanly_with_statistics(model: str) -> None:
    """An idle client is closed, the exit code is 0 and the statistics add up."""
    srv = start_or_skip(model)
    try:
        idle = connect(srv.port)
        assert roundtrip(idle, b"x" * 1000) == b"X" * 1000
        if model == "blocking":  # it serves `idle` until that one leaves
            idle.close()
        with connect(srv.port) as sock:
            sock.sendall(b"abc")
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == b"ABC"
        started = time.monotonic()
        assert srv.stop() == 0, "\n".join(srv.lines)
        assert time.monotonic() - started < 5, "stop waited for the grace period"
        if model != "blocking":
            assert recv_until_eof(idle) == b""  # closed by the server, not reset
            idle.close()
    finally:
        srv.kill()
    assert srv.stats == {"connections": 2, "bytes_in": 1003, "bytes_out": 1003, "errors": 0, "refused": 0,
                         "idle_closed": 0}
