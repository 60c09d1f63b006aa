"""Sign-in, roles, API keys and the audit log, through the in-process client."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
import sqlalchemy as sa

from api import auth
from tests.api.conftest import JWT_SECRET, Api, LiveServer, password
from twin.db import open_twin


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
    expired = jwt.encode({"sub": "admin", "ver": 0, "exp": 1000}, JWT_SECRET, algorithm="HS256")
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


# -- revocation: token versions and API keys ---------------------------------------------------
def _user(api: Api, name: str, role: str = "viewer") -> dict[str, str]:
    """A new user with a password; the headers of a fresh token of theirs."""
    r = api.post("/admin/users", "admin", json={"name": name, "role": role, "password": f"{name}-password"})
    assert r.status_code == 201, r.text
    return _token(api.client, name)


def _token(client: httpx.Client, name: str) -> dict[str, str]:
    r = client.post("/token", data={"username": name, "password": f"{name}-password"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _change(api: Api, change) -> None:
    """Run ``change(conn)`` as the CLI does: the library on the twin's database."""
    engine = open_twin(api.settings)
    with engine.begin() as conn:
        change(conn)
    engine.dispose()


def test_a_password_change_ends_old_tokens(api: Api) -> None:
    old = _user(api, "rotating")
    assert api.client.get("/me", headers=old).status_code == 200
    _change(api, lambda conn: auth.set_password(conn, "rotating", "rotating-password"))
    r = api.client.get("/me", headers=old)
    assert r.status_code == 401 and "revoked" in r.json()["description"]
    assert api.client.get("/me", headers=_token(api.client, "rotating")).status_code == 200


def test_a_role_change_and_disabling_end_old_tokens_for_good(api: Api) -> None:
    old = _user(api, "promoted")
    assert api.request("PATCH", "/admin/users/promoted", "admin", json={"role": "editor"}).status_code == 200
    assert api.client.get("/me", headers=old).status_code == 401
    current = _token(api.client, "promoted")
    assert api.client.get("/me", headers=current).json()["role"] == "editor"
    # Setting the same role again, or enabling an enabled user, changes nothing.
    api.request("PATCH", "/admin/users/promoted", "admin", json={"role": "editor", "disabled": False})
    assert api.client.get("/me", headers=current).status_code == 200
    api.request("PATCH", "/admin/users/promoted", "admin", json={"disabled": True})
    api.request("PATCH", "/admin/users/promoted", "admin", json={"disabled": False})
    assert api.client.get("/me", headers=current).status_code == 401  # re-enabling brings nothing back
    assert api.client.get("/me", headers=_token(api.client, "promoted")).status_code == 200


def test_a_new_token_works_at_once_where_the_cache_is_stale(api: Api) -> None:
    """A change made by another process: this one's cache still holds the old version."""
    old = _user(api, "stale")
    assert api.client.get("/me", headers=old).status_code == 200  # cached here with version 0
    _change(api, lambda conn: conn.execute(
        sa.text("UPDATE app_user SET token_version = token_version + 1 WHERE name = 'stale'")))
    new = _token(api.client, "stale")
    assert api.client.get("/me", headers=new).status_code == 200
    assert api.client.get("/me", headers=old).status_code == 401


def test_a_token_without_a_version_is_refused(api: Api) -> None:
    legacy = jwt.encode({"sub": "admin", "exp": 4102444800}, JWT_SECRET, algorithm="HS256")
    assert api.client.get("/me", headers={"Authorization": f"Bearer {legacy}"}).status_code == 401


def test_another_server_process_refuses_old_tokens_within_seconds(api: Api, live_server: LiveServer) -> None:
    _user(api, "elsewhere")
    with httpx.Client(base_url=live_server.url) as client:
        old = _token(client, "elsewhere")
        assert client.get("/me", headers=old).status_code == 200  # now in that server's cache
        _change(api, lambda conn: auth.set_password(conn, "elsewhere", "elsewhere-password"))
        deadline = time.monotonic() + auth._TTL + 5
        while client.get("/me", headers=old).status_code == 200:
            assert time.monotonic() < deadline, "the old token still works after the cache's TTL"
            time.sleep(0.5)
        assert client.get("/me", headers=old).status_code == 401


def test_admin_lists_and_revokes_api_keys(api: Api) -> None:
    api.post("/admin/users", "admin", json={"name": "gateway", "role": "viewer"})
    first = api.post("/admin/users/gateway/keys", "admin", params={"label": "one"}).json()["api_key"]
    second = api.post("/admin/users/gateway/keys", "admin", params={"label": "two"}).json()["api_key"]
    keys = api.get("/admin/users/gateway/keys", "admin").json()
    assert [k["label"] for k in keys] == ["two", "one"] and all(k["revoked_at"] is None for k in keys)
    assert not any(first in str(k) or second in str(k) or "hash" in str(k) for k in keys)
    one = next(k["id"] for k in keys if k["label"] == "one")
    r = api.request("DELETE", f"/admin/users/gateway/keys/{one}", "admin")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert api.client.get("/me", headers={"X-API-Key": first}).status_code == 401
    assert api.client.get("/me", headers={"X-API-Key": second}).json()["name"] == "gateway"
    assert api.request("DELETE", f"/admin/users/viewer/keys/{one}", "admin").status_code == 404  # not theirs
    assert api.request("DELETE", "/admin/users/gateway/keys/99999999", "admin").status_code == 404
    entries = api.get("/admin/audit", "admin", params={"action": "api-key-revoke", "feature": "gateway"}).json()
    assert entries["entries"][0]["params"] == {"key_id": one}


def test_a_user_revokes_their_own_keys_only(api: Api) -> None:
    api.post("/admin/users", "admin", json={"name": "selfserve", "role": "viewer"})
    key = api.post("/admin/users/selfserve/keys", "admin").json()["api_key"]
    other = api.post("/admin/users/editor/keys", "admin").json()["api_key"]
    mine = api.client.get("/me/keys", headers={"X-API-Key": key}).json()
    assert len(mine) == 1
    others = api.get("/admin/users/editor/keys", "admin").json()
    r = api.client.delete(f"/me/keys/{others[0]['id']}", headers={"X-API-Key": key})
    assert r.status_code == 404
    assert api.client.get("/me", headers={"X-API-Key": other}).status_code == 200
    assert api.client.delete(f"/me/keys/{mine[0]['id']}", headers={"X-API-Key": key}).status_code == 200
    assert api.client.get("/me", headers={"X-API-Key": key}).status_code == 401
    assert api.get("/admin/users/editor/keys", "viewer").status_code == 403


def test_403_is_audited(api: Api) -> None:
    assert api.request("DELETE", "/admin/users/editor/keys/1", "editor").status_code == 403
    engine = open_twin(api.settings)
    with engine.connect() as conn:
        e = conn.execute(sa.text("SELECT user_name, role, method, path, params, status FROM audit_log "
                                 "WHERE action = 'forbidden' ORDER BY id DESC LIMIT 1")).one()
    engine.dispose()
    assert (e.user_name, e.role, e.method, e.path, e.status) == ("editor", "editor", "DELETE",
                                                                 "/admin/users/editor/keys/1", 403)
    assert e.params == {"permission": "admin"}
