"""Work limits over HTTP: concurrent analyses and table readings (per user and in all), the
proposal budget, and uploaded tables measured before they are parsed.

The twin is the one water main of :mod:`tests.analysis.test_proposal` (along N0 from E0), with
``TWIN_ANALYSES_PER_USER=2`` and ``TWIN_ANALYSES_GLOBAL=3``. Analyses are held in progress by an
exclusive lock on the segment table, as in :mod:`tests.api.test_processes`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openpyxl
import pytest

from analysis.proposal_input import MAX_EXCAVATION_M2, MAX_LENGTH_M, MAX_POSITIONS
from api.limits import WAIT_S, WorkLimits
from ingest.pipeline import ingest_survey
from tests.analysis.test_proposal import E0, N0, write_survey
from tests.api.conftest import Api, make_twin, open_api
from tests.api.test_processes import segments_locked, wait_until, waiting_on_segments
from tests.api.test_proposals import table_files
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.errors import TooBusy

#: Rows of the workbook that unpacks to millions of rows: one more than an import may hold.
BOMB_ROWS = 2_000_001


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("limits")
    settings = make_twin("test_api_limits", tmp, data="empty")
    write_survey(tmp)
    report = ingest_survey(tmp / "points.csv", tmp / "segments.csv", settings)
    assert report.status == "applied", report
    settings = settings.model_copy(update={"analyses_per_user": 2, "analyses_global": 3})
    yield from open_api(settings)
    drop_schema(settings)


def pipe(coords: list[list[float]], fid: str = "P1") -> dict:
    return {"type": "Feature", "properties": {"id": fid, "utility": "RQ", "size": "DN200", "depth_m": 1.2},
            "geometry": {"type": "LineString", "coordinates": coords}}


def crossing() -> dict:
    """A gas pipe crossing the main square, well clear of it."""
    return pipe([[E0 + 30, N0 - 20], [E0 + 30, N0 + 20]])


def check(api: Api, proposal: dict, role: str = "viewer") -> httpx.Response:
    return api.post("/processes/proposal-check/execution", role, json={"inputs": {"proposal": proposal}})


# ----------------------------------------------------------------------------- concurrency
def test_the_limits_are_made_with_the_app(api: Api) -> None:
    limits = api.client.app.state.work_limits
    assert isinstance(limits, WorkLimits) and (limits.per_user, limits.total) == (2, 3)


def test_analyses_are_limited_per_user_and_in_all(api: Api, tmp_path: Path) -> None:
    engine = open_twin(api.settings)
    answers: dict[str, int] = {}

    def run(name: str, role: str) -> None:
        answers[name] = check(api, crossing(), role).status_code

    threads = [threading.Thread(target=run, args=args) for args in
               (("viewer-1", "viewer"), ("viewer-2", "viewer"), ("editor", "editor"))]
    try:
        with segments_locked(engine):
            for n, t in enumerate(threads[:2], start=1):
                t.start()
                wait_until(lambda n=n: waiting_on_segments(engine, api.settings.db_schema) == n)
            # the viewer's third check waits a moment for a slot, then is refused
            t0 = time.monotonic()
            r = check(api, crossing())
            waited = time.monotonic() - t0
            assert r.status_code == 429, r.text
            assert r.json()["code"] == "TOO_BUSY" and "TWIN_ANALYSES_PER_USER" in r.json()["description"]
            assert int(r.headers["retry-after"]) >= 1 and WAIT_S <= waited < WAIT_S + 5
            # reading a proposal's tables is work of the same kind
            r = api.post("/proposals/tables", "viewer", files=table_files(tmp_path))
            assert r.status_code == 429, r.text
            # another user still runs one: then the server's three slots are taken
            threads[2].start()
            wait_until(lambda: waiting_on_segments(engine, api.settings.db_schema) == 3)
            r = check(api, crossing(), "approver")
            assert r.status_code == 429 and "TWIN_ANALYSES_GLOBAL" in r.json()["description"]
            # a cheap analysis counts too
            cheap = api.post("/processes/hazards/execution", "approver", json={"inputs": {"at": [E0, N0]}})
            assert cheap.status_code == 429
        for t in threads:
            t.join(60)
        assert answers == {"viewer-1": 200, "viewer-2": 200, "editor": 200}
        assert check(api, crossing()).status_code == 200  # the slots are free again
        assert api.client.app.state.work_limits.running() == 0
    finally:
        engine.dispose()
    refused = api.get("/admin/audit", "admin", params={"action": "process-proposal-check", "user": "viewer"})
    assert 429 in {e["status"] for e in refused.json()["entries"]}


def test_a_slot_freed_while_waiting_is_taken() -> None:
    limits = WorkLimits(per_user=1, total=2, heavy_per_user=1, wait_s=5.0)
    release = threading.Event()

    def hold() -> None:
        with limits.slot("ann"):
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(lambda: limits.running() == 1)
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    with limits.slot("ann"):  # waits for the first to end, well within the wait
        assert time.monotonic() - t0 < 4
    holder.join(10)
    assert limits.running() == 0


def test_only_as_many_wait_as_there_are_slots() -> None:
    limits = WorkLimits(per_user=1, total=5, heavy_per_user=1, wait_s=3.0)
    started, release = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def hold() -> None:
        with limits.slot("ann"):
            started.set()
            release.wait(10)

    def wait_for_one() -> None:
        try:
            with limits.slot("ann"):
                outcomes.append("ran")
        except TooBusy:
            outcomes.append("refused")

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait(5)
    waiter = threading.Thread(target=wait_for_one)
    waiter.start()
    wait_until(lambda: limits._waiting["ann"] == 1)
    # ann's one waiting place is taken: a further request is refused at once, not after the wait
    t0 = time.monotonic()
    with pytest.raises(TooBusy, match="TWIN_ANALYSES_PER_USER"):
        with limits.slot("ann"):
            pass
    assert time.monotonic() - t0 < 1
    # a heavy run over its own limit is refused at once too
    with limits.slot("bob", heavy=True):
        with pytest.raises(TooBusy, match="respond-async"):
            with limits.slot("bob", heavy=True):
                pass
    release.set()
    waiter.join(10)
    holder.join(10)
    assert outcomes == ["ran"] and limits.running() == 0


# ----------------------------------------------------------------------------- the proposal budget
def zigzag(length_m: float, leg_m: float = 400.0) -> list[list[float]]:
    """A line back and forth across the main, ``length_m`` long in legs of ``leg_m``."""
    legs = int(length_m // leg_m) + 1
    return [[E0 + 50 + (leg_m if k % 2 else 0.0), N0 - 100 + 4.0 * k] for k in range(legs + 1)]


def excavation(side_m: float) -> dict:
    x0, y0 = E0 + 50 - side_m / 2, N0 - side_m / 2
    ring = [[x0, y0], [x0 + side_m, y0], [x0 + side_m, y0 + side_m], [x0, y0 + side_m], [x0, y0]]
    return {"type": "Feature", "properties": {"id": "X1", "depth_m": 2.0},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.mark.parametrize("proposal,limit", [
    (pipe([[E0 + 30 + 0.01 * k, N0 - 20 + (k % 2) * 0.01] for k in range(MAX_POSITIONS + 1)]),
     f"{MAX_POSITIONS:,} positions"),
    (pipe(zigzag(MAX_LENGTH_M + 1000)), f"{MAX_LENGTH_M / 1000:g} km"),
    (excavation((MAX_EXCAVATION_M2 * 1.6) ** 0.5), f"{MAX_EXCAVATION_M2:,.0f} m²"),
    (excavation(2000.0), f"{MAX_EXCAVATION_M2:,.0f} m²"),   # the whole district
])
def test_a_proposal_beyond_the_budget_is_400_naming_the_limit(api: Api, proposal: dict, limit: str) -> None:
    for r in (check(api, proposal),
              api.post("/processes/collision/execution", "viewer", json={"inputs": {"proposal": proposal}}),
              api.post("/proposals", "editor", json=proposal),
              api.post("/view/proposal-shape", "viewer", json={"proposal": proposal})):
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "PROPOSAL_TOO_LARGE" and limit in r.json()["description"], r.text


def test_a_proposal_within_the_budget_is_checked(api: Api) -> None:
    at_the_edges = {"type": "FeatureCollection", "features": [
        pipe([[E0 + 30 + 0.1 * k, N0 - 20 + (k % 2) * 0.1] for k in range(MAX_POSITIONS - 5)]),
        excavation((MAX_EXCAVATION_M2 * 0.9) ** 0.5)]}
    t0 = time.monotonic()
    r = check(api, at_the_edges)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 10  # about 0.1 s here; the README has the measurements
    assert check(api, pipe(zigzag(MAX_LENGTH_M - 1000))).status_code == 200


# ----------------------------------------------------------------------------- tables before parsing
@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XLSX of about 0.1 MB whose sheet unpacks to 2,000,001 rows below a header (60 MB of XML)."""
    folder = tmp_path_factory.mktemp("bomb")
    plain = folder / "plain.xlsx"
    book = openpyxl.Workbook(write_only=True)
    book.create_sheet().append(["物探点号"])
    book.save(plain)
    path = folder / "points.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                out.writestr(info.filename, src.read(info.filename))
        with out.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            f.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                    b'<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row>')
            for done in range(0, BOMB_ROWS, 100_000):
                f.write(b"<row><c><v>1</v></c></row>" * min(100_000, BOMB_ROWS - done))
            f.write(b"</sheetData></worksheet>")
    return path


