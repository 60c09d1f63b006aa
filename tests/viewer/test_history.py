"""History (历史) in the viewer and the library under it.

In the browser: a pipe's end is moved through the edit API; the slider at the change before
the edit draws the pipe where it was (as the features API had it before the edit), the
change since is highlighted amber, and leaving the tool brings the live tiles back. The edit
is undone at the end (the demo district is shared by the viewer tests of this process).

Without a browser, on a twin of its own: ``/view/changes`` between the timeline's changes
tells added, retired, deleted and changed features apart, and a pipe added and retired again
between the two times is no change.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from pyproj import Transformer

from tests.api.conftest import LiveServer, make_twin, open_api
from tests.conftest import drop_schema
from tests.viewer.conftest import ARTIFACTS, Watch, api_post, api_token, sign_in_page
from twin.db import open_twin
from twin.settings import TwinSettings

TIMEOUT_MS = 90_000
AMBER = "#ffb000"


def _end_of_a_cable(settings: TwinSettings) -> tuple[str, str, float, float, float, int]:
    """A power or telecom pipe and the end point (feature 'end') it alone uses: (node, pipe, e, n,
    z, srid)."""
    engine = open_twin(settings)
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT n.id, s.id, ST_X(n.geom), ST_Y(n.geom), ST_Z(n.geom), ST_SRID(n.geom) FROM current_node n JOIN current_segment s "
            "  ON s.to_node = n.id OR s.from_node = n.id "
            "WHERE n.feature = 'end' AND n.utility IN ('DL', 'TX') "
            "  AND (SELECT count(*) FROM current_segment o WHERE o.from_node = n.id OR o.to_node = n.id) = 1 "
            "  AND NOT EXISTS (SELECT 1 FROM current_valve v WHERE v.node_id = n.id) "
            "ORDER BY n.id DESC LIMIT 1")).one()
    engine.dispose()
    return row[0], row[1], float(row[2]), float(row[3]), float(row[4]), int(row[5])


def _pipe(server: LiveServer, token: str, pipe: str) -> list[list[float]]:
    """The pipe's line now (CRS84), as the features API gives it."""
    r = httpx.get(f"{server.url}/collections/pipes/items/{pipe}", headers={"Authorization": f"Bearer {token}"},
                  timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["geometry"]["coordinates"]


def _close(a: list[list[float]], b: list[list[float]], tol: float = 1e-7) -> bool:
    return len(a) == len(b) and all(abs(p[0] - q[0]) < tol and abs(p[1] - q[1]) < tol for p, q in zip(a, b, strict=True))


def test_the_slider_shows_the_pipe_before_an_edit_and_highlights_the_change(
        browser, viewer_server: LiveServer, viewer_twin: TwinSettings) -> None:
    node, pipe, e, n, z, srid = _end_of_a_cable(viewer_twin)
    token = api_token(viewer_server, "editor")
    before = _pipe(viewer_server, token, pipe)
    moved = api_post(viewer_server, token, f"/edit/nodes/{node}/move", {"easting": e + 4.0, "northing": n})
    assert moved.status_code == 200, moved.text
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    watch = Watch(viewer_server.url)
    watch.attach(page)
    try:
        after = _pipe(viewer_server, token, pipe)
        assert not _close(before, after)
        timeline = httpx.get(f"{viewer_server.url}/view/timeline", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).json()
        edit = [c["batch_id"] for c in timeline["changes"]].index(moved.json()["batch_id"])
        sign_in_page(page, viewer_server, "viewer")
        page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
        # Close above the pipe's end: the past is read for the view's box only.
        ecef = Transformer.from_crs(f"EPSG:{srid}", "EPSG:4978", always_xy=True).transform(e, n, z)
        page.evaluate("([x, y, z]) => window.twinViewer.lookDownAt(x, y, z, 90)", list(ecef))
        page.click("#tools button[data-tool=history]")
        page.wait_for_function("(() => { const s = window.twinViewer.history.state(); "
                               "return s.drawn >= 1 && !s.busy; })()", timeout=TIMEOUT_MS)
        state = page.evaluate("window.twinViewer.history.state()")
        assert state["tilesShown"] is False  # the live tiles give way to the network as of the date
        assert state["changes"] >= edit + 1 and state["to"] == state["changes"] - 1
        assert page.locator("[data-role=history-to]").count() == 1

        # At the change before the edit: the pipe where it was, and no change of it since then.
        state = page.evaluate(f"window.twinViewer.history.show({edit - 1}, {edit - 1})")
        drawn = {p["id"]: p["coordinates"] for p in state["pipes"]}
        assert _close(drawn[pipe], before) and not _close(drawn[pipe], after)
        assert pipe not in {h["id"] for h in state["highlights"]}
        assert page.input_value("[data-role=history-to]") == str(edit - 1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "history-01-before-the-edit.png"))

        # From just before the edit to just after it: the pipe where it is now, amber.
        state = page.evaluate(f"window.twinViewer.history.show({edit}, {edit - 1})")
        drawn = {p["id"]: p["coordinates"] for p in state["pipes"]}
        assert _close(drawn[pipe], after)
        (mark,) = [h for h in state["highlights"] if h["id"] == pipe]
        assert mark["change"] == "changed" and mark["css"] == AMBER and "geom" in mark["changed"]
        row = page.locator(f"[data-role=history-changes] tr[data-id='{pipe}']")
        assert row.get_attribute("data-change") == "changed"
        page.screenshot(path=str(ARTIFACTS / "history-02-changes.png"))

        page.click("[data-role=history-live]")  # back to now: the live view again
        state = page.evaluate("window.twinViewer.history.state()")
        assert state["tilesShown"] is True and state["lines"] == 0 and not state["open"]
        assert watch.problems() == []
    finally:
        page.close()
        back = api_post(viewer_server, token, f"/edit/nodes/{node}/move", {"easting": e, "northing": n})
        assert back.status_code == 200, back.text


