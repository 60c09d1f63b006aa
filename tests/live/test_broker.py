"""The private broker and the subscriber, with a real Mosquitto started by the module.

Publish -> stored -> alarm (told on ``NOTIFY twin_live``) -> acknowledged; malformed payloads
counted; the broker restarted under a running subscriber, and readings published while the
subscriber was down, all stored once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from live.alarms import acknowledge_alarm, list_alarms
from live.broker import Broker, mqtt_target
from live.cli import broker_app
from live.events import CHANNEL
from live.sensors import SensorSpec, Who, add_sensors
from live.simulate import register_demo_sensors, simulate
from live.subscriber import Subscriber, mqtt_client
from twin.db import make_engine
from twin.pgcluster import local_cluster

WHO = Who("tester", "editor", "POST", "/tests")


def wait_for(check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return check()


def stored(engine: sa.Engine, sensor: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM reading WHERE sensor_id = :s"), {"s": sensor}).scalar()


def publisher(settings, broker: Broker) -> mqtt.Client:
    client, host, port = mqtt_client(settings, url=broker.url)
    assert client.connect(host, port) == 0
    client.loop_start()
    return client


def publish(client: mqtt.Client, sensor: str, values, start: dt.datetime, step_s: float = 1.0) -> None:
    info = None
    for i, v in enumerate(values):
        t = (start + dt.timedelta(seconds=i * step_s)).isoformat()
        info = client.publish(f"pipetwin/readings/{sensor}", json.dumps({"t": t, "v": v}), qos=1)
    info.wait_for_publish(10)


@pytest.fixture(scope="module")
def sensors(main_twin):
    add_sensors(main_twin, [SensorSpec("P1", "pressure", "MPa", node="W4", low=0.15, rate=0.05),
                            SensorSpec("P2", "pressure", "MPa", node="W5", low=0.15, rate=0.05),
                            SensorSpec("Q1", "pressure", "MPa", node="W2")], WHO)
    return main_twin


def test_broker_is_private(broker, twin_settings):
    assert broker.running()
    conf = broker.conf.read_text()
    assert f"listener {broker.port} 127.0.0.1" in conf and "allow_anonymous false" in conf
    for path in (broker.conf, broker.passwd, broker.password_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(broker.root).st_mode) == 0o700
    target = mqtt_target(broker.url)
    assert (target.host, target.port, target.user) == ("127.0.0.1", broker.port, "twin")
    for user, password in (("twin", "wrong"), (None, None)):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if user:
            client.username_pw_set(user, password)
        refused = []
        client.on_connect = lambda c, u, f, rc, p: refused.append(rc.is_failure)  # noqa: B023
        client.connect(target.host, target.port)
        client.loop(2)
        assert refused == [True]
    assert broker.start() is False  # idempotent


def test_broker_commands():
    data = Path(tempfile.mkdtemp(prefix="pipetwin-cli-"))  # pytest's folders are root's alone
    data.chmod(0o711)
    env = {"TWIN_DATA_DIR": str(data)}
    run = CliRunner().invoke
    try:
        assert run(broker_app, ["start"], env=env).exit_code == 0
        assert run(broker_app, ["status"], env=env).exit_code == 0
        url = run(broker_app, ["url"], env=env).stdout.strip()
        assert url.startswith("mqtt://twin:") and "@127.0.0.1:" in url
        assert run(broker_app, ["stop"], env=env).exit_code == 0
        assert run(broker_app, ["status"], env=env).exit_code == 1
    finally:
        run(broker_app, ["stop"], env=env)
        shutil.rmtree(data, ignore_errors=True)


def listen(settings) -> psycopg.Connection:
    url = make_engine(settings).url
    conn = psycopg.connect(host=url.host, port=url.port, user=url.username,
                           password=url.password or _password(settings, url.username), dbname=url.database,
                           autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def _password(settings, user):
    return local_cluster(settings).password(user)


def events(conn: psycopg.Connection, kind: str, schema: str, timeout_s: float = 5.0) -> list[dict]:
    """The first event of ``kind`` about the twin in ``schema``: the channel is the database's, so
    a test module on another worker (tests/live/test_alarms.py) may announce its own meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        for note in conn.notifies(timeout=left, stop_after=1):
            body = json.loads(note.payload)
            if body["type"] == kind and body.get("schema") == schema:
                return [body]
    return []


