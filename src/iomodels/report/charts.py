"""PNG charts of a compare run (matplotlib, no display needed).

Per scenario: throughput as one small chart per family (error bars from the
repeats, failed points marked), or bars when the scenario has one connection
count; the latency percentile spectrum per model (from the HdrHistograms in
results.json); and throughput per CPU% (efficiency). Plus memory per
connection (and per idle connection, for the idle horde).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from hdrh.histogram import HdrHistogram

from ..results import RunStatus

__all__ = ["FAMILIES", "draw_charts"]

FAMILIES = {"blocking": "blocking IO", "process": "processes", "readiness": "readiness loop",
            "completion": "io_uring", "asyncio": "asyncio protocols"}
_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)


def _colors(names: list[str]) -> dict[str, Any]:
    """A distinct colour per variant (tab20's strong shades first, then its light ones)."""
    tab20 = plt.get_cmap("tab20").colors
    palette = tab20[0::2] + tab20[1::2]
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(names))}


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _ok(row: dict[str, Any]) -> bool:
    return row["status"] == RunStatus.OK and row.get("rps_median") is not None


def _throughput_lines(name: str, rows: list[dict[str, Any]], colors: dict[str, Any], out: Path) -> Path:
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    cols = min(3, len(families))
    nrows = (len(families) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.9 * nrows), dpi=100, sharey=True,
                             squeeze=False)
    counts = sorted({r["connections"] for r in rows})
    top = max((r.get("rps_max") or r.get("rps_median") or 0) for r in rows) or 1
    for ax, family in zip(axes.flat, families, strict=False):
        variants = sorted({r["variant"] for r in rows if r["family"] == family})
        shades = plt.get_cmap("tab10").colors  # distinct within one family's chart
        for k, variant in enumerate(variants):
            color = shades[k % len(shades)]
            mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["connections"])
            good = [r for r in mine if _ok(r)]
            if good:
                xs = [r["connections"] for r in good]
                ys = [r["rps_median"] for r in good]
                err = [[r["rps_median"] - r.get("rps_min", r["rps_median"]) for r in good],
                       [r.get("rps_max", r["rps_median"]) - r["rps_median"] for r in good]]
                ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=3, label=variant, color=color)
            bad = [r for r in mine if not _ok(r)]
            if bad:
                ax.plot([r["connections"] for r in bad], [r.get("rps_median") or 0 for r in bad], "X",
                        color=color, mec="red", ms=10, mew=1.5,
                        label=f"{variant} (failed)" if not good else None)
        ax.set_title(FAMILIES[family], fontsize=10)
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        ax.set_ylim(0, top * 1.1)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("connections", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.18), ncol=2, frameon=False)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("requests/s (median; bars: min-max)")
    fig.suptitle(f"{name}: throughput by family (X edged red: failed, at what it served)", fontsize=11)
    fig.tight_layout()
    return _save(fig, out / f"throughput_{name}.png")


def _bars(name: str, title: str, rows: list[dict[str, Any]], value: str, xlabel: str, out: Path,
          file: str, lower_is_better: bool = False) -> Path | None:
    rows = [r for r in rows if r.get(value) is not None]
    if not rows:
        return None
    rows.sort(key=lambda r: (not _ok(r), r[value] if lower_is_better else -r[value]))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4), dpi=100)
    labels = [r["variant"] for r in rows]
    values = [r[value] for r in rows]
    colors = ["#4c72b0" if _ok(r) else "#d9534f" for r in rows]
    xerr = None
    if value == "rps_median":
        xerr = [[r["rps_median"] - r.get("rps_min", r["rps_median"]) for r in rows],
                [r.get("rps_max", r["rps_median"]) - r["rps_median"] for r in rows]]
    ax.barh(labels, values, color=colors, xerr=xerr, capsize=3,
            hatch=None)
    for i, r in enumerate(rows):
        if not _ok(r):
            ax.text(values[i], i, "  failed", va="center", color="#d9534f", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(f"{name}: {title}", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / file)


def _spectrum(name: str, runs: list[dict[str, Any]], peak: int, colors: dict[str, Any],
              out: Path) -> Path | None:
    merged: dict[str, HdrHistogram] = {}
    for run in runs:
        if run["connections"] != peak or run["status"] != RunStatus.OK or not run["load"].get("histogram"):
            continue
        histogram = HdrHistogram.decode(run["load"]["histogram"].encode("ascii"))
        variant = run.get("variant") or run["model"]
        if variant in merged:
            merged[variant].add(histogram)
        else:
            merged[variant] = histogram
    if not merged:
        return None
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    xs = [1 / (1 - p / 100) for p in _PERCENTILES]
    for variant in sorted(merged, key=lambda v: merged[v].get_value_at_percentile(99.0)):
        h = merged[variant]
        ys = [h.get_value_at_percentile(p) / 1000 for p in _PERCENTILES]
        ax.plot(xs, ys, marker="o", ms=3, label=variant, color=colors.get(variant))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"p{p:g}" for p in _PERCENTILES])
    ax.minorticks_off()
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{name}: latency percentiles at {peak:,} connections (runs merged)", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, out / f"latency_{name}.png")


def draw_charts(doc: dict[str, Any], out: Path) -> list[Path]:
    """Every chart of a results document; returns the files written, in reading order."""
    out.mkdir(parents=True, exist_ok=True)
    summary = doc["summary"]
    runs = doc["runs"]
    colors = _colors(list({r.get("variant") or r["model"] for r in summary}))
    paths: list[Path | None] = []
    scenarios = list(dict.fromkeys(r.get("scenario", "echo") for r in summary))
    for name in scenarios:
        rows = [r for r in summary if r.get("scenario", "echo") == name]
        peak = max(r["connections"] for r in rows)
        at_peak = [r for r in rows if r["connections"] == peak]
        if len({r["connections"] for r in rows}) > 1:
            paths.append(_throughput_lines(name, rows, colors, out))
        else:
            paths.append(_bars(name, f"throughput at {peak:,} connections (bars: min-max)", at_peak,
                               "rps_median", "requests/s (median)", out, f"throughput_{name}.png"))
        paths.append(_spectrum(name, [r for r in runs if r.get("scenario", "echo") == name], peak, colors,
                               out))
        efficiency = [dict(r, efficiency=r["rps_median"] / r["cpu_percent"]) for r in at_peak
                      if _ok(r) and r.get("cpu_percent")]
        paths.append(_bars(name, f"requests/s per CPU% of the server at {peak:,} connections",
                           efficiency, "efficiency", "requests/s per 1% of a core", out,
                           f"efficiency_{name}.png"))
        if any(r.get("kib_per_idle") is not None for r in at_peak):
            paths.append(_bars(name, "memory per idle connection (RSS with the horde - idle RSS)", at_peak,
                               "kib_per_idle", "KiB per idle connection", out, f"memory_idle_{name}.png",
                               lower_is_better=True))
    largest = max(summary, key=lambda r: r["connections"], default=None)
    if largest is not None:
        scenario = largest.get("scenario", "echo")
        rows = [r for r in summary if r.get("scenario", "echo") == scenario
                and r["connections"] == largest["connections"] and r.get("kib_per_connection") is not None]
        paths.append(_bars(scenario, f"memory per connection at {largest['connections']:,} connections "
                           "(RSS under load - idle RSS)", rows, "kib_per_connection", "KiB per connection",
                           out, "memory_per_connection.png", lower_is_better=True))
    return [p for p in paths if p is not None]
