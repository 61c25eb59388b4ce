"""iomodels compare and report: real small runs, real files."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from iomodels.report.compare_table import summary_rows
from iomodels.report.render import ReportError, load_results
from iomodels.results import summarize

from .helpers.running import run_cli


@pytest.fixture(scope="module")
def small_compare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("report")
    proc = run_cli("compare", "--models", "epoll,blocking", "--connections", "1,8", "--duration", "1",
                   "--warmup", "0.2", "--repeat", "2", "--out", str(out))
    return out, proc


def test_compare_writes_results_charts_and_html(small_compare) -> None:
    out, proc = small_compare
    assert proc.returncode == 0, proc.stderr  # blocking x8 fails, but not every run does
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == "iomodels.compare/1"
    assert len(doc["runs"]) == 2 * 2 * 2
    assert doc["host"]["cpus"] >= 1 and "server_cores" in doc["pinning"]
    epoll = [r for r in doc["runs"] if r["model"] == "epoll"]
    assert all(r["status"] == "ok" for r in epoll)
    for r in epoll:
        assert r["load"]["requests"] > 0 and r["load"]["ok"]
        assert r["server"]["rss_load"] >= r["server"]["rss_idle"] > 0
        assert r["server"]["stats"]["connections"] >= r["connections"]
    html = (out / "report.html").read_text()
    for name in ("throughput.png", "latency_p99.png", "memory_per_connection.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[0] > 100  # decodes as a real image
        assert base64.b64encode(png.read_bytes()).decode() in html  # embedded: self-contained
    assert "Reading" in html and "epoll" in html


def test_a_model_that_cannot_serve_a_configuration_is_reported_with_its_reason(small_compare) -> None:
    out, proc = small_compare
    doc = json.loads((out / "results.json").read_text())
    rows = {(s["model"], s["connections"]): s for s in doc["summary"]}
    assert rows[("blocking", 1)]["status"] == "ok"
    failed = rows[("blocking", 8)]
    assert failed["status"] == "failed" and "timeout" in failed["reason"]
    assert "blocking" in (out / "report.html").read_text()
    assert "blocking x8: failed" in proc.stdout


def test_report_re_renders_the_same_table(small_compare, tmp_path: Path) -> None:
    out, _ = small_compare
    original = json.loads((out / "results.json").read_text())
    proc = run_cli("report", str(out / "results.json"), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").exists() and (tmp_path / "throughput.png").exists()
    assert summary_rows(load_results(out / "results.json")["summary"]) == summary_rows(original["summary"])


def test_compare_fails_only_when_every_run_failed(tmp_path: Path) -> None:
    proc = run_cli("compare", "--models", "blocking", "--connections", "6", "--duration", "0.5",
                   "--warmup", "0", "--repeat", "1", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "every run failed" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "results.json").exists()  # still written: failures are results too


def test_report_of_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        load_results(tmp_path / "nope.json")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something else"}')
    proc = run_cli("report", str(other))
    assert proc.returncode == 1 and "not an iomodels compare result" in proc.stderr


def test_summary_takes_median_and_spread_over_successful_runs() -> None:
    def run(rps: float, status: str = "ok") -> dict:
        return {"model": "m", "family": "readiness", "connections": 10, "status": status, "reason": "x",
                "load": {"requests_per_s": rps, "latency_us": {"p50": rps / 100, "p99": rps / 10},
                         "errors": {"timeout": 0}},
                "server": {"cpu_percent": 50.0, "rss_load": 2 << 20, "kib_per_connection": 3.0}}

    [row] = summarize([run(100.0), run(300.0), run(200.0), run(999.0, "failed")])
    assert row["status"] == "ok" and row["ok_runs"] == 3 and row["runs"] == 4
    assert (row["rps_median"], row["rps_min"], row["rps_max"]) == (200.0, 100.0, 300.0)
    assert row["p99_us"] == 20.0 and row["rss_mib"] == 2.0
    assert row["reason"] == "1 of 4 runs failed"


def test_summary_says_when_an_open_loop_rate_was_not_kept() -> None:
    run = {"model": "m", "family": "readiness", "connections": 10, "status": "ok", "reason": "",
           "load": {"requests_per_s": 900.0, "latency_us": {"p50": 10.0, "p99": 20.0},
                    "errors": {}, "rate": {"target": 1000.0, "achieved": 900.0, "kept": False}},
           "server": {"cpu_percent": 99.0, "rss_load": 1 << 20, "kib_per_connection": 1.0}}
    [row] = summarize([run])
    assert row["status"] == "ok"
    assert row["reason"] == "target rate not kept in 1 run(s): 900 of 1,000 req/s"


def test_bad_connection_list_is_a_usage_error() -> None:
    proc = run_cli("compare", "--connections", "1,lots")
    assert proc.returncode == 2 and "--connections" in proc.stderr
    proc = run_cli("compare", "--models", "epoll,telepathy")
    assert proc.returncode == 2 and "telepathy" in proc.stderr
