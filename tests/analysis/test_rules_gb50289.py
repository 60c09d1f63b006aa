"""The shipped GB 50289-2016 tables are complete: every pair of the utilities the standard names
has a horizontal (table 4.1.9) and a vertical (table 4.1.14) rule, each row cites its clause,
things the twin holds no data for are in the table but not checked, and no default row stands in
for a value the standard does not give."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.clearance import (
    NOT_CHECKED,
    _pick_rules,
    load_clearance_rules,
    rule_margins,
    rule_reach_m,
    segment_attributes,
)
from analysis.cover import load_cover_rules

#: The pipe classes GB 50289 table 4.1.9 distinguishes, as segment attributes.
CLASSES = {
    "water d<=200": {"utility": "JS", "diameter_mm": 200.0},
    "water d>200": {"utility": "JS", "diameter_mm": 300.0},
    "water, size unknown": {"utility": "JS", "diameter_mm": np.nan},
    "storm": {"utility": "PS", "subtype": "YS"},
    "sewage": {"utility": "PS", "subtype": "WS"},
    "reclaimed": {"utility": "JS", "subtype": "ZS"},
    "gas low": {"utility": "RQ", "pressure_mpa": 0.005},
    "gas medium B": {"utility": "RQ", "pressure_mpa": 0.1},
    "gas medium A": {"utility": "RQ", "pressure_mpa": 0.3},
    "gas sub-high B": {"utility": "RQ", "pressure_mpa": 0.6},
    "gas sub-high A": {"utility": "RQ", "pressure_mpa": 1.2},
    "gas, pressure unknown": {"utility": "RQ"},
    "heat direct": {"utility": "RL", "burial": "ZM"},
    "heat trench": {"utility": "RL", "burial": "DM"},
    "power direct": {"utility": "DL", "burial": "ZM"},
    "power duct": {"utility": "DL", "burial": "GK"},
    "telecom direct": {"utility": "TX", "burial": "ZM"},
    "telecom duct": {"utility": "TX", "burial": "GK"},
    "utility tunnel": {"utility": "QT", "subtype": "ZH"},
}
#: Pairs the standard leaves open: two utility tunnels side by side.
OPEN = {frozenset(("utility tunnel",))}


def _segments(classes: dict[str, dict]) -> pd.DataFrame:
    rows = [
        {
            "utility": "",
            "subtype": None,
            "burial": None,
            "material": None,
            "shape": "circular",
            "diameter_mm": 200.0,
            "width_mm": np.nan,
            "pressure_mpa": np.nan,
            **attrs,
            "name": name,
        }
        for name, attrs in classes.items()
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def rules():
    return load_clearance_rules()


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_every_pair_of_the_standard_has_a_rule(rules, kind):
    segs = _segments(CLASSES)
    attrs = segment_attributes(segs)
    pairs = [
        (a, b)
        for a, b in itertools.combinations_with_replacement(range(len(segs)), 2)
        if frozenset((segs["name"][a], segs["name"][b])) not in OPEN
    ]
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    got = _pick_rules(rules, kind, attrs, a, b)
    missing = [
        (segs["name"][x], segs["name"][y]) for x, y, r in zip(a, b, got, strict=True) if r < 0
    ]
    assert missing == []
    # each answer cites its clause
    clause = "4.1.9" if kind == "horizontal" else "4.1.14"
    assert rules["source"].iloc[got].str.contains(f"GB 50289-2016 {clause}").all()


@pytest.mark.parametrize(
    "a,b,kind,value",
    [
        # the standard's own distinctions, by hand from table 4.1.9 / 4.1.14
        ("water d<=200", "storm", "horizontal", 1.0),
        ("water d>200", "sewage", "horizontal", 1.5),
        ("water, size unknown", "sewage", "horizontal", 1.5),  # the larger, conservative
        ("reclaimed", "sewage", "horizontal", 0.5),  # reclaimed water is not water's 1.5
        ("gas medium B", "sewage", "horizontal", 1.2),
        ("gas sub-high A", "sewage", "horizontal", 2.0),
        ("gas, pressure unknown", "sewage", "horizontal", 2.0),
        ("gas low", "power duct", "horizontal", 1.0),
        ("gas low", "power direct", "horizontal", 0.5),
        ("heat direct", "power direct", "horizontal", 2.0),
        ("gas sub-high A", "heat trench", "horizontal", 4.0),
        ("telecom direct", "water d>200", "vertical", 0.5),
        ("telecom duct", "water d>200", "vertical", 0.15),
        ("power direct", "gas low", "vertical", 0.5),
        ("power duct", "gas low", "vertical", 0.15),
        ("storm", "water d>200", "vertical", 0.4),
    ],
)
def test_values_of_the_tables(rules, a, b, kind, value):
    segs = _segments({a: CLASSES[a], b: CLASSES[b]} if a != b else {a: CLASSES[a]})
    attrs = segment_attributes(segs)
    (r,) = _pick_rules(rules, kind, attrs, np.array([0]), np.array([len(segs) - 1]))
    assert rules["clearance_m"].iloc[r] == value


def test_high_pressure_gas_and_unknown_utilities_have_no_rule(rules):
    segs = _segments(
        {
            "gas high B": {"utility": "RQ", "pressure_mpa": 2.0},
            "water": CLASSES["water d>200"],
            "industrial": {"utility": "GY"},
        }
    )
    attrs = segment_attributes(segs)
    assert _pick_rules(rules, "horizontal", attrs, np.array([0, 2]), np.array([1, 1])).tolist() == [
        -1,
        -1,
    ]
    # table 4.1.14 does not tell gas by pressure: 0.15 m for any gas crossing
    got = _pick_rules(rules, "vertical", attrs, np.array([0, 2]), np.array([1, 1]))
    assert got[1] == -1 and rules["clearance_m"].iloc[got[0]] == 0.15


def test_no_default_row_and_non_network_rows_are_not_checked(rules):
    assert not ((rules["a_utility"] == "*") | (rules["b_utility"] == "*")).any()
    named = set(rules["a_utility"]) | set(rules["b_utility"])
    assert {"BUILDING", "TREE", "KERB", "TRAM", "RAIL", "CULVERT"} <= named & NOT_CHECKED
    checked = ~(rules["a_utility"].isin(NOT_CHECKED) | rules["b_utility"].isin(NOT_CHECKED))
    assert rules.loc[~checked, "note"].str.contains("not checked").all()
    # the reach of the checks comes from pipe rows only (rail's 5 m does not widen the search)
    assert rule_reach_m(rules) == rules.loc[checked, "clearance_m"].max() < 5.0
    margins = rule_margins(rules, _segments(CLASSES))
    assert margins.max() == rule_reach_m(rules) and margins.min() > 0


def test_every_row_cites_its_clause_and_says_whether_it_is_verified(rules):
    assert rules["source"].str.match(r"GB 50289-2016 4\.1\.(9|14) table 4\.1\.(9|14)$").all()
    assert (rules["note"] != "").all() and not rules["verified"].any()
    cover = load_cover_rules()
    assert cover["source"].str.startswith("GB 50289-2016 table 4.1.1").all()
    assert {"JS", "PS", "RQ", "RL", "DL", "TX", "QT"} <= set(cover["utility"])