@pytest.fixture(scope="module")
def small_api(tmp_path_factory: pytest.TempPathFactory):
    settings = make_twin("test_history_small", Path(tmp_path_factory.mktemp("history_small")), data="small")
    try:
        yield from open_api(settings)
    finally:
        drop_schema(settings)


#: Edits in order, and what /view/changes must say between the timeline's changes (i, j): the
#: survey is change 0; then DL2 moves (1), JS4-JS6 is added (2), YS1-YS2 retired (3), JS4-JS6
#: retired (4), YS2-YS3 deleted (5).
CASES = [
    # (from, to, expected {pipe: change})
    (0, 0, {}),
    (0, 1, {"DL1-DL2": "changed"}),
    (1, 2, {"JS4-JS6": "added"}),
    (0, 3, {"DL1-DL2": "changed", "JS4-JS6": "added", "YS1-YS2": "retired"}),
    (2, 4, {"JS4-JS6": "retired", "YS1-YS2": "retired"}),
    (0, 5, {"DL1-DL2": "changed", "YS1-YS2": "retired", "YS2-YS3": "deleted"}),  # JS4-JS6: came and went
]


def test_changes_between_tells_added_retired_deleted_and_changed_apart(small_api) -> None:
    api = small_api
    dl2 = api.get("/features/nodes/DL2", params={"crs": "EPSG:4548"}).json()["geometry"]["coordinates"]
    edits = [
        ("post", "/edit/nodes/DL2/move", {"easting": dl2[0] + 5, "northing": dl2[1]}),
        ("post", "/edit/segments", {"from_node": "JS4", "to_node": "JS6", "size": "DN100"}),
        ("post", "/edit/segments/YS1-YS2/retire", {"reason": "test"}),
        ("post", "/edit/segments/JS4-JS6/retire", {"reason": "test"}),
        ("delete", "/edit/segments/YS2-YS3", None),
    ]
    for method, path, body in edits:
        r = api.request(method.upper(), path, "editor", **({"json": body} if body else {}))
        assert r.status_code in (200, 201), r.text
    at = [c["at"] for c in api.get("/view/timeline").json()["changes"]]
    assert len(at) == 6
    for i, j, want in CASES:
        r = api.get("/view/changes", params={"from": at[i], "to": at[j]})
        assert r.status_code == 200, r.text
        got = r.json()
        assert {f["id"]: f["change"] for f in got["features"]} == want, (i, j)
        assert got["total"] == len(want)
        for f in got["features"]:  # geometry then and now, where the pipe existed
            assert (f["before"] is None) == (f["change"] == "added")
            assert (f["after"] is None) == (f["change"] in ("retired", "deleted"))
    moved = api.get("/view/changes", params={"from": at[0], "to": at[1], "kinds": "segment,node"}).json()
    assert {(f["kind"], f["id"]): f["changed"] for f in moved["features"]} == {
        ("segment", "DL1-DL2"): ["geom", "length_m"], ("node", "DL2"): ["geom"]}
    # The box keeps what lies in it (then or now); CRS84 degrees, as the viewer sends its view.
    lon, lat = moved["features"][0]["before"]["coordinates"][0][:2]
    near = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    far = f"{lon + 1},{lat + 1},{lon + 1.01},{lat + 1.01}"
    assert api.get("/view/changes", params={"from": at[0], "to": at[1], "bbox": near}).json()["total"] == 1
    assert api.get("/view/changes", params={"from": at[0], "to": at[1], "bbox": far}).json()["total"] == 0
    for params, code in (({"from": at[1], "to": at[0]}, 400), ({"from": "yesterday", "to": at[0]}, 400),
                         ({"from": at[0], "to": at[1], "bbox": "1,2,3"}, 400),
                         ({"from": at[0], "to": at[1], "kinds": "pipes"}, 400)):
        r = api.get("/view/changes", params=params)
        assert r.status_code == code and r.json()["description"], (params, r.text)
