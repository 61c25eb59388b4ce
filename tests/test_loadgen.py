"""The load generator: counts, verification, merging, output, and bad input."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Iterator

import pytest

from iomodels.loadgen import LoadError, Tally, Workload, run_load
from iomodels.loadgen.runner import SCHEMA
from iomodels.loadgen.tally import new_histogram
from iomodels.loadgen.workload import MessagePool, parse_size, parse_target
from iomodels.models.serving import ServerProcess

from .helpers.faulty import DroppingServer
from .helpers.running import run_cli


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("epoll") as srv:
        yield srv


# -- pure parts --------------------------------------------------------------------------
def test_tallies_merged_over_the_wire_equal_one_tally_of_everything() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(6, 1)) + 1 for _ in range(20_000)]
    parts = [Tally() for _ in range(3)]
    for i, v in enumerate(values):
        parts[i % 3].record(v, 10)
    parts[1].error("reset")
    merged = Tally()
    for part in parts:
        merged.merge(Tally.from_wire(json.loads(json.dumps(part.to_wire()))))
    reference = new_histogram()
    for v in values:
        reference.record_value(v)
    assert merged.requests == len(values) and merged.bytes_verified == 10 * len(values)
    assert merged.errors["reset"] == 1
    summary = merged.latency_summary()
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9)):
        assert summary[name] == reference.get_value_at_percentile(pct)
    assert summary["max"] == reference.get_max_value()
    assert summary["min"] == reference.get_min_value()


def test_tally_reset_keeps_only_the_connection_count() -> None:
    t = Tally()
    t.connections_opened = 5
    t.record(100, 10)
    t.error("timeout")
    t.reset()
    assert (t.requests, t.error_count, t.connections_opened) == (0, 0, 5)
    assert t.latency_summary()["p50"] == 0


def test_workload_shares_add_up() -> None:
    w = Workload(connections=101, requests=1001, rate=3000.0, procs=4, duration=None)
    shares = [w.share(i) for i in range(4)]
    assert sum(s.connections for s in shares) == 101
    assert sum(s.requests or 0 for s in shares) == 1001
    assert sum(s.rate or 0 for s in shares) == pytest.approx(3000.0)
    assert len({s.seed for s in shares}) == 4


@pytest.mark.parametrize("expect", ["upper", "echo"])
def test_message_pool_expectations(expect: str) -> None:
    pool = MessagePool(Workload(size_min=64, size_max=4096, expect=expect))
    assert all(64 <= len(m) <= 4096 for m in pool.messages)
    assert len({len(m) for m in pool.messages}) > 10
    transform = bytes.upper if expect == "upper" else bytes
    assert pool.expected == [transform(m) for m in pool.messages]


@pytest.mark.parametrize(("text", "expected"), [
    ("1024", (1024, 1024)), ("64-4096", (64, 4096)),
])
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0", "abc", "4096-64", "1-", "100000000"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_target() -> None:
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target(":9000") == ("127.0.0.1", 9000)
    assert parse_target("localhost") == ("localhost", 8080)
    assert parse_target("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_target("host:http")


def test_a_run_must_be_bounded() -> None:
    with pytest.raises(ValueError, match="bounded"):
        Workload(duration=None, requests=None)


# -- against real servers -------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_closed_loop_counts_exactly_the_requests_asked_for(server: ServerProcess, engine: str) -> None:
    w = Workload(port=server.port, connections=20, requests=3000, duration=None, engine=engine)
    result = run_load(w)
    assert result["requests"] == 3000
    assert result["bytes_verified"] == 3000 * 1024
    assert result["ok"] and result["lost_or_wrong"] == 0
    assert result["connections_opened"] == 20
    # one thread: one core at most (+ noise); the thread engine's syscalls run on every core
    ceiling = 110 if engine == "uvloop" else 100 * (os.cpu_count() or 1) + 10
    assert 0 < result["generator_cpu_percent"] <= ceiling
    lat = result["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]


def test_a_timed_closed_loop_accounts_for_every_request_and_byte(server: ServerProcess) -> None:
    """The uvloop engine's inlined step keeps counts on each connection and collects them later:
    nothing may be lost or counted twice. Without a warm-up nothing is in flight when the window
    opens, so every byte sent is verified or still outstanding at the end."""
    from hdrh.histogram import HdrHistogram

    w = Workload(port=server.port, connections=8, size_min=512, size_max=512, duration=1.5)
    result = run_load(w)
    requests = result["requests"]
    assert requests > 100 and result["ok"] and result["starved_connections"] == 0
    assert HdrHistogram.decode(result["histogram"].encode("ascii")).get_total_count() == requests
    assert result["bytes_verified"] == requests * 512
    assert result["bytes_sent"] == result["bytes_verified"] + result["outstanding"] * 512
    assert 0 < result["latency_us"]["p50"] <= result["latency_us"]["max"]


@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_open_loop_keeps_a_modest_rate(server: ServerProcess, engine: str) -> None:
    w = Workload(port=server.port, connections=10, rate=400.0, duration=2.0, engine=engine)
    result = run_load(w)
    assert result["requests"] == pytest.approx(800, rel=0.1)
    assert result["rate"]["kept"] and result["rate"]["target"] == 400.0
    assert result["workload"]["mode"] == "open"


def test_random_sizes_and_two_processes(server: ServerProcess) -> None:
    w = Workload(port=server.port, connections=10, size_min=10, size_max=5000, requests=2000,
                 duration=None, procs=2)
    result = run_load(w)
    assert result["requests"] == 2000 and result["ok"]
    assert 2000 * 10 < result["bytes_verified"] < 2000 * 5000


@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_replies_that_arrive_in_pieces_are_gathered_and_verified(server: ServerProcess,
                                                                 engine: str) -> None:
    w = Workload(port=server.port, connections=3, size_min=300_000, size_max=300_000, requests=60,
                 duration=None, engine=engine)
    result = run_load(w)
    assert result["requests"] == 60 and result["ok"]
    assert result["bytes_verified"] == 60 * 300_000


def test_warmup_is_not_counted(server: ServerProcess) -> None:
    w = Workload(port=server.port, connections=5, rate=200.0, duration=1.0, warmup=1.0)
    result = run_load(w)
    assert result["requests"] == pytest.approx(200, rel=0.15)  # one second's worth, not two


def test_a_corrupting_server_is_caught_and_fails_the_run() -> None:
    with ServerProcess("asyncio", args=["--service", "tests.helpers.faulty:CorruptEveryNth"]) as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "4", "-d", "1", "-q")
    assert proc.returncode == 1
    assert "mismatch" in proc.stdout and "wrong or lost" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_a_reply_longer_than_asked_for_is_a_mismatch(engine: str) -> None:
    with ServerProcess("epoll", args=["--service", "tests.helpers.faulty:ExtraBytes"]) as srv:
        result = run_load(Workload(port=srv.port, connections=2, duration=0.5, engine=engine))
    assert result["errors"]["mismatch"] > 0 and not result["ok"]


def test_a_server_that_drops_connections_is_caught() -> None:
    dropping = DroppingServer(keep=5000)
    try:
        result = run_load(Workload(port=dropping.port, connections=3, duration=1.0, size_min=1000,
                                   size_max=1000))
    finally:
        dropping.close()
    assert result["errors"]["short"] + result["errors"]["reset"] > 0
    assert not result["ok"]
    assert result["requests"] > 0  # the good replies before each drop still count


def test_json_output_reads_back_with_a_stable_schema(server: ServerProcess, tmp_path) -> None:
    out = tmp_path / "result.json"
    proc = run_cli("load", f"127.0.0.1:{server.port}", "-c", "5", "-n", "500", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == SCHEMA
    assert set(doc) >= {"workload", "elapsed", "requests", "requests_per_s", "mib_per_s",
                        "latency_us", "errors", "ok", "histogram", "host", "rate",
                        "generator_cpu_percent", "bytes_verified", "connections_opened"}
    assert set(doc["latency_us"]) == {"min", "mean", "stdev", "p50", "p90", "p99", "p99_9", "max"}
    assert set(doc["errors"]) == {"mismatch", "short", "reset", "timeout", "refused", "connect"}
    assert doc["host"]["cpus"] >= 1 and doc["host"]["python"]
    assert doc["workload"]["connections"] == 5 and doc["requests"] == 500
    wire = {**doc, "bytes_sent": 0, "connections_opened": 0}
    assert Tally.from_wire(wire).histogram.get_total_count() == 500


def test_nothing_listening_is_a_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        proc = run_cli("load", f"127.0.0.1:{port}", "-d", "1")
    assert proc.returncode == 1
    assert "nothing is listening" in proc.stderr and "iomodels serve" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["--size", "4096-64"], "min <= max"),
    (["--rate", "0"], "--rate"),
    (["--size", "lots"], "not a number"),
    (["-c", "2", "--procs", "3"], "--procs"),
    (["nohost:notaport"], "not a number"),
])
def test_bad_input_is_a_one_line_error(args: list[str], words: str) -> None:
    proc = run_cli("load", *args)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_load_error_is_raised_for_a_dead_target() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(LoadError, match="connection refused"):
            run_load(Workload(port=s.getsockname()[1], duration=1.0))


def test_a_server_that_dies_mid_run_fails_the_run_and_says_so() -> None:
    import threading

    srv = ServerProcess("epoll").start()
    killer = threading.Timer(0.7, srv.kill)
    killer.start()
    try:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "4", "-d", "1.5", "-q")
    finally:
        killer.join()
        srv.kill()
    assert proc.returncode == 1
    assert "stopped accepting connections" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_starved_connections_fail_the_run_and_are_named(engine: str, tmp_path) -> None:
    """blocking serves one client at a time: 9 of 10 connections never get a reply. Fast answers
    to the one client it serves must not make the run look fine."""
    out = tmp_path / "r.json"
    with ServerProcess("blocking") as srv:
        proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "10", "-d", "1", "--timeout", "30",
                       "--engine", engine, "-q", "--json", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "9 of 10 connections got no reply" in proc.stderr and "Traceback" not in proc.stderr
    assert "9 of 10 connections completed no request" in proc.stdout
    result = json.loads(out.read_text())
    assert result["starved_connections"] == 9 and not result["ok"]
    assert result["outstanding"] >= 9 and result["oldest_outstanding_us"] >= 900_000
    assert result["requests"] > 0  # the one client it served was served well


def test_merge_adds_counts_and_merges_histograms_exactly(tmp_path) -> None:
    from hdrh.histogram import HdrHistogram

    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    with ServerProcess("epoll") as srv:
        for path, n in ((a, "500"), (b, "700")):
            proc = run_cli("load", f"127.0.0.1:{srv.port}", "-c", "2", "-n", n, "-q", "--json", str(path))
            assert proc.returncode == 0, proc.stderr
    proc = run_cli("merge", str(a), str(b), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(out.read_text())
    assert merged["requests"] == 1200 and merged["merged_from"] == [str(a), str(b)]
    reference = HdrHistogram.decode(json.loads(a.read_text())["histogram"].encode())
    reference.add(HdrHistogram.decode(json.loads(b.read_text())["histogram"].encode()))
    assert reference.get_total_count() == 1200
    assert merged["latency_us"]["p99"] == reference.get_value_at_percentile(99.0)
    assert merged["latency_us"]["p50"] == reference.get_value_at_percentile(50.0)
    assert "overlap by" in proc.stderr  # one after the other: their rates do not add up
    bad = run_cli("merge", str(a), str(tmp_path / "nope.json"))
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("engine", ["uvloop", "threads"])
def test_open_loop_counts_requests_that_came_due_but_were_never_sent(engine: str) -> None:
    """2 connections to a server that holds each reply 50 ms can complete ~40 req/s; at 400 req/s
    the rest come due while their connection still waits: counted as missed, not hidden."""
    with ServerProcess("epoll", args=["--latency-ms", "50"]) as srv:
        result = run_load(Workload(port=srv.port, connections=2, rate=400.0, duration=1.5, engine=engine,
                                   size_min=64, size_max=64))
    rate = result["rate"]
    assert not rate["kept"] and rate["missed"] > 0
    due = 400.0 * result["elapsed"]
    assert 0.8 * due <= result["requests"] + rate["missed"] <= 1.2 * due, (result["requests"], rate)


def test_a_connection_count_beyond_the_open_files_limit_is_refused_with_the_limit_named() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 100_000:
        pytest.skip(f"the open-files limit here ({hard}) holds 100,000 connections")
    proc = run_cli("load", "127.0.0.1:9", "-c", "100000", "-d", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "RLIMIT_NOFILE" in proc.stderr and f"{hard:,}" in proc.stderr and "--procs" in proc.stderr
