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
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from twin import secretfiles
from twin.audit import record
from twin.errors import ConfigError, Conflict, Forbidden, InputError, NotFound, Unauthorised
from twin.settings import TwinSettings

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "User",
    "add_user",
    "set_password",
    "update_user",
    "list_users",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "authenticate",
    "issue_token",
    "current_user",
    "signed_in",
    "credential_user",
    "header_credential",
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
#: The shortest TWIN_JWT_SECRET accepted: HS256 wants a key of 256 bits at least.
MIN_SECRET = 32

_hasher = PasswordHasher()
log = logging.getLogger("pipetwin.api")


@dataclass(frozen=True)
class User:
    """A signed-in user; ``token_version`` is the version their access tokens must carry."""

    name: str
    role: str
    token_version: int = 0

    def can(self, permission: str) -> bool:
        return permission in ROLES[self.role]


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; one of {', '.join(ROLES)}",
                         zh=f"未知角色 {role!r}；可选 {', '.join(ROLES)}")


def add_user(conn: sa.Connection, name: str, role: str, password: str | None, *, by: str) -> User:
    """Create a user; a user without a password signs in with API keys only."""
    _check_role(role)
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.@-" for c in name):
        raise InputError("a user name is 1 to 64 letters, digits or _ . @ -",
                         zh="用户名为 1 到 64 个字母、数字或 _ . @ -")
    if password is not None and len(password) < 8:
        raise InputError("a password has at least 8 characters", zh="密码至少 8 个字符")
    exists = conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": name}).first()
    if exists:
        raise Conflict(f"user {name!r} exists", zh=f"用户 {name!r} 已存在")
    conn.execute(
        sa.text("INSERT INTO app_user (name, role, password_hash, created_by) VALUES (:n, :r, :h, :b)"),
        {"n": name, "r": role, "h": _hasher.hash(password) if password else None, "b": by},
    )
    _forget()
    return User(name, role)


def set_password(conn: sa.Connection, name: str, password: str) -> None:
    """Set a user's password; the access tokens issued before stop working."""
    if len(password) < 8:
        raise InputError("a password has at least 8 characters", zh="密码至少 8 个字符")
    n = conn.execute(
        sa.text("UPDATE app_user SET password_hash = :h, token_version = token_version + 1 WHERE name = :n"),
        {"h": _hasher.hash(password), "n": name},
    ).rowcount
    if not n:
        raise NotFound(f"no user {name!r}", zh=f"没有用户 {name!r}")
    _forget()


def update_user(conn: sa.Connection, name: str, *, role: str | None = None, disabled: bool | None = None) -> User:
    """Change a user's role, or disable or enable them.

    A new role or disabling ends the access tokens issued before; enabling again does not
    bring them back.
    """
    if role is not None:
        _check_role(role)
    row = conn.execute(
        sa.text(
            "UPDATE app_user SET role = coalesce(:r, role), disabled = coalesce(:d, disabled), "
            "  token_version = token_version + CASE WHEN coalesce(:r, role) <> role "
            "      OR (coalesce(:d, false) AND NOT disabled) THEN 1 ELSE 0 END "
            "WHERE name = :n RETURNING name, role, token_version"
        ),
        {"r": role, "d": disabled, "n": name},
    ).first()
    if row is None:
        raise NotFound(f"no user {name!r}", zh=f"没有用户 {name!r}")
    _forget()
    return User(row.name, row.role, row.token_version)


def list_users(conn: sa.Connection) -> list[dict]:
    """Every user with their role, state and number of live API keys (no secrets)."""
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
        raise NotFound(f"no user {name!r}", zh=f"没有用户 {name!r}")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        sa.text("INSERT INTO api_key (user_name, key_hash, label) VALUES (:n, :h, :l)"),
        {"n": name, "h": _key_hash(key), "l": label},
    )
    return key


def list_api_keys(conn: sa.Connection, name: str) -> list[dict]:
    """A user's API keys, newest first: id, label, when made and when revoked (never the key)."""
    if conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": name}).first() is None:
        raise NotFound(f"no user {name!r}", zh=f"没有用户 {name!r}")
    rows = conn.execute(
        sa.text("SELECT id, label, created_at, revoked_at FROM api_key WHERE user_name = :n ORDER BY id DESC"),
        {"n": name},
    ).mappings()
    return [dict(r) for r in rows]


