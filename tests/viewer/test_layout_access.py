"""Layout and access (布局与无障碍), the chips over the map, the first view and the thematic maps the
tiles lack, in the viewer at 1280×800 in zh-CN.

- Nothing hidden: the map keeps ≥ 800 px, the details panel is closed until something is shown
  (and opening it folds the layers), every tool button and the search box lie inside the
  window with an accessible name, the search placeholder fits its box.
- Keyboard: Tab reaches the tools, arrows move along them, Enter chooses, Esc leaves.
- Chips: a section cut and a thematic colouring each show a chip; its × takes them off.
- The first picture shows the district; its time after sign-in goes to test-artifacts.
- Pressure class and survey accuracy colour the pipes from GET /view/theme/{name}.
"""

from __future__ import annotations

import json
import time

import httpx

from tests.api.conftest import LiveServer, password
from tests.viewer.conftest import ARTIFACTS, Watch, api_token, theme_in_the_browser

TIMEOUT_MS = 90_000
SIZE = {"width": 1280, "height": 800}

#: Every visible button and text field of the app with its accessible name and its box.
CONTROLS_JS = """() => [...document.querySelectorAll('#app button, #app input, #app select')]
  .filter((e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden')
  .map((e) => {
    const r = e.getBoundingClientRect();
    const by = e.getAttribute('aria-labelledby');
    const name = (e.getAttribute('aria-label') || (by && document.getElementById(by)?.textContent)
      || (e.labels && e.labels[0] && e.labels[0].textContent) || (e.tagName === 'BUTTON' && e.textContent)
      || e.title || '').trim();
    return { id: e.id, tool: e.dataset.tool || null, name, left: r.left, right: r.right, top: r.top,
             bottom: r.bottom, inPanel: Boolean(e.closest('.panel')) };
  })"""

#: Whether the search placeholder fits the box (text width in the box's own font).
PLACEHOLDER_FITS_JS = """() => {
  const e = document.getElementById('search-input');
  const s = getComputedStyle(e);
  const c = document.createElement('canvas').getContext('2d');
  c.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  const room = e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
  return { text: e.placeholder, width: c.measureText(e.placeholder).width, room };
}"""


#: Times (ms) after the sign-in: first frame, district view, tileset ready, first tile, first pipes.
TIMING_JS = """(() => { const t = window.twinViewer.timing, s = window.__signInAt;
  const after = (v) => (v ? v - s : null);
  return { first_pipes_ms: after(t.firstPipesFrame), first_frame_ms: after(t.firstFrame),
           district_view_ms: after(t.districtView), tileset_ready_ms: after(t.tilesetReady),
           first_tile_ms: after(t.firstTileLoad),
           // the first tile content on the wire: asked for / arrived (the rest is the client's)
           first_tile_request_ms: (() => { const r = performance.getEntriesByType('resource')
             .find((e) => /[.](glb|b3dm)([?]|$)/.test(e.name)); return r ? [r.startTime - s, r.responseEnd - s] : null; })() };
})()"""


def _wide_map(page) -> float:
    return page.evaluate("document.getElementById('map').getBoundingClientRect().width")


def _tool(page) -> str:
    return page.evaluate("document.querySelector('#tools button[aria-pressed=true]')?.dataset.tool")


