"""What to send, how much, how fast, and how to check the replies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["EXPECTATIONS", "MessagePool", "Workload", "parse_size", "parse_target"]

EXPECTATIONS = {"upper": bytes.upper, "echo": bytes}


def parse_size(text: str) -> tuple[int, int]:
    """``1024`` -> (1024, 1024); ``64-4096`` -> (64, 4096)."""
    low, sep, high = text.partition("-")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise ValueError(f"size {text!r} is not a number of bytes or a range like 64-4096") from None
    if lo < 1 or hi < lo:
        raise ValueError(f"size {text!r}: need 1 <= min <= max")
    if hi > 64 << 20:
        raise ValueError(f"size {text!r}: at most 64 MiB per message")
    return lo, hi


def parse_target(text: str, default_port: int = 8080) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``[v6]:PORT``."""
    if "://" in text or "/" in text:
        raise ValueError(f"target {text!r}: TARGET is HOST:PORT (raw TCP), not a URL; "
                         "e.g. 127.0.0.1:8080")
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p, text)
    return host or "127.0.0.1", port


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets: ``[::1]:8080``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"target {whole!r}: port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"target {whole!r}: port must be 1-65535")
    return port


@dataclass(frozen=True)
class Workload:
    """Everything that defines a run; a worker process gets its share via :meth:`share`."""

    host: str = "127.0.0.1"
    port: int = 8080
    connections: int = 100
    size_min: int = 1024
    size_max: int = 1024
    duration: float | None = 10.0  # seconds of measurement (after warm-up); None: until `requests`
    requests: int | None = None  # total requests to measure; None: until `duration`
    warmup: float = 0.0
    rate: float | None = None  # requests/s over all connections (open loop); None: closed loop
    expect: str = "upper"
    engine: str = "uvloop"
    procs: int = 1
    connect_rate: float | None = None  # new connections per second; None: all at once
    timeout: float = 10.0  # a reply not complete after this long is a timeout
    seed: int = 1

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.duration is None and self.requests is None:
            raise ValueError("give a duration or a number of requests: a run must be bounded")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive (leave it out for a closed loop)")
        if self.connect_rate is not None and self.connect_rate <= 0:
            raise ValueError("connect rate must be positive")
        if self.expect not in EXPECTATIONS:
            raise ValueError(f"expect must be one of {', '.join(EXPECTATIONS)}")
        if self.procs < 1 or self.procs > self.connections:
            raise ValueError("procs must be between 1 and the number of connections")
        if self.warmup < 0 or self.timeout <= 0:
            raise ValueError("warmup must be >= 0 and timeout > 0")

    @property
    def mode(self) -> str:
        return "open" if self.rate else "closed"

    def share(self, index: int) -> Workload:
        """The part of this workload that worker ``index`` of ``procs`` runs."""
        n = self.procs
        connections = self.connections // n + (index < self.connections % n)
        fraction = connections / self.connections
        requests = None
        if self.requests is not None:
            requests = self.requests // n + (index < self.requests % n)
        return replace(
            self,
            connections=connections,
            requests=requests,
            rate=self.rate * fraction if self.rate else None,
            connect_rate=self.connect_rate * fraction if self.connect_rate else None,
            procs=1,
            seed=self.seed * 1000 + index,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MessagePool:
    """Pre-made random messages and their expected replies, so the hot path only compares."""

    def __init__(self, workload: Workload, count: int = 64) -> None:
        rng = random.Random(workload.seed)
        transform = EXPECTATIONS[workload.expect]
        self.messages: list[bytes] = []
        self.expected: list[bytes] = []
        for _ in range(count if workload.size_min != workload.size_max else 8):
            size = rng.randint(workload.size_min, workload.size_max)
            message = rng.randbytes(size)
            self.messages.append(message)
            self.expected.append(transform(message))
        self.count = len(self.messages)
        # (message, reply, length), made once and shared by every connection's cycle
        self._triples = [(m, e, len(m)) for m, e in zip(self.messages, self.expected, strict=True)]

    def cycle(self, start: int) -> Iterator[tuple[bytes, bytes, int]]:
        """(message, expected reply, length) without end, from message ``start % count`` on.

        The triples are made once and shared by every connection's cycle (each holds only a
        rotated list of references): at 100 connections, one set of 64 tuples stays in cache
        where a set per connection would not."""
        triples = self._triples
        start %= self.count
        return itertools.cycle(triples[start:] + triples[:start])