def test_publish_store_alarm_acknowledge(broker, sensors, twin_settings):
    engine = sensors
    listener = listen(twin_settings)
    client = publisher(twin_settings, broker)
    now = dt.datetime.now(dt.UTC)
    with Subscriber(twin_settings, engine, url=broker.url, client_id="test-subscriber") as sub:
        assert sub.wait_connected()
        publish(client, "Q1", [0.3] * 5, now)
        assert wait_for(lambda: stored(engine, "Q1") == 5)
        published = time.monotonic()
        publish(client, "P1", [0.35, 0.12], now, step_s=20)
        alarm_events = events(listener, "alarm", twin_settings.db_schema)
        latency = time.monotonic() - published
        assert wait_for(lambda: stored(engine, "P1") == 2)
    client.disconnect()
    assert alarm_events and alarm_events[0]["alarm"]["sensor"] == "P1"
    assert alarm_events[0]["schema"] == twin_settings.db_schema
    assert latency < 1.0, latency
    alarms = list_alarms(engine, state="open", sensor="P1")
    assert {a["cause"] for a in alarms} == {"low", "drop"}
    low = next(a for a in alarms if a["cause"] == "low")
    acknowledge_alarm(engine, low["id"], WHO)
    told = events(listener, "alarm", twin_settings.db_schema)
    assert told[0]["alarm"]["state"] == "acknowledged"
    listener.close()


def test_malformed_payloads_are_counted_and_skipped(broker, sensors, twin_settings):
    engine = sensors
    client = publisher(twin_settings, broker)
    bad = [("Q1", b"not json"), ("Q1", b"[1, 2]"), ("NOPE", b'{"t": "2026-12-03T10:00:00Z", "v": 1}'),
           ("Q1", b'{"t": "2026-12-03T10:00:00", "v": 1}'), ("Q1", b'{"t": "yesterday", "v": 1}'),
           ("Q1", b'{"t": "2026-12-03T10:00:00Z", "v": "1"}'), ("Q1", b'{"t": "2026-12-03T10:00:00Z", "v": NaN}'),
           ("Q1", b'{"t": "2026-12-03T10:00:00Z", "v": true}'), ("Q1", b"\xff\xfe")]
    before = stored(engine, "Q1")
    with Subscriber(twin_settings, engine, url=broker.url, client_id="test-malformed") as sub:
        assert sub.wait_connected()
        for sensor, payload in bad:
            client.publish(f"pipetwin/readings/{sensor}", payload, qos=1)
        publish(client, "Q1", [0.31], dt.datetime.now(dt.UTC))
        assert wait_for(lambda: stored(engine, "Q1") == before + 1)
        assert wait_for(lambda: sub.stats["received"] == len(bad) + 1)
    client.disconnect()
    assert sub.stats["invalid"] == len(bad)
    assert (sub.stats["invalid_bad_json"], sub.stats["invalid_unknown_sensor"], sub.stats["invalid_bad_time"],
            sub.stats["invalid_not_number"]) == (3, 1, 2, 3)


def test_broker_restart_loses_nothing_kept_at_qos1(broker, sensors, twin_settings):
    engine = sensors
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    sub = Subscriber(twin_settings, engine, url=broker.url, client_id="test-restart").start()
    assert sub.wait_connected()
    sub.stop()  # the session (and its subscription) stays on the broker
    client = publisher(twin_settings, broker)
    publish(client, "P2", [0.3] * 300, start)  # while the subscriber is down
    client.disconnect()
    broker.stop()
    assert broker.start()  # its persistence brings the queued readings back
    sub = Subscriber(twin_settings, engine, url=broker.url, client_id="test-restart").start()
    try:
        assert wait_for(lambda: stored(engine, "P2") == 300)
        broker.stop()  # under the running subscriber
        assert wait_for(lambda: not sub.connected.is_set())
        broker.start()
        assert sub.wait_connected(15), "the subscriber did not reconnect"
        client = publisher(twin_settings, broker)
        publish(client, "P2", [0.3] * 50, start + dt.timedelta(seconds=300))
        client.disconnect()
        assert wait_for(lambda: stored(engine, "P2") == 350)
    finally:
        sub.stop()
    assert sub.stats["connections"] >= 2


def test_simulator_registers_sensors_and_plays_a_burst(broker, sensors, twin_settings):
    engine = sensors
    added = register_demo_sensors(engine, WHO)
    assert {s["id"] for s in added} >= {"SIM-P1", "SIM-P2", "SIM-P3", "SIM-F1"}
    assert register_demo_sensors(engine, WHO) == []  # already there
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM reading")).scalar()
    with Subscriber(twin_settings, engine, url=broker.url, client_id="test-simulator") as sub:
        assert sub.wait_connected()
        result = simulate(twin_settings, engine, duration_s=2.0, rate_hz=4.0, burst=True, url=broker.url)
        assert result["published"] == result["sensors"] * 8
        assert wait_for(lambda: sub.stats["stored"] == result["published"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reading")).scalar() == before + result["published"]
    low = {a["sensor"] for a in list_alarms(engine, state="open") if a["cause"] == "low"}
    assert "SIM-P1" in low and "SIM-P3" not in low  # near the burst, not far off
