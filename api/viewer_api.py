"""What the web viewer needs beyond the OGC APIs: the twin's frame, its ground and coordinates.

The browser works in longitude, latitude and ellipsoidal height (CesiumJS); the twin and its
analyses in the twin's projected CRS with normal heights. These read-only routes convert
between the two with pyproj and the configured geoid offset (``TWIN_GEOID_OFFSET_M``, as the
3D tiles use it), so a click on the globe becomes a section line in metres and a finding's
position becomes a marker in 3D:

- ``GET /view/frame``: the CRS, the geoid offset and the live network's extent in CRS84.
- ``GET /view/ground``: the survey's ground (from the pipe points, :class:`GroundModel`) as a
  regular longitude/latitude grid of ellipsoidal heights: the viewer's terrain.
- ``POST /view/transform``: points from CRS84 to the twin CRS or back, with the ground there.
- ``POST /view/proposal-shape`` (and ``GET /view/proposals/{id}/shape`` for a stored one): a
  proposal's pipes as the analyses read them (centrelines at their real heights, sizes), in
  CRS84: drawn where the check puts them. Reading one holds a slot of :mod:`api.limits` and
  keeps to the proposal budget of :mod:`analysis.proposal_input`, as a check does.
- ``GET /view/edit-form/{kind}``: the viewer's attribute form of a feature kind (数据编辑), built
  from the column catalogue (:mod:`twin.schema`): edit names, units, labels, allowed values.
- ``GET /view/overview``: the live network's biggest pipes (at most ``OVERVIEW_VERTICES``
  surveyed vertices, shared by the utilities) merged and simplified by utility, drawn as lines
  of a minimum on-screen width when the view is too far for the pipes' own solids.
- ``GET /view/theme/{name}``: a thematic map's class of every pipe the tiles do not carry
  (``pressure``, ``accuracy``, ``criticality``: :mod:`analysis.theme`), joined to the tiles'
  features by id.
- ``GET /view/search?q=``: pipes and points by id (prefix, any case) and roads by part of their
  name, for the search box's suggestions (the features API filters on exact values only).

Each answer that scans the network is cached per twin until the network's change marks move.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

import numpy as np
import shapely
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from analysis.field import MAX_VALVES, nearest_valves
from analysis.ground import GroundModel, load_ground
from analysis.proposal_input import read_proposal
from analysis.roads import road_centrelines
from analysis.theme import theme_classes, theme_version
from analysis.vocabulary import BURIAL
from api.auth import User, allow
from api.edit import NodeIn, SegmentIn
from api.limits import work_limits
from api.processes import Finite, ProposalDocument, geojson
from api.reads import read_engine
from ingest.prepare import STATUS_WORDS  # the survey's status words: 在用 -> active, ...
from twin.crs import transformer
from twin.db import change_mark, twin_id, twin_srid
from twin.domain import APPURTENANCES, FEATURES, UTILITIES, name_zh, utilities_named
from twin.errors import InputError, NotFound
from twin.schema import CATALOGUE, column
from twin.schema import columns as catalogue_columns
from twin.store import changes_between, timeline

__all__ = ["router", "ViewerCache"]

router = APIRouter(prefix="/view", tags=["viewer"])

#: Cells per side of the grid the ground points are averaged on before triangulating: keeps a
#: million-point district to a Delaunay triangulation of at most this squared.
GROUND_CELLS = 200
#: Ground points looked for around transformed points (m), widening until some are found.
_GROUND_RADII_M = (100.0, 500.0, 2000.0)

class ViewerCache:
    """Per-process results of the viewer's helper routes, each kept until the network changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, tuple[str, object]] = {}


def _cached(request: Request, name: str, make):
    """``make(conn)`` once per network state: keyed by the change mark of the twin."""
    engine: sa.Engine = read_engine(request)
    cache: ViewerCache = request.app.state.viewer_cache
    with engine.connect() as conn:
        key = change_mark(conn)
        with cache.lock:
            hit = cache.values.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = make(conn)
    with cache.lock:
        cache.values[name] = (key, value)
    return value


