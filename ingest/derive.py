"""Edits of single features that derive geometry the way an import does.

Add a node or a segment, move a node, change node or segment attributes, split a pipe at a
point, merge two pipes. Each edit turns the features it touches back into survey rows (the
node's X northing / Y easting, ground, depth; the segment's ends, depths, size ...) and runs
them through the import's own :func:`ingest.prepare.prepare`: the same data checks (E1xx,
E2xx, E3xx on the edited rows are errors, their warnings are returned) and the same
derivation of centreline heights (``ground - depth -/+ r`` by depth reference), plan lengths
and size fields. The rows are then written through :mod:`twin.store`, one new version per
feature, all in the caller's transaction and one ``edit`` batch.

Geometry rules:

- a segment's end vertices are its nodes' plan positions, its end heights ``from_z``/``to_z``;
  interior vertices (EPANET polylines, merged pipes) keep their plan position and their
  height profile, shifted linearly by chainage as the ends move;
- moving a node keeps each connected pipe's *depth* below ground at that node (the surveyed
  quantity: a new ground moves the pipe with it), or with ``keep="elevation"`` its
  *elevation* (a corrected ground changes the depth); a new ``depth_m`` sets the depth of the
  node and of every pipe end at it;
- splitting puts a new node (feature ``straight``) at the nearest point of the pipe, at the
  pipe's height there (interpolated along it) and ground interpolated between the pipe's
  ends unless given; the old segment is **retired** (``split into A, B``) and two new
  segments (``<old>-1``, ``<old>-2`` unless named) replace it, carrying its attributes and
  ``attrs.split_from``; valves on it move to the part at their node;
- merging two pipes of one utility, size, material and status that meet at a node joined by
  nothing else (no valve, appurtenance, source or customer) retires both and the node and
  adds one segment through the node's position; merging the two parts of a split revives
  the original segment as a new version (merge is the inverse of split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from ingest.load import TABLES
from ingest.prepare import Prepared, prepare
from ingest.report import CHECK_TITLES_ZH, Issue
from ingest.tables import POINT_COLUMNS, SEGMENT_COLUMNS, SurveyTables
from twin import store
from twin.crs import TwinCRS, twin_crs
from twin.domain import GRAVITY_UTILITIES, parse_utility
from twin.errors import Conflict, InputError, InvalidGeometry
from twin.schema import edit_types, names
from twin.settings import TwinSettings, get_settings
from twin.store import Edit

__all__ = [
    "NODE_ATTRIBUTES",
    "SEGMENT_ATTRIBUTES",
    "add_node",
    "add_segment",
    "move_node",
    "change_attributes",
    "split_segment",
    "merge_segments",
]

#: Node attributes an edit may set (position, ground and depth: :func:`move_node`).
NODE_ATTRIBUTES: dict[str, type] = edit_types("node")
#: Segment attributes an edit may set; ``size`` is the survey text (``DN300``, ``1000X800``),
#: ``pressure`` is MPa, or kV on power lines.
SEGMENT_ATTRIBUTES: dict[str, type] = edit_types("segment")
#: Warnings of the checks that say nothing about a lone edited feature.
_SILENT = {"W203"}
_GEOMETRY_CODES = {"E104", "E204"}
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class _Twin:
    settings: TwinSettings
    crs: TwinCRS

    @property
    def srid(self) -> int:
        return self.crs.srid


def _twin(conn: sa.Connection, settings: TwinSettings | None) -> _Twin:
    stored = conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'crs'")).scalar()
    settings = settings or get_settings()
    return _Twin(settings, twin_crs(stored or settings.crs))


def _finite(value: float | None, what: str, *, low: float = -1e8, high: float = 1e8) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise InputError(f"{what} must be a finite number, not {value!r}",
                         zh=f"{what} 须为有限数，不是 {value!r}")
    if not low <= value <= high:
        raise InputError(f"{what} {value!r} is out of range [{low:g}, {high:g}]",
                         zh=f"{what} {value!r} 超出范围 [{low:g}, {high:g}]")
    return float(value)


# -- survey rows in, twin records out ---------------------------------------------------------
def _point_row(node: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "point_id": node["id"], "utility": node.get("subtype") or node["utility"],
        "feature": node.get("feature"), "appurtenance": node.get("appurtenance"),
        "x": node["northing"], "y": node["easting"], "ground_z": node["ground_z"],
        "depth": node.get("depth_m"), "well_depth": node.get("well_depth_m"),
        **{c: node.get(c) for c in names("node", surveyed=True)},
    }


def _size_text(seg: Mapping[str, Any]) -> str | None:
    if seg.get("size_text"):
        return seg["size_text"]
    if seg.get("shape") == "rect" and seg.get("width_mm") and seg.get("height_mm"):
        return f"{seg['width_mm']:g}X{seg['height_mm']:g}"
    if seg.get("diameter_mm"):
        return f"DN{seg['diameter_mm']:g}"
    return None


def _segment_row(seg: Mapping[str, Any]) -> dict[str, Any]:
    """A twin segment (or a spec of one) as a row of the survey segment table."""
    if "pressure" in seg:
        pressure = seg["pressure"]
    else:
        pressure = seg.get("voltage_kv") if seg.get("utility") == "DL" else seg.get("pressure_mpa")
    return {
        "id": seg["id"], "from_id": seg["from_node"], "to_id": seg["to_node"],
        "utility": seg.get("subtype") or seg.get("utility"),
        "from_depth": seg.get("from_depth_m"), "to_depth": seg.get("to_depth_m"),
        "from_elev": seg.get("from_elevation_m"), "to_elev": seg.get("to_elevation_m"),
        "size": seg.get("size") or _size_text(seg), "pressure": pressure, "status": seg.get("status"),
        **{c: seg.get(c) for c in names("segment", surveyed=True)},
    }


@dataclass
class _Derived:
    prepared: Prepared
    warnings: list[dict[str, Any]]


def _derive(twin: _Twin, nodes: Sequence[Mapping[str, Any]], segments: Sequence[Mapping[str, Any]],
            edited_nodes: set[str], edited_segments: set[str], *, watched_nodes: Sequence[str] = ()) -> _Derived:
    """Run the import's checks and derivation over these features; errors on edited rows raise.

    Warnings are those of the edited rows, and of ``watched_nodes`` (nodes whose every current
    segment is in ``segments``, so their connection count is known).
    """
    points = pd.DataFrame([_point_row(n) for n in nodes], columns=list(POINT_COLUMNS)).astype(object)
    points["_row"] = np.arange(2, len(points) + 2)
    rows = pd.DataFrame([_segment_row(s) for s in segments], columns=list(SEGMENT_COLUMNS)).astype(object)
    rows["_row"] = np.arange(2, len(rows) + 2)
    if any(s.get("vertices") for s in segments):
        rows["vertices"] = pd.Series([s.get("vertices") or None for s in segments], dtype=object)
    tables = SurveyTables(points=points, segments=rows, points_file="node", segments_file="segment", kind="edit")
    prepared = prepare(tables, twin.settings, twin.crs, axis_order="ne")
    edited = {("node", int(r)) for r, i in zip(points["_row"], points["point_id"], strict=True) if i in edited_nodes}
    edited |= {("segment", int(r)) for r, i in zip(rows["_row"], rows["id"], strict=True) if i in edited_segments}
    errors = [i for i in prepared.report.errors if (i.file, i.row) in edited]
    if errors:
        text = "; ".join(f"{i.code}: {i.message} ({i.file} {' to '.join(i.ids)})" for i in errors[:10])
        kind = InvalidGeometry if {i.code for i in errors} <= _GEOMETRY_CODES else InputError
        raise kind(text, code=errors[0].code,
                   zh="；".join(f"{i.code} {CHECK_TITLES_ZH[i.code]}：{i.message_zh or i.message}"
                               f"（{i.file} {' 至 '.join(i.ids)}）" for i in errors[:10]))
    watched = edited | {("node", int(r)) for r, i in zip(points["_row"], points["point_id"], strict=True)
                        if i in set(watched_nodes)}
    warnings = [{**i.as_dict(), "kind": i.file} for i in prepared.report.warnings
                if (i.file, i.row) in watched and i.code not in _SILENT]
    for w in warnings:
        w.pop("file", None)
        w.pop("row", None)
    return _Derived(prepared, warnings)


def _ewkb(coords: np.ndarray, srid: int) -> str:
    coords = np.asarray(coords, dtype=float)
    geom = shapely.points(coords[0]) if len(coords) == 1 else shapely.linestrings(coords)
    return shapely.to_wkb(shapely.set_srid(geom, srid), hex=True, include_srid=True, output_dimension=3)


def _profile(xy: np.ndarray, z1: float, z2: float, reference: np.ndarray | None) -> np.ndarray:
    """Heights of a centreline's vertices: linear by chainage between the ends, or a reference
    profile shifted linearly by chainage so that its ends land on ``z1`` and ``z2``."""
    chain = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    f = chain / chain[-1] if chain[-1] > 0 else np.zeros_like(chain)
    if reference is None or len(reference) != len(xy) or not np.isfinite(reference).all():
        z = z1 + (z2 - z1) * f
    else:
        z = reference + (z1 - reference[0]) * (1 - f) + (z2 - reference[-1]) * f
    z[0], z[-1] = z1, z2
    return z


def _node_records(twin: _Twin, derived: _Derived, ids: Sequence[str]) -> list[dict[str, Any]]:
    n = derived.prepared.nodes.drop_duplicates("id").set_index("id", drop=False)
    out = []
    for i in ids:
        row = n.loc[i]
        rec = {c: row[c] for c, _ in TABLES["node"].columns}
        rec["geom"] = _ewkb(np.array([[row["easting"], row["northing"], row["ground_z"]]]), twin.srid)
        out.append(rec)
    return out


def _segment_records(twin: _Twin, derived: _Derived, specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    s = derived.prepared.segments.set_index("id", drop=False)
    out = []
    for spec in specs:
        row = s.loc[spec["id"]]
        xy = np.array([(row["x1"], row["y1"]), *(spec.get("vertices") or []), (row["x2"], row["y2"])], dtype=float)
        z = _profile(xy, float(row["from_z"]), float(row["to_z"]), spec.get("reference_z"))
        rec = {c: row[c] for c, _ in TABLES["segment"].columns}
        for c, sql_type in TABLES["segment"].columns:
            if sql_type == "int4":
                rec[c] = None if pd.isna(rec[c]) else int(rec[c])
        rec["geom"] = _ewkb(np.column_stack([xy, z]), twin.srid)
        out.append(rec)
    return out


def _settle(records: list[dict[str, Any]], old: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Keep the stored value wherever a derived one differs only by rounding (no noise versions)."""
    for rec in records:
        before = old.get(rec["id"])
        if before is None:
            continue
        for c, v in rec.items():
            b = before.get(c)
            if c == "geom":
                mine, theirs = shapely.from_wkb(v), shapely.from_wkb(before["ewkb"])
                a = shapely.get_coordinates(mine, include_z=True)
                t = shapely.get_coordinates(theirs, include_z=True)
                if a.shape == t.shape and np.allclose(a, t, rtol=0, atol=_TOLERANCE):
                    rec[c] = before["ewkb"]
            elif isinstance(v, float) and isinstance(b, float) and abs(v - b) <= _TOLERANCE:
                rec[c] = b
            elif isinstance(v, float) and np.isnan(v) and b is None:
                rec[c] = None
    return records


