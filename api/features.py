"""OGC API - Features (Part 1 core, Part 2 CRS, Part 3 queryables) over the twin.

Collections: ``pipes`` (every current segment), ``pipes-<code>`` per utility present (CJJ 61
codes, e.g. ``pipes-js``), ``nodes``, ``valves``, ``sources``, ``customers`` and
``proposals`` (as submitted; withdrawn ones are left out). Items are the live network (the ``current_<table>`` views: nothing retired);
``datetime=<instant>`` reads the network as it stood then (``<table>_as_of``).

PostgreSQL builds every feature (``json_build_object``, ``ST_AsGeoJSON``); Python only wraps
the page in its links, so a page costs one round trip and no per-row Python.

Coordinates are CRS84 (lon, lat, height) per RFC 7946 unless ``crs`` names another supported
CRS; then they come in that CRS's axis order (EPSG:4548 is northing, easting: the survey's
X, Y; EPSG:4326 is lat, lon). Heights are the twin's normal heights. Paging: ``limit``
(default 10, clamped to 10,000), ``offset``, and ``next`` links carrying a keyset ``cursor``
(features are ordered by id), so walking a million features costs the same per page.
Query parameters that are neither standard nor a queryable of the collection are answered
400 (OGC API - Features Part 1, /req/core/query-param-unknown).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, urlencode

import numpy as np
import shapely
import shapely.geometry
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pyproj import CRS

from api.auth import User, allow
from api.conditional import CACHE_CONTROL, etag, if_none_match, matches, not_modified
from api.cql import compile_filter, parse_filter
from api.jobs import base_url
from api.reads import read_engine
from twin.crs import transformer
from twin.db import CHANGE_MARK_SQL, twin_srid
from twin.domain import UTILITIES
from twin.errors import InputError, NotFound
from twin.schema import columns as catalogue_columns

__all__ = ["router", "CRS84", "MAX_LIMIT", "COLLECTIONS", "epsg_uri", "features_state"]

router = APIRouter(tags=["features"])

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOJSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"
DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
#: A count of a filtered request stops here (numberMatched is then left out); counts of
#: unfiltered collections are exact and cached until the network changes.
COUNT_CAP = 100_000
#: Geographic CRSs offered besides CRS84 and the twin's own (lat, lon axis order).
EXTRA_GEOGRAPHIC = (4326, 4490)
_STANDARD_PARAMS = frozenset(
    {"bbox", "bbox-crs", "crs", "limit", "offset", "cursor", "datetime", "f",
     "filter", "filter-lang", "filter-crs", "sortby", "properties"}
)


def epsg_uri(srid: int) -> str:
    return f"http://www.opengis.net/def/crs/EPSG/0/{srid}"


# -- collections --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A property of a collection's features: a column of its table."""

    name: str
    type: str  # JSON Schema type
    title: str
    queryable: bool = False
    format: str | None = None
    enum: tuple[Any, ...] | None = None

    def schema(self) -> dict:
        doc: dict[str, Any] = {"title": self.title, "type": self.type}
        if self.format:
            doc["format"] = self.format
        if self.enum:
            doc["enum"] = list(self.enum)
        return doc


def _fields(kind: str) -> tuple[Field, ...]:
    """A collection's properties: the catalogue's exported columns of its table (twin.schema)."""
    return tuple(Field(c.name, c.type, c.description, c.queryable, format=c.format, enum=c.enum)
                 for c in catalogue_columns(kind, exported=True))


PIPE_FIELDS = _fields("segment")
NODE_FIELDS = _fields("node")
VALVE_FIELDS = _fields("valve")
SOURCE_FIELDS = _fields("source")
CUSTOMER_FIELDS = _fields("customer")
PROPOSAL_FIELDS = _fields("proposal")


@dataclass(frozen=True)
class Collection:
    """A feature collection: a table (or one utility's rows of ``segment``) and its properties."""

    id: str
    title: str
    description: str
    table: str
    fields: tuple[Field, ...]
    geometry: str  # GeoJSON geometry type
    utility: str | None = None

    @property
    def versioned(self) -> bool:
        return self.table != "proposal"

    @property
    def id_type(self) -> str:
        return "integer" if self.table == "proposal" else "string"

    def queryables(self) -> dict[str, Field]:
        return {
            f.name: f
            for f in self.fields
            if f.queryable and not (self.utility and f.name == "utility")
        }


COLLECTIONS: dict[str, Collection] = {
    c.id: c
    for c in (
        Collection(
            "pipes",
            "Pipes",
            "Every pipe, cable and duct of the current network (管段), "
            "centrelines with depths and elevations.",
            "segment",
            PIPE_FIELDS,
            "LineString",
        ),
        Collection(
            "nodes",
            "Nodes",
            "Survey points (管点): features and appurtenances at the ground.",
            "node",
            NODE_FIELDS,
            "Point",
        ),
        Collection(
            "valves",
            "Valves",
            "Valves on pipes (a pipe and the node at its end).",
            "valve",
            VALVE_FIELDS,
            "Point",
        ),
        Collection(
            "sources",
            "Sources",
            "Supply sources: plants, pressure and regulator stations, heat sources.",
            "source",
            SOURCE_FIELDS,
            "Point",
        ),
        Collection(
            "customers",
            "Customers",
            "Customers on the network (critical ones flagged).",
            "customer",
            CUSTOMER_FIELDS,
            "Point",
        ),
        Collection(
            "proposals",
            "Proposals",
            "Proposed pipes and excavations under review (管线审批), as submitted.",
            "proposal",
            PROPOSAL_FIELDS,
            "Geometry",
        ),
    )
}
_ORDER = ("pipes", "*utilities*", "nodes", "valves", "sources", "customers", "proposals")


