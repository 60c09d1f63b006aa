"""Backup and restore of the twin: ``pg_dump`` / ``pg_restore`` of its schema.

A backup is a PostgreSQL custom-format archive (``pg_dump -Fc -n <schema>``) of the twin's
schema only: the network, its history, batches, proposals and the server's tables (users,
keys, audit log, jobs). PostGIS lives in ``public`` and is not part of it. The dump is one
consistent snapshot even while the twin is in use.

A restore replaces the twin atomically. ``pg_restore`` turns the archive into SQL, which is
fed to one ``psql`` session inside one transaction::

    BEGIN;
    ALTER SCHEMA <twin> RENAME TO <old>;          -- the live twin steps aside
    <the archive's SQL: CREATE SCHEMA <dumped>, tables, data, indexes>
    ALTER SCHEMA <dumped> RENAME TO <twin>;       -- when the backup came from another schema
    DROP SCHEMA <old> CASCADE;
    COMMIT;                                        -- sent only when pg_restore succeeded

Other sessions see the old twin until the commit and the restored one after it. If
``pg_restore`` fails (a damaged archive), ``psql`` is killed before ``COMMIT`` and PostgreSQL
rolls the transaction back; if any statement fails, ``ON_ERROR_STOP`` ends the session the
same way: either way the previous twin is untouched. Renaming a schema keeps its objects'
identities (views, triggers and defaults refer to tables by OID, and the twin's SQL
functions name their tables unqualified), so a backup restores into any schema name. Before
anything is touched the archive is checked: one schema, a twin's ``alembic_version`` no newer
than this code's migrations, and the twin's CRS. An older backup is migrated after restoring.

The archive file is the twin's whole content, users and audit log included: it is created
0600 (only this account may read it) before the first byte is written, whatever the umask.
With a passphrase it is sealed (:mod:`twin.sealed`: scrypt and AES-256-GCM in chunks, so the
dump streams through and is never held in memory); a restore recognises a sealed archive and
streams it, decrypted, into ``pg_restore`` (nothing decrypted is written to disk).

A restore never loses an audit entry: inside its transaction, the live log's entries that the
backup lacks (matched on id and time: normally those made after the backup) are carried over
into the restored log in time order, then the restore adds its own entry (who, which file, the
backup's time and revision, how many entries were carried over). The restored twin is left as
the application role may use it (:func:`twin.roles.privileges_sql`), also inside the transaction.

Backup and restore connect as the admin role (``TWIN_DATABASE_ADMIN_URL``, the private
cluster's superuser): it owns the schema and the audit log, which the application role cannot
replace. The client tools must match the server: the private cluster's own ``bin`` folder is
used; for ``TWIN_DATABASE_URL`` the newest tools not older than the server are.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from twin.audit import COMMAND_ROLE
from twin.crs import twin_crs
from twin.db import MIGRATIONS, app_role, current_revision, make_engine, upgrade
from twin.errors import ConfigError, DatabaseError, InputError, NotFound
from twin.pgcluster import database_url, local_cluster, postgis_install_hint
from twin.roles import privileges_sql
from twin.sealed import SealedWriter, Unsealer, is_sealed
from twin.secretfiles import create_private
from twin.settings import TwinSettings

__all__ = ["BackupInfo", "backup", "restore", "inspect_backup", "is_sealed"]

#: progress(message): what a backup or restore is doing now.
Status = Callable[[str], None]

_CHUNK = 1 << 16
_LOCK_TIMEOUT = "60s"


@dataclass
class BackupInfo:
    """What an archive holds, read before restoring it."""

    path: str
    schema: str
    revision: str
    srid: int | None
    created: str | None
    server_version: str | None
    tables: list[str] = field(default_factory=list)
    bytes: int = 0
    encrypted: bool = False


@dataclass
class _Archive:
    """An archive file, and the key to read it when it is sealed."""

    path: Path
    unsealer: Unsealer | None = None


def _open_archive(path: Path | str, passphrase: str | None) -> _Archive:
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"no backup file {p}", zh=f"没有备份文件 {p}")
    if not is_sealed(p):
        return _Archive(p)
    if not passphrase:
        raise InputError(f"{p} is an encrypted backup: give its passphrase (TWIN_BACKUP_PASSPHRASE, "
                         "or at the prompt)", code="PASSPHRASE_NEEDED",
                         zh=f"{p} 是加密备份：请给出其口令（TWIN_BACKUP_PASSPHRASE，或在提示时输入）")
    return _Archive(p, Unsealer(p, passphrase))


# ----------------------------------------------------------------------------- tools
def _server_major(settings: TwinSettings) -> int:
    engine = make_engine(settings, admin=True)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SHOW server_version_num")).scalar()) // 10000
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {exc.orig}",
                            zh=f"无法连接数据库：{exc.orig}") from exc
    finally:
        engine.dispose()


def _pg_bin(settings: TwinSettings) -> Path:
    """The folder of pg_dump, pg_restore and psql matching the server's major version."""
    if not settings.database_url:
        cluster = local_cluster(settings)
        cluster.start()
        return cluster.bin
    major = _server_major(settings)
    candidates = [settings.pg_bin] if settings.pg_bin else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = shutil.which("pg_dump")
    if found:
        candidates.append(Path(found).resolve().parent)
    for c in candidates:
        if not c or not all((c / t).exists() for t in ("pg_dump", "pg_restore", "psql")):
            continue
        version = subprocess.run([str(c / "pg_dump"), "--version"], capture_output=True, text=True).stdout
        m = re.search(r"(\d+)(?:\.\d+)?", version)
        if m and int(m.group(1)) >= major:
            return c
    raise ConfigError(f"no pg_dump/pg_restore/psql of PostgreSQL {major} or newer found; install them "
                      f"with: {postgis_install_hint()} (or set TWIN_PG_BIN)",
                      zh=f"找不到 PostgreSQL {major} 或更新版本的 pg_dump/pg_restore/psql；安装方法：{postgis_install_hint()}"
                      "（或设置 TWIN_PG_BIN）")


