"""Analyses over HTTP (OGC API - Processes): the same answers as the library, jobs, audit, limits.

Read-only analyses run on the shared demo district (``api``); the per-user limit runs on a
small twin of its own with ``heavy_per_user=1``, holding the runs with a table lock.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from analysis.clash import collisions
from analysis.hazards import hazards
from analysis.network import load_network
from analysis.profile import longitudinal_profile
from analysis.scan import scan_network
from analysis.section import cross_section
from analysis.shutoff import shutoff
from tests.api.conftest import Api, make_twin, open_api, wait_job
from tests.conftest import drop_schema
from twin.db import open_twin

PROCESS_IDS = {"shutoff", "hazards", "collision", "clearance", "cover", "section", "profile",
               "proposal-check", "network-scan"}


def engine_of(api: Api) -> sa.Engine:
    return api.client.app.state.engine


def run(api: Api, process: str, inputs: dict, role: str = "viewer", **kw) -> httpx.Response:
    return api.post(f"/processes/{process}/execution", role, json={"inputs": inputs}, **kw)



@contextmanager
def segments_locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Hold an exclusive lock on the twin's segment table: analyses reading pipes wait for it."""
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.text("LOCK TABLE segment IN ACCESS EXCLUSIVE MODE"))
        try:
            yield conn
        finally:
            tx.rollback()