def _first_picture(page, server: LiveServer) -> dict:
    """Sign in; the first picture's times after the sign-in click go to test-artifacts."""
    page.goto(server.url + "/")
    page.wait_for_selector("#signin-form", state="visible")
    page.fill("#signin-user", "approver")
    page.fill("#signin-password", password("approver"))
    page.evaluate("window.__signInAt = performance.now()")
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("window.twinViewer && window.twinViewer.timing.firstPipesFrame", timeout=TIMEOUT_MS)
    timing = page.evaluate(TIMING_JS)
    page.wait_for_function("window.twinViewer.ready", timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layout-1280x800.png"))
    (ARTIFACTS / "first-picture.json").write_text(json.dumps(
        {"viewport": SIZE, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
         **{k: None if v is None else (round(v) if isinstance(v, float | int) else [round(x) for x in v])
            for k, v in timing.items()}}, indent=2))
    assert timing["first_pipes_ms"] > 0 and timing["first_frame_ms"] <= timing["first_pipes_ms"]
    # The camera looks at the district: its centre is on screen.
    frame = page.evaluate("window.twinViewer.world.frame")
    lon, lat = frame["centre"]
    h = frame["ground_z"]["mean"] + frame["geoid_offset_m"]
    at = page.evaluate("([a, b, c]) => window.twinViewer.toScreen(a, b, c)", [lon, lat, h])
    assert at is not None and 0 <= at[0] <= SIZE["width"] and 0 <= at[1] <= SIZE["height"], at
    return frame


def _overview_lines(page, server: LiveServer, auth: dict) -> list[dict]:
    """From afar every active pipe of the demo is also in a line of a minimum width (GET
    /view/overview: merged lines, bounded; the demo district fits whole)."""
    doc = httpx.get(f"{server.url}/view/overview", headers=auth, timeout=30).json()
    lines = doc["utilities"]
    status = httpx.get(f"{server.url}/stats", params={"by": "status"}, headers=auth, timeout=30).json()["rows"]
    active = next(r["segments"] for r in status if r["status"] == "active")
    assert doc["pipes"] == doc["active"] == active == sum(u["pipes"] for u in lines.values())
    assert all(len(u["positions"]) == 3 * u["offsets"][-1] for u in lines.values())
    page.wait_for_function("window.twinViewer.world.overview && window.twinViewer.world.overview.size > 0",
                           timeout=TIMEOUT_MS)
    drawn = page.evaluate("[...window.twinViewer.world.overview.values()].reduce((n, c) => n + c.length, 0)")
    assert drawn == sum(len(u["offsets"]) - 1 for u in lines.values())
    assert page.evaluate("[...window.twinViewer.world.overview.values()].every((c) => c.show)")
    return status


def _nothing_hidden(page) -> None:
    """At 1280×800 the map is wide, the details closed, every control inside and named."""
    assert page.evaluate("document.body.classList.contains('layers-open')")
    assert not page.evaluate("document.body.classList.contains('panel-open')")
    assert _wide_map(page) >= 800
    controls = page.evaluate(CONTROLS_JS)
    unnamed = [c for c in controls if not c["name"]]
    assert not unnamed, unnamed
    bar = [c for c in controls if not c["inPanel"]]  # the bar's: tools, search, toggles, user
    assert len([c for c in bar if c["tool"]]) >= 8 and any(c["id"] == "search-input" for c in bar)
    for c in bar:
        assert c["left"] >= 0 and c["right"] <= SIZE["width"] and c["top"] >= 0 and c["bottom"] <= SIZE["height"], c
    # the tool row shows every tool (no sideways scroll), bar buttons on one line
    row = page.evaluate("(() => { const t = document.getElementById('tools'); const r = t.getBoundingClientRect();"
                        " return { left: r.left, right: r.right, scroll: t.scrollWidth, client: t.clientWidth }; })()")
    assert row["scroll"] <= row["client"] + 1, row
    for c in bar:
        assert not c["tool"] or row["left"] - 1 <= c["left"] and c["right"] <= row["right"] + 1, (c, row)
    assert all(c["bottom"] - c["top"] <= 40 for c in bar), bar
    fit = page.evaluate(PLACEHOLDER_FITS_JS)
    assert fit["width"] <= fit["room"] + 0.5, fit


#: Every visible tool and bar button: its box, and whether its text is cut (wider than the box).
BAR_BUTTONS_JS = """() => [...document.querySelectorAll('#bar button, #bar input')]
  .filter((e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden')
  .map((e) => { const r = e.getBoundingClientRect();
    return { id: e.id || e.dataset.tool, text: e.textContent.trim(), left: r.left, right: r.right, top: r.top,
             bottom: r.bottom, cut: e.scrollWidth > e.clientWidth + 1,
             name: e.getAttribute('aria-label') || e.textContent.trim() || e.title }; })"""


def _english_bar(page) -> None:
    """In English (longer words) every tool and bar button is still whole and on screen at
    1280×800: the tool row wraps inside the bar, and the map starts below the bar."""
    for lang, label in (("en", "Select"), ("zh-CN", "选择")):
        page.click("#lang-toggle")
        page.wait_for_function("(l) => document.documentElement.lang === l", arg=lang)
        page.wait_for_function("(t) => document.querySelector('#tools [data-tool=inspect]').textContent === t", arg=label)
        # the bar's size observer moves the map below it (nothing of the map under the bar)
        page.wait_for_function("Math.abs(document.getElementById('map').getBoundingClientRect().top"
                               " - document.getElementById('bar').getBoundingClientRect().bottom) <= 1", timeout=10_000)
        buttons = page.evaluate(BAR_BUTTONS_JS)
        assert len([b for b in buttons if b["id"] in TOOL_IDS]) >= 10, buttons
        for b in buttons:
            assert 0 <= b["left"] and b["right"] <= SIZE["width"] and 0 <= b["top"] and b["bottom"] <= SIZE["height"], (lang, b)
            assert not b["cut"] and b["name"], (lang, b)
        bar = page.evaluate("document.getElementById('bar').getBoundingClientRect().bottom")
        assert all(b["bottom"] <= bar + 0.5 for b in buttons), (lang, bar)
        if lang == "en":
            page.screenshot(path=str(ARTIFACTS / "layout-1280x800-en.png"))


TOOL_IDS = {"inspect", "measure", "depth", "section", "profile", "shutoff", "hazards", "proposal", "history", "field",
            "edit"}


def _keyboard(page) -> None:
    """From the search box Tab reaches the first tool, arrows move, Enter chooses, Esc leaves."""
    page.focus("#search-input")
    for _ in range(3):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.tool"):
            break
    assert page.evaluate("document.activeElement.dataset.tool") == "inspect"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.tool") == "depth"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus shows
    page.keyboard.press("Enter")
    assert _tool(page) == "depth"
    page.keyboard.press("Escape")
    assert _tool(page) == "inspect"


def test_layout_keyboard_chips_first_view_and_themes(browser, viewer_server: LiveServer) -> None:
    context = browser.new_context(viewport=SIZE, locale="zh-CN")
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    frame = _first_picture(page, viewer_server)
    auth = {"Authorization": f"Bearer {api_token(viewer_server, 'approver')}"}
    status = _overview_lines(page, viewer_server, auth)
    _nothing_hidden(page)
    _english_bar(page)
    _nothing_hidden(page)  # and back in Chinese
    _keyboard(page)

    # Opening the details keeps the map wide (the layers fold); the form states CRS and axes.
    page.click("#tools button[data-tool=proposal]")
    page.wait_for_selector("#proposal-file", state="attached")
    assert page.evaluate("document.body.classList.contains('panel-open')") and _wide_map(page) >= 800
    crs = page.inner_text("[data-role=crs-hint]")
    assert frame["crs"] in crs and "X=北" in crs and "Y=东" in crs

    # A section cut shows a chip; its × takes the cut off the map.
    lon, lat, d = *frame["centre"], 0.0002
    page.evaluate("(line) => window.twinViewer.sectionLonLat(line)", [[lon - d, lat], [lon + d, lat]])
    page.wait_for_selector("#chips [data-chip=section]", timeout=TIMEOUT_MS)
    assert page.evaluate("window.twinViewer.clipping()")
    page.click("#chips [data-chip=section] .chip-close")
    assert not page.evaluate("window.twinViewer.clipping()")
    assert not page.query_selector("#chips [data-chip=section]")

    # Thematic maps the tiles lack, from their class maps; in the browser one of them (each
    # restyle is seconds of software WebGL).
    themes = {name: httpx.get(f"{viewer_server.url}/view/theme/{name}", headers=auth, timeout=30).json()
              for name in ("pressure", "accuracy")}
    for theme in themes.values():
        assert theme["features"] and sum(theme["counts"]) == len(theme["features"])
    assert len(themes["accuracy"]["features"]) == sum(r["segments"] for r in status)  # every pipe has one
    theme_in_the_browser(page, "accuracy", themes["accuracy"])
    assert not watch.problems(), watch.problems()
    context.close()
