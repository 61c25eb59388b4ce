"""Small, strict clients for the conformance suite (real sockets, loopback only)."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading

HOST = "127.0.0.1"
TIMEOUT = 30.0


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def roundtrip(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(message)
    return recv_exactly(sock, len(message))


def send_in_thread(sock: socket.socket, data: bytes) -> threading.Thread:
    """sendall() from a helper thread, so the caller can read at the same time."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # surfaced by the caller through .errors
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _verified_client(port: int, trips: int, max_size: int, seed: int) -> int:
    rng = random.Random(seed)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
    try:
        for _ in range(trips):
            message = rng.randbytes(rng.randint(1, max_size))
            writer.write(message)
            reply = await asyncio.wait_for(reader.readexactly(len(message)), TIMEOUT * 2)
            if reply != message.upper():
                raise AssertionError("reply differs from message.upper()")
    finally:
        writer.close()
    return trips


def many_clients(port: int, connections: int, trips: int, max_size: int) -> int:
    """``connections`` concurrent clients, ``trips`` verified round trips each; total trips."""

    async def main() -> int:
        done = await asyncio.gather(*(_verified_client(port, trips, max_size, seed)
                                      for seed in range(connections)))
        return sum(done)

    return asyncio.run(main())
