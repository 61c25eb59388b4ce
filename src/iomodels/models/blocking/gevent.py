"""gevent — a greenlet per connection on gevent's hub: the lesson's coroutine server.

Written as *blocking IO* (the same handler as ``blocking`` and ``threads``),
run as IO multiplexing: each connection is a greenlet, and gevent's
cooperative sockets turn a ``recv`` that would block into a switch to the hub,
which waits for readiness on all sockets at once (libev/libuv over epoll) and
switches back to the greenlet whose socket is ready. One OS thread serves
every client; nothing is monkey-patched, the sockets are gevent's own.

Cost: one thread; a greenlet per connection (a few KiB of heap, its stack
copied in and out on switch); each wait is a watcher start/stop plus a switch,
on top of the recv/send syscalls.

Choose it to run straightforward blocking-style code for many concurrent,
mostly idle connections without threads; a CPU-bound handler stalls everyone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..base import missing_module
from . import DispatchModel


class GeventModel(DispatchModel):
    name = "gevent"
    summary = "a greenlet per connection on gevent's hub (one thread)"

    @classmethod
    def probe(cls) -> str | None:
        return missing_module("gevent", "'iomodels[gevent]'")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import gevent
        import gevent.event
        import gevent.pool
        import gevent.socket

        self._gevent = gevent
        self._gsocket = gevent.socket
        self._group = gevent.pool.Group()
        self.sleep = gevent.sleep

    def wrap_listener(self, listener: socket.socket) -> Any:
        return self._gsocket.socket(fileno=listener.detach())

    def wait_for_client(self, listener: Any) -> bool:
        return True  # the cooperative accept yields to the hub, which serve() wakes on a signal

    def shutdown(self, sock: Any, how: int) -> None:
        # gevent's own shutdown() cancels the greenlet waiting on the socket with
        # an error; shutting down a duplicate of the descriptor instead makes the
        # socket readable, so the waiting recv() returns EOF as on a plain socket.
        try:
            twin = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return
        with twin:
            super().shutdown(twin, how)

    def serve(self, listener: socket.socket) -> Any:
        # A Python signal handler runs only when the interpreter does; while gevent's hub sits
        # in epoll_wait, libev retries after EINTR and nothing runs it. The signal wakeup
        # descriptor (signal_wakeup_fd, the family's) gets a byte from the C-level handler; a
        # greenlet reading its other end wakes the hub, and the pending handler runs.
        watcher = None
        if self._wakeup is not None:
            reader = self._gsocket.socket(fileno=os.dup(self._wakeup.reader.fileno()))
            watcher = self._gevent.spawn(self._drain_wakeups, reader)
        try:
            return super().serve(listener)
        finally:
            if watcher is not None:
                watcher.kill()

    @staticmethod
    def _drain_wakeups(reader: Any) -> None:
        with reader:
            while reader.recv(64):
                pass

    def input_waiting(self, sock: Any) -> bool:
        # gevent's recv would wait for readability on EAGAIN: peek on a plain duplicate instead
        try:
            twin = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return False
        with twin:
            return super().input_waiting(twin)

    def read_arrived(self, sock: Any, size: int, on_data: Callable[[bytes], object]) -> bool | None:
        try:  # gevent's recv would wait on EAGAIN: read a plain duplicate
            twin = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return None
        with twin:
            return super().read_arrived(twin, size, on_data)

    def wait_future(self, future: Future[Any]) -> None:
        # the future completes on a pool thread: an async watcher (libev's ev_async, safe to
        # send from any thread) wakes the hub, which then switches back to this greenlet
        hub = self._gevent.get_hub()
        watcher = hub.loop.async_()
        done = self._gevent.event.Event()
        watcher.start(done.set)
        try:
            future.add_done_callback(lambda _: watcher.send())
            done.wait()
        finally:
            watcher.close()

    def spawn(self, target: Callable[[], None]) -> None:
        self._gevent.spawn(target)

    def new_slots(self, count: int) -> Any:
        import gevent.lock

        return gevent.lock.Semaphore(count)

    def dispatch(self, conn: Any) -> None:
        self._group.spawn(self.handle, conn)

    def wait_for_handlers(self) -> None:
        self._group.join()