def _crs(conn: sa.Connection) -> str:
    return f"EPSG:{twin_srid(conn)}"


def _extent(conn: sa.Connection) -> tuple[float, float, float, float] | None:
    row = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(geom) AS e FROM (SELECT geom FROM current_node UNION ALL "
        " SELECT geom FROM current_segment) g) s")).one()
    return None if row[0] is None else tuple(float(v) for v in row)  # type: ignore[return-value]


def _frame(conn: sa.Connection, settings) -> dict:
    crs = _crs(conn)
    ext = _extent(conn)
    out: dict = {"crs": crs, "geoid_offset_m": settings.geoid_offset_m, "vertical_datum": settings.vertical_datum,
                 "bbox": None, "ground_z": None,
                 # the tileset's stamp (tileset.json extras.pipetwin) is compared with these
                 "twin": twin_id(conn), "changes": change_mark(conn)}
    if ext is None:
        return out
    x0, y0, x1, y1 = ext
    xs = np.array([x0, x1, x1, x0, (x0 + x1) / 2])
    ys = np.array([y0, y0, y1, y1, (y0 + y1) / 2])
    lon, lat = transformer(crs, "OGC:CRS84").transform(xs, ys)
    out["bbox"] = [round(float(v), 8) for v in (lon[:4].min(), lat[:4].min(), lon[:4].max(), lat[:4].max())]
    out["centre"] = [round(float(lon[4]), 8), round(float(lat[4]), 8)]
    z = conn.execute(sa.text("SELECT min(ground_z), avg(ground_z), max(ground_z) FROM current_node")).one()
    if z[0] is not None:
        out["ground_z"] = {"min": round(float(z[0]), 3), "mean": round(float(z[1]), 3), "max": round(float(z[2]), 3)}
    return out


@router.get("/frame", summary="The twin's CRS, geoid offset, the live network's extent (CRS84), "
            "its identity and change mark")
def frame(request: Request, user: User = Depends(allow("read"))) -> dict:
    settings = request.app.state.settings
    return _cached(request, "frame", lambda conn: _frame(conn, settings))


def _ground_grid(conn: sa.Connection, settings, cols: int, rows: int) -> dict:
    ext = _extent(conn)
    if ext is None:
        raise NotFound("the twin has no network yet: no ground to show",
                       zh="孪生库中还没有管网：没有地面可显示")
    x0, y0, x1, y1 = ext
    cell = max(x1 - x0, y1 - y0, 1.0) / GROUND_CELLS
    pts = np.array(conn.execute(sa.text(
        "SELECT avg(ST_X(geom)), avg(ST_Y(geom)), avg(ground_z) FROM current_node "
        "WHERE ground_z IS NOT NULL GROUP BY floor(ST_X(geom) / :c), floor(ST_Y(geom) / :c)"),
        {"c": cell}).all(), dtype=float).reshape(-1, 3)
    if not len(pts):
        raise NotFound("the twin's points carry no ground elevations",
                       zh="孪生库的管点没有地面高程")
    model = GroundModel(pts[:, :2], pts[:, 2])
    crs = _crs(conn)
    # A margin of 5 % on each side so the terrain's edge lies beyond the network.
    mx, my = (x1 - x0) * 0.05 + 10, (y1 - y0) * 0.05 + 10
    corners = transformer(crs, "OGC:CRS84").transform([x0 - mx, x1 + mx, x1 + mx, x0 - mx],
                                                       [y0 - my, y0 - my, y1 + my, y1 + my])
    west, east = float(min(corners[0])), float(max(corners[0]))
    south, north = float(min(corners[1])), float(max(corners[1]))
    lon = np.linspace(west, east, cols)
    lat = np.linspace(north, south, rows)  # row 0 is the north edge, as heightmaps are
    glon, glat = np.meshgrid(lon, lat)
    gx, gy = transformer("OGC:CRS84", crs).transform(glon.ravel(), glat.ravel())
    heights = model(np.asarray(gx), np.asarray(gy)) + settings.geoid_offset_m
    return {"bbox": [west, south, east, north], "cols": cols, "rows": rows,
            "heights": [round(float(h), 3) for h in heights],
            "mean_height": round(float(np.mean(pts[:, 2]) + settings.geoid_offset_m), 3),
            "height_reference": "ellipsoidal (survey normal heights + TWIN_GEOID_OFFSET_M)"}


