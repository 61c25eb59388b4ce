"""Starting servers and the CLI from tests: one way each."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from iomodels.models import probe
from iomodels.models.serving import ServerProcess

__all__ = ["run_cli", "start_or_skip", "wait_for_workers"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``iomodels ARGS`` in a fresh interpreter; output captured as text."""
    return subprocess.run([sys.executable, "-m", "iomodels", *args], capture_output=True, text=True,
                          timeout=timeout)


def start_or_skip(model: str, args: list[str] | None = None) -> ServerProcess:
    """A started server, or the test skipped with the probe's reason where the model cannot run."""
    reason = probe(model)
    if reason is not None:
        pytest.skip(f"model {model} is unavailable here: {reason}")
    return ServerProcess(model, args=args or []).start()


def wait_for_workers(pid: int, count: int, timeout: float = 10.0) -> list[psutil.Process]:
    """The ``count`` child processes of ``pid`` once they exist; fails (never passes vacuously)
    if they do not appear within ``timeout`` seconds."""
    parent = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while True:
        children = parent.children()
        if len(children) >= count:
            return children
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} has {len(children)} workers after {timeout}s, "
                                 f"expected {count}")
        time.sleep(0.05)
