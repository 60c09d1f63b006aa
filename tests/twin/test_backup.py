"""Backup and restore of a twin on the real PostGIS: round trips, other schemas, bad archives,
private and encrypted files, and the audit log across a restore.

Every comparison is a fingerprint read back from the database: each table of the schema as
(row count, md5 of its rows as text), plus the segment ids and geometries checksum. The audit
log is compared apart: a restore adds its own entry and keeps the live log's newer ones.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from tests.conftest import SMALL, drop_schema
from twin.audit import record
from twin.backup import _connection, _pg_bin, backup, inspect_backup, restore
from twin.db import make_engine, open_twin
from twin.errors import ConfigError, DatabaseError, InputError, NotFound
from twin.sealed import MAGIC
from twin.settings import TwinSettings, get_settings

ROOT = Path(__file__).resolve().parents[2]
TWIN = str(Path(sys.executable).with_name("twin"))
LIVE = "test_backup_live"
OTHER = "test_backup_other"


def fingerprint(settings: TwinSettings) -> dict[str, object]:
    """Every table of the twin's schema as (rows, md5 of the rows), and the segment checksum."""
    engine = make_engine(settings)
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1"),
            {"s": settings.db_schema}).scalars().all()
        out: dict[str, object] = {}
        for t in tables:
            if t == "audit_log":  # a restore adds to it: see audit_entries()
                continue
            # The change counter (migration 0007) is meant to move on a restore: compared apart.
            where = " WHERE key <> 'changes'" if t == "twin_meta" else ""
            out[t] = tuple(conn.execute(sa.text(
                f'SELECT count(*), md5(string_agg(r::text, E\'\\n\' ORDER BY r::text)) FROM "{t}" r{where}')).one())
        out["segment_ids_geoms"] = conn.execute(sa.text(
            "SELECT md5(string_agg(id || ':' || encode(ST_AsEWKB(geom), 'hex'), ',' ORDER BY id)) "
            "FROM segment")).scalar()
    engine.dispose()
    return out


