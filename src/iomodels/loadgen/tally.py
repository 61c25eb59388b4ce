"""Counting a run: requests, bytes, errors by kind, and latency in an HdrHistogram.

Latencies are kept in microseconds. The hot path only bumps a counter per
distinct microsecond value (a dict increment; the uvloop engine counts below
100 ms in a list first and adds it here at the end); they are recorded into the
HdrHistogram with their counts when the tally is closed, which gives exactly
the histogram that recording one by one would, at a fraction of the cost.
Tallies from several processes merge through HdrHistogram's own encoding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["ERROR_KINDS", "PERCENTILES", "Tally", "histogram_summary", "new_histogram"]

ERROR_KINDS = ("mismatch", "short", "reset", "timeout", "refused", "connect")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 3_600_000_000, 3  # 1 us .. 1 hour, 3 significant digits


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


@dataclass
class Tally:
    requests: int = 0
    bytes_sent: int = 0
    bytes_verified: int = 0
    connections_opened: int = 0
    cpu_seconds: float = 0.0  # the generator's CPU over the measured window
    starved: int = 0  # connections that completed no request in the measured window
    outstanding: int = 0  # requests still unanswered when the run ended
    oldest_wait_us: int = 0  # how long the oldest of them had waited by then
    missed: int = 0  # open loop: requests that came due in the window but were never sent
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    latencies: Counter[int] = field(default_factory=Counter)  # microseconds -> count
    histogram: HdrHistogram = field(default_factory=new_histogram)

    def record(self, latency_us: int, nbytes: int) -> None:
        """One verified request (the engines inline this; kept for clarity and tests)."""
        self.requests += 1
        self.bytes_verified += nbytes
        self.latencies[latency_us] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def close(self) -> Tally:
        """Move the pending latencies into the histogram."""
        record = self.histogram.record_value
        for value, count in self.latencies.items():
            record(min(max(value, _LOWEST_US), _HIGHEST_US), count)
        self.latencies.clear()
        return self

    def reset(self) -> None:
        """Forget everything counted so far (end of warm-up); keep the connection count."""
        opened = self.connections_opened
        self.__init__()  # type: ignore[misc]
        self.connections_opened = opened

    # -- merging across processes ---------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        self.close()
        return {
            "requests": self.requests,
            "bytes_sent": self.bytes_sent,
            "bytes_verified": self.bytes_verified,
            "connections_opened": self.connections_opened,
            "cpu_seconds": self.cpu_seconds,
            "starved": self.starved,
            "outstanding": self.outstanding,
            "oldest_wait_us": self.oldest_wait_us,
            "missed": self.missed,
            "errors": dict(self.errors),
            "histogram": self.histogram.encode().decode("ascii"),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Tally:
        tally = cls(requests=data["requests"], bytes_sent=data["bytes_sent"],
                    bytes_verified=data["bytes_verified"], connections_opened=data["connections_opened"],
                    cpu_seconds=data.get("cpu_seconds", 0.0), errors=dict(data["errors"]))
        tally.starved = data.get("starved", 0)
        tally.outstanding = data.get("outstanding", 0)
        tally.oldest_wait_us = data.get("oldest_wait_us", 0)
        tally.missed = data.get("missed", 0)
        tally.histogram = HdrHistogram.decode(data["histogram"].encode("ascii"))
        return tally

    def merge(self, other: Tally) -> Tally:
        self.close()
        other.close()
        self.requests += other.requests
        self.bytes_sent += other.bytes_sent
        self.bytes_verified += other.bytes_verified
        self.connections_opened += other.connections_opened
        self.cpu_seconds += other.cpu_seconds
        self.starved += other.starved
        self.outstanding += other.outstanding
        self.oldest_wait_us = max(self.oldest_wait_us, other.oldest_wait_us)
        self.missed += other.missed
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.histogram.add(other.histogram)
        return self

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def latency_summary(self) -> dict[str, float]:
        """min, mean, standard deviation, percentiles and max, in microseconds (zeros when empty)."""
        self.close()
        return histogram_summary(self.histogram)


def histogram_summary(h: HdrHistogram) -> dict[str, float]:
    """min, mean, standard deviation, percentiles and max of ``h`` (zeros when it is empty)."""
    if not h.get_total_count():
        return dict.fromkeys(("min", "mean", "stdev", *PERCENTILES, "max"), 0.0)
    summary = {"min": float(h.get_min_value()), "mean": round(h.get_mean_value(), 1),
               "stdev": round(h.get_stddev(), 1)}
    for name, pct in PERCENTILES.items():
        summary[name] = float(h.get_value_at_percentile(pct))
    summary["max"] = float(h.get_max_value())
    return summary
