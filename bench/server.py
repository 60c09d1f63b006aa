"""`twin serve` on a free loopback port for a benchmark, and stopped after it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from twin.pgcluster import database_url
from twin.settings import TwinSettings

__all__ = ["Server", "Tipg"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, url: str, log: str, timeout_s: float) -> bool:
    """True once ``url``/healthz answers 200; SystemExit if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Server:
    """`twin serve` over one twin (its schema, tiles and data folder), until :meth:`stop`."""

    def __init__(self, settings: TwinSettings, *, workers: int = 1, log_level: str = "info",
                 start_timeout_s: float = 120.0, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update(TWIN_DB_SCHEMA=settings.db_schema, TWIN_DATA_DIR=str(Path(settings.data_dir).resolve()),
                   OPENBLAS_NUM_THREADS="1")
        if settings.tiles_dir:
            env["TWIN_TILES_DIR"] = str(settings.tiles_dir)
        if settings.database_url:
            env["TWIN_DATABASE_URL"] = settings.database_url
        env.update(extra_env or {})  # e.g. TWIN_READ_DATABASE_URLS (bench/replicas.py)
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [str(BIN / "twin"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", log_level],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        if not _wait_healthy(self.proc, self.url, self.log.name, start_timeout_s):
            self.stop()
            raise SystemExit(f"the server did not start: see {self.log.name}")

    def stop(self) -> None:
        _stop(self.proc)


class Tipg:
    """tipg (the reference OGC API Features server on PostGIS) under uvicorn, serving one table of
    the twin's database as the same role, on a free loopback port, until :meth:`stop`.

    ``properties`` are the columns served (the same as PipeTwin's pipes); the collection is
    ``<schema>.<table>``; catalogue extents off (they only slow the start).
    """

    def __init__(self, settings: TwinSettings, table: str, properties: list[str], *, workers: int = 2,
                 start_timeout_s: float = 120.0) -> None:
        schema = settings.db_schema
        self.collection = f"{schema}.{table}"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        dsn = database_url(settings).replace("postgresql+psycopg://", "postgresql://", 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "TIPG_"))}
        env.update(DATABASE_URL=dsn, TIPG_DB_SCHEMAS=json.dumps([schema]),
                   TIPG_DB_TABLES=json.dumps([self.collection]), TIPG_DB_FUNCTIONS="[]",
                   TIPG_DB_SPATIAL_EXTENT="false", TIPG_DB_DATETIME_EXTENT="false",
                   TIPG_DEBUG="false", OPENBLAS_NUM_THREADS="1",
                   **{f"TIPG_TABLE_CONFIG__{schema}_{table}__PROPERTIES": json.dumps(properties),
                      f"TIPG_TABLE_CONFIG__{schema}_{table}__PK": "id"})
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench-tipg-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [str(BIN / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
        if not _wait_healthy(self.proc, self.url, self.log.name, start_timeout_s):
            self.stop()
            raise SystemExit(f"tipg did not start: see {self.log.name}")

    def stop(self) -> None:
        _stop(self.proc)
