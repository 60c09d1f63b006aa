"""Shared fixtures: a fresh schema per test module on the real PostGIS."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from twin.db import make_engine, open_twin
from twin.settings import TwinSettings, get_settings

DATA = Path(__file__).parent / "data"
SMALL = DATA / "small"


def drop_schema(settings: TwinSettings) -> None:
    """Drop the settings' schema and everything in it (tests make their own)."""
    engine = make_engine(settings, admin=True)  # the schema is the admin role's
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
    engine.dispose()


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
