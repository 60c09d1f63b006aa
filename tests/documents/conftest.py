"""Fixtures of the documents tests: the small survey network as a twin (one per test module,
read-only) and the folder the rendered pictures and documents are saved to for a look.

``small_twin`` is the engine of the module's twin holding ``tests/data/small``: a DN300 water
main JS1-JS2-JS3-JS4 along northing 4035000 (valve JS3, an inoperable valve JS5 on the DN100
branch to the hospital JS6), a D600 storm sewer YS1-YS2-YS3 10 m south and an 800X500 power
duct bank DL1-DL2 10 m north; ground about 35.2 m.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from tests.conftest import SMALL
from twin.settings import TwinSettings

ROOT = Path(__file__).resolve().parents[2]
#: Rendered pictures and documents land here (kept by CI as artifacts; not compared).
ARTIFACTS = ROOT / "test-artifacts" / "documents"


@pytest.fixture(scope="module")
def small_twin(twin_settings: TwinSettings, twin_engine: sa.Engine) -> sa.Engine:
    """The engine of this module's twin holding the small survey network (do not change it)."""
    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/documents/``, created."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