# -- reading twin rows -----------------------------------------------------------------------
_ROW_SQL = ("SELECT *, encode(ST_AsEWKB(geom), 'hex') AS ewkb, "
            "CASE WHEN ST_GeometryType(geom) = 'ST_Point' THEN ST_X(geom) END AS easting, "
            "CASE WHEN ST_GeometryType(geom) = 'ST_Point' THEN ST_Y(geom) END AS northing FROM {t} ")


def _rows(conn: sa.Connection, kind: str, where: str, params: Mapping[str, Any], *,
          lock: str = "") -> dict[str, dict[str, Any]]:
    sql = _ROW_SQL.format(t=kind) + f"WHERE {where} ORDER BY id {lock}"
    return {r["id"]: dict(r) for r in conn.execute(sa.text(sql), dict(params)).mappings()}


def _locked(conn: sa.Connection, kind: str, ids: Sequence[str], versions: Mapping[str, int | None] | None = None,
            *, share: bool = False) -> dict[str, dict[str, Any]]:
    return store.lock(conn, kind, ids, versions, share=share)


def _line(seg: Mapping[str, Any]) -> np.ndarray:
    return shapely.get_coordinates(shapely.from_wkb(seg["ewkb"]), include_z=True)


def _interior(seg: Mapping[str, Any]) -> tuple[list[tuple[float, float]], np.ndarray]:
    coords = _line(seg)
    return [tuple(map(float, p)) for p in coords[1:-1, :2]], coords[:, 2]


