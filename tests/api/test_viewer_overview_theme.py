"""The viewer's overview lines and the criticality thematic map on the demo district.

- ``GET /view/overview`` is bounded: at most ``budget`` surveyed vertices, shared by the
  utilities, biggest pipes first; lines merged and simplified, whatever the network's size.
- ``GET /view/theme/criticality`` classes each pipe by the customers its segment's shutoff cuts
  off, as stored (read independently from the tables here); pipes with no result are left out
  and named 未评估 not assessed; a recompute at the same network state is served at once.
"""

from __future__ import annotations

import numpy as np
import shapely
import sqlalchemy as sa

from analysis.criticality import ensure_current
from api.viewer_api import _overview
from tests.api.conftest import Api
from twin.crs import transformer
from twin.db import twin_srid

#: Lower bounds of the customer classes, as the legend states them (an independent table).
CUSTOMER_BOUNDS = [0, 1, 10, 50, 200]


def _lines(doc: dict) -> int:
    return sum(len(u["offsets"]) - 1 for u in doc["utilities"].values())


def test_overview_holds_the_demo_and_is_bounded(api: Api) -> None:
    r = api.get("/view/overview", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    whole = r.json()
    with api.client.app.state.engine.connect() as conn:
        active = conn.execute(sa.text("SELECT count(*) FROM current_segment WHERE status = 'active'")).scalar_one()
        by_utility = dict(conn.execute(sa.text(
            "SELECT utility, count(*) FROM current_segment WHERE status = 'active' GROUP BY 1")).all())
        budget = 200
        small = _overview(conn, api.settings, budget=budget)
        # the biggest pipes of each utility, as an independent query would pick them
        biggest = conn.execute(sa.text(
            "SELECT DISTINCT ON (utility) utility, ST_AsBinary(geom) FROM current_segment WHERE status = 'active' "
            "ORDER BY utility, greatest(coalesce(diameter_mm, 0), coalesce(width_mm, 0)) DESC, ST_Length(geom) DESC, id"
        )).all()
        to_lonlat = transformer(f"EPSG:{twin_srid(conn)}", "OGC:CRS84")
    # the demo district fits: every active pipe is in it, each utility's pipes under its colour
    assert whole["pipes"] == whole["active"] == active
    assert {k: u["pipes"] for k, u in whole["utilities"].items()} == by_utility
    for u in whole["utilities"].values():
        assert len(u["positions"]) == 3 * u["offsets"][-1] and u["offsets"][0] == 0
        assert np.all(np.diff(u["offsets"]) >= 2)
    # merged: fewer lines than pipes
    assert _lines(whole) < active
    # a small budget: at most that many vertices, shared by the utilities, biggest pipes first
    share = budget // len(by_utility)
    assert small["active"] == active and 0 < small["pipes"] < active
    assert all(u["offsets"][-1] <= share for u in small["utilities"].values())
    for utility, wkb in biggest:  # each utility's biggest pipe lies on its lines (0.5 m + rounding)
        u = small["utilities"][utility]
        p = np.asarray(u["positions"], dtype=float).reshape(-1, 3)
        drawn = shapely.multilinestrings([shapely.linestrings(p[a:b, :2]) for a, b in
                                          zip(u["offsets"][:-1], u["offsets"][1:], strict=True)])
        xy = shapely.get_coordinates(shapely.from_wkb(bytes(wkb)))
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        assert shapely.distance(drawn, shapely.points(lon, lat)).max() < 1e-5, utility
    assert len(r.content) < 300_000  # bytes of the demo's whole overview, for scale


def _stored_classes(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(sa.text(
        "SELECT p.pipe_id, s.customers FROM criticality_pipe p JOIN criticality_segment s ON s.segment = p.segment")).all()
    return {pipe: max(k for k, b in enumerate(CUSTOMER_BOUNDS) if customers >= b) for pipe, customers in rows}


def test_criticality_theme_is_the_stored_results(api: Api) -> None:
    engine = api.client.app.state.engine
    ensure_current(engine)
    doc = api.get("/view/theme/criticality").json()
    with engine.connect() as conn:
        expected = _stored_classes(conn)
        gravity = conn.execute(sa.text(
            "SELECT id FROM current_segment WHERE utility = 'PS' LIMIT 1")).scalar_one()
    assert doc["title"] == {"zh": "关阀影响", "en": "criticality (customers cut off)"}
    assert doc["none"] == {"zh": "未评估", "en": "not assessed"}
    assert [c["min_customers"] for c in doc["classes"]] == CUSTOMER_BOUNDS
    assert all("户" in c["zh"] and "customers" in c["en"] for c in doc["classes"])
    assert doc["features"] == expected and len(expected) > 0
    assert sum(doc["counts"]) == len(expected) and len({*expected.values()}) >= 2
    assert gravity not in doc["features"]  # drainage has no valves: not assessed
    assert doc["state"]["computed"] and not doc["state"]["stale"]

    # recomputed at the same network state: the map follows the new run, not the cached one
    again = ensure_current(engine, force=True)
    assert again["computed_at"] != doc["state"]["computed_at"]
    assert api.get("/view/theme/criticality").json()["state"]["computed_at"] == again["computed_at"], (doc["state"], again)
    assert api.get("/view/theme/nope").status_code == 404
