"""Everything a compare run leaves behind, from one results document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..results import SCHEMA, summarize
from .compare_table import summary_tables
from .html import write_html
from .verdict import Verdict, advice, verdicts

__all__ = ["ReportError", "load_results", "render"]


class ReportError(Exception):
    pass


def load_results(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist: run 'iomodels compare' first") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ReportError(f"{path} is not an iomodels compare result (schema {SCHEMA})")
    doc["summary"] = summarize(doc["runs"])  # always from the runs: one source of truth
    return doc


def render(doc: dict[str, Any], out: Path, console: Console | None = None,
           write_json: bool = True) -> dict[str, Path]:
    """Write results.json (optionally), the PNG charts and report.html; print the table."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if write_json:
        paths["results"] = out / "results.json"
        paths["results"].write_text(json.dumps(doc, indent=1))
    try:
        from .charts import draw_charts
    except ImportError as exc:  # matplotlib is an extra: the table, the JSON and the page still come
        charts: list[Path] = []
        missing = f"charts skipped: {exc.name or exc} is not installed (pip install 'iomodels[charts]')"
    else:
        charts = draw_charts(doc, out)
        missing = ""
    for chart in charts:
        paths[chart.stem] = chart
    found = verdicts(doc["summary"], doc["config"].get("repeat", 1), len(doc["pinning"]["load_cores"]))
    paths["html"] = write_html(doc, charts, out, found, note=missing)
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: 100 columns, no highlighting of numbers
        console = Console(width=max(console.width, 100), file=console.file, highlight=False)
    print_verdict(doc, found, console)
    if missing:
        console.print(f"[yellow]{escape(missing)}[/yellow]")
    return paths


def print_verdict(doc: dict[str, Any], found: list[Verdict], console: Console) -> None:
    """The tables, then the verdict per scenario and the advice (what a reader wants last on screen)."""
    for table in summary_tables(doc["summary"], doc.get("scenarios")):
        console.print(table)
    console.print("[bold]Verdict[/bold]" + (" (partial: interrupted)" if doc.get("partial") else ""))
    for v in found:
        console.print(f"[bold]{escape(v.scenario)}[/bold]: " + escape(" ".join(v.sentences())),
                      soft_wrap=False)
    text = advice(found)
    if text:
        console.print(text, markup=False)
