"""Edits of single features (twin.store, ingest.derive) on the small survey: geometry stays
consistent, every edit is a new version in history, and the network as of a time is the old one.

The small survey (tests/data/small): water JS1 (plant) - JS2 (tee) - JS3 (valve on JS2-JS3) -
JS4 along northing 4035000, JS2 - JS5 (inoperable valve on JS2-JS5) - JS6 (hospital); drainage
YS1 - YS2 - YS3 (depth to the invert, D600); a power duct bank DL1 - DL2 (800X500).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from analysis.shutoff import shutoff
from ingest import derive as edit
from ingest.pipeline import ingest_survey
from tests.conftest import SMALL
from twin import store
from twin.errors import Conflict, InputError, InvalidGeometry, NotFound
from twin.store import Edit

USER = "editor-anna"


@pytest.fixture
def twin(twin_settings, twin_engine):
    """The module's twin holding exactly the small survey, fresh for each test."""
    tables = [t for k in store.KINDS for t in (k, f"{k}_history")]
    with twin_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}, batch RESTART IDENTITY CASCADE"))
    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine


def run(engine: sa.Engine, settings, fn: Callable[..., Edit], *args, **kw) -> Edit:
    """One edit in a transaction of its own, as the API runs it."""
    with engine.begin() as conn:
        if fn.__module__ == "ingest.derive":
            kw["settings"] = settings
        return fn(conn, USER, *args, **kw)


def row(engine: sa.Engine, kind: str, id: str) -> dict:
    with engine.connect() as conn:
        r = conn.execute(sa.text(f"SELECT *, ST_AsBinary(geom) AS wkb FROM {kind} WHERE id = :i"), {"i": id}).mappings().first()
    assert r is not None, f"{kind} {id} missing"
    out = dict(r)
    out["coords"] = shapely.get_coordinates(shapely.from_wkb(bytes(out["wkb"])), include_z=True)
    return out


def live(engine: sa.Engine, kind: str) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text(f"SELECT id FROM current_{kind}"))}


