"""The web viewer end to end: a real server over the demo district, Debian's chromium.

Each step saves a screenshot to ``test-artifacts/viewer/`` and asserts that the page logged
no console error and made no failed or refused request (except those a step provokes on
purpose). The pipe picked by a real mouse click is a large water main with nothing else
within 3 m of its middle, seen from straight above at close range; the shutoff, section and
proposal results in the page are compared with what the API answers for the same input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from pyproj import Transformer

from tests.api.conftest import LiveServer, password
from tests.viewer.conftest import ARTIFACTS, Watch, api_post, api_token
from tiles.build import build_tileset
from twin.db import open_twin
from twin.settings import TwinSettings

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000
TO_ECEF = Transformer.from_crs("EPSG:4548", "EPSG:4978", always_xy=True)
TO_LONLAT = Transformer.from_crs("EPSG:4548", "EPSG:4326", always_xy=True)


@dataclass
class App:
    page: object
    watch: Watch
    server: LiveServer
    token: str

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def settle(self) -> None:
        """Let the camera arrive and the tiles it needs load."""
        self.page.wait_for_timeout(1500)
        self.page.wait_for_function("window.twinViewer.tilesLoaded()", timeout=TIMEOUT_MS)

    def assert_clean(self) -> None:
        problems = self.watch.problems()
        assert problems == [], problems

    def click_centre(self) -> None:
        box = self.page.locator("#map canvas").bounding_box()
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    def look_down_at(self, x: float, y: float, z: float, range_m: float = 14.0) -> None:
        ecef = TO_ECEF.transform(x, y, z)
        self.page.evaluate("([x, y, z, r]) => window.twinViewer.lookDownAt(x, y, z, r)", [*ecef, range_m])
        self.settle()


def _sign_in(page, server: LiveServer, role: str) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#signin-form", state="visible")
    page.fill("#signin-user", role)
    page.fill("#signin-password", password(role))


@pytest.fixture(scope="module")
def app(browser, viewer_server: LiveServer) -> App:
    """A desktop page signed in as an approver (the sign-in itself is the first test)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    _sign_in(page, viewer_server, "approver")
    a = App(page, watch, viewer_server, api_token(viewer_server, "approver"))
    a.shot("01-sign-in-page")
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
    yield a
    context.close()


