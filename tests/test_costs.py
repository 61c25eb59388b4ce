"""Request costs: held-back replies in memory (a fake clock and hand-made futures), then on sockets."""

from __future__ import annotations

import time
from concurrent.futures import Future

import pytest

from iomodels.costs import RequestCost, Work, burn, calibrate
from iomodels.loadgen import Workload, run_load
from iomodels.models import REGISTRY
from iomodels.service import Limits, Next, Phase, Session, UpperService

from .conformance.clients import connect, recv_exactly
from .helpers.running import start_or_skip


class FakeWork:
    """What a Session needs of a Work, with futures the test completes by hand."""

    def __init__(self, latency: float = 0.0, pool: bool = False) -> None:
        self.latency = latency
        self.iterations = 1 if pool else 0
        self.executor = object() if pool else None
        self.futures: list[Future[tuple[int, int, int]]] = []

    def submit(self) -> Future[tuple[int, int, int]]:
        future: Future[tuple[int, int, int]] = Future()
        self.futures.append(future)
        return future

    def record(self, future: Future[tuple[int, int, int]]) -> None:
        pass


def test_a_reply_is_held_back_until_its_due_time() -> None:
    session = Session(UpperService(), work=FakeWork(latency=0.010))  # type: ignore[arg-type]
    before = time.monotonic()
    session.receive_data(b"abc")
    assert session.pending == 0 and session.waiting
    due = session.next_due
    assert due is not None and before + 0.010 <= due <= time.monotonic() + 0.010
    assert not session.release(now=due - 0.001)
    assert session.release(now=due) and session.take_data() == b"ABC" and not session.waiting


def test_pool_work_that_finishes_out_of_order_is_released_in_order() -> None:
    work = FakeWork(pool=True)
    session = Session(UpperService(), work=work)  # type: ignore[arg-type]
    woken: list[int] = []
    session.on_ready = lambda: woken.append(1)
    for chunk in (b"one ", b"two ", b"three "):
        session.receive_data(chunk)
    assert session.next_due is None and session.pool_future() is work.futures[0]
    work.futures[2].set_result((0, 1, 1))
    work.futures[1].set_result((0, 1, 1))
    assert woken == [1, 1]  # each completion wakes the loop...
    assert not session.release() and session.take_data() == b""  # ...but "one " is not done yet
    work.futures[0].set_result((0, 1, 1))
    assert session.release() and session.take_data() == b"ONE TWO THREE "


def test_held_back_input_counts_towards_the_water_marks() -> None:
    session = Session(UpperService(), Limits(high=10, low=4), work=FakeWork(latency=1.0))  # type: ignore[arg-type]
    session.receive_data(b"x" * 8)
    assert not session.reading_paused
    session.receive_data(b"y" * 8)  # 16 bytes held, nothing sent yet
    assert session.reading_paused
    session.release(now=time.monotonic() + 2)
    out = session.take_data()
    assert out == b"X" * 8 + b"Y" * 8 and not session.reading_paused


def test_eof_and_stop_wait_for_held_back_replies() -> None:
    class Bye(UpperService):
        def on_eof(self) -> bytes:
            return b"<bye>"

    session = Session(Bye(), work=FakeWork(latency=1.0))  # type: ignore[arg-type]
    session.receive_data(b"late")
    session.receive_eof()
    assert session.next_action() is Next.SERVE  # not closed: a reply is still to come
    session.release(now=time.monotonic() + 2)
    assert session.take_data() == b"LATE<bye>"  # the last words after the last reply
    assert session.next_action() is Next.CLOSE

    stopped = Session(Bye(), work=FakeWork(latency=1.0))  # type: ignore[arg-type]
    stopped.receive_data(b"read before the stop")
    stopped.stop()
    stopped.receive_data(b"after")  # dropped
    assert stopped.next_action(lambda: True) is Next.SERVE
    stopped.release(now=time.monotonic() + 2)
    assert stopped.take_data() == b"READ BEFORE THE STOP<bye>"
    assert stopped.next_action() is Next.SHUT_WRITE and stopped.phase is Phase.LINGERING