def now(engine: sa.Engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def assert_consistent(engine: sa.Engine, segment_id: str) -> dict:
    """A segment's end vertices sit on its nodes, its heights and length agree with its columns,
    and the centreline heights follow from the ends' ground and depth as ingest derives them."""
    s = row(engine, "segment", segment_id)
    a, b = row(engine, "node", s["from_node"]), row(engine, "node", s["to_node"])
    c = s["coords"]
    np.testing.assert_allclose(c[0, :2], a["coords"][0, :2], atol=1e-9)
    np.testing.assert_allclose(c[-1, :2], b["coords"][0, :2], atol=1e-9)
    assert c[0, 2] == pytest.approx(s["from_z"], abs=1e-9) and c[-1, 2] == pytest.approx(s["to_z"], abs=1e-9)
    assert s["length_m"] == pytest.approx(np.hypot(*np.diff(c[:, :2], axis=0).T).sum(), abs=1e-9)
    r = (s["height_mm"] if s["shape"] == "rect" else s["diameter_mm"]) / 2000
    sign = 1 if s["depth_reference"] == "invert" else -1
    assert s["from_z"] == pytest.approx(a["ground_z"] - s["from_depth_m"] + sign * r, abs=1e-9)
    assert s["to_z"] == pytest.approx(b["ground_z"] - s["to_depth_m"] + sign * r, abs=1e-9)
    return s


# -- move ------------------------------------------------------------------------------------
def test_move_node_moves_its_pipe_ends_and_valve(twin, twin_settings):
    before = row(twin, "segment", "JS3-JS4")
    result = run(twin, twin_settings, edit.move_node, "JS3", easting=410046.0, northing=4035002.0, ground_z=35.5)
    node = row(twin, "node", "JS3")
    np.testing.assert_allclose(node["coords"][0], [410046.0, 4035002.0, 35.5])
    assert node["ground_z"] == 35.5 and node["version"] == 2
    a, b = assert_consistent(twin, "JS2-JS3"), assert_consistent(twin, "JS3-JS4")
    # The depth below ground is kept: a ground 0.32 m higher lifts the pipe end by 0.32 m.
    assert a["to_depth_m"] == 1.4 and a["to_z"] == pytest.approx(35.5 - 1.4 - 0.15)
    assert b["from_z"] == pytest.approx(before["from_z"] + 0.32)
    assert b["to_z"] == before["to_z"]  # the far end stays
    assert b["length_m"] == pytest.approx(math.hypot(410090 - 410046, 2.0))
    valve = row(twin, "valve", "JS3")
    np.testing.assert_allclose(valve["coords"][0], [410046.0, 4035002.0, a["to_z"]])
    assert {(c.kind, c.id, c.change, c.version) for c in result.changes} == {
        ("node", "JS3", "changed", 2), ("segment", "JS2-JS3", "changed", 2),
        ("segment", "JS3-JS4", "changed", 2), ("valve", "JS3", "changed", 2)}
    # Attributable in the twin: every changed row names the edit's batch, which names the user.
    with twin.connect() as conn:
        batch = conn.execute(sa.text("SELECT * FROM batch WHERE id = :b"), {"b": result.batch_id}).mappings().one()
    assert batch["kind"] == "edit" and batch["created_by"] == USER and batch["report"]["op"] == "move"
    assert batch["counts"]["changes"] == {"node": {"changed": 1}, "segment": {"changed": 2}, "valve": {"changed": 1}}
    assert {row(twin, k, i)["batch_id"] for k, i in [("node", "JS3"), ("segment", "JS2-JS3"), ("valve", "JS3")]} == {
        result.batch_id}


def test_move_keeping_elevation_or_setting_depth(twin, twin_settings):
    before = row(twin, "segment", "JS3-JS4")
    run(twin, twin_settings, edit.move_node, "JS4", ground_z=36.0, keep="elevation")
    s = assert_consistent(twin, "JS3-JS4")
    assert s["to_z"] == pytest.approx(before["to_z"]) and s["to_depth_m"] == pytest.approx(1.4 + (36.0 - 35.15))
    assert row(twin, "node", "JS4")["depth_m"] == pytest.approx(1.4 + 0.85)
    # A new depth at a node sets the depth of every pipe end there (duct bank 500 mm high).
    run(twin, twin_settings, edit.move_node, "DL2", depth_m=1.0)
    d = assert_consistent(twin, "DL1-DL2")
    assert d["to_depth_m"] == 1.0 and d["to_z"] == pytest.approx(35.18 - 1.0 - 0.25)
    assert d["from_depth_m"] == 0.8
    # Drainage depth is to the invert: the centre is above it.
    run(twin, twin_settings, edit.move_node, "YS2", northing=4034992.0)
    for s in ("YS1-YS2", "YS2-YS3"):
        assert_consistent(twin, s)
    assert row(twin, "segment", "YS1-YS2")["to_z"] == pytest.approx(35.18 - 2.1 + 0.3)


def test_moving_nowhere_changes_nothing(twin, twin_settings):
    result = run(twin, twin_settings, edit.move_node, "JS4", easting=410090.0)
    assert result.changes == [] and result.as_dict()["unchanged"] is True
    assert row(twin, "node", "JS4")["version"] == 1


# -- split and merge -------------------------------------------------------------------------
def test_split_keeps_length_connectivity_and_valves(twin, twin_settings):
    whole = shutoff(twin, pipe="JS3-JS4")
    upstream = shutoff(twin, pipe="JS1-JS2")
    old = row(twin, "segment", "JS2-JS3")
    result = run(twin, twin_settings, edit.split_segment, "JS2-JS3", easting=410042.0, northing=4035000.3)
    assert result.notes["node"] == "JS2-JS3-n" and result.notes["segments"] == ["JS2-JS3-1", "JS2-JS3-2"]
    a, b = assert_consistent(twin, "JS2-JS3-1"), assert_consistent(twin, "JS2-JS3-2")
    assert a["length_m"] + b["length_m"] == pytest.approx(old["length_m"], abs=1e-9)
    assert (a["from_node"], a["to_node"], b["from_node"], b["to_node"]) == ("JS2", "JS2-JS3-n", "JS2-JS3-n", "JS3")
    node = row(twin, "node", "JS2-JS3-n")
    np.testing.assert_allclose(node["coords"][0, :2], [410042.0, 4035000.0])
    # The new node sits on the pipe: its height there is interpolated along it.
    z = np.interp(2.0, [0, 5], old["coords"][:, 2])
    assert a["to_z"] == pytest.approx(z) and b["from_z"] == pytest.approx(z)
    assert node["feature"] == "straight" and node["depth_m"] == pytest.approx(node["ground_z"] - (z + 0.15))
    for part in (a, b):
        assert part["material"] == old["material"] and part["diameter_mm"] == 300 and part["scope"] == "survey"
        assert part["attrs"]["split_from"] == "JS2-JS3"
    gone = row(twin, "segment", "JS2-JS3")
    assert gone["retired_at"] is not None and gone["retired_reason"] == "split into JS2-JS3-1, JS2-JS3-2"
    assert "JS2-JS3" not in live(twin, "segment")
    valve = row(twin, "valve", "JS3")
    assert valve["segment_id"] == "JS2-JS3-2" and valve["node_id"] == "JS3"
    # The valve still separates the same segments: shutoff answers as before, with the parts.
    moved_on = [{**v, "pipe": "JS2-JS3-2"} for v in whole.as_dict()["valves"]]
    assert shutoff(twin, pipe="JS3-JS4").as_dict()["valves"] == moved_on
    after = shutoff(twin, pipe="JS1-JS2")
    assert [v["id"] for v in after.valves] == [v["id"] for v in upstream.valves]
    assert set(after.isolated_pipes) == set(upstream.isolated_pipes) - {"JS2-JS3"} | {"JS2-JS3-1", "JS2-JS3-2"}


def test_merge_is_the_inverse_of_split(twin, twin_settings):
    original = row(twin, "segment", "JS3-JS4")
    t0 = now(twin)
    run(twin, twin_settings, edit.split_segment, "JS3-JS4", easting=410070.0, northing=4034999.0,
        ids=["east-a", "east-b"], node_id="cut", ground_z=35.3)
    t1 = now(twin)
    assert {"east-a", "east-b"} <= live(twin, "segment") and "cut" in live(twin, "node")
    result = run(twin, twin_settings, edit.merge_segments, "east-a", "east-b")
    assert result.notes["segment"] == "JS3-JS4"
    merged = assert_consistent(twin, "JS3-JS4")
    assert merged["version"] == 3 and merged["retired_at"] is None  # created, retired by the split, revived
    assert (merged["from_node"], merged["to_node"]) == ("JS3", "JS4")
    assert merged["length_m"] == pytest.approx(original["length_m"])
    np.testing.assert_allclose(merged["coords"][[0, -1]], original["coords"], atol=1e-9)
    # The split point stays a vertex, on the original line and its grade.
    assert len(merged["coords"]) == 3
    np.testing.assert_allclose(merged["coords"][1], [410070.0, 4035000.0, np.interp(25, [0, 45], original["coords"][:, 2])])
    assert {"east-a", "east-b"}.isdisjoint(live(twin, "segment")) and "cut" not in live(twin, "node")
    assert row(twin, "node", "cut")["retired_reason"] == "merged east-a and east-b into JS3-JS4"
    with twin.connect() as conn:
        assert store.feature(conn, "segment", "east-a", at=t1)["properties"]["to_node"] == "cut"
        assert store.feature(conn, "segment", "JS3-JS4", at=t0)["properties"]["version"] == 1
        with pytest.raises(NotFound):
            store.feature(conn, "segment", "JS3-JS4", at=t1)
        h = store.history(conn, "segment", "JS3-JS4")
    assert [v["change"] for v in h["versions"]] == ["created", "retired", "revived"]


def test_merge_of_two_pipes_pointing_at_one_node(twin, twin_settings):
    for i, e in enumerate((410100.0, 410120.0, 410140.0, 410160.0)):
        run(twin, twin_settings, edit.add_node, f"P{i}", utility="JS", easting=e, northing=4035050.0 + i,
            ground_z=35.0 + i / 10, depth_m=1.2)
    run(twin, twin_settings, edit.add_segment, "P0", "P1", size="DN150", attributes={"material": "PE"})
    run(twin, twin_settings, edit.add_segment, "P2", "P1", size="DN150", attributes={"material": "pe", "road": "x"})
    joint = row(twin, "segment", "P0-P1")["coords"][-1]
    result = run(twin, twin_settings, edit.merge_segments, "P0-P1", "P2-P1")
    m = assert_consistent(twin, "P0-P1+P2-P1")
    assert (m["from_node"], m["to_node"]) == ("P0", "P2") and m["attrs"]["merged_from"] == ["P0-P1", "P2-P1"]
    np.testing.assert_allclose(m["coords"][1], joint)  # the joint's height is kept, not re-graded
    assert m["length_m"] == pytest.approx(math.hypot(20, 1) * 2)
    assert any("road differs" in w["message"] for w in result.warnings)
    # A reducer stays a node.
    run(twin, twin_settings, edit.add_segment, "P2", "P3", size="DN200", attributes={"material": "PE"})
    with pytest.raises(Conflict, match="differ in diameter_mm"):
        run(twin, twin_settings, edit.merge_segments, "P0-P1+P2-P1", "P2-P3")


@pytest.mark.parametrize("first,second,error,words", [
    ("JS1-JS2", "JS2-JS3", Conflict, "joins 3 current segments"),   # JS2 is a tee
    ("JS2-JS3", "JS3-JS4", Conflict, "valve"),                        # a valve point
    ("JS2-JS5", "JS5-JS6", Conflict, "carries a valve"),
    ("YS1-YS2", "YS2-YS3", Conflict, "manhole"),                      # a manhole stays a node
    ("JS1-JS2", "JS3-JS4", InputError, "no node"),
    ("JS1-JS2", "JS1-JS2", InputError, "two different"),
    ("JS1-JS2", "nope", NotFound, "nope"),
])
def test_merge_refuses(twin, twin_settings, first, second, error, words):
    with pytest.raises(error, match=words):
        run(twin, twin_settings, edit.merge_segments, first, second)


@pytest.mark.parametrize("kw,error,words", [
    (dict(easting=410070.0, northing=4035030.0), InputError, "30.00 m from segment"),
    (dict(easting=410045.01, northing=4035000.0), InputError, "within 0.05 m of an end"),
    (dict(easting=410070.0, northing=4035000.0, ids=["a", "a"]), InputError, "two different ids"),
    (dict(easting=410070.0, northing=4035000.0, ids=["JS1-JS2", "b"]), Conflict, "in use"),
    (dict(easting=410070.0, northing=4035000.0, node_id="JS1"), Conflict, "in use"),
    (dict(easting=float("nan"), northing=4035000.0), InputError, "finite"),
    (dict(easting=410070.0, northing=4035000.0, version=7), Conflict, "version 1, not 7"),
])
def test_split_refuses(twin, twin_settings, kw, error, words):
    with pytest.raises(error, match=words):
        run(twin, twin_settings, edit.split_segment, "JS3-JS4", **kw)
    assert "JS3-JS4" in live(twin, "segment")


# -- add -------------------------------------------------------------------------------------
def test_add_node_and_segment_derive_like_an_import(twin, twin_settings):
    run(twin, twin_settings, edit.add_node, "V9", utility="JS", easting=410090.0, northing=4035010.0,
        ground_z=35.3, depth_m=1.5, attributes={"appurtenance": "阀门", "remarks": "常闭"})
    assert row(twin, "node", "V9")["appurtenance"] == "valve"
    result = run(twin, twin_settings, edit.add_segment, "JS4", "V9", size="DN200",
                 attributes={"material": "球墨铸铁", "built": "2024年", "pressure": 0.4})
    s = assert_consistent(twin, "JS4-V9")
    assert (s["diameter_mm"], s["shape"], s["built_year"], s["pressure_mpa"]) == (200, "circular", 2024, 0.4)
    assert s["from_depth_m"] == 1.4 and s["to_depth_m"] == 1.5  # the nodes' depths
    assert s["from_z"] == pytest.approx(35.15 - 1.4 - 0.1) and s["length_m"] == pytest.approx(10.0)
    assert s["scope"] == "edit" and s["version"] == 1
    # A valve point at an end gets its valve on the new pipe, normally closed from the remark.
    valve = row(twin, "valve", "V9")
    assert (valve["segment_id"], valve["node_id"], valve["normally_closed"]) == ("JS4-V9", "V9", True)
    assert [(c.kind, c.id) for c in result.changes] == [("segment", "JS4-V9"), ("valve", "V9")]
    # Elevation given instead of depth; a plant becomes a source, a service entry a customer.
    run(twin, twin_settings, edit.add_node, "W1", utility="JS", easting=410000.0, northing=4035030.0,
        ground_z=35.0, attributes={"appurtenance": "水厂", "remarks": "二水厂"})
    run(twin, twin_settings, edit.add_node, "H1", utility="JS", easting=410000.0, northing=4035040.0,
        ground_z=35.0, depth_m=1.0, attributes={"feature": "进楼", "remarks": "第二人民医院"})
    run(twin, twin_settings, edit.add_segment, "W1", "H1", size="DN100", from_elevation_m=33.8, id="W1H1")
    w = assert_consistent(twin, "W1H1")
    assert w["from_depth_m"] == pytest.approx(1.2) and w["from_z"] == pytest.approx(33.8 - 0.05)
    assert row(twin, "source", "SRC-W1")["kind"] == "water_plant"
    assert row(twin, "customer", "H1")["critical"] is True


def test_add_segment_crossing_another_warns(twin, twin_settings):
    run(twin, twin_settings, edit.add_node, "X1", utility="JS", easting=410020.0, northing=4034995.0,
        ground_z=35.2, depth_m=1.0)
    run(twin, twin_settings, edit.add_node, "X2", utility="JS", easting=410020.0, northing=4035005.0,
        ground_z=35.2, depth_m=1.0, attributes={"feature": "tee"})
    result = run(twin, twin_settings, edit.add_segment, "X1", "X2", size="DN100")
    codes = {w["code"]: w for w in result.warnings}
    assert codes["W208"]["ids"] == ["X1-X2", "JS1-JS2"]
    assert "tee should join 3" in codes["W207"]["message"]


@pytest.mark.parametrize("fn,args,kw,error,code", [
    (edit.add_node, ("N", ), dict(utility="ZZ", easting=410000.0, northing=4035000.0, ground_z=35.0),
     InputError, "E103"),
    (edit.add_node, ("N", ), dict(utility="JS", easting=4035000.0, northing=410000.0, ground_z=35.0),
     InvalidGeometry, "E104"),
    (edit.add_node, ("JS1", ), dict(utility="JS", easting=410000.0, northing=4035000.0, ground_z=35.0),
     Conflict, "CONFLICT"),
    (edit.add_node, ("N", ), dict(utility="JS", easting=410000.0, northing=4035000.0, ground_z=math.inf),
     InputError, "INPUT"),
    (edit.add_node, ("N\x00", ), dict(utility="JS", easting=410000.0, northing=4035000.0, ground_z=1.0),
     InputError, "INPUT"),
    (edit.add_node, ("N", ), dict(utility="JS", easting=410000.0, northing=4035000.0, ground_z=35.0,
                                  attributes={"ground_z": 3}), InputError, "INPUT"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="big"), InputError, "E305"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="DN100", from_depth_m=45.0), InputError, "E302"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="DN100", from_elevation_m=36.0), InputError, "E304"),
    (edit.add_segment, ("JS1", "JS2"), dict(size="DN100", id="again"), InputError, "E206"),
    (edit.add_segment, ("JS1", "JS1"), dict(size="DN100"), InvalidGeometry, "E204"),
    (edit.add_segment, ("JS1", "ghost"), dict(size="DN100"), NotFound, "NOT_FOUND"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="DN100", attributes={"status": "maybe"}), InputError, "E108"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="DN100", attributes={"cables": 2.5}), InputError, "INPUT"),
    (edit.add_segment, ("JS1", "JS4"), dict(size="DN100", id="JS1-JS2"), Conflict, "CONFLICT"),
    (edit.move_node, ("JS4", ), dict(), InputError, "INPUT"),
    (edit.move_node, ("JS4", ), dict(easting=410045.0), InvalidGeometry, "E204"),
    (edit.move_node, ("JS4", ), dict(keep="ground"), InputError, "INPUT"),
])
def test_invalid_edits_are_refused_and_change_nothing(twin, twin_settings, fn, args, kw, error, code):
    with twin.connect() as conn:
        batches = conn.execute(sa.text("SELECT count(*) FROM batch")).scalar_one()
    with pytest.raises(error) as info:
        run(twin, twin_settings, fn, *args, **kw)
    assert code in (info.value.code, str(info.value)) or f"{code}:" in str(info.value)
    with twin.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM batch")).scalar_one() == batches
        assert conn.execute(sa.text("SELECT count(*) FROM segment_history")).scalar_one() == 0


