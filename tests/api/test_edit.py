"""The editing routes on a twin of their own (the small survey): permissions, audit entries,
new versions in the answers, history and the network as of a time, and bad input as 4xx."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pyproj import Transformer

from tests.api.conftest import Api, make_twin, open_api
from twin.db import make_engine


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_api_edit", tmp_path_factory.mktemp("api_edit"), data="small")
    yield from open_api(settings)


@pytest.fixture(scope="module")
def engine(api: Api) -> Iterator[sa.Engine]:
    engine = make_engine(api.settings)
    yield engine
    engine.dispose()


def audit_entries(engine: sa.Engine, action: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.text("SELECT * FROM audit_log WHERE action = :a ORDER BY id"), {"a": action}).mappings()]


def db_now(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one().isoformat()


EDITS = [
    ("POST", "/edit/nodes", {"id": "Q", "utility": "JS", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0}),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS4", "size": "DN100"}),
    ("POST", "/edit/segments/merge", {"segments": ["JS1-JS2", "JS2-JS3"]}),
    ("POST", "/edit/nodes/JS4/move", {"easting": 410091.0}),
    ("POST", "/edit/segments/JS3-JS4/split", {"at": {"easting": 410070.0, "northing": 4035000.0}}),
    ("PATCH", "/edit/segments/JS1-JS2", {"attributes": {"owner": "x"}}),
    ("POST", "/edit/valves/JS3/retire", {"reason": "x"}),
    ("DELETE", "/edit/valves/JS3", None),
]


@pytest.mark.parametrize("method,path,body", EDITS)
def test_edits_need_sign_in_and_the_edit_permission(api: Api, engine: sa.Engine, method, path, body):
    kw = {"json": body} if body is not None else {}
    r = api.client.request(method, path, **kw)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    for role in ("viewer", "approver"):
        r = api.request(method, path, role, **kw)
        assert r.status_code == 403, (role, r.text)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM batch WHERE kind = 'edit'")).scalar_one() == 0


def test_reads_need_sign_in(api: Api):
    for path in ("/features/segments/JS1-JS2", "/features/segments/JS1-JS2/history", "/network"):
        assert api.client.get(path).status_code == 401
        assert api.get(path, "viewer").status_code == 200


def test_add_move_split_merge_retire_delete_through_the_api(api: Api, engine: sa.Engine):
    t0 = db_now(engine)
    r = api.post("/edit/nodes", "editor", json={
        "id": "A1", "utility": "JS", "easting": 410000.0, "northing": 4035060.0, "ground_z": 35.4, "depth_m": 1.3,
        "attributes": {"feature": "三通", "remarks": "新建"}})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/features/nodes/A1"
    body = r.json()
    assert body["features"] == [{"kind": "node", "id": "A1", "change": "added", "version": 1}]
    assert body["op"] == "add-node" and body["user"] == "editor" and isinstance(body["batch_id"], int)
    # A node placed by lon/lat lands where pyproj puts it in the twin CRS.
    lon, lat = Transformer.from_crs("EPSG:4548", "EPSG:4326", always_xy=True).transform(410040.0, 4035060.0)
    r = api.post("/edit/nodes", "editor", json={"id": "A2", "utility": "JS", "lon": lon, "lat": lat,
                                                  "ground_z": 35.3, "depth_m": 1.3})
    assert r.status_code == 201, r.text
    a2 = api.get("/features/nodes/A2", params={"crs": "twin"}).json()
    assert a2["geometry"]["coordinates"] == [pytest.approx(410040.0, abs=1e-6),
                                             pytest.approx(4035060.0, abs=1e-6), 35.3]
    r = api.post("/edit/segments", "editor", json={"from_node": "A1", "to_node": "A2", "size": "DN200",
                                                    "attributes": {"material": "PE", "built": "2025"}})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/features/segments/A1-A2"
    assert r.json()["features"][0] == {"kind": "segment", "id": "A1-A2", "change": "added", "version": 1}
    assert any(w["code"] == "W207" for w in r.json()["warnings"])  # a tee with one pipe

    r = api.post("/edit/nodes/A2/move", "editor", json={"easting": 410050.0, "ground_z": 35.5, "version": 1})
    assert r.status_code == 200, r.text
    changed = {(f["kind"], f["id"]): f["version"] for f in r.json()["features"]}
    assert changed == {("node", "A2"): 2, ("segment", "A1-A2"): 2}
    seg = api.get("/features/segments/A1-A2", params={"crs": "twin"}).json()
    assert seg["geometry"]["coordinates"][-1][:2] == [410050.0, 4035060.0]
    assert seg["properties"]["length_m"] == pytest.approx(50.0) and seg["properties"]["version"] == 2
    assert seg["crs"].endswith("/EPSG/0/4548")
    # CRS84 by default (RFC 7946).
    lonlat = api.get("/features/segments/A1-A2").json()
    assert 114 < lonlat["geometry"]["coordinates"][0][0] < 120 and lonlat["crs"].endswith("CRS84")

    r = api.post("/edit/segments/A1-A2/split", "editor", json={"at": {"easting": 410020.0, "northing": 4035061.0},
                                                               "version": 2})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/features/nodes/A1-A2-n"
    assert {f["id"]: f["change"] for f in r.json()["features"]} == {
        "A1-A2-n": "added", "A1-A2-1": "added", "A1-A2-2": "added", "A1-A2": "retired"}
    r = api.post("/edit/segments/merge", "editor", json={"segments": ["A1-A2-1", "A1-A2-2"]})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/features/segments/A1-A2" and r.json()["segment"] == "A1-A2"
    r = api.request("PATCH", "/edit/segments/A1-A2", "editor", json={"attributes": {"owner": "城投", "cables": None},
                                                                     "version": 4})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == [{"kind": "segment", "id": "A1-A2", "change": "changed", "version": 5}]

    history = api.get("/features/segments/A1-A2/history", "viewer", params={"crs": "twin"}).json()
    assert [v["version"] for v in history["versions"]] == [1, 2, 3, 4, 5]
    assert [v["change"] for v in history["versions"]] == ["created", "changed", "retired", "revived", "changed"]
    assert history["versions"][-1]["changed"] == ["owner"]
    assert all(v["batch"]["by"] == "editor" for v in history["versions"])
    then = api.get("/features/segments/A1-A2", params={"at": t0})
    assert then.status_code == 404  # it did not exist yet
    assert api.get("/network", params={"at": t0}).json()["counts"]["segment"] == 8

    r = api.post("/edit/segments/A1-A2/retire", "editor", json={"reason": "survey error"})
    assert r.status_code == 200 and r.json()["features"][0]["change"] == "retired"
    assert api.get("/features/segments/A1-A2").json()["properties"]["retired_reason"] == "survey error"
    r = api.request("DELETE", "/edit/segments/A1-A2", "editor", params={"version": 6})
    assert r.status_code == 200 and r.json()["features"][0] == {
        "kind": "segment", "id": "A1-A2", "change": "deleted", "version": 6}
    assert api.get("/features/segments/A1-A2").status_code == 404
    assert api.get("/features/segments/A1-A2/history").json()["state"] == "deleted"

    # Every edit is in the audit log with the features it touched, and the admin can read it.
    for action, ids in [("edit-add-node", ["A1"]), ("edit-add-segment", ["A1-A2"]), ("edit-move", ["A2", "A1-A2"]),
                        ("edit-split", ["A1-A2-n", "A1-A2-1", "A1-A2-2", "A1-A2"]), ("edit-attributes", ["A1-A2"]),
                        ("edit-retire", ["A1-A2"]), ("edit-delete", ["A1-A2"])]:
        entries = audit_entries(engine, action)
        assert entries and entries[0]["user_name"] == "editor" and entries[0]["affected"] == ids, action
    merge = audit_entries(engine, "edit-merge")[0]
    assert merge["path"] == "/edit/segments/merge" and merge["params"]["segments"] == ["A1-A2-1", "A1-A2-2"]
    listed = api.get("/admin/audit", "admin", params={"action": "edit-move", "feature": "A2"}).json()["entries"]
    assert listed[0]["params"]["easting"] == 410050.0


def wait_for_jobs(engine: sa.Engine, timeout_s: float = 60) -> None:
    """Until no job of this twin is queued or running (refreshes of earlier tests' edits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(sa.text("SELECT count(*) FROM job WHERE status IN ('accepted', 'running')")).scalar():
                return
        time.sleep(0.2)
    raise AssertionError("jobs still running")


def test_an_edit_schedules_the_tile_refresh(api: Api, engine: sa.Engine):
    from tiles.build import build_tileset

    wait_for_jobs(engine)
    build_tileset(api.settings, full=True, workers=1)  # only a tileset that exists is refreshed
    r = api.request("PATCH", "/edit/customers/JS6", "editor", json={"attributes": {"demand": 3.5}})
    assert r.status_code == 200, r.text
    job = r.json()["tiles_job"]
    assert job
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = api.get(f"/jobs/{job}", "editor").json()["status"]
        if status not in ("accepted", "running"):
            break
        time.sleep(0.2)
    assert status == "successful", status
    # An edit that changes nothing schedules nothing.
    again = api.request("PATCH", "/edit/customers/JS6", "editor", json={"attributes": {"demand": 3.5}})
    assert again.json()["features"] == [] and again.json()["tiles_job"] is None


@pytest.mark.parametrize("method,path,body,status,code", [
    ("POST", "/edit/nodes", b'{"id": "B", "utility": "JS", "easting": 410000.0, "northing": 4035100.0, '
                            b'"ground_z": NaN}', 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "easting": 1e300, "northing": 4035100.0,
                             "ground_z": 35.0}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "ground_z": 35.0}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "easting": 1.0, "northing": 2.0, "lon": 116.0, "lat": 36.0,
                             "ground_z": 35.0}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B\u0000", "utility": "JS", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "QQ", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0}, 400, "E103"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "easting": 4035100.0, "northing": 410000.0,
                             "ground_z": 35.0}, 400, "E104"),
    ("POST", "/edit/nodes", {"id": "JS1", "utility": "JS", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0}, 409, "CONFLICT"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0, "attributes": {"remarks": "a\u0000b"}}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes", {"id": "B", "utility": "JS", "easting": 410000.0, "northing": 4035100.0,
                             "ground_z": 35.0, "colour": "red"}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS4", "size": "huge"}, 400, "E305"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "nowhere", "size": "DN100"}, 404, "NOT_FOUND"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS1", "size": "DN100"}, 400, "E204"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS4", "size": "DN100",
                                "attributes": {"cables": "many"}}, 400, "INPUT"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS4", "size": "DN100",
                                "attributes": {"geom": "POINT(0 0)"}}, 400, "INPUT"),
    ("POST", "/edit/segments", {"from_node": "JS1", "to_node": "JS4", "size": "DN100", "to_depth_m": 99.0},
     400, "E302"),
    ("POST", "/edit/segments/merge", {"segments": ["JS1-JS2", "JS2-JS5"]}, 409, "CONFLICT"),
    ("POST", "/edit/segments/merge", {"segments": ["JS1-JS2"]}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/segments/merge", {"segments": ["JS1-JS2", "DL1-DL2"]}, 400, "INPUT"),
    ("POST", "/edit/nodes/JS4/move", {}, 400, "INPUT"),
    ("POST", "/edit/nodes/JS4/move", {"easting": 410045.0}, 400, "E204"),
    ("POST", "/edit/nodes/JS4/move", {"easting": 410095.0, "version": 9}, 409, "CONFLICT"),
    ("POST", "/edit/nodes/JS4/move", {"lon": 116.0}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes/ghost/move", {"easting": 410095.0}, 404, "NOT_FOUND"),
    ("POST", "/edit/segments/DL1-DL2/split", {"at": {"easting": 410030.0, "northing": 4035500.0}}, 400, "INPUT"),
    ("POST", "/edit/segments/DL1-DL2/split", {"at": {"northing": 4035010.0}}, 400, "INPUT"),
    ("POST", "/edit/segments/DL1-DL2/split", {"at": {"easting": 410030.0, "northing": 4035010.0},
                                              "ids": ["a"]}, 422, "INVALID_PARAMETER"),
    ("PATCH", "/edit/segments/JS1-JS2", {"attributes": {"length_m": 1.0}}, 400, "INPUT"),
    ("PATCH", "/edit/segments/JS1-JS2", {"attributes": {}}, 400, "INPUT"),
    ("PATCH", "/edit/segments/JS1-JS2", {"attributes": {"status": "dreaming"}}, 400, "E108"),
    ("PATCH", "/edit/segments/JS1-JS2", {"attributes": {"owner": "x"}, "version": 0}, 422, "INVALID_PARAMETER"),
    ("PATCH", "/edit/valves/JS5", {"attributes": {"operable": "maybe"}}, 400, "INPUT"),
    ("PATCH", "/edit/pipes/JS1-JS2", {"attributes": {"owner": "x"}}, 422, "INVALID_PARAMETER"),
    ("POST", "/edit/nodes/JS1/retire", {"reason": "x"}, 409, "CONFLICT"),
    ("POST", "/edit/nodes/JS1/retire", {"reason": ""}, 422, "INVALID_PARAMETER"),
    ("DELETE", "/edit/nodes/JS2", None, 409, "CONFLICT"),
    ("DELETE", "/edit/nodes/nobody", None, 404, "NOT_FOUND"),
])
def test_bad_edits_are_4xx_with_a_clear_message(api: Api, method, path, body, status, code):
    kw = ({} if body is None else {"json": body} if not isinstance(body, bytes)
          else {"content": body, "headers": {"Content-Type": "application/json"}})
    r = api.request(method, path, "editor", **kw)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["description"]


