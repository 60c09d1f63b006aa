"""The loader's bulk path: keys, indexes and foreign keys dropped for the COPY come back, or
the batch rolls back with them in place."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import ingest.load
from ingest.pipeline import ingest_survey
from tests.conftest import SMALL

TABLES = ("node", "segment", "valve", "source", "customer")


def _structure(engine: sa.Engine) -> dict[str, set[str]]:
    """Every index and constraint of the feature tables, with its definition."""
    with engine.connect() as conn:
        indexes = conn.execute(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(:t)"), {"t": list(TABLES)}).scalars().all()
        constraints = conn.execute(sa.text(
            "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid = ANY(SELECT to_regclass(t) FROM unnest(CAST(:t AS text[])) t)"),
            {"t": list(TABLES)}).scalars().all()
    return {"indexes": set(indexes), "constraints": set(constraints)}


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.fixture
def bulk(twin_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty twin in which every batch takes the bulk path (a million-row import's), however
    small."""
    with twin_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    monkeypatch.setattr(ingest.load, "BULK_ROWS", 1)


def test_bulk_load_restores_keys_indexes_and_foreign_keys(twin_settings, twin_engine, bulk):
    before = _structure(twin_engine)
    assert any("PRIMARY KEY (id)" in c and c.startswith("segment ") for c in before["constraints"])
    assert any("USING gist" in i for i in before["indexes"])
    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied", report.as_dict()
    assert report.counts["changes"]["segment"]["added"] == 8
    assert _structure(twin_engine) == before
    with twin_engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="segment_pkey"):
        conn.execute(sa.text("INSERT INTO segment SELECT * FROM segment LIMIT 1"))


def test_bulk_load_failure_keeps_keys_and_writes_nothing(twin_settings, twin_engine, bulk, monkeypatch):
    before, rows = _structure(twin_engine), {t: _count(twin_engine, t) for t in TABLES}
    real_copy = ingest.load._copy

    def failing_copy(cur, table, frame, *args, **kw):
        real_copy(cur, table, frame, *args, **kw)
        if table == "valve":  # after nodes and segments were written with their keys dropped
            raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(ingest.load, "_copy", failing_copy)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="other")
    assert _structure(twin_engine) == before
    assert {t: _count(twin_engine, t) for t in TABLES} == rows
