"""The lesson's demos prove what they claim."""

from __future__ import annotations

import pytest

from iomodels.demos.coroutines import DURATIONS, run_all
from iomodels.demos.pool import default_workers, run_pool_demo


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_pool_reuses_its_workers_and_calls_back_every_task(kind: str) -> None:
    seen = []
    report = run_pool_demo(kind, workers=3, tasks=12, delay=0.05, on_result=seen.append)
    assert sorted(r.n for r in seen) == list(range(12))
    assert all(r.value == r.n * r.n for r in seen)
    assert report.results == seen  # recorded in the order the callbacks fired
    assert 1 <= report.distinct_workers <= 3
    if kind == "process":
        import os

        assert all(r.pid != os.getpid() for r in seen)


def test_pool_overlaps_its_tasks() -> None:
    # 8 tasks of 0.2 s on 4 threads: two waves, nowhere near the 1.6 s of one worker
    report = run_pool_demo("thread", workers=4, tasks=8, delay=0.2)
    assert report.distinct_workers == 4
    assert report.elapsed < 8 * 0.2 * 0.75


def test_default_pool_sizes_follow_concurrent_futures() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor() as pool:
        assert default_workers("thread") == pool._max_workers


def test_coroutines_take_the_longest_only_when_patched() -> None:
    scale = 0.06
    total, longest = sum(DURATIONS) * scale, max(DURATIONS) * scale
    sequential, unpatched, patched = run_all(scale)
    assert sequential.elapsed >= total * 0.98
    assert unpatched.elapsed >= total * 0.98  # real time.sleep blocks the hub
    assert longest * 0.98 <= patched.elapsed < longest + (total - longest) / 2
    # unpatched greenlets run one after another; patched ones all start before any ends
    assert unpatched.events[:2] == ("start job1", "end job1")
    assert patched.events[:3] == ("start job1", "start job2", "start job3")
    assert patched.events[3:] == ("end job1", "end job2", "end job3")