def utility_collection(code: str) -> Collection:
    u = UTILITIES.get(code)
    name = f"{u.name_en} {u.name_zh}" if u else code
    return Collection(
        f"pipes-{code.lower()}",
        f"Pipes: {name} ({code})",
        f"The current {name} pipes ({code}).",
        "segment",
        PIPE_FIELDS,
        "LineString",
        utility=code,
    )


# -- coordinate reference systems ------------------------------------------------------------------
@dataclass(frozen=True)
class OutCrs:
    """A CRS the service speaks: its URI, its PostGIS SRID and its axis order."""

    uri: str
    srid: int
    flip: bool  # first axis north (lat or northing): PostGIS stores x = east
    geographic: bool

    @property
    def precision(self) -> int:
        return 8 if self.geographic else 3  # about a millimetre either way


@lru_cache(maxsize=16)
def _crs_of(srid: int) -> CRS:
    return CRS.from_epsg(srid)


def supported_crs(srid: int) -> list[OutCrs]:
    """CRS84 first, then the twin's own CRS, then the geographic EPSG CRSs."""
    return list(_supported_crs(srid))


@lru_cache(maxsize=16)
def _supported_crs(srid: int) -> tuple[OutCrs, ...]:
    """Cached: pyproj's CRS objects are per thread, and asking one its axes costs in each new thread."""
    out = [OutCrs(CRS84, 4326, False, True)]
    for s in (srid, *EXTRA_GEOGRAPHIC):
        if s in {c.srid for c in out[1:]}:
            continue
        crs = _crs_of(s)
        out.append(
            OutCrs(
                epsg_uri(s),
                s,
                crs.axis_info[0].direction.lower() in ("north", "south"),
                crs.is_geographic,
            )
        )
    return tuple(out)


def _crs_key(text: str) -> str:
    """``OGC:CRS84``, ``EPSG:4548``, ``urn:ogc:def:crs:EPSG::4548`` or the URI -> the URI."""
    t = text.strip().strip("[]")
    low = t.lower()
    if low.endswith("crs84") and ("ogc" in low or low == "crs84"):
        return CRS84
    for prefix in (
        "epsg:",
        "urn:ogc:def:crs:epsg::",
        "http://www.opengis.net/def/crs/epsg/0/",
        "https://www.opengis.net/def/crs/epsg/0/",
    ):
        if low.startswith(prefix) and low[len(prefix) :].isdigit():
            return epsg_uri(int(low[len(prefix) :]))
    return t


def parse_crs(text: str | None, srid: int, what: str = "crs") -> OutCrs:
    if text is None:
        return supported_crs(srid)[0]
    want = _crs_key(text)
    for c in _supported_crs(srid):
        if c.uri == want:
            return c
    raise InputError(
        f"{what}: {text[:80]!r} is not supported; one of "
        f"{', '.join(c.uri for c in supported_crs(srid))}",
        zh=f"{what}：不支持 {text[:80]!r}；可选 {', '.join(c.uri for c in supported_crs(srid))}"
    )


@lru_cache(maxsize=16)
def _twin_area(srid: int) -> tuple[float, float, float, float]:
    area = _crs_of(srid).area_of_use
    return area.bounds if area else (-180.0, -90.0, 180.0, 90.0)


def _to_crs84(srid: int, bounds: tuple[float, float, float, float]) -> list[float]:
    """Bounds in the twin CRS (easting, northing) -> CRS84 [west, south, east, north]."""
    w, s, e, n = transformer(srid, 4326).transform_bounds(*bounds, densify_pts=21)
    # rounded outwards: the box still holds everything
    return [
        math.floor(w * 1e8) / 1e8,
        math.floor(s * 1e8) / 1e8,
        math.ceil(e * 1e8) / 1e8,
        math.ceil(n * 1e8) / 1e8,
    ]


# -- query parameters -----------------------------------------------------------------------------
def _clean(value: str, what: str) -> str:
    if "\x00" in value:
        raise InputError(f"{what}: NUL characters are not allowed",
                         zh=f"{what}：不允许出现 NUL 字符")
    return value


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{what}: {text[:40]!r} is not a number",
                         zh=f"{what}：{text[:40]!r} 不是数字") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: {text[:40]!r} is not a finite number",
                         zh=f"{what}：{text[:40]!r} 不是有限数值")
    return v


@dataclass
class Conditions:
    """The SQL conditions and bound values of one request."""

    where: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    key: list[Any] = field(default_factory=list)  # what the count depends on

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"


def bbox_filter(q: Conditions, text: str, bcrs: OutCrs, srid: int) -> None:
    """``bbox`` (4 or 6 numbers, in the axis order of ``bbox-crs``) as conditions on ``geom``."""
    parts = [p for p in _clean(text, "bbox").split(",")]
    if len(parts) not in (4, 6):
        raise InputError("bbox: 4 numbers (min, min, max, max) or 6 (with heights)",
                         zh="bbox：4 个数（最小, 最小, 最大, 最大）或 6 个数（含高程）")
    v = [_number(p, "bbox") for p in parts]
    lo, hi = (v[:2], v[2:]) if len(v) == 4 else (v[:3], v[3:])
    if any(a > b for a, b in zip(lo, hi, strict=True)):
        raise InputError("bbox: a minimum is larger than its maximum", zh="bbox：最小值大于最大值")
    x0, y0, x1, y1 = lo[0], lo[1], hi[0], hi[1]
    if bcrs.flip:
        x0, y0, x1, y1 = y0, x0, y1, x1
    if bcrs.geographic and not (
        -180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90
    ):
        raise InputError(
            "bbox: longitudes lie in [-180, 180] and latitudes in [-90, 90]"
            + (" (EPSG:4326 and EPSG:4490 take latitude first)" if bcrs.flip else ""),
            zh="bbox：经度须在 [-180, 180]，纬度须在 [-90, 90]"
            + ("（EPSG:4326 和 EPSG:4490 纬度在前）" if bcrs.flip else "")
        )
    q.key.append(("bbox", bcrs.srid, tuple(v)))
    # The box goes into the SQL as a literal (numbers formatted here, nothing of the request's
    # text): the planner then sees how much of the table it covers and picks the GiST index
    # for a small box, the id order for a large one.
    if bcrs.srid == srid:
        env = f"ST_MakeEnvelope({x0!r}, {y0!r}, {x1!r}, {y1!r}, {srid})"
    else:
        # the box's outline, densified (its edges are curves in the twin's CRS) and cut to the
        # twin CRS's area of use, as a polygon in the twin's CRS: one indexed test per row
        w, s, e, n = _twin_area(srid)
        cx0, cy0, cx1, cy1 = max(x0, w), max(y0, s), min(x1, e), min(y1, n)
        if cx0 > cx1 or cy0 > cy1:
            q.where.append("false")
            return
        env = _outline(bcrs.srid, srid, cx0, cy0, cx1, cy1)
    q.where.append(f"geom && {env} AND ST_Intersects(geom, {env})")
    if len(v) == 6:
        q.where.append(f"ST_ZMax(geom) >= {q.bind(lo[2])} AND ST_ZMin(geom) <= {q.bind(hi[2])}")