def _isolated_water_mains(settings: TwinSettings) -> list[tuple[str, str, float, float, float]]:
    """Large water pipes with nothing else within 3 m of their middle: (id, utility, x, y, top z)."""
    engine = open_twin(settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""
            WITH mid AS (SELECT id, utility, diameter_mm, ST_LineInterpolatePoint(geom, 0.5) AS p
                           FROM current_segment
                          WHERE shape = 'circular' AND diameter_mm >= 300 AND utility = 'JS')
            SELECT id, utility, ST_X(p), ST_Y(p), ST_Z(p) + diameter_mm / 2000.0 FROM mid
             WHERE NOT EXISTS (SELECT 1 FROM current_segment o WHERE o.id <> mid.id
                                 AND ST_DWithin(ST_Force2D(o.geom), ST_Force2D(mid.p), 3))
               AND NOT EXISTS (SELECT 1 FROM current_node n WHERE ST_DWithin(ST_Force2D(n.geom), ST_Force2D(mid.p), 3))
             ORDER BY diameter_mm DESC, id LIMIT 10""")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
def burst_pipe(viewer_twin: TwinSettings, viewer_server: LiveServer, app: App) -> tuple[str, str, float, float, float]:
    """An isolated water main whose shutoff closes at least one valve (per the API)."""
    for row in _isolated_water_mains(viewer_twin):
        r = api_post(viewer_server, app.token, "/processes/shutoff/execution", {"inputs": {"pipe": row[0]}})
        assert r.status_code == 200, r.text
        if r.json()["valves"]:
            return row
    pytest.fail("the demo district has no isolated water main with valves around it")


def _across_a_road(server: LiveServer, token: str, half_m: float = 25.0) -> list[list[float]]:
    """A plan line (twin CRS) square across the middle of a pipe of the busiest road."""
    h = {"Authorization": f"Bearer {token}"}
    roads = httpx.get(server.url + "/stats", params={"by": "road"}, headers=h, timeout=30).json()["rows"]
    road = max((r for r in roads if r["road"]), key=lambda r: r["segments"])["road"]
    f = httpx.get(server.url + "/collections/pipes/items", params={"road": road, "limit": 1, "crs": "EPSG:4548"},
                  headers=h, timeout=30).json()["features"][0]
    c = f["geometry"]["coordinates"]  # EPSG:4548 axis order: northing, easting
    (n0, e0), (n1, e1) = c[0][:2], c[-1][:2]
    mx, my = (e0 + e1) / 2, (n0 + n1) / 2
    length = math.hypot(e1 - e0, n1 - n0)
    ux, uy = -(n1 - n0) / length, (e1 - e0) / length
    return [[mx - half_m * ux, my - half_m * uy], [mx + half_m * ux, my + half_m * uy]]


# ----------------------------------------------------------------------------- the steps
def test_sign_in_shows_the_user_and_role(app: App) -> None:
    page = app.page
    assert page.is_visible("#bar") and page.is_visible("#map canvas") and not page.is_visible("#signin")
    assert page.inner_text("#user-name") == "approver"
    assert page.text_content("#user-role") == "approver"
    assert "approver (approver)" in page.inner_text("[data-role=signed-in]")
    token = page.evaluate("JSON.parse(sessionStorage.getItem('pipetwin.session')).token")
    me = httpx.get(app.server.url + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.json()["name"] == "approver"
    app.settle()
    app.shot("02-signed-in")
    app.assert_clean()


def test_chinese_renders_with_the_shipped_font(app: App) -> None:
    page = app.page
    page.evaluate("document.fonts.load('14px \"Noto Sans SC\"', '关阀告警')")
    page.wait_for_function("document.fonts.check('14px \"Noto Sans SC\"', '关阀告警')", timeout=TIMEOUT_MS)
    loaded = page.evaluate("[...document.fonts].filter(f => f.family.includes('Noto Sans SC') "
                           "&& f.status === 'loaded').length")
    assert loaded >= 1  # woff2 subsets from /fonts/, not a system font, not the internet
    # A Chinese label is drawn with glyphs, not boxes: two different characters differ in width.
    widths = page.evaluate("""() => { const c = document.createElement('canvas').getContext('2d');
        c.font = '20px "Noto Sans SC"'; return ['关', '一', '□'].map(t => c.measureText(t).width); }""")
    assert widths[0] > 15 and widths[1] > 15
    app.assert_clean()


def test_tileset_loads_without_failed_tiles(app: App, viewer_twin: TwinSettings) -> None:
    page = app.page
    page.wait_for_function("window.twinViewer.tilesLoaded()", timeout=TIMEOUT_MS)
    first = page.evaluate("window.twinViewer.contentTiles()")
    assert first["ready"] > 0
    # Every tile, refined all the way down: each request carries the token.
    page.evaluate("window.twinViewer.world.tileset.maximumScreenSpaceError = 0")
    page.wait_for_function("(() => { const c = window.twinViewer.contentTiles(); "
                           "return window.twinViewer.tilesLoaded() && c.ready === c.total; })()", timeout=TIMEOUT_MS)
    tileset = json.loads((Path(viewer_twin.tiles_dir) / "tileset.json").read_text())
    n_content = 0
    stack = [tileset["root"]]
    while stack:
        t = stack.pop()
        n_content += "content" in t
        stack.extend(t.get("children", []))
    assert page.evaluate("window.twinViewer.contentTiles()") == {"ready": n_content, "total": n_content}
    page.evaluate("window.twinViewer.world.tileset.maximumScreenSpaceError = 16")
    assert page.evaluate("window.twinViewer.failedTiles()") == []
    timing = page.evaluate("window.twinViewer.timing")
    assert timing["firstPipesFrame"] > timing["firstTileVisible"] > 0
    app.shot("03-tileset")
    app.assert_clean()


def test_roads_and_their_names_orient_the_map(app: App) -> None:
    page = app.page
    h = {"Authorization": f"Bearer {app.token}"}
    roads = httpx.get(app.server.url + "/view/roads", headers=h, timeout=30).json()["features"]
    page.wait_for_function("window.twinViewer.roads().count > 0", timeout=TIMEOUT_MS)
    assert page.evaluate("window.twinViewer.roads().count") == len(roads) > 0
    labels = page.evaluate("window.twinViewer.world.widget.dataSources.getByName('roads')[0].entities.values"
                           ".filter(e => e.label).map(e => e.label.text.getValue())")
    assert sorted(labels) == sorted(f["id"] for f in roads)
    page.uncheck("[data-role=roads]")
    assert page.evaluate("window.twinViewer.world.widget.dataSources.getByName('roads')[0].show") is False
    page.check("[data-role=roads]")
    app.settle()
    app.shot("03a-roads")
    app.assert_clean()


def test_the_viewer_says_when_the_3d_view_is_behind_the_data(app: App, viewer_twin: TwinSettings) -> None:
    page = app.page
    assert page.evaluate("window.twinViewer.freshness.check()") == "current"
    assert page.is_hidden("#tiles-behind")
    engine = open_twin(viewer_twin)
    with engine.begin() as conn:  # a change the tiles have not seen: the twin's mark moves on
        conn.execute(sa.text("UPDATE segment SET material = material WHERE id = (SELECT min(id) FROM segment)"))
    engine.dispose()
    assert page.evaluate("window.twinViewer.freshness.check()") == "rebuilding"
    assert page.is_visible("#tiles-behind") and "正在重建" in page.inner_text("#tiles-behind")
    assert page.is_hidden("#tiles-behind button")
    build_tileset(viewer_twin, workers=1)  # what the server's refresh job does
    assert page.evaluate("window.twinViewer.freshness.check()") == "newer"
    assert page.is_visible("#tiles-behind button")
    app.shot("03b-tiles-behind")
    page.click("#tiles-behind button")
    page.wait_for_function("document.getElementById('tiles-behind').hidden", timeout=TIMEOUT_MS)
    assert page.evaluate("window.twinViewer.freshness.check()") == "current"
    page.wait_for_function("window.twinViewer.tilesLoaded()", timeout=TIMEOUT_MS)
    assert page.evaluate("window.twinViewer.failedTiles()") == []
    app.assert_clean()


def test_search_finds_utilities_by_code_and_chinese_name(app: App) -> None:
    page = app.page
    for q, shown, subtype in (("排水", "PS", None), ("雨水", "PS", "YS"), ("RQ", "RQ", None)):
        page.evaluate("(q) => window.twinViewer.search(q)", q)
        hidden = page.evaluate("[...window.twinViewer.display.hiddenUtilities]")
        assert shown not in hidden and len(hidden) >= 4, (q, hidden)
        assert page.evaluate("window.twinViewer.display.onlySubtype") == subtype
        assert page.is_visible("[data-role=show-all]")
    app.settle()
    app.shot("03c-search-utility")
    page.click("[data-role=show-all]")
    assert page.evaluate("window.twinViewer.display.hiddenUtilities.size") == 0
    assert page.evaluate("window.twinViewer.display.onlySubtype") is None
    app.assert_clean()


def test_the_wheel_cannot_carry_the_camera_off_the_network(app: App) -> None:
    page = app.page
    bounds = page.evaluate("window.twinViewer.world.bounds")
    assert bounds and bounds["maxHeight"] >= 2000
    box = page.locator("#map canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)
    for _ in range(8):  # far out, off to a corner (each step a software-rendered frame or more)
        page.mouse.wheel(0, 6000)
    page.wait_for_timeout(1000)
    where = page.evaluate("""(() => { const c = window.twinViewer.world.camera.positionCartographic;
        return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height]; })()""")
    lon, lat, height = where
    eps = 1e-6  # degrees (a decimetre): the clamped place goes through ECEF and back
    assert bounds["west"] - eps <= lon <= bounds["east"] + eps, (bounds, where)
    assert bounds["south"] - eps <= lat <= bounds["north"] + eps, (bounds, where)
    assert height <= bounds["maxHeight"] * 1.05
    app.assert_clean()


def test_clicking_a_pipe_shows_its_id_utility_record_and_history(app: App, burst_pipe) -> None:
    pipe_id, utility, x, y, z = burst_pipe
    page = app.page
    page.click("#tools button[data-tool=inspect]")
    app.look_down_at(x, y, z)
    app.click_centre()  # a real mouse click on the canvas
    page.wait_for_selector(f"[data-role=feature-head][data-id='{pipe_id}']", timeout=TIMEOUT_MS)
    assert page.inner_text("[data-role=feature-id]") == pipe_id
    tiles = page.inner_text("[data-role=tile-attributes]")
    assert pipe_id in tiles and f"{utility} 给水" in tiles  # zh-CN first: the code spelled out
    page.wait_for_selector("[data-role=record]", timeout=TIMEOUT_MS)
    page.wait_for_selector("[data-role=history]", timeout=TIMEOUT_MS)
    assert f"{utility} 给水" in page.inner_text("[data-role=record]")
    assert "新建" in page.inner_text("[data-role=history]")
    assert page.evaluate("window.twinViewer.display.selected") == pipe_id
    app.shot("04-pick-pipe")
    app.assert_clean()


def test_shutoff_lists_the_apis_valves_in_order_and_the_second_ring(app: App, burst_pipe) -> None:
    pipe_id, _, x, y, z = burst_pipe
    page = app.page
    page.click("#tools button[data-tool=shutoff]")
    app.look_down_at(x, y, z)
    app.click_centre()
    page.wait_for_selector("[data-role=valve-order]", timeout=TIMEOUT_MS)
    ui = page.eval_on_selector_all("[data-role=valve-order] tbody tr", "rows => rows.map(r => r.dataset.valve)")
    api = api_post(app.server, app.token, "/processes/shutoff/execution", {"inputs": {"pipe": pipe_id}}).json()
    assert ui == [v["id"] for v in api["valves"]] and ui
    # In 3D: the valves' points and the isolated pipes carry the shutoff colours.
    marks = page.evaluate("Object.fromEntries(window.twinViewer.display.marks)")
    assert all(marks[v["node"]] == "#ffe600" for v in api["valves"])  # valves yellow, not water's cyan
    # Where the crew finds each valve: road and depth in the list; the isolated pipes listed.
    cells = page.eval_on_selector_all("[data-role=valve-order] tbody tr",
                                      "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    assert [c[2] for c in cells] == [v["road"] or "–" for v in api["valves"]]
    assert page.eval_on_selector_all("[data-role=isolated-pipes] tbody tr",
                                      "rows => rows.map(r => r.dataset.pipe)") == api["isolated_pipes"]
    assert page.is_visible("[data-role=shutoff-actions]")
    assert all(marks[p] in ("#ff2d2d", "#f2f2f2") for p in api["isolated_pipes"])  # isolated, burst
    app.settle()
    app.shot("05-shutoff")
    # The first valve will not turn: the next ring.
    first = ui[0]
    page.click(f"[data-role=valve-order] tr[data-valve='{first}'] button[data-action=fail]")
    page.wait_for_selector(f"[data-role=failed-valves] tr[data-failed='{first}']", timeout=TIMEOUT_MS)
    ring = page.eval_on_selector_all("[data-role=valve-order] tbody tr", "rows => rows.map(r => r.dataset.valve)")
    api2 = api_post(app.server, app.token, "/processes/shutoff/execution",
                    {"inputs": {"pipe": pipe_id, "failed_valves": [first]}}).json()
    assert ring == [v["id"] for v in api2["valves"]]
    assert first not in ring
    app.settle()
    app.shot("06-shutoff-failed-valve")
    # The crew's work order (关阀作业单) of this shutoff, with the failed valve, as a PDF.
    with page.expect_download(timeout=TIMEOUT_MS) as order:
        page.click("button[data-action=work-order]")
    assert order.value.suggested_filename == f"work-order-{pipe_id}.pdf"
    assert Path(order.value.path()).read_bytes()[:5] == b"%PDF-"
    app.assert_clean()


def test_a_section_line_drawn_with_two_clicks_gives_the_drawing_and_a_3d_cut(app: App) -> None:
    page = app.page
    line = _across_a_road(app.server, app.token)
    (xa, ya), (xb, yb) = line
    lonlat = [TO_LONLAT.transform(xa, ya), TO_LONLAT.transform(xb, yb)]
    page.click("#tools button[data-tool=section]")
    mid = TO_ECEF.transform((xa + xb) / 2, (ya + yb) / 2, 34.0)
    page.evaluate("([x, y, z]) => window.twinViewer.lookDownAt(x, y, z, 90)", list(mid))
    app.settle()
    box = page.locator("#map canvas").bounding_box()
    for lon, lat in lonlat:
        h = page.evaluate("([lon, lat]) => window.twinViewer.groundHeight(lon, lat)", [lon, lat])
        sx, sy = page.evaluate("([lon, lat, h]) => window.twinViewer.toScreen(lon, lat, h)", [lon, lat, h])
        assert 0 < sx < box["width"] and 0 < sy < box["height"]
        page.mouse.click(box["x"] + sx, box["y"] + sy)
    page.wait_for_selector("[data-role=section-drawing] svg", timeout=TIMEOUT_MS)
    state = page.evaluate("window.twinViewer.sectionState()")
    drawn = state["line"]
    # The clicks land where they were aimed (within a metre).
    for (ex, ey), (gx, gy) in zip(line, drawn, strict=True):
        assert math.hypot(ex - gx, ey - gy) < 1.0
    api = api_post(app.server, app.token, "/processes/section/execution", {"inputs": {"line": drawn}}).json()
    ui = page.eval_on_selector_all("[data-role=section-pipes] tbody tr", "rows => rows.map(r => r.dataset.pipe)")
    assert ui == [p["id"] for p in api["pipes"]] and ui
    svg = page.inner_html("[data-role=section-drawing]")
    assert "<svg" in svg and api["pipes"][0]["id"] in svg
    assert page.evaluate("window.twinViewer.clipping()") is True
    app.settle()
    app.shot("07-section")
    # Esc ends the tool, and the tool takes its cut, pins and marks with it.
    page.keyboard.press("Escape")
    assert page.evaluate("window.twinViewer.clipping()") is False
    assert page.evaluate("window.twinViewer.display.marks.size") == 0
    assert page.evaluate("window.twinViewer.world.widget.dataSources.getByName('section')[0].entities.values.length") == 0
    assert page.get_attribute("#tools button[data-tool=inspect]", "aria-pressed") == "true"
    app.assert_clean()


def test_a_proposal_upload_shows_its_findings_the_report_and_the_approval(app: App, tmp_path: Path) -> None:
    page = app.page
    page.evaluate("window.twinViewer.clearSection()")
    # Across every utility of the road (-14 m to +16 m from its centreline), its top at 1.0 m: square
    # through the telecom duct (top 0.95 m, 0.30 m high) by more than that duct's survey tolerance.
    line = _across_a_road(app.server, app.token, half_m=35.0)
    doc = {"type": "Feature", "properties": {"utility": "RQ", "size": "DN200", "depth_m": 1.0},
           "geometry": {"type": "LineString", "coordinates": line}}
    path = tmp_path / "gas-crossing.geojson"
    path.write_text(json.dumps(doc))
    page.click("#tools button[data-tool=proposal]")
    page.set_input_files("#proposal-file", str(path))
    page.fill("#proposal-name", "gas crossing")
    page.click("form.upload button[type=submit]")
    page.wait_for_selector("[data-role=findings]", timeout=TIMEOUT_MS)
    report = page.evaluate("window.twinViewer.proposalState()")
    check = api_post(app.server, app.token, "/processes/proposal-check/execution", {"inputs": {"proposal": doc}}).json()
    ui = page.eval_on_selector_all("[data-role=findings] tbody tr", "rows => rows.map(r => r.dataset.finding)")
    assert ui == [f["key"] for f in check["findings"]] and ui
    assert any(f["kind"] == "collision" for f in check["findings"])
    assert page.inner_text("[data-role=proposal-result]") == "未通过"  # fail, in zh-CN
    # Drawn in its own colour, findings marked, involved pipes coloured.
    page.wait_for_function("window.twinViewer.proposalDrawn()", timeout=TIMEOUT_MS)
    entities = page.evaluate("window.twinViewer.world.widget.dataSources.getByName('proposal')[0].entities.values"
                             ".map(e => e.id)")
    assert any(e.startswith("proposal-") for e in entities)
    assert all(f"finding-{k}" in entities for k in ui)
    marks = page.evaluate("Object.fromEntries(window.twinViewer.display.marks)")
    assert {i for f in check["findings"] for i in f["ids"] if i != "P1"} <= set(marks)  # P1: the proposal
    app.settle()
    app.shot("08-proposal")
    with page.expect_popup() as popup:
        page.click("button[data-action=report]")
    report_page = popup.value
    report_page.wait_for_load_state()
    assert "gas crossing" in report_page.inner_text("body")
    report_page.screenshot(path=str(ARTIFACTS / "09-proposal-report.png"), full_page=False)
    report_page.close()
    # The approver who uploaded it marks it reviewed; approving their own proposal is refused
    # (four eyes) and the server's reason is shown.
    page.click("button[data-action=review]")
    page.wait_for_function("document.querySelector('[data-role=proposal-status]').dataset.status === 'reviewed'",
                           timeout=TIMEOUT_MS)
    decision = f"/proposals/{report['proposal_id']}/decision"
    app.watch.allow(403, decision)
    page.once("dialog", lambda d: d.accept("protective sleeve at the crossings"))
    page.click("button[data-action=approve]")
    page.wait_for_selector(".toast.error", timeout=TIMEOUT_MS)
    toasts = page.inner_text("#toasts")  # the server's message, Chinese first for a zh-CN viewer
    assert "双人审核" in toasts or "four eyes" in toasts, toasts
    page.click(".toast.error .close")
    # Another approver (the admin here) approves it over the open findings, with a reason.
    admin = api_token(app.server, "admin")
    r = api_post(app.server, admin, decision, {"status": "approved", "override": "protective sleeve at the crossings"})
    assert r.status_code == 200, r.text
    stored = httpx.get(f"{app.server.url}/proposals/{report['proposal_id']}",
                       headers={"Authorization": f"Bearer {app.token}"}, timeout=30).json()
    assert stored["status"] == "approved" and stored["decided_by"] == "admin"
    assert stored["override_note"] == "protective sleeve at the crossings"
    page.wait_for_function("window.twinViewer.proposalDrawn()", timeout=TIMEOUT_MS)
    app.shot("10-proposal-four-eyes")
    app.assert_clean()


def test_a_submitter_downloads_the_package_and_withdraws_the_proposal(app: App, tmp_path: Path) -> None:
    page = app.page
    line = _across_a_road(app.server, app.token, half_m=10.0)
    doc = {"type": "Feature", "properties": {"utility": "JS", "size": "DN150", "depth_m": 1.2},
           "geometry": {"type": "LineString", "coordinates": line}}
    path = tmp_path / "to-withdraw.geojson"
    path.write_text(json.dumps(doc))
    page.click("#tools button[data-tool=proposal]")
    page.set_input_files("#proposal-file", str(path))
    page.fill("#proposal-name", "to withdraw")
    page.click("form.upload button[type=submit]")
    # This proposal's panel, not the one a test before left open.
    page.wait_for_function("window.twinViewer.proposalState()?.name === 'to withdraw'", timeout=TIMEOUT_MS)
    page.wait_for_selector("[data-role=proposal-status]", timeout=TIMEOUT_MS)
    pid = page.evaluate("window.twinViewer.proposalState().proposal_id")
    # The approval package and the BCF, as files the officer can file.
    with page.expect_download(timeout=TIMEOUT_MS) as pdf:
        page.click("button[data-action=package]")
    assert pdf.value.suggested_filename == f"proposal-{pid}.pdf"
    assert Path(pdf.value.path()).read_bytes()[:5] == b"%PDF-"
    with page.expect_download(timeout=TIMEOUT_MS) as bcf:
        page.click("button[data-action=bcf]")
    assert Path(bcf.value.path()).read_bytes()[:2] == b"PK"  # a zip
    # Its submitter takes it back: no decision is offered on a withdrawn proposal.
    page.once("dialog", lambda d: d.accept("wrong road"))
    page.click("button[data-action=withdraw]")
    page.wait_for_function("document.querySelector('[data-role=proposal-status]').dataset.status === 'withdrawn'",
                           timeout=TIMEOUT_MS)
    assert not page.is_visible("button[data-action=withdraw]")
    assert not page.is_visible("button[data-action=reject]") and not page.is_visible("button[data-action=review]")
    stored = httpx.get(f"{app.server.url}/proposals/{pid}", headers={"Authorization": f"Bearer {app.token}"},
                       timeout=30).json()
    assert stored["status"] == "withdrawn"
    app.assert_clean()


def test_a_profile_between_two_points_gives_the_drawing(app: App, viewer_twin: TwinSettings) -> None:
    """Two water points three pipes apart, typed into the profile form."""
    engine = open_twin(viewer_twin)
    with engine.connect() as conn:
        start, end = conn.execute(sa.text("""
            SELECT a.from_node, c.to_node FROM current_segment a
              JOIN current_segment b ON b.from_node = a.to_node AND b.utility = a.utility
              JOIN current_segment c ON c.from_node = b.to_node AND c.utility = a.utility
             WHERE a.utility = 'JS' AND c.to_node <> a.from_node
             ORDER BY a.id LIMIT 1""")).one()
    engine.dispose()
    page = app.page
    page.click("#tools button[data-tool=profile]")
    page.fill("#profile-from", start)
    page.fill("#profile-to", end)
    page.click("form.inline-form button[type=submit]")
    page.wait_for_selector("[data-role=profile-drawing] svg", timeout=TIMEOUT_MS)
    api = api_post(app.server, app.token, "/processes/profile/execution",
                   {"inputs": {"from_node": start, "to_node": end}}).json()
    ui = page.eval_on_selector_all("[data-role=profile-pipes] tbody tr", "rows => rows.map(r => r.dataset.pipe)")
    assert ui == [s["id"] for s in api["segments"]] and len(ui) >= 3
    assert all(page.evaluate("(id) => window.twinViewer.display.marks.has(id)", i) for i in ui)
    app.settle()
    app.shot("11-profile")
    app.assert_clean()


def test_the_findings_panel_lists_filters_and_zooms(app: App, viewer_twin: TwinSettings) -> None:
    """The whole-network scan's stored findings: listed in Chinese, filtered, a row marks its pipes."""
    from analysis.findings import list_findings, scan_and_store

    engine = open_twin(viewer_twin)
    try:
        stored = scan_and_store(engine, user="tests", limit=0)["findings"]
        expected = list_findings(engine, verdict=["uncertain"], limit=200)
    finally:
        engine.dispose()
    assert stored["found"] > 0
    page = app.page
    page.evaluate("window.twinViewer.findings.list({status: ['new'], verdict: ['uncertain']})")
    page.wait_for_selector("[data-role=finding-list] tr[data-finding]", timeout=TIMEOUT_MS)
    rows = page.eval_on_selector_all("[data-role=finding-list] tr[data-finding]", "rs => rs.map(r => r.dataset.finding)")
    assert rows == [f["key"] for f in expected["findings"]]
    assert "新发现" in page.inner_text("[data-role=finding-list]") and "无法判定" in page.inner_text("[data-role=finding-list]")
    first = expected["findings"][0]
    page.click(f"[data-role=finding-list] tr[data-finding='{first['key']}']")
    page.wait_for_selector("[data-role=finding-summary]", timeout=TIMEOUT_MS)
    marks = page.evaluate("Object.fromEntries(window.twinViewer.display.marks)")
    assert set(marks) == {first["a_id"], first["b_id"]}
    page.click("button[data-move=reviewed]")  # the page is an approver's
    page.wait_for_function("document.querySelector('[data-role=finding-summary]').textContent.includes('已审核')",
                           timeout=TIMEOUT_MS)
    h = {"Authorization": f"Bearer {app.token}"}
    doc = httpx.get(app.server.url + f"/findings/{first['key']}", headers=h, timeout=30).json()
    assert (doc["status"], doc["status_by"]) == ("reviewed", "approver")
    app.shot("11b-findings")
    app.assert_clean()


def test_api_errors_reach_the_user(app: App) -> None:
    """A shutoff on a drainage pipe: the API's description is shown, nothing is swallowed."""
    page = app.page
    h = {"Authorization": f"Bearer {app.token}"}
    drain = httpx.get(app.server.url + "/collections/pipes-ps/items", params={"limit": 1}, headers=h,
                      timeout=30).json()["features"][0]["id"]
    api = api_post(app.server, app.token, "/processes/shutoff/execution", {"inputs": {"pipe": drain}})
    assert api.status_code == 400
    app.watch.allow(400, "/processes/shutoff/execution")
    page.evaluate("(id) => window.twinViewer.shutoff(id)", drain)
    page.wait_for_selector(".toast.error", timeout=TIMEOUT_MS)
    assert api.json()["description_zh"] in page.inner_text("#toasts")  # the viewer asks in zh-CN
    app.shot("12-error-shown")
    page.wait_for_timeout(7000)  # longer than a message's few seconds: an error stays ...
    assert page.is_visible(".toast.error")
    page.click(".toast.error .close")  # ... until dismissed
    assert page.locator(".toast.error").count() == 0
    app.assert_clean()