@router.get("/ground", summary="The survey's ground as a longitude/latitude grid of ellipsoidal heights")
def ground(
    request: Request,
    cols: int = Query(65, ge=2, le=257, description="Grid columns (west to east)."),
    rows: int = Query(65, ge=2, le=257, description="Grid rows (north to south)."),
    user: User = Depends(allow("read")),
) -> dict:
    settings = request.app.state.settings
    return _cached(request, f"ground-{cols}x{rows}", lambda conn: _ground_grid(conn, settings, cols, rows))


Position = Annotated[list[Finite], Field(min_length=2, max_length=3)]


class TransformBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Literal["twin", "crs84"] = Field(..., description="'twin': from lon/lat to the twin CRS; 'crs84': back.")
    points: Annotated[list[Position], Field(min_length=1, max_length=10_000)] = Field(
        ..., description="[lon, lat(, ellipsoidal height)] or [easting, northing(, normal height)].")
    ground: bool = Field(False, description="Also the survey ground elevation (normal height) at each point.")


def _ground_at(conn: sa.Connection, x: np.ndarray, y: np.ndarray) -> list[float | None]:
    near = shapely.multipoints(np.column_stack([x, y]))
    for radius in _GROUND_RADII_M:
        try:
            model = load_ground(conn, near, radius)
        except InputError:
            continue
        return [round(float(v), 3) if np.isfinite(v) else None for v in model(x, y)]
    return [None] * len(x)


@router.post("/transform", summary="Points between CRS84 (lon, lat, ellipsoidal height) and the twin CRS")
def transform(body: TransformBody, request: Request, user: User = Depends(allow("read"))) -> dict:
    settings = request.app.state.settings
    pts = body.points
    xy = np.array([p[:2] for p in pts], dtype=float)
    z = np.array([p[2] if len(p) == 3 else np.nan for p in pts], dtype=float)
    with read_engine(request).connect() as conn:
        crs = _crs(conn)
        if body.to == "twin":
            if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
                raise InputError("points to transform to the twin CRS are [longitude, latitude] in degrees",
                                 zh="要转换到孪生库坐标参照系的点须为 [经度, 纬度]（度）")
            x, y = transformer("OGC:CRS84", crs).transform(xy[:, 0], xy[:, 1])
            z = z - settings.geoid_offset_m
        else:
            x, y = transformer(crs, "OGC:CRS84").transform(xy[:, 0], xy[:, 1])
            z = z + settings.geoid_offset_m
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InputError(f"some points lie outside the area {crs} can express",
                             zh=f"有些点超出 {crs} 可表示的范围")
        twin_x, twin_y = (x, y) if body.to == "twin" else (xy[:, 0], xy[:, 1])
        ground_z = _ground_at(conn, twin_x, twin_y) if body.ground else None
    digits = 3 if body.to == "twin" else 9
    out = []
    for i in range(len(pts)):
        p = [round(float(x[i]), digits), round(float(y[i]), digits)]
        if np.isfinite(z[i]):
            p.append(round(float(z[i]), 3))
        out.append(p)
    return {"crs": crs, "to": body.to, "geoid_offset_m": settings.geoid_offset_m, "points": out,
            "ground_z": ground_z}


class ProposalShapeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposal: ProposalDocument


@router.post("/proposal-shape", summary="A proposal's pipes as the checks read them, in CRS84 with heights")
def proposal_shape(body: ProposalShapeBody, request: Request, user: User = Depends(allow("read"))) -> dict:
    settings = request.app.state.settings
    engine: sa.Engine = read_engine(request)
    with work_limits(request).slot(user.name):
        net = read_proposal(geojson(body.proposal), settings, engine=engine)
    with engine.connect() as conn:
        crs = _crs(conn)
    return _shape(net, crs, settings)