def _connection(settings: TwinSettings) -> tuple[str, dict[str, str]]:
    """The admin role's libpq URI for the tools, and their environment (the password goes there,
    not argv)."""
    url = sa.engine.make_url(database_url(settings, admin=True))
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    env.pop("PGOPTIONS", None)
    uri = url._replace(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _quoted(name: str) -> str:
    if not name.isidentifier():
        raise ConfigError(f"schema name {name!r} is not a plain identifier",
                          zh=f"模式名 {name!r} 不是普通标识符")
    return '"' + name + '"'


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


# ----------------------------------------------------------------------------- backup
def backup(settings: TwinSettings, path: Path | str, *, progress: Status | None = None,
           compress_level: int | None = None, passphrase: str | None = None) -> dict:
    """Write a custom-format archive of the twin's schema to ``path``; returns a report.

    The file is 0600 from its creation, sealed with ``passphrase`` when one is given, and
    appears under ``path`` only once complete (written beside it, then renamed).
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{out} is a folder; name the backup file",
                         zh=f"{out} 是文件夹；请指定备份文件名")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist", zh=f"文件夹 {out.parent} 不存在")
    bin_dir = _pg_bin(settings)
    revision, segments = _twin_state(settings)
    uri, env = _connection(settings)
    partial = out.with_name(out.name + ".partial")
    args = [str(bin_dir / "pg_dump"), "--format=custom", "--verbose", f"--schema={_quoted(settings.db_schema)}",
            f"--dbname={uri}"]
    if compress_level is not None:
        args.append(f"--compress={int(compress_level)}")
    say(f"dumping schema {settings.db_schema}")
    partial.unlink(missing_ok=True)  # left by a run that was killed
    fd = create_private(partial)
    try:
        if passphrase is None:
            os.close(fd)  # pg_dump rewrites the file in place: it stays 0600
            tables = _pg_dump([*args, f"--file={partial}"], env, say, None)
        else:
            with os.fdopen(fd, "wb") as f:
                tables = _pg_dump(args, env, say, SealedWriter(f, passphrase))
                f.flush()
                os.fsync(f.fileno())
        archive = _Archive(partial, Unsealer(partial, passphrase) if passphrase is not None else None)
        info = _inspect(settings, archive, bin_dir)  # the archive reads back
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    return {"path": str(out), "bytes": out.stat().st_size, "schema": settings.db_schema,
            "revision": info.revision, "tables": tables, "segments": int(segments),
            "encrypted": passphrase is not None, "seconds": round(time.perf_counter() - started, 3)}


def _segment_count(settings: TwinSettings) -> int:
    """The live segments, counted as the application role: ``current_segment`` is a view the
    application role owns, and the superuser must not run code that role could have put there."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar())
    finally:
        engine.dispose()


def _twin_state(settings: TwinSettings) -> tuple[str, int]:
    """The twin's revision and its number of segments; NotFound when there is no twin."""
    engine = make_engine(settings, admin=True)
    try:
        with engine.connect() as conn:
            revision = current_revision(conn, settings)
        segments = _segment_count(settings) if revision else 0
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {exc.orig}",
                            zh=f"无法连接数据库：{exc.orig}") from exc
    finally:
        engine.dispose()
    if revision is None:
        raise NotFound(f"there is no twin in schema {settings.db_schema!r} to back up",
                       zh=f"模式 {settings.db_schema!r} 中没有可备份的孪生库")
    return revision, int(segments)