def _outline(src: int, dst: int, x0: float, y0: float, x1: float, y1: float, n: int = 64) -> str:
    """SQL of the box (x0, y0)-(x1, y1) in ``src`` (x east), n points an edge, in ``dst``.

    PostGIS densifies and transforms it (every function here is immutable: the planner folds
    the literal and still sees the box's size). Not pyproj in the request: its transformers are
    per thread, and building one in each new worker thread cost more than the page under load.
    """
    eps = 1e-9  # a box of zero width or height still covers its line or point
    if x1 - x0 < eps:
        x0, x1 = x0 - eps, x1 + eps
    if y1 - y0 < eps:
        y0, y1 = y0 - eps, y1 + eps
    step = max(x1 - x0, y1 - y0) / n
    box = f"ST_MakeEnvelope({x0!r}, {y0!r}, {x1!r}, {y1!r}, {src})"
    return f"ST_Transform(ST_Segmentize({box}, {step!r}), {dst})"


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant (or a date: its midnight UTC); intervals are refused."""
    t = _clean(text, "datetime").strip().upper()  # RFC 3339 allows 't' and 'z'
    if "/" in t:
        raise InputError(
            "datetime: give an instant (the network as it stood then), not an interval",
            zh="datetime：请给出一个时刻（管网在该时刻的状态），而不是时间段"
        )
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        raise InputError(
            f"datetime: {t[:40]!r} is not an RFC 3339 instant such as 2024-05-01T12:00:00Z",
            zh=f"datetime：{t[:40]!r} 不是 RFC 3339 时刻，例如 2024-05-01T12:00:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _typed(f: Field, value: str) -> Any:
    what = f.name
    if f.type == "integer":
        try:
            v = int(value)
        except ValueError:
            raise InputError(f"{what}: {value[:40]!r} is not an integer",
                             zh=f"{what}：{value[:40]!r} 不是整数") from None
        if abs(v) > 2**31 - 1:
            raise InputError(f"{what}: {value[:40]!r} is out of range",
                             zh=f"{what}：{value[:40]!r} 超出范围")
        return v
    if f.type == "number":
        return _number(value, what)
    if f.type == "boolean":
        low = value.lower()
        if low not in ("true", "false"):
            raise InputError(f"{what}: true or false, not {value[:40]!r}",
                             zh=f"{what}：须为 true 或 false，而不是 {value[:40]!r}")
        return low == "true"
    if len(value) > 200:
        raise InputError(f"{what}: at most 200 characters", zh=f"{what}：最多 200 个字符")
    return value


def property_filters(q: Conditions, c: Collection, request: Request) -> None:
    """Query parameters naming queryables (repeat one for any of several values); others -> 400."""
    allowed = c.queryables()
    values: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name in _STANDARD_PARAMS:
            continue
        _clean(name, "parameter")
        if name not in allowed:
            raise InputError(
                f"unknown query parameter {name[:40]!r} for {c.id}; the standard ones are "
                f"{', '.join(sorted(_STANDARD_PARAMS))}, the queryables "
                f"{', '.join(allowed) or 'none'} (see /collections/{c.id}/queryables)",
                zh=f"{c.id} 没有查询参数 {name[:40]!r}；标准参数为 {', '.join(sorted(_STANDARD_PARAMS))}，"
                f"可查询属性为 {', '.join(allowed) or '无'}（见 /collections/{c.id}/queryables）"
            )
        values.setdefault(name, []).append(_clean(value, name))
    for name in sorted(values):
        typed = [_typed(allowed[name], v) for v in values[name]]
        q.key.append((name, tuple(typed)))
        if len(typed) == 1:
            q.where.append(f"{name} = {q.bind(typed[0])}")
        else:
            q.where.append(f"{name} = ANY({q.bind(typed)})")


def _filter_geometry(q: Conditions, fcrs: OutCrs, srid: int) -> Callable[[dict], str]:
    """A filter's literal geometry (GeoJSON-like, in ``filter-crs`` axis order) as bound SQL."""

    def sql(doc: dict) -> str:
        try:
            g = shapely.geometry.shape(doc)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError,
                shapely.errors.ShapelyError) as exc:
            raise InputError(f"filter: not a valid geometry ({str(exc)[:80]})",
                             zh=f"filter：不是有效的几何（{str(exc)[:80]}）") from None
        if g.is_empty or not np.isfinite(shapely.get_coordinates(g)).all():
            raise InputError("filter: an empty geometry or one with coordinates that are not numbers",
                             zh="filter：几何为空，或坐标不是数字")
        if fcrs.flip:
            g = shapely.transform(g, lambda xy: xy[:, ::-1])  # plan axes swapped, heights kept
        if fcrs.geographic:
            x0, y0, x1, y1 = g.bounds
            if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
                raise InputError("filter: longitudes lie in [-180, 180] and latitudes in [-90, 90]"
                                 + (" (this filter-crs takes latitude first)" if fcrs.flip else ""),
                                 zh="filter：经度须在 [-180, 180]，纬度须在 [-90, 90]"
                                 + ("（此 filter-crs 纬度在前）" if fcrs.flip else ""))
        if fcrs.srid != srid:
            # cut to the twin CRS's area of use (the network lies in it; farther out the
            # projection fails), then densified: straight edges here are curves in the twin's CRS
            g = g.intersection(shapely.box(*_twin_area(srid)))
            if g.is_empty:
                return f"ST_GeomFromText({q.bind('GEOMETRYCOLLECTION EMPTY')}, {srid})"
            g = shapely.segmentize(g, 1e-3)
        literal = f"ST_GeomFromText({q.bind(g.wkt)}, {fcrs.srid})"
        return literal if fcrs.srid == srid else f"ST_Transform({literal}, {srid})"

    return sql


