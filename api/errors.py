"""One place that turns errors into HTTP answers: a JSON body with a code and a description.

TwinError subclasses map to 4xx by kind; validation errors are 422 with FastAPI's
detail; anything unexpected is logged with its request id and answered 500 without
internals.

The description is in the client's language (HTTP content negotiation on ``Accept-Language``):
Chinese when the client prefers ``zh`` and a Chinese text exists, else English. The body
always carries ``description_en`` and, when known, ``description_zh``; the answer names its
language in ``Content-Language``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import PydanticCustomError
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

__all__ = ["install", "invalid", "Problem", "PROBLEMS", "prefers_chinese", "problem_body", "problem"]

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

ZH, EN = "zh-CN", "en"

#: HTTPException codes and their Chinese texts (Starlette's own answers: unknown route, method).
HTTP_CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
              413: "TOO_LARGE", 429: "TOO_BUSY"}
HTTP_ZH = {
    400: "请求无效",
    401: "未登录或登录已失效，请重新登录",
    403: "无权执行此操作",
    404: "未找到请求的地址或对象",
    405: "此地址不支持该请求方法",
    413: "请求内容过大",
    429: "请求过于频繁，请稍后再试",
}


class Problem(BaseModel):
    """An error: a stable code and a description for people, in the client's language.

    ``description`` is Chinese when the request's ``Accept-Language`` prefers ``zh`` and a
    Chinese text exists, else English (``Content-Language`` says which); ``description_en``
    is always there, ``description_zh`` when the server has one.
    """

    code: str
    description: str
    description_en: str
    description_zh: str | None = None


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

_RANGE = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*$")


def prefers_chinese(accept_language: str | None) -> bool:
    """Whether an ``Accept-Language`` value prefers Chinese to English (RFC 9110 §12.5.4).

    The language ranges are taken by weight (ties in the order given); the first that names
    ``zh`` or ``en`` decides, and ``*`` or nothing means English (the default).

    >>> prefers_chinese("zh-CN,zh;q=0.9,en;q=0.8"), prefers_chinese("en-GB, zh;q=0.5")
    (True, False)
    """
    ranges: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "")[:500].split(",")):
        m = _RANGE.match(part)
        if not m:
            continue
        try:
            q = float(m.group(2)) if m.group(2) else 1.0
        except ValueError:
            continue
        if q > 0:
            ranges.append((-q, i, m.group(1).split("-")[0].lower()))
    for _, _, primary in sorted(ranges):
        if primary in ("zh", "en", "*"):
            return primary == "zh"
    return False


def problem_body(code: str, en: str, zh: str | None, accept_language: str | None,
                 **extra: object) -> tuple[dict, str]:
    """The JSON body of an error answer and its ``Content-Language``."""
    chinese = zh is not None and prefers_chinese(accept_language)
    body: dict = {"code": code, "description": zh if chinese else en, "description_en": en}
    if zh is not None:
        body["description_zh"] = zh
    body.update(extra)
    return body, ZH if chinese else EN


def problem(request: Request, status: int, code: str, en: str, zh: str | None = None, *,
            headers: Mapping[str, str] | None = None, **extra: object) -> JSONResponse:
    """An error answer in the request's language (see :func:`problem_body`)."""
    body, language = problem_body(code, en, zh, request.headers.get("accept-language"), **extra)
    return JSONResponse(body, status_code=status, headers={
        **(headers or {}), "Content-Language": language, "Vary": "Accept-Language"})


