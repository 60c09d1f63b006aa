"""Planned shutdowns (关阀方案) as records: their life cycle, the crew's valve checklist, notices.

A shutdown isolates a pipe (named, or the nearest to a point) for a time window. Its record
(tables ``shutdown``, ``shutdown_valve``, ``shutdown_event``, migration 0013) holds the shutoff
answer of :mod:`analysis.shutoff` (valves in closing order, what is isolated and cut off, the
customers, critical first, and the hydrants out of service), the forecast and actual times,
and each valve's state on the crew's checklist. Its status moves only through
:data:`TRANSITIONS`, defined here once:

=========== ==============================================
status      may become
=========== ==============================================
planned     notified (customers told), cancelled
notified    executing (crew on site), cancelled
executing   restored (supply back), cancelled
restored    nothing
cancelled   nothing
=========== ==============================================

A move the status does not allow raises :class:`twin.errors.Conflict` (HTTP 409). ``executing``
sets the actual start, ``restored`` and ``cancelled`` (while executing) the actual end.

While executing, a crew marks each valve ``closed`` or ``failed`` (:func:`mark_valve`); a failed
valve recomputes the ring at once (the shutoff with every failed valve of the record), so the
record's valves, outage, customers and hydrants follow; the valves of the new ring join the
checklist as ``pending``. Each mark is also an exercise of the valve (``ok`` or ``failed``) in
its history (:mod:`analysis.shutdown_valves`).

Who did what is in ``shutdown_event``; each write takes a ``before_commit(conn, shutdown_id)``
hook, called on the write's connection just before it commits: the API and the command line
write their audit entry there. Conflicts with other shutdowns are :mod:`analysis.shutdown_conflicts`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from analysis.shutdown_conflicts import conflicts_of
from analysis.shutdown_valves import insert_exercise, parse_time
from analysis.shutoff import shutoff
from twin.cells import spreadsheet_safe
from twin.domain import APPURTENANCES
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain
from twin.schema import label, names
from twin.settings import TwinSettings

__all__ = [
    "STATUSES", "ACTIVE", "TRANSITIONS", "MOVES", "STATUS_ZH", "VALVE_STATES", "BeforeCommit",
    "plan_shutdown", "get_shutdown", "list_shutdowns", "move_shutdown", "mark_valve", "customers_csv",
]

STATUSES = ("planned", "notified", "executing", "restored", "cancelled")
#: Statuses of a shutdown still to come or under way: the ones that can conflict.
ACTIVE = ("planned", "notified", "executing")
TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"notified", "cancelled"}),
    "notified": frozenset({"executing", "cancelled"}),
    "executing": frozenset({"restored", "cancelled"}),
    "restored": frozenset(),
    "cancelled": frozenset(),
}
#: The command (CLI, API) that moves a shutdown, and the status it leads to.
MOVES = {"notify": "notified", "execute": "executing", "restore": "restored", "cancel": "cancelled"}
STATUS_ZH = {"planned": "计划", "notified": "已通知", "executing": "执行中", "restored": "已恢复",
             "cancelled": "已取消"}
VALVE_STATES = ("pending", "closed", "failed")
#: Called on the write's connection, with the shutdown's id, just before it commits (audit).
BeforeCommit = Callable[[sa.Connection, int], None]
_HYDRANT = ["hydrant", *APPURTENANCES["hydrant"]]
#: Columns of the notification list (customers): the catalogue's, but the utility (all the same).
CUSTOMER_COLUMNS = tuple(c for c in names("customer", versioning=False) if c != "utility")


# -- the state machine ----------------------------------------------------------------------------
def _check_move(shutdown_id: int, old: str, new: str) -> None:
    """Conflict unless a shutdown in status ``old`` may become ``new``."""
    if new not in TRANSITIONS.get(old, frozenset()):
        raise Conflict(f"shutdown {shutdown_id} is {old} ({STATUS_ZH[old]}); it cannot become {new} "
                       "(planned -> notified -> executing -> restored, or cancelled)",
                       zh=f"关阀计划 {shutdown_id} 状态为{STATUS_ZH[old]}（{old}），不能改为{STATUS_ZH.get(new, new)}（{new}）"
                          "（计划 -> 已通知 -> 执行中 -> 已恢复，或取消）")


def _locked(conn: sa.Connection, shutdown_id: int) -> sa.RowMapping:
    """The shutdown's row, locked until the transaction ends."""
    row = conn.execute(sa.text("SELECT * FROM shutdown WHERE id = :s FOR UPDATE"),
                       {"s": shutdown_id}).mappings().first()
    if row is None:
        raise NotFound(f"no shutdown {shutdown_id}", zh=f"没有关阀计划 {shutdown_id}")
    return row


