"""Rendering results: terminal output, the compare table, charts and the HTML report."""

from __future__ import annotations

__all__ = ["format_latency"]


def format_latency(us: float | None) -> str:
    """Microseconds as the most readable unit: ``42 us``, ``1.50 ms``, ``2.10 s`` ("" for None)."""
    if us is None:
        return ""
    if us >= 1_000_000:
        return f"{us / 1e6:.2f} s"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} us"
