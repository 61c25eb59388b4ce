"""A short verified end-to-end run of every model: a quick check that each one works here.

Each model is served in its own process and driven by the load generator
(``connections`` connections, ``requests`` verified round trips each, of
``size`` bytes); one line per model. ``iomodels compare`` measures; this only
checks, in a few seconds per model.
"""

from __future__ import annotations

from collections.abc import Callable

from .loadgen import LoadError, Workload, run_load
from .models import probe
from .models.serving import ServerProcess, ServerStartError

__all__ = ["run_smoke"]


def run_smoke(models: list[str], connections: int, requests: int, size: int,
              echo: Callable[[str], None] = print) -> int:
    """One line per model; returns how many models failed."""
    failures = 0
    for name in models:
        reason = probe(name)
        if reason is not None:
            echo(f"{name:<12} skipped: {reason}")
            continue
        try:
            with ServerProcess(name) as server:
                result = run_load(Workload(port=server.port, connections=connections, size_min=size,
                                           size_max=size, requests=connections * requests,
                                           duration=None, timeout=10.0))
        except (ServerStartError, LoadError) as exc:
            failures += 1
            echo(f"{name:<12} FAILED: {exc}")
            continue
        errors = {k: v for k, v in result["errors"].items() if v}
        verdict = "ok" if result["ok"] else "FAILED"
        failures += not result["ok"]
        echo(f"{name:<12} {verdict:<6} {connections} connections, {size} B messages: "
             f"{result['requests']} round trips verified, "
             + (", ".join(f"{v} {k}" for k, v in errors.items()) if errors else "no errors")
             + f", {result['requests_per_s']:,.0f} req/s")
    return failures
