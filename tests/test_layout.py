"""The house rules of the source tree, checked: files named as models, imports that never run up."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import iomodels
from iomodels.models import REGISTRY, load_model
from iomodels.models.base import Model, ServeOptions, model_options

SRC = Path(iomodels.__file__).parent
FAMILY_PACKAGES = {"blocking": "blocking", "readiness": "readiness", "asyncio": "aio"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_model_lives_in_a_module_named_as_the_model(name: str) -> None:
    module_name = REGISTRY[name].partition(":")[0]
    module = importlib.import_module(module_name)
    assert Path(module.__file__).stem == name
    cls = load_model(name)
    assert cls.name == name and issubclass(cls, Model)
    package = FAMILY_PACKAGES.get(cls.family)
    if package is not None:  # a family of several models is a package whose __init__ is its base
        assert module_name == f"iomodels.models.{package}.{name}"
    assert (module.__doc__ or "").startswith(f"{name} — "), "a model module opens with its name"


def _imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ".".join(("iomodels", *path.relative_to(SRC).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((SRC / "models").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(SRC)))
def test_no_model_module_imports_upward(path: Path) -> None:
    upward = ("iomodels.cli", "iomodels.compare", "iomodels.report", "iomodels.results", "iomodels.smoke",
              "iomodels.loadgen")
    bad = sorted(name for name in _imports(path) if name.startswith(upward))
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", [*sorted((SRC / "report").rglob("*.py")), SRC / "results.py"],
                         ids=lambda p: p.name)
def test_rendering_does_not_pull_in_processes_or_the_load_generator(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.startswith(("iomodels.compare", "iomodels.models",
                                                           "iomodels.loadgen.runner", "psutil")))
    assert not bad, f"{path.name} imports {bad}"


def test_every_model_option_is_accepted_by_some_model_and_declared_in_serve_options() -> None:
    declared = set(model_options())
    accepted = set().union(*(load_model(name).accepts for name in REGISTRY))
    assert accepted == declared, "an option no model reads, or a model reading an undeclared one"
    assert all(hasattr(ServeOptions(), name) for name in declared)
