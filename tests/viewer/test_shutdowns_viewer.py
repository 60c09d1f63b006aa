"""The shutdown panel (关阀方案) on a phone: a crew moves a planned shutdown on and ticks a valve
closed; the page shows what the API holds."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import LiveServer
from tests.viewer.conftest import Watch, api_post, api_token, sign_in_page
from twin.db import open_twin
from twin.settings import TwinSettings

PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def planned(viewer_twin: TwinSettings, viewer_server: LiveServer) -> tuple[int, str]:
    """A shutdown planned through the API on a water pipe with a valve: (id, token)."""
    engine = open_twin(viewer_twin)
    with engine.connect() as conn:
        pipe = conn.execute(sa.text("SELECT segment_id FROM current_valve WHERE utility = 'JS' AND operable "
                                    "ORDER BY id LIMIT 1")).scalar()
    engine.dispose()
    token = api_token(viewer_server, "editor")
    r = api_post(viewer_server, token, "/shutdowns", {"pipe": pipe, "start": "2030-05-01T08:00+08:00",
                                                      "end": "2030-05-01T12:00+08:00", "reason": "viewer test"})
    assert r.status_code == 201, r.text
    return r.json()["id"], token


def test_a_crew_moves_a_shutdown_on_and_ticks_a_valve_on_a_phone(browser, viewer_server: LiveServer,
                                                                   planned) -> None:
    sid, token = planned
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    try:
        sign_in_page(page, viewer_server, "editor")
        page.wait_for_function("!document.querySelector('#app').hidden", timeout=TIMEOUT_MS)
        page.click("#shutdowns-toggle")
        row = f"[data-role=shutdown-list] tr[data-shutdown='{sid}']"
        page.wait_for_selector(row, timeout=TIMEOUT_MS)
        assert page.inner_text(f"{row} [data-status]") == "计划"
        page.click(row)
        for move, status in (("notify", "notified"), ("execute", "executing")):
            page.click(f"[data-role=shutdown-moves] button[data-move={move}]")
            page.wait_for_selector(f"[data-role=shutdown-summary][data-status={status}]", timeout=TIMEOUT_MS)
        first = page.eval_on_selector_all("[data-role=valve-checklist] tbody tr",
                                          "rows => rows.map(r => r.dataset.valve)")[0]
        page.click(f"[data-role=valve-checklist] tr[data-valve='{first}'] button[data-action=closed]")
        page.wait_for_selector(f"[data-role=valve-checklist] tr[data-valve='{first}'][data-state=closed]",
                               timeout=TIMEOUT_MS)
        api = httpx.get(f"{viewer_server.url}/shutdowns/{sid}", headers={"Authorization": f"Bearer {token}"},
                        timeout=30).json()
        assert api["status"] == "executing"
        assert {v["id"]: v["state"] for v in api["valves"]}[first] == "closed"
        shown = page.eval_on_selector_all("[data-role=valve-checklist] tbody tr",
                                          "rows => rows.map(r => [r.dataset.valve, r.dataset.state])")
        assert shown == [[v["id"], v["state"]] for v in api["valves"]]
        assert [e["by"] for e in api["events"]][-1] == "editor"
        assert watch.problems() == []
    finally:
        context.close()
