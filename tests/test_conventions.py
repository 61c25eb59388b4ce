"""What a user of wrk, hey, hyperfine or tcpkali expects: Ctrl-C keeps results, pipes get data,
the error says what to do, optional parts degrade with a hint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iomodels.models.serving import ServerProcess

from .conformance.clients import connect, roundtrip
from .helpers.running import run_cli


def _interrupt_after(cmd: list[str], seconds: float, sig: int = signal.SIGINT) -> tuple[int, str, str, float]:
    """Run ``iomodels CMD``, send ``sig`` after ``seconds``; (exit code, stdout, stderr, seconds to exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "iomodels", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(seconds)
    sent = time.monotonic()
    os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C: the whole group, workers included
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, time.monotonic() - sent


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_load_keeps_and_saves_what_ran(tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "r.json"
    with ServerProcess("epoll") as srv:
        rc, stdout, stderr, took = _interrupt_after(
            ["load", f"127.0.0.1:{srv.port}", "-c", "8", "-d", "60", "-q", "--json", str(out)], 3.0, sig)
    assert rc == code, stderr
    assert took < 2.0, f"took {took:.1f}s to stop"
    assert "Traceback" not in stderr and "interrupted" in stderr
    result = json.loads(out.read_text())
    assert result["partial"] is True and not result["ok"]
    assert result["requests"] > 0 and 0.5 < result["elapsed"] < 5  # the window until the interruption
    assert "req/s" in stdout  # the summary of what ran


def test_interrupting_compare_keeps_the_finished_runs(tmp_path: Path) -> None:
    rc, stdout, stderr, took = _interrupt_after(
        ["compare", "--models", "epoll,poll,select,asyncio", "-c", "2", "-d", "1", "--warmup", "0",
         "--repeat", "1", "--out", str(tmp_path)], 6.0)
    assert rc == 130, stdout + stderr
    assert took < 4.0
    assert "Traceback" not in stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["partial"] is True and 1 <= len(doc["runs"]) < 4
    assert "interrupted" in stdout and (tmp_path / "report.html").exists()


def test_json_to_stdout_and_hgrm(tmp_path: Path) -> None:
    hgrm = tmp_path / "lat.hgrm"
    with ServerProcess("epoll") as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "2", "-n", "300", "--json", "-",
                       "--hgrm", str(hgrm))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # only the JSON on stdout: pipe it to jq
    assert result["requests"] == 300
    assert "req/s" in proc.stderr  # the human summary moved to stderr
    text = hgrm.read_text()
    assert "Value     Percentile TotalCount 1/(1-Percentile)" in text and "#[Mean" in text


def test_summary_shows_mean_and_standard_deviation() -> None:
    with ServerProcess("epoll") as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "2", "-n", "200", "-q")
    assert proc.returncode == 0 and " mean " in proc.stdout and " ± " in proc.stdout
    assert "\n6" not in proc.stdout  # piped: no wrapped lines, no colour codes
    assert "\x1b[" not in proc.stdout


def test_a_url_target_says_what_target_is() -> None:
    proc = run_cli("load", "http://127.0.0.1:8080/")
    assert proc.returncode == 2 and "TARGET is HOST:PORT" in proc.stderr and "Traceback" not in proc.stderr


def test_a_mismatch_against_an_echo_server_suggests_expect_echo() -> None:
    with ServerProcess("epoll", args=["--service", "echo"]) as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "1", "-d", "0.5", "-q")
    assert proc.returncode == 1 and "--expect echo" in proc.stderr


def test_ipv6_addresses_are_printed_in_brackets() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with ServerProcess("epoll", host="::1") as srv:
        assert any(line.startswith("listening on [::1]:") for line in srv.lines)
        proc = run_cli("load", f"[::1]:{srv.port}", "-c", "1", "-n", "10", "-q")
    assert proc.returncode == 0, proc.stderr
    assert f"[::1]:{srv.port}" in proc.stdout


def test_stats_count_connections_that_sent_nothing_apart() -> None:
    with ServerProcess("epoll") as srv:
        connect(srv.port).close()  # what a port probe (or the load generator's preflight) does
        with connect(srv.port) as sock:
            assert roundtrip(sock, b"abc") == b"ABC"
        srv.stop()
    assert srv.stats == {"connections": 2, "bytes_in": 3, "bytes_out": 3, "errors": 0, "empty": 1,
                         "refused": 0, "idle_closed": 0}


def test_compare_without_matplotlib_still_writes_results_and_says_how_to_get_charts(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "matplotlib").mkdir(parents=True)
    (blocker / "matplotlib" / "__init__.py").write_text("raise ImportError('matplotlib is not installed', "
                                                       "name='matplotlib')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "iomodels", "compare", "--models", "epoll", "-c", "2",
                           "-d", "0.3", "--warmup", "0", "--repeat", "1", "--out", str(out),
                           "--csv", str(tmp_path / "t.csv")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "iomodels[charts]" in proc.stdout
    assert json.loads((out / "results.json").read_text())["runs"][0]["status"] == "ok"
    assert not list(out.glob("*.png")) and "iomodels[charts]" in (out / "report.html").read_text()
    assert (tmp_path / "t.csv").read_text().startswith("status,scenario,model,")
