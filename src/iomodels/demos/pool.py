"""Pools with done-callbacks: workers are created once and reused.

Submits ``tasks`` jobs (the square of n, after a short sleep) to a thread or
process pool from ``concurrent.futures``, attaches a done-callback to each
future, and records each result as its callback fires, with the pid and
thread id of the worker that ran it. The proof is the count of distinct
workers: never more than the pool's size, however many tasks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = ["PoolReport", "TaskResult", "default_workers", "run_pool_demo", "square"]


@dataclass(frozen=True)
class TaskResult:
    n: int
    value: int
    pid: int
    tid: int  # the kernel's thread id of the worker

    @property
    def worker(self) -> tuple[int, int]:
        return (self.pid, self.tid)


@dataclass
class PoolReport:
    kind: str
    workers: int
    tasks: int
    elapsed: float = 0.0
    results: list[TaskResult] = field(default_factory=list)  # in callback order
    callback_threads: set[int] = field(default_factory=set)

    @property
    def distinct_workers(self) -> int:
        return len({r.worker for r in self.results})


def square(n: int, delay: float) -> TaskResult:
    """The task: sleep ``delay`` seconds (IO stands in), return n squared and who ran it."""
    time.sleep(delay)
    return TaskResult(n, n * n, os.getpid(), threading.get_native_id())


def default_workers(kind: str) -> int:
    """What ``concurrent.futures`` picks when max_workers is not given."""
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return min(32, cpus + 4) if kind == "thread" else cpus


def run_pool_demo(
    kind: str = "thread",
    workers: int | None = None,
    tasks: int = 10,
    delay: float = 0.5,
    on_result: Callable[[TaskResult], None] | None = None,
) -> PoolReport:
    """Run the demo; ``on_result`` is called from each done-callback as it fires."""
    if kind not in ("thread", "process"):
        raise ValueError(f"kind must be 'thread' or 'process', not {kind!r}")
    size = workers or default_workers(kind)
    report = PoolReport(kind, size, tasks)
    lock = threading.Lock()

    def callback(future: Future[TaskResult]) -> None:
        result = future.result()
        with lock:
            report.results.append(result)
            report.callback_threads.add(threading.get_native_id())
            if on_result is not None:
                on_result(result)

    pool: Executor = (ThreadPoolExecutor if kind == "thread" else ProcessPoolExecutor)(size)
    start = time.perf_counter()
    with pool:
        for n in range(tasks):
            pool.submit(square, n, delay).add_done_callback(callback)
    report.elapsed = time.perf_counter() - start
    return report
