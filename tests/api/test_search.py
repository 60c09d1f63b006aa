"""The viewer's search box (GET /view/search): ids, roads, and utilities by code or by name
(PS, 排水, 雨水, drain), counted against the demo district's own pipes."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api
from twin.db import open_twin


def _pipes(api: Api, where: str) -> int:
    engine = open_twin(api.settings)
    with engine.connect() as conn:
        n = conn.execute(sa.text(f"SELECT count(*) FROM current_segment WHERE {where}")).scalar()
    engine.dispose()
    return int(n)


@pytest.mark.parametrize(("q", "expected"), [
    ("PS", [("PS", None)]),
    ("ps", [("PS", None)]),
    ("排水", [("PS", None)]),
    ("雨水", [("PS", "YS")]),
    ("污水管", [("PS", "WS")]),
    ("drain", [("PS", None)]),
    ("燃气", [("RQ", None)]),
])
def test_utilities_by_code_and_name(api: Api, q: str, expected: list) -> None:
    r = api.get("/view/search", params={"q": q})
    assert r.status_code == 200, r.text
    got = [(x["utility"], x["subtype"]) for x in r.json()["results"] if x["kind"] == "utility"]
    assert got == expected
    first = next(x for x in r.json()["results"] if x["kind"] == "utility")
    code, sub = expected[0]
    where = f"utility = '{code}'" + (f" AND subtype = '{sub}'" if sub else "")
    assert first["pipes"] == _pipes(api, where) > 0
    west, south, east, north = first["bbox"]
    assert west < east and south < north
    assert first["label"].startswith({"PS": "排水", "YS": "雨水", "WS": "污水", "RQ": "燃气"}[sub or code])


def test_ids_and_roads_still_come_first_for_their_text(api: Api) -> None:
    road = api.get("/stats", params={"by": "road"}).json()["rows"][0]["road"]
    r = api.get("/view/search", params={"q": road[:2]}).json()["results"]
    assert any(x["kind"] == "road" and x["id"] == road for x in r) or len(r) >= 8
    assert [x for x in api.get("/view/search", params={"q": "PS99999"}).json()["results"]
            if x["kind"] == "utility"] == []
    assert api.get("/view/search", params={"q": ""}).status_code == 422


def test_road_centrelines_run_down_the_middle_of_their_pipes(api: Api) -> None:
    fc = api.get("/view/roads").json()
    engine = open_twin(api.settings)
    with engine.connect() as conn:
        roads = dict(conn.execute(sa.text(
            "SELECT road, count(*) FROM current_segment WHERE road <> '' GROUP BY road")).all())
        srid = conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'srid'")).scalar()
        assert {f["id"] for f in fc["features"]} == set(roads)
        for f in fc["features"]:
            assert f["properties"]["pipes"] == roads[f["id"]]
            # Back in the twin CRS: the pipes' midpoints lie near the line (a road is ~30 m wide).
            near = conn.execute(sa.text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_Distance(ST_Centroid(s.geom), l.g)), "
                "ST_Length(l.g) FROM current_segment s, (SELECT ST_Transform(ST_SetSRID("
                "ST_GeomFromGeoJSON(:g), 4326), :srid) AS g) l WHERE s.road = :r GROUP BY l.g"),
                {"g": json.dumps(f["geometry"]), "srid": int(srid), "r": f["id"]}).one()
            assert near[0] < 20.0, (f["id"], near)
            assert near[1] > 20.0
    engine.dispose()
