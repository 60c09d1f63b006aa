"""As-built batches (ingest.asbuilt) on the real PostGIS: the life cycle, four eyes, conflicts,
and ``twin asbuilt`` end to end as a user runs it.

Each test submits the small survey with its point ids prefixed and moved north, so the tests
touch features of their own and do not depend on their order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from ingest import asbuilt
from ingest.pipeline import ImportOptions
from tests.conftest import SMALL
from twin.errors import Conflict, DatabaseError, Forbidden, InputError, NotFound
from twin.settings import TwinSettings

TWIN = str(Path(sys.executable).with_name("twin"))


# ----------------------------------------------------------------------------- helpers
def survey(folder: Path, prefix: str, *, break_it: bool = False, names=("points.csv", "segments.csv")):
    """The small survey with point ids prefixed and moved north: (points, segments) paths."""
    p = pd.read_csv(SMALL / "points.csv", dtype=str, keep_default_na=False)
    s = pd.read_csv(SMALL / "segments.csv", dtype=str, keep_default_na=False)
    p["物探点号"] = prefix + p["物探点号"]
    p["X"] = (p["X"].astype(float) + 3000 + 100 * len(prefix)).map("{:.2f}".format)
    s["起点号"] = prefix + s["起点号"]
    s["终点号"] = prefix + s["终点号"]
    if break_it:
        s.loc[0, "起点号"] = prefix + "MISSING"
    paths = []
    for role, frame, name in zip(("points", "segments"), (p, s), names, strict=True):
        (folder / role).mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / role / name, index=False)
        paths.append(folder / role / name)
    return paths[0], paths[1]


def prefixed(engine: sa.Engine, prefix: str) -> tuple[int, int]:
    """Live nodes and segments whose ids start with ``prefix``."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(f"SELECT count(*) FROM current_{t} WHERE {c} LIKE :p"), {"p": prefix + "%"}
            ).scalar()
            for t, c in (("node", "id"), ("segment", "from_node"))
        )


def submit(engine: sa.Engine, settings: TwinSettings, folder: Path, prefix: str, user: str = "alice",
           **kw) -> asbuilt.Submission:
    points, segments = survey(folder, prefix, break_it=kw.pop("break_it", False))
    return asbuilt.submit(engine, settings, points, segments, name=f"as-built {prefix}", user=user, **kw)


def review(engine: sa.Engine, ab: int, user: str, accept: bool = True, note: str | None = None) -> dict:
    with engine.begin() as conn:
        return asbuilt.review(conn, ab, user=user, accept=accept, note=note)


def status(engine: sa.Engine, ab: int) -> str:
    with engine.connect() as conn:
        return asbuilt.current_status(conn, ab)


# ----------------------------------------------------------------------------- the state machine
def test_the_life_cycle_is_one_table():
    assert set(asbuilt.TRANSITIONS) == set(asbuilt.STATES)
    assert all(set(to) <= set(asbuilt.STATES) for to in asbuilt.TRANSITIONS.values())
    assert set(asbuilt.ON_SUBMISSION) <= set(asbuilt.STATES)
    # state       -> may move to (everything else is a Conflict)
    table = [
        ("submitted", {"reviewed", "rejected"}),
        ("reviewed", {"committed"}),
        ("committed", set()),
        ("rejected", set()),
    ]
    for state, targets in table:
        assert {t for t in asbuilt.STATES if asbuilt.allowed(state, t)} == targets, state


# ----------------------------------------------------------------------------- the library
def test_submit_review_commit(twin_settings, twin_engine, tmp_path):
    sub = submit(twin_engine, twin_settings, tmp_path, "RT-")
    assert sub.status == "submitted" and sub.report.status == "checked"
    assert sub.options.scope == f"asbuilt:{sub.id}"
    with twin_engine.connect() as conn:
        doc = asbuilt.get(conn, sub.id)
        table = asbuilt.stored_table(conn, sub.id, "points")
    assert doc["submitted_by"] == "alice" and doc["options"]["scope"] == f"asbuilt:{sub.id}"
    assert doc["options"]["dry_run"] is False and doc["report"]["status"] == "checked"
    assert [f["role"] for f in doc["files"]] == ["points", "segments"]
    assert table.content == (tmp_path / "points" / "points.csv").read_bytes()
    assert prefixed(twin_engine, "RT-") == (0, 0)

    with pytest.raises(Conflict, match="review it first"):
        asbuilt.commit(twin_settings, sub.id, user="alice")
    with pytest.raises(Forbidden, match="four eyes"):
        review(twin_engine, sub.id, "alice")
    doc = review(twin_engine, sub.id, "bob", note="  matches the drawings ")
    assert doc["status"] == "reviewed" and doc["reviewed_by"] == "bob"
    assert doc["review_note"] == "matches the drawings"
    with pytest.raises(Conflict, match="not waiting for review"):
        review(twin_engine, sub.id, "carol")

    report = asbuilt.commit(twin_settings, sub.id, user="alice")
    assert report.status == "applied" and prefixed(twin_engine, "RT-") == (11, 8)
    with twin_engine.connect() as conn:
        doc = asbuilt.get(conn, sub.id)
        created_by, scope = conn.execute(
            sa.text("SELECT created_by, scope FROM batch WHERE id = :b"), {"b": report.batch_id}
        ).one()
    assert doc["status"] == "committed" and doc["committed_by"] == "alice"
    assert doc["batch_id"] == report.batch_id
    assert (created_by, scope) == ("alice", f"asbuilt:{sub.id}")
    with pytest.raises(Conflict, match="only a reviewed batch"):
        asbuilt.commit(twin_settings, sub.id, user="alice")


