"""Serving many users: heavy work on its own threads with a deadline, and the sign-in cache.

The server here has two request threads (``TWIN_THREADS=2``) and two heavy threads
(``TWIN_HEAVY_THREADS=2``, ``TWIN_HEAVY_DEADLINE_S=1``). Whole-network analyses are held in
progress by an exclusive lock on the node table (they read the pipes, then the nodes), which
the pages of pipes do not read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from api import auth
from api.limits import HeavyPool
from tests.api.conftest import Api, make_twin, open_api
from tests.api.test_processes import wait_until
from tests.conftest import drop_schema
from twin.db import open_twin

DEADLINE_S = 1.0
WHOLE_NETWORK = {"inputs": {}}  # a collision check without a proposal: every pipe (heavy)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_api_fairness", tmp_path_factory.mktemp("fairness"), data="small")
    settings = settings.model_copy(update={"threads": 2, "heavy_threads": 2, "heavy_deadline_s": DEADLINE_S})
    yield from open_api(settings)
    drop_schema(settings)


def waiting_on_nodes(engine: sa.Engine, schema: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT l.granted AND c.relname = 'node' AND n.nspname = :s"), {"s": schema}).scalar())


def test_the_pools_are_made_with_the_app(api: Api) -> None:
    heavy = api.client.app.state.heavy
    assert isinstance(heavy, HeavyPool) and (heavy.threads, heavy.deadline_s) == (2, DEADLINE_S)
    assert api.client.app.state.engine.pool.size() >= 2 + 2  # a connection for every thread


def test_pages_answer_while_long_analyses_hold_the_heavy_threads(api: Api) -> None:
    engine = open_twin(api.settings)
    answers: dict[str, int] = {}

    def heavy(role: str) -> None:
        answers[role] = api.post("/processes/collision/execution", role, json=WHOLE_NETWORK).status_code

    held = [threading.Thread(target=heavy, args=(role,)) for role in ("editor", "approver")]
    try:
        with engine.connect() as lock:
            tx = lock.begin()
            lock.execute(sa.text("LOCK TABLE node IN ACCESS EXCLUSIVE MODE"))
            for t in held:
                t.start()
            wait_until(lambda: waiting_on_nodes(engine, api.settings.db_schema) == 2)
            assert api.client.app.state.heavy.busy() == 2
            # more pages than there are request threads, each at once: none waits behind the analyses
            for _ in range(4):
                t0 = time.monotonic()
                r = api.get("/collections/pipes/items", params={"limit": 5})
                assert r.status_code == 200 and time.monotonic() - t0 < DEADLINE_S, r.text
            # a third heavy run waits the deadline for a heavy thread, then is told to come back
            t0 = time.monotonic()
            r = api.post("/processes/collision/execution", "admin", json=WHOLE_NETWORK)
            waited = time.monotonic() - t0
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "OVERLOADED" and "TWIN_HEAVY_DEADLINE_S" in r.json()["description"]
            assert int(r.headers["retry-after"]) >= 1
            assert DEADLINE_S <= waited < DEADLINE_S + 5
            tx.rollback()
        for t in held:
            t.join(60)
        assert answers == {"editor": 200, "approver": 200}
        assert api.client.app.state.heavy.busy() == 0
        # the heavy threads are free again: a heavy run starts at once
        assert api.post("/processes/collision/execution", "admin", json=WHOLE_NETWORK).status_code == 200
    finally:
        engine.dispose()


def test_a_key_revoked_by_another_process_stops_working_within_seconds(api: Api) -> None:
    engine = open_twin(api.settings)
    try:
        with engine.begin() as conn:
            key = auth.create_api_key(conn, "viewer", "revoked elsewhere")
        me = {"X-API-Key": key}
        assert api.client.get("/me", headers=me).status_code == 200  # now kept by this process
        # another server process revokes it: this one's cache is not cleared by the change
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE api_key SET revoked_at = now() WHERE key_hash = :h"),
                         {"h": auth._key_hash(key)})
        t0 = time.monotonic()
        while api.client.get("/me", headers=me).status_code == 200:
            assert time.monotonic() - t0 < 2 * auth._TTL + 1, "the revoked key still works"
            time.sleep(0.05)
        assert api.client.get("/me", headers=me).status_code == 401
        # while nothing changes, a known user costs no look-up: the cache holds them
        assert api.get("/me").status_code == 200
        assert (id(api.client.app.state.engine), "name", "viewer") in auth._cache
    finally:
        engine.dispose()
