"""The criticality map (关阀影响): toggled from the layers panel, it colours the pipes of the worst
segments by customers cut off, exactly as `GET /criticality` stores them, with a Chinese legend;
and the thematic map 关阀影响 colours every assessed pipe by its class (`GET
/view/theme/criticality`), the others grey 未评估 not assessed."""

from __future__ import annotations

import httpx

from analysis.criticality import ensure_current
from tests.api.conftest import LiveServer
from tests.viewer.conftest import Watch, api_token, sign_in_page, theme_in_the_browser
from twin.db import open_twin
from twin.settings import TwinSettings

TIMEOUT_MS = 90_000


def test_criticality_map_colours_the_worst_segments(browser, viewer_twin: TwinSettings,
                                                    viewer_server: LiveServer) -> None:
    engine = open_twin(viewer_twin)
    ensure_current(engine)
    engine.dispose()
    token = api_token(viewer_server, "viewer")
    stored = httpx.get(f"{viewer_server.url}/criticality", params={"top": 500},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    watch = Watch(viewer_server.url)
    watch.attach(page)
    try:
        sign_in_page(page, viewer_server, "viewer")
        page.wait_for_selector("[data-role=criticality-toggle]", timeout=TIMEOUT_MS)
        page.check("[data-role=criticality-toggle]")
        page.wait_for_selector("[data-role=criticality-legend]", timeout=TIMEOUT_MS)
        assert "户" in page.inner_text("[data-role=criticality-legend]")
        assert "关阀影响" in page.inner_text("#criticality-layer")
        shown = page.evaluate("() => window.twinViewer.criticality.state().result.segments")
        assert [s["segment"] for s in shown] == [s["segment"] for s in stored["segments"]]
        marks = page.evaluate("() => [...window.twinViewer.display.marks.keys()]")
        assert sorted(marks) == sorted(p for s in stored["segments"] for p in s["pipes"])
        page.uncheck("[data-role=criticality-toggle]")
        assert page.evaluate("() => window.twinViewer.display.marks.size") == 0
        # the thematic map: every pipe by its class, drainage and cables grey (not assessed)
        theme = httpx.get(f"{viewer_server.url}/view/theme/criticality",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        assert theme["state"]["computed"] and theme["none"]["zh"] == "未评估"
        assert sum(theme["counts"]) == len(theme["features"]) >= len(marks)
        page.wait_for_function("window.twinViewer.ready", timeout=TIMEOUT_MS)
        theme_in_the_browser(page, "criticality", theme, none="未评估")
        assert watch.problems() == []
    finally:
        page.close()