def cql_filter(q: Conditions, c: Collection, text: str, lang: str | None, fcrs: OutCrs, srid: int) -> None:
    """``filter`` (CQL2 text or JSON) as one bound condition over the collection's queryables."""
    tree = parse_filter(text, lang)
    cond = compile_filter(tree, c.queryables(), q.bind, _filter_geometry(q, fcrs, srid), lang=lang)
    q.where.append(cond)
    q.key.append(("filter", lang or "cql2-text", fcrs.srid, text))


def parse_sortby(text: str, c: Collection) -> list[tuple[str, bool]]:
    """``sortby`` (``+name``, ``-name``, comma-separated; queryables only) -> (name, descending)."""
    allowed = c.queryables()
    keys: list[tuple[str, bool]] = []
    for raw in _clean(text, "sortby").split(","):
        item = raw.strip()
        desc = item.startswith("-")
        name = item.lstrip("+-").strip()
        if name.upper().endswith((" ASC", " DESC")):  # the 'name DESC' spelling some clients use
            desc = name.upper().endswith(" DESC")
            name = name.rsplit(" ", 1)[0].strip()
        if name not in allowed:
            raise InputError(f"sortby: {name[:40]!r} is not a queryable of {c.id}; one of "
                             f"{', '.join(allowed) or 'none'} (prefix - for descending)",
                             zh=f"sortby：{name[:40]!r} 不是 {c.id} 的可查询属性；可选 {', '.join(allowed) or '无'}"
                             "（前加 - 表示降序）")
        if name in (k for k, _ in keys):
            raise InputError(f"sortby: {name!r} is named twice", zh=f"sortby：{name!r} 重复出现")
        keys.append((name, desc))
    return keys


def parse_properties(text: str, c: Collection) -> tuple[Field, ...]:
    """``properties`` (comma-separated names of the collection's properties) -> those fields."""
    by_name = {f.name: f for f in c.fields}
    names = [n.strip() for n in _clean(text, "properties").split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"properties: {unknown[0][:40]!r} is not a property of {c.id}; see "
                         f"/collections/{c.id}/schema",
                         zh=f"properties：{unknown[0][:40]!r} 不是 {c.id} 的属性；见 /collections/{c.id}/schema")
    return tuple(by_name[n] for n in dict.fromkeys(names))


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


_CURSOR_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _decode_cursor(cursor: str, c: Collection) -> Any:
    bad = InputError("cursor: not a cursor of this service (take it from a 'next' link)",
                     zh="cursor：不是本服务的游标（请使用 'next' 链接中的值）")
    if not cursor or not set(cursor) <= _CURSOR_CHARS:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise bad from None
    if "\x00" in text or (
        c.id_type == "integer" and not (text.isascii() and text.lstrip("-").isdigit())
    ):
        raise InputError("cursor: not a cursor of this collection (take it from a 'next' link)",
                         zh="cursor：不是此集合的游标（请使用 'next' 链接中的值）")
    return int(text) if c.id_type == "integer" else text


# -- SQL ------------------------------------------------------------------------------------------
#: Moves with every write to a feature table, when it commits (migration 0007).
_FINGERPRINT = CHANGE_MARK_SQL
#: Moves with every submission, re-check and status change (decision, withdrawal) of a proposal.
_PROPOSAL_MARK = (
    "(SELECT concat_ws('|', count(*), max(id), sum(version), max(checked_at), max(decided_at)) "
    "FROM proposal)"
)
#: The proposals served, with the geometry stored in the twin CRS when each was submitted or
#: re-checked (migration 0008, analysis.proposal_workflow); withdrawn ones are not served.
_PROPOSALS = """(
        SELECT id, name, utility, status, passed, created_by, created_at, checked_at, decided_by,
               decided_at, note, override_note, version, network_mark, rules_version, geom
          FROM proposal
         WHERE status <> 'withdrawn'
    )"""


def _source(c: Collection, srid: int, as_of: str | None) -> str:
    if c.table == "proposal":
        return _PROPOSALS + " AS src"
    if as_of:
        return f"{c.table}_as_of(CAST({as_of} AS timestamptz)) AS src"
    return f"current_{c.table} AS src"


def _geometry(out: OutCrs, srid: int) -> str:
    g = "geom" if out.srid == srid else f"ST_Transform(geom, {out.srid})"
    if out.flip:
        g = f"ST_FlipCoordinates({g})"
    return f"ST_AsGeoJSON({g}, {out.precision}, 0)::json"


def _feature(c: Collection, out: OutCrs, srid: int, fields: tuple[Field, ...] | None = None) -> str:
    chosen = c.fields if fields is None else fields
    props = ", ".join(f"'{f.name}', {f.name}" for f in chosen)
    return (
        f"json_build_object('type', 'Feature', 'id', id, 'geometry', {_geometry(out, srid)}, "
        f"'properties', json_build_object({props}))"
    )


