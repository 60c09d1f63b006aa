"""The column catalogue (twin.schema) is the one list of feature columns.

It matches the database the migrations build, and no module keeps a list of columns of its own:
a literal list, tuple, set or dict of four or more names of one table's columns is a hand-kept
list that should be derived from the catalogue instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa

from twin.schema import CATALOGUE, KINDS, columns, edit_types, names

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")
#: Columns of the tables that are geometry or bookkeeping, not a feature's content.
BOOKKEEPING = {"geom", "attrs", "batch_id", "retired_at", "retired_reason"}
#: Proposal table columns that are the workflow's own records, not properties.
PROPOSAL_INTERNAL = {"id", "source", "report", "geojson", "crs", "geom", "updated_at"}
JSON_TYPES = {
    "text": "string", "double precision": "number", "integer": "integer", "bigint": "integer",
    "boolean": "boolean", "timestamp with time zone": "string",
}


def test_catalogue_matches_the_database(twin_engine):
    with twin_engine.connect() as conn:
        for kind, cols in CATALOGUE.items():
            db = dict(conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t"), {"t": kind}).all())
            assert db, kind
            for c in cols:
                assert c.name in db, f"{kind}.{c.name} is catalogued but not in the table"
                assert JSON_TYPES[db[c.name]] == c.type, f"{kind}.{c.name}: {db[c.name]} vs {c.type}"
            extra = set(db) - {c.name for c in cols} - BOOKKEEPING
            if kind == "proposal":
                extra -= PROPOSAL_INTERNAL
            assert not extra, f"{kind} has columns the catalogue does not declare: {sorted(extra)}"


def test_every_column_is_labelled_in_chinese_and_english():
    for kind, cols in CATALOGUE.items():
        assert len({c.name for c in cols}) == len(cols), kind
        for c in cols:
            assert c.label_zh and not c.label_zh.isascii(), (kind, c.name)
            assert c.label_en.isascii() and c.description, (kind, c.name)


def test_derived_lists():
    assert set(edit_types("valve")) == {"kind", "operable", "normally_closed"}
    assert edit_types("segment")["size"] is str and edit_types("segment")["pressure"] is float
    assert "id" in names("segment", reads="network") and "geom" not in names("segment")
    assert set(names("segment", reads="scan")) <= set(names("segment", reads="network"))
    assert all(not c.editable for k in KINDS for c in columns(k) if c.name in ("id", "version"))


def _literal_names(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Dict):
        # A declaration (name -> type or constant) is a list; a record being built is not.
        if not all(isinstance(v, ast.Name | ast.Attribute | ast.Constant) for v in node.values):
            return None
        elts = node.keys
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        elts = node.elts
    else:
        return None
    if not elts or not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elts):
        return None
    return [e.value for e in elts]


def _column_lists(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        values = _literal_names(node)
        if not values:
            continue
        for kind in KINDS:
            own = set(names(kind)) - {"id", "utility", "version", "scope", "valid_from", "status"}
            hits = [v for v in values if v in own]
            if len(hits) >= 4:
                found.append((node.lineno, kind, hits))
                break
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_hand_kept_column_lists(package):
    offenders = {}
    for path in (ROOT / package).rglob("*.py"):
        if path.name == "schema.py" and package == "twin" or "migrations" in path.parts:
            continue
        if found := _column_lists(path):
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}
