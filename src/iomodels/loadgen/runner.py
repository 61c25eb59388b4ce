"""Run a workload in worker processes, show progress, merge their tallies into one result.

Every engine runs in a worker process (``--procs`` of them, default one), so
the parent stays free to draw progress and the figures do not depend on it.
The workers start their clocks together (a barrier after start-up), report
running totals through shared memory five times a second, and send their
final tally (with an encoded HdrHistogram) back through a queue.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import queue
import resource
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..hostinfo import host_facts
from .tally import Tally
from .workload import Workload

__all__ = ["LOST_KINDS", "SCHEMA", "LoadError", "Progress", "run_load"]

SCHEMA = "iomodels.load/1"
LOST_KINDS = ("mismatch", "short", "reset", "timeout")  # a reply that was wrong or never came
_SLOTS = 3  # per worker in the shared progress array: requests, errors, bytes verified


class LoadError(Exception):
    """The run could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Progress:
    elapsed: float
    requests: int
    errors: int
    bytes_verified: int


def _engine(name: str) -> Any:
    if name == "uvloop":
        from . import aio_engine

        return aio_engine
    if name == "threads":
        from . import thread_engine

        return thread_engine
    raise LoadError(f"unknown engine {name!r}: use uvloop or threads")


def _worker(index: int, workload: Workload, shared: Any, barrier: Any, results: Any, stop: Any) -> None:
    # Ctrl-C reaches every process of the group: the parent decides, and tells us through `stop`.
    # SIGTERM (the parent's terminate(), or a SIGTERM to the group) ends the run as `stop` does once
    # it runs (what was measured is still sent), and the process at once before that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated: list[int] = []
    running = False

    def on_term(signum: int, frame: object) -> None:
        if not running:
            raise SystemExit(0)
        terminated.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        engine = _engine(workload.engine)
        base = index * _SLOTS

        def on_tick(tally: Tally) -> bool:
            shared[base] = tally.requests
            shared[base + 1] = tally.error_count
            shared[base + 2] = tally.bytes_verified
            return bool(stop.value) or bool(terminated)

        gc.collect()
        gc.freeze()  # a dedicated process: nothing it makes per request forms a cycle
        gc.disable()
        barrier.wait(60)
        running = True
        tally, window = engine.run(workload, on_tick)
        results.put((index, tally.to_wire(), window, tally.cpu_seconds, None))
    except SystemExit:
        raise
    except BaseException:
        results.put((index, None, 0.0, 0.0, traceback.format_exc()))


_FD_RESERVE = 64  # descriptors a load process needs besides its connections (pipes, the loop, files)


