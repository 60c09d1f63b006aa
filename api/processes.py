"""Every analysis over HTTP, OGC API - Processes style.

``GET /processes`` lists the analyses, ``GET /processes/{id}`` describes one (inputs and
outputs as JSON schema, an example), ``POST /processes/{id}/execution`` runs it with a JSON
body ``{"inputs": {...}}``. Inputs are validated by pydantic models (bounds, finite numbers,
no NUL characters): a malformed body is 422, an input the analysis refuses (unknown pipe,
point far from any pipe) is 400 or 404.

Output: JSON by default; the drawings and the printable report are chosen with ``?f=svg`` /
``?f=html`` (or ``Accept: image/svg+xml`` / ``text/html``, or an OGC ``outputs`` member
naming ``svg`` or ``html``); the shutoff's work order (关阀作业单) with ``?f=pdf``, as an
attachment, always at once; the section and the profile for CAD with ``?f=dxf``
(``application/dxf``, an attachment).

Sync or async: fast analyses answer at once (200). ``network-scan`` always runs as a job; any
other runs as a job when the client sends ``Prefer: respond-async``. A job is answered 201
with ``Location: /jobs/{id}`` and its status document; poll it, then read
``/jobs/{id}/results``. Every synchronous run holds a slot of :mod:`api.limits` (per user and
per server process; 429 with ``Retry-After`` when none comes free); whole-network scans run
synchronously also count against ``TWIN_HEAVY_PER_USER``, as jobs do. A proposal is held to the
budget of :mod:`analysis.proposal_input` (pipes and excavations, positions, length, excavated
area): beyond it the answer is 400 ``PROPOSAL_TOO_LARGE`` naming the limit.

Every run is audited as ``process-<id>`` with its inputs and the pipe, node and valve ids it
touched (both bounded in size).
"""

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import shapely.geometry
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from analysis.clash import collisions
from analysis.clearance import clearances, load_clearance_rules
from analysis.cover import cover_depths, load_cover_rules
from analysis.findings import scan_and_store
from analysis.hazards import hazards
from analysis.network import load_network
from analysis.profile import longitudinal_profile
from analysis.proposal import check_proposal
from analysis.proposal_input import (
    MAX_PARTS,
    check_proposal_size,
    load_existing_near,
    read_proposal,
)
from analysis.proposal_report import report_html
from analysis.scan import truncate_findings
from analysis.section import cross_section, parse_line
from analysis.shutoff import shutoff
from api.audit import audit_now
from api.auth import User, allow
from api.conditional import CACHE_CONTROL, etag, if_none_match, matches, not_modified
from api.errors import invalid, status_of
from api.jobs import JobResult, Progress, base_url, job_status
from api.limits import heavy_pool, work_limits
from documents.drawing_dxf import profile_dxf, section_dxf
from documents.workorder import work_order_pdf
from twin.db import CHANGE_MARK_SQL
from twin.domain import STATUSES, UTILITIES
from twin.errors import InputError, NotFound, TwinError
from twin.jsonable import plain
from twin.settings import TwinSettings

__all__ = [
    "router",
    "PROCESSES",
    "Process",
    "ProposalDocument",
    "audit_params",
]

router = APIRouter(tags=["processes"])

VERSION = "1.0.0"
#: Ids kept in an audit entry (an outage may cut off thousands of pipes).
AUDIT_IDS = 500
#: Inputs longer than this (JSON characters) are summarised in the audit log by size and hash.
AUDIT_VALUE_CHARS = 2000
#: Longest section line (m): its cost grows with the pipes it crosses.
MAX_SECTION_M = 5000.0
#: Coordinates beyond this (m) are junk in any projected CRS (zone-prefixed eastings are < 1e8).
MAX_COORDINATE = 1e8


# ----------------------------------------------------------------------------- input types
def _no_nul(value: Any, depth: int = 0) -> Any:
    """Reject NUL characters (PostgreSQL refuses them) and non-finite numbers anywhere in ``value``."""
    if depth > 32:
        raise invalid("nested too deeply", "嵌套层数过深")
    if isinstance(value, str):
        if "\x00" in value:
            raise invalid("text must not contain NUL characters", "文本不能包含 NUL 字符")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid("numbers must be finite (no NaN or infinity)", "数值须为有限数（不能是 NaN 或无穷大）")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, depth + 1)
            _no_nul(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _no_nul(v, depth + 1)
    return value


Finite = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]
FeatureId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
UtilityCode = Literal[tuple(UTILITIES)]  # type: ignore[valid-type]
Status = Literal[tuple(STATUSES)]  # type: ignore[valid-type]
Point = Annotated[list[Finite], Field(min_length=2, max_length=2,
                                      description="[easting, northing] in the twin CRS (m)")]