# -- per-process state: the collections present, their extents, counts -----------------------
@dataclass
class _State:
    srid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    utilities: tuple[str, ...] = ()
    utilities_fp: str | None = None
    extents: dict[str, list[float] | None] = field(default_factory=dict)
    extents_fp: str | None = None
    counts: dict[tuple, tuple[str, int | None]] = field(default_factory=dict)


def features_state(engine: sa.Engine) -> _State:
    """The per-process caches of the features API (made in the app's lifespan)."""
    return _State(srid=twin_srid(engine))


def _state(request: Request, conn: sa.Connection) -> _State:
    return request.app.state.features


def _utilities(state: _State, conn: sa.Connection, fp: str) -> tuple[str, ...]:
    """The utility codes with current pipes: a skip scan of the utility index, one probe each."""
    if state.utilities_fp == fp:
        return state.utilities
    rows = (
        conn.execute(
            sa.text(
                "WITH RECURSIVE u AS ("
                " (SELECT utility FROM segment ORDER BY utility LIMIT 1)"
                " UNION ALL SELECT (SELECT s.utility FROM segment s WHERE s.utility > u.utility"
                "                   ORDER BY s.utility LIMIT 1) FROM u WHERE u.utility IS NOT NULL)"
                " SELECT utility FROM u WHERE utility IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM current_segment c WHERE c.utility = u.utility)"
            )
        )
        .scalars()
        .all()
    )
    known = [code for code in UTILITIES if code in rows]
    codes = tuple(known + sorted(r for r in rows if r not in UTILITIES and r.isalnum()))
    with state.lock:
        state.utilities, state.utilities_fp = codes, fp
    return codes


def _extents(state: _State, conn: sa.Connection, fp: str) -> dict[str, list[float] | None]:
    """CRS84 bounding boxes of every collection, recomputed when the network changes."""
    if state.extents_fp == fp:
        return state.extents
    srid = state.srid
    box = "ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
    parts = [
        "SELECT 'pipes-' || lower(utility), "
        + box
        + " FROM (SELECT utility, ST_Extent(geom) AS e FROM current_segment GROUP BY utility) s"
    ]
    for c in COLLECTIONS.values():
        if c.id != "pipes":
            src = _source(c, srid, None)
            parts.append(f"SELECT '{c.id}', {box} FROM (SELECT ST_Extent(geom) AS e FROM {src}) s")
    rows = conn.execute(sa.text(" UNION ALL ".join(parts))).all()
    raw = {r[0]: tuple(r[1:]) for r in rows if r[1] is not None}
    pipes = [b for k, b in raw.items() if k.startswith("pipes-")]
    if pipes:
        raw["pipes"] = (
            min(b[0] for b in pipes),
            min(b[1] for b in pipes),
            max(b[2] for b in pipes),
            max(b[3] for b in pipes),
        )
    extents = {k: _to_crs84(srid, b) for k, b in raw.items()}
    with state.lock:
        state.extents, state.extents_fp = extents, fp
    return extents


def _fingerprints(conn: sa.Connection) -> tuple[str, str]:
    """The network's fingerprint, and one that also covers the proposals."""
    network, proposals = conn.execute(sa.text(f"SELECT {_FINGERPRINT}, {_PROPOSAL_MARK}")).one()
    return network, f"{network}#{proposals}"


def _collection(state: _State, conn: sa.Connection, cid: str, fp: str | None = None) -> Collection:
    if cid in COLLECTIONS:
        return COLLECTIONS[cid]
    if cid.startswith("pipes-") and cid[6:].isalnum():
        code = cid[6:].upper()
        codes = state.utilities if state.utilities_fp is not None else ()
        if code not in codes:  # not known yet, or new since: ask the database
            codes = _utilities(state, conn, fp or _fingerprints(conn)[0])
        if code in codes:
            return utility_collection(code)
    raise NotFound(f"no collection {cid[:60]!r}; see /collections",
                   zh=f"没有集合 {cid[:60]!r}；见 /collections")


# -- documents ------------------------------------------------------------------------------------
def _collection_doc(c: Collection, base: str, srid: int, extent: list[float] | None) -> dict:
    url = f"{base}/collections/{c.id}"
    doc: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "itemType": "feature",
        "crs": [x.uri for x in supported_crs(srid)],
        "storageCrs": epsg_uri(srid),
    }
    if extent is not None:
        doc["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84}}
    doc["links"] = [
        {"href": url, "rel": "self", "type": "application/json", "title": "This collection"},
        {"href": f"{url}/items", "rel": "items", "type": GEOJSON, "title": "The features"},
        {
            "href": f"{url}/queryables",
            "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            "type": SCHEMA_JSON,
            "title": "Queryable properties",
        },
        {
            "href": f"{url}/schema",
            "rel": "describedby",
            "type": SCHEMA_JSON,
            "title": "Schema of the features",
        },
    ]
    return doc


def _ordered(state: _State, conn: sa.Connection, fp: str) -> list[Collection]:
    out: list[Collection] = []
    for key in _ORDER:
        if key == "*utilities*":
            out.extend(utility_collection(u) for u in _utilities(state, conn, fp))
        else:
            out.append(COLLECTIONS[key])
    return out


_ID = Path(..., max_length=100, description="A collection id: see /collections")
_CRS = Query(None, max_length=200, description="CRS of the coordinates (default CRS84)")
_DATETIME = Query(
    None, alias="datetime", max_length=100, description="an instant: the network as it stood then"
)
_FORMAT = Query(None, description="output format (GeoJSON only)")


@router.get("/collections", summary="The feature collections")
def collections(request: Request, user: User = Depends(allow("read"))) -> dict:
    base = base_url(request)
    with read_engine(request).connect() as conn:
        state = _state(request, conn)
        fp, fp_all = _fingerprints(conn)
        cols = _ordered(state, conn, fp)
        extents = _extents(state, conn, fp_all)
    return {
        "links": [
            {
                "href": f"{base}/collections",
                "rel": "self",
                "type": "application/json",
                "title": "The feature collections",
            }
        ],
        "collections": [_collection_doc(c, base, state.srid, extents.get(c.id)) for c in cols],
    }


@router.get("/collections/{collectionId}", summary="One feature collection")
def collection(
    request: Request, collectionId: str = _ID, user: User = Depends(allow("read"))
) -> dict:
    with read_engine(request).connect() as conn:
        state = _state(request, conn)
        fp, fp_all = _fingerprints(conn)
        c = _collection(state, conn, collectionId, fp)
        extents = _extents(state, conn, fp_all)
    return _collection_doc(c, base_url(request), state.srid, extents.get(c.id))


def _json_schema(c: Collection, url: str, fields: list[Field], kind: str) -> JSONResponse:
    props: dict[str, Any] = (
        {"id": {"title": "feature id", "type": c.id_type}} if kind == "schema" else {}
    )
    props.update({f.name: f.schema() for f in fields})
    props["geometry"] = {
        "title": "geometry",
        "$ref": f"https://geojson.org/schema/{c.geometry}.json",
    }
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": f"{c.title}: {'queryable' if kind == 'queryables' else 'feature'} properties",
        "properties": props,
        "additionalProperties": kind != "queryables",
    }
    return JSONResponse(doc, media_type=SCHEMA_JSON)


