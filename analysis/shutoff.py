"""Valve shutoff for a burst (关阀分析) and the next ring when valves fail (二次关阀).

:func:`isolate` answers on an :class:`~analysis.segments.IsolationModel` held in memory:
the segment of the burst pipe is found from its label, its boundary valves from the valves
grouped by segment, and valves that will not turn (inoperable in the twin, or named as
failed) are stepped through into the neighbouring segment until every boundary valve can
close. What then loses supply is found on the small graph of supply units (one vertex per
unit, one edge per open valve), so a query costs the size of the answer plus one pass over
the valves, not a pass over the pipes.

:func:`shutoff` is the entry point for callers holding a database: it checks the request
against the twin (unknown pipe, drainage pipe, point far from any pipe) and keeps one model
per twin in memory, rebuilt when the network's fingerprint changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analysis.segments import IsolationModel, build_model, network_fingerprint
from twin.domain import GRAVITY_UTILITIES, PRESSURISED_UTILITIES, UTILITIES
from twin.errors import InputError, NotFound

__all__ = ["Shutoff", "isolate", "shutoff", "pipe_at", "cached_model"]


@dataclass
class Shutoff:
    """The answer to a burst: what to close, in which order, and what loses supply."""

    utility: str
    pipe: str | None
    node: str | None
    valves: list[dict]
    failed_valves: list[dict]
    added_for_failures: dict[str, list[str]]
    isolated_pipes: list[str]
    isolated_nodes: list[str]
    outage_pipes: list[str]
    outage_nodes: list[str]
    customers: list[dict]
    critical_customers: list[dict]
    length_m: float
    volume_m3: float
    outage_length_m: float
    segments: list[int]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)


def _volume_m3(links: pd.DataFrame) -> np.ndarray:
    length = links["length_m"].to_numpy(float)
    circ = links["shape"].to_numpy() == "circular"
    d = links["diameter_mm"].to_numpy(float) / 1000.0
    w = links["width_mm"].to_numpy(float) / 1000.0
    h = links["height_mm"].to_numpy(float) / 1000.0
    area = np.where(circ, np.pi * d * d / 4.0, w * h)
    return np.nan_to_num(area * length)


def isolate(
    model: IsolationModel,
    *,
    pipe: str | None = None,
    node: str | None = None,
    failed_valves: Iterable[str] = (),
) -> Shutoff:
    """Valves to close around a pipe (or node) of the model, stepping past failed valves."""
    if (pipe is None) == (node is None):
        raise InputError("name exactly one pipe or one node")
    if pipe is not None:
        pos = model.link_position(pipe)
        if pos < 0:
            raise NotFound(f"no live pressurised pipe {pipe!r}")
        start = int(model.link_seg[pos])
        utility = str(model.links["utility"].iat[pos])
    else:
        pos = model.node_position(node)
        if pos < 0:
            raise NotFound(f"no node {node!r} on a pressurised network")
        start = int(model.node_seg[pos])
        utility = str(model.nodes["utility"].iat[pos])
    failed_ids = list(dict.fromkeys(failed_valves))
    fpos = model.valve_positions(failed_ids)
    if (fpos < 0).any():
        raise NotFound(f"no valve {failed_ids[int(np.flatnonzero(fpos < 0)[0])]!r}")

    v = model.valves
    n_valves = len(v)
    failed = ~v["operable"].to_numpy(bool)
    reported = np.zeros(n_valves, dtype=bool)
    reported[fpos] = True
    failed |= reported
    shut = v["normally_closed"].to_numpy(bool)
    side_link = model.link_seg[model.valve_link]
    side_node = model.node_seg[model.valve_node]

    # Grow the region through failed valves; remember which failure let each segment in.
    region: dict[int, int] = {start: -1}
    frontier = [start]
    met_failed: list[int] = []
    while frontier:
        s = frontier.pop()
        for k in model.seg_valves.members(np.array([s])):
            other = side_node[k] if side_link[k] == s else side_link[k]
            if other == s or shut[k] or other in region:
                continue
            if failed[k]:
                met_failed.append(int(k))
                region[int(other)] = int(k)
                frontier.append(int(other))
    segs = np.fromiter(region, dtype=np.int64)
    in_region = np.zeros(model.n_segments, dtype=bool)
    in_region[segs] = True
    touching = model.seg_valves.members(segs)
    touching = np.unique(touching)
    a, b = in_region[side_link[touching]], in_region[side_node[touching]]
    boundary = touching[(a != b) & ~shut[touching] & ~failed[touching]]

    # Which failure made each boundary valve necessary: the failure that let its segment in.
    def cause(k: int) -> int:
        s = side_link[k] if in_region[side_link[k]] else side_node[k]
        return region[int(s)]

    dist = model.node_distance_m[model.valve_node[boundary]]
    order = np.lexsort((v["id"].to_numpy()[boundary].astype(str), dist))
    boundary, dist = boundary[order], dist[order]
    valves_out = []
    added: dict[str, list[str]] = {}
    for rank, k in enumerate(boundary, start=1):
        c = cause(int(k))
        rec = _valve_record(model, int(k))
        rec["order"] = rank
        d = dist[rank - 1]
        rec["distance_from_source_m"] = round(float(d), 2) if np.isfinite(d) else None
        rec["added_for"] = None if c < 0 else str(v["id"].iat[c])
        valves_out.append(rec)
        if c >= 0:
            added.setdefault(str(v["id"].iat[c]), []).append(rec["id"])
    failed_out = []
    for k in dict.fromkeys(met_failed):
        rec = _valve_record(model, k)
        rec["reason"] = "reported failed" if reported[k] else "inoperable in the twin"
        failed_out.append(rec)
    for k in fpos:  # failed valves named but not on the way: say so
        if int(k) not in met_failed:
            rec = _valve_record(model, int(k))
            rec["reason"] = "reported failed, not needed for this shutoff"
            failed_out.append(rec)

    # Supply: units of the region are drained; what else no longer reaches a source?
    unit_in_region = in_region[model.unit_seg]
    dead_units = np.flatnonzero(unit_in_region)
    reached = model.reached_units(dead_units, boundary)
    outage_units = np.flatnonzero(model.supplied & ~reached & ~unit_in_region)
    iso_links = np.sort(model.link_groups.members(segs))
    iso_nodes = np.sort(model.node_groups.members(segs))
    out_links = np.sort(model.link_unit_groups.members(outage_units))
    out_nodes = np.sort(model.node_unit_groups.members(outage_units))

    lost_nodes = set(model.nodes["id"].to_numpy()[np.concatenate([iso_nodes, out_nodes])])
    cust = model.customers[model.customers["node_id"].isin(lost_nodes)]
    cust = cust.sort_values(["critical", "id"], ascending=[False, True])
    customers = [_clean(r) for r in cust.to_dict("records")]
    links = model.links
    notes = []
    if not len(model.valves[model.valves["utility"] == utility]):
        notes.append(f"no valves are recorded on the {UTILITIES[utility].name_en} network: "
                     "the whole connected network is one segment")
    if not len(boundary):
        notes.append("no valve can cut this segment off: it is bounded by sources, dead ends "
                     "or valves that cannot close")
    if not len(model.sources[model.sources["utility"] == utility]):
        notes.append(f"no sources are recorded on the {UTILITIES[utility].name_en} network: "
                     "supply outage beyond the isolated segment cannot be told")
    vol = _volume_m3(links.iloc[iso_links])
    return Shutoff(
        utility=utility,
        pipe=pipe,
        node=node,
        valves=valves_out,
        failed_valves=failed_out,
        added_for_failures=added,
        isolated_pipes=links["id"].to_numpy()[iso_links].tolist(),
        isolated_nodes=model.nodes["id"].to_numpy()[iso_nodes].tolist(),
        outage_pipes=links["id"].to_numpy()[out_links].tolist(),
        outage_nodes=model.nodes["id"].to_numpy()[out_nodes].tolist(),
        customers=customers,
        critical_customers=[c for c in customers if c["critical"]],
        length_m=round(float(links["length_m"].to_numpy(float)[iso_links].sum()), 3),
        volume_m3=round(float(vol.sum()), 3),
        outage_length_m=round(float(links["length_m"].to_numpy(float)[out_links].sum()), 3),
        segments=sorted(int(s) for s in segs),
        notes=notes,
    )


def _clean(rec: dict) -> dict:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v.item() if isinstance(v, np.generic) else v)
            for k, v in rec.items()}


def _valve_record(model: IsolationModel, k: int) -> dict:
    v = model.valves.iloc[k]
    return _clean({
        "id": v["id"], "pipe": v["segment_id"], "node": v["node_id"], "kind": v["kind"],
        "operable": bool(v["operable"]), "x": float(v["x"]), "y": float(v["y"]),
    })


# ---- against the database

_cache: dict[tuple[str, str], IsolationModel] = {}
_lock = threading.Lock()


def cached_model(engine: sa.Engine, schema: str | None = None) -> IsolationModel:
    """The isolation model of this twin, rebuilt only when its fingerprint has changed."""
    key = (engine.url.render_as_string(hide_password=True), schema or "")
    with _lock, engine.connect() as conn:
        fingerprint = network_fingerprint(conn)
        model = _cache.get(key)
        if model is None or model.fingerprint != fingerprint:
            model = build_model(conn)
            _cache[key] = model
        return model


def pipe_at(conn: sa.Connection, x: float, y: float, max_distance_m: float = 25.0) -> tuple[str, float]:
    """The live pressurised pipe nearest a plan point (twin CRS), and its distance."""
    row = conn.execute(
        sa.text(
            "WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), Find_SRID(current_schema()::text, "
            "'segment', 'geom')) AS g) "
            "SELECT s.id, ST_Distance(s.geom, p.g) AS d FROM current_segment s, p "
            "WHERE s.utility = ANY(:u) AND s.status = 'active' ORDER BY s.geom <-> p.g LIMIT 1"
        ),
        {"x": x, "y": y, "u": sorted(PRESSURISED_UTILITIES)},
    ).first()
    if row is None:
        raise NotFound("the twin has no water, gas or heat pipes")
    if row.d > max_distance_m:
        raise InputError(f"no water, gas or heat pipe within {max_distance_m:g} m of ({x:.2f}, {y:.2f}); "
                         f"the nearest, {row.id}, is {row.d:.1f} m away")
    return str(row.id), float(row.d)


def _explain_pipe(conn: sa.Connection, pipe: str) -> None:
    row = conn.execute(sa.text("SELECT utility, status, retired_at FROM segment WHERE id = :i"),
                       {"i": pipe}).first()
    if row is None:
        raise NotFound(f"no pipe {pipe!r} in the twin")
    name = UTILITIES[row.utility].name_en if row.utility in UTILITIES else row.utility
    if row.retired_at is not None:
        raise InputError(f"pipe {pipe!r} was retired on {row.retired_at:%Y-%m-%d}")
    if row.utility in GRAVITY_UTILITIES:
        raise InputError(f"{pipe!r} is a {name} pipe: gravity networks have no valves to close")
    if row.utility not in PRESSURISED_UTILITIES:
        raise InputError(f"{pipe!r} is a {name} line ({row.utility}): only water, gas and heat "
                         "networks are shut off with valves")
    if row.status != "active":
        raise InputError(f"pipe {pipe!r} is {row.status}: it carries nothing to shut off")


def shutoff(
    engine: sa.Engine,
    *,
    pipe: str | None = None,
    node: str | None = None,
    at: Sequence[float] | None = None,
    failed_valves: Iterable[str] = (),
    max_distance_m: float = 25.0,
) -> Shutoff:
    """Shut off a burst named by pipe id, node id or plan point, on the twin's current network."""
    if sum(a is not None for a in (pipe, node, at)) != 1:
        raise InputError("name exactly one of: a pipe, a node, a point")
    model = cached_model(engine)
    with engine.connect() as conn:
        if at is not None:
            if len(at) != 2 or not all(np.isfinite(at)):
                raise InputError("a point is two finite numbers: easting,northing")
            pipe, _ = pipe_at(conn, float(at[0]), float(at[1]), max_distance_m)
        if pipe is not None and model.link_position(pipe) < 0:
            _explain_pipe(conn, pipe)
            raise NotFound(f"pipe {pipe!r} is not part of the isolation model")  # pragma: no cover
        if node is not None and model.node_position(node) < 0:
            row = conn.execute(sa.text("SELECT utility FROM current_node WHERE id = :i"), {"i": node}).first()
            if row is None:
                raise NotFound(f"no node {node!r} in the twin")
            raise InputError(f"node {node!r} is on the {row.utility} network: only water, gas and heat "
                             "networks are shut off with valves")
    return isolate(model, pipe=pipe, node=node, failed_valves=failed_valves)