# -- attributes, versions, history -------------------------------------------------------------
def test_attributes_versions_and_history(twin, twin_settings):
    t0 = now(twin)
    run(twin, twin_settings, edit.move_node, "JS2", northing=4035001.0)
    t1 = now(twin)
    run(twin, twin_settings, edit.change_attributes, "segment", "JS2-JS3", {"size": "DN500", "material": "钢"},
        version=2)
    s = assert_consistent(twin, "JS2-JS3")
    assert (s["diameter_mm"], s["size_text"], s["material"], s["version"]) == (500, "DN500", "钢", 3)
    # The depth (to the top) is kept, so a bigger pipe's centre is lower; its valve follows.
    assert s["to_z"] == pytest.approx(35.18 - 1.4 - 0.25)
    assert row(twin, "valve", "JS3")["coords"][0, 2] == pytest.approx(s["to_z"])
    with pytest.raises(Conflict, match="version 3, not 2"):
        run(twin, twin_settings, edit.change_attributes, "segment", "JS2-JS3", {"owner": "x"}, version=2)
    run(twin, twin_settings, store.retire, "segment", "JS2-JS3", "replaced by a new main", version=3)
    with twin.connect() as conn:
        h = store.history(conn, "segment", "JS2-JS3")
        old = store.feature(conn, "segment", "JS2-JS3", at=t0)
        moved = store.feature(conn, "segment", "JS2-JS3", at=t1)
        summary_then, summary_now = store.as_of(conn, t0), store.as_of(conn, now(twin))
    assert h["state"] == "retired"
    assert [v["version"] for v in h["versions"]] == [1, 2, 3, 4]
    assert [v["change"] for v in h["versions"]] == ["created", "changed", "changed", "retired"]
    assert [v["op"] for v in h["versions"]] == ["update", "update", "update", None]
    assert h["versions"][1]["changed"] == ["geom", "length_m"]  # moved in plan only: same heights
    assert {"diameter_mm", "size_text", "material", "from_z", "to_z", "geom"} <= set(h["versions"][2]["changed"])
    assert h["versions"][3]["retired_reason"] == "replaced by a new main" and h["versions"][3]["changed"] == []
    assert h["versions"][1]["batch"]["by"] == USER and h["versions"][1]["batch"]["op"] == "move"
    assert h["versions"][0]["batch"]["kind"] == "survey"
    assert all(a["valid_to"] == b["valid_from"] for a, b in zip(h["versions"], h["versions"][1:], strict=False))
    # As of a time before the edits: the old geometry and size.
    assert old["geometry"]["coordinates"][0] == [410040, 4035000, pytest.approx(33.63)]
    assert old["properties"]["diameter_mm"] == 300 and old["properties"]["version"] == 1
    assert moved["geometry"]["coordinates"][0][:2] == [410040, 4035001]
    assert summary_then["counts"]["segment"] == 8 and summary_now["counts"]["segment"] == 7
    js = {u["utility"]: u for u in summary_then["segments_by_utility"]}["JS"]
    assert js["segments"] == 5 and js["length_m"] == pytest.approx(110.0)
    # The valve went with its segment, and both are in the twin's history.
    assert row(twin, "valve", "JS3")["retired_reason"] == "segment JS2-JS3 retired: replaced by a new main"