def test_the_bomb_is_small_and_unpacks_large(bomb: Path) -> None:
    with zipfile.ZipFile(bomb) as z:
        unpacked = sum(i.file_size for i in z.infolist())
    assert bomb.stat().st_size < 1_500_000 and unpacked > 50_000_000


def _uploads() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"pipetwin-upload-{os.getpid()}-*")}


def test_a_workbook_of_millions_of_rows_is_refused_before_parsing(api: Api, bomb: Path, tmp_path: Path) -> None:
    files = table_files(tmp_path)
    files["points"] = ("points.xlsx", bomb.read_bytes(), "application/octet-stream")
    before = _uploads()
    # as a proposal's table: its unpacked size alone is too much
    t0 = time.monotonic()
    r = api.post("/proposals/tables", "viewer", files=files)
    assert r.status_code == 400 and r.json()["code"] == "TABLE_TOO_LARGE", r.text
    assert "points.xlsx" in r.json()["description"] and "MB" in r.json()["description"]
    assert time.monotonic() - t0 < 3
    # as an import's: within the size, over TWIN_MAX_TABLE_ROWS once counted; no job is made
    t0 = time.monotonic()
    r = api.post("/imports", "editor", files=files)
    assert r.status_code == 400 and r.json()["code"] == "TABLE_TOO_LARGE", r.text
    assert f"more than {api.settings.max_table_rows:,} rows" in r.json()["description"]
    assert time.monotonic() - t0 < 5
    r = api.post("/asbuilt", "editor", files=files, data={"name": "big"})
    assert r.status_code == 400 and r.json()["code"] == "TABLE_TOO_LARGE", r.text
    assert _uploads() <= before  # the uploads are gone


def test_a_long_csv_is_refused_by_its_rows(api: Api, tmp_path: Path) -> None:
    files = table_files(tmp_path)
    name, data, kind = files["segments"]
    header, row = data.decode("utf-8").splitlines()[:2]
    rows = api.settings.max_proposal_table_rows + 1
    files["segments"] = (name, (header + "\n" + (row + "\n") * rows).encode("utf-8"), kind)
    r = api.post("/proposals/tables", "viewer", files=files)
    assert r.status_code == 400 and r.json()["code"] == "TABLE_TOO_LARGE", r.text
    assert f"at most {api.settings.max_proposal_table_rows:,}" in r.json()["description"]
