"""The private PostGIS cluster under the twin's data folder (``twin db start|stop|status``).

PostgreSQL refuses to run as root, so when root the cluster belongs to the ``postgres``
system user and every server command runs through ``runuser``. All operations are idempotent.

The cluster is closed to other local accounts: every connection, over TCP or the Unix socket,
proves a password (``scram-sha-256``), the socket's folder is the cluster owner's alone, and
the passwords live in 0600 files under ``<TWIN_DATA_DIR>/secrets``:

* ``postgres.pw``, the superuser's (the *admin* role: set-up, extensions, migrations, backup
  and restore);
* ``twin_app.pw``, the application role's (``twin_app``: the server and the commands' reads
  and writes; no superuser, no CREATEDB, no CREATEROLE).

A cluster made before this (``initdb --auth=trust``) keeps working as it was, all as the
superuser, until ``twin db start`` closes it (:meth:`Cluster.close`).
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from twin.errors import ConfigError, DatabaseError
from twin.roles import APP_ROLE, privileges_sql
from twin.secretfiles import create_private, private_dir, read_secret, secret, secrets_dir
from twin.settings import TwinSettings

__all__ = ["Cluster", "local_cluster", "database_url", "postgis_install_hint", "APP_ROLE",
           "scram_verifier", "HBA", "Standby", "local_standby", "read_urls", "REPLICATION_ROLE"]

log = logging.getLogger(__name__)

DB_NAME = "twin"
#: The twin's text order: bytes (``C``), which for UTF-8 is code-point order, the same order as
#: ``C.UTF-8`` gives. PostgreSQL 15 only sorts ``C`` with abbreviated keys and without strcoll:
#: a million-row B-tree on ids (a bulk import's keys) builds in about half the time. Character
#: classes (upper/lower of non-ASCII letters) stay ``C.UTF-8``'s.
COLLATE = "C"
PG_MAJOR = "15"

#: Every connection proves a password; nothing is trusted by address or account name.
HBA = (
    "# PipeTwin private cluster: every connection proves a password (written by twin db start).\n"
    "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
    "local   all       all                  scram-sha-256\n"
    "host    all       all   127.0.0.1/32   scram-sha-256\n"
    "host    all       all   ::1/128        scram-sha-256\n"
)


def postgis_install_hint() -> str:
    """The exact command that installs what the cluster needs."""
    return f"sudo apt-get install -y postgresql-{PG_MAJOR} postgresql-{PG_MAJOR}-postgis-3"


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5803 form).

    Setting a role's password by its verifier keeps the password itself out of the server's
    statement logs and views.
    """
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def _find_pg_bin(settings: TwinSettings) -> Path:
    candidates = [settings.pg_bin] if settings.pg_bin else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if c and (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ConfigError(f"PostgreSQL server binaries not found; install them with: {postgis_install_hint()}",
                      zh=f"找不到 PostgreSQL 服务器程序；安装方法：{postgis_install_hint()}")


@dataclass
class Cluster:
    """A PostgreSQL cluster owned by this checkout."""

    root: Path  # .twin/pg
    bin: Path
    port: int
    secrets: Path  # .twin/secrets

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def superuser(self) -> str:
        return "postgres" if os.geteuid() == 0 else getpass.getuser()

    @property
    def superuser_password_file(self) -> Path:
        return self.secrets / "postgres.pw"

    @property
    def app_password_file(self) -> Path:
        return self.secrets / f"{APP_ROLE}.pw"

    def password(self, user: str | None) -> str | None:
        """The password of the superuser or the application role, from its file (None: no file)."""
        files = {self.superuser: self.superuser_password_file, APP_ROLE: self.app_password_file}
        return read_secret(files[user]) if user in files else None

    def _url(self, user: str, password: str | None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def admin_url(self) -> str:
        """The superuser's URL, password included (from its 0600 file)."""
        return self._url(self.superuser, read_secret(self.superuser_password_file))

    @property
    def url(self) -> str:
        """The application role's URL; the superuser's while the cluster is not closed yet."""
        password = read_secret(self.app_password_file)
        return self._url(APP_ROLE, password) if password else self.admin_url

    # -- commands -------------------------------------------------------------
    def _run(self, args: list[str], check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        log.debug("running %s", args)
        proc = subprocess.run(args, capture_output=True, text=True,
                              env={**os.environ, **env} if env else None)
        if check and proc.returncode != 0:
            tool = Path(args[4] if args[0] == "runuser" else args[0]).name
            raise DatabaseError(f"{tool} failed: {proc.stderr.strip() or proc.stdout.strip()}",
                                zh=f"{tool} 失败：{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _pg(self, tool: str, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin / tool), *args], check=check, env=env)

    def _own(self, path: Path) -> None:
        """Hand ``path`` to the cluster's system user (when root) and close it to others."""
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
        os.chmod(path, 0o700 if path.is_dir() else 0o600)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One process at a time starts, creates or closes the cluster."""
        private_dir(self.secrets)
        fd = os.open(self.secrets / ".cluster.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def closed(self) -> bool:
        """Whether every connection must prove a password (no ``trust`` line in pg_hba.conf)."""
        hba = (self.data / "pg_hba.conf").read_text()
        lines = (line.split("#", 1)[0].split() for line in hba.splitlines())
        return not any(words and words[-1] == "trust" for words in lines)

    def init(self) -> None:
        """Create the cluster folder (owned by ``postgres`` when root) and run initdb."""
        if self.initialised():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        self._own(self.socket_dir)
        if os.geteuid() == 0:
            probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.root)])
            if probe.returncode != 0:
                raise ConfigError(
                    f"the postgres user cannot write {self.root}: a parent folder is not "
                    "traversable; set TWIN_DATA_DIR to a folder it can reach",
                    zh=f"postgres 用户无法写入 {self.root}：某个上级文件夹不可访问；请将 TWIN_DATA_DIR 设为它能访问的文件夹"
                )
        password = secret(self.superuser_password_file)
        # initdb reads the password from a file the cluster's user can read: one of its own,
        # in its own 0700 folder, removed as soon as initdb is done.
        pwfile = self.root / ".initdb.pw"
        pwfile.unlink(missing_ok=True)
        with os.fdopen(create_private(pwfile), "w") as f:
            f.write(password + "\n")
        try:
            self._own(pwfile)
            self._pg("initdb", "-D", str(self.data), "-U", self.superuser, "--auth=scram-sha-256",
                     f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", f"--lc-collate={COLLATE}")
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_config_file("postgresql.conf", self._settings(), append=True)
        self._write_config_file("pg_hba.conf", HBA)

    def _settings(self) -> str:
        return (
            "\n# PipeTwin private cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = on\n"
            "shared_buffers = 512MB\n"
            "work_mem = 64MB\n"
            "maintenance_work_mem = 512MB\n"
            "max_wal_size = 4GB\n"
            "max_connections = 100\n"
            # Streaming replication (twin db replica): the defaults, written out.
            "wal_level = replica\n"
            "max_wal_senders = 10\n"
            "max_replication_slots = 10\n"
            "hot_standby = on\n"
        )

    def _write_config_file(self, name: str, text: str, *, append: bool = False,
                           folder: Path | None = None) -> None:
        """Write (or append to) a file of the data folder (or ``folder``) as the cluster's user."""
        path = (folder or self.data) / name
        if os.geteuid() == 0:
            subprocess.run(["runuser", "-u", "postgres", "--", "sh", "-c", f"cat {'>>' if append else '>'} '{path}'"],
                           input=text, text=True, check=True)
        else:
            with path.open("a" if append else "w") as f:
                f.write(text)

    def start(self) -> bool:
        """Start the cluster; returns False when it was already running."""
        with self._locked():
            return self._start()

    def _start(self) -> bool:
        self.init()
        started = False
        if not self.running():
            if _port_busy(self.port):
                raise DatabaseError(f"port {self.port} is taken by another server; set TWIN_PG_PORT",
                                    zh=f"端口 {self.port} 已被另一个服务器占用；请设置 TWIN_PG_PORT")
            self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                     "-t", "60")
            started = True
        if started or (self.closed() and read_secret(self.app_password_file) is None):
            self._ensure_database()
        return started

    def close(self) -> bool:
        """Start the cluster and close it to other local accounts if it still trusts them.

        The superuser gets a password (set while ``trust`` still lets it in), pg_hba.conf asks
        every connection for a password, the server reloads, and the application role is made.
        Returns True when it converted the cluster.
        """
        with self._locked():
            self._start()
            if self.closed():
                return False
            password = secret(self.superuser_password_file)
            with self._connect("postgres") as conn:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.superuser), sql.Literal(scram_verifier(password))))
            self._write_config_file("pg_hba.conf", HBA)
            self._own(self.root)
            self._own(self.socket_dir)
            self._pg("pg_ctl", "reload", "-D", str(self.data))
            for _ in range(50):  # the reload is asynchronous
                if not self._lets_in(secrets.token_urlsafe(16)):
                    break
                time.sleep(0.1)
            else:
                raise DatabaseError(f"the cluster in {self.data} still lets in any password after "
                                    "pg_hba.conf was rewritten; check it by hand",
                                    zh=f"重写 pg_hba.conf 后，{self.data} 中的集群仍接受任意密码；请手工检查")
            self._ensure_database()
            return True

    def _lets_in(self, password: str) -> bool:
        """Whether the server lets the superuser in with ``password`` (a wrong one: trust is on)."""
        try:
            psycopg.connect(host="127.0.0.1", port=self.port, user=self.superuser, password=password,
                            dbname="postgres", connect_timeout=10).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> bool:
        """Stop the cluster; returns False when it was not running."""
        if not self.running():
            return False
        self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        return True

    def _connect(self, dbname: str) -> psycopg.Connection:
        """An autocommit connection as the superuser (its password from its file)."""
        password = read_secret(self.superuser_password_file)
        if password is None and self.closed():
            raise ConfigError(
                f"the cluster asks for a password but {self.superuser_password_file} is missing; "
                f"restore that file, or set a new password: stop the cluster, change 'scram-sha-256' "
                f"to 'trust' in {self.data / 'pg_hba.conf'} and run `twin db start`",
                zh=f"集群要求密码，但 {self.superuser_password_file} 不存在；请恢复该文件，或重设密码：停止集群，"
                f"将 {self.data / 'pg_hba.conf'} 中的 'scram-sha-256' 改为 'trust'，再运行 `twin db start`")
        error: Exception | None = None
        for _ in range(50):
            try:
                return psycopg.connect(host="127.0.0.1", port=self.port, user=self.superuser,
                                       password=password, dbname=dbname, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                if "authentication failed" in str(exc):
                    raise ConfigError(f"the private cluster refused the superuser's password in "
                                      f"{self.superuser_password_file}: {exc}",
                                      zh=f"私有集群拒绝了 {self.superuser_password_file} 中的超级用户密码：{exc}") from None
                error = exc  # still starting up
                time.sleep(0.2)
        raise DatabaseError(f"cannot connect to the private cluster: {error}",
                            zh=f"无法连接私有集群：{error}")

    def _ensure_database(self) -> None:
        """The twin's database with PostGIS, and the application role once the cluster is closed."""
        with self._connect("postgres") as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE {} "
                                     "LC_CTYPE 'C.UTF-8'").format(sql.Identifier(DB_NAME), sql.Literal(COLLATE)))
        with self._connect(DB_NAME) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            if self.closed():
                self._ensure_app_role(conn)

    def _ensure_app_role(self, conn: psycopg.Connection) -> None:
        """``twin_app`` with its password; the file appears only once the role can use it, since
        other processes choose the role they connect as by the file being there."""
        password = read_secret(self.app_password_file) or secrets.token_urlsafe(32)
        role = sql.Identifier(APP_ROLE)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                             "NOBYPASSRLS PASSWORD {}").format(role, sql.Literal(scram_verifier(password))))
        # Only the twin's roles reach its database; the app role makes no schemas of its own.
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(DB_NAME)))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(DB_NAME), role))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # The twins already there pass to the role now, not at their next migration.
        schemas = conn.execute("SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
                               "WHERE c.relname = 'alembic_version' AND c.relkind = 'r'").fetchall()
        for (schema,) in schemas:
            if schema.isidentifier():
                conn.execute(privileges_sql(schema, APP_ROLE))
        secret(self.app_password_file, lambda: password)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def local_cluster(settings: TwinSettings) -> Cluster:
    """The private cluster of this checkout (not necessarily initialised)."""
    root = (settings.data_dir / "pg").resolve()
    if settings.pg_port:
        port = settings.pg_port
    else:
        # Stable per checkout, so two clones on one machine do not collide.
        digest = hashlib.sha1(str(root).encode()).digest()
        port = 54000 + int.from_bytes(digest[:2], "big") % 900
    return Cluster(root=root, bin=_find_pg_bin(settings), port=port, secrets=secrets_dir(settings))


