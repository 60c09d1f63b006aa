"""The proposal check: known vertical gaps, a clean pass, storage, decisions kept across re-runs,
withdrawal, the stored geometry (and migration 0008 filling it), HTML."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from analysis.proposal import check_proposal
from analysis.proposal_input import proposal_geometry
from analysis.proposal_report import report_html
from analysis.proposal_workflow import (
    TRANSITIONS,
    decide_finding,
    decide_proposal,
    get_proposal,
    list_proposals,
    recheck_proposal,
    submit_proposal,
    withdraw_proposal,
)
from ingest.pipeline import ingest_survey
from ingest.sample import POINT_HEADERS, SEGMENT_HEADERS
from tests.conftest import drop_schema
from twin.crs import transformer
from twin.db import current_revision, make_engine, upgrade
from twin.errors import Conflict, Forbidden, InputError, NotFound
from twin.settings import get_settings

E0, N0 = 410000.0, 4035000.0
GROUND = 35.0
# the existing water main: DN300 along N0, depth to the top 1.4 -> top 33.6, bottom 33.3
WATER_TOP, WATER_BOTTOM = GROUND - 1.4, GROUND - 1.4 - 0.3


def write_survey(folder) -> None:
    """The survey tables of the water main J1-J2-J3 (cast iron 铸铁, built 2010) into ``folder``."""
    points = [("J1", "终点", E0), ("J2", "直线点", E0 + 50), ("J3", "终点", E0 + 100)]
    with open(folder / "points.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(POINT_HEADERS)
        for pid, feat, e in points:
            row = dict.fromkeys(POINT_HEADERS, "")
            row.update({"物探点号": pid, "管线类型": "JS", "特征": feat, "X": f"{N0:.2f}", "Y": f"{e:.2f}",
                        "地面高程": f"{GROUND:.3f}", "埋深": "1.40"})
            w.writerow(row.values())
    with open(folder / "segments.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SEGMENT_HEADERS)
        for a, b in (("J1", "J2"), ("J2", "J3")):
            row = dict.fromkeys(SEGMENT_HEADERS, "")
            row.update({"起点号": a, "终点号": b, "管线类型": "JS", "起点埋深": "1.40", "终点埋深": "1.40",
                        "管径/断面": "DN300", "材质": "铸铁", "建设年代": "2010", "状态": "active",
                        "道路名称": "东昌路"})
            w.writerow(row.values())


def gas(top_z: float, *, fid: str = "P1", x: float = E0 + 30, size: str | None = "DN200", **extra) -> dict:
    """A proposed gas pipe crossing the water main square at easting x, its top at top_z."""
    props = {"id": fid, "utility": "RQ", "z_reference": "top", "pressure_mpa": 0.2, **extra}
    if size:
        props["size"] = size
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": props,
        "geometry": {"type": "LineString", "coordinates": [[x, N0 - 20, top_z], [x, N0 + 20, top_z]]}}]}


@pytest.fixture(scope="module")
def twin(twin_settings, twin_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("main")
    write_survey(folder)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine, twin_settings


def test_migration_0002(twin):
    engine, settings = twin
    with engine.connect() as conn:
        assert current_revision(conn, settings) >= "0002"  # proposals arrive with 0002
        cols = set(conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = 'proposal'"),
            {"s": settings.db_schema}).scalars())
    assert {"id", "name", "geojson", "utility", "status", "created_by", "created_at", "decided_by", "decided_at",
            "note", "report", "version"} <= cols


def test_vertical_gap_under_the_rule_is_a_violation(twin):
    engine, settings = twin
    # gas top 33.2 under the water bottom 33.3: gap 0.10 m, the rule (gas against any pipe) asks 0.15;
    # the water main's centre lies 1.55 m deep (concealed: depth limit 0.15 x 1.55 = 0.2325), the
    # proposal is exact: 0.10 + 0.2325 >= 0.15, so the survey cannot decide
    report = check_proposal(engine, gas(WATER_BOTTOM - 0.10), settings)
    assert not report.passed
    (f,) = report.findings  # the near miss of the same pair is this finding, not a second one
    assert f.kind == "clearance_vertical" and set(f.ids) == {"P1", "J1-J2"}
    assert f.measured_m == pytest.approx(0.10, abs=1e-6)
    assert f.required_m == pytest.approx(0.15)
    assert f.shortfall_m == pytest.approx(0.05, abs=1e-6)
    assert (f.verdict, f.uncertainty_m) == ("uncertain", pytest.approx(0.2325))
    assert report.as_dict()["verdicts"] == {"violation": 0, "uncertain": 1, "no_rule": 0}
    assert (f.x, f.y) == pytest.approx((E0 + 30, N0), abs=1e-6)


def test_clean_proposal_passes(twin):
    engine, settings = twin
    report = check_proposal(engine, gas(WATER_BOTTOM - 1.0), settings)
    assert report.passed and report.findings == [] and report.candidates >= 1
    # the section at its middle shows the proposal and the water main it passes under
    ids = {p.id: p for p in report.section.pipes}
    assert set(ids) == {"P1", "J1-J2"} and ids["P1"].status == "proposed"
    assert ids["J1-J2"].bottom_z - ids["P1"].top_z == pytest.approx(1.0, abs=1e-6)


def test_collision_and_the_section_at_the_worst_place(twin):
    engine, settings = twin
    report = check_proposal(engine, gas(WATER_TOP - 0.1), settings)  # through the water main
    kinds = [f.kind for f in report.findings]
    assert kinds[0] == "collision"
    col = report.findings[0]
    # gas 200 mm with its top 0.1 under the water top: the solids overlap by 0.2 m (water bottom - gas bottom)
    assert col.shortfall_m == pytest.approx(0.2, abs=1e-3)
    sec = report.section
    assert {p.id for p in sec.pipes} == {"P1", "J1-J2"}
    water = next(p for p in sec.pipes if p.id == "J1-J2")
    assert water.offset_m == pytest.approx(sec.length_m / 2, abs=1e-6)  # cut square to the proposal at the clash
    root = ET.fromstring(sec.to_svg())
    dashed = [e for e in root.iter() if e.get("class") == "pipe" and e.get("stroke-dasharray")]
    assert [e.get("data-id") for e in dashed] == ["P1"]


@pytest.mark.parametrize("doc, message", [
    (gas(33.0, size=None), "size"),
    # easting and northing swapped: far from the twin
    ({"type": "Feature", "properties": {"utility": "JS", "size": "DN300", "depth_m": 1.2},
      "geometry": {"type": "LineString", "coordinates": [[N0, E0], [N0 + 50, E0]]}}, "CRS"),
    ({"type": "Feature", "properties": {"size": "DN300", "depth_m": 1.2},
      "geometry": {"type": "LineString", "coordinates": [[E0, N0], [E0 + 50, N0]]}}, "utility"),
])
def test_bad_proposals(twin, doc, message):
    engine, settings = twin
    with pytest.raises(InputError, match=message):
        check_proposal(engine, doc, settings)


def test_decisions_survive_rechecks_and_approval_rules(twin, tmp_path):
    engine, settings = twin
    report = submit_proposal(engine, gas(WATER_BOTTOM - 0.10), settings, name="gas main 东昌路", user="alice")
    pid = report.proposal_id
    assert report.status == "new" and report.created_by == "alice"
    (f,) = report.findings
    assert f.status == "open"
    # approving needs review first, then every finding accepted or an override note
    with pytest.raises(Conflict, match="cannot become approved"):
        decide_proposal(engine, pid, "approved", settings, user="bob")
    decide_proposal(engine, pid, "reviewed", settings, user="bob", note="site visit done")
    with pytest.raises(InputError, match="not accepted"):
        decide_proposal(engine, pid, "approved", settings, user="bob")
    decide_finding(engine, pid, f.key, "accepted", settings, user="bob", note="casing pipe at the crossing")
    # the network does not change: a re-check keeps the decision on the unchanged finding
    again = recheck_proposal(engine, pid, settings, user="carol")
    (g,) = again.findings
    assert g.key == f.key and g.status == "accepted" and g.decided_by == "bob"
    assert g.note == "casing pipe at the crossing"
    d = decide_proposal(engine, pid, "approved", settings, user="bob")
    assert d["status"] == "approved" and d["decided_by"] == "bob" and d["decided_at"]
    assert [e["action"] for e in d["events"]] == ["submitted", "decided", "finding decided", "rechecked", "decided"]
    assert d["findings"][0]["status"] == "accepted"
    with pytest.raises(Conflict, match="approved"):
        recheck_proposal(engine, pid, settings, source=gas(20.0))
    html = report_html(d)
    assert "id='status'>approved<" in html and f.key in html and "casing pipe at the crossing" in html
    assert "@media print" in html and "bob" in html


def test_override_and_revision(twin):
    engine, settings = twin
    report = submit_proposal(engine, gas(WATER_TOP - 0.1, fid="Q1", x=E0 + 70), settings, user="alice")
    pid = report.proposal_id
    (first,) = report.findings  # one finding for the pair, carrying both rules it breaks
    assert first.kind == "collision" and [r["kind"] for r in first.rules] == ["collision", "clearance_vertical"]
    decide_proposal(engine, pid, "reviewed", settings, user="bob")
    # a revised geometry deeper down: the collision is gone, the pair keeps its key with one rule left
    revised = recheck_proposal(engine, pid, settings, source=gas(WATER_BOTTOM - 0.12, fid="Q1", x=E0 + 70),
                               user="alice")
    assert revised.version == 2 and revised.status == "new"
    assert revised.resolved == []
    (f,) = revised.findings
    assert f.key == first.key and f.kind == "clearance_vertical" and f.measured_m == pytest.approx(0.12, abs=1e-6)
    assert [r["kind"] for r in f.rules] == ["clearance_vertical"]
    changed = {c["key"]: c["changed"] for c in revised.changes["changed"]}
    assert changed[f.key]["kind"] == ["collision", "clearance_vertical"]
    decide_proposal(engine, pid, "reviewed", settings, user="bob")
    d = decide_proposal(engine, pid, "approved", settings, user="bob", override="protective slab; owner agreed")
    assert d["status"] == "approved" and d["override_note"] == "protective slab; owner agreed"
    assert d["events"][-1]["action"] == "approved with override"
    listed = {r["id"]: r for r in list_proposals(engine)}
    assert listed[pid]["status"] == "approved" and listed[pid]["open"] == 1


def test_html_report_is_printable_with_its_drawing(twin):
    engine, settings = twin
    report = check_proposal(engine, gas(WATER_BOTTOM - 0.10), settings, name="<script>x</script>")
    html = report_html(report)
    assert html.startswith("<!DOCTYPE html>") and "@media print" in html and "@page" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "id='result'>FAIL<" in html and report.findings[0].key in html
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    root = ET.fromstring(svg)
    assert {e.get("data-id") for e in root.iter() if e.get("class") == "pipe"} == {"P1", "J1-J2"}
    # a stored report renders the same drawing from its JSON
    stored = submit_proposal(engine, gas(WATER_BOTTOM - 0.10), settings, user="alice")
    again = report_html(get_proposal(engine, stored.proposal_id))
    assert re.search(r"<svg .*?</svg>", again, re.S) and "FAIL" in again


# ----------------------------------------------------------------------------- withdrawal
def test_the_submitter_or_an_admin_withdraws(twin):
    engine, settings = twin
    pid = submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="W1", x=E0 + 10), settings, user="alice").proposal_id
    with pytest.raises(Forbidden, match="alice"):
        withdraw_proposal(engine, pid, settings, user="bob")
    d = withdraw_proposal(engine, pid, settings, user="alice", note="route changed")
    assert d["status"] == "withdrawn" and d["decided_by"] == "alice" and d["note"] == "route changed"
    assert d["events"][-1] == {**d["events"][-1], "action": "withdrawn", "from_status": "new",
                               "to_status": "withdrawn", "by": "alice"}
    # final: no decision, no revision, no second withdrawal; a plain re-check still reads it
    with pytest.raises(Conflict, match="withdrawn"):
        withdraw_proposal(engine, pid, settings, user="alice")
    with pytest.raises(Conflict, match="cannot become reviewed"):
        decide_proposal(engine, pid, "reviewed", settings, user="bob")
    with pytest.raises(Conflict, match="revised geometry"):
        recheck_proposal(engine, pid, settings, source=gas(WATER_BOTTOM - 2.0, fid="W1", x=E0 + 10))
    assert recheck_proposal(engine, pid, settings, user="alice").status == "withdrawn"
    with pytest.raises(InputError, match="reviewed, approved or rejected"):
        decide_proposal(engine, pid, "withdrawn", settings, user="bob")
    # an admin withdraws someone's reviewed proposal, but not an approved one
    other = submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="W2", x=E0 + 12), settings, user="alice").proposal_id
    decide_proposal(engine, other, "reviewed", settings, user="bob")
    assert withdraw_proposal(engine, other, settings, user="root", admin=True)["status"] == "withdrawn"
    done = submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="W3", x=E0 + 14), settings, user="alice").proposal_id
    decide_proposal(engine, done, "reviewed", settings, user="bob")
    decide_proposal(engine, done, "approved", settings, user="bob")
    with pytest.raises(Conflict, match="only a new or reviewed"):
        withdraw_proposal(engine, done, settings, user="alice")
    with pytest.raises(NotFound):
        withdraw_proposal(engine, 987654, settings, user="alice")


def test_the_state_machine_is_closed():
    statuses = set(TRANSITIONS)
    assert all(targets <= statuses for targets in TRANSITIONS.values())
    assert not TRANSITIONS["approved"] and not TRANSITIONS["withdrawn"]
    assert {s for s, t in TRANSITIONS.items() if "withdrawn" in t} == {"new", "reviewed"}


# ----------------------------------------------------------------------------- stored geometry
def _stored(engine, pid: int) -> tuple[int, shapely.Geometry]:
    """The stored geometry and its SRID."""
    with engine.connect() as conn:
        srid, wkt = conn.execute(sa.text("SELECT ST_SRID(geom), ST_AsText(geom) FROM proposal WHERE id = :p"),
                                 {"p": pid}).one()
    return srid, shapely.from_wkt(wkt)


def test_the_geometry_is_stored_in_the_twin_crs(twin):
    engine, settings = twin
    to_lonlat = transformer(settings.crs, "OGC:CRS84")
    # in lon/lat (RFC 7946), 2D, given by depth: stored as the easting, northing it stands for
    (lon0, lon1), (lat0, lat1) = to_lonlat.transform([E0 + 20, E0 + 20], [N0 - 20, N0 + 20])
    doc = {"type": "Feature", "properties": {"utility": "RQ", "size": "DN100", "depth_m": 2.5},
           "geometry": {"type": "LineString", "coordinates": [[lon0, lat0], [lon1, lat1]]}}
    pid = submit_proposal(engine, doc, settings, user="alice").proposal_id
    srid, geom = _stored(engine, pid)
    assert srid == 4548 and geom.geom_type == "LineString" and not geom.has_z
    assert shapely.get_coordinates(geom) == pytest.approx(np.array([[E0 + 20, N0 - 20], [E0 + 20, N0 + 20]]),
                                                          abs=1e-3)
    # with z: kept; a revised geometry replaces it
    pid = submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="G1", x=E0 + 16), settings, user="alice").proposal_id
    z = WATER_BOTTOM - 1.0
    assert shapely.get_coordinates(_stored(engine, pid)[1], include_z=True).tolist() == [
        [E0 + 16, N0 - 20, z], [E0 + 16, N0 + 20, z]]
    recheck_proposal(engine, pid, settings, source=gas(WATER_BOTTOM - 2.0, fid="G1", x=E0 + 18), user="alice")
    assert shapely.get_coordinates(_stored(engine, pid)[1], include_z=True)[0].tolist() == [
        E0 + 18, N0 - 20, WATER_BOTTOM - 2.0]


def test_geometry_of_several_features_and_an_excavation(twin):
    _, settings = twin
    two = gas(33.0)
    two["features"].append({**two["features"][0], "geometry": {
        "type": "LineString", "coordinates": [[E0 + 40, N0 - 20], [E0 + 40, N0 + 20]]}})
    geom = proposal_geometry(two, settings)
    assert geom.geom_type == "MultiLineString" and not geom.has_z  # 2D and 3D lines: no height made up
    pit = {"type": "Feature", "properties": {"depth_m": 2.0}, "geometry": {"type": "Polygon", "coordinates": [
        [[E0, N0], [E0 + 5, N0], [E0 + 5, N0 + 3], [E0, N0 + 3], [E0, N0]]]}}
    geom = proposal_geometry(pit, settings)
    assert geom.geom_type == "Polygon" and geom.area == pytest.approx(15.0)


def test_migration_0008_fills_the_geometry_of_stored_proposals(twin):
    """Rows stored before 0008 get the geometry the check reads, where their CRS is unambiguous."""
    _, settings = twin
    old = get_settings(db_schema=settings.db_schema + "_0007")
    drop_schema(old)
    engine = make_engine(old)
    try:
        upgrade(old, engine, revision="0007")
        to_lonlat = transformer(old.crs, "OGC:CRS84")
        lon, lat = to_lonlat.transform([E0, E0 + 50], [N0, N0])
        line = {"type": "LineString", "coordinates": [[E0, N0, 33.0], [E0 + 50, N0, 33.0]]}
        lonlat = {"type": "LineString", "coordinates": [[lon[0], lat[0]], [lon[1], lat[1]]]}
        docs = {
            "twin": {"type": "Feature", "properties": {}, "geometry": line},
            "lonlat": {"type": "Feature", "properties": {}, "geometry": lonlat},
            "named": {"type": "FeatureCollection", "crs": {"type": "name", "properties": {
                "name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}, "features": [
                {"type": "Feature", "properties": {}, "geometry": lonlat}]},
            "two": {"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {}, "geometry": line},
                {"type": "Feature", "properties": {}, "geometry": {**line, "coordinates": [
                    [E0, N0 + 5, 33.0], [E0 + 50, N0 + 5, 33.0]]}}]},
            "odd": {"type": "Feature", "properties": {"crs": "+proj=tmerc +lon_0=117 +x_0=500000 +ellps=GRS80 "
                                                              "+title=CRS84"}, "geometry": line},
        }
        with engine.begin() as conn:
            for name, doc in docs.items():
                conn.execute(sa.text("INSERT INTO proposal (name, geojson, created_by) "
                                     "VALUES (:n, CAST(:g AS jsonb), 'tests')"), {"n": name, "g": json.dumps(doc)})
        upgrade(old, engine)
        with engine.connect() as conn:
            got = dict(conn.execute(sa.text("SELECT name, ST_AsText(geom) FROM proposal")).all())
            srids = set(conn.execute(sa.text("SELECT ST_SRID(geom) FROM proposal WHERE geom IS NOT NULL")).scalars())
        assert got["odd"] is None and srids == {4548}
        for name in ("twin", "lonlat", "named", "two"):
            want = proposal_geometry(docs[name], old)
            assert shapely.equals_exact(shapely.from_wkt(got[name]), want, tolerance=1e-3), (name, got[name])
            assert shapely.from_wkt(got[name]).has_z == want.has_z
        with engine.begin() as conn:  # the status may be withdrawn now
            conn.execute(sa.text("UPDATE proposal SET status = 'withdrawn' WHERE name = 'odd'"))
    finally:
        engine.dispose()
        drop_schema(old)


# ----------------------------------------------------------------------------- four eyes, audit hooks
def test_the_submitter_or_reviser_neither_approves_nor_rejects(twin):
    engine, settings = twin
    pid = submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="F1", x=E0 + 16), settings, user="alice").proposal_id
    # reviewing one's own proposal is fine: the decision still needs somebody else
    decide_proposal(engine, pid, "reviewed", settings, user="alice")
    for status in ("approved", "rejected"):
        with pytest.raises(Forbidden, match="four eyes"):
            decide_proposal(engine, pid, status, settings, user="alice")
    assert get_proposal(engine, pid)["status"] == "reviewed"
    # whoever revised the geometry is an author too
    recheck_proposal(engine, pid, settings, source=gas(WATER_BOTTOM - 1.1, fid="F1", x=E0 + 16), user="bob")
    decide_proposal(engine, pid, "reviewed", settings, user="carol")
    with pytest.raises(Forbidden, match="bob submitted or revised"):
        decide_proposal(engine, pid, "approved", settings, user="bob")
    assert decide_proposal(engine, pid, "approved", settings, user="carol")["decided_by"] == "carol"


def test_the_hook_runs_inside_the_transaction(twin):
    engine, settings = twin

    def fail(conn, *args):
        # the change is visible on the hook's connection, and goes when the hook fails
        assert conn.execute(sa.text("SELECT count(*) FROM proposal")).scalar() >= 1
        raise RuntimeError("audit log unavailable")

    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM proposal")).scalar()
    with pytest.raises(RuntimeError):
        submit_proposal(engine, gas(WATER_BOTTOM - 1.0, fid="H1", x=E0 + 18), settings, user="alice",
                        before_commit=fail)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM proposal")).scalar() == before
    seen = []
    pid = submit_proposal(engine, gas(WATER_BOTTOM - 0.10, fid="H2", x=E0 + 18), settings, user="alice",
                          before_commit=lambda conn, report: seen.append(report.proposal_id)).proposal_id
    assert seen == [pid]
    key = get_proposal(engine, pid)["findings"][0]["key"]
    with pytest.raises(RuntimeError):
        decide_proposal(engine, pid, "reviewed", settings, user="bob", before_commit=fail)
    with pytest.raises(RuntimeError):
        decide_finding(engine, pid, key, "accepted", settings, user="bob", before_commit=fail)
    with pytest.raises(RuntimeError):
        withdraw_proposal(engine, pid, settings, user="alice", before_commit=fail)
    with pytest.raises(RuntimeError):
        recheck_proposal(engine, pid, settings, user="bob", before_commit=fail)
    d = get_proposal(engine, pid)
    assert d["status"] == "new" and d["findings"][0]["status"] == "open"
    assert [e["action"] for e in d["events"]] == ["submitted"]


def test_a_pair_no_rule_covers_blocks_approval_until_an_approver_gives_the_reason(twin):
    engine, settings = twin
    # high-pressure gas (2.0 MPa: GB 50289's table stops at sub-high A) 1 m beside the water main
    doc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "HP1", "utility": "RQ", "z_reference": "top", "pressure_mpa": 2.0,
                                          "size": "DN200"},
        "geometry": {"type": "LineString", "coordinates": [[E0 + 10, N0 + 1.0, GROUND - 1.2],
                                                           [E0 + 40, N0 + 1.0, GROUND - 1.2]]}}]}
    report = submit_proposal(engine, doc, settings, user="alice")
    (f,) = report.findings
    assert (f.kind, f.verdict, f.required_m, set(f.ids)) == ("no_rule", "no_rule", None, {"HP1", "J1-J2"})
    assert f.measured_m == pytest.approx(1.0 - 0.15 - 0.1, abs=1e-6) and "无规则" in f.summary
    assert not report.passed and report.as_dict()["verdicts"]["no_rule"] == 1
    assert report.unruled == {"horizontal JS / RQ": 1}
    pid = report.proposal_id
    decide_proposal(engine, pid, "reviewed", settings, user="bob")
    with pytest.raises(InputError, match="无规则"):
        decide_proposal(engine, pid, "approved", settings, user="bob")
    with pytest.raises(InputError, match="reason"):
        decide_finding(engine, pid, f.key, "accepted", settings, user="bob")
    decide_finding(engine, pid, f.key, "accepted", settings, user="bob", note="owner's standard: 3 m, kept")
    d = decide_proposal(engine, pid, "approved", settings, user="bob")
    assert d["status"] == "approved" and d["findings"][0]["note"] == "owner's standard: 3 m, kept"
    assert "无规则" in report_html(d)
