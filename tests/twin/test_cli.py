"""The ``twin`` command end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import twin.db as twin_db
from tests.conftest import SMALL
from tests.ingest.test_asbuilt import survey
from twin.settings import get_settings

TWIN = str(Path(sys.executable).with_name("twin"))


def run(*args: str, schema: str | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if schema:
        env["TWIN_DB_SCHEMA"] = schema
    if user:
        env["TWIN_USER"] = user
    return subprocess.run([TWIN, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def top_help() -> str:
    """`twin --help` (it loads every plugin: seconds), run once for the module's tests."""
    res = run("--help")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_plugins_add_their_commands(top_help):
    out = top_help
    for cmd in ("db", "summary", "ingest", "sample", "asbuilt"):
        assert cmd in out


def test_a_command_loads_only_its_own_plugin(top_help):
    """`twin db ...` loads no plugin and `twin tiles ...` only tiles: wntr (exchange, analysis)
    stays unloaded, so the commands start at once; the top-level help still lists them all."""
    probe = ("import sys; from twin import cli; sys.argv = {argv!r}; cli._load_plugins(); "
             "print(sorted(g.name for g in cli.app.registered_groups), 'wntr' in sys.modules)")
    for argv, groups in ((["twin", "db", "status"], "['db']"), (["twin", "tiles", "build"], "['db', 'tiles']")):
        out = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True, text=True,
                             timeout=120, check=True).stdout.strip()
        assert out == f"{groups} False", out
    assert "export" in top_help and "Usage" in run("nope").stderr


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


def test_errors_reach_the_one_handler(twin_settings, tmp_path):
    """Commands let a TwinError through: ``main()`` prints ``error [CODE] message``, exit 2."""
    schema = twin_settings.db_schema
    cases = [  # (command, code, words of the message), one per package that adds commands
        (("restore", str(tmp_path / "nope.dump"), "--yes"), "NOT_FOUND", "nope.dump"),
        (("user", "key", "nobody-at-all"), "NOT_FOUND", "nobody-at-all"),
        (("ingest", "survey", "-p", str(SMALL / "points.csv"), "-s", str(SMALL / "segments.csv"),
          "--axis-order", "xy"), "INPUT", "axis order"),
        (("asbuilt", "commit", "99999999"), "NOT_FOUND", "no as-built batch 99999999"),
    ]
    for args, code, words in cases:
        res = run(*args, schema=schema)
        said = " ".join(res.stderr.split())  # rich wraps long lines
        assert res.returncode == 2, (args, res.stderr)
        assert f"error [{code}]" in said and words in said, (args, said)
        assert "Traceback" not in res.stderr


def _audit(settings, since: int) -> list:
    """Audit entries after id ``since``, oldest first."""
    engine = twin_db.open_twin(settings)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, user_name, role, action, method, path, params, affected "
                                    "FROM audit_log WHERE id > :i ORDER BY id"), {"i": since}).all()
    engine.dispose()
    return rows


def _last_audit_id(settings) -> int:
    engine = twin_db.open_twin(settings)
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar()
    engine.dispose()
    return last


def test_user_commands_are_audited(twin_settings):
    schema, operator = twin_settings.db_schema, get_settings().user_name
    since = _last_audit_id(twin_settings)
    assert run("user", "add", "cli-audited", "--role", "viewer", "--no-password", schema=schema).returncode == 0
    assert run("user", "role", "cli-audited", "--role", "editor", schema=schema).returncode == 0
    key = run("user", "key", "cli-audited", "--label", "pump station", schema=schema)
    assert key.returncode == 0 and key.stdout.startswith("ptk_")
    keys = run("user", "keys", "cli-audited", schema=schema)
    assert keys.returncode == 0 and "pump station" in keys.stdout and key.stdout.strip() not in keys.stdout
    key_id = next(line.split()[1] for line in keys.stdout.splitlines() if "pump station" in line)
    assert run("user", "revoke-key", "cli-audited", key_id, schema=schema).returncode == 0
    gone = run("user", "revoke-key", "cli-audited", "99999999", schema=schema)
    assert gone.returncode == 2 and "NOT_FOUND" in gone.stderr
    rows = _audit(twin_settings, since)
    assert [r.action for r in rows] == ["user-add", "user-change", "api-key-add", "api-key-revoke"]
    assert all(r.user_name == operator and r.role == "cli" and r.method == "CLI" for r in rows)
    assert all(r.affected == ["cli-audited"] for r in rows)
    assert [r.path for r in rows] == ["twin user add", "twin user role", "twin user key", "twin user revoke-key"]
    assert rows[1].params == {"role": "editor"} and rows[3].params == {"key_id": int(key_id)}
    assert key.stdout.strip() not in str([r.params for r in rows])