def _half_height_m(seg: Mapping[str, Any]) -> float:
    size = seg["height_mm"] if seg["shape"] == "rect" else seg["diameter_mm"]
    return float(size) / 2000.0


def _attributes(kind: str, values: Mapping[str, object] | None, allowed: Mapping[str, type]) -> dict[str, object]:
    return store.typed_values(kind, values, allowed) if values else {}


def _same_parent(kind: str, utility: str, code: object) -> None:
    parent, _, bad = parse_utility(pd.Series([code], dtype=object))
    if bad[0] or parent.iat[0] != utility:
        raise InputError(f"{kind} subtype {code!r} is not a subtype of {utility}; the utility itself "
                         "does not change by an edit (retire and add instead)",
                         zh=f"{kind} 子类 {code!r} 不是 {utility} 的子类；编辑不能改变管线类别（请废弃后新增）")


def _crossing_warnings(conn: sa.Connection, seg_ids: Sequence[str]) -> list[dict[str, Any]]:
    """W208 against the whole network: same-utility pipes crossing an edited one without a shared node."""
    rows = conn.execute(
        sa.text("SELECT e.id AS a, o.id AS b, coalesce(e.subtype, e.utility) AS code FROM segment e "
                "JOIN current_segment o ON o.utility = e.utility AND o.id <> e.id "
                " AND coalesce(o.subtype, '') = coalesce(e.subtype, '') AND ST_Intersects(o.geom, e.geom) "
                " AND o.from_node NOT IN (e.from_node, e.to_node) AND o.to_node NOT IN (e.from_node, e.to_node) "
                "WHERE e.id = ANY(:ids) ORDER BY e.id, o.id LIMIT 50"), {"ids": list(seg_ids)}).all()
    return [{**Issue("W208", f"{r.code} segments {r.a} and {r.b} cross without a shared point", "segment",
                     ids=[r.a, r.b], message_zh=f"{r.code} 管线段 {r.a} 与 {r.b} 交叉但无共用管点").as_dict(),
             "kind": "segment"} for r in rows]


