"""Stored findings of the whole-network scan: list them, read one, move its status.

``GET /findings`` lists the findings the ``network-scan`` process (or ``twin analyze scan``)
stored, filtered by status, verdict, road, utility pair and owner pair, paginated (``limit``,
``offset``, ``next`` link) — any signed-in user; ``GET /findings.bcf`` gives the same selection
as BCF 3.0 topics for BIM tools (:mod:`documents.bcf`, at most 500, audited).
``GET /findings/{key}`` gives one with its history. ``POST /findings/{key}/status`` moves it
(``active``, ``reviewed``, ``approved``; approvers and admins), audited with the change. The life cycle is
:mod:`analysis.findings`; the routes only call it.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints

from analysis.findings import get_finding, list_findings, set_status
from api.audit import audit, audit_now
from api.auth import User, allow
from api.jobs import base_url
from api.limits import work_limits
from documents.bcf import MAX_SNAPSHOTS, MAX_TOPICS, MEDIA_TYPE, SNAPSHOTS, network_findings_bcf

__all__ = ["router"]

router = APIRouter(tags=["findings"])

FindingKey = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="The finding's key.")]
Status = Literal["new", "active", "reviewed", "approved", "resolved"]
Verdict = Literal["violation", "uncertain", "no_rule"]
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]


class StatusChange(BaseModel):
    status: Literal["active", "reviewed", "approved"] = Field(description="The finding's new status.")
    note: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] | None = Field(
        None, description="Why; needed to approve a violation or a pair no rule covers.")


def finding_filters(
    status: Annotated[list[Status] | None, Query(description="Statuses (repeatable).")] = None,
    verdict: Annotated[list[Verdict] | None, Query(description="Verdicts (repeatable).")] = None,
    road: Annotated[Text | None, Query(description="Road (findings on or across it).")] = None,
    utility_pair: Annotated[Text | None, Query(alias="utility-pair", description="e.g. JS-RQ, or one utility.")
                            ] = None,
    owner_pair: Annotated[Text | None, Query(alias="owner-pair", description="'owner A/owner B', or one owner.")
                          ] = None,
) -> dict:
    """The findings list's filters, one definition for the list and its BCF export."""
    return {"status": status, "verdict": verdict, "road": road, "utility_pair": utility_pair,
            "owner_pair": owner_pair}


@router.get("/findings", summary="Stored findings of the whole-network scan, filtered and paginated")
def findings(
    request: Request,
    filters: Annotated[dict, Depends(finding_filters)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    user: User = Depends(allow("read")),
) -> dict:
    doc = list_findings(request.app.state.engine, **filters, limit=limit, offset=offset)
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
    links = [{"href": f"{base_url(request)}/findings?{urlencode(query + [('offset', offset)])}", "rel": "self",
              "type": "application/json"}]
    if offset + doc["numberReturned"] < doc["numberMatched"]:
        links.append({"href": f"{base_url(request)}/findings?{urlencode(query + [('offset', offset + limit)])}",
                      "rel": "next", "type": "application/json"})
    return {**doc, "links": links}


@router.get("/findings.bcf", response_class=Response,
            responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                             "description": "A BCF 3.0 zip, one topic per finding"},
                       400: {"description": f"More than {MAX_TOPICS} findings match: filter or page"}},
            summary="The stored findings, filtered as the list, as BCF 3.0 topics (with 3D snapshots)")
def findings_bcf(
    request: Request,
    filters: Annotated[dict, Depends(finding_filters)],
    limit: Annotated[int | None, Query(ge=1, le=MAX_TOPICS, description="Topics (default: all that match, "
                                       f"at most {MAX_TOPICS}).")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    snapshots: Annotated[int, Query(ge=0, le=MAX_SNAPSHOTS, description="Topics (the first ones) with a "
                                    "rendered 3D snapshot, about a second each; the rest a viewpoint only.")
                         ] = SNAPSHOTS,
    user: User = Depends(allow("read")),
) -> Response:
    engine, settings = request.app.state.engine, request.app.state.settings
    filters = {**filters, "limit": limit, "offset": offset}
    with work_limits(request).slot(user.name, heavy=True):
        export = network_findings_bcf(engine, settings, **filters, author=user.name, snapshots=snapshots,
                                      links=f"{base_url(request)}/findings/{{key}}")
    audit_now(engine, user, "findings-bcf", request, params={k: v for k, v in filters.items() if v},
              affected=export.affected, status=200)
    return Response(export.data, media_type=MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{export.filename}"'})


@router.get("/findings/{key}", summary="One stored finding with its history")
def finding(key: FindingKey, request: Request, user: User = Depends(allow("read"))) -> dict:
    return get_finding(request.app.state.engine, key)


@router.post("/findings/{key}/status", summary="Move a finding: active, reviewed or approved (audited)")
def finding_status(key: FindingKey, change: StatusChange, request: Request,
                   user: User = Depends(allow("approve"))) -> dict:
    def record(conn: sa.Connection, doc: dict) -> None:
        audit(conn, user, "finding-status", request, params={"finding": key, **change.model_dump(exclude_none=True)},
              affected=[f"finding:{key}"], status=200)

    return set_status(request.app.state.engine, key, change.status, user=user.name, note=change.note,
                      before_commit=record)
