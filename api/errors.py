"""One place that turns errors into HTTP answers: a JSON body with a code and a description.

TwinError subclasses map to 4xx by kind; validation errors are 422 with FastAPI's
detail; anything unexpected is logged with its request id and answered 500 without
internals.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from twin.errors import (
    ConfigError,
    Conflict,
    DatabaseError,
    Forbidden,
    InputError,
    InvalidGeometry,
    NotFound,
    Overloaded,
    TooBusy,
    TwinError,
    Unauthorised,
)

__all__ = ["install", "Problem", "PROBLEMS"]

log = logging.getLogger("pipetwin.api")

STATUS = {
    Unauthorised: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooBusy: 429,
    Overloaded: 503,
    InputError: 400,
    InvalidGeometry: 400,
    ConfigError: 503,
    DatabaseError: 503,
}


class Problem(BaseModel):
    """An error: a stable code and a description for people."""

    code: str
    description: str


#: Error answers every protected route may give, for the OpenAPI document.
PROBLEMS = {
    400: {"model": Problem, "description": "Bad input"},
    401: {"model": Problem, "description": "Not signed in"},
    403: {"model": Problem, "description": "The role does not allow this"},
    404: {"model": Problem, "description": "Not found"},
    409: {"model": Problem, "description": "Conflicts with the current state"},
    413: {"model": Problem, "description": "Request body too large"},
    429: {"model": Problem, "description": "Too much at once: sign-in attempts, analyses or jobs beyond a limit"},
    503: {"model": Problem, "description": "Overloaded: heavy work could not start within its deadline "
          "(Retry-After)"},
}


def status_of(exc: TwinError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(TwinError)
    async def twin_error(request: Request, exc: TwinError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: [%s] %s", request.method, request.url.path, exc.code, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, TooBusy | Overloaded):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"code": exc.code, "description": exc.message}, status_code=status,
                            headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                 413: "TOO_LARGE", 429: "TOO_BUSY"}
        return JSONResponse(
            {"code": codes.get(exc.status_code, f"HTTP_{exc.status_code}"), "description": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {
                "code": "INVALID_PARAMETER",
                "description": f"{where}: {first.get('msg', 'invalid')}",
                "detail": [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors],
            },
            status_code=422,
        )

    @app.exception_handler(sa.exc.DataError)
    async def data_error(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        # A value the checks let through but PostgreSQL cannot take (a bad time, an overflow):
        # the client's input, not a server fault. The database's own text stays in the log.
        log.warning("%s %s: database refused a value: %s", request.method, request.url.path,
                    str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
        return JSONResponse({"code": "INVALID_VALUE", "description": "a value in the request is not "
                             "valid for the twin (out of range or malformed)"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        log.exception("unexpected error in %s %s (request %s)", request.method, request.url.path, rid)
        return JSONResponse(
            {"code": "INTERNAL", "description": f"internal error; quote request id {rid} to the operator"},
            status_code=500,
        )
