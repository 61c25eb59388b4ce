"""``iomodels check``: hostile clients against any server on this machine, ours or anyone's.

Each *attack* is something real clients do to servers, by malice or by
accident: slowloris sockets dribbling a byte now and then, a horde of idle
connections, a client that sends and never reads, a 16 MiB message, clients
that reset mid-message, half-close then read, a connect-and-close flood,
and random chunking with random pauses. While an attack runs, a *steady*
well-behaved client does a verified round trip every 20 ms (its latency is
reported), and near the end a *fresh* client connects and must get a verified
round trip within the deadline: a server that serves only the clients it
already has is out of service for everyone else. After the attack, one more
fresh round trip proves the server recovered.

An attack passes when the steady client never failed or stalled past the
deadline, both fresh round trips succeeded, and the attack's own check held
(the 16 MiB reply, every half-closed and chunked reply byte for byte, EOF and
not a reset after a half-close). Every loop is bounded in count and time;
only loopback targets are accepted.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import random
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from .net import raise_fd_limit

__all__ = ["ATTACKS", "AttackResult", "CheckConfig", "CheckError", "run_check"]

FORMAT = "iomodels.check/1"
_STEADY_EVERY = 0.02  # seconds between the steady client's round trips
_PROBE_SIZE = 64


class CheckError(Exception):
    """The check cannot run (nothing listening, not loopback, too few descriptors): says what to do."""


@dataclass(frozen=True)
class CheckConfig:
    """Where to point the attacks, and how hard (``quick()``/``full()`` are the presets)."""

    host: str
    port: int
    expect: str = "upper"
    preset: str = "full"
    duration: float = 5.0  # seconds each attack lasts
    deadline: float = 2.0  # a fresh round trip must complete within this; a steady one never stall longer
    slowloris: int = 2000
    slowloris_every: float = 2.0  # seconds between two bytes of one slowloris socket
    horde: int = 10_000
    non_reader_cap: int = 512 << 20
    big: int = 16 << 20
    resets: int = 5000
    half_closes: int = 50
    flood: int = 5000
    chunkers: int = 50
    seed: int = 0

    @classmethod
    def quick(cls, host: str, port: int, **kwargs: object) -> CheckConfig:
        """Attacks of 0.5 s (about 5 s in all against a server that holds), still above select()'s
        1,024 descriptors and a thread pool's size."""
        return cls(host, port, preset="quick", duration=0.5, slowloris=300, slowloris_every=0.2,
                   horde=1100, non_reader_cap=64 << 20, resets=300, half_closes=20, flood=500,
                   chunkers=16, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def full(cls, host: str, port: int, **kwargs: object) -> CheckConfig:
        return cls(host, port, **kwargs)  # type: ignore[arg-type]

    def reply(self, data: bytes) -> bytes:
        return data.upper() if self.expect == "upper" else data

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@dataclass
class Observation:
    """What an attack saw (``observed``) and whether its own check held (``problem`` None)."""

    observed: str = ""
    problem: str | None = None


@dataclass
class AttackResult:
    name: str
    passed: bool
    observed: str
    problems: list[str]
    seconds: float
    steady: dict[str, float | int | None] = field(default_factory=dict)
    fresh_during_ms: float | None = None
    fresh_after_ms: float | None = None


# -- clients ------------------------------------------------------------------------------------
def _connect(cfg: CheckConfig, timeout: float | None = None) -> socket.socket:
    sock = socket.create_connection(cfg.address, timeout=timeout or cfg.deadline)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {got} of {n} reply bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _lowercase(rng: random.Random, n: int) -> bytes:
    """Random lower-case ASCII, so an upper-casing reply differs from an echo everywhere."""
    alphabet = b"abcdefghijklmnopqrstuvwxyz"
    block = bytes(rng.choices(alphabet, k=min(n, 4096)))
    return (block * (n // len(block) + 1))[:n]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "reset by the server"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, EOFError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def round_trip(cfg: CheckConfig, payload: bytes = b"") -> float:
    """A fresh connection, one verified round trip within the deadline; seconds it took."""
    payload = payload or b"fresh-client-" + b"x" * (_PROBE_SIZE - 13)
    start = time.perf_counter()
    with _connect(cfg) as sock:
        sock.settimeout(max(0.05, cfg.deadline - (time.perf_counter() - start)))
        sock.sendall(payload)
        reply = _recv_exactly(sock, len(payload))
    if reply != cfg.reply(payload):
        raise ValueError("the reply differs from what was expected")
    return time.perf_counter() - start


# The steady client runs in a process of its own: in ours it would wait for the GIL behind the
# attackers' threads, and its latency would describe this process, not the server.
_STEADY_SCRIPT = r"""
import json, select, socket, sys, time
host, port, upper = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "upper"
deadline, every = float(sys.argv[4]), float(sys.argv[5])
message = b"steady-" + b"s" * 57
expected = message.upper() if upper else message
latencies, failure = [], None
try:
    sock = socket.create_connection((host, port), timeout=deadline)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
except OSError as exc:
    failure = "could not connect: " + (exc.strerror or str(exc)).lower()
print("ready", flush=True)
while failure is None and not select.select([sys.stdin], [], [], every)[0]:
    start = time.perf_counter()
    try:
        sock.sendall(message)
        got = b""
        while len(got) < len(message):
            chunk = sock.recv(len(message) - len(got))
            if not chunk:
                raise EOFError("EOF from the server")
            got += chunk
    except socket.timeout:
        failure = "timed out"
    except (OSError, EOFError) as exc:
        failure = str(exc) if isinstance(exc, EOFError) else (exc.strerror or str(exc)).lower()
    else:
        if got != expected:
            failure = "a reply differed from what was expected"
        else:
            latencies.append(time.perf_counter() - start)
sys.stdin.read()
print(json.dumps({"latencies": latencies, "failure": failure}), flush=True)
"""


class Steady:
    """A well-behaved client, in a process of its own: a verified round trip every 20 ms."""

    def __init__(self, cfg: CheckConfig) -> None:
        self.cfg = cfg
        self.latencies: list[float] = []
        self.failure: str | None = None
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Steady:
        cfg = self.cfg
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _STEADY_SCRIPT, cfg.host, str(cfg.port), cfg.expect,
             str(cfg.deadline), str(_STEADY_EVERY)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "ready": connected (or failed to), round trips begin
        return self

    def stop(self) -> dict[str, float | int | None]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            out = proc.stdout.read()
            proc.wait(self.cfg.deadline + 5)
            doc = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
            doc = {"latencies": [], "failure": "the steady client did not report"}
        self.latencies, self.failure = doc["latencies"], doc["failure"]
        lat = sorted(self.latencies)

        def ms(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None

        return {"round_trips": len(lat), "p50_ms": ms(0.5), "p99_ms": ms(0.99),
                "max_ms": round(lat[-1] * 1000, 3) if lat else None}


def _open_many(cfg: CheckConfig, count: int, timeout: float = 5.0) -> list[socket.socket]:
    """``count`` connected sockets (non-blocking); those the kernel did not complete in time are
    closed and left out (a full backlog drops SYNs)."""
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
            sock.setblocking(False)
            err = sock.connect_ex(cfg.address)
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                continue
            sel.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                sock = key.fileobj  # type: ignore[assignment]
                sel.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    socks.append(sock)
                else:
                    sock.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
    finally:
        sel.close()
    return socks


def _closed_by_peer(sock: socket.socket) -> bool:
    """True if the server closed or reset ``sock`` (reads and drops any pending reply bytes)."""
    try:
        while True:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _in_background(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# -- the attacks ----------------------------------------------------------------------------------
Attack = Callable[[CheckConfig, threading.Event], contextlib.AbstractContextManager[Observation]]


@contextlib.contextmanager
def slowloris(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """N sockets each dribbling one byte every few seconds, never finishing anything."""
    obs = Observation()
    socks = _open_many(cfg, cfg.slowloris)
    closed: set[socket.socket] = set()

    def dribble() -> None:
        while not done.is_set():
            for sock in socks:
                if sock in closed:
                    continue
                try:
                    sock.send(b"d")
                except OSError:
                    closed.add(sock)
                    continue
                if _closed_by_peer(sock):
                    closed.add(sock)
            done.wait(cfg.slowloris_every)

    thread = _in_background(dribble)
    try:
        yield obs
    finally:
        done.set()
        thread.join(cfg.slowloris_every + 5)
        closed.update(s for s in socks if s not in closed and _closed_by_peer(s))
        obs.observed = (f"{len(socks):,} sockets, a byte every {cfg.slowloris_every:g} s each; "
                        f"{len(closed):,} closed by the server")
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def idle_horde(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """N connections that never send anything."""
    obs = Observation()
    socks = _open_many(cfg, cfg.horde)
    try:
        yield obs
    finally:
        closed = sum(_closed_by_peer(s) for s in socks)
        obs.observed = f"{len(socks):,} of {cfg.horde:,} connections opened; {closed:,} closed by the server"
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def non_reader(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """One client sends as fast as it can and never reads a reply."""
    obs = Observation()
    sock = _connect(cfg)
    sent = 0
    stalled_at: int | None = None
    chunk = b"n" * (256 << 10)

    def push() -> None:
        nonlocal sent, stalled_at
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_WRITE)
        sock.setblocking(False)
        try:
            while not done.is_set() and sent < cfg.non_reader_cap:
                if not sel.select(0.5):  # nothing taken for 0.5 s: the server stopped reading
                    stalled_at = sent if stalled_at is None else stalled_at
                    continue
                try:
                    sent += sock.send(chunk)
                except BlockingIOError:
                    continue
                except OSError:
                    return
        finally:
            sel.close()

    thread = _in_background(push)
    try:
        yield obs
    finally:
        done.set()
        thread.join(5)
        how = (f"the server stopped taking data after {stalled_at / (1 << 20):.1f} MiB (backpressure)"
               if stalled_at is not None else "the server kept taking it")
        obs.observed = f"pushed {sent / (1 << 20):.1f} MiB without reading; {how}"
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@contextlib.contextmanager
def big_message(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """One 16 MiB message, sent while its reply is read; the reply must match byte for byte."""
    obs = Observation(f"one {cfg.big >> 20} MiB message")
    message = _lowercase(random.Random(cfg.seed), cfg.big)
    expected = cfg.reply(message)
    limit = max(cfg.deadline * 3, cfg.big / (4 << 20))  # seconds: at least a generous 4 MiB/s

    def exchange() -> None:
        start = time.perf_counter()
        try:
            with _connect(cfg) as sock:
                sock.settimeout(limit)
                sender = _in_background(lambda: _send_quietly(sock, message))
                reply = _recv_exactly(sock, len(message))
                sender.join(limit)
        except (OSError, EOFError) as exc:
            obs.problem = f"the {cfg.big >> 20} MiB reply failed: {_describe(exc)}"
            return
        if reply != expected:
            at = next(i for i, (a, b) in enumerate(zip(reply, expected, strict=True)) if a != b)
            obs.problem = f"the reply differs from byte {at:,}"
            return
        obs.observed = f"{cfg.big >> 20} MiB echoed correctly in {time.perf_counter() - start:.2f} s"

    thread = _in_background(exchange)
    try:
        yield obs
    finally:
        thread.join(limit + 5)
        if thread.is_alive():
            obs.problem = f"no complete reply within {limit:.0f} s"


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


@contextlib.contextmanager
def reset_storm(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """Clients that send half a message and reset the connection (SO_LINGER 0) mid-reply."""
    obs = Observation()
    count = 0
    half = b"r" * (32 << 10)
    linger = struct.pack("ii", 1, 0)

    def storm() -> None:
        nonlocal count
        while count < cfg.resets and not done.is_set():
            try:
                sock = _connect(cfg)
            except OSError:
                done.wait(0.01)
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                sock.send(half)
            sock.close()
            count += 1

    thread = _in_background(storm)
    try:
        yield obs
    finally:
        done.set()
        thread.join(cfg.deadline + 5)
        obs.observed = f"{count:,} connections reset mid-message"


@contextlib.contextmanager
def half_close(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """Send a message, shut down writing, read to EOF: the whole reply, then EOF, never a reset."""
    obs = Observation()
    rng = random.Random(cfg.seed + 1)
    completed = 0

    def exchanges() -> None:
        nonlocal completed
        for _ in range(cfg.half_closes):
            message = _lowercase(rng, rng.randint(1, 200_000))
            try:
                with _connect(cfg) as sock:
                    sock.settimeout(cfg.deadline * 2)
                    sock.sendall(message)
                    sock.shutdown(socket.SHUT_WR)
                    reply = bytearray()
                    while chunk := sock.recv(1 << 20):
                        reply += chunk
            except OSError as exc:
                obs.problem = f"after {completed} good ones: {_describe(exc)}"
                return
            if reply != cfg.reply(message):
                obs.problem = (f"after {completed} good ones: {len(reply):,} bytes came back for "
                               f"{len(message):,} sent, not the expected reply")
                return
            completed += 1
            if done.is_set():
                return

    thread = _in_background(exchanges)
    try:
        yield obs
    finally:
        thread.join(cfg.deadline * 2 + 5)
        if thread.is_alive():
            obs.problem = obs.problem or "half-closed exchanges did not finish"
        obs.observed = f"{completed} of {cfg.half_closes} half-closed exchanges: full reply, then EOF"


@contextlib.contextmanager
def connect_flood(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """Connect and close at once, as fast as one client can, without sending a byte."""
    obs = Observation()
    made = failed = 0

    def flood() -> None:
        nonlocal made, failed
        while made + failed < cfg.flood and not done.is_set():
            try:
                socket.create_connection(cfg.address, timeout=cfg.deadline).close()
                made += 1
            except OSError:
                failed += 1
                done.wait(0.01)

    thread = _in_background(flood)
    try:
        yield obs
    finally:
        done.set()
        thread.join(cfg.deadline + 5)
        obs.observed = f"{made:,} connect-and-close" + (f", {failed:,} connects failed" if failed else "")


@contextlib.contextmanager
def random_chunking(cfg: CheckConfig, done: threading.Event) -> Iterator[Observation]:
    """Clients that send a message in random pieces with random pauses while reading the reply."""
    obs = Observation()
    results: list[str | None] = [None] * cfg.chunkers
    size = 64 << 10

    def client(i: int) -> None:
        rng = random.Random(cfg.seed + 100 + i)
        message = _lowercase(rng, size)
        try:
            with _connect(cfg, timeout=cfg.deadline * 2) as sock:
                sock.settimeout(cfg.deadline * 2)

                def send() -> None:
                    at = 0
                    with contextlib.suppress(OSError):
                        while at < size:
                            step = rng.randint(1, 4096)
                            sock.sendall(message[at:at + step])
                            at += step
                            time.sleep(rng.random() * 0.003)

                sender = _in_background(send)
                reply = _recv_exactly(sock, size)
                sender.join(cfg.deadline * 2)
            results[i] = "ok" if reply == cfg.reply(message) else "the reply differs"
        except (OSError, EOFError) as exc:
            results[i] = _describe(exc)

    threads = [_in_background(lambda i=i: client(i)) for i in range(cfg.chunkers)]
    try:
        yield obs
    finally:
        until = time.monotonic() + cfg.deadline * 3 + 5
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
        good = results.count("ok")
        obs.observed = f"{good} of {cfg.chunkers} chunked 64 KiB messages answered byte for byte"
        bad = [r for r in results if r != "ok"]
        if bad:
            obs.problem = f"{len(bad)} failed: {bad[0] or 'no reply in time'}"


ATTACKS: dict[str, Attack] = {
    "slowloris": slowloris,
    "idle-horde": idle_horde,
    "non-reader": non_reader,
    "big-message": big_message,
    "reset-storm": reset_storm,
    "half-close": half_close,
    "connect-flood": connect_flood,
    "random-chunking": random_chunking,
}


# -- running ----------------------------------------------------------------------------------------
def check_target(host: str, port: int) -> None:
    """Refuse anything but a loopback address, and a target where nothing listens."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CheckError(f"cannot resolve {host!r}: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_loopback:
            raise CheckError(f"{host} ({address}) is not a loopback address: check attacks servers on "
                             "this machine only (127.0.0.1, ::1, localhost)")
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        raise CheckError(f"nothing accepts connections at {host}:{port} ({_describe(exc)}): "
                         "start the server first") from None


def _needed_fds(cfg: CheckConfig) -> int:
    return max(cfg.slowloris, cfg.horde, cfg.chunkers * 2) + 64


def run_attack(cfg: CheckConfig, name: str) -> AttackResult:
    """One attack with the steady client beside it and the two fresh round trips."""
    attack = ATTACKS[name]
    started = time.monotonic()
    problems: list[str] = []
    steady = Steady(cfg).start()
    done = threading.Event()
    fresh_during = fresh_after = None
    obs = Observation()
    try:
        with attack(cfg, done) as obs:
            done.wait(cfg.duration)
            try:
                fresh_during = round_trip(cfg)
            except (OSError, EOFError, ValueError) as exc:
                problems.append(f"a new client was not served during the attack: {_describe(exc)}")
            done.set()
    except OSError as exc:  # the attack itself could not start (nothing listening any more)
        problems.append(f"the attack could not run: {_describe(exc)}")
        obs.observed = obs.observed or "the attack could not start"
    steady_stats = steady.stop()
    if steady.failure:
        problems.append(f"the steady client failed: {steady.failure}")
    elif steady_stats["max_ms"] is not None and steady_stats["max_ms"] > cfg.deadline * 1000:
        problems.append(f"the steady client stalled {steady_stats['max_ms'] / 1000:.1f} s")
    if obs.problem:
        problems.append(obs.problem)
    try:
        fresh_after = round_trip(cfg)
    except (OSError, EOFError, ValueError) as exc:
        problems.append(f"a new client was not served after the attack: {_describe(exc)}")
    return AttackResult(
        name=name, passed=not problems, observed=obs.observed, problems=problems,
        seconds=round(time.monotonic() - started, 2), steady=steady_stats,
        fresh_during_ms=None if fresh_during is None else round(fresh_during * 1000, 3),
        fresh_after_ms=None if fresh_after is None else round(fresh_after * 1000, 3))


def run_check(cfg: CheckConfig, names: list[str] | None = None,
              on_result: Callable[[AttackResult], None] | None = None) -> dict[str, object]:
    """Every attack (or ``names``) in turn; the result as the ``iomodels.check/1`` document."""
    check_target(cfg.host, cfg.port)
    soft = raise_fd_limit()
    if soft < _needed_fds(cfg):
        raise CheckError(f"the open-files limit is {soft}; this check needs {_needed_fds(cfg)}: raise it "
                         "(ulimit -n) or use --quick")
    results = []
    for name in names or list(ATTACKS):
        result = run_attack(cfg, name)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return {"format": FORMAT, "target": f"{cfg.host}:{cfg.port}", "preset": cfg.preset,
            "expect": cfg.expect, "passed": all(r.passed for r in results),
            "failed": [r.name for r in results if not r.passed],
            "attacks": [asdict(r) for r in results]}