_SCHEMA_RESPONSE = {
    200: {"content": {SCHEMA_JSON: {"schema": {"type": "object"}}}, "description": "A JSON Schema"}
}


@router.get(
    "/collections/{collectionId}/queryables",
    summary="Properties a request may filter on",
    response_class=JSONResponse,
    responses=_SCHEMA_RESPONSE,
)
def queryables(
    request: Request, collectionId: str = _ID, user: User = Depends(allow("read"))
) -> JSONResponse:
    with read_engine(request).connect() as conn:
        c = _collection(_state(request, conn), conn, collectionId)
    url = f"{base_url(request)}/collections/{c.id}/queryables"
    return _json_schema(c, url, list(c.queryables().values()), "queryables")


@router.get(
    "/collections/{collectionId}/schema",
    summary="The properties of the features",
    response_class=JSONResponse,
    responses=_SCHEMA_RESPONSE,
)
def schema(
    request: Request, collectionId: str = _ID, user: User = Depends(allow("read"))
) -> JSONResponse:
    with read_engine(request).connect() as conn:
        c = _collection(_state(request, conn), conn, collectionId)
    url = f"{base_url(request)}/collections/{c.id}/schema"
    return _json_schema(c, url, list(c.fields), "schema")


# -- items ----------------------------------------------------------------------------------------
def _filter_docs() -> list[dict]:
    """Every queryable of any collection, for the OpenAPI document (each takes its own)."""
    seen: dict[str, Field] = {}
    for c in COLLECTIONS.values():
        for f in c.queryables().values():
            seen.setdefault(f.name, f)
    return [
        {
            "name": f.name,
            "in": "query",
            "required": False,
            "description": f"Filter: {f.title} (a queryable of some collections: see their "
            "/queryables; repeat for any of several values)",
            "schema": {"type": f.type, **({"maxLength": 200} if f.type == "string" else {})},
        }
        for f in seen.values()
    ]


_ITEMS_RESPONSES = {
    200: {
        "content": {GEOJSON: {"schema": {"type": "object"}}},
        "description": "A GeoJSON FeatureCollection",
    }
}
_ITEM_RESPONSES = {
    200: {"content": {GEOJSON: {"schema": {"type": "object"}}}, "description": "A GeoJSON Feature"}
}


def _read(
    request: Request, conn: sa.Connection, collection_id: str, crs: str | None
) -> tuple[_State, Collection, OutCrs, Conditions]:
    """The collection, the CRS of the answer and the conditions every read of it starts with."""
    state = _state(request, conn)
    c = _collection(state, conn, collection_id)
    out = parse_crs(crs, state.srid)
    q = Conditions()
    if c.utility:
        q.where.append(f"utility = {q.bind(c.utility)}")
    return state, c, out, q


def _as_of(c: Collection, at: str | None, q: Conditions) -> str | None:
    if at is None:
        return None
    if not c.versioned:
        raise InputError(f"datetime: {c.id} are not versioned; leave datetime out",
                         zh=f"datetime：{c.id} 没有版本历史；请去掉 datetime")
    when = parse_instant(at)
    q.key.append(("datetime", when.isoformat()))
    return q.bind(when)


def _page_links(
    request: Request,
    c: Collection,
    base: str,
    limit: int,
    offset: int,
    cursor: str | None,
    last_id: str | None,
    more: bool,
    keyset: bool = True,
) -> list[dict]:
    url = f"{base}/collections/{c.id}/items"
    kept = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in ("offset", "cursor", "limit")
    ]
    kept.append(("limit", str(limit)))

    def link(rel: str, extra: list[tuple[str, str]], title: str) -> dict:
        return {
            "href": f"{url}?{urlencode(kept + extra)}",
            "rel": rel,
            "type": GEOJSON,
            "title": title,
        }

    here = [("cursor", cursor)] if cursor else []
    here += [("offset", str(offset))] if offset else []
    links = [
        link("self", here, "This page"),
        {
            "href": f"{base}/collections/{c.id}",
            "rel": "collection",
            "type": "application/json",
            "title": c.title,
        },
    ]
    if more and last_id is not None and keyset:
        links.append(link("next", [("cursor", _encode_cursor(last_id))], "Next page"))
    elif more:  # sorted by other keys than the id: pages by offset
        links.append(link("next", [("offset", str(offset + limit))], "Next page"))
    if offset and not cursor:
        links.append(link("prev", [("offset", str(max(0, offset - limit)))], "Previous page"))
    return links


