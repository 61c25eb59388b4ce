"""``iomodels merge``: one honest result from load runs made on several machines (or processes).

Histograms merge exactly (HdrHistogram's own add), counts add up, and the
measured windows are checked: throughput adds up only for runs that ran at the
same time, so the result says how much the windows overlapped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .runner import LOST_KINDS, SCHEMA
from .tally import ERROR_KINDS, histogram_summary, new_histogram

__all__ = ["MergeError", "merge_results"]


class MergeError(Exception):
    """A file is not a load result, or the files cannot be merged; the message says which."""


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise MergeError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise MergeError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or "histogram" not in doc:
        raise MergeError(f"{path} is not an iomodels load result (schema {SCHEMA}); "
                         "write one with 'iomodels load --json FILE'")
    return doc


def merge_results(paths: list[Path]) -> dict[str, Any]:
    """The merged result document (schema ``iomodels.load/1``, plus ``merged_from`` and ``overlap``)."""
    if len(paths) < 2:
        raise MergeError("give two or more result files to merge")
    docs = [_read(p) for p in paths]
    histogram = new_histogram()
    for doc in docs:
        histogram.add(HdrHistogram.decode(doc["histogram"].encode("ascii")))
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for doc in docs:
        for kind, count in doc["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    windows = [doc.get("window_unix") for doc in docs]
    overlap = None
    if all(windows):
        start = max(w[0] for w in windows)  # type: ignore[index]
        end = min(w[1] for w in windows)  # type: ignore[index]
        longest = max(w[1] - w[0] for w in windows)  # type: ignore[index]
        overlap = round(max(0.0, end - start) / longest, 3) if longest > 0 else 0.0
    requests = sum(doc["requests"] for doc in docs)
    elapsed = max(doc["elapsed"] for doc in docs)
    latency = histogram_summary(histogram)
    lost = sum(errors.get(k, 0) for k in LOST_KINDS)
    first = docs[0]
    workload = dict(first["workload"])
    workload["connections"] = sum(doc["workload"]["connections"] for doc in docs)
    workload["procs"] = sum(doc["workload"].get("procs", 1) for doc in docs)
    return {
        "schema": SCHEMA,
        "merged_from": [str(p) for p in paths],
        "overlap": overlap,  # shared measured time / the longest window (1.0: ran together)
        "started_at": min(doc["started_at"] for doc in docs),
        "workload": workload,
        "elapsed": elapsed,
        "requests": requests,
        # runs that ran together add their rates; runs one after another do not
        "requests_per_s": round(sum(doc["requests_per_s"] for doc in docs), 1),
        "mib_per_s": round(sum(doc.get("mib_per_s", 0.0) for doc in docs), 3),
        "bytes_sent": sum(doc.get("bytes_sent", 0) for doc in docs),
        "bytes_verified": sum(doc.get("bytes_verified", 0) for doc in docs),
        "connections_opened": sum(doc.get("connections_opened", 0) for doc in docs),
        "latency_us": latency,
        "errors": errors,
        "lost_or_wrong": lost,
        "starved_connections": sum(doc.get("starved_connections", 0) for doc in docs),
        "outstanding": sum(doc.get("outstanding", 0) for doc in docs),
        "oldest_outstanding_us": max(doc.get("oldest_outstanding_us", 0) for doc in docs),
        "ok": all(doc["ok"] for doc in docs),
        "generator_cpu_percent": round(sum(doc.get("generator_cpu_percent", 0.0) for doc in docs), 1),
        "rate": None,
        "histogram": histogram.encode().decode("ascii"),
        "host": first.get("host", {}),
    }
