"""Imports against a real server process: readers see whole batches, a crash applies nothing.

1. Fifty concurrent readers while a batch loads see the network before it or after it, never
   a mix: each reading (``GET /network/summary``, one SQL statement, so one snapshot; and the
   pipes collection's ``numberMatched``) must equal one of the two states exactly.
2. ``kill -9`` of the server while a batch is being loaded leaves the previous network, no
   applied batch row, and a restarted server reports the job failed and serves the old network.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.uploads import network_summary
from ingest.sample import generate_district
from tests.api.conftest import LiveServer, make_twin, sign_in, start_server
from tests.conftest import SMALL, drop_schema
from twin.db import make_engine
from twin.settings import TwinSettings

READERS = 50
#: What a reading of the network is compared on (as_of differs on every reading).
STATE = ("segments", "length_m", "nodes", "valves", "sources", "customers", "latest_batch")


def state(summary: dict) -> tuple:
    return tuple(summary[k] for k in STATE)


def survey_files(folder: Path) -> dict:
    return {
        "points": ("points.csv", (folder / "points.csv").read_bytes(), "text/csv"),
        "segments": ("segments.csv", (folder / "segments.csv").read_bytes(), "text/csv"),
    }


def job_row(engine: sa.Engine, job_id: str) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT status, progress, message FROM job WHERE id = :i"), {"i": job_id}
        ).one()


def sql_state(engine: sa.Engine) -> tuple[tuple, int]:
    """The network's state and the number of applied batches, read directly from the twin."""
    with engine.connect() as conn:
        conn.execute(sa.text("SET statement_timeout = '300s'"))
        summary = network_summary(conn)
        applied = conn.execute(
            sa.text("SELECT count(*) FROM batch WHERE status = 'applied'")
        ).scalar()
    return state(summary), applied