def _pg_dump(args: list[str], env: dict[str, str], say: Status, sealer: SealedWriter | None) -> int:
    """Run pg_dump, reporting the tables it dumps; with ``sealer`` its output is sealed as it
    streams. Returns the number of tables."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE if sealer else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    failures: list[BaseException] = []
    copier = None
    if sealer is not None:
        copier = threading.Thread(target=_seal_stream, args=(proc.stdout, sealer, failures), daemon=True)
        copier.start()
    tail: list[str] = []
    tables = 0
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        tail = (tail + [line])[-20:]
        m = re.search(r'dumping contents of table "?([^"]+)"?', line)
        if m:
            tables += 1
            say(f"dumping {m.group(1)}")
    code = proc.wait()
    if copier is not None:
        copier.join()
    if code != 0:
        errors = [t for t in tail if "error" in t.lower()] or tail[-3:]
        raise DatabaseError("pg_dump failed: " + " ".join(errors),
                            zh="pg_dump 失败：" + " ".join(errors))
    if failures:
        raise failures[0]
    return tables


def _seal_stream(source: IO[bytes], sealer: SealedWriter, failures: list[BaseException]) -> None:
    try:
        while chunk := source.read(_CHUNK):
            sealer.write(chunk)
        sealer.close()
    except BaseException as exc:  # reported by the caller, in its thread
        failures.append(exc)
        source.close()  # pg_dump stops at a broken pipe


class _PgRestore:
    """``pg_restore`` reading an archive: the file itself, or its decrypted content through stdin."""

    def __init__(self, bin_dir: Path, args: list[str], archive: _Archive, *, stdout: object,
                 stderr: object, env: dict[str, str] | None = None) -> None:
        sealed = archive.unsealer is not None
        command = [str(bin_dir / "pg_restore"), *args, *([] if sealed else [str(archive.path)])]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE if sealed else subprocess.DEVNULL,
                                     stdout=stdout, stderr=stderr, env=env)
        self.error: InputError | None = None
        self._feeder: threading.Thread | None = None
        if archive.unsealer is not None:
            self._feeder = threading.Thread(target=self._feed, args=(archive.unsealer,), daemon=True)
            self._feeder.start()

    def _feed(self, unsealer: Unsealer) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            for chunk in unsealer.chunks():
                stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            pass  # pg_restore has read all it wanted (a table of contents) or was stopped
        except InputError as exc:  # the sealed file is damaged
            self.error = exc
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def wait(self) -> int:
        """pg_restore's exit code; InputError if the sealed archive turned out damaged."""
        code = self.proc.wait()
        if self._feeder is not None:
            self._feeder.join()
        if self.error is not None:
            raise self.error
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self._feeder is not None:
            self._feeder.join()