# -- add -------------------------------------------------------------------------------------
def add_node(conn: sa.Connection, user: str, id: str, *, utility: str, easting: float, northing: float,
             ground_z: float, depth_m: float | None = None, attributes: Mapping[str, object] | None = None,
             scope: str = "edit", settings: TwinSettings | None = None) -> Edit:
    """Add a node (a survey point) at a plan position in the twin CRS; sources and customers
    follow from its appurtenance and feature as in an import (水厂 -> source, 进楼 -> customer)."""
    twin = _twin(conn, settings)
    store.check_text(id, "the node id", max_length=200)
    store.check_text(utility, "the utility", max_length=20)
    store.check_text(scope, "the scope", max_length=100)
    attrs = _attributes("node", attributes, {k: v for k, v in NODE_ATTRIBUTES.items() if k != "subtype"})
    node = {"id": id, "utility": utility, "easting": _finite(easting, "easting"),
            "northing": _finite(northing, "northing"), "ground_z": _finite(ground_z, "ground_z", low=-1e4, high=1e4),
            "depth_m": _finite(depth_m, "depth_m", low=-1e4, high=1e4), **attrs}
    derived = _derive(twin, [node], [], {id}, set())
    edit = store.begin_edit(conn, user, "add-node")
    edit.warnings = derived.warnings
    store.insert_features(conn, edit, "node", [{**r, "scope": scope} for r in _node_records(twin, derived, [id])])
    for kind, frame in (("source", derived.prepared.sources), ("customer", derived.prepared.customers)):
        records = [{**_point_record(twin, rec, TABLES[kind].columns), "scope": scope}
                   for rec in frame.to_dict("records")]
        store.insert_features(conn, edit, kind, records)
    return store.finish_edit(conn, edit)


