"""Sensors, readings and alarms over HTTP, and the live event stream (issue 17).

- ``GET /sensors``, ``GET /sensors/{id}`` (read); ``POST /sensors`` registers one (edit, audited).
- ``GET /sensors/{id}/readings?since&until&limit``: a sensor's time series for a chart (the last
  hour by default), thinned on the server to at most ``limit`` points (means of equal time
  buckets) for long ranges.
- ``GET /alarms?state=open|acknowledged|closed|active`` (read); ``POST /alarms/{id}/acknowledge``
  then ``POST /alarms/{id}/close`` (edit; audited; a move the alarm's state does not allow is 409);
  ``GET /alarms/burst``: the suspected burst and the shutoff it proposes (analyse).
- ``GET /live/events``: Server-Sent Events (``readings``, ``alarm``, ``burst`` as
  :mod:`live.events` sends them; a heartbeat comment every 15 s) behind the same sign-in as every
  route. The viewer reads it with ``fetch()`` and its
  ``Authorization`` header: no token in a URL. See :mod:`api.live_hub` for the fan-out, the
  limits and what happens to a slow client.

The work is :mod:`live` (sensors, readings, alarms); the routes only call it, as the
``twin sensors`` and ``twin alarms`` commands do.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.background import BackgroundTask

from api.auth import User, allow
from api.jobs import base_url
from api.limits import work_limits
from api.live_hub import LiveHub, sse_events
from live.alarms import (
    CAUSES,
    acknowledge_alarm,
    close_alarm,
    get_alarm,
    list_alarms,
    suspected_burst,
)
from live.readings import series
from live.sensors import KINDS, SensorSpec, Who, add_sensors, list_sensors
from twin.errors import NotFound
from twin.jsonable import plain

__all__ = ["router"]

log = logging.getLogger("pipetwin.api")

router = APIRouter(tags=["live"])

SensorId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                    description="The sensor's id.")]
AlarmId = Annotated[int, PathParam(ge=1, le=2**62, description="The alarm's id.")]
_TEXT = r"^[^\x00]*$"
Note = Annotated[str, StringConstraints(max_length=2000, pattern=_TEXT)]


def who(request: Request, user: User) -> Who:
    """The signed-in user and the request, for the audit entries :mod:`live` writes."""
    return Who(user.name, user.role, request.method, request.url.path)


# -- sensors ---------------------------------------------------------------------------------------
class NewSensor(BaseModel):
    """A sensor to register: on a node or on a pipe of the twin, with its thresholds."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: Literal[tuple(KINDS)] = Field(  # type: ignore[valid-type]
        ..., description="; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    unit: str = Field(..., min_length=1, max_length=16, pattern=_TEXT, description="MPa, m3/h, m, %LEL, ...")
    node: str | None = Field(None, max_length=64, pattern=_TEXT, description="The node (管点) it sits on; "
                             "or give pipe.")
    pipe: str | None = Field(None, max_length=64, pattern=_TEXT, description="The pipe (管段) it sits on; "
                             "or give node.")
    low: float | None = Field(None, description="A reading below raises an alarm.")
    high: float | None = Field(None, description="A reading above raises an alarm.")
    rate: float | None = Field(None, gt=0, description="Largest change in a minute before a drop or rise alarm.")
    stale_s: int | None = Field(None, gt=0, le=2**31 - 1, description="No reading for this long (s) raises a stale alarm.")


@router.get("/sensors", summary="The sensors on the network (监测点) with their position and last reading")
def sensors(request: Request, user: User = Depends(allow("read"))) -> dict:
    return {"sensors": list_sensors(request.app.state.engine)}


@router.post("/sensors", status_code=201, summary="Register a sensor on a node or a pipe (audited)",
             responses={201: {"description": "The sensor registered; Location names it"},
                        404: {"description": "No such node or pipe in the twin"},
                        409: {"description": "The id is taken"}})
