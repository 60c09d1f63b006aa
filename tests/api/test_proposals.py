"""The proposal workflow (withdrawal, the features served) and the admin's rule tables over HTTP,
on a twin of their own.

The twin is one water main (DN300, top 33.6 m, bottom 33.3 m, 铸铁 built 2010) along
N0; proposals are gas pipes crossing it square at a chosen height, so every finding and every
rule change has a known effect.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analysis.clearance import DEFAULT_RULES, load_clearance_rules
from analysis.cover import DEFAULT_COVER_RULES
from analysis.hazards import DEFAULT_SERVICE_LIFE
from ingest.pipeline import ingest_survey
from tests.analysis.test_proposal import E0, N0, WATER_BOTTOM, write_survey
from tests.api.conftest import ROOT, Api, make_twin, open_api, server_env
from tests.conftest import drop_schema
from twin.db import open_twin


def gas(top_z: float | None, *, x: float = E0 + 30, depth_m: float | None = None) -> dict:
    """A DN200 gas pipe crossing the water main square at easting x, its top at top_z (or depth_m)."""
    props = {"id": "P1", "utility": "RQ", "size": "DN200", "z_reference": "top", "pressure_mpa": 0.2}
    if depth_m is not None:
        props["depth_m"] = depth_m
        coords = [[x, N0 - 20], [x, N0 + 20]]
    else:
        coords = [[x, N0 - 20, top_z], [x, N0 + 20, top_z]]
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": props, "geometry": {"type": "LineString", "coordinates": coords}}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("proposals")
    settings = make_twin("test_api_proposals", tmp, data="empty")
    write_survey(tmp)
    report = ingest_survey(tmp / "points.csv", tmp / "segments.csv", settings)
    assert report.status == "applied", report
    yield from open_api(settings)
    drop_schema(settings)


def submit(api: Api, doc: dict, role: str = "editor", **kw):
    return api.post("/proposals", role, json=doc, **kw)


def audit(api: Api, action: str, **params) -> list[dict]:
    return api.get("/admin/audit", "admin", params={"action": action, **params}).json()["entries"]


# ----------------------------------------------------------------------------- proposals
def test_submit_read_report_and_section(api: Api) -> None:
    r = submit(api, gas(WATER_BOTTOM - 0.10), params={"name": "Gas DN200 at J1-J2"})
    assert r.status_code == 201, r.text
    d = r.json()
    pid = d["proposal_id"]
    assert r.headers["location"].endswith(f"/proposals/{pid}")
    assert d["status"] == "new" and d["name"] == "Gas DN200 at J1-J2" and d["created_by"] == "editor"
    (f,) = d["findings"]  # 0.10 m under the water main; the rule asks 0.15
    assert f["kind"] == "clearance_vertical" and set(f["ids"]) == {"P1", "J1-J2"} and f["status"] == "open"
    assert f["measured_m"] == pytest.approx(0.10, abs=1e-6) and f["required_m"] == pytest.approx(0.15)
    got = api.get(f"/proposals/{pid}", "viewer")
    assert got.status_code == 200 and got.json()["findings"][0]["key"] == f["key"]
    assert any(p["id"] == pid for p in api.get("/proposals", "viewer").json()["proposals"])
    html = api.get(f"/proposals/{pid}/report", "viewer")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert f["key"] in html.text and "FAIL" in html.text
    svg = api.get(f"/proposals/{pid}/section.svg", "viewer")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    assert {e.get("data-id") for e in root.iter() if e.get("class") == "pipe"} == {"P1", "J1-J2"}
    e = audit(api, "proposal-submit", feature=f"proposal:{pid}")
    assert len(e) == 1 and e[0]["user_name"] == "editor" and "J1-J2" in e[0]["affected"]


def test_roles_on_the_workflow(api: Api) -> None:
    assert submit(api, gas(WATER_BOTTOM - 1.0), role="viewer").status_code == 403
    pid = submit(api, gas(WATER_BOTTOM - 0.10)).json()["proposal_id"]
    key = api.get(f"/proposals/{pid}").json()["findings"][0]["key"]
    for role in ("viewer", "editor"):
        assert api.post(f"/proposals/{pid}/decision", role, json={"status": "reviewed"}).status_code == 403
        assert api.post(f"/proposals/{pid}/findings/{key}/decision", role,
                        json={"status": "accepted"}).status_code == 403
        assert api.post(f"/proposals/{pid}/recheck", role).status_code == (403 if role == "viewer" else 200)
    assert api.client.get(f"/proposals/{pid}").status_code == 401
    assert api.get(f"/proposals/{pid}").json()["status"] == "new"


def test_decisions_and_state_transitions(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 0.10)).json()["proposal_id"]
    key = api.get(f"/proposals/{pid}").json()["findings"][0]["key"]
    # new -> approved skips the review
    r = api.post(f"/proposals/{pid}/decision", "approver", json={"status": "approved"})
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    assert api.post(f"/proposals/{pid}/decision", "approver", json={"status": "reviewed"}).status_code == 200
    # the finding is open: approval needs it accepted, or an override
    r = api.post(f"/proposals/{pid}/decision", "approver", json={"status": "approved"})
    assert r.status_code == 400 and "not accepted" in r.json()["description"]
    r = api.post(f"/proposals/{pid}/findings/{key}/decision", "approver",
                 json={"status": "accepted", "note": "sleeve over the crossing"})
    assert r.status_code == 200
    f = r.json()["findings"][0]
    assert f["status"] == "accepted" and f["decided_by"] == "approver" and f["note"] == "sleeve over the crossing"
    r = api.post(f"/proposals/{pid}/decision", "approver", json={"status": "approved", "note": "ok"})
    assert r.status_code == 200
    d = r.json()
    assert d["status"] == "approved" and d["decided_by"] == "approver" and d["open_findings"] == 0
    assert [e["action"] for e in d["events"]][-1] == "decided"
    # approved is final
    assert api.post(f"/proposals/{pid}/decision", "approver", json={"status": "rejected"}).status_code == 409
    assert api.post(f"/proposals/{pid}/findings/{key}/decision", "approver",
                    json={"status": "open"}).status_code == 409
    assert api.post(f"/proposals/{pid}/recheck", "editor", json=gas(WATER_BOTTOM - 1.0)).status_code == 409
    assert audit(api, "proposal-approved", feature=f"proposal:{pid}")[0]["user_name"] == "approver"
    assert audit(api, "proposal-finding", feature=key)[0]["params"]["status"] == "accepted"


def test_override_and_reject(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 0.10)).json()["proposal_id"]
    api.post(f"/proposals/{pid}/decision", "approver", json={"status": "reviewed"})
    r = api.post(f"/proposals/{pid}/decision", "approver",
                 json={"status": "approved", "override": "owner agreed to lower the main"})
    assert r.status_code == 200 and r.json()["override_note"] == "owner agreed to lower the main"
    other = submit(api, gas(WATER_BOTTOM - 0.10)).json()["proposal_id"]
    r = api.post(f"/proposals/{other}/decision", "approver", json={"status": "rejected", "note": "too close"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert api.post(f"/proposals/{other}/decision", "approver", json={"status": "reviewed"}).status_code == 409


def test_recheck_keeps_decisions_and_revises(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 0.10)).json()["proposal_id"]
    key = api.get(f"/proposals/{pid}").json()["findings"][0]["key"]
    api.post(f"/proposals/{pid}/findings/{key}/decision", "approver", json={"status": "accepted"})
    r = api.post(f"/proposals/{pid}/recheck", "editor")
    assert r.status_code == 200 and r.json()["findings"][0]["status"] == "accepted"
    # a revised geometry 1 m under the main: a new version, the finding resolved
    r = api.post(f"/proposals/{pid}/recheck", "editor", json=gas(WATER_BOTTOM - 1.0))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["version"] == 2 and d["status"] == "new" and d["findings"] == [] and d["passed"]
    assert [x["key"] for x in d["resolved"]] == [key]
    assert api.get(f"/proposals/{pid}/section.svg").status_code == 200
    assert audit(api, "proposal-recheck", feature=f"proposal:{pid}")[0]["user_name"] == "editor"


def test_four_eyes_on_approval(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 1.0), role="approver").json()["proposal_id"]
    assert api.post(f"/proposals/{pid}/decision", "approver", json={"status": "reviewed"}).status_code == 200
    for status in ("approved", "rejected"):
        r = api.post(f"/proposals/{pid}/decision", "approver", json={"status": status})
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", r.text
        assert "four eyes" in r.json()["description"] and "approver" in r.json()["description"]
    assert api.get(f"/proposals/{pid}").json()["status"] == "reviewed"
    assert audit(api, "proposal-approved", feature=f"proposal:{pid}") == []
    # an admin is another pair of eyes; the decision and its audit entry land together
    r = api.post(f"/proposals/{pid}/decision", "admin", json={"status": "approved"})
    assert r.status_code == 200 and r.json()["decided_by"] == "admin"
    (e,) = audit(api, "proposal-approved", feature=f"proposal:{pid}")
    assert e["user_name"] == "admin" and e["status"] == 200


def test_withdraw(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 1.0)).json()["proposal_id"]
    assert api.post(f"/proposals/{pid}/withdraw", "viewer").status_code == 403  # may not propose
    r = api.post(f"/proposals/{pid}/withdraw", "approver")  # may propose, but did not submit it
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    r = api.post(f"/proposals/{pid}/withdraw", "editor", json={"note": "route changed"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "withdrawn" and d["note"] == "route changed" and d["events"][-1]["action"] == "withdrawn"
    # final: withdrawing again, deciding or revising it is 409
    assert api.post(f"/proposals/{pid}/withdraw", "editor").status_code == 409
    assert api.post(f"/proposals/{pid}/decision", "approver", json={"status": "reviewed"}).status_code == 409
    assert api.post(f"/proposals/{pid}/recheck", "editor", json=gas(WATER_BOTTOM - 2.0)).status_code == 409
    e = audit(api, "proposal-withdrawn", feature=f"proposal:{pid}")
    assert len(e) == 1 and e[0]["user_name"] == "editor" and e[0]["params"]["note"] == "route changed"
    # an admin withdraws anyone's reviewed proposal; an approved one stays
    other = submit(api, gas(WATER_BOTTOM - 1.0)).json()["proposal_id"]
    api.post(f"/proposals/{other}/decision", "approver", json={"status": "reviewed"})
    assert api.post(f"/proposals/{other}/withdraw", "admin").json()["status"] == "withdrawn"
    done = submit(api, gas(WATER_BOTTOM - 1.0)).json()["proposal_id"]
    api.post(f"/proposals/{done}/decision", "approver", json={"status": "reviewed"})
    api.post(f"/proposals/{done}/decision", "approver", json={"status": "approved"})
    assert api.post(f"/proposals/{done}/withdraw", "editor").status_code == 409
    assert api.post("/proposals/999999/withdraw", "editor").status_code == 404
    assert api.post(f"/proposals/{done}/withdraw", "editor", json={"why": "x"}).status_code == 422
    # still listed with its status; no longer served as a feature
    listed = {p["id"]: p for p in api.get("/proposals").json()["proposals"]}
    assert listed[pid]["status"] == "withdrawn"
    served = {f["id"] for f in api.get("/collections/proposals/items", params={"limit": 1000}).json()["features"]}
    assert pid not in served and other not in served and done in served


def test_withdraw_on_the_command_line(api: Api) -> None:
    pid = submit(api, gas(WATER_BOTTOM - 1.0)).json()["proposal_id"]

    def twin(user: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "twin"), "analyze", "proposal-withdraw", str(pid),
                               *args], env={**server_env(api.settings), "TWIN_USER": user}, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    out = twin("someone")
    assert out.returncode == 2 and "FORBIDDEN" in out.stderr, out.stderr
    out = twin("editor", "--note", "not needed", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "withdrawn"
    out = twin("someone", "--admin")
    assert out.returncode == 2 and "CONFLICT" in out.stderr, out.stderr


#: The twin's CRS as a PROJ string whose title says CRS84: the old SQL took it for lon/lat.
ODD_CRS = ("+proj=tmerc +lat_0=0 +lon_0=117 +k=1 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m +no_defs "
           "+title=CRS84")


def test_an_odd_crs_text_cannot_break_the_collections(api: Api) -> None:
    doc = {**gas(WATER_BOTTOM - 1.0), "crs": {"type": "name", "properties": {"name": ODD_CRS}}}
    r = submit(api, doc, params={"name": "odd crs"})
    assert r.status_code == 201, r.text
    pid = r.json()["proposal_id"]
    assert api.get("/collections", "viewer").status_code == 200
    items = api.get("/collections/proposals/items", "viewer", params={"limit": 1000})
    assert items.status_code == 200, items.text
    assert [f["id"] for f in items.json()["features"] if f["id"] == pid] == [pid]
    # served where the check read it: in the twin CRS (northing, easting), at the proposal's place
    one = api.get(f"/collections/proposals/items/{pid}", "viewer",
                  params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4548"})
    assert one.status_code == 200, one.text
    start = one.json()["geometry"]["coordinates"][0]
    assert start[:2] == pytest.approx([N0 - 20, E0 + 30], abs=0.5)


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/proposals/999999", None, 404),
    ("GET", "/proposals/0", None, 422),
    ("GET", "/proposals/99999999999999999999", None, 422),
    ("GET", "/proposals/abc/report", None, 422),
    ("POST", "/proposals", {"type": "Point", "coordinates": [E0, N0]}, 422),
    ("POST", "/proposals", {"type": "FeatureCollection", "features": [{"type": "Feature"}]}, 422),
    ("POST", "/proposals", {"type": "LineString", "coordinates": [[E0, N0], [E0, N0 + 10]]}, 400),  # no utility
    ("POST", "/proposals", "not json at all", 422),
    ("POST", "/proposals/FIRST/decision", {"status": "approved-ish"}, 422),
    ("POST", "/proposals/FIRST/decision", {"status": "reviewed", "note": "a\x00b"}, 422),
    ("POST", "/proposals/FIRST/findings/0123abcd/decision", {"status": "accepted"}, 404),
    ("POST", "/proposals/FIRST/findings/not-a-key!/decision", {"status": "accepted"}, 422),
    ("POST", "/proposals/FIRST/findings/0123abcd/decision", {"status": "maybe"}, 422),
    ("POST", "/proposals/999999/decision", {"status": "reviewed"}, 404),
])
def test_bad_requests(api: Api, method: str, path: str, body, status: int) -> None:
    if "FIRST" in path:
        path = path.replace("FIRST", str(submit(api, gas(WATER_BOTTOM - 1.0)).json()["proposal_id"]))
    kw = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else (
        {"json": body} if body is not None else {})
    r = api.request(method, path, "admin", **kw)
    assert r.status_code == status, r.text
    assert r.json()["code"]


# ----------------------------------------------------------------------------- rule tables
def check(api: Api, doc: dict) -> dict:
    r = api.post("/processes/proposal-check/execution", json={"inputs": {"proposal": doc}})
    assert r.status_code == 200, r.text
    return r.json()


def put_rules(api: Api, name: str, text: str, role: str = "admin"):
    return api.request("PUT", f"/rules/{name}", role, content=text.encode("utf-8"),
                       headers={"Content-Type": "text/csv"})


def test_rule_tables_are_listed_and_read(api: Api) -> None:
    listed = {r["name"]: r for r in api.get("/rules", "viewer").json()["rules"]}
    assert set(listed) == {"clearance_rules", "cover_rules", "service_life"}
    assert all(r["source"] == "shipped" for r in listed.values())
    assert listed["clearance_rules"]["rows"] == len(load_clearance_rules())
    r = api.get("/rules/clearance_rules", "viewer")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text == DEFAULT_RULES.read_text(encoding="utf-8-sig")
    j = api.get("/rules/cover_rules", "viewer", params={"f": "json"}).json()
    assert "min_cover_m" in j["columns"] and {row["id"] for row in j["rows"]} >= {"C01", "C02"}
    assert api.get("/rules/no_such_table").status_code == 422


def test_only_admins_change_rule_tables(api: Api) -> None:
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    for role in ("viewer", "editor", "approver"):
        assert put_rules(api, "clearance_rules", text, role).status_code == 403
        assert api.request("DELETE", "/rules/clearance_rules", role).status_code == 403
    assert api.client.put("/rules/clearance_rules", content=text).status_code == 401


@pytest.mark.parametrize("name,edit,words", [
    ("clearance_rules", lambda t: t.replace(",0.15,GB 50289-2016 4.1.14 table 4.1.14,false,gas against water",
                                            ",lots,GB 50289-2016 4.1.14 table 4.1.14,false,gas against water"),
     ["V007", "clearance_m", "lots"]),
    ("clearance_rules", lambda t: t.replace("clearance_m,", "clearance,", 1), ["clearance_m"]),
    ("clearance_rules", lambda t: t + "V007,vertical,RQ,,,,,,*,,,,,,0.2,x,false,dup\n", ["duplicate", "V007"]),
    ("clearance_rules", lambda t: t.replace("subhigh_a|unknown", "medium_c", 1), ["pressure class", "medium_c"]),
    ("cover_rules", lambda t: t.replace("sidewalk", "roof", 1), ["roof"]),
    ("cover_rules", lambda t: t.splitlines()[0] + "\n", ["no rows"]),
    ("service_life", lambda t: t.replace(",50,", ",fifty,", 1), ["life_years", "fifty", "row"]),
    ("service_life", lambda t: "", ["empty"]),
    ("service_life", lambda t: "a,b\n1,2,3,4\n", ["service-life"]),
])
def test_bad_tables_are_refused_with_the_problem(api: Api, name: str, edit, words: list[str]) -> None:
    shipped = {"clearance_rules": DEFAULT_RULES, "cover_rules": DEFAULT_COVER_RULES,
               "service_life": DEFAULT_SERVICE_LIFE}[name]
    r = put_rules(api, name, edit(shipped.read_text(encoding="utf-8")))
    assert r.status_code == 400, r.text
    assert all(w in r.json()["description"] for w in words), r.json()
    assert api.get("/rules", "admin").json()["rules"][0]["source"] == "shipped"


def test_not_utf8_is_refused(api: Api) -> None:
    r = api.request("PUT", "/rules/cover_rules", "admin", content="id,utility\n".encode("utf-16"),
                    headers={"Content-Type": "text/csv"})
    assert r.status_code == 400 and "UTF-8" in r.json()["description"]


def test_a_stored_clearance_table_is_what_the_checks_use(api: Api) -> None:
    # 0.45 m under the main: passes the shipped 0.15 even if the main lies 0.2325 m lower (CJJ 61
    # depth limit of a concealed pipe 1.55 m deep)
    doc = gas(WATER_BOTTOM - 0.45)
    assert check(api, doc)["passed"]
    shipped = DEFAULT_RULES.read_text(encoding="utf-8")
    row = "V007,vertical,RQ,,,,,,JS,!ZS,,,,,"
    stricter = shipped.replace(row + "0.15,", row + "1.00,")
    assert stricter != shipped
    r = put_rules(api, "clearance_rules", stricter)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == len(load_clearance_rules())
    (f,) = check(api, doc)["findings"]
    assert f["kind"] == "clearance_vertical" and f["required_m"] == pytest.approx(1.0)
    assert f["rule"].startswith("V007:") and f["verdict"] == "violation"
    got = api.get("/rules/clearance_rules")
    assert got.text == stricter and got.headers["x-rule-source"] == "database"
    listed = {x["name"]: x for x in api.get("/rules").json()["rules"]}
    assert listed["clearance_rules"]["source"] == "database" and listed["clearance_rules"]["updated_by"] == "admin"
    # the command line judges by the same table
    path = Path(api.settings.tiles_dir).parent / "proposal.geojson"
    path.write_text(json.dumps(doc))
    out = subprocess.run([str(Path(sys.executable).parent / "twin"), "analyze", "clearance", "--proposal",
                          str(path), "--json"], env=server_env(api.settings), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["vertical"] == 1
    # edited again: the new content is used at once (the cache is keyed by content)
    looser = stricter.replace(row + "1.00,", row + "0.20,")
    assert put_rules(api, "clearance_rules", looser).status_code == 200
    assert check(api, doc)["passed"]
    assert put_rules(api, "clearance_rules", stricter).status_code == 200
    assert not check(api, doc)["passed"]
    # back to the shipped table
    r = api.request("DELETE", "/rules/clearance_rules", "admin")
    assert r.status_code == 200 and r.json()["removed"] and r.json()["source"] == "shipped"
    assert check(api, doc)["passed"]
    entries = audit(api, "rules-put", feature="clearance_rules")
    assert len(entries) == 3 and entries[0]["user_name"] == "admin" and "V007" in entries[0]["affected"]
    assert audit(api, "rules-delete", feature="clearance_rules")[0]["params"]["removed"] is True


def test_a_stored_cover_table_is_what_the_checks_use(api: Api) -> None:
    # 2.0 m of cover (the shipped minimum is 0.9) near J2, whose ground the check reads. By depth,
    # not z: a proposal given by z makes its own ends ground points (analysis.proposal_input)
    doc = gas(None, depth_m=2.0, x=E0 + 48)
    assert not [f for f in check(api, doc)["findings"] if f["kind"] == "cover"]
    shipped = DEFAULT_COVER_RULES.read_text(encoding="utf-8")
    # every gas row asks 2.5 m (column 6 is min_cover_m)
    deep = "\n".join(line if ",RQ," not in line else
                     ",".join("2.50" if i == 6 else v for i, v in enumerate(line.split(",")))
                     for line in shipped.splitlines()) + "\n"
    assert deep != shipped
    assert put_rules(api, "cover_rules", deep).status_code == 200
    cover = [f for f in check(api, doc)["findings"] if f["kind"] == "cover"]
    assert len(cover) == 1 and cover[0]["required_m"] == pytest.approx(2.5)
    assert api.request("DELETE", "/rules/cover_rules", "admin").status_code == 200
    assert not [f for f in check(api, doc)["findings"] if f["kind"] == "cover"]


def test_a_stored_service_life_table_is_what_hazards_use(api: Api) -> None:
    def old() -> list[str]:
        r = api.post("/processes/hazards/execution", json={"inputs": {"at": [E0 + 25, N0], "radius_m": 5}})
        assert r.status_code == 200, r.text
        return r.json()["old_pipes"]

    assert old() == []  # cast iron of 2010: within its 50 years
    shipped = DEFAULT_SERVICE_LIFE.read_text(encoding="utf-8")
    short = shipped.replace("铸铁,,50,", "铸铁,,5,", 1)
    assert short != shipped
    assert put_rules(api, "service_life", short).status_code == 200
    assert old() == ["J1-J2"]
    assert api.get("/rules/service_life", params={"f": "json"}).json()["source"] == "database"
    assert api.request("DELETE", "/rules/service_life", "admin").status_code == 200
    assert old() == []
    # deleting again is harmless
    assert api.request("DELETE", "/rules/service_life", "admin").json()["removed"] is False


def test_rule_table_in_the_database_outlives_the_server(api: Api) -> None:
    row = "V007,vertical,RQ,,,,,,JS,!ZS,,,,,"
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace(row + "0.15,", row + "0.16,")
    assert put_rules(api, "clearance_rules", text).status_code == 200
    engine = open_twin(api.settings)
    try:
        table = load_clearance_rules(None, api.settings, db=engine)
        assert table.set_index("id").at["V007", "clearance_m"] == pytest.approx(0.16)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT updated_by FROM rule_table WHERE name = 'clearance_rules'")
                                ).scalar() == "admin"
    finally:
        engine.dispose()
        api.request("DELETE", "/rules/clearance_rules", "admin")


# ----------------------------------------------------------------------------- proposals as tables
def table_files(tmp: Path, segments: list[tuple] | None = None) -> dict:
    """A gas DN200 crossing the water main square at E0 + 30, 1.5 m to its top (centre 33.4, the
    main's 33.45: the solids overlap), as CJJ 61 point and segment tables to upload."""
    from tests.analysis.test_proposal_tables import write_tables

    points = [("G1", "RQ", N0 - 10, E0 + 30, 35.0), ("G2", "RQ", N0 + 10, E0 + 30, 35.0)]
    p, s = write_tables(tmp, points, segments or [("G1", "G2", "RQ", "1.50", "1.50", "DN200", "PE", "0.2")])
    return {"points": ("管线点.csv", p.read_bytes(), "text/csv"),
            "segments": ("管线段.csv", s.read_bytes(), "text/csv")}


def test_tables_become_a_proposal_to_check_and_submit(api: Api, tmp_path: Path) -> None:
    r = api.post("/proposals/tables", "viewer", files=table_files(tmp_path))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    (f,) = doc["features"]
    assert doc["type"] == "FeatureCollection" and doc["crs"]["properties"]["name"].endswith("EPSG::4548")
    assert f["properties"]["id"] == "G1-G2" and f["properties"]["z_reference"] == "centre"
    assert f["geometry"]["coordinates"] == [[E0 + 30, N0 - 10, pytest.approx(33.4)],
                                            [E0 + 30, N0 + 10, pytest.approx(33.4)]]
    # the client checks or submits it as it is
    found = check(api, doc)["findings"]
    assert found[0]["kind"] == "collision" and set(found[0]["ids"]) == {"G1-G2", "J1-J2"}
    assert found[0]["shortfall_m"] == pytest.approx(0.2, abs=1e-3)
    stored = submit(api, doc)
    assert stored.status_code == 201, stored.text
    assert stored.json()["findings"][0]["kind"] == "collision"
    e = audit(api, "proposal-tables", feature="G1-G2", user="viewer")[0]
    assert e["status"] == 200 and e["params"]["axis_order"] == "ne"
    assert [x["name"] for x in e["params"]["files"]] == ["管线点.csv", "管线段.csv"]


def test_bad_tables_are_400_with_the_issues(api: Api, tmp_path: Path) -> None:
    bad = [("G1", "G9", "RQ", "1.50", "1.50", "DN200", "PE", "")]  # G9 is not in the point table
    r = api.post("/proposals/tables", "viewer", files=table_files(tmp_path, bad))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "E202" and "G9" in body["description"] and "row 2" in body["description"]
    entries = audit(api, "proposal-tables", user="viewer")
    assert any(x["status"] == 400 and "E202" in x["params"]["error"] for x in entries)
    # a segment table that is no table
    files = table_files(tmp_path)
    files["segments"] = ("segments.csv", b"\x00\x01 nothing here", "text/csv")
    r = api.post("/proposals/tables", "viewer", files=files)
    assert r.status_code == 400 and r.json()["code"], r.text
    # form fields that do not validate, a missing table
    assert api.post("/proposals/tables", "viewer", files=table_files(tmp_path),
                    data={"axis_order": "xy"}).status_code == 422
    assert api.post("/proposals/tables", "viewer",
                    files={"points": table_files(tmp_path)["points"]}).status_code == 422


def test_tables_need_a_sign_in(api: Api, tmp_path: Path) -> None:
    assert api.client.post("/proposals/tables", files=table_files(tmp_path)).status_code == 401
