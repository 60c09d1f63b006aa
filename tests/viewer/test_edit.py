"""Editing in the viewer (数据编辑), in zh-CN, checked through the edit API.

An editor adds a pipe with two clicks on the map: the start on bare ground (a new point), the end
a few pixels off an existing point, which it snaps to; changes an attribute in the form made from
the column catalogue; meets a version conflict (409) made by another user through the API first,
sees who and which versions, reloads and retries; then undoes every edit and finds the twin as
it was. Its own small twin and server: the edits leave the shared demo district alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import LiveServer, make_twin, start_server
from tests.conftest import drop_schema
from tests.viewer.conftest import ARTIFACTS, Watch, api_token, sign_in_page
from tiles.build import build_tileset

TIMEOUT_MS = 90_000
SNAPPED = "JS4"  # the water main's end point the new pipe ends at
OFF_PX = (7, -5)  # how far from the point the click lands: within the 12 px tolerance


@pytest.fixture(scope="module")
def edit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("viewer_edit")
    settings = make_twin(f"test_viewer_edit_{os.getpid()}", tmp)
    build_tileset(settings, full=True, workers=1)
    server = start_server(settings, tmp / "server.log")
    yield server
    server.stop()
    drop_schema(settings)


def _get(server: LiveServer, token: str, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _click_at(page, lon: float, lat: float, h: float, off: tuple[int, int] = (0, 0)) -> None:
    box = page.locator("#map canvas").bounding_box()
    sx, sy = page.evaluate("([lon, lat, h]) => window.twinViewer.toScreen(lon, lat, h)", [lon, lat, h])
    assert 0 < sx < box["width"] and 0 < sy < box["height"]
    page.mouse.move(box["x"] + sx + off[0], box["y"] + sy + off[1])
    page.mouse.click(box["x"] + sx + off[0], box["y"] + sy + off[1])


def _wait_edit(page, until: str, timeout_ms: int = 30_000) -> dict:
    """The edit tool's state once ``until`` (JS over ``s``, the state) holds."""
    try:
        page.wait_for_function(f"(() => {{ const s = window.twinViewer.edit.state(); return {until}; }})()",
                               timeout=timeout_ms, polling=100)
    except Exception as exc:  # say what the tool had instead
        seen = page.evaluate("[window.twinViewer.edit.state(), window.twinViewer.errors()]")
        raise AssertionError(f"the edit tool never reached {until}: {seen}") from exc
    return page.evaluate("window.twinViewer.edit.state()")


