"""Clearance: parallel runs and crossings at known distances against the shipped GB 50289 rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.clearance import clearances, gas_pressure_class, load_clearance_rules
from tests.analysis.test_clash import make_network
from twin.errors import InputError
from twin.settings import get_settings


def _parallel(offset: float, a: dict, b: dict, angle_deg: float = 0.0, shift: float = 0.0):
    """A along x from 0 to 40; B `offset` to the north, rotated `angle_deg` about its middle, shifted along x."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    mx = 20 + shift
    return make_network([
        {"utility": "JS", **a, "id": "A", "xyz": [(0, 0, 0), (40, 0, 0)]},
        {"utility": "DL", **b, "id": "B", "xyz": [(mx - 20 * c, offset - 20 * s, 0), (mx + 20 * c, offset + 20 * s, 0)]},
    ])


def _found(report, kind):
    """The one finding of ``kind`` (violation or uncertain: both are judged against the rule)."""
    (v,) = [v for v in report.violations + report.uncertain if v.kind == kind]
    return v


# Concealed pipes 1 m deep (make_network's default): plan tolerance 0.10 m each, so u = 0.20 m
# horizontally; depth tolerance 0.15 m each, u = 0.30 m vertically.
HORIZONTAL_CASES = [
    # a, b, centre offset, angle, shift, expected measured (None: no finding), required, verdict
    ({"d": 300}, {"w": 600, "h": 400}, 0.80, 0, 0, 0.35, 0.5, "uncertain"),    # water-power direct 0.5
    ({"d": 300}, {"w": 600, "h": 400}, 1.50, 0, 0, None, 0.5, None),           # 1.05 - 0.2 >= 0.5
    # skewed 5 degrees about B's middle, 2 m off: B's nearest end decides
    ({"d": 300}, {"w": 600, "h": 400}, 2.00, 5, 0, 2.0 - 20 * math.sin(math.radians(5)) - 0.45, 0.5, "violation"),
    ({"d": 300}, {"w": 600, "h": 400}, 0.80, 0, 39.8, None, None, None),  # projections overlap 0.2 m only
    ({"d": 200}, {"utility": "PS", "d": 500}, 1.30, 0, 0, 0.95, 1.0, "uncertain"),  # water DN200-drainage 1.0
    ({"d": 300}, {"utility": "PS", "d": 500}, 1.30, 0, 0, 0.90, 1.5, "violation"),  # water DN300-drainage 1.5
    ({"d": 300}, {"utility": "RQ", "d": 200, "pressure_mpa": 0.3}, 0.70, 0, 0, 0.45, 0.5, "uncertain"),  # medium A
    ({"d": 300}, {"utility": "RQ", "d": 200, "pressure_mpa": 0.6}, 0.70, 0, 0, 0.45, 1.0, "violation"),  # sub-high B
    ({"d": 300}, {"utility": "RQ", "d": 200}, 1.50, 0, 0, 1.25, 1.5, "violation"),  # unknown pressure: the largest
    ({"utility": "RQ", "d": 300}, {"utility": "RQ", "d": 200}, 0.60, 0, 0, 0.35, 0.4, "uncertain"),  # DN<=300
    ({"utility": "RQ", "d": 400}, {"utility": "RQ", "d": 200}, 0.70, 0, 0, 0.40, 0.5, "uncertain"),  # DN400
]


@pytest.mark.parametrize("a,b,offset,angle,shift,expected,required,verdict", HORIZONTAL_CASES)
def test_horizontal_clearance(a, b, offset, angle, shift, expected, required, verdict):
    report = clearances(_parallel(offset, a, b, angle, shift))
    if expected is None:
        assert [v for v in report.violations + report.uncertain if v.kind == "horizontal"] == []
        assert report.no_rule == []
    else:
        v = _found(report, "horizontal")
        assert v.measured_m == pytest.approx(expected, abs=1e-4)
        assert v.required_m == required and v.verdict == verdict
        assert v.uncertainty_m == pytest.approx(0.2) and v.z is None
        assert v.rule_source.startswith("GB 50289-2016 4.1.9") and v.rule_verified is False
        assert (v in report.violations) == (verdict == "violation")


