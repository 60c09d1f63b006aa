"""The bulk import's index builds (issue 18): one utility index (migration 0019), the GiST ones
built first (they use one core while Python still checks), each build timed, the import's
build settings local to its transaction."""

from __future__ import annotations

import logging

import sqlalchemy as sa

import ingest.load
from ingest.pipeline import ingest_survey
from tests.conftest import SMALL

TABLES = ("node", "segment", "valve", "source", "customer")


def _indexes(engine: sa.Engine, table: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes "
                                    "WHERE schemaname = current_schema() AND tablename = :t"), {"t": table})
        return dict(rows.all())


def test_one_utility_index_serves_the_utility_filter(twin_engine):
    indexes = _indexes(twin_engine, "segment")
    assert "segment_utility_idx" not in indexes and "(utility, id)" in indexes["segment_utility_id_idx"]
    with twin_engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(
            "EXPLAIN SELECT id FROM segment WHERE utility = ANY(ARRAY['JS', 'YS'])")).scalars())
    assert "segment_utility_id_idx" in plan


def test_bulk_import_builds_gist_first_and_times_each(twin_settings, twin_engine, monkeypatch, caplog):
    with twin_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
        work_mem = conn.execute(sa.text("SHOW maintenance_work_mem")).scalar_one()
    monkeypatch.setattr(ingest.load, "BULK_ROWS", 1)
    before = _indexes(twin_engine, "segment")
    with caplog.at_level(logging.INFO, logger="pipetwin.ingest"):
        report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied", report.as_dict()
    built = [r.args[0] for r in caplog.records if r.msg.startswith("import: %s built")]
    segment = [name for name in built if name in before or name.startswith("segment_")]
    assert set(before) <= set(segment)  # every index of the table built again, each once
    assert len(segment) == len(set(segment))
    kinds = ["gist" if " USING gist " in before[n] else "other" for n in segment if n in before]
    assert kinds == sorted(kinds, key=lambda k: k != "gist") and kinds[0] == "gist"
    assert report.seconds["index"] > 0
    assert _indexes(twin_engine, "segment") == before
    with twin_engine.connect() as conn:  # SET LOCAL: the import's settings ended with it
        assert conn.execute(sa.text("SHOW maintenance_work_mem")).scalar_one() == work_mem
    assert work_mem != ingest.load.BUILD_SETTINGS["maintenance_work_mem"]


def test_a_count_beyond_the_column_type_is_a_clear_rejection(twin_settings, twin_engine, tmp_path):
    """The binary COPY sends 32-bit counts: a count that does not fit is the batch's input error
    (rolled back, nothing written), not a traceback."""
    with twin_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    rows = (SMALL / "segments.csv").read_text(encoding="utf-8-sig").splitlines()
    cables = rows[0].split(",").index("电缆条数")
    first = rows[1].split(",")
    first[cables] = "99999999999"
    (tmp_path / "segments.csv").write_text("\n".join([rows[0], ",".join(first), *rows[2:]]) + "\n",
                                          encoding="utf-8")
    report = ingest_survey(SMALL / "points.csv", tmp_path / "segments.csv", twin_settings, scope="small")
    assert report.status == "rejected"
    message = " ".join(i.message for i in report.issues)
    assert "segment.cables" in message and "int32" in message
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM segment")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM node")).scalar_one() == 0


def test_the_twin_database_orders_text_by_code_point(twin_engine):
    """The private cluster's database sorts text as bytes (``C``: abbreviated keys, no strcoll,
    ids' B-trees built in half the time), which for UTF-8 is the code-point order Python's
    ``sorted`` gives, as ``C.UTF-8`` did."""
    ids = ["JS10", "js2", "Js1", "雨水井1", "污水02", "ZY-3", "_x", "é", "Ø9", "JS010051", "10", "9", "a b"]
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT datcollate FROM pg_database "
                                    "WHERE datname = current_database()")).scalar_one() == "C"
        ordered = conn.execute(sa.text("SELECT v FROM unnest(CAST(:ids AS text[])) AS v ORDER BY v"),
                               {"ids": ids}).scalars().all()
        assert conn.execute(sa.text("SELECT upper('é')")).scalar_one() == "É"  # classes stay UTF-8's
    assert ordered == sorted(ids)
