"""Named workloads for ``iomodels compare``: where the IO models really differ.

A pure echo on one core shows the models within this machine's noise of each
other. These scenarios put the lesson's differences in front of them: a
request that *waits* on a backend, a request that *computes* (inline, or
offloaded to a pool), thousands of clients that mostly *idle*, and large
messages. Each scenario is a set of ``iomodels serve`` flags plus how the load
is shaped; every parameter can be changed with compare's plain flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["LOOP_MODELS", "QUICK_CONNECTIONS", "QUICK_SCENARIOS", "SCENARIOS", "Scenario", "Variant",
           "variants", "with_overrides"]

# models with an event loop of their own: the ones for which --offload is the lesson's pattern
LOOP_MODELS = ("nonblocking", "select", "poll", "epoll", "sigio", "io_uring", "asyncio", "uvloop",
               "gevent")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str  # one sentence: what it models
    size: int = 1024  # bytes per request
    latency_ms: float = 0.0  # backend wait per reply
    cpu_us: float = 0.0  # CPU work per request
    offloads: tuple[str, ...] = ("none",)  # one variant per offload kind (loop models only if not none)
    idle: int = 0  # idle connections held open while the active ones are measured
    connections: tuple[int, ...] = (1, 10, 100)  # active connections (default for this scenario)
    server_all_cores: bool = False  # CPU work: let the server (and its pool) use every core

    def serve_args(self, offload: str, service: str | None) -> list[str]:
        args: list[str] = []
        if self.latency_ms:
            args += ["--latency-ms", f"{self.latency_ms:g}"]
        if self.cpu_us:
            args += ["--cpu-us", f"{self.cpu_us:g}"]
        if offload != "none":
            args += ["--offload", offload]
        if service:
            args += ["--service", service]
        return args

    def describe(self) -> str:
        parts = [f"{self.size:,} B messages"]
        if self.latency_ms:
            parts.append(f"{self.latency_ms:g} ms backend wait per reply")
        if self.cpu_us:
            parts.append(f"{self.cpu_us:g} us of CPU per request")
        if self.offloads != ("none",):
            parts.append("work offloaded to a " + " or ".join(self.offloads) + " pool")
        if self.idle:
            parts.append(f"{self.idle:,} idle connections held open")
        return ", ".join(parts)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("echo", "pure IO: each request is 1 KiB, answered at once"),
    Scenario("backend", "each request waits 10 ms on a backend (a database, another service)",
             latency_ms=10.0),
    Scenario("cpu", "each request costs 200 us of pure-Python CPU, done where it arrives",
             cpu_us=200.0, server_all_cores=True),
    Scenario("offload", "the same CPU work, sent to a process or thread pool; the reply comes back "
             "through the future's done-callback", cpu_us=200.0, offloads=("process", "thread"),
             server_all_cores=True),
    Scenario("idle-horde", "5,000 idle connections held open while 10 active ones are measured",
             idle=5000, connections=(10,)),
    Scenario("bulk", "256 KiB messages: bandwidth, not round trips", size=256 * 1024,
             connections=(1, 10)),
)}


# the quick preset (`make run`): the lesson's differences in about three minutes on two cores
QUICK_SCENARIOS = ("echo", "backend", "cpu", "offload")
QUICK_CONNECTIONS = {"echo": (10, 100), "backend": (100,), "cpu": (10,), "offload": (10,),
                     "idle-horde": (10,), "bulk": (1,)}


@dataclass(frozen=True)
class Variant:
    """One server to run in a scenario: a model, and the offload kind where there is one."""

    model: str
    offload: str = "none"

    @property
    def label(self) -> str:
        return self.model if self.offload == "none" else f"{self.model}+{self.offload}"


def variants(scenario: Scenario, models: tuple[str, ...]) -> list[Variant]:
    """The servers a scenario runs for the chosen models (offload variants: loop models only)."""
    if scenario.offloads == ("none",):
        return [Variant(m) for m in models]
    return [Variant(m, kind) for kind in scenario.offloads for m in models if m in LOOP_MODELS]


def with_overrides(scenario: Scenario, **changes: object) -> Scenario:
    """The scenario with the plain flags the user gave (None = keep the scenario's value)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(scenario, **given) if given else scenario  # type: ignore[arg-type]
