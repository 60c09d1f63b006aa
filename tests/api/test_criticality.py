"""`/criticality`: the stored worst segments and per-pipe lookup, recomputed as a job, equal to
the library's answer; the demo district (read-only for the network: only results are stored)."""

from __future__ import annotations

import json

from analysis.criticality import criticality, pipe_criticality
from tests.api.conftest import Api, wait_job


def test_criticality_job_then_queries(api: Api) -> None:
    engine = api.client.app.state.engine
    r = api.post("/criticality/jobs?force=true")  # a viewer may: it is an analysis
    assert r.status_code == 201 and r.headers["Location"].endswith(f"/jobs/{r.json()['jobID']}")
    assert wait_job(api, r.json()["jobID"])["status"] == "successful"
    doc = api.get("/criticality?top=5&valves=true")
    assert doc.status_code == 200
    body = doc.json()
    assert not body["state"]["stale"] and len(body["segments"]) == 5
    assert all(link["rel"] != "refresh" for link in body["links"])
    library = criticality(engine, top=5, with_valves=True, refresh=False)
    assert {k: body[k] for k in ("segments", "valves")} == json.loads(json.dumps(
        {k: library[k] for k in ("segments", "valves")}, default=str))
    few = api.get("/criticality?top=3&min_valves=2").json()["segments"]
    assert all(s["valves_needed"] >= 2 for s in few)
    first = body["segments"][0]
    one = api.get(f"/criticality/pipes/{first['pipes'][0]}")
    assert one.status_code == 200 and one.json()["segment"]["outage"] == first["outage"]
    assert one.json() == {**json.loads(json.dumps(pipe_criticality(engine, first["pipes"][0]), default=str)),
                          "links": one.json()["links"]}
    assert api.get("/criticality/pipes/NO-SUCH-PIPE").status_code == 404
    assert api.get("/criticality?top=0").status_code == 422
    assert api.client.get("/criticality").status_code == 401
