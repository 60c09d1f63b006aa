"""Alarms from live readings (预警): causes, their life cycle, and the suspected burst.

Causes (:data:`CAUSES`), checked on every stored batch by :func:`evaluate` (numpy over the
batch) and by the periodic :func:`check_stale`:

* ``low`` / ``high``: a reading below the sensor's ``low`` or above its ``high``;
* ``drop`` / ``rise``: the change over about the last minute is faster than the sensor's ``rate``
  (its unit per minute). Each reading is compared with the sensor's oldest reading of the last
  60 s (:class:`RateWindow`, at least 10 s before it), so one noisy reading is not a drop;
* ``stale``: no reading for ``stale_s`` seconds;
* ``cover_open``: a ``cover`` sensor reads 1 (open; 0 is closed).

An alarm carries its sensor, the sensor's node or pipe, a severity, the reading's value and
time, and ``raised_at``. Its states go ``open -> acknowledged -> closed``, each step by a user,
audited (:func:`transition`; another step is a Conflict). While an alarm of a sensor and cause
is not closed no other is raised (a partial unique index), so a lasting condition is one alarm.

**Suspected burst** (:func:`suspected_burst`): two or more pressure sensors of one network
whose ``drop`` alarms are not closed and whose drops happened within
``TWIN_ALARM_BURST_WINDOW_S`` of the newest. The likely pipe is the live pipe of that network
with the smallest summed plan distance to those sensors (a geometric median on the pipes;
ties go to the pipe nearest their centroid): a burst drops pressure most around it, so the
sensors that dropped surround it. Its valve segment is the likely segment and its shutoff
(:func:`analysis.shutoff.shutoff`) is proposed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from analysis.shutoff import shutoff
from analysis.vocabulary import NAMES
from live.events import notify
from live.sensors import Who
from twin.audit import record
from twin.errors import Conflict, InputError, NotFound, TwinError
from twin.jsonable import plain

__all__ = ["CAUSES", "STATES", "Candidate", "RateWindow", "evaluate", "raise_alarms", "check_stale",
           "list_alarms", "get_alarm", "transition", "acknowledge_alarm", "close_alarm",
           "suspected_burst", "ALARM_SQL", "alarm_message"]

#: Causes, 中文 first.
CAUSES = {
    "low": "低于下限 below the low threshold",
    "high": "高于上限 above the high threshold",
    "drop": "骤降 sudden drop",
    "rise": "骤升 sudden rise",
    "stale": "失联 no readings",
    "cover_open": "井盖开启 cover opened",
}
CAUSE_CODES = {c: k for k, c in enumerate(CAUSES)}
#: What a sensor measures, in a word, for an alarm's message: kind -> (Chinese, English).
_MEASURES = {"pressure": ("压力", "pressure"), "flow": ("流量", "flow"), "level": ("液位", "level"),
             "gas": ("可燃气体浓度", "gas concentration"), "cover": ("井盖", "manhole cover"),
             "valve_position": ("阀门开度", "valve position")}
#: An alarm's cause as a phrase after the measure: cause -> (Chinese, English).
_PHRASES = {"low": ("低于下限", "below the low threshold"), "high": ("高于上限", "above the high threshold"),
            "drop": ("骤降", "dropping fast"), "rise": ("骤升", "rising fast"),
            "stale": ("传感器失联", "sensor sends no readings"), "cover_open": ("开启", "opened")}
#: Allowed moves of an alarm's state.
STATES = {"open": ("acknowledged",), "acknowledged": ("closed",), "closed": ()}


def severity(kind: str, cause: str) -> str:
    """How urgent an alarm is: bursts, gas and open covers are critical."""
    if cause == "cover_open" or (kind == "gas" and cause == "high") or (kind == "pressure" and cause == "drop"):
        return "critical"
    return "warning"


@dataclass(frozen=True)
class Candidate:
    """An alarm a reading calls for (raised unless one of its sensor and cause is not closed)."""

    sensor_id: str
    cause: str
    value: float | None
    reading_t_us: int | None


class RateWindow:
    """Each sensor's readings of about the last minute, kept as one anchor per ``step_s``, to tell
    each new reading's change over the window (vectorised over a batch)."""

    SPAN = 1e9  # seconds between two sensors' keys: more than any time range kept

    def __init__(self, window_s: float = 60.0, step_s: float = 5.0, min_span_s: float = 10.0) -> None:
        self.window_s, self.step_s, self.min_span_s = window_s, step_s, min_span_s
        self.codes: dict[str, int] = {}
        self.base: float | None = None
        self.c = np.empty(0, np.int64)
        self.t = np.empty(0, np.float64)
        self.v = np.empty(0, np.float64)

    def reference(self, ids: np.ndarray, t_us: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each reading: time (s) and value of its sensor's oldest reading in the window
        (NaN when there is none at least ``min_span_s`` earlier); the window moves on."""
        n = len(ids)
        if self.base is None:
            self.base = float(t_us.min()) / 1e6 - self.window_s
        codes = np.fromiter((self.codes.setdefault(i, len(self.codes)) for i in ids.tolist()), np.int64, n)
        ts = t_us / 1e6 - self.base
        c = np.concatenate([self.c, codes])
        t = np.concatenate([self.t, ts])
        vv = np.concatenate([self.v, v])
        pos = np.concatenate([np.full(len(self.c), -1), np.arange(n)])
        order = np.lexsort((t, c))
        c, t, vv, pos = c[order], t[order], vv[order], pos[order]
        key = c * self.SPAN + t
        new = pos >= 0
        j = np.searchsorted(key, key[new] - self.window_s, side="left")
        ok = (c[j] == c[new]) & (t[new] - t[j] >= self.min_span_s)
        ref_t, ref_v = np.full(n, np.nan), np.full(n, np.nan)
        ref_t[pos[new]] = np.where(ok, t[j], np.nan)
        ref_v[pos[new]] = np.where(ok, vv[j], np.nan)
        # anchors kept: the first reading of each step of each sensor, within the window of its latest
        bucket = np.floor(t / self.step_s)
        first = np.append(True, (c[1:] != c[:-1]) | (bucket[1:] != bucket[:-1]))
        ends = np.flatnonzero(np.append(c[1:] != c[:-1], True))
        latest = np.repeat(t[ends], np.diff(np.append(-1, ends)))
        keep = first & (t >= latest - self.window_s - self.step_s)
        self.c, self.t, self.v = c[keep], t[keep], vv[keep]
        return ref_t, ref_v


def evaluate(rules: Mapping[str, Mapping], ids: np.ndarray, t_us: np.ndarray, v: np.ndarray,
             window: RateWindow) -> list[Candidate]:
    """The alarms a batch of readings calls for: the first reading of each sensor and cause."""
    if not len(ids):
        return []
    rule = [rules[i] for i in ids.tolist()]
    low = np.array([r["low"] if r["low"] is not None else -np.inf for r in rule], dtype=float)
    high = np.array([r["high"] if r["high"] is not None else np.inf for r in rule], dtype=float)
    rate = np.array([r["rate"] if r["rate"] is not None else np.inf for r in rule], dtype=float)
    cover = np.array([r["kind"] == "cover" for r in rule], dtype=bool)
    ref_t, ref_v = window.reference(ids, t_us, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_min = (v - ref_v) / (t_us / 1e6 - window.base - ref_t) * 60.0
    masks = {"low": v < low, "high": v > high, "drop": per_min < -rate, "rise": per_min > rate,
             "cover_open": cover & (v >= 0.5)}
    rows, causes = [], []
    for cause, m in masks.items():
        hit = np.flatnonzero(m)
        rows.append(hit)
        causes.append(np.full(len(hit), CAUSE_CODES[cause]))
    r, k = np.concatenate(rows), np.concatenate(causes)
    if not len(r):
        return []
    order = np.lexsort((t_us[r], k, ids[r].astype(str)))
    r, k = r[order], k[order]
    sid = ids[r].astype(str)
    first = np.append(True, (sid[1:] != sid[:-1]) | (k[1:] != k[:-1]))
    names = list(CAUSES)
    return [Candidate(str(ids[i]), names[c], float(v[i]), int(t_us[i]))
            for i, c in zip(r[first].tolist(), k[first].tolist(), strict=True)]


#: An alarm as listed: with its sensor's kind, unit, network and position.
ALARM_SQL = (
    "SELECT a.id, a.sensor_id AS sensor, a.node_id AS node, a.segment_id AS pipe, a.kind, s.unit, "
    "a.cause, a.severity, a.value, a.reading_t, a.raised_at, a.state, a.acknowledged_at, "
    "a.acknowledged_by, a.closed_at, a.closed_by, a.note, coalesce(n.utility, g.utility) AS utility, "
    "ST_X(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS x, "
    "ST_Y(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS y "
    "FROM alarm a JOIN sensor s ON s.id = a.sensor_id "
    "LEFT JOIN current_node n ON n.id = a.node_id LEFT JOIN current_segment g ON g.id = a.segment_id "
)


def alarm_message(kind: str, cause: str, value: float | None = None, unit: str | None = None) -> str:
    """What the operator reads of an alarm, Chinese first.

    >>> alarm_message("pressure", "low", 0.182, "MPa")
    '压力低于下限 pressure below the low threshold: 0.182 MPa'
    >>> alarm_message("cover", "cover_open")
    '井盖开启 manhole cover opened'
    """
    m_zh, m_en = _MEASURES.get(kind, (kind, kind))
    c_zh, c_en = _PHRASES.get(cause, (cause, cause))
    reading = f": {value:g} {unit or ''}".rstrip() if value is not None and cause != "cover_open" else ""
    return f"{m_zh}{c_zh} {m_en} {c_en}{reading}"


def _spelled(category: str, code: str) -> str:
    return " ".join(NAMES[category].get(code, (code,)))


def _rows(conn: sa.Connection, where: str, params: Mapping) -> list[dict]:
    """Alarms as listed: each with its ``message``, and labels of its cause, state and severity
    (Chinese first)."""
    rows = conn.execute(sa.text(ALARM_SQL + where), params).mappings().all()
    return [plain({**r, "cause_label": CAUSES[r["cause"]],
                   "state_label": _spelled("alarm_state", r["state"]),
                   "severity_label": _spelled("alarm_severity", r["severity"]),
                   "message": alarm_message(r["kind"], r["cause"], r["value"], r["unit"])}) for r in rows]


def raise_alarms(conn: sa.Connection, candidates: list[Candidate], *, schema: str | None = None) -> list[dict]:
    """Insert the candidates that have no alarm of their sensor and cause still open, and send
    each new one on the live channel; on ``conn``, inside the caller's transaction."""
    if not candidates:
        return []
    kinds = dict(conn.execute(sa.text("SELECT id, kind FROM sensor WHERE id = ANY(:i)"),
                              {"i": sorted({c.sensor_id for c in candidates})}).all())
    candidates = [c for c in candidates if c.sensor_id in kinds]
    new_ids = conn.execute(sa.text(
        "INSERT INTO alarm (sensor_id, node_id, segment_id, kind, cause, severity, value, reading_t) "
        "SELECT s.id, s.node_id, s.segment_id, s.kind, x.cause, x.severity, x.v, "
        "       to_timestamp(x.t / 1e6) "
        "FROM unnest(CAST(:i AS text[]), CAST(:c AS text[]), CAST(:sev AS text[]), CAST(:v AS float8[]), "
        "            CAST(:t AS float8[])) AS x(id, cause, severity, v, t) JOIN sensor s ON s.id = x.id "
        "ON CONFLICT (sensor_id, cause) WHERE state <> 'closed' DO NOTHING RETURNING id"),
        {"i": [c.sensor_id for c in candidates], "c": [c.cause for c in candidates],
         "sev": [severity(kinds[c.sensor_id], c.cause) for c in candidates],
         "v": [c.value for c in candidates], "t": [c.reading_t_us for c in candidates]}).scalars().all()
    if not new_ids:
        return []
    alarms = _rows(conn, "WHERE a.id = ANY(:ids) ORDER BY a.id", {"ids": list(new_ids)})
    for a in alarms:
        notify(conn, "alarm", "alarm", a, schema=schema)
    return alarms


def check_stale(engine: sa.Engine, *, now: dt.datetime | None = None) -> list[dict]:
    """Raise a ``stale`` alarm for each sensor with ``stale_s`` whose last reading (or, never
    having read, its registration) is older than that."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        due = conn.execute(sa.text(
            "SELECT id, last_v, last_t FROM sensor WHERE stale_s IS NOT NULL "
            "AND coalesce(last_t, created_at) < CAST(:now AS timestamptz) - make_interval(secs => stale_s) "
            "ORDER BY id"), {"now": now}).all()
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return raise_alarms(conn, [
            Candidate(r.id, "stale", r.last_v,
                      None if r.last_t is None else round((r.last_t - epoch).total_seconds() * 1e6))
            for r in due])


def list_alarms(engine: sa.Engine, *, state: str | None = None, sensor: str | None = None,
                limit: int = 500) -> list[dict]:
    """Alarms newest first, optionally of one state (``active``: open or acknowledged) or sensor."""
    if state is not None and state not in (*STATES, "active"):
        raise InputError(f"state {state!r} is not one of open, acknowledged, closed, active",
                         zh=f"状态 {state!r} 不是 open（未处理）、acknowledged（已确认）、closed（已关闭）、active（活动）之一")
    if not 1 <= limit <= 10_000:
        raise InputError("limit is between 1 and 10000", zh="limit 取 1 到 10000")
    states = [s for s in STATES if s != "closed"] if state == "active" else [state] if state else list(STATES)
    with engine.connect() as conn:
        return _rows(conn, "WHERE a.state = ANY(:st) AND (CAST(:s AS text) IS NULL OR a.sensor_id = :s) "
                           "ORDER BY a.raised_at DESC, a.id DESC LIMIT :lim",
                     {"st": states, "s": sensor, "lim": limit})


def get_alarm(engine: sa.Engine, alarm_id: int) -> dict:
    """One alarm (NotFound when there is none)."""
    with engine.connect() as conn:
        rows = _rows(conn, "WHERE a.id = :i", {"i": alarm_id})
    if not rows:
        raise NotFound(f"no alarm {alarm_id}", zh=f"没有告警 {alarm_id}")
    return rows[0]


def transition(engine: sa.Engine, alarm_id: int, to: str, who: Who, *, note: str | None = None) -> dict:
    """Move an alarm to ``acknowledged`` or ``closed`` (Conflict from any other state); audited,
    and sent on the live channel."""
    if to not in ("acknowledged", "closed"):
        raise InputError(f"an alarm is acknowledged or closed, not {to!r}",
                         zh=f"告警只能改为 acknowledged（已确认）或 closed（已关闭），不是 {to!r}")
    with engine.begin() as conn:
        row = conn.execute(sa.text("SELECT state FROM alarm WHERE id = :i FOR UPDATE"), {"i": alarm_id}).first()
        if row is None:
            raise NotFound(f"no alarm {alarm_id}", zh=f"没有告警 {alarm_id}")
        if to not in STATES[row.state]:
            raise Conflict(f"alarm {alarm_id} is {row.state}: it cannot be {to} "
                           f"({' -> '.join(STATES)} in that order)",
                           zh=f"告警 {alarm_id} 状态为 {row.state}：不能改为 {to}"
                              f"（须按 {' -> '.join(STATES)} 的顺序）")
        column = "acknowledged" if to == "acknowledged" else "closed"
        conn.execute(sa.text(
            f"UPDATE alarm SET state = :to, {column}_at = clock_timestamp(), {column}_by = :by, "
            "note = coalesce(:note, note) WHERE id = :i"), {"to": to, "by": who.user, "note": note, "i": alarm_id})
        record(conn, who.user, who.role, f"alarm {to}", method=who.method, path=who.path,
               params={"alarm": alarm_id, "from": row.state, "to": to, "note": note}, affected=[str(alarm_id)])
        alarm = _rows(conn, "WHERE a.id = :i", {"i": alarm_id})[0]
        notify(conn, "alarm", "alarm", alarm)
    return alarm


def acknowledge_alarm(engine: sa.Engine, alarm_id: int, who: Who, *, note: str | None = None) -> dict:
    """open -> acknowledged."""
    return transition(engine, alarm_id, "acknowledged", who, note=note)


def close_alarm(engine: sa.Engine, alarm_id: int, who: Who, *, note: str | None = None) -> dict:
    """acknowledged -> closed."""
    return transition(engine, alarm_id, "closed", who, note=note)


# -- suspected burst --------------------------------------------------------------------------------
_DROPS_SQL = """
SELECT a.id, a.sensor_id, coalesce(a.reading_t, a.raised_at) AS at, coalesce(n.utility, g.utility) AS utility,
       coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5)) AS pos
