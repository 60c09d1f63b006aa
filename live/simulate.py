"""Plausible readings for the demo (``twin sensors simulate``), with a burst scenario.

Every registered sensor reads around a level of its kind (pressure 0.35 MPa, flow 120 m³/h,
level 1.2 m, gas 0 %LEL, cover 0 = closed, valve position 100 %) with a little noise, once
per ``1 / rate`` seconds, published at QoS 1 as the sensors would. With ``burst``, a main bursts
a third of the way in, between the first two pressure sensors (by id): pressure falls within
seconds (5 s), by up to 0.25 MPa near the burst and less further off (e^(-d/400 m)), flows rise; two
thirds in, a crew opens a manhole cover. The run stops by itself after ``duration`` seconds.

:func:`register_demo_sensors` puts a handful of sensors on the network: four pressure sensors
(two either side of a central water main, two far off), a flow meter, a sewer level, a gas
detector and a manhole cover, where the twin has such networks.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa

from live.readings import TOPIC_PREFIX
from live.sensors import SensorSpec, Who, add_sensors, list_sensors
from live.subscriber import mqtt_client
from twin.errors import ConfigError, InputError, NotFound
from twin.settings import TwinSettings

__all__ = ["simulate", "register_demo_sensors", "LEVELS"]

#: Normal level and noise of each kind.
LEVELS = {"pressure": (0.35, 0.003), "flow": (120.0, 2.0), "level": (1.2, 0.02), "gas": (0.0, 0.2),
          "cover": (0.0, 0.0), "valve_position": (100.0, 0.0)}


def _node(conn: sa.Connection, sql: str, **params: object) -> str | None:
    row = conn.execute(sa.text(sql), params).first()
    return None if row is None else str(row[0])


def _demo_positions(conn: sa.Connection) -> list[SensorSpec]:
    centre = "(SELECT ST_Centroid(ST_Collect(geom)) FROM current_node WHERE utility = 'JS')"
    main = conn.execute(sa.text(
        f"SELECT id, from_node, to_node FROM current_segment WHERE utility = 'JS' AND status = 'active' "
        f"ORDER BY geom <-> {centre}, id LIMIT 1")).first()
    if main is None:
        raise NotFound("the twin has no water pipes to put demo sensors on",
                       zh="孪生库中没有可放置演示传感器的给水管线")
    near = ("SELECT n.id FROM current_node n, current_node a WHERE a.id = :a AND n.utility = 'JS' "
            "AND ST_Distance(n.geom, a.geom) BETWEEN 120 AND 400 ORDER BY ST_Distance(n.geom, a.geom), n.id LIMIT 1")
    far = (f"SELECT id FROM current_node WHERE utility = 'JS' ORDER BY ST_Distance(geom, {centre}) DESC, id "
           "LIMIT 1 OFFSET :k")
    specs = [SensorSpec("SIM-P1", "pressure", "MPa", node=main.from_node, low=0.15, rate=0.05, stale_s=600),
             SensorSpec("SIM-P2", "pressure", "MPa", node=_node(conn, near, a=main.to_node) or main.to_node,
                        low=0.15, rate=0.05, stale_s=600),
             SensorSpec("SIM-P3", "pressure", "MPa", node=_node(conn, far, k=0), low=0.15, rate=0.05, stale_s=600),
             SensorSpec("SIM-P4", "pressure", "MPa", node=_node(conn, far, k=5), low=0.15, rate=0.05, stale_s=600),
             SensorSpec("SIM-F1", "flow", "m3/h", pipe=main.id, high=200.0, stale_s=600)]
    sewer = _node(conn, "SELECT id FROM current_node WHERE utility IN ('WS', 'YS', 'PS') ORDER BY id LIMIT 1")
    if sewer:
        specs += [SensorSpec("SIM-L1", "level", "m", node=sewer, high=2.5, stale_s=600),
                  SensorSpec("SIM-C1", "cover", "open", node=sewer)]
    gas = _node(conn, "SELECT id FROM current_node WHERE utility = 'RQ' ORDER BY id LIMIT 1")
    if gas:
        specs.append(SensorSpec("SIM-G1", "gas", "%LEL", node=gas, high=20.0, stale_s=600))
    return [s for s in specs if s.node or s.pipe]


def register_demo_sensors(engine: sa.Engine, who: Who) -> list[dict]:
    """Register the demo's sensors (those already there are left as they are)."""
    with engine.connect() as conn:
        specs = _demo_positions(conn)
        taken = set(conn.execute(sa.text("SELECT id FROM sensor")).scalars())
    specs = [s for s in specs if s.id not in taken]
    return add_sensors(engine, specs, who, action="demo sensors added") if specs else []