def move_shutdown(engine: sa.Engine, shutdown_id: int, move: str, *, by: str, note: str | None = None,
                  before_commit: BeforeCommit | None = None) -> dict:
    """Notify, execute, restore or cancel a shutdown (``move`` a key of :data:`MOVES`)."""
    if move not in MOVES:
        raise InputError(f"a shutdown is moved by notify, execute, restore or cancel, not {move!r}",
                         zh=f"关阀计划的状态变更为 notify（通知）、execute（执行）、restore（恢复）或 cancel（取消），不是 {move!r}")
    new = MOVES[move]
    with engine.begin() as conn:
        row = _locked(conn, shutdown_id)
        _check_move(shutdown_id, row["status"], new)
        conn.execute(sa.text(
            "UPDATE shutdown SET status = :n, updated_by = :by, updated_at = now(), "
            "actual_start = CASE WHEN :n = 'executing' THEN now() ELSE actual_start END, "
            "actual_end = CASE WHEN :n = 'restored' OR (:n = 'cancelled' AND actual_start IS NOT NULL) "
            "THEN now() ELSE actual_end END WHERE id = :s"), {"n": new, "by": by, "s": shutdown_id})
        _event(conn, shutdown_id, by, move, from_status=row["status"], to_status=new, note=note)
        if before_commit is not None:
            before_commit(conn, shutdown_id)
    return get_shutdown(engine, shutdown_id)


# -- plan -----------------------------------------------------------------------------------------
def _window(start: str | dt.datetime, end: str | dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    if t0 is None or t1 is None:
        raise InputError("a shutdown needs a forecast start and end", zh="关阀计划须有预计开始和结束时间")
    if t1 <= t0:
        raise InputError(f"the end ({t1:%Y-%m-%d %H:%M}) must come after the start ({t0:%Y-%m-%d %H:%M})",
                         zh=f"结束时间（{t1:%Y-%m-%d %H:%M}）须晚于开始时间（{t0:%Y-%m-%d %H:%M}）")
    return t0, t1


def _answer(engine: sa.Engine, settings: TwinSettings, *, pipe: str | None, at: Sequence[float] | None,
            failed: Sequence[str] = ()) -> dict:
    """The shutoff answer with the hydrants out of service: what the record holds as its plan."""
    answer = shutoff(engine, pipe=pipe, at=at, failed_valves=failed,
                     exercise_years=settings.valve_exercise_years).as_dict()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, appurtenance, ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node "
            "WHERE id = ANY(:n) AND appurtenance = ANY(:h) ORDER BY id"),
            {"n": answer["isolated_nodes"] + answer["outage_nodes"], "h": _HYDRANT}).mappings().all()
    answer["hydrants"] = [plain(dict(r)) for r in rows]
    return answer


def plan_shutdown(
    engine: sa.Engine,
    settings: TwinSettings,
    *,
    pipe: str | None = None,
    at: Sequence[float] | None = None,
    start: str | dt.datetime,
    end: str | dt.datetime,
    reason: str | None = None,
    by: str,
    before_commit: BeforeCommit | None = None,
) -> dict:
    """Plan a shutdown of a pipe (or the pipe nearest ``at``) from ``start`` to ``end``: the record,
    with its conflicts with the other shutdowns planned or under way."""
    if (pipe is None) == (at is None):
        raise InputError("name exactly one of: a pipe (--pipe) or a point (--at E,N)",
                         zh="须且只能指定一项：一条管线（--pipe）或一个点（--at 东坐标,北坐标）")
    t0, t1 = _window(start, end)
    plan = _answer(engine, settings, pipe=pipe, at=at)
    with engine.begin() as conn:
        sid = int(conn.execute(sa.text(
            "INSERT INTO shutdown (utility, pipe, at_x, at_y, reason, planned_start, planned_end, created_by, "
            "plan) VALUES (:u, :p, :x, :y, :r, :t0, :t1, :by, CAST(:plan AS jsonb)) RETURNING id"),
            {"u": plan["utility"], "p": plan["pipe"], "x": at[0] if at else None, "y": at[1] if at else None,
             "r": reason, "t0": t0, "t1": t1, "by": by, "plan": json.dumps(plan, default=str)}).scalar())
        _sync_valves(conn, sid, plan)
        _event(conn, sid, by, "planned", to_status="planned", note=reason)
        if before_commit is not None:
            before_commit(conn, sid)
    return get_shutdown(engine, sid)