@router.get("/proposals/{proposal_id}/shape",
            summary="A stored proposal's pipes as the checks read them, in CRS84 with heights")
def stored_proposal_shape(
    request: Request,
    proposal_id: Annotated[int, PathParam(ge=1, le=2**31 - 1, description="Stored proposal id.")],
    user: User = Depends(allow("read")),
) -> dict:
    settings = request.app.state.settings
    engine: sa.Engine = read_engine(request)
    with engine.connect() as conn:
        doc = conn.execute(sa.text("SELECT geojson FROM proposal WHERE id = :p"), {"p": proposal_id}).scalar()
        crs = _crs(conn)
    if doc is None:
        raise NotFound(f"no proposal {proposal_id}", zh=f"没有提案 {proposal_id}")
    with work_limits(request).slot(user.name):
        net = read_proposal(doc, settings, engine=engine)
    return _shape(net, crs, settings)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@router.get("/search", summary="Pipes and points by id (prefix) and roads by name (part of it), for the search box")
def search(
    request: Request,
    q: str = Query(..., min_length=1, max_length=100, description="An id or its start, or part of a road name."),
    limit: int = Query(8, ge=1, le=50, description="Results per kind at most."),
    user: User = Depends(allow("read")),
) -> dict:
    text = q.strip()
    if "\x00" in text:
        raise InputError("q: NUL characters are not allowed", zh="q：不允许出现 NUL 字符")
    if not text:
        raise InputError("q: give an id or a road name", zh="q：请输入编号或道路名称")
    prefix, part = _like(text) + "%", "%" + _like(text) + "%"
    params = {"q": text, "prefix": prefix, "part": part, "n": limit}
    with read_engine(request).connect() as conn:
        crs = _crs(conn)
        pipes = conn.execute(sa.text(
            "SELECT id, utility, road, size_text FROM current_segment WHERE id = :q OR id ILIKE :prefix "
            "ORDER BY id <> :q, length(id), id LIMIT :n"), params).mappings().all()
        nodes = conn.execute(sa.text(
            "SELECT id, utility, coalesce(appurtenance, feature) AS what FROM current_node "
            "WHERE id = :q OR id ILIKE :prefix ORDER BY id <> :q, length(id), id LIMIT :n"), params).mappings().all()
        roads = conn.execute(sa.text(
            "SELECT road, pipes, ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1 "
            "FROM (SELECT road, count(*) AS pipes, ST_Extent(geom) AS e FROM current_segment "
            "      WHERE road ILIKE :part GROUP BY road) r "
            "ORDER BY road <> :q, pipes DESC, road LIMIT :n"),
            params).mappings().all()
    to84 = transformer(crs, "OGC:CRS84")
    out = _utility_results(request, text, to84)
    out += [{"kind": "pipe", "id": r["id"], "utility": r["utility"],
            "label": " ".join(str(v) for v in (r["id"], r["size_text"], r["road"]) if v)} for r in pipes]
    out += [{"kind": "node", "id": r["id"], "utility": r["utility"],
             "label": " ".join(str(v) for v in (r["id"], r["what"]) if v)} for r in nodes]
    for r in roads:
        w, s, e, n = to84.transform_bounds(r["x0"], r["y0"], r["x1"], r["y1"], densify_pts=5)
        out.append({"kind": "road", "id": r["road"], "label": f"{r['road']} ({r['pipes']} pipes)",
                    "pipes": int(r["pipes"]), "bbox": [round(v, 8) for v in (w, s, e, n)]})
    return {"q": text, "results": out}


def _roads(conn: sa.Connection) -> dict:
    to84 = transformer(_crs(conn), "OGC:CRS84")
    features = []
    for r in road_centrelines(conn):
        xy = np.asarray(r["coords"], dtype=float)
        lon, lat = to84.transform(xy[:, 0], xy[:, 1])
        features.append({"type": "Feature", "id": r["road"],
                         "geometry": {"type": "LineString",
                                      "coordinates": np.round(np.c_[lon, lat], 8).tolist()},
                         "properties": {"road": r["road"], "pipes": r["pipes"], "length_m": r["length_m"]}})
    return {"type": "FeatureCollection", "features": features}


