"""Users, roles, passwords, access tokens and API keys.

Roles grant permissions; a route asks for a permission, never for a role name:

========  ===========================================
viewer    read, analyse
editor    read, analyse, propose, edit
approver  read, analyse, propose, approve
admin     everything, plus users and rule tables
========  ===========================================
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from twin.errors import Conflict, Forbidden, InputError, NotFound, Unauthorised
from twin.settings import TwinSettings

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "User",
    "add_user",
    "set_password",
    "list_users",
    "create_api_key",
    "authenticate",
    "issue_token",
    "current_user",
    "allow",
]

PERMISSIONS = ("read", "analyse", "propose", "edit", "approve", "admin")
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read", "analyse"}),
    "editor": frozenset({"read", "analyse", "propose", "edit"}),
    "approver": frozenset({"read", "analyse", "propose", "approve"}),
    "admin": frozenset(PERMISSIONS),
}
API_KEY_PREFIX = "ptk_"
ALGORITHM = "HS256"

_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in ROLES[self.role]


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def add_user(conn: sa.Connection, name: str, role: str, password: str | None, *, by: str) -> User:
    """Create a user; a user without a password signs in with API keys only."""
    _check_role(role)
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.@-" for c in name):
        raise InputError("a user name is 1 to 64 letters, digits or _ . @ -")
    if password is not None and len(password) < 8:
        raise InputError("a password has at least 8 characters")
    exists = conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": name}).first()
    if exists:
        raise Conflict(f"user {name!r} exists")
    conn.execute(
        sa.text("INSERT INTO app_user (name, role, password_hash, created_by) VALUES (:n, :r, :h, :b)"),
        {"n": name, "r": role, "h": _hasher.hash(password) if password else None, "b": by},
    )
    _cache.clear()
    return User(name, role)


def set_password(conn: sa.Connection, name: str, password: str) -> None:
    if len(password) < 8:
        raise InputError("a password has at least 8 characters")
    n = conn.execute(
        sa.text("UPDATE app_user SET password_hash = :h WHERE name = :n"),
        {"h": _hasher.hash(password), "n": name},
    ).rowcount
    if not n:
        raise NotFound(f"no user {name!r}")


def update_user(conn: sa.Connection, name: str, *, role: str | None = None, disabled: bool | None = None) -> User:
    if role is not None:
        _check_role(role)
    row = conn.execute(
        sa.text(
            "UPDATE app_user SET role = coalesce(:r, role), disabled = coalesce(:d, disabled) "
            "WHERE name = :n RETURNING name, role"
        ),
        {"r": role, "d": disabled, "n": name},
    ).first()
    if row is None:
        raise NotFound(f"no user {name!r}")
    _cache.clear()
    return User(row.name, row.role)


def list_users(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(
        sa.text(
            "SELECT u.name, u.role, u.disabled, u.created_at, u.created_by, "
            "       (u.password_hash IS NOT NULL) AS has_password, "
            "       count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS api_keys "
            "FROM app_user u LEFT JOIN api_key k ON k.user_name = u.name "
            "GROUP BY u.name ORDER BY u.name"
        )
    ).mappings()
    return [dict(r) for r in rows]


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(conn: sa.Connection, name: str, label: str | None = None) -> str:
    """A new API key for a user; only its hash is stored, so it is shown once."""
    if conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": name}).first() is None:
        raise NotFound(f"no user {name!r}")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        sa.text("INSERT INTO api_key (user_name, key_hash, label) VALUES (:n, :h, :l)"),
        {"n": name, "h": _key_hash(key), "l": label},
    )
    return key


def authenticate(conn: sa.Connection, name: str, password: str) -> User | None:
    """The user if the password is right and the user is enabled."""
    row = conn.execute(
        sa.text("SELECT name, role, password_hash FROM app_user WHERE name = :n AND NOT disabled"),
        {"n": name},
    ).first()
    if row is None or row.password_hash is None:
        _hasher.hash(password)  # the same work either way: no timing hint that the name exists
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(sa.text("UPDATE app_user SET password_hash = :h WHERE name = :n"),
                     {"h": _hasher.hash(password), "n": name})
    return User(row.name, row.role)


def signing_secret(settings: TwinSettings, engine: sa.Engine) -> str:
    """TWIN_JWT_SECRET, or the random secret kept in the database (made on first use)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO server_secret (name, value) VALUES ('jwt', :v) ON CONFLICT DO NOTHING"),
            {"v": secrets.token_urlsafe(48)},
        )
        return conn.execute(sa.text("SELECT value FROM server_secret WHERE name = 'jwt'")).scalar_one()


def issue_token(user: User, secret: str, minutes: int) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = datetime.now(UTC)
    claims = {"sub": user.name, "role": user.role, "iat": now, "exp": now + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), minutes * 60


# Users looked up by name or key hash, for a few seconds: a disabled user or a changed
# role takes effect within _TTL seconds without a database round trip per request.
_TTL = 10.0
_cache: dict[tuple[str, str], tuple[float, User | None]] = {}
_cache_lock = threading.Lock()


def _lookup(engine: sa.Engine, kind: str, value: str) -> User | None:
    now = time.monotonic()
    hit = _cache.get((kind, value))
    if hit and hit[0] > now:
        return hit[1]
    sql = (
        "SELECT name, role FROM app_user WHERE name = :v AND NOT disabled"
        if kind == "name"
        else "SELECT u.name, u.role FROM api_key k JOIN app_user u ON u.name = k.user_name "
        "WHERE k.key_hash = :v AND k.revoked_at IS NULL AND NOT u.disabled"
    )
    with engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"v": value}).first()
    user = User(row.name, row.role) if row else None
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[(kind, value)] = (now + _TTL, user)
    return user


BEARER = HTTPBearer(auto_error=False, description="An access token from POST /token, or an API key.")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (twin user key).")


def _unauthorised(detail: str) -> Unauthorised:
    return Unauthorised(detail)


def current_user(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
    api_key: str | None = Depends(API_KEY),
) -> User:
    """The signed-in user, from a bearer token or an API key; 401 otherwise."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    engine = request.app.state.engine
    credential = api_key or (bearer.credentials if bearer else None)
    if not credential:
        raise _unauthorised("sign in: POST /token, then send 'Authorization: Bearer <token>'")
    if credential.startswith(API_KEY_PREFIX):
        user = _lookup(engine, "key", _key_hash(credential))
        if user is None:
            raise _unauthorised("unknown or revoked API key")
    else:
        try:
            claims = jwt.decode(credential, request.app.state.secret, algorithms=[ALGORITHM],
                                options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorised("the token has expired; sign in again") from None
        except jwt.InvalidTokenError:
            raise _unauthorised("invalid token") from None
        user = _lookup(engine, "name", str(claims["sub"]))
        if user is None:
            raise _unauthorised("the user no longer exists or is disabled")
    request.state.user = user
    return user


def allow(permission: str):
    """A dependency: the signed-in user, if their role grants ``permission``; 403 otherwise."""
    if permission not in PERMISSIONS:
        raise ValueError(permission)

    def dependency(user: User = Depends(current_user)) -> User:
        if not user.can(permission):
            raise Forbidden(f"the role {user.role!r} may not {permission}; ask an admin")
        return user

    dependency.__name__ = f"allow_{permission}"
    return dependency
