"""Services that exercise the models' byte accounting (their replies and last words differ)."""

from __future__ import annotations

from iomodels.service import UpperService


class UpperThenBye(UpperService):
    """The upper service (each reply as long as its read, and it says so), then last words at the EOF."""

    __slots__ = ()

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
