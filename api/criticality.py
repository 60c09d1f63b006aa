"""Criticality of every segment (关阀影响) and the N-1 next ring of every valve, over HTTP.

``GET /criticality`` lists the stored worst segments (``top``, ``min_valves``, ``valves`` for
the next ring of the valves they need) and ``GET /criticality/pipes/{id}`` the segment of one
pipe — any signed-in user, answered from the stored results in milliseconds and flagged
``stale`` when the network has changed since. ``POST /criticality/jobs`` recomputes them as a
job (a viewer may: it is an analysis), audited. The work is :mod:`analysis.criticality`.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from analysis.criticality import criticality, ensure_current, pipe_criticality
from api.audit import audit, audit_now
from api.auth import User, allow
from api.jobs import JobResult, Progress, base_url, job_status
from api.reads import read_engine

__all__ = ["router"]

router = APIRouter(tags=["criticality"])

PipeId = Annotated[str, PathParam(max_length=200, pattern=r"^[^\x00/]+$", description="A pipe id.")]


def _links(request: Request, state: dict) -> list[dict]:
    base = base_url(request)
    links = [{"href": f"{base}/criticality", "rel": "self", "type": "application/json"}]
    if state.get("stale"):
        links.append({"href": f"{base}/criticality/jobs", "rel": "refresh", "type": "application/json",
                      "title": "POST to recompute (the stored results are stale)"})
    return links


@router.get("/criticality", summary="The worst segments to lose: what isolating each cuts off (stored)")
def worst_segments(
    request: Request,
    top: Annotated[int, Query(ge=1, le=10_000, description="How many segments, worst first.")] = 20,
    min_valves: Annotated[int | None, Query(ge=0, le=100_000, description="Only segments needing at "
                                            "least this many valves.")] = None,
    valves: Annotated[bool, Query(description="Add the next ring (N-1) of the valves they need.")] = False,
    user: User = Depends(allow("read")),
) -> dict:
    doc = criticality(read_engine(request), top=top, min_valves=min_valves, with_valves=valves,
                      refresh=False)
    return {**doc, "links": _links(request, doc["state"])}


@router.get("/criticality/pipes/{pipe_id}", summary="The criticality of the segment holding a pipe")
def pipe(request: Request, pipe_id: PipeId, user: User = Depends(allow("read"))) -> dict:
    doc = pipe_criticality(read_engine(request), pipe_id)
    return {**doc, "links": _links(request, doc["state"])}


@router.post(
    "/criticality/jobs",
    summary="Recompute the criticality of every segment and valve as a job (when stale)",
    status_code=201,
    responses={201: {"description": "The job, at the Location given", "headers": {
        "Location": {"description": "The job's status URL", "schema": {"type": "string"}}}},
        429: {"description": "Too many of your jobs are running"}},
)
def recompute(
    request: Request,
    force: bool = Query(False, description="Recompute even when the stored results are current."),
    user: User = Depends(allow("analyse")),
) -> JSONResponse:
    engine = request.app.state.engine

    def audit_run(conn: sa.Connection, run: dict) -> None:
        audit(conn, user, "criticality computed", request, params=run)

    def work(progress: Progress) -> JobResult:
        return JobResult(ensure_current(engine, user=user.name, progress=progress, audit=audit_run,
                                        force=force))

    job_id = request.app.state.jobs.submit("criticality", user.name, {"force": force}, work)
    audit_now(engine, user, "criticality-job", request, params={"force": force, "job": job_id})
    doc = jsonable_encoder(job_status(job_id, request, user))
    return JSONResponse(doc, status_code=201, headers={"Location": f"{base_url(request)}/jobs/{job_id}"})