def test_burn_is_calibrated_to_microseconds() -> None:
    per_us = calibrate()
    iterations = round(2000 * per_us)  # 2 ms
    start = time.process_time()
    for _ in range(10):
        burn(iterations)
    per_call_us = (time.process_time() - start) / 10 * 1e6
    assert 1000 < per_call_us < 4000  # generous: shared machines; a wrong unit is off by 1000x


def test_cost_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RequestCost(latency_ms=float("nan"))
    with pytest.raises(ValueError):
        RequestCost(offload="process")  # nothing to offload without CPU work
    with pytest.raises(ValueError):
        RequestCost(cpu_us=10, offload="gpu")
    assert not RequestCost().active and Work(RequestCost(latency_ms=5)).latency == 0.005


# -- on sockets: every model -----------------------------------------------------------------------

_EXTRA_ARGS = {"threadpool": ["--workers", "20"]}  # a pool sized to the 20 clients


def _round_trips(model: str, args: list[str]) -> int:
    srv = start_or_skip(model, [*_EXTRA_ARGS.get(model, []), *args])
    try:
        result = run_load(Workload(port=srv.port, connections=20, duration=2.0, timeout=30.0, size_min=64,
                                   size_max=64))
    finally:
        srv.stop()
    return result["requests"]


@pytest.fixture(scope="module")
def blocking_round_trips() -> int:
    return _round_trips("blocking", ["--latency-ms", "100"])


@pytest.mark.parametrize("model", [m for m in REGISTRY if m != "blocking"])
def test_a_backend_wait_does_not_hold_up_other_connections(model: str, blocking_round_trips: int) -> None:
    """100 ms per reply, 20 clients, 2 s: the baseline serves one client at a time (~20 round trips);
    a concurrent model overlaps the waits (~20 x 20)."""
    assert 10 <= blocking_round_trips <= 25
    trips = _round_trips(model, ["--latency-ms", "100"])
    assert trips >= 10 * blocking_round_trips, f"{model}: {trips} vs blocking {blocking_round_trips}"


_LOOP_MODELS = ["epoll", "select", "sigio", "io_uring", "asyncio", "uvloop", "gevent", "threads"]


@pytest.mark.parametrize("offload", ["thread", "process"])
@pytest.mark.parametrize("model", _LOOP_MODELS)
def test_offloaded_work_runs_in_the_pool_and_replies_keep_their_order(model: str, offload: str) -> None:
    srv = start_or_skip(model, ["--cpu-us", "300", "--offload", offload, "--pool-workers", "3"])
    try:
        messages = [f"message {i:04d} of one connection;".encode() for i in range(300)]
        with connect(srv.port) as sock:
            sock.sendall(b"".join(messages))  # pipelined: many chunks in the pool at once
            reply = recv_exactly(sock, sum(map(len, messages)))
        assert reply == b"".join(messages).upper()
        with connect(srv.port) as other:
            other.sendall(b"x")
            assert recv_exactly(other, 1) == b"X"
    finally:
        assert srv.stop() == 0, "\n".join(srv.lines)
    stats = srv.stats
    assert stats is not None and stats["offloaded"] >= 2, stats
    if offload == "process":
        assert srv.pid not in stats["worker_pids"] and len(stats["worker_pids"]) >= 1
    else:
        assert stats["worker_pids"] == [srv.pid]  # threads of the server's own process


def test_serve_refuses_offload_without_cpu_work() -> None:
    from .helpers.running import run_cli

    proc = run_cli("serve", "-m", "epoll", "--port", "0", "--offload", "process")
    assert proc.returncode == 2 and "--cpu-us" in proc.stderr and "Traceback" not in proc.stderr