Position = Annotated[list[Finite], Field(min_length=2, max_length=3)]
Line = Annotated[list[Position], Field(min_length=2, max_length=5000)]
Ring = Annotated[list[Position], Field(min_length=4, max_length=5000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Geometry(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        return _no_nul(data)


class LineStringGeometry(_Geometry):
    type: Literal["LineString"]
    coordinates: Line


class MultiLineStringGeometry(_Geometry):
    type: Literal["MultiLineString"]
    coordinates: Annotated[list[Line], Field(min_length=1, max_length=MAX_PARTS)]


class PolygonGeometry(_Geometry):
    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1, max_length=20)]


class MultiPolygonGeometry(_Geometry):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[Annotated[list[Ring], Field(min_length=1, max_length=20)]],
                           Field(min_length=1, max_length=MAX_PARTS)]


Geometry = Annotated[LineStringGeometry | MultiLineStringGeometry | PolygonGeometry | MultiPolygonGeometry,
                     Field(discriminator="type")]


class Feature(_Geometry):
    """A GeoJSON Feature: a proposed pipe (LineString) or excavation (Polygon) with its properties."""

    type: Literal["Feature"]
    geometry: Geometry
    properties: dict[str, Any] | None = Field(
        None, description="utility, size (DN300, 1000X800) or diameter_mm / width_mm + height_mm, depth_m "
        "or z in the coordinates, optional id, material, pressure_mpa, ... (see analysis.proposal_input)")
    id: FeatureId | int | None = None


class FeatureCollection(_Geometry):
    type: Literal["FeatureCollection"]
    features: Annotated[list[Feature], Field(min_length=1, max_length=MAX_PARTS)]


def _size(doc: BaseModel) -> tuple[int, int]:
    """Pipes and excavations in a proposal, and its positions."""
    if isinstance(doc, FeatureCollection):
        sizes = [_size(f) for f in doc.features]
        return sum(p for p, _ in sizes), sum(n for _, n in sizes)
    if isinstance(doc, Feature):
        return _size(doc.geometry)
    if isinstance(doc, LineStringGeometry):
        return 1, len(doc.coordinates)
    if isinstance(doc, MultiLineStringGeometry):
        return len(doc.coordinates), sum(len(line) for line in doc.coordinates)
    if isinstance(doc, PolygonGeometry):
        return 1, sum(len(ring) for ring in doc.coordinates)
    assert isinstance(doc, MultiPolygonGeometry)
    return len(doc.coordinates), sum(len(ring) for poly in doc.coordinates for ring in poly)


def _bounded_proposal(doc: BaseModel) -> BaseModel:
    """The proposal, if its parts and positions are within the library's budget.

    The library's InputError (400 ``PROPOSAL_TOO_LARGE``, naming the limit) passes through
    pydantic, which wraps only ValueErrors: the same answer as a proposal too long or too wide,
    found once it is read in the twin CRS.
    """
    check_proposal_size(*_size(doc))
    return doc


#: The proposal's schema as documented: shallow, so clients (and API fuzzers) can read it; the
#: models above validate every level.
_GEOJSON_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "description": "GeoJSON FeatureCollection, Feature or geometry: a proposed pipe (LineString, "
    "MultiLineString) or excavation (Polygon, MultiPolygon); coordinates [easting, northing(, z)] in "
    "the twin CRS, or lon/lat (CRS84), or in a CRS named by a 'crs' member. Feature properties: "
    "utility, size or diameter_mm / width_mm + height_mm, depth_m (or z with z_reference), ...",
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection", "Feature", "LineString", "MultiLineString",
                                            "Polygon", "MultiPolygon"]},
        "features": {"type": "array", "maxItems": MAX_PARTS, "items": {"type": "object"}},
        "geometry": {"type": "object"},
        "properties": {"type": "object"},
        "coordinates": {"type": "array"},
    },
}

ProposalDocument = Annotated[
    FeatureCollection | Feature | LineStringGeometry | MultiLineStringGeometry | PolygonGeometry
    | MultiPolygonGeometry,
    Field(discriminator="type"),
    AfterValidator(_bounded_proposal),
    WithJsonSchema(_GEOJSON_SCHEMA),
]

_PROPOSAL_EXAMPLE = {
    "type": "Feature",
    "properties": {"utility": "RQ", "size": "DN200", "depth_m": 1.2, "pressure_mpa": 0.2},
    "geometry": {"type": "LineString", "coordinates": [[408300.0, 4035700.0], [408400.0, 4035700.0]]},
}


def geojson(doc: BaseModel) -> dict:
    """A validated GeoJSON model back to the plain dict the analyses read."""
    return doc.model_dump(mode="json", exclude_none=True)


