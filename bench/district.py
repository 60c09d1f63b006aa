"""A fresh twin of the demo district (`make demo`'s, scale 1) in a schema of a benchmark's own."""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from twin.db import make_engine, open_twin
from twin.settings import TwinSettings, get_settings

__all__ = ["fresh_demo_twin"]


def fresh_demo_twin(schema: str) -> tuple[TwinSettings, sa.Engine]:
    """Drop ``schema``, load the demo district into it; its settings and an engine on it."""
    settings = get_settings(db_schema=schema)
    admin = make_engine(settings, admin=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()
    with tempfile.TemporaryDirectory() as tmp:
        generate_district(Path(tmp), scale=1, seed=0)
        report = ingest_survey(Path(tmp) / "points.csv", Path(tmp) / "segments.csv", settings)
    assert report.status == "applied", report.status
    return settings, open_twin(settings)
