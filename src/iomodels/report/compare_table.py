"""The compare summary as rows of text: a table per scenario in the terminal, one table in HTML."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from ..results import RunStatus
from . import format_latency

__all__ = ["ALL_COLUMNS", "TERMINAL_COLUMNS", "summary_rows", "summary_tables", "to_csv", "to_markdown"]

ALL_COLUMNS = ("scenario", "model", "family", "conns", "req/s (median)", "spread", "p50", "p99", "CPU%",
               "RSS MiB", "KiB/conn", "KiB/idle", "errors", "load CPU%", "note")
# what fits 100 columns (the rest is in report.html and results.json): "±" is half the spread
TERMINAL_COLUMNS = ("model", "conns", "req/s", "±", "p50", "p99", "CPU%", "KiB/c", "note")
_NOTE_WIDTH = 24


def _short_note(status: RunStatus, row: dict[str, Any]) -> str:
    """A note that fits the terminal table (the verdict below it gives the whole reason)."""
    if status is RunStatus.OK:
        text = row["reason"]
    elif row.get("starved"):
        text = f"failed: {row['starved']} of {row['connections']} starved"
    else:
        text = f"{status}: {row['reason']}"
    return text if len(text) <= _NOTE_WIDTH else text[: _NOTE_WIDTH - 1] + "…"


def summary_rows(summary: list[dict[str, Any]]) -> list[tuple[RunStatus, dict[str, str]]]:
    """(status, column -> text) per summary row; a failed row keeps how far it got, in brackets."""
    rows: list[tuple[RunStatus, dict[str, str]]] = []
    for s in summary:
        status = RunStatus(s["status"])
        cells = dict.fromkeys((*ALL_COLUMNS, *TERMINAL_COLUMNS), "")
        cells |= {"scenario": s.get("scenario", "echo"), "model": s.get("variant") or s["model"],
                  "family": s["family"], "conns": f"{s['connections']:,}"}
        if s.get("kib_per_idle") is not None:
            cells["KiB/idle"] = f"{s['kib_per_idle']:.1f}"
        if status is not RunStatus.OK:
            if s.get("rps_median") is not None:
                cells["req/s (median)"] = cells["req/s"] = f"({s['rps_median']:,.0f})"
                cells["p50"] = f"({format_latency(s.get('p50_us'))})"
                cells["p99"] = f"({format_latency(s.get('p99_us'))})"
            cells["note"], cells["short"] = f"{status}: {s['reason']}", _short_note(status, s)
            rows.append((status, cells))
            continue
        cells |= {
            "req/s (median)": f"{s['rps_median']:,.0f}",
            "spread": f"{s['rps_min']:,.0f}-{s['rps_max']:,.0f}" if s["ok_runs"] > 1 else "",
            "p50": format_latency(s["p50_us"]), "p99": format_latency(s["p99_us"]),
            "CPU%": "" if s["cpu_percent"] is None else f"{s['cpu_percent']:.0f}",
            "RSS MiB": f"{s['rss_mib']:.1f}", "KiB/conn": f"{s['kib_per_connection']:.1f}",
            "errors": str(s["errors"]), "load CPU%": f"{s.get('load_cpu_percent', 0):.0f}",
            "note": s["reason"], "short": _short_note(status, s),
            "req/s": f"{s['rps_median']:,.0f}", "KiB/c": f"{s['kib_per_connection']:.1f}",
            "±": (f"{(s['rps_max'] - s['rps_min']) / 2 / s['rps_median']:.0%}"
                  if s["ok_runs"] > 1 and s["rps_median"] else ""),
        }
        rows.append((status, cells))
    return rows


def summary_tables(summary: list[dict[str, Any]], scenarios: dict[str, Any] | None = None) -> list[Table]:
    """One terminal table per scenario, at most 100 columns wide."""
    by_scenario: dict[str, list[tuple[RunStatus, dict[str, str]]]] = {}
    for status, cells in summary_rows(summary):
        by_scenario.setdefault(cells["scenario"], []).append((status, cells))
    tables = []
    for name, rows in by_scenario.items():
        columns = list(TERMINAL_COLUMNS)
        if any(cells["KiB/idle"] for _, cells in rows):  # the idle horde: memory per idle connection
            columns[columns.index("KiB/c")] = "KiB/idle"
        how = (scenarios or {}).get(name, {}).get("how", "")
        table = Table(title=f"{name}" + (f": {how}" if how else ""), header_style="bold",
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in columns:
            table.add_column(column, justify="left" if column in ("model", "note") else "right",
                             no_wrap=True)
        for status, cells in rows:
            table.add_row(*(cells["short"] if c == "note" else cells[c] for c in columns),
                          style=None if status is RunStatus.OK else "red")
        tables.append(table)
    return tables


def to_csv(summary: list[dict[str, Any]]) -> str:
    """The whole summary table as CSV (every column of report.html, plus the status)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["status", *ALL_COLUMNS])
    for status, cells in summary_rows(summary):
        writer.writerow([status.value, *(cells[c] for c in ALL_COLUMNS)])
    return buffer.getvalue()


def to_markdown(summary: list[dict[str, Any]]) -> str:
    """The whole summary table as a GitHub-flavoured Markdown table."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(ALL_COLUMNS) + " |",
             "|" + "|".join("---" if c in ("scenario", "model", "family", "note") else "---:"
                            for c in ALL_COLUMNS) + "|"]
    for _, cells in summary_rows(summary):
        lines.append("| " + " | ".join(cell(cells[c]) for c in ALL_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