# ----------------------------------------------------------------------------- inputs per process
class ShutoffInputs(_Strict):
    """Name the burst by exactly one of ``pipe``, ``node`` or ``at``."""

    pipe: FeatureId | None = Field(None, description="Id of the burst pipe.")
    node: FeatureId | None = Field(None, description="Id of a burst node (fitting, chamber).")
    at: Point | None = Field(None, description="[easting, northing] of the burst: the nearest pipe.")
    failed_valves: Annotated[list[FeatureId], Field(max_length=200)] = Field(
        default_factory=list, description="Valves that would not turn (二次关阀): the next ring is closed.")
    max_distance_m: float = Field(25.0, gt=0, le=1000, allow_inf_nan=False,
                                  description="How far `at` may be from a pipe (m).")

    @model_validator(mode="after")
    def _one_burst(self) -> "ShutoffInputs":
        if sum(v is not None for v in (self.pipe, self.node, self.at)) != 1:
            raise invalid("name exactly one of pipe, node or at", "pipe、node、at 三者须且只能给出一个")
        return self


class HazardsInputs(_Strict):
    at: Point = Field(..., description="[easting, northing] of the dig site in the twin CRS.")
    radius_m: float = Field(10.0, gt=0, le=500, allow_inf_nan=False, description="Radius of the dig site (m).")
    utility: UtilityCode | None = Field(None, description="Utility of the burst (default: the nearest "
                                        "pressurised pipe's); its nearest valves are listed.")
    valves: int = Field(6, ge=1, le=50, description="How many nearest valves to list.")


class _Findings(_Strict):
    limit: int = Field(1000, ge=0, le=100_000, description="Findings listed at most (counts are complete).")


class CollisionInputs(_Findings):
    proposal: ProposalDocument | None = Field(
        None, description="A proposal to check against the network around it; without one the whole "
        "network is scanned (a heavy run).")
    min_overlap_m: float = Field(0.0, ge=0, le=10, allow_inf_nan=False,
                                 description="Overlaps up to this (m) are not reported.")


class ClearanceInputs(_Findings):
    proposal: ProposalDocument | None = Field(
        None, description="A proposal to check; without one the whole network is scanned (a heavy run).")


class ZoneProperties(BaseModel):
    location: Literal["motor_lane", "sidewalk"]


class ZoneFeature(_Geometry):
    type: Literal["Feature"]
    geometry: Annotated[PolygonGeometry | MultiPolygonGeometry, Field(discriminator="type")]
    properties: ZoneProperties


class Zones(_Geometry):
    type: Literal["FeatureCollection"]
    features: Annotated[list[ZoneFeature], Field(max_length=1000)]


_ZONES_SCHEMA = {
    "type": "object",
    "required": ["type", "features"],
    "description": "GeoJSON FeatureCollection of Polygon or MultiPolygon features (twin CRS) with a "
    "'location' property: motor_lane or sidewalk.",
    "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                   "features": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}},
}


class CoverInputs(_Findings):
    proposal: ProposalDocument | None = Field(
        None, description="A proposal to check; without one every pipe is checked (a heavy run).")
    location: Literal["motor_lane", "sidewalk"] | None = Field(
        None, description="Location class where no zone applies (default TWIN_COVER_LOCATION).")
    zones: Annotated[Zones, WithJsonSchema(_ZONES_SCHEMA)] | None = Field(
        None, description="Polygons (twin CRS) with a 'location' property.")
    step_m: float = Field(2.0, ge=0.1, le=100, allow_inf_nan=False, description="Sampling step along pipes (m).")


class SectionInputs(_Strict):
    line: Annotated[list[Point], Field(min_length=2, max_length=500)] = Field(
        ..., description=f"The plan line: [[easting, northing], ...] in the twin CRS, at most {MAX_SECTION_M:g} m.")
    utilities: Annotated[list[UtilityCode], Field(max_length=len(UTILITIES))] | None = Field(
        None, description="Only these utilities.")


class ProfileInputs(_Strict):
    from_node: FeatureId = Field(..., description="Survey point id where the profile starts.")
    to_node: FeatureId = Field(..., description="Survey point id where it ends (same utility).")


class ProposalCheckInputs(_Strict):
    proposal: ProposalDocument
    name: Text | None = Field(None, description="Name of the proposal in the report.")


class NetworkScanInputs(_Findings):
    include: Annotated[list[Status], Field(min_length=1, max_length=len(STATUSES))] = Field(
        default_factory=lambda: ["active", "planned"], description="Pipe statuses scanned.")

    @field_validator("include")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


# ----------------------------------------------------------------------------- the processes
@dataclass
class Outcome:
    """What a run gives: the JSON answer, drawings by format, and the ids it touched."""

    value: dict
    documents: dict[str, Callable[[], str | bytes]] = field(default_factory=dict)
    affected: list[str] = field(default_factory=list)
    filename: str = "result"  # of a downloaded document (PDF), without the suffix


@dataclass(frozen=True)
class Context:
    engine: sa.Engine
    settings: TwinSettings
    user: str = "api"  # who runs it: the stored findings' status changes name them


