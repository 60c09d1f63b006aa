"""Valve reliability: each valve's exercise history and which valves are likely to fail.

Valves fail to close more often the longer they go unexercised, so utilities keep an exercise
history (table ``valve_exercise``, migration 0013: valve id, when operated, result ``ok``,
``failed`` or ``stuck``, who). A valve is **likely to fail** when it has not been exercised
for ``TWIN_VALVE_EXERCISE_YEARS`` years (never, included) or when its last exercise did not
go well. The shutoff (:mod:`analysis.shutoff`) flags such valves in its closing order and
computes their next ring; :mod:`analysis.shutdown` records exercises as crews close valves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from twin.errors import InputError, NotFound
from twin.jsonable import plain

__all__ = ["EXERCISE_RESULTS", "record_exercise", "insert_exercise", "exercise_history", "reliability",
           "parse_time"]

#: What an exercise can end with: the valve turned fully, failed to turn, or stuck part way.
EXERCISE_RESULTS = ("ok", "failed", "stuck")
_RESULT_ZH = {"ok": "正常", "failed": "失败", "stuck": "卡住"}
_DAYS_PER_YEAR = 365.25


def parse_time(text: str | dt.datetime | None, what: str = "time") -> dt.datetime | None:
    """An ISO 8601 time (``2026-12-03T08:00``, ``2026-12-03 08:00+08:00``); local time when naive."""
    if text is None or text == "":
        return None
    if isinstance(text, dt.datetime):
        value = text
    else:
        try:
            value = dt.datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise InputError(f"{what} {text!r} is not an ISO 8601 time such as 2026-12-03T08:00",
                             zh=f"{what} {text!r} 不是 ISO 8601 时间，例如 2026-12-03T08:00") from None
    return value if value.tzinfo is not None else value.astimezone()


def record_exercise(
    engine: sa.Engine,
    valve: str,
    result: str,
    *,
    by: str,
    at: dt.datetime | str | None = None,
    note: str | None = None,
    before_commit: Callable[[sa.Connection], None] | None = None,
) -> dict:
    """Record that ``valve`` was operated at ``at`` (now when unset) with ``result``; the entry."""
    if result not in EXERCISE_RESULTS:
        raise InputError(f"an exercise result is ok, failed or stuck, not {result!r}",
                         zh=f"阀门操作结果为 ok（正常）、failed（失败）或 stuck（卡住），不是 {result!r}")
    when = parse_time(at, "exercise time") or dt.datetime.now(dt.UTC)
    if when > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
        raise InputError(f"exercise time {when:%Y-%m-%d %H:%M} is in the future",
                         zh=f"操作时间 {when:%Y-%m-%d %H:%M} 在将来")
    with engine.begin() as conn:
        known = conn.execute(sa.text("SELECT 1 FROM current_valve WHERE id = :v"), {"v": valve}).first()
        if known is None:
            raise NotFound(f"no valve {valve!r} in the twin", zh=f"孪生库中没有阀门 {valve!r}")
        entry = insert_exercise(conn, valve, result, by=by, at=when, note=note)
        if before_commit is not None:
            before_commit(conn)
    return entry


def insert_exercise(conn: sa.Connection, valve: str, result: str, *, by: str, at: dt.datetime | None = None,
                    note: str | None = None) -> dict:
    """Add one exercise on ``conn``, inside the caller's transaction (a crew's mark, a record)."""
    row = conn.execute(sa.text(
        "INSERT INTO valve_exercise (valve_id, at, result, by, note) VALUES (:v, coalesce(:at, now()), :r, :by, :n) "
        "RETURNING id, valve_id, at, result, by, note, recorded_at"),
        {"v": valve, "at": at, "r": result, "by": by, "n": note}).mappings().one()
    return plain(dict(row))


def exercise_history(engine: sa.Engine | sa.Connection, valve: str) -> list[dict]:
    """A valve's exercises, newest first (NotFound for a valve the twin does not know)."""
    if isinstance(engine, sa.Engine):
        with engine.connect() as conn:
            return exercise_history(conn, valve)
    conn = engine
    if conn.execute(sa.text("SELECT 1 FROM current_valve WHERE id = :v"), {"v": valve}).first() is None:
        raise NotFound(f"no valve {valve!r} in the twin", zh=f"孪生库中没有阀门 {valve!r}")
    rows = conn.execute(sa.text(
        "SELECT id, valve_id, at, result, by, note, recorded_at FROM valve_exercise WHERE valve_id = :v "
        "ORDER BY at DESC, id DESC"), {"v": valve}).mappings().all()
    return [plain(dict(r)) for r in rows]


def reliability(conn: sa.Connection, valves: Sequence[str], years: float,
                now: dt.datetime | None = None) -> dict[str, dict]:
    """For each valve: its last exercise (``last_exercised``, ``last_result``) and whether it is
    ``likely_to_fail`` (not exercised for ``years`` years, or last result not ok), with why."""
    if not valves:
        return {}
    now = now or dt.datetime.now(dt.UTC)
    rows = conn.execute(sa.text(
        "SELECT DISTINCT ON (valve_id) valve_id, at, result FROM valve_exercise "
        "WHERE valve_id = ANY(:v) ORDER BY valve_id, at DESC, id DESC"), {"v": list(valves)}).all()
    last = {r.valve_id: (r.at, r.result) for r in rows}
    out = {}
    for v in valves:
        at, result = last.get(v, (None, None))
        if at is None:
            why, why_zh = "never exercised", "从未操作过"
        elif result != "ok":
            why = f"last exercise {result} ({at:%Y-%m-%d})"
            why_zh = f"上次操作{_RESULT_ZH.get(result, result)}（{at:%Y-%m-%d}）"
        elif (now - at).days > years * _DAYS_PER_YEAR:
            why = f"not exercised since {at:%Y-%m-%d} (over {years:g} years)"
            why_zh = f"自 {at:%Y-%m-%d} 起未操作（超过 {years:g} 年）"
        else:
            why = why_zh = None
        out[v] = {"last_exercised": plain(at), "last_result": result, "likely_to_fail": why is not None,
                  "likely_reason": why, "likely_reason_zh": why_zh}
    return out
