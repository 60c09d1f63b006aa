"""Signing in (POST /token), who am I and my API keys, and the admin's users, keys and audit log.

Sign-in is throttled (:mod:`api.signin`); a password change, a new role or disabling a user
ends their access tokens (:mod:`api.auth`), and API keys are revoked one by one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from analysis.vocabulary import vocabulary
from api.audit import audit, audit_now, read_audit
from api.auth import (
    ROLES,
    User,
    add_user,
    allow,
    create_api_key,
    issue_token,
    list_api_keys,
    list_users,
    revoke_api_key,
    update_user,
)
from api.signin import client_address, sign_in
from live.alarms import CAUSES as ALARM_CAUSES
from live.sensors import KINDS as SENSOR_KINDS
from twin.errors import InputError
from twin.jsonable import plain

__all__ = ["public", "router"]

public = APIRouter(tags=["sign-in"])
router = APIRouter(tags=["sign-in"])
admin = APIRouter(tags=["admin"])

Role = Literal["viewer", "editor", "approver", "admin"]
#: An API key's id (a bigint in the database).
KeyId = PathParam(..., ge=1, le=2**63 - 1, description="The key's id (see the list of keys)")


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: str
    role: str


@public.post("/token", response_model=Token, summary="Sign in (OAuth2 password flow): an access token",
             responses={401: {"description": "Wrong name or password"},
                        429: {"description": "Too many failed sign-ins for the name or from the address "
                              "(see Retry-After), or too many at once"}})
def token(
    request: Request,
    response: Response,
    username: str = Form(..., max_length=64),
    password: str = Form(..., max_length=1024),
    grant_type: str | None = Form(None, pattern="^password$"),
) -> Token:
    user = sign_in(request, username, password)
    settings = request.app.state.settings
    tok, seconds = issue_token(user, request.app.state.secret, settings.token_minutes)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: tokens are not cached
    response.headers["Pragma"] = "no-cache"
    request.state.user = user
    audit_now(request.app.state.engine, user, "sign-in", request, params={"client": client_address(request)})
    return Token(access_token=tok, expires_in=seconds, user=user.name, role=user.role)


#: The viewer's languages: Chinese first (the default), English on the user's switch.
LANGS = ("zh-CN", "en")


class Preferences(BaseModel):
    lang: str = Field(..., description="The viewer's language: zh-CN (default) or en")


def user_lang(conn: sa.Connection, name: str) -> str:
    """The user's language (zh-CN when none is stored, as for a key-only service user)."""
    value = conn.execute(sa.text("SELECT lang FROM app_user WHERE name = :n"), {"n": name}).scalar()
    return value or LANGS[0]


def set_user_lang(conn: sa.Connection, name: str, lang: str) -> str:
    """Store the user's language; 400 for one the viewer does not speak."""
    if lang not in LANGS:
        raise InputError(f"unknown language {lang[:16]!r}: one of {', '.join(LANGS)}",
                         zh=f"不支持的语言 {lang[:16]!r}：可选 {', '.join(LANGS)}")
    conn.execute(sa.text("UPDATE app_user SET lang = :l WHERE name = :n"), {"l": lang, "n": name})
    return lang


