"""A proposal (a pipe or an excavation, as GeoJSON) turned into a small :class:`Network`.

Accepted: a FeatureCollection, a Feature or a bare geometry, with

- **LineString** (or MultiLineString): a proposed pipe. Properties: ``utility`` (code as in
  the survey tables: ``JS``, ``YS``, ``RQ``, ... or the Chinese name), a size
  (``diameter_mm``, or ``width_mm`` + ``height_mm``, or ``size``: ``DN300``, ``1000X800``),
  and its height: ``depth_m`` (a number, or one per vertex) measured by the utility's
  convention (drainage to the invert, others to the top), or z in the coordinates (elevation
  at the same reference; ``z_reference``: ``top``, ``invert`` or ``centre`` overrides it).
  Optional: ``id``, ``subtype``, ``material``, ``burial``, ``pressure_mpa``, ``owner``,
  ``road``, ``location`` (cover class), ``from_node`` / ``to_node`` (ids of existing nodes
  the pipe connects to: it is then not clashing with the pipes there).
- **Polygon** (or MultiPolygon): an excavation (掘路). Property ``depth_m``. It becomes the
  oriented minimum rectangle around the polygon, a box from the highest ground at its
  corners down to ``depth_m`` below the lowest: a ``rect`` segment of utility ``EX`` and
  ``kind`` ``excavation`` (conservative: the rectangle covers the polygon).

Coordinates are in the twin CRS (easting, northing) unless the GeoJSON names another CRS
(the old ``crs`` member, or a ``crs`` property): those are transformed with pyproj, and so
are coordinates that look like longitude/latitude (RFC 7946 GeoJSON is CRS84). A proposal
with no twin feature within 5 km is refused as a wrong CRS or axis order. Heights from
depths use :class:`analysis.ground.GroundModel` over the twin's ground points near the
proposal. :func:`proposal_geometry` is the proposal as submitted, transformed the same way
(stored with a proposal, served as its feature).

A proposal is held to a budget: at most :data:`MAX_PARTS` pipes and excavations,
:data:`MAX_POSITIONS` positions, :data:`MAX_LENGTH_M` of centrelines (pipes, and excavations
along their long side) and :data:`MAX_EXCAVATION_M2` of excavation (the rectangles the check
digs). Within it one check of the demo district took at most 0.53 s (49 pipes spread over the
district, 1,960 positions, 18 km, and a 100,000 m² excavation); before it, 5,000 positions
jumping across the district took 3.5 s and an excavation over the whole district read every
pipe. Beyond it the proposal is refused with :class:`twin.errors.InputError` code
``PROPOSAL_TOO_LARGE`` naming the limit, by the CLI and the API alike, before any database work.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from pyproj.exceptions import CRSError

from analysis.clearance import EXCAVATION_UTILITY
from analysis.ground import GroundModel, load_ground
from analysis.network import NODE_COLUMNS, SEGMENT_COLUMNS, Network, frame_of, load_network
from twin.crs import transformer, twin_crs
from twin.db import open_twin, twin_srid
from twin.domain import depth_reference, parse_sizes, parse_utility
from twin.errors import InputError
from twin.schema import names
from twin.settings import TwinSettings

__all__ = ["read_proposal", "proposal_geometry", "proposal_features", "load_existing_near",
           "check_proposal_size", "EXCAVATION_UTILITY", "NEAR_TWIN_M", "MAX_PARTS", "MAX_POSITIONS",
           "MAX_LENGTH_M", "MAX_EXCAVATION_M2", "TOO_LARGE"]

#: A proposal with no twin feature this close (m) is in the wrong CRS or axis order.
NEAR_TWIN_M = 5000.0
#: The budget of one proposal: pipes and excavations (lines and polygons), positions in all,
#: centreline length in all (m), excavated area in all (m², the rectangles around the polygons).
MAX_PARTS = 50
MAX_POSITIONS = 2_000
MAX_LENGTH_M = 20_000.0
MAX_EXCAVATION_M2 = 100_000.0
#: Error code of a proposal beyond the budget.
TOO_LARGE = "PROPOSAL_TOO_LARGE"
_GROUND_RADII_M = (100.0, 500.0, 2000.0)


def proposal_features(source: str | Path | Mapping[str, Any]) -> tuple[list[dict], str | None]:
    """The features of a GeoJSON document and the CRS it names (``None``: not named)."""
    if isinstance(source, Mapping):
        doc: Any = dict(source)
    else:
        path = Path(source)
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise InputError(f"proposal file {path} does not exist",
                             zh=f"方案文件 {path} 不存在") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"proposal file {path} is not GeoJSON: {exc}",
                             zh=f"方案文件 {path} 不是 GeoJSON：{exc}") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise InputError("a proposal is a GeoJSON FeatureCollection, Feature or geometry",
                         zh="方案须为 GeoJSON FeatureCollection、Feature 或几何")
    crs = _crs_name(doc)
    kind = doc["type"]
    if kind == "FeatureCollection":
        feats = list(doc.get("features") or [])
    elif kind == "Feature":
        feats = [doc]
    elif kind in ("LineString", "MultiLineString", "Polygon", "MultiPolygon"):
        feats = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise InputError(f"a proposal is a LineString or a Polygon, not a GeoJSON {kind}",
                         zh=f"方案须为 LineString（管线）或 Polygon（开挖），不是 GeoJSON {kind}")
    if not feats:
        raise InputError("the proposal has no features", zh="方案中没有要素")
    return feats, crs


def _crs_name(obj: Mapping[str, Any]) -> str | None:
    crs = obj.get("crs")
    if isinstance(crs, Mapping):
        crs = (crs.get("properties") or {}).get("name")
    if crs is None and isinstance(obj.get("properties"), Mapping):
        crs = obj["properties"].get("crs")
    return str(crs) if crs else None


def check_proposal_size(parts: int, positions: int) -> None:
    """InputError ``PROPOSAL_TOO_LARGE`` unless a proposal of ``parts`` lines and polygons and
    ``positions`` positions is within the budget (:data:`MAX_PARTS`, :data:`MAX_POSITIONS`)."""
    if parts > MAX_PARTS:
        raise InputError(f"a proposal has at most {MAX_PARTS} pipes and excavations; this one has {parts}",
                         code=TOO_LARGE, zh=f"一个方案最多 {MAX_PARTS} 条管线和开挖；此方案有 {parts} 个")
    if positions > MAX_POSITIONS:
        raise InputError(f"a proposal has at most {MAX_POSITIONS:,} positions; this one has {positions:,}",
                         code=TOO_LARGE, zh=f"一个方案最多 {MAX_POSITIONS:,} 个坐标点；此方案有 {positions:,} 个")


def _check_extent(parts: list[dict]) -> None:
    """InputError ``PROPOSAL_TOO_LARGE`` unless the proposal's length and excavated area (in the
    twin CRS) are within :data:`MAX_LENGTH_M` and :data:`MAX_EXCAVATION_M2`."""
    length_m = area_m2 = 0.0
    for p in parts:
        xy = p["xyz"][:, :2]
        if p["excavation"]:  # the check's box: the minimum rectangle, along its long side
            rect = shapely.minimum_rotated_rectangle(shapely.multipoints(xy - xy[0]))
            corners = np.asarray(shapely.get_coordinates(rect))[:3]
            sides = np.linalg.norm(np.diff(corners, axis=0), axis=1) if len(corners) == 3 else np.zeros(1)
            length_m += float(sides.max())
            area_m2 += float(shapely.area(rect))
        else:
            length_m += float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())
    if length_m > MAX_LENGTH_M:
        raise InputError(f"a proposal's pipes and excavations are at most {MAX_LENGTH_M / 1000:g} km long in all; "
                         f"this one's are {length_m / 1000:,.1f} km", code=TOO_LARGE,
                         zh=f"一个方案的管线和开挖总长最多 {MAX_LENGTH_M / 1000:g} 公里；此方案为 {length_m / 1000:,.1f} 公里")
    if area_m2 > MAX_EXCAVATION_M2:
        raise InputError(f"a proposal's excavations cover at most {MAX_EXCAVATION_M2:,.0f} m² in all (the "
                         f"rectangles around them); this one's cover {area_m2:,.0f} m²", code=TOO_LARGE,
                         zh=f"一个方案的开挖（外接矩形）总面积最多 {MAX_EXCAVATION_M2:,.0f} m²；此方案为 {area_m2:,.0f} m²")


def _transformer(src: str, twin: str) -> Transformer:
    """The shared cached transformer; an unknown CRS is the proposal's fault (InputError)."""
    try:
        return transformer(src, twin)
    except CRSError as exc:
        raise InputError(f"the proposal names an unknown CRS {src!r}: {exc}",
                         zh=f"方案使用了未知坐标系 {src!r}：{exc}") from None


