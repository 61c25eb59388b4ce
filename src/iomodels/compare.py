"""``iomodels compare``: every model under the same load, scenario by scenario, measured the same way.

For each scenario (:mod:`iomodels.scenarios`), model variant, connection count
and repeat: start ``iomodels serve`` in a fresh process with the scenario's
flags (pinned to its own core, or to every core for the CPU scenarios), wait
for its ready line, measure its idle memory, open the scenario's idle horde if
it has one, run the load generator with a warm-up that is not counted (fresh
Python servers run slower for their first seconds), sample the server's
process tree (CPU and RSS, children included) while the load runs, stop the
server with SIGTERM and keep its statistics. A configuration a model cannot
serve is recorded as failed, with the reason in words, and the comparison goes
on. All runs are kept; the summary (:mod:`iomodels.results`) gives medians and
spreads, because these machines are noisy.
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

from .costs import CALIBRATION_ENV, calibrate
from .hostinfo import host_facts
from .loadgen import LoadError, Progress, Workload, run_load
from .loadgen.idle import IdleHorde
from .models import REGISTRY, describe
from .models.serving import ServerProcess, ServerStartError
from .net import raise_fd_limit
from .results import SCHEMA, RunRecord, RunStatus, summarize
from .scenarios import SCENARIOS, Scenario, Variant, variants

__all__ = ["CompareConfig", "run_compare"]


@dataclass(frozen=True)
class CompareConfig:
    scenarios: tuple[Scenario, ...] = (SCENARIOS["echo"],)
    models: tuple[str, ...] = tuple(REGISTRY)
    connections: tuple[int, ...] | None = None  # None: each scenario's own counts
    duration: float = 5.0
    warmup: float = 1.0
    rate: float | None = None
    repeat: int = 3
    engine: str = "uvloop"
    procs: int = 1
    timeout: float | None = None  # None: the measured duration (at least 1 s)
    service: str | None = None  # the user's own service, for every run
    preset: str = ""  # "quick" when the quick preset filled in what the user did not give

    def request_timeout(self) -> float:
        return self.timeout if self.timeout is not None else max(1.0, self.duration)

    def counts(self, scenario: Scenario) -> tuple[int, ...]:
        return self.connections or scenario.connections

    def plan(self) -> list[tuple[Scenario, Variant, int, int]]:
        return [(s, v, c, r) for s in self.scenarios for v in variants(s, self.models)
                for c in self.counts(s) for r in range(self.repeat)]

    def run_count(self) -> int:
        return len(self.plan())


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
            "elapsed", "generator_cpu_percent", "rate", "connections_opened", "histogram",
            "starved_connections", "outstanding", "oldest_outstanding_us")
    return {k: result[k] for k in keep if k in result}


def failure_reason(result: dict[str, Any], connections: int, timeout: float, log: list[str]) -> str:
    """Why a run failed, in words a reader can act on."""
    parts = []
    starved = result.get("starved_connections", 0)
    if starved:
        served = connections - starved
        parts.append(f"serves {served} client{'s' if served != 1 else ''} at a time: {starved} of "
                     f"{connections} connections starved (no reply in {result['elapsed']:.3g} s)")
    errors = {k: v for k, v in result["errors"].items() if v}
    if errors.get("timeout") and errors["timeout"] > starved:  # the starved ones time out too
        parts.append(f"{errors['timeout']} requests unanswered within the {timeout:g} s timeout")
    others = {k: v for k, v in errors.items() if k != "timeout"}
    if others:
        parts.append(", ".join(f"{v} {k}" for k, v in others.items()))
    if not parts:
        parts.append("no request completed")
    if log:
        parts.append("server said: " + log[-1])
    return "; ".join(parts)


def run_one(config: CompareConfig, scenario: Scenario, variant: Variant, family: str, connections: int,
            repeat: int, cores: tuple[set[int], set[int]]) -> RunRecord:
    record = RunRecord(model=variant.model, family=family, connections=connections, repeat=repeat,
                       status=RunStatus.FAILED, scenario=scenario.name, variant=variant.label)
    server_cores = cores[0] | cores[1] if scenario.server_all_cores else cores[0]
    record.server["cores"] = sorted(server_cores)
    try:
        # no --idle-timeout: a scenario's idle horde must stay connected for the whole run
        args = [*scenario.serve_args(variant.offload, config.service), "--idle-timeout", "0"]
        server = ServerProcess(variant.model, args=args, cpus=server_cores).start()
    except ServerStartError as exc:
        record.reason = f"server did not start: {exc}"
        return record
    horde: IdleHorde | None = None
    try:
        time.sleep(0.1)
        rss_idle = _rss(server.pid)
        record.server["rss_idle"] = rss_idle
        if scenario.idle:
            horde = IdleHorde("127.0.0.1", server.port, scenario.idle)
            answered = horde.open()
            rss_horde = _rss(server.pid)
            record.server |= {"idle_requested": scenario.idle, "idle_answered": answered,
                              "rss_horde": rss_horde,
                              "kib_per_idle": round((rss_horde - rss_idle) / max(answered, 1) / 1024, 2)}
        sampler = _Sampler(server.pid, config.warmup)
        workload = Workload(
            port=server.port, connections=connections, size_min=scenario.size, size_max=scenario.size,
            duration=config.duration, warmup=config.warmup, rate=config.rate, engine=config.engine,
            procs=min(config.procs, connections), timeout=config.request_timeout())
        try:
            result = run_load(workload, sampler, check_target=False)
        except LoadError as exc:
            record.reason = f"load failed: {exc}"
            return record
        if result.get("partial"):  # Ctrl-C landed inside the load: this run is cut short, and so is
            raise KeyboardInterrupt  # the comparison (the runs that finished are kept by the caller)
        record.load = _slim(result)  # kept for failed runs too: latency of those it did serve
        rss_base = record.server.get("rss_horde", rss_idle)
        rss_load = max(sampler.rss_peak, rss_base)
        record.server |= {
            "cpu_percent": sampler.cpu_percent(),
            "rss_load": rss_load,
            "kib_per_connection": round((rss_load - rss_base) / connections / 1024, 2),
        }
        if horde is not None and horde.answered < scenario.idle:
            record.reason = (f"held only {horde.answered:,} of {scenario.idle:,} idle connections "
                             "(the rest were refused or never answered)")
        elif result["ok"]:
            record.status = RunStatus.OK
        else:
            record.reason = failure_reason(result, connections, config.request_timeout(), server.log)
    finally:
        if horde is not None:
            horde.close()
        server.stop()
        record.server["stats"] = server.stats
        if server.proc is not None and server.proc.returncode not in (0, None):
            record.server["exit_code"] = server.proc.returncode
    return record


def run_compare(config: CompareConfig,
                on_run: Callable[[RunRecord | None, str], None] | None = None,
                runs: list[RunRecord] | None = None) -> dict[str, Any]:
    """Run every configuration; ``on_run(record, next_label)`` after each (and once before).

    ``runs`` collects the records as they finish, so a caller keeps them if it is interrupted."""
    raise_fd_limit()
    cores = split_cores()
    previous_affinity = os.sched_getaffinity(0)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    runs = [] if runs is None else runs
    plan = config.plan()

    def label(i: int) -> str:
        if i >= len(plan):
            return "done"
        scenario, variant, connections, _ = plan[i]
        return f"{scenario.name}: {variant.label} x{connections}"

    if any(s.cpu_us for s in config.scenarios) and CALIBRATION_ENV not in os.environ:
        # one calibration for the whole comparison: the same --cpu-us is the same work in every server
        os.environ[CALIBRATION_ENV] = f"{calibrate(rounds=7):.6f}"
    try:
        os.sched_setaffinity(0, cores[1])  # the load workers inherit this
        for i, (scenario, variant, connections, rep) in enumerate(plan):
            if on_run is not None and i == 0:
                on_run(None, label(0))
            info = describe(variant.model)
            if not info.available:
                record = RunRecord(model=variant.model, family=info.family, connections=connections,
                                   repeat=rep, status=RunStatus.UNAVAILABLE, reason=info.unavailable or "",
                                   scenario=scenario.name, variant=variant.label)
            else:
                record = run_one(config, scenario, variant, info.family, connections, rep, cores)
            runs.append(record)
            if on_run is not None:
                on_run(record, label(i + 1))
    finally:
        os.sched_setaffinity(0, previous_affinity)
    return build_document(config, runs, cores, started_at)


def build_document(config: CompareConfig, runs: Iterable[RunRecord], cores: tuple[set[int], set[int]],
                   started_at: str, partial: bool = False) -> dict[str, Any]:
    runs = list(runs)
    doc = {
        "schema": SCHEMA,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config) | {"request_timeout": config.request_timeout()},
        "scenarios": {s.name: {"what": s.what, "how": s.describe(), "server_all_cores": s.server_all_cores}
                      for s in config.scenarios},
        "pinning": {"server_cores": sorted(cores[0]), "load_cores": sorted(cores[1]),
                    "shared": cores[0] == cores[1]},
        "burn_per_us": float(os.environ[CALIBRATION_ENV]) if CALIBRATION_ENV in os.environ else None,
        "host": host_facts(),
        "runs": [asdict(r) for r in runs],
        "summary": summarize([asdict(r) for r in runs]),
    }
    if partial:
        doc["partial"] = True
    return doc

