"""Terminal output for load results: a live progress line and a summary table."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from ..loadgen import Progress
from ..loadgen.workload import format_address
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


def write_hgrm(result: dict[str, Any], path: str) -> None:
    """The run's latency spectrum in HdrHistogram's standard percentile text (.hgrm), in ms."""
    import io
    import sys

    from hdrh.histogram import HdrHistogram

    histogram = HdrHistogram.decode(result["histogram"].encode("ascii"))
    buffer = io.BytesIO()
    histogram.output_percentile_distribution(buffer, 1000.0)  # microseconds -> milliseconds
    if path == "-":
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        with open(path, "wb") as f:
            f.write(buffer.getvalue())


def _console(err: bool) -> Console:
    """Rich, but for logs and pipes: no wrapping, no highlighted numbers."""
    probe = Console(stderr=err)
    if probe.is_terminal:
        return probe
    return Console(stderr=err, highlight=False, soft_wrap=True)


def print_load_result(result: dict[str, Any], console: Console | None = None, err: bool = False) -> None:
    console = console or _console(err)
    w = result["workload"]
    size = str(w["size_min"]) if w["size_min"] == w["size_max"] else f"{w['size_min']}-{w['size_max']}"
    mode = f"open loop at {w['rate']:g} req/s" if w["rate"] else "closed loop"
    address = escape(format_address(w["host"], w["port"]))
    console.print(f"[bold]{address}[/bold]  {w['connections']} connections, {size} B, "
                  f"{mode}, engine {w['engine']} x{w['procs']}, {result['elapsed']:.2f}s measured")
    lat = result["latency_us"]
    console.print(f"  {result['requests']:,} requests   {result['requests_per_s']:,.0f} req/s   "
                  f"{result['mib_per_s']:.2f} MiB/s")
    console.print("  latency  " + "  ".join(
        f"{label} {format_latency(lat[key])}" for label, key in
        (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"),
         ("max", "max"))) + f"   mean {format_latency(lat.get('mean'))} ± "
        f"{format_latency(lat.get('stdev'))}")
    errors = {k: v for k, v in result["errors"].items() if v}
    console.print(f"  verified {result['bytes_verified']:,} bytes; "
                  + ("errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()) if errors
                     else "no errors")
                  + f"; generator CPU {result['generator_cpu_percent']:.0f}%")
    starved, outstanding = result.get("starved_connections", 0), result.get("outstanding", 0)
    oldest = result.get("oldest_outstanding_us", 0)
    if starved or oldest >= 500_000 * result["elapsed"]:  # someone waited half the run or more
        console.print(f"  [yellow]{starved} of {w['connections']} connections completed no request; "
                      f"{outstanding} requests were in flight at the end, the oldest for "
                      f"{format_latency(oldest)}[/yellow]")
    rate = result.get("rate")
    if rate and not rate["kept"]:
        console.print(f"[yellow]target rate not kept: {rate['achieved']:,.0f} of {rate['target']:,.0f} "
                      f"req/s; {rate.get('missed', 0):,} requests came due but were never sent. "
                      "Latencies count from each request's due time, so the queueing shows in them; "
                      "if the generator CPU is near 100% per process, add --procs.[/yellow]")
