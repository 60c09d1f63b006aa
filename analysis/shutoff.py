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
per twin in memory, rebuilt when the network's fingerprint changes, and on disk
(:mod:`analysis.model_store`) so that other workers and commands load it instead of building it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import sqlalchemy as sa

from analysis.model_store import ModelStore
from analysis.segments import IsolationModel, build_model, network_fingerprint
from analysis.shutdown_valves import reliability
from twin.db import engine_settings, twin_srid
from twin.domain import GRAVITY_UTILITIES, PRESSURISED_UTILITIES, UTILITIES, name_zh
from twin.errors import InputError, NotFound
from twin.jsonable import plain
from twin.settings import get_settings

__all__ = ["Shutoff", "isolate", "shutoff", "pipe_at", "cached_model", "flag_likely_to_fail"]


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
    #: For each valve of the closing order likely to fail (exercise history): its next ring.
    next_ring: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return plain(asdict(self))


def isolate(
    model: IsolationModel,
    *,
    pipe: str | None = None,
    node: str | None = None,
    failed_valves: Iterable[str] = (),
) -> Shutoff:
    """Valves to close around a pipe (or node) of the model, stepping past failed valves."""
    start, utility = _burst_segment(model, pipe, node)
    failed_ids = list(dict.fromkeys(failed_valves))
    fpos = model.valve_positions(failed_ids)
    if (fpos < 0).any():
        raise NotFound(f"no valve {failed_ids[int(np.flatnonzero(fpos < 0)[0])]!r}",
                       zh=f"没有阀门 {failed_ids[int(np.flatnonzero(fpos < 0)[0])]!r}")
    reported = {int(k) for k in fpos}
    region, met_failed = _grow_region(model, start, reported)
    segs = np.fromiter(region, dtype=np.int64)
    boundary, inner_side = _boundary_valves(model, segs, reported)
    valves_out, added = _valves_to_close(model, region, boundary, inner_side)
    failed_out = _failed_valve_records(model, met_failed, reported, fpos)

    # Supply: units of the region are drained; what else no longer reaches a source?
    dead_units = model.unit_groups.members(segs)
    outage_units = model.cut_off_units(dead_units)
    iso_links = np.sort(model.link_groups.members(segs))
    iso_nodes = np.sort(model.node_groups.members(segs))
    out_links = np.sort(model.link_unit_groups.members(outage_units))
    out_nodes = np.sort(model.node_unit_groups.members(outage_units))
    customers = _customers_of(model, np.concatenate([dead_units, outage_units]))
    return Shutoff(
        utility=utility,
        pipe=pipe,
        node=node,
        valves=valves_out,
        failed_valves=failed_out,
        added_for_failures=added,
        isolated_pipes=model.link_ids[iso_links].tolist(),
        isolated_nodes=model.node_ids[iso_nodes].tolist(),
        outage_pipes=model.link_ids[out_links].tolist(),
        outage_nodes=model.node_ids[out_nodes].tolist(),
        customers=customers,
        critical_customers=[c for c in customers if c["critical"]],
        length_m=round(float(model.link_length_m[iso_links].sum()), 3),
        volume_m3=round(float(model.link_volume_m3[iso_links].sum()), 3),
        outage_length_m=round(float(model.link_length_m[out_links].sum()), 3),
        segments=sorted(int(s) for s in segs),
        notes=_notes(model, utility, bool(len(boundary))),
    )


def _burst_segment(model: IsolationModel, pipe: str | None, node: str | None) -> tuple[int, str]:
    """The segment holding the burst pipe (or node), and its utility."""
    if (pipe is None) == (node is None):
        raise InputError("name exactly one pipe or one node", zh="须且只能指定一条管线或一个管点")
    if pipe is not None:
        pos = model.link_position(pipe)
        if pos < 0:
            raise NotFound(f"no live pressurised pipe {pipe!r}", zh=f"没有在用的有压管线 {pipe!r}")
        return int(model.link_seg[pos]), str(model.link_utility[pos])
    pos = model.node_position(node)
    if pos < 0:
        raise NotFound(f"no node {node!r} on a pressurised network", zh=f"有压管网中没有管点 {node!r}")
    return int(model.node_seg[pos]), str(model.nodes["utility"].iat[pos])