def _point_record(twin: _Twin, rec: Mapping[str, Any], columns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    out = {c: rec.get(c) for c, _ in columns}
    out["geom"] = _ewkb(np.array([[rec["x"], rec["y"], rec["z"]]]), twin.srid)
    return out


def add_segment(conn: sa.Connection, user: str, from_node: str, to_node: str, *, size: str,
                id: str | None = None, utility: str | None = None, from_depth_m: float | None = None,
                to_depth_m: float | None = None, from_elevation_m: float | None = None,
                to_elevation_m: float | None = None, attributes: Mapping[str, object] | None = None,
                scope: str = "edit", settings: TwinSettings | None = None) -> Edit:
    """Add a straight segment between two current nodes, derived as an import derives it.

    Depths default to the nodes' depths, the utility to the start node's; an elevation at an
    end (at the utility's depth reference: top, or invert for drainage) wins over a depth. A
    valve point or valve chamber at an end gets its valve on the new pipe as an import would.
    """
    twin = _twin(conn, settings)
    for value, what in ((from_node, "from_node"), (to_node, "to_node")):
        store.check_text(value, what, max_length=200)
    if from_node == to_node:
        raise InvalidGeometry(f"a segment joins two different nodes, not {from_node!r} to itself", code="E204",
                              zh=f"管线须连接两个不同的管点，不能从 {from_node!r} 连到自身")
    seg_id = store.check_text(id if id is not None else f"{from_node}-{to_node}", "the segment id", max_length=200)
    store.check_text(size, "the size", max_length=50)
    store.check_text(scope, "the scope", max_length=100)
    if utility is not None:
        store.check_text(utility, "the utility", max_length=20)
    allowed = {k: v for k, v in SEGMENT_ATTRIBUTES.items()
               if k not in ("subtype", "size", "from_depth_m", "to_depth_m")}
    attrs = _attributes("segment", attributes, allowed)
    spec = {"id": seg_id, "from_node": from_node, "to_node": to_node, "utility": utility, "size": size,
            "from_depth_m": _finite(from_depth_m, "from_depth_m", low=-1e4, high=1e4),
            "to_depth_m": _finite(to_depth_m, "to_depth_m", low=-1e4, high=1e4),
            "from_elevation_m": _finite(from_elevation_m, "from_elevation_m", low=-1e4, high=1e4),
            "to_elevation_m": _finite(to_elevation_m, "to_elevation_m", low=-1e4, high=1e4), **attrs}
    edit = store.begin_edit(conn, user, "add-segment")
    if store.live_ids(conn, "SELECT id FROM segment WHERE id = :i AND retired_at IS NULL", {"i": seg_id}):
        raise Conflict(f"segment id {seg_id} is in use; choose another id",
                       zh=f"管线编号 {seg_id} 已被使用；请另选编号")
    ends = _locked(conn, "node", [from_node, to_node], share=True)
    # The segments already at both ends: duplicates (E206) and valve placement see them.
    context = _rows(conn, "segment", "(from_node = ANY(:n) OR to_node = ANY(:n)) AND retired_at IS NULL",
                    {"n": [from_node, to_node]})
    others = {s[k] for s in context.values() for k in ("from_node", "to_node")} - set(ends)
    nodes = {**ends, **(_rows(conn, "node", "id = ANY(:ids)", {"ids": sorted(others)}) if others else {})}
    derived = _derive(twin, list(nodes.values()), [*context.values(), spec], set(), {seg_id},
                      watched_nodes=[from_node, to_node])
    edit.warnings = derived.warnings
    store.insert_features(conn, edit, "segment",
                          [{**r, "scope": scope} for r in _segment_records(twin, derived, [spec])])
    valves = derived.prepared.valves
    valves = valves[valves["segment_id"] == seg_id].assign(kind=lambda f: f["attrs_kind"])
    if len(valves):
        taken = set(store.live_ids(conn, "SELECT id FROM valve WHERE id = ANY(:ids)", {"ids": valves["id"].tolist()}))
        records = [{**_point_record(twin, v, TABLES["valve"].columns), "scope": scope}
                   for v in valves.to_dict("records") if v["id"] not in taken]
        store.insert_features(conn, edit, "valve", records)
    # Crossings against the whole network, not just the segments at the two ends.
    edit.warnings = [w for w in edit.warnings if w["code"] != "W208"] + _crossing_warnings(conn, [seg_id])
    return store.finish_edit(conn, edit)


# -- move ------------------------------------------------------------------------------------
def move_node(conn: sa.Connection, user: str, node_id: str, *, easting: float | None = None,
              northing: float | None = None, ground_z: float | None = None, depth_m: float | None = None,
              keep: str = "depth", version: int | None = None, settings: TwinSettings | None = None) -> Edit:
    """Move a node and everything attached: its segments' end vertices, heights, depths and
    lengths, the valves, sources and customers at it; one new version each.

    ``keep="depth"`` (default) keeps each pipe's depth below the ground at this node, so a new
    ground moves the pipe ends with it; ``keep="elevation"`` keeps their heights and changes the
    depths. A ``depth_m`` sets the depth of the node and of every pipe end at it.
    """
    twin = _twin(conn, settings)
    if keep not in ("depth", "elevation"):
        raise InputError(f"keep is 'depth' or 'elevation', not {keep!r}",
                         zh=f"keep 取 'depth'（保留埋深）或 'elevation'（保留高程），不是 {keep!r}")
    given = {"easting": _finite(easting, "easting"), "northing": _finite(northing, "northing"),
             "ground_z": _finite(ground_z, "ground_z", low=-1e4, high=1e4),
             "depth_m": _finite(depth_m, "depth_m", low=-1e4, high=1e4)}
    if all(v is None for v in given.values()):
        raise InputError("a move names at least one of easting, northing, ground_z, depth_m",
                         zh="移动须至少指定 easting、northing、ground_z、depth_m 之一")
    edit = store.begin_edit(conn, user, "move")
    node = _locked(conn, "node", [node_id], {node_id: version})[node_id]
    segments = _rows(conn, "segment", "(from_node = :n OR to_node = :n) AND retired_at IS NULL", {"n": node_id},
                     lock="FOR UPDATE")
    rise = (given["ground_z"] - node["ground_z"]) if given["ground_z"] is not None else 0.0
    moved = {**node, **{k: v for k, v in given.items() if v is not None}}
    if given["depth_m"] is None and keep == "elevation" and node["depth_m"] is not None:
        moved["depth_m"] = node["depth_m"] + rise
    specs = []
    for seg in segments.values():
        vertices, reference = _interior(seg)
        spec = {**seg, "vertices": vertices, "reference_z": reference}
        for end in ("from", "to"):
            if seg[f"{end}_node"] != node_id:
                continue
            if given["depth_m"] is not None:
                spec[f"{end}_depth_m"] = given["depth_m"]
            elif keep == "elevation":
                spec[f"{end}_depth_m"] = seg[f"{end}_depth_m"] + rise
        specs.append(spec)
    others = {s[k] for s in segments.values() for k in ("from_node", "to_node")} - {node_id}
    neighbours = _rows(conn, "node", "id = ANY(:ids)", {"ids": sorted(others)}) if others else {}
    derived = _derive(twin, [moved, *neighbours.values()], specs, {node_id}, set(segments))
    edit.warnings = derived.warnings
    store.update_features(conn, edit, "node", _settle(_node_records(twin, derived, [node_id]), {node_id: node}))
    store.update_features(conn, edit, "segment", _settle(_segment_records(twin, derived, specs), segments))
    store.follow_nodes(conn, edit, [node_id])
    if segments and (given["easting"] is not None or given["northing"] is not None):
        edit.warnings += _crossing_warnings(conn, sorted(segments))
    return store.finish_edit(conn, edit)


# -- attributes ------------------------------------------------------------------------------
def change_attributes(conn: sa.Connection, user: str, kind: str, id: str, values: Mapping[str, object], *,
                      version: int | None = None, settings: TwinSettings | None = None) -> Edit:
    """Change attributes of any feature (whitelisted columns, type-checked): node and segment
    values go through the import's checks and derivation (a new size or depth moves the
    centreline and the valves on it), valve, source and customer values are stored as given."""
    if kind in store.ATTRIBUTES:
        return store.set_attributes(conn, user, kind, id, values, version=version)
    if kind not in ("node", "segment"):
        raise InputError(f"unknown feature kind {kind!r}; one of {', '.join(store.KINDS)}",
                         zh=f"未知要素类型 {kind!r}；取 {'、'.join(store.KINDS)} 之一")
    twin = _twin(conn, settings)
    allowed = NODE_ATTRIBUTES if kind == "node" else SEGMENT_ATTRIBUTES
    values = store.typed_values(kind, values, allowed)
    edit = store.begin_edit(conn, user, "attributes")
    row = _locked(conn, kind, [id], {id: version})[id]
    if "subtype" in values:
        if values["subtype"] is None:
            raise InputError(f"a {kind}'s subtype is cleared by setting the parent code {row['utility']!r}",
                             zh=f"{kind} 的子类通过设为父类代码 {row['utility']!r} 来清除")
        _same_parent(kind, row["utility"], values["subtype"])
        if values["subtype"] == row["utility"]:
            values["subtype"] = None
    if kind == "node":
        node = {**row, **values}
        derived = _derive(twin, [node], [], {id}, set())
        store.update_features(conn, edit, "node", _settle(_node_records(twin, derived, [id]), {id: row}))
    else:
        vertices, reference = _interior(row)
        if "size" in values and values["size"] is None:
            raise InputError("a segment needs a size; it cannot be cleared", zh="管线须有管径；不能清空")
        spec = {**row, **values, "vertices": vertices, "reference_z": reference}
        if "subtype" in values:
            spec["subtype"] = values["subtype"] or row["utility"]
        ends = _rows(conn, "node", "id = ANY(:ids)", {"ids": [row["from_node"], row["to_node"]]})
        derived = _derive(twin, list(ends.values()), [spec], set(), {id})
        records = _settle(_segment_records(twin, derived, [spec]), {id: row})
        if "subtype" in values:
            records[0]["subtype"] = values["subtype"]
        store.update_features(conn, edit, "segment", records)
        valves = store.live_ids(conn, "SELECT id FROM valve WHERE segment_id = :s AND retired_at IS NULL", {"s": id})
        store.attach_valves(conn, edit, {v: id for v in valves})
    edit.warnings = derived.warnings
    return store.finish_edit(conn, edit)


# -- split -----------------------------------------------------------------------------------
def split_segment(conn: sa.Connection, user: str, segment_id: str, *, easting: float, northing: float,
                  node_id: str | None = None, ids: Sequence[str] | None = None, ground_z: float | None = None,
                  max_distance_m: float = 10.0, version: int | None = None,
                  settings: TwinSettings | None = None) -> Edit:
    """Split a pipe at the point of it nearest (easting, northing): a new node there, two new
    segments in place of the old one (retired), valves moved to the part at their node."""
    twin = _twin(conn, settings)
    point = shapely.Point(_finite(easting, "easting"), _finite(northing, "northing"))
    max_distance_m = _finite(max_distance_m, "max_distance_m", low=0, high=1e4)  # type: ignore[assignment]
    part_ids = list(ids) if ids is not None else [f"{segment_id}-1", f"{segment_id}-2"]
    if len(part_ids) != 2 or len(set(part_ids)) != 2:
        raise InputError("a split makes two segments: name two different ids",
                         zh="截断生成两条管线：请给出两个不同的编号")
    for p in part_ids:
        store.check_text(p, "a segment id", max_length=200)
    new_node = store.check_text(node_id if node_id is not None else f"{segment_id}-n", "the node id", max_length=200)
    edit = store.begin_edit(conn, user, "split")
    seg = _locked(conn, "segment", [segment_id], {segment_id: version})[segment_id]
    ends = _locked(conn, "node", [seg["from_node"], seg["to_node"]], share=True)
    coords = _line(seg)
    line = shapely.LineString(coords[:, :2])
    distance = float(line.distance(point))
    if distance > max_distance_m:
        raise InputError(f"the point is {distance:.2f} m from segment {segment_id}, more than {max_distance_m:g} m",
                         zh=f"该点距管线 {segment_id} {distance:.2f} 米，超过 {max_distance_m:g} 米")
    chain = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(coords[:, :2], axis=0).T))])
    at = float(line.project(point))
    short = twin.settings.short_segment_m
    if at < short or chain[-1] - at < short:
        raise InputError(f"the split point is within {short:g} m of an end of {segment_id}: nothing to split",
                         zh=f"截断点距管线 {segment_id} 的端点不足 {short:g} 米：无可截断")
    z = float(np.interp(at, chain, coords[:, 2]))
    xy = np.array(line.interpolate(at).coords[0])
    frac = at / chain[-1]
    ground = _finite(ground_z, "ground_z", low=-1e4, high=1e4)
    if ground is None:
        g1, g2 = ends[seg["from_node"]]["ground_z"], ends[seg["to_node"]]["ground_z"]
        ground = g1 + (g2 - g1) * frac
    sign = 1.0 if seg["depth_reference"] == "invert" else -1.0
    depth = ground - (z - sign * _half_height_m(seg))
    node = {"id": new_node, "utility": seg["utility"], "subtype": seg["subtype"], "feature": "straight",
            "easting": float(xy[0]), "northing": float(xy[1]), "ground_z": ground, "depth_m": depth}
    before, after = chain < at, chain > at
    first = np.vstack([coords[before], [[*xy, z]]])
    second = np.vstack([[[*xy, z]], coords[after]])
    parts = [
        {**seg, "id": part_ids[0], "to_node": new_node, "to_depth_m": depth,
         "vertices": [tuple(p) for p in first[1:-1, :2]], "reference_z": first[:, 2]},
        {**seg, "id": part_ids[1], "from_node": new_node, "from_depth_m": depth,
         "vertices": [tuple(p) for p in second[1:-1, :2]], "reference_z": second[:, 2]},
    ]
    derived = _derive(twin, [ends[seg["from_node"]], node, ends[seg["to_node"]]], parts, {new_node}, set(part_ids))
    edit.warnings = derived.warnings
    origin = {"split_from": segment_id}
    store.insert_features(conn, edit, "node", [{**r, "scope": seg["scope"], "attrs": origin}
                                               for r in _node_records(twin, derived, [new_node])])
    store.insert_features(conn, edit, "segment", [{**r, "scope": seg["scope"], "attrs": {**seg["attrs"], **origin}}
                                                  for r in _segment_records(twin, derived, parts)])
    _retire(conn, edit, "segment", [segment_id], f"split into {part_ids[0]}, {part_ids[1]}")
    valves = _rows(conn, "valve", "segment_id = :s AND retired_at IS NULL", {"s": segment_id})
    store.attach_valves(conn, edit, {v: part_ids[0] if r["node_id"] == seg["from_node"] else part_ids[1]
                                     for v, r in valves.items()})
    edit.notes.update(node=new_node, segments=part_ids, chainage_m=round(at, 4), distance_m=round(distance, 4))
    return store.finish_edit(conn, edit)