def read_proposal(
    source: str | Path | Mapping[str, Any],
    settings: TwinSettings,
    *,
    engine: sa.Engine | sa.Connection | None = None,
    ground: GroundModel | None = None,
    srid: int | None = None,
) -> Network:
    """Read a GeoJSON proposal (path or dict) into a Network in the twin CRS.

    ``engine`` (an engine or an open connection; default: the twin of ``settings``) supplies
    the ground near the proposal and the wrong-CRS check; ``ground`` replaces the ground
    model (then no database is needed); ``srid``: the twin's, when the caller has it already.
    Raises :class:`twin.errors.InputError` for a missing utility, size or depth, an
    unknown CRS, or coordinates far from the twin ("wrong CRS?").

    Examples
    --------
    >>> net = read_proposal({"type": "Feature", "properties": {"utility": "JS", "size": "DN300",
    ...     "depth_m": 1.2}, "geometry": {"type": "LineString",
    ...     "coordinates": [[408300, 4035700], [408400, 4035700]]}}, settings)  # doctest: +SKIP
    >>> net.segments[["id", "utility", "diameter_mm"]].values.tolist()  # doctest: +SKIP
    [['P1', 'JS', 300.0]]
    """
    parts = _parts_in_twin_crs(source, settings)
    if engine is None and ground is None:
        engine = open_twin(settings)
    everything = shapely.multipoints(np.vstack([p["xyz"][:, :2] for p in parts]))
    if isinstance(engine, sa.Engine):
        with engine.connect() as conn:  # one connection for the check and the ground
            return _read_parts(parts, everything, conn, ground, srid)
    return _read_parts(parts, everything, engine, ground, srid)


