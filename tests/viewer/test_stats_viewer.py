"""Statistics and thematic maps (统计, 专题图) in the viewer: the charts show `GET /stats`'s numbers,
a click on a bar filters the 3D view (the tile features' own `show`), 显示全部 resets, the
age-against-service-life and owner colour modes colour the features, and the view with its
legend is exported as a PNG of the map canvas's size."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from tests.api.conftest import LiveServer
from tests.viewer.conftest import ARTIFACTS, Watch, api_token, sign_in_page

TIMEOUT_MS = 90_000
CHARTS = ("utility", "material", "decade", "owner", "status")

#: The pipe features drawn now: how many are shown, and the distinct values (of `prop`, the
#: decade derived from `built`) and colours of those shown.
FEATURES_JS = """(prop) => {
  const out = { shown: 0, hidden: 0, values: {}, colours: {} };
  const value = (f) => {
    if (prop !== 'decade') return String(f.getProperty(prop) ?? '');
    const m = String(f.getProperty('built') ?? '').match(/(1[89]\\d\\d|20\\d\\d)/);
    return m ? `${Math.floor(Number(m[1]) / 10) * 10}s` : '';
  };
  // The tiles drawn in the last frame (the style is applied to those; others keep an old one).
  for (const t of window.twinViewer.world.tileset._selectedTiles) {
    const c = t.content;
    if (!c || !c.featuresLength) continue;
    for (let i = 0; i < c.featuresLength; i += 1) {
      const f = c.getFeature(i);
      if (f.getProperty('kind') !== undefined) continue;
      if (!f.show) { out.hidden += 1; continue; }
      out.shown += 1;
      out.values[value(f)] = (out.values[value(f)] || 0) + 1;
      const css = f.color.toCssHexString().slice(0, 7).toLowerCase();
      out.colours[css] = (out.colours[css] || 0) + 1;
    }
  }
  return out;
}"""


def _features(page, prop: str, until: str = "true", arg: object = None) -> dict:
    """The drawn features once ``until`` (JS over ``r``, the features, and ``arg``) holds: a
    restyle reaches the features over the next frames (software WebGL: seconds)."""
    page.evaluate(f"window.__features = {FEATURES_JS}")
    page.wait_for_function(f"([p, arg]) => {{ const r = window.__features(p); return {until}; }}", arg=[prop, arg],
                           timeout=20_000, polling=200)
    return page.evaluate(FEATURES_JS, prop)


ONE_VALUE = "Object.keys(r.values).length === 1 && r.values[arg] > 0"
IN_LEGEND = "Object.keys(r.colours).every((c) => arg.includes(c))"


def _legend_colours(page) -> list[str]:
    """The swatch colours of the layers panel's legend, as #rrggbb."""
    return page.evaluate("""[...document.querySelectorAll('[data-role=legend] .swatch')]
        .map(s => { const c = getComputedStyle(s).backgroundColor.match(/\\d+/g).slice(0, 3);
                    return '#' + c.map(v => Number(v).toString(16).padStart(2, '0')).join(''); })""")


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_statistics_charts_filter_the_view_and_thematic_maps_export(browser, viewer_server: LiveServer) -> None:
    token = api_token(viewer_server, "viewer")
    want = {by: httpx.get(f"{viewer_server.url}/stats", params={"by": by}, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}).json()["rows"] for by in CHARTS}
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    watch = Watch(viewer_server.url)
    watch.attach(page)
    try:
        sign_in_page(page, viewer_server, "viewer")
        page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
        page.wait_for_function("window.twinViewer.tilesLoaded()", timeout=TIMEOUT_MS)
        everything = _features(page, "material", "r.shown > 0")
        assert everything["hidden"] == 0 and everything["shown"] > 0

        # The charts: one bar per /stats row, its length in km.
        page.click("#stats-toggle")
        page.wait_for_selector(".stats-chart[data-by=status] canvas", timeout=TIMEOUT_MS)
        charts = page.evaluate("window.twinViewer.stats.state()")["charts"]
        for by in CHARTS:
            got = dict(zip(charts[by]["values"], charts[by]["km"], strict=True))
            assert got == {(r[by] or ""): r["length_km"] for r in want[by]}, by
        assert "统计" in page.inner_text("#panel-title")
        assert any("在用" in label for label in charts["status"]["labels"])
        _shot(page, "30-statistics-charts")

        # A click on the longest material's bar: only pipes of that material are drawn.
        page.locator(".stats-chart[data-by=material] canvas").first.scroll_into_view_if_needed()
        material = charts["material"]["values"][0]
        x, y = page.evaluate("window.twinViewer.stats.barAt('material', 0)")
        page.mouse.click(x, y)
        assert page.evaluate("window.twinViewer.display.only") == {"property": "material", "values": [material]}
        seen = _features(page, "material", ONE_VALUE, material)
        assert set(seen["values"]) == {material} and 0 < seen["shown"] < everything["shown"], seen
        assert "只显示" in page.inner_text("[data-role=stats-filter]")
        _shot(page, "31-statistics-material-filter")

        # A decade from its table row's button (keyboard reachable), then a utility's bar.
        decade = next(v for v in charts["decade"]["values"] if v)
        page.locator(f".stats-chart[data-by=decade] tr[data-value='{decade}'] [data-role=stats-only]").dispatch_event("click")
        assert set(_features(page, "decade", ONE_VALUE, decade)["values"]) == {decade}
        page.locator(".stats-chart[data-by=utility] canvas").first.scroll_into_view_if_needed()
        utility = charts["utility"]["values"][0]
        x, y = page.evaluate("window.twinViewer.stats.barAt('utility', 0)")
        page.mouse.click(x, y)
        assert page.evaluate("window.twinViewer.display.only") is None
        hidden = page.evaluate("[...window.twinViewer.display.hiddenUtilities]")
        assert utility not in hidden and len(hidden) >= 4
        assert set(_features(page, "utility", ONE_VALUE, utility)["values"]) == {utility}

        # 显示全部 Show all: everything again.
        page.click("[data-role=stats-show-all]")
        assert page.evaluate("window.twinViewer.display.only") is None
        assert page.evaluate("window.twinViewer.display.hiddenUtilities.size") == 0
        assert _features(page, "material", "r.hidden === 0")["shown"] == everything["shown"]

        # Thematic maps: age against service life, then owner; colours from the legend. (At
        # 1280×800 the layers fold while the statistics are open: the map keeps 800 px.)
        if not page.evaluate("document.body.classList.contains('layers-open')"):
            page.click("#toggle-layers")
        page.click("[data-colour=age]")
        page.wait_for_function("window.twinViewer.display.colourBy === 'age'")
        legend = page.inner_text("[data-role=legend]")
        assert "使用年限" in legend and "超期" in legend
        swatches = _legend_colours(page)
        aged = _features(page, "built", IN_LEGEND, swatches)
        assert set(aged["colours"]) <= set(swatches) and len(aged["colours"]) >= 2, (aged["colours"], swatches)
        _shot(page, "32-thematic-age")
        page.click("[data-colour=owner]")
        page.wait_for_function("window.twinViewer.display.colourBy === 'owner'")
        top = sorted((r for r in want["owner"] if r["owner"]), key=lambda r: -r["length_km"])
        swatches = _legend_colours(page)
        owners = _features(page, "owner", IN_LEGEND, swatches)
        assert len(owners["colours"]) >= min(2, len(top)) and set(owners["colours"]) != set(aged["colours"])
        assert (top[0]["owner"] if top else "权属不详") in page.inner_text("[data-role=legend]")

        # The view and its legend as one PNG of the map canvas's size, not blank.
        size = page.evaluate("[window.twinViewer.world.scene.canvas.width, window.twinViewer.world.scene.canvas.height]")
        url = page.evaluate("window.twinViewer.stats.exportPng()")
        assert url.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert image.format == "PNG" and list(image.size) == size
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # pipes, ground, legend: many colours
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        image.save(ARTIFACTS / "33-exported-view.png")
        with page.expect_download() as download:
            page.click("[data-role=export-png]")
        assert download.value.suggested_filename.endswith(".png")
        assert watch.problems() == []
    finally:
        page.close()
