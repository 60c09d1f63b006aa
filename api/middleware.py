"""ASGI middleware: request ids and access logs, sign-in before the body, body limits, headers."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import header_credential
from api.errors import problem_body
from twin.errors import TwinError, Unauthorised

__all__ = ["AccessLog", "SignIn", "BodyLimit", "SecurityHeaders", "redact_query"]

access = logging.getLogger("pipetwin.access")

#: Query parameters whose values are credentials, and values that look like one anywhere.
_SECRET_PARAMS = re.compile(r"(?i)^(access_?token|token|api_?key|key|password|secret|jwt|auth\w*)$")
_SECRET_VALUE = re.compile(r"(eyJ[\w-]+\.[\w-]+\.[\w-]*|ptk_[\w-]+)")


def redact_query(query: str) -> str:
    """The query string with credential values replaced by ``***`` (for logs).

    >>> redact_query("limit=5&token=eyJhbGciOi.eyJzdWIi.sig&f=json")
    'limit=5&token=***&f=json'
    """
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if eq and _SECRET_PARAMS.match(unquote_plus(name)):
            value = "***"
        parts.append(name + eq + _SECRET_VALUE.sub("***", value))
    return "&".join(parts)


class AccessLog:
    """One structured line per request: id, user, method, path, status, bytes, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(6)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        t0 = time.perf_counter()
        status = [500]
        size = [0]

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            elif message["type"] == "http.response.body":
                size[0] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            user = state.get("user")
            access.info(
                "request",
                extra={
                    "request_id": rid,
                    "user": getattr(user, "name", None),
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": redact_query(scope.get("query_string", b"").decode("latin-1"))[:500],
                    "status": status[0],
                    "bytes": size[0],
                    "ms": round((time.perf_counter() - t0) * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )


# -- sign-in before the body, per-route body limits ----------------------------------------------
def _json_error(scope: Scope, status: int, code: str, description: str, zh: str | None = None,
                headers: list | None = None) -> tuple[dict, dict]:
    """An error answer before the app, in the client's language (api.errors.problem_body)."""
    accept = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"accept-language"), None)
    doc, language = problem_body(code, description, zh, accept)
    body = json.dumps(doc).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"content-language", language.encode()), *(headers or [])]}
    return start, {"type": "http.response.body", "body": body}


class SignIn:
    """Authenticate protected requests from their headers before any of the body is read.

    ``public(method, path)`` names what needs no sign-in (health, sign-in, the viewer's static
    files). Anything else without a valid credential is answered 401 at once, so an anonymous
    client cannot make the server receive, parse or compute anything. The user found is kept on
    the request state, where :func:`api.auth.current_user` picks it up.
    """

    def __init__(self, app: ASGIApp, public: Callable[[str, str], bool],
                 authenticate: Callable[[Scope, str | None], object]) -> None:
        self.app = app
        self.public = public
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self.public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            user = await run_in_threadpool(self.authenticate, scope, header_credential(headers))
        except Unauthorised as exc:
            start, body = _json_error(scope, 401, exc.code, exc.message, exc.message_zh,
                                      [(b"www-authenticate", b"Bearer")])
            await send(start)
            await send(body)
            return
        except TwinError as exc:  # the database cannot be reached, say: not the client's fault
            start, body = _json_error(scope, 503, exc.code, "the server cannot check sign-ins right now; retry",
                                      "服务器暂时无法核验登录，请重试")
            await send(start)
            await send(body)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies larger than the route's limit with 413, by header or as they stream.

    ``limit_for(scope)`` gives the limit in bytes: uploads get ``TWIN_MAX_UPLOAD_MB``, JSON and
    forms ``TWIN_MAX_JSON_MB``.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, limit)
                return
        seen = [0]
        started = [False]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise _TooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started[0]:
                await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        start, body = _json_error(scope, 413, "TOO_LARGE", f"the request body exceeds {limit / 1e6:g} MB "
                                  "(TWIN_MAX_UPLOAD_MB for uploads, TWIN_MAX_JSON_MB otherwise)",
                                  f"请求内容超过 {limit / 1e6:g} MB 上限")
        await send(start)
        await send(body)


class _TooLarge(HTTPException):
    """Raised from the body stream; FastAPI passes HTTPExceptions on, so the client gets 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit / 1e6:g} MB")


# -- headers: what the browser is told, what the client is believed -----------------------------
class SecurityHeaders:
    """Security headers on every response, and Host checked against the allowed names.

    ``Host`` is how links in answers are built, so a request naming another host is refused
    (400) unless it comes from a trusted proxy; X-Forwarded-* are believed only from
    ``TWIN_TRUSTED_PROXIES`` (uvicorn's proxy-header handling is limited to them too).
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str], allowed_hosts: set[str],
                 trusted_proxies: set[str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.trusted_proxies = trusted_proxies

    def _host_ok(self, scope: Scope) -> bool:
        if "*" in self.allowed_hosts or (scope.get("client") or ("",))[0] in self.trusted_proxies:
            return True
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1").lower()
                host = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
                return host in self.allowed_hosts
        return True  # HTTP/1.0 without Host: links use the server's own address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [h for h in self.headers if h[0] not in have]
            await send(message)

        raw = (scope.get("raw_path") or scope["path"].encode()) + b"?" + scope.get("query_string", b"")
        if b"%00" in raw or b"\x00" in raw:
            start, body = _json_error(scope, 400, "INVALID_PARAMETER", "NUL characters (%00) are not allowed in a "
                                      "path or query", "地址或查询参数中不允许出现 NUL 字符（%00）")
            await with_headers(start)
            await with_headers(body)
            return
        if not self._host_ok(scope):
            start, body = _json_error(scope, 400, "BAD_HOST", "the Host header names a host this server does not "
                                      "answer to (TWIN_ALLOWED_HOSTS)",
                                      "Host 请求头中的主机名不是本服务器的地址（TWIN_ALLOWED_HOSTS）")
            await with_headers(start)
            await with_headers(body)
            return
        await self.app(scope, receive, with_headers)
