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


HORIZONTAL_CASES = [
    # a, b, centre offset, angle, shift, expected measured (None: no violation), rule
    ({"d": 300}, {"w": 600, "h": 400}, 0.80, 0, 0, 0.35, "H09"),    # water-power 0.5: 0.8 - 0.15 - 0.3
    ({"d": 300}, {"w": 600, "h": 400}, 1.00, 0, 0, None, "H09"),    # 0.55 clear
    # skewed 5 degrees about B's middle, 2 m off: B's nearest end decides
    ({"d": 300}, {"w": 600, "h": 400}, 2.00, 5, 0, 2.0 - 20 * math.sin(math.radians(5)) - 0.45, "H09"),
    ({"d": 300}, {"w": 600, "h": 400}, 0.80, 0, 39.8, None, None),  # projections overlap 0.2 m only
    ({"d": 200}, {"utility": "PS", "d": 500}, 1.30, 0, 0, 0.95, "H01"),  # water DN200-drainage 1.0
    ({"d": 300}, {"utility": "PS", "d": 500}, 1.30, 0, 0, 0.90, "H02"),  # water DN300-drainage 1.5
    ({"d": 300}, {"utility": "RQ", "d": 200, "pressure_mpa": 0.3}, 0.70, 0, 0, 0.45, "H04"),  # medium A gas 0.5
    ({"d": 300}, {"utility": "RQ", "d": 200, "pressure_mpa": 0.6}, 0.70, 0, 0, 0.45, "H05"),  # sub-high B 1.0
    ({"d": 300}, {"utility": "RQ", "d": 200}, 1.50, 0, 0, 1.25, "H07"),  # unknown pressure: 1.5
    ({"utility": "RQ", "d": 300}, {"utility": "RQ", "d": 200}, 0.60, 0, 0, 0.35, "H16"),  # DN<=300: 0.4
    ({"utility": "RQ", "d": 400}, {"utility": "RQ", "d": 200}, 0.70, 0, 0, 0.40, "H17"),  # DN400: 0.5
]


@pytest.mark.parametrize("a,b,offset,angle,shift,expected,rule", HORIZONTAL_CASES)
def test_horizontal_clearance(a, b, offset, angle, shift, expected, rule):
    report = clearances(_parallel(offset, a, b, angle, shift))
    horizontal = [v for v in report.violations if v.kind == "horizontal"]
    if expected is None:
        assert horizontal == []
    else:
        (v,) = horizontal
        assert v.measured_m == pytest.approx(expected, abs=1e-4)
        assert v.rule_id == rule and v.rule_source.startswith("GB 50289") and v.rule_verified is False
        assert v.required_m > v.measured_m and v.z is None


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
    # a, b, centre gap, slope of b, expected measured (None: fine), rule
    ({"d": 300}, {"d": 500}, 0.70, 0.0, 0.30, "V02"),    # drainage-water 0.40: 0.70 - 0.15 - 0.25
    ({"d": 300}, {"d": 500}, 0.85, 0.0, None, "V02"),    # 0.45 clear
    ({"d": 300}, {"d": 500}, 0.70, 0.02, 0.30, "V02"),   # sloped drain: same gap at the crossing
    ({"d": 300}, {"d": 500}, -0.70, 0.0, 0.30, "V02"),   # the drain above
    ({"d": 300}, {"utility": "JS", "d": 300}, 0.40, 0.0, 0.10, "V01"),  # water-water 0.15
    ({"d": 300}, {"utility": "TX", "burial": "ZM", "d": 100}, 0.50, 0.0, 0.30, "V06"),  # telecom direct 0.5
    ({"d": 300}, {"utility": "TX", "burial": "GK", "w": 400, "h": 300}, 0.35, 0.0, 0.05, "V99"),  # conduit: default
    ({"utility": "RQ", "d": 200}, {"utility": "TX", "burial": "ZM", "d": 100}, 0.50, 0.0, 0.35, "V09"),  # beats V05
    ({"utility": "RQ", "d": 200}, {"utility": "DL", "burial": "ZM", "d": 100}, 0.40, 0.0, 0.25, "V11"),  # beats V05
]


@pytest.mark.parametrize("a,b,gap,slope,expected,rule", VERTICAL_CASES)
def test_vertical_clearance(a, b, gap, slope, expected, rule):
    report = clearances(_crossing(a, b, gap, slope))
    vertical = [v for v in report.violations if v.kind == "vertical"]
    if expected is None:
        assert vertical == []
        assert report.checked["vertical"] == 1
    else:
        (v,) = vertical
        assert v.measured_m == pytest.approx(expected, abs=1e-4)
        assert v.rule_id == rule
        assert (v.x, v.y) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_connected_pipes_and_risers_are_not_judged():
    net = make_network([
        {"id": "A", "utility": "JS", "d": 300, "xyz": [(0, 0, 0), (10, 0, 0)], "from_node": "N1", "to_node": "N2"},
        {"id": "B", "utility": "JS", "d": 300, "xyz": [(10, 0, 0), (20, 0.2, 0)], "from_node": "N2", "to_node": "N3"},
        {"id": "R", "utility": "DL", "d": 100, "xyz": [(5, 0.3, -1), (5, 0.3, 1)]},  # a riser beside A
    ])
    report = clearances(net)
    assert report.violations == []
    assert report.checked == {"horizontal": 0, "vertical": 0}


def test_unruled_pairs_are_counted_not_judged(tmp_path):
    rules = tmp_path / "rules.csv"
    rules.write_text("id,kind,a_utility,b_utility,clearance_m,source,verified\n"
                     "X1,horizontal,JS,PS,3.0,local rule 7,true\n", encoding="utf-8")
    net = _parallel(1.0, {"d": 300}, {"utility": "DL", "d": 100})
    report = clearances(net, rules=rules)
    assert report.violations == [] and report.unruled == {"horizontal DL / JS": 1}
    # a replacement table through the settings
    net2 = _parallel(2.0, {"d": 300}, {"utility": "PS", "d": 300})
    (v,) = clearances(net2, settings=get_settings(clearance_rules=rules)).violations
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
