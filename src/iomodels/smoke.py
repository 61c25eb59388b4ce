"""A short verified end-to-end run of every model (the quick default of ``make run``).

Each model is served in its own process and driven by ``connections``
concurrent asyncio clients, each doing ``requests`` round trips of ``size``
random bytes; every reply is compared with the service's transform.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .models import probe
from .procs import ServerProcess, ServerStartError

__all__ = ["SmokeResult", "drive", "run_smoke"]


@dataclass(frozen=True)
class SmokeResult:
    requests: int
    mismatches: int
    failures: int  # connections that broke (reset, EOF, timeout)
    elapsed: float


async def _client(host: str, port: int, requests: int, size: int, timeout: float) -> tuple[int, int]:
    """One connection's round trips; returns (ok, mismatches). Raises on a broken connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    ok = bad = 0
    try:
        for _ in range(requests):
            message = os.urandom(size)
            writer.write(message)
            reply = await asyncio.wait_for(reader.readexactly(size), timeout)
            if reply == message.upper():
                ok += 1
            else:
                bad += 1
    finally:
        writer.close()
    return ok, bad


async def _drive(host: str, port: int, connections: int, requests: int, size: int,
                 timeout: float) -> SmokeResult:
    start = time.perf_counter()
    outcomes = await asyncio.gather(
        *(_client(host, port, requests, size, timeout) for _ in range(connections)),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - start
    good = [o for o in outcomes if isinstance(o, tuple)]
    return SmokeResult(sum(o[0] for o in good), sum(o[1] for o in good),
                       len(outcomes) - len(good), elapsed)


def drive(host: str, port: int, connections: int, requests: int, size: int,
          timeout: float = 30.0) -> SmokeResult:
    """Run the verified closed-loop clients against HOST:PORT and count the outcome."""
    return asyncio.run(_drive(host, port, connections, requests, size, timeout))


def run_smoke(models: list[str], connections: int, requests: int, size: int,
              echo: Callable[[str], None] = print) -> int:
    """One line per model; returns how many models failed."""
    failures = 0
    for name in models:
        reason = probe(name)
        if reason is not None:
            echo(f"{name:<12} skipped: {reason}")
            continue
        try:
            with ServerProcess(name) as server:
                result = drive(server.host, server.port, connections, requests, size)
        except ServerStartError as exc:
            failures += 1
            echo(f"{name:<12} FAILED to start: {exc}")
            continue
        verdict = "ok" if not result.mismatches and not result.failures else "FAILED"
        failures += verdict != "ok"
        rate = result.requests / result.elapsed if result.elapsed else 0.0
        echo(f"{name:<12} {verdict:<6} {connections} conns x {requests} round trips of {size} B: "
             f"{result.requests} verified, {result.mismatches} wrong, {result.failures} broken, "
             f"{rate:,.0f} req/s")
    return failures