def proposal_geometry(source: str | Path | Mapping[str, Any], settings: TwinSettings) -> shapely.Geometry:
    """The proposal's geometry as submitted, in the twin CRS: what the proposal check reads.

    One feature gives its geometry (a pipe's line, an excavation's outer ring as a polygon);
    several give a multi-geometry or a collection. Heights stay when every line has z; a
    proposal mixing 2D and 3D lines is 2D (no height is made up).
    """
    parts = _parts_in_twin_crs(source, settings)
    has_z = all(p["has_z"] for p in parts)
    by_feature: dict[int, list[dict]] = {}
    for p in parts:
        by_feature.setdefault(p["feature"], []).append(p)
    geoms = [_feature_geometry(ps, has_z) for ps in by_feature.values()]
    if len(geoms) == 1:
        return geoms[0]
    kinds = {g.geom_type for g in geoms}
    if kinds == {"LineString"}:
        return shapely.MultiLineString(geoms)
    if kinds == {"Polygon"}:
        return shapely.MultiPolygon(geoms)
    return shapely.GeometryCollection(geoms)


def _feature_geometry(parts: list[dict], has_z: bool) -> shapely.Geometry:
    """One feature's geometry from its lines (already in the twin CRS)."""
    rings = [p["xyz"] if has_z else p["xyz"][:, :2] for p in parts]
    gtype = parts[0]["gtype"]
    if gtype == "LineString":
        return shapely.LineString(rings[0])
    if gtype == "MultiLineString":
        return shapely.MultiLineString(rings)
    if gtype == "Polygon":
        return shapely.Polygon(rings[0])
    return shapely.MultiPolygon([shapely.Polygon(r) for r in rings])


