"""Where a request reads from: the one seam between the routes and the database engines.

Read-only routes (the features API, statistics, the viewer's frames, criticality) take their
engine from :func:`read_engine`; writes always use ``request.app.state.engine`` (the primary).
With read replicas (``TWIN_READ_DATABASE_URLS`` or ``twin db replica start``) the app's
:class:`twin.replicas.ReadRouter` chooses one per read: a replica that is up and has replayed
the user's last write, else the primary.

:class:`ReadRouting` (middleware, inside sign-in) does the rest around each request: a GET or
HEAD whose replica failed under it (stopped, unreachable) is run again on the primary before
anything of its answer is sent, so a replica that goes away costs a retry, not a 5xx; any other
request is a possible write, after which the user's WAL position is noted (read-your-writes).
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.replicas import ReadRouter, read_attempt

__all__ = ["read_engine", "ReadRouting"]

_READS = ("GET", "HEAD")


def _user_name(state: dict | object) -> str | None:
    user = state.get("user") if isinstance(state, dict) else getattr(state, "user", None)
    return getattr(user, "name", None)


def read_engine(request: Request) -> sa.Engine:
    """The engine a read-only request uses: a read replica when there is a fit one."""
    router: ReadRouter | None = getattr(request.app.state, "reads", None)
    if router is None:
        return request.app.state.engine
    return router.engine_for(_user_name(request.scope.get("state") or {}))


class ReadRouting:
    """Reads retried on the primary when their replica fails; writes noted for read-your-writes.

    Does nothing when the app has no replicas. Must sit inside :class:`api.middleware.SignIn`
    (it reads the signed-in user from the request state).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        router: ReadRouter | None = getattr(scope["app"].state, "reads", None) \
            if scope["type"] == "http" else None
        if router is None or not router.replicas:
            await self.app(scope, receive, send)
        elif scope["method"] in _READS:
            await self._read(router, scope, receive, send)
        else:
            await self._write(router, scope, receive, send)

    async def _read(self, router: ReadRouter, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []
        started = [False]

        async def hold_failed(message: Message) -> None:
            # An answer is held back only while its replica has failed and it is an error.
            if message["type"] == "http.response.start" and attempt.failed and message["status"] >= 500:
                held.append(message)
            elif not held:
                started[0] = True
                await send(message)

        with read_attempt() as attempt:
            try:
                await self.app(scope, receive, hold_failed)
            except Exception:
                if started[0] or not attempt.failed:
                    raise
                held.append({})  # failed before answering: run it again below
        if not held:
            return
        router.retries += 1
        with read_attempt(primary_only=True):
            await self.app(scope, _replayed(receive), send)

    async def _write(self, router: ReadRouter, scope: Scope, receive: Receive, send: Send) -> None:
        user = _user_name(scope.get("state") or {})

        async def noting(message: Message) -> None:
            # Before the client hears of its write, so its next read already waits for it.
            if message["type"] == "http.response.start" and user and message["status"] < 400:
                await run_in_threadpool(router.note_write, user)
            await send(message)

        await self.app(scope, receive, noting)


def _replayed(receive: Receive) -> Receive:
    """The request's (empty) body once more for the retry of a GET, then the client's messages."""
    sent = [False]

    async def again() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return again
