"""One real server process per registered model, shared by that model's cases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iomodels.models import REGISTRY, probe
from iomodels.procs import ServerProcess


def start_or_skip(model: str) -> ServerProcess:
    reason = probe(model)
    if reason is not None:
        pytest.skip(f"model {model} is unavailable here: {reason}")
    return ServerProcess(model).start()


@pytest.fixture(scope="module", params=list(REGISTRY))
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = start_or_skip(request.param)
    yield srv
    assert srv.alive(), f"{srv.model} died during the suite:\n" + "\n".join(srv.lines)
    assert srv.stop() == 0, "\n".join(srv.lines)


@pytest.fixture(autouse=True)
def _still_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        assert srv.alive(), f"{srv.model} died:\n" + "\n".join(srv.lines)