def _parts_in_twin_crs(source: str | Path | Mapping[str, Any], settings: TwinSettings) -> list[dict]:
    """Every line of the proposal (a pipe, or an excavation's outer ring) with its coordinates in
    the twin CRS, its feature's properties and geometry type."""
    feats, doc_crs = proposal_features(source)
    _check_counts(feats)
    parts: list[dict] = []
    for k, feat in enumerate(feats):
        if not isinstance(feat, Mapping) or not isinstance(feat.get("geometry"), Mapping):
            raise InputError(f"proposal feature {k + 1} has no geometry", zh=f"方案要素 {k + 1} 没有几何")
        props = dict(feat.get("properties") or {})
        geom = feat["geometry"]
        gtype = geom.get("type")
        coords = geom.get("coordinates")
        fid = str(props.get("id") or feat.get("id") or f"P{k + 1}")
        crs = _crs_name(feat) or doc_crs
        if gtype == "LineString":
            lines = [coords]
        elif gtype == "MultiLineString":
            lines = list(coords or [])
        elif gtype == "Polygon":
            lines = [coords[0] if coords else []]
        elif gtype == "MultiPolygon":
            lines = [p[0] for p in coords or [] if p]
        else:
            raise InputError(f"proposal feature {fid}: a {gtype} is neither a pipe (LineString) nor "
                             "an excavation (Polygon)",
                             zh=f"方案要素 {fid}：{gtype} 既不是管线（LineString）也不是开挖（Polygon）")
        for n, line in enumerate(lines):
            arr = _coords(line, fid)
            parts.append({"id": fid if len(lines) == 1 else f"{fid}.{n + 1}", "props": props, "crs": crs,
                          "xyz": arr, "excavation": gtype in ("Polygon", "MultiPolygon"),
                          "has_z": arr.shape[1] == 3, "feature": k, "gtype": gtype})
    _to_twin_crs(parts, settings)
    _check_extent(parts)
    return parts


def _check_counts(feats: list) -> None:
    """The budget's parts and positions (holes of polygons included), counted before anything
    is converted; malformed shapes are left to the reader, which names them."""
    seq = (list, tuple)
    parts = positions = 0
    for feat in feats:
        geom = feat.get("geometry") if isinstance(feat, Mapping) else None
        coords = geom.get("coordinates") if isinstance(geom, Mapping) else None
        kind = geom.get("type") if isinstance(geom, Mapping) else None
        if not isinstance(coords, seq) or kind not in ("LineString", "MultiLineString", "Polygon", "MultiPolygon"):
            continue
        if kind in ("LineString", "Polygon"):
            coords = [coords]
        parts += len(coords)
        lines = [c for c in coords if isinstance(c, seq)]
        if kind.endswith("Polygon"):
            lines = [ring for poly in lines for ring in poly if isinstance(ring, seq)]
        positions += sum(len(line) for line in lines)
    check_proposal_size(parts, positions)


def _read_parts(parts: list[dict], everything: shapely.Geometry, conn: sa.Connection | None,
                ground: GroundModel | None, srid: int | None = None) -> Network:
    # the ground within the first radius, read first: a survey point there proves the proposal
    # near the twin, the wrong-CRS check's question (one query less for every usual proposal)
    first, near = _ground_within(conn, everything, _GROUND_RADII_M[0], srid) if ground is None and conn is not None \
        else (None, False)
    if conn is not None and not near:
        _check_near_twin(conn, everything, srid)
    if ground is None and any(not p["has_z"] or p["excavation"] for p in parts):
        ground = first if first is not None else _ground_near(conn, everything, _GROUND_RADII_M[1:])
    elif ground is None and conn is not None:
        # Heights given as z: the ground still matters (cover, depths); the survey's if any.
        try:
            ground = first if first is not None else _ground_near(conn, everything, _GROUND_RADII_M[1:])
        except InputError:
            ground = None
    return _network(parts, ground)


def _coords(line: Any, fid: str) -> np.ndarray:
    try:
        rows = [list(map(float, c)) for c in line]
    except (TypeError, ValueError):
        raise InputError(f"proposal feature {fid}: coordinates are not numbers",
                         zh=f"方案要素 {fid}：坐标不是数字") from None
    dims = {len(r) for r in rows}
    if len(rows) < 2 or not dims <= {2, 3} or len(dims) != 1:
        raise InputError(f"proposal feature {fid}: a line needs two or more positions, all 2D or all 3D",
                         zh=f"方案要素 {fid}：线须有两个或以上坐标点，且全为二维或全为三维")
    arr = np.array(rows, dtype=float)
    if not np.isfinite(arr).all():
        raise InputError(f"proposal feature {fid}: coordinates are not finite",
                         zh=f"方案要素 {fid}：坐标不是有限数")
    return arr


