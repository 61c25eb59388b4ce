"""``make bench``: side-by-side measurements in one run, reported as ratios.

Absolute numbers on a shared 2-core machine are noise; what one run compares
is not. The server is pinned to one core and the load to the other(s).

1. The load generator against the machine's limit: ``iomodels load`` (one
   process, uvloop engine) and our C closed-loop client each drive the C epoll
   server at 100 connections x 1 KiB; the ratio is the generator's efficiency.
2. Servers against anchors: the C client drives each server (the C epoll
   echo, a plain asyncio Protocol, the same on uvloop, gevent's StreamServer,
   and our models); ratios are to the plain asyncio anchor.

usage: python benchmarks/run.py [--seconds S] [--repeat N] [--models a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
PY = sys.executable


def build() -> None:
    BIN.mkdir(exist_ok=True)
    for name in ("echo_epoll", "load_client"):
        src, out = HERE / "c" / f"{name}.c", BIN / name
        if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)


def cores() -> tuple[set[int], set[int]]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


SERVER_CORES, LOAD_CORES = cores()


def pinned(cpus: set[int]):
    return lambda: os.sched_setaffinity(0, cpus)


class Server:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     preexec_fn=pinned(SERVER_CORES))
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"{cmd}: no ready line ({line!r})")
        self.port = int(line.split()[2].rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def c_client(port: int, connections: int, size: int, seconds: float) -> float:
    out = subprocess.run([str(BIN / "load_client"), "127.0.0.1", str(port), str(connections), str(size),
                          str(seconds)], capture_output=True, text=True, preexec_fn=pinned(LOAD_CORES),
                         timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"C client failed: {out.stdout}{out.stderr}")
    return json.loads(out.stdout)["requests_per_s"]


def our_client(port: int, connections: int, size: int, seconds: float, procs: int = 1) -> float:
    out = subprocess.run([PY, "-m", "iomodels", "load", f"127.0.0.1:{port}", "-c", str(connections),
                          "-s", str(size), "-d", str(seconds), "--warmup", "1", "-P", str(procs), "-q",
                          "--json", "/dev/stdout"], capture_output=True, text=True,
                         preexec_fn=pinned(LOAD_CORES), timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"iomodels load failed: {out.stderr}")
    text = out.stdout
    return json.loads(text[text.index("{\n"):])["requests_per_s"]


def median_of(repeat: int, fn, *args) -> float:
    return statistics.median(fn(*args) for _ in range(repeat))


def generator_section(seconds: float, repeat: int) -> None:
    print("== load generator vs the C client, both driving the C epoll server "
          f"(100 connections, 1 KiB, {seconds:g}s, median of {repeat}) ==")
    server = Server([str(BIN / "echo_epoll"), "0"])
    try:
        c_warm = c_client(server.port, 100, 1024, 1)  # warm the path
        del c_warm
        rounds = [(c_client(server.port, 100, 1024, seconds),  # interleaved: drift hits all alike
                   our_client(server.port, 100, 1024, seconds),
                   our_client(server.port, 100, 1024, seconds, 2)) for _ in range(repeat)]
        c_rate, ours, ours2 = (statistics.median(r[i] for r in rounds) for i in range(3))
        ratios = sorted(r[1] / r[0] for r in rounds)
    finally:
        server.stop()
    print(f"  C client                    {c_rate:>12,.0f} req/s")
    print(f"  iomodels load (1 process)   {ours:>12,.0f} req/s   ratio {ours / c_rate:.2f}x "
          f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"  iomodels load (2 processes) {ours2:>12,.0f} req/s   ratio {ours2 / c_rate:.2f}x")
    if len(LOAD_CORES) < 2:
        print("  (only one core for the load here: 2 processes share it)")


def servers_section(seconds: float, repeat: int, models: list[str]) -> None:
    print(f"\n== servers driven by the C client (100 connections, 1 KiB, {seconds:g}s, "
          f"median of {repeat}); ratio to the plain asyncio anchor ==")
    targets: list[tuple[str, list[str]]] = [
        ("anchor: C epoll", [str(BIN / "echo_epoll"), "0"]),
        ("anchor: asyncio Protocol", [PY, str(HERE / "anchors" / "asyncio_echo.py"), "0"]),
        ("anchor: uvloop Protocol", [PY, str(HERE / "anchors" / "asyncio_echo.py"), "0", "uvloop"]),
        ("anchor: gevent StreamServer", [PY, str(HERE / "anchors" / "gevent_echo.py"), "0"]),
    ]
    targets += [(f"iomodels {m}", [PY, "-m", "iomodels", "serve", "-m", m, "--port", "0"]) for m in models]
    rates: dict[str, float] = {}
    for label, cmd in targets:
        server = Server(cmd)
        try:
            c_client(server.port, 100, 1024, 1)  # warm-up: fresh Python servers start slow
            rates[label] = median_of(repeat, c_client, server.port, 100, 1024, seconds)
        except RuntimeError as exc:
            print(f"  {label:<32} failed: {exc}")
        finally:
            server.stop()
    base = rates.get("anchor: asyncio Protocol") or 1.0
    for label, rate in rates.items():
        print(f"  {label:<32} {rate:>12,.0f} req/s   {rate / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="blocking,threads,threadpool,prefork,nonblocking,select,"
                        "poll,epoll,sigio,io_uring,asyncio,uvloop,gevent")
    parser.add_argument("--skip-servers", action="store_true")
    args = parser.parse_args()
    build()
    print(f"server on cores {sorted(SERVER_CORES)}, load on cores {sorted(LOAD_CORES)}\n")
    generator_section(args.seconds, args.repeat)
    if not args.skip_servers:
        servers_section(args.seconds, args.repeat, [m for m in args.models.split(",") if m])


if __name__ == "__main__":
    main()
