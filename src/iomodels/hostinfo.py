"""Facts about the machine and the software, recorded with every result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["host_facts"]

_PACKAGES = ("iomodels", "uvloop", "gevent", "uring-api", "hdrhistogram", "psutil")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_facts() -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "system": platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }
