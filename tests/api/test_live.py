"""Sensors, alarms and the live event stream over HTTP, with a real broker and a real server.

One module twin (the small network) behind `twin serve` on loopback, whose subscriber reads
a private Mosquitto (:class:`live.broker.Broker` in a temporary folder, named to the server by
``TWIN_MQTT_URL``). A reading published with paho at QoS 1 goes broker -> subscriber ->
PostgreSQL -> NOTIFY -> the server's SSE stream; the tests read that stream with httpx as the
viewer does (fetch with the Authorization header).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from api.live_hub import QUEUE_SIZE, STREAMS_PER_USER, LiveHub, Stream, sse_events
from live.broker import Broker, mqtt_target
from tests.api.conftest import ROOT, LiveServer, free_port, make_twin, password, server_env
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.settings import TwinSettings

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/mosquitto").exists(), reason="needs Debian's mosquitto")

#: A sensor on a node of the small network (tests/data/small) and one on a pipe.
NODE, PIPE = "JS2", "JS1-JS2"


@dataclass
class Live:
    settings: TwinSettings
    server: LiveServer
    broker: Broker
    tokens: dict[str, str]

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def get(self, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return httpx.get(self.server.url + path, headers=self.h(role), timeout=30, **kw)

    def post(self, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return httpx.post(self.server.url + path, headers=self.h(role), timeout=30, **kw)


def _start(settings: TwinSettings, env: dict[str, str], log: Path) -> LiveServer:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "twin"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return LiveServer(url, proc, log)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no server within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live_api")
    settings = make_twin("test_api_live", tmp, data="small")
    # Mosquitto runs as its own system user when started by root: its folder must be reachable,
    # and pytest's temporary folders are not (0700).
    folder = Path(tempfile.mkdtemp(prefix="pipetwin-live-api-"))
    folder.chmod(0o711)
    broker = Broker(root=folder / "mqtt", secrets=folder / "secrets")
    broker.start()
    env = {**server_env(settings), "TWIN_MQTT_URL": broker.url, "TWIN_LIVE_SUBSCRIBER": "true"}
    server = _start(settings, env, tmp / "server.log")
    try:
        tokens = {}
        for role in ("viewer", "editor", "admin"):
            r = httpx.post(server.url + "/token", data={"username": role, "password": password(role)}, timeout=30)
            tokens[role] = r.json()["access_token"]
        yield Live(settings, server, broker, tokens)
    finally:
        server.stop()
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
        drop_schema(settings)


class Events:
    """An SSE client on a thread (http.client: closing it ends the connection at once, so the
    server sees the client go): the events it read, as (name, data, when read)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.seen: list[tuple[str, dict, float]] = []
        self._cond = threading.Condition()
        where = httpx.URL(url)
        self._conn = http.client.HTTPConnection(where.host, where.port, timeout=60)
        self._conn.request("GET", where.raw_path.decode(), headers={**headers, "Accept": "text/event-stream"})
        response = self._conn.getresponse()
        self.status, self.content_type = response.status, response.getheader("content-type", "")
        self._thread = threading.Thread(target=self._read, args=(response,), daemon=True)
        if self.status == 200:
            self._thread.start()

    def _read(self, response: http.client.HTTPResponse) -> None:
        name, data = "message", []
        try:
            while line := response.readline():
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    with self._cond:
                        self.seen.append((name, json.loads("\n".join(data)), time.perf_counter()))
                        self._cond.notify_all()
                    name, data = "message", []
        except Exception:  # noqa: BLE001 - closed by close(), mid-chunk
            pass

    def wait_for(self, name: str, match=lambda d: True, timeout: float = 10.0) -> tuple[dict, float]:
        """The first event of that name matching, read so far or within ``timeout``."""
        def found():
            return next(((d, at) for n, d, at in self.seen if n == name and match(d)), None)

        with self._cond:
            if not self._cond.wait_for(found, timeout):
                raise AssertionError(f"no {name} event within {timeout} s; read {[n for n, *_ in self.seen]}")
            return found()

    def close(self) -> None:
        if self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        if self._thread.is_alive():
            self._thread.join(5)


def publish(broker: Broker, sensor: str, value: float, t: dt.datetime | None = None) -> float:
    """Publish one reading at QoS 1 (waits for the broker's PUBACK); returns when it was sent."""
    target = mqtt_target(broker.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(target.user, target.password)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        t = t or dt.datetime.now(dt.UTC)
        sent = time.perf_counter()
        info = client.publish(f"pipetwin/readings/{sensor}", json.dumps({"t": t.isoformat(), "v": value}), qos=1)
        info.wait_for_publish(10)
        return sent
    finally:
        client.loop_stop()
        client.disconnect()


def wait_subscribed(live: Live, timeout: float = 30.0) -> None:
    """Until the server's subscriber has subscribed (it connects in the background; the broker
    logs each subscription as ``<client id> <qos> <topic>``)."""
    target = mqtt_target(live.broker.url)
    deadline = time.monotonic() + timeout
    subscribed = f"pipetwin-{live.settings.db_schema} 1 pipetwin/readings/+"
    while time.monotonic() < deadline:
        if subscribed in live.broker.log_file.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"the subscriber did not subscribe at {target.host}:{target.port}: "
                         f"{live.broker.log_file.read_text(errors='replace')[-1500:]}\n"
                         f"server: {live.server.log.read_text(errors='replace')[-1500:]}")


# -- sign-in and roles -------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [
    ("GET", "/sensors"), ("POST", "/sensors"), ("GET", "/sensors/BP-1"), ("GET", "/sensors/BP-1/readings"),
    ("GET", "/alarms"), ("GET", "/alarms/burst"), ("POST", "/alarms/1/acknowledge"), ("POST", "/alarms/1/close"),
    ("GET", "/live/events"),
])
def test_every_live_route_needs_sign_in(live: Live, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = httpx.request(method, live.server.url + path, headers=headers, timeout=10)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["code"] == "UNAUTHORIZED"


def test_sensors_are_registered_by_editors_and_read_by_all(live: Live) -> None:
    body = {"id": "BP-N1", "kind": "pressure", "unit": "MPa", "node": NODE, "low": 0.15, "rate": 0.05}
    assert live.post("/sensors", "viewer", json=body).status_code == 403
    r = live.post("/sensors", "editor", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith("/sensors/BP-N1")
    assert r.json()["node"] == NODE and r.json()["low"] == 0.15
    # Where it is: on its node, in lon/lat for the viewer
    assert -180 <= r.json()["lon"] <= 180 and -90 <= r.json()["lat"] <= 90
    assert live.post("/sensors", "editor", json=body).status_code == 409
    bad = [({**body, "id": "X1", "node": "NO-SUCH"}, 404), ({**body, "id": "X2", "kind": "colour"}, 422),
           ({**body, "id": "X3", "pipe": PIPE}, 400), ({**body, "id": "X4", "extra": 1}, 422),
           ({**body, "id": "X5", "low": 2.0, "high": 1.0}, 400)]
    for doc, status in bad:
        r = live.post("/sensors", "editor", json=doc)
        assert r.status_code == status, (doc, r.text)
    r = live.post("/sensors", "editor", json={"id": "FL-P1", "kind": "flow", "unit": "m3/h", "pipe": PIPE})
    assert r.status_code == 201, r.text
    ids = [s["id"] for s in live.get("/sensors").json()["sensors"]]
    assert {"BP-N1", "FL-P1"} <= set(ids) and not {"X1", "X2", "X3", "X4", "X5"} & set(ids)
    assert live.get("/sensors/FL-P1").json()["pipe"] == PIPE
    assert live.get("/sensors/NOPE").status_code == 404
    assert live.get("/sensors/NOPE/readings").status_code == 404
    audit = live.get("/admin/audit", "admin", params={"feature": "BP-N1"}).json()["entries"]
    assert [(e["user_name"], e["path"]) for e in audit] == [("editor", "/sensors")]


# -- the stream ---------------------------------------------------------------------------------------
def test_a_reading_published_to_the_broker_reaches_a_signed_in_stream(live: Live) -> None:
    wait_subscribed(live)
    events = Events(live.server.url + "/live/events", live.h("viewer"))
    try:
        assert events.status == 200 and events.content_type.startswith("text/event-stream")
        hello, _ = events.wait_for("hello")
        assert hello == {"user": "viewer"}
        t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        publish(live.broker, "BP-N1", 0.32, t0)
        readings, _ = events.wait_for("readings", lambda d: "BP-N1" in d["sensors"])
        assert readings["sensors"]["BP-N1"]["v"] == 0.32
        assert readings["schema"] == live.settings.db_schema
        # Below the low threshold: an alarm, located on the sensor's node, pushed to the stream.
        sent = publish(live.broker, "BP-N1", 0.10, t0 + dt.timedelta(seconds=20))
        alarm, arrived = events.wait_for("alarm", lambda d: d["alarm"]["sensor"] == "BP-N1"
                                         and d["alarm"]["cause"] == "low")
        assert arrived - sent < 1.0, f"alarm after {arrived - sent:.3f} s"
        assert alarm["alarm"]["node"] == NODE and alarm["alarm"]["state"] == "open"
        # ... and a drop (0.22 MPa in 20 s: faster than 0.05 a minute), critical.
        drop, _ = events.wait_for("alarm", lambda d: d["alarm"]["cause"] == "drop")
        assert drop["alarm"]["severity"] == "critical"
    finally:
        events.close()
    series = live.get("/sensors/BP-N1/readings", params={"since": t0.isoformat()}).json()
    assert series["v"] == [0.32, 0.10] and series["unit"] == "MPa"
    assert live.get("/sensors/BP-N1").json()["last_v"] == 0.10


def test_alarms_are_acknowledged_then_closed_by_editors(live: Live) -> None:
    alarms = live.get("/alarms", params={"state": "open", "sensor": "BP-N1"}).json()["alarms"]
    low = next(a for a in alarms if a["cause"] == "low")
    path = f"/alarms/{low['id']}"
    assert live.post(path + "/acknowledge", "viewer").status_code == 403
    assert live.post(path + "/close", "editor").status_code == 409  # open: acknowledge first
    events = Events(live.server.url + "/live/events", live.h("viewer"))
    try:
        r = live.post(path + "/acknowledge", "editor", json={"note": "巡检人员已派出 crew sent"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "editor"
        # Every open stream hears of it.
        pushed, _ = events.wait_for("alarm", lambda d: d["alarm"]["id"] == low["id"])
        assert pushed["alarm"]["state"] == "acknowledged"
    finally:
        events.close()
    assert live.post(path + "/acknowledge", "editor").status_code == 409
    assert live.post(path + "/close", "editor").json()["state"] == "closed"
    assert live.post(path + "/close", "editor").status_code == 409
    assert live.post("/alarms/999999/acknowledge", "editor").status_code == 404
    assert live.get("/alarms/999999").status_code == 404
    assert live.get("/alarms", params={"state": "closed"}).json()["alarms"][0]["id"] == low["id"]
    assert live.get("/alarms", params={"state": "resolved"}).status_code == 422
    actions = [e["action"] for e in live.get("/admin/audit", "admin", params={"feature": str(low["id"])}).json()["entries"]]
    assert actions == ["alarm closed", "alarm acknowledged"]


def test_streams_per_user_are_capped(live: Live) -> None:
    streams = [Events(live.server.url + "/live/events", live.h("editor")) for _ in range(STREAMS_PER_USER)]
    try:
        assert all(s.status == 200 for s in streams)
        r = live.get("/live/events", "editor")
        assert r.status_code == 429 and r.json()["code"] == "TOO_BUSY" and "retry-after" in r.headers
        # Another user is not held back by it.
        other = Events(live.server.url + "/live/events", live.h("admin"))
        assert other.status == 200
        other.close()
    finally:
        for s in streams:
            s.close()


def test_another_twins_events_stay_out(live: Live) -> None:
    """Events carry their twin's schema: a server streams its own twin's only."""
    engine = open_twin(live.settings)
    events = Events(live.server.url + "/live/events", live.h("viewer"))
    try:
        events.wait_for("hello")
        with engine.begin() as conn:
            for schema, v in (("some_other_twin", 1.0), (live.settings.db_schema, 2.0)):
                payload = {"type": "readings", "schema": schema, "sensors": {"BP-N1": {"t": "x", "v": v}}}
                conn.execute(sa.text("SELECT pg_notify('twin_live', :p)"), {"p": json.dumps(payload)})
        got, _ = events.wait_for("readings")
        assert got["sensors"]["BP-N1"]["v"] == 2.0
    finally:
        events.close()
        engine.dispose()


def test_the_server_stops_at_once_with_streams_open(live: Live) -> None:
    """uvicorn waits for open answers before it stops: the streams end on SIGTERM. (Last: it stops
    the module's server.)"""
    events = Events(live.server.url + "/live/events", live.h("viewer"))
    try:
        events.wait_for("hello")
        t0 = time.monotonic()
        live.server.process.terminate()
        live.server.process.wait(8)
        assert time.monotonic() - t0 < 3
        assert live.server.process.returncode in (0, -15)  # uvicorn raises the signal again once stopped
        events.wait_for("dropped")  # the client is told, and reconnects
    finally:
        events.close()


def test_a_client_that_lags_is_dropped_not_the_server() -> None:
    """A stream whose queue is full is ended (its client reconnects); nothing more is queued."""
    async def run() -> list:
        stream = Stream("slow", asyncio.get_running_loop())
        for i in range(QUEUE_SIZE + 50):
            stream.put(f"event {i}")
        assert stream.dropped and stream.queue.qsize() == QUEUE_SIZE + 1
        hub = LiveHub(None, "twin")  # type: ignore[arg-type] - no listening in this test
        return [text async for text in sse_events(hub, stream, heartbeat_s=5)]

    # A loop of its own on a thread of its own: the browser tests' Playwright (sync API) keeps an
    # event loop running on this worker's main thread once a browser test has run.
    with ThreadPoolExecutor(1) as pool:
        texts = pool.submit(asyncio.run, run()).result(timeout=60)
    assert texts[0].startswith("retry: 2000\nevent: hello")
    assert texts[1:QUEUE_SIZE + 1] == [f"event {i}" for i in range(QUEUE_SIZE)]
    assert texts[-1].startswith("event: dropped") and len(texts) == QUEUE_SIZE + 2
