"""Editing single features, their history and the network as of a time.

Every edit is one transaction: the change (a new version of each feature it touches, see
:mod:`twin.store` and :mod:`ingest.derive`), its ``edit`` batch and its audit entry commit
together or not at all. Edits need the ``edit`` permission; reads need ``read``.

==========================================  ================================================
``POST /edit/nodes``                        add a node (201)
``POST /edit/segments``                     add a segment between two current nodes (201)
``POST /edit/segments/merge``               merge two pipes meeting at a node (201)
``POST /edit/nodes/{id}/move``              move a node; its pipes, valves ... follow
``POST /edit/segments/{id}/split``          split a pipe at a point (201)
``PATCH /edit/{kind}/{id}``                 change attributes (whitelisted per kind)
``POST /edit/{kind}/{id}/retire``           retire (leaves the current network, kept)
``DELETE /edit/{kind}/{id}``                delete for good (history keeps the versions)
``GET /features/{kind}/{id}``               a feature now, or ``?at=`` as it stood then
``GET /features/{kind}/{id}/history``       every version, oldest first
``GET /network?at=``                        the network's summary as it stood at a time
==========================================  ================================================

``kind`` is ``nodes``, ``segments``, ``valves``, ``sources`` or ``customers``. Positions are
``easting``/``northing`` in the twin's CRS, or ``lon``/``lat`` (WGS 84). Each edit may name
the ``version`` its user saw: a feature changed since is a 409. The answer lists every
feature touched with its change (added, revived, changed, retired, deleted) and new version,
the batch id and the data-check warnings. After a committed edit the tileset refresh is
scheduled (``api.tiles.schedule_refresh``, when that hook exists).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from api.audit import audit
from api.auth import User, allow
from api.errors import invalid
from api.tiles import schedule_refresh
from ingest import derive
from twin import store
from twin.crs import transformer, twin_crs
from twin.errors import Conflict, InputError
from twin.store import Edit

__all__ = ["router"]

log = logging.getLogger("pipetwin.api")

router = APIRouter(tags=["editing"])

Kind = Literal["nodes", "segments", "valves", "sources", "customers"]
TABLE = {"nodes": "node", "segments": "segment", "valves": "valve", "sources": "source", "customers": "customer"}

_NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[str, StringConstraints(max_length=500, pattern=_NO_CONTROL)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=20, pattern=r"^[^\x00-\x1f\x7f]+$")]
Coordinate = Annotated[float, Field(ge=-1e8, le=1e8, allow_inf_nan=False)]
Height = Annotated[float, Field(ge=-1e4, le=1e4, allow_inf_nan=False, description="metres")]
Depth = Annotated[float, Field(ge=-1e3, le=1e3, allow_inf_nan=False, description="metres below ground")]
Version = Annotated[int, Field(ge=1, le=2**31 - 1, description="the version the client saw")]
Value = StrictBool | int | Annotated[float, Field(allow_inf_nan=False)] | Text | None
Attributes = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], Value],
                       Field(max_length=40)]
PathId = Annotated[str, Path(min_length=1, max_length=200, description="feature id")]

_EDIT = Depends(allow("edit"))
_READ = Depends(allow("read"))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Body):
    """A plan position: ``easting``/``northing`` in the twin CRS, or ``lon``/``lat`` (WGS 84)."""

    easting: Coordinate | None = None
    northing: Coordinate | None = None
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = None
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_pair(self) -> Position:
        plan = (self.easting is not None, self.northing is not None)
        geo = (self.lon is not None, self.lat is not None)
        if any(geo) and any(plan):
            raise invalid("give easting/northing or lon/lat, not both",
                          "请给出 easting/northing 或 lon/lat，不能同时给出")
        if any(geo) and not all(geo):
            raise invalid("lon and lat go together", "lon 与 lat 须同时给出")
        return self

    def plan(self, request: Request) -> tuple[float | None, float | None]:
        """Easting and northing in the twin CRS."""
        if self.lon is None:
            return self.easting, self.northing
        srid = twin_crs(request.app.state.settings.crs).srid
        e, n = transformer("EPSG:4326", srid).transform(self.lon, self.lat)
        return float(e), float(n)


class NodeIn(Position):
    """A new node (survey point)."""

    id: Id
    utility: Code = Field(description="JS, PS, RQ, ... or a subtype code (YS, WS, MQ, ...)")
    ground_z: Height
    depth_m: Depth | None = None
    attributes: Attributes | None = Field(None, description=f"any of {', '.join(derive.NODE_ATTRIBUTES)} "
                                                            "but subtype")
    scope: Id = "edit"

    @model_validator(mode="after")
    def _placed(self) -> NodeIn:
        if (self.easting is None or self.northing is None) and self.lon is None:
            raise invalid("a node needs a position: easting and northing, or lon and lat",
                          "管点需要位置：easting 和 northing，或 lon 和 lat")
        return self


class SegmentIn(_Body):
    """A new straight segment between two current nodes."""

    from_node: Id
    to_node: Id
    size: Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=_NO_CONTROL)] = Field(
        description="DN300, 300, Φ300, D800 or 1000X800")
    id: Id | None = Field(None, description="default <from_node>-<to_node>")
    utility: Code | None = Field(None, description="default the start node's")
    from_depth_m: Depth | None = None
    to_depth_m: Depth | None = None
    from_elevation_m: Height | None = Field(None, description="at the depth reference (top; invert for drainage)")
    to_elevation_m: Height | None = None
    attributes: Attributes | None = Field(None, description="material, burial, pressure, cables, holes_total, "
                                                            "holes_used, casing, flow, built, owner, road, "
                                                            "status, remarks")
    scope: Id = "edit"


class MoveIn(Position):
    """New position, ground and/or depth of a node."""

    ground_z: Height | None = None
    depth_m: Depth | None = None
    keep: Literal["depth", "elevation"] = Field(
        "depth", description="what the pipe ends at the node keep when the ground changes")
    version: Version | None = None


class SplitIn(_Body):
    """Where to split a pipe, and the names of what the split makes."""

    at: Position
    node_id: Id | None = Field(None, description="default <segment>-n")
    ids: Annotated[list[Id], Field(min_length=2, max_length=2)] | None = Field(
        None, description="the two new segments' ids; default <segment>-1, <segment>-2")
    ground_z: Height | None = Field(None, description="ground at the new node; default interpolated")
    max_distance_m: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 10.0
    version: Version | None = None


class MergeIn(_Body):
    """Two segments meeting at a node, and the merged segment's id."""

    segments: Annotated[list[Id], Field(min_length=2, max_length=2)]
    id: Id | None = Field(None, description="default: the segment both were split from, else <a>+<b>")
    versions: Annotated[list[Version], Field(min_length=2, max_length=2)] | None = None


