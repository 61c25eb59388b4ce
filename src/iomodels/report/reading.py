"""A short reading of the results per family, written from the numbers themselves."""

from __future__ import annotations

from typing import Any

from ..results import RunStatus

__all__ = ["FAMILY_TITLES", "readings"]

FAMILY_TITLES = {
    "blocking": "Blocking IO (a thread of control per client)",
    "process": "Processes (prefork)",
    "readiness": "Non-blocking IO, IO multiplexing and signal-driven IO (one readiness loop)",
    "completion": "Asynchronous IO (io_uring)",
    "asyncio": "asyncio protocols (multiplexing with callbacks)",
}


def _fmt(rps: float) -> str:
    return f"{rps:,.0f} req/s"


def readings(summary: list[dict[str, Any]], load_cores: int = 1) -> dict[str, str]:
    """family -> one paragraph comparing its models at the largest connection count they tried.

    ``load_cores``: how many cores the load generator had (advice on --procs depends on it).
    """
    more = ("rerun with --procs to check" if load_cores > 1 else
            "with a single core for the load on this machine, more load processes would not help")
    ok = [r for r in summary if r["status"] == RunStatus.OK]
    top = max((r["rps_median"] for r in ok), default=0.0)
    leader = next((r for r in ok if r["rps_median"] == top), None)
    out: dict[str, str] = {}
    for family in FAMILY_TITLES:
        rows = [r for r in summary if r["family"] == family]
        if not rows:
            continue
        sentences = []
        peak = max((r["connections"] for r in rows), default=0)
        at_peak = sorted((r for r in rows if r["connections"] == peak and r["status"] == RunStatus.OK),
                         key=lambda r: -r["rps_median"])
        if at_peak:
            best = at_peak[0]
            sentences.append(f"At {peak} connections, {best['model']} leads the family with "
                             f"{_fmt(best['rps_median'])} (p99 {best['p99_us'] / 1000:.2f} ms, "
                             f"{best['kib_per_connection']:.1f} KiB per connection).")
            for other in at_peak[1:]:
                ratio = other["rps_median"] / best["rps_median"] if best["rps_median"] else 0
                sentences.append(f"{other['model']}: {ratio:.2f}x of that "
                                 f"(p99 {other['p99_us'] / 1000:.2f} ms).")
            if best.get("load_cpu_percent", 0) >= 90:
                sentences.append(f"The load generator used {best['load_cpu_percent']:.0f}% CPU there, so "
                                 f"it may be what limits this figure ({more}).")
            if leader is not None and leader["family"] != family and top:
                sentences.append(f"Against the fastest run overall ({leader['model']} at "
                                 f"{leader['connections']} connections), the family's best is "
                                 f"{best['rps_median'] / top:.2f}x.")
        failed = [r for r in rows if r["status"] != RunStatus.OK]
        for r in failed:
            sentences.append(f"{r['model']} at {r['connections']} connections: {r['status']} "
                             f"({r['reason']}).")
        if not sentences:
            sentences.append("No run of this family completed.")
        out[family] = " ".join(sentences)
    return out