def _grow_region(model: IsolationModel, start: int, reported: set[int]) -> tuple[dict[int, int], list[int]]:
    """The segments to isolate: ``start`` grown through valves that fail (inoperable or reported).

    Returns each segment with the failed valve that let it in (-1 for ``start``), and the
    failed valves met, in the order met.
    """
    inoperable, shut = model.valve_inoperable, model.valve_shut
    side_link, side_node = model.valve_side_link, model.valve_side_node
    region: dict[int, int] = {start: -1}
    frontier = [start]
    met_failed: list[int] = []
    while frontier:
        s = frontier.pop()
        ks = model.seg_valves.members(np.array([s]))
        others = np.where(side_link[ks] == s, side_node[ks], side_link[ks])
        for k, other in zip(ks.tolist(), others.tolist(), strict=True):
            if other == s or shut[k] or other in region:
                continue
            if inoperable[k] or k in reported:
                met_failed.append(k)
                region[other] = k
                frontier.append(other)
    return region, met_failed


def _boundary_valves(model: IsolationModel, segs: np.ndarray, reported: set[int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The valves to close around the segments ``segs`` and the inner segment of each, in
    closing order: nearest a source first, then by id."""
    side_link, side_node = model.valve_side_link, model.valve_side_node
    touching = np.unique(model.seg_valves.members(segs))
    a, b = np.isin(side_link[touching], segs), np.isin(side_node[touching], segs)
    failed_mask = model.valve_inoperable[touching] | np.isin(touching, list(reported))
    keep = (a != b) & ~model.valve_shut[touching] & ~failed_mask
    boundary, inner_side = touching[keep], np.where(a[keep], side_link[touching][keep], side_node[touching][keep])
    dist = model.node_distance_m[model.valve_node[boundary]]
    order = np.lexsort((model.valve_columns["id"][boundary].astype(str), dist))
    return boundary[order], inner_side[order]


def _valves_to_close(model: IsolationModel, region: dict[int, int], boundary: np.ndarray,
                     inner_side: np.ndarray) -> tuple[list[dict], dict[str, list[str]]]:
    """The boundary valves' records in order, and the valves added for each failed valve."""
    dist = model.node_distance_m[model.valve_node[boundary]]
    ids = model.valve_columns["id"]
    valves_out = []
    added: dict[str, list[str]] = {}
    for rank, (k, d, side) in enumerate(zip(boundary.tolist(), dist.tolist(), inner_side.tolist(), strict=True), 1):
        c = region[side]  # the failure that let this valve's segment into the region
        rec = _valve_record(model, k)
        rec["order"] = rank
        rec["distance_from_source_m"] = round(d, 2) if np.isfinite(d) else None
        rec["added_for"] = None if c < 0 else str(ids[c])
        valves_out.append(rec)
        if c >= 0:
            added.setdefault(str(ids[c]), []).append(rec["id"])
    return valves_out, added


def _failed_valve_records(model: IsolationModel, met_failed: list[int], reported: set[int],
                          fpos: np.ndarray) -> list[dict]:
    """The failed valves met, with why they failed, then those reported but not on the way."""
    failed_out = []
    for k in dict.fromkeys(met_failed):
        rec = _valve_record(model, k)
        rec["reason"] = "reported failed" if k in reported else "inoperable in the twin"
        failed_out.append(rec)
    for k in fpos.tolist():  # failed valves named but not on the way: say so
        if k not in met_failed:
            rec = _valve_record(model, k)
            rec["reason"] = "reported failed, not needed for this shutoff"
            failed_out.append(rec)
    return failed_out


def _customers_of(model: IsolationModel, units: np.ndarray) -> list[dict]:
    """The customers of the supply units ``units``: critical first, then by id."""
    lost = model.customer_groups.members(units)
    cc = model.customer_columns
    lost = lost[np.lexsort((cc["id"][lost].astype(str), ~cc["critical"][lost].astype(bool)))]
    return [plain({c: cc[c][k] for c in cc}) for k in lost.tolist()]


def _notes(model: IsolationModel, utility: str, has_boundary: bool) -> list[str]:
    """What the answer cannot tell: no valves, no boundary valve, no sources recorded."""
    notes = []  # Chinese first: the crew reads them
    if not model.valves_by_utility.get(utility, 0):
        notes.append(f"{UTILITIES[utility].name_zh}管网没有阀门记录：整个连通管网为一个分段 "
                     f"no valves are recorded on the {UTILITIES[utility].name_en} network: "
                     "the whole connected network is one segment")
    if not has_boundary:
        notes.append("没有阀门能关断此分段：它由供应源、尽端或关不上的阀门围成 "
                     "no valve can cut this segment off: it is bounded by sources, dead ends "
                     "or valves that cannot close")
    if not model.sources_by_utility.get(utility, 0):
        notes.append(f"{UTILITIES[utility].name_zh}管网没有供应源（水源、气源或热源）记录：无法判断关阀分段以外的停供范围 "
                     f"no sources are recorded on the {UTILITIES[utility].name_en} network: "
                     "supply outage beyond the isolated segment cannot be told")
    return notes


def _valve_record(model: IsolationModel, k: int) -> dict:
    return plain({c: model.valve_columns[c][k] for c in ("id", "pipe", "node", "kind", "operable", "x", "y")})


# ---- against the database

_cache: dict[tuple[str, str], IsolationModel] = {}
_lock = threading.Lock()


def cached_model(engine: sa.Engine) -> IsolationModel:
    """The isolation model of this twin, rebuilt only when its change marks have moved.

    Only a rebuild takes the lock: concurrent shutoffs on an unchanged network do not queue
    behind each other's look-up of the change mark. A rebuild first looks for the model of
    this state of the twin on disk (built by another worker or command).
    """
    with engine.connect() as conn:  # (given back before a rebuild, which reads on a snapshot of its own)
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
        key = (engine.url.render_as_string(hide_password=True), str(schema))
        fingerprint = network_fingerprint(conn)
    model = _cache.get(key)
    if model is not None and model.fingerprint == fingerprint:
        return model
    with _lock:
        model = _cache.get(key)
        if model is None or model.fingerprint != fingerprint:
            model = _fresh_model(engine)
            _cache[key] = model
        return model


#: What the cached model covers (the store's folder names carry it).
_COVERS = "pressurised:" + ",".join(sorted(PRESSURISED_UTILITIES))


def _fresh_model(engine: sa.Engine) -> IsolationModel:
    """The model of the twin's current state: from the store when one is there, else built
    (and stored). One snapshot: the change mark it is filed under is the one of what it read."""
    settings = engine_settings(engine)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        if settings is None:  # an engine not made by twin.db: no place to keep it
            return build_model(conn)
        store = ModelStore(settings.model_dir or settings.data_dir / "models")
        name = store.name(conn, _COVERS)
        model = store.load(name)
        if model is None:
            with store.building(name):
                model = store.load(name)  # built by another process while this one waited
                if model is None:
                    model = build_model(conn)
                    store.save(name, model)
        return model


def pipe_at(conn: sa.Connection, x: float, y: float, max_distance_m: float = 25.0) -> tuple[str, float]:
    """The live pressurised pipe nearest a plan point (twin CRS), and its distance."""
    srid = twin_srid(conn)
    row = conn.execute(
        sa.text(
            "WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), :srid) AS g) "
            "SELECT s.id, ST_Distance(s.geom, p.g) AS d FROM current_segment s, p "
            "WHERE s.utility = ANY(:u) AND s.status = 'active' ORDER BY s.geom <-> p.g LIMIT 1"
        ),
        {"x": x, "y": y, "srid": srid, "u": sorted(PRESSURISED_UTILITIES)},
    ).first()
    if row is None:
        raise NotFound("the twin has no water, gas or heat pipes", zh="孪生库中没有给水、燃气或热力管线")
    if row.d > max_distance_m:
        raise InputError(f"no water, gas or heat pipe within {max_distance_m:g} m of ({x:.2f}, {y:.2f}); "
                         f"the nearest, {row.id}, is {row.d:.1f} m away",
                         zh=f"({x:.2f}, {y:.2f}) 周围 {max_distance_m:g} 米内没有给水、燃气或热力管线；"
                            f"最近的 {row.id} 距离 {row.d:.1f} 米")
    return str(row.id), float(row.d)


def _explain_pipe(conn: sa.Connection, pipe: str) -> None:
    row = conn.execute(sa.text("SELECT utility, status, retired_at FROM segment WHERE id = :i"),
                       {"i": pipe}).first()
    if row is None:
        raise NotFound(f"no pipe {pipe!r} in the twin", zh=f"孪生库中没有管线 {pipe!r}")
    name = UTILITIES[row.utility].name_en if row.utility in UTILITIES else row.utility
    if row.retired_at is not None:
        raise InputError(f"pipe {pipe!r} was retired on {row.retired_at:%Y-%m-%d}",
                         zh=f"管线 {pipe!r} 已于 {row.retired_at:%Y-%m-%d} 废弃")
    if row.utility in GRAVITY_UTILITIES:
        raise InputError(f"{pipe!r} is a {name} pipe: gravity networks have no valves to close",
                         zh=f"{pipe!r} 是{name_zh(row.utility)}管线：重力管网没有可关的阀门")
    if row.utility not in PRESSURISED_UTILITIES:
        raise InputError(f"{pipe!r} is a {name} line ({row.utility}): only water, gas and heat "
                         "networks are shut off with valves",
                         zh=f"{pipe!r} 是{name_zh(row.utility)}管线（{row.utility}）：只有给水、燃气和热力管网用阀门关断")
    if row.status != "active":
        raise InputError(f"pipe {pipe!r} is {row.status}: it carries nothing to shut off",
                         zh=f"管线 {pipe!r} 状态为 {row.status}：其中没有输送介质可关断")


def shutoff(
    engine: sa.Engine,
    *,
    pipe: str | None = None,
    node: str | None = None,
    at: Sequence[float] | None = None,
    failed_valves: Iterable[str] = (),
    max_distance_m: float = 25.0,
    exercise_years: float | None = None,
) -> Shutoff:
    """Shut off a burst named by pipe id, node id or plan point, on the twin's current network.

    Valves of the closing order not exercised for ``exercise_years`` (``TWIN_VALVE_EXERCISE_YEARS``
    when unset) or whose last exercise failed are flagged ``likely_to_fail``, each with its next ring.
    """
    if sum(a is not None for a in (pipe, node, at)) != 1:
        raise InputError("name exactly one of: a pipe, a node, a point",
                         zh="须且只能指定一项：一条管线、一个管点或一个位置")
    failed_valves = list(failed_valves)
    model = cached_model(engine)
    with engine.connect() as conn:
        if at is not None:
            if len(at) != 2 or not all(np.isfinite(at)):
                raise InputError("a point is two finite numbers: easting,northing",
                                 zh="位置须为两个有限数：东坐标,北坐标")
            pipe, _ = pipe_at(conn, float(at[0]), float(at[1]), max_distance_m)
        if pipe is not None and model.link_position(pipe) < 0:
            _explain_pipe(conn, pipe)
            raise NotFound(f"pipe {pipe!r} is not part of the isolation model",
                           zh=f"管线 {pipe!r} 不在关阀模型中")  # pragma: no cover
        if node is not None and model.node_position(node) < 0:
            row = conn.execute(sa.text("SELECT utility FROM current_node WHERE id = :i"), {"i": node}).first()
            if row is None:
                raise NotFound(f"no node {node!r} in the twin", zh=f"孪生库中没有管点 {node!r}")
            raise InputError(f"node {node!r} is on the {row.utility} network: only water, gas and heat "
                             "networks are shut off with valves",
                             zh=f"管点 {node!r} 属于{name_zh(row.utility)}管网（{row.utility}）：只有给水、燃气和热力管网用阀门关断")
        answer = isolate(model, pipe=pipe, node=node, failed_valves=failed_valves)
        years = exercise_years if exercise_years is not None else get_settings().valve_exercise_years
        ids = [v["id"] for v in answer.valves]
        place_valves(conn, answer.valves + answer.failed_valves)
        return flag_likely_to_fail(model, answer, reliability(conn, ids, years), failed_valves)


def place_valves(conn: sa.Connection, valves: list[dict]) -> None:
    """Where a crew finds each valve: the road of its pipe (or of its point's pipes) and the
    surveyed depth at its point (``road``, ``depth_m``; None when not surveyed)."""
    nodes = sorted({str(v["node"]) for v in valves if v.get("node")})
    if not nodes:
        return
    rows = conn.execute(sa.text(
        "SELECT n.id, n.depth_m, (SELECT s.road FROM current_segment s WHERE s.road IS NOT NULL "
        "  AND (s.from_node = n.id OR s.to_node = n.id) ORDER BY s.diameter_mm DESC NULLS LAST LIMIT 1) AS road "
        "FROM current_node n WHERE n.id = ANY(:ids)"), {"ids": nodes}).mappings().all()
    at = {r["id"]: r for r in rows}
    pipes = sorted({str(v["pipe"]) for v in valves if v.get("pipe")})
    roads = dict(conn.execute(sa.text("SELECT id, road FROM current_segment WHERE id = ANY(:ids)"),
                              {"ids": pipes}).all()) if pipes else {}
    for v in valves:
        r = at.get(str(v.get("node")))
        v["road"] = roads.get(str(v.get("pipe"))) or (r["road"] if r is not None else None)
        depth = r["depth_m"] if r is not None else None
        v["depth_m"] = round(float(depth), 2) if depth is not None else None


def flag_likely_to_fail(model: IsolationModel, answer: Shutoff, valve_reliability: dict[str, dict],
                        failed_valves: Iterable[str] = ()) -> Shutoff:
    """Mark the closing order's valves with their exercise record and compute, for each valve
    likely to fail, its next ring: the valves closed instead and what more loses supply."""
    start, _ = _burst_segment(model, answer.pipe, answer.node)
    reported = {int(k) for k in model.valve_positions(list(dict.fromkeys(failed_valves))) if k >= 0}
    pipes = set(answer.isolated_pipes) | set(answer.outage_pipes)
    customers = {c["id"] for c in answer.customers}
    closing = {v["id"] for v in answer.valves}
    for rec in answer.valves:
        rec.update(valve_reliability.get(rec["id"], {"likely_to_fail": False}))
        if rec["likely_to_fail"]:
            k = int(model.valve_positions([rec["id"]])[0])
            answer.next_ring[rec["id"]] = _next_ring(model, start, reported, k, closing, pipes, customers)
    return answer


def _next_ring(model: IsolationModel, start: int, reported: set[int], k: int, closing: set[str],
               pipes: set[str], customers: set[str]) -> dict:
    """What valve ``k`` failing adds (as :func:`isolate` would with it failed, without the records):
    the valves to close beyond the ``closing`` order, in order, and the pipes and customers lost."""
    region, _ = _grow_region(model, start, reported | {k})
    segs = np.fromiter(region, dtype=np.int64)
    boundary, _ = _boundary_valves(model, segs, reported | {k})
    ids = model.valve_columns["id"]
    dead = model.unit_groups.members(segs)
    cut = model.cut_off_units(dead)
    links = np.concatenate([model.link_groups.members(segs), model.link_unit_groups.members(cut)])
    lost = model.customer_groups.members(np.concatenate([dead, cut]))
    cc = model.customer_columns
    lost = lost[np.lexsort((cc["id"][lost].astype(str), ~cc["critical"][lost].astype(bool)))]
    more = [(c, bool(x)) for c, x in zip(cc["id"][lost].tolist(), cc["critical"][lost].tolist(), strict=True)
            if c not in customers]
    return {
        "valves": [v for v in ids[boundary].tolist() if v not in closing],
        "extra_pipes": sorted(p for p in model.link_ids[links].tolist() if p not in pipes),
        "extra_customers": [c for c, _ in more],
        "extra_critical_customers": [c for c, x in more if x],
    }
