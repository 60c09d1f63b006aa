"""ASGI middleware: request ids, access logs naming the user, request size limits."""

from __future__ import annotations

import json
import logging
import secrets
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "BodyLimit"]

access = logging.getLogger("pipetwin.access")


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
                    "query": scope.get("query_string", b"").decode("latin-1")[:500],
                    "status": status[0],
                    "bytes": size[0],
                    "ms": round((time.perf_counter() - t0) * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413, by header or as they stream."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        seen = [0]
        started = [False]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started[0]:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"code": "TOO_LARGE", "description": f"the request body exceeds {self.limit / 1e6:.0f} MB "
             "(TWIN_MAX_UPLOAD_MB)"}
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from the body stream; FastAPI passes HTTPExceptions on, so the client gets 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit / 1e6:.0f} MB (TWIN_MAX_UPLOAD_MB)")
