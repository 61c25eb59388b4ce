"""One real server process per registered model, shared by that model's cases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iomodels.models import REGISTRY
from iomodels.models.serving import ServerProcess

from ..helpers.running import start_or_skip

# every registered model as it comes, plus the variants its options make
VARIANTS: dict[str, tuple[str, list[str]]] = {name: (name, []) for name in REGISTRY}
VARIANTS.update({
    "epoll-edge": ("epoll", ["--edge"]),
    "nonblocking-interval": ("nonblocking", ["--poll-interval", "0.001"]),
    "prefork-reuseport-asyncio": ("prefork", ["--workers", "2", "--reuse-port", "--inner", "asyncio"]),
    "prefork-threads": ("prefork", ["--workers", "2", "--inner", "threads"]),
    "threadpool-2": ("threadpool", ["--workers", "2"]),
})


@pytest.fixture(scope="module", params=list(VARIANTS))
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = start_or_skip(*VARIANTS[request.param])
    yield srv
    assert srv.alive(), f"{srv.model} died during the suite:\n" + "\n".join(srv.lines)
    assert srv.stop() == 0, "\n".join(srv.lines)


@pytest.fixture(autouse=True)
def _still_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        assert srv.alive(), f"{srv.model} died:\n" + "\n".join(srv.lines)