def _sync_valves(conn: sa.Connection, sid: int, plan: dict) -> None:
    """The checklist follows the plan: its valves needed, in order (new ones pending); the others
    no longer needed unless they failed (kept, as failed)."""
    rows = [{"s": sid, "v": v["id"], "o": v["order"], "a": v.get("added_for")} for v in plan["valves"]]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO shutdown_valve (shutdown_id, valve_id, position, added_for) VALUES (:s, :v, :o, :a) "
            "ON CONFLICT (shutdown_id, valve_id) DO UPDATE SET position = EXCLUDED.position, needed = true, "
            "added_for = EXCLUDED.added_for"), rows)
    conn.execute(sa.text(
        "UPDATE shutdown_valve SET needed = (state = 'failed') WHERE shutdown_id = :s AND NOT valve_id = ANY(:v)"),
        {"s": sid, "v": [r["v"] for r in rows]})


# -- the crew's checklist -------------------------------------------------------------------------
def mark_valve(engine: sa.Engine, settings: TwinSettings, shutdown_id: int, valve: str, state: str, *,
               by: str, note: str | None = None, before_commit: BeforeCommit | None = None) -> dict:
    """A crew marks a valve of an executing shutdown ``closed`` or ``failed``; a failed valve
    recomputes the ring at once. The record after the mark."""
    if state not in ("closed", "failed"):
        raise InputError(f"a valve is marked closed or failed, not {state!r}",
                         zh=f"阀门标记为 closed（已关）或 failed（关不上），不是 {state!r}")
    with engine.begin() as conn:
        row = _locked(conn, shutdown_id)
        if row["status"] != "executing":
            raise Conflict(f"shutdown {shutdown_id} is {row['status']} ({STATUS_ZH[row['status']]}): valves are "
                           "marked while it is executing",
                           zh=f"关阀计划 {shutdown_id} 状态为{STATUS_ZH[row['status']]}（{row['status']}）：阀门只能在执行中标记")
        old = conn.execute(sa.text(
            "SELECT state FROM shutdown_valve WHERE shutdown_id = :s AND valve_id = :v AND needed"),
            {"s": shutdown_id, "v": valve}).scalar()
        if old is None:
            raise NotFound(f"shutdown {shutdown_id} has no valve {valve!r} to close",
                           zh=f"关阀计划 {shutdown_id} 没有要关闭的阀门 {valve!r}")
        conn.execute(sa.text(
            "UPDATE shutdown_valve SET state = :st, marked_by = :by, marked_at = now() "
            "WHERE shutdown_id = :s AND valve_id = :v"), {"st": state, "by": by, "s": shutdown_id, "v": valve})
        insert_exercise(conn, valve, "ok" if state == "closed" else "failed", by=by,
                        note=f"shutdown {shutdown_id}" + (f": {note}" if note else ""))
        if state == "failed":
            failed = conn.execute(sa.text(
                "SELECT valve_id FROM shutdown_valve WHERE shutdown_id = :s AND state = 'failed' "
                "ORDER BY marked_at, valve_id"), {"s": shutdown_id}).scalars().all()
            plan = _answer(engine, settings, pipe=row["pipe"], at=None, failed=failed)
            conn.execute(sa.text("UPDATE shutdown SET plan = CAST(:p AS jsonb) WHERE id = :s"),
                         {"p": json.dumps(plan, default=str), "s": shutdown_id})
            _sync_valves(conn, shutdown_id, plan)
        _event(conn, shutdown_id, by, f"valve {state}", valve=valve, from_status=old, to_status=state, note=note)
        if before_commit is not None:
            before_commit(conn, shutdown_id)
    return get_shutdown(engine, shutdown_id)


