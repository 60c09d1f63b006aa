"""Read replicas: a real hot standby made by `twin db replica start`, its lag, the read router.

The standby is of a small primary of the test process's own (initdb in a temporary folder):
a base backup of the shared test cluster would copy every schema on it (gigabytes on a
developer's machine), and a standby shared by xdist workers could not be stopped by one of
them. Both the primary and the standby are made once per test process, shared with
tests/api/test_replica_api.py, and removed (standby, slot, folders) when the session ends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from twin.cli import app as cli
from twin.db import make_engine, open_twin
from twin.pgcluster import Cluster, Standby, local_cluster, local_standby
from twin.replicas import ReadRouter, read_attempt
from twin.settings import TwinSettings, get_settings

_PAIR: list[Pair] = []


@dataclass
class Pair:
    """A primary of this test process's own with a migrated twin, and its running standby."""

    settings: TwinSettings
    cluster: Cluster
    standby: Standby

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes `twin` commands use this pair."""
        return {"TWIN_DATA_DIR": str(self.settings.data_dir), "TWIN_PG_PORT": str(self.cluster.port),
                "TWIN_DB_SCHEMA": self.settings.db_schema, "TWIN_DATABASE_URL": "",
                "TWIN_READ_DATABASE_URLS": "[]"}

    def standby_sql(self, query: str) -> object:
        """One value from ``query`` run on the standby as the superuser."""
        with psycopg.connect(host="127.0.0.1", port=self.standby.port, user=self.cluster.superuser,
                             password=self.cluster.password(self.cluster.superuser), dbname="twin",
                             autocommit=True) as conn:
            return conn.execute(query).fetchone()[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def standby_pair(request: pytest.FixtureRequest) -> Pair:
    """The test process's primary + standby, made on first use (about 10-15 s)."""
    if _PAIR:
        return _PAIR[0]
    # The cluster's system user (postgres, when root) must reach the folder: traversable, not listable.
    base = Path(tempfile.mkdtemp(prefix="twin-replica-test-"))
    os.chmod(base, 0o711)
    settings = get_settings(data_dir=base, pg_port=_free_port(), db_schema="twin", database_url=None,
                            read_database_urls=[], live_subscriber=False)
    cluster = local_cluster(settings)
    standby = local_standby(settings, cluster)

    def remove() -> None:
        try:
            standby.stop(drop=True)
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)

    request.config.add_cleanup(remove)
    cluster.start()
    cluster.close()
    open_twin(settings).dispose()
    standby.start()
    _PAIR.append(Pair(settings, cluster, standby))
    return _PAIR[0]


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> Pair:
    return standby_pair(request)