@router.get("/roads", summary="Road centrelines and names (CRS84), from the pipes' road attribute, for orientation")
def roads(request: Request, user: User = Depends(allow("read"))) -> dict:
    return _cached(request, "roads", _roads)


def _utility_extents(conn: sa.Connection) -> dict:
    """Pipes and extent of each utility and of each (utility, subtype), once per network state."""
    rows = conn.execute(sa.text(
        "SELECT utility, CASE WHEN GROUPING(subtype) = 0 THEN subtype END AS subtype, GROUPING(subtype) AS whole, "
        "count(*) AS pipes, ST_XMin(ST_Extent(geom)) AS x0, ST_YMin(ST_Extent(geom)) AS y0, "
        "ST_XMax(ST_Extent(geom)) AS x1, ST_YMax(ST_Extent(geom)) AS y1 FROM current_segment "
        "GROUP BY GROUPING SETS ((utility), (utility, subtype))")).mappings().all()
    return {(r["utility"], None if r["whole"] else r["subtype"]): r for r in rows
            if r["whole"] or r["subtype"] is not None}


def _utility_results(request: Request, text: str, to84) -> list[dict]:
    """Utilities (code, subtype) the text names (PS, 排水, 雨水, drain...), with the pipes they hold."""
    named = utilities_named(text)
    if not named:
        return []
    extents = _cached(request, "utility_extents", _utility_extents)
    out = []
    for code, subtype in named:
        r = extents.get((code, subtype))
        if r is None:
            continue
        u = UTILITIES[code]
        zh = name_zh(subtype or code)
        w, s, e, n = to84.transform_bounds(r["x0"], r["y0"], r["x1"], r["y1"], densify_pts=5)
        out.append({"kind": "utility", "id": subtype or code, "utility": code, "subtype": subtype,
                    "label": f"{zh or ''} {subtype or code} {u.name_en}: {int(r['pipes'])} 条 pipes".strip(),
                    "pipes": int(r["pipes"]), "bbox": [round(v, 8) for v in (w, s, e, n)]})
    return out


def _shape(net, crs: str, settings) -> dict:
    v = net.vertices
    lon, lat = transformer(crs, "OGC:CRS84").transform(v[:, 0], v[:, 1])
    h = v[:, 2] + settings.geoid_offset_m
    half_w, half_h = net.half_width_m, net.half_height_m
    features = []
    for i, seg in enumerate(net.segments.to_dict("records")):
        a, b = int(net.offsets[i]), int(net.offsets[i + 1])
        coords = [[round(float(lon[k]), 9), round(float(lat[k]), 9), round(float(h[k]), 3)] for k in range(a, b)]
        length = seg.get("length_m")
        features.append({
            "type": "Feature",
            "id": str(seg["id"]),
            "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {
                "id": str(seg["id"]), "utility": seg["utility"], "shape": seg["shape"],
                "size": seg.get("size_text"), "kind": seg.get("kind") or "pipe",
                "half_width_m": round(float(half_w[i]), 4), "half_height_m": round(float(half_h[i]), 4),
                "length_m": round(float(length), 3) if length is not None and np.isfinite(length) else None,
            },
        })
    return {"type": "FeatureCollection", "features": features,
            "height_reference": "centreline, ellipsoidal (normal height + TWIN_GEOID_OFFSET_M)"}


# -- the edit form (数据编辑) -------------------------------------------------------------------
_FORM_KINDS = {"nodes": "node", "segments": "segment", "valves": "valve", "sources": "source",
               "customers": "customer"}
#: The add routes' bodies (api.edit): their required fields and their own top-level fields.
_ADD_BODIES = {"node": NodeIn, "segment": SegmentIn}
#: Top-level fields of an add body that are not typed in a form (positions come from the map).
_PLACED = frozenset({"easting", "northing", "lon", "lat", "attributes", "scope", "from_node", "to_node",
                     "from_elevation_m", "to_elevation_m"})


