"""A self-contained report.html: the verdict first, then charts, tables and the machine."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ..results import RunStatus
from .compare_table import ALL_COLUMNS, summary_rows
from .verdict import Verdict, advice

__all__ = ["write_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
td:nth-child(1), td:nth-child(2), td:nth-child(3), td:last-child,
th:nth-child(1), th:nth-child(2), th:nth-child(3), th:last-child { text-align: left; }
td:last-child { white-space: normal; min-width: 20em; }
tr.failed td { color: #a00; }
.verdict { background: #f6f8fa; border-left: 4px solid #4c72b0; padding: 0.6em 1em; margin: 1em 0; }
.advice { font-size: 1.05em; }
.warn { color: #8a5a00; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(doc: dict[str, Any], charts: list[Path], out: Path, found: list[Verdict],
               note: str = "") -> Path:
    summary = doc["summary"]
    cfg = doc["config"]
    host = doc["host"]
    pin = doc["pinning"]
    esc = html.escape
    scenarios = doc.get("scenarios", {})
    repeats = cfg.get("repeat", 1)
    verdict_html = []
    for v in found:
        meta = scenarios.get(v.scenario, {})
        what = f" <small>({esc(meta['what'])})</small>" if meta.get("what") else ""
        verdict_html.append(f"<div class='verdict'><h3>{esc(v.scenario)}{what}</h3>"
                            + "".join(f"<p>{esc(s)}</p>" for s in v.sentences()) + "</div>")
    head = "".join(f"<th>{esc(c)}</th>" for c in ALL_COLUMNS)
    body = []
    for status, cells in summary_rows(summary):
        cls = "" if status is RunStatus.OK else ' class="failed"'
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(cells[c])}</td>" for c in ALL_COLUMNS) + "</tr>")
    mode = f"open loop at {cfg['rate']:g} req/s" if cfg.get("rate") else "closed loop"
    preset = " This is the quick preset: a first look, one run per point." if cfg.get("preset") else ""
    partial = ("<p class='warn'><b>Partial results:</b> the comparison was interrupted; only the runs "
               "that finished are here.</p>") if doc.get("partial") else ""
    facts = [
        f"{host['cpus']} CPUs ({esc(host['cpu_model'])}), {esc(host['system'])} {esc(host['kernel'])}, "
        f"Python {esc(host['python'])}",
        "versions: " + ", ".join(f"{esc(k)} {esc(str(v))}" for k, v in host["versions"].items()),
        f"server on cores {pin['server_cores']} (every core for the CPU scenarios), load generator on "
        f"cores {pin['load_cores']}" + (" (shared: only one core here)" if pin["shared"] else ""),
        f"run {esc(doc['started_at'])} to {esc(doc['finished_at'])}",
    ]
    how = "".join(f"<li><b>{esc(name)}</b>: {esc(meta.get('what', ''))} ({esc(meta.get('how', ''))})</li>"
                  for name, meta in scenarios.items())
    text = advice(found)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>iomodels compare</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Which IO model should serve this TCP service?</h1>", partial,
        "<h2>Verdict</h2>",
        f"<p class='advice'>{esc(text)}</p>" if text else "",
        *verdict_html,
        f"<p>{mode}, {cfg['duration']:g} s measured after {cfg['warmup']:g} s of warm-up, {repeats} "
        f"run(s) per point (median; spread = min-max; overlapping spreads are ties), request timeout "
        f"{cfg.get('request_timeout', 0):g} s, load engine {esc(cfg['engine'])} x{cfg['procs']}, every "
        f"reply verified.{preset}</p>",
        f"<ul>{how}</ul>" if how else "",
        "<h2>Charts</h2>", *(_img(p) for p in charts),
        f"<p class='warn'>{esc(note)}</p>" if note else "",
        "<h2>Results</h2>", f"<table><tr>{head}</tr>", *body, "</table>",
        "<p>Values in brackets belong to failed runs: what the model did for the clients it served. "
        "KiB/conn = (server RSS under load - RSS before it) / connections, children included; at one or "
        "ten connections it is mostly one-time allocations, so read it at the largest counts. KiB/idle = "
        "(RSS with the idle horde - idle RSS) / idle connections. CPU% is the server's process tree "
        "during the measured window (100% = one core); load CPU% is the load generator's: near 100% per "
        "process, the generator may be the limit.</p>",
        "<h2>Machine</h2><ul>", *(f"<li>{fact}</li>" for fact in facts), "</ul>",
        "<p>Re-render with <code>iomodels report results.json</code>.</p></body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