def audit_entries(settings: TwinSettings) -> list[tuple]:
    """The audit log, oldest first: (time, user, action, params)."""
    engine = make_engine(settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT at, user_name, action, params FROM audit_log ORDER BY id")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def changes(settings: TwinSettings) -> int:
    """The twin's change counter (migration 0007)."""
    engine = make_engine(settings)
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'changes'")).scalar()
    engine.dispose()
    return int(value)


def leftovers(settings: TwinSettings) -> list[str]:
    engine = make_engine(settings)
    with engine.connect() as conn:
        names = conn.execute(sa.text(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pipetwin_restore_%'")).scalars().all()
    engine.dispose()
    return names


@pytest.fixture(scope="module")
def live() -> Iterator[TwinSettings]:
    """A small twin with a history and a user of its own."""
    settings = get_settings(db_schema=LIVE)
    open_twin(get_settings()).dispose()
    drop_schema(settings)
    drop_schema(get_settings(db_schema=OTHER))
    assert ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", settings).status == "applied"
    engine = open_twin(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE segment SET owner = 'city water' WHERE id = (SELECT min(id) FROM segment)"))
        conn.execute(sa.text("INSERT INTO app_user (name, role, password_hash, created_by) "
                             "VALUES ('keeper', 'admin', NULL, 'tests')"))
    engine.dispose()
    yield settings
    drop_schema(settings)
    drop_schema(get_settings(db_schema=OTHER))


def change_everything(settings: TwinSettings) -> None:
    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE segment SET material = 'PVC' WHERE utility = 'JS'"))
        conn.execute(sa.text("DELETE FROM segment WHERE id = (SELECT max(id) FROM segment)"))
        conn.execute(sa.text("DELETE FROM valve"))
        conn.execute(sa.text("DELETE FROM app_user WHERE name = 'keeper'"))
        conn.execute(sa.text("INSERT INTO app_user (name, role, password_hash, created_by) "
                             "VALUES ('intruder', 'admin', NULL, 'tests')"))
    engine.dispose()


def test_round_trip_restores_network_history_and_users(live: TwinSettings, tmp_path: Path) -> None:
    before = fingerprint(live)
    assert before["segment_history"][0] >= 1 and before["app_user"][0] >= 1
    report = backup(live, tmp_path / "twin.dump")
    assert report["bytes"] > 0 and report["revision"] and report["segments"] == before["segment"][0]
    assert not (tmp_path / "twin.dump.partial").exists()

    change_everything(live)
    changed = fingerprint(live)
    changes_before_restore = changes(live)
    for table in ("segment", "segment_history", "valve", "valve_history", "app_user", "segment_ids_geoms"):
        assert changed[table] != before[table], table

    result = restore(live, tmp_path / "twin.dump")
    assert result["segments"] == before["segment"][0]
    assert fingerprint(live) == before
    # Running servers see the restore as a change: the counter moved past the live one's.
    assert changes(live) > changes_before_restore
    assert leftovers(live) == []

    # The restored twin still versions its features and reads its past.
    engine = make_engine(live)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE segment SET road = 'restored road' WHERE id = (SELECT min(id) FROM segment)"))
        assert conn.execute(sa.text("SELECT count(*) FROM segment_history")).scalar() == before["segment_history"][0] + 1
        assert conn.execute(sa.text("SELECT count(*) FROM segment_as_of(now() - interval '1 hour')")).scalar() == 0
    engine.dispose()
    restore(live, tmp_path / "twin.dump")
    assert fingerprint(live) == before


def test_restore_into_another_schema_leaves_the_source_alone(live: TwinSettings, tmp_path: Path) -> None:
    other = get_settings(db_schema=OTHER)
    drop_schema(other)
    backup(live, tmp_path / "live.dump")
    source = fingerprint(live)
    report = restore(other, tmp_path / "live.dump")
    assert report["from_schema"] == LIVE and report["schema"] == OTHER
    copied = fingerprint(other)
    assert copied == source
    assert fingerprint(live) == source  # the archive's own schema stepped aside and came back
    # Restoring again over the copy replaces it.
    change_everything(other)
    restore(other, tmp_path / "live.dump")
    assert fingerprint(other) == source
    assert leftovers(live) == []


@pytest.mark.parametrize("content", [b"", b"garbage " * 1000, b"PGDMP" + b"\x00" * 200])
def test_garbage_is_refused_and_the_twin_untouched(live: TwinSettings, tmp_path: Path, content: bytes) -> None:
    before = fingerprint(live)
    bad = tmp_path / "bad.dump"
    bad.write_bytes(content)
    with pytest.raises(InputError, match="not a PipeTwin backup"):
        restore(live, bad)
    assert fingerprint(live) == before
    with pytest.raises(NotFound, match="no backup file"):
        restore(live, tmp_path / "missing.dump")


def test_failure_midway_rolls_back(live: TwinSettings, tmp_path: Path) -> None:
    """An archive whose segment rows break a CHECK constraint fails inside the transaction,
    after the live schema was renamed and most tables restored: nothing of it remains."""
    backup(live, tmp_path / "good.dump")
    archive = tmp_path / "plain.dump"
    backup(live, archive, compress_level=0)  # uncompressed: the COPY rows are visible bytes
    data = archive.read_bytes()
    assert data.count(b"\tactive\t") >= 1
    archive.write_bytes(data.replace(b"\tactive\t", b"\tbroken\t"))
    inspect_backup(live, archive)  # the table of contents and the revision still read fine

    change_everything(live)
    before = fingerprint(live)
    with pytest.raises(DatabaseError, match="rolled back") as err:
        restore(live, archive)
    assert "segment_status_check" in str(err.value) or "check constraint" in str(err.value)
    assert fingerprint(live) == before
    assert leftovers(live) == []
    restore(live, tmp_path / "good.dump")


def test_newer_revision_and_other_crs_are_refused(live: TwinSettings, tmp_path: Path) -> None:
    other = get_settings(db_schema=OTHER)
    drop_schema(other)
    backup(live, tmp_path / "live.dump")
    restore(other, tmp_path / "live.dump")
    engine = make_engine(other, admin=True)  # the application role may only read the revision
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    backup(other, tmp_path / "future.dump")
    before = fingerprint(live)
    with pytest.raises(InputError, match="revision 9999.*newer") as err:
        restore(live, tmp_path / "future.dump")
    assert err.value.code == "BACKUP_TOO_NEW"
    with pytest.raises(ConfigError, match="EPSG:4548 but TWIN_CRS is EPSG:4549"):
        restore(get_settings(db_schema=LIVE, crs="EPSG:4549"), tmp_path / "live.dump")
    assert fingerprint(live) == before
    drop_schema(other)


def test_archive_of_something_else_is_refused(live: TwinSettings, tmp_path: Path) -> None:
    other = get_settings(db_schema=OTHER)
    drop_schema(other)
    engine = make_engine(other, admin=True)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{OTHER}"'))
        conn.execute(sa.text(f'CREATE TABLE "{OTHER}".notes (id int)'))
    engine.dispose()
    with pytest.raises(NotFound, match="no twin in schema"):
        backup(other, tmp_path / "notes.dump")
    # A plain pg_dump of a schema that is not a twin.
    uri, env = _connection(other)
    subprocess.run([str(_pg_bin(other) / "pg_dump"), "-Fc", f"--schema={OTHER}", "-f", str(tmp_path / "notes.dump"),
                    uri], check=True, env=env)
    before = fingerprint(live)
    with pytest.raises(InputError, match="no alembic_version or twin_meta"):
        restore(live, tmp_path / "notes.dump")
    assert fingerprint(live) == before
    drop_schema(other)


def run_twin(*args: str, schema: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TWIN_DB_SCHEMA": schema, "COLUMNS": "200", **extra}
    done = subprocess.run([TWIN, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
                          stdin=subprocess.DEVNULL)
    done.stderr = " ".join(done.stderr.split())  # rich wraps long lines
    return done


def test_cli_backup_and_restore(live: TwinSettings, tmp_path: Path) -> None:
    before = fingerprint(live)
    out = run_twin("backup", str(tmp_path / "cli.dump"), schema=LIVE)
    assert out.returncode == 0, out.stderr
    assert "backed up" in out.stderr and (tmp_path / "cli.dump").is_file()
    change_everything(live)
    # Without --yes and nobody to answer, nothing happens.
    refused = run_twin("restore", str(tmp_path / "cli.dump"), schema=LIVE)
    assert refused.returncode != 0 and fingerprint(live) != before
    done = run_twin("restore", str(tmp_path / "cli.dump"), "--yes", schema=LIVE)
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stderr and fingerprint(live) == before
    (tmp_path / "junk.dump").write_text("not an archive")
    junk = run_twin("restore", str(tmp_path / "junk.dump"), "--yes", schema=LIVE)
    assert junk.returncode == 2 and "not a PipeTwin backup" in junk.stderr
    assert fingerprint(live) == before


# ----------------------------------------------------------------------------- private files
def test_backup_is_private_from_its_creation(live: TwinSettings, tmp_path: Path) -> None:
    """0600 even under a umask that would make files world-writable; pg_dump never creates it."""
    old = os.umask(0)
    try:
        report = backup(live, tmp_path / "open-umask.dump")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "open-umask.dump").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert report["encrypted"] is False


PASSPHRASE = "correct horse battery staple"


def test_encrypted_backup_round_trips_and_refuses_a_wrong_passphrase(live: TwinSettings, tmp_path: Path) -> None:
    before = fingerprint(live)
    sealed = tmp_path / "sealed.dump"
    report = backup(live, sealed, passphrase=PASSPHRASE, compress_level=0)
    data = sealed.read_bytes()
    assert report["encrypted"] and data.startswith(MAGIC)
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    # Uncompressed, the plain archive would show its rows; the sealed one shows none.
    assert b"PGDMP" not in data and b"keeper" not in data and b"alembic_version" not in data

    with pytest.raises(InputError, match="encrypted backup") as err:
        inspect_backup(live, sealed)
    assert err.value.code == "PASSPHRASE_NEEDED"
    with pytest.raises(InputError, match="wrong passphrase") as err:
        restore(live, sealed, passphrase="not the passphrase")
    assert err.value.code == "WRONG_PASSPHRASE"
    info = inspect_backup(live, sealed, passphrase=PASSPHRASE)
    assert info.encrypted and info.schema == LIVE and info.revision == report["revision"]

    change_everything(live)
    restore(live, sealed, passphrase=PASSPHRASE)
    assert fingerprint(live) == before

    # A sealed archive changed or cut short is refused, and the twin stays as it was.
    for name, damaged in (("flipped", data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]),
                          ("cut", data[: len(data) // 2])):
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(InputError, match="damaged|cut short"):
            restore(live, tmp_path / name, passphrase=PASSPHRASE)
        assert fingerprint(live) == before
    assert leftovers(live) == []


def test_restore_audits_itself_and_keeps_the_newer_entries(live: TwinSettings, tmp_path: Path) -> None:
    """The restored log is the backup's, then the live entries made after it (times kept),
    then the restore's own entry; nothing of the live log is lost."""
    engine = make_engine(live)
    with engine.begin() as conn:
        record(conn, "before-backup", "admin", "user-add", params={"name": "x"})
    backed_up = audit_entries(live)
    backup(live, tmp_path / "audit.dump")
    with engine.begin() as conn:
        record(conn, "after-backup", "editor", "edit", affected=["JS1"])
        record(conn, "after-backup", "approver", "proposal-approve", params={"proposal": 7})
    engine.dispose()
    live_log = audit_entries(live)
    newer = live_log[len(backed_up):]
    assert [e[2] for e in newer] == ["edit", "proposal-approve"]

    restore(live, tmp_path / "audit.dump")
    restored = audit_entries(live)
    assert restored[: len(live_log)] == live_log  # the backup's entries, then the newer ones, as they were
    assert len(restored) == len(live_log) + 1
    at, user, action, params = restored[-1]
    assert action == "restore" and user == live.user_name
    assert params["file"] == str((tmp_path / "audit.dump").resolve())
    assert params["carried_over"] == 2 and params["backup_schema"] == LIVE
    assert params["backup_created"] and params["backup_revision"] and params["encrypted"] is False
    assert at > live_log[-1][0]

    # Restoring the same backup again keeps everything once, and adds one more restore entry.
    restore(live, tmp_path / "audit.dump")
    again = audit_entries(live)
    assert again[: len(restored)] == restored and len(again) == len(restored) + 1
    assert again[-1][3]["carried_over"] == 3  # the two newer entries and the first restore's


def test_restored_twin_keeps_the_audit_log_insert_only(live: TwinSettings, tmp_path: Path) -> None:
    """A restore recreates the audit log as the admin's, the server's role may only add to it."""
    if make_engine(live).url.username == make_engine(live, admin=True).url.username:
        pytest.skip("one role for the server and the admin (TWIN_DATABASE_URL alone)")
    backup(live, tmp_path / "grants.dump")
    restore(live, tmp_path / "grants.dump")
    engine = make_engine(live)
    with engine.begin() as conn:
        record(conn, "tests", "admin", "after-restore")
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_cli_encrypted_backup_and_restore(live: TwinSettings, tmp_path: Path) -> None:
    before = fingerprint(live)
    out = run_twin("backup", str(tmp_path / "cli.sealed"), "--encrypt", schema=LIVE,
                   TWIN_BACKUP_PASSPHRASE=PASSPHRASE)
    assert out.returncode == 0, out.stderr
    assert "(encrypted)" in out.stderr and (tmp_path / "cli.sealed").read_bytes().startswith(MAGIC)
    change_everything(live)
    wrong = run_twin("restore", str(tmp_path / "cli.sealed"), "--yes", schema=LIVE,
                     TWIN_BACKUP_PASSPHRASE="a wrong passphrase")
    assert wrong.returncode == 2 and "WRONG_PASSPHRASE" in wrong.stderr and "Traceback" not in wrong.stderr
    done = run_twin("restore", str(tmp_path / "cli.sealed"), "--yes", schema=LIVE,
                    TWIN_BACKUP_PASSPHRASE=PASSPHRASE)
    assert done.returncode == 0, done.stderr
    assert fingerprint(live) == before
    entry = audit_entries(live)[-1]
    assert entry[2] == "restore" and entry[3]["encrypted"] is True
    assert json.dumps(entry[3]).count(PASSPHRASE) == 0
