"""The ``iomodels`` command line: models, serve, load, compare, report, smoke, demo."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import click

from . import __version__
from .clitypes import Count, Duration, Number, Rate
from .costs import OFFLOAD_KINDS, RequestCost
from .models import REGISTRY
from .models.prefork import INNER_MODELS
from .scenarios import SCENARIOS

SCENARIO_NAMES = tuple(SCENARIOS)

MODEL_CHOICE = click.Choice(list(REGISTRY))


# every option can also come from the environment: IOMODELS_<COMMAND>_<OPTION>, e.g.
# IOMODELS_LOAD_CONNECTIONS=200 or IOMODELS_COMPARE_REPEAT=5
@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "IOMODELS"})
@click.version_option(__version__, prog_name="iomodels")
def main() -> None:
    """Serve one TCP service under every classic Unix IO model, and compare them."""
    from .models.serving import LOG_PREFIX

    logging.basicConfig(level=logging.WARNING, format=LOG_PREFIX + "%(message)s", stream=sys.stderr)


@main.command("models")
def models_cmd() -> None:
    """List the IO models: family, whether they run here (or why not), what they are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .models import describe

    table = Table(title="IO models")
    for column in ("model", "family", "available", "description"):
        table.add_column(column)
    for name in REGISTRY:
        info = describe(name)
        reason = escape(info.unavailable or "")
        status = "[green]yes[/green]" if info.available else f"[red]no[/red]: {reason}"
        table.add_row(name, info.family, status, info.summary)
    Console().print(table)


@main.command("serve")
@click.option("--model", "-m", "model", type=MODEL_CHOICE, required=True, help="IO model to serve with.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", "-p", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind; 0 picks a free one.")
@click.option("--service", default="upper", show_default=True,
              help="upper, echo, or package.module:factory.")
@click.option("--high-water", default=256 * 1024, show_default=True, type=click.IntRange(1),
              help="Stop reading from a client with this many reply bytes unsent.")
@click.option("--low-water", default=None, type=click.IntRange(0),
              help="Resume reading once unsent bytes drop to this (default high/4).")
@click.option("--grace", default=5.0, show_default=True, type=Duration(0, 3600),
              help="Seconds given to connections to finish after SIGINT/SIGTERM.")
@click.option("--idle-timeout", default=60.0, show_default=True, type=Duration(0, 86_400),
              help="Close a connection silent this long (no input, nothing to send); 0 never does.")
@click.option("--max-connections", type=click.IntRange(0), default=None,
              help="Stop accepting at this many connections; new clients wait in the backlog until "
                   "one closes (default: the open-files limit less 32; 0: no limit of its own).")
@click.option("--latency-ms", type=Number(0, 60_000), default=0.0, show_default=True,
              help="Hold each reply back this long, as if waiting on a backend (others keep being served).")
@click.option("--cpu-us", type=Number(0, 10_000_000), default=0.0, show_default=True,
              help="Microseconds of real CPU work (pure Python, holds the GIL) per received chunk.")
@click.option("--offload", type=click.Choice(OFFLOAD_KINDS), default="none", show_default=True,
              help="Run the CPU work in a thread or process pool; the reply comes back by done-callback.")
@click.option("--pool-workers", type=click.IntRange(1, 256), default=None,
              help="Size of the --offload pool (default: threads min(32, cpus+4), processes cpus).")
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="threadpool: threads (default min(32, cpus+4)); prefork: processes (default cpus).")
@click.option("--inner", type=click.Choice(INNER_MODELS), default=None,
              help="prefork: the model each worker runs (default uvloop, else epoll).")
@click.option("--reuse-port", is_flag=True, help="prefork: a SO_REUSEPORT socket per worker.")
@click.option("--edge", is_flag=True, help="epoll: edge-triggered (read and write until EAGAIN).")
@click.option("--poll-interval", type=Duration(0, 10), default=None,
              help="nonblocking: seconds to sleep between sweeps (default 0: pure busy loop).")
