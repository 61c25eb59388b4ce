"""The lesson's client, made honest: a thread per connection with blocking sockets.

Each thread connects, then sends a message, reads the whole reply with
``recv_into`` and verifies it, over and over (closed loop), or waits for each
request's due time first (open loop, latency from the due time). It is here
to show what 400 client threads cost next to one event loop, and as a second
opinion on the default engine's figures.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from .tally import Tally
from .workload import MessagePool, Workload

__all__ = ["run"]


class _Run:
    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.pool = MessagePool(workload)
        self.stop = threading.Event()
        self.measuring = threading.Event()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.tallies: list[Tally] = []
        self.total = 0  # measured requests over all threads (for --requests)
        self.connect_gate = threading.Semaphore(0) if workload.connect_rate else None
        self.inflight = [0.0] * workload.connections  # per slot: when its unanswered request went out
        self.next_due = [0.0] * workload.connections  # per slot (open loop): when its next request is due

    def connection(self, index: int) -> None:
        w = self.workload
        tally = Tally()
        with self.lock:
            self.tallies.append(tally)
        pool = self.pool
        buffer = bytearray(w.size_max)
        view = memoryview(buffer)
        interval = w.connections / w.rate if w.rate else 0.0
        next_message = index % pool.count
        delay = 0.05
        while not self.stop.is_set():
            if self.connect_gate is not None:
                self.connect_gate.acquire()
            try:
                sock = socket.create_connection((w.host, w.port), timeout=w.timeout)
            except ConnectionRefusedError:
                kind = "refused"
            except TimeoutError:
                kind = "timeout"
            except OSError:
                kind = "connect"
            else:
                kind = None
            if kind is not None:
                if not self.stop.is_set():
                    tally.error(kind)
                self.stop.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sockets.add(sock)
            tally.connections_opened += 1
            due = time.perf_counter() + (index / w.rate if w.rate else 0.0)
            try:
                while not self.stop.is_set():
                    behind = False
                    if interval:
                        wait = due - time.perf_counter()
                        if wait > 0 and self.stop.wait(wait):
                            break
                        behind = wait <= 0  # the last reply came after this one was due
                    message = pool.messages[next_message]
                    expected = pool.expected[next_message]
                    next_message = (next_message + 1) % pool.count
                    need = len(message)
                    sent_at = time.perf_counter()
                    start = due if behind else sent_at
                    self.inflight[index] = sent_at
                    sock.sendall(message)
                    tally.bytes_sent += need
                    got = 0
                    while got < need:
                        n = sock.recv_into(view[got:need])
                        if not n:
                            raise EOFError
                        got += n
                    now = time.perf_counter()
                    self.inflight[index] = 0.0
                    if (buffer if len(buffer) == need else buffer[:need]) != expected:
                        tally.error("mismatch")
                        break
                    if self.measuring.is_set() and not self.stop.is_set() and self.count_one():
                        tally.requests += 1
                        tally.bytes_verified += need
                        tally.latencies[int((now - start) * 1e6)] += 1
                    if interval:
                        due += interval
                        self.next_due[index] = due
            except EOFError:
                if not self.stop.is_set():
                    tally.error("short")
            except TimeoutError:
                if not self.stop.is_set():
                    tally.error("timeout")
            except OSError:
                if not self.stop.is_set():
                    tally.error("reset")
            finally:
                with self.lock:
                    self.sockets.discard(sock)
                sock.close()

    def count_one(self) -> bool:
        """Claim one of the measured requests (always granted without --requests)."""
        limit = self.workload.requests
        if limit is None:
            return True
        with self.lock:
            if self.total >= limit:
                return False
            self.total += 1
            if self.total >= limit:
                self.stop.set()
            return True

    def wake_all(self) -> None:
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def run(workload: Workload, on_tick: Callable[[Tally], bool] | None = None,
        hard_limit: float = 600.0) -> tuple[Tally, float]:
    """As the uvloop engine's ``run``: a true answer from ``on_tick`` ends the run at once."""
    r = _Run(workload)
    threads = [threading.Thread(target=r.connection, args=(i,), daemon=True)
               for i in range(workload.connections)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    if r.connect_gate is not None:
        assert workload.connect_rate is not None
        for i in range(workload.connections):
            r.connect_gate.release()
            if r.stop.wait(1 / workload.connect_rate) or i == workload.connections - 1:
                break

    def progress() -> Tally:
        view = Tally()
        with r.lock:
            tallies = list(r.tallies)
        for t in tallies:
            view.requests += t.requests
            view.bytes_verified += t.bytes_verified
            for kind, count in t.errors.items():
                view.errors[kind] += count
        return view

    interrupted = False

    def wait_until(deadline: float) -> None:
        nonlocal interrupted
        while not r.stop.wait(min(0.2, max(deadline - time.perf_counter(), 0))):
            if on_tick is not None and on_tick(progress()):
                interrupted = True  # end now, keep what was measured
                r.stop.set()
                break
            if time.perf_counter() >= deadline:
                break

    wait_until(started + workload.warmup)
    with r.lock:  # warm-up over: forget what it counted
        for t in r.tallies:
            t.reset()
    r.measuring.set()
    measure_start = time.perf_counter()
    cpu_start = time.process_time()
    limit = workload.duration if workload.duration is not None else hard_limit
    if not r.stop.is_set():
        wait_until(measure_start + min(limit, hard_limit))
    measure_end = time.perf_counter()
    cpu_seconds = time.process_time() - cpu_start
    with r.lock:  # one tally per connection slot: a slot with no request is a starved connection
        starved = sum(1 for t in r.tallies if not t.requests) if workload.requests is None else 0

    waiting = [measure_end - sent for sent in r.inflight if sent]  # in flight when the window closed
    missed = 0
    if workload.rate:  # open loop: due times that passed before the previous reply came
        interval = workload.connections / workload.rate
        for nxt in r.next_due:
            nxt = max(nxt, measure_start)
            if nxt <= measure_end:
                missed += int((measure_end - nxt) / interval) + 1
    r.stop.set()
    if r.connect_gate is not None:
        for _ in threads:
            r.connect_gate.release()
    # in-flight replies may land (briefly when interrupted: Ctrl-C must end the run within a second)
    grace = time.perf_counter() + (0.3 if interrupted else min(workload.timeout, 2.0))
    for thread in threads:
        thread.join(max(grace - time.perf_counter(), 0))
    r.wake_all()
    for thread in threads:
        thread.join(workload.timeout + 1)
    total = Tally()
    for t in r.tallies:
        total.merge(t)
    total.cpu_seconds = cpu_seconds
    total.starved = starved
    total.outstanding = len(waiting)
    total.missed = missed
    total.oldest_wait_us = int(max(waiting, default=0.0) * 1e6)
    return total, max(measure_end - measure_start, 1e-9)
