"""Sign-in, roles, API keys and the audit log, through the in-process client."""

from __future__ import annotations

import jwt
import pytest

from tests.api.conftest import JWT_SECRET, Api, password


def test_token_and_me(api: Api) -> None:
    r = api.client.post("/token", data={"username": "editor", "password": password("editor")})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "editor"
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "editor"
    me = api.client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me["name"] == "editor" and "edit" in me["permissions"] and "approve" not in me["permissions"]


@pytest.mark.parametrize("name,pw", [("editor", "wrong-password"), ("nobody", "whatever-it-is")])
def test_wrong_sign_in_is_401(api: Api, name: str, pw: str) -> None:
    r = api.client.post("/token", data={"username": name, "password": pw})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"


def test_no_token_bad_token_expired_token(api: Api) -> None:
    assert api.client.get("/me").status_code == 401
    assert api.client.get("/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    forged = jwt.encode({"sub": "admin", "exp": 4102444800}, "another-secret", algorithm="HS256")
    assert api.client.get("/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    expired = jwt.encode({"sub": "admin", "exp": 1000}, JWT_SECRET, algorithm="HS256")
    r = api.client.get("/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["description"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_roles(api: Api) -> None:
    assert api.get("/admin/users", "viewer").status_code == 403
    assert api.get("/admin/users", "editor").status_code == 403
    users = api.get("/admin/users", "admin").json()
    assert {u["name"] for u in users} >= {"viewer", "editor", "approver", "admin"}
    assert all("password_hash" not in u for u in users)


def test_api_key_and_disable(api: Api) -> None:
    r = api.post("/admin/users", "admin", json={"name": "scada", "role": "viewer"})
    assert r.status_code == 201, r.text
    key = api.post("/admin/users/scada/keys", "admin", params={"label": "SCADA link"}).json()["api_key"]
    assert api.client.get("/me", headers={"X-API-Key": key}).json()["name"] == "scada"
    assert api.client.get("/me", headers={"Authorization": f"Bearer {key}"}).json()["name"] == "scada"
    assert api.client.get("/me", headers={"X-API-Key": key + "x"}).status_code == 401
    # The key's user signs in with keys only.
    assert api.client.post("/token", data={"username": "scada", "password": "anything-at-all"}).status_code == 401
    assert api.request("PATCH", "/admin/users/scada", "admin", json={"disabled": True}).status_code == 200
    from api import auth

    auth._cache.clear()  # other server processes see it within the cache's 10 s
    assert api.client.get("/me", headers={"X-API-Key": key}).status_code == 401


def test_duplicate_user_and_bad_role(api: Api) -> None:
    assert api.post("/admin/users", "admin", json={"name": "viewer", "role": "viewer"}).status_code == 409
    assert api.post("/admin/users", "admin", json={"name": "x", "role": "god"}).status_code == 422
    assert api.post("/admin/users", "admin", json={"name": "bad name!", "role": "viewer"}).status_code == 422


def test_audit_log_records_and_is_admin_only(api: Api) -> None:
    api.post("/admin/users", "admin", json={"name": "audited", "role": "editor", "password": "long-enough"})
    entries = api.get("/admin/audit", "admin", params={"action": "user-add", "feature": "audited"}).json()["entries"]
    assert len(entries) == 1
    e = entries[0]
    assert e["user_name"] == "admin" and e["path"] == "/admin/users" and e["affected"] == ["audited"]
    assert "password" not in e["params"]
    assert api.get("/admin/audit", "approver").status_code == 403
    assert api.get("/admin/audit", "admin", params={"since": "yesterday"}).status_code == 400


def test_healthz_is_public_and_landing_is_not(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    assert api.client.get("/?f=json").status_code == 401
    assert api.client.get("/", headers={"Accept": "application/json"}).status_code == 401
    landing = api.get("/?f=json").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"service-desc", "conformance", "data"} <= rels
    assert api.client.get("/", headers={"Accept": "text/html"}).status_code == 200
    doc = api.get("/api")
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.")
    assert api.client.get("/api").status_code == 401


def test_body_limit(api: Api) -> None:
    big = b"x" * int(api.settings.max_upload_mb * 1e6 + 10)
    r = api.client.post("/admin/users", content=big, headers={**api.headers["admin"],
                                                              "Content-Type": "application/json"})
    assert r.status_code == 413
