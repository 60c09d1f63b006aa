"""Fixtures of the API tests: a twin with users, an in-process client and a real server.

``api_twin`` is the demo district (as `make demo` loads it) with its tileset and one user
per role; tests that only read share it. Tests that change data make a twin of their own
with :func:`make_twin`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import add_user
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from tests.conftest import SMALL, drop_schema
from twin.db import open_twin
from twin.settings import TwinSettings, get_settings

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("viewer", "editor", "approver", "admin")
JWT_SECRET = "test-secret-" + "x" * 40
#: The in-process client addresses the app as http://testserver; real servers as 127.0.0.1.
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]


def password(role: str) -> str:
    return f"{role}-password"


def make_twin(schema: str, tmp: Path, *, data: str = "small") -> TwinSettings:
    """A fresh twin in ``schema`` holding ``data`` ('small', 'demo' or 'empty'), one user per role."""
    if not schema.endswith(f"_{os.getpid()}"):
        schema = f"{schema}_{os.getpid()}"  # two runs on one machine keep apart
    settings = get_settings(db_schema=schema, tiles_dir=tmp / "tiles", data_dir=get_settings().data_dir,
                            jwt_secret=JWT_SECRET, allowed_hosts=ALLOWED_HOSTS,
                            live_subscriber=False)  # a developer's demo broker is not the tests'
    open_twin(get_settings()).dispose()  # starts the private cluster when it is the one in use
    drop_schema(settings)
    if data == "demo":
        generate_district(tmp / "survey", scale=1, seed=0)
        report = ingest_survey(tmp / "survey" / "points.csv", tmp / "survey" / "segments.csv", settings)
        assert report.status == "applied", report
    elif data == "small":
        report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", settings)
        assert report.status == "applied", report
    engine = open_twin(settings)
    with engine.begin() as conn:
        for role in ROLES:
            add_user(conn, role, role, password(role), by="tests")
    engine.dispose()
    return settings


def sign_in(client: TestClient | httpx.Client, role: str) -> dict[str, str]:
    r = client.post("/token", data={"username": role, "password": password(role)})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class Api:
    """An in-process client and a header set per role."""

    client: TestClient
    settings: TwinSettings
    headers: dict[str, dict[str, str]]

    def get(self, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return self.client.get(path, headers={**self.headers[role], **kw.pop("headers", {})}, **kw)

    def post(self, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return self.client.post(path, headers={**self.headers[role], **kw.pop("headers", {})}, **kw)

    def request(self, method: str, path: str, role: str = "viewer", **kw) -> httpx.Response:
        return self.client.request(method, path, headers={**self.headers[role], **kw.pop("headers", {})}, **kw)


def wait_job(api: Api, job_id: str, role: str = "viewer", timeout: float = 120.0) -> dict:
    """The status document of a job once it has ended (successful or failed), read as ``role``."""
    deadline, doc = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        doc = api.get(f"/jobs/{job_id}", role).json()
        if doc["status"] in ("successful", "failed"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {doc}")


def collection_ids(utilities: Iterable[str]) -> set[str]:
    """The feature collections of a twin whose pipes are of ``utilities`` (CJJ 61 codes)."""
    return {
        "pipes",
        "nodes",
        "valves",
        "sources",
        "customers",
        "proposals",
        *(f"pipes-{u.lower()}" for u in utilities),
    }


def open_api(settings: TwinSettings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings, {role: sign_in(client, role) for role in ROLES})


@pytest.fixture(scope="session")
def api_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    """The demo district with its tileset and one user per role; read-only for tests."""
    from tiles.build import build_tileset

    # The process id keeps two test runs on one machine out of each other's way.
    settings = make_twin(f"test_api_demo_{os.getpid()}", tmp_path_factory.mktemp("api_demo"), data="demo")
    build_tileset(settings, full=True, workers=2)
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="session")
def api(api_twin: TwinSettings) -> Iterator[Api]:
    """An in-process client on the demo district."""
    yield from open_api(api_twin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(settings: TwinSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(
        TWIN_DB_SCHEMA=settings.db_schema,
        TWIN_JWT_SECRET=JWT_SECRET,
        TWIN_TILES_DIR=str(settings.tiles_dir),
        TWIN_DATA_DIR=str(Path(settings.data_dir).resolve()),
        OPENBLAS_NUM_THREADS="1",
        TWIN_LIVE_SUBSCRIBER="false",  # only the live tests subscribe, to a broker of their own
    )
    if settings.database_url:
        env["TWIN_DATABASE_URL"] = settings.database_url
    return env


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(settings: TwinSettings, log: Path, workers: int = 1) -> LiveServer:
    """`twin serve` on a free loopback port, in a process of its own; waits until it answers."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "twin"), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env=server_env(settings), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return LiveServer(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def live_server(api_twin: TwinSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server process on loopback over the demo district."""
    server = start_server(api_twin, tmp_path_factory.mktemp("live") / "server.log")
    yield server
    server.stop()
