"""Experiment: how the io_uring model batches. Serves in-process on core 0, drives it with the C
client on core 1 and prints the ring's counters per request: enters (submits), waits, CQEs per wait.

usage: python benchmarks/experiments/ring_stats.py   (after make bench has built benchmarks/bin)
"""

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from iomodels.models.io_uring import UringModel

CLIENT = Path(__file__).resolve().parent.parent / "bin" / "load_client"


def main() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    model = UringModel()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    loop = threading.Thread(target=model.serve, args=(listener,))
    loop.start()
    time.sleep(0.5)
    port = listener.getsockname()[1]
    try:
        for conns in (16, 100):
            before = model._ring.stats()
            out = subprocess.run(["taskset", "-c", str(cpus[-1]), str(CLIENT), "127.0.0.1", str(port),
                                  str(conns), "1024", "2"], capture_output=True, text=True, check=True).stdout
            after = model._ring.stats()
            d = {k: after[k] - before[k] for k in after}
            r = json.loads(out)["requests"]
            print(f"{conns:>3} connections: {r / 2000:.1f}k req/s; per request "
                  f"{d['submit_main_events'] / r:.3f} "
                  f"enters, {d['wait_calls'] / r:.3f} waits, {d['cqe'] / r:.2f} CQEs, "
                  f"{d['sqe'] / r:.2f} SQEs; "
                  f"{d['wait_front_cqes'] / max(1, d['wait_front_events']):.1f} CQEs per wait, "
                  f"{d['submit_main_sqes'] / max(1, d['submit_main_events']):.1f} SQEs per enter")
    finally:
        model.stop()
        loop.join()


if __name__ == "__main__":
    main()
