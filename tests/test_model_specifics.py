"""Behaviour particular to one model: limits, supervision, fallbacks, trade-offs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import psutil
import pytest

from iomodels.models import load_model, probe
from iomodels.models.serving import ServerProcess

from .conformance.clients import connect, recv_exactly, roundtrip
from .helpers.running import start_or_skip, wait_for_workers


def test_select_refuses_fds_beyond_fd_setsize_and_keeps_serving() -> None:
    with ServerProcess("select") as srv:
        first = connect(srv.port)
        assert roundtrip(first, b"first") == b"FIRST"
        clients = [connect(srv.port) for _ in range(1100)]  # server fds pass 1024 on the way
        try:
            answered = refused = 0
            for sock in clients:
                sock.sendall(b"ping")
                try:
                    reply = recv_exactly(sock, 4)
                except (EOFError, ConnectionResetError):
                    refused += 1
                else:
                    assert reply == b"PING"
                    answered += 1
            assert refused > 50, "connections beyond FD_SETSIZE were not refused"
            assert answered > 900
            assert roundtrip(first, b"still") == b"STILL"
        finally:
            for sock in clients:
                sock.close()
            first.close()
        srv.stop()
        assert any("beyond select()'s FD_SETSIZE" in line for line in srv.lines)
        assert srv.stats is not None and srv.stats["refused"] >= refused and srv.stats["errors"] == 0


def test_threadpool_serves_at_most_its_size_at_once() -> None:
    with ServerProcess("threadpool", args=["--workers", "1"]) as srv:
        holder = connect(srv.port)
        assert roundtrip(holder, b"a") == b"A"  # the only worker is now tied to `holder`
        waiting = connect(srv.port)
        waiting.sendall(b"b")
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(1)  # queued, not served
        holder.close()  # frees the worker
        waiting.settimeout(10)
        assert waiting.recv(1) == b"B"
        waiting.close()


def test_prefork_replaces_a_worker_that_dies() -> None:
    with ServerProcess("prefork", args=["--workers", "2", "--inner", "epoll"]) as srv:
        parent = psutil.Process(srv.pid)
        before = {child.pid for child in wait_for_workers(srv.pid, 2)}
        assert len(before) == 2
        deadline = time.monotonic() + 10
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() < deadline:
            now = {child.pid for child in parent.children()}
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        now = {child.pid for child in parent.children()}
        assert victim not in now and len(now) == 2, "the dead worker was not replaced"
        for _ in range(20):  # the port is served by whichever workers exist
            with connect(srv.port) as sock:
                assert roundtrip(sock, b"ok?") == b"OK?"
        assert srv.stop() == 0
    assert any("died (killed by SIGKILL); starting a new one" in line for line in srv.lines)
    assert srv.stats is not None
    assert srv.stats["workers_died"] == 1 and srv.stats["workers_replaced"] == 1, srv.stats


def test_prefork_stop_reaps_every_worker() -> None:
    with ServerProcess("prefork", args=["--workers", "3"]) as srv:
        children = wait_for_workers(srv.pid, 3)
        assert srv.stop() == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive


@pytest.mark.skipif(probe("sigio") is not None, reason=f"sigio unavailable: {probe('sigio')}")
def test_sigio_names_the_ready_fd_and_sweeps_on_queue_overflow() -> None:
    from iomodels.models.base import ServeOptions
    from iomodels.models.readiness import READ, WRITE
    from iomodels.models.readiness.sigio import SigioWait

    wait = SigioWait(ServeOptions())
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        for sock in (a, c):
            wait.add(sock.fileno(), READ)
        b.send(b"x")  # a becomes readable: one queued real-time signal naming a's fd
        ready = dict(wait.wait(None))
        assert ready.keys() == {a.fileno()} and ready[a.fileno()] & READ
        # what the kernel sends when the RT queue overflows (to this thread: others may not block it)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGIO)
        swept = dict(wait.wait(None))
        assert swept == {a.fileno(): READ | WRITE, c.fileno(): READ | WRITE}
    finally:
        wait.close()
        for sock in (a, b, c, d):
            sock.close()


def _idle_cpu_percent(args: list[str]) -> float:
    with ServerProcess("nonblocking", args=args) as srv:
        proc = psutil.Process(srv.pid)
        with connect(srv.port) as sock:  # one idle client: a sweep has something to try
            assert roundtrip(sock, b"x") == b"X"
            proc.cpu_percent(None)
            time.sleep(1.0)
            return proc.cpu_percent(None)


def test_nonblocking_spins_unless_given_an_interval() -> None:
    busy = _idle_cpu_percent([])
    relaxed = _idle_cpu_percent(["--poll-interval", "0.05"])
    assert busy > 40, f"a pure busy loop should burn a core while idle, used {busy:.0f}%"
    assert relaxed < 15, f"sleeping 50 ms between sweeps should leave the CPU idle, used {relaxed:.0f}%"


def test_prefork_workers_do_not_outlive_a_killed_parent() -> None:
    srv = ServerProcess("prefork", args=["--workers", "2", "--inner", "epoll"]).start()
    children = wait_for_workers(srv.pid, 2)
    srv.kill()  # SIGKILL: the parent cannot pass anything on
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "workers kept running after their parent was killed"


def test_prefork_ctrl_c_to_the_whole_group_still_stops_gracefully() -> None:
    """Ctrl-C signals every process of the group; workers must not take the parent's SIGTERM
    that follows as a second signal (which means: abort)."""
    import json
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "iomodels", "serve", "-m", "prefork", "--workers",
                             "2", "--inner", "epoll", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline().split()[2].rsplit(":", 1)[1])
        wait_for_workers(proc.pid, 2)
        idle = [connect(port) for _ in range(4)]
        for sock in idle:
            assert roundtrip(sock, b"hi") == b"HI"
        slow = connect(port)  # replies pile up unread: a graceful stop must wait for them

        def flood() -> None:
            with contextlib.suppress(OSError):
                slow.sendall(b"q" * (16 << 20))

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # the group we created: the server and its workers
        time.sleep(0.5)
        with contextlib.suppress(OSError):
            while slow.recv(1 << 20):
                pass
        slow.close()  # the server's EOF came: a well-behaved client closes too
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    stats = json.loads(out.strip().splitlines()[-1].removeprefix("stats: "))
    # the flooding client was served to the end (its replies flushed), not aborted
    assert stats["connections"] == 5 and stats["errors"] == 0, stats
    for sock in idle:
        assert sock.recv(10) == b""
        sock.close()


@pytest.mark.parametrize("model", list(__import__("iomodels.models").models.REGISTRY))
def test_a_stop_while_a_client_floods_loses_no_reply(model: str) -> None:
    """The client is still sending when SIGTERM comes: every reply to what the server read must
    reach it, then a clean EOF; a plain close would reset the connection (unread input)."""
    srv = start_or_skip(model)
    try:
        sock = connect(srv.port)

        def flood() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(b"q" * (32 << 20))

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(0.5)  # the server reads until its water mark, then waits for us
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        received = 0
        while chunk := sock.recv(1 << 20):  # a reset would raise here
            assert chunk == b"Q" * len(chunk)
            received += len(chunk)
        sock.close()
        assert srv.proc.wait(20) == 0
        srv.stop()  # collects the last lines
    finally:
        srv.kill()
    assert srv.stats is not None and srv.stats["errors"] == 0, srv.stats
    assert received == srv.stats["bytes_out"] == srv.stats["bytes_in"] > 0


def _blocked_signals(pid: int, tid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


@pytest.mark.parametrize(("model", "args"), [
    ("threads", []), ("threadpool", []), ("epoll", ["--cpu-us", "10", "--offload", "thread"]),
    ("asyncio", ["--cpu-us", "10", "--offload", "process"]),
    ("gevent", ["--cpu-us", "10", "--offload", "thread"]),
])
def test_only_the_main_thread_can_receive_a_stop_signal(model: str, args: list[str]) -> None:
    """A SIGTERM the kernel hands to a helper thread would leave the main thread blocked in accept()
    or epoll_wait() and the stop lost: every other thread of the server must block the stop signals."""
    with ServerProcess(model, args=args) as srv:
        socks = [connect(srv.port) for _ in range(3)]
        for sock in socks:
            assert roundtrip(sock, b"hi") == b"HI"  # handler threads (and pool threads) now exist
        tids = [t.id for t in psutil.Process(srv.pid).threads()]
        helpers = [tid for tid in tids if tid != srv.pid]
        assert helpers, f"expected helper threads: {srv.lines}"
        for tid in helpers:
            blocked = _blocked_signals(srv.pid, tid)
            assert {signal.SIGTERM, signal.SIGINT, signal.SIGALRM} <= blocked, f"thread {tid}: {blocked}"
        assert signal.SIGTERM not in _blocked_signals(srv.pid, srv.pid)
        for sock in socks:
            sock.close()
        assert srv.stop() == 0


@pytest.mark.parametrize("model", ["asyncio", "uvloop", "epoll", "select", "poll", "sigio", "io_uring",
                                   "nonblocking", "threads", "gevent"])
def test_out_of_file_descriptors_the_loop_pauses_accepting_instead_of_spinning(model: str) -> None:
    """At the fd limit CPython's own accept loop retried once per backlog slot and logged a traceback
    each time (~50,000 lines/s, 95% CPU); uvloop accepted and closed clients silently; the readiness
    loops and io_uring slept 10 ms inside the loop (every client paid it). Ours pause the listener,
    log once a second, keep serving the clients they have and resume when fds free."""
    import resource
    import subprocess
    import sys

    if probe(model) is not None:
        pytest.skip(f"{model} unavailable: {probe(model)}")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    # --max-connections 0: no limit of our own, so the server really runs out of descriptors
    proc = subprocess.Popen([sys.executable, "-m", "iomodels", "serve", "-m", model, "--port", "0",
                             "--max-connections", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    try:
        port = int(proc.stdout.readline().split()[2].rsplit(":", 1)[1])
        first = connect(port)
        assert roundtrip(first, b"a") == b"A"
        horde = [socket.socket() for _ in range(200)]
        for sock in horde:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        time.sleep(0.3)
        server = psutil.Process(proc.pid)
        server.cpu_percent(None)
        latencies = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            assert roundtrip(first, b"x") == b"X"
            latencies.append(time.perf_counter() - start)
            time.sleep(0.01)
        cpu = server.cpu_percent(None)
        latencies.sort()
        if model != "nonblocking":  # busy polling spins by design, limit or not
            assert cpu < 20, f"{cpu:.0f}% CPU while at the fd limit"
        assert latencies[int(len(latencies) * 0.99)] < 0.005
        for sock in horde[:150]:
            sock.close()
        start = time.monotonic()
        with connect(port) as fresh:
            assert roundtrip(fresh, b"back") == b"BACK"
        assert time.monotonic() - start < 1.0
        for sock in horde[150:]:
            sock.close()
        first.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert len(err.splitlines()) < 10 and "Traceback" not in err, err[:2000]



def test_io_uring_stop_waits_for_a_reply_sent_unreaped() -> None:
    """io_uring sends a reply without reaping its success when nothing else is with the kernel.
    Here such a reply is stuck (the client reads nothing; small socket buffers) and is the last one
    when the stop comes: the close must wait for it (an empty send-all queued behind it), not cut
    it off. In-process, to see the state reached: the test reads the loop's connections."""
    if (reason := probe("io_uring")) is not None:
        pytest.skip(reason)
    from iomodels.models.io_uring import UringModel

    class SmallSendBuffer(UringModel):
        def _arm_recv(self, conn):  # type: ignore[no-untyped-def]
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # no autotuning
            super()._arm_recv(conn)

    model = SmallSendBuffer()
    listener = socket.create_server(("127.0.0.1", 0))
    result: list = []
    loop = threading.Thread(target=lambda: result.append(model.serve(listener)), daemon=True)
    loop.start()
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a tiny window
        sock.connect(listener.getsockname())
        sent = 0

        def stuck_alone() -> bool:
            return any(c.unreaped is not None and not c.unreaped.res and not c.sending_ops
                       for c in tuple(model._conns))

        while not stuck_alone():  # one message at a time, each read and answered alone
            assert sent < 1 << 20, "no reply ever got stuck unreaped"
            sock.sendall(b"m" * 1024)
            sent += 1024
            time.sleep(0.02)
        model.stop()
        time.sleep(0.2)
        received = 0
        sock.settimeout(10)
        while chunk := sock.recv(1 << 16):  # a reset would raise here
            assert chunk == b"M" * len(chunk)
            received += len(chunk)
    finally:
        sock.close()
        loop.join(10)
        if loop.is_alive():
            model.abort()
            loop.join(10)
    assert result and result[0].errors == 0, result
    assert received == sent == result[0].bytes_out