def test_readers_see_the_old_or_the_new_network_never_a_mix(tmp_path: Path) -> None:
    settings = make_twin("test_api_concurrency_read", tmp_path, data="small")
    generate_district(tmp_path / "district", scale=2, seed=0)
    server = start_server(settings, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            viewer, editor = sign_in(client, "viewer"), sign_in(client, "editor")
            before = state(client.get("/network/summary", headers=viewer).json())
            pipes_before = client.get(
                "/collections/pipes/items", params={"limit": 1}, headers=viewer
            ).json()["numberMatched"]
            assert pipes_before == before[0]

            stop = threading.Event()
            readings: list[tuple[float, float, str, object]] = []
            failures: list[str] = []

            def read(i: int) -> None:
                # Most readers ask for the summary; every fifth counts the pipes collection.
                path, params = (
                    ("/collections/pipes/items", {"limit": 1})
                    if i % 5 == 0
                    else ("/network/summary", None)
                )
                with httpx.Client(base_url=server.url, timeout=120, headers=viewer) as c:
                    while not stop.is_set():
                        t0 = time.monotonic()
                        try:
                            r = c.get(path, params=params)
                        except httpx.HTTPError as exc:
                            failures.append(f"{path}: {exc!r}")
                            return
                        t1 = time.monotonic()
                        if r.status_code != 200:
                            failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                            return
                        body = r.json()
                        seen = (
                            body["numberMatched"]
                            if path.startswith("/collections")
                            else state(body)
                        )
                        readings.append((t0, t1, path, seen))

            def gather(n: int) -> None:
                """Wait for ``n`` readings in all (or a failure)."""
                deadline = time.monotonic() + 120
                while len(readings) < n and not failures and time.monotonic() < deadline:
                    time.sleep(0.01)

            threads = [
                threading.Thread(target=read, args=(i,), daemon=True) for i in range(READERS)
            ]
            for t in threads:
                t.start()
            gather(2 * READERS)

            r = client.post(
                "/imports",
                headers=editor,
                files=survey_files(tmp_path / "district"),
                data={"scope": "district"},
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["jobID"]
            loading_from = loading_to = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                job = client.get(f"/jobs/{job_id}", headers=editor).json()
                now = time.monotonic()
                if job["status"] == "running" and job["progress"] >= 40 and loading_from is None:
                    loading_from = now  # the batch's transaction is open from here on
                if job["status"] in ("successful", "failed"):
                    loading_to = now
                    break
                time.sleep(0.02)
            assert job["status"] == "successful", job
            gather(len(readings) + 2 * READERS)
            stop.set()
            for t in threads:
                t.join(60)
            report = client.get(f"/jobs/{job_id}/results", headers=editor).json()
            after = state(client.get("/network/summary", headers=viewer).json())
            pipes_after = client.get(
                "/collections/pipes/items", params={"limit": 1}, headers=viewer
            ).json()["numberMatched"]
    finally:
        server.stop()
        drop_schema(settings)

    assert not failures, failures[:5]
    assert report["status"] == "applied"
    changes = report["counts"]["changes"]
    assert after[0] == before[0] + changes["segment"]["added"]
    assert after[2] == before[2] + changes["node"]["added"]
    assert after[6] == report["batch_id"] and pipes_after == after[0]

    summaries = Counter(seen for _, _, path, seen in readings if path == "/network/summary")
    counts = Counter(seen for _, _, path, seen in readings if path != "/network/summary")
    assert set(summaries) <= {before, after}, (
        f"a mixed network was served: {set(summaries) - {before, after}}"
    )
    assert set(counts) <= {pipes_before, pipes_after}, f"mixed counts: {counts}"
    assert summaries[before] and summaries[after] and counts[pipes_before] and counts[pipes_after]
    # The readers really ran while the batch was loading.
    assert loading_from is not None
    during = [r for r in readings if loading_from <= r[0] and r[1] <= loading_to]
    assert len(during) >= 20, f"only {len(during)} readings while the batch loaded"


def _import_and_kill(settings: TwinSettings, folder: Path, log: Path) -> tuple[str, str, int]:
    """Start an import of ``folder`` and SIGKILL the server once the load has begun.

    Returns ``"killed"`` when the kill came during the load, ``"finished"`` when the import ended
    before it could be killed; the job id; the server's process id.
    """
    server = start_server(settings, log)
    engine = make_engine(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            editor = sign_in(client, "editor")
            r = client.post(
                "/imports", headers=editor, files=survey_files(folder), data={"scope": "district"}
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["jobID"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = job_row(engine, job_id)
            if job.status in ("successful", "failed"):
                return "finished", job_id, server.process.pid
            # Segments loading: the nodes are already in the batch's open transaction.
            if job.status == "running" and job.progress >= 55:
                server.process.kill()  # SIGKILL: no shutdown, no rollback by the server
                server.process.wait(30)
                return "killed", job_id, server.process.pid
            time.sleep(0.005)
        raise AssertionError(
            f"the import did not reach its load within 300 s: {job_row(engine, job_id)}"
        )
    finally:
        server.stop()
        engine.dispose()


def _district_batch(engine: sa.Engine) -> dict | None:
    """The counts of the 'district' batch if it was applied, else None."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT counts FROM batch WHERE scope = 'district'")).scalar()


def _wait_job(client: httpx.Client, job_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("successful", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_killing_the_server_during_an_import_leaves_the_previous_network(tmp_path: Path) -> None:
    for scale in (4, 8, 16):
        work = tmp_path / f"scale{scale}"
        settings = make_twin("test_api_concurrency_kill", work, data="small")
        engine = make_engine(settings)
        try:
            generate_district(work / "district", scale=scale, seed=0)
            before, applied_before = sql_state(engine)
            outcome, job_id, pid = _import_and_kill(
                settings, work / "district", work / "server.log"
            )
            now, applied_now = sql_state(engine)  # waits for PostgreSQL to roll the batch back
            landed = _district_batch(engine)
            if outcome == "finished" or landed is not None:
                # Too fast to kill mid-load. The batch must have landed whole; try a bigger one.
                added = (landed or {}).get("changes")
                assert added, f"a partly applied batch {landed}: {job_row(engine, job_id)}"
                assert now[0] == before[0] + added["segment"]["added"], "a partly applied batch"
                assert now[2] == before[2] + added["node"]["added"], "a partly applied batch"
                continue
            assert now == before, "the killed import changed the network"
            assert applied_now == applied_before
            assert job_row(engine, job_id).status == "running"  # nobody has told the job yet
            left_behind = list(Path(tempfile.gettempdir()).glob(f"pipetwin-upload-{pid}-*"))
            assert left_behind, "the killed server's uploads should still be on disk"

            # A restarted server marks the job failed and serves the old network.
            server: LiveServer = start_server(settings, work / "restarted.log")
            try:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    editor = sign_in(client, "editor")
                    job = client.get(f"/jobs/{job_id}", headers=editor).json()
                    assert job["status"] == "failed" and "nothing was applied" in job["message"]
                    assert state(client.get("/network/summary", headers=editor).json()) == before
                    batches = client.get("/imports", headers=editor).json()["imports"]
                    assert {b["scope"] for b in batches} == {"survey"}
                    # It takes the next batch: no lock or index was left behind by the crash.
                    r = client.post("/imports", headers=editor, files=survey_files(SMALL))
                    job = _wait_job(client, r.json()["jobID"], editor)
                    assert job["status"] == "successful", job
                    result = client.get(f"/jobs/{job['jobID']}/results", headers=editor).json()
                    assert result["status"] == "applied"
                    # ... and has swept away the uploads the killed server left.
                    assert not any(f.exists() for f in left_behind)
            finally:
                server.stop()
            return
        finally:
            engine.dispose()
            drop_schema(settings)
    pytest.fail("every import finished before the server could be killed, even at scale 16")
