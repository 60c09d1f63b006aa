"""The chunked ingest (issue 18): a survey read, checked and COPYed in chunks reports what one
whole read reports, finds the defects whose rows fall in different chunks, and stays all or
nothing on the bulk path (keys dropped while the chunks are COPYed)."""

from __future__ import annotations

import csv
import hashlib
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa

import ingest.load
import ingest.prepare
import ingest.report
import ingest.tables
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from tests.conftest import SMALL

TABLES = ("node", "segment", "valve", "source", "customer")


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [list(r) for r in csv.reader(fh)]


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo district (clean), and a copy with defects whose rows lie chunks apart: a point id
    repeated at the end (E201), the first segment surveyed again at the end (E206), and two new
    water pipes that cross, one at the start of the segment table and one at its end (W208)."""
    clean = tmp_path_factory.mktemp("clean")
    generate_district(clean, scale=1, seed=0)
    bad = tmp_path_factory.mktemp("defects")
    points, segments = _rows(clean / "points.csv"), _rows(clean / "segments.csv")
    head, first = points[0], points[1]
    x, y = head.index("X"), head.index("Y")

    def point(pid: str, dx: float, dy: float) -> list[str]:
        row = list(first)
        row[0], row[x], row[y] = pid, f"{float(first[x]) + 20_000 + dx:.2f}", f"{float(first[y]) + dy:.2f}"
        return row

    new = [point("XA", 0, 0), point("XB", 10, 10), point("XC", 0, 10), point("XD", 10, 0)]
    points = [head, new[0], new[1], *points[1:], new[2], new[3], list(first)]
    template = next(r for r in segments[1:] if r[2] == "JS")
    cross = [[*template[:2], *template[2:]] for _ in range(2)]
    cross[0][:2], cross[1][:2] = ["XA", "XB"], ["XC", "XD"]
    segments = [segments[0], cross[0], *segments[1:], list(segments[1]), cross[1]]
    _write(bad / "points.csv", points)
    _write(bad / "segments.csv", segments)
    return clean, bad


def _checked(folder: Path, settings, chunk_rows: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ingest.tables, "CHUNK_ROWS", chunk_rows)
    return ingest_survey(folder / "points.csv", folder / "segments.csv", settings, dry_run=True)


def _issues(report) -> set[tuple]:
    return {(i.code, i.file, i.row, tuple(i.ids), i.message) for i in report.issues}


def test_chunks_report_what_one_read_reports(district, twin_settings, monkeypatch):
    clean, bad = district
    whole = _checked(bad, twin_settings, 10**9, monkeypatch)
    chunked = _checked(bad, twin_settings, 97, monkeypatch)
    assert whole.status == chunked.status == "rejected"
    assert whole.issue_counts["E201"] == 2 and whole.issue_counts["E206"] == 1
    assert whole.issue_counts["W208"] == 1
    assert chunked.issue_counts == whole.issue_counts
    assert _issues(chunked) == _issues(whole)
    assert chunked.counts == whole.counts
    assert [f["rows"] for f in chunked.files] == [f["rows"] for f in whole.files] == [
        len(_rows(bad / n)) - 1 for n in ("points.csv", "segments.csv")]
    assert _checked(clean, twin_settings, 97, monkeypatch).issue_counts == {}


def _count(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def test_ids_through_hashes_stay_exact_when_hashes_collide(district, twin_settings, monkeypatch):
    """Point ids are looked up, and point and segment ids checked for repeats, through sorted
    64-bit hashes; with a hash of four values (every id collides) each check still reports
    exactly what the real hash gives (crossings too, asked of their tree in slices), and the
    lookup agrees with a pandas index."""
    _, bad = district
    ids = pd.Series([f"P{i}" for i in range(0, 3000, 3)])
    asked = np.array([*(f"P{i}" for i in range(200)), None, "", "nan"], dtype=object)
    expected = pd.Index(ids).get_indexer(asked)
    assert (ingest.prepare._IdIndex(ids).get_indexer(asked) == expected).all()
    real = _checked(bad, twin_settings, 97, monkeypatch)
    strong = ingest.prepare._hash_text
    monkeypatch.setattr(ingest.prepare, "_hash_text", lambda values: strong(values) % np.uint64(4))
    monkeypatch.setattr(ingest.prepare, "_QUERY_SLICE", 7)  # crossings asked 7 lines at a time
    assert (ingest.prepare._IdIndex(ids).get_indexer(asked) == expected).all()
    weak = _checked(bad, twin_settings, 97, monkeypatch)
    assert weak.issue_counts == real.issue_counts
    assert weak.issue_counts["E201"] == 2 and weak.issue_counts["W208"] == 1
    assert _issues(weak) == _issues(real)
    assert weak.counts == real.counts


def test_chunked_bulk_load_is_all_or_nothing(district, twin_settings, twin_engine, monkeypatch):
    clean, bad = district
    monkeypatch.setattr(ingest.tables, "CHUNK_ROWS", 300)
    monkeypatch.setattr(ingest.load, "BULK_ROWS", 1)  # keys dropped, as for a million rows
    empty = _count(twin_engine)
    # Duplicates chunks apart reach a table without its keys: the checks reject, nothing is written.
    report = ingest_survey(bad / "points.csv", bad / "segments.csv", twin_settings, scope="district")
    assert report.status == "rejected" and report.batch_id is None
    assert _count(twin_engine) == empty
    report = ingest_survey(clean / "points.csv", clean / "segments.csv", twin_settings, scope="district")
    assert report.status == "applied", report.as_dict()["errors"][:3]
    added = {t: c["added"] for t, c in report.counts["changes"].items()}
    assert added == _count(twin_engine)
    assert added["segment"] == len(_rows(clean / "segments.csv")) - 1
    with twin_engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND "
                                    "conrelid = ANY(ARRAY['node'::regclass, 'segment'::regclass])")).scalar()
        assert keys == 2
    again = ingest_survey(clean / "points.csv", clean / "segments.csv", twin_settings, scope="district")
    assert all(c == {"added": 0, "changed": 0, "retired": 0} for c in again.counts["changes"].values())


def test_a_short_row_falls_back_to_the_whole_read(tmp_path, twin_settings):
    """A row with fewer cells than the header stops Arrow's chunked reader; the careful reader
    takes the table whole (the missing cells empty), as it always did."""
    rows = _rows(SMALL / "points.csv")
    short = next(i for i, r in enumerate(rows[1:], start=1) if r[-1] == "")
    rows[short] = rows[short][:-1]
    _write(tmp_path / "points.csv", rows)
    (tmp_path / "segments.csv").write_bytes((SMALL / "segments.csv").read_bytes())
    with pytest.raises(ingest.tables.WholeReadNeeded):
        list(ingest.tables.open_table(tmp_path / "points.csv", ingest.tables.POINT_COLUMNS,
                                      ingest.tables.POINT_REQUIRED))
    report = ingest_survey(tmp_path / "points.csv", tmp_path / "segments.csv", twin_settings, dry_run=True)
    assert report.status == "checked" and report.issue_counts == {}, report.as_dict()
    assert report.files[0]["rows"] == len(rows) - 1


def test_segments_wait_on_disk_while_the_nodes_are_indexed(twin_settings, twin_engine, monkeypatch):
    """The nodes' indexes are built while the segments are checked; the segments' rows are spooled
    meanwhile and COPYed once the connection is free: the same rows land."""
    with twin_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    monkeypatch.setattr(ingest.load, "BULK_ROWS", 1)
    real = ingest.load._restore_indexes
    spooled = []

    def slow(cur, table, dropped, step, *args):
        if table == "node":
            cur.execute("SELECT pg_sleep(1)")  # the segments' chunks come meanwhile
        real(cur, table, dropped, step, *args)

    real_copy = ingest.load._copy

    def watch(copy, table, frame, *args, **kw):
        spooled.append(hasattr(copy, "fileno"))
        real_copy(copy, table, frame, *args, **kw)

    monkeypatch.setattr(ingest.load, "_restore_indexes", slow)
    monkeypatch.setattr(ingest.load, "_copy", watch)
    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied" and any(spooled)
    assert {t: c["added"] for t, c in report.counts["changes"].items()} == _count(twin_engine)
    assert _count(twin_engine)["segment"] == len(_rows(SMALL / "segments.csv")) - 1


def test_chunks_read_ahead_on_a_thread_keep_order_errors_and_stop():
    """The reader's thread hands chunks over in order, raises a reading error at the chunk where
    it happened, and ends when the import stops early (a rejected batch)."""
    def chunks(fail_at=None):
        for i in range(5):
            if i == fail_at:
                raise ingest.tables.WholeReadNeeded(f"row {i}")
            yield i

    assert list(ingest.tables.prefetched(chunks())) == [0, 1, 2, 3, 4]
    got = []
    with pytest.raises(ingest.tables.WholeReadNeeded, match="row 3"):
        for c in ingest.tables.prefetched(chunks(fail_at=3)):
            got.append(c)
    assert got == [0, 1, 2]
    stream = ingest.tables.prefetched(iter(range(10**9)))
    assert next(stream) == 0
    stream.close()  # the caller gives up: the thread must not keep reading
    readers = [t for t in threading.enumerate() if t.name == "twin-read"]
    for t in readers:
        t.join(timeout=2)
    assert not any(t.is_alive() for t in readers)


def test_crossings_found_strip_by_strip_are_every_crossing_once(monkeypatch):
    """Crossings of one utility are looked for in strips of easting (bounded memory at any
    size): with strips of five lines the warnings are exactly those of one strip, and exactly
    the pairs shapely finds by testing every pair (no pair twice, none lost at a strip's edge)."""
    rng = np.random.default_rng(7)
    n_lines = 160
    west = rng.uniform(0, 400, (n_lines, 2))
    east = west + rng.uniform(-40, 40, (n_lines, 2))  # lines up to 57 m, many across strips
    first = pd.DataFrame(np.concatenate([west, east]), columns=["easting", "northing"])
    fi, ti = np.arange(n_lines), np.arange(n_lines) + n_lines
    ti[::9] = fi[1::9][:len(ti[::9])]  # some lines meet at a shared point: not crossings
    segments = pd.DataFrame({
        "_valid": True, "_fi": fi, "_ti": ti, "_row": np.arange(2, n_lines + 2),
        "id": [f"S{i}" for i in range(n_lines)], "subtype": None,
        "utility": rng.choice(["JS", "YS"], n_lines)})

    def warned() -> list:
        report = ingest.report.Report()
        ingest.prepare._check_crossings(segments, first, "segments.csv", report)
        return sorted(tuple(i.ids) for i in report.issues if i.code == "W208")

    whole = warned()
    monkeypatch.setattr(ingest.prepare, "_STRIP_LINES", 5)
    assert len(ingest.prepare._strips(np.minimum(first["easting"].to_numpy()[fi],
                                                 first["easting"].to_numpy()[ti]))) > 10
    stripped = warned()
    xy = first[["easting", "northing"]].to_numpy()
    lines = shapely.linestrings(np.stack([xy[fi], xy[ti]], axis=1))
    every = sorted((f"S{a}", f"S{b}") for a in range(n_lines) for b in range(a + 1, n_lines)
                   if segments["utility"][a] == segments["utility"][b]
                   and not {fi[a], ti[a]} & {fi[b], ti[b]} and shapely.intersects(lines[a], lines[b]))
    assert len(every) > 20
    assert stripped == whole == every


@pytest.mark.parametrize("late", ["blank line", "not UTF-8"])
def test_reading_before_the_whole_scan_ends_as_the_scan_first_did(district, tmp_path, twin_settings, monkeypatch,
                                                                   late):
    """A file whose first block is plain UTF-8 is read while a thread hashes and checks the rest;
    when the rest is not plain UTF-8 (a blank line, a byte UTF-8 cannot decode) the import falls
    back to the whole read, and reports exactly what scanning the file first reported."""
    _, bad = district
    for name in ("points.csv", "segments.csv"):
        (tmp_path / name).write_bytes((bad / name).read_bytes())
    data = (tmp_path / "segments.csv").read_bytes()
    cut = data.rindex(b"\n", 0, len(data) - 200) + 1
    extra = b"\n" if late == "blank line" else data[cut:data.index(b"\n", cut)].replace(b",active,", b",activ\xe9,") + b"\n"
    (tmp_path / "segments.csv").write_bytes(data[:cut] + extra + data[cut:])
    first = _checked(tmp_path, twin_settings, 97, monkeypatch)  # the blocks exceed the files: scanned first
    monkeypatch.setattr(ingest.tables, "_SCAN_BLOCK", 2048)
    behind = _checked(tmp_path, twin_settings, 97, monkeypatch)
    assert behind.status == first.status
    assert _issues(behind) == _issues(first) and behind.issue_counts == first.issue_counts
    assert behind.files == first.files
    assert [f["sha256"] for f in behind.files] == [
        hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("points.csv", "segments.csv")]
    clean = _checked(bad, twin_settings, 97, monkeypatch)  # (plain: read while scanned)
    assert clean.files[1]["sha256"] == hashlib.sha256((bad / "segments.csv").read_bytes()).hexdigest()