# One parallel pair per rule family: a against b at 3 m centres (d300 / d200), the rule asked.
FAMILY_CASES = [
    ({"utility": "JS"}, {"utility": "JS"}, 0.5),                                  # water - water
    ({"utility": "JS", "subtype": "ZS"}, {"utility": "PS"}, 0.5),                 # reclaimed - drainage, not 1.5
    ({"utility": "JS", "subtype": "ZS"}, {"utility": "JS"}, 0.5),                 # reclaimed - water
    ({"utility": "PS"}, {"utility": "PS", "subtype": "WS"}, 0.5),                 # storm - sewage
    ({"utility": "PS"}, {"utility": "RQ", "pressure_mpa": 0.005}, 1.0),          # drainage - low-pressure gas
    ({"utility": "PS"}, {"utility": "RQ", "pressure_mpa": 1.0}, 2.0),            # drainage - sub-high A gas
    ({"utility": "RQ", "pressure_mpa": 0.005}, {"utility": "DL", "burial": "GK"}, 1.0),  # the pair
    ({"utility": "RQ", "pressure_mpa": 0.005}, {"utility": "TX", "burial": "ZM"}, 0.5),
    ({"utility": "RQ", "pressure_mpa": 0.1}, {"utility": "RL", "burial": "ZM"}, 1.0),
    ({"utility": "RQ", "pressure_mpa": 1.0}, {"utility": "RL", "burial": "DM"}, 4.0),  # heat in a trench
    ({"utility": "RL", "burial": "ZM"}, {"utility": "JS"}, 1.5),
    ({"utility": "RL", "burial": "ZM"}, {"utility": "TX", "burial": "GK"}, 1.0),
    ({"utility": "DL", "burial": "ZM"}, {"utility": "JS"}, 0.5),
    ({"utility": "DL", "burial": "GK"}, {"utility": "JS"}, 1.0),                  # power in a duct
    ({"utility": "DL", "burial": "ZM"}, {"utility": "TX", "burial": "ZM"}, 0.5),
    ({"utility": "PS"}, {"utility": "TX", "burial": "GK"}, 1.0),
    ({"utility": "TX", "burial": "GK"}, {"utility": "TX", "burial": "ZM"}, 0.5),
    ({"utility": "QT", "subtype": "ZH"}, {"utility": "JS"}, 1.5),                 # utility tunnel
]


@pytest.mark.parametrize("a,b,required", FAMILY_CASES)
def test_every_rule_family_has_its_rule(a, b, required):
    net = make_network([{"id": "A", "d": 300, **a, "xyz": [(0, 0, 0), (40, 0, 0)]},
                        {"id": "B", "d": 200, **b, "xyz": [(0, 0.5, 0), (40, 0.5, 0)]}])
    v = _found(clearances(net), "horizontal")
    assert v.required_m == required
    assert v.measured_m == pytest.approx(0.25) and v.verdict == "violation"  # 0.25 + 0.2 < every rule