@pytest.fixture(scope="module")
def primary(pair: Pair) -> sa.Engine:
    engine = make_engine(pair.settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def replica(pair: Pair) -> sa.Engine:
    engine = make_engine(pair.settings.model_copy(update={"database_url": pair.standby.url}))
    yield engine
    engine.dispose()


def test_the_standby_streams_is_read_only_and_its_lag_is_bounded(pair: Pair, primary, replica):
    """A row written on the primary is on the standby within a bounded time (measured)."""
    with primary.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS lag_probe (n int, at timestamptz)"))
    deadline = time.monotonic() + 10
    with replica.connect() as conn:  # the table itself first
        while conn.execute(sa.text("SELECT to_regclass('lag_probe')")).scalar() is None:
            assert time.monotonic() < deadline, "the standby did not replay the CREATE TABLE"
            time.sleep(0.005)
            conn.rollback()
    lags = []
    for n in range(5):
        with primary.begin() as conn:
            conn.execute(sa.text("INSERT INTO lag_probe VALUES (:n, now())"), {"n": n})
        t0 = time.perf_counter()
        with replica.connect() as conn:
            while not conn.execute(sa.text("SELECT count(*) FROM lag_probe WHERE n = :n"), {"n": n}).scalar():
                assert time.perf_counter() - t0 < 10, "the standby did not replay a commit within 10 s"
                time.sleep(0.001)
                conn.rollback()
        lags.append(time.perf_counter() - t0)
    print(f"replication lag (commit on the primary -> visible on the standby): "
          f"median {sorted(lags)[2] * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms")
    assert max(lags) < 5.0  # milliseconds on a quiet machine; seconds only under heavy load
    with replica.connect() as conn, pytest.raises(sa.exc.InternalError, match="read-only"):
        conn.execute(sa.text("INSERT INTO lag_probe VALUES (99, now())"))
    assert pair.standby_sql("SELECT pg_is_in_recovery()") is True
    deadline = time.monotonic() + 10
    while not (status := pair.standby.status())["streaming"]:  # catching up after a busy start
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["running"], status
    assert 0 <= status["lag_bytes"] < 16 * 2**20 and 0 <= status["lag_s"] < 10, status


def test_the_replica_commands(pair: Pair):
    """start is idempotent; status --json gives the lag; url has no password; no slot leaks."""
    runner = CliRunner()
    r = runner.invoke(cli, ["db", "replica", "start"], env=pair.env)
    assert r.exit_code == 0, r.output
    assert "already running" in r.output and str(pair.standby.port) in r.output
    r = runner.invoke(cli, ["db", "replica", "status", "--json"], env=pair.env)
    assert r.exit_code == 0, r.output
    status = json.loads(r.stdout)
    assert status["streaming"] and status["slot"] == pair.standby.slot and status["lag_bytes"] >= 0
    r = runner.invoke(cli, ["db", "replica", "url"], env=pair.env)
    url = r.stdout.strip()
    assert url == f"postgresql+psycopg://twin_app@127.0.0.1:{pair.standby.port}/twin"
    password = pair.cluster.password("twin_app")
    assert password not in r.output
    # The passwords stay private: the standby's passfile and folder are the cluster user's alone.
    assert oct(pair.standby.passfile.stat().st_mode & 0o777) == "0o600"
    assert oct(pair.standby.root.stat().st_mode & 0o777) == "0o700"
    assert password not in (pair.standby.data / "postgresql.auto.conf").read_text()
    with psycopg.connect(pair.cluster.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        slots = conn.execute("SELECT slot_name, active FROM pg_replication_slots").fetchall()
    assert slots == [(pair.standby.slot, True)]


def test_reads_wait_for_the_users_own_write(pair: Pair, primary, replica):
    """With replay paused, the writer reads from the primary, others from the replica; once the
    replica has replayed the write, the writer reads there too."""
    router = ReadRouter(primary, [("standby", replica)], wait_s=0.02)
    assert router.engine_for("someone") is replica
    pair.standby_sql("SELECT pg_wal_replay_pause()")
    try:
        while pair.standby_sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            time.sleep(0.005)
        with primary.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS ryw (n int)"))
            conn.execute(sa.text("INSERT INTO ryw VALUES (1)"))
        router.note_write("writer")
        t0 = time.perf_counter()
        assert router.engine_for("writer") is primary
        assert 0.015 < time.perf_counter() - t0 < 2  # it waited for the replica, then gave up
        assert router.engine_for("someone") is replica
    finally:
        pair.standby_sql("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 5
    while router.engine_for("writer") is not replica:
        assert time.monotonic() < deadline, "the writer never went back to the replica"
    with router.engine_for("writer").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ryw")).scalar() == 1


def test_a_replica_that_fails_is_marked_down_and_skipped(pair: Pair, primary, replica):
    """Nothing listens at the second replica's port: the read using it fails once, is flagged
    for a retry, and later reads skip it while the good one keeps serving."""
    dead = make_engine(pair.settings.model_copy(update={
        "database_url": pair.standby.url.replace(f":{pair.standby.port}/", f":{_free_port()}/")}))
    router = ReadRouter(primary, [("dead", dead), ("standby", replica)], down_s=30)
    try:
        chosen = []
        for _ in range(2):
            with read_attempt() as attempt:
                engine = router.engine_for(None)
                chosen.append(engine)
                if engine is dead:
                    with pytest.raises(sa.exc.OperationalError):
                        dead.connect()
                    assert attempt.failed
        assert dead in chosen  # round robin reached it
        assert not router.status()[0]["up"] and router.status()[1]["up"]
        assert {router.engine_for(None) for _ in range(6)} == {replica}
        with read_attempt(primary_only=True):
            assert router.engine_for(None) is primary
    finally:
        dead.dispose()
