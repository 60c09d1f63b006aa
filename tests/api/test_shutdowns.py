"""Shutdowns (关阀方案) over HTTP: plan, conflicts, life cycle, the crew's marks, the notification
CSV, valve exercises, permissions and audit, on the hand-built loop of tests/analysis/test_shutdown."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from tests.analysis.test_shutdown import write_loop_survey
from tests.api.conftest import Api, make_twin, open_api
from tests.conftest import drop_schema
from twin.db import open_twin


@pytest.fixture(scope="module")
def loop_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("shutdowns")
    settings = make_twin("test_api_shutdowns", tmp, data="empty")
    report = ingest_survey(*write_loop_survey(tmp), settings)
    assert report.status == "applied", report
    yield from open_api(settings)
    drop_schema(settings)


def audit_actions(api: Api) -> list[str]:
    engine = open_twin(api.settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action FROM audit_log WHERE action LIKE 'shutdown-%' "
                                    "OR action = 'valve-exercise' ORDER BY id")).scalars().all()
    engine.dispose()
    return list(rows)


def test_plan_conflicts_and_life_cycle(loop_api: Api) -> None:
    api = loop_api
    a = api.post("/shutdowns", "editor", json={"pipe": "V1-B", "start": "2027-03-01T08:00+08:00",
                                               "end": "2027-03-01T12:00+08:00", "reason": "换阀"})
    assert a.status_code == 201, a.text
    doc = a.json()
    assert a.headers["location"].endswith(f"/shutdowns/{doc['id']}")
    assert doc["status"] == "planned" and doc["conflicts"] == [] and [v["id"] for v in doc["valves"]] == ["V1", "V2"]
    assert all("likely_to_fail" in v for v in doc["valves"])  # never exercised: flagged, next ring given
    assert set(doc["next_ring"]) == {"V1", "V2"}
    b = api.post("/shutdowns", "editor", json={"at": [410130.0, 4035001.0], "start": "2027-03-01T10:00+08:00",
                                               "end": "2027-03-01T14:00+08:00"}).json()
    assert b["pipe"] == "A-V3" or b["pipe"].startswith("V3")
    assert b["conflicts"] and b["conflicts"][0]["shutdown"] == doc["id"]
    assert "C3" in b["conflicts"][0]["extra_critical_customers"]
    listed = api.get("/shutdowns").json()["shutdowns"]
    assert [s["id"] for s in listed] == [doc["id"], b["id"]]
    assert api.get("/shutdowns?status=planned").json()["shutdowns"][0]["status_zh"] == "计划"

    sid = doc["id"]
    assert api.post(f"/shutdowns/{sid}/restore", "editor").status_code == 409
    assert api.post(f"/shutdowns/{sid}/valves/V1", "editor", json={"state": "closed"}).status_code == 409
    assert api.post(f"/shutdowns/{sid}/notify", "editor", json={"note": "短信已发"}).json()["status"] == "notified"
    assert api.post(f"/shutdowns/{sid}/execute", "editor").json()["status_zh"] == "执行中"
    r = api.post(f"/shutdowns/{sid}/valves/V2", "editor", json={"state": "failed", "note": "卡死"})
    assert r.status_code == 200, r.text
    states = {v["id"]: v["state"] for v in r.json()["valves"]}
    assert states == {"V1": "pending", "V2": "failed", "V4": "pending", "V5": "pending"}
    assert [c["id"] for c in r.json()["customers"]][0] == "C3"  # the hospital is out now, first
    assert api.post(f"/shutdowns/{sid}/valves/NOPE", "editor", json={"state": "closed"}).status_code == 404
    assert api.post(f"/shutdowns/{sid}/valves/V1", "editor", json={"state": "open"}).status_code == 422
    assert api.post(f"/shutdowns/{sid}/explode", "editor").status_code == 422
    assert api.get("/shutdowns/999999").status_code == 404

    csv_r = api.get(f"/shutdowns/{sid}/customers.csv")
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(csv_r.content.decode("utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == ["C3", "C1"]
    assert audit_actions(api) == ["shutdown-plan", "shutdown-plan", "shutdown-notify", "shutdown-execute",
                                  "shutdown-valve"]


def test_exercises_and_permissions(loop_api: Api) -> None:
    api = loop_api
    r = api.post("/valves/V3/exercises", "editor", json={"result": "ok", "at": "2026-01-05T09:00+08:00"})
    assert r.status_code == 201, r.text
    assert [e["result"] for e in r.json()["exercises"]][0] == "ok"
    assert api.get("/valves/V3/exercises").json()["exercises"][0]["by"] == "editor"
    assert api.get("/valves/NOPE/exercises").status_code == 404
    assert api.post("/valves/V3/exercises", "editor", json={"result": "maybe"}).status_code == 422
    # a viewer reads but may not plan, move, mark or record
    assert api.post("/valves/V3/exercises", "viewer", json={"result": "ok"}).status_code == 403
    assert api.post("/shutdowns", "viewer", json={"pipe": "V1-B", "start": "2027-03-02T08:00",
                                                  "end": "2027-03-02T09:00"}).status_code == 403
    assert api.post("/shutdowns", "editor", json={"pipe": "V1-B", "start": "2027-03-02T09:00",
                                                  "end": "2027-03-02T08:00"}).status_code == 400
    assert api.post("/shutdowns", "editor", json={"start": "2027-03-02T08:00",
                                                  "end": "2027-03-02T09:00"}).status_code == 400
    assert "valve-exercise" in audit_actions(api)