@pytest.mark.parametrize("b,label", [
    ({"utility": "RQ", "pressure_mpa": 2.0}, "RQ high_b"),  # high pressure: outside GB 50289's table
    ({"utility": "GY"}, "GY"),                               # industrial pipes: no row
])
def test_a_pair_no_rule_covers_is_a_finding(b, label):
    net = make_network([{"id": "A", "d": 300, "xyz": [(0, 0, 0), (40, 0, 0)]},
                        {"id": "B", "d": 200, **b, "xyz": [(0, 0.5, 0), (40, 0.5, 0)]}])
    report = clearances(net)
    assert report.violations == [] and report.uncertain == []
    (f,) = report.no_rule
    assert (f.kind, f.verdict, f.clearance, f.rule_id, f.required_m) == ("no_rule", "no_rule", "horizontal", None, None)
    assert (f.a_id, f.b_id) == ("A", "B") and f.measured_m == pytest.approx(0.25) and f.b_class.startswith(label)
    assert f.key == clearances(net).no_rule[0].key and len(f.key) == 16
    d = report.as_dict()
    assert d["counts"]["no_rule"] == 1 and d["no_rule"][0]["label"].startswith("无规则")
    assert sum(d["unruled_pairs"].values()) == 1
    # far apart (beyond every rule's reach): nothing to judge
    far = make_network([{"id": "A", "d": 300, "xyz": [(0, 0, 0), (40, 0, 0)]},
                        {"id": "B", "d": 200, **b, "xyz": [(0, 6, 0), (40, 6, 0)]}])
    assert clearances(far).no_rule == []


# Verdicts against survey accuracy, by hand: water d300 beside power duct 600x400 (required 0.5),
# centres 0.80 m apart in plan: measured 0.35 m.
VERDICT_CASES = [
    # survey class of both, depth below ground of both centres, uncertainty, verdict
    ("concealed", 1.0, 0.20, "uncertain"),   # 0.35 + 0.20 = 0.55 >= 0.5, 0.35 - 0.20 < 0.5
    ("concealed", 0.5, 0.20, "uncertain"),   # h taken as 1 m when shallower
    ("exposed", 1.0, 0.10, "violation"),     # 0.35 + 0.10 = 0.45 < 0.5
    ("concealed", 0.6, 0.20, "uncertain"),
]


@pytest.mark.parametrize("cls,cover,u,verdict", VERDICT_CASES)
def test_verdicts_follow_survey_accuracy(cls, cover, u, verdict):
    net = _parallel(0.80, {"d": 300, "survey_class": cls, "cover": cover},
                    {"w": 600, "h": 400, "survey_class": cls, "cover": cover})
    v = _found(clearances(net), "horizontal")
    assert v.uncertainty_m == pytest.approx(u) and v.verdict == verdict


def test_the_three_verdicts_by_distance_and_depth():
    def one(offset, cover=1.0, appurtenance=None):
        pipes = ({"d": 300, "cover": cover, "appurtenance": appurtenance},
                 {"w": 600, "h": 400, "cover": cover, "appurtenance": appurtenance})
        report = clearances(_parallel(offset, *pipes))
        found = [v for v in report.violations + report.uncertain if v.kind == "horizontal"]
        return found[0].verdict if found else "compliant"

    assert one(0.60) == "violation"   # measured 0.15: 0.15 + 0.2 < 0.5
    assert one(0.80) == "uncertain"   # 0.35
    assert one(1.00) == "uncertain"   # 0.55: 0.55 - 0.2 < 0.5
    assert one(1.20) == "compliant"   # 0.75 - 0.2 >= 0.5
    # 3 m deep (centre): plan tolerance 0.30 each, u = 0.6: 0.75 - 0.6 < 0.5
    assert one(1.20, cover=3.0) == "uncertain"
    # measured in manholes (exposed, 0.05 each): 0.35 + 0.1 < 0.5
    assert one(0.80, appurtenance="manhole") == "violation"


