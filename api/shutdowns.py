"""Planned shutdowns (关阀方案) over HTTP: plan, move through their life cycle, the crew's marks.

``POST /shutdowns`` plans a shutdown of a pipe (or the pipe nearest a point) for a time window
and answers the record: valves in closing order, outage, customers (critical first), hydrants
out of service and ``conflicts`` with the other shutdowns planned or under way.
``POST /shutdowns/{id}/{notify|execute|restore|cancel}`` moves it (409 when its status does not
allow the move); ``POST /shutdowns/{id}/valves/{valve}`` is a crew's mark (closed or failed: a
failed valve recomputes the ring); ``GET /shutdowns/{id}/customers.csv`` is the notification list, ``GET /shutdowns/{id}/workorder.pdf``
the crew's work order (关阀作业单).
``/valves/{valve}/exercises`` reads and records a valve's exercise history. The workflow is
:mod:`analysis.shutdown`; reading needs ``read``, every change ``edit`` and is audited with the
change (the workflow's ``before_commit`` hook).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analysis.shutdown import (
    MOVES,
    STATUSES,
    customers_csv,
    get_shutdown,
    list_shutdowns,
    mark_valve,
    move_shutdown,
    plan_shutdown,
)
from analysis.shutdown_valves import EXERCISE_RESULTS, exercise_history, record_exercise
from api.audit import audit
from api.auth import User, allow
from api.jobs import base_url
from api.limits import work_limits
from documents.workorder import work_order_pdf
from twin.jsonable import plain

__all__ = ["router"]

router = APIRouter(tags=["shutdowns"])

ShutdownId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="Shutdown id.")]
ValveId = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="Valve id.")]
Note = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Move = Literal[tuple(MOVES)]  # type: ignore[valid-type]


class ShutdownPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipe: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")] | None = Field(
        None, description="Id of the pipe to isolate (or give `at`).")
    at: tuple[Annotated[float, Field(ge=-1e8, le=1e8)], Annotated[float, Field(ge=-1e8, le=1e8)]] | None = Field(
        None, description="Easting, northing (twin CRS): the nearest pipe.")
    start: dt.datetime = Field(..., description="Forecast start (ISO 8601).")
    end: dt.datetime = Field(..., description="Forecast end (ISO 8601).")
    reason: Note | None = Field(None, description="Why (maintenance, new connection, ...).")


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note | None = Field(None, description="Why, or what was done.")


class ValveMark(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["closed", "failed"] = Field(..., description="closed, or failed (would not close: the ring "
                                               "is recomputed at once).")
    note: Note | None = Field(None, description="What the crew saw.")


class Exercise(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: Literal[EXERCISE_RESULTS] = Field(..., description="ok, failed or stuck.")  # type: ignore[valid-type]
    at: dt.datetime | None = Field(None, description="When it was operated (now when unset).")
    note: Note | None = None


def _document(request: Request, record: dict) -> dict:
    base = f"{base_url(request)}/shutdowns/{record['id']}"
    return plain({**record, "links": [
        {"href": base, "rel": "self", "type": "application/json"},
        {"href": f"{base}/customers.csv", "rel": "describedby", "type": "text/csv",
         "title": "Customers to notify, critical first"},
        {"href": f"{base}/workorder.pdf", "rel": "describedby", "type": "application/pdf",
         "title": "The work order 关阀作业单"}]})


def _audited(request: Request, user: User, action: str, params: dict):
    def write(conn: sa.Connection, shutdown_id: int) -> None:
        audit(conn, user, action, request, params=params, affected=[f"shutdown:{shutdown_id}"], status=200)
    return write


@router.get("/shutdowns", summary="Shutdowns (关阀方案), soonest first")
def shutdowns(request: Request, status: Literal[STATUSES] | None = Query(None),  # type: ignore[valid-type]
              user: User = Depends(allow("read"))) -> dict:
    base = base_url(request)
    rows = list_shutdowns(request.app.state.engine, status=status)
    return plain({"shutdowns": [{**r, "links": [{"href": f"{base}/shutdowns/{r['id']}", "rel": "item"}]}
                                for r in rows]})


@router.post("/shutdowns", status_code=201, summary="Plan a shutdown: valves, outage, customers, conflicts",
             responses={201: {"description": "The record (status planned); Location names it"}})
def plan(
    request: Request,
    body: Annotated[ShutdownPlan, Body(examples=[{"pipe": "JS2-JS3", "start": "2027-03-01T08:00+08:00",
                                                  "end": "2027-03-01T12:00+08:00", "reason": "换阀"}])],
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    engine, settings = request.app.state.engine, request.app.state.settings
    params = body.model_dump(mode="json", exclude_none=True)
    with work_limits(request).slot(user.name):
        record = plan_shutdown(engine, settings, pipe=body.pipe, at=body.at, start=body.start, end=body.end,
                               reason=body.reason, by=user.name,
                               before_commit=_audited(request, user, "shutdown-plan", params))
    doc = _document(request, record)
    return JSONResponse(doc, status_code=201, headers={"Location": doc["links"][0]["href"]})


@router.get("/shutdowns/{shutdown_id}", summary="A shutdown: valves and states, outage, customers, conflicts")
def shutdown(shutdown_id: ShutdownId, request: Request, user: User = Depends(allow("read"))) -> dict:
    return _document(request, get_shutdown(request.app.state.engine, shutdown_id))


@router.get("/shutdowns/{shutdown_id}/customers.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="The customers to notify, critical first (CSV)")
def customers(shutdown_id: ShutdownId, request: Request, user: User = Depends(allow("read"))) -> Response:
    text = customers_csv(request.app.state.engine, shutdown_id)
    return Response("\ufeff" + text, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="shutdown-{shutdown_id}-customers.csv"'})


@router.get("/shutdowns/{shutdown_id}/workorder.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}},
            summary="The work order (关阀作业单) of a shutdown: valves in order, plan, customers (PDF)")
def work_order(shutdown_id: ShutdownId, request: Request, user: User = Depends(allow("read"))) -> Response:
    engine = request.app.state.engine
    with work_limits(request).slot(user.name):
        record = get_shutdown(engine, shutdown_id, with_conflicts=False)
        pdf = work_order_pdf(engine, request.app.state.settings, record, by=user.name)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="shutdown-{shutdown_id}-workorder.pdf"'})


@router.post("/shutdowns/{shutdown_id}/valves/{valve:path}",
             summary="A crew marks a valve closed or failed (a failed valve recomputes the ring)")
def valve(shutdown_id: ShutdownId, valve: ValveId, mark: ValveMark, request: Request,
          user: User = Depends(allow("edit"))) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    params = {"shutdown_id": shutdown_id, "valve": valve, **mark.model_dump(exclude_none=True)}
    with work_limits(request).slot(user.name):
        record = mark_valve(engine, settings, shutdown_id, valve, mark.state, by=user.name, note=mark.note,
                            before_commit=_audited(request, user, "shutdown-valve", params))
    return _document(request, record)


@router.post("/shutdowns/{shutdown_id}/{move}",
             summary="Move a shutdown: notify, execute, restore or cancel (planned -> notified -> executing -> "
             "restored, or cancelled)")
def transition(shutdown_id: ShutdownId, move: Move, request: Request,
               body: Annotated[Transition | None, Body()] = None, user: User = Depends(allow("edit"))) -> dict:
    note = body.note if body is not None else None
    record = move_shutdown(request.app.state.engine, shutdown_id, move, by=user.name, note=note,
                           before_commit=_audited(request, user, f"shutdown-{move}",
                                                  {"shutdown_id": shutdown_id, "note": note}))
    return _document(request, record)


@router.get("/valves/{valve:path}/exercises", summary="A valve's exercise history, newest first")
def exercises(valve: ValveId, request: Request, user: User = Depends(allow("read"))) -> dict:
    return {"valve": valve, "exercises": exercise_history(request.app.state.engine, valve)}


@router.post("/valves/{valve:path}/exercises", status_code=201, summary="Record a valve exercise")
def exercise(valve: ValveId, body: Exercise, request: Request, user: User = Depends(allow("edit"))) -> dict:
    engine = request.app.state.engine

    def write(conn: sa.Connection) -> None:
        audit(conn, user, "valve-exercise", request, params={"valve": valve, **body.model_dump(mode="json")},
              affected=[valve], status=201)

    entry = record_exercise(engine, valve, body.result, by=user.name, at=body.at, note=body.note,
                            before_commit=write)
    return {"valve": valve, "exercise": entry, "exercises": exercise_history(engine, valve)}