def _pg_restore_output(bin_dir: Path, args: list[str], archive: _Archive) -> subprocess.CompletedProcess[str]:
    """Run pg_restore to completion on ``archive``; its output and errors as text."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = _PgRestore(bin_dir, args, archive, stdout=out, stderr=err).wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


# ----------------------------------------------------------------------------- inspect
_SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ SCHEMA - (\S+)")


def _toc(bin_dir: Path, archive: _Archive, *schema: str) -> subprocess.CompletedProcess[str]:
    return _pg_restore_output(bin_dir, ["--list", *(f"--schema={s}" for s in schema)], archive)


def _entries(listing: str) -> list[str]:
    return [line for line in listing.splitlines() if re.match(r"^\d+; ", line)]


def _copy_rows(sql: str, table: str) -> list[list[str]]:
    """The rows of ``table`` in the COPY blocks of a pg_restore script (text format)."""
    rows: list[list[str]] = []
    inside = False
    for line in sql.splitlines():
        if not inside:
            inside = line.startswith("COPY ") and f".{table} (" in line and line.endswith("FROM stdin;")
            continue
        if line == "\\.":
            inside = False
            continue
        rows.append([v.replace("\\\\", "\\") for v in line.split("\t")])
    return rows


def inspect_backup(settings: TwinSettings, path: Path | str, *, passphrase: str | None = None,
                   bin_dir: Path | None = None) -> BackupInfo:
    """Read an archive's table of contents and its twin's revision and CRS; InputError if it is
    not a twin backup, or if it is encrypted and ``passphrase`` is missing or wrong."""
    archive = _open_archive(path, passphrase)
    return _inspect(settings, archive, bin_dir or _pg_bin(settings))


def _inspect(settings: TwinSettings, archive: _Archive, bin_dir: Path) -> BackupInfo:
    p = archive.path
    listing = _toc(bin_dir, archive)
    if listing.returncode != 0:
        reason = listing.stderr.strip().removeprefix("pg_restore: error: ")
        raise InputError(f"{p} is not a PipeTwin backup (a pg_dump custom-format archive): {reason}",
                         zh=f"{p} 不是 PipeTwin 备份（pg_dump 自定义格式归档）：{reason}")
    created = server = None
    for line in listing.stdout.splitlines():
        header = line.lstrip("; ")
        if header.startswith("Archive created at "):
            created = header.removeprefix("Archive created at ").strip()
        elif header.startswith("Dumped from database version:"):
            server = header.split(":", 1)[1].strip()
    entries = _entries(listing.stdout)
    schemas = [m[1] for line in entries if (m := _SCHEMA_ENTRY.match(line))]
    not_twin = f"{p} is a PostgreSQL archive but not of one PipeTwin twin"
    if len(schemas) != 1:
        raise InputError(f"{not_twin}: it holds {len(schemas)} schemas ({', '.join(schemas)})",
                         zh=f"{p} 是 PostgreSQL 归档，但不是一个 PipeTwin 孪生库的备份：其中有 {len(schemas)} 个模式（{', '.join(schemas)}）")
    schema = schemas[0]
    # Everything but the schema itself (and its privileges) lies inside it (no extensions,
    # nothing in public).
    inside = _entries(_toc(bin_dir, archive, schema).stdout)
    own = re.compile(rf"^\d+; \d+ \d+ (SCHEMA|ACL|COMMENT) - (SCHEMA )?{re.escape(schema)} ")
    if any(not own.match(line) for line in set(entries) - set(inside)):
        raise InputError(f"{not_twin}: it holds objects outside schema {schema!r}",
                         zh=f"{p} 是 PostgreSQL 归档，但不是一个 PipeTwin 孪生库的备份：其中有模式 {schema!r} 以外的对象")
    marker = f" TABLE DATA {schema} "
    tables = [line.split(marker, 1)[1].split(" ")[0] for line in inside if marker in line]
    if "alembic_version" not in tables or "twin_meta" not in tables:
        raise InputError(f"{not_twin}: schema {schema!r} has no alembic_version or twin_meta table",
                         zh=f"{p} 是 PostgreSQL 归档，但不是一个 PipeTwin 孪生库的备份：模式 {schema!r} 没有 alembic_version 或 twin_meta 表")
    data = _pg_restore_output(bin_dir, ["--data-only", f"--schema={schema}", "--table=alembic_version",
                                        "--table=twin_meta", "--file=-"], archive)
    if data.returncode != 0:
        raise InputError(f"{p} is damaged: {data.stderr.strip().removeprefix('pg_restore: error: ')}",
                         zh=f"{p} 已损坏：{data.stderr.strip().removeprefix('pg_restore: error: ')}")
    versions = _copy_rows(data.stdout, "alembic_version")
    meta = {r[0]: r[1] for r in _copy_rows(data.stdout, "twin_meta") if len(r) >= 2}
    if len(versions) != 1 or not versions[0] or not versions[0][0]:
        raise InputError(f"{p} holds no schema revision (alembic_version is empty)",
                         zh=f"{p} 中没有数据库结构版本（alembic_version 为空）")
    srid = int(meta["srid"]) if meta.get("srid", "").isdigit() else None
    return BackupInfo(path=str(p), schema=schema, revision=versions[0][0], srid=srid, created=created,
                      server_version=server, tables=tables, bytes=p.stat().st_size,
                      encrypted=archive.unsealer is not None)


def _check_restorable(settings: TwinSettings, info: BackupInfo) -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    head = scripts.get_current_head()
    known = {rev.revision for rev in scripts.walk_revisions()}
    if info.revision not in known:
        raise InputError(
            f"the backup is at schema revision {info.revision}, which this PipeTwin does not know "
            f"(its newest is {head}): it was made by a newer version; restore it with that version",
            code="BACKUP_TOO_NEW",
            zh=f"备份的数据库结构版本为 {info.revision}，此版本 PipeTwin 不认识（最新为 {head}）："
            "它由更新的版本生成，请用该版本恢复")
    wanted = twin_crs(settings.crs).srid
    if info.srid is not None and info.srid != wanted:
        raise ConfigError(f"the backup's twin is stored in EPSG:{info.srid} but TWIN_CRS is EPSG:{wanted}; "
                          "set TWIN_CRS to the backup's CRS",
                          zh=f"备份的孪生库坐标参照系为 EPSG:{info.srid}，但 TWIN_CRS 为 EPSG:{wanted}；请将 TWIN_CRS 设为备份的坐标参照系")


# ----------------------------------------------------------------------------- restore
def _do(condition: str, statement: str) -> str:
    return f"DO $pipetwin$ BEGIN IF {condition} THEN {statement}; END IF; END $pipetwin$;\n"


def _exists(schema: str) -> str:
    return f"EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {_literal(schema)})"


def restore(settings: TwinSettings, path: Path | str, *, progress: Status | None = None,
            passphrase: str | None = None) -> dict:
    """Replace the twin in ``settings.db_schema`` with the backup at ``path``, atomically.

    ``passphrase`` opens an encrypted backup (InputError when it is missing or wrong).
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    bin_dir = _pg_bin(settings)
    say("checking the backup")
    archive = _open_archive(path, passphrase)
    info = _inspect(settings, archive, bin_dir)
    _check_restorable(settings, info)
    target, dumped = settings.db_schema, info.schema
    _quoted(target), _quoted(dumped)
    engine = make_engine(settings, admin=True)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {exc.orig}",
                            zh=f"无法连接数据库：{exc.orig}") from exc
    finally:
        engine.dispose()

    old = f"pipetwin_restore_old_{secrets.token_hex(4)}"
    finish = _audit_sql(settings, info, old) + privileges_sql(target, app_role(settings))
    prologue, epilogue = _swap_sql(target, dumped, old, finish)
    _run_restore(settings, bin_dir, archive, prologue, epilogue, say)

    say("migrating to this version's schema")
    revision = upgrade(settings)
    segments = _segment_count(settings)
    return {"path": info.path, "schema": target, "from_schema": dumped, "backup_revision": info.revision,
            "revision": revision, "created": info.created, "segments": int(segments),
            "seconds": round(time.perf_counter() - started, 3)}


