"""The results of a comparison: the schema of one run, its status, and the summary of many.

Pure data and statistics, no processes and no rendering: ``compare`` writes
these records and ``report`` reads them back, and both import this module.
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field
from typing import Any

from .loadgen import LOST_KINDS

__all__ = ["SCHEMA", "RunRecord", "RunStatus", "summarize"]

SCHEMA = "iomodels.compare/1"


class RunStatus(enum.StrEnum):
    """How one run ended (stored as its string value in results.json)."""

    OK = "ok"  # every reply verified
    FAILED = "failed"  # the server could not serve this load; ``reason`` says how
    UNAVAILABLE = "unavailable"  # the model cannot run on this machine; ``reason`` says why


@dataclass
class RunRecord:
    model: str
    family: str
    connections: int
    repeat: int
    status: RunStatus
    reason: str = ""
    load: dict[str, Any] = field(default_factory=dict)  # the load result, without the bulky parts
    server: dict[str, Any] = field(default_factory=dict)  # cpu_percent, rss_*, kib_per_connection, stats
    scenario: str = "echo"
    variant: str = ""  # the model, or model+offload: what the summary groups by ("" = the model)


def _median_and_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, variant, connections): medians and spreads over the runs that succeeded.

    A row whose runs all failed keeps what they measured of the clients they did serve (req/s,
    latency), so a report can say how far a model got, not only that it failed."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run.get("scenario", "echo"), run.get("variant") or run["model"], run["connections"])
        groups.setdefault(key, []).append(run)
    rows = []
    for (scenario, variant, connections), group in groups.items():
        ok = [r for r in group if r["status"] == RunStatus.OK]
        first = group[0]
        row: dict[str, Any] = {"scenario": scenario, "variant": variant, "model": first["model"],
                               "family": first["family"], "connections": connections,
                               "runs": len(group), "ok_runs": len(ok)}
        idle = [r["server"]["kib_per_idle"] for r in (ok or group) if "kib_per_idle" in r["server"]]
        if idle:
            row["kib_per_idle"] = statistics.median(idle)
            row["idle_answered"] = min(r["server"].get("idle_answered", 0) for r in (ok or group))
        if not ok:
            row |= {"status": first["status"], "reason": first["reason"]}
            measured = [r for r in group if r["load"] and r["load"].get("requests")]
            starved = [r["load"].get("starved_connections", 0) for r in group if r["load"]]
            if any(starved):
                row["starved"] = max(starved)
            if measured:  # a failed run still says how far it got
                row["rps_median"] = statistics.median(r["load"]["requests_per_s"] for r in measured)
                row["p50_us"] = statistics.median(r["load"]["latency_us"]["p50"] for r in measured)
                row["p99_us"] = statistics.median(r["load"]["latency_us"]["p99"] for r in measured)
            rows.append(row)
            continue
        rps = _median_and_spread([r["load"]["requests_per_s"] for r in ok])
        p99 = _median_and_spread([r["load"]["latency_us"]["p99"] for r in ok])
        cpu = [r["server"]["cpu_percent"] for r in ok if r["server"].get("cpu_percent") is not None]
        row |= {
            "status": RunStatus.OK.value,
            "reason": "" if len(ok) == len(group) else f"{len(group) - len(ok)} of {len(group)} runs failed",
            "rps_median": rps[0], "rps_min": rps[1], "rps_max": rps[2],
            "p50_us": statistics.median(r["load"]["latency_us"]["p50"] for r in ok),
            "p99_us": p99[0], "p99_min": p99[1], "p99_max": p99[2],
            "cpu_percent": statistics.median(cpu) if cpu else None,
            "rss_mib": round(statistics.median(r["server"]["rss_load"] for r in ok) / (1 << 20), 1),
            "kib_per_connection": statistics.median(r["server"]["kib_per_connection"] for r in ok),
            "errors": sum(sum(r["load"]["errors"].get(k, 0) for k in LOST_KINDS) for r in ok),
            "load_cpu_percent": statistics.median(r["load"].get("generator_cpu_percent", 0.0) for r in ok),
        }
        unkept = [r["load"]["rate"] for r in ok if r["load"].get("rate") and not r["load"]["rate"]["kept"]]
        if unkept:  # open loop: the server (or generator) fell behind; latencies show by how much
            note = (f"target rate not kept in {len(unkept)} run(s): "
                    f"{statistics.median(u['achieved'] for u in unkept):,.0f} of "
                    f"{unkept[0]['target']:,.0f} req/s")
            row["reason"] = f"{row['reason']}; {note}" if row["reason"] else note
        rows.append(row)
    return rows