def database_url(settings: TwinSettings, *, admin: bool = False) -> str:
    """The URL in use: ``TWIN_DATABASE_URL`` or the private cluster's application role's.

    ``admin=True``: the URL of the role that migrates, backs up and restores:
    ``TWIN_DATABASE_ADMIN_URL`` (the same as ``TWIN_DATABASE_URL`` when unset) or the private
    cluster's superuser.
    """
    if settings.database_url:
        return (settings.database_admin_url or settings.database_url) if admin else settings.database_url
    cluster = local_cluster(settings)
    return cluster.admin_url if admin else cluster.url



# ----------------------------------------------------------------------------- read replicas
#: The role a standby streams the primary's WAL as (REPLICATION, nothing else).
REPLICATION_ROLE = "twin_replicator"
#: The pg_hba.conf line that lets it in, from loopback only and with its password.
HBA_REPLICATION = f"host    replication  {REPLICATION_ROLE}  127.0.0.1/32   scram-sha-256\n"


def _open_replication(cluster: Cluster) -> str:
    """Let a standby on loopback stream from ``cluster``: the replication role with its password
    (0600 file in the secrets folder) and its pg_hba.conf line; returns the password."""
    password = secret(cluster.secrets / f"{REPLICATION_ROLE}.pw")
    role = sql.Identifier(REPLICATION_ROLE)
    with cluster._connect("postgres") as conn:
        level = conn.execute("SHOW wal_level").fetchone()[0]
        senders = int(conn.execute("SHOW max_wal_senders").fetchone()[0])
        if level == "minimal" or senders < 1:
            raise ConfigError(f"the private cluster has wal_level = {level} and max_wal_senders = "
                              f"{senders}: set wal_level = replica and max_wal_senders = 10 in "
                              f"{cluster.data / 'postgresql.conf'}, then twin db stop && twin db start",
                              zh=f"私有集群的 wal_level = {level}，max_wal_senders = {senders}：请在 {cluster.data / 'postgresql.conf'} "
                              "中设置 wal_level = replica 和 max_wal_senders = 10，然后运行 twin db stop && twin db start")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REPLICATION_ROLE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "
                             "PASSWORD {}").format(role, sql.Literal(scram_verifier(password))))
    hba = (cluster.data / "pg_hba.conf").read_text()
    if HBA_REPLICATION.split() not in [line.split() for line in hba.splitlines()]:
        cluster._write_config_file("pg_hba.conf", HBA_REPLICATION, append=True)
        cluster._pg("pg_ctl", "reload", "-D", str(cluster.data))
        for _ in range(50):  # the reload is asynchronous
            try:
                psycopg.connect(host="127.0.0.1", port=cluster.port, user=REPLICATION_ROLE,
                                password=password, dbname="replication", replication="true",
                                connect_timeout=5).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
    return password