def _looks_lonlat(xy: np.ndarray) -> bool:
    return bool((np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all())


def _to_twin_crs(parts: list[dict], settings: TwinSettings) -> None:
    twin = twin_crs(settings.crs).crs
    for p in parts:
        src = p["crs"]
        if src is None and _looks_lonlat(p["xyz"][:, :2]):
            src = "OGC:CRS84"  # RFC 7946: GeoJSON without a crs member is lon/lat
        if src is None:
            continue
        tr = _transformer(src, settings.crs)
        if tr.source_crs is not None and tr.source_crs.equals(twin):
            continue
        x, y = tr.transform(p["xyz"][:, 0], p["xyz"][:, 1])
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InputError(f"proposal feature {p['id']}: coordinates cannot be transformed from {src} "
                             f"to {settings.crs}: wrong CRS?",
                             zh=f"方案要素 {p['id']}：坐标无法从 {src} 转换到 {settings.crs}：坐标系有误？")
        p["xyz"][:, 0], p["xyz"][:, 1] = x, y


def _check_near_twin(conn: sa.Engine | sa.Connection, geom: shapely.Geometry, srid: int | None = None) -> None:
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return _check_near_twin(c, geom, srid)
    wkb = shapely.to_wkb(geom, output_dimension=2)
    # the nearest node through the GiST index (KNN): a plain ST_DWithin over 5 km matches
    # ~10^5 nodes of a dense district and plans a parallel scan (30-40 ms instead of < 1 ms)
    near = conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM (SELECT geom FROM current_node "
        "ORDER BY geom <-> ST_SetSRID(ST_GeomFromWKB(:g), :srid) LIMIT 1) n "
        "WHERE ST_DWithin(n.geom, ST_SetSRID(ST_GeomFromWKB(:g), :srid), :d))"),
        {"g": wkb, "d": NEAR_TWIN_M, "srid": twin_srid(conn) if srid is None else srid}).scalar()
    if near:
        return
    ext = conn.execute(sa.text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                               "FROM (SELECT ST_Extent(geom) AS e FROM current_node) s")).one()
    if ext[0] is None:
        return  # an empty twin: nothing to be far from
    x0, y0, x1, y1 = shapely.bounds(geom)
    raise InputError(
        f"the proposal ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) lies more than {NEAR_TWIN_M / 1000:g} km "
        f"from the twin ({ext[0]:.0f}, {ext[1]:.0f})-({ext[2]:.0f}, {ext[3]:.0f}): wrong CRS or axis order? "
        "Give easting, northing in the twin CRS, lon/lat, or name the CRS in the GeoJSON.",
        zh=f"方案范围 ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) 距孪生库范围 "
           f"({ext[0]:.0f}, {ext[1]:.0f})-({ext[2]:.0f}, {ext[3]:.0f}) 超过 {NEAR_TWIN_M / 1000:g} 公里："
           "坐标系或坐标轴顺序有误？请按孪生库坐标系给出 东坐标,北坐标，或经纬度，或在 GeoJSON 中注明坐标系。")


def _ground_within(conn: sa.Engine | sa.Connection, geom: shapely.Geometry,
                   radius: float, srid: int | None = None) -> tuple[GroundModel | None, bool]:
    """The ground model of the survey points within ``radius`` (None below three points) and
    whether there is any point at all."""
    try:
        g = load_ground(conn, geom, radius, srid=srid)
    except InputError:  # no point with a ground height
        return None, False
    return (g if len(g) >= 3 else None), True


def _ground_near(engine: sa.Engine | sa.Connection | None, geom: shapely.Geometry,
                 radii: tuple[float, ...] = _GROUND_RADII_M) -> GroundModel:
    if engine is None:
        raise InputError("the proposal gives depths: a ground model or the twin is needed",
                         zh="方案给出的是埋深：需要地面模型或孪生库数据")
    for radius in radii:
        g, _ = _ground_within(engine, geom, radius)
        if g is not None:
            return g
    raise InputError("no survey ground points within 2 km of the proposal: give z elevations instead "
                     "of depths", zh="方案 2 公里内没有测量地面点：请给出 z 高程而不是埋深")


