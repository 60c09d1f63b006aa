"""The viewer in Chinese first, with an English switch remembered for each user (issue 22).

After sign-in the page is zh-CN and no visible text of the top bar, the layers and the details
panel (a pipe's record and history included) is English only; the 中/EN switch turns it into
English, is stored on the server (GET /me reads it back) and survives a reload that forgets the
browser's own memory. Panels open at the switch follow it at once: the details, the shutoff, the
statistics and the proposal panels keep no text of the language before (the data's own names
aside). A screenshot in each language goes to test-artifacts/viewer/.
"""

from __future__ import annotations

import re

import httpx
import pytest
import sqlalchemy as sa

from api.auth import add_user
from tests.api.conftest import LiveServer
from tests.viewer.conftest import ARTIFACTS, Watch
from twin.db import open_twin
from twin.settings import TwinSettings

TIMEOUT_MS = 60_000
USER, PASSWORD = "linguist", "linguist-password"
#: Words that are the same in both languages: names, units, formats, codes of the survey.
ALLOWED = {"pipetwin", "png", "pdf", "bcf", "csv", "km", "mm", "mpa", "kv", "en", "natural", "earth", "dn",
           "twin", "analyze", "scan", USER}
CJK = re.compile(r"[\u3400-\u9fff]")
WORD = re.compile(r"[A-Za-z]{2,}")
#: The visible text nodes (with their parent's role) of the bar, the layers and the panel.
VISIBLE_TEXT = """() => {
  const out = [];
  for (const root of document.querySelectorAll('#bar, #layers, #panel')) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const t = n.textContent.trim();
      const p = n.parentElement;
      if (!t || !p || !p.getClientRects().length || getComputedStyle(p).visibility === 'hidden') continue;
      if (p.closest('[data-role=feature-id], #user-name, #user-role, code')) continue;
      out.push([t, p.closest('tr, li, p, h3, label, button, section')?.outerHTML.slice(0, 300) || p.tagName]);
    }
  }
  return out;
}"""


SIGN_IN_PAGE = """() => [document.documentElement.lang, document.querySelector('#signin-form button').textContent,
  document.querySelector('label[for=signin-user]').textContent]"""
RECORD_SHOWN = "() => document.querySelector('[data-role=record]') && document.querySelector('[data-role=history]')"
#: The text state of the page; the 3D view's render loop paused (its last frame stays on screen):
#: software WebGL would hold every screenshot and click up for seconds.
STATE = """() => {
  window.twinViewer.world.widget.useDefaultRenderLoop = false;
  document.body.classList.add('layers-open');
  const visible = """ + VISIBLE_TEXT + """;
  const text = (sel) => document.querySelector(sel)?.innerText || '';
  return { lang: document.documentElement.lang, select: text('#tools button[data-tool=inspect]'),
    switch: text('#lang-toggle'), signout: text('#sign-out'), tools: text('#tools'), layers: text('#layers'),
    record: text('[data-role=record]'), history: text('[data-role=history]'), texts: visible() };
}"""


def english_only(texts: list[list[str]], ids: set[str]) -> list[list[str]]:
    """Texts without a Chinese character that still hold a word beyond ids, codes and units
    (each with where it is)."""
    bad = []
    for t, where in texts:
        if CJK.search(t):
            continue
        words = [w for w in WORD.findall(t) if w.lower() not in ALLOWED and w not in ids and not w.isupper()]
        if words:
            bad.append([t, where])
    return bad


@pytest.fixture(scope="module")
def linguist(viewer_twin: TwinSettings) -> str:
    """A user of its own (an admin: it sees every panel): the switch changes only their language."""
    engine = open_twin(viewer_twin)
    with engine.begin() as conn:
        if conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": USER}).first() is None:
            add_user(conn, USER, "admin", PASSWORD, by="tests")  # every panel: edit, approve
    engine.dispose()
    return USER


#: The visible texts of the details panel (title included).
PANEL_TEXT = """() => {
  const out = [];
  for (const root of document.querySelectorAll('#panel')) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const t = n.textContent.trim();
      const p = n.parentElement;
      if (!t || !p || !p.getClientRects().length || getComputedStyle(p).visibility === 'hidden') continue;
      if (p.closest('[data-role=feature-id], code, svg, .drawing')) continue;
      out.push([t, p.closest('tr, li, p, h2, h3, label, button, section')?.outerHTML.slice(0, 300) || p.tagName]);
    }
  }
  return out;
}"""


