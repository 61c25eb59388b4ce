"""The model registry: every entry loads, describes itself and keeps the interface."""

from __future__ import annotations

import inspect

import pytest

from iomodels.models import REGISTRY, Model, UnknownModel, describe, load_model, probe

FAMILIES = {"blocking", "process", "readiness", "completion", "asyncio"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_model_is_a_complete_model(name: str) -> None:
    cls = load_model(name)
    assert issubclass(cls, Model) and not inspect.isabstract(cls)
    assert cls.name == name
    assert cls.family in FAMILIES
    assert cls.summary and len(cls.summary) < 80
    doc = inspect.getmodule(cls).__doc__ or ""
    assert doc.startswith(f"{name} "), "a model module opens with its name and a docstring"
    assert "Choose it" in doc, "the docstring says when to choose the model"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_describe_reports_the_probe(name: str) -> None:
    info = describe(name)
    assert info.name == name
    assert info.unavailable == probe(name)
    assert info.available == (info.unavailable is None)


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModel) as err:
        load_model("carrier-pigeon")
    assert "carrier-pigeon" in str(err.value) and "blocking" in str(err.value)


def test_a_model_whose_import_fails_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "ghost", "iomodels.models.no_such_module:Ghost")
    assert "cannot import" in (probe("ghost") or "")
    assert not describe("ghost").available


def test_a_probe_that_crashes_means_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = load_model("asyncio")

    def boom() -> str | None:
        raise RuntimeError("kernel says no")

    monkeypatch.setattr(cls, "probe", staticmethod(boom))
    assert "kernel says no" in (probe("asyncio") or "")