@dataclass(frozen=True)
class Page:
    """One page of features: the GeoJSON array as PostgreSQL wrote it, and how to go on."""

    features: str
    returned: int
    last_id: str | None
    more: bool
    matched: int | None
    mark: str | None = None  # the network's change mark, read with the features (versioned only)


def read_page(
    conn: sa.Connection,
    state: _State,
    c: Collection,
    out: OutCrs,
    q: Conditions,
    *,
    limit: int,
    offset: int = 0,
    after: Any = None,
    as_of: str | None = None,
    order: list[tuple[str, bool]] | None = None,
    fields: tuple[Field, ...] | None = None,
) -> Page:
    """A page of ``c`` in one statement: features ordered by id after ``after``, and the count.

    The count of versioned collections is cached with the network's fingerprint, which the
    statement reads anyway: while the network has not changed, it is not counted again.
    ``order`` (``sortby``: queryable names, descending or not) goes before the id; ``fields``
    (``properties``) chooses the properties.
    """
    srid = state.srid
    cond = " AND ".join(q.where) or "true"
    source = _source(c, srid, as_of)
    page_cond = cond + (f" AND id > {q.bind(after)}" if after is not None else "")
    filtered = bool(q.key)
    key = (c.id, tuple(q.key))
    known = state.counts.get(key) if c.versioned else None
    count_sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {cond}"
        f"{f' LIMIT {COUNT_CAP + 1}' if filtered else ''}) n"
    )
    if c.versioned:
        q.params["known_fp"] = known[0] if known else ""
        head = f"fp AS (SELECT {_FINGERPRINT} AS v), "
        fp_sql = "(SELECT v FROM fp)"
        matched_sql = f"CASE WHEN {fp_sql} = :known_fp THEN NULL ELSE ({count_sql}) END"
    else:
        head, fp_sql, matched_sql = "", "NULL::text", f"({count_sql})"
    q.params.update(n=limit + 1, off=offset, lim=limit)
    # names from the catalogue's queryables (parse_sortby), never the request's text
    by = ", ".join(f"{n} {'DESC NULLS LAST' if d else 'ASC NULLS FIRST'}" for n, d in order or [])
    by = f"{by}, id" if by else "id"
    sql = f"""
        WITH {head}page AS MATERIALIZED (
            SELECT s.*, row_number() OVER (ORDER BY {by}) AS rn_
              FROM (SELECT * FROM {source} WHERE {page_cond} ORDER BY {by} LIMIT :n OFFSET :off) s
        )
        SELECT (SELECT coalesce(json_agg({_feature(c, out, srid, fields)} ORDER BY rn_), '[]'::json)::text
                  FROM page WHERE rn_ <= :lim) AS features,
               (SELECT count(*) FROM page WHERE rn_ <= :lim) AS returned,
               (SELECT id::text FROM page WHERE rn_ = :lim) AS last_id,
               EXISTS (SELECT 1 FROM page WHERE rn_ > :lim) AS more,
               {fp_sql} AS fp,
               {matched_sql} AS matched
    """
    row = conn.execute(sa.text(sql), q.params).one()
    matched: int | None
    if row.matched is None and known is not None:
        matched = known[1]  # the network has not changed since this count
    else:
        matched = int(row.matched)
        if filtered and matched > COUNT_CAP:
            matched = None  # too many to count on every request
        if c.versioned:
            if len(state.counts) > 4096:
                state.counts.clear()
            state.counts[key] = (row.fp, matched)
    if c.utility and row.fp != state.utilities_fp:
        state.utilities_fp = None  # the network changed: look the utilities up again
    return Page(row.features, int(row.returned), row.last_id, bool(row.more), matched,
                row.fp if c.versioned else None)


@dataclass(frozen=True)
class Part3:
    """The filtering (CQL2), sorting and property-selection parameters of an items request."""

    filter: str | None
    lang: str
    crs: str | None
    sortby: str | None
    properties: str | None

    def apply(self, q: Conditions, c: Collection, srid: int
              ) -> tuple[list[tuple[str, bool]], tuple[Field, ...] | None]:
        """Adds the filter to ``q``; returns the sort keys and the chosen properties."""
        if self.filter is not None:
            cql_filter(q, c, self.filter, self.lang, parse_crs(self.crs, srid, "filter-crs"), srid)
        elif self.crs is not None:
            parse_crs(self.crs, srid, "filter-crs")
        order = parse_sortby(self.sortby, c) if self.sortby is not None else []
        fields = parse_properties(self.properties, c) if self.properties is not None else None
        return order, fields


async def _part3(
    filter: str | None = Query(
        None, max_length=4000,
        description="CQL2 filter over the queryables: comparison, AND/OR/NOT, LIKE, IN, "
        "BETWEEN, IS NULL, S_INTERSECTS(geometry, BBOX(...) or a geometry)",
    ),
    # not Optional: GDAL's OAPIF driver looks for "cql-text" in this parameter's schema enum
    filter_lang: Literal["cql2-text", "cql2-json", "cql-text"] = Query(
        "cql2-text", alias="filter-lang",
        description="cql2-text (default) or cql2-json; cql-text: the draft's name for CQL2 text"),
    filter_crs: str | None = Query(
        None, alias="filter-crs", max_length=200,
        description="CRS of the filter's geometries (default CRS84)"),
    sortby: str | None = Query(
        None, max_length=1000, description="queryables to sort by: +name or -name, comma-separated"),
    properties: str | None = Query(
        None, max_length=2000, description="the properties to return, comma-separated"),
) -> Part3:
    """The Part 3 parameters (async: taken on the event loop, no worker thread for it)."""
    return Part3(filter, filter_lang, filter_crs, sortby, properties)