def strings(doc) -> set[str]:
    """Every string value of an API answer: the data's own names (roads, customers, owners)."""
    if isinstance(doc, str):
        return {doc}
    if isinstance(doc, dict):
        return set().union(*(strings(v) for v in doc.values())) if doc else set()
    if isinstance(doc, list):
        return set().union(*(strings(v) for v in doc)) if doc else set()
    return set()


def chinese_left(texts: list[list[str]], data: set[str]) -> list[list[str]]:
    """Texts that still hold Chinese once the data's own names are taken out."""
    names = sorted((d for d in data if CJK.search(d)), key=len, reverse=True)
    bad = []
    for t, where in texts:
        rest = t
        for d in names:
            rest = rest.replace(d, "")
        if CJK.search(rest):
            bad.append([t, where])
    return bad


def _switch(page, lang: str) -> None:
    """The 中/EN switch, waiting for the server to store it."""
    with page.expect_response(lambda r: r.url.endswith("/me/preferences") and r.request.method == "PUT") as put:
        page.click("#lang-toggle")
    assert put.value.status == 200 and page.evaluate("document.documentElement.lang") == lang


def _panels_follow_the_switch(page, server: LiveServer, token: str, ids: set[str]) -> None:
    """Shutoff (opened in English, switched to Chinese), statistics (Chinese to English) and the
    proposal form (English to Chinese and back): no text of the language before is left."""
    auth = {"Authorization": f"Bearer {token}"}
    water = httpx.get(server.url + "/collections/pipes/items", params={"limit": 20, "utility": "JS"},
                      headers=auth, timeout=30).json()["features"]
    pipe = str(water[-1]["id"])
    shut = httpx.post(server.url + "/processes/shutoff/execution", json={"inputs": {"pipe": pipe}},
                      headers=auth, timeout=60).json()
    data = strings(shut) | {pipe}
    page.evaluate("(p) => window.twinViewer.shutoff(p)", pipe)
    page.wait_for_selector("[data-role=shutoff-summary]", timeout=TIMEOUT_MS)
    assert "valve" in page.inner_text("[data-role=shutoff-summary]")
    _switch(page, "zh-CN")
    assert "阀门" in page.inner_text("[data-role=shutoff-summary]")
    assert english_only(page.evaluate(PANEL_TEXT), ids | data | {w for d in data for w in WORD.findall(d)}) == []

    page.evaluate("window.twinViewer.stats.open()")
    page.wait_for_selector("[data-role=stats-total]", timeout=TIMEOUT_MS)
    stats = {s for by in ("utility", "material", "decade", "owner", "status") for s in strings(httpx.get(
        server.url + "/stats", params={"by": by}, headers=auth, timeout=30).json())}
    _switch(page, "en")
    assert "Total" in page.inner_text("[data-role=stats-total]")
    assert chinese_left(page.evaluate(PANEL_TEXT), stats) == []

    page.evaluate("window.twinViewer.activate('proposal')")
    page.wait_for_selector("[data-role=crs-hint]", timeout=TIMEOUT_MS)
    page.fill("#proposal-name", "my pipe 新管")
    _switch(page, "zh-CN")
    assert "坐标" in page.inner_text("[data-role=crs-hint]")
    assert page.input_value("#proposal-name") == "my pipe 新管"  # what was typed stays
    crs = {"X", "Y", "GeoJSON", "CJJ", "CSV", "XLSX", "CRS84", "LineString", "Polygon", "utility", "size",
           "depth_m", "northing", "easting", "point", "segment", "EPSG"}
    # stored proposals (other tests' too) are listed by the names people gave them
    named = strings(httpx.get(server.url + "/proposals", headers=auth, timeout=30).json())
    named |= {w for d in named for w in WORD.findall(d)}
    assert english_only(page.evaluate(PANEL_TEXT), ids | crs | named) == []
    _switch(page, "en")
    assert chinese_left(page.evaluate(PANEL_TEXT), {"X=北", "Y=东", "点", "段"}) == []
    page.evaluate("window.twinViewer.activate('inspect')")


