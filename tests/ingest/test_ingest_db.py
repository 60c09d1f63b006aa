"""Survey ingest against the real PostGIS: load, re-import, history, atomicity."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest
import sqlalchemy as sa

import ingest.load
from ingest.pipeline import ingest_survey
from tests.conftest import SMALL


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("node", "segment", "valve", "source", "customer", "batch")}


def _ingest(settings, folder=SMALL, **kw):
    return ingest_survey(folder / "points.csv", folder / "segments.csv", settings, scope="small", **kw)


def test_clean_batch_is_applied(twin_settings, twin_engine):
    report = _ingest(twin_settings)
    assert report.status == "applied", report.as_dict()
    assert report.error_count == 0 and report.warning_count == 0
    changes = report.counts["changes"]
    assert changes["node"] == {"added": 11, "changed": 0, "retired": 0}
    assert changes["segment"]["added"] == 8
    assert changes["valve"]["added"] == 2 and changes["source"]["added"] == 1
    assert changes["customer"]["added"] == 1
    with twin_engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT ST_SRID(geom) AS srid, ST_Z(ST_StartPoint(geom)) AS z0, ST_X(ST_StartPoint(geom)) AS e, "
            "ST_Y(ST_StartPoint(geom)) AS n, depth_reference, length_m FROM segment WHERE id = 'JS1-JS2'"
        )).mappings().one()
        # X is northing, Y easting in the table; ground 35.2, depth to top 1.4, DN300.
        assert row["srid"] == 4548 and row["e"] == 410000.0 and row["n"] == 4035000.0
        assert row["z0"] == pytest.approx(35.2 - 1.4 - 0.15, abs=1e-9)
        assert row["depth_reference"] == "top" and row["length_m"] == pytest.approx(40.0)
        ys = conn.execute(sa.text("SELECT from_z, depth_reference FROM segment WHERE id = 'YS1-YS2'")).one()
        assert ys.from_z == pytest.approx(35.2 - 2.0 + 0.3) and ys.depth_reference == "invert"
        crit = conn.execute(sa.text("SELECT critical, name FROM customer")).one()
        assert crit.critical and "医院" in crit.name
        v = conn.execute(sa.text("SELECT id, operable FROM valve ORDER BY id")).all()
        assert [(r.id, r.operable) for r in v] == [("JS3", True), ("JS5", False)]
        batch = conn.execute(sa.text("SELECT files, status, created_by FROM batch")).mappings().one()
        assert {f["name"] for f in batch["files"]} == {"points.csv", "segments.csv"}
        assert all(len(f["sha256"]) == 64 for f in batch["files"])


def test_spatial_indexes_exist(twin_engine):
    with twin_engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexdef LIKE '%gist%'")).all()
    # a 2D GiST on each geometry; no n-D one (no query makes a 3D search: migration 0019)
    assert {"segment", "node", "valve"} <= {t for t, _ in rows}, rows
    assert not any("gist_geometry_ops_nd" in d for _, d in rows)


def test_reimport_of_same_batch_changes_nothing(twin_settings, twin_engine):
    before = _counts(twin_engine)
    report = _ingest(twin_settings)
    assert report.status == "applied"
    assert all(c == {"added": 0, "changed": 0, "retired": 0} for c in report.counts["changes"].values())
    after = _counts(twin_engine)
    assert after["batch"] == before["batch"] + 1
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM segment_history")).scalar() == 0


def test_as_built_batch_adds_changes_retires_and_keeps_history(twin_settings, twin_engine, small_copy):
    with twin_engine.connect() as conn:
        t_before = conn.execute(sa.text("SELECT now()")).scalar()
    time.sleep(0.05)
    pts = pd.read_csv(small_copy / "points.csv", dtype=str, keep_default_na=False)
    seg = pd.read_csv(small_copy / "segments.csv", dtype=str, keep_default_na=False)
    # Changed: the first main is now PE. Retired: the power duct bank and its points.
    seg.loc[(seg["起点号"] == "JS1") & (seg["终点号"] == "JS2"), "材质"] = "PE"
    seg = seg[seg["管线类型"] != "DL"]
    pts = pts[pts["管线类型"] != "DL"]
    # Added: an extension of the main past JS4 (JS4 becomes a straight point).
    pts.loc[pts["物探点号"] == "JS4", "特征"] = "直线点"
    pts.loc[len(pts)] = ["JS7", "12", "JS", "终点", "", "4035000.00", "410130.00", "35.100", "1.40",
                         "", "", "", "2025-01-01", ""]
    seg.loc[len(seg)] = ["JS4", "JS7", "JS", "1.40", "1.40", "DN300", "PE", "ZM", "0.4", "", "", "", "",
                         "2025", "聊城市自来水公司", "东昌路", "active", ""]
    pts.to_csv(small_copy / "points.csv", index=False)
    seg.to_csv(small_copy / "segments.csv", index=False)

    report = _ingest(twin_settings, small_copy)
    assert report.status == "applied", report.as_dict()["errors"]
    ch = report.counts["changes"]
    assert ch["segment"] == {"added": 1, "changed": 1, "retired": 1}
    assert ch["node"] == {"added": 1, "changed": 1, "retired": 2}

    with twin_engine.connect() as conn:
        cur = conn.execute(sa.text("SELECT material, version FROM segment WHERE id = 'JS1-JS2'")).one()
        assert cur.material == "PE" and cur.version == 2
        old = conn.execute(sa.text(
            "SELECT material, op FROM segment_history WHERE id = 'JS1-JS2'")).one()
        assert old.material == "球墨铸铁" and old.op == "update"
        retired = conn.execute(sa.text(
            "SELECT retired_at, retired_reason FROM segment WHERE id = 'DL1-DL2'")).one()
        assert retired.retired_at is not None and "absent from batch" in retired.retired_reason
        assert conn.execute(sa.text("SELECT count(*) FROM current_segment WHERE id = 'DL1-DL2'")).scalar() == 0
        # The network as of before the batch: old material, the duct bank still there, no extension.
        as_of = {r.id: r.material for r in conn.execute(
            sa.text("SELECT id, material FROM segment_as_of(:t)"), {"t": t_before})}
        assert as_of["JS1-JS2"] == "球墨铸铁" and "DL1-DL2" in as_of and "JS4-JS7" not in as_of
        now = {r.id: r.material for r in conn.execute(
            sa.text("SELECT id, material FROM segment_as_of(now())"))}
        assert now["JS1-JS2"] == "PE" and "DL1-DL2" not in now and "JS4-JS7" in now


def test_batch_with_an_error_writes_nothing(twin_settings, twin_engine, small_copy):
    before = _counts(twin_engine)
    seg = (small_copy / "segments.csv").read_text(encoding="utf-8")
    (small_copy / "segments.csv").write_text(seg.replace("JS3,JS4", "JS3,NOPE"), encoding="utf-8")
    report = _ingest(twin_settings, small_copy)
    assert report.status == "rejected" and report.batch_id is None
    assert report.issue_counts["E202"] == 1
    assert _counts(twin_engine) == before


def test_crash_mid_write_leaves_previous_state(twin_settings, twin_engine, small_copy, monkeypatch):
    """A failure after nodes and segments are written rolls the whole batch back."""
    before = _counts(twin_engine)
    real_merge = ingest.load._merge

    def failing_merge(cur, spec, frame, **kw):
        if spec.name == "valve":
            raise RuntimeError("disk full (injected)")
        return real_merge(cur, spec, frame, **kw)

    monkeypatch.setattr(ingest.load, "_merge", failing_merge)
    seg = (small_copy / "segments.csv").read_text(encoding="utf-8")
    (small_copy / "segments.csv").write_text(seg.replace("球墨铸铁", "钢"), encoding="utf-8")
    with pytest.raises(RuntimeError, match="injected"):
        _ingest(twin_settings, small_copy)
    assert _counts(twin_engine) == before
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM segment WHERE material = '钢'")).scalar() == 0


def test_history_trigger_versions_edits_and_deletes(twin_engine):
    with twin_engine.begin() as conn:
        conn.execute(sa.text("UPDATE segment SET owner = 'X' WHERE id = 'JS2-JS3'"))
        conn.execute(sa.text("UPDATE segment SET owner = owner WHERE id = 'JS2-JS3'"))  # no change
    with twin_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM customer WHERE id = 'JS6'"))
    with twin_engine.connect() as conn:
        v = conn.execute(sa.text("SELECT version FROM segment WHERE id = 'JS2-JS3'")).scalar()
        ops = conn.execute(sa.text(
            "SELECT op FROM segment_history WHERE id = 'JS2-JS3' ORDER BY valid_to")).scalars().all()
        assert v == 2 and ops == ["update"]
        assert conn.execute(sa.text(
            "SELECT op FROM customer_history WHERE id = 'JS6'")).scalar() == "delete"
        yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        assert conn.execute(sa.text("SELECT count(*) FROM segment_as_of(:t)"), {"t": yesterday}).scalar() == 0


def test_twin_refuses_another_crs(twin_settings, twin_engine):
    from twin.db import upgrade
    from twin.errors import ConfigError

    other = twin_settings.model_copy(update={"crs": "EPSG:4549"})
    with pytest.raises(ConfigError, match="EPSG:4548"):
        upgrade(other)
