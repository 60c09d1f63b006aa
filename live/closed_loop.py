"""The closed-loop check after a shutoff (关阀效果核验): did the isolation hold?

Once the valves of a shutoff are closed, pressure inside what it cuts off (the isolated pipes
and nodes, and the outage beyond them, which no longer reaches a source) should fall, and
pressure outside should not. :func:`check_shutoff` compares each pressure sensor's median
reading over ``baseline_s`` before ``closed_at`` with its median from ``settle_s`` after it:

* ``held`` (关阀有效): every inside sensor fell by ``fall_fraction`` or more, no outside one did;
* ``valve_passing`` (疑似阀门内漏): an inside sensor holds its pressure, so water still comes in:
  the closed valve nearest (in plan) the inside sensors that hold is flagged, and the next ring
  is proposed, the same shutoff with that valve failed (:func:`analysis.shutoff.shutoff`);
* ``outside_falling`` (范围外压力下降): an outside sensor fell (another leak, or a valve closed that
  is not in the plan); nothing is proposed;
* ``no_data`` (数据不足): no inside sensor has readings both before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import sqlalchemy as sa

from analysis.shutoff import Shutoff, shutoff
from twin.errors import InputError
from twin.jsonable import plain

__all__ = ["check_shutoff", "VERDICTS"]

VERDICTS = {
    "held": "关阀有效 the shutoff held",
    "valve_passing": "疑似阀门内漏 a closed valve may be passing",
    "outside_falling": "范围外压力下降 pressure falls outside the shut-off area",
    "no_data": "数据不足 no pressure readings inside the shut-off area before and after",
}

_PRESSURE_SQL = """
SELECT s.id, s.node_id, s.segment_id, coalesce(n.utility, g.utility) AS utility,
       ST_X(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS x,
       ST_Y(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS y,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.v) FROM reading r
         WHERE r.sensor_id = s.id AND r.t >= :b0 AND r.t < :closed) AS before,
       (SELECT count(*) FROM reading r WHERE r.sensor_id = s.id AND r.t >= :b0 AND r.t < :closed) AS n_before,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.v) FROM reading r
         WHERE r.sensor_id = s.id AND r.t >= :a0 AND r.t <= :now) AS after,
       (SELECT count(*) FROM reading r WHERE r.sensor_id = s.id AND r.t >= :a0 AND r.t <= :now) AS n_after
FROM sensor s LEFT JOIN current_node n ON n.id = s.node_id LEFT JOIN current_segment g ON g.id = s.segment_id
WHERE s.kind = 'pressure' AND coalesce(n.utility, g.utility) = :u ORDER BY s.id
"""


def _sensors(conn: sa.Connection, answer: Mapping, closed_at: dt.datetime, now: dt.datetime,
             baseline_s: float, settle_s: float, fall_fraction: float) -> list[dict]:
    """Each pressure sensor of the answer's network: inside or not, medians, fell or not."""
    rows = conn.execute(sa.text(_PRESSURE_SQL), {
        "b0": closed_at - dt.timedelta(seconds=baseline_s), "closed": closed_at,
        "a0": closed_at + dt.timedelta(seconds=settle_s), "now": now, "u": answer["utility"]}).mappings().all()
    nodes = set(answer["isolated_nodes"]) | set(answer["outage_nodes"])
    pipes = set(answer["isolated_pipes"]) | set(answer["outage_pipes"])
    out = []
    for r in rows:
        inside = r["node_id"] in nodes if r["node_id"] else r["segment_id"] in pipes
        known = r["before"] is not None and r["after"] is not None
        fell = known and r["after"] <= r["before"] * (1.0 - fall_fraction)
        out.append(plain({"sensor": r["id"], "node": r["node_id"], "pipe": r["segment_id"], "inside": inside,
                          "before": r["before"], "after": r["after"], "n_before": r["n_before"],
                          "n_after": r["n_after"], "fell": fell if known else None, "x": r["x"], "y": r["y"]}))
    return out


def _nearest_valve(valves: list[dict], holding: list[dict]) -> dict | None:
    """The closed valve nearest (plan distance) any of the inside sensors that hold."""
    if not valves or not holding:
        return None
    vx = np.array([v["x"] for v in valves], dtype=float)
    vy = np.array([v["y"] for v in valves], dtype=float)
    sx = np.array([s["x"] for s in holding], dtype=float)
    sy = np.array([s["y"] for s in holding], dtype=float)
    d = np.hypot(vx[:, None] - sx[None, :], vy[:, None] - sy[None, :]).min(axis=1)
    k = int(np.nanargmin(d))
    return {**valves[k], "distance_m": round(float(d[k]), 2)}


def check_shutoff(
    engine: sa.Engine,
    answer: Shutoff | Mapping,
    *,
    closed_at: dt.datetime,
    now: dt.datetime | None = None,
    baseline_s: float = 300.0,
    settle_s: float = 30.0,
    fall_fraction: float = 0.3,
) -> dict:
    """Check a carried-out shutoff (its answer: valves closed, isolated and outage pipes and
    nodes) against the pressure readings since ``closed_at`` (see the module)."""
    answer = answer.as_dict() if isinstance(answer, Shutoff) else dict(answer)
    if closed_at.tzinfo is None:
        raise InputError("closed_at needs a UTC offset (e.g. 2026-12-03T14:05:00+08:00)",
                         zh="closed_at 关阀时间须带 UTC 偏移（例如 2026-12-03T14:05:00+08:00）")
    if not 0 < fall_fraction < 1 or baseline_s <= 0 or settle_s < 0:
        raise InputError("fall_fraction is between 0 and 1, baseline_s above 0, settle_s at least 0",
                         zh="fall_fraction 取 0 到 1，baseline_s 大于 0，settle_s 不小于 0")
    now = now or dt.datetime.now(dt.UTC)
    if now <= closed_at + dt.timedelta(seconds=settle_s):
        raise InputError(f"wait {settle_s:g} s after closing the valves before checking",
                         zh=f"关阀后请等待 {settle_s:g} 秒再检查")
    with engine.connect() as conn:
        sensors = _sensors(conn, answer, closed_at, now, baseline_s, settle_s, fall_fraction)
    inside = [s for s in sensors if s["inside"] and s["fell"] is not None]
    outside = [s for s in sensors if not s["inside"] and s["fell"] is not None]
    holding = [s for s in inside if not s["fell"]]
    falling_outside = [s for s in outside if s["fell"]]
    result = {"pipe": answer.get("pipe"), "node": answer.get("node"), "closed_at": closed_at.isoformat(),
              "checked_at": now.isoformat(), "fall_fraction": fall_fraction, "sensors": sensors,
              "inside_holding": [s["sensor"] for s in holding],
              "outside_falling": [s["sensor"] for s in falling_outside],
              "passing_valve": None, "next_ring": None}
    if not inside:
        result["verdict"] = "no_data"
    elif holding:
        result["verdict"] = "valve_passing"
        valve = _nearest_valve(answer["valves"], holding)
        result["passing_valve"] = valve
        if valve is not None:
            failed = [v["id"] for v in answer.get("failed_valves", []) if v.get("reason") == "reported failed"]
            ring = shutoff(engine, pipe=answer.get("pipe"), node=answer.get("node") if not answer.get("pipe") else None,
                           failed_valves=[*failed, valve["id"]])
            result["next_ring"] = ring.as_dict()
    elif falling_outside:
        result["verdict"] = "outside_falling"
    else:
        result["verdict"] = "held"
    result["verdict_label"] = VERDICTS[result["verdict"]]
    return result