class AttributesIn(_Body):
    """Attributes to change (column -> value; null clears)."""

    attributes: Attributes
    version: Version | None = None


class RetireIn(_Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=_NO_CONTROL)]
    version: Version | None = None


# -- running an edit -------------------------------------------------------------------------
def _run(request: Request, user: User, action: str, params: dict[str, Any],
         work: Callable[[sa.Connection], Edit], response: Response | None = None,
         location: str | None = None) -> dict:
    """The edit, its batch and its audit entry in one transaction; then the tile refresh."""
    try:
        with request.app.state.engine.begin() as conn:
            edit = work(conn)
            audit(conn, user, action, request, params=params, affected=edit.affected)
    except sa.exc.IntegrityError as exc:  # a concurrent edit took an id first
        raise Conflict(f"the twin changed while editing ({exc.orig.__class__.__name__}); reload and retry",
                       zh=f"编辑期间孪生库已变更（{exc.orig.__class__.__name__}）；请重新加载后重试") from exc
    except sa.exc.OperationalError as exc:
        if "deadlock" in str(exc.orig).lower():
            raise Conflict("a concurrent edit touched the same features; retry",
                           zh="另一编辑同时修改了相同要素；请重试") from exc
        raise
    job = schedule_refresh(request.app, user) if edit.changes else None
    if response is not None and location:
        response.headers["Location"] = location
    return {**edit.as_dict(), "tiles_job": job}


def _settings(request: Request):
    return request.app.state.settings


def _dump(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_none=True)


# -- edits -----------------------------------------------------------------------------------
@router.post("/edit/nodes", status_code=201, summary="Add a node")
def add_node(body: NodeIn, request: Request, response: Response, user: User = _EDIT) -> dict:
    e, n = body.plan(request)
    return _run(request, user, "edit-add-node", _dump(body), lambda conn: derive.add_node(
        conn, user.name, body.id, utility=body.utility, easting=e, northing=n, ground_z=body.ground_z,
        depth_m=body.depth_m, attributes=body.attributes, scope=body.scope, settings=_settings(request)),
        response, f"/features/nodes/{body.id}")


@router.post("/edit/segments", status_code=201, summary="Add a segment between two current nodes")
def add_segment(body: SegmentIn, request: Request, response: Response, user: User = _EDIT) -> dict:
    seg_id = body.id or f"{body.from_node}-{body.to_node}"
    return _run(request, user, "edit-add-segment", _dump(body), lambda conn: derive.add_segment(
        conn, user.name, body.from_node, body.to_node, size=body.size, id=body.id, utility=body.utility,
        from_depth_m=body.from_depth_m, to_depth_m=body.to_depth_m, from_elevation_m=body.from_elevation_m,
        to_elevation_m=body.to_elevation_m, attributes=body.attributes, scope=body.scope,
        settings=_settings(request)), response, f"/features/segments/{seg_id}")


@router.post("/edit/segments/merge", status_code=201, summary="Merge two pipes that meet at a node")
def merge(body: MergeIn, request: Request, response: Response, user: User = _EDIT) -> dict:
    a, b = body.segments
    versions = dict(zip(body.segments, body.versions, strict=True)) if body.versions else None
    result = _run(request, user, "edit-merge", _dump(body), lambda conn: derive.merge_segments(
        conn, user.name, a, b, id=body.id, versions=versions, settings=_settings(request)))
    response.headers["Location"] = f"/features/segments/{result['segment']}"
    return result


