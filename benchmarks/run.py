"""``make bench``: side-by-side measurements in one run, reported as ratios.

Absolute numbers on a shared 2-core machine are noise; what one run compares
is not. The server is pinned to one core and the load to the other(s).

1. The load generator against the machine's limit: ``iomodels load`` (one
   process, uvloop engine) and our C closed-loop client each drive the C epoll
   server at 16 and 100 connections x 1 KiB, in interleaved rounds; the ratio
   is the generator's efficiency (issue 12's target: 0.9x).
2. Servers beside their anchors: each model is started with the anchors it
   is judged against (benchmarks/anchors/: a plain asyncio
   Protocol, the same on uvloop, gevent's StreamServer, socketserver's
   ThreadingTCPServer, a minimal io_uring echo on the same binding, and the C
   epoll echo), all on the server core, and the C client drives them in turn
   (the others SIGSTOPped meanwhile, so a busy-polling server cannot take the core
   from its anchor), at 16 and 100 connections; ratios are ours / anchor, medians
   of the per-round ratios with their min-max (issue 13's targets).

Rounds alternate their order (A B, then B A, ...) so that a drift of the machine's speed within a
round favours neither side, and there are five short ones rather than three long ones: on these
shared VMs a round's ratio swings by +-30%, and the median of five moves less than that of three.

Results go to benchmarks/results/latest.json.

usage: python benchmarks/run.py [--quick] [--seconds S] [--repeat N] [--models a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
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


def c_client_run(port: int, connections: int, size: int, seconds: float) -> dict:
    """One run of the C client (pinned to the load cores): its JSON result."""
    out = subprocess.run([str(BIN / "load_client"), "127.0.0.1", str(port), str(connections), str(size),
                          str(seconds)], capture_output=True, text=True, preexec_fn=pinned(LOAD_CORES),
                         timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"C client failed: {out.stdout}{out.stderr}")
    return json.loads(out.stdout)


def c_client(port: int, connections: int, size: int, seconds: float) -> float:
    return c_client_run(port, connections, size, seconds)["requests_per_s"]


def our_client(port: int, connections: int, size: int, seconds: float, procs: int = 1) -> float:
    out = subprocess.run([PY, "-m", "iomodels", "load", f"127.0.0.1:{port}", "-c", str(connections),
                          "-s", str(size), "-d", str(seconds), "--warmup", "1", "-P", str(procs), "-q",
                          "--json", "/dev/stdout"], capture_output=True, text=True,
                         preexec_fn=pinned(LOAD_CORES), timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"iomodels load failed: {out.stderr}")
    text = out.stdout
    return json.loads(text[text.index("{\n"):])["requests_per_s"]


def in_turn(round_: int, items: list) -> list:
    """The order of a round: as given, then reversed (A B, B A, ...), so that a drift of the
    machine's speed within a round favours neither side."""
    return items if round_ % 2 == 0 else items[::-1]


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


CONNECTIONS = (16, 100)


def generator_section(seconds: float, repeat: int) -> dict:
    """``iomodels load`` against the C client, both driving the C epoll server, rounds interleaved."""
    print(f"== load generator vs the C client, both driving the C epoll server (1 KiB, {seconds:g} s, "
          f"{repeat} interleaved rounds, medians) ==")
    server = Server([str(BIN / "echo_epoll"), "0"])
    out: dict = {}
    try:
        c_client(server.port, 100, 1024, 1)  # warm the path
        for conns in CONNECTIONS:
            rounds = []
            for i in range(repeat):
                rate = {client: client(server.port, conns, 1024, seconds)
                        for client in in_turn(i, [c_client, our_client])}
                rounds.append((rate[c_client], rate[our_client]))
            c_rate = statistics.median(r[0] for r in rounds)
            ours = statistics.median(r[1] for r in rounds)
            ratios = [r[1] / r[0] for r in rounds]
            out[str(conns)] = {"c_client": c_rate, "iomodels_load": ours, "ratio": statistics.median(ratios),
                               "ratios": ratios}
            print(f"  {conns:>3} connections: C client {c_rate:>10,.0f} req/s, iomodels load {ours:>10,.0f} "
                  f"req/s: {statistics.median(ratios):.2f}x (rounds {spread(ratios)})")
    finally:
        server.stop()
    return out


def serve_cmd(model: str) -> list[str]:
    """The command line of one of our models, serving on a free port."""
    return [PY, "-m", "iomodels", "serve", "-m", model, "--port", "0"]


