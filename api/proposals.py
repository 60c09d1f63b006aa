"""The proposal workflow (管线审批) over HTTP: submit, check, decide, print.

``POST /proposals`` stores a proposed pipe or excavation (GeoJSON, as
:mod:`analysis.proposal_input` reads it) and checks it; ``GET /proposals/{id}`` is its last
report with the decisions and the event log, ``/report`` the printable HTML page,
``/section.svg`` the cross-section at the worst place and ``/findings.bcf`` its findings as BCF
3.0 topics for BIM tools (audited); ``/report.pdf`` the approval package (管线审批报告, audited:
:mod:`documents.approval_pdf`). A re-check's report says what changed since the check before
(``changes``) and every check carries its ``stamp`` (network change mark, rule-table version).
``POST /proposals/tables`` turns a proposal given as CJJ 61 point and segment tables into that
GeoJSON (checked as an import is), for the client to check or submit. Editors and approvers
submit and re-check (``propose``); approvers decide findings and the proposal (``approve``):
new -> reviewed -> approved | rejected; its submitter (or an admin) may withdraw a new or
reviewed proposal (``POST /proposals/{id}/withdraw``). The workflow and its state machine are
:mod:`analysis.proposal_workflow`: a move the status does not allow is 409; approving or
rejecting a proposal one submitted or revised is 403 (four eyes). The proposals as OGC features
are served elsewhere (``/collections/proposals/items``).

Every write is audited in its own transaction (the workflow's ``before_commit`` hook). Checks
and table readings hold a slot of :mod:`api.limits` (429 when none comes free); a proposal is
held to the budget of :mod:`analysis.proposal_input` and its tables to
``TWIN_MAX_PROPOSAL_TABLE_ROWS`` / ``_MB`` (400 ``PROPOSAL_TOO_LARGE`` / ``TABLE_TOO_LARGE``).
"""

from __future__ import annotations

import shutil
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analysis.proposal import ProposalReport
from analysis.proposal_input import MAX_PARTS, TOO_LARGE
from analysis.proposal_report import report_html
from analysis.proposal_report import section_svg as stored_section_svg
from analysis.proposal_workflow import (
    DECISIONS,
    FINDING_DECISIONS,
    decide_finding,
    decide_proposal,
    get_proposal,
    list_proposals,
    recheck_proposal,
    submit_proposal,
    withdraw_proposal,
)
from api.audit import audit, audit_now
from api.auth import User, allow
from api.jobs import base_url
from api.limits import work_limits
from api.processes import AUDIT_IDS, ProposalDocument, audit_params, geojson
from api.uploads import AxisOrder, Encoding, _save_uploads
from documents.approval_pdf import approval_pdf
from documents.bcf import MAX_SNAPSHOTS, MEDIA_TYPE, SNAPSHOTS, proposal_findings_bcf
from ingest.proposal_tables import tables_to_geojson
from twin.errors import InputError, NotFound
from twin.jsonable import plain

__all__ = ["router"]

router = APIRouter(tags=["proposals"])


ProposalId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="Stored proposal id.")]
FindingKey = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$",
                                      description="The finding's stable key.")]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]


class FindingDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[FINDING_DECISIONS] = Field(  # type: ignore[valid-type]
        ..., description="accepted (tolerable, e.g. with a protective measure), rejected (must be fixed) or open.")
    note: Note | None = Field(None, description="Why (required to accept a 无规则 no-rule finding).")


class ProposalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[DECISIONS]  # type: ignore[valid-type]
    note: Note | None = None
    override: Note | None = Field(None, description="Approve although findings are not accepted: the reason "
                                  "(recorded).")


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = Field(None, description="Why.")


def _affected(report: ProposalReport) -> list[str]:
    ids = [f"proposal:{report.proposal_id}", *(i for f in report.findings for i in f.ids)]
    return list(dict.fromkeys(ids))[:AUDIT_IDS]


def _links(request: Request, pid: int) -> list[dict]:
    base = f"{base_url(request)}/proposals/{pid}"
    return [
        {"href": base, "rel": "self", "type": "application/json"},
        {"href": f"{base}/report", "rel": "alternate", "type": "text/html", "title": "Printable report"},
        {"href": f"{base}/section.svg", "rel": "describedby", "type": "image/svg+xml",
         "title": "Cross-section at the worst place"},
        {"href": f"{base}/report.pdf", "rel": "alternate", "type": "application/pdf",
         "title": "Approval package 管线审批报告 (PDF)"},
        {"href": f"{base}/findings.bcf", "rel": "alternate", "type": "application/octet-stream",
         "title": "Findings as BCF 3.0 topics, for BIM tools"},
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

    def record(conn: sa.Connection, report: ProposalReport) -> None:
        audit(conn, user, "proposal-submit", request, params=audit_params({"name": name, "proposal": doc}),
              affected=_affected(report), status=201)

    with work_limits(request).slot(user.name):
        report = submit_proposal(engine, doc, settings, name=name or None, user=user.name, before_commit=record)
    pid = int(report.proposal_id)  # type: ignore[arg-type]
    stored = get_proposal(engine, pid)
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
        with work_limits(request).slot(user.name):
            doc = tables_to_geojson(files[0].path, files[1].path, settings, axis_order=axis_order,
                                    encoding=encoding)
        if len(doc["features"]) > MAX_PARTS:
            raise InputError(f"a proposal has at most {MAX_PARTS} pipes; these tables hold "
                             f"{len(doc['features'])} segments", code=TOO_LARGE,
                             zh=f"一个提案最多 {MAX_PARTS} 条管线；这些表中有 {len(doc['features'])} 段")
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
    svg = stored_section_svg(get_proposal(request.app.state.engine, proposal_id))
    if svg is None:
        raise NotFound(f"the check of proposal {proposal_id} drew no cross-section",
                       zh=f"提案 {proposal_id} 的检查未生成横断面")
    return Response(svg, media_type="image/svg+xml")


@router.get("/proposals/{proposal_id}/findings.bcf", response_class=Response,
            responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                             "description": "A BCF 3.0 zip, one topic per finding of the last check"}},
            summary="The findings of the last check as BCF 3.0 topics (with 3D snapshots), for BIM tools")
