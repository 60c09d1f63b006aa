"""In the field (现场): the valves nearest where a crew stands.

A phone reports its position; the viewer transforms it into the twin CRS and asks for the
nearest live valves: a GiST nearest-neighbour search (``<->``) on the valve table, so the
network's size does not set the cost. Each valve carries where a crew finds it, as the
shutoff's closing order does (:func:`analysis.shutoff.place_valves`: the road of its pipe and
the surveyed depth at its point).
"""

from __future__ import annotations

import math

import sqlalchemy as sa

from analysis.shutoff import place_valves
from twin.db import twin_srid
from twin.domain import UTILITIES
from twin.errors import InputError
from twin.jsonable import plain

__all__ = ["nearest_valves", "MAX_VALVES"]

#: Valves answered at most.
MAX_VALVES = 50


def nearest_valves(conn: sa.Connection, x: float, y: float, *, n: int = 5,
                   utility: str | None = None) -> list[dict]:
    """The ``n`` live valves nearest the plan point (twin CRS), nearest first.

    Each has ``id``, ``pipe``, ``node``, ``utility``, ``operable``, ``normally_closed``,
    ``distance_m`` (plan distance in the twin CRS), ``x``, ``y``, ``z`` (the valve's position,
    normal height), ``road`` and ``depth_m`` (as the shutoff places valves). ``utility`` (a
    CJJ 61 code) keeps that network's valves only.
    """
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError("the position must be two finite numbers (easting, northing)",
                         zh="位置须为两个有限数（东坐标，北坐标）")
    if not 1 <= n <= MAX_VALVES:
        raise InputError(f"n: between 1 and {MAX_VALVES} valves", zh=f"n：取 1 到 {MAX_VALVES} 个阀门")
    if utility is not None and utility not in UTILITIES:
        raise InputError(f"utility: one of {', '.join(UTILITIES)}, not {utility[:20]!r}",
                         zh=f"utility 管线类别：取 {'、'.join(UTILITIES)} 之一，不是 {utility[:20]!r}")
    rows = conn.execute(sa.text(
        # The point written out in ORDER BY (not joined from a CTE): only a constant lets the
        # GiST index answer the nearest-neighbour order.
        "SELECT v.id, v.segment_id, v.node_id, v.utility, v.operable, v.normally_closed, "
        "  ST_Distance(ST_Force2D(v.geom), ST_SetSRID(ST_MakePoint(:x, :y), :srid)) AS d, "
        "  ST_X(v.geom) AS vx, ST_Y(v.geom) AS vy, ST_Z(v.geom) AS vz "
        "FROM current_valve v WHERE (CAST(:u AS text) IS NULL OR v.utility = :u) "
        "ORDER BY v.geom <-> ST_SetSRID(ST_MakePoint(:x, :y), :srid) LIMIT :n"),
        {"x": float(x), "y": float(y), "srid": twin_srid(conn), "u": utility, "n": int(n)}).all()
    valves = [{"id": r.id, "pipe": r.segment_id, "node": r.node_id, "utility": r.utility,
               "operable": r.operable, "normally_closed": r.normally_closed,
               "distance_m": round(float(r.d), 2), "x": round(float(r.vx), 3), "y": round(float(r.vy), 3),
               "z": None if r.vz is None else round(float(r.vz), 3)} for r in rows]
    place_valves(conn, valves)
    # The index orders by the box distance of 2D geometries; ties and 3D keys are settled here.
    valves.sort(key=lambda v: (v["distance_m"], v["id"]))
    return plain(valves)  # type: ignore[return-value]
