"""Keep the stop signals for the main thread.

A process-directed signal (SIGTERM from ``kill``, SIGINT from Ctrl-C, the grace
timer's SIGALRM) goes to *any* thread that does not block it. Python runs its
handler in the main thread only, and only once that thread runs Python code
again: if the kernel picks a helper thread while the main thread sits in
``accept()`` or ``epoll_wait()``, nothing interrupts that call and the stop is
lost until the next connection or event arrives. So every thread we start
blocks these signals, and the kernel has only the main thread to give them to.
A new thread inherits its creator's mask, hence: start threads inside
:func:`signals_blocked`.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "signals_blocked"]

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGALRM})


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread meanwhile (threads started here inherit it)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
