"""The audit log: who did what, when, to which features.

Writes record their entry on the connection that makes the change, so the change and
its entry commit or roll back together. Analyses record theirs after they run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlalchemy as sa
from fastapi import Request

from api.auth import User
from twin.jsonable import plain

__all__ = ["audit", "audit_now", "read_audit"]

_SECRET_PARAMS = {"password", "token", "api_key", "access_token"}


def _params(params: dict | None) -> str:
    cleaned = {k: ("***" if k in _SECRET_PARAMS else v) for k, v in (params or {}).items()}
    return json.dumps(plain(cleaned), ensure_ascii=False, default=str)


def audit(
    conn: sa.Connection,
    user: User,
    action: str,
    request: Request | None = None,
    *,
    params: dict | None = None,
    affected: Iterable[str] = (),
    status: int | None = None,
) -> None:
    """Add one entry on ``conn`` (inside the caller's transaction)."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (user_name, role, action, method, path, params, affected, status) "
            "VALUES (:u, :r, :a, :m, :p, CAST(:params AS jsonb), CAST(:aff AS jsonb), :s)"
        ),
        {
            "u": user.name,
            "r": user.role,
            "a": action,
            "m": request.method if request else None,
            "p": request.url.path if request else None,
            "params": _params(params),
            "aff": json.dumps([str(a) for a in affected]),
            "s": status,
        },
    )


def audit_now(engine: sa.Engine, user: User, action: str, request: Request | None = None, **kw) -> None:
    """Add one entry in a transaction of its own (analyses, sign-ins)."""
    with engine.begin() as conn:
        audit(conn, user, action, request, **kw)


def read_audit(
    conn: sa.Connection,
    *,
    user: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    feature: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    rows = conn.execute(
        sa.text(
            "SELECT id, at, user_name, role, action, method, path, params, affected, status "
            "FROM audit_log "
            "WHERE (CAST(:u AS text) IS NULL OR user_name = :u) "
            "  AND (CAST(:a AS text) IS NULL OR action = :a) "
            "  AND (CAST(:s AS timestamptz) IS NULL OR at >= CAST(:s AS timestamptz)) "
            "  AND (CAST(:t AS timestamptz) IS NULL OR at < CAST(:t AS timestamptz)) "
            "  AND (CAST(:f AS text) IS NULL OR affected ? :f) "
            "ORDER BY id DESC LIMIT :lim OFFSET :off"
        ),
        {"u": user, "a": action, "s": since, "t": until, "f": feature, "lim": limit, "off": offset},
    ).mappings()
    return [plain(dict(r)) for r in rows]