def revoke_api_key(conn: sa.Connection, name: str, key_id: int) -> dict:
    """Revoke one of a user's API keys (already revoked: left as it is); the key as listed."""
    row = conn.execute(
        sa.text(
            "UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE id = :i AND user_name = :n RETURNING id, label, created_at, revoked_at"
        ),
        {"i": key_id, "n": name},
    ).mappings().first()
    if row is None:
        raise NotFound(f"user {name!r} has no API key {key_id}",
                       zh=f"用户 {name!r} 没有 API 密钥 {key_id}")
    _forget()
    return dict(row)


def authenticate(conn: sa.Connection, name: str, password: str) -> User | None:
    """The user if the password is right and the user is enabled."""
    row = conn.execute(
        sa.text("SELECT name, role, password_hash, token_version FROM app_user WHERE name = :n AND NOT disabled"),
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
    return User(row.name, row.role, row.token_version)


def signing_secret(settings: TwinSettings) -> str:
    """TWIN_JWT_SECRET (at least 32 characters), or the random secret in the 0600 file
    ``<TWIN_DATA_DIR>/secrets/jwt.secret``, made on first use and shared by every server worker."""
    if settings.jwt_secret is not None:
        if len(settings.jwt_secret) < MIN_SECRET:
            raise ConfigError(f"TWIN_JWT_SECRET has {len(settings.jwt_secret)} characters; it needs at "
                              f"least {MIN_SECRET} (unset it to have a random one kept in a private file)",
                              zh=f"TWIN_JWT_SECRET 只有 {len(settings.jwt_secret)} 个字符，至少需要 {MIN_SECRET} 个"
                                 "（不设置则自动生成随机密钥并保存在私有文件中）")
        return settings.jwt_secret
    path = secretfiles.secrets_dir(settings) / "jwt.secret"
    return secretfiles.secret(path, lambda: secrets.token_urlsafe(48))


def issue_token(user: User, secret: str, minutes: int) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    now = datetime.now(UTC)
    claims = {"sub": user.name, "role": user.role, "ver": user.token_version, "iat": now,
              "exp": now + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), minutes * 60


# Users looked up by name or key hash are kept (up to _KEEP_S), keyed by the engine (one twin)
# and the name or the key's hash: a request of a known user costs no database round trip. Each
# server process reads the users' *mark* (a digest of every user's role, state and token version
# and of the API keys revoked) at most once every _TTL seconds, on a request, and drops what it
# kept when the mark moved: a disabled user, a changed role, a revoked key or token (sign-out,
# new password) takes effect in every server process within _TTL seconds (and the time of one
# small query); in the process that made the change at once (the cache is cleared).
_TTL = 1.0
_KEEP_S = 300.0
_cache: dict[tuple[int, str, str], tuple[float, User | None]] = {}
_cache_lock = threading.Lock()
_marks: dict[int, tuple[float, str | None]] = {}  # per engine: when read, the mark
_generation = [0]  # moves whenever users are dropped: a look-up begun before does not keep its answer


def _forget() -> None:
    """Drop every kept user (this process changed users or keys)."""
    with _cache_lock:
        _cache.clear()
        _generation[0] += 1
_USERS_MARK = sa.text(
    "SELECT (SELECT md5(coalesce(string_agg(concat_ws(':', name, role, token_version, disabled), ',' "
    "ORDER BY name), '')) FROM app_user) || '/' || "
    "(SELECT count(*) || ':' || count(revoked_at) || ':' || coalesce(max(revoked_at)::text, '') FROM api_key)"
)


def _check_mark(engine: sa.Engine, now: float) -> None:
    """Drop the kept users when the users' mark moved (read at most once every _TTL s per engine)."""
    key = id(engine)
    with _cache_lock:
        read_at, mark = _marks.get(key, (-_TTL, None))
        if now - read_at < _TTL:
            return
        _marks[key] = (now, mark)  # other threads go on with the cache meanwhile
    with engine.connect() as conn:
        new = conn.execute(_USERS_MARK).scalar()
    with _cache_lock:
        if new != mark:
            for k in [k for k in _cache if k[0] == key]:
                del _cache[k]
            _generation[0] += 1
        _marks[key] = (time.monotonic(), new)


def _lookup(engine: sa.Engine, kind: str, value: str, *, fresh: bool = False) -> User | None:
    """The enabled user of a name or an API key's hash, from the cache unless ``fresh``."""
    now = time.monotonic()
    _check_mark(engine, now)
    hit = None if fresh else _cache.get((id(engine), kind, value))
    if hit and hit[0] > now:
        return hit[1]
    generation = _generation[0]
    sql = (
        "SELECT name, role, token_version FROM app_user WHERE name = :v AND NOT disabled"
        if kind == "name"
        else "SELECT u.name, u.role, u.token_version FROM api_key k JOIN app_user u ON u.name = k.user_name "
        "WHERE k.key_hash = :v AND k.revoked_at IS NULL AND NOT u.disabled"
    )
    with engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"v": value}).first()
    user = User(row.name, row.role, row.token_version) if row else None
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        if generation == _generation[0]:  # nothing was dropped while the row was read
            _cache[(id(engine), kind, value)] = (now + _KEEP_S, user)
    return user


