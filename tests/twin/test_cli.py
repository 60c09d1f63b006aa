"""The ``twin`` command end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import twin.db as twin_db
from tests.conftest import SMALL

TWIN = str(Path(sys.executable).with_name("twin"))


def run(*args: str, schema: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if schema:
        env["TWIN_DB_SCHEMA"] = schema
    return subprocess.run([TWIN, *args], capture_output=True, text=True, env=env, timeout=300)


def test_plugins_add_their_commands():
    out = run("--help").stdout
    for cmd in ("db", "summary", "ingest", "sample"):
        assert cmd in out


def test_db_commands_are_idempotent(twin_settings):
    assert run("db", "start").returncode == 0
    second = run("db", "start")
    assert second.returncode == 0
    if not os.environ.get("TWIN_DATABASE_URL"):
        assert "already running" in second.stderr
    url = run("db", "url")
    assert url.returncode == 0 and url.stdout.strip().startswith("postgresql")
    status = run("db", "status", schema=twin_settings.db_schema)
    assert status.returncode == 0 and "PostGIS" in status.stderr
    up = run("db", "upgrade", schema=twin_settings.db_schema)
    head = max(p.name[:4] for p in (Path(twin_db.__file__).parent / "migrations" / "versions").glob("0*.py"))
    assert up.returncode == 0 and f"at revision {head}" in up.stderr


def test_ingest_and_summary_json(twin_settings):
    res = run("ingest", "survey", "--points", str(SMALL / "points.csv"), "--segments",
              str(SMALL / "segments.csv"), "--json", schema=twin_settings.db_schema)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["status"] == "applied" and isinstance(report["batch_id"], int)
    assert set(report) >= {"status", "batch_id", "counts", "errors", "warnings"}
    summary = json.loads(run("summary", "--json", schema=twin_settings.db_schema).stdout)
    assert summary["segments"] == 8 and summary["valves"] == 2 and summary["critical_customers"] == 1
    assert {u["utility"] for u in summary["by_utility"]} == {"JS", "PS", "DL"}


def test_rejected_batch_exits_non_zero_with_report(twin_settings, tmp_path):
    bad = tmp_path / "segments.csv"
    bad.write_text((SMALL / "segments.csv").read_text(encoding="utf-8").replace("DN300", "DNxx", 1),
                   encoding="utf-8")
    res = run("ingest", "survey", "--points", str(SMALL / "points.csv"), "--segments", str(bad), "--json",
              schema=twin_settings.db_schema)
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["status"] == "rejected" and report["batch_id"] is None
    assert report["errors"][0]["code"] == "E305" and report["errors"][0]["row"] == 2


def test_missing_file_is_a_clear_error(twin_settings, tmp_path):
    res = run("ingest", "survey", "--points", str(tmp_path / "nope.csv"), "--segments",
              str(SMALL / "segments.csv"), "--json", schema=twin_settings.db_schema)
    assert res.returncode == 1
    assert "nope.csv" in json.loads(res.stdout)["errors"][0]["message"]
