"""Terminal output for load results: a live progress line and a summary table."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..loadgen import Progress
from . import format_latency

__all__ = ["print_load_result", "progress_printer"]


@contextlib.contextmanager
def progress_printer(quiet: bool = False) -> Iterator[Callable[[Progress], None] | None]:
    """A callback that redraws one status line (elapsed, req/s, errors) in place."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    last: list[Progress] = []
    with Live(Text(""), console=console, refresh_per_second=5, transient=True) as live:

        def show(p: Progress) -> None:
            rate = 0.0
            if last and p.elapsed > last[0].elapsed:
                rate = (p.requests - last[0].requests) / (p.elapsed - last[0].elapsed)
            last[:] = [p]
            live.update(Text(f"{p.elapsed:6.1f}s  {p.requests:>10,} requests  {rate:>10,.0f} req/s  "
                             f"{p.errors} errors"))

        yield show


def print_load_result(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    w = result["workload"]
    size = str(w["size_min"]) if w["size_min"] == w["size_max"] else f"{w['size_min']}-{w['size_max']}"
    mode = f"open loop at {w['rate']:g} req/s" if w["rate"] else "closed loop"
    console.print(f"[bold]{w['host']}:{w['port']}[/bold]  {w['connections']} connections, {size} B, "
                  f"{mode}, engine {w['engine']} x{w['procs']}, {result['elapsed']:.2f}s measured")
    lat = result["latency_us"]
    console.print(f"  {result['requests']:,} requests   {result['requests_per_s']:,.0f} req/s   "
                  f"{result['mib_per_s']:.2f} MiB/s")
    console.print("  latency  " + "  ".join(
        f"{label} {format_latency(lat[key])}" for label, key in
        (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"),
         ("max", "max"))))
    errors = {k: v for k, v in result["errors"].items() if v}
    console.print(f"  verified {result['bytes_verified']:,} bytes; "
                  + ("errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()) if errors
                     else "no errors")
                  + f"; generator CPU {result['generator_cpu_percent']:.0f}%")
    starved, outstanding = result.get("starved_connections", 0), result.get("outstanding", 0)
    if starved or outstanding:
        console.print(f"  [yellow]{starved} of {w['connections']} connections completed no request; "
                      f"{outstanding} requests still unanswered at the end (oldest waited "
                      f"{format_latency(result.get('oldest_outstanding_us', 0))})[/yellow]")
    rate = result.get("rate")
    if rate and not rate["kept"]:
        console.print(f"[yellow]target rate not kept: {rate['achieved']:,.0f} of {rate['target']:,.0f} "
                      "req/s. Latencies count from each request's due time, so the queueing shows in "
                      "them; if the generator CPU is near 100% per process, add --procs.[/yellow]")