# -- read -----------------------------------------------------------------------------------------
def get_shutdown(engine: sa.Engine, shutdown_id: int, *, with_conflicts: bool = True) -> dict:
    """The record: status, times, valves with their states, outage, customers, hydrants, events
    and (``with_conflicts``) its conflicts with the other shutdowns planned or under way."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM shutdown WHERE id = :s"), {"s": shutdown_id}).mappings().first()
        if row is None:
            raise NotFound(f"no shutdown {shutdown_id}", zh=f"没有关阀计划 {shutdown_id}")
        marks = conn.execute(sa.text(
            "SELECT valve_id, position, needed, added_for, state, marked_by, marked_at FROM shutdown_valve "
            "WHERE shutdown_id = :s ORDER BY needed DESC, position, valve_id"), {"s": shutdown_id}).mappings().all()
        events = conn.execute(sa.text(
            "SELECT at, by, action, valve_id, from_status, to_status, note FROM shutdown_event "
            "WHERE shutdown_id = :s ORDER BY at, id"), {"s": shutdown_id}).mappings().all()
    plan = dict(row["plan"])
    detail = {v["id"]: v for v in plan.pop("valves", [])}
    valves = [{**detail.get(m["valve_id"], {"id": m["valve_id"]}), "order": m["position"], "needed": m["needed"],
               "added_for": m["added_for"], "state": m["state"], "marked_by": m["marked_by"],
               "marked_at": m["marked_at"]} for m in marks]
    record = {**_summary(row), "valves": valves, **plan, "events": [dict(e) for e in events]}
    if with_conflicts:
        record["conflicts"] = conflicts_of(engine, shutdown_id)
    return plain(record)


def _summary(row: sa.RowMapping) -> dict:
    plan = row["plan"] or {}
    return {
        "id": row["id"], "status": row["status"], "status_zh": STATUS_ZH[row["status"]],
        "utility": row["utility"], "pipe": row["pipe"],
        "at": [row["at_x"], row["at_y"]] if row["at_x"] is not None else None, "reason": row["reason"],
        "planned_start": row["planned_start"], "planned_end": row["planned_end"],
        "actual_start": row["actual_start"], "actual_end": row["actual_end"],
        "created_by": row["created_by"], "created_at": row["created_at"],
        "updated_by": row["updated_by"], "updated_at": row["updated_at"],
        "customer_count": len(plan.get("customers", [])),
        "critical_count": len(plan.get("critical_customers", [])),
        "hydrant_count": len(plan.get("hydrants", [])),
    }


def list_shutdowns(engine: sa.Engine, *, status: str | None = None) -> list[dict]:
    """Every shutdown (or those in ``status``), soonest first: status, times, counts."""
    if status is not None and status not in STATUSES:
        raise InputError(f"a shutdown is {', '.join(STATUSES)}, not {status!r}",
                         zh=f"关阀计划状态为 {'、'.join(STATUSES)} 之一，不是 {status!r}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT * FROM shutdown WHERE CAST(:st AS text) IS NULL OR status = :st ORDER BY planned_start, id"),
            {"st": status}).mappings().all()
    return [plain(_summary(r)) for r in rows]


def customers_csv(engine: sa.Engine, shutdown_id: int) -> str:
    """The customers to notify, critical first (hospitals, schools, care homes), as CSV text;
    cells are spreadsheet-safe."""
    record = get_shutdown(engine, shutdown_id, with_conflicts=False)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["序号 no.", *(label("customer", c) for c in CUSTOMER_COLUMNS)])
    for n, c in enumerate(record["customers"], 1):
        writer.writerow([n, *(spreadsheet_safe(c.get(k)) for k in CUSTOMER_COLUMNS)])
    return out.getvalue()


def _event(conn: sa.Connection, sid: int, by: str, action: str, *, valve: str | None = None,
           from_status: str | None = None, to_status: str | None = None, note: str | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO shutdown_event (shutdown_id, by, action, valve_id, from_status, to_status, note) "
        "VALUES (:s, :by, :a, :v, :f, :t, :n)"),
        {"s": sid, "by": by, "a": action, "v": valve, "f": from_status, "t": to_status, "n": note})
