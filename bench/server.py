"""`twin serve` on a free loopback port for a benchmark, and stopped after it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from twin.settings import TwinSettings

__all__ = ["Server"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`twin serve` over one twin (its schema, tiles and data folder), until :meth:`stop`."""

    def __init__(self, settings: TwinSettings, *, workers: int = 1, log_level: str = "info",
                 start_timeout_s: float = 120.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update(TWIN_DB_SCHEMA=settings.db_schema, TWIN_DATA_DIR=str(Path(settings.data_dir).resolve()),
                   OPENBLAS_NUM_THREADS="1")
        if settings.tiles_dir:
            env["TWIN_TILES_DIR"] = str(settings.tiles_dir)
        if settings.database_url:
            env["TWIN_DATABASE_URL"] = settings.database_url
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [str(BIN / "twin"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", log_level],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: see {self.log.name}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server did not start: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
