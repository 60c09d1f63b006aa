"""The audit log: who did what, when, to which features — written and read here only.

Every write records its entry on the connection that makes the change, so the change and its
entry commit or roll back together; analyses and sign-ins record theirs in a transaction of
their own. The API (:mod:`api.audit`) and the command line both write through
:func:`record`. Credentials in the parameters are masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa

from twin.jsonable import plain

__all__ = ["record", "record_command", "read", "SECRET_PARAMS", "COMMAND_ROLE"]

#: Parameters never written to the log as they are.
SECRET_PARAMS = frozenset({"password", "new_password", "token", "api_key", "access_token", "key",
                           "passphrase", "secret"})


def _params(params: Mapping | None) -> str:
    cleaned = {k: ("***" if k in SECRET_PARAMS else v) for k, v in (params or {}).items()}
    return json.dumps(plain(cleaned), ensure_ascii=False, default=str)


def record(
    conn: sa.Connection,
    user: str,
    role: str | None,
    action: str,
    *,
    method: str | None = None,
    path: str | None = None,
    params: Mapping | None = None,
    affected: Iterable[str] = (),
    status: int | None = None,
) -> None:
    """Add one entry on ``conn``, inside the caller's transaction."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (user_name, role, action, method, path, params, affected, status) "
            "VALUES (:u, :r, :a, :m, :p, CAST(:params AS jsonb), CAST(:aff AS jsonb), :s)"
        ),
        {"u": user, "r": role, "a": action, "m": method, "p": path, "params": _params(params),
         "aff": json.dumps([str(a) for a in affected]), "s": status},
    )


#: The role of entries written by ``twin`` commands: whoever runs them holds the database's keys,
#: whatever their role as a user of the server.
COMMAND_ROLE = "cli"


def record_command(
    conn: sa.Connection,
    user: str,
    command: str,
    action: str,
    *,
    params: Mapping | None = None,
    affected: Iterable[str] = (),
) -> None:
    """Add one entry for a ``twin`` command (``command`` e.g. ``"user add"``), on ``conn``.

    ``user`` is the operator (``TWIN_USER``, else the login name); the role is ``cli``, the
    method ``CLI`` and the path the command, so the API's and the shell's entries read alike.
    """
    record(conn, user, COMMAND_ROLE, action, method="CLI", path=f"twin {command}", params=params,
           affected=affected)


def read(
    conn: sa.Connection,
    *,
    user: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    feature: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    """Entries newest first, filtered by user, action, time range and affected feature id."""
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
