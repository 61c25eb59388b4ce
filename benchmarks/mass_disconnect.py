"""A mass disconnect under the ``threads`` model (issue 9, point 6), measured.

4,096 clients connect and each makes one round trip; 2,048 of them close at
once; then a new client connects and is timed to its verified reply, and the
server is stopped with SIGTERM (``--grace 2``) and timed to its exit. Rounds
are repeated; medians and maxima are printed. Loopback only, bounded.

usage: python benchmarks/mass_disconnect.py [--rounds N] [--model threads]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from iomodels.models.serving import ServerProcess
from iomodels.net import raise_fd_limit


def one_round(model: str, total: int) -> tuple[float, float]:
    srv = ServerProcess(model, args=["--grace", "2"]).start()
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(total)]
        for sock in socks:
            sock.sendall(b"a")
        for sock in socks:
            assert sock.recv(1) == b"A"
        for sock in socks[: total // 2]:
            sock.close()
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as fresh:
            fresh.sendall(b"fresh")
            assert fresh.recv(16) == b"FRESH"
        served = time.monotonic() - start
        start = time.monotonic()
        srv.stop()
        return served, time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()
        srv.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="threads")
    parser.add_argument("--connections", type=int, default=4096)
    args = parser.parse_args()
    raise_fd_limit()
    served, stopped = zip(*(one_round(args.model, args.connections) for _ in range(args.rounds)), strict=True)
    print(f"{args.model}: after closing {args.connections // 2:,} of {args.connections:,} connections, "
          f"a new client served in {statistics.median(served) * 1000:.0f} ms (median of {args.rounds}, "
          f"max {max(served) * 1000:.0f} ms); SIGTERM done in {statistics.median(stopped):.2f} s "
          f"(max {max(stopped):.2f} s, grace 2 s)")


if __name__ == "__main__":
    main()