def waiting_on_segments(engine: sa.Engine, schema: str) -> int:
    """Sessions waiting for the lock on the segment table."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT l.granted AND c.relname = 'segment' AND n.nspname = :s"), {"s": schema}).scalar())


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- demo district inputs
@pytest.fixture(scope="module")
def demo(api: Api) -> dict:
    """Ids and points of the demo district to run the analyses on, read from the twin."""
    engine = engine_of(api)
    with engine.connect() as conn:
        water = conn.execute(sa.text(
            "SELECT s.id FROM current_segment s WHERE s.utility = 'JS' AND s.status = 'active' "
            "AND EXISTS (SELECT 1 FROM current_valve v WHERE v.segment_id = s.id) ORDER BY s.id")).scalars().all()
        mid = conn.execute(sa.text(
            "SELECT s.id, ST_X(p) AS x, ST_Y(p) AS y, ST_Z(p) AS z, "
            "ST_X(ST_EndPoint(s.geom)) - ST_X(ST_StartPoint(s.geom)) AS dx, "
            "ST_Y(ST_EndPoint(s.geom)) - ST_Y(ST_StartPoint(s.geom)) AS dy "
            "FROM current_segment s, LATERAL ST_LineInterpolatePoint(s.geom, 0.5) p "
            "WHERE s.utility = 'JS' AND s.status = 'active' AND s.length_m > 20 ORDER BY s.id LIMIT 1")).one()
        drain = conn.execute(sa.text(
            "SELECT a.from_node, b.to_node FROM current_segment a JOIN current_segment b "
            "ON b.from_node = a.to_node AND b.utility = a.utility AND b.id <> a.id "
            "WHERE a.utility = 'PS' AND b.to_node <> a.from_node ORDER BY a.id LIMIT 1")).one()
        gravity = conn.execute(sa.text("SELECT id FROM current_segment WHERE utility = 'PS' LIMIT 1")).scalar()
    # a burst whose first valve, failing, brings in a second ring
    burst = None
    for pipe in water[:200]:
        first = shutoff(engine, pipe=pipe)
        if first.valves and shutoff(engine, pipe=pipe, failed_valves=[first.valves[0]["id"]]).added_for_failures:
            burst = pipe
            break
    assert burst is not None, "the demo district has no burst with a second valve ring"
    length = (mid.dx ** 2 + mid.dy ** 2) ** 0.5
    nx, ny = -mid.dy / length, mid.dx / length  # square to the pipe
    return {"burst": burst, "mid": mid, "across": [[mid.x - 20 * nx, mid.y - 20 * ny], [mid.x + 20 * nx, mid.y + 20 * ny]],
            "profile": (drain.from_node, drain.to_node), "gravity": gravity}


# ----------------------------------------------------------------------------- the list
def test_process_list_and_descriptions(api: Api) -> None:
    r = api.get("/processes")
    assert r.status_code == 200
    listed = {p["id"]: p for p in r.json()["processes"]}
    assert set(listed) == PROCESS_IDS
    for pid, p in listed.items():
        assert p["version"] and p["title"] and p["description"]
        assert "async-execute" in p["jobControlOptions"]
        assert ("sync-execute" in p["jobControlOptions"]) == (pid != "network-scan")
        assert any(link["href"].endswith(f"/processes/{pid}/execution") for link in p["links"])
        d = api.get(f"/processes/{pid}").json()
        assert d["id"] == pid and d["inputs"] and "result" in d["outputs"]
        assert "$ref" not in str(d["inputs"])  # self-contained schemas
    shut = api.get("/processes/shutoff").json()
    assert shut["inputs"]["max_distance_m"]["schema"]["maximum"] == 1000
    assert shut["inputs"]["pipe"]["minOccurs"] == 0
    assert api.get("/processes/section").json()["outputs"]["svg"]["schema"]["contentMediaType"] == "image/svg+xml"
    assert api.get("/processes/profile").json()["inputs"]["from_node"]["minOccurs"] == 1
    r = api.get("/processes/no-such")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert api.post("/processes/no-such/execution", json={"inputs": {}}).status_code == 404
    assert api.client.get("/processes").status_code == 401


# ----------------------------------------------------------------------------- shutoff
def test_shutoff_equals_the_library(api: Api, demo: dict) -> None:
    engine = engine_of(api)
    pipe = demo["burst"]
    direct = shutoff(engine, pipe=pipe).as_dict()
    r = run(api, "shutoff", {"pipe": pipe})
    assert r.status_code == 200, r.text
    got = r.json()
    assert [v["id"] for v in got["valves"]] == [v["id"] for v in direct["valves"]]
    assert got == direct
    # a valve that will not turn: the second ring, the same as the library says
    failed = direct["valves"][0]["id"]
    direct2 = shutoff(engine, pipe=pipe, failed_valves=[failed]).as_dict()
    got2 = run(api, "shutoff", {"pipe": pipe, "failed_valves": [failed]}).json()
    assert [v["id"] for v in got2["valves"]] == [v["id"] for v in direct2["valves"]]
    assert got2["added_for_failures"] == direct2["added_for_failures"] and failed in got2["added_for_failures"]
    assert failed not in [v["id"] for v in got2["valves"]]
    assert got2 == direct2
    # a point: the nearest pipe
    mid = demo["mid"]
    at = run(api, "shutoff", {"at": [mid.x, mid.y]}).json()
    assert at == shutoff(engine, at=(mid.x, mid.y)).as_dict() and at["pipe"] == mid.id


def test_shutoff_as_a_job_gives_the_same_answer(api: Api, demo: dict) -> None:
    sync = run(api, "shutoff", {"pipe": demo["burst"]}).json()
    r = run(api, "shutoff", {"pipe": demo["burst"]}, headers={"Prefer": "respond-async"})
    assert r.status_code == 201, r.text
    job_id = r.json()["jobID"]
    assert r.headers["location"].endswith(f"/jobs/{job_id}") and r.json()["processID"] == "shutoff"
    assert wait_job(api, job_id)["status"] == "successful"
    assert api.get(f"/jobs/{job_id}/results").json() == sync
    # audited when accepted, and when done with the ids it touched
    entries = [e for e in api.get("/admin/audit", "admin", params={"action": "process-shutoff"}).json()["entries"]
               if e["params"].get("job") == job_id]
    assert sorted(e["status"] for e in entries) == [200, 201]
    done = next(e for e in entries if e["status"] == 200)
    assert demo["burst"] in done["affected"] and sync["valves"][0]["id"] in done["affected"]


@pytest.mark.parametrize("body,status", [
    ({"inputs": {"pipe": "no-such-pipe"}}, 404),                  # unknown pipe
    ({"inputs": {"pipe": "J1", "node": "J2"}}, 422),              # two bursts
    ({"inputs": {}}, 422),                                        # no burst
    ({"inputs": {"pipe": 17}}, 422),                              # wrong type
    ({"inputs": {"at": [1.0]}}, 422),                             # half a point
    ({"inputs": {"at": ["a", "b"]}}, 422),
    ({"inputs": {"at": [1e300, 1.0]}}, 422),                      # beyond any CRS
    ({"inputs": {"pipe": "a\x00b"}}, 422),                        # NUL
    ({"inputs": {"pipe": "x", "max_distance_m": -1}}, 422),
    ({"inputs": {"pipe": "x", "colour": "red"}}, 422),            # unknown input
    ({"input": {"pipe": "x"}}, 422),                              # misspelt member
    ({"inputs": {"at": [0.0, 0.0]}}, 400),                        # far from every pipe
    ({"inputs": {"failed_valves": ["no-such-valve"], "pipe": "BURST"}}, 404),
])
def test_shutoff_bad_inputs(api: Api, demo: dict, body: dict, status: int) -> None:
    if body.get("inputs", {}).get("pipe") == "BURST":
        body = {"inputs": {**body["inputs"], "pipe": demo["burst"]}}
    r = api.post("/processes/shutoff/execution", json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) >= {"code", "description"}


def test_nan_and_broken_json_are_422(api: Api) -> None:
    for raw in ('{"inputs": {"at": [NaN, 4035000]}}', '{"inputs": {"at": [Infinity, 1]}}', '{"inputs": ',
                '[1, 2]', '"text"'):
        r = api.post("/processes/shutoff/execution", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)


def test_shutoff_of_a_gravity_pipe_is_400(api: Api, demo: dict) -> None:
    r = run(api, "shutoff", {"pipe": demo["gravity"]})
    assert r.status_code == 400 and "gravity" in r.json()["description"]


# ----------------------------------------------------------------------------- hazards
def test_hazards_equal_the_library(api: Api, demo: dict) -> None:
    mid = demo["mid"]
    r = run(api, "hazards", {"at": [mid.x, mid.y], "radius_m": 15})
    assert r.status_code == 200, r.text
    got = r.json()
    direct = hazards(engine_of(api), mid.x, mid.y, 15, settings=api.settings).as_dict()
    assert [p["id"] for p in got["pipes"]] == [p["id"] for p in direct["pipes"]] and got["pipes"]
    assert got["pipes"][0]["id"] == mid.id and got["valves"] == direct["valves"]
    assert run(api, "hazards", {"at": [mid.x, mid.y], "radius_m": 501}).status_code == 422
    assert run(api, "hazards", {"at": [mid.x, mid.y], "utility": "XX"}).status_code == 422
    assert run(api, "hazards", {"radius_m": 5}).status_code == 422


# ----------------------------------------------------------------------------- drawings
def test_section_json_and_svg(api: Api, demo: dict) -> None:
    line = demo["across"]
    r = run(api, "section", {"line": line})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    got = r.json()
    direct = cross_section(engine_of(api), line, crs=api.settings.crs).as_dict()
    assert [p["id"] for p in got["pipes"]] == [p["id"] for p in direct["pipes"]]
    assert demo["mid"].id in [p["id"] for p in got["pipes"]]
    assert got["pipes"] == direct["pipes"] and got["length_m"] == pytest.approx(40.0)
    svg = run(api, "section", {"line": line}, params={"f": "svg"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    assert root.tag.endswith("svg")
    assert {e.get("data-id") for e in root.iter() if e.get("class") == "pipe"} >= {demo["mid"].id}
    by_accept = run(api, "section", {"line": line}, headers={"Accept": "image/svg+xml"})
    assert by_accept.headers["content-type"].startswith("image/svg+xml")
    ogc = api.post("/processes/section/execution", json={"inputs": {"line": line}, "outputs": {"svg": {}}})
    assert ogc.headers["content-type"].startswith("image/svg+xml")
    assert run(api, "section", {"line": line}, params={"f": "html"}).status_code == 400  # no such output
    assert run(api, "section", {"line": line}, params={"f": "pdf"}).status_code == 400  # the shutoff's only
    assert run(api, "section", {"line": line}, params={"f": "doc"}).status_code == 422
    assert run(api, "section", {"line": [[0, 0], [0, 10000]]}).status_code == 400     # too long
    assert run(api, "section", {"line": [line[0]]}).status_code == 422                # one point
    assert run(api, "section", {"line": [[1.0, 1.0], [2.0, 2.0]]}).status_code == 400  # looks like lon/lat


def test_section_svg_as_a_job(api: Api, demo: dict) -> None:
    r = run(api, "section", {"line": demo["across"]}, params={"f": "svg"}, headers={"Prefer": "respond-async"})
    assert r.status_code == 201
    assert wait_job(api, r.json()["jobID"])["status"] == "successful"
    res = api.get(f"/jobs/{r.json()['jobID']}/results")
    assert res.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(res.text)


def test_profile_json_and_svg(api: Api, demo: dict) -> None:
    a, b = demo["profile"]
    r = run(api, "profile", {"from_node": a, "to_node": b})
    assert r.status_code == 200, r.text
    got = r.json()
    direct = longitudinal_profile(engine_of(api), a, b, crs=api.settings.crs).as_dict()
    assert [s["id"] for s in got["segments"]] == [s["id"] for s in direct["segments"]] and len(got["segments"]) >= 2
    assert got["from"] == a and got["to"] == b and got["length_m"] == direct["length_m"]
    svg = run(api, "profile", {"from_node": a, "to_node": b}, params={"f": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(svg.text)
    assert run(api, "profile", {"from_node": a, "to_node": "no-such-point"}).status_code == 404
    assert run(api, "profile", {"from_node": a, "to_node": a}).status_code == 400
    assert run(api, "profile", {"from_node": a}).status_code == 422


# ----------------------------------------------------------------------------- approval checks
def crossing(mid, *, utility: str = "RQ", size: str = "DN200", z: float | None = None) -> dict:
    """A proposed pipe crossing the demo's water pipe square at its middle, centred at z."""
    length = (mid.dx ** 2 + mid.dy ** 2) ** 0.5
    nx, ny = -mid.dy / length, mid.dx / length
    z = mid.z if z is None else z
    return {"type": "Feature", "properties": {"utility": utility, "size": size, "z_reference": "centre",
                                              "name": "test crossing"},
            "geometry": {"type": "LineString", "coordinates": [[mid.x - 10 * nx, mid.y - 10 * ny, z],
                                                               [mid.x + 10 * nx, mid.y + 10 * ny, z]]}}


