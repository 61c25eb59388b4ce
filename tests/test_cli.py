"""The command line: every command has help; bad input gives one clear line and exit != 0."""

from __future__ import annotations

import socket
import subprocess

import click
import pytest
from click.testing import CliRunner

from iomodels.cli import main
from iomodels.models.serving import ServerProcess

from .helpers.running import run_cli


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        found.append((*prefix, name))
        if isinstance(cmd, click.Group):
            found += all_commands(cmd, (*prefix, name))
    return found


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def assert_clean_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run_cli("serve", "--model", "asyncio", "--port", str(port))
    assert_clean_error(proc, f"port {port}", "already in use", "--port")


def test_unknown_model_lists_the_choices() -> None:
    proc = run_cli("serve", "--model", "carrier-pigeon")
    assert_clean_error(proc, "carrier-pigeon", "blocking", "asyncio")


def test_bad_service_is_a_one_line_error() -> None:
    proc = run_cli("serve", "--model", "asyncio", "--port", "0", "--service", "nosuch.mod:f")
    assert_clean_error(proc, "cannot import", "nosuch.mod")


def test_low_water_above_high_is_refused() -> None:
    proc = run_cli("serve", "--model", "asyncio", "--port", "0", "--high-water", "10",
                   "--low-water", "20")
    assert_clean_error(proc, "--low-water")


def test_unavailable_model_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from iomodels.models import load_model

    monkeypatch.setattr(load_model("gevent"), "probe", classmethod(lambda cls: "no hub today"))
    result = CliRunner().invoke(main, ["serve", "--model", "gevent", "--port", "0"])
    assert result.exit_code == 1
    assert "not available here: no hub today" in result.output
    models = CliRunner().invoke(main, ["models"])
    assert "no hub today" in models.output


def test_models_lists_every_registered_model() -> None:
    from iomodels.models import REGISTRY

    result = CliRunner().invoke(main, ["models"], terminal_width=200)
    assert result.exit_code == 0
    for name in REGISTRY:
        assert name in result.output


def test_custom_service_by_import_path() -> None:
    with ServerProcess("threads", args=["--service", "tests.test_service:Reverser"]) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"abc")
        assert sock.recv(10) == b"cba"


def test_echo_service_changes_nothing() -> None:
    with ServerProcess("asyncio", args=["--service", "echo"]) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"abc")
        assert sock.recv(10) == b"abc"


def test_ready_line_names_address_and_model() -> None:
    with ServerProcess("gevent") as srv:
        assert srv.lines[0] == f"listening on 127.0.0.1:{srv.port} model=gevent"


def test_demo_pool_prints_its_proof() -> None:
    proc = run_cli("demo", "pool", "--workers", "2", "--tasks", "6", "--delay", "0.01")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("callback: task") == 6
    assert "served by" in proc.stdout and "created once and reused" in proc.stdout


def test_demo_coroutines_prints_three_runs() -> None:
    proc = run_cli("demo", "coroutines", "--scale", "0.02")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("sequential" in line and "the sum" in line for line in lines)
    assert any("not patched" in line and "the sum" in line for line in lines)
    assert any("monkey-patched" in line and "the longest" in line for line in lines)


def test_smoke_verifies_a_model() -> None:
    proc = run_cli("smoke", "--models", "asyncio", "--connections", "5", "--requests", "10")
    assert proc.returncode == 0, proc.stderr
    assert "asyncio" in proc.stdout and " ok " in proc.stdout
    assert "50 round trips verified, no errors" in proc.stdout


def test_smoke_rejects_unknown_models() -> None:
    proc = run_cli("smoke", "--models", "asyncio,bogus")
    assert_clean_error(proc, "bogus")


@pytest.mark.parametrize(("model", "args", "flag"), [
    ("select", ["--edge"], "--edge"),
    ("epoll", ["--workers", "2"], "--workers"),
    ("threads", ["--inner", "epoll"], "--inner"),
    ("asyncio", ["--poll-interval", "0.1"], "--poll-interval"),
])
def test_options_for_other_models_are_refused(model: str, args: list[str], flag: str) -> None:
    proc = run_cli("serve", "--model", model, "--port", "0", *args)
    assert_clean_error(proc, flag, "applies to")


@pytest.mark.parametrize("args", [
    ["load", "127.0.0.1:9", "--json", "/nonexistent-dir/x.json"],
    ["compare", "--models", "epoll", "--out", "/proc/cannot-make-this"],
])
def test_an_unwritable_output_is_refused_before_any_work(args: list[str]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "cannot" in proc.stderr and "Traceback" not in proc.stderr