@router.get(
    "/collections/{collectionId}/items",
    summary="Features of a collection (GeoJSON)",
    response_class=Response,
    responses=_ITEMS_RESPONSES,
    openapi_extra={"parameters": _filter_docs()},
)
def items(
    request: Request,
    collectionId: str = _ID,
    bbox: str | None = Query(
        None,
        max_length=400,
        description="minx,miny,maxx,maxy (or 6 numbers with "
        "heights) in the axis order of bbox-crs (default CRS84: lon, lat)",
    ),
    bbox_crs: str | None = Query(None, alias="bbox-crs", max_length=200, description="CRS of bbox"),
    crs: str | None = _CRS,
    limit: int = Query(
        DEFAULT_LIMIT,
        ge=1,
        le=2**31 - 1,
        description=f"page size; at most {MAX_LIMIT} are returned",
    ),
    offset: int = Query(0, ge=0, le=2**31 - 1, description="features to skip"),
    cursor: str | None = Query(
        None, max_length=1000, description="where to go on (from a next link)"
    ),
    at: str | None = _DATETIME,
    f: Literal["json", "geojson"] | None = _FORMAT,
    part3: Part3 = Depends(_part3),
    user: User = Depends(allow("read")),
) -> Response:
    limit = min(limit, MAX_LIMIT)
    engine = read_engine(request)
    with engine.connect() as conn:
        state, c, out, q = _read(request, conn, collectionId, crs)
        srid = state.srid
        if bbox is not None:
            bbox_filter(q, bbox, parse_crs(bbox_crs, srid, "bbox-crs"), srid)
        elif bbox_crs is not None:
            parse_crs(bbox_crs, srid, "bbox-crs")
        property_filters(q, c, request)
        as_of = _as_of(c, at, q)
        order, fields = part3.apply(q, c, srid)
        if cursor is not None and order:
            raise InputError("cursor: pages sorted by sortby go on by offset (take the next link)",
                             zh="cursor：按 sortby 排序的分页用 offset 翻页（请使用 next 链接）")
        after = _decode_cursor(_clean(cursor, "cursor"), c) if cursor is not None else None
        base = base_url(request)
        variant = ("items", c.id, sorted(request.query_params.multi_items()), base, out.uri)
        if c.versioned and if_none_match(request):  # checked before the page is read
            tag = etag(_change_mark(conn), variant)
            if matches(if_none_match(request), tag):
                return not_modified(tag)
        page = read_page(conn, state, c, out, q, limit=limit, offset=offset, after=after,
                         as_of=as_of, order=order, fields=fields)
    links = _page_links(request, c, base, limit, offset, cursor, page.last_id, page.more,
                        keyset=not order)
    head_json: dict[str, Any] = {"type": "FeatureCollection"}
    if page.matched is not None:
        head_json["numberMatched"] = page.matched
    head_json.update(
        numberReturned=page.returned,
        timeStamp=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        links=links,
    )
    body = json.dumps(head_json, ensure_ascii=False)[:-1] + ', "features": ' + page.features + "}"
    return Response(body, media_type=GEOJSON, headers=_validators(page.mark, variant, out))


def _change_mark(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text(f"SELECT {_FINGERPRINT}")).scalar())


def _validators(mark: str | None, variant: tuple, out: OutCrs) -> dict[str, str]:
    """Content-Crs, and the ETag of an answer read at ``mark`` (none without one: proposals)."""
    headers = {"Content-Crs": f"<{out.uri}>"}
    if mark is not None:
        headers.update(ETag=etag(mark, variant), **{"Cache-Control": CACHE_CONTROL})
    return headers


@router.get(
    "/collections/{collectionId}/items/{featureId:path}",
    summary="One feature (GeoJSON)",
    response_class=Response,
    responses=_ITEM_RESPONSES,
)
def item(
    request: Request,
    collectionId: str = _ID,
    featureId: str = Path(..., max_length=200, description="The feature's id"),
    crs: str | None = _CRS,
    at: str | None = _DATETIME,
    f: Literal["json", "geojson"] | None = _FORMAT,
    user: User = Depends(allow("read")),
) -> Response:
    _clean(featureId, "featureId")
    with read_engine(request).connect() as conn:
        state, c, out, q = _read(request, conn, collectionId, crs)
        srid = state.srid
        as_of = _as_of(c, at, q)
        if c.id_type == "integer":
            if not (featureId.isascii() and featureId.isdigit()) or len(featureId) > 18:
                raise NotFound(f"no feature {featureId[:60]!r} in {c.id}",
                               zh=f"{c.id} 中没有要素 {featureId[:60]!r}")
            fid: Any = int(featureId)
        else:
            fid = featureId
        q.where.append(f"id = {q.bind(fid)}")
        base = base_url(request)
        variant = ("item", c.id, featureId, sorted(request.query_params.multi_items()), base, out.uri)
        mark = _change_mark(conn) if c.versioned else None  # in the read's transaction
        if mark is not None and matches(if_none_match(request), etag(mark, variant)):
            return not_modified(etag(mark, variant))
        text = conn.execute(
            sa.text(
                f"SELECT {_feature(c, out, srid)}::text FROM {_source(c, srid, as_of)} "
                f"WHERE {' AND '.join(q.where)} LIMIT 1"
            ),
            q.params,
        ).scalar()
    if text is None:
        when = f" at {at}" if at else ""
        raise NotFound(f"no feature {featureId[:60]!r} in {c.id}{when}",
                       zh=f"{c.id} 中没有要素 {featureId[:60]!r}{when}")
    doc = json.loads(text)
    doc["links"] = [
        {
            "href": f"{base}/collections/{c.id}/items/{quote(str(featureId), safe='')}",
            "rel": "self",
            "type": GEOJSON,
            "title": "This feature",
        },
        {
            "href": f"{base}/collections/{c.id}",
            "rel": "collection",
            "type": "application/json",
            "title": c.title,
        },
    ]
    return Response(
        json.dumps(doc, ensure_ascii=False),
        media_type=GEOJSON,
        headers=_validators(mark, variant, out),
    )
