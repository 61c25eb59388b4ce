"""PNG charts of a compare run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ..results import RunStatus

__all__ = ["CHARTS", "draw_charts"]

# file name -> (summary key, y label, title, y scale)
CHARTS = {
    "throughput.png": ("rps_median", "requests/s (median)", "Throughput vs connections", "linear"),
    "latency_p99.png": ("p99_us", "p99 latency (ms)", "p99 latency vs connections", "log"),
    # symlog: one model's buffer pool at 1 connection must not flatten everyone else's line
    "memory_per_connection.png": ("kib_per_connection", "KiB per connection (RSS under load - idle)",
                                  "Memory per connection", "symlog"),
}
_STYLES = {"blocking": "-", "process": "--", "readiness": "-.", "completion": ":", "asyncio": "-"}


def draw_charts(summary: list[dict[str, Any]], out: Path) -> list[Path]:
    """One line per model over connection counts; failed points are left out (the table says why)."""
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        models.setdefault(row["model"], []).append(row)
    counts = sorted({row["connections"] for row in summary})
    colors = plt.get_cmap("tab20").colors
    paths = []
    for name, (key, ylabel, title, yscale) in CHARTS.items():
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
        for i, (model, rows) in enumerate(models.items()):
            points = sorted((r["connections"], r[key]) for r in rows
                            if r["status"] == RunStatus.OK and r.get(key) is not None)
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] / 1000 if key == "p99_us" else p[1] for p in points]
            ax.plot(xs, ys, _STYLES.get(rows[0]["family"], "-"), marker="o", label=model,
                    color=colors[i % len(colors)])
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        if yscale == "symlog":
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0)
        elif yscale == "log":
            ax.set_yscale("log")
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