def test_proposal_check_finds_the_collision_and_stores_nothing(api: Api, demo: dict) -> None:
    engine = engine_of(api)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM proposal")).scalar()
    prop = crossing(demo["mid"])
    r = run(api, "proposal-check", {"proposal": prop})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["result"] == "fail" and d["proposal_id"] is None
    hits = [f for f in d["findings"] if f["kind"] == "collision"]
    assert hits and demo["mid"].id in hits[0]["ids"]
    html = run(api, "proposal-check", {"proposal": prop}, params={"f": "html"})
    assert html.headers["content-type"].startswith("text/html") and hits[0]["key"] in html.text
    svg = run(api, "proposal-check", {"proposal": prop}, params={"f": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(svg.text)
    # the same proposal through the single checks
    col = run(api, "collision", {"proposal": prop}).json()
    assert col["counts"]["hard"] >= 1 and col["clashes"][0]["b_id"] == demo["mid"].id
    cov = run(api, "cover", {"proposal": prop})
    assert cov.status_code == 200 and "violations" in cov.json()
    clr = run(api, "clearance", {"proposal": prop})
    assert clr.status_code == 200 and "violations" in clr.json()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM proposal")).scalar() == before


def test_rule_tables_are_named_not_located(api: Api, demo: dict) -> None:
    prop = crossing(demo["mid"])
    root = str(Path(__file__).resolve().parents[2])
    for process, rules in (("cover", "cover_rules.csv (shipped)"), ("clearance", "clearance_rules.csv (shipped)")):
        r = run(api, process, {"proposal": prop})
        assert r.status_code == 200 and r.json()["rules"] == rules, r.text
        assert root not in r.text and "/analysis/data" not in r.text


@pytest.mark.parametrize("proposal,status", [
    ({"type": "Point", "coordinates": [410000, 4035000]}, 422),
    ({"type": "LineString", "coordinates": [[410000, 4035000]]}, 422),            # one position
    ({"type": "LineString", "coordinates": [["a", 1], [2, 3]]}, 422),
    ({"type": "FeatureCollection", "features": []}, 422),
    ({"type": "Feature", "geometry": None, "properties": {}}, 422),
    ({"type": "Feature", "properties": {"utility": "RQ\x00"},
      "geometry": {"type": "LineString", "coordinates": [[410000, 4035000], [410010, 4035000]]}}, 422),
    ({"coordinates": [[410000, 4035000], [410010, 4035000]]}, 422),                 # no type
    ({"type": "Feature", "properties": {"size": "DN200", "depth_m": 1.0},              # no utility
      "geometry": {"type": "LineString", "coordinates": "MID"}}, 400),
    ({"type": "Feature", "properties": {"utility": "RQ", "depth_m": 1.0},             # no size
      "geometry": {"type": "LineString", "coordinates": "MID"}}, 400),
    ({"type": "Feature", "properties": {"utility": "RQ", "size": "DN200", "depth_m": 1.0},
      "geometry": {"type": "LineString", "coordinates": [[0, 0], [10, 0]]}}, 400),   # far from the twin
])
def test_bad_proposals(api: Api, demo: dict, proposal: dict, status: int) -> None:
    if proposal.get("geometry", {}) and proposal["geometry"].get("coordinates") == "MID":
        mid = demo["mid"]
        proposal["geometry"]["coordinates"] = [[mid.x - 5, mid.y], [mid.x + 5, mid.y]]
    r = run(api, "proposal-check", {"proposal": proposal})
    assert r.status_code == status, r.text
    assert r.json()["code"]


def test_whole_network_collision_equals_the_library(api: Api) -> None:
    r = run(api, "collision", {"limit": 5})
    assert r.status_code == 200, r.text
    got = r.json()
    direct = collisions(load_network(engine_of(api))).as_dict()
    assert got["counts"] == direct["counts"]
    assert got["clashes"] == direct["clashes"][:5]
    assert got["truncated"] == (len(direct["clashes"]) > 5 or len(direct["uncertain"]) > 5)


def test_network_scan_job_reports_progress(api: Api) -> None:
    engine = engine_of(api)
    with segments_locked(engine):
        r = run(api, "network-scan", {"limit": 3})  # no Prefer header: it is always a job
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["status"] in ("accepted", "running") and r.headers["location"].endswith(f"/jobs/{job['jobID']}")
        # the scan waits for the lock while reading: its progress is there to see
        wait_until(lambda: api.get(f"/jobs/{job['jobID']}").json()["progress"] > 0)
        doc = api.get(f"/jobs/{job['jobID']}").json()
        assert doc["status"] == "running" and 0 < doc["progress"] < 100 and "reading" in doc["message"]
        assert api.get(f"/jobs/{job['jobID']}/results").status_code == 404  # not ready
    done = wait_job(api, job["jobID"])
    assert done["status"] == "successful" and done["progress"] == 100
    result = api.get(f"/jobs/{job['jobID']}/results").json()
    direct = scan_network(engine, limit=3, workers=1)
    assert result["segments"] == direct["segments"] and result["workers"] == 2
    assert result["collision"]["counts"] == direct["collision"]["counts"]
    assert result["clearance"]["counts"] == direct["clearance"]["counts"]
    assert result["collision"]["clashes"] == direct["collision"]["clashes"]
    assert result["clearance"]["violations"] == direct["clearance"]["violations"]
    assert len(result["clearance"]["violations"]) <= 3
    # another user cannot read it
    assert api.get(f"/jobs/{job['jobID']}", "editor").status_code == 404


# ----------------------------------------------------------------------------- audit
def test_runs_are_audited(api: Api, demo: dict) -> None:
    pipe = demo["burst"]
    direct = shutoff(engine_of(api), pipe=pipe)
    assert run(api, "shutoff", {"pipe": pipe}, role="editor").status_code == 200
    entries = api.get("/admin/audit", "admin", params={"action": "process-shutoff", "user": "editor"}).json()["entries"]
    e = entries[0]
    assert e["path"] == "/processes/shutoff/execution" and e["params"]["pipe"] == pipe and e["status"] == 200
    assert pipe in e["affected"] and direct.valves[0]["id"] in e["affected"]
    # a refused run is recorded too
    assert run(api, "shutoff", {"pipe": "no-such-pipe"}, role="editor").status_code == 404
    latest = api.get("/admin/audit", "admin", params={"action": "process-shutoff", "user": "editor"}).json()["entries"][0]
    assert latest["status"] == 404 and latest["params"]["pipe"] == "no-such-pipe"
    # a proposal's GeoJSON is summarised, not copied
    big = crossing(demo["mid"])
    big["properties"]["remarks"] = "x" * 5000
    run(api, "proposal-check", {"proposal": big}, role="editor")
    e = api.get("/admin/audit", "admin", params={"action": "process-proposal-check", "user": "editor"}).json()["entries"][0]
    assert set(e["params"]["proposal"]) == {"omitted_chars", "sha256"}


def test_viewer_runs_analyses_without_sign_in_nothing(api: Api, demo: dict) -> None:
    assert run(api, "hazards", {"at": [demo["mid"].x, demo["mid"].y]}, role="viewer").status_code == 200
    r = api.client.post("/processes/hazards/execution", json={"inputs": {"at": [demo["mid"].x, demo["mid"].y]}})
    assert r.status_code == 401


# ----------------------------------------------------------------------------- per-user limit
@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A small twin whose users may run one heavy analysis at a time."""
    settings = make_twin("test_api_processes_busy", tmp_path_factory.mktemp("busy"), data="small")
    settings = settings.model_copy(update={"heavy_per_user": 1})
    yield from open_api(settings)
    drop_schema(settings)


def test_heavy_runs_are_limited_per_user(busy: Api) -> None:
    engine = open_twin(busy.settings)
    schema = busy.settings.db_schema
    answers: dict[str, int] = {}

    def heavy(role: str) -> None:
        answers[role] = run(busy, "collision", {}, role=role).status_code

    try:
        with segments_locked(engine):
            first = threading.Thread(target=heavy, args=("viewer",))
            first.start()
            wait_until(lambda: waiting_on_segments(engine, schema) == 1)
            # the viewer's one heavy run is in progress: a second is refused, at once
            r = run(busy, "clearance", {}, role="viewer")
            assert r.status_code == 429 and r.json()["code"] == "TOO_BUSY" and "respond-async" in r.json()["description"]
            # another user is not held back by the viewer's run
            other = threading.Thread(target=heavy, args=("editor",))
            other.start()
            wait_until(lambda: waiting_on_segments(engine, schema) == 2)
            # jobs have the same limit: one scan is accepted, a second is refused
            job = run(busy, "network-scan", {}, role="approver")
            assert job.status_code == 201
            assert run(busy, "network-scan", {}, role="approver").status_code == 429
        first.join(60)
        other.join(60)
        assert answers == {"viewer": 200, "editor": 200}
        assert wait_job(busy, job.json()["jobID"], "approver")["status"] == "successful"
        # the slot is free again
        assert run(busy, "collision", {}, role="viewer").status_code == 200
    finally:
        engine.dispose()
    audit = busy.get("/admin/audit", "admin", params={"action": "process-clearance", "user": "viewer"}).json()
    assert audit["entries"][0]["status"] == 429
