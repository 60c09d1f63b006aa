"""Signing in (POST /token), who am I, and the admin's users and audit log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import BaseModel, Field

from api.audit import audit, audit_now, read_audit
from api.auth import (
    ROLES,
    User,
    add_user,
    allow,
    authenticate,
    create_api_key,
    issue_token,
    list_users,
    update_user,
)
from twin.errors import Unauthorised

__all__ = ["public", "router"]

public = APIRouter(tags=["sign-in"])
router = APIRouter(tags=["sign-in"])
admin = APIRouter(tags=["admin"])

Role = Literal["viewer", "editor", "approver", "admin"]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: str
    role: str


@public.post("/token", response_model=Token, summary="Sign in (OAuth2 password flow): an access token",
             responses={401: {"description": "Wrong name or password"}})
def token(
    request: Request,
    username: str = Form(..., max_length=64),
    password: str = Form(..., max_length=1024),
    grant_type: str | None = Form(None, pattern="^password$"),
) -> Token:
    engine = request.app.state.engine
    with engine.begin() as conn:
        user = authenticate(conn, username, password)
    if user is None:
        raise Unauthorised("wrong user name or password")
    settings = request.app.state.settings
    tok, seconds = issue_token(user, request.app.state.secret, settings.token_minutes)
    request.state.user = user
    audit_now(engine, user, "sign-in", request)
    return Token(access_token=tok, expires_in=seconds, user=user.name, role=user.role)


@router.get("/me", summary="The signed-in user, their role and what it allows")
def me(user: User = Depends(allow("read"))) -> dict:
    return {"name": user.name, "role": user.role, "permissions": sorted(ROLES[user.role])}


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
    from datetime import datetime

    from twin.errors import InputError

    for label, value in (("since", since), ("until", until)):
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise InputError(f"{label} {value!r} is not an ISO 8601 time") from None
    with request.app.state.engine.connect() as conn:
        entries = read_audit(conn, user=user_name, action=action, since=since, until=until,
                             feature=feature, limit=limit, offset=offset)
    return {"entries": entries, "returned": len(entries)}


router.include_router(admin)