@click.pass_context
def serve_cmd(ctx: click.Context, model: str, host: str, port: int, service: str, high_water: int,
              low_water: int | None, grace: float, idle_timeout: float, max_connections: int | None,
              latency_ms: float, cpu_us: float, offload: str, pool_workers: int | None,
              **model_options: object) -> None:
    """Serve the upper-case echo service (or SERVICE) under one IO model.

    Prints 'listening on HOST:PORT model=M' when ready. SIGINT/SIGTERM stop it
    cleanly; the last line gives its statistics as JSON.
    """
    from .models import ServeOptions
    from .models.serving import ModelUnavailable, run_server
    from .net import ListenError
    from .service import Limits, ServiceLoadError, load_service

    try:
        factory = load_service(service)
        low = high_water // 4 if low_water is None else low_water
        if low > high_water:
            raise click.BadParameter(f"{low} is above --high-water {high_water}",
                                     param_hint="--low-water")
        if offload != "none" and not cpu_us:
            raise click.BadParameter("moves the CPU work to a pool: give --cpu-us too",
                                     param_hint="--offload")
        if pool_workers is not None and offload == "none":
            raise click.BadParameter("sizes the --offload pool: give --offload thread or process",
                                     param_hint="--pool-workers")
        cost = RequestCost(latency_ms, cpu_us, offload, pool_workers)
        given = {name: value for name, value in model_options.items()
                 if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
        _check_model_options(model, given)
        options = ServeOptions(service=factory, limits=Limits(high_water, low), grace=grace, cost=cost,
                               idle_timeout=idle_timeout, max_connections=max_connections,
                               **given)  # type: ignore[arg-type]
        run_server(model, host, port, options)
        # served and reported: a late signal must not turn a clean exit into "killed by SIGTERM"
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    except (ListenError, ModelUnavailable, ServiceLoadError) as exc:
        raise click.ClickException(str(exc)) from None


def _check_model_options(model: str, given: dict[str, object]) -> None:
    """Refuse a model option (a ServeOptions field) that the model does not declare in ``accepts``."""
    from .models import load_model
    from .models.base import model_options

    unknown = set(given) - set(model_options())
    if unknown:  # a click option without a ServeOptions field: a bug here, not the user's
        raise RuntimeError(f"serve options {sorted(unknown)} have no ServeOptions field")
    accepts = load_model(model).accepts
    for name in given:
        if name not in accepts:
            takers = [m for m in REGISTRY if name in load_model(m).accepts]
            raise click.BadParameter(f"applies to {' and '.join(takers)}, not to {model}",
                                     param_hint="--" + name.replace("_", "-"))


@main.command("load")
@click.argument("target", default="127.0.0.1:8080", required=False)
@click.option("--connections", "-c", type=Count(1, 100_000), default=100, show_default=True)
@click.option("--size", "-s", default="1024", show_default=True,
              help="Message size in bytes, or a range like 64-4096 for random sizes.")
@click.option("--duration", "-d", type=Duration(0, 86_400, low_open=True), default=None,
              help="Seconds to measure (default 10 unless --requests is given).")
@click.option("--requests", "-n", type=Count(1), default=None,
              help="Stop after this many verified requests.")
@click.option("--warmup", type=Duration(0, 3600), default=0.0, show_default=True,
              help="Seconds of load before measuring (not counted).")
@click.option("--rate", "-r", type=Rate(0, 1e8, low_open=True), default=None,
              help="Open loop: requests/s over all connections (default: closed loop).")
@click.option("--expect", type=click.Choice(["upper", "echo"]), default="upper", show_default=True,
              help="How a reply is verified.")
@click.option("--engine", type=click.Choice(["uvloop", "threads"]), default="uvloop", show_default=True)
@click.option("--procs", "-P", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes; their histograms are merged.")
@click.option("--connect-rate", type=Rate(0, 1e7, low_open=True), default=None,
              help="New connections per second.")
@click.option("--timeout", type=Duration(0, 3600, low_open=True), default=10.0, show_default=True,
              help="Seconds before an unanswered request counts as a timeout.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the full result (with the histogram and host facts) here; - for stdout.")
@click.option("--hgrm", "hgrm_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the latency percentile spectrum in HdrHistogram's .hgrm text format (ms).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.pass_context
def load_cmd(ctx: click.Context, target: str, connections: int, size: str, duration: float | None,
             requests: int | None, warmup: float, rate: float | None, expect: str, engine: str, procs: int,
             connect_rate: float | None, timeout: float, json_path: str | None, hgrm_path: str | None,
             quiet: bool) -> None:
    """Drive TARGET (HOST:PORT) with verified request/response load.

    Every reply byte is checked against the expected transform. Exits non-zero
    if any reply was wrong or lost (mismatch, short, reset, timeout).
    """

    from .loadgen import LoadError, Workload, run_load
    from .loadgen.workload import parse_size, parse_target
    from .report.terminal import print_load_result, progress_printer, write_hgrm

    try:
        host, port = parse_target(target)
        size_min, size_max = parse_size(size)
        if rate is not None and rate <= 0:
            raise click.BadParameter("must be positive (leave it out for a closed loop)",
                                     param_hint="--rate")
        if connect_rate is not None and connect_rate <= 0:
            raise click.BadParameter("must be positive", param_hint="--connect-rate")
        if procs > connections:
            raise click.BadParameter(f"{procs} processes for {connections} connections",
                                     param_hint="--procs")
        workload = Workload(
            host=host, port=port, connections=connections, size_min=size_min, size_max=size_max,
            duration=duration if duration is not None or requests is not None else 10.0,
            requests=requests, warmup=warmup, rate=rate, expect=expect, engine=engine, procs=procs,
            connect_rate=connect_rate, timeout=timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for path, option in ((json_path, "--json"), (hgrm_path, "--hgrm")):
        if path and path != "-":  # find out now, not after the run, that the result cannot be saved
            _check_writable_file(path, option)
    to_stdout = "-" in (json_path, hgrm_path)
    with _sigterm_as_interrupt() as received:
        try:
            with progress_printer(quiet) as on_progress:
                result = run_load(workload, on_progress)
        except LoadError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted before the load started: nothing measured", err=True)
            ctx.exit(143 if received else 130)
    print_load_result(result, err=to_stdout)  # the data goes to stdout: the summary to stderr
    if json_path:
        _write_json(result, json_path)
    if hgrm_path:
        write_hgrm(result, hgrm_path)
    if result.get("partial"):
        click.echo(f"interrupted: the figures above cover the {result['elapsed']:.2f} s measured before "
                   "it" + (f" (saved, marked partial, in {json_path})" if json_path and json_path != "-"
                           else ""), err=True)
        ctx.exit(143 if received else 130)
    if not result["ok"]:
        errors = result["errors"]
        starved = result.get("starved_connections", 0)
        if result["lost_or_wrong"]:
            message = f"{result['lost_or_wrong']} replies were wrong or lost"
            if errors["mismatch"] and expect == "upper":
                message += "; if the server sends back what it gets unchanged, use --expect echo"
        elif starved and result["requests"]:
            message = (f"{starved} of {connections} connections got no reply in {result['elapsed']:.3g} s: "
                       "the server serves fewer clients than you opened")
        else:
            message = "no request completed"
        if errors["refused"] or errors["connect"]:
            message += (f"; {errors['refused'] + errors['connect']} reconnections failed: the server "
                        "stopped accepting connections (did it exit or crash?)")
        raise click.ClickException(message)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM ends a run as Ctrl-C does (what ran is kept); the list holds it if it came."""
    received: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_json(doc: object, path: str) -> None:
    """A command's result as JSON, to ``path`` or, for ``-``, to stdout."""
    import json

    text = json.dumps(doc, indent=2)
    if path == "-":
        click.echo(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def _check_writable_file(path: str, option: str) -> None:
    import os

    try:
        existed = os.path.exists(path)
        with open(path, "a"):
            pass
        if not existed:
            os.unlink(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror}", param_hint=option) from None


def _check_writable_dir(path: str, option: str) -> None:
    import os

    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc.strerror}", param_hint=option) from None
    if not os.access(path, os.W_OK):
        raise click.BadParameter(f"{path} is not writable", param_hint=option)


def _int_list(text: str, name: str, low: int, high: int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers",
                                 param_hint=name) from None
    if not values or any(not low <= v <= high for v in values):
        raise click.BadParameter(f"each value must be between {low} and {high}", param_hint=name)
    return values


@main.command("compare")
@click.option("--scenario", "scenario_list", default="echo", show_default=True,
              help=f"Comma-separated scenarios, or all: {', '.join(SCENARIO_NAMES)}.")
@click.option("--models", "model_list", default="all", show_default=True,
              help="all, or a comma-separated list of models.")
@click.option("--connections", "-c", default=None,
              help="Comma-separated connection counts (up to 10000; default: each scenario's own).")
@click.option("--size", "-s", type=click.IntRange(1, 16 << 20), default=None,
              help="Bytes per request (default: the scenario's, 1024; bulk 262144).")
@click.option("--latency-ms", type=Number(0, 10_000), default=None,
              help="Backend wait per reply of the backend scenario (default 10).")
@click.option("--cpu-us", type=Number(0, 1_000_000), default=None,
              help="CPU work per request of the cpu and offload scenarios (default 200).")
@click.option("--offload", "offload_list", default=None,
              help="Pools for the offload scenario: process,thread (default both).")
@click.option("--idle", type=Count(0, 50_000), default=None,
              help="Idle connections held open in the idle-horde scenario (default 5000).")
@click.option("--service", default=None, help="Your own service (package.module:factory) for every run.")
@click.option("--duration", "-d", type=Duration(0.2, 3600), default=5.0, show_default=True,
              help="Seconds measured per run.")
@click.option("--warmup", type=Duration(0, 600), default=1.0, show_default=True,
              help="Seconds of load before measuring (fresh servers start slow).")
@click.option("--timeout", type=Duration(0.05, 600), default=None,
              help="Seconds before an unanswered request counts as lost (default: the duration).")
@click.option("--rate", "-r", type=Rate(0, 1e8, low_open=True), default=None,
              help="Open loop at this many requests/s (default: closed loop).")
@click.option("--repeat", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--engine", type=click.Choice(["uvloop", "threads"]), default="uvloop", show_default=True)
@click.option("--procs", "-P", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Load generator processes.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Also write the summary table as CSV here (- for stdout).")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Also write the summary table as Markdown here (- for stdout).")
@click.option("--quick", is_flag=True,
              help="A first look (~3 min): scenarios echo,backend,cpu,offload at few connection counts, "
                   "1 s runs, 0.5 s warm-up, 1 repeat; fills in only what you did not give.")
@click.pass_context
def compare_cmd(ctx: click.Context, scenario_list: str, model_list: str, connections: str | None,
                size: int | None, latency_ms: float | None, cpu_us: float | None, offload_list: str | None,
                idle: int | None, service: str | None, duration: float, warmup: float,
                timeout: float | None, rate: float | None, repeat: int, engine: str, procs: int, out: str,
                csv_path: str | None, md_path: str | None, quick: bool) -> None:
    """Run the models under the same load, scenario by scenario; write results.json, charts and
    report.html, which opens with a verdict per scenario."""
    from datetime import UTC, datetime
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .compare import CompareConfig, build_document, run_compare, split_cores
    from .costs import OFFLOAD_KINDS
    from .report.render import render
    from .results import RunRecord, RunStatus
    from .scenarios import QUICK_CONNECTIONS, QUICK_SCENARIOS, SCENARIOS, with_overrides
    from .service import ServiceLoadError, load_service

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT

    names = tuple(REGISTRY) if model_list == "all" else _names(model_list, "--models", REGISTRY)
    if quick and not given("scenario_list"):
        scenario_names: tuple[str, ...] = QUICK_SCENARIOS
    elif scenario_list == "all":
        scenario_names = SCENARIO_NAMES
    else:
        scenario_names = _names(scenario_list, "--scenario", SCENARIO_NAMES)
    offloads = None
    if offload_list is not None:
        offloads = _names(offload_list, "--offload", tuple(k for k in OFFLOAD_KINDS if k != "none"))
    counts = _int_list(connections, "--connections", 1, 10_000) if connections else None
    if service is not None:
        try:
            load_service(service)
        except ServiceLoadError as exc:
            raise click.BadParameter(str(exc), param_hint="--service") from None
    _check_writable_dir(out, "--out")
    if quick:  # fill in only what the user did not give
        duration = duration if given("duration") else 1.0
        warmup = warmup if given("warmup") else 0.5
        repeat = repeat if given("repeat") else 1
    # a knob changes the scenarios that have it (the backend's wait, the CPU scenarios' work, ...)
    knobs = {"latency_ms": latency_ms, "cpu_us": cpu_us, "idle": idle}
    for knob, value in knobs.items():
        if value is not None and not any(getattr(SCENARIOS[n], knob) for n in scenario_names):
            takers = [n for n, sc in SCENARIOS.items() if getattr(sc, knob)]
            raise click.BadParameter(f"changes the {' and '.join(takers)} scenario(s); none was chosen",
                                     param_hint="--" + knob.replace("_", "-"))
    scenarios = []
    for name in scenario_names:
        base = SCENARIOS[name]
        changes = {knob: value for knob, value in knobs.items() if getattr(base, knob)}
        scenario = with_overrides(base, size=size, offloads=offloads if base.offloads != ("none",) else None,
                                  connections=QUICK_CONNECTIONS.get(name) if quick else None, **changes)
        scenarios.append(scenario)
    config = CompareConfig(scenarios=tuple(scenarios), models=names, connections=counts, duration=duration,
                           warmup=warmup, rate=rate, repeat=repeat, engine=engine, procs=procs,
                           timeout=timeout, service=service, preset="quick" if quick else "")
    console = Console()
    failures: list[RunRecord] = []
    runs: list[RunRecord] = []
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with _sigterm_as_interrupt() as received:
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console, transient=True) as bar:
                task = bar.add_task("starting", total=config.run_count())

                def on_run(record: RunRecord | None, upcoming: str) -> None:
                    if record is not None:
                        bar.advance(task)
                        if record.status is not RunStatus.OK:
                            failures.append(record)
                            bar.console.print(escape(
                                f"{record.scenario}: {record.variant} x{record.connections}: "
                                f"{record.status}: {record.reason}"), style="yellow", soft_wrap=True)
                    bar.update(task, description=f"running {upcoming}")

                doc = run_compare(config, on_run, runs)
        except KeyboardInterrupt:
            doc = build_document(config, runs, split_cores(), started, partial=True)
            if runs:
                paths = render(doc, Path(out), console)
                _export_tables(doc, csv_path, md_path)
                console.print(f"interrupted: {len(runs)} of {config.run_count()} runs kept in "
                              f"{paths['results']}")
            else:
                console.print("interrupted before any run finished: nothing written")
            ctx.exit(143 if received else 130)
    paths = render(doc, Path(out), console)
    _export_tables(doc, csv_path, md_path)
    console.print(f"report: {paths['html']}  (data: {paths['results']}; re-render with "
                  f"'iomodels report {paths['results']}')")
    if len(failures) == config.run_count():
        raise click.ClickException("every run failed")


def _export_tables(doc: dict[str, object], csv_path: str | None, md_path: str | None) -> None:
    from .report.compare_table import to_csv, to_markdown

    for path, convert in ((csv_path, to_csv), (md_path, to_markdown)):
        if path:
            text = convert(doc["summary"])  # type: ignore[arg-type]
            if path == "-":
                click.echo(text, nl=False)
            else:
                with open(path, "w") as f:
                    f.write(text)


def _names(text: str, option: str, known: tuple[str, ...] | dict[str, str]) -> tuple[str, ...]:
    """A comma-separated list of known names, or a one-line error that says what is wrong."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise click.BadParameter(f"is empty; choose from {', '.join(known)}", param_hint=option)
    if "" in parts:
        raise click.BadParameter(f"{text!r} has an empty item", param_hint=option)
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(known)}",
                                 param_hint=option)
    return tuple(dict.fromkeys(parts))


@main.command("check")
@click.argument("target", default="127.0.0.1:8080", required=False)
@click.option("--quick", is_flag=True, help="Smaller attacks of 0.5 s each: under 30 s in all.")
@click.option("--only", default=None, help="Comma-separated attacks to run (default: all).")
@click.option("--expect", type=click.Choice(["upper", "echo"]), default="upper", show_default=True,
              help="How a reply is verified.")
@click.option("--deadline", type=Duration(0, 60, low_open=True), default=2.0, show_default=True,
              help="Seconds a new client may wait for its round trip; a steady one may stall.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the result here; - for stdout (the table then goes to stderr).")
def check_cmd(target: str, quick: bool, only: str | None, expect: str, deadline: float,
              json_path: str | None) -> None:
    """Attack TARGET (HOST:PORT, on this machine) with hostile clients; exit 1 if any attack won.

    Attacks: slowloris, idle-horde, non-reader, big-message, reset-storm,
    half-close, connect-flood, random-chunking. During each, a steady client's
    latency is measured and a new client must be served within --deadline.
    """

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .check import ATTACKS, AttackResult, CheckConfig, CheckError, run_check
    from .loadgen.workload import parse_target

    try:
        host, port = parse_target(target)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    names = None
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ATTACKS]
        if unknown or not names:
            raise click.BadParameter(f"unknown attack {', '.join(unknown) or only!r}: choose from "
                                     + ", ".join(ATTACKS), param_hint="--only")
    if json_path and json_path != "-":
        _check_writable_file(json_path, "--json")
    preset = CheckConfig.quick if quick else CheckConfig.full
    cfg = preset(host, port, expect=expect, deadline=deadline)
    to_err = json_path == "-"
    # a table read from a file or a pipe needs room: rich would use 80 columns there
    console = Console(stderr=to_err, width=None if (sys.stderr if to_err else sys.stdout).isatty() else 120)

    def show(result: AttackResult) -> None:
        mark = "[green]passed[/green]" if result.passed else "[red]FAILED[/red]"
        console.print(f"{result.name}: {mark} ({result.seconds:.1f} s)")

    try:
        doc = run_check(cfg, names, on_result=show)
    except CheckError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: no verdict") from None
    table = Table(title=f"iomodels check {escape(target)} ({cfg.preset})")
    for column, justify in (("attack", "left"), ("result", "left"), ("what was observed", "left"),
                            ("steady p99 ms", "right"), ("new client ms", "right"), ("s", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in doc["attacks"]:  # type: ignore[union-attr]
        p99 = item["steady"].get("p99_ms")
        fresh = item["fresh_during_ms"]
        what = escape(item["observed"]) + "".join(f"\n[red]{escape(p)}[/red]" for p in item["problems"])
        table.add_row(item["name"], "[green]passed[/green]" if item["passed"] else "[red]FAILED[/red]",
                      what, "-" if p99 is None else f"{p99:.2f}", "-" if fresh is None else f"{fresh:.1f}",
                      f"{item['seconds']:.1f}")
    console.print(table)
    if json_path:
        _write_json(doc, json_path)
    if not doc["passed"]:
        raise click.ClickException(f"{len(doc['failed'])} attack(s) put the server out of service or "
                                   f"broke a reply: {', '.join(doc['failed'])}")


@main.command("merge")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the merged result here; - for stdout.")
def merge_cmd(results: tuple[str, ...], json_path: str | None) -> None:
    """Merge load results (iomodels load --json) from several machines or runs into one.

    Histograms merge exactly; counts add up; the measured windows are checked for overlap (rates
    add up only for runs that ran together).
    """
    from pathlib import Path

    from .loadgen.merge import MergeError, merge_results
    from .report.terminal import print_load_result

    if json_path and json_path != "-":
        _check_writable_file(json_path, "--json")
    try:
        merged = merge_results([Path(r) for r in results])
    except MergeError as exc:
        raise click.ClickException(str(exc)) from None
    print_load_result(merged, err=json_path == "-")
    overlap = merged["overlap"]
    if overlap is not None and overlap < 0.9:
        click.echo(f"warning: the measured windows overlap by {overlap:.0%} only: the summed req/s "
                   "describes runs that did not all run together", err=True)
    if json_path:
        _write_json(merged, json_path)


@main.command("report")
@click.argument("results", type=click.Path())
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Where to write the charts and report.html (default: beside RESULTS).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Also write the summary table as CSV here (- for stdout).")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Also write the summary table as Markdown here (- for stdout).")
def report_cmd(results: str, out: str | None, csv_path: str | None, md_path: str | None) -> None:
    """Re-render the table, charts and report.html from a saved results.json."""
    from pathlib import Path

    from .report.render import ReportError, load_results, render

    path = Path(results)
    if path.is_dir():  # the folder compare wrote
        path = path / "results.json"
    try:
        doc = load_results(path)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    if out:
        _check_writable_dir(out, "--out")
    paths = render(doc, Path(out) if out else path.parent, write_json=False)
    _export_tables(doc, csv_path, md_path)
    click.echo(f"report: {paths['html']}")


@main.group("demo")
def demo() -> None:
    """The lesson's demos: pools with callbacks, gevent coroutines."""


@demo.command("pool")
@click.option("--kind", type=click.Choice(["thread", "process"]), default="thread", show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Pool size (default: as concurrent.futures picks).")
@click.option("--tasks", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--delay", type=Duration(0, 60), default=0.5, show_default=True,
              help="Seconds each task sleeps.")
def demo_pool(kind: str, workers: int | None, tasks: int, delay: float) -> None:
    """Submit tasks to a pool with a done-callback each; show that workers are reused."""
    from .demos.pool import TaskResult, run_pool_demo

    def show(r: TaskResult) -> None:
        click.echo(f"callback: task {r.n:>3} -> {r.value:<6} ran in pid {r.pid} thread {r.tid}")

    report = run_pool_demo(kind, workers, tasks, delay, on_result=show)
    click.echo(
        f"{report.tasks} tasks, {report.kind} pool of {report.workers}: served by "
        f"{report.distinct_workers} distinct worker(s) in {report.elapsed:.2f}s "
        f"(one worker would take {report.tasks * delay:.2f}s)."
    )
    if report.distinct_workers <= report.workers:
        click.echo("Workers were created once and reused: no task got a fresh worker.")
    else:  # impossible for a correct pool; say so loudly rather than hide it
        raise click.ClickException("more distinct workers than the pool size")


@demo.command("coroutines")
@click.option("--scale", type=Number(0.001, 10), default=1.0, show_default=True,
              help="Multiply the 2, 3 and 5 second sleeps by this.")
def demo_coroutines(scale: float) -> None:
    """Three sleeping jobs: sequential, gevent unpatched, gevent monkey-patched."""
    from .models.base import missing_module

    reason = missing_module("gevent", "'iomodels[gevent]'")
    if reason is not None:
        raise click.ClickException(f"this demo runs on gevent, and {reason}")
    from .demos.coroutines import DURATIONS, RunResult, run_all

    total, longest = sum(DURATIONS) * scale, max(DURATIONS) * scale
    click.echo(f"three jobs sleep {', '.join(f'{d * scale:g}' for d in DURATIONS)} s: "
               f"sum {total:.2f}s, longest {longest:.2f}s")

    def show(r: RunResult) -> None:
        near = "the longest" if abs(r.elapsed - longest) < abs(r.elapsed - total) else "the sum"
        click.echo(f"  {r.label:<24} {r.elapsed:6.2f}s  (close to {near})  "
                   f"order: {' -> '.join(r.events)}")

    run_all(scale, on_result=show)
    click.echo("One thread did it all: with monkey-patching, a greenlet that sleeps "
               "switches to the others.")


@main.command("smoke")
@click.option("--models", "model_list", default="all", show_default=True,
              help="Comma-separated models, or all.")
@click.option("--connections", type=click.IntRange(1, 5000), default=50, show_default=True)
@click.option("--requests", type=click.IntRange(1), default=100, show_default=True,
              help="Round trips per connection.")
@click.option("--size", type=click.IntRange(1, 1 << 24), default=1024, show_default=True)
def smoke_cmd(model_list: str, connections: int, requests: int, size: int) -> None:
    """Serve under each available model and drive it with a short verified load."""
    from .smoke import run_smoke

    names = list(REGISTRY) if model_list == "all" else list(_names(model_list, "--models", REGISTRY))
    failures = run_smoke(names, connections, requests, size, echo=click.echo)
    if failures:
        raise click.ClickException(f"{failures} model(s) failed verification")
