"""``make bench-instructions``: user-space instructions per request, each model beside its anchors.

Throughput on a shared 2-core VM swings by 30% from one minute to the next, and a ratio within
10% cannot be told from noise in a few rounds (``make bench``). What a server costs in user space
per request can, nearly: valgrind's callgrind counts instructions, the same for the same binary and
input whatever else the machine does (what still varies is how many requests a loop turn serves,
so a figure moves by ~3% from run to run for most servers, up to ~10% for gevent). Each server
runs under callgrind with instrumentation off; the C client warms it up (twice), then drives it
twice with counting on (S and 2S seconds, the two differenced so that per-connection costs cancel);
instructions / requests is the figure, checked against the long run alone (counted again if they
disagree by more than 10%: then one of the runs did one-time work). Kernel work (most of a
request on loopback here) is not in it, so a ratio here is the user-space share of the story,
not a throughput prediction: it tells which of two versions of a hot path is cheaper, and by how
much, in one run.

The groups are make bench's (benchmarks/run.py: GROUPS). The load generator is measured too:
``iomodels load`` against the C epoll server, its worker process only, counted mid-run.

usage: python benchmarks/instructions.py [--seconds S] [--connections N] [--models a,b,c] [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/run.py: the servers, the anchors, the groups)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=30)


def _totals(out: Path, part: int = 1, timeout: float = 20.0) -> int:
    """The instruction total of dump ``part`` of ``out`` (callgrind writes it a moment after
    callgrind_control asks)."""
    deadline = time.monotonic() + timeout
    dump = out.with_name(f"{out.name}.{part}")
    while time.monotonic() < deadline:
        if dump.exists():
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def _drive(port: int, connections: int, seconds: float) -> int:
    """Requests the C client completed in a run of ``seconds``."""
    return bench.c_client_run(port, connections, 1024, seconds)["requests"]


def server_cost(cmd: list[str], connections: int, seconds: float, tmp: Path) -> float:
    """User-space instructions per request of the server ``cmd`` under the C client's load.

    Two counted runs of the C client, ``seconds`` and twice that, differenced: what a run costs
    once (its connections: ThreadingTCPServer starts a thread for each) cancels out. The figure is
    taken only if the long run alone reads within 10% of it; else both runs are counted again."""
    out = tmp / f"cg.{time.monotonic_ns()}"
    server = bench.Server(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={out}", *cmd])
    pid = server.proc.pid
    try:
        # warm-up, twice: valgrind translates the hot code once, and what a server does once (an
        # import on first use, a cache filled) lands here rather than in a counted run, where it
        # would be subtracted as if per request (one such import once made ThreadingTCPServer read
        # 8.7k instructions per request where two warm-ups read 11.1k)
        for _ in range(2):
            _drive(server.port, connections, 1.0)
        part = 0
        for _attempt in range(2):
            counted = []
            for length in (seconds, 2 * seconds):
                part += 1
                _control(pid, "-z")
                _control(pid, "-i", "on")
                requests = _drive(server.port, connections, length)
                _control(pid, "-i", "off")
                _control(pid, "-d")
                counted.append((_totals(out, part), requests))
            (short, short_requests), (long, long_requests) = counted
            per_request = (long - short) / max(long_requests - short_requests, 1)
            alone = long / max(long_requests, 1)
            # the long run alone, per-connection costs included, reads nearly the same unless one of
            # the runs did one-time work (then the difference is not a per-request cost): count again
            if abs(alone - per_request) <= 0.1 * per_request:
                return per_request
        raise RuntimeError(f"counted runs disagree twice ({per_request:.0f} differenced, {alone:.0f} in "
                           "the long run alone)")
    finally:
        server.proc.kill()  # under valgrind a Python server does not stop on SIGTERM in time
        server.proc.wait()


def generator_cost(connections: int, seconds: float, tmp: Path) -> float:
    """User-space instructions per request of ``iomodels load``'s worker process, mid-run."""
    c_server = bench.Server([str(bench.BIN / "echo_epoll"), "0"])
    out = tmp / f"gen.{time.monotonic_ns()}"
    result = tmp / "gen.json"
    load = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
         f"--callgrind-out-file={out}.%p", bench.PY, "-m", "iomodels", "load", f"127.0.0.1:{c_server.port}",
         "-c", str(connections), "-d", str(seconds + 60), "--warmup", "0", "-q", "--json", str(result)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=bench.pinned(bench.LOAD_CORES))
    try:
        # start-up under valgrind takes a while: wait until every connection is up, then 2 s more
        deadline = time.monotonic() + 50
        while _established(c_server.port) < connections and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        children = subprocess.run(["pgrep", "-P", str(load.pid)], capture_output=True, text=True)
        workers = children.stdout.split()
        worker = next((int(p) for p in workers
                       if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")), None)
        if worker is None:
            raise RuntimeError("no load worker process found")
        _control(worker, "-z")
        _control(worker, "-i", "on")
        time.sleep(seconds)
        _control(worker, "-i", "off")
        _control(worker, "-d")
        dump = Path(f"{out}.{worker}")
        total = _totals(dump)
        text = dump.with_name(dump.name + ".1").read_text(errors="replace")
        # one transport write per request: its call count is the number of requests counted
        requests = _calls(text, "UVStream_write")
        return total / max(requests, 1)
    finally:
        load.send_signal(signal.SIGINT)  # ends the run now (what it measured is not needed)
        try:
            load.wait(timeout=60)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
        c_server.stop()


def _established(port: int) -> int:
    """Established TCP connections whose local port is ``port`` (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def _calls(text: str, name: str) -> int:
    """Calls to functions whose name contains ``name``, summed over a callgrind dump."""
    names: dict[str, str] = {}
    total, current = 0, None
    for line in text.splitlines():
        if line.startswith(("cfn=", "fn=")):
            ident, _, label = line.partition("=")[2].partition(" ")
            if label:
                names[ident] = label
            if line.startswith("cfn="):
                current = names.get(ident, "")
        elif line.startswith("calls=") and current is not None:
            if name in current:
                total += int(line[6:].split()[0])
            current = None
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="counted seconds per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--models", default=",".join(bench.GROUPS))
    parser.add_argument("--skip-generator", action="store_true")
    parser.add_argument("--out", help="also write the printed lines to this file")
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: this benchmark needs valgrind (apt-get install valgrind)")
    bench.build()
    say(f"== user-space instructions per request under callgrind ({args.connections} connections, "
          f"1 KiB upper-echo, {args.seconds:g} s counted; repeatable within ~3-10%, no kernel work) ==")
    cache: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)

        def cost(name: str, cmd: list[str]) -> float:
            if name not in cache:
                cache[name] = server_cost(cmd, args.connections, args.seconds, tmp)
            return cache[name]

        for model in args.models.split(","):
            if model not in bench.GROUPS:
                continue
            try:
                ours = cost(f"iomodels {model}", bench.serve_cmd(model))
                parts = []
                for anchor in bench.GROUPS[model]:
                    theirs = cost(anchor, bench.anchor_cmd(anchor))
                    parts.append(f"{anchor} {theirs / 1000:.1f}k ({ours / theirs:.2f}x)")
                say(f"  {model:<12} {ours / 1000:>5.1f}k; " + ", ".join(parts))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                say(f"  {model:<12} failed: {exc}")
        if not args.skip_generator:
            try:
                gen = generator_cost(args.connections, args.seconds, tmp)
                say(f"  {'generator':<12} {gen / 1000:>5.1f}k (iomodels load, worker process)")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                say(f"  generator    failed: {exc}")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
