"""The docstring examples (``>>>``) of every module of the packages, run as tests.

Modules are found on disk and imported one by one. Not imported: the migrations (alembic
runs them inside its own context) and ``api.main`` (uvicorn's entry point: it builds the
app from the environment when imported).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")
NOT_IMPORTED = ("twin.migrations", "api.main")
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules(folder: Path, name: str) -> list[str]:
    """``name`` and its modules and subpackages, recursively, without importing any."""
    if name in NOT_IMPORTED:
        return []
    found = [name]
    for info in pkgutil.iter_modules([str(folder)]):
        child = f"{name}.{info.name}"
        if info.ispkg:
            found += _modules(folder / info.name, child)
        elif child not in NOT_IMPORTED:
            found.append(child)
    return found


MODULES = sorted(m for p in PACKAGES for m in _modules(ROOT / p, p))


def test_every_package_is_searched():
    assert {"twin.crs", "ingest.epanet", "analysis.svg", "tiles.mesh", "api.middleware"} <= set(MODULES)
    assert not [m for m in MODULES if m.startswith(NOT_IMPORTED)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