@pytest.mark.parametrize("path,params,status", [
    ("/features/segments/JS1-JS2", {"at": "not-a-time"}, 422),
    ("/features/segments/JS1-JS2", {"crs": "EPSG:3857"}, 400),
    ("/features/segments/nowhere", {}, 404),
    ("/features/segments/nowhere/history", {}, 404),
    ("/features/widgets/JS1-JS2", {}, 422),
    ("/network", {"at": "2024-13-45"}, 422),
])
def test_bad_reads_are_4xx(api: Api, path, params, status):
    assert api.get(path, params=params).status_code == status


def test_garbage_bodies_never_give_a_500(api: Api):
    junk = [b"", b"{", b"[]", b"null", b'"x"', b'{"attributes": []}', b'{"attributes": {"x": {"y": 1}}}',
            b'{"at": 5}', b'{"segments": [1, 2]}', b'{"reason": 5}', b'{"easting": "east"}',
            b'{"easting": Infinity}', b'{"id": ' + b'"x"' * 2 + b"}"]
    paths = [("POST", "/edit/nodes"), ("POST", "/edit/segments"), ("POST", "/edit/segments/merge"),
             ("POST", "/edit/nodes/JS4/move"), ("POST", "/edit/segments/JS3-JS4/split"),
             ("PATCH", "/edit/segments/JS3-JS4"), ("POST", "/edit/segments/JS3-JS4/retire")]
    for method, path in paths:
        for body in junk:
            r = api.request(method, path, "editor", content=body, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)