@dataclass
class Standby:
    """A hot standby of the private cluster on loopback (``twin db replica``): a copy made by
    ``pg_basebackup`` that streams the primary's WAL through a replication slot and answers
    read-only queries. Its folder (``<TWIN_DATA_DIR>/pg-replica``) is the cluster user's alone;
    its replication password sits there in a 0600 passfile (the server process reads it), and
    in the secrets folder."""

    primary: Cluster
    root: Path
    slot: str
    port: int | None = None  # chosen (a free one) when the standby is made

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def passfile(self) -> Path:
        return self.root / ".replication.pgpass"

    def initialised(self) -> bool:
        return (self.data / "standby.signal").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self.primary._pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    @property
    def url(self) -> str:
        """The application role's URL on the standby (the primary's roles and passwords)."""
        if self.port is None:
            raise ConfigError("the read replica is not made: twin db replica start",
                              zh="尚未建立只读副本：twin db replica start")
        return self.primary.url.replace(f":{self.primary.port}/", f":{self.port}/")

    def start(self) -> bool:
        """Make the standby (first time) and start it; False when it was already running."""
        with self.primary._locked():
            self.primary._start()
            if not self.initialised():
                self._make()
            if self.running():
                return False
            if _port_busy(self.port):
                raise DatabaseError(f"port {self.port} of the read replica is taken by another server; "
                                    f"stop it, or remove the replica: twin db replica stop --drop",
                                    zh=f"只读副本的端口 {self.port} 已被另一个服务器占用；请停止该服务器，或删除副本：twin db replica stop --drop")
            self.primary._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.root / "server.log"),
                             "-w", "-t", "120")
            return True

    def _make(self) -> None:
        """pg_basebackup into a fresh folder, with a new slot (-C -S) and standby settings (-R);
        on failure the folder and the slot are removed again."""
        password = _open_replication(self.primary)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.socket_dir.mkdir()
        self.port = self.port or _free_port()
        with os.fdopen(create_private(self.passfile), "w") as f:
            f.write(f"127.0.0.1:{self.primary.port}:*:{REPLICATION_ROLE}:{password}\n")
        for path in (self.root, self.socket_dir, self.passfile):
            self.primary._own(path)
        try:
            self.primary._pg("pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1",
                             "-p", str(self.primary.port), "-U", REPLICATION_ROLE, "-w",
                             "-R", "-C", "-S", self.slot, "-X", "stream", "-c", "fast",
                             env={"PGPASSFILE": str(self.passfile), "PGAPPNAME": self.slot})
            self.primary._write_config_file("postgresql.conf", folder=self.data, append=True, text=(
                "\n# PipeTwin read replica (twin db replica)\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "hot_standby = on\n"
                "hot_standby_feedback = on\n"  # no reads cancelled by the primary's vacuum
                "max_standby_streaming_delay = 5s\n"
            ))
        except Exception:
            self._drop_slot()
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def stop(self, *, drop: bool = False) -> bool:
        """Stop the standby (True if it was running); ``drop`` also removes it and its slot."""
        with self.primary._locked():
            stopped = self.running()
            if stopped:
                self.primary._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
            if drop:
                if self.primary.running():
                    self._drop_slot()
                shutil.rmtree(self.root, ignore_errors=True)
            return stopped

    def _drop_slot(self) -> None:
        with self.primary._connect("postgres") as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", (self.slot,))

    def status(self) -> dict:
        """State, and the lag behind the primary in bytes and seconds (from the primary's
        ``pg_stat_replication``; seconds are 0 when nothing is waiting to be replayed)."""
        out = {"made": self.initialised(), "running": self.running(), "port": self.port,
               "slot": self.slot, "data": str(self.data), "streaming": False,
               "lag_bytes": None, "lag_s": None}
        if not self.primary.running():
            return out
        with self.primary._connect("postgres") as conn:
            row = conn.execute(
                "SELECT r.state, pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
                "extract(epoch FROM r.replay_lag)::float8 FROM pg_replication_slots s "
                "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = %s",
                (self.slot,)).fetchone()
        if row is not None and row[0] == "streaming":
            out.update(streaming=True, lag_bytes=int(row[1] or 0),
                       lag_s=float(row[2] or 0.0) if row[1] else 0.0)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_standby(settings: TwinSettings, cluster: Cluster | None = None) -> Standby:
    """The read replica of this checkout's private cluster (not necessarily made)."""
    cluster = cluster or local_cluster(settings)
    root = (settings.data_dir / "pg-replica").resolve()
    slot = "twin_replica_" + hashlib.sha1(str(root).encode()).hexdigest()[:8]
    return Standby(primary=cluster, root=root, slot=slot, port=_standby_port(root))


def _standby_port(root: Path) -> int | None:
    """The port written into a made standby's postgresql.conf (the last ``port =`` line)."""
    try:
        text = (root / "data" / "postgresql.conf").read_text()
    except (FileNotFoundError, PermissionError):
        return None
    ports = [line.split("=", 1)[1].split("#")[0].strip() for line in text.splitlines()
             if line.strip().startswith("port") and "=" in line]
    return int(ports[-1]) if ports else None


def read_urls(settings: TwinSettings) -> list[str]:
    """The read replicas' URLs: ``TWIN_READ_DATABASE_URLS``, else the private cluster's local
    standby when it runs (and ``TWIN_DATABASE_URL`` is unset), else none."""
    if settings.read_database_urls:
        return list(settings.read_database_urls)
    if settings.database_url:
        return []
    standby = local_standby(settings)
    return [standby.url] if standby.running() else []
