"""The default engine: one uvloop loop, one Protocol per connection, no tasks per request.

Each connection has at most one request in flight. A reply that arrives in
one read (the usual case for small messages) is compared with the expected
bytes as it is; one that arrives in pieces is gathered in a per-connection
buffer first. A plain ``Protocol`` measured ~0.5 us less Python time per
request here than a ``BufferedProtocol`` (one callback per read instead of
two). Counts are kept on each connection and collected by the engine (every
0.2 s, when a connection ends, and at the end), so the common case touches
only its own connection. Closed loop: the next request goes out as soon as a
reply is verified. Open loop: request *k* of a connection is due at
``start + k * interval``; it goes out then, or as soon as the previous reply
arrives if that is later, and its latency is measured from the time it was
*due* when it had to wait for the previous reply (coordinated omission
corrected, as wrk2 does). A request that waited only for its own due time
counts from when it went out: event-loop timers fire up to a millisecond
late, and that lateness belongs to the generator, not to the server.

Every failure is counted by kind and the connection is replaced after a short
pause, so a run always reaches its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .tally import Tally
from .workload import MessagePool, Workload

__all__ = ["run"]

_ns = time.perf_counter_ns
_FINE_US = 100_000  # latencies below 100 ms are counted in a list
_RECONNECT_DELAY = 0.05
_MAX_RECONNECT_DELAY = 1.0


class _Client(asyncio.Protocol):
    __slots__ = ("buffer", "cycle", "done", "due", "engine", "expected", "fast", "fine", "got", "index",
                 "need", "overflow", "sent", "sent_at", "start", "transport", "verified", "write")

    def __init__(self, engine: _Engine, index: int) -> None:
        self.engine = engine
        self.index = index
        self.cycle = engine.pool.cycle(index)  # this connection's messages: (message, reply, length)
        self.buffer = bytearray(engine.workload.size_max)  # gathers a reply that came in pieces
        self.transport: Any = None
        self.write: Callable[[bytes], object] = _unconnected
        self.fast = False  # closed loop, measured window: the inlined path below may count and send
        self.fine, self.overflow = engine.fine, engine.overflow  # the engine's latency counts, in us
        self.expected: bytes | None = None  # reply awaited, or None when idle
        self.need = 0
        self.got = 0
        # counted since the engine last took them (Engine.collect): replies verified, bytes
        self.done = self.verified = self.sent = 0
        self.due = 0  # when the request in flight was due on the open-loop schedule (ns)
        self.sent_at = 0  # when it went out (ns; the inlined path keeps only `start`)
        self.start = 0  # where its latency is counted from (ns)

    # -- asyncio callbacks (the hot path: keep it flat) -----------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        self.engine.connected(self)

    def data_received(self, data: bytes) -> None:
        # The common case, inlined (keep in step with _gather, completed and send): the whole
        # reply in one read, in a closed loop's measured window. ~0.4 us of Python where the
        # general path takes ~1 us, a third of the generator's user time per request.
        if data == self.expected and self.fast and not self.got:
            now = _ns()
            self.done += 1
            self.verified += self.need
            latency = (now - self.start) // 1000
            try:
                self.fine[latency] += 1
            except IndexError:  # 100 ms or more
                self.overflow[latency] += 1
            message, self.expected, need = next(self.cycle)
            self.need = need
            self.sent += need
            self.start = now
            write = self.write  # (loaded, then called: a specialised slot load, not a method lookup)
            write(message)
            return
        self._gather(data)

    def _gather(self, data: bytes) -> None:
        expected = self.expected
        if expected is None:
            self.engine.failed(self, "mismatch")  # bytes nobody asked for
            return
        got = self.got
        if got or len(data) != self.need:  # a reply in pieces (or too long): gather it
            end = got + len(data)
            if end > self.need:
                self.engine.failed(self, "mismatch")
                return
            self.buffer[got:end] = data
            if end < self.need:
                self.got = end
                return
            same = self.buffer.startswith(expected)  # a memcmp, no copy
        else:
            same = data == expected
        now = _ns()
        if not same:
            self.engine.failed(self, "mismatch")
            return
        self.expected = None
        self.got = 0
        self.engine.completed(self, now)

    def eof_received(self) -> bool:
        self.engine.failed(self, "short" if self.expected is not None else None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.engine.lost(self, exc)

    # -- requests -----------------------------------------------------------------------
    def send(self, due: int, now: int | None = None, behind: bool = False) -> None:
        """Send the next message. ``behind``: it waited for the previous reply past its due
        time, so its latency counts from ``due`` (coordinated omission), else from now."""
        message, self.expected, need = next(self.cycle)
        self.need = need
        self.got = 0
        self.due = due
        if now is None:
            now = _ns()
        self.sent_at = now
        self.start = due if behind else now
        self.sent += need
        self.write(message)

    def in_flight_since(self) -> int:
        """When the request awaited went out (ns): the inlined path keeps only ``start``, which is
        never earlier than the send, and ``sent_at`` stays behind while it runs."""
        return max(self.sent_at, self.start)

    def record(self, now: int) -> None:
        """Count the reply just verified (the general path; data_received inlines it)."""
        self.done += 1
        self.verified += self.need
        latency = (now - self.start) // 1000
        if latency < len(self.fine):
            self.fine[latency] += 1
        else:
            self.overflow[latency] += 1


def _unconnected(data: bytes) -> None:
    raise RuntimeError("not connected")


class _Engine:
    def __init__(self, workload: Workload, on_tick: Callable[[Tally], bool] | None) -> None:
        self.workload = workload
        self.pool = MessagePool(workload)
        self.tally = Tally()
        # latencies, counted per microsecond: a list below 100 ms (an index is cheaper than a
        # dict's hash), a Counter above; both move into the tally's histogram when the run ends
        self.fine = [0] * _FINE_US
        self.overflow: Counter[int] = Counter()
        self.on_tick = on_tick
        self.clients: set[_Client] = set()
        self.running = True
        self.measuring = workload.warmup == 0
        self.fast = False  # closed loop, measuring, running, no request limit: the inlined path
        # open loop: the time between two requests of one connection, in ns
        self.interval = max(round(workload.connections / workload.rate * 1e9), 1) if workload.rate else 0
        self.counted = 0  # replies counted by `completed` (all of them when there is a request limit)
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.failures_in_a_row: dict[int, int] = {}
        self.slot_done = [0] * workload.connections  # requests completed per connection slot
        self.measure_start = 0  # the measured window, in ns (perf_counter_ns)
        self.measure_end = 0
        self.cpu_start = 0.0

    # -- connections --------------------------------------------------------------------
    def open(self, index: int, delay: float = 0.0) -> None:
        if delay:
            self.loop.call_later(delay, self.open, index)
            return
        if self.running:
            self.loop.create_task(self._connect(index))

    async def _connect(self, index: int) -> None:
        w = self.workload
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: _Client(self, index), w.host, w.port), w.timeout)
        except ConnectionRefusedError:
            self._retry(index, "refused")
        except TimeoutError:
            self._retry(index, "timeout")
        except OSError:
            self._retry(index, "connect")

    def _retry(self, index: int, kind: str | None) -> None:
        if kind is not None and self.running:
            self.tally.error(kind)
        streak = self.failures_in_a_row.get(index, 0) + 1
        self.failures_in_a_row[index] = streak
        self.open(index, min(_RECONNECT_DELAY * streak, _MAX_RECONNECT_DELAY))

    def connected(self, client: _Client) -> None:
        if not self.running:
            client.transport.close()
            return
        self.tally.connections_opened += 1
        self.failures_in_a_row.pop(client.index, None)
        self.clients.add(client)
        client.fast = self.fast
        now = _ns()
        if self.interval:  # open loop: stagger the connections over one interval
            n = self.workload.connections
            first = now + self.interval * (client.index % n) // n
            self.loop.call_later((first - now) / 1e9, self._due, client, first)
        else:
            client.send(now, now)

    def _due(self, client: _Client, due: int) -> None:
        # only ever scheduled for an idle client (after its reply, or when it connects)
        if self.running and client.transport is not None and client.expected is None:
            client.send(due)

    def completed(self, client: _Client, now: int) -> None:
        if self.measuring and self.running:
            client.record(now)
            self.counted += 1
            if self.workload.requests is not None and self.counted >= self.workload.requests:
                self.finish()
                return
        if not self.running:
            client.transport.close()  # the run is over; its last reply is in
            self.clients.discard(client)
            if not self.clients and not self.done.done():
                self.done.set_result(None)
            return
        if not self.interval:
            client.send(now, now)
            return
        due = client.due + self.interval
        if due <= now:
            client.send(due, behind=True)  # the server kept it waiting: latency counts from `due`
        else:  # idle until due; the timer's lateness (ms-grained) is ours, not the server's
            self.loop.call_later((due - now) / 1e9, self._due, client, due)

    def failed(self, client: _Client, kind: str | None) -> None:
        """The connection is unusable: count why, drop it, and open another."""
        transport = client.transport
        if transport is None:
            return
        self._collect(client)
        client.transport = None
        client.fast = False
        self.clients.discard(client)
        transport.abort()
        if self.running:
            self._retry(client.index, kind)

    def lost(self, client: _Client, exc: Exception | None) -> None:
        kind = None
        if client.expected is not None:
            kind = "reset" if isinstance(exc, ConnectionResetError) or exc is not None else "short"
        self.failed(client, kind)

    # -- counting -----------------------------------------------------------------------
    def _collect(self, client: _Client) -> None:
        """Move what ``client`` counted into the tally (in the measured window only)."""
        if self.measuring:
            tally = self.tally
            tally.requests += client.done
            tally.bytes_verified += client.verified
            tally.bytes_sent += client.sent
            self.slot_done[client.index] += client.done
        client.done = client.verified = client.sent = 0

    def collect(self) -> None:
        for client in self.clients:
            self._collect(client)

    # -- timeline ---------------------------------------------------------------------
    def tick(self) -> None:
        if not self.running:
            return
        now = _ns()
        limit = self.workload.timeout * 1e9
        for client in tuple(self.clients):
            if client.expected is not None and now - client.in_flight_since() > limit:
                self.failed(client, "timeout")
        self.collect()
        if self.on_tick is not None and self.on_tick(self.tally):
            self.finish(grace=0.3)  # interrupted (Ctrl-C): end now, keep what was measured
            return
        self.loop.call_later(0.2, self.tick)

    def _update_fast(self) -> None:
        self.fast = fast = (self.measuring and self.running and not self.interval
                            and self.workload.requests is None)
        for client in self.clients:
            client.fast = fast

    def begin_measuring(self) -> None:
        self.tally.reset()
        for client in self.clients:  # what the warm-up counted is forgotten
            client.done = client.verified = client.sent = 0
        self.fine[:] = [0] * _FINE_US  # in place: every client holds this list
        self.overflow.clear()
        self.slot_done = [0] * self.workload.connections
        self.measuring = True
        self._update_fast()
        self.measure_start = _ns()
        self.cpu_start = time.process_time()
        if self.workload.duration is not None:
            self.loop.call_later(self.workload.duration, self.finish)

    def finish(self, grace: float | None = None) -> None:
        """Stop sending; close idle connections now, busy ones when their reply is in (within
        ``grace`` seconds: by default the timeout, at most 2 s)."""
        if not self.running:
            return
        self.running = False
        self._update_fast()
        self.collect()
        now = self.measure_end = _ns()
        tally = self.tally
        tally.cpu_seconds = time.process_time() - self.cpu_start
        latencies = tally.latencies
        for us, count in enumerate(self.fine):
            if count:
                latencies[us] += count
        latencies.update(self.overflow)
        if self.workload.requests is None:  # a run bounded by time: every connection had it all
            tally.starved = self.slot_done.count(0)
        # in flight when the window closed (closed loop: about one per connection); the oldest
        # one's wait is what tells a stalled or starving server from a busy one
        waiting = [now - c.in_flight_since() for c in self.clients if c.expected is not None]
        tally.outstanding = len(waiting)
        tally.oldest_wait_us = max(waiting, default=0) // 1000
        if self.interval:  # open loop: due times that passed before the previous reply came
            interval = self.interval
            for c in self.clients:
                nxt = max(c.due + interval, self.measure_start)
                if nxt <= now:
                    tally.missed += (now - nxt) // interval + 1
        for client in tuple(self.clients):
            if client.expected is None:
                client.transport.close()
                self.clients.discard(client)
        if not self.clients and not self.done.done():
            self.done.set_result(None)
        if not self.measure_start:  # interrupted during the warm-up: nothing was measured
            self.measure_start = self.measure_end
        self.loop.call_later(min(self.workload.timeout, 2.0) if grace is None else grace, self._abandon)

    def _abandon(self) -> None:
        for client in tuple(self.clients):
            client.transport.abort()
        self.clients.clear()
        if not self.done.done():
            self.done.set_result(None)

    async def run(self, hard_limit: float) -> Tally:
        w = self.workload
        for index in range(w.connections):
            self.open(index, index / w.connect_rate if w.connect_rate else 0.0)
        self.loop.call_later(0.2, self.tick)
        if w.warmup:
            self.loop.call_later(w.warmup, self.begin_measuring)
        else:
            self.begin_measuring()
        self.loop.call_later(w.warmup + hard_limit, self.finish)
        await self.done
        await asyncio.sleep(0)  # let transports deliver connection_lost
        return self.tally


def run(workload: Workload, on_tick: Callable[[Tally], bool] | None = None,
        hard_limit: float = 600.0) -> tuple[Tally, float]:
    """Run the workload on uvloop (the stdlib loop if uvloop is missing).

    ``on_tick(tally)`` is called 5 times a second; a true answer ends the run at once (what was
    measured until then is kept). Returns the tally and the length of the measured window.
    """
    try:
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop

    async def main() -> tuple[Tally, float]:
        engine = _Engine(workload, on_tick)
        limit = workload.duration if workload.duration is not None else hard_limit
        tally = await engine.run(min(limit, hard_limit) + 1.0)
        return tally, max((engine.measure_end - engine.measure_start) / 1e9, 1e-9)

    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
