"""The compare summary as a rich table (terminal) and as plain rows (HTML)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..results import RunStatus
from . import format_latency

__all__ = ["COLUMNS", "summary_rows", "summary_table"]

COLUMNS = ("model", "family", "conns", "req/s (median)", "spread", "p50", "p99", "CPU%", "RSS MiB",
           "KiB/conn", "errors", "load CPU%", "note")


def summary_rows(summary: list[dict[str, Any]]) -> list[tuple[RunStatus, list[str]]]:
    """(status, cells) per summary row; a failed row keeps how far it got, in brackets."""
    rows: list[tuple[RunStatus, list[str]]] = []
    for s in summary:
        status = RunStatus(s["status"])
        if status is not RunStatus.OK:
            got = f"({s['rps_median']:,.0f})" if s.get("rps_median") is not None else ""
            rows.append((status, [s["model"], s["family"], str(s["connections"]), got, "", "", "", "", "",
                                  "", "", "", f"{status}: {s['reason']}"]))
            continue
        spread = f"{s['rps_min']:,.0f}-{s['rps_max']:,.0f}" if s["ok_runs"] > 1 else ""
        rows.append((status, [
            s["model"], s["family"], str(s["connections"]), f"{s['rps_median']:,.0f}", spread,
            format_latency(s["p50_us"]), format_latency(s["p99_us"]),
            "" if s["cpu_percent"] is None else f"{s['cpu_percent']:.0f}",
            f"{s['rss_mib']:.1f}", f"{s['kib_per_connection']:.1f}", str(s["errors"]),
            f"{s.get('load_cpu_percent', 0):.0f}", s["reason"],
        ]))
    return rows


def summary_table(summary: list[dict[str, Any]], title: str = "iomodels compare") -> Table:
    """The terminal table: notes cut short (the full reasons are in report.html and the JSON)."""
    table = Table(title=title, header_style="bold")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("model", "family", "note") else "right",
                         no_wrap=name != "note", max_width=48 if name == "note" else None)
    for status, row in summary_rows(summary):
        note = row[-1] if len(row[-1]) <= 48 else row[-1][:45] + "..."
        table.add_row(*row[:-1], note, style=None if status is RunStatus.OK else "red")
    return table
