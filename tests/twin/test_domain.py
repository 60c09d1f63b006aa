"""Units of the domain vocabulary and the CRS, without a database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.crs import twin_crs
from twin.domain import depth_reference, parse_sizes, parse_utility
from twin.errors import ConfigError

# text           diameter  width  height  bad
SIZES = [
    ("300",        300.0,    None,  None,   False),
    ("DN300",      300.0,    None,  None,   False),
    ("Φ300",       300.0,    None,  None,   False),
    ("D800",       800.0,    None,  None,   False),
    ("de110",      110.0,    None,  None,   False),
    ("1000X800",   None,     1000,  800,    False),
    ("1000×800",   None,     1000,  800,    False),
    ("1000*800",   None,     1000,  800,    False),
    ("abc",        None,     None,  None,   True),
    ("0",          0.0,      None,  None,   True),
    ("",           None,     None,  None,   False),
]


@pytest.mark.parametrize("text,d,w,h,bad", SIZES)
def test_parse_sizes(text, d, w, h, bad):
    row = parse_sizes(pd.Series([text])).iloc[0]
    assert bool(row["bad"]) is bad
    for col, want in (("diameter_mm", d), ("width_mm", w), ("height_mm", h)):
        if want is None or bad:
            assert np.isnan(row[col]) or bad
        else:
            assert row[col] == want


def test_parse_utility_accepts_parent_subtype_and_chinese():
    parent, sub, bad = parse_utility(pd.Series(["JS", "ys", "WS", "污水", "电信", "TR", "XX?", None]))
    assert list(parent) == ["JS", "PS", "PS", "PS", "TX", "RQ", None, None]
    assert list(sub) == [None, "YS", "WS", "WS", None, "TR", None, None]
    assert list(bad) == [False, False, False, False, False, False, True, True]


def test_depth_reference_drainage_is_invert():
    assert list(depth_reference(np.array(["PS", "JS", "DL"]))) == ["invert", "top", "top"]


def test_twin_crs_default_is_gauss_kruger_117():
    crs = twin_crs("EPSG:4548")
    assert crs.srid == 4548
    assert crs.central_meridian == 117.0
    assert crs.gk_zone_3deg == 39


def test_zone_prefix_is_stripped_and_foreign_zone_flagged():
    crs = twin_crs("EPSG:4548")
    e, wrong = crs.strip_zone_prefix(np.array([39410000.0, 410000.0, 40410000.0]))
    assert e[:2].tolist() == [410000.0, 410000.0]
    assert wrong.tolist() == [False, False, True]


@pytest.mark.parametrize("bad", ["EPSG:4326", "not a crs", "EPSG:2263"])
def test_twin_crs_rejects_geographic_unknown_and_feet(bad):
    with pytest.raises(ConfigError):
        twin_crs(bad)
