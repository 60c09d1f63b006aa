"""The rule tables of the proposal check are parsed once per process and content, never stale.

- A stored table's change (stored, replaced with other text, deleted back to the file) is what
  the next check judges by and stamps, and an edited configured file too.
- The same content is parsed once: the second check gets the very same table.
- The check's stamp is :func:`analysis.proposal.check_stamp`'s (the rules' version as
  :func:`analysis.rule_catalogue.rules_version` gives it).
- A proposal far from the twin is still refused as a wrong CRS (the ground read now answers
  that question first for proposals near the twin).
- The memos of kinds of pipe (a clearance table's pair rules, a cover table's rules per location)
  give what matching rule by rule gives, the first time and from the memo.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.clearance import DEFAULT_RULES, _pick_rules, load_clearance_rules, rule_arrays
from analysis.cover import CoverRules, _match_rules, _rules_by_location, load_cover_rules
from analysis.proposal import check_proposal, check_stamp
from analysis.rule_catalogue import check_rules, delete_rule_table, rules_version, store_rule_table
from ingest.pipeline import ingest_survey
from tests.analysis.test_proposal import E0, N0, WATER_BOTTOM, gas, write_survey
from twin.errors import InputError

V007 = "V007,vertical,RQ,,,,,,JS,!ZS,,,,,"


@pytest.fixture(scope="module")
def twin(twin_settings, twin_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    write_survey(folder)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine, twin_settings


def _store(engine, text: str) -> None:
    with engine.begin() as conn:
        store_rule_table(conn, "clearance_rules", text, "tester")


def _verdict(engine, settings) -> tuple[list[float], str]:
    """Required clearances of the gas pipe 0.45 m under the main, and the check's rules version."""
    report = check_proposal(engine, gas(WATER_BOTTOM - 0.45), settings)
    return [f.required_m for f in report.findings], report.stamp["rules_version"]


def test_a_stored_table_change_is_seen_by_the_next_check(twin):
    engine, settings = twin
    shipped = DEFAULT_RULES.read_text(encoding="utf-8")
    assert V007 + "0.15," in shipped
    required, shipped_version = _verdict(engine, settings)
    assert required == []  # 0.45 m passes the shipped 0.15 m
    _store(engine, shipped.replace(V007 + "0.15,", V007 + "1.00,"))
    required, strict_version = _verdict(engine, settings)
    assert required == [pytest.approx(1.0)] and strict_version != shipped_version
    _store(engine, shipped.replace(V007 + "0.15,", V007 + "0.20,"))  # replaced: passes again
    required, loose_version = _verdict(engine, settings)
    assert required == [] and loose_version not in (shipped_version, strict_version)
    _store(engine, shipped.replace(V007 + "0.15,", V007 + "1.00,"))  # the strict text again
    assert _verdict(engine, settings) == ([pytest.approx(1.0)], strict_version)
    with engine.begin() as conn:
        assert delete_rule_table(conn, "clearance_rules", settings)["removed"]
    assert _verdict(engine, settings) == ([], shipped_version)


def test_the_same_content_is_parsed_once_and_stamped_as_rules_version_says(twin):
    engine, settings = twin
    with engine.connect() as conn:
        a, b = check_rules(conn, settings), check_rules(conn, settings)
        assert a.clearance is b.clearance and a.clearance_arrays is b.clearance_arrays
        assert a.cover_rules is b.cover_rules
        assert a.version == rules_version(conn, settings)
    report = check_proposal(engine, gas(WATER_BOTTOM - 0.45), settings)
    stamp = check_stamp(engine, settings)
    assert {k: v for k, v in report.stamp.items() if k != "at"} == {k: v for k, v in stamp.items() if k != "at"}


def test_an_edited_configured_file_is_seen_by_the_next_check(twin, tmp_path):
    engine, settings = twin
    path = tmp_path / "clearance.csv"
    shipped = DEFAULT_RULES.read_text(encoding="utf-8")
    path.write_text(shipped.replace(V007 + "0.15,", V007 + "1.00,"), encoding="utf-8")
    configured = settings.model_copy(update={"clearance_rules": path})
    assert _verdict(engine, configured)[0] == [pytest.approx(1.0)]
    path.write_text(shipped.replace(V007 + "0.15,", V007 + "0.20,"), encoding="utf-8")
    assert _verdict(engine, configured)[0] == []
    with engine.connect() as conn:
        assert check_rules(conn, configured).version["tables"]["clearance_rules"]["source"] == "configured"


def _by_depth(x: float) -> dict:
    """A gas pipe given by depth (2 m), 40 m long north-south at easting ``x``."""
    return {"type": "Feature", "properties": {"id": "D1", "utility": "RQ", "size": "DN200", "depth_m": 2.0},
            "geometry": {"type": "LineString", "coordinates": [[x, N0 - 20], [x, N0 + 20]]}}


def test_a_proposal_far_from_the_twin_is_still_a_wrong_crs(twin):
    engine, settings = twin
    with pytest.raises(InputError, match="wrong CRS"):
        check_proposal(engine, _by_depth(E0 + 50_000), settings)
    with pytest.raises(InputError, match="wrong CRS"):  # given by z: the same question
        check_proposal(engine, gas(WATER_BOTTOM - 0.45, x=E0 + 50_000), settings)
    assert check_proposal(engine, _by_depth(E0 + 48), settings).length_m == pytest.approx(40.0)


def test_the_memos_of_pipe_kinds_give_what_matching_gives():
    # (utility, subtype, burial, material, dn_mm, pressure_class): repeated kinds, unknown DN
    kinds = [("JS", "", "", "", 300.0, ""), ("RQ", "", "ZM", "PE", 200.0, "medium_a"),
             ("PS", "YS", "", "", 1000.0, ""), ("RQ", "", "", "", np.nan, ""), ("DL", "", "GK", "", 800.0, ""),
             ("JS", "", "", "", 300.0, ""), ("RL", "RS", "", "", 300.0, "")]
    attrs = {k: np.array([kind[n] for kind in kinds], dtype=float if k == "dn_mm" else object)
             for n, k in enumerate(("utility", "subtype", "burial", "material", "dn_mm", "pressure_class"))}
    cover = CoverRules(load_cover_rules())
    for _ in range(2):  # matched, then from the memo
        np.testing.assert_array_equal(_rules_by_location(cover, attrs, len(kinds)),
                                      _match_rules(cover, attrs, len(kinds)))
    assert len(cover.memo) == len(kinds) - 1
    table = rule_arrays(load_clearance_rules())
    a, b = np.array([0, 1, 2, 3, 4, 5, 6, 1]), np.array([1, 0, 3, 2, 6, 0, 5, 1])
    for kind in ("horizontal", "vertical"):
        for _ in range(2):
            np.testing.assert_array_equal(table.picked(kind, attrs, a, b), _pick_rules(table, kind, attrs, a, b))
