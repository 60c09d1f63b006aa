"""Dig-site hazards on the small survey, where every distance and depth is known by hand."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.hazards import hazards, load_service_life, service_life_years
from ingest.pipeline import ingest_survey
from twin.errors import InputError

TWIN = str(Path(sys.executable).with_name("twin"))
TODAY = dt.date(2026, 11, 21)


@pytest.fixture(scope="module")
def site(twin_settings, twin_engine, tmp_path_factory):
    """The small survey with one old water main and one shallow duct bank."""
    from tests.conftest import SMALL

    out = tmp_path_factory.mktemp("small")
    points = pd.read_csv(SMALL / "points.csv", dtype=str)
    segments = pd.read_csv(SMALL / "segments.csv", dtype=str)
    segments.loc[(segments["起点号"] == "JS1") & (segments["终点号"] == "JS2"), "建设年代"] = "1950"
    points.loc[points["物探点号"].isin(["DL1", "DL2"]), "埋深"] = "0.30"
    segments.loc[segments["起点号"] == "DL1", ["起点埋深", "终点埋深"]] = "0.30"
    points.to_csv(out / "points.csv", index=False)
    segments.to_csv(out / "segments.csv", index=False)
    report = ingest_survey(out / "points.csv", out / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine


def test_pipes_within_the_site_with_depths_and_flags(site, twin_settings):
    # the site is on the water main, 20 m east of the plant; drain and duct bank run 10 m either side
    h = hazards(site, 410020.0, 4035000.0, 12.0, settings=twin_settings, today=TODAY)
    got = {p["id"]: p for p in h.pipes}
    assert set(got) == {"JS1-JS2", "YS1-YS2", "DL1-DL2"}
    assert [p["id"] for p in h.pipes][0] == "JS1-JS2"  # nearest first
    assert got["JS1-JS2"]["distance_m"] == pytest.approx(0.0, abs=1e-6)
    assert got["YS1-YS2"]["distance_m"] == pytest.approx(10.0, abs=1e-6)
    # depths to the top at the point nearest the site (ground interpolated from the survey)
    assert got["JS1-JS2"]["top_depth_m"] == pytest.approx(1.40, abs=0.02)
    assert got["YS1-YS2"]["top_depth_m"] == pytest.approx(2.05 - 0.60, abs=0.02)  # invert-referenced
    assert got["DL1-DL2"]["top_depth_m"] == pytest.approx(0.30, abs=0.02)
    assert h.utility == "JS" and h.old_pipes == ["JS1-JS2"]
    assert any("past service life (76 a > 50 a" in f for f in got["JS1-JS2"]["flags"])
    assert "DL1-DL2" in h.shallow_pipes and any(f.startswith("cover 0.30") for f in got["DL1-DL2"]["flags"])
    # nearest water valves: JS5 (20.6 m, will not close) before JS3 (25 m)
    assert [v["id"] for v in h.valves][:2] == ["JS5", "JS3"]
    assert h.valves[0]["operable"] is False
    assert h.valves[0]["distance_m"] == pytest.approx((20**2 + 5**2) ** 0.5, abs=1e-3)  # mm
    json.dumps(h.as_dict())  # JSON-ready: no NaN


def test_empty_site_and_bad_input(site, twin_settings):
    far = hazards(site, 411000.0, 4036000.0, 5.0, settings=twin_settings, today=TODAY)
    assert far.pipes == [] and far.utility is None and far.notes
    with pytest.raises(InputError, match="radius"):
        hazards(site, 410020.0, 4035000.0, 0.0, settings=twin_settings)
    with pytest.raises(InputError, match="utility"):
        hazards(site, 410020.0, 4035000.0, 5.0, utility="XX", settings=twin_settings)


def test_service_life_prefers_the_utility_row():
    table = load_service_life()
    life = service_life_years(pd.Series(["钢", "钢", "PE", "unknown"]), pd.Series(["RQ", "JS", "RQ", "JS"]), table)
    assert list(life[:3]) == [30, 30, 50] and pd.isna(life[3])
    assert table["source"].str.len().min() > 0 and "verified" in table.columns


def test_cli_hazards(site, twin_settings):
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema}
    res = subprocess.run([TWIN, "analyze", "hazards", "--at", "410020,4035000", "--radius", "12", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert {p["id"] for p in json.loads(res.stdout)["pipes"]} == {"JS1-JS2", "YS1-YS2", "DL1-DL2"}
    bad = subprocess.run([TWIN, "analyze", "hazards", "--at", "410020"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "EASTING,NORTHING" in bad.stderr
