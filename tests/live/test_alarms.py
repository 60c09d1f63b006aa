"""Sensors, alarms, the suspected burst and the closed-loop check, on the library (no broker).

Readings go through :meth:`live.subscriber.Subscriber.store`, the subscriber's own batch path,
without a broker; the network is the main of ``conftest.py``.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis.shutoff import shutoff
from live.alarms import RateWindow, check_stale, evaluate, list_alarms, suspected_burst, transition
from live.cli import alarms_app, sensors_app
from live.closed_loop import check_shutoff
from live.readings import drop_old_partitions, ensure_partitions, partitions, series
from live.sensors import SensorSpec, Who, add_sensors, list_sensors
from live.subscriber import Subscriber
from twin.audit import read as read_audit
from twin.errors import Conflict, InputError, NotFound

WHO = Who("tester", "editor", "POST", "/tests")
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


@pytest.fixture
def twin(main_twin):
    """The main with no sensors, alarms or readings."""
    with main_twin.begin() as conn:
        conn.execute(sa.text("DELETE FROM sensor"))
        conn.execute(sa.text("TRUNCATE reading"))
    return main_twin


def feed(sub: Subscriber, sensor: str, values: list[float], *, start: dt.datetime = T0, step_s: float = 10.0) -> None:
    """Readings of one sensor, ``step_s`` apart from ``start``, through the subscriber's batch path."""
    sub.store([(f"pipetwin/readings/{sensor}",
                json.dumps({"t": (start + dt.timedelta(seconds=i * step_s)).isoformat(), "v": v}).encode())
               for i, v in enumerate(values)])


def pressure(*ids_nodes: tuple[str, str], **kw) -> list[SensorSpec]:
    return [SensorSpec(i, "pressure", "MPa", node=n, low=0.1, rate=0.05, **kw) for i, n in ids_nodes]


# -- the rules, on arrays -------------------------------------------------------------------------
#   values every 10 s                      rules                    alarms
CASES = [
    ([0.35, 0.35, 0.35, 0.35],              {"low": 0.15},           []),
    ([0.35, 0.35, 0.12],                    {"low": 0.15},           ["low"]),
    ([0.35, 0.35, 0.40],                    {"high": 0.38},          ["high"]),
    ([0.35, 0.35, 0.35, 0.15],              {"rate": 0.05},          ["drop"]),  # 0.2 in 30 s
    ([0.35, 0.345, 0.34, 0.335],            {"rate": 0.05},          []),        # 0.03 a minute
    ([0.35, 0.10],                          {"rate": 0.05},          ["drop"]),  # 0.25 in 10 s
    ([0.15, 0.15, 0.35],                    {"rate": 0.05},          ["rise"]),
    ([0.0, 0.0, 1.0, 1.0],                  {"kind": "cover"},       ["cover_open"]),
]


@pytest.mark.parametrize(("values", "rule", "expected"), CASES)
def test_rules_of_one_sensor(values, rule, expected):
    rules = {"S": {"kind": "pressure", "low": None, "high": None, "rate": None, **rule}}
    t_us = np.arange(len(values), dtype=np.int64) * 10_000_000 + 1_700_000_000_000_000
    got = evaluate(rules, np.array(["S"] * len(values), dtype=object), t_us, np.array(values), RateWindow())
    assert sorted(c.cause for c in got) == expected


def test_rate_window_carries_over_batches():
    window, rules = RateWindow(), {"S": {"kind": "pressure", "low": None, "high": None, "rate": 0.05}}
    t = 1_700_000_000_000_000
    quick = np.array([t - 100_000_000, t - 98_000_000])  # 2 s apart: too close to tell a rate
    assert evaluate(rules, np.array(["S", "S"], dtype=object), quick, np.array([0.35, 0.1]), RateWindow()) == []
    for i in range(6):  # one reading a batch, 10 s apart: steady
        assert evaluate(rules, np.array(["S"], dtype=object), np.array([t + i * 10_000_000]), np.array([0.35]),
                        window) == []
    drop = evaluate(rules, np.array(["S"], dtype=object), np.array([t + 60_000_000]), np.array([0.2]), window)
    assert [c.cause for c in drop] == ["drop"]
    assert len(window.c) <= 14  # anchors, not every reading


