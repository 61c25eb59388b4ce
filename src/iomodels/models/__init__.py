"""The registry of IO models: name -> class, imported only when asked for.

Adding a model is one module in its family's package (named as the model) and
one line in ``REGISTRY``; the conformance suite (``tests/conformance``) then
covers it. The families::

    blocking/    a blocking handler per connection; dispatch: inline, thread, pool, greenlet
    readiness/   one event loop over non-blocking sockets; wait: busy-poll, select, poll, epoll, SIGIO
    aio/         one asyncio Protocol; loop: asyncio, uvloop   (family name "asyncio")
    io_uring.py  completion-based IO (family "completion")
    prefork.py   worker processes running an inner model (family "process")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Model, ServeOptions, ServerStats

__all__ = ["REGISTRY", "Model", "ModelInfo", "ServeOptions", "ServerStats", "UnknownModel",
           "describe", "load_model", "probe"]

# name -> "module:Class"; each module is named as its model, inside its family's package
REGISTRY: dict[str, str] = {
    "blocking": "iomodels.models.blocking.blocking:BlockingModel",
    "threads": "iomodels.models.blocking.threads:ThreadsModel",
    "threadpool": "iomodels.models.blocking.threadpool:ThreadPoolModel",
    "prefork": "iomodels.models.prefork:PreforkModel",
    "nonblocking": "iomodels.models.readiness.nonblocking:NonblockingModel",
    "select": "iomodels.models.readiness.select:SelectModel",
    "poll": "iomodels.models.readiness.poll:PollModel",
    "epoll": "iomodels.models.readiness.epoll:EpollModel",
    "sigio": "iomodels.models.readiness.sigio:SigioModel",
    "io_uring": "iomodels.models.io_uring:UringModel",
    "asyncio": "iomodels.models.aio.asyncio:AsyncioModel",
    "uvloop": "iomodels.models.aio.uvloop:UvloopModel",
    "gevent": "iomodels.models.blocking.gevent:GeventModel",
}


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return f"unknown model {self.args[0]!r}; known models: {', '.join(REGISTRY)}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    summary: str
    unavailable: str | None  # None when the model can run here, else why not

    @property
    def available(self) -> bool:
        return self.unavailable is None


def load_model(name: str) -> type[Model]:
    """The model class registered under ``name`` (imports its module)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownModel(name) from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def probe(name: str) -> str | None:
    """``None`` if model ``name`` can run on this machine, else the reason it cannot."""
    try:
        cls = load_model(name)
    except ImportError as exc:
        return f"cannot import its module: {exc}"
    try:
        return cls.probe()
    except Exception as exc:  # a probe that crashes means: not usable here
        return f"probe failed: {exc!r}"


def describe(name: str) -> ModelInfo:
    """Name, family, summary and availability of one model, for listings."""
    try:
        cls = load_model(name)
    except ImportError as exc:
        return ModelInfo(name, "?", "", f"cannot import its module: {exc}")
    return ModelInfo(name, cls.family, cls.summary, probe(name))
