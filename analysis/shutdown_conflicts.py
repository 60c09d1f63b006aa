"""Conflicts between shutdowns (关阀冲突): two at once may cut off more than each alone.

Two shutdowns planned or under way conflict when their time windows overlap (actual times
where known, forecast ones otherwise) and

- their outages overlap (a pipe or a customer in both): ``shared outage``;
- they close the same valve: whichever is restored first reopens it under the other,
  ``shared valves``;
- or together they cut off more than apart: the shutoff run with both sets of valves closed
  (both isolated regions drained at once) against the union of the two separate outages,
  Giswater's mincut overlap check. What only the two together cut off is ``more together``,
  with its pipes and customers (critical ones named).

Each record is answered again on the current network (its pipe and its failed valves), so the
check follows edits of the twin.

>>> _overlap(("2026-12-03T08", "2026-12-03T12"), ("2026-12-03T11", "2026-12-03T15"))
('2026-12-03T11', '2026-12-03T12')
>>> _overlap(("2026-12-03T08", "2026-12-03T12"), ("2026-12-03T12", "2026-12-03T15")) is None
True
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from analysis.segments import IsolationModel
from analysis.shutoff import Shutoff, cached_model, isolate
from twin.errors import TwinError
from twin.jsonable import plain

__all__ = ["conflicts_of", "pair_conflict", "combined_outage"]

_ACTIVE = ("planned", "notified", "executing")
_WINDOW = ("coalesce(actual_start, planned_start)", "coalesce(actual_end, planned_end)")


def _overlap(a: tuple, b: tuple) -> tuple | None:
    """The common part of two time windows ``(start, end)``, None when they do not overlap."""
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return (start, end) if start < end else None


def combined_outage(model: IsolationModel, segments: list[int]) -> tuple[set[str], dict[str, bool]]:
    """Pipes and customers (id -> critical) without supply once the ``segments`` are all drained."""
    segs = np.unique(np.asarray(segments, dtype=np.int64))
    dead = model.unit_groups.members(segs)
    cut = model.cut_off_units(dead)
    links = np.concatenate([model.link_groups.members(segs), model.link_unit_groups.members(cut)])
    lost = model.customer_groups.members(np.concatenate([dead, cut]))
    cc = model.customer_columns
    return (set(model.link_ids[links].tolist()),
            dict(zip(cc["id"][lost].astype(str).tolist(), cc["critical"][lost].astype(bool).tolist(), strict=True)))


def pair_conflict(model: IsolationModel, a: Shutoff, b: Shutoff) -> dict:
    """What two shutoff answers share, and what only both together cut off (empty lists: no conflict)."""
    pipes_a = set(a.isolated_pipes) | set(a.outage_pipes)
    pipes_b = set(b.isolated_pipes) | set(b.outage_pipes)
    cust_a, cust_b = {c["id"] for c in a.customers}, {c["id"] for c in b.customers}
    both_pipes, both_customers = combined_outage(model, sorted(set(a.segments) | set(b.segments)))
    extra = sorted(set(both_customers) - cust_a - cust_b)
    found = {
        "shared_pipes": sorted(pipes_a & pipes_b),
        "shared_customers": sorted(cust_a & cust_b),
        "shared_valves": sorted({v["id"] for v in a.valves} & {v["id"] for v in b.valves}),
        "extra_pipes": sorted(both_pipes - pipes_a - pipes_b),
        "extra_customers": extra,
        "extra_critical_customers": [c for c in extra if both_customers[c]],
    }
    kinds = []
    if found["shared_pipes"] or found["shared_customers"]:
        kinds.append("shared outage")
    if found["shared_valves"]:
        kinds.append("shared valves")
    if found["extra_pipes"] or found["extra_customers"]:
        kinds.append("more together")
    return {"kinds": kinds, **found}


def _answer(model: IsolationModel, pipe: str, failed: list[str]) -> Shutoff | None:
    """A record's shutoff on the current network (its failed valves failed); None when its pipe is gone."""
    try:
        return isolate(model, pipe=pipe, failed_valves=[v for v in failed if model.valve_positions([v])[0] >= 0])
    except TwinError:
        return None


def conflicts_of(engine: sa.Engine, shutdown_id: int) -> list[dict]:
    """The conflicts of a shutdown with every other one planned or under way at the same time."""
    sql = (f"SELECT id, status, pipe, {_WINDOW[0]} AS t0, {_WINDOW[1]} AS t1 FROM shutdown "
           "WHERE status = ANY(:a) AND pipe IS NOT NULL")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"a": list(_ACTIVE)}).mappings().all()
        me = next((r for r in rows if r["id"] == shutdown_id), None)
        others = [(r, w) for r in rows if me is not None and r["id"] != shutdown_id
                  and (w := _overlap((me["t0"], me["t1"]), (r["t0"], r["t1"]))) is not None]
        if not others:
            return []
        failed: dict[int, list[str]] = {}
        for sid, valve in conn.execute(sa.text(
                "SELECT shutdown_id, valve_id FROM shutdown_valve WHERE state = 'failed' AND shutdown_id = ANY(:s)"),
                {"s": [shutdown_id, *(r["id"] for r, _ in others)]}).all():
            failed.setdefault(sid, []).append(valve)
        model = cached_model(engine)
        mine = _answer(model, me["pipe"], failed.get(shutdown_id, []))
        out = []
        for r, window in others:
            theirs = _answer(model, r["pipe"], failed.get(r["id"], []))
            if mine is None or theirs is None:
                continue
            found = pair_conflict(model, mine, theirs)
            if found["kinds"]:
                out.append({"shutdown": r["id"], "status": r["status"], "pipe": r["pipe"],
                            "overlap": list(window), **found})
    return plain(out)