def test_add_a_snapped_pipe_change_it_meet_a_conflict_and_undo(browser, edit_server: LiveServer) -> None:
    token = api_token(edit_server, "editor")
    other = api_token(edit_server, "admin")
    node = _get(edit_server, token, f"/features/nodes/{SNAPPED}").json()
    lon, lat, z = node["geometry"]["coordinates"]
    segments_before = _get(edit_server, token, "/collections/pipes/items").json()["numberMatched"]
    page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    watch = Watch(edit_server.url)
    watch.attach(page)
    try:
        sign_in_page(page, edit_server, "editor")
        page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
        button = page.locator("#tools button[data-tool=edit]")
        assert button.is_visible() and button.inner_text() == "编辑"
        offset = page.evaluate("window.twinViewer.world.frame.geoid_offset_m")
        page.evaluate("""([lon, lat, h]) => window.twinViewer.world.camera.setView({
            destination: Cesium.Cartesian3.fromDegrees(lon, lat, h + 90),
            orientation: { heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0 } })""", [lon, lat, z + offset])
        button.click()
        page.wait_for_selector("#panel [data-mode=pipe]", timeout=TIMEOUT_MS)
        assert "数据编辑" in page.inner_text("#panel-title")

        # -- add a pipe: start on bare ground 20 m north, end a few pixels off JS4 (snapped)
        page.click("#panel [data-mode=pipe]")
        north = lat + 20 / 111_320
        ground = page.evaluate("([lon, lat]) => window.twinViewer.groundHeight(lon, lat)", [lon, north])
        _click_at(page, lon, north, ground)
        _wait_edit(page, "s.start !== null")
        assert page.evaluate("window.twinViewer.edit.state().start.snap") is None  # nothing near: a new point
        _click_at(page, lon, lat, z + offset, OFF_PX)
        page.wait_for_selector("[data-role=add-pipe-form]", timeout=TIMEOUT_MS)
        assert f"管点 {SNAPPED}" in page.inner_text("[data-role=pipe-ends]")
        assert page.input_value("[data-role=pipe-form] select[name=utility]") == "JS"  # from the snapped point
        new_node = page.input_value("[data-role=new-node-a] input[name=a_id]")
        assert float(page.input_value("[data-role=new-node-a] input[name=a_ground_z]")) == pytest.approx(35.15, abs=0.2)
        # client-side validation: the size is required
        page.click("[data-role=add-pipe-form] [data-role=save]")
        assert "必填" in page.inner_text("[data-role=add-pipe-form] [data-role=form-error]")
        page.fill("[data-role=pipe-form] input[name=size]", "DN150")
        page.fill("[data-role=pipe-form] input[name=id]", "EDIT-1")
        # the server's data checks answer in the form: the new point needs a depth (E301)
        watch.allow(400, "/edit/segments")
        page.click("[data-role=add-pipe-form] [data-role=save]")
        page.wait_for_function("document.querySelector('[data-role=add-pipe-form] [data-role=form-error]')"
                               ".textContent.includes('E301')", timeout=TIMEOUT_MS)
        assert _get(edit_server, token, f"/features/nodes/{new_node}").status_code == 404  # all or nothing
        page.fill("[data-role=new-node-a] input[name=a_depth_m]", "1.2")
        _shot(page, "edit-pipe")
        page.click("[data-role=add-pipe-form] [data-role=save]")
        state = _wait_edit(page, "s.target && s.target.id === 'EDIT-1'")
        seg = _get(edit_server, token, "/features/segments/EDIT-1").json()["properties"]
        assert (seg["from_node"], seg["to_node"], seg["size_text"]) == (new_node, SNAPPED, "DN150")
        assert _get(edit_server, token, f"/features/nodes/{new_node}").status_code == 200
        assert state["undo"] == ["添加管线"]

        # -- change an attribute through the form (units and allowed values from the catalogue)
        form = "[data-role=attribute-form]"
        assert "(m)" in page.inner_text(f"{form} tr[data-field=from_depth_m] th")
        assert "在用" in page.inner_text(f"{form} select[name=status]")
        page.fill(f"{form} input[name=material]", "PE")
        page.fill(f"{form} input[name=cables]", "2.5")  # not a whole number: refused in the browser
        page.click(f"{form} [data-role=save]")
        assert "须为整数" in page.inner_text(f"{form} [data-role=form-error]")
        page.fill(f"{form} input[name=cables]", "")
        page.click(f"{form} [data-role=save]")
        _wait_edit(page, "s.target && s.target.version === 2")
        assert _get(edit_server, token, "/features/segments/EDIT-1").json()["properties"]["material"] == "PE"

        # -- someone else changes it first: the save is a 409, explained; reload and retry
        r = httpx.patch(f"{edit_server.url}/edit/segments/EDIT-1", json={"attributes": {"remarks": "巡检复核"}, "version": 2},
                        headers={"Authorization": f"Bearer {other}"}, timeout=30)
        assert r.status_code == 200, r.text
        watch.allow(409, "/edit/segments/EDIT-1")
        page.fill(f"{form} input[name=owner]", "聊城市自来水公司")
        page.click(f"{form} [data-role=save]")
        page.wait_for_selector("[data-role=conflict-message]", timeout=TIMEOUT_MS)
        message = page.inner_text("[data-role=conflict-message]")
        assert "此要素已被他人修改" in message and "版本 2 → 3" in message and "admin" in message
        _shot(page, "edit-409")
        page.click("[data-role=reload-retry]")
        page.wait_for_function("document.querySelector('[data-role=edit-version]')?.textContent === '3'",
                               timeout=TIMEOUT_MS)
        assert page.input_value(f"{form} input[name=owner]") == "聊城市自来水公司"  # the user's change kept
        page.click(f"{form} [data-role=save]")
        _wait_edit(page, "s.target && s.target.version === 4")
        now = _get(edit_server, token, "/features/segments/EDIT-1").json()["properties"]
        assert (now["owner"], now["remarks"], now["material"]) == ("聊城市自来水公司", "巡检复核", "PE")

        # -- undo, last edit first, each checked through the API
        undo = "#panel [data-role=undo]"
        assert "撤销" in page.inner_text(undo)
        page.click(undo)
        _wait_edit(page, "s.undo.length === 2 && s.target && s.target.version === 5")
        now = _get(edit_server, token, "/features/segments/EDIT-1").json()["properties"]
        assert (now["owner"], now["remarks"], now["material"]) == (None, "巡检复核", "PE")
        page.click(undo)
        _wait_edit(page, "s.undo.length === 1 && s.target && s.target.version === 6")
        assert _get(edit_server, token, "/features/segments/EDIT-1").json()["properties"]["material"] is None
        page.click(undo)
        _wait_edit(page, "s.undo.length === 0")
        _shot(page, "edit-undo")
        assert _get(edit_server, token, "/features/segments/EDIT-1").status_code == 404
        assert _get(edit_server, token, f"/features/nodes/{new_node}").status_code == 404
        assert _get(edit_server, token, "/collections/pipes/items").json()["numberMatched"] == segments_before
        assert _get(edit_server, token, f"/features/nodes/{SNAPPED}").json()["properties"]["version"] == 1

        # -- Esc ends the tool and leaves no mark behind
        page.keyboard.press("Escape")
        page.wait_for_function("window.twinViewer.edit.state().marks === 0", timeout=TIMEOUT_MS)
        assert page.evaluate("window.twinViewer.display.marks.size") == 0
        problems = watch.problems()
        assert problems == [], problems
    finally:
        page.close()


def test_the_edit_form_comes_from_the_catalogue_and_viewers_cannot_edit(edit_server: LiveServer) -> None:
    editor = api_token(edit_server, "editor")
    doc = _get(edit_server, editor, "/view/edit-form/segments").json()
    fields = {f["name"]: f for f in doc["fields"]}
    assert fields["size"]["required"] and fields["size"]["columns"] == ["size_text"]
    assert fields["pressure"]["columns"] == ["pressure_mpa", "voltage_kv"] and fields["pressure"]["unit"] == "MPa / kV"
    assert {o["value"] for o in fields["status"]["options"]} == {"active", "abandoned", "planned", "proposed"}
    assert [f["name"] for f in doc["add"] if f["required"]] == ["size"]
    # burial is an open code list: the known codes are offered with their names, not enforced
    burial = {o["value"]: o["zh"] for o in fields["burial"]["suggestions"]}
    assert burial["ZM"] == "直埋" and fields["burial"]["options"] is None
    nodes = _get(edit_server, editor, "/view/edit-form/nodes").json()
    assert {f["name"] for f in nodes["add"] if f["required"]} == {"id", "utility", "ground_z"}
    assert _get(edit_server, editor, "/view/edit-form/pipes").status_code in (400, 422)
    assert _get(edit_server, api_token(edit_server, "viewer"), "/view/edit-form/nodes").status_code == 403
