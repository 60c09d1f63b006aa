"""Stored findings over HTTP: the network-scan process stores them; GET /findings lists and filters
them page by page; POST /findings/{key}/status moves one (approvers only), audited.

On the shared demo twin (``api``): the tests change only its findings."""

from __future__ import annotations

import pytest

from analysis.findings import store_findings
from analysis.pieces import finding_key
from tests.api.conftest import Api, wait_job


def _f(kind: str, a: str, b: str, verdict: str, road: str = "东昌路") -> dict:
    return {"key": finding_key(kind, (a, b)), "kind": kind, "a_id": a, "b_id": b, "a_utility": a[:2],
            "b_utility": b[:2], "a_owner": f"{a[:2]}公司", "b_owner": f"{b[:2]}公司", "road": road,
            "measured_m": 0.1, "required_m": 0.5, "verdict": verdict, "x": 1.0, "y": 2.0, "z": 3.0}


FOUND = [_f("horizontal", "RQ1", "DL1", "violation"), _f("vertical", "WS1", "JS1", "uncertain", "东昌路 / 兴华路"),
         _f("no_rule", "DL2", "TX2", "no_rule"), _f("hard", "TX3", "JS3", "violation", "兴华路")]


def _forget(api: Api) -> None:
    with api.client.app.state.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE finding CASCADE")


def test_the_network_scan_process_stores_its_findings(api: Api) -> None:
    _forget(api)
    r = api.post("/processes/network-scan/execution", json={"inputs": {"limit": 2}})
    assert r.status_code == 201, r.text
    done = wait_job(api, r.json()["jobID"])
    assert done["status"] == "successful", done
    stored = api.get(f"/jobs/{done['jobID']}/results").json()["findings"]
    listed = api.get("/findings").json()
    assert listed["numberMatched"] == stored["open"] == stored["found"] == stored["new"] > 0
    assert all(f["status"] == "new" and f["status_by"] == "viewer" for f in listed["findings"])


@pytest.fixture
def found(api: Api) -> dict[str, str]:
    _forget(api)
    store_findings(api.client.app.state.engine, {"clearance": {"violations": FOUND}}, user="scan")
    return {f["a_id"]: f["key"] for f in FOUND}


@pytest.mark.parametrize("query, expected", [
    ("", {"RQ1", "WS1", "DL2", "TX3"}),
    ("?verdict=uncertain&verdict=no_rule", {"WS1", "DL2"}),
    ("?utility-pair=DL-RQ", {"RQ1"}),
    ("?owner-pair=TX公司/JS公司", {"TX3"}),
    ("?road=兴华路", {"WS1", "TX3"}),
    ("?status=resolved", set()),
])
def test_filters(api: Api, found, query, expected) -> None:
    r = api.get(f"/findings{query}")
    assert r.status_code == 200, r.text
    assert {f["a_id"] for f in r.json()["findings"]} == expected


def test_pages_follow_the_next_link(api: Api, found) -> None:
    seen, url = [], "/findings?limit=3"
    while url:
        doc = api.get(url).json()
        seen += [f["key"] for f in doc["findings"]]
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        url = nxt[0].removeprefix("http://testserver") if nxt else None
    assert sorted(seen) == sorted(found.values())


@pytest.mark.parametrize("query", ["?status=open", "?verdict=compliant", "?limit=0", "?utility-pair=A-B-C"])
def test_bad_filters_are_400s(api: Api, query) -> None:
    r = api.get(f"/findings{query}")
    assert r.status_code in (400, 422) and r.status_code != 500, r.text


def test_status_changes_need_approve_and_are_audited(api: Api, found) -> None:
    key = found["RQ1"]
    assert api.post(f"/findings/{key}/status", "viewer", json={"status": "reviewed"}).status_code == 403
    assert api.post(f"/findings/{key}/status", "editor", json={"status": "reviewed"}).status_code == 403
    r = api.post(f"/findings/{key}/status", "approver", json={"status": "reviewed", "note": "试挖已安排"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["status_label"], r.json()["status_by"]) == ("reviewed", "已审核", "approver")
    # approving a violation needs a reason; a status the finding cannot move to is a conflict
    assert api.post(f"/findings/{key}/status", "approver", json={"status": "approved"}).status_code == 400
    assert api.post(f"/findings/{key}/status", "approver", json={"status": "resolved"}).status_code == 422
    assert api.post(f"/findings/{key}/status", "approver", json={"status": "reviewed"}).status_code == 409
    assert api.post(f"/findings/{'0' * 16}/status", "approver", json={"status": "reviewed"}).status_code == 404
    history = api.get(f"/findings/{key}").json()["history"]
    assert [(h["user_name"], h["to_status"], h["note"]) for h in history] == [
        ("scan", "new", "scan"), ("approver", "reviewed", "试挖已安排")]
    entries = api.get("/admin/audit", "admin", params={"action": "finding-status"}).json()["entries"]
    assert entries[0]["user_name"] == "approver" and entries[0]["params"]["finding"] == key
    assert f"finding:{key}" in entries[0]["affected"] and entries[0]["status"] == 200
    assert api.client.get("/findings").status_code == 401
