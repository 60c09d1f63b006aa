"""The package layout's one-way dependencies: ingest/analysis/tiles use twin; nothing imports api.

documents/ (pictures, PDFs, BCF, drawing DXF) sits above analysis, tiles and exchange; commands
(cli*.py) may call it.

exchange/ (export to GIS, CAD, CJJ 61, EPANET) reads the twin and may use ingest's survey
vocabulary; live/ (broker, sensors, alarms) reads the twin and may ask analysis for a shutoff.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")
# package -> packages it must not import
FORBIDDEN = {
    "twin": {"ingest", "analysis", "tiles", "exchange", "live", "documents", "api"},
    "ingest": {"analysis", "tiles", "exchange", "live", "documents", "api"},
    "analysis": {"ingest", "tiles", "exchange", "live", "documents", "api"},
    "tiles": {"ingest", "analysis", "exchange", "live", "documents", "api"},
    "exchange": {"analysis", "tiles", "live", "documents", "api"},
    "live": {"ingest", "tiles", "exchange", "documents", "api"},
    "documents": {"ingest", "live", "api"},
    "api": set(),
}
#: Command modules (``<package>/cli*.py``) are an interface like the API: they may also call the
#: documents layer, which renders their results (``twin analyze proposal --pdf``).
CLI_MAY_ALSO = {"documents"}


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
        str(p.relative_to(ROOT)): sorted(
            _imports(p) & (FORBIDDEN[package] - (CLI_MAY_ALSO if p.name.startswith("cli") else set())))
        for p in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_imports_api():
    for package in PACKAGES:
        if package == "api":
            continue
        for p in (ROOT / package).rglob("*.py"):
            assert "api" not in _imports(p), p


# -- modules: no import cycles, no overlong functions ---------------------------------------------
#: A function longer than this is split at its natural seams (issue 20: "about 80", at most 120).
MAX_FUNCTION_LINES = 120


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _module_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            candidates = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {c for c in candidates if c in modules}
    out.discard(_module_name(path))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {m: _module_imports(p, modules) for m, p in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_function_is_too_long():
    long = {}
    for package in PACKAGES:
        for p in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long[f"{p.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}
