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


def _number_options() -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(command path, option, args a command needs anyway) for every float-valued option."""
    from iomodels.clitypes import Number

    needs = {("serve",): ["-m", "nonblocking"]}
    found = []
    for path in all_commands(main):
        cmd: click.Command = main
        for part in path:
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        for param in cmd.params:
            if isinstance(param, click.Option) and isinstance(param.type, Number):
                found.append((path, param.opts[0], needs.get(path, [])))
    return found


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("path", "option", "needs"), _number_options(),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v))
def test_every_float_option_refuses_non_finite_values(path: tuple[str, ...], option: str, needs: list[str],
                                                      value: str) -> None:
    result = CliRunner().invoke(main, [*path, *needs, f"{option}={value}"])
    assert result.exit_code == 2, result.output
    assert "is not a finite number" in result.output and option in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


def test_durations_rates_and_counts_take_units() -> None:
    from iomodels.clitypes import Count, Duration, Rate

    assert Duration(0).convert("500ms", None, None) == 0.5
    assert Duration(0).convert("2m", None, None) == 120.0
    assert Duration(0).convert("30s", None, None) == 30.0
    assert Rate(0).convert("20k", None, None) == 20_000.0
    assert Count(1).convert("10k", None, None) == 10_000
    with pytest.raises(click.BadParameter, match="whole number"):
        Count(1).convert("1.5", None, None)
    with pytest.raises(click.BadParameter, match=r"durations: 1\.5, 500ms"):
        Duration(0).convert("5 parsecs", None, None)


def test_check_refuses_a_target_off_this_machine_and_a_dead_one() -> None:
    proc = run_cli("check", "192.0.2.1:80", "--quick")
    assert proc.returncode == 1 and "not a loopback address" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening
    proc = run_cli("check", f"127.0.0.1:{port}", "--quick")
    assert proc.returncode == 1 and "start the server first" in proc.stderr, proc.stderr
    proc = run_cli("check", "127.0.0.1:1", "--only", "slowloris,nope")
    assert proc.returncode == 2 and "unknown attack 'nope'" in proc.stderr, proc.stderr
