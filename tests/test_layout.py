"""The package layout's one-way dependencies: ingest/analysis/tiles use twin; nothing imports api."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "ingest", "analysis", "tiles", "api")
# package -> packages it must not import
FORBIDDEN = {
    "twin": {"ingest", "analysis", "tiles", "api"},
    "ingest": {"analysis", "tiles", "api"},
    "analysis": {"ingest", "tiles", "api"},
    "tiles": {"ingest", "analysis", "api"},
    "api": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN[package])
        for p in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_imports_api():
    for package in PACKAGES:
        if package == "api":
            continue
        for p in (ROOT / package).rglob("*.py"):
            assert "api" not in _imports(p), p