def _option_labels(kind: str, name: str) -> list[dict] | None:
    """Allowed values of a column, Chinese name first, from the domain vocabulary."""
    if name == "utility":
        return [{"value": c, "zh": u.name_zh, "en": u.name_en} for c, u in UTILITIES.items()]
    if name == "subtype":
        return [{"value": s, "zh": name_zh(s), "en": s, "parent": c} for c, u in UTILITIES.items()
                for s in u.subtypes]
    vocabulary = {"feature": FEATURES, "appurtenance": APPURTENANCES}.get(name)
    if kind == "node" and vocabulary:
        return [{"value": v, "zh": names[0], "en": v.replace("_", " ")} for v, names in vocabulary.items()]
    col = column(kind, name)
    if col.enum is None:
        return None
    zh = {v: k for k, v in reversed(STATUS_WORDS.items()) if not k.isascii()} if name == "status" else {}
    return [{"value": v, "zh": zh.get(v, ""), "en": str(v)} for v in col.enum]


def _form_field(kind: str, cols: list, required: set[str]) -> dict:
    c = cols[0]
    return {
        "name": c.edit_name, "columns": [x.name for x in cols], "type": "string" if c.edit_as == "size" else c.type,
        "unit": " / ".join(dict.fromkeys(x.unit for x in cols if x.unit)) or None,
        "label_zh": " / ".join(dict.fromkeys(x.label_zh for x in cols)),
        "label_en": " / ".join(dict.fromkeys(x.label_en for x in cols)),
        "description": c.description, "required": c.edit_name in required,
        "options": _option_labels(kind, c.name),
        "suggestions": _suggestions(c.name),
    }


#: Open code lists: the known codes are offered, any other the survey uses is kept as typed.
_SUGGESTED = {"burial": BURIAL}


def _suggestions(name: str) -> list[dict] | None:
    """Codes offered (not enforced) for a free-text column, Chinese name first."""
    known = _SUGGESTED.get(name)
    return [{"value": v, "zh": zh, "en": en} for v, (zh, en) in known.items()] if known else None


def edit_form(kind: str) -> dict:
    """The attribute form of a feature kind from the column catalogue (twin.schema): editable
    columns under their edit names, with unit, labels, allowed values and whether required;
    for nodes and segments also the fields of the add form (the add route's own body)."""
    body = _ADD_BODIES.get(kind)
    required = set(body.model_json_schema().get("required", [])) if body else set()
    grouped: dict[str, list] = {}
    for c in catalogue_columns(kind, editable=True):
        grouped.setdefault(c.edit_name, []).append(c)
    fields = [_form_field(kind, cols, required) for cols in grouped.values()]
    add = None
    if body is not None:
        by_name = {c.edit_name: c for c in reversed(CATALOGUE[kind])} | {c.name: c for c in CATALOGUE[kind]}
        add = []
        for name, info in body.model_fields.items():
            if name in _PLACED:
                continue
            c = by_name.get(name)
            field = _form_field(kind, [c], required) if c else {
                "name": name, "columns": [], "type": "string", "unit": None, "label_zh": "", "label_en": name,
                "description": info.description or "", "required": name in required, "options": None,
                "suggestions": None}
            add.append({**field, "name": name, "required": name in required})
    return {"kind": kind, "fields": fields, "add": add}


@router.get("/edit-form/{kind}", summary="The attribute form of a feature kind, from the column catalogue")
def edit_form_route(kind: Literal["nodes", "segments", "valves", "sources", "customers"],
                    user: User = Depends(allow("edit"))) -> dict:
    return edit_form(_FORM_KINDS[kind])


#: Plan tolerance (m) of the overview's simplified centrelines: well under a pixel from afar; a
#: bigger district is simplified more (its extent's diagonal / OVERVIEW_DETAIL).
OVERVIEW_TOLERANCE_M = 0.5
OVERVIEW_DETAIL = 5000
#: At most this many surveyed vertices go into the overview, shared evenly by the utilities:
#: the biggest pipes first (diameter or width, then length). Merged and simplified, the answer
#: stays a few hundred kB whatever the network's size (the 1.07M-segment district: bench/RESULTS.md).
OVERVIEW_VERTICES = 60_000