@functools.lru_cache(maxsize=256)
def _one_size(text: str) -> tuple[bool, float, float, float]:
    """:func:`twin.domain.parse_sizes` of one text: bad, diameter, width, height (mm). The same
    text reads the same every time; pandas on a one-row Series costs a millisecond a call."""
    parsed = parse_sizes(pd.Series([text])).iloc[0]
    return (bool(parsed["bad"]), float(parsed["diameter_mm"]), float(parsed["width_mm"]),
            float(parsed["height_mm"]))


@functools.lru_cache(maxsize=256)
def _one_utility(code: str) -> tuple[object, object, bool]:
    """:func:`twin.domain.parse_utility` of one code: parent code, subtype, unknown."""
    parent, sub, bad = parse_utility(pd.Series([code]))
    return parent.iloc[0], sub.iloc[0], bool(bad[0])


@functools.lru_cache(maxsize=64)
def _one_reference(utility: object) -> str:
    """:func:`twin.domain.depth_reference` of one parent code."""
    return str(depth_reference(np.array([utility]))[0])


def _size(props: Mapping[str, Any], fid: str) -> tuple[str, float, float, float, str]:
    """shape, diameter_mm, width_mm, height_mm, size_text."""
    d = props.get("diameter_mm")
    w, h = props.get("width_mm"), props.get("height_mm")
    text = props.get("size") or props.get("size_text")
    try:
        if d not in (None, ""):
            d = float(d)
            if d > 0:
                return "circular", d, np.nan, np.nan, f"DN{d:g}"
        if w not in (None, "") and h not in (None, ""):
            w, h = float(w), float(h)
            if w > 0 and h > 0:
                return "rect", np.nan, w, h, f"{w:g}X{h:g}"
    except (TypeError, ValueError):
        raise InputError(f"proposal feature {fid}: the size is not a number",
                         zh=f"方案要素 {fid}：管径不是数字") from None
    if text:
        bad, diameter, width, height = _one_size(str(text))
        if not bad:
            if np.isfinite(diameter):
                return "circular", diameter, np.nan, np.nan, str(text)
            if np.isfinite(width):
                return "rect", np.nan, width, height, str(text)
        raise InputError(f"proposal feature {fid}: cannot read size {text!r} (DN300, 300, 1000X800)",
                         zh=f"方案要素 {fid}：无法识别管径 {text!r}（DN300、300、1000X800）")
    raise InputError(f"proposal feature {fid}: missing size: give diameter_mm, width_mm + height_mm, "
                     "or size (DN300, 1000X800)",
                     zh=f"方案要素 {fid}：缺少管径：请给出 diameter_mm，或 width_mm 与 height_mm，"
                        "或 size（DN300、1000X800）")


def _number(props: Mapping[str, Any], key: str, fid: str) -> float:
    v = props.get(key)
    if v in (None, ""):
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"proposal feature {fid}: {key} {v!r} is not a number",
                         zh=f"方案要素 {fid}：{key} {v!r} 不是数字") from None