def test_a_proposal_is_exact():
    """Only the existing pipe carries survey tolerance: u = 0.10 against a proposal, 0.20 between two
    surveyed pipes; measured 0.35 against 0.5 is a violation for the proposal, uncertain otherwise."""
    existing = make_network([{"id": "A", "d": 300, "xyz": [(0, 0, 0), (40, 0, 0)]}])

    def proposal(offset):
        return make_network([{"id": "P", "utility": "DL", "w": 600, "h": 400, "from_node": "P1", "to_node": "P2",
                              "xyz": [(0, offset, 0), (40, offset, 0)]}])

    v = _found(clearances(existing, proposal(0.8)), "horizontal")
    assert (v.a_id, v.proposal, v.uncertainty_m, v.verdict) == ("P", True, pytest.approx(0.1), "violation")
    assert v.measured_m == pytest.approx(0.35)
    v2 = _found(clearances(existing, proposal(0.9)), "horizontal")  # 0.45 + 0.1 >= 0.5
    assert v2.verdict == "uncertain"
    both = make_network([{"id": "A", "d": 300, "xyz": [(0, 0, 0), (40, 0, 0)]},
                         {"id": "P", "utility": "DL", "w": 600, "h": 400, "xyz": [(0, 0.8, 0), (40, 0.8, 0)]}])
    v3 = _found(clearances(both), "horizontal")
    assert (v3.uncertainty_m, v3.verdict) == (pytest.approx(0.2), "uncertain")


def test_twenty_degrees_is_not_parallel():
    report = clearances(_parallel(3.0, {"d": 300}, {"w": 600, "h": 400}, angle_deg=20))
    assert report.checked["horizontal"] == 0


def _crossing(a: dict, b: dict, gap_centres: float, slope_b: float = 0.0):
    """A along x at z = 0; B along y crossing it at the origin with its centre `gap_centres` below."""
    return make_network([
        {"utility": "JS", **a, "id": "A", "xyz": [(-20, 0, 0), (20, 0, 0)]},
        {"utility": "PS", **b, "id": "B",
         "xyz": [(0, -20, -gap_centres - 20 * slope_b), (0, 20, -gap_centres + 20 * slope_b)]},
    ])


VERTICAL_CASES = [
    # a, b, centre gap, slope of b, expected measured (None: fine), required
    ({"d": 300}, {"d": 500}, 0.70, 0.0, 0.30, 0.40),    # drainage-water 0.40: 0.70 - 0.15 - 0.25
    ({"d": 300}, {"d": 500}, 1.20, 0.0, None, 0.40),    # 0.80 - 0.30 >= 0.40
    ({"d": 300}, {"d": 500}, 0.70, 0.02, 0.30, 0.40),   # sloped drain: same gap at the crossing
    ({"d": 300}, {"d": 500}, -0.70, 0.0, 0.30, 0.40),   # the drain above
    ({"d": 300}, {"utility": "JS", "d": 300}, 0.40, 0.0, 0.10, 0.15),  # water-water 0.15
    ({"d": 300}, {"utility": "TX", "burial": "ZM", "d": 100}, 0.50, 0.0, 0.30, 0.50),  # telecom direct 0.5
    ({"d": 300}, {"utility": "TX", "burial": "GK", "w": 400, "h": 300}, 0.35, 0.0, 0.05, 0.15),  # telecom duct
    ({"utility": "RQ", "d": 200}, {"utility": "TX", "burial": "ZM", "d": 100}, 0.50, 0.0, 0.35, 0.50),
    ({"utility": "RQ", "d": 200}, {"utility": "DL", "burial": "ZM", "d": 100}, 0.40, 0.0, 0.25, 0.50),
    ({"utility": "RQ", "d": 200}, {"utility": "DL", "burial": "GK", "d": 100}, 0.40, 0.0, 0.25, 0.15),
    ({"utility": "RL", "d": 200}, {"utility": "JS", "d": 100}, 0.40, 0.0, 0.25, 0.15),  # heat
    ({"subtype": "ZS", "d": 200}, {"utility": "JS", "d": 100}, 0.40, 0.0, 0.25, 0.50),  # reclaimed - water
    ({"utility": "QT", "subtype": "ZH", "w": 3000, "h": 2000}, {"utility": "TX", "burial": "GK", "d": 100}, 1.40, 0.0,
     0.35, 0.25),  # utility tunnel - telecom duct
]