def anchor_cmd(name: str) -> list[str]:
    """The command line of the anchor ``name`` (benchmarks/anchors/, or the C epoll echo)."""
    a = HERE / "anchors"
    return {
        "C epoll": [str(BIN / "echo_epoll"), "0"],
        "asyncio Protocol": [PY, str(a / "asyncio_echo.py"), "0"],
        "uvloop Protocol": [PY, str(a / "asyncio_echo.py"), "0", "uvloop"],
        "gevent StreamServer": [PY, str(a / "gevent_echo.py"), "0"],
        "ThreadingTCPServer": [PY, str(a / "threading_echo.py"), "0"],
        "io_uring minimal": [PY, str(a / "uring_echo.py"), "0"],
    }[name]


# each model beside the anchors it is judged against (issue 13's targets)
GROUPS: dict[str, list[str]] = {
    "epoll": ["asyncio Protocol", "C epoll"],
    "poll": ["asyncio Protocol"],
    "select": ["asyncio Protocol"],
    "sigio": ["asyncio Protocol"],
    "nonblocking": ["asyncio Protocol"],
    "io_uring": ["io_uring minimal", "uvloop Protocol"],
    "asyncio": ["asyncio Protocol"],
    "uvloop": ["uvloop Protocol"],
    "threads": ["ThreadingTCPServer"],
    "gevent": ["gevent StreamServer"],
}


def group_section(model: str, anchors: list[str], seconds: float, repeat: int) -> dict:
    """The model and its anchors up at once (same core), driven in turn by the C client: A B A B ..."""
    names = [f"iomodels {model}", *anchors]
    cmds = [serve_cmd(model), *map(anchor_cmd, anchors)]
    servers = []
    out: dict = {}
    try:
        for cmd in cmds:
            servers.append(Server(cmd))
        for server in servers:
            c_client(server.port, 100, 1024, 1)  # warm-up: fresh Python servers start slow
        for conns in CONNECTIONS:
            rates = {name: [] for name in names}
            for i in range(repeat):
                for name, server in in_turn(i, list(zip(names, servers, strict=True))):
                    # only the measured server runs: a busy-polling one would take the core from the rest
                    for other in servers:
                        other.proc.send_signal(signal.SIGCONT if other is server else signal.SIGSTOP)
                    rates[name].append(c_client(server.port, conns, 1024, seconds))
            medians = {name: statistics.median(v) for name, v in rates.items()}
            ratios = {a: [o / r for o, r in zip(rates[names[0]], rates[a], strict=True)] for a in anchors}
            out[str(conns)] = {"rates": rates, "medians": medians,
                               "ratios": {a: statistics.median(v) for a, v in ratios.items()},
                               "round_ratios": ratios}
            vs = ", ".join(f"{statistics.median(v):.2f}x {a} ({spread(v)})" for a, v in ratios.items())
            print(f"  {model:<12} {conns:>3} conns: {medians[names[0]] / 1000:>6.1f}k req/s; "
                  + ", ".join(f"{a} {medians[a] / 1000:.1f}k" for a in anchors) + f"; ratio {vs}")
    except RuntimeError as exc:
        print(f"  {model}: failed: {exc}")
        out["error"] = str(exc)
    finally:
        for server in servers:
            server.proc.send_signal(signal.SIGCONT)
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--generator-repeat", type=int, default=5)
    parser.add_argument("--models", default=",".join(GROUPS))
    parser.add_argument("--quick", action="store_true", help="1 s runs, one round: a smoke test, not figures")
    parser.add_argument("--skip-servers", action="store_true")
    parser.add_argument("--skip-generator", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeat, args.generator_repeat = 1.0, 1, 1
    build()
    started = time.time()
    print(f"server on cores {sorted(SERVER_CORES)}, load on cores {sorted(LOAD_CORES)}\n")
    result: dict = {"format": "iomodels.bench/1", "started": started, "seconds": args.seconds,
                    "repeat": args.repeat, "server_cores": sorted(SERVER_CORES),
                    "load_cores": sorted(LOAD_CORES)}
    if not args.skip_generator:
        result["generator"] = generator_section(args.seconds, args.generator_repeat)
    if not args.skip_servers:
        print(f"\n== servers beside their anchors, driven by the C client (1 KiB, {args.seconds:g} s, "
              f"{args.repeat} interleaved rounds, medians; ratio = ours / anchor, rounds min-max) ==")
        result["servers"] = {m: group_section(m, GROUPS[m], args.seconds, args.repeat)
                             for m in args.models.split(",") if m in GROUPS}
    result["elapsed"] = time.time() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{result['elapsed']:.0f} s; written to {out}")


if __name__ == "__main__":
    main()
