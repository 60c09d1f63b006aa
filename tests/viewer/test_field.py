"""The phone in the field (现场) at 390×844: every tool in view, "where am I" (在哪) from the
browser's geolocation listing the nearest valves (checked against distances computed here
with pyproj and numpy from the twin's valve table), tiles revalidated with 304 and JSON
answers compressed."""

from __future__ import annotations

import httpx
import numpy as np
import sqlalchemy as sa
from pyproj import Transformer

from tests.api.conftest import LiveServer
from tests.viewer.conftest import ARTIFACTS, Watch, api_token, sign_in_page
from twin.db import open_twin
from twin.settings import TwinSettings

PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000
#: Where the crew stands, from a valve (twin CRS metres east, north), and the fix's accuracy.
STEP_M = (6.0, -4.0)
ACCURACY_M = 12.0


def _valves(settings: TwinSettings) -> tuple[int, np.ndarray, np.ndarray, dict[str, float | None], np.ndarray]:
    """The twin's SRID, the live valves' ids and plan positions, the depth at each valve's point
    and the valves' utilities."""
    engine = open_twin(settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT v.id, ST_X(v.geom), ST_Y(v.geom), ST_SRID(v.geom), n.depth_m, v.utility FROM current_valve v "
            "LEFT JOIN current_node n ON n.id = v.node_id ORDER BY v.id")).all()
    engine.dispose()
    ids = np.array([r[0] for r in rows])
    xy = np.array([[r[1], r[2]] for r in rows], dtype=float)
    return int(rows[0][3]), ids, xy, {r[0]: r[4] for r in rows}, np.array([r[5] for r in rows])


def test_where_am_i_on_a_phone_lists_the_nearest_valves(browser, viewer_server: LiveServer,
                                                        viewer_twin: TwinSettings) -> None:
    srid, ids, xy, depth, utility = _valves(viewer_twin)
    here = xy[len(xy) // 2] + STEP_M
    lon, lat = Transformer.from_crs(f"EPSG:{srid}", "OGC:CRS84", always_xy=True).transform(*here)
    # Independently: back into the twin CRS with pyproj, plan distances to every valve.
    x, y = Transformer.from_crs("OGC:CRS84", f"EPSG:{srid}", always_xy=True).transform(lon, lat)
    d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
    order = np.lexsort((ids, d))[:5]
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=1,
                                  geolocation={"longitude": lon, "latitude": lat, "accuracy": ACCURACY_M},
                                  permissions=["geolocation"])
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    try:
        sign_in_page(page, viewer_server, "editor")
        page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
        # Every tool button is on the screen: the row wraps, nothing scrolls sideways out of sight.
        boxes = page.eval_on_selector_all(
            "#tools button[data-tool]:not([hidden])",
            "bs => bs.map(b => { const r = b.getBoundingClientRect(); return [b.dataset.tool, r.left, r.top, r.right, r.bottom]; })")
        assert {"field", "shutoff", "hazards", "proposal", "inspect", "history"} <= {b[0] for b in boxes}
        for tool, left, top, right, bottom in boxes:
            assert left >= 0 and top >= 0 and right <= PHONE["width"] and bottom <= PHONE["height"], tool
        crew = {b[0]: b for b in boxes}
        assert crew["field"][2] <= crew["shutoff"][2] <= crew["proposal"][2]  # the crew's tools first
        bar = page.locator("#bar").bounding_box()
        assert page.locator("#map").bounding_box()["y"] >= bar["y"] + bar["height"] - 1  # the map below the bar
        assert page.evaluate("document.querySelector('#tools').scrollWidth <= document.querySelector('#tools').clientWidth")

        page.tap("#tools button[data-tool=field]")
        page.wait_for_selector("[data-role=field-valves] tbody tr", timeout=TIMEOUT_MS)
        state = page.evaluate("window.twinViewer.field.state()")
        assert abs(state["position"]["x"] - x) < 0.01 and abs(state["position"]["y"] - y) < 0.01
        assert state["position"]["accuracy_m"] == ACCURACY_M
        shown = [v["id"] for v in state["valves"]]
        assert shown == ids[order].tolist()
        for v, k in zip(state["valves"], order, strict=True):
            assert abs(v["distance_m"] - d[k]) <= 0.006, (v, d[k])
            assert v["depth_m"] == (None if depth[v["id"]] is None else round(depth[v["id"]], 2))
        rows = page.eval_on_selector_all("[data-role=field-valves] tbody tr", "rs => rs.map(r => r.dataset.valve)")
        assert rows == shown
        assert state["entities"] == 2 + len(shown)  # me, my accuracy circle, the valves
        # Only the water network's valves: the nearest of those first.
        page.tap("[data-role=field-networks] [data-network=JS]")
        page.wait_for_function("(() => { const s = window.twinViewer.field.state(); "
                               "return s.valves && s.valves.every(v => v.utility === 'JS'); })()", timeout=TIMEOUT_MS)
        water = np.flatnonzero(utility == "JS")
        nearest = water[np.lexsort((ids[water], d[water]))[:5]]
        assert [v["id"] for v in page.evaluate("window.twinViewer.field.state()")["valves"]] == ids[nearest].tolist()
        page.wait_for_timeout(1500)  # the camera's flight
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "field-01-where-am-i-phone.png"))
        assert watch.problems() == []
    finally:
        context.close()


def test_tiles_revalidate_and_json_is_compressed(viewer_server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {api_token(viewer_server, 'viewer')}"}
    with httpx.Client(base_url=viewer_server.url, headers=auth, timeout=30) as client:
        first = client.get("/tiles/tileset.json")
        assert first.status_code == 200 and first.headers["etag"]
        assert first.headers["cache-control"] == "private, no-cache"
        again = client.get("/tiles/tileset.json", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
        glb = first.json()["root"]
        while "content" not in glb:
            glb = glb["children"][0]
        uri = glb["content"]["uri"]
        tile = client.get(f"/tiles/{uri}")
        assert tile.status_code == 200
        # named at its version (tileset.json's ?v=): the phone keeps it without asking again
        assert "?v=" in uri and tile.headers["cache-control"] == "private, max-age=31536000, immutable"
        assert client.get(f"/tiles/{uri}", headers={"If-None-Match": tile.headers["etag"]}).status_code == 304
        # JSON answers go gzip-compressed to a client that accepts it (the app's GZip middleware).
        with client.stream("GET", "/collections/pipes/items", params={"limit": 200},
                           headers={"Accept-Encoding": "gzip"}) as r:
            body = r.read()  # decoded by httpx; what came over the wire is the compressed size
            assert r.headers["content-encoding"] == "gzip" and r.num_bytes_downloaded < len(body) / 3
