"""The proposal workflow (管线审批) over HTTP: submit, check, decide, print.

``POST /proposals`` stores a proposed pipe or excavation (GeoJSON, as
:mod:`analysis.proposal_input` reads it) and checks it; ``GET /proposals/{id}`` is its last
report with the decisions and the event log, ``/report`` the printable HTML page and
``/section.svg`` the cross-section at the worst place. ``POST /proposals/tables`` turns a proposal
given as CJJ 61 point and segment tables into that GeoJSON (checked as an import is), for the
client to check or submit. Editors and approvers submit and re-check
(``propose``); approvers decide findings and the proposal (``approve``):
new -> reviewed -> approved | rejected. A decision the status does not allow is 409.
The proposals as OGC features are served elsewhere (``/collections/proposals/items``).
"""

from __future__ import annotations

import shutil
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analysis.proposal import (
    decide_finding,
    decide_proposal,
    get_proposal,
    list_proposals,
    recheck_proposal,
    report_html,
    submit_proposal,
)
from api.audit import audit_now
from api.auth import User, allow
from api.jobs import base_url
from api.processes import AUDIT_IDS, MAX_PARTS, ProposalDocument, audit_params, geojson
from api.uploads import AxisOrder, Encoding, _save_uploads
from ingest.proposal_tables import tables_to_geojson
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain

__all__ = ["router"]

router = APIRouter(tags=["proposals"])


ProposalId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="Stored proposal id.")]
FindingKey = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$",
                                      description="The finding's stable key.")]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]

#: What a proposal in each status may become (as analysis.proposal enforces; checked first for a 409).
TRANSITIONS = {"new": {"reviewed", "rejected"}, "reviewed": {"approved", "rejected", "reviewed"},
               "approved": set(), "rejected": set()}


class FindingDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["accepted", "rejected", "open"] = Field(
        ..., description="accepted (tolerable, e.g. with a protective measure), rejected (must be fixed) or open.")
    note: Note | None = Field(None, description="Why.")


class ProposalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["reviewed", "approved", "rejected"]
    note: Note | None = None
    override: Note | None = Field(None, description="Approve although findings are not accepted: the reason "
                                  "(recorded).")


def _affected(pid: int, report: dict) -> list[str]:
    ids = [f"proposal:{pid}", *(i for f in report.get("findings") or [] for i in f.get("ids") or [])]
    return list(dict.fromkeys(ids))[:AUDIT_IDS]


def _status(engine: sa.Engine, pid: int) -> str:
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM proposal WHERE id = :p"), {"p": pid}).scalar()
    if status is None:
        raise NotFound(f"no proposal {pid}")
    return str(status)


def _links(request: Request, pid: int) -> list[dict]:
    base = f"{base_url(request)}/proposals/{pid}"
    return [
        {"href": base, "rel": "self", "type": "application/json"},
        {"href": f"{base}/report", "rel": "alternate", "type": "text/html", "title": "Printable report"},
        {"href": f"{base}/section.svg", "rel": "describedby", "type": "image/svg+xml",
         "title": "Cross-section at the worst place"},
    ]


def _document(request: Request, pid: int, report: dict) -> dict:
    return plain({**report, "links": _links(request, pid)})


@router.get("/proposals", summary="Stored proposals with their status")
def proposals(request: Request, user: User = Depends(allow("read"))) -> dict:
    rows = list_proposals(request.app.state.engine)
    base = base_url(request)
    return plain({"proposals": [{**r, "links": [{"href": f"{base}/proposals/{r['id']}", "rel": "item"}]}
                                    for r in rows]})


@router.post("/proposals", status_code=201, summary="Submit a proposal: stored (status new) and checked",
             responses={201: {"description": "The stored proposal with its findings; Location names it"}})
def submit(
    request: Request,
    proposal: Annotated[ProposalDocument, Body(examples=[{
        "type": "Feature", "properties": {"utility": "RQ", "size": "DN200", "depth_m": 1.2},
        "geometry": {"type": "LineString", "coordinates": [[408300.0, 4035700.0], [408400.0, 4035700.0]]}}])],
    name: str | None = Query(None, max_length=200, pattern=r"^[^\x00]*$",
                             description="Name (default: the GeoJSON's name property)."),
    user: User = Depends(allow("propose")),
) -> JSONResponse:
    engine, settings = request.app.state.engine, request.app.state.settings
    doc = geojson(proposal)
    report = submit_proposal(engine, doc, settings, name=name or None, user=user.name)
    pid = int(report.proposal_id)  # type: ignore[arg-type]
    stored = get_proposal(engine, pid)
    audit_now(engine, user, "proposal-submit", request, params=audit_params({"name": name, "proposal": doc}),
              affected=_affected(pid, stored), status=201)
    return JSONResponse(_document(request, pid, stored), status_code=201,
                        headers={"Location": f"{base_url(request)}/proposals/{pid}"})