@router.post("/edit/nodes/{id:path}/move", summary="Move a node; its pipe ends, valves, sources and customers follow")
def move(id: PathId, body: MoveIn, request: Request, user: User = _EDIT) -> dict:
    e, n = body.plan(request)
    return _run(request, user, "edit-move", {"id": id, **_dump(body)}, lambda conn: derive.move_node(
        conn, user.name, id, easting=e, northing=n, ground_z=body.ground_z, depth_m=body.depth_m,
        keep=body.keep, version=body.version, settings=_settings(request)))


@router.post("/edit/segments/{id:path}/split", status_code=201, summary="Split a pipe at a point")
def split(id: PathId, body: SplitIn, request: Request, response: Response, user: User = _EDIT) -> dict:
    e, n = body.at.plan(request)
    if e is None or n is None:
        raise InputError("the split point needs easting and northing, or lon and lat",
                         zh="截断点需要给出东坐标和北坐标，或经度和纬度")
    return _run(request, user, "edit-split", {"id": id, **_dump(body)}, lambda conn: derive.split_segment(
        conn, user.name, id, easting=e, northing=n, node_id=body.node_id, ids=body.ids, ground_z=body.ground_z,
        max_distance_m=body.max_distance_m, version=body.version, settings=_settings(request)),
        response, f"/features/nodes/{body.node_id or id + '-n'}")


@router.patch("/edit/{kind}/{id:path}", summary="Change attributes of a feature")
def change_attributes(kind: Kind, id: PathId, body: AttributesIn, request: Request, user: User = _EDIT) -> dict:
    return _run(request, user, "edit-attributes", {"kind": kind, "id": id, **_dump(body)},
                lambda conn: derive.change_attributes(conn, user.name, TABLE[kind], id, body.attributes,
                                                      version=body.version, settings=_settings(request)))


@router.post("/edit/{kind}/{id:path}/retire", summary="Retire a feature (kept in history)")
def retire(kind: Kind, id: PathId, body: RetireIn, request: Request, user: User = _EDIT) -> dict:
    return _run(request, user, "edit-retire", {"kind": kind, "id": id, **_dump(body)},
                lambda conn: store.retire(conn, user.name, TABLE[kind], id, body.reason, version=body.version))


@router.delete("/edit/{kind}/{id:path}", summary="Delete a feature for good (its history stays)")
def delete(kind: Kind, id: PathId, request: Request,
           version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None, user: User = _EDIT) -> dict:
    return _run(request, user, "edit-delete", {"kind": kind, "id": id, "version": version},
                lambda conn: store.delete(conn, user.name, TABLE[kind], id, version=version))


# -- reads -----------------------------------------------------------------------------------
CrsParam = Annotated[str | None, Query(max_length=100, description="CRS84 (default), or the twin's CRS "
                                       "('twin', EPSG:<code> or its OGC URI)")]


def _srid(request: Request, crs: str | None) -> int | None:
    """The SRID to answer in: 4326 (lon/lat, as CRS84) or None for the twin's own CRS."""
    if crs is None or crs in ("CRS84", "http://www.opengis.net/def/crs/OGC/1.3/CRS84"):
        return 4326
    srid = twin_crs(request.app.state.settings.crs).srid
    if crs in ("twin", f"EPSG:{srid}", f"http://www.opengis.net/def/crs/EPSG/0/{srid}"):
        return None
    raise InputError(f"crs {crs!r} is not offered: CRS84 or the twin's EPSG:{srid}",
                     zh=f"不提供坐标参照系 {crs!r}：可用 CRS84 或孪生库的 EPSG:{srid}")


def _crs_name(srid: int | None, request: Request) -> str:
    if srid == 4326:
        return "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    return f"http://www.opengis.net/def/crs/EPSG/0/{twin_crs(request.app.state.settings.crs).srid}"


@router.get("/features/{kind}/{id:path}/history", summary="Every version of a feature")
def feature_history(kind: Kind, id: PathId, request: Request, crs: CrsParam = None, user: User = _READ) -> dict:
    srid = _srid(request, crs)
    with request.app.state.engine.connect() as conn:
        doc = store.history(conn, TABLE[kind], id, srid=srid)
    return {**doc, "crs": _crs_name(srid, request)}


@router.get("/features/{kind}/{id:path}",
            summary="A feature now (live or retired), or as it stood at a time")
def feature(kind: Kind, id: PathId, request: Request,
            at: Annotated[datetime | None, Query(description="ISO 8601 time; without a zone: UTC")] = None,
            crs: CrsParam = None, user: User = _READ) -> dict:
    srid = _srid(request, crs)
    with request.app.state.engine.connect() as conn:
        doc = store.feature(conn, TABLE[kind], id, at=at, srid=srid)
    return {**doc, "crs": _crs_name(srid, request)}


@router.get("/network", summary="The network's summary now or as it stood at a time")
def network(request: Request,
            at: Annotated[datetime | None, Query(description="ISO 8601 time; without a zone: UTC")] = None,
            user: User = _READ) -> dict:
    with request.app.state.engine.connect() as conn:
        when = at or conn.execute(sa.text("SELECT now()")).scalar_one()
        return store.as_of(conn, when)