def add_sensor(
    request: Request,
    sensor: Annotated[NewSensor, Body(examples=[{"id": "BP-1", "kind": "pressure", "unit": "MPa",
                                                  "node": "JS-A50", "low": 0.15}])],
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    added = add_sensors(request.app.state.engine, [SensorSpec(**sensor.model_dump())], who(request, user))
    return JSONResponse(plain(added[0]), status_code=201,
                        headers={"Location": f"{base_url(request)}/sensors/{sensor.id}"})


@router.get("/sensors/{sensor_id}", summary="One sensor with its position and last reading")
def sensor(sensor_id: SensorId, request: Request, user: User = Depends(allow("read"))) -> dict:
    found = list_sensors(request.app.state.engine, [sensor_id])
    if not found:
        raise NotFound(f"no sensor {sensor_id!r}", zh=f"没有传感器 {sensor_id!r}")
    return found[0]


@router.get("/sensors/{sensor_id}/readings",
            summary="A sensor's readings between two times, for a chart (thinned for long ranges)")
def readings(
    sensor_id: SensorId,
    request: Request,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a UTC offset; default: an hour "
                                            "before until")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a UTC offset; default: now")] = None,
    limit: Annotated[int, Query(ge=2, le=10_000, description="At most this many points: longer ranges "
                                "give the means of equal time buckets")] = 2000,
    user: User = Depends(allow("read")),
) -> dict:
    return series(request.app.state.engine, sensor_id, since=_aware(since), until=_aware(until),
                  max_points=limit)


def _aware(t: datetime | None) -> datetime | None:
    """A time without an offset is UTC, as elsewhere in the API."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


# -- alarms ----------------------------------------------------------------------------------------
class AlarmStep(BaseModel):
    """An acknowledgement or a closing, with a note if the user has one."""

    model_config = ConfigDict(extra="forbid")

    note: Note | None = Field(None, description="What was found or done (recorded with the alarm).")


@router.get("/alarms", summary="Alarms (告警) newest first: of a state, of a sensor")
def alarms(
    request: Request,
    state: Annotated[Literal["open", "acknowledged", "closed", "active"] | None,
                     Query(description="open, acknowledged, closed, or active (open or acknowledged); "
                           "default: all")] = None,
    sensor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    user: User = Depends(allow("read")),
) -> dict:
    return {"alarms": list_alarms(request.app.state.engine, state=state, sensor=sensor, limit=limit),
            "causes": CAUSES}


@router.get("/alarms/burst", summary="The suspected burst the open pressure drops point to, with the "
            "shutoff it proposes (null when there is none)")
def burst(request: Request, user: User = Depends(allow("analyse"))) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    with work_limits(request).slot(user.name):
        return {"burst": suspected_burst(engine, window_s=settings.alarm_burst_window_s)}


@router.get("/alarms/{alarm_id}", summary="One alarm")
def alarm(alarm_id: AlarmId, request: Request, user: User = Depends(allow("read"))) -> dict:
    return get_alarm(request.app.state.engine, alarm_id)


@router.post("/alarms/{alarm_id}/acknowledge", summary="Acknowledge an open alarm (确认; audited)",
             responses={409: {"description": "The alarm is not open"}})
def acknowledge(alarm_id: AlarmId, request: Request, step: AlarmStep | None = None,
                user: User = Depends(allow("edit"))) -> dict:
    return acknowledge_alarm(request.app.state.engine, alarm_id, who(request, user),
                             note=step.note if step else None)


@router.post("/alarms/{alarm_id}/close", summary="Close an acknowledged alarm (关闭; audited)",
             responses={409: {"description": "The alarm is not acknowledged"}})
def close(alarm_id: AlarmId, request: Request, step: AlarmStep | None = None,
          user: User = Depends(allow("edit"))) -> dict:
    return close_alarm(request.app.state.engine, alarm_id, who(request, user), note=step.note if step else None)


# -- the live event stream -------------------------------------------------------------------------
@router.get(
    "/live/events",
    summary="Live readings and alarms as Server-Sent Events (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "event: hello, then reading / alarm events (data: JSON), heartbeats; "
                     "ends with event: renew after 10 minutes or event: dropped for a client too slow"},
               429: {"description": "Too many live streams open for this user or this server"}},
)
async def live_events(request: Request, user: User = Depends(allow("read"))) -> StreamingResponse:
    hub: LiveHub = request.app.state.live_hub
    stream = hub.open(user.name)
    return StreamingResponse(
        sse_events(hub, stream), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the client went away before the stream started (its generator never ran).
        background=BackgroundTask(hub.close, stream),
    )
