"""The demo district, as `make demo` loads it, lands whole in PostGIS with no error or warning; its
whole-network scan finds no violation, and each planted defect (``--defects``) is found, stored
as a finding and resolved by itself once the clean district is loaded again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from analysis.cover import cover_depths
from analysis.findings import findings_of, list_findings, scan_and_store
from analysis.network import load_network
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district


def _load(folder: Path, settings, **kw) -> tuple[dict, object]:
    summary = generate_district(folder, scale=1, seed=0, **kw)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", settings)
    assert report.status == "applied", report.as_dict()["errors"][:5]
    return summary, report


@pytest.fixture(scope="module")
def clean(twin_settings, twin_engine, tmp_path_factory):
    return _load(tmp_path_factory.mktemp("clean"), twin_settings)


def test_demo_district_ingests_cleanly(clean, twin_engine):
    summary, report = clean
    assert report.error_count == 0 and report.warning_count == 0
    with twin_engine.connect() as conn:
        segments = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        utilities = set(conn.execute(sa.text("SELECT DISTINCT utility FROM segment")).scalars())
        subtypes = set(conn.execute(sa.text("SELECT DISTINCT subtype FROM segment")).scalars())
        valves = conn.execute(sa.text("SELECT count(*), count(*) FILTER (WHERE NOT operable), "
                                      "count(*) FILTER (WHERE normally_closed) FROM valve")).one()
        sources = dict(conn.execute(sa.text("SELECT utility, count(*) FROM source GROUP BY utility")).all())
        critical = conn.execute(sa.text("SELECT count(*) FROM customer WHERE critical")).scalar()
        rect = conn.execute(sa.text("SELECT count(*) FROM segment WHERE shape = 'rect'")).scalar()
        # Drainage centrelines sit above their invert; every pipe top is below the ground at its ends.
        above = conn.execute(sa.text(
            "SELECT count(*) FROM segment s JOIN node a ON a.id = s.from_node "
            "WHERE s.from_z + coalesce(s.diameter_mm, s.height_mm) / 2000 > a.ground_z + 1e-6")).scalar()
    assert segments == summary["segments_total"]
    assert utilities == {"JS", "PS", "RQ", "RL", "DL", "TX"} and {"YS", "WS"} <= subtypes
    assert valves[0] == summary["valves"] and valves[1] > 0 and valves[2] > 0
    assert set(sources) == {"JS", "RQ", "RL"}
    assert critical > 0 and rect > 0 and above == 0


def _violations(engine, settings) -> tuple[list[dict], dict, list]:
    """The scan's violations (stored as findings too), the stored counts and the cover violations."""
    result = scan_and_store(engine, user="tests", workers=1)
    found = findings_of(result)
    cover = cover_depths(load_network(engine), settings=settings).as_dict()["violations"]
    return found[found["verdict"] == "violation"].to_dict("records"), result["findings"], cover


def test_the_clean_district_has_no_violation(clean, twin_engine, twin_settings):
    violations, stored, cover = _violations(twin_engine, twin_settings)
    assert violations == [] and cover == []
    # crossings a few tenths of a metre apart at 2-4 m are within the survey's tolerance: uncertain,
    # never a hard clash or a pair no rule covers
    assert stored["found"] == stored["new"] > 0
    verdicts = list_findings(twin_engine, limit=0)["counts"]["verdict"]
    assert verdicts == {"violation": 0, "uncertain": stored["found"], "no_rule": 0}


def test_planted_defects_are_found_and_resolve_when_removed(clean, twin_engine, twin_settings, tmp_path):
    summary, report = _load(tmp_path / "defects", twin_settings, defects=True)
    assert report.error_count == 0
    planted = {d["name"]: {"-".join(s) for s in d["segments"]} for d in summary["defects"]}
    violations, stored, cover = _violations(twin_engine, twin_settings)
    by = Counter()
    for v in violations:
        name = next(n for n, ids in planted.items() if v["a_id"] in ids or v["b_id"] in ids)
        by[(name, v["kind"], "/".join(sorted((v["a_utility"], v["b_utility"]))))] += 1
    # the README's table: sample district, planted defects
    assert by[("gas_near_power", "horizontal", "DL/RQ")] >= 2
    assert by[("sewer_over_water", "vertical", "JS/PS")] == 1
    assert by[("clash_at_manhole", "hard", "RQ/TX")] == 4  # the four ducts meeting in the manhole
    assert set(by) <= {("gas_near_power", "horizontal", "DL/RQ"), ("sewer_over_water", "vertical", "JS/PS"),
                       ("clash_at_manhole", "hard", "RQ/TX"), ("clash_at_manhole", "vertical", "RQ/TX")}
    assert planted["shallow_telecom"] <= {c["id"] for c in cover} and {c["utility"] for c in cover} == {"TX"}
    # the raised water main: hard clashes with the heat pipes the survey cannot confirm
    doubtful = list_findings(twin_engine, verdict=["uncertain"], utility_pair="JS-RL")["findings"]
    assert {f["kind"] for f in doubtful if planted["water_into_heat"] & {f["a_id"], f["b_id"]}} == {"hard", "vertical"}
    assert stored["new"] >= len(violations)
    # the clean district again: the defects' findings resolve by themselves
    _load(tmp_path / "clean", twin_settings)
    again = scan_and_store(twin_engine, user="tests", workers=1)["findings"]
    assert again["resolved"] >= len(violations)
    open_violations = list_findings(twin_engine, verdict=["violation"], status=["new", "active"])
    assert open_violations["numberMatched"] == 0
    assert list_findings(twin_engine, verdict=["violation"], status=["resolved"])["numberMatched"] == len(violations)