def _more_panels_follow_the_switch(page, server: LiveServer, token: str, pipe: dict, ids: set[str]) -> None:
    """The edit panel (English to Chinese), a finding's detail (back to English), the measured
    depth (to Chinese, its label on the map too), distance (to English) and the shutdown plan form
    (to Chinese and back) follow the switch at once: what was typed and the panel's scroll
    position stay, no text of the language before is left."""
    auth = {"Authorization": f"Bearer {token}"}
    pid = str(pipe["id"])
    material = "[data-role=attribute-form] input[name=material]"
    page.evaluate("([id]) => window.twinViewer.edit.select('segments', id)", [pid])
    page.wait_for_selector(material, timeout=TIMEOUT_MS)
    assert page.inner_text("#panel-title") == "Edit" and "Select" in page.inner_text("[data-role=edit-status]")
    page.fill(material, "PE 新材")
    top = page.evaluate("(() => { const p = document.querySelector('#panel'); p.scrollTop = 90; return p.scrollTop; })()")
    assert top > 0  # the form is longer than the panel
    _switch(page, "zh-CN")
    assert page.inner_text("#panel-title") == "数据编辑" and "选择要素" in page.inner_text("[data-role=edit-status]")
    assert page.input_value(material) == "PE 新材"
    assert page.evaluate("document.querySelector('#panel').scrollTop") == top
    record = strings(httpx.get(f"{server.url}/features/segments/{pid}", headers=auth, timeout=30).json())
    assert english_only(page.evaluate(PANEL_TEXT), ids | record | {w for d in record for w in WORD.findall(d)}) == []
    page.screenshot(path=str(ARTIFACTS / "language-edit-zh.png"))
    page.evaluate("window.twinViewer.activate('inspect')")

    finding = {"key": "zh-en-1", "status": "new", "verdict": "uncertain", "kind": "vertical", "a_id": pid,
               "b_id": pid, "utility_pair": "JS-RQ", "road": None, "measured_m": 0.12, "required_m": 0.15,
               "uncertainty_m": 0.05}
    page.evaluate("(f) => window.twinViewer.findings.zoomTo(f)", finding)
    page.wait_for_selector("[data-role=finding-note]", timeout=TIMEOUT_MS)  # moves: the page is an admin's
    assert "给水–燃气" in page.inner_text("[data-role=finding-summary]")
    page.fill("[data-role=finding-note]", "现场已核实 checked")
    _switch(page, "en")
    summary = page.inner_text("[data-role=finding-summary]")
    assert "measured" in summary and "water supply–gas" in summary, summary
    assert page.input_value("[data-role=finding-note]") == "现场已核实 checked"
    assert chinese_left(page.evaluate(PANEL_TEXT), set()) == []

    # the depth of a point on the pipe (en -> zh): the panel and the label on the map follow
    lon, lat, *h = pipe["geometry"]["coordinates"][0]
    label = "window.twinViewer.measure.measureState().depthLabel.label.text.getValue()"
    depth = page.evaluate("""([lon, lat, h]) => window.twinViewer.measure.measureDepth(
      Cesium.Cartesian3.fromDegrees(lon, lat, h), { id: 'P', utility: 'JS', size: 'DN300', depth_m: 1.5 })""",
                          [lon, lat, h[0] if h else 30.0])
    assert depth["ground_z"] is not None and "below ground" in page.evaluate(label)
    _switch(page, "zh-CN")
    assert "该处地面高程" in page.inner_text("#panel-body") and page.evaluate(label).startswith("埋深 ")
    assert english_only(page.evaluate(PANEL_TEXT), {"DN300"}) == []
    # the distance (zh -> en)
    page.evaluate("""() => { const C = Cesium.Cartesian3;
      window.twinViewer.measure.measureDistance(C.fromDegrees(117.0, 36.0, 30), C.fromDegrees(117.0003, 36.0, 31)); }""")
    assert "空间距离" in page.inner_text("#panel-body")
    _switch(page, "en")
    assert "Distance (3D)" in page.inner_text("#panel-body") and page.inner_text("#panel-title") == "Measure distance"
    assert chinese_left(page.evaluate(PANEL_TEXT), set()) == []
    page.evaluate("window.twinViewer.measure.clear()")

    # the shutdown plan form (en -> zh), then back to English
    page.evaluate("(p) => window.twinViewer.shutdowns.planForm(p)", pid)
    form = "[data-role=shutdown-plan]"
    page.fill(f"{form} input[name=reason]", "爆管抢修 burst repair")
    page.fill(f"{form} input[name=start]", "2026-12-05T08:00")
    _switch(page, "zh-CN")
    assert page.inner_text("#panel-title") == f"计划关阀：{pid}"
    assert (page.input_value(f"{form} input[name=reason]"), page.input_value(f"{form} input[name=start]")) == (
        "爆管抢修 burst repair", "2026-12-05T08:00")
    assert english_only(page.evaluate(PANEL_TEXT), set()) == []
    page.screenshot(path=str(ARTIFACTS / "language-plan-zh.png"))
    _switch(page, "en")
    assert page.inner_text("#panel-title") == f"Plan a shutdown of {pid}"