def test_rejection_needs_a_note_and_is_final(twin_settings, twin_engine, tmp_path):
    sub = submit(twin_engine, twin_settings, tmp_path, "RJ-", options=ImportOptions(scope="rj"))
    assert sub.options.scope == "rj"
    with pytest.raises(InputError, match="note"):
        review(twin_engine, sub.id, "bob", accept=False, note="   ")
    with pytest.raises(InputError, match="NUL"):
        review(twin_engine, sub.id, "bob", accept=False, note="a\x00b")
    assert status(twin_engine, sub.id) == "submitted"
    doc = review(twin_engine, sub.id, "bob", accept=False, note="wrong district")
    assert doc["status"] == "rejected" and doc["review_note"] == "wrong district"
    with pytest.raises(Conflict):
        review(twin_engine, sub.id, "carol")
    with pytest.raises(Conflict):
        asbuilt.commit(twin_settings, sub.id, user="alice")


def test_failing_checks_reject_at_once(twin_settings, twin_engine, tmp_path):
    sub = submit(twin_engine, twin_settings, tmp_path, "CK-", break_it=True)
    assert sub.status == "rejected" and "E202" in sub.report.issue_counts
    with twin_engine.connect() as conn:
        doc = asbuilt.get(conn, sub.id)
    assert doc["status"] == "rejected" and "data checks" in doc["review_note"]
    assert doc["reviewed_at"] is not None and doc["reviewed_by"] is None
    with pytest.raises(Conflict):
        review(twin_engine, sub.id, "bob")


def test_bad_submissions_and_unknown_batches(twin_settings, twin_engine, tmp_path):
    with pytest.raises(InputError, match="needs a name"):
        asbuilt.submit(twin_engine, twin_settings, *survey(tmp_path, "NN-"), name="  ", user="alice")
    with pytest.raises(InputError, match="NUL"):
        asbuilt.submit(twin_engine, twin_settings, *survey(tmp_path, "NN-"), name="a\x00", user="a")
    with twin_engine.connect() as conn:
        with pytest.raises(NotFound):
            asbuilt.get(conn, 99_999_999)
        with pytest.raises(NotFound):
            asbuilt.stored_table(conn, 99_999_999, "points")
        with pytest.raises(InputError, match="states"):
            asbuilt.list_batches(conn, status="lost")
    with pytest.raises(NotFound):
        review(twin_engine, 99_999_999, "bob")


def test_a_failed_commit_leaves_the_batch_reviewed_and_the_twin_unchanged(
    twin_settings, twin_engine, tmp_path
):
    sub = submit(twin_engine, twin_settings, tmp_path, "FC-")
    review(twin_engine, sub.id, "bob")

    def refuse(conn: sa.Connection, report) -> None:  # e.g. the server's audit entry failing
        raise DatabaseError("refused by the test")

    with pytest.raises(DatabaseError, match="refused by the test"):
        asbuilt.commit(twin_settings, sub.id, user="alice", before_commit=refuse)
    assert status(twin_engine, sub.id) == "reviewed" and prefixed(twin_engine, "FC-") == (0, 0)

    # A database failure mid-load: rolled back, and said so.
    with twin_engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION test_refuse_valve() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'valves refused by the test'; END $$; "
            "CREATE TRIGGER test_refuse_valve BEFORE INSERT ON valve "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_valve()"))
    try:
        with pytest.raises(DatabaseError, match="rolled back: .*valves refused"):
            asbuilt.commit(twin_settings, sub.id, user="alice")
    finally:
        with twin_engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER test_refuse_valve ON valve; DROP FUNCTION test_refuse_valve()"))
    assert status(twin_engine, sub.id) == "reviewed" and prefixed(twin_engine, "FC-") == (0, 0)

    # The status changes inside the import's transaction: seen by the hook, with the batch.
    seen = []

    def look(conn: sa.Connection, report) -> None:
        seen.append((asbuilt.current_status(conn, sub.id), report.batch_id))

    report = asbuilt.commit(twin_settings, sub.id, user="alice", before_commit=look)
    assert seen == [("committed", report.batch_id)] and prefixed(twin_engine, "FC-") == (11, 8)