@dataclass(frozen=True)
class Process:
    """One analysis: its inputs model, outputs, and the function that runs it."""

    id: str
    title: str
    description: str
    inputs: type[BaseModel]
    run: Callable[[Context, Any, Progress], Outcome]
    formats: tuple[str, ...] = ("json",)
    example: dict = field(default_factory=dict)
    heavy: Callable[[Any], bool] = lambda inputs: False
    async_only: bool = False
    keywords: tuple[str, ...] = ()
    #: JSON answers carry an ETag of the network's change mark (and the valve exercises) and
    #: the inputs; ``If-None-Match`` with it is answered 304 without running the analysis.
    conditional: bool = False

    @property
    def job_control(self) -> list[str]:
        return ["async-execute"] if self.async_only else ["sync-execute", "async-execute"]


MEDIA = {"json": "application/json", "svg": "image/svg+xml", "html": "text/html", "pdf": "application/pdf",
         "dxf": "application/dxf"}


def _pair_ids(findings: list[dict]) -> list[str]:
    return [i for f in findings for i in (f.get("a_id"), f.get("b_id")) if i is not None]


def _existing(ctx: Context, proposal: BaseModel | None, progress: Progress):
    """The network to check: all of it, or the part around a proposal, and the proposal."""
    progress(5, "reading the network")
    if proposal is None:
        existing, prop = load_network(ctx.engine), None
    else:
        prop = read_proposal(geojson(proposal), ctx.settings, engine=ctx.engine)
        existing = load_existing_near(ctx.engine, prop)
    progress(40, f"{len(existing.segments):,} segments; checking")
    return existing, prop


def _pairs(d: dict, key: str, segments_checked: int) -> Outcome:
    """The outcome of a check of pairs of pipes (findings already cut to the limit); both ids affected."""
    d["segments_checked"] = segments_checked
    return Outcome(d, affected=_pair_ids(d[key]))


def run_shutoff(ctx: Context, inputs: ShutoffInputs, progress: Progress) -> Outcome:
    d = shutoff(ctx.engine, pipe=inputs.pipe, node=inputs.node, at=inputs.at,
                failed_valves=inputs.failed_valves, max_distance_m=inputs.max_distance_m,
                exercise_years=ctx.settings.valve_exercise_years).as_dict()
    ids = [d["pipe"] or d["node"], *(v["id"] for v in d["valves"]), *(v["id"] for v in d["failed_valves"]),
           *d["isolated_pipes"], *d["outage_pipes"]]

    def work_order() -> bytes:  # ?f=pdf: the work order 关阀作业单
        return work_order_pdf(ctx.engine, ctx.settings, d, by=ctx.user, at=inputs.at)

    return Outcome(d, {"pdf": work_order}, affected=ids, filename=f"work-order-{d['pipe'] or d['node']}")


def run_hazards(ctx: Context, inputs: HazardsInputs, progress: Progress) -> Outcome:
    x, y = inputs.at
    d = hazards(ctx.engine, x, y, inputs.radius_m, utility=inputs.utility, settings=ctx.settings,
                valves=inputs.valves).as_dict()
    return Outcome(d, affected=[p["id"] for p in d["pipes"]] + [v["id"] for v in d["valves"]])


def run_collision(ctx: Context, inputs: CollisionInputs, progress: Progress) -> Outcome:
    existing, prop = _existing(ctx, inputs.proposal, progress)
    d = collisions(existing, prop, min_overlap_m=inputs.min_overlap_m).as_dict(inputs.limit)
    return _pairs(d, "clashes", len(existing.segments))


def run_clearance(ctx: Context, inputs: ClearanceInputs, progress: Progress) -> Outcome:
    existing, prop = _existing(ctx, inputs.proposal, progress)
    rules = load_clearance_rules(None, ctx.settings, db=ctx.engine)
    d = clearances(existing, prop, rules=rules, settings=ctx.settings).as_dict(inputs.limit)
    return _pairs(d, "violations", len(existing.segments))


def run_cover(ctx: Context, inputs: CoverInputs, progress: Progress) -> Outcome:
    zones = None
    if inputs.zones is not None:
        zones = [(shapely.geometry.shape(geojson(f.geometry)), f.properties.location)
                 for f in inputs.zones.features]
    existing, prop = _existing(ctx, inputs.proposal, progress)
    rules = load_cover_rules(None, ctx.settings, db=ctx.engine)
    d = cover_depths(existing, prop, rules=rules, settings=ctx.settings, default_location=inputs.location,
                     zones=zones, step_m=inputs.step_m).as_dict()
    d = truncate_findings(d, "violations", inputs.limit)
    return Outcome(d, affected=[v["id"] for v in d["violations"]])