def _burst_effect(sensors: list[dict]) -> np.ndarray:
    """How much of the burst each sensor feels (1 at the burst, e^(-d/400 m) away from it)."""
    pressure = [s for s in sensors if s["kind"] == "pressure" and s["x"] is not None]
    if len(pressure) < 2:
        return np.ones(len(sensors))
    bx = (pressure[0]["x"] + pressure[1]["x"]) / 2
    by = (pressure[0]["y"] + pressure[1]["y"]) / 2
    d = np.array([math.hypot((s["x"] or bx) - bx, (s["y"] or by) - by) for s in sensors])
    return np.exp(-d / 400.0)


def readings_at(sensors: list[dict], elapsed_s: float, duration_s: float, burst: bool,
                effect: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each sensor's value ``elapsed_s`` into the run."""
    level = np.array([LEVELS[s["kind"]][0] for s in sensors])
    noise = np.array([LEVELS[s["kind"]][1] for s in sensors]) * rng.standard_normal(len(sensors))
    kind = np.array([s["kind"] for s in sensors])
    value = level + noise
    if burst:
        fall_s = min(5.0, duration_s / 6)  # the fall takes 5 s (less in a short run)
        onset = np.clip((elapsed_s - duration_s / 3) / fall_s, 0.0, 1.0)
        value = np.where(kind == "pressure", value - 0.25 * effect * onset, value)
        value = np.where(kind == "flow", value * (1 + 0.8 * effect * onset), value)
        value = np.where((kind == "cover") & (elapsed_s >= 2 * duration_s / 3), 1.0, value)
    return np.where(kind == "gas", np.maximum(value, 0.0), value)


def simulate(settings: TwinSettings, engine: sa.Engine, *, duration_s: float = 60.0, rate_hz: float = 1.0,
             burst: bool = False, url: str | None = None, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> dict:
    """Publish readings of every registered sensor for ``duration_s`` (bounded), see the module."""
    if not 0 < duration_s <= 86_400 or not 0 < rate_hz <= 100:
        raise InputError("duration is between 0 and 86400 s, rate between 0 and 100 readings/s per sensor",
                         zh="duration 时长取 0 到 86400 秒，rate 每个传感器每秒 0 到 100 个读数")
    sensors = list_sensors(engine)
    if not sensors:
        raise InputError("no sensors are registered: add some, or run with --register",
                         zh="没有已注册的传感器：请先添加，或加 --register 运行")
    effect = _burst_effect(sensors)
    rng = np.random.default_rng(seed)
    client, host, port = mqtt_client(settings, url=url)
    client.max_inflight_messages_set(1000)
    if client.connect(host, port, keepalive=30) != 0:
        raise ConfigError(f"cannot connect to the MQTT broker at {host}:{port}",
                          zh=f"无法连接到 MQTT 消息代理 {host}:{port}")
    client.loop_start()
    published, last = 0, None
    start = time.monotonic()
    try:
        step = 0
        while (elapsed := step / rate_hz) < duration_s:
            delay = start + elapsed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = dt.datetime.now(dt.UTC).isoformat()
            for s, v in zip(sensors, readings_at(sensors, elapsed, duration_s, burst, effect, rng).tolist(),
                            strict=True):
                last = client.publish(TOPIC_PREFIX + s["id"], json.dumps({"t": t, "v": round(v, 4)}), qos=1)
                published += 1
            if progress is not None and step % max(1, int(rate_hz * 5)) == 0:
                progress(f"{elapsed:.0f}/{duration_s:g} s, {published} readings published")
            step += 1
        if last is not None:
            last.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()
    return {"sensors": len(sensors), "published": published, "duration_s": round(time.monotonic() - start, 2),
            "burst": burst}