FROM alarm a JOIN sensor s ON s.id = a.sensor_id
LEFT JOIN current_node n ON n.id = s.node_id LEFT JOIN current_segment g ON g.id = s.segment_id
WHERE a.cause = 'drop' AND a.state <> 'closed' AND s.kind = 'pressure'
"""

_LIKELY_PIPE_SQL = """
WITH d AS (SELECT pos FROM ({drops}) x WHERE x.id = ANY(:ids)),
     c AS (SELECT ST_Centroid(ST_Collect(pos)) AS g,
                  max(ST_Distance(pos, (SELECT ST_Centroid(ST_Collect(pos)) FROM d))) + 300 AS r FROM d)
SELECT s.id, sum(ST_Distance(s.geom, d.pos)) AS total, min(ST_Distance(s.geom, c.g)) AS to_centre
FROM current_segment s CROSS JOIN c JOIN d ON true
WHERE s.utility = :u AND s.status = 'active' AND ST_DWithin(s.geom, c.g, c.r)
GROUP BY s.id ORDER BY round(CAST(sum(ST_Distance(s.geom, d.pos)) AS numeric), 2), to_centre, s.id LIMIT 1
"""


def suspected_burst(engine: sa.Engine, *, window_s: float = 300.0) -> dict | None:
    """The suspected burst the open pressure-drop alarms point to, with its proposed shutoff,
    or None when fewer than two pressure sensors of one network dropped within ``window_s``."""
    with engine.connect() as conn:
        drops = conn.execute(sa.text(_DROPS_SQL + " ORDER BY at DESC, a.id DESC")).all()
        if not drops:
            return None
        newest = drops[0]
        group = [r for r in drops if r.utility == newest.utility
                 and (newest.at - r.at).total_seconds() <= window_s]
        sensors = sorted({r.sensor_id for r in group})
        if len(sensors) < 2:
            return None
        ids = [r.id for r in group]
        pipe = conn.execute(sa.text(_LIKELY_PIPE_SQL.format(drops=_DROPS_SQL)),
                            {"ids": ids, "u": newest.utility}).first()
    burst = {"utility": newest.utility, "alarms": sorted(ids), "sensors": sensors,
             "first_drop_at": min(r.at for r in group).isoformat(), "pipe": pipe.id if pipe else None,
             "rule": "疑似爆管管线：该管网中到压降传感器平面距离之和最小的在用管线（并列时取离其中心最近者），"
                     "其阀门分段即疑似分段 the live pipe of the network with the smallest summed plan "
                     "distance to the sensors that dropped (ties: nearest their centroid); its valve "
                     "segment is the likely segment",
             "shutoff": None, "note": None}
    if pipe is None:
        burst["note"] = "压降传感器附近没有该管网的在用管线 no live pipe of this network near the sensors that dropped"
        return burst
    try:
        answer = shutoff(engine, pipe=pipe.id)
    except TwinError as exc:
        burst["note"] = f"未提出关阀方案：{exc.message_zh or exc.message} no shutoff proposed: {exc.message}"
        return burst
    burst["segments"] = answer.segments
    burst["shutoff"] = answer.as_dict()
    return plain(burst)