def run_section(ctx: Context, inputs: SectionInputs, progress: Progress) -> Outcome:
    pts = parse_line(inputs.line)
    length = float(sum(math.dist(a, b) for a, b in zip(pts[:-1], pts[1:], strict=True)))
    if length > MAX_SECTION_M:
        raise InputError(f"the section line is {length:,.0f} m long; at most {MAX_SECTION_M:,.0f} m",
                         zh=f"剖面线长 {length:,.0f} 米；最长 {MAX_SECTION_M:,.0f} 米")
    sec = cross_section(ctx.engine, pts, utilities=inputs.utilities, crs=ctx.settings.crs)
    d = sec.as_dict()
    return Outcome(d, {"svg": sec.to_svg, "dxf": lambda: section_dxf(sec).decode("utf-8")},
                   affected=[p["id"] for p in d["pipes"]] + d["along"])


def run_profile(ctx: Context, inputs: ProfileInputs, progress: Progress) -> Outcome:
    prof = longitudinal_profile(ctx.engine, inputs.from_node, inputs.to_node, crs=ctx.settings.crs)
    d = prof.as_dict()
    ids = [n["id"] for n in d["nodes"]] + [s["id"] for s in d["segments"]] + [c["id"] for c in d["crossings"]]
    return Outcome(d, {"svg": prof.to_svg, "dxf": lambda: profile_dxf(prof).decode("utf-8")}, affected=ids)


def run_proposal_check(ctx: Context, inputs: ProposalCheckInputs, progress: Progress) -> Outcome:
    report = check_proposal(ctx.engine, geojson(inputs.proposal), ctx.settings, name=inputs.name)
    d = report.as_dict()

    def section_svg() -> str:
        if report.section is None:
            raise NotFound("the check drew no cross-section", zh="检查未生成横断面")
        return report.section.to_svg(title="Cross-section at the worst place 最不利处横断面")

    ids = [i for f in d["findings"] for i in f["ids"]]
    return Outcome(d, {"html": lambda: report_html(report), "svg": section_svg}, affected=ids)


def run_network_scan(ctx: Context, inputs: NetworkScanInputs, progress: Progress) -> Outcome:
    """Whole-network collision and clearance, findings stored: :func:`analysis.findings.scan_and_store`, as
    the CLI and bench run it."""
    return Outcome(scan_and_store(ctx.engine, user=ctx.user, include=inputs.include, settings=ctx.settings,
                                  limit=inputs.limit, progress=progress))


def _whole_network(inputs: Any) -> bool:
    return getattr(inputs, "proposal", None) is None


PROCESSES: dict[str, Process] = {p.id: p for p in (
    Process("shutoff", "Valve shutoff for a burst (关阀分析, 二次关阀)",
            "Valves to close for a burst pipe, node or point, source side first; valves that will not "
            "turn (inoperable in the twin or named failed) stepped through to the next ring; the pipes, "
            "nodes and customers (critical first) that lose supply.",
            ShutoffInputs, run_shutoff, example={"inputs": {"pipe": "J12-J13", "failed_valves": []}},
            formats=("json", "pdf"), keywords=("emergency", "valve"), conditional=True),
    Process("hazards", "Dig-site hazards (抢险分析)",
            "Every pipe and cable within a radius of the dig site (nearest first, with the depth of its top), "
            "the nearest valves of the burst utility, pipes past their service life and pipes short of cover.",
            HazardsInputs, run_hazards, example={"inputs": {"at": [408350.0, 4035700.0], "radius_m": 10}},
            keywords=("emergency",)),
    Process("collision", "Collision check (碰撞)",
            "Hard clashes (solids overlap) and duplicates in 3D with real pipe sizes: of a proposal against "
            "the network around it, or across the whole network (heavy).",
            CollisionInputs, run_collision, example={"inputs": {"proposal": _PROPOSAL_EXAMPLE}},
            heavy=_whole_network, keywords=("approval",)),
    Process("clearance", "Clearance check (水平/垂直净距)",
            "Horizontal clearance between parallel runs and vertical clearance at crossings against the "
            "rule table (GB 50289-2016 defaults or the table an admin stored): of a proposal, or across "
            "the whole network (heavy).",
            ClearanceInputs, run_clearance, example={"inputs": {"proposal": _PROPOSAL_EXAMPLE}},
            heavy=_whole_network, keywords=("approval",)),
    Process("cover", "Cover depth check (覆土)",
            "Ground minus pipe top along each pipe against the minimum cover by utility and location class; "
            "the worst point per pipe: of a proposal, or of every pipe (heavy).",
            CoverInputs, run_cover, example={"inputs": {"proposal": _PROPOSAL_EXAMPLE, "location": "sidewalk"}},
            heavy=_whole_network, keywords=("approval",)),
    Process("section", "Cross-section (横断面)",
            "Every pipe a plan line crosses: offset, elevations, size, cover and clear distances to its "
            "neighbours, with the ground line; `?f=svg` gives the drawing at true scale, `?f=dxf` the same "
            "for CAD (metres, one layer per utility).",
            SectionInputs, run_section, formats=("json", "svg", "dxf"),
            example={"inputs": {"line": [[408300.0, 4035650.0], [408300.0, 4035750.0]]}},
            keywords=("drawing",)),
    Process("profile", "Longitudinal profile (纵断面)",
            "The shortest path along one utility between two survey points: chainage, ground, top, invert, "
            "slope per pipe, crossing pipes with their clearance; `?f=svg` gives the drawing, `?f=dxf` the "
            "same for CAD (metres, the vertical exaggeration stated).",
            ProfileInputs, run_profile, formats=("json", "svg", "dxf"),
            example={"inputs": {"from_node": "J1", "to_node": "J9"}}, keywords=("drawing",)),
    Process("proposal-check", "Proposal check without storing (管线审批)",
            "Collision, clearance and cover of a proposed pipe or excavation against the twin, with a "
            "cross-section at the worst place; nothing is stored (POST /proposals stores one for review). "
            "`?f=html` gives the printable report, `?f=svg` the cross-section.",
            ProposalCheckInputs, run_proposal_check, formats=("json", "html", "svg"),
            example={"inputs": {"proposal": _PROPOSAL_EXAMPLE, "name": "gas main, Dongchang Road"}},
            keywords=("approval",)),
    Process("network-scan", "Whole-network collision and clearance scan",
            "Hard clashes, duplicates and clearance violations across the whole live network, stored as "
            "findings (GET /findings); slow on a "
            "large twin, so it always runs as a job with progress.",
            NetworkScanInputs, run_network_scan, async_only=True, heavy=lambda inputs: True,
            example={"inputs": {"include": ["active", "planned"], "limit": 1000}}, keywords=("approval",)),
)}


