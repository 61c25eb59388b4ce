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
    for name in ("throughput_echo.png", "latency_echo.png", "efficiency_echo.png",
                 "memory_per_connection.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[0] > 100  # decodes as a real image
        assert base64.b64encode(png.read_bytes()).decode() in html  # embedded: self-contained
    assert html.index("Verdict") < html.index("Charts") < html.index("Results")  # the answer first
    assert "epoll" in html


def test_a_model_that_cannot_serve_a_configuration_is_reported_with_its_reason(small_compare) -> None:
    out, proc = small_compare
    doc = json.loads((out / "results.json").read_text())
    rows = {(s["model"], s["connections"]): s for s in doc["summary"]}
    assert rows[("blocking", 1)]["status"] == "ok"
    failed = rows[("blocking", 8)]
    assert failed["status"] == "failed"
    assert "serves 1 client at a time: 7 of 8 connections starved" in failed["reason"]
    assert failed["p99_us"] > 0 and failed["rps_median"] > 0  # latency of the one it served, kept
    html = (out / "report.html").read_text()
    assert "blocking fails: serves 1 client at a time: 7 of 8 connections starved" in html
    assert "echo: blocking x8: failed" in proc.stdout


def test_report_re_renders_the_same_table(small_compare, tmp_path: Path) -> None:
    out, _ = small_compare
    original = json.loads((out / "results.json").read_text())
    proc = run_cli("report", str(out / "results.json"), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").exists() and (tmp_path / "throughput_echo.png").exists()
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


# -- the verdict, from synthetic summaries --------------------------------------------------------

def _row(variant: str, rps: float, spread: float = 0.0, runs: int = 3, status: str = "ok",
         family: str = "readiness", connections: int = 100, scenario: str = "echo", **extra) -> dict:
    row = {"scenario": scenario, "variant": variant, "model": variant.split("+")[0], "family": family,
           "connections": connections, "runs": runs, "ok_runs": runs if status == "ok" else 0,
           "status": status, "reason": extra.pop("reason", ""), "rps_median": rps,
           "rps_min": rps - spread, "rps_max": rps + spread, "p50_us": 100.0, "p99_us": 1e6 / rps,
           "p99_min": 1e6 / rps, "p99_max": 1e6 / rps, "load_cpu_percent": 50.0}
    return row | extra


def test_overlapping_spreads_are_a_tie_and_the_rest_are_ranked() -> None:
    from iomodels.report.verdict import verdicts

    summary = [_row("epoll", 100_000, 5_000), _row("uvloop", 96_000, 3_000), _row("select", 70_000, 2_000),
               _row("blocking", 900, status="failed", family="blocking",
                    reason="serves 1 client at a time: 99 of 100 connections starved (no reply in 5 s)")]
    [v] = verdicts(summary, repeats=3)
    assert v.best == ["epoll", "uvloop"]  # 95-105k and 93-99k overlap: tied, not ranked
    assert v.others == ["select (0.70x)"]
    assert v.failed == ["blocking fails: serves 1 client at a time: 99 of 100 connections starved "
                        "(no reply in 5 s)"]
    assert "tied within the noise" in " ".join(v.sentences())
    assert not any("One run per point" in n for n in v.notes)


def test_spreads_that_do_not_overlap_are_ranked_even_when_close() -> None:
    from iomodels.report.verdict import verdicts

    [v] = verdicts([_row("epoll", 100_000, 500), _row("poll", 98_000, 500)], repeats=3)
    assert v.best == ["epoll"] and v.others == ["poll (0.98x)"]


def test_a_single_repeat_warns_and_ties_within_the_noise_band() -> None:
    from iomodels.report.verdict import SINGLE_RUN_NOISE, verdicts

    close = 100_000 * (1 - SINGLE_RUN_NOISE / 2)
    summary = [_row("epoll", 100_000, runs=1), _row("poll", close, runs=1), _row("select", 50_000, runs=1)]
    [v] = verdicts(summary, repeats=1)
    assert v.best == ["epoll", "poll"] and v.others == ["select (0.50x)"]
    assert any("differences under 15% mean nothing" in n for n in v.notes)


def test_a_saturated_load_generator_is_named_as_the_limit() -> None:
    from iomodels.report.verdict import verdicts

    [v] = verdicts([_row("uvloop", 120_000, 1_000, load_cpu_percent=99.0)], repeats=3, load_cores=1)
    assert any("limited by it" in n for n in v.notes)


def test_advice_names_the_winners_of_each_question() -> None:
    from iomodels.report.verdict import advice, verdicts

    summary = [
        _row("threads", 9_000, 100, scenario="backend", family="blocking"),
        _row("epoll", 8_950, 100, scenario="backend"),
        _row("blocking", 99, scenario="backend", status="failed", family="blocking", reason="starved"),
        _row("prefork", 9_000, 200, scenario="cpu", family="process"),
        _row("epoll", 4_900, 100, scenario="cpu"),
        _row("epoll", 40_000, 500, scenario="idle-horde", connections=10, kib_per_idle=1.2),
        _row("threads", 30_000, 500, scenario="idle-horde", connections=10, family="blocking",
             kib_per_idle=30.0),
    ]
    found = verdicts(summary, repeats=3)
    text = advice(found)
    assert "mostly waits" in text and "threads and epoll" in text
    assert "mostly computes, choose prefork" in text
    assert "many idle clients, choose epoll" in text
    horde = next(v for v in found if v.scenario == "idle-horde")
    assert horde.metric.startswith("p99") and "epoll 1.2 KiB, threads 30.0 KiB" in " ".join(horde.notes)


def test_scenarios_run_with_their_flags_and_the_idle_horde_is_measured(tmp_path: Path) -> None:
    proc = run_cli("compare", "--scenario", "backend,idle-horde", "--models", "epoll,threads",
                   "--connections", "4", "--idle", "300", "--latency-ms", "20", "--duration", "0.6",
                   "--warmup", "0.2", "--repeat", "1", "--out", str(tmp_path), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["scenarios"]["backend"]["how"] == "1,024 B messages, 20 ms backend wait per reply"
    runs = {(r["scenario"], r["model"]): r for r in doc["runs"]}
    backend = runs[("backend", "epoll")]
    assert backend["status"] == "ok"
    assert 20_000 <= backend["load"]["latency_us"]["p50"] < 60_000  # every reply waited its 20 ms
    assert backend["load"]["requests_per_s"] <= 4 / 0.020 * 1.05  # 4 clients, one reply per 20 ms each
    for model in ("epoll", "threads"):
        horde = runs[("idle-horde", model)]
        assert horde["status"] == "ok", horde["reason"]
        assert horde["server"]["idle_answered"] == 300
        assert horde["server"]["stats"]["connections"] >= 304
    # a thread per idle connection costs more memory than a slot in an event loop
    assert runs[("idle-horde", "threads")]["server"]["kib_per_idle"] > \
        runs[("idle-horde", "epoll")]["server"]["kib_per_idle"]
    html = (tmp_path / "report.html").read_text()
    assert "Memory per idle connection" in html and "memory_idle_idle-horde" in html


def test_unknown_or_empty_scenario_is_a_usage_error() -> None:
    for bad in ("telepathy", "", "echo,,cpu"):
        proc = run_cli("compare", "--scenario", bad)
        assert proc.returncode == 2 and "--scenario" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("compare", "--scenario", "echo", "--latency-ms", "5")
    assert proc.returncode == 2 and "changes the backend scenario" in proc.stderr


def test_a_model_that_spins_a_core_to_keep_up_is_named_and_not_advised() -> None:
    from iomodels.report.verdict import advice, verdicts

    summary = [_row("nonblocking", 9_400, 100, scenario="backend", cpu_percent=99.6),
               _row("epoll", 9_350, 100, scenario="backend", cpu_percent=35.0),
               _row("uvloop", 8_500, 50, scenario="backend", cpu_percent=40.0)]
    [v] = verdicts(summary, repeats=3)
    assert v.best == ["nonblocking", "epoll"] and v.costly == ["nonblocking"]
    assert any("burning a core (100% CPU" in n for n in v.notes)
    text = advice([v])
    assert "choose epoll" in text and "not nonblocking, which kept up only by burning a core" in text