def _audit_sql(settings: TwinSettings, info: BackupInfo, old: str) -> str:
    """SQL run once the restored twin has its name, in the restore's transaction: the live log's
    entries the backup lacks are carried over (``old`` is the live twin's schema by then), and
    the restore writes its own entry."""
    restored = f"{_quoted(settings.db_schema)}.audit_log"
    live = f"{_quoted(old)}.audit_log"
    columns = "at, user_name, role, action, method, path, params, affected, status"
    entry = json.dumps({"file": str(Path(info.path).resolve()), "backup_created": info.created,
                        "backup_schema": info.schema, "backup_revision": info.revision,
                        "encrypted": info.encrypted}, ensure_ascii=False)
    return f"""
DO $pipetwin$
DECLARE carried bigint := 0;
BEGIN
  IF to_regclass({_literal(restored)}) IS NULL THEN
    RETURN;  -- a backup older than the audit log (revision 0004)
  END IF;
  IF to_regclass({_literal(live)}) IS NOT NULL THEN
    INSERT INTO {restored} ({columns})
    SELECT {columns} FROM {live} o
    WHERE NOT EXISTS (SELECT 1 FROM {restored} r WHERE r.id = o.id AND r.at = o.at)
    ORDER BY o.at, o.id;
    GET DIAGNOSTICS carried = ROW_COUNT;
  END IF;
  INSERT INTO {restored} (user_name, role, action, method, path, params)
  VALUES ({_literal(settings.user_name)}, {_literal(COMMAND_ROLE)}, 'restore', 'CLI', 'twin restore',
          CAST({_literal(entry)} AS jsonb) || jsonb_build_object('carried_over', carried));
END
$pipetwin$;
"""