# ----------------------------------------------------------------------------- descriptions
def _inline(schema: Any, defs: dict) -> Any:
    """The schema with its ``$ref``s to ``defs`` replaced by their targets (no recursive models here)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].split("/")[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _inputs_schema(process: Process) -> dict:
    schema = process.inputs.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out = {}
    for name, prop in schema["properties"].items():
        prop = _inline(prop, defs)
        out[name] = {
            "title": prop.pop("title", name),
            "description": prop.get("description", ""),
            "schema": prop,
            "minOccurs": 1 if name in required else 0,
            "maxOccurs": 1,
        }
    return out


def _outputs_schema(process: Process) -> dict:
    out = {"result": {"title": "The analysis result", "schema": {"type": "object",
                                                                "contentMediaType": "application/json"}}}
    if "svg" in process.formats:
        out["svg"] = {"title": "The drawing (?f=svg)", "schema": {"type": "string", "contentMediaType": "image/svg+xml"}}
    if "html" in process.formats:
        out["html"] = {"title": "The printable report (?f=html)",
                       "schema": {"type": "string", "contentMediaType": "text/html"}}
    if "pdf" in process.formats:
        out["pdf"] = {"title": "The document as PDF (?f=pdf): the shutoff's work order 关阀作业单",
                      "schema": {"type": "string", "contentMediaType": "application/pdf"}}
    if "dxf" in process.formats:
        out["dxf"] = {"title": "The drawing for CAD (?f=dxf)",
                      "schema": {"type": "string", "contentMediaType": "application/dxf"}}
    return out


def _summary(process: Process, base: str) -> dict:
    return {
        "id": process.id,
        "title": process.title,
        "description": process.description,
        "version": VERSION,
        "keywords": list(process.keywords),
        "jobControlOptions": process.job_control,
        "outputTransmission": ["value"],
        "links": [
            {"href": f"{base}/processes/{process.id}", "rel": "self", "type": "application/json",
             "title": "Process description"},
            {"href": f"{base}/processes/{process.id}/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute",
             "type": "application/json", "title": "Execute"},
        ],
    }


def _process(process_id: str) -> Process:
    process = PROCESSES.get(process_id)
    if process is None:
        raise NotFound(f"no process {process_id!r}; one of {', '.join(PROCESSES)}",
                       zh=f"没有处理过程 {process_id!r}；可选 {', '.join(PROCESSES)}")
    return process


@router.get("/processes", summary="The analyses this server runs (OGC API - Processes)")
def list_processes(request: Request, user: User = Depends(allow("analyse"))) -> dict:
    base = base_url(request)
    return {"processes": [_summary(p, base) for p in PROCESSES.values()],
            "links": [{"href": f"{base}/processes", "rel": "self", "type": "application/json"}]}


@router.get("/processes/{process_id}", summary="One analysis: its inputs and outputs as JSON schema")
def describe_process(
    request: Request,
    process_id: Annotated[str, PathParam(max_length=100)],
    user: User = Depends(allow("analyse")),
) -> dict:
    process = _process(process_id)
    return {**_summary(process, base_url(request)), "inputs": _inputs_schema(process),
            "outputs": _outputs_schema(process), "example": process.example}


# ----------------------------------------------------------------------------- execution
def audit_params(params: dict) -> dict:
    """Inputs for the audit log: long values (a proposal's GeoJSON) replaced by their size and hash."""
    out = {}
    for k, v in params.items():
        text = json.dumps(v, ensure_ascii=False, default=str)
        if len(text) > AUDIT_VALUE_CHARS:
            out[k] = {"omitted_chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
        else:
            out[k] = v
    return out


def _audit_ids(ids: list[str]) -> list[str]:
    """The ids a run touched, once each and at most AUDIT_IDS, for the audit log."""
    return list(dict.fromkeys(str(i) for i in ids if i is not None))[:AUDIT_IDS]


OutputFormat = Literal["json", "svg", "html", "pdf", "dxf"]


def _format(process: Process, f: str | None, outputs: dict | None, accept: str) -> str:
    """The output asked for: ``?f=``, else an OGC ``outputs`` member, else the Accept header, else JSON."""
    fmt = f
    if fmt is None and outputs:
        named = [k for k in outputs if k in ("svg", "html", "pdf", "dxf")]
        fmt = named[0] if len(named) == 1 else None
    if fmt is None:
        for name in ("svg", "html", "pdf", "dxf"):
            if MEDIA[name] in accept and name in process.formats and "application/json" not in accept:
                fmt = name
    fmt = fmt or "json"
    if fmt not in process.formats:
        raise InputError(f"process {process.id} gives {', '.join(process.formats)}, not {fmt}",
                         zh=f"处理过程 {process.id} 可输出 {', '.join(process.formats)}，不提供 {fmt}")
    return fmt


def _answer(outcome: Outcome, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(plain(outcome.value))
    text = outcome.documents[fmt]()
    if fmt == "pdf":
        name = re.sub(r"[^\w.-]", "_", outcome.filename, flags=re.ASCII)[:100]
        return Response(text, media_type=MEDIA[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'})
    if fmt == "dxf":  # a constant name: the kind of drawing
        return Response(text, media_type=MEDIA[fmt], headers={
            "Content-Disposition": f'attachment; filename="{outcome.value.get("kind", "drawing")}.dxf"'})
    if fmt == "html":
        return HTMLResponse(text)
    return Response(text, media_type=MEDIA[fmt])


def _execute(request: Request, user: User, process: Process, body: BaseModel, f: str | None,
             prefer: str | None) -> Response:
    inputs = body.inputs  # type: ignore[attr-defined]
    fmt = _format(process, f, body.outputs, request.headers.get("accept", ""))  # type: ignore[attr-defined]
    ctx = Context(request.app.state.engine, request.app.state.settings, user.name)
    params = inputs.model_dump(mode="json", exclude_none=True)
    action = f"process-{process.id}"
    # a PDF is answered at once (a job keeps text results): the preference is not applied
    wants_async = "respond-async" in (prefer or "").lower() and fmt != "pdf"
    if process.async_only or wants_async:
        return _submit(request, user, process, ctx, inputs, fmt, params, action)
    tag = _etag(ctx, process, params) if process.conditional and fmt == "json" else None
    if tag is not None and matches(if_none_match(request), tag):  # before the analysis runs
        audit_now(ctx.engine, user, action, request, params=audit_params({**params, "f": fmt}), status=304)
        return not_modified(tag)
    try:
        with work_limits(request).slot(user.name, heavy=process.heavy(inputs)):
            outcome = process.run(ctx, inputs, lambda percent, message: None)
            response = _answer(outcome, fmt)
    except TwinError as exc:
        audit_now(ctx.engine, user, action, request, params=audit_params(params), status=status_of(exc))
        raise
    audit_now(ctx.engine, user, action, request, params=audit_params({**params, "f": fmt}),
              affected=_audit_ids(outcome.affected), status=200)
    if tag is not None:
        response.headers["ETag"] = tag
        response.headers["Cache-Control"] = CACHE_CONTROL
    return response


#: What an answer of a conditional process depends on besides its inputs: the network, the
#: valve exercises (likely-to-fail valves) and, through the exercises' ages, the day.
_MARKS_SQL = f"SELECT {CHANGE_MARK_SQL}, (SELECT max(id) FROM valve_exercise), current_date"


def _etag(ctx: Context, process: Process, params: dict) -> str:
    """The ETag of a conditional process's JSON answer, read before it runs (an edit meanwhile
    gives the answer an older tag: revalidated, never wrongly kept)."""
    with ctx.engine.connect() as conn:
        marks = list(conn.execute(sa.text(_MARKS_SQL)).one())
    return etag(process.id, VERSION, params, marks, ctx.settings.valve_exercise_years)


def _heavy_work(process: Process, inputs: BaseModel, fmt: str) -> bool:
    """Runs in the heavy pool: whole-network analyses and documents (PDF, drawings, reports).

    A proposal check reads only the network around the proposal, within the proposal budget:
    it stays on the request threads, under the work limits of :mod:`api.limits` like the rest.
    """
    return process.heavy(inputs) or fmt != "json"


async def _dispatch(request: Request, user: User, process: Process, body: BaseModel, f: str | None,
                    prefer: str | None) -> Response:
    """Heavy work on the heavy pool (503 past its deadline), the rest on the request threads."""
    inputs = body.inputs  # type: ignore[attr-defined]
    fmt = _format(process, f, body.outputs, request.headers.get("accept", ""))  # type: ignore[attr-defined]
    queued = not (process.async_only or ("respond-async" in (prefer or "").lower() and fmt != "pdf"))
    if queued and _heavy_work(process, inputs, fmt):
        return await heavy_pool(request).run(_execute, request, user, process, body, f, prefer)
    return await run_in_threadpool(_execute, request, user, process, body, f, prefer)


def _submit(request: Request, user: User, process: Process, ctx: Context, inputs: BaseModel, fmt: str,
            params: dict, action: str) -> Response:
    """Run as a job. Audited twice: when accepted (201), and when done with the ids it touched."""
    submitted = threading.Event()
    job: dict[str, str] = {}

    def work(progress: Progress) -> JobResult:
        submitted.wait(10)  # the job id, for the audit entry
        logged = audit_params({**params, "f": fmt, "job": job.get("id")})
        try:
            outcome = process.run(ctx, inputs, progress)
            value = plain(outcome.value)
            result = JobResult(value=value) if fmt == "json" else JobResult(
                value=value, media_type=MEDIA[fmt], text=outcome.documents[fmt]())
        except TwinError as exc:
            audit_now(ctx.engine, user, action, request, params=logged, status=status_of(exc))
            raise
        audit_now(ctx.engine, user, action, request, params=logged, affected=_audit_ids(outcome.affected),
                  status=200)
        return result

    job_id = request.app.state.jobs.submit(process.id, user.name, {**params, "f": fmt}, work)
    job["id"] = job_id
    submitted.set()
    audit_now(ctx.engine, user, action, request, params=audit_params({**params, "f": fmt, "job": job_id}),
              status=201)
    doc = jsonable_encoder(job_status(job_id, request, user))
    location = f"{base_url(request)}/jobs/{job_id}"
    return JSONResponse(doc, status_code=201, headers={"Location": location, "Preference-Applied": "respond-async"})


_OUTPUT_HELP = ("Output: json (default), svg (drawing), html (printable report), pdf (shutoff work order) or dxf "
                "(drawing for CAD), where the process has it.")
_PREFER_HELP = "'respond-async' runs the analysis as a job (201, Location: /jobs/{id})."
_EXEC_RESPONSES = {
    200: {"description": "The result (JSON, or SVG/HTML with ?f=)",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "image/svg+xml": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}},
                      "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                      "application/dxf": {"schema": {"type": "string"}}}},
    201: {"description": "Accepted as a job: its status document; Location names it",
          "content": {"application/json": {"schema": {"type": "object"}}}},
}


def _execution_body(process: Process) -> type[BaseModel]:
    required = any(f.is_required() for f in process.inputs.model_fields.values())
    inputs_field = (process.inputs, ...) if required else (process.inputs, Field(default_factory=process.inputs))
    name = "".join(w.capitalize() for w in process.id.split("-")) + "Execution"
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        inputs=inputs_field,
        outputs=(dict[Annotated[str, StringConstraints(max_length=50)], dict[str, Any] | None] | None,
                 Field(None, max_length=10, description="OGC outputs: name 'svg' or 'html' to get that output")),
        response=(Literal["raw", "document"] | None, None),
    )


def _execution_route(process: Process) -> Callable[..., Response]:
    body_model = _execution_body(process)

    async def execute(
        request: Request,
        body: body_model,  # type: ignore[valid-type]
        f: OutputFormat | None = Query(None, description=_OUTPUT_HELP),
        prefer: str | None = Header(None, max_length=200, description=_PREFER_HELP),
        user: User = Depends(allow("analyse")),
    ) -> Response:
        return await _dispatch(request, user, process, body, f, prefer)

    execute.__name__ = f"execute_{process.id.replace('-', '_')}"
    execute.__doc__ = process.description
    return execute


for _p in PROCESSES.values():
    router.add_api_route(
        f"/processes/{_p.id}/execution", _execution_route(_p), methods=["POST"], response_class=Response,
        summary=f"Run: {_p.title}" + (" (always a job)" if _p.async_only else ""), responses=_EXEC_RESPONSES,
    )


@router.post("/processes/{process_id}/execution", include_in_schema=False)
def execute_unknown(process_id: str, user: User = Depends(allow("analyse"))) -> dict:
    _process(process_id)  # every known process has its own route above
    raise NotFound(f"no process {process_id!r}", zh=f"没有处理过程 {process_id!r}")
