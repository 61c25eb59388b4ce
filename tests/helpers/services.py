"""Services that exercise the models' byte accounting (their replies and last words differ)."""

from __future__ import annotations


class UpperThenBye:
    """Upper-case replies, each as long as its read (and says so), then last words at the EOF."""

    __slots__ = ()
    stateless_reply = staticmethod(bytes.upper)
    reply_keeps_length = True

    def on_data(self, data: bytes) -> bytes:
        return data.upper()

    def on_eof(self) -> bytes:
        return b"BYE"


class Bracketed:
    """Stateless replies one byte longer than each read: the hot paths must measure them."""

    __slots__ = ()
    stateless_reply = staticmethod(lambda data: data.upper() + b"|")

    def on_data(self, data: bytes) -> bytes:
        return data.upper() + b"|"

    def on_eof(self) -> bytes:
        return b""