@router.post(
    "/proposals/tables",
    summary="A proposal given as CJJ 61 point and segment tables (CSV or XLSX) as proposal GeoJSON",
    responses={200: {"description": "A GeoJSON FeatureCollection in the twin CRS, one LineString per segment "
                     "(its centreline, z at the centre): check or submit it as it is"},
               400: {"description": "The tables cannot be read or fail the import's data checks"}},
)
def proposal_tables(
    request: Request,
    points: UploadFile = File(..., description="Point table (管线点成果表) of the proposal, CSV or XLSX"),
    segments: UploadFile = File(..., description="Segment table (管线段成果表) of the proposal, CSV or XLSX"),
    axis_order: AxisOrder = Form("ne", description="ne: X is northing (Chinese survey); en: X is easting"),
    encoding: Encoding = Form("auto", description="Text encoding of CSV files"),
    user: User = Depends(allow("analyse")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    folder, files = _save_uploads(points, segments)
    params = {"axis_order": axis_order, "encoding": encoding, "files": [f.info for f in files]}
    try:
        doc = tables_to_geojson(files[0].path, files[1].path, settings, axis_order=axis_order, encoding=encoding)
        if len(doc["features"]) > MAX_PARTS:
            raise InputError(f"a proposal has at most {MAX_PARTS} pipes; these tables hold "
                             f"{len(doc['features'])} segments")
    except InputError as exc:
        audit_now(engine, user, "proposal-tables", request, params={**params, "error": exc.message[:500]},
                  status=400)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    audit_now(engine, user, "proposal-tables", request, params=params,
              affected=[f["properties"]["id"] for f in doc["features"]][:AUDIT_IDS], status=200)
    return plain(doc)


@router.get("/proposals/{proposal_id}", summary="A stored proposal: its last report, decisions and history")
def proposal(proposal_id: ProposalId, request: Request, user: User = Depends(allow("read"))) -> dict:
    return _document(request, proposal_id, get_proposal(request.app.state.engine, proposal_id))


@router.get("/proposals/{proposal_id}/report", response_model=None,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
            summary="The printable report (HTML, A4)")
def report(proposal_id: ProposalId, request: Request, user: User = Depends(allow("read"))) -> HTMLResponse:
    return HTMLResponse(report_html(get_proposal(request.app.state.engine, proposal_id)))


@router.get("/proposals/{proposal_id}/section.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
            summary="The cross-section at the worst place (SVG)")
def section_svg(proposal_id: ProposalId, request: Request, user: User = Depends(allow("read"))) -> Response:
    from analysis.proposal import _section_from_dict

    stored = get_proposal(request.app.state.engine, proposal_id)
    if not stored.get("section"):
        raise NotFound(f"the check of proposal {proposal_id} drew no cross-section")
    svg = _section_from_dict(stored["section"]).to_svg(title="Cross-section at the worst place 最不利处横断面")
    return Response(svg, media_type="image/svg+xml")


@router.post("/proposals/{proposal_id}/recheck",
             summary="Check again against the current network, or check a revised geometry (a new version)")
def recheck(
    proposal_id: ProposalId,
    request: Request,
    proposal: Annotated[ProposalDocument | None, Body(description="The revised geometry (optional).")] = None,
    user: User = Depends(allow("propose")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    doc = geojson(proposal) if proposal is not None else None
    if doc is not None and _status(engine, proposal_id) == "approved":
        raise Conflict(f"proposal {proposal_id} is approved; a revised geometry is a new proposal")
    recheck_proposal(engine, proposal_id, settings, source=doc, user=user.name)
    stored = get_proposal(engine, proposal_id)
    audit_now(engine, user, "proposal-recheck", request,
              params=audit_params({"proposal_id": proposal_id, "revised": doc}),
              affected=_affected(proposal_id, stored), status=200)
    return _document(request, proposal_id, stored)


@router.post("/proposals/{proposal_id}/findings/{key}/decision", summary="Decide one finding")
def finding_decision(
    proposal_id: ProposalId,
    key: FindingKey,
    decision: FindingDecision,
    request: Request,
    user: User = Depends(allow("approve")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    status = _status(engine, proposal_id)
    if status in ("approved", "rejected"):
        raise Conflict(f"proposal {proposal_id} is {status}: its findings can no longer be decided")
    stored = decide_finding(engine, proposal_id, key, decision.status, settings, note=decision.note,
                            user=user.name)
    audit_now(engine, user, "proposal-finding", request,
              params={"proposal_id": proposal_id, "key": key, **decision.model_dump(exclude_none=True)},
              affected=[f"proposal:{proposal_id}", key], status=200)
    return _document(request, proposal_id, stored)


@router.post("/proposals/{proposal_id}/decision",
             summary="Decide the proposal: reviewed, approved or rejected (new -> reviewed -> approved | rejected)")
def proposal_decision(
    proposal_id: ProposalId,
    decision: ProposalDecision,
    request: Request,
    user: User = Depends(allow("approve")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    status = _status(engine, proposal_id)
    if decision.status not in TRANSITIONS[status]:
        raise Conflict(f"proposal {proposal_id} is {status}; it cannot become {decision.status} "
                       "(new -> reviewed -> approved | rejected)")
    stored = decide_proposal(engine, proposal_id, decision.status, settings, note=decision.note,
                             override=decision.override, user=user.name)
    audit_now(engine, user, f"proposal-{decision.status}", request,
              params={"proposal_id": proposal_id, **decision.model_dump(exclude_none=True)},
              affected=[f"proposal:{proposal_id}"], status=200)
    return _document(request, proposal_id, stored)