def findings_bcf(
    proposal_id: ProposalId,
    request: Request,
    snapshots: Annotated[int, Query(ge=0, le=MAX_SNAPSHOTS, description="Topics (the first ones) with a "
                                    "rendered 3D snapshot; the rest a viewpoint only.")] = SNAPSHOTS,
    user: User = Depends(allow("read")),
) -> Response:
    engine, settings = request.app.state.engine, request.app.state.settings
    with work_limits(request).slot(user.name, heavy=True):
        export = proposal_findings_bcf(engine, settings, proposal_id, author=user.name, snapshots=snapshots,
                                       links=f"{base_url(request)}/proposals/{proposal_id}#{{key}}")
    audit_now(engine, user, "proposal-bcf", request, params={"proposal_id": proposal_id,
                                                             "topics": len(export.keys)},
              affected=export.affected, status=200)
    return Response(export.data, media_type=MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{export.filename}"'})


_PDF = {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}


@router.get("/proposals/{proposal_id}/report.pdf", response_class=Response,
            responses={200: {"content": _PDF, "description": "The approval package (管线审批报告): "
                             "findings with 3D pictures, plan, sections, decisions, the check's stamp"}},
            summary="The approval package as PDF (Chinese and English, CJK fonts embedded)")
def report_pdf(proposal_id: ProposalId, request: Request,
               user: User = Depends(allow("read"))) -> Response:
    engine, settings = request.app.state.engine, request.app.state.settings
    with work_limits(request).slot(user.name, heavy=True):
        pdf = approval_pdf(engine, settings, proposal_id, user=user.name)
    audit_now(engine, user, "proposal-pdf", request,
              params={"proposal_id": proposal_id, "bytes": len(pdf)},
              affected=[f"proposal:{proposal_id}"], status=200)
    name = f"proposal-{proposal_id}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


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

    def record(conn: sa.Connection, report: ProposalReport) -> None:
        audit(conn, user, "proposal-recheck", request,
              params=audit_params({"proposal_id": proposal_id, "revised": doc}), affected=_affected(report),
              status=200)

    with work_limits(request).slot(user.name):
        recheck_proposal(engine, proposal_id, settings, source=doc, user=user.name, before_commit=record)
    return _document(request, proposal_id, get_proposal(engine, proposal_id))


@router.post("/proposals/{proposal_id}/findings/{key}/decision", summary="Decide one finding")
def finding_decision(
    proposal_id: ProposalId,
    key: FindingKey,
    decision: FindingDecision,
    request: Request,
    user: User = Depends(allow("approve")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings

    def record(conn: sa.Connection) -> None:
        audit(conn, user, "proposal-finding", request,
              params={"proposal_id": proposal_id, "key": key, **decision.model_dump(exclude_none=True)},
              affected=[f"proposal:{proposal_id}", key], status=200)

    stored = decide_finding(engine, proposal_id, key, decision.status, settings, note=decision.note,
                            user=user.name, before_commit=record)
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

    def record(conn: sa.Connection) -> None:
        audit(conn, user, f"proposal-{decision.status}", request,
              params={"proposal_id": proposal_id, **decision.model_dump(exclude_none=True)},
              affected=[f"proposal:{proposal_id}"], status=200)

    stored = decide_proposal(engine, proposal_id, decision.status, settings, note=decision.note,
                             override=decision.override, user=user.name, before_commit=record)
    return _document(request, proposal_id, stored)


@router.post("/proposals/{proposal_id}/withdraw",
             summary="Withdraw a new or reviewed proposal (its submitter, or an admin)")
def withdraw(
    proposal_id: ProposalId,
    request: Request,
    withdrawal: Annotated[Withdrawal | None, Body()] = None,
    user: User = Depends(allow("propose")),
) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    note = withdrawal.note if withdrawal is not None else None

    def record(conn: sa.Connection) -> None:
        audit(conn, user, "proposal-withdrawn", request,
              params={"proposal_id": proposal_id, **({"note": note} if note else {})},
              affected=[f"proposal:{proposal_id}"], status=200)

    stored = withdraw_proposal(engine, proposal_id, settings, note=note, user=user.name, admin=user.can("admin"),
                               before_commit=record)
    return _document(request, proposal_id, stored)