def test_attribute_whitelist_and_types(twin, twin_settings):
    result = run(twin, twin_settings, edit.change_attributes, "valve", "JS5", {"operable": True, "kind": "gate"})
    assert result.changes[0].version == 2 and row(twin, "valve", "JS5")["operable"] is True
    run(twin, twin_settings, edit.change_attributes, "customer", "JS6", {"demand": 2.5, "critical": False})
    assert row(twin, "customer", "JS6")["demand"] == 2.5
    run(twin, twin_settings, edit.change_attributes, "node", "YS2", {"well_depth_m": 3.0, "subtype": "YS"})
    assert row(twin, "node", "YS2")["well_bottom_z"] == pytest.approx(35.18 - 3.0)
    run(twin, twin_settings, edit.change_attributes, "segment", "YS1-YS2", {"subtype": "HS", "remarks": "合流改造"})
    assert row(twin, "segment", "YS1-YS2")["subtype"] == "HS"
    same = run(twin, twin_settings, edit.change_attributes, "segment", "YS1-YS2", {"remarks": "合流改造"})
    assert same.changes == []
    for kind, values, words in [
        ("valve", {"segment_id": "JS1-JS2"}, "not an attribute"),
        ("valve", {"operable": "yes"}, "true or false"),
        ("customer", {"demand": "lots"}, "finite number"),
        ("segment", {"subtype": "MQ"}, "not a subtype of JS"),
        ("segment", {"size": None}, "needs a size"),
        ("segment", {"length_m": 3.0}, "not an attribute"),
        ("node", {"ground_z": 3.0}, "not an attribute"),
        ("node", {"remarks": "x" * 501}, "longer than"),
        ("pipe", {"remarks": "x"}, "unknown feature kind"),
        ("segment", {}, "at least one"),
    ]:
        with pytest.raises(InputError, match=words):
            run(twin, twin_settings, edit.change_attributes, kind, "JS1-JS2" if kind != "valve" else "JS5",
                values)
    with pytest.raises(NotFound):
        run(twin, twin_settings, edit.change_attributes, "valve", "V404", {"operable": False})