def check_fd_limit(workload: Workload) -> None:
    """Refuse, with the limit named, a connection count the open-files limit cannot hold.

    The soft limit is raised to the hard one first (workers inherit it); each worker process holds
    its share of the connections, so the figure that matters is the largest share."""
    from ..net import raise_fd_limit

    soft = raise_fd_limit()
    per_process = -(-workload.connections // workload.procs)
    if per_process + _FD_RESERVE > soft:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        most = max(soft - _FD_RESERVE, 1) * workload.procs
        raise LoadError(
            f"{workload.connections:,} connections need about {per_process + _FD_RESERVE:,} open files per "
            f"load process, but the limit here is {soft:,} (RLIMIT_NOFILE, hard limit {hard:,}): use at "
            f"most {most:,} connections with --procs {workload.procs}, more --procs, or raise the "
            "limit (ulimit -n)")


def preflight(host: str, port: int, timeout: float = 3.0) -> None:
    """Fail early, with advice, when nothing answers at HOST:PORT."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise LoadError(f"nothing is listening on {host}:{port} (connection refused): start a server "
                        f"first, e.g. 'iomodels serve --model epoll --port {port}'") from None
    except TimeoutError:
        raise LoadError(f"{host}:{port} did not accept a connection within {timeout:g}s") from None
    except socket.gaierror as exc:
        raise LoadError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except OSError as exc:
        raise LoadError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None


def run_load(workload: Workload, on_progress: Callable[[Progress], None] | None = None,
             check_target: bool = True) -> dict[str, Any]:
    """Run ``workload``; return the result document (see ``docs/load.md``)."""
    check_fd_limit(workload)
    if check_target:
        preflight(workload.host, workload.port, min(workload.timeout, 3.0))
    _engine(workload.engine)  # fail fast on a bad name
    ctx = mp.get_context("spawn")
    procs = workload.procs
    shared = ctx.Array("q", procs * _SLOTS, lock=False)
    barrier = ctx.Barrier(procs + 1)
    results = ctx.Queue()
    stop = ctx.Value("b", 0, lock=False)
    workers = [ctx.Process(target=_worker, args=(i, workload.share(i), shared, barrier, results, stop),
                           daemon=True, name=f"iomodels-load-{i}") for i in range(procs)]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    for p in workers:
        p.start()
    try:
        barrier.wait(60)
    except BaseException as exc:
        _stop(workers, at_once=True)
        if isinstance(exc, Exception):
            raise LoadError("the load workers did not start within 60 s") from None
        raise
    start = time.perf_counter()
    wall_start = time.time()  # the measured window in wall-clock time, so runs can be merged
    bound = (workload.warmup + (workload.duration if workload.duration is not None else 600.0)
             + workload.timeout + 30.0)
    collected: dict[int, tuple[Any, float, float, str | None]] = {}
    interrupted = False
    try:
        while len(collected) < procs:
            try:
                index, wire, window, cpu, failure = results.get(timeout=0.2)
                collected[index] = (wire, window, cpu, failure)
            except queue.Empty:
                pass
            except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, which the CLI turns into this)
                if interrupted:
                    raise  # a second one: give up on the partial result
                interrupted = True
                stop.value = 1  # the workers end within 0.2 s and send what they measured
                bound = time.perf_counter() - start + 3.0
            if on_progress is not None:
                totals = [sum(shared[i * _SLOTS + k] for i in range(procs)) for k in range(_SLOTS)]
                on_progress(Progress(time.perf_counter() - start, *totals))
            if time.perf_counter() - start > bound:
                raise LoadError(f"the load workers did not finish within {bound:.0f}s")
            if len(collected) < procs and not any(p.is_alive() for p in workers) and results.empty():
                raise LoadError("a load worker died without a result")
    finally:
        _stop(workers)
    failures = [f for (_, _, _, f) in collected.values() if f]
    if failures:
        raise LoadError("a load worker failed:\n" + failures[0])
    total = Tally()
    windows, cpu = [], 0.0
    for wire, window, worker_cpu, _ in collected.values():
        total.merge(Tally.from_wire(wire))
        windows.append(window)
        cpu += worker_cpu
    result = build_result(workload, total, max(windows), cpu, started_at)
    begin = wall_start + workload.warmup
    result["window_unix"] = [round(begin, 3), round(begin + max(windows), 3)]
    if interrupted:
        result["partial"] = True  # stopped early: figures cover the window until the interruption
        result["ok"] = False
    return result


def _stop(workers: list[Any], at_once: bool = False) -> None:
    for p in workers:
        p.join(timeout=0 if at_once else 5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)


def build_result(workload: Workload, tally: Tally, elapsed: float, cpu_seconds: float,
                 started_at: str) -> dict[str, Any]:
    """The result document: figures, errors, the workload and host facts."""
    rps = tally.requests / elapsed if elapsed else 0.0
    lost = sum(tally.errors.get(k, 0) for k in LOST_KINDS)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": started_at,
        "workload": workload.as_dict() | {"mode": workload.mode},
        "elapsed": round(elapsed, 6),
        "requests": tally.requests,
        "requests_per_s": round(rps, 1),
        "mib_per_s": round(tally.bytes_verified / elapsed / (1 << 20), 3) if elapsed else 0.0,
        "bytes_sent": tally.bytes_sent,
        "bytes_verified": tally.bytes_verified,
        "connections_opened": tally.connections_opened,
        "latency_us": tally.latency_summary(),
        "errors": dict(tally.errors),
        "lost_or_wrong": lost,
        # closed loop: a connection that got no reply in the whole window means the server serves
        # fewer clients than were opened, however fast it answers the others
        "starved_connections": tally.starved,
        "outstanding": tally.outstanding,
        "oldest_outstanding_us": tally.oldest_wait_us,
        "ok": lost == 0 and tally.requests > 0 and (tally.starved == 0 or workload.rate is not None),
        "generator_cpu_percent": round(100.0 * cpu_seconds / elapsed, 1) if elapsed else 0.0,
        "rate": None,
        "histogram": tally.histogram.encode().decode("ascii"),
        "host": host_facts(),
    }
    if workload.rate:
        result["rate"] = {
            "target": workload.rate,
            "achieved": round(rps, 1),
            "kept": rps >= 0.95 * workload.rate,
            # came due in the window but never went out: a connection still waited for its
            # previous reply (the server) or the generator could not keep up
            "missed": tally.missed,
        }
    return result

