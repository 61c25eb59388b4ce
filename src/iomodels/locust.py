"""A Locust locustfile for the upper/echo protocol: load from many machines on Locust's coordinator.

Start it (one master, any number of workers, on any machines that reach the server)::

    LOCUSTFILE=$(python -c 'import iomodels.locust as m; print(m.__file__)')
    locust -f "$LOCUSTFILE" --headless --master --expect-workers 2 -u 100 -r 50 -t 30s \\
           --host 127.0.0.1:8080 --message-size 1024 --iomodels-json merged.json
    locust -f "$LOCUSTFILE" --worker --master-host MASTER   # on each load machine

Each Locust user holds one raw TCP connection (TCP_NODELAY), sends ``--message-size`` bytes,
reads exactly as many back and verifies them (``--expect upper`` or ``echo``). Failures are fired
with fixed names, so Locust groups them: ``mismatch``, ``short`` (EOF before the whole reply),
``reset``, ``timeout``. A user that stops half-closes its connection and reads to the server's EOF
(no resets at the end).

Locust's own percentiles are whole milliseconds below 100 ms (every percentile reads 0-1 ms on
loopback), so every worker also keeps an HdrHistogram in microseconds and sends it to the master
with its regular reports; the master writes the merged one as an ``iomodels.load/1`` JSON
(``--iomodels-json``), which ``iomodels merge`` and the rest of iomodels read. A Locust worker
drives a few tens of thousands of requests per second per core with this user, about a third of
``iomodels load``: Locust buys machines and a coordinator, not speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any

from locust import User, constant, events, task
from locust.exception import StopUser

from iomodels.loadgen import Tally, Workload
from iomodels.loadgen.runner import build_result
from iomodels.loadgen.workload import parse_target

__all__ = ["UpperEchoUser"]

# this process's counts since its last report (a worker) or since the start (a local run), the
# load generator's own Tally: counts, errors by kind, microsecond latencies, wire format, merge
_tally = Tally()
_window: dict[str, float | None] = {"first": None, "last": None}  # wall clock of the first/last request


class ReplyError(Exception):
    """A failed round trip; its str is the kind Locust groups failures by."""


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    # on the parser itself (Locust's add_argument takes include_in_web_ui; a group's does not)
    parser.add_argument("--message-size", type=int, default=1024, help="Bytes per request (iomodels).")
    parser.add_argument("--expect", choices=("upper", "echo"), default="upper",
                        help="How a reply is verified (iomodels).")
    parser.add_argument("--iomodels-timeout", type=float, default=10.0,
                        help="Seconds before an unanswered request counts as a timeout (iomodels).")
    parser.add_argument("--iomodels-json", default="iomodels-locust.json", include_in_web_ui=False,
                        help="Where the master (or a local run) writes the merged HdrHistogram result.")


class UpperEchoUser(User):
    """One raw TCP connection per user; one verified round trip per task."""

    wait_time = constant(0)
    host = "127.0.0.1:8080"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.size = int(getattr(options, "message_size", 1024))
        expect = getattr(options, "expect", "upper")
        timeout = float(getattr(options, "iomodels_timeout", 10.0))
        text = (self.host or "127.0.0.1:8080").removeprefix("tcp://").rstrip("/")
        host, port = parse_target(text)
        body = (b"iomodels-locust " * (self.size // 16 + 1))[: self.size]
        self.message = body
        self.expected = body.upper() if expect == "upper" else body
        self.name = f"{expect} {self.size}B"
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            kind = "refused" if isinstance(exc, ConnectionRefusedError) else "connect"
            self._fire(0.0, 0, ReplyError(kind))
            raise StopUser() from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @task
    def round_trip(self) -> None:
        sock, need = self.sock, self.size
        start = time.perf_counter()
        try:
            sock.sendall(self.message)
            got = bytearray()
            while len(got) < need:
                chunk = sock.recv(need - len(got))
                if not chunk:
                    raise ReplyError("short")
                got += chunk
        except TimeoutError:
            error: ReplyError | None = ReplyError("timeout")
        except ReplyError as exc:
            error = exc
        except OSError:
            error = ReplyError("reset")
        else:
            error = None if got == self.expected else ReplyError("mismatch")
        elapsed = time.perf_counter() - start
        self._fire(elapsed, need, error)
        if error is not None:  # the stream is out of step: a fresh connection for the next task
            with contextlib.suppress(OSError):
                sock.close()
            self.on_start()

    def _fire(self, elapsed: float, length: int, error: ReplyError | None) -> None:
        self.environment.events.request.fire(
            request_type="tcp", name=getattr(self, "name", "connect"), response_time=elapsed * 1000.0,
            response_length=length, exception=error, context={})
        now = time.time()
        _window["first"] = _window["first"] or now
        _window["last"] = now
        if error is None:
            _tally.record(max(1, int(elapsed * 1e6)), length)
            _tally.bytes_sent += length
        else:
            _tally.error(str(error))

    def on_stop(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is None:
            return
        with contextlib.suppress(OSError):  # a clean drain: half-close, read to the server's EOF
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2.0)
            while sock.recv(65536):
                pass
        with contextlib.suppress(OSError):
            sock.close()


# -- the histograms: workers report theirs with their stats, the master merges and writes --------

_merged = Tally()
_merged_window: dict[str, float | None] = {"first": None, "last": None}
_workers: set[str] = set()


def _take_report() -> dict[str, Any]:
    global _tally
    report = _tally.to_wire() | {"first": _window["first"], "last": _window["last"]}
    _tally = Tally()
    return report


def _absorb(report: dict[str, Any]) -> None:
    _merged.merge(Tally.from_wire(report))
    firsts = [t for t in (_merged_window["first"], report["first"]) if t]
    lasts = [t for t in (_merged_window["last"], report["last"]) if t]
    _merged_window["first"] = min(firsts, default=None)
    _merged_window["last"] = max(lasts, default=None)


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    data["iomodels"] = _take_report()


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any]) -> None:
    if "iomodels" in data:
        _workers.add(client_id)
        _absorb(data["iomodels"])


@events.quitting.add_listener
def _write(environment: Any, **kwargs: Any) -> None:
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return  # a worker's histograms went to the master with its reports
    if not _workers:  # a local run: this process is the only load
        _absorb(_take_report())
    path = getattr(environment.parsed_options, "iomodels_json", None)
    if path:
        with open(path, "w") as f:
            json.dump(_result(environment), f, indent=2)


def _result(environment: Any) -> dict[str, Any]:
    """The merged counts as an ``iomodels.load/1`` result, built as ``iomodels load`` builds its own."""
    first, last = _merged_window["first"], _merged_window["last"]
    elapsed = max((last or 0.0) - (first or 0.0), 1e-9)
    options = environment.parsed_options
    host, port = parse_target((environment.host or UpperEchoUser.host).removeprefix("tcp://").rstrip("/"))
    size = getattr(options, "message_size", 1024)
    workers = len(_workers) or 1
    workload = Workload(host=host, port=port, connections=max(getattr(options, "num_users", 0) or 1, workers),
                        size_min=size, size_max=size, duration=elapsed, expect=options.expect,
                        engine="locust", procs=workers)
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(first or time.time()))
    result = build_result(workload, _merged, elapsed, 0.0, started)
    return result | {"source": "locust", "locust_workers": workers, "window_unix": [first, last],
                     "host": result["host"] | {"pid": os.getpid()}}
