"""Services and servers that misbehave on purpose, to prove the load generator notices."""

from __future__ import annotations

import socket
import threading


class CorruptEveryNth:
    """Upper-case echo that flips one byte of every 50th reply chunk."""

    def __init__(self, n: int = 50) -> None:
        self.n = n
        self.count = 0

    def on_data(self, data: bytes) -> bytes:
        self.count += 1
        out = data.upper()
        if self.count % self.n == 0:
            out = bytes([out[0] ^ 0x20]) + out[1:]
        return out

    def on_eof(self) -> bytes:
        return b""


class DroppingServer:
    """Answers each connection's first ``keep`` bytes correctly, then closes it mid-reply."""

    def __init__(self, keep: int = 5000) -> None:
        self.keep = keep
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            try:
                while data := conn.recv(65536):
                    reply = data.upper()
                    if sent + len(reply) > self.keep:
                        conn.sendall(reply[: len(reply) // 2])  # half a reply, then gone
                        return
                    conn.sendall(reply)
                    sent += len(reply)
            except OSError:
                return

    def close(self) -> None:
        self.stopping = True
        self.listener.close()


class ExtraBytes:
    """Upper-case echo that adds one byte nobody asked for to every 20th reply chunk."""

    def __init__(self) -> None:
        self.count = 0

    def on_data(self, data: bytes) -> bytes:
        self.count += 1
        return data.upper() + (b"!" if self.count % 20 == 0 else b"")

    def on_eof(self) -> bytes:
        return b""
