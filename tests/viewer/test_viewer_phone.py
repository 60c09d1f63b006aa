"""The web viewer on a phone, and a session that has ended: pages of their own.

Split from test_viewer.py (same server, same browser) so that the desktop page of that module,
which renders all the time in software WebGL, is closed while these run, and so that the two
test workers can share the viewer's long steps.
"""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import LiveServer
from tests.viewer.conftest import ARTIFACTS, Watch, api_post, api_token
from tests.viewer.test_viewer import (
    DESKTOP,
    PHONE,
    TIMEOUT_MS,
    App,
    _isolated_water_mains,
    _sign_in,
)
from twin.settings import TwinSettings


@pytest.fixture(scope="module")
def burst_pipe(viewer_twin: TwinSettings,
               viewer_server: LiveServer) -> tuple[str, str, float, float, float]:
    """An isolated water main whose shutoff closes at least one valve (per the API)."""
    token = api_token(viewer_server, "approver")
    for row in _isolated_water_mains(viewer_twin):
        r = api_post(viewer_server, token, "/processes/shutoff/execution", {"inputs": {"pipe": row[0]}})
        assert r.status_code == 200, r.text
        if r.json()["valves"]:
            return row
    pytest.fail("the demo district has no isolated water main with valves around it")


def test_phone_screen_collapses_panels_and_a_tap_picks(browser, viewer_server: LiveServer, burst_pipe) -> None:
    pipe_id, _, x, y, z = burst_pipe
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    app = App(page, watch, viewer_server, "")
    try:
        _sign_in(page, viewer_server, "viewer")
        app.shot("13-phone-sign-in")
        page.tap("#signin-form button[type=submit]")
        page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
        app.settle()
        assert page.text_content("#user-role") == "viewer"
        # Both panels are off screen; the map takes the whole width.
        for panel in ("#layers", "#panel"):
            b = page.locator(panel).bounding_box()
            assert b["x"] + b["width"] <= 1 or b["x"] >= PHONE["width"] - 1 or b["y"] >= PHONE["height"] - 1, panel
        assert page.locator("#map canvas").bounding_box()["width"] == PHONE["width"]
        app.shot("14-phone-map")
        app.look_down_at(x, y, z)
        canvas = page.locator("#map canvas").bounding_box()
        page.tap("#map canvas", position={"x": canvas["width"] / 2, "y": canvas["height"] / 2})
        page.wait_for_selector(f"[data-role=feature-head][data-id='{pipe_id}']", timeout=TIMEOUT_MS)
        sheet = page.locator("#panel").bounding_box()
        assert sheet["y"] > PHONE["height"] * 0.3 and sheet["width"] == PHONE["width"]  # a bottom sheet
        app.shot("15-phone-pick")
        page.tap("#toggle-layers")
        # The drawer slides in (a CSS transition: frames are slow on a software renderer).
        page.wait_for_function("document.querySelector('#layers').getBoundingClientRect().x >= -1",
                               timeout=TIMEOUT_MS)
        assert "layers-open" in page.evaluate("document.body.className")
        assert "viewer (viewer)" in page.inner_text("[data-role=signed-in]")
        app.shot("16-phone-layers")
        app.assert_clean()
    finally:
        context.close()


def test_an_expired_session_returns_to_sign_in(browser, viewer_server: LiveServer) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    watch.allow(401, "/me")
    stale = json.dumps({"token": "not-a-token", "user": "viewer", "role": "viewer"})
    page.add_init_script(f"""if (!sessionStorage.getItem('seeded')) {{
        sessionStorage.setItem('seeded', '1'); sessionStorage.setItem('pipetwin.session', {json.dumps(stale)}); }}""")
    try:
        page.goto(viewer_server.url + "/")
        page.wait_for_selector("#signin-form", state="visible", timeout=TIMEOUT_MS)
        message = page.inner_text("#signin-error")  # the server's, Chinese first for a zh-CN browser
        assert "登录令牌无效" in message or "invalid token" in message, message
        assert page.evaluate("sessionStorage.getItem('pipetwin.session')") is None
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "17-session-ended.png"))
        assert watch.problems() == [], watch.problems()
    finally:
        context.close()
