"""The audit log from the API's side: entries name the signed-in user and the request.

The log itself (writing, reading, masking credentials) is :mod:`twin.audit`.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from fastapi import Request

from api.auth import User
from twin.audit import read as read_audit
from twin.audit import record

__all__ = ["audit", "audit_now", "read_audit"]


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
    record(conn, user.name, user.role, action, method=request.method if request else None,
           path=request.url.path if request else None, params=params, affected=affected, status=status)


def audit_now(engine: sa.Engine, user: User, action: str, request: Request | None = None, **kw) -> None:
    """Add one entry in a transaction of its own (analyses, sign-ins)."""
    with engine.begin() as conn:
        audit(conn, user, action, request, **kw)