def status_of(exc: TwinError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


# -- validation errors (422): pydantic's error types in Chinese ---------------------------------
_NUMBER = "不是有效的数字"
_INVALID_ZH = {
    "missing": lambda c: "缺少此项",
    "string_too_long": lambda c: f"最长 {c.get('max_length')} 个字符",
    "string_too_short": lambda c: f"至少 {c.get('min_length')} 个字符",
    "too_long": lambda c: f"最多 {c.get('max_length')} 项",
    "too_short": lambda c: f"至少 {c.get('min_length')} 项",
    "int_parsing": lambda c: "不是有效的整数",
    "int_type": lambda c: "不是有效的整数",
    "int_from_float": lambda c: "不是整数",
    "float_parsing": lambda c: _NUMBER,
    "float_type": lambda c: _NUMBER,
    "decimal_parsing": lambda c: _NUMBER,
    "finite_number": lambda c: "须为有限数值",
    "greater_than": lambda c: f"须大于 {c.get('gt')}",
    "greater_than_equal": lambda c: f"须不小于 {c.get('ge')}",
    "less_than": lambda c: f"须小于 {c.get('lt')}",
    "less_than_equal": lambda c: f"须不大于 {c.get('le')}",
    "literal_error": lambda c: f"须为以下之一：{c.get('expected')}",
    "enum": lambda c: f"须为以下之一：{c.get('expected')}",
    "bool_parsing": lambda c: "须为 true 或 false",
    "bool_type": lambda c: "须为 true 或 false",
    "string_type": lambda c: "须为文本",
    "string_pattern_mismatch": lambda c: f"格式不符（{c.get('pattern')}）",
    "json_invalid": lambda c: "不是有效的 JSON",
    "extra_forbidden": lambda c: "不接受此项",
    "list_type": lambda c: "须为列表",
    "dict_type": lambda c: "须为对象",
    "model_type": lambda c: "须为对象",
    "datetime_parsing": lambda c: "不是有效的时间（ISO 8601）",
    "datetime_from_date_parsing": lambda c: "不是有效的时间（ISO 8601）",
    "value_error": lambda c: c.get("zh"),  # our validators' own texts (see invalid())
}


def invalid(en: str, zh: str) -> PydanticCustomError:
    """The error a validator raises, in both languages: ``raise invalid("lon and lat go together",
    "lon 与 lat 须同时给出")``. Pydantic reports it as a ``value_error`` with the English as its
    message and the Chinese in its context, so a 422 reads Chinese for ``Accept-Language: zh``."""
    return PydanticCustomError("value_error", "{en}", {"en": en, "zh": zh})


def validation_zh(where: str, error: Mapping) -> str:
    """``参数 query.limit 无效：须不大于 1000`` for the first of a request's validation errors;
    a kind not translated here gives the generic ``参数无效`` and pydantic's English text."""
    said = _INVALID_ZH.get(str(error.get("type")))
    reason = (said(error.get("ctx") or {}) if said else None) or str(error.get("msg", "invalid"))
    return f"参数 {where} 无效：{reason}" if where else f"参数无效：{reason}"


def install(app: FastAPI) -> None:
    @app.exception_handler(TwinError)
    async def twin_error(request: Request, exc: TwinError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: [%s] %s", request.method, request.url.path, exc.code, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, TooBusy | Overloaded):
            headers = {"Retry-After": str(exc.retry_after)}
        return problem(request, status, exc.code, exc.message, exc.message_zh, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        zh = HTTP_ZH.get(exc.status_code, f"请求未能完成（HTTP {exc.status_code}）")
        return problem(request, exc.status_code, code, str(exc.detail), zh,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(request, 422, "INVALID_PARAMETER", f"{where}: {first.get('msg', 'invalid')}",
                       validation_zh(where, first),
                       detail=[{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors])

    @app.exception_handler(sa.exc.DataError)
    async def data_error(request: Request, exc: sa.exc.DataError) -> JSONResponse:
        # A value the checks let through but PostgreSQL cannot take (a bad time, an overflow):
        # the client's input, not a server fault. The database's own text stays in the log.
        log.warning("%s %s: database refused a value: %s", request.method, request.url.path,
                    str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
        return problem(request, 400, "INVALID_VALUE", "a value in the request is not valid for the "
                       "twin (out of range or malformed)", "请求中有值对孪生库无效（超出范围或格式错误）")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        log.exception("unexpected error in %s %s (request %s)", request.method, request.url.path, rid)
        return problem(request, 500, "INTERNAL", f"internal error; quote request id {rid} to the operator",
                       f"服务器内部错误；请将请求编号 {rid} 告知管理员")
