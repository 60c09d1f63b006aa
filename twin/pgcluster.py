"""The private PostGIS cluster under the twin's data folder (``twin db start|stop|status``).

PostgreSQL refuses to run as root, so when root the cluster belongs to the
``postgres`` system user and every server command runs through ``runuser``.
All operations are idempotent.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from twin.errors import ConfigError, DatabaseError
from twin.settings import TwinSettings

__all__ = ["Cluster", "local_cluster", "database_url", "postgis_install_hint"]

log = logging.getLogger(__name__)

DB_NAME = "twin"
PG_MAJOR = "15"


def postgis_install_hint() -> str:
    """The exact command that installs what the cluster needs."""
    return f"sudo apt-get install -y postgresql-{PG_MAJOR} postgresql-{PG_MAJOR}-postgis-3"


def _find_pg_bin(settings: TwinSettings) -> Path:
    candidates = [settings.pg_bin] if settings.pg_bin else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if c and (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ConfigError(f"PostgreSQL server binaries not found; install them with: {postgis_install_hint()}")


@dataclass
class Cluster:
    """A PostgreSQL cluster owned by this checkout."""

    root: Path  # .twin/pg
    bin: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def superuser(self) -> str:
        return "postgres" if os.geteuid() == 0 else getpass.getuser()

    # -- commands -------------------------------------------------------------
    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        log.debug("running %s", args)
        proc = subprocess.run(args, capture_output=True, text=True)
        if check and proc.returncode != 0:
            tool = Path(args[4] if args[0] == "runuser" else args[0]).name
            raise DatabaseError(f"{tool} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin / tool), *args], check=check)

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def init(self) -> None:
        """Create the cluster folder (owned by ``postgres`` when root) and run initdb."""
        if self.initialised():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.root)])
            if probe.returncode != 0:
                raise ConfigError(
                    f"the postgres user cannot write {self.root}: a parent folder is not "
                    "traversable; set TWIN_DATA_DIR to a folder it can reach"
                )
        self._pg("initdb", "-D", str(self.data), "-U", self.superuser, "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8")
        conf = self.data / "postgresql.conf"
        extra = (
            "\n# PipeTwin private cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "fsync = on\n"
            "shared_buffers = 512MB\n"
            "work_mem = 64MB\n"
            "maintenance_work_mem = 512MB\n"
            "max_wal_size = 4GB\n"
            "max_connections = 100\n"
        )
        if os.geteuid() == 0:
            subprocess.run(["runuser", "-u", "postgres", "--", "sh", "-c", f"cat >> '{conf}'"],
                           input=extra, text=True, check=True)
        else:
            with conf.open("a") as f:
                f.write(extra)

    def start(self) -> bool:
        """Start the cluster; returns False when it was already running."""
        self.init()
        if self.running():
            return False
        if _port_busy(self.port):
            raise DatabaseError(f"port {self.port} is taken by another server; set TWIN_PG_PORT")
        self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                 "-t", "60")
        self._ensure_database()
        return True

    def stop(self) -> bool:
        """Stop the cluster; returns False when it was not running."""
        if not self.running():
            return False
        self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        return True

    def _ensure_database(self) -> None:
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                "-d", "postgres", "-tAc"]
        for _ in range(50):
            exists = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"], check=False)
            if exists.returncode == 0:
                break
            time.sleep(0.2)
        if exists.stdout.strip() != "1":
            self._run([*psql, f"CREATE DATABASE {DB_NAME}"])
        self._run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                   "-d", DB_NAME, "-tAc", "CREATE EXTENSION IF NOT EXISTS postgis"])


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
    return Cluster(root=root, bin=_find_pg_bin(settings), port=port)


def database_url(settings: TwinSettings) -> str:
    """The URL in use: ``TWIN_DATABASE_URL`` or the private cluster's."""
    if settings.database_url:
        return settings.database_url
    return local_cluster(settings).url