def test_feature_as_of_a_time_before_an_edit(api: Api, engine: sa.Engine):
    before = api.get("/features/nodes/YS3", params={"crs": "twin"}).json()
    t0 = db_now(engine)
    r = api.post("/edit/nodes/YS3/move", "editor", json={"northing": 4034991.0, "depth_m": 2.25})
    assert r.status_code == 200, r.text
    old = api.get("/features/nodes/YS3", params={"crs": "twin", "at": t0}).json()
    new = api.get("/features/nodes/YS3", params={"crs": "twin"}).json()
    assert old["geometry"] == before["geometry"] and old["properties"]["version"] == 1
    assert new["geometry"]["coordinates"][1] == 4034991.0 and new["properties"]["depth_m"] == 2.25
    old_pipe = api.get("/features/segments/YS2-YS3", params={"crs": "twin", "at": t0}).json()
    pipe = api.get("/features/segments/YS2-YS3", params={"crs": "twin"}).json()
    assert old_pipe["geometry"]["coordinates"][-1][1] == 4034990.0
    assert pipe["geometry"]["coordinates"][-1][1] == 4034991.0
    assert pipe["properties"]["to_z"] == pytest.approx(35.15 - 2.25 + 0.3)
    # A zone-less time is UTC; the network summary as of then counts what stood then.
    naive = t0.split("+")[0]
    assert api.get("/features/nodes/YS3", params={"at": naive}).json()["properties"]["version"] == 1