BEARER = HTTPBearer(auto_error=False, description="An access token from POST /token, or an API key.")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (twin user key).")


def credential_user(engine: sa.Engine, secret: str, credential: str | None) -> User:
    """The user a credential (access token or API key) signs in; Unauthorised otherwise."""
    if not credential:
        raise Unauthorised("sign in: POST /token, then send 'Authorization: Bearer <token>'",
                           zh="请先登录：POST /token，然后发送 'Authorization: Bearer <令牌>'")
    if credential.startswith(API_KEY_PREFIX):
        user = _lookup(engine, "key", _key_hash(credential))
        if user is None:
            raise Unauthorised("unknown or revoked API key", zh="API 密钥不存在或已被吊销")
        return user
    try:
        claims = jwt.decode(credential, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "exp", "ver"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorised("the token has expired; sign in again", zh="登录已过期，请重新登录") from None
    except jwt.InvalidTokenError:
        raise Unauthorised("invalid token", zh="登录令牌无效") from None
    user = _lookup(engine, "name", str(claims["sub"]))
    if user is None or claims["ver"] > user.token_version:
        # Signed in again after a change this process's cache has not seen yet: look again.
        user = _lookup(engine, "name", str(claims["sub"]), fresh=True)
    if user is None:
        raise Unauthorised("the user no longer exists or is disabled", zh="该用户已不存在或已被停用")
    if claims["ver"] != user.token_version:
        raise Unauthorised("the token was revoked (the password, role or access changed); sign in again",
                           zh="登录令牌已被吊销（密码、角色或权限已变更），请重新登录")
    return user


def header_credential(headers: Mapping[str, str]) -> str | None:
    """The credential a request carries: ``X-API-Key``, or an ``Authorization: Bearer`` token."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def current_user(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
    api_key: str | None = Depends(API_KEY),
) -> User:
    """The signed-in user, from a bearer token or an API key; 401 otherwise.

    :class:`api.middleware.SignIn` has usually found them before the body was read.
    """
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    credential = api_key or (bearer.credentials if bearer else None)
    user = credential_user(request.app.state.engine, request.app.state.secret, credential)
    request.state.user = user
    return user


async def signed_in(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
    api_key: str | None = Depends(API_KEY),
) -> User:
    """:func:`current_user` as a dependency that runs on the event loop: :class:`SignIn` has
    found the user already, so no thread is taken (a request waits for the thread pool only
    for its own work, not once more for each dependency); a worker thread looks them up otherwise."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    return await run_in_threadpool(current_user, request, bearer, api_key)


def _record_forbidden(request: Request, user: User, permission: str) -> None:
    """A refusal in the audit log (action ``forbidden``), in a transaction of its own."""
    try:
        with request.app.state.engine.begin() as conn:
            record(conn, user.name, user.role, "forbidden", method=request.method, path=request.url.path,
                   params={"permission": permission}, status=403)
    except sa.exc.SQLAlchemyError:  # the answer is 403 either way
        log.warning("could not audit a 403 of %s on %s %s", user.name, request.method, request.url.path,
                    exc_info=True)


def allow(permission: str):
    """A dependency: the signed-in user, if their role grants ``permission``; 403 (audited) otherwise."""
    if permission not in PERMISSIONS:
        raise ValueError(permission)

    async def dependency(request: Request, user: User = Depends(signed_in)) -> User:
        if not user.can(permission):
            await run_in_threadpool(_record_forbidden, request, user, permission)
            raise Forbidden(f"the role {user.role!r} may not {permission}; ask an admin",
                            zh=f"角色 {user.role!r} 无权执行 {permission}；请联系管理员")
        return user

    dependency.__name__ = f"allow_{permission}"
    return dependency
