"""A self-contained report.html: charts embedded, the table, host facts, a reading per family."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ..results import RunStatus
from .compare_table import COLUMNS, summary_rows
from .reading import FAMILY_TITLES, readings

__all__ = ["write_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
td:nth-child(1), td:nth-child(2), td:last-child, th:nth-child(1), th:nth-child(2), th:last-child {
  text-align: left; }
td:last-child { white-space: normal; }
tr.failed td { color: #a00; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(doc: dict[str, Any], charts: list[Path], out: Path) -> Path:
    summary = doc["summary"]
    cfg = doc["config"]
    host = doc["host"]
    pin = doc["pinning"]
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = []
    for status, row in summary_rows(summary):
        cls = "" if status is RunStatus.OK else ' class="failed"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
    mode = f"open loop at {cfg['rate']:g} req/s" if cfg.get("rate") else "closed loop"
    facts = [
        f"{host['cpus']} CPUs ({esc(host['cpu_model'])}), {esc(host['system'])} {esc(host['kernel'])}, "
        f"Python {esc(host['python'])}",
        "versions: " + ", ".join(f"{esc(k)} {esc(str(v))}" for k, v in host["versions"].items()),
        f"server on cores {pin['server_cores']}, load generator on cores {pin['load_cores']}"
        + (" (shared: only one core here)" if pin["shared"] else ""),
        f"run {esc(doc['started_at'])} to {esc(doc['finished_at'])}",
    ]
    reading = readings(summary, load_cores=len(pin["load_cores"]))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>iomodels compare</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Which IO model should serve this TCP service?</h1>",
        f"<p>Upper-case echo, {cfg['size']} B messages, {mode}, {cfg['duration']:g} s measured after "
        f"{cfg['warmup']:g} s of warm-up, {cfg['repeat']} run(s) per point (median, spread min-max), "
        f"load engine {esc(cfg['engine'])} x{cfg['procs']}, every reply verified.</p>",
        "<h2>Charts</h2>", *(_img(p) for p in charts),
        "<h2>Results</h2>", f"<table><tr>{head}</tr>", *body, "</table>",
        "<p>KiB/conn = (server RSS under load - RSS idle) / connections, children included; at one or "
        "ten connections it is mostly one-time allocations (buffer pools, thread stacks), so read it at "
        "the largest counts. CPU% is the server's process tree during the measured window (100% = one "
        "core); load CPU% is the load generator's: near 100% per process, the generator may be the "
        "limit.</p>",
        "<h2>Reading</h2>",
        *(f"<h3>{esc(FAMILY_TITLES[f])}</h3><p>{esc(text)}</p>" for f, text in reading.items()),
        "<h2>Machine</h2><ul>", *(f"<li>{fact}</li>" for fact in facts), "</ul>",
        "<p>Re-render with <code>iomodels report results.json</code>.</p></body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