@router.get("/me", summary="The signed-in user, their role, what it allows and their language")
def me(request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.connect() as conn:
        lang = user_lang(conn, user.name)
    return {"name": user.name, "role": user.role, "permissions": sorted(ROLES[user.role]), "lang": lang}


@router.put("/me/preferences", summary="Store my preferences: the viewer's language (zh-CN or en)",
            responses={400: {"description": "A language the viewer does not speak"}})
def my_preferences(body: Preferences, request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.begin() as conn:
        before = user_lang(conn, user.name)
        lang = set_user_lang(conn, user.name, body.lang)
        audit(conn, user, "preferences", request, params={"lang": lang, "was": before}, affected=[user.name])
    return {"name": user.name, "lang": lang}


def _spelled(table: dict[str, str]) -> dict[str, list[str]]:
    """``{"low": "低于下限 below the low threshold"}`` -> ``{"low": ["低于下限", "below ..."]}``."""
    return {code: text.split(" ", 1) for code, text in table.items()}


@router.get("/view/vocabulary", tags=["viewer"],
            summary="The names of every code the viewer shows (utilities, burial, statuses, finding kinds, "
                    "column labels...), Chinese and English")
def view_vocabulary(user: User = Depends(allow("read"))) -> dict:
    return {**vocabulary(), "sensor_kind": _spelled(SENSOR_KINDS), "alarm_cause": _spelled(ALARM_CAUSES)}


@router.get("/me/keys", summary="My API keys (never the keys themselves)")
def my_keys(request: Request, user: User = Depends(allow("read"))) -> list[dict]:
    return _keys(request, user.name)


@router.delete("/me/keys/{key_id}", summary="Revoke one of my API keys")
def revoke_my_key(request: Request, key_id: int = KeyId, user: User = Depends(allow("read"))) -> dict:
    return _revoke(request, user, user.name, key_id)


def _keys(request: Request, name: str) -> list[dict]:
    with request.app.state.engine.connect() as conn:
        return plain(list_api_keys(conn, name))


def _revoke(request: Request, user: User, name: str, key_id: int) -> dict:
    """Revoke ``name``'s key ``key_id`` and audit it (``api-key-revoke``) in one transaction."""
    with request.app.state.engine.begin() as conn:
        key = revoke_api_key(conn, name, key_id)
        audit(conn, user, "api-key-revoke", request, params={"key_id": key_id}, affected=[name])
    return plain({"user": name, **key})


class NewUser(BaseModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Role
    password: str | None = Field(None, min_length=8, max_length=1024)


class UserChange(BaseModel):
    role: Role | None = None
    disabled: bool | None = None


@admin.get("/admin/users", summary="Users and their roles")
def users(request: Request, user: User = Depends(allow("admin"))) -> list[dict]:
    with request.app.state.engine.connect() as conn:
        return [{**u, "created_at": u["created_at"].isoformat()} for u in list_users(conn)]


@admin.post("/admin/users", status_code=201, summary="Add a user")
def new_user(body: NewUser, request: Request, user: User = Depends(allow("admin"))) -> dict:
    with request.app.state.engine.begin() as conn:
        made = add_user(conn, body.name, body.role, body.password, by=user.name)
        audit(conn, user, "user-add", request, params={"name": body.name, "role": body.role},
              affected=[body.name])
    return {"name": made.name, "role": made.role}


@admin.patch("/admin/users/{name}", summary="Change a user's role, or disable or enable them")
def change_user(name: str, body: UserChange, request: Request, user: User = Depends(allow("admin"))) -> dict:
    with request.app.state.engine.begin() as conn:
        changed = update_user(conn, name, role=body.role, disabled=body.disabled)
        audit(conn, user, "user-change", request, params=body.model_dump(exclude_none=True), affected=[name])
    return {"name": changed.name, "role": changed.role}


@admin.post("/admin/users/{name}/keys", status_code=201, summary="A new API key for a user (shown once)")
def new_key(name: str, request: Request, label: str | None = Query(None, max_length=200),
            user: User = Depends(allow("admin"))) -> dict:
    with request.app.state.engine.begin() as conn:
        key = create_api_key(conn, name, label)
        audit(conn, user, "api-key-add", request, params={"label": label}, affected=[name])
    return {"user": name, "api_key": key}


@admin.get("/admin/users/{name}/keys", summary="A user's API keys (never the keys themselves)")
def user_keys(name: str, request: Request, user: User = Depends(allow("admin"))) -> list[dict]:
    return _keys(request, name)


@admin.delete("/admin/users/{name}/keys/{key_id}", summary="Revoke one of a user's API keys")
def revoke_user_key(name: str, request: Request, key_id: int = KeyId,
                    user: User = Depends(allow("admin"))) -> dict:
    return _revoke(request, user, name, key_id)


def _instant(value: str | None, label: str) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (no offset: UTC); 400 when it is not one."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{label} {value[:40]!r} is not an ISO 8601 time (2024-05-01T08:00:00+08:00)",
                         zh=f"{label} {value[:40]!r} 不是 ISO 8601 时间（如 2024-05-01T08:00:00+08:00）") from None
    try:
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InputError(f"{label} {value[:40]!r} is out of range",
                         zh=f"{label} {value[:40]!r} 超出范围") from None


@admin.get("/admin/audit", summary="The audit log, newest first")
def audit_log(
    request: Request,
    user_name: str | None = Query(None, alias="user", max_length=64),
    action: str | None = Query(None, max_length=100),
    since: str | None = Query(None, description="ISO 8601 time", max_length=40),
    until: str | None = Query(None, description="ISO 8601 time", max_length=40),
    feature: str | None = Query(None, description="only entries that affected this id", max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    user: User = Depends(allow("admin")),
) -> dict:
    since_t, until_t = _instant(since, "since"), _instant(until, "until")
    with request.app.state.engine.connect() as conn:
        entries = read_audit(conn, user=user_name, action=action, since=since_t, until=until_t,
                             feature=feature, limit=limit, offset=offset)
    return {"entries": entries, "returned": len(entries)}


router.include_router(admin)
