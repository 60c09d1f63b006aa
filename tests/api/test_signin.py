"""Sign-in under attack: failures throttled per name and per address, hashes bounded, all audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api import signin
from api.app import create_app
from tests.api.conftest import make_twin, password, sign_in
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.settings import TwinSettings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    settings = make_twin("test_api_signin", tmp_path_factory.mktemp("signin"), data="empty")
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="module")
def engine(settings: TwinSettings) -> Iterator[sa.Engine]:
    engine = open_twin(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app(settings: TwinSettings):
    app = create_app(settings)
    with TestClient(app):  # runs the lifespan once; clients below share its state
        yield app


@pytest.fixture(autouse=True)
def no_failures(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM signin_failure"))


def client_at(app, address: str) -> TestClient:
    """A client whose socket address is ``address``."""
    return TestClient(app, client=(address, 40000))


def attempt(client: TestClient, name: str, pw: str, **headers: str):
    return client.post("/token", data={"username": name, "password": pw}, headers=headers)


def test_wrong_passwords_bring_429_even_for_the_right_one(app, engine: sa.Engine) -> None:
    attacker = client_at(app, "10.0.0.66")
    statuses = [attempt(attacker, "editor", f"guess-{i}").status_code for i in range(25)]
    assert statuses[: signin.ACCOUNT_FAILURES] == [401] * signin.ACCOUNT_FAILURES
    assert set(statuses[signin.ACCOUNT_FAILURES:]) == {429}
    # The real user, from their own address, with the right password: locked out too, told how long.
    r = attempt(client_at(app, "10.0.0.7"), "editor", password("editor"))
    assert r.status_code == 429 and r.json()["code"] == "TOO_BUSY"
    assert 1 <= int(r.headers["retry-after"]) <= signin.WINDOW.total_seconds()
    assert "user name" in r.json()["description"]
    # Another account from another address is not affected.
    assert attempt(client_at(app, "10.0.0.8"), "viewer", password("viewer")).status_code == 200
    # Refused attempts are not counted: the lock ends a window after the last counted failure.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signin_failure")).scalar() == signin.ACCOUNT_FAILURES
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE signin_failure SET at = at - :w"), {"w": signin.WINDOW})
    assert attempt(client_at(app, "10.0.0.7"), "editor", password("editor")).status_code == 200


def test_concurrent_guesses_do_not_slip_past_the_limit(app, monkeypatch) -> None:
    # On a busy machine a guess may wait for a password hash longer than the server's usual
    # patience and be refused as busy (429) before it is counted: wait as long as it takes here,
    # so that every 429 below is the account's lock.
    monkeypatch.setattr(signin, "HASH_WAIT_S", 60.0)
    attacker = client_at(app, "10.0.0.67")
    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(pool.map(lambda i: attempt(attacker, "approver", f"guess-{i}").status_code,
                                   range(2 * signin.ACCOUNT_FAILURES)))
    assert statuses == [401] * signin.ACCOUNT_FAILURES + [429] * signin.ACCOUNT_FAILURES


def test_failures_are_audited_without_the_password(app, engine: sa.Engine) -> None:
    assert attempt(client_at(app, "10.0.0.9"), "approver", "not-the-password").status_code == 401
    assert attempt(client_at(app, "10.0.0.9"), "no-such-user", "whatever-it-is").status_code == 401
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT user_name, role, params, status, path FROM audit_log WHERE action = 'sign-in-failed' "
            "AND params->>'client' = '10.0.0.9' ORDER BY id")).all()
    assert [r.user_name for r in rows] == ["approver", "no-such-user"]
    assert all(r.role is None and r.status == 401 and r.path == "/token" for r in rows)
    assert "not-the-password" not in str([r.params for r in rows])


def test_one_address_is_limited_over_many_names_and_forwarded_for_is_not_believed(app) -> None:
    attacker = client_at(app, "10.0.0.77")
    statuses = [attempt(attacker, f"user{i % 3}", "guess-guess", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code
                for i in range(signin.ADDRESS_FAILURES + 1)]
    assert statuses[:-1] == [401] * signin.ADDRESS_FAILURES and statuses[-1] == 429
    r = attempt(attacker, "admin", password("admin"), **{"X-Forwarded-For": "192.0.2.200"})
    assert r.status_code == 429 and "address" in r.json()["description"] and "retry-after" in r.headers
    assert attempt(client_at(app, "10.0.0.78"), "admin", password("admin")).status_code == 200


def test_concurrent_password_checks_are_bounded(app, engine: sa.Engine, monkeypatch) -> None:
    monkeypatch.setattr(signin, "_hashes", threading.BoundedSemaphore(1))
    monkeypatch.setattr(signin, "HASH_WAIT_S", 0.1)
    signin._hashes.acquire()  # another sign-in is hashing
    try:
        r = attempt(client_at(app, "10.0.0.10"), "viewer", password("viewer"))
    finally:
        signin._hashes.release()
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    with engine.connect() as conn:  # a busy server is not the client's failure
        assert conn.execute(sa.text("SELECT count(*) FROM signin_failure")).scalar() == 0
    assert attempt(client_at(app, "10.0.0.10"), "viewer", password("viewer")).status_code == 200


def test_a_success_leaves_no_failure_and_is_audited_with_the_address(app, engine: sa.Engine) -> None:
    with client_at(app, "10.0.0.11") as client:
        sign_in(client, "viewer")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signin_failure")).scalar() == 0
        last = conn.execute(sa.text("SELECT user_name, params FROM audit_log WHERE action = 'sign-in' "
                                    "ORDER BY id DESC LIMIT 1")).one()
    assert last.user_name == "viewer" and last.params == {"client": "10.0.0.11"}


def test_token_route_documents_429(app) -> None:
    assert "429" in app.openapi()["paths"]["/token"]["post"]["responses"]


def test_the_counts_are_shared_by_every_server_process(app, settings: TwinSettings) -> None:
    """Two apps, each with its own engine and caches as two workers have, count the same failures."""
    first = client_at(app, "10.0.0.99")
    with TestClient(create_app(settings), client=("10.0.0.99", 1)) as second:
        for i in range(signin.ACCOUNT_FAILURES):
            assert attempt(first if i % 2 else second, "admin", f"guess-{i}").status_code == 401
        assert attempt(first, "admin", password("admin")).status_code == 429
        assert attempt(second, "admin", password("admin")).status_code == 429
