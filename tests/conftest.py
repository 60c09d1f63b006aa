"""Shared fixtures: a fresh schema per test module on the real PostGIS."""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.sample import POINT_HEADERS, SEGMENT_HEADERS
from twin.db import make_engine, open_twin
from twin.settings import TwinSettings, get_settings

DATA = Path(__file__).parent / "data"
CHROMIUM = Path("/usr/bin/chromium")
#: Chromium flags: software WebGL (SwiftShader), and nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
SMALL = DATA / "small"

#: Rough seconds of the longest test modules (setup included; a loaded 2-core machine, `pytest
#: -n 2 --dist loadfile --durations=0` summed per module). `make test` hands whole modules to two
#: workers; they are sent longest first (the rest in collection order) so no long module starts
#: last while the other worker idles. xdist's own reordering (most tests first) would send the
#: long single-test modules last, so it is switched off. Refresh when a module grows past these.
MODULE_SECONDS = {
    "tests/viewer/test_viewer.py": 230,
    "tests/api/test_schemathesis.py": 225,
    "tests/viewer/test_edit.py": 100,
    "tests/twin/test_cli.py": 90,
    "tests/viewer/test_layout_access.py": 88,
    "tests/viewer/test_stats_viewer.py": 76,
    "tests/viewer/test_history.py": 75,
    "tests/viewer/test_field.py": 72,
    "tests/api/test_concurrency.py": 68,
    "tests/twin/test_backup.py": 61,
    "tests/viewer/test_viewer_phone.py": 50,
    "tests/analysis/test_segments.py": 45,
    "tests/viewer/test_criticality_viewer.py": 42,
    "tests/exchange/test_export.py": 32,
    "tests/viewer/test_live_viewer.py": 30,
    "tests/twin/test_store.py": 30,
    "tests/api/test_live.py": 30,
    "tests/ingest/test_asbuilt.py": 28,
    "tests/api/test_workers.py": 28,
    "tests/viewer/test_first_view.py": 26,
    "tests/viewer/test_language.py": 24,
    "tests/tiles/test_cesium.py": 24,
    "tests/api/test_processes.py": 24,
    "tests/analysis/test_shutoff.py": 24,
}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order made below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (a stable sort: each module's tests keep their order)."""
    items.sort(key=lambda item: -MODULE_SECONDS.get(item.nodeid.split("::", 1)[0], 0))


def drop_schema(settings: TwinSettings) -> None:
    """Drop the settings' schema and everything in it (tests make their own)."""
    engine = make_engine(settings, admin=True)  # the schema is the admin role's
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
    engine.dispose()


def write_survey(folder: Path, points: list[tuple], segments: list[tuple]) -> None:
    """A CJJ 61 survey (points.csv, segments.csv) in ``folder`` from hand-written rows: points
    ``(id, utility, feature, easting, northing, ground, depth)``, segments ``(from, to, utility,
    size)`` with the ends' depths. X is the northing, Y the easting (DOMAIN.md)."""
    with open(folder / "points.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(POINT_HEADERS)
        for pid, u, feat, e, n, g, d in points:
            row = dict.fromkeys(POINT_HEADERS, "")
            row.update({"物探点号": pid, "管线类型": u, "特征": feat, "X": f"{n:.2f}", "Y": f"{e:.2f}",
                        "地面高程": f"{g:.3f}", "埋深": f"{d:.2f}"})
            w.writerow(row.values())
    depth = {p[0]: p[6] for p in points}
    with open(folder / "segments.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SEGMENT_HEADERS)
        for a, b, u, size in segments:
            row = dict.fromkeys(SEGMENT_HEADERS, "")
            row.update({"起点号": a, "终点号": b, "管线类型": u, "起点埋深": depth[a], "终点埋深": depth[b],
                        "管径/断面": size, "状态": "active"})
            w.writerow(row.values())


@pytest.fixture(scope="module")
def twin_settings(request: pytest.FixtureRequest) -> TwinSettings:
    """Settings naming a schema of this test module's own, dropped before and after."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    # The process id keeps two runs on one machine (a developer's and CI's) out of each other's way.
    schema = "test_" + re.sub(r"\W", "_", name)[:40] + f"_{os.getpid()}"
    settings = get_settings(db_schema=schema)
    open_twin(get_settings()).dispose()  # starts the private cluster when it is the one in use
    drop_schema(settings)
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="module")
def twin_engine(twin_settings: TwinSettings) -> sa.Engine:
    """An engine on the module's migrated, empty twin."""
    engine = open_twin(twin_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def small_copy(tmp_path: Path) -> Path:
    """A writable copy of the small valid survey (points.csv, segments.csv)."""
    for f in ("points.csv", "segments.csv"):
        shutil.copy(SMALL / f, tmp_path / f)
    return tmp_path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium through Playwright, one per test process: Playwright's sync API runs one
    instance per thread, so the tiles' and the viewer's tests share it."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only tests with a browser

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
