"""Live readings and alarms in the viewer: markers, a red glowing pipe, the alarms panel, the chart.

The readings go through the subscriber's own pipeline (:meth:`live.subscriber.Subscriber.store`:
stored, checked, NOTIFY) in this process, without a broker (tests/api/test_live.py covers the
broker); the server streams them to the page, which signs in as an editor (who may acknowledge
and close). The sensors and alarms are removed at the end: the demo twin is shared.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from live.sensors import SensorSpec, Who, add_sensors, remove_sensor
from live.subscriber import Subscriber
from tests.api.conftest import LiveServer
from tests.viewer.conftest import ARTIFACTS, Watch, sign_in_page
from twin.db import open_twin
from twin.settings import TwinSettings

TIMEOUT_MS = 90_000
SENSOR, NODE_SENSOR = "LV-BP1", "LV-BP2"


@pytest.fixture(scope="module")
def sensors(viewer_twin: TwinSettings) -> Iterator[tuple[sa.Engine, str, str]]:
    """A pressure sensor on a water main and one on a water node; removed afterwards."""
    engine = open_twin(viewer_twin)
    with engine.connect() as conn:
        pipe = conn.execute(sa.text("SELECT id FROM current_segment WHERE utility = 'JS' AND diameter_mm >= 300 "
                                    "ORDER BY diameter_mm DESC, id LIMIT 1")).scalar()
        node = conn.execute(sa.text("SELECT id FROM current_node WHERE utility = 'JS' ORDER BY id LIMIT 1")).scalar()
    who = Who("tests")
    add_sensors(engine, [SensorSpec(SENSOR, "pressure", "MPa", pipe=pipe, low=0.15, high=0.8),
                         SensorSpec(NODE_SENSOR, "pressure", "MPa", node=node, low=0.15)], who)
    yield engine, pipe, node
    for sid in (SENSOR, NODE_SENSOR):
        remove_sensor(engine, sid, who)  # its alarms go with it
    engine.dispose()


def feed(subscriber: Subscriber, sensor: str, value: float, t: dt.datetime) -> None:
    """One reading as the broker would hand it over."""
    subscriber.store([(f"pipetwin/readings/{sensor}", json.dumps({"t": t.isoformat(), "v": value}).encode(),
                       0, 0, 0)])


@pytest.fixture(scope="module")
def page(browser, viewer_server: LiveServer, sensors) -> Iterator[tuple[object, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    sign_in_page(page, viewer_server, "editor")
    page.wait_for_function("window.twinViewer && window.twinViewer.ready", timeout=TIMEOUT_MS)
    page.wait_for_function("window.twinViewer.live.state().connected", timeout=TIMEOUT_MS)
    yield page, watch
    context.close()  # ends its live stream: the server can stop at once


def test_an_alarm_shows_in_the_panel_and_on_the_pipe_and_is_handled(page, viewer_twin, sensors) -> None:
    page, watch = page
    engine, pipe, node = sensors
    state = "window.twinViewer.live.state()"
    # Markers with no value yet, for both sensors.
    page.wait_for_function(f"{state}.sensors.filter((s) => s.drawn).length === 2", timeout=10_000)
    sub = Subscriber(viewer_twin, engine)
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    feed(sub, SENSOR, 0.42, t0)
    page.wait_for_function(f"{state}.sensors.find((s) => s.id === '{SENSOR}').v === 0.42", timeout=5_000)

    # Below the low threshold: the alarm reaches the page, the pipe is marked red and glows.
    feed(sub, SENSOR, 0.09, t0 + dt.timedelta(seconds=30))
    page.wait_for_function(f"{state}.alarms.some((a) => a.sensor === '{SENSOR}' && a.state === 'open')",
                           timeout=5_000)
    page.wait_for_function(f"{state}.glowing.includes('{pipe}')", timeout=5_000)
    live = page.evaluate(state)
    assert [a["at"] for a in live["alarms"]] == [pipe]
    assert pipe in live["marked"]
    assert page.inner_text("#alarm-count") == "1"
    # (dispatch_event: a click without waiting for steady frames, slow in software WebGL)
    page.dispatch_event("#live-toggle", "click")
    row = page.locator(f"[data-role=alarms] tr[data-state=open]:has-text('{SENSOR}')")
    row.wait_for(timeout=5_000)
    assert pipe in row.inner_text() and "低于下限" in row.inner_text()

    # The chart of the sensor, then a live reading added to it.
    page.dispatch_event(f"[data-role=sensors] tr[data-sensor='{SENSOR}'] button", "click")
    page.wait_for_function(f"{state}.chart && {state}.chart.points === 2", timeout=5_000)
    assert page.locator("#live-chart canvas").count() >= 1
    feed(sub, SENSOR, 0.08, t0 + dt.timedelta(seconds=60))
    page.wait_for_function(f"{state}.chart.points === 3", timeout=5_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-alarm-and-chart.png"))

    # 确认 then 关闭: audited by the API; the pipe is no longer marked.
    page.dispatch_event("[data-role=alarms] tr[data-state=open] button[data-action=acknowledge]", "click")
    page.wait_for_selector("[data-role=alarms] tr[data-state=acknowledged]", timeout=5_000)
    page.dispatch_event("[data-role=alarms] tr[data-state=acknowledged] button[data-action=close]", "click")
    page.wait_for_selector("[data-role=alarms-none]", timeout=5_000)
    page.wait_for_function(f"{state}.glowing.length === 0", timeout=5_000)
    live = page.evaluate(state)
    assert live["alarms"] == [] and pipe not in live["marked"] and live["glowing"] == []
    with engine.connect() as conn:
        steps = conn.execute(sa.text("SELECT state, acknowledged_by, closed_by FROM alarm WHERE sensor_id = :s"),
                             {"s": SENSOR}).all()
    assert [tuple(s) for s in steps] == [("closed", "editor", "editor")]
    problems = watch.problems()
    assert problems == [], problems