@pytest.mark.parametrize("a,b,gap,slope,expected,required", VERTICAL_CASES)
def test_vertical_clearance(a, b, gap, slope, expected, required):
    report = clearances(_crossing(a, b, gap, slope))
    found = [v for v in report.violations + report.uncertain if v.kind == "vertical"]
    if expected is None:
        assert found == []
        assert report.checked["vertical"] == 1
    else:
        (v,) = found
        assert v.measured_m == pytest.approx(expected, abs=1e-4)
        assert v.required_m == required and v.uncertainty_m == pytest.approx(0.3)
        assert (v.x, v.y) == pytest.approx((0.0, 0.0), abs=1e-6)
        assert v.verdict == ("violation" if expected + 0.3 < required else "uncertain")


def test_connected_pipes_and_risers_are_not_judged():
    net = make_network([
        {"id": "A", "utility": "JS", "d": 300, "xyz": [(0, 0, 0), (10, 0, 0)], "from_node": "N1", "to_node": "N2"},
        {"id": "B", "utility": "JS", "d": 300, "xyz": [(10, 0, 0), (20, 0.2, 0)], "from_node": "N2", "to_node": "N3"},
        {"id": "R", "utility": "DL", "d": 100, "xyz": [(5, 0.3, -1), (5, 0.3, 1)]},  # a riser beside A
    ])
    report = clearances(net)
    assert report.violations == []
    assert report.checked == {"horizontal": 0, "vertical": 0}


def test_unruled_pairs_are_no_rule_findings(tmp_path):
    rules = tmp_path / "rules.csv"
    rules.write_text("id,kind,a_utility,b_utility,clearance_m,source,verified\n"
                     "X1,horizontal,JS,PS,3.0,local rule 7,true\n", encoding="utf-8")
    net = _parallel(1.0, {"d": 300}, {"utility": "DL", "d": 100})
    report = clearances(net, rules=rules)
    assert report.violations == [] and report.unruled == {"horizontal DL / JS": 1}
    assert [(f.kind, f.a_utility, f.b_utility) for f in report.no_rule] == [("no_rule", "JS", "DL")]
    # a replacement table through the settings
    net2 = _parallel(2.0, {"d": 300}, {"utility": "PS", "d": 300})
    (v,) = clearances(net2, settings=get_settings(clearance_rules=rules)).violations  # 1.7 + 0.2 < 3
    assert (v.rule_id, v.rule_source, v.rule_verified, v.required_m) == ("X1", "local rule 7", True, 3.0)
    assert v.measured_m == pytest.approx(1.7, abs=1e-6)


@pytest.mark.parametrize("text,message", [
    ("id,kind,a_utility\nX,horizontal,JS\n", "lacks column"),
    ("id,kind,a_utility,b_utility,clearance_m,source,verified\nX,diagonal,JS,PS,1,s,true\n", "horizontal|vertical"),
    ("id,kind,a_utility,b_utility,clearance_m,source,verified\nX,vertical,JS,PS,abc,s,true\n", "not a number"),
    ("id,kind,a_utility,b_utility,a_pressure_class,clearance_m,source,verified\n"
     "X,vertical,RQ,PS,huge,1,s,true\n", "pressure class"),
])
def test_bad_rule_tables_are_input_errors(tmp_path, text, message):
    path = tmp_path / "rules.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_clearance_rules(path)


def test_shipped_rules_all_carry_source_and_verified_flag():
    table = load_clearance_rules()
    assert (table["source"] != "").all()
    assert set(table["kind"]) == {"horizontal", "vertical"}
    assert not table["verified"].any()  # every number in DOMAIN.md is marked "to verify"


@pytest.mark.parametrize("pressure,cls", [
    # MPa -> GB 50028 class
    (0.005, "low"), (0.01, "medium_b"), (0.2, "medium_b"), (0.3, "medium_a"), (0.4, "medium_a"),
    (0.6, "subhigh_b"), (1.6, "subhigh_a"), (2.0, "high_b"), (np.nan, ""),
])
def test_gas_pressure_class(pressure, cls):
    assert gas_pressure_class(np.array([pressure]))[0] == cls
