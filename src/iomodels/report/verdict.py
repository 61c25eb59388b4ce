"""The verdict: per scenario, which models are best within the measured noise, which fail and why.

Built from the summary rows alone (pure functions, tested on synthetic data):

* the decisive point of a scenario is its largest connection count, where the
  models differ most;
* two models whose spreads (min-max over the repeats) overlap are *tied*, never
  ranked; with a single repeat there is no measured spread, so models within
  :data:`SINGLE_RUN_NOISE` of the best are tied and the verdict says that
  differences below it mean nothing;
* failures are named as what they are (the run's reason, in words);
* where the load generator was near 100% of its core, the fastest models may
  have been limited by it, and the verdict says so;
* the closing advice ("if your service mostly waits / computes / holds many idle
  clients, choose ...") is built from this run's winners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..results import RunStatus

__all__ = ["SINGLE_RUN_NOISE", "Verdict", "advice", "verdicts"]

SPINNING = 1.8  # CPU% this many times the typical model's (and >= 90%): it spins to keep up
SINGLE_RUN_NOISE = 0.15  # run-to-run spread of one model here, measured repeat to repeat (see docs)
NEAR = 0.85  # "close enough to choose on other grounds" in the advice
UNSTABLE = 0.10  # half the min-max spread above this share of the median: the repeats disagree
GENERATOR_LIMIT = 90.0  # load generator CPU% above which it may be the bottleneck
_LATENCY_SCENARIOS = ("idle-horde",)  # judged by the active clients' p99, lower is better


@dataclass
class Verdict:
    scenario: str
    connections: int
    metric: str  # "req/s" or "p99"
    best: list[str] = field(default_factory=list)  # tied at the top, best first
    best_value: str = ""
    score: float = 0.0  # the best model's req/s (throughput scenarios)
    near: list[str] = field(default_factory=list)  # not tied, but within NEAR of the best
    costly: list[str] = field(default_factory=list)  # among those, the ones that spun a core to get there

    def recommended(self) -> list[str]:
        """The best, less those that bought their place with a spinning core (if any are left)."""
        return [v for v in self.best if v not in self.costly] or self.best
    others: list[str] = field(default_factory=list)  # "model (0.62x)" for the rest, best first
    failed: list[str] = field(default_factory=list)  # "model fails: reason" (or not available)
    failing: list[str] = field(default_factory=list)  # the models that ran and failed
    idle_memory: list[str] = field(default_factory=list)  # "model 1.2 KiB", least first (idle horde)
    notes: list[str] = field(default_factory=list)

    def sentences(self) -> list[str]:
        out = []
        if self.best:
            names = _join(self.best)
            tie = " (tied within the noise)" if len(self.best) > 1 else ""
            out.append(f"At {self.connections:,} connections the best {self.metric} came from {names}"
                       f"{tie}: {self.best_value}.")
        else:
            out.append(f"At {self.connections:,} connections no model completed the scenario.")
        if self.others:
            out.append("Then: " + ", ".join(self.others) + ".")
        out.extend(f"{f}." for f in self.failed)
        out.extend(self.notes)
        return out


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} us"


def _interval(row: dict[str, Any], key: str) -> tuple[float, float]:
    low, high = row.get(f"{key}_min"), row.get(f"{key}_max")
    value = row[f"{key}_median"] if key == "rps" else row[f"{key}_us"]
    if row.get("ok_runs", 1) < 2 or low is None or high is None:
        return value, value
    return low, high


def _tied(best: dict[str, Any], other: dict[str, Any], key: str, higher_is_better: bool) -> bool:
    """Overlapping spreads (or, with one repeat, within the single-run noise) = a tie."""
    if best.get("ok_runs", 1) >= 2 and other.get("ok_runs", 1) >= 2:
        b_low, b_high = _interval(best, key)
        o_low, o_high = _interval(other, key)
        return o_high >= b_low and o_low <= b_high
    b = best["rps_median"] if key == "rps" else best["p99_us"]
    o = other["rps_median"] if key == "rps" else other["p99_us"]
    if higher_is_better:
        return o >= b * (1 - SINGLE_RUN_NOISE)
    return o <= b * (1 + SINGLE_RUN_NOISE)


def scenario_verdict(scenario: str, rows: list[dict[str, Any]], repeats: int,
                     load_cores: int = 1) -> Verdict:
    """The verdict of one scenario from its summary rows."""
    peak = max(r["connections"] for r in rows)
    at_peak = [r for r in rows if r["connections"] == peak]
    by_latency = scenario in _LATENCY_SCENARIOS
    verdict = Verdict(scenario, peak, "p99 latency of the active clients" if by_latency else "throughput")
    ok = [r for r in at_peak if r["status"] == RunStatus.OK and r.get("rps_median")]
    for r in at_peak:
        if r["status"] == RunStatus.UNAVAILABLE:
            verdict.failed.append(f"{r['variant']} is not available here ({r['reason']})")
        elif r["status"] != RunStatus.OK:
            verdict.failing.append(r["variant"])
            verdict.failed.append(f"{r['variant']} fails: {r['reason']}")
    if not ok:
        return verdict
    if by_latency:
        ranked = sorted(ok, key=lambda r: r["p99_us"])
        best = ranked[0]
        tied = [r for r in ranked if _tied(best, r, "p99", higher_is_better=False)]
        verdict.best_value = f"p99 {_fmt_us(best['p99_us'])}"
        verdict.others = [f"{r['variant']} (p99 {_fmt_us(r['p99_us'])})" for r in ranked if r not in tied]
        memory = sorted((r for r in ok if r.get("kib_per_idle") is not None), key=lambda r: r["kib_per_idle"])
        verdict.idle_memory = [f"{r['variant']} {r['kib_per_idle']:.1f} KiB" for r in memory]
        if memory:
            verdict.notes.append("Memory per idle connection: " + ", ".join(verdict.idle_memory) + ".")
    else:
        ranked = sorted(ok, key=lambda r: -r["rps_median"])
        best = ranked[0]
        tied = [r for r in ranked if _tied(best, r, "rps", higher_is_better=True)]
        verdict.best_value = f"{best['rps_median']:,.0f} req/s, p99 {_fmt_us(best['p99_us'])}"
        verdict.score = best["rps_median"]
        verdict.others = [f"{r['variant']} ({r['rps_median'] / best['rps_median']:.2f}x)"
                          for r in ranked if r not in tied]
        verdict.near = [r["variant"] for r in ranked
                        if r not in tied and r["rps_median"] >= NEAR * best["rps_median"]]
        if best.get("load_cpu_percent", 0) >= GENERATOR_LIMIT:
            more = "rerun with --procs 2" if load_cores > 1 else "this machine has no core to spare for more"
            verdict.notes.append(
                f"The load generator used {best['load_cpu_percent']:.0f}% of its core in the best runs: "
                f"the fastest models were limited by it, not by their IO model ({more}).")
    verdict.best = [r["variant"] for r in tied]
    # a result bought by spinning a core is not the same answer: name it, and advise the others
    cpus = sorted(r["cpu_percent"] for r in ok if r.get("cpu_percent") is not None)
    if cpus:
        typical = cpus[len(cpus) // 2]
        contenders = verdict.best + verdict.near
        spinners = [r for r in ok if r.get("cpu_percent") is not None and r["cpu_percent"] >= 90
                    and r["cpu_percent"] >= SPINNING * typical and r["variant"] in contenders]
        if spinners:
            verdict.costly = [r["variant"] for r in spinners]
            verdict.notes.append(
                f"{_join(verdict.costly)} got there by burning a core ("
                + ", ".join(f"{r['cpu_percent']:.0f}%" for r in spinners)
                + f" CPU, where the typical model used {typical:.0f}%).")
    unstable = [r for r in ok if r.get("ok_runs", 1) >= 2 and r.get("rps_min") is not None
                and (r["rps_max"] - r["rps_min"]) / 2 > UNSTABLE * r["rps_median"]]
    if unstable:  # as pyperf warns: the repeats disagree, so their median is shaky too
        verdict.notes.append("Unstable (repeats differ by more than ±{:.0%}): {}.".format(
            UNSTABLE, ", ".join(f"{r['variant']} ±{(r['rps_max'] - r['rps_min']) / 2 / r['rps_median']:.0%}"
                                for r in unstable)))
    if repeats < 2:
        verdict.notes.append(
            f"One run per point (a first look): there is no measured spread, so differences under "
            f"{SINGLE_RUN_NOISE:.0%} mean nothing here; use --repeat 3 to rank.")
    return verdict


def verdicts(summary: list[dict[str, Any]], repeats: int, load_cores: int = 1) -> list[Verdict]:
    """One verdict per scenario, in the order the scenarios ran."""
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        by_scenario.setdefault(row.get("scenario", "echo"), []).append(row)
    return [scenario_verdict(name, rows, repeats, load_cores) for name, rows in by_scenario.items()]


def advice(found: list[Verdict]) -> str:
    """"If your service mostly waits / computes / holds many idle clients, choose ..." from this run."""
    by_name = {v.scenario: v for v in found}
    parts = []
    if "backend" in by_name and by_name["backend"].best:
        v = by_name["backend"]
        near = [n for n in v.near if n not in v.costly]
        also = (f" ({_join(near)} within {1 - NEAR:.0%} of them: any model that overlaps the waits "
                "will do)") if near else ""
        spin = (f"; not {_join(v.costly)}, which kept up only by burning a core") if v.costly else ""
        bad = v.failing
        worst = (f"; {_join(bad)} serve{'s' if len(bad) == 1 else ''} too few clients at a time and "
                 "get about one reply per wait each") if bad else ""
        parts.append(f"If your service mostly waits (on a database or another service), choose "
                     f"{_join(v.recommended())}{also}{spin}{worst}")
    compute = [by_name[n] for n in ("cpu", "offload") if n in by_name and by_name[n].best]
    if compute:
        best = max(compute, key=lambda v: v.score)
        text = (f"if it mostly computes, choose {_join(best.recommended())} ({best.scenario} scenario): "
                "only more processes use more than one core for Python code; threads add no "
                "CPU (the GIL), and one event loop runs the work of every client in turn")
        offload = by_name.get("offload")
        if offload is not None and offload is not best and offload.score and best.score:
            text += (f"; handing the work to a pool ({_join(offload.best[:2])}) reached "
                     f"{offload.score / best.score:.2f}x of that (a pool pays when the work per "
                     "request is well above what the hand-over costs)")
        parts.append(text)
    if "idle-horde" in by_name and by_name["idle-horde"].best:
        v = by_name["idle-horde"]
        held = v.idle_memory
        held_text = (f" (memory per idle connection from {held[0]} to {held[-1]})"
                     if len(held) > 1 else "")
        parts.append(f"if it holds many idle clients, choose {_join(v.recommended())}: the smallest latency "
                     f"for the active clients while the others idle{held_text}")
    if "echo" in by_name and by_name["echo"].best:
        v = by_name["echo"]
        parts.append(f"for pure IO on one core, {_join(v.recommended())} came out on top, but the concurrent "
                     "models are close there; decide on the other scenarios")
    if not parts:
        return ""
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]
