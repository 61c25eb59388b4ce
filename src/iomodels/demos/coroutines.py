"""Coroutines with gevent: one thread, switching whenever a greenlet would block.

Three jobs sleep 2, 3 and 5 seconds (times ``scale``). Run three ways:

* ``sequential``: plain calls; takes the sum (10 s).
* ``gevent, not patched``: greenlets, but ``time.sleep`` is the real one, so
  it blocks the only thread and the hub never gets to switch; still the sum.
  This is the lesson's warning: gevent cannot see IO it does not own.
* ``gevent, monkey-patched``: ``monkey.patch_all()`` makes ``time.sleep``
  cooperative; the three waits overlap and the run takes the longest (5 s).

The patched run happens in a fresh interpreter (``python -m
iomodels.demos.coroutines``), because ``patch_all`` must come before anything
else is imported and it changes the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DURATIONS", "RunResult", "run_all", "run_gevent", "run_sequential"]

DURATIONS = (2.0, 3.0, 5.0)


@dataclass(frozen=True)
class RunResult:
    label: str
    elapsed: float
    events: tuple[str, ...]  # "start job1", "end job3", ... in the order they happened


def _job(name: str, seconds: float, events: list[str]) -> None:
    events.append(f"start {name}")
    time.sleep(seconds)
    events.append(f"end {name}")


def run_sequential(scale: float) -> RunResult:
    events: list[str] = []
    start = time.perf_counter()
    for i, seconds in enumerate(DURATIONS, 1):
        _job(f"job{i}", seconds * scale, events)
    return RunResult("sequential", time.perf_counter() - start, tuple(events))


def run_gevent(scale: float, label: str) -> RunResult:
    """Spawn the three jobs as greenlets and join them (patched or not: the caller decides)."""
    import gevent

    events: list[str] = []
    start = time.perf_counter()
    greenlets = [gevent.spawn(_job, f"job{i}", s * scale, events)
                 for i, s in enumerate(DURATIONS, 1)]
    gevent.joinall(greenlets)
    return RunResult(label, time.perf_counter() - start, tuple(events))


def _run_patched_in_child(scale: float) -> RunResult:
    proc = subprocess.run(
        [sys.executable, "-m", "iomodels.demos.coroutines", str(scale)],
        capture_output=True, text=True, timeout=60 + sum(DURATIONS) * scale, check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return RunResult(data["label"], data["elapsed"], tuple(data["events"]))


def run_all(scale: float = 1.0, on_result: Callable[[RunResult], None] | None = None
            ) -> list[RunResult]:
    results = []
    for run in (lambda: run_sequential(scale),
                lambda: run_gevent(scale, "gevent, not patched"),
                lambda: _run_patched_in_child(scale)):
        result = run()
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    result = run_gevent(float(sys.argv[1]), "gevent, monkey-patched")
    print(json.dumps({"label": result.label, "elapsed": result.elapsed,
                      "events": list(result.events)}))