def _swap_sql(target: str, dumped: str, old: str, finish: str) -> tuple[str, str]:
    """The SQL before and after the archive's: the live twin steps aside (as ``old``), the
    restored one takes its name, its change counter moves past the live one's, ``finish`` runs,
    the old twin is dropped, COMMIT."""
    aside = old.replace("_old_", "_aside_")
    prologue = (
        "SET client_min_messages = warning;\n"
        "BEGIN;\n"
        f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}';\n"
        + _do(_exists(target), f"ALTER SCHEMA {_quoted(target)} RENAME TO {_quoted(old)}")
    )
    if dumped != target:
        # Another live schema with the archive's name steps aside for the restore, and back.
        prologue += _do(_exists(dumped), f"ALTER SCHEMA {_quoted(dumped)} RENAME TO {_quoted(aside)}")
    epilogue = f"\nSET LOCAL lock_timeout = '{_LOCK_TIMEOUT}';\n"
    if dumped != target:
        epilogue += f"ALTER SCHEMA {_quoted(dumped)} RENAME TO {_quoted(target)};\n"
        epilogue += _do(_exists(aside), f"ALTER SCHEMA {_quoted(aside)} RENAME TO {_quoted(dumped)}")
    epilogue += (
        _do(f"to_regclass({_literal(_quoted(target) + '.alembic_version')}) IS NULL",
            "RAISE EXCEPTION 'the restored schema has no alembic_version'")
        # The restored network differs from the live one: move the change counter past the
        # live one's (migration 0007), so running servers' in-memory models re-read it.
        + _do(f"to_regclass({_literal(_quoted(old) + '.twin_meta')}) IS NOT NULL",
              f"UPDATE {_quoted(target)}.twin_meta SET value = (value::bigint + 1 + coalesce("
              f"(SELECT value::bigint FROM {_quoted(old)}.twin_meta WHERE key = 'changes'), 0))::text "
              "WHERE key = 'changes'")
        + finish
        + f"DROP SCHEMA IF EXISTS {_quoted(old)} CASCADE;\n"
        "COMMIT;\n"
    )
    return prologue, epilogue


def _run_restore(settings: TwinSettings, bin_dir: Path, archive: _Archive, prologue: str, epilogue: str,
                 say: Status) -> None:
    """Stream ``prologue``, the archive's SQL and ``epilogue`` into one ``psql`` session.

    The epilogue (with its COMMIT) is sent only when ``pg_restore`` succeeded; on any failure
    ``psql`` is stopped before committing and the transaction rolls back.
    """
    uri, env = _connection(settings)
    with tempfile.TemporaryFile("w+") as restore_err, tempfile.TemporaryFile("w+") as psql_err:
        psql = subprocess.Popen(
            [str(bin_dir / "psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={uri}",
             "--file=-"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_err, env=env)
        dump = _PgRestore(bin_dir, ["--no-owner", "--no-privileges", "--file=-"], archive,
                          stdout=subprocess.PIPE, stderr=restore_err, env=env)
        source = dump.proc.stdout
        assert psql.stdin is not None and source is not None
        committed = False
        try:
            say(f"restoring {archive.path.name} into schema {settings.db_schema}")
            psql.stdin.write(prologue.encode())
            sent = 0
            while chunk := source.read(_CHUNK):
                psql.stdin.write(chunk)
                sent += len(chunk)
                if sent // (8 << 20) != (sent - len(chunk)) // (8 << 20):
                    say(f"restoring: {sent / 1e6:,.0f} MB of SQL")
            if dump.wait() != 0:
                restore_err.seek(0)
                said = restore_err.read().strip()[-500:]
                raise InputError(f"{archive.path} is damaged; nothing was changed: {said}",
                                 zh=f"{archive.path} 已损坏，未做任何更改：{said}")
            say("replacing the twin")
            psql.stdin.write(epilogue.encode())
            psql.stdin.close()
            committed = psql.wait() == 0
        except BrokenPipeError:
            pass  # psql stopped at an error: reported below
        finally:
            dump.kill()
            if not committed and psql.poll() is None:
                psql.kill()  # no COMMIT was sent: the server rolls the transaction back
            psql.wait()
        if not committed:
            psql_err.seek(0)
            message = " ".join(psql_err.read().split())[-800:]
            raise DatabaseError(f"the restore failed and was rolled back; the twin is as it was: {message}",
                                zh=f"恢复失败并已回滚，孪生库保持原样：{message}")