@pytest.mark.parametrize("model", ["asyncio", "threads", "io_uring"])  # one per family with a hot path
@pytest.mark.parametrize("service", ["UpperThenBye", "Bracketed"])
def test_byte_counts_are_exact_whether_or_not_replies_keep_their_length(model: str, service: str) -> None:
    """Replies as long as their reads are counted as bytes in (not measured one by one); others are
    measured; the service's last words count either way."""
    srv = start_or_skip(model, ["--service", f"tests.helpers.services:{service}"])
    reads = [b"abc" * 300, b"x", b"hello" * 200]
    try:
        with connect(srv.port) as sock:
            replies = b""
            for data in reads:
                sock.sendall(data)
                want = data.upper() + (b"|" if service == "Bracketed" else b"")
                replies += recv_exactly(sock, len(want))  # one reply at a time: reads do not merge
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                replies += chunk
        assert srv.stop() == 0, "\n".join(srv.lines)
    finally:
        srv.kill()
    sent = sum(map(len, reads))
    assert replies.endswith(b"BYE") == (service == "UpperThenBye")
    assert srv.stats is not None
    assert (srv.stats["bytes_in"], srv.stats["bytes_out"]) == (sent, len(replies))


@pytest.mark.parametrize("model", ["threads", "blocking"])
def test_a_stop_signal_just_before_accept_still_wakes_the_accepting_thread(model: str) -> None:
    """What the C-level signal handler does (a byte to the wakeup descriptor) ends the accepting
    thread's wait, whether it came before the wait began or during it: the Python handler (the
    stop) then runs, where a bare accept() would have sat until the next client."""
    server = load_model(model)()
    wakeup_fd = server.signal_wakeup_fd()
    assert wakeup_fd is not None
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(server.wait_for_client(listener)), daemon=True)
    try:
        waiter.start()
        os.write(wakeup_fd, bytes([signal.SIGTERM]))
        waiter.join(5)
        assert woke == [False], "the wait did not end on the signal's byte"
        with socket.create_connection(listener.getsockname()):
            assert server.wait_for_client(listener) is True  # a client: accept() will not wait
    finally:
        listener.close()
        server._wakeup.close()  # (serve() closes it; this test never serves)