def _pipe(part: dict, ground: GroundModel | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Segment row, centreline vertices and the ground at its ends for one proposed pipe."""
    props, fid, xyz = part["props"], part["id"], part["xyz"]
    if not props.get("utility"):
        raise InputError(f"proposal feature {fid}: missing utility (JS, PS/YS/WS, RQ, RL, DL, TX, ...)",
                         zh=f"方案要素 {fid}：缺少管线类别（JS、PS/YS/WS、RQ、RL、DL、TX 等）")
    utility, sub, bad = _one_utility(str(props["utility"]))
    if bad:
        raise InputError(f"proposal feature {fid}: unknown utility {props['utility']!r}",
                         zh=f"方案要素 {fid}：未知管线类别 {props['utility']!r}")
    subtype = props.get("subtype") or sub
    shape, d, w, h, size_text = _size(props, fid)
    half = (d if shape == "circular" else h) / 2000.0
    ref = _one_reference(utility)
    zref = str(props.get("z_reference") or ref).lower()
    if zref not in ("top", "invert", "centre", "center"):
        raise InputError(f"proposal feature {fid}: z_reference is top, invert or centre, not {zref!r}",
                         zh=f"方案要素 {fid}：z_reference 取 top（管顶）、invert（管内底）或 centre（管中），不是 {zref!r}")
    g = ground(xyz[:, 0], xyz[:, 1]) if ground is not None else np.full(len(xyz), np.nan)
    depth = props.get("depth_m")
    if depth not in (None, ""):
        try:
            dep = np.broadcast_to(np.asarray(depth, dtype=float), (len(xyz),)).copy()
        except (TypeError, ValueError):
            raise InputError(f"proposal feature {fid}: depth_m is a number or one number per vertex",
                             zh=f"方案要素 {fid}：depth_m 埋深为一个数，或每个顶点一个数") from None
        if not np.isfinite(dep).all() or (dep < 0).any():
            raise InputError(f"proposal feature {fid}: depth_m must be non-negative numbers",
                             zh=f"方案要素 {fid}：depth_m 埋深须为非负数")
        if ground is None:
            raise InputError(f"proposal feature {fid}: depths need the ground: no ground model",
                             zh=f"方案要素 {fid}：埋深需要地面：没有地面模型")
        level = g - dep
        zref = ref
    elif part["has_z"]:
        level = xyz[:, 2]
    else:
        raise InputError(f"proposal feature {fid}: missing height: give depth_m or z in the coordinates",
                         zh=f"方案要素 {fid}：缺少高度：请给出 depth_m 埋深或坐标中的 z")
    offset = {"top": -half, "invert": half}.get(zref, 0.0)
    centre = np.column_stack([xyz[:, :2], level + offset])
    length = float(np.linalg.norm(np.diff(centre[:, :2], axis=0), axis=1).sum())
    row = {
        "id": fid, "from_node": str(props.get("from_node") or f"{fid}:start"),
        "to_node": str(props.get("to_node") or f"{fid}:end"), "utility": utility, "subtype": subtype,
        "shape": shape, "diameter_mm": d, "width_mm": w, "height_mm": h, "size_text": size_text,
        "material": props.get("material"), "burial": props.get("burial"),
        "pressure_mpa": _number(props, "pressure_mpa", fid), "voltage_kv": _number(props, "voltage_kv", fid),
        "status": "proposed", "depth_reference": ref,
        "from_depth_m": float(g[0] - centre[0, 2] + offset) if np.isfinite(g[0]) else np.nan,
        "to_depth_m": float(g[-1] - centre[-1, 2] + offset) if np.isfinite(g[-1]) else np.nan,
        "from_z": float(centre[0, 2]), "to_z": float(centre[-1, 2]), "length_m": length,
        "built_year": None, "owner": props.get("owner"), "road": props.get("road"), "version": 0,
        "kind": "pipe", "location": props.get("location"),
    }
    return row, centre, g[[0, -1]]


def _excavation(part: dict, ground: GroundModel) -> tuple[dict, np.ndarray, np.ndarray]:
    """Segment row (a box along the long axis of the minimum rectangle) for one excavation."""
    props, fid, xyz = part["props"], part["id"], part["xyz"]
    depth = _number(props, "depth_m", fid)
    if not np.isfinite(depth) or depth <= 0:
        raise InputError(f"proposal feature {fid}: an excavation needs depth_m (m below ground)",
                         zh=f"方案要素 {fid}：开挖须有 depth_m（地面以下深度，米）")
    local = xyz[0, :2]  # GEOS loses centimetres on the rectangle at projected magnitudes
    poly = shapely.Polygon(xyz[:, :2] - local)
    if not poly.is_valid or poly.area <= 0:
        raise InputError(f"proposal feature {fid}: the excavation polygon is invalid or has no area",
                         zh=f"方案要素 {fid}：开挖多边形无效或面积为零")
    rect = np.asarray(shapely.minimum_rotated_rectangle(poly).exterior.coords)[:4] + local
    e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
    if np.linalg.norm(e1) < np.linalg.norm(e2):  # the box runs along the long side
        rect = np.roll(rect, -1, axis=0)
        e1, e2 = e2, e1
    width = float(np.linalg.norm(e2))
    start, end = (rect[0] + rect[3]) / 2, (rect[1] + rect[2]) / 2
    g = ground(rect[:, 0], rect[:, 1])
    top, bottom = float(g.max()), float(g.min()) - depth
    z = (top + bottom) / 2
    centre = np.array([[*start, z], [*end, z]])
    row = {
        "id": fid, "from_node": f"{fid}:start", "to_node": f"{fid}:end", "utility": EXCAVATION_UTILITY,
        "subtype": None, "shape": "rect", "diameter_mm": np.nan, "width_mm": width * 1000.0,
        "height_mm": (top - bottom) * 1000.0, "size_text": f"{width:.2f}m x {depth:g}m deep",
        "material": None, "burial": None, "pressure_mpa": np.nan, "voltage_kv": np.nan, "status": "proposed",
        "depth_reference": "top", "from_depth_m": depth, "to_depth_m": depth, "from_z": z, "to_z": z,
        "length_m": float(np.linalg.norm(end - start)), "built_year": None, "owner": props.get("owner"),
        "road": props.get("road"), "version": 0, "kind": "excavation", "location": props.get("location"),
    }
    return row, centre, ground(centre[:, 0], centre[:, 1])


def _network(parts: list[dict], ground: GroundModel | None) -> Network:
    rows, lines, grounds = [], [], []
    for p in parts:
        row, centre, g = _excavation(p, ground) if p["excavation"] else _pipe(p, ground)
        rows.append(row)
        lines.append(centre)
        grounds.append(g)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise InputError("proposal features need distinct ids", zh="方案要素的编号不能重复")
    seg_cols = [*SEGMENT_COLUMNS, "kind", "location"]
    segments = frame_of({c: [r.get(c) for r in rows] for c in seg_cols}, seg_cols,
                        names("segment", reads="network", type="number"))
    node_rows = []
    for r, line, g in zip(rows, lines, grounds, strict=True):
        for end, xyz, gz, dep in (("from_node", line[0], g[0], r["from_depth_m"]),
                                  ("to_node", line[-1], g[1], r["to_depth_m"])):
            gz = float(gz) if np.isfinite(gz) else np.nan  # unknown: never the pipe's own height
            node_rows.append({"id": r[end], "utility": r["utility"], "subtype": r["subtype"], "feature": None,
                              "appurtenance": None, "ground_z": gz, "depth_m": dep, "well_depth_m": np.nan,
                              "well_bottom_z": np.nan, "version": 0, "x": float(xyz[0]), "y": float(xyz[1])})
    node_cols = [*NODE_COLUMNS, "x", "y"]
    seen: set[object] = set()
    node_rows = [r for r in node_rows if not (r["id"] in seen or seen.add(r["id"]))]  # the first of each id
    nodes = frame_of({c: [r.get(c) for r in node_rows] for c in node_cols}, node_cols, ())
    vertices = np.vstack(lines)
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in lines], out=offsets[1:])
    node_xyz = np.array([[r["x"], r["y"], r["ground_z"]] for r in node_rows], dtype=float).reshape(-1, 3)
    return Network(segments, nodes, node_xyz, vertices, offsets)


def load_existing_near(engine: sa.Engine | sa.Connection, proposal: Network, margin_m: float = 5.0) -> Network:
    """The live network around a proposal, gathered through the GiST index.

    Everything within the proposal's largest half size plus ``margin_m`` (which should cover
    the largest existing pipe's half size and the largest clearance rule) of its centrelines.
    """
    lines = [proposal.vertices[a:b, :2] for a, b in zip(proposal.offsets[:-1], proposal.offsets[1:], strict=True)]
    # one line per part, of any length (an array of unequal parts is no array for numpy)
    geom = shapely.MultiLineString(lines) if lines else shapely.Point()
    reach = np.nanmax(np.hypot(np.nan_to_num(proposal.half_width_m), np.nan_to_num(proposal.half_height_m)),
                      initial=0.0)
    return load_network(engine, near=geom, distance_m=float(reach + margin_m))
