"""Command-line value types: finite numbers with units, as the tools users know write them.

``-d 30s``, ``--warmup 500ms``, ``-d 2m``; ``--rate 20k``, ``-n 1M``. A plain
number means seconds (durations) or itself (rates, counts). ``nan`` and
``inf`` are refused with one line, never passed on to crash later or to make
a run that never ends (click's FloatRange lets them through: every
comparison with nan is false).
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

import click

__all__ = ["Count", "Duration", "Number", "Rate"]

_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_SCALE_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}  # no "m": it reads as milli (or minutes)
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*$")


class Number(click.ParamType):
    """A finite float in [low, high] (``low_open``: strictly above low)."""

    name = "number"
    units: ClassVar[dict[str, float]] = {"": 1.0}
    unit_help = ""

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def _parse(self, text: str) -> float | None:
        match = _NUMBER.match(text)
        if match is None:
            return None
        number, unit = match.groups()
        if unit not in self.units:
            return None
        return float(number) * self.units[unit]

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        if isinstance(value, int | float):
            number = float(value)
        else:
            text = str(value)
            if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
                self.fail(f"{text!r} is not a finite number", param, ctx)
            parsed = self._parse(text)
            if parsed is None:
                self.fail(f"{text!r} is not a number{self.unit_help}", param, ctx)
            number = parsed
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            self.fail(f"{value} must be {'above' if self.low_open else 'at least'} {self.low:g}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{value} must be at most {self.high:g}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.low}, {self.high})"


class Duration(Number):
    """Seconds: ``1.5``, ``500ms``, ``30s``, ``2m``, ``1h``."""

    name = "duration"
    units: ClassVar[dict[str, float]] = {"": 1.0, **_DURATION_UNITS}
    unit_help = " (durations: 1.5, 500ms, 30s, 2m, 1h)"


class Rate(Number):
    """Per second, with k/M suffixes: ``20000``, ``20k``, ``1.5M``."""

    name = "rate"
    units: ClassVar[dict[str, float]] = _SCALE_UNITS
    unit_help = " (rates: 20000, 20k, 1.5M)"


class Count(click.ParamType):
    """A whole number in [low, high], with k/M suffixes: ``100``, ``10k``, ``1M``."""

    name = "count"

    def __init__(self, low: int = 0, high: int | None = None) -> None:
        self.low, self.high = low, high

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = float(value)
        else:
            number = Rate().convert(value, param, ctx)
            if number != int(number):
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.low or (self.high is not None and number > self.high):
            span = f"between {self.low:,} and {self.high:,}" if self.high is not None else f">= {self.low:,}"
            self.fail(f"{value} must be {span}", param, ctx)
        return int(number)
