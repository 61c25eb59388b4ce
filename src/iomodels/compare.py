"""``iomodels compare``: every model under the same load, measured the same way.

For each model, connection count and repeat: start ``iomodels serve`` in a
fresh process (pinned to its own cores where there are two or more), wait for
its ready line, measure its idle memory, run the load generator with a
warm-up that is not counted (fresh Python servers run slower for their first
seconds), sample the server's process tree (CPU and RSS, children included)
while the load runs, stop the server with SIGTERM and keep its statistics.
A configuration a model cannot serve is recorded as failed, with the reason,
and the comparison goes on. All runs are kept; summaries give the median and
the spread (min-max), because these machines are noisy.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psutil

from .hostinfo import host_facts
from .loadgen import LoadError, Progress, Workload, run_load
from .models import REGISTRY, describe
from .models.serving import ServerProcess, ServerStartError
from .net import raise_fd_limit
from .results import SCHEMA, RunRecord, RunStatus, summarize

__all__ = ["CompareConfig", "run_compare"]


@dataclass(frozen=True)
class CompareConfig:
    models: tuple[str, ...] = tuple(REGISTRY)
    connections: tuple[int, ...] = (1, 10, 100)
    size: int = 1024
    duration: float = 5.0
    warmup: float = 1.0
    rate: float | None = None
    repeat: int = 3
    engine: str = "uvloop"
    procs: int = 1
    timeout: float | None = None  # None: half the duration: a client left waiting shows as timeouts

    def request_timeout(self) -> float:
        return self.timeout if self.timeout is not None else max(0.1, self.duration / 2)

    def run_count(self) -> int:
        return len(self.models) * len(self.connections) * self.repeat


def split_cores() -> tuple[set[int], set[int]]:
    """(server cores, load cores): the first core for the server, the rest for the load."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _rss(pid: int) -> int:
    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for proc in _tree(pid):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class _Sampler:
    """Called with the load's progress (5 times a second): samples the server tree."""

    def __init__(self, pid: int, warmup: float) -> None:
        self.pid = pid
        self.warmup = warmup
        self.rss_peak = 0
        self.cpu_start: tuple[float, float] | None = None  # (wall, cpu seconds) at end of warm-up
        self.cpu_last: tuple[float, float] | None = None

    def __call__(self, progress: Progress) -> None:
        self.rss_peak = max(self.rss_peak, _rss(self.pid))
        if progress.elapsed >= self.warmup:
            sample = (time.perf_counter(), _cpu_seconds(self.pid))
            if self.cpu_start is None:
                self.cpu_start = sample
            self.cpu_last = sample

    def cpu_percent(self) -> float | None:
        if self.cpu_start is None or self.cpu_last is None or self.cpu_last[0] <= self.cpu_start[0]:
            return None
        (w0, c0), (w1, c1) = self.cpu_start, self.cpu_last
        return round(100.0 * (c1 - c0) / (w1 - w0), 1)


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("requests", "requests_per_s", "mib_per_s", "latency_us", "errors", "lost_or_wrong", "ok",
            "elapsed", "generator_cpu_percent", "rate", "connections_opened", "histogram")
    return {k: result[k] for k in keep if k in result}


def _failure_reason(result: dict[str, Any], server: ServerProcess, connections: int) -> str:
    errors = {k: v for k, v in result["errors"].items() if v}
    parts = [", ".join(f"{v} {k}" for k, v in errors.items()) or "no request completed"]
    if errors.get("timeout"):
        parts.append(f"replies did not come within the timeout for some of {connections} connections")
    if server.log:
        parts.append("server said: " + server.log[-1])
    return "; ".join(parts)


def run_one(config: CompareConfig, model: str, family: str, connections: int, repeat: int,
            cores: tuple[set[int], set[int]]) -> RunRecord:
    record = RunRecord(model, family, connections, repeat, RunStatus.FAILED)
    server_cores, _ = cores
    try:
        server = ServerProcess(model, cpus=server_cores).start()
    except ServerStartError as exc:
        record.reason = f"server did not start: {exc}"
        return record
    try:
        time.sleep(0.1)
        rss_idle = _rss(server.pid)
        sampler = _Sampler(server.pid, config.warmup)
        workload = Workload(
            port=server.port, connections=connections, size_min=config.size, size_max=config.size,
            duration=config.duration, warmup=config.warmup, rate=config.rate, engine=config.engine,
            procs=min(config.procs, connections), timeout=config.request_timeout())
        try:
            result = run_load(workload, sampler, check_target=False)
        except LoadError as exc:
            record.reason = f"load failed: {exc}"
            return record
        record.load = _slim(result)
        rss_load = max(sampler.rss_peak, rss_idle)
        record.server = {
            "cpu_percent": sampler.cpu_percent(),
            "rss_idle": rss_idle,
            "rss_load": rss_load,
            "kib_per_connection": round((rss_load - rss_idle) / connections / 1024, 2),
        }
        if result["ok"]:
            record.status = RunStatus.OK
        else:
            record.reason = _failure_reason(result, server, connections)
    finally:
        server.stop()
        record.server["stats"] = server.stats
        if server.proc is not None and server.proc.returncode not in (0, None):
            record.server["exit_code"] = server.proc.returncode
    return record


def run_compare(config: CompareConfig,
                on_run: Callable[[RunRecord | None, str], None] | None = None) -> dict[str, Any]:
    """Run every configuration; ``on_run(record, next_label)`` after each (and once before)."""
    raise_fd_limit()
    cores = split_cores()
    previous_affinity = os.sched_getaffinity(0)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    runs: list[RunRecord] = []
    plan = [(m, c, r) for m in config.models for c in config.connections for r in range(config.repeat)]
    try:
        os.sched_setaffinity(0, cores[1])  # the load workers inherit this
        for i, (model, connections, rep) in enumerate(plan):
            if on_run is not None and i == 0:
                on_run(None, f"{model} x{connections}")
            info = describe(model)
            if not info.available:
                record = RunRecord(model, info.family, connections, rep, RunStatus.UNAVAILABLE,
                                   reason=info.unavailable or "")
            else:
                record = run_one(config, model, info.family, connections, rep, cores)
            runs.append(record)
            if on_run is not None:
                nxt = f"{plan[i + 1][0]} x{plan[i + 1][1]}" if i + 1 < len(plan) else "done"
                on_run(record, nxt)
    finally:
        os.sched_setaffinity(0, previous_affinity)
    return build_document(config, runs, cores, started_at)


def build_document(config: CompareConfig, runs: Iterable[RunRecord], cores: tuple[set[int], set[int]],
                   started_at: str) -> dict[str, Any]:
    runs = list(runs)
    return {
        "schema": SCHEMA,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config) | {"request_timeout": config.request_timeout()},
        "pinning": {"server_cores": sorted(cores[0]), "load_cores": sorted(cores[1]),
                    "shared": cores[0] == cores[1]},
        "host": host_facts(),
        "runs": [asdict(r) for r in runs],
        "summary": summarize([asdict(r) for r in runs]),
    }