def _me(server: LiveServer, token: str) -> dict:
    return httpx.get(server.url + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()


def test_chinese_first_then_english_remembered_for_the_user(browser, viewer_server: LiveServer,
                                                          linguist: str) -> None:
    r = httpx.post(viewer_server.url + "/token", data={"username": linguist, "password": PASSWORD}, timeout=30)
    token = r.json()["access_token"]
    pipe = httpx.get(viewer_server.url + "/collections/pipes/items", params={"limit": 1, "utility": "JS"},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["features"][0]
    ids = {str(pipe["id"]), *(str(v) for v in pipe["properties"].values() if isinstance(v, str))}
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    watch = Watch(viewer_server.url)
    watch.attach(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Few calls into the page: each waits for a frame of the software-rendered 3D view.
    try:
        page.goto(viewer_server.url + "/")
        assert page.evaluate(SIGN_IN_PAGE) == ["zh-CN", "登录", "用户名"]
        page.fill("#signin-user", linguist)
        page.fill("#signin-password", PASSWORD)
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("[data-role=utilities] li", timeout=TIMEOUT_MS)
        page.evaluate("([id]) => window.twinViewer.showFeature('pipe', id)", [str(pipe["id"])])
        page.wait_for_function(RECORD_SHOWN, timeout=TIMEOUT_MS)
        zh = page.evaluate(STATE)
        assert (zh["lang"], zh["select"], zh["switch"]) == ("zh-CN", "选择", "EN")
        assert "管线类别" in zh["record"] and "给水" in zh["record"], zh["record"]  # labels, codes spelled out
        assert "新建" in zh["history"]
        assert len(zh["texts"]) > 30
        assert english_only(zh["texts"], ids) == []
        page.screenshot(path=str(ARTIFACTS / "language-zh.png"))

        with page.expect_response(lambda r: r.url.endswith("/me/preferences") and r.request.method == "PUT") as put:
            page.click("#lang-toggle")
        assert put.value.status == 200
        en = page.evaluate(STATE)
        assert (en["lang"], en["select"], en["switch"]) == ("en", "Select", "中")
        assert "utilities" in en["layers"].lower()
        assert _me(viewer_server, token)["lang"] == "en"
        # the details panel open at the switch follows it (the record's own values aside)
        record = httpx.get(f"{viewer_server.url}/collections/pipes/items/{pipe['id']}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        history = httpx.get(f"{viewer_server.url}/features/segments/{pipe['id']}/history",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        assert "utility" in en["record"] and "water supply" in en["record"], en["record"]
        assert chinese_left(page.evaluate(PANEL_TEXT), strings(record) | strings(history)) == []
        _panels_follow_the_switch(page, viewer_server, token, ids)
        _more_panels_follow_the_switch(page, viewer_server, token, pipe, ids)

        # The server remembers it, not only this browser.
        page.evaluate("localStorage.clear()")
        page.reload()
        page.wait_for_selector("[data-role=utilities] li", timeout=TIMEOUT_MS)
        page.evaluate("([id]) => window.twinViewer.showFeature('pipe', id)", [str(pipe["id"])])
        page.wait_for_function(RECORD_SHOWN, timeout=TIMEOUT_MS)
        en = page.evaluate(STATE)
        assert (en["lang"], en["select"], en["signout"]) == ("en", "Select", "Sign out")
        assert "utility" in en["record"] and "water supply" in en["record"], en["record"]
        assert not CJK.search(en["tools"]), en["tools"]
        page.screenshot(path=str(ARTIFACTS / "language-en.png"))
        # the reload ends the event stream of the page before: not a problem
        # and the roads request still under way
        assert [p for p in watch.problems() if not p.endswith("net::ERR_ABORTED")] == []
    finally:
        page.close()
        httpx.put(viewer_server.url + "/me/preferences", json={"lang": "zh-CN"},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
