"""Load from many machines through Locust: a headless master and two workers on this machine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iomodels.models.serving import ServerProcess

from .helpers.running import run_cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="the locust extra is not installed (pip install 'iomodels[locust]')")


def _locust() -> list[str]:
    exe = shutil.which("locust", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "locust"]


def _locustfile() -> str:
    # not `import iomodels.locust`: importing locust monkey-patches this process with gevent
    import iomodels

    return str(Path(iomodels.__file__).parent / "locust.py")


def _distributed(port: int, out: Path, *extra: str, seconds: int = 4) -> tuple[str, str]:
    """A headless master expecting 2 workers, and the 2 workers; returns the master's output."""
    common = ["-f", _locustfile(), "--host", f"127.0.0.1:{port}"]
    master = subprocess.Popen([*_locust(), *common, "--headless", "--master", "--expect-workers", "2",
                               "--master-bind-port", "5599", "-u", "8", "-r", "8",
                               "-t", f"{seconds}s", "--iomodels-json", str(out), "--only-summary", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent)
    workers = [subprocess.Popen([*_locust(), *common, "--worker", "--master-port", "5599"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out.parent)
               for _ in range(2)]
    try:
        stdout, stderr = master.communicate(timeout=60)
    finally:
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        if master.poll() is None:
            master.kill()
    return stdout, stderr


def test_master_and_two_workers_verify_every_reply_and_merge_microsecond_histograms(tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    with ServerProcess("epoll") as srv:
        stdout, stderr = _distributed(srv.port, out)
    assert srv.stats is not None and srv.stats["errors"] == 0  # the users drained, nobody reset
    doc = json.loads(out.read_text())
    assert doc["source"] == "locust" and doc["locust_workers"] == 2
    assert doc["requests"] > 1000 and doc["ok"] and doc["lost_or_wrong"] == 0
    assert 0 < doc["latency_us"]["p50"] <= doc["latency_us"]["p99"]  # microseconds, not whole ms
    assert "Aggregated" in stdout + stderr
    proc = run_cli("merge", str(out), str(out), "--json", str(tmp_path / "twice.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "twice.json").read_text())["requests"] == 2 * doc["requests"]


def test_an_echo_server_checked_for_upper_case_fails_as_mismatch(tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    with ServerProcess("epoll", args=["--service", "echo"]) as srv:
        stdout, stderr = _distributed(srv.port, out, "--expect", "upper", seconds=3)
    doc = json.loads(out.read_text())
    assert doc["errors"]["mismatch"] > 0 and not doc["ok"]
    assert "mismatch" in stdout + stderr  # Locust groups the failures by kind