def _retire(conn: sa.Connection, edit: Edit, kind: str, ids: Sequence[str], reason: str) -> None:
    rows = conn.execute(
        sa.text(f"UPDATE {kind} SET retired_at = now(), retired_reason = :r, batch_id = :b "
                f"WHERE id = ANY(:ids) AND retired_at IS NULL RETURNING id, version"),
        {"r": reason, "b": edit.batch_id, "ids": list(ids)},
    ).all()
    for row in sorted(rows, key=lambda r: list(ids).index(r.id)):
        edit.add(kind, row.id, "retired", row.version)


# -- merge -----------------------------------------------------------------------------------
#: What two pipes must share to merge, and what the first pipe's value wins (with a warning).
_SAME = names("segment", on_merge="same")
_FIRST_WINS = names("segment", on_merge="first")


def merge_segments(conn: sa.Connection, user: str, first: str, second: str, *, id: str | None = None,
                   versions: Mapping[str, int | None] | None = None,
                   settings: TwinSettings | None = None) -> Edit:
    """Merge two pipes that meet at a node joined by nothing else into one segment.

    Both must be of one utility, size, material and status (else Conflict); the node must join
    exactly these two current segments and carry no valve, appurtenance, source or customer.
    The result runs along the flow (from the end of one to the end of the other); the two
    segments and the node are retired. Its id: ``id``, else the segment both were split from,
    else ``<first>+<second>``.
    """
    twin = _twin(conn, settings)
    if first == second:
        raise InputError("merge two different segments", zh="合并须为两条不同的管线")
    edit = store.begin_edit(conn, user, "merge")
    segs = _locked(conn, "segment", [first, second], versions)
    a, b = segs[first], segs[second]
    shared = {a["from_node"], a["to_node"]} & {b["from_node"], b["to_node"]}
    if len(shared) != 1:
        raise InputError(f"segments {first} and {second} share {'no node' if not shared else 'both ends'}: "
                         "merging needs exactly one shared node",
                         zh=f"管线 {first} 与 {second} {'没有共用管点' if not shared else '两端都共用'}：合并须恰好共用一个管点")
    (joint,) = shared
    node = _locked(conn, "node", [joint])[joint]
    for col in _SAME:
        if a[col] != b[col]:
            raise Conflict(f"{first} and {second} differ in {col} ({a[col]} vs {b[col]}): only pipes of one "
                           "utility, size and status merge",
                           zh=f"{first} 与 {second} 的 {col} 不同（{a[col]} 与 {b[col]}）：只有管线类别、管径和状态相同的管线才能合并")
    if (a["material"] or "").strip().lower() != (b["material"] or "").strip().lower():
        raise Conflict(f"{first} is {a['material']} and {second} is {b['material']}: a material change "
                       "point stays a node",
                       zh=f"{first} 材质为 {a['material']}，{second} 材质为 {b['material']}：变材点须保留为管点")
    users = store.live_ids(conn, "SELECT id FROM segment WHERE (from_node = :n OR to_node = :n) "
                                 "AND retired_at IS NULL ORDER BY id", {"n": joint})
    if sorted(users) != sorted([first, second]):
        raise Conflict(f"node {joint} joins {len(users)} current segments ({', '.join(users)}), not just these two",
                       zh=f"管点 {joint} 连接 {len(users)} 条现有管线（{'、'.join(users)}），不只这两条")
    if node["appurtenance"]:
        raise Conflict(f"node {joint} carries a {node['appurtenance']}: it stays a node",
                       zh=f"管点 {joint} 上有附属物 {node['appurtenance']}：须保留为管点")
    for kind in ("valve", "source", "customer"):
        held = store.live_ids(conn, f"SELECT id FROM {kind} WHERE node_id = :n AND retired_at IS NULL "
                                    "ORDER BY id", {"n": joint})
        if held:
            raise Conflict(f"node {joint} holds {kind} {', '.join(held)}: it stays a node",
                           zh=f"管点 {joint} 上有{ {'valve': '阀门', 'source': '水源', 'customer': '用户'}.get(kind, kind)} "
                              f"{'、'.join(held)}：须保留为管点")
    # Along the flow: the part that ends at the joint comes first.
    if a["to_node"] == joint and b["from_node"] == joint:
        up, down, flip_up, flip_down = a, b, False, False
    elif b["to_node"] == joint and a["from_node"] == joint:
        up, down, flip_up, flip_down = b, a, False, False
    elif a["utility"] in GRAVITY_UTILITIES:
        raise Conflict(f"the flows of {first} and {second} meet at {joint}: gravity pipes merge only "
                       "along one flow direction",
                       zh=f"{first} 与 {second} 的流向在 {joint} 相对：重力管线只能沿同一流向合并")
    else:
        up, down = a, b
        flip_up, flip_down = a["from_node"] == joint, b["to_node"] == joint
    c_up = _line(up)[::-1] if flip_up else _line(up)
    c_down = _line(down)[::-1] if flip_down else _line(down)
    coords = np.vstack([c_up, c_down[1:]])
    start = up["to_node"] if flip_up else up["from_node"]
    end = down["from_node"] if flip_down else down["to_node"]
    start_depth = up["to_depth_m"] if flip_up else up["from_depth_m"]
    end_depth = down["from_depth_m"] if flip_down else down["to_depth_m"]
    parent = a["attrs"].get("split_from")
    revive = None
    if id is None and parent and parent == b["attrs"].get("split_from"):
        revive = conn.execute(sa.text("SELECT attrs FROM segment WHERE id = :i AND retired_at IS NOT NULL"),
                              {"i": parent}).first()
    merged_id = store.check_text(id if id is not None else parent if revive else f"{first}+{second}",
                                 "the segment id", max_length=200)
    spec = {**a, "id": merged_id, "from_node": start, "to_node": end, "from_depth_m": start_depth,
            "to_depth_m": end_depth, "vertices": [tuple(p) for p in coords[1:-1, :2]], "reference_z": coords[:, 2]}
    ends = _rows(conn, "node", "id = ANY(:ids)", {"ids": [start, end]})
    derived = _derive(twin, list(ends.values()), [spec], set(), {merged_id})
    edit.warnings = derived.warnings
    edit.warnings += [{"code": "merge", "severity": "warning", "kind": "segment", "ids": [first, second],
                       "message": f"{col} differs ({a[col]!r} vs {b[col]!r}): {first}'s is kept"}
                      for col in _FIRST_WINS if a[col] != b[col]]
    attrs = (revive.attrs if revive is not None
             else {**{k: v for k, v in a["attrs"].items() if k != "split_from"}, "merged_from": [first, second]})
    _retire(conn, edit, "segment", [first, second], f"merged into {merged_id}")
    _retire(conn, edit, "node", [joint], f"merged {first} and {second} into {merged_id}")
    store.insert_features(conn, edit, "segment", [{**r, "scope": a["scope"], "attrs": attrs}
                                                  for r in _segment_records(twin, derived, [spec])])
    valves = _rows(conn, "valve", "segment_id = ANY(:s) AND retired_at IS NULL", {"s": [first, second]})
    store.attach_valves(conn, edit, {v: merged_id for v in valves})
    edit.notes.update(segment=merged_id, node=joint)
    return store.finish_edit(conn, edit)

