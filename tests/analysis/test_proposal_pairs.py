"""One finding per pair (proposed pipe, existing pipe) carrying every rule it breaks; the pairs no
rule covers named as warning rows; the thematic classes the tiles lack (pressure, accuracy)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.pieces import finding_key
from analysis.proposal import Finding, check_proposal, group_pairs, unchecked_pairs
from analysis.proposal_report import report_html
from analysis.proposal_workflow import decide_finding, recheck_proposal, submit_proposal
from analysis.theme import (
    ACCURACY_CLASSES,
    PRESSURE_CLASSES,
    accuracy_classes,
    pressure_classes,
    theme_classes,
)
from ingest.pipeline import ingest_survey
from tests.analysis.test_proposal import E0, GROUND, N0, WATER_BOTTOM, WATER_TOP, gas, write_survey
from twin.errors import NotFound


@pytest.fixture(scope="module")
def twin(twin_settings, twin_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    write_survey(folder)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine, twin_settings


def test_a_crossing_is_one_finding_with_every_rule_it_breaks(twin):
    engine, settings = twin
    report = check_proposal(engine, gas(WATER_TOP - 0.1), settings)  # through the water main
    (f,) = report.findings
    assert f.key == finding_key("pair", ["P1", "J1-J2"])  # one key per pair, whatever it breaks
    assert (f.kind, f.verdict, f.ids, f.utilities, f.sizes) == (
        "collision", "violation", ["P1", "J1-J2"], ["RQ", "JS"], ["DN200", "DN300"])
    kinds = [r["kind"] for r in f.rules]
    assert kinds == ["collision", "clearance_vertical"]
    overlap, gap = f.rules
    assert overlap["measured_m"] == pytest.approx(-0.2, abs=1e-3)  # the solids overlap by 0.2 m
    assert gap["required_m"] == pytest.approx(0.15) and gap["rule"] and gap["clause"]
    assert f.measured_m == overlap["measured_m"] and report.counts() == {"collision": 1}
    d = report.as_dict()
    assert d["findings"][0]["rules"][1]["kind"] == "clearance_vertical" and d["unchecked"] == []
    html = report_html(report)
    assert html.count("<li>") >= 2 and "P1 (RQ DN200)" in html and "J1-J2 (JS DN300)" in html


def test_a_decision_holds_for_the_pair_as_decided_and_reopens_when_it_gets_worse(twin):
    engine, settings = twin
    report = submit_proposal(engine, gas(WATER_BOTTOM - 0.10, fid="Q9", x=E0 + 80), settings, user="alice")
    (f,) = report.findings
    assert (f.kind, f.verdict) == ("clearance_vertical", "uncertain")
    decide_finding(engine, report.proposal_id, f.key, "accepted", settings, user="bob", note="trial trench done")
    same = recheck_proposal(engine, report.proposal_id, settings, user="bob")
    assert [(g.key, g.status) for g in same.findings] == [(f.key, "accepted")]
    # revised through the main: the same pair, now a collision: decided again
    worse = recheck_proposal(engine, report.proposal_id, settings, user="alice",
                             source=gas(WATER_TOP - 0.1, fid="Q9", x=E0 + 80))
    (g,) = worse.findings
    assert (g.key, g.kind, g.status) == (f.key, "collision", "open")


def test_pairs_no_rule_covers_are_warning_rows_naming_both_pipes(twin):
    engine, settings = twin
    # high-pressure gas (2.0 MPa: GB 50289's table stops at sub-high A) 1 m beside the water main
    doc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "HP1", "utility": "RQ", "z_reference": "top", "pressure_mpa": 2.0,
                                          "size": "DN200"},
        "geometry": {"type": "LineString", "coordinates": [[E0 + 10, N0 + 1.0, GROUND - 1.2],
                                                           [E0 + 40, N0 + 1.0, GROUND - 1.2]]}}]}
    report = check_proposal(engine, doc, settings)
    (row,) = report.as_dict()["unchecked"]
    assert row["clearance"] == "horizontal" and row["measured_m"] == pytest.approx(0.75, abs=1e-6)
    assert row["pipes"] == [{"id": "HP1", "utility": "RQ", "size": "DN200"},
                            {"id": "J1-J2", "utility": "JS", "size": "DN300"}]
    html = report_html(report)
    assert "class='unchecked'" in html and "HP1 (RQ DN200)" in html and "J1-J2 (JS DN300)" in html


def test_the_worst_verdict_and_kind_of_a_pair_and_its_unchecked_part():
    # (kind, verdict, shortfall) of three findings on one pair, the proposed pipe named second
    def f(kind, verdict, shortfall):
        return Finding(f"k-{kind}", kind, ["E1", "P1"], ["JS", "RQ"], 0.3, None if kind == "no_rule" else 0.5,
                       shortfall, 1.0, 2.0, None, "V1: GB 50289 4.1.9" if kind != "no_rule" else "无规则", True,
                       ("no vertical clearance rule" if kind == "no_rule" else kind), verdict=verdict)
    cases = [
        # members                                                        -> kind, verdict
        ([("clearance_horizontal", "uncertain", 0.1), ("no_rule", "no_rule", 0.0)], ("clearance_horizontal", "uncertain")),
        ([("no_rule", "no_rule", 0.0), ("clearance_vertical", "violation", 0.2)], ("clearance_vertical", "violation")),
        ([("clearance_vertical", "uncertain", 0.05), ("collision", "uncertain", 0.0)], ("collision", "uncertain")),
    ]
    for members, want in cases:
        (g,) = group_pairs([f(*m) for m in members], {"P1"}, {"P1": "DN200", "E1": "DN100"})
        assert (g.kind, g.verdict) == want and g.ids == ["P1", "E1"] and g.utilities == ["RQ", "JS"]
        no_rule = any(m[0] == "no_rule" for m in members)
        rows = unchecked_pairs([g.as_dict()])
        assert len(rows) == no_rule
        if no_rule:
            assert rows[0]["clearance"] == "vertical" and [p["size"] for p in rows[0]["pipes"]] == ["DN200", "DN100"]


def test_thematic_classes_of_pressure_and_survey_accuracy(twin):
    engine, _ = twin
    util = np.array(["RQ"] * 7 + ["JS"] * 4 + ["TX"])
    p = np.array([0.005, 0.01, 0.3, 0.5, 1.0, 2.0, 3.0, 0.6, 0.8, 1.6, 2.5, np.nan])
    assert pressure_classes(util, p).tolist() == list(range(11)) + [-1]
    assert len(PRESSURE_CLASSES) == 11
    assert accuracy_classes(np.array([0.0499, 0.05, 0.1001, 0.3, 0.31])).tolist() == [0, 0, 2, 3, 4]
    with engine.connect() as conn:
        acc = theme_classes(conn, "accuracy")
        pressure = theme_classes(conn, "pressure")
        with pytest.raises(NotFound, match="pressure, accuracy"):
            theme_classes(conn, "diameter")
    # the water main: concealed points, 1.55 m centre depth: plan limit 0.155 m
    assert acc["features"] == {"J1-J2": 2, "J2-J3": 2} and len(acc["classes"]) == len(ACCURACY_CLASSES)
    assert pressure["features"] == {} and sum(pressure["counts"]) == 0  # no pressure surveyed