def test_an_import_is_audited_in_its_batch(twin_settings):
    since = _last_audit_id(twin_settings)
    res = run("ingest", "survey", "--points", str(SMALL / "points.csv"), "--segments",
              str(SMALL / "segments.csv"), "--scope", "audited", "--json", schema=twin_settings.db_schema)
    assert res.returncode == 0, res.stderr
    batch = json.loads(res.stdout)["batch_id"]
    (entry,) = _audit(twin_settings, since)
    assert (entry.action, entry.role, entry.path) == ("import", "cli", "twin ingest survey")
    assert entry.affected == [str(batch)]
    assert entry.params["status"] == "applied" and entry.params["scope"] == "audited"
    assert entry.params["files"] == ["points.csv", "segments.csv"]
    # A dry run writes nothing, so it leaves no entry.
    dry = run("ingest", "survey", "--points", str(SMALL / "points.csv"), "--segments",
              str(SMALL / "segments.csv"), "--dry-run", "--json", schema=twin_settings.db_schema)
    assert dry.returncode == 0 and len(_audit(twin_settings, since)) == 1


def test_asbuilt_steps_are_audited_in_their_transactions(twin_settings, tmp_path):
    schema = twin_settings.db_schema
    points, segments = survey(tmp_path, "AU-")
    since = _last_audit_id(twin_settings)
    res = run("asbuilt", "submit", "-p", str(points), "-s", str(segments), "--name", "audited works", "--json",
              schema=schema, user="alice")
    assert res.returncode == 0, res.stderr
    ab = json.loads(res.stdout)["id"]
    assert run("asbuilt", "review", str(ab), "--accept", schema=schema, user="bob").returncode == 0
    res = run("asbuilt", "commit", str(ab), "--json", schema=schema, user="alice")
    assert res.returncode == 0, res.stderr
    batch = json.loads(res.stdout)["batch_id"]
    rows = _audit(twin_settings, since)
    assert [(r.action, r.user_name, r.role) for r in rows] == [
        ("asbuilt-submit", "alice", "cli"), ("asbuilt-review", "bob", "cli"), ("asbuilt-commit", "alice", "cli")]
    assert rows[0].affected == rows[1].affected == [f"asbuilt:{ab}"]
    assert rows[2].affected == [f"asbuilt:{ab}", str(batch)] and rows[2].params["status"] == "applied"
    assert rows[0].params["name"] == "audited works" and rows[1].params["decision"] == "accept"


def test_a_tiles_build_is_audited(twin_settings, tmp_path):
    since = _last_audit_id(twin_settings)
    res = run("tiles", "build", "--out", str(tmp_path / "tiles"), "--json", schema=twin_settings.db_schema,
              user="builder")
    assert res.returncode == 0, res.stderr
    (entry,) = _audit(twin_settings, since)
    assert (entry.action, entry.user_name, entry.role, entry.path) == ("tiles-build", "builder", "cli",
                                                                       "twin tiles build")
    assert entry.params["tiles_written"] == json.loads(res.stdout)["tiles_written"]


def test_proposal_commands_are_audited_in_their_transactions(twin_settings, tmp_path):
    schema = twin_settings.db_schema
    doc = {"type": "Feature", "properties": {"utility": "RQ", "size": "DN200", "z_reference": "top"},
           "geometry": {"type": "LineString", "coordinates": [[410030.0, 4034980.0, 33.0],
                                                              [410030.0, 4035020.0, 33.0]]}}
    (tmp_path / "gas.geojson").write_text(json.dumps(doc))
    since = _last_audit_id(twin_settings)
    res = run("analyze", "proposal", str(tmp_path / "gas.geojson"), "--name", "gas main", "--json",
              schema=schema, user="alice")
    assert res.returncode in (0, 1), res.stderr
    pid = json.loads(res.stdout)["proposal_id"]
    assert run("analyze", "proposal-decide", str(pid), "--status", "reviewed", schema=schema,
               user="bob").returncode == 0
    refused = run("analyze", "proposal-withdraw", str(pid), schema=schema, user="carol")
    assert refused.returncode == 2  # not hers: nothing written, nothing audited
    assert run("analyze", "proposal-withdraw", str(pid), "--note", "not needed", schema=schema,
               user="alice").returncode == 0
    rows = _audit(twin_settings, since)
    assert [(r.action, r.user_name, r.role) for r in rows] == [
        ("proposal-submit", "alice", "cli"), ("proposal-reviewed", "bob", "cli"),
        ("proposal-withdrawn", "alice", "cli")]
    assert all(r.affected == [f"proposal:{pid}"] for r in rows)
    assert rows[0].params["name"] == "gas main" and rows[0].path == "twin analyze proposal"
    assert rows[2].params == {"proposal_id": pid, "note": "not needed"}
