"""Shutdowns as records (关阀方案): life cycle, the crew's checklist, notices, valve reliability,
and conflicts between shutdowns, on a small hand-built loop whose answers are worked out by hand.

The loop (water, one plant S; X northing, Y easting; valves are survey points between two pipes,
each on the first pipe by id at its own point)::

    S ── A ─V1── B ─V2── D ─V5── E ── C3 (hospital, critical)
         │      ├─ C1    │
         V3     └─ H1    │        H1: hydrant
         │               │
         C ─────V4───────┘
         └─ C2 (name "=cmd", to test spreadsheet-safe cells)

Segments: {S, A}, {B, C1, H1} (between V1 and V2), {C, C2} (between V3 and V4), {D} (between
V2, V4 and V5), {E, C3}. Isolating B alone or C alone keeps D fed through the other path;
isolating both at once cuts off D and E, hence the hospital: "more together".
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis.cli_shutdown import app
from analysis.shutdown import (
    customers_csv,
    get_shutdown,
    list_shutdowns,
    mark_valve,
    move_shutdown,
    plan_shutdown,
)
from analysis.shutdown_conflicts import combined_outage
from analysis.shutdown_valves import exercise_history, record_exercise, reliability
from analysis.shutoff import cached_model, isolate, shutoff
from ingest.pipeline import ingest_survey
from twin.errors import Conflict, InputError, NotFound

TWIN = str(Path(sys.executable).with_name("twin"))
X0, Y0 = 4035000.0, 410000.0
#: id, feature, appurtenance, northing offset, easting offset, remarks
POINTS = [
    ("S", "", "水厂", 0, 40, "第一水厂"), ("A", "三通", "", 0, 100, ""),
    ("V1", "", "阀门", 30, 100, ""), ("B", "四通", "", 60, 100, ""), ("V2", "", "阀门", 90, 100, ""),
    ("D", "三通", "", 120, 100, ""), ("V5", "", "阀门", 150, 100, ""), ("E", "直线点", "", 180, 100, ""),
    ("C3", "进楼", "", 180, 130, "市人民医院"), ("C1", "进楼", "", 60, 70, "幸福小区"),
    ("H1", "", "消火栓", 60, 130, ""), ("V3", "", "阀门", 0, 130, ""), ("C", "三通", "", 30, 160, ""),
    ("C2", "进楼", "", 30, 190, "=cmd"), ("V4", "", "阀门", 90, 160, ""),
]
PIPES = ["S-A", "A-V1", "V1-B", "B-V2", "V2-D", "D-V5", "V5-E", "E-C3", "B-C1", "B-H1", "A-V3", "V3-C",
         "C-C2", "C-V4", "V4-D"]
DAY = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)


def write_loop_survey(folder: Path) -> tuple[Path, Path]:
    """The loop above as CJJ 61 point and segment tables."""
    head = "物探点号,图上点号,管线类型,特征,附属物,X,Y,地面高程,埋深,井底深,偏心井点号,图幅号,探测日期,备注\n"
    rows = [f"{p},{n},JS,{f},{a},{X0 + dx:.2f},{Y0 + dy:.2f},35.00,1.40,,,,2024-05-01,{r}"
            for n, (p, f, a, dx, dy, r) in enumerate(POINTS, 1)]
    (folder / "points.csv").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")
    head = ("起点号,终点号,管线类型,起点埋深,终点埋深,管径/断面,材质,埋设方式,压力/电压,电缆条数,总孔数,"
            "已用孔数,流向,建设年代,权属单位,道路名称,状态,备注\n")
    rows = [f"{a},{b},JS,1.40,1.40,DN200,球墨铸铁,ZM,0.4,,,,,2010,自来水公司,东昌路,active,"
            for a, b in (p.split("-") for p in PIPES)]
    (folder / "segments.csv").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")
    return folder / "points.csv", folder / "segments.csv"


@pytest.fixture(scope="module")
def loop(twin_settings, twin_engine, tmp_path_factory):
    points, segments = write_loop_survey(tmp_path_factory.mktemp("loop"))
    report = ingest_survey(points, segments, twin_settings)
    assert report.status == "applied", report
    return twin_engine


def at(hour: int, day: int = 0) -> dt.datetime:
    return DAY + dt.timedelta(days=day, hours=hour)


def ids(records: list[dict]) -> list[str]:
    return [r["id"] for r in records]


def plan(engine, settings, pipe: str, start: dt.datetime, end: dt.datetime, **kw) -> dict:
    return plan_shutdown(engine, settings, pipe=pipe, start=start, end=end, by="planner", **kw)


@pytest.fixture
def clean(loop):
    """No shutdowns, no exercises: each test plans its own."""
    with loop.begin() as conn:
        conn.execute(sa.text("TRUNCATE shutdown, valve_exercise CASCADE"))
    return loop


def test_the_loop_segments_as_drawn(loop):
    model = cached_model(loop)
    assert ids(isolate(model, pipe="V1-B").valves) == ["V1", "V2"]
    assert sorted(isolate(model, pipe="V1-B").isolated_pipes) == ["B-C1", "B-H1", "B-V2", "V1-B"]
    assert sorted(ids(isolate(model, pipe="V3-C").valves)) == ["V3", "V4"]


# Conflicts: each case a pair of shutdowns (pipe, window) and what the check must find.
#   a pipe, a window | b pipe, b window | kinds                            | extra customers
CASES = [
    ("V1-B", (8, 12), "V3-C", (10, 14), ["more together"], ["C3"]),          # two paths of a loop
    ("V1-B", (8, 12), "B-C1", (9, 10), ["shared outage", "shared valves"], []),  # same segment
    ("V1-B", (8, 12), "V5-E", (11, 13), [], []),                             # apart on one path
    ("V1-B", (8, 12), "V3-C", (12, 14), [], []),                             # end meets start: no overlap
    ("V1-B", (8, 12), "V3-C", (32, 34), [], []),                             # the next day
]


@pytest.mark.parametrize(("pa", "wa", "pb", "wb", "kinds", "extra"), CASES)
def test_conflicts_hand_built(clean, twin_settings, pa, wa, pb, wb, kinds, extra):
    a = plan(clean, twin_settings, pa, at(wa[0]), at(wa[1]))
    b = plan(clean, twin_settings, pb, at(wb[0]), at(wb[1]))
    assert a["conflicts"] == []  # planned before b
    found = b["conflicts"]
    assert [c["kinds"] for c in found] == ([kinds] if kinds else [])
    again = get_shutdown(clean, a["id"])["conflicts"]  # the check is symmetric
    assert [c["kinds"] for c in again] == ([kinds] if kinds else [])
    if not kinds:
        return
    c = found[0]
    assert c["shutdown"] == a["id"] and c["extra_customers"] == extra
    assert c["extra_critical_customers"] == extra  # C3 is the hospital
    if "more together" in kinds:
        # what only both cut off: the middle segment D and everything past V5
        assert sorted(c["extra_pipes"]) == ["D-V5", "E-C3", "V2-D", "V4-D", "V5-E"]
        assert c["shared_pipes"] == [] and c["shared_valves"] == []
        assert c["overlap"][0].startswith("2027-03-01T10") and c["overlap"][1].startswith("2027-03-01T12")
    else:
        assert sorted(c["shared_pipes"]) == ["B-C1", "B-H1", "B-V2", "V1-B"]
        assert c["shared_valves"] == ["V1", "V2"] and c["extra_pipes"] == []


def test_combined_outage_of_one_shutdown_is_its_own(loop):
    model = cached_model(loop)
    for pipe in PIPES[1:]:
        one = isolate(model, pipe=pipe)
        pipes, customers = combined_outage(model, one.segments)
        assert pipes == set(one.isolated_pipes) | set(one.outage_pipes)
        assert set(customers) == set(ids(one.customers))


def test_finished_or_cancelled_shutdowns_do_not_conflict(clean, twin_settings):
    a = plan(clean, twin_settings, "V1-B", at(8), at(12))
    b = plan(clean, twin_settings, "V3-C", at(9), at(11))
    assert len(get_shutdown(clean, a["id"])["conflicts"]) == 1
    move_shutdown(clean, b["id"], "cancel", by="planner")
    assert get_shutdown(clean, a["id"])["conflicts"] == []


def test_life_cycle_and_wrong_moves(clean, twin_settings):
    s = plan(clean, twin_settings, "V1-B", at(8), at(12), reason="换阀 replace a valve")
    sid = s["id"]
    assert s["status"] == "planned" and s["status_zh"] == "计划" and s["reason"] == "换阀 replace a valve"
    assert ids(s["valves"]) == ["V1", "V2"] and {v["state"] for v in s["valves"]} == {"pending"}
    assert ids(s["customers"]) == ["C1"] and ids(s["hydrants"]) == ["H1"]
    for move in ("execute", "restore"):
        with pytest.raises(Conflict, match="planned"):
            move_shutdown(clean, sid, move, by="crew")
    with pytest.raises(Conflict, match="executing"):
        mark_valve(clean, twin_settings, sid, "V1", "closed", by="crew")
    seen = []
    s = move_shutdown(clean, sid, "notify", by="office", before_commit=lambda conn, i: seen.append(i))
    assert s["status_zh"] == "已通知" and seen == [sid] and s["actual_start"] is None
    with pytest.raises(Conflict):
        move_shutdown(clean, sid, "notify", by="office")
    s = move_shutdown(clean, sid, "execute", by="crew")
    assert s["status"] == "executing" and s["actual_start"] is not None
    with pytest.raises(NotFound):
        mark_valve(clean, twin_settings, sid, "V5", "closed", by="crew")  # not on this checklist
    s = mark_valve(clean, twin_settings, sid, "V1", "closed", by="crew A")
    v1 = s["valves"][0]
    assert v1["id"] == "V1" and v1["state"] == "closed" and v1["marked_by"] == "crew A" and v1["marked_at"]
    s = move_shutdown(clean, sid, "restore", by="crew")
    assert s["status_zh"] == "已恢复" and s["actual_end"] is not None
    with pytest.raises(Conflict, match="restored"):
        move_shutdown(clean, sid, "cancel", by="office")
    assert [e["action"] for e in s["events"]] == ["planned", "notify", "execute", "valve closed", "restore"]
    assert [e["by"] for e in s["events"]][-2:] == ["crew A", "crew"]
    assert [r["status"] for r in list_shutdowns(clean)] == ["restored"]
    # the crew's mark is an exercise of the valve
    assert [e["result"] for e in exercise_history(clean, "V1")] == ["ok"]


def test_failed_valve_recomputes_the_ring_at_once(clean, twin_settings):
    s = plan(clean, twin_settings, "V1-B", at(8), at(12))
    sid = s["id"]
    move_shutdown(clean, sid, "notify", by="office")
    move_shutdown(clean, sid, "execute", by="crew")
    mark_valve(clean, twin_settings, sid, "V1", "closed", by="crew")
    s = mark_valve(clean, twin_settings, sid, "V2", "failed", by="crew", note="stem broken")
    # the same answer as the shutoff with V2 failed
    ref = shutoff(clean, pipe="V1-B", failed_valves=["V2"])
    needed = [v for v in s["valves"] if v["needed"] and v["state"] != "failed"]
    assert ids(needed) == ids(ref.valves)
    assert sorted(ids(needed)) == ["V1", "V4", "V5"]
    assert {v["id"]: v["added_for"] for v in needed} == {"V1": None, "V4": "V2", "V5": "V2"}
    assert {v["id"]: v["state"] for v in s["valves"]} == {"V1": "closed", "V2": "failed", "V4": "pending",
                                                          "V5": "pending"}
    assert ids(s["customers"]) == ["C3", "C1"]  # the hospital past D is now out, first
    assert ids(s["critical_customers"]) == ["C3"] and s["critical_count"] == 1
    assert sorted(s["isolated_pipes"]) == sorted(ref.isolated_pipes)
    assert ids(s["failed_valves"]) == ["V2"]
    assert exercise_history(clean, "V2")[0]["result"] == "failed"


def test_notification_csv_critical_first_and_safe(clean, twin_settings):
    a = plan(clean, twin_settings, "V1-B", at(8), at(12))
    b = plan(clean, twin_settings, "A-V3", at(8), at(12), reason="both paths")  # the plant's own segment: all out
    text = customers_csv(clean, b["id"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "序号 no." and rows[0][1] == "用户编号 id" and "重要用户 critical" in rows[0]
    assert [r[1] for r in rows[1:]] == ids(b["customers"])
    crit = rows[0].index("重要用户 critical")
    assert [r[crit] for r in rows[1:]] == sorted((r[crit] for r in rows[1:]), reverse=True)  # True first
    name = rows[0].index("名称 name")
    names = {r[1]: r[name] for r in rows[1:]}
    assert names["C2"] == "'=cmd"
    assert len(customers_csv(clean, a["id"]).splitlines()) == 2
    with pytest.raises(NotFound):
        customers_csv(clean, 10**6)


def test_bad_plans(clean, twin_settings):
    with pytest.raises(InputError, match="after the start"):
        plan(clean, twin_settings, "V1-B", at(12), at(8))
    with pytest.raises(InputError, match="ISO 8601"):
        plan(clean, twin_settings, "V1-B", "tomorrow", at(8))
    with pytest.raises(InputError, match="exactly one"):
        plan_shutdown(clean, twin_settings, start=at(8), end=at(9), by="x")
    with pytest.raises(NotFound):
        plan(clean, twin_settings, "NOPE", at(8), at(9))
    with pytest.raises(InputError):
        move_shutdown(clean, 1, "explode", by="x")
    assert list_shutdowns(clean) == []


def test_valves_not_exercised_are_likely_to_fail(clean):
    r = shutoff(clean, pipe="V1-B", exercise_years=5)
    assert [v["likely_to_fail"] for v in r.valves] == [True, True]
    assert r.valves[0]["likely_reason"] == "never exercised"
    # V2 failing would need V4 and V5 and cut off the hospital: its next ring, precomputed
    assert sorted(r.next_ring["V2"]["valves"]) == ["V4", "V5"]
    assert r.next_ring["V2"]["extra_critical_customers"] == ["C3"]
    # D drained, and E past V5 cut off
    assert sorted(r.next_ring["V2"]["extra_pipes"]) == ["D-V5", "E-C3", "V2-D", "V4-D", "V5-E"]
    now = dt.datetime.now(dt.UTC)
    record_exercise(clean, "V1", "ok", by="crew", at=now - dt.timedelta(days=365))
    record_exercise(clean, "V2", "ok", by="crew", at=now - dt.timedelta(days=365 * 7))
    r = shutoff(clean, pipe="V1-B", exercise_years=5)
    flags = {v["id"]: v["likely_to_fail"] for v in r.valves}
    assert flags == {"V1": False, "V2": True} and list(r.next_ring) == ["V2"]
    assert "not exercised since" in next(v for v in r.valves if v["id"] == "V2")["likely_reason"]
    assert {v["id"]: v["likely_to_fail"] for v in shutoff(clean, pipe="V1-B", exercise_years=10).valves} == {
        "V1": False, "V2": False}
    record_exercise(clean, "V1", "stuck", by="crew", at=now - dt.timedelta(hours=1))
    with clean.connect() as conn:
        rel = reliability(conn, ["V1", "V2"], 10)
    assert rel["V1"]["likely_to_fail"] and rel["V1"]["last_result"] == "stuck" and not rel["V2"]["likely_to_fail"]
    with pytest.raises(NotFound):
        record_exercise(clean, "NOPE", "ok", by="crew")
    with pytest.raises(InputError):
        record_exercise(clean, "V1", "maybe", by="crew")
    with pytest.raises(InputError, match="future"):
        record_exercise(clean, "V1", "ok", by="crew", at=now + dt.timedelta(days=2))


def test_cli_plan_show_valve_customers(clean, twin_settings, tmp_path):
    env = {"TWIN_DB_SCHEMA": twin_settings.db_schema, "TWIN_USER": "cli-planner"}

    def twin(*args: str):
        return CliRunner().invoke(app, list(args), env=env)

    plan(clean, twin_settings, "V3-C", at(9), at(11))
    res = twin("plan", "--at", f"{Y0 + 100:.2f},{X0 + 45:.2f}", "--start", "2027-03-01T08:00+00:00",
               "--end", "2027-03-01T12:00+00:00", "--reason", "检修", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["pipe"] == "V1-B" and out["created_by"] == "cli-planner"
    assert [c["kinds"] for c in out["conflicts"]] == [["more together"]]
    sid = str(out["id"])
    assert isinstance(twin("valve", sid, "V1", "--closed").exception, Conflict)  # planned: not yet
    assert twin("notify", sid).exit_code == 0
    assert "notified" in str(twin("restore", sid).exception)
    shown = twin("show", sid)
    assert shown.exit_code == 0 and "已通知" in shown.stdout and "conflict" in shown.stdout
    res = twin("customers", sid, "--csv", str(tmp_path / "c.csv"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.csv").read_text(encoding="utf-8-sig").splitlines()[1].split(",")[1] == "C1"
    with clean.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM audit_log WHERE user_name = 'cli-planner' "
                                       "ORDER BY id")).scalars().all()
    assert actions == ["shutdown-plan", "shutdown-notify"]
    # the installed command: a TwinError is "error [CODE] message", exit status 2
    bad = subprocess.run([TWIN, "shutdown", "valve", sid, "V1"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert bad.returncode == 2 and "exactly one of --closed or --failed" in bad.stderr


def test_next_ring_is_the_shutoff_with_that_valve_failed(clean):
    """For every pipe of the loop and every valve of its closing order (none exercised, so all
    likely to fail), the precomputed next ring equals the shutoff run with that valve failed."""
    model = cached_model(clean)
    for pipe in PIPES:
        r = shutoff(clean, pipe=pipe)
        assert set(r.next_ring) == set(ids(r.valves))
        for valve, ring in r.next_ring.items():
            ref = isolate(model, pipe=pipe, failed_valves=[valve])
            assert ring["valves"] == [v for v in ids(ref.valves) if v not in ids(r.valves)]
            before = set(r.isolated_pipes) | set(r.outage_pipes)
            assert ring["extra_pipes"] == sorted((set(ref.isolated_pipes) | set(ref.outage_pipes)) - before)
            assert ring["extra_customers"] == [c for c in ids(ref.customers) if c not in ids(r.customers)]