def test_a_batch_committed_meanwhile_is_not_applied_twice(twin_settings, twin_engine, tmp_path):
    sub = submit(twin_engine, twin_settings, tmp_path, "TW-")
    review(twin_engine, sub.id, "bob")
    with twin_engine.begin() as conn:
        first, second = asbuilt.reviewed(conn, sub.id), asbuilt.reviewed(conn, sub.id)
    assert [t.role for t in first.tables] == ["points", "segments"]
    assert asbuilt.commit(twin_settings, first, user="alice").status == "applied"
    with twin_engine.connect() as conn:
        batches = conn.execute(sa.text("SELECT count(*) FROM batch")).scalar()
    with pytest.raises(Conflict, match="no longer reviewed; nothing was applied"):
        asbuilt.commit(twin_settings, second, user="dave")
    with twin_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM batch")).scalar() == batches
        assert asbuilt.get(conn, sub.id)["committed_by"] == "alice"


def test_same_file_names_are_kept_apart(twin_settings, twin_engine, tmp_path):
    points, segments = survey(tmp_path, "SN-", names=("table.csv", "table.csv"))
    sub = asbuilt.submit(twin_engine, twin_settings, points, segments, name="same", user="alice")
    with twin_engine.connect() as conn:
        names = [f["name"] for f in asbuilt.get(conn, sub.id)["files"]]
        listed = asbuilt.list_batches(conn, status="submitted")
    assert names == ["points-table.csv", "segments-table.csv"]
    assert sub.id in [d["id"] for d in listed] and all(d["status"] == "submitted" for d in listed)
    assert {"report", "files"}.isdisjoint(listed[0]) and listed[0]["check"]["status"] == "checked"
    review(twin_engine, sub.id, "bob")
    assert asbuilt.commit(twin_settings, sub.id, user="alice").status == "applied"


# ----------------------------------------------------------------------------- the CLI
def twin(*args: str, user: str, schema: str) -> subprocess.CompletedProcess[str]:
    """Run ``twin asbuilt ARGS`` as ``user``; stderr with its line wrapping undone."""
    env = {**os.environ, "TWIN_DB_SCHEMA": schema, "TWIN_USER": user}
    res = subprocess.run([TWIN, "asbuilt", *args], capture_output=True, text=True, env=env, timeout=300)
    res.stderr = " ".join(res.stderr.split())
    return res


def test_cli_end_to_end(twin_settings, twin_engine, tmp_path):
    schema = twin_settings.db_schema
    points, segments = survey(tmp_path, "CL-")
    res = twin("submit", "--points", str(points), "--segments", str(segments), "--name", "contract 7",
               "--json", user="alice", schema=schema)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    ab = str(doc["id"])
    assert doc["status"] == "submitted" and doc["submitted_by"] == "alice" and doc["name"] == "contract 7"

    # Four eyes, a rejection without a note, an unknown batch: the one error handler, exit 2.
    res = twin("review", ab, "--accept", user="alice", schema=schema)
    assert res.returncode == 2 and "error [FORBIDDEN]" in res.stderr and "four eyes" in res.stderr
    res = twin("review", ab, "--reject", user="bob", schema=schema)
    assert res.returncode == 2 and "error [INPUT]" in res.stderr
    res = twin("review", "99999999", "--accept", user="bob", schema=schema)
    assert res.returncode == 2 and "error [NOT_FOUND]" in res.stderr
    res = twin("commit", ab, user="alice", schema=schema)
    assert res.returncode == 2 and "error [CONFLICT]" in res.stderr and "review it first" in res.stderr

    res = twin("review", ab, "--accept", "--note", "checked on site", user="bob", schema=schema)
    assert res.returncode == 0, res.stderr
    assert "reviewed" in res.stdout and "checked on site" in " ".join(res.stdout.split())

    res = twin("commit", ab, "--json", user="alice", schema=schema)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["status"] == "applied" and report["asbuilt"] == {"id": int(ab), "status": "committed"}
    assert prefixed(twin_engine, "CL-") == (11, 8)
    res = twin("commit", ab, user="alice", schema=schema)
    assert res.returncode == 2 and "error [CONFLICT]" in res.stderr

    listed = json.loads(twin("list", "--json", user="carol", schema=schema).stdout)
    mine = next(d for d in listed if d["id"] == int(ab))
    assert mine["status"] == "committed" and mine["committed_by"] == "alice"
    assert mine["batch_id"] == report["batch_id"]
    table = twin("list", "--status", "committed", user="carol", schema=schema)
    assert table.returncode == 0 and "contract" in table.stdout and "alice" in table.stdout


def test_cli_rejected_submission_exits_1(twin_settings, tmp_path):
    points, segments = survey(tmp_path, "CR-", break_it=True)
    res = twin("submit", "-p", str(points), "-s", str(segments), user="alice",
               schema=twin_settings.db_schema)
    assert res.returncode == 1
    assert "rejected" in res.stdout and "E202" in res.stdout