# -- retire and delete -----------------------------------------------------------------------
def test_retire_and_delete(twin, twin_settings):
    with pytest.raises(Conflict, match="used by 1 current segment"):
        run(twin, twin_settings, store.retire, "node", "DL1", "gone")
    with pytest.raises(Conflict, match="used by 1 current segment"):
        run(twin, twin_settings, store.delete, "node", "YS1")
    run(twin, twin_settings, store.retire, "segment", "DL1-DL2", "cable removed")
    assert "DL1-DL2" not in live(twin, "segment")
    with pytest.raises(Conflict, match="was retired"):
        run(twin, twin_settings, store.retire, "segment", "DL1-DL2", "again")
    with pytest.raises(Conflict, match="was retired"):
        run(twin, twin_settings, edit.change_attributes, "segment", "DL1-DL2", {"owner": "x"})
    # Its nodes are no longer used by a current segment: they may go.
    run(twin, twin_settings, store.retire, "node", "DL1", "cable removed")
    t0 = now(twin)
    result = run(twin, twin_settings, store.delete, "segment", "YS1-YS2")
    assert [(c.kind, c.id, c.change) for c in result.changes] == [("segment", "YS1-YS2", "deleted")]
    run(twin, twin_settings, store.delete, "node", "YS1", version=1)
    with twin.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM segment WHERE id = 'YS1-YS2'")).scalar_one() == 0
        h = store.history(conn, "segment", "YS1-YS2")
        assert store.feature(conn, "node", "YS1", at=t0)["properties"]["appurtenance"] == "manhole"
        with pytest.raises(NotFound, match="history"):
            store.feature(conn, "node", "YS1")
        retired = store.feature(conn, "segment", "DL1-DL2")
    assert h["state"] == "deleted" and h["versions"][-1]["op"] == "delete" and h["deleted_at"] is not None
    assert retired["properties"]["retired_reason"] == "cable removed"
    with pytest.raises(NotFound):
        run(twin, twin_settings, store.delete, "segment", "YS1-YS2")
    # A deleted id may be used again: its version count goes on.
    run(twin, twin_settings, edit.add_node, "YS1", utility="YS", easting=410000.0, northing=4034990.0,
        ground_z=35.2, depth_m=2.0, attributes={"appurtenance": "检查井"})
    assert row(twin, "node", "YS1")["version"] == 2
    with twin.connect() as conn:
        again = store.history(conn, "node", "YS1")
    assert [(v["version"], v["change"], v["op"]) for v in again["versions"]] == [
        (1, "created", "delete"), (2, "created", None)]
    assert again["state"] == "current"
    # Deleting a segment takes its valve along; a retired feature may be deleted too.
    gone = run(twin, twin_settings, store.delete, "segment", "JS2-JS5")
    assert [(c.kind, c.id) for c in gone.changes] == [("segment", "JS2-JS5"), ("valve", "JS5")]
    run(twin, twin_settings, store.delete, "segment", "DL1-DL2")
    with pytest.raises(InputError, match="reason"):
        run(twin, twin_settings, store.retire, "segment", "JS1-JS2", "  ")
    with pytest.raises(InputError, match="unknown feature kind"):
        run(twin, twin_settings, store.delete, "pipe", "JS1-JS2")


def test_concurrent_edits_of_one_version_conflict(twin, twin_settings):
    """Two editors saw version 1; the second to commit is refused, not silently overwritten."""
    with twin.begin() as first:
        edit.change_attributes(first, "a", "segment", "JS1-JS2", {"owner": "A"}, version=1, settings=twin_settings)
    with pytest.raises(Conflict, match="version 2, not 1"):
        run(twin, twin_settings, edit.change_attributes, "segment", "JS1-JS2", {"owner": "B"}, version=1)
    assert row(twin, "segment", "JS1-JS2")["owner"] == "A"


def test_as_of_rejects_bad_times(twin):
    with twin.connect() as conn, pytest.raises(InputError, match="ISO 8601"):
        store.as_of(conn, "yesterday")
    with twin.connect() as conn:
        before = store.as_of(conn, "2000-01-01T00:00:00")
    assert before["counts"] == dict.fromkeys(store.KINDS, 0)
