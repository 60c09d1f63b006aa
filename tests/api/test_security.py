"""Nothing without sign-in, nothing beyond the role: walk every route of the app."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from api.auth import ROLES
from tests.api.conftest import Api

#: Routes anyone may call: the health probe, signing in, and the viewer's page.
PUBLIC = {("GET", "/healthz"), ("POST", "/token"), ("GET", "/")}


def _routes(api: Api) -> list[APIRoute]:
    """Every APIRoute, looking into included routers (no router here uses a prefix)."""
    out: list[APIRoute] = []
    stack = list(api.client.app.routes)
    while stack:
        r = stack.pop()
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):  # FastAPI >= 0.160 keeps included routers whole
            stack.extend(r.original_router.routes)
        elif hasattr(r, "routes"):
            stack.extend(r.routes)
    return out


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+(:path)?\}", "x", path)


def _permission(route: APIRoute) -> str | None:
    """The permission an `allow(...)` dependency of the route asks for, if any."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        name = getattr(dep.call, "__name__", "")
        if name.startswith("allow_"):
            return name.removeprefix("allow_")
        stack.extend(dep.dependencies)
    return None


def test_openapi_document_lists_every_route(api: Api) -> None:
    doc = api.get("/api").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = {(m, re.sub(r":\w+\}", "}", r.path)) for r in _routes(api) if r.include_in_schema for m in r.methods}
    assert routed == documented


def test_every_route_refuses_without_sign_in(api: Api) -> None:
    doc = api.get("/api").json()
    checked = 0
    for path, ops in doc["paths"].items():
        for method in ops:
            if (method.upper(), path) in PUBLIC:
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "ptk_guess"}):
                r = api.client.request(method, _concrete(path), headers=headers)
                assert r.status_code == 401, f"{method.upper()} {path} answered {r.status_code} to {headers}"
                assert r.json()["code"] == "UNAUTHORIZED"
            checked += 1
    assert checked >= 10
    # The landing page's JSON is data too: only the viewer's HTML is public.
    assert api.client.get("/?f=json").status_code == 401


def test_every_protected_route_names_a_permission(api: Api) -> None:
    missing = [(sorted(r.methods), r.path) for r in _routes(api)
               if (next(iter(r.methods)), r.path) not in PUBLIC and _permission(r) is None]
    assert not missing, f"routes without an allow(...) dependency: {missing}"


@pytest.mark.parametrize("role", list(ROLES))
def test_every_route_beyond_the_role_is_403(api: Api, role: str) -> None:
    refused = 0
    for route in _routes(api):
        permission = _permission(route)
        if permission is None or permission in ROLES[role]:
            continue
        for method in route.methods:
            r = api.request(method, _concrete(route.path), role)
            assert r.status_code == 403, f"{role}: {method} {route.path} answered {r.status_code}"
            assert r.json()["code"] == "FORBIDDEN"
            refused += 1
    if role != "admin":
        assert refused > 0