_OVERVIEW_SQL = """
WITH live AS (SELECT count(*) AS pipes, count(DISTINCT utility) AS k,
                     ST_Extent(geom) AS box FROM current_segment WHERE status = 'active'),
ranked AS (
  SELECT id, sum(ST_NPoints(geom)) OVER (PARTITION BY utility
      ORDER BY greatest(coalesce(diameter_mm, 0), coalesce(width_mm, 0)) DESC, ST_Length(geom) DESC, id
      ROWS UNBOUNDED PRECEDING) AS upto
  FROM current_segment WHERE status = 'active'),
tol AS (SELECT greatest(:tol, sqrt((ST_XMax(box) - ST_XMin(box)) ^ 2 + (ST_YMax(box) - ST_YMin(box)) ^ 2)
                        / :detail) AS m, pipes, k FROM live)
SELECT s.utility, count(*), ST_AsBinary(ST_Simplify(ST_LineMerge(ST_Collect(s.geom)), tol.m, true)),
       tol.m, tol.pipes
FROM ranked r JOIN current_segment s USING (id), tol
WHERE r.upto <= :budget / tol.k GROUP BY s.utility, tol.m, tol.pipes ORDER BY s.utility
"""


def _overview(conn: sa.Connection, settings, budget: int = OVERVIEW_VERTICES) -> dict:
    """The live network's biggest pipes, merged into lines and simplified, in CRS84 with
    ellipsoidal heights, by utility: ``{utility: {"positions": [lon, lat, h, ...], "offsets": [0,
    n1, ...], "pipes": n}}`` (vertex offsets of each line). At most ``budget`` surveyed vertices
    are read, shared by the utilities, biggest pipes first: the answer is bounded whatever the
    network's size; ``pipes`` of ``active`` pipes are in it."""
    rows = conn.execute(sa.text(_OVERVIEW_SQL), {"tol": OVERVIEW_TOLERANCE_M, "detail": OVERVIEW_DETAIL,
                                                 "budget": budget}).all()
    if not rows:
        return {"utilities": {}, "pipes": 0, "active": 0, "tolerance_m": OVERVIEW_TOLERANCE_M}
    geoms = shapely.get_parts(shapely.from_wkb(np.array([bytes(r[2]) for r in rows], dtype=object)),
                              return_index=True)
    lines, owner = geoms
    xyz, index = shapely.get_coordinates(lines, include_z=True, return_index=True)
    lon, lat = transformer(_crs(conn), "OGC:CRS84").transform(xyz[:, 0], xyz[:, 1])
    # 1e-6 degree is 0.1 m, a tenth of what a pixel covers from where the lines show
    pos = np.column_stack([np.round(lon, 6), np.round(lat, 6),
                           np.round(np.nan_to_num(xyz[:, 2]) + settings.geoid_offset_m, 1)])
    counts = np.bincount(index, minlength=len(lines))
    starts = np.r_[0, np.cumsum(counts)]
    out = {}
    for i, row in enumerate(rows):  # one row per utility
        k = np.flatnonzero(owner == i)
        if not len(k):
            continue
        a, b = int(starts[k[0]]), int(starts[k[-1] + 1])  # parts are in the order of their rows
        out[str(row[0])] = {"positions": pos[a:b].ravel().tolist(),
                            "offsets": (np.r_[0, np.cumsum(counts[k])]).tolist(), "pipes": int(row[1])}
    return {"utilities": out, "pipes": int(sum(r[1] for r in rows)), "active": int(rows[0][4]),
            "tolerance_m": round(float(rows[0][3]), 2)}


@router.get("/overview", summary="The live network's biggest pipes as merged, simplified lines (CRS84, by "
            "utility), bounded whatever the network's size: the overview lines")
def overview(request: Request, user: User = Depends(allow("read"))) -> dict:
    settings = request.app.state.settings
    return _cached(request, "overview", lambda conn: _overview(conn, settings))


@router.get("/theme/{name}", summary="A thematic map's class of every pipe (专题图: pressure class, survey "
            "accuracy, criticality)")
