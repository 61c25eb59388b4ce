"""Run one model as a server process: listen, announce, serve, stop on a signal.

The ready line ``listening on HOST:PORT model=M`` is printed (and flushed)
once the socket listens, so scripts can wait for it; connections that arrive
before the model's loop starts wait in the backlog. On the first SIGINT or
SIGTERM the model stops accepting and finishes the replies to what it has
read; after ``grace`` seconds, or on a second signal, it closes what is left.
The last line is ``stats: {...}`` (JSON) with the server's statistics.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from collections.abc import Callable
from typing import TextIO

from .models import Model, ServeOptions, ServerStats, load_model, probe
from .net import make_listener, raise_fd_limit

__all__ = ["READY_PREFIX", "STATS_PREFIX", "ModelUnavailable", "run_server", "serve_until_signalled"]

READY_PREFIX = "listening on "
STATS_PREFIX = "stats: "


class ModelUnavailable(Exception):
    pass


def run_server(
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    options: ServeOptions | None = None,
    *,
    grace: float = 5.0,
    out: TextIO | None = None,
    reuse_port: bool = False,
) -> ServerStats:
    """Serve until SIGINT/SIGTERM; return the statistics (also printed)."""
    out = out or sys.stdout
    reason = probe(model_name)
    if reason is not None:
        raise ModelUnavailable(f"model {model_name!r} is not available here: {reason}")
    raise_fd_limit()
    model = load_model(model_name)(options)
    listener = make_listener(host, port, reuse_port=reuse_port)
    bound_host, bound_port = listener.getsockname()[:2]

    def announce() -> None:
        print(f"{READY_PREFIX}{bound_host}:{bound_port} model={model_name}", file=out, flush=True)

    stats = serve_until_signalled(model, listener, grace, on_ready=announce)
    print(STATS_PREFIX + json.dumps(stats.as_dict()), file=out, flush=True)
    return stats


def serve_until_signalled(
    model: Model,
    listener: socket.socket,
    grace: float = 5.0,
    on_ready: Callable[[], None] | None = None,
    stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> ServerStats:
    """``model.serve(listener)`` with ``stop_signals`` wired to stop, then abort.

    The first signal calls ``model.stop()`` and starts a ``grace``-second
    timer (SIGALRM); the timer or a second signal calls ``model.abort()``.
    The previous handlers are restored afterwards.
    """
    signals_seen = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1 and signum != signal.SIGALRM:
            model.stop()
            signal.setitimer(signal.ITIMER_REAL, grace)
        else:
            model.abort()

    previous = {signum: signal.signal(signum, on_signal) for signum in (*stop_signals, signal.SIGALRM)}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(previous))
    try:
        if on_ready is not None:
            on_ready()
        return model.serve(listener)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
