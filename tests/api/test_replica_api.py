"""The server on a primary and a real hot standby: reads on the replica, a user's own writes seen
at once, and a standby stopped under a load of reads costs no 5xx.

The primary + standby pair is the test process's own (see tests/twin/test_replica.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.app import create_app
from api.auth import add_user
from ingest.pipeline import ingest_survey
from tests.api.conftest import ALLOWED_HOSTS, JWT_SECRET, ROLES, Api, password, sign_in
from tests.conftest import SMALL
from tests.twin.test_replica import Pair, standby_pair
from twin.db import open_twin
from twin.replicas import replica_engines

PIPE = "/collections/pipes/items/JS1-JS2"


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    pair = standby_pair(request)
    settings = pair.settings.model_copy(update={
        "jwt_secret": JWT_SECRET, "allowed_hosts": ALLOWED_HOSTS,
        "tiles_dir": tmp_path_factory.mktemp("replica_tiles")})
    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", settings)
    assert report.status == "applied", report
    engine = open_twin(settings)
    with engine.begin() as conn:
        for role in ROLES:
            add_user(conn, role, role, password(role), by="tests")
    engine.dispose()
    return Pair(settings, pair.cluster, pair.standby)


@pytest.fixture(scope="module")
def api(pair: Pair) -> Iterator[Api]:
    assert not pair.settings.read_database_urls  # the local standby is found as it runs
    with TestClient(create_app(pair.settings)) as client:
        yield Api(client, pair.settings, {role: sign_in(client, role) for role in ROLES})


def _replica_reads(api: Api) -> Counter:
    """Counts the connections the app's replica engine hands out (reads served there)."""
    counts: Counter = Counter()
    (replica,) = api.client.app.state.reads.replicas
    event.listen(replica.engine, "checkout", lambda *a: counts.update(["reads"]))
    return counts


def _owner(api: Api, role: str) -> str | None:
    r = api.get(PIPE, role)
    assert r.status_code == 200, r.text
    return r.json()["properties"]["owner"]


def test_a_user_reads_their_own_write_at_once_others_read_the_replica(api: Api, pair: Pair):
    counts = _replica_reads(api)
    before = _owner(api, "viewer")
    assert counts["reads"] >= 1  # reads go to the standby
    pair.standby_sql("SELECT pg_wal_replay_pause()")
    try:
        while pair.standby_sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            time.sleep(0.005)
        r = api.request("PATCH", "/edit/segments/JS1-JS2", "editor", json={"attributes": {"owner": "复本测试"}})
        assert r.status_code == 200, r.text
        assert _owner(api, "editor") == "复本测试"  # the writer: from the primary, replay is paused
        assert _owner(api, "viewer") == before  # everyone else: from the (paused) standby
    finally:
        pair.standby_sql("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 10
    while _owner(api, "viewer") != "复本测试":
        assert time.monotonic() < deadline, "the standby never replayed the edit"
        time.sleep(0.01)
    reads = counts["reads"]
    assert _owner(api, "editor") == "复本测试"
    assert counts["reads"] > reads  # the writer is back on the replica once it has replayed


def test_a_standby_stopped_under_load_costs_no_5xx(api: Api, pair: Pair):
    counts = _replica_reads(api)
    statuses: Counter = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            r = api.get("/collections/pipes/items?limit=20", "viewer")
            statuses[r.status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while counts["reads"] < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        on_replica = counts["reads"]
        pair.standby.stop()
        served = sum(statuses.values())
        while sum(statuses.values()) < served + 8 and time.monotonic() < deadline + 10:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        pair.standby.start()  # for the other tests of this process
    assert on_replica > 0
    assert sum(statuses.values()) >= served + 8  # reads went on, on the primary
    assert set(statuses) == {200}, statuses
    router = api.client.app.state.reads
    assert not router.status()[0]["up"]
    assert router.retries >= 1  # the reads the stop caught on the replica ran again on the primary


def test_the_setting_lists_replicas(pair: Pair):
    """TWIN_READ_DATABASE_URLS (here the standby twice): one engine each, round robin."""
    settings = pair.settings.model_copy(update={"read_database_urls": [pair.standby.url] * 2})
    engines = replica_engines(settings)
    try:
        assert len(engines) == 2 and all(f":{pair.standby.port}/" in str(e.url) for _, e in engines)
        assert all("***" in name for name, _ in engines)  # no password in names (logs)
        for _, e in engines:
            with e.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_is_in_recovery()")).scalar() is True
    finally:
        for _, e in engines:
            e.dispose()
