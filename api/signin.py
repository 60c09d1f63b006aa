"""Signing in under attack: failed attempts throttled per account and per address, hashes bounded.

Within a sliding window of :data:`WINDOW` (15 minutes), at most :data:`ACCOUNT_FAILURES` (10)
failed attempts count against one user name and at most :data:`ADDRESS_FAILURES` (30) against
one client address. Beyond either, ``POST /token`` answers 429 with ``Retry-After`` (the
seconds until the oldest failure that matters leaves the window) *before* the password is
hashed, so the right password is refused too until then. Refused attempts are not counted: the
lock ends one window after the last failure that reached the password check, however long an
attacker keeps knocking. (They can lock the name again once it ends; the address limit bounds
what one address can do, and every failure is audited as ``sign-in-failed``.)

The client address is the socket's peer: uvicorn replaces it from ``X-Forwarded-For`` only for
``TWIN_TRUSTED_PROXIES``, so a client cannot pick the address it is counted under.

The failures live in the database (``signin_failure``), so every server worker counts the same
attempts. An attempt is recorded *before* its password is checked, under transaction-level
advisory locks on the name and the address, so concurrent attempts cannot slip past a limit
together; the record is removed when the password turns out right.

At most :data:`HASHES_AT_ONCE` password checks (argon2, 64 MiB each) run at once in a server
process; another attempt waits up to :data:`HASH_WAIT_S` seconds for a turn, then gets 429.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import sqlalchemy as sa
from fastapi import Request

from api.auth import User, authenticate
from twin.audit import record
from twin.errors import TooBusy, Unauthorised

__all__ = ["sign_in", "client_address", "WINDOW", "ACCOUNT_FAILURES", "ADDRESS_FAILURES", "HASHES_AT_ONCE", "HASH_WAIT_S"]

WINDOW = timedelta(minutes=15)
ACCOUNT_FAILURES = 10
ADDRESS_FAILURES = 30
HASHES_AT_ONCE = 4
HASH_WAIT_S = 2.0

#: Password checks under way in this process.
_hashes = threading.BoundedSemaphore(HASHES_AT_ONCE)

# Advisory lock classes (the two-key form): one per kind of counter.
_LOCK_NAME, _LOCK_ADDRESS = 0x5349_4E01, 0x5349_4E02

_COUNTS = sa.text(
    "SELECT (SELECT count(*) FROM signin_failure WHERE user_name = :n AND at > now() - :w) AS by_name, "
    "       (SELECT count(*) FROM signin_failure WHERE client = :c AND at > now() - :w) AS by_client"
)


def client_address(request: Request) -> str:
    """The address a request is counted under: the socket's peer (a trusted proxy's client)."""
    return request.client.host if request.client else "-"


def sign_in(request: Request, name: str, password: str) -> User:
    """The user a name and password sign in; 401 when wrong (audited), 429 when throttled."""
    engine: sa.Engine = request.app.state.engine
    client = client_address(request)
    attempt = _reserve(engine, name, client)
    try:
        user = _check_password(engine, name, password)
    except BaseException:  # busy, or the database failed: not the client's failure
        _release(engine, attempt)
        raise
    if user is None:
        with engine.begin() as conn:
            record(conn, name, None, "sign-in-failed", method=request.method, path=request.url.path,
                   params={"client": client}, status=401)
        raise Unauthorised("wrong user name or password", zh="用户名或密码错误")
    _release(engine, attempt)
    return user


def _reserve(engine: sa.Engine, name: str, client: str) -> int:
    """Record an attempt as failed until proven right; TooBusy when a limit is reached."""
    with engine.begin() as conn:
        # Name first, then address, in every transaction: no deadlock between two attempts.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(:v))"), {"k": _LOCK_NAME, "v": name})
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(:v))"), {"k": _LOCK_ADDRESS, "v": client})
        counts = conn.execute(_COUNTS, {"n": name, "c": client, "w": WINDOW}).one()
        if counts.by_name >= ACCOUNT_FAILURES:
            raise TooBusy(f"too many failed sign-ins for this user name ({ACCOUNT_FAILURES} in "
                          f"{_minutes()} minutes); try again later",
                          retry_after=_wait_s(conn, "user_name", name, ACCOUNT_FAILURES),
                          zh=f"此用户名登录失败次数过多（{_minutes()} 分钟内 {ACCOUNT_FAILURES} 次）；请稍后再试")
        if counts.by_client >= ADDRESS_FAILURES:
            raise TooBusy(f"too many failed sign-ins from this address ({ADDRESS_FAILURES} in "
                          f"{_minutes()} minutes); try again later",
                          retry_after=_wait_s(conn, "client", client, ADDRESS_FAILURES),
                          zh=f"此地址登录失败次数过多（{_minutes()} 分钟内 {ADDRESS_FAILURES} 次）；请稍后再试")
        conn.execute(sa.text("DELETE FROM signin_failure WHERE at < now() - :w"), {"w": WINDOW})
        return conn.execute(
            sa.text("INSERT INTO signin_failure (user_name, client) VALUES (:n, :c) RETURNING id"),
            {"n": name, "c": client},
        ).scalar_one()


def _wait_s(conn: sa.Connection, column: str, value: str, limit: int) -> int:
    """Seconds until the ``limit``-th newest failure leaves the window (the count drops below it)."""
    at_most = conn.execute(
        sa.text(
            f"SELECT extract(epoch FROM at + :w - now()) FROM signin_failure "  # column: ours, not input
            f"WHERE {column} = :v AND at > now() - :w ORDER BY at DESC OFFSET :k LIMIT 1"
        ),
        {"w": WINDOW, "v": value, "k": limit - 1},
    ).scalar()
    return max(1, math.ceil(float(at_most or 1)))


def _minutes() -> int:
    return int(WINDOW.total_seconds() // 60)


def _check_password(engine: sa.Engine, name: str, password: str) -> User | None:
    """The user if the password is right, with at most HASHES_AT_ONCE checks at once."""
    if not _hashes.acquire(timeout=HASH_WAIT_S):
        raise TooBusy("the server is checking too many passwords at once; try again shortly", retry_after=1,
                      zh="服务器正在同时核验过多密码；请稍后再试")
    try:
        with engine.begin() as conn:
            return authenticate(conn, name, password)
    finally:
        _hashes.release()


def _release(engine: sa.Engine, attempt: int) -> None:
    """Forget an attempt that was not a wrong password."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM signin_failure WHERE id = :i"), {"i": attempt})
