"""A closed database, on the real cluster: other local accounts cannot connect, the server's role
may only add to the audit log, the signing secret is a private file, statements time out.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import signing_secret
from api.jobs import JobResult
from twin.audit import record
from twin.db import make_engine, open_twin, unlimited_statements
from twin.errors import ConfigError, DatabaseError
from twin.pgcluster import APP_ROLE, HBA, local_cluster
from twin.secretfiles import secret
from twin.settings import TwinSettings, get_settings

LONG_SECRET = "s" * 32


def one_role(settings: TwinSettings) -> bool:
    """TWIN_DATABASE_URL alone: the server and the admin are one role, nothing to separate."""
    return make_engine(settings).url.username == make_engine(settings, admin=True).url.username


# ----------------------------------------------------------------------------- other accounts
def psql_as_nobody(host: str, port: int, user: str) -> subprocess.CompletedProcess[str]:
    cluster = local_cluster(get_settings())
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # no password from anywhere
    return subprocess.run(
        [shutil.which("runuser") or "runuser", "-u", "nobody", "--", str(cluster.bin / "psql"), "-X", "-w", "-h", host, "-p", str(port),
         "-U", user, "-d", "twin", "-c", "SELECT 1"],
        capture_output=True, text=True, env=env, cwd="/", stdin=subprocess.DEVNULL, timeout=30)


@pytest.mark.skipif(bool(os.environ.get("TWIN_DATABASE_URL")), reason="an external database: not ours to close")
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as nobody")
def test_other_local_accounts_cannot_connect(twin_engine: sa.Engine) -> None:
    pwd.getpwnam("nobody")
    cluster = local_cluster(get_settings())
    assert cluster.closed(), "pg_hba.conf still trusts someone: run `twin db start`"
    for host in ("127.0.0.1", str(cluster.socket_dir)):
        for user in (cluster.superuser, APP_ROLE):
            done = psql_as_nobody(host, cluster.port, user)
            assert done.returncode != 0, (host, user, done.stdout)
            assert ("password" in done.stderr or "Permission denied" in done.stderr), done.stderr
    # The same connection with the password works: it is the password that keeps nobody out.
    password = (cluster.secrets / f"{APP_ROLE}.pw").read_text().strip()
    ok = subprocess.run([str(cluster.bin / "psql"), "-X", "-w", "-h", "127.0.0.1", "-p", str(cluster.port),
                         "-U", APP_ROLE, "-d", "twin", "-tAc", "SELECT 1"],
                        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == "1", ok.stderr
    # Nor can they read the passwords, or enter the cluster's folders.
    assert stat.S_IMODE(cluster.secrets.stat().st_mode) == 0o700
    for f in (cluster.superuser_password_file, cluster.app_password_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    for folder in (cluster.root, cluster.socket_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.skipif(bool(os.environ.get("TWIN_DATABASE_URL")), reason="an external database: not ours to close")
def test_twin_db_start_closes_a_cluster_that_trusts_everyone() -> None:
    """A cluster as an older PipeTwin made it (trust, no password files) is closed by `twin db
    start`: its twins pass to the application role at once, and an engine made before goes on."""
    root = Path(tempfile.mkdtemp(prefix="pipetwin-trusting-", dir="/tmp"))
    root.chmod(0o755)  # the postgres user must reach the cluster below it
    settings = get_settings(data_dir=root, db_schema="trusting")
    cluster = local_cluster(settings)
    try:
        cluster.start()
        open_twin(settings).dispose()
        cluster._write_config_file("pg_hba.conf", HBA.replace("scram-sha-256", "trust"))
        cluster._pg("pg_ctl", "reload", "-D", str(cluster.data))
        cluster.superuser_password_file.unlink()
        cluster.app_password_file.unlink()
        deadline = time.monotonic() + 10
        while not cluster._lets_in(secrets.token_urlsafe(8)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not cluster.closed()
        before = make_engine(settings)  # the superuser, without a password: what trust allows
        assert before.url.username == cluster.superuser and before.url.password is None

        env = {**os.environ, "TWIN_DATA_DIR": str(root)}
        twin = str(Path(sys.executable).with_name("twin"))
        done = subprocess.run([twin, "db", "start"], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0 and "closed to other local accounts" in " ".join(done.stderr.split())
        again = subprocess.run([twin, "db", "start"], capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 0 and "closed" not in again.stderr
        assert cluster.closed() and not cluster._lets_in(secrets.token_urlsafe(8))

        with before.connect() as conn:  # a new connection: its password now comes from the file
            assert conn.execute(sa.text("SELECT current_user")).scalar() == cluster.superuser
        before.dispose()
        app = make_engine(settings)
        assert app.url.username == APP_ROLE
        with app.begin() as conn:  # the twin passed to the application role with the conversion
            record(conn, "tests", "admin", "after-closing")
            assert conn.execute(sa.text("SELECT pg_get_userbyid(relowner) FROM pg_class "
                                        "WHERE oid = to_regclass('segment')")).scalar() == APP_ROLE
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), app.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_log"))
        app.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- the audit log
@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET action = 'rewritten'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE audit_log ADD COLUMN note text",
    "DROP TABLE audit_log",
    "INSERT INTO audit_log (at, user_name, action) VALUES (now() - interval '1 year', 'x', 'backdated')",
    "INSERT INTO audit_log (id, user_name, action) VALUES (-1, 'x', 'chosen id')",
    "SELECT * FROM audit_log FOR UPDATE",
    "UPDATE alembic_version SET version_num = '0001'",
    "DROP SCHEMA {schema} CASCADE",
    "ALTER SCHEMA {schema} RENAME TO elsewhere",
    "CREATE SCHEMA elsewhere",
])
def test_the_server_role_may_only_add_to_the_audit_log(twin_settings: TwinSettings, twin_engine: sa.Engine,
                                                        statement: str) -> None:
    if one_role(twin_settings):
        pytest.skip("one role for the server and the admin (TWIN_DATABASE_URL alone)")
    with twin_engine.begin() as conn:
        record(conn, "tests", "admin", "kept")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"), \
            twin_engine.begin() as conn:
        conn.execute(sa.text(statement.format(schema=twin_settings.db_schema)))
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'kept'")).scalar() >= 1
        assert conn.execute(sa.text("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                                    "WHERE rolname = current_user")).scalar() is False


def test_the_server_role_owns_the_rest(twin_settings: TwinSettings, twin_engine: sa.Engine) -> None:
    """It keeps what imports need: its tables, their indexes and constraints, ANALYZE."""
    if one_role(twin_settings):
        pytest.skip("one role for the server and the admin (TWIN_DATABASE_URL alone)")
    with twin_engine.begin() as conn:
        owners = dict(conn.execute(sa.text(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind IN ('r', 'v')"),
            {"s": twin_settings.db_schema}).all())
        assert {t for t, o in owners.items() if o != APP_ROLE} == {"audit_log", "alembic_version"}
        conn.execute(sa.text("ANALYZE segment"))
        conn.execute(sa.text("CREATE INDEX segment_test_idx ON segment (material)"))
        conn.execute(sa.text("DROP INDEX segment_test_idx"))
        conn.execute(sa.text("UPDATE twin_meta SET value = value WHERE key = 'srid'"))


# ----------------------------------------------------------------------------- signing secret
def test_signing_secret_is_a_private_file_not_in_the_database(twin_settings: TwinSettings,
                                                              twin_engine: sa.Engine, tmp_path: Path) -> None:
    settings = get_settings(db_schema=twin_settings.db_schema, data_dir=tmp_path / "data", jwt_secret=None)
    old = os.umask(0)
    try:
        value = signing_secret(settings)
    finally:
        os.umask(old)
    path = tmp_path / "data" / "secrets" / "jwt.secret"
    assert path.read_text().strip() == value and len(value) >= 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert signing_secret(settings) == value  # every worker reads the same one
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('server_secret')")).scalar() is None
        secretive = conn.execute(sa.text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = :s "
            "AND (table_name ILIKE '%secret%' OR column_name ILIKE '%secret%')"),
            {"s": twin_settings.db_schema}).scalar()
    assert secretive == 0
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="other accounts"):
        signing_secret(settings)


def test_secret_files_agree_when_made_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: secret(tmp_path / "s" / "one.secret"), range(32)))
    assert len(values) == 1
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["one.secret"]


@pytest.mark.parametrize("given, ok", [("short", False), ("x" * 31, False), (LONG_SECRET, True)])
def test_a_short_jwt_secret_is_refused(tmp_path: Path, given: str, ok: bool) -> None:
    settings = get_settings(jwt_secret=given, data_dir=tmp_path)
    if ok:
        assert signing_secret(settings) == given
    else:
        with pytest.raises(ConfigError, match="at least 32"):
            signing_secret(settings)


# ----------------------------------------------------------------------------- statement timeout
def show_timeout(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SHOW statement_timeout")).scalar()


def test_statement_timeout_stops_the_server_engine_only(twin_settings: TwinSettings, twin_engine: sa.Engine) -> None:
    settings = get_settings(db_schema=twin_settings.db_schema, statement_timeout_s=0.3)
    engine = open_twin(settings, limit_statements=True)
    try:
        assert show_timeout(engine) == "300ms"
        started = time.monotonic()
        with pytest.raises(DatabaseError, match="longer than 0.3 s") as err, engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_sleep(5)"))
        assert err.value.code == "STATEMENT_TIMEOUT" and time.monotonic() - started < 3
        with unlimited_statements():  # a job: no limit, on the same pooled connections
            assert show_timeout(engine) == "0"
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_sleep(0.5)"))
        assert show_timeout(engine) == "300ms"
    finally:
        engine.dispose()
    assert show_timeout(twin_engine) == "0"  # the command line and the tests: unlimited


def test_the_api_engine_has_the_timeout_and_its_jobs_do_not(twin_settings: TwinSettings,
                                                             twin_engine: sa.Engine) -> None:
    settings = get_settings(db_schema=twin_settings.db_schema, jwt_secret=LONG_SECRET, statement_timeout_s=45)
    with TestClient(create_app(settings)) as client:
        app = client.app
        assert show_timeout(app.state.engine) == "45s"
        job_id = app.state.jobs.submit("timeout-probe", "tests", {}, lambda progress: JobResult(
            value={"timeout": show_timeout(app.state.engine)}), limited=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with twin_engine.connect() as conn:
                row = conn.execute(sa.text("SELECT status, result FROM job WHERE id = :i"), {"i": job_id}).one()
            if row.status in ("successful", "failed"):
                break
            time.sleep(0.05)
        assert row.status == "successful" and row.result == {"timeout": "0"}
        assert show_timeout(app.state.engine) == "45s"