# -- sensors ----------------------------------------------------------------------------------------
def test_sensors_add_import_list_with_the_cli(twin, twin_settings, tmp_path):
    env = {"TWIN_DB_SCHEMA": twin_settings.db_schema, "TWIN_USER": "operator"}
    run = CliRunner().invoke
    ok = run(sensors_app, ["add", "BP-1", "--kind", "pressure", "--unit", "MPa", "--node", "W4", "--low", "0.15"],
             env=env)
    assert ok.exit_code == 0, ok.output
    missing = run(sensors_app, ["add", "BP-2", "--kind", "pressure", "--unit", "MPa", "--node", "NOPE"], env=env)
    assert isinstance(missing.exception, NotFound)
    again = run(sensors_app, ["add", "BP-1", "--kind", "flow", "--unit", "m3/h", "--pipe", "W4-W5"], env=env)
    assert isinstance(again.exception, Conflict)
    table = tmp_path / "sensors.csv"
    table.write_text("编号,类型,单位,节点,管段,下限,上限,变化率,失联秒数\n"
                     "FL-1,flow,m3/h,,W4-W5,,300,,60\nCV-1,cover,open,W6,,,,,\n", encoding="utf-8")
    assert run(sensors_app, ["import", str(table)], env=env).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("id,kind,unit,node\nOK-1,gas,%LEL,W2\nBAD-1,smoke,ppm,W2\n")
    assert isinstance(run(sensors_app, ["import", str(bad)], env=env).exception, InputError)
    listed = json.loads(run(sensors_app, ["list", "--json"], env=env).stdout)
    assert [s["id"] for s in listed] == ["BP-1", "CV-1", "FL-1"]  # the bad table added nothing
    bp = listed[0]
    assert (bp["x"], bp["y"], bp["utility"]) == (easting_of("W4"), 4035000.0, "JS")
    assert 115 < bp["lon"] < 117 and 36 < bp["lat"] < 37
    assert listed[2]["x"] == pytest.approx((easting_of("W4") + easting_of("W5")) / 2)  # a pipe's middle
    with twin.connect() as conn:
        entries = read_audit(conn, user="operator")
    assert {e["action"] for e in entries} >= {"sensor added", "sensors imported"}
    with pytest.raises(InputError):
        add_sensors(twin, [SensorSpec("X-1", "pressure", "MPa", node="W2", pipe="W1-W2")], WHO)
    with pytest.raises(InputError):
        add_sensors(twin, [SensorSpec("X-1", "pressure", "MPa", node="W2", low=0.5, high=0.2)], WHO)


def easting_of(point: str) -> float:
    return 410000.0 + 50.0 * (int(point[1:]) - 1)


# -- a sensor registered a moment ago -----------------------------------------------------------
def test_first_readings_of_a_sensor_registered_a_moment_ago_are_kept(twin, twin_settings):
    sub = Subscriber(twin_settings, twin)
    feed(sub, "NEW", [0.30])  # not registered: counted, not stored; the sensors are read now
    assert sub.stats["invalid_unknown_sensor"] == 1
    add_sensors(twin, pressure(("NEW", "W4")), WHO)
    feed(sub, "NEW", [0.31, 0.32], start=T0 + dt.timedelta(seconds=5))  # at once, not 2 s later
    assert sub.stats["stored"] == 2
    assert series(twin, "NEW", since=T0)["v"] == [0.31, 0.32]


# -- alarms: life cycle, stale, no duplicates -------------------------------------------------------
def test_alarm_life_cycle_is_audited_and_one_per_cause(twin, twin_settings):
    add_sensors(twin, pressure(("P1", "W4")), WHO)
    sub = Subscriber(twin_settings, twin)
    feed(sub, "P1", [0.35, 0.08, 0.07])
    feed(sub, "P1", [0.06], start=T0 + dt.timedelta(seconds=40))
    low = [a for a in list_alarms(twin) if a["cause"] == "low"]
    assert len(low) == 1 and low[0]["value"] == 0.08 and low[0]["node"] == "W4" and low[0]["severity"] == "warning"
    # what the operator reads, Chinese first (issue 22)
    assert low[0]["message"].startswith("压力低于下限 pressure below the low threshold: 0.08")
    assert (low[0]["state_label"], low[0]["severity_label"]) == ("未确认 open", "警告 warning")
    run, env = CliRunner().invoke, {"TWIN_DB_SCHEMA": twin_settings.db_schema, "TWIN_USER": "duty-officer"}
    early = run(alarms_app, ["close", str(low[0]["id"])], env=env)
    assert isinstance(early.exception, Conflict) and "告警" in early.exception.message_zh
    assert run(alarms_app, ["ack", str(low[0]["id"])], env=env).exit_code == 0
    assert run(alarms_app, ["close", str(low[0]["id"]), "--note", "pump restarted"], env=env).exit_code == 0
    with pytest.raises(Conflict):
        transition(twin, low[0]["id"], "acknowledged", WHO)
    closed = json.loads(run(alarms_app, ["list", "--state", "closed", "--json"], env=env).stdout)
    assert [(a["id"], a["acknowledged_by"], a["closed_by"], a["note"]) for a in closed] == [
        (low[0]["id"], "duty-officer", "duty-officer", "pump restarted")]
    assert closed[0]["state_label"] == "已关闭 closed"
    with twin.connect() as conn:
        actions = [e["action"] for e in read_audit(conn, user="duty-officer")]
    assert actions == ["alarm closed", "alarm acknowledged"]
    feed(sub, "P1", [0.05], start=T0 + dt.timedelta(seconds=50))  # still low: a new alarm once closed
    assert len([a for a in list_alarms(twin, state="open") if a["cause"] == "low"]) == 1