def theme_route(request: Request, name: Annotated[str, PathParam(pattern="^[a-z_]{1,32}$")],
                user: User = Depends(allow("read"))) -> dict:
    with read_engine(request).connect() as conn:
        version = theme_version(conn, name)  # the stored criticality run: recomputed at the same mark
    return _cached(request, f"theme:{name}:{version}", lambda conn: theme_classes(conn, name))


# -- history (历史) and the phone in the field (现场) -------------------------------------------
@router.get("/timeline", summary="When the network changed: imports and edits, oldest first (the history slider)")
def history_timeline(request: Request, user: User = Depends(allow("read"))) -> dict:
    with read_engine(request).connect() as conn:
        return timeline(conn)


def _lonlat_box(text: str, crs: str) -> tuple[float, float, float, float]:
    """``west,south,east,north`` (CRS84 degrees) as a box in the twin CRS."""
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError("bbox: four numbers west,south,east,north in degrees (CRS84)",
                         zh="bbox：四个数 西,南,东,北（度，CRS84）") from None
    if not all(np.isfinite([w, s, e, n])) or not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise InputError("bbox: west <= east in [-180, 180] and south <= north in [-90, 90] (degrees)",
                         zh="bbox：西 <= 东，在 [-180, 180] 内；南 <= 北，在 [-90, 90] 内（度）")
    x0, y0, x1, y1 = transformer("OGC:CRS84", crs).transform_bounds(w, s, e, n, densify_pts=5)
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise InputError(f"bbox: outside the area {crs} can express",
                         zh=f"bbox：超出 {crs} 可表示的范围")
    return x0, y0, x1, y1


@router.get("/changes", summary="What changed between two times (added, retired, deleted, changed), in CRS84")
def history_changes(
    request: Request,
    start: str = Query(..., alias="from", max_length=64, description="The earlier time (ISO 8601; no zone: UTC)."),
    end: str = Query(..., alias="to", max_length=64, description="The later time (ISO 8601; no zone: UTC)."),
    bbox: str | None = Query(None, max_length=200, description="west,south,east,north (CRS84): changes there only."),
    kinds: str = Query("segment", max_length=60, description="Feature kinds, comma-separated (segment, node, valve...)."),
    user: User = Depends(allow("read")),
) -> dict:
    with read_engine(request).connect() as conn:
        box = _lonlat_box(bbox, _crs(conn)) if bbox else None
        out = changes_between(conn, start, end, bbox=box, srid=4326,
                              kinds=[k.strip() for k in kinds.split(",") if k.strip()] or ["segment"])
    out["height_reference"] = "normal heights (add geoid_offset_m of /view/frame for ellipsoidal)"
    return out


@router.get("/valves/nearest", summary="The valves nearest a plan point (twin CRS), with road, depth and distance")
def valves_nearest(
    request: Request,
    x: float = Query(..., allow_inf_nan=False, ge=-1e8, le=1e8, description="Easting in the twin CRS (m)."),
    y: float = Query(..., allow_inf_nan=False, ge=-1e8, le=1e8, description="Northing in the twin CRS (m)."),
    n: int = Query(5, ge=1, le=MAX_VALVES, description="How many valves."),
    utility: str | None = Query(None, max_length=8, description="Only this network's valves (CJJ 61 code, e.g. JS)."),
    user: User = Depends(allow("read")),
) -> dict:
    settings = request.app.state.settings
    with read_engine(request).connect() as conn:
        crs = _crs(conn)
        valves = nearest_valves(conn, x, y, n=n, utility=utility.upper() if utility else None)
    if valves:
        lon, lat = transformer(crs, "OGC:CRS84").transform([v["x"] for v in valves], [v["y"] for v in valves])
        for v, a, b in zip(valves, lon, lat, strict=True):
            h = None if v["z"] is None else round(v["z"] + settings.geoid_offset_m, 3)
            v["lonlat"] = [round(float(a), 9), round(float(b), 9), h]
    return {"crs": crs, "at": [x, y], "valves": valves}