def test_stale_sensors_and_old_partitions(twin, twin_settings):
    add_sensors(twin, pressure(("P1", "W4"), ("P2", "W5"), stale_s=60), WHO)
    sub = Subscriber(twin_settings, twin)
    feed(sub, "P1", [0.35], start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
    feed(sub, "P2", [0.35], start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=300))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert [a["sensor"] for a in check_stale(twin, now=later)] == ["P2"]
    assert check_stale(twin, now=later) == []  # one open alarm per sensor and cause
    with twin.begin() as conn:
        ensure_partitions(conn, [dt.date(2020, 1, 1), dt.date(2020, 1, 2)])
        names = partitions(conn)
    assert "reading_p20200101" in names and f"reading_p{dt.datetime.now(dt.UTC):%Y%m%d}" in names
    assert drop_old_partitions(twin, 90) == ["reading_p20200101", "reading_p20200102"]
    assert series(twin, "P1", since=T0, until=dt.datetime.now(dt.UTC))["v"] == [0.35]


# -- suspected burst and the closed-loop check ------------------------------------------------------
def test_two_pressure_drops_name_the_burst_segment_and_its_shutoff(twin, twin_settings):
    add_sensors(twin, pressure(("P1", "W4"), ("P2", "W5"), ("P0", "W2")), WHO)
    sub = Subscriber(twin_settings, twin)
    feed(sub, "P1", [0.35] * 7 + [0.15, 0.12])
    assert suspected_burst(twin) is None  # one drop is not a burst
    feed(sub, "P0", [0.35] * 9)
    feed(sub, "P2", [0.35] * 7 + [0.16, 0.13])
    burst = suspected_burst(twin, window_s=300)
    assert burst["sensors"] == ["P1", "P2"] and burst["pipe"] == "W4-W5"
    valves = [v["id"] for v in burst["shutoff"]["valves"]]
    assert sorted(valves) == ["W3", "W6"]
    assert burst["shutoff"]["isolated_pipes"] == ["W3-W4", "W4-W5", "W5-W6"]
    assert sub.stats["bursts"] == 1


def run_shutoff(twin, sub, inside_after: dict[str, float], outside_after: float) -> dict:
    """Readings 5 min before and 2 min after closing the valves at T0 + 10 min; then the check."""
    closed_at = T0 + dt.timedelta(minutes=10)
    before = closed_at - dt.timedelta(minutes=5)
    for sensor, after in [*inside_after.items(), ("P0", outside_after)]:
        feed(sub, sensor, [0.3] * 30, start=before)
        feed(sub, sensor, [after] * 12, start=closed_at + dt.timedelta(seconds=5))
    answer = shutoff(twin, pipe="W4-W5")
    return check_shutoff(twin, answer, closed_at=closed_at, now=closed_at + dt.timedelta(minutes=3))


def test_closed_loop_check(twin, twin_settings):
    add_sensors(twin, pressure(("P1", "W4"), ("P2", "W5"), ("P3", "W7"), ("P0", "W2")), WHO)
    sub = Subscriber(twin_settings, twin)
    held = run_shutoff(twin, sub, {"P1": 0.02, "P2": 0.03, "P3": 0.05}, 0.31)
    assert held["verdict"] == "held" and held["next_ring"] is None
    assert {s["sensor"]: s["inside"] for s in held["sensors"]} == {"P0": False, "P1": True, "P2": True, "P3": True}

    with twin.begin() as conn:
        conn.execute(sa.text("TRUNCATE reading"))
    passing = run_shutoff(twin, sub, {"P1": 0.05, "P2": 0.29, "P3": 0.28}, 0.31)
    assert passing["verdict"] == "valve_passing"
    assert passing["inside_holding"] == ["P2", "P3"]
    assert passing["passing_valve"]["id"] == "W6"  # nearest P2 (50 m) and P3
    ring = passing["next_ring"]
    assert sorted(v["id"] for v in ring["valves"]) == ["W3", "W8"]
    assert [f["id"] for f in ring["failed_valves"]] == ["W6"]

    with twin.begin() as conn:
        conn.execute(sa.text("TRUNCATE reading"))
    outside = run_shutoff(twin, sub, {"P1": 0.02, "P2": 0.02, "P3": 0.02}, 0.1)
    assert outside["verdict"] == "outside_falling" and outside["outside_falling"] == ["P0"]

    with twin.begin() as conn:
        conn.execute(sa.text("TRUNCATE reading"))
    nothing = check_shutoff(twin, shutoff(twin, pipe="W4-W5"), closed_at=T0, now=T0 + dt.timedelta(minutes=5))
    assert nothing["verdict"] == "no_data"
    with pytest.raises(InputError):
        check_shutoff(twin, shutoff(twin, pipe="W4-W5"), closed_at=T0.replace(tzinfo=None))
    assert list_sensors(twin, ["P0"])[0]["last_v"] == 0.1  # the last value stays when readings go
