"""Cover depth: ground minus pipe top against the minimum per utility, burial and location."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from analysis.cover import cover_depths, load_cover_rules, sample_centrelines
from analysis.ground import GroundModel
from tests.analysis.test_clash import make_network
from twin.errors import InputError

FLAT = GroundModel(np.array([[-100, -100], [100, -100], [-100, 100], [100, 100]], float), np.full(4, 10.0))


def _pipe(depth_top: float, **kw):
    """A pipe along x from 0 to 40 whose top is `depth_top` below a flat ground at 10 m."""
    half = (kw.get("h") or kw.get("d")) / 2000.0
    z = 10.0 - depth_top - half
    return make_network([{"id": "P", "xyz": [(0, 0, z), (40, 0, z)], "cover": depth_top + half, **kw}])


def _depth_tolerance(depth_top: float, pipe: dict) -> float:
    """CJJ 61 concealed depth limit of the pipe of :func:`_pipe`: 0.15 of its centre depth, at least 1 m."""
    return 0.15 * max(depth_top + (pipe.get("h") or pipe.get("d")) / 2000.0, 1.0)


COVER_CASES = [
    # pipe, top depth, location, expected (None: fine), rule
    ({"utility": "JS", "d": 300}, 0.65, "motor_lane", 0.65, "C02"),   # water 0.70
    ({"utility": "JS", "d": 300}, 0.65, "sidewalk", 0.65, "C01"),     # water 0.60: uncertain (0.65 - 0.15)
    ({"utility": "JS", "d": 300}, 0.80, "sidewalk", None, "C01"),     # 0.80 - 0.15 >= 0.60
    ({"utility": "RQ", "d": 200}, 0.80, "motor_lane", 0.80, "C20"),   # gas 0.90
    ({"utility": "DL", "burial": "ZM", "d": 100}, 0.80, "motor_lane", 0.80, "C08"),  # power direct 1.00
    ({"utility": "DL", "burial": "GK", "w": 600, "h": 400}, 0.80, "motor_lane", None, "C10"),  # conduit 0.50
    ({"utility": "TX", "burial": "GK", "material": "钢", "w": 400, "h": 300}, 0.55, "motor_lane", 0.55, "C16"),
    ({"utility": "TX", "burial": "GK", "material": "PVC", "w": 400, "h": 300}, 0.80, "motor_lane", 0.80, "C14"),
    ({"utility": "JS", "d": 300}, -0.10, "sidewalk", -0.10, "C01"),   # top above ground
]


@pytest.mark.parametrize("pipe,depth,location,expected,rule", COVER_CASES)
def test_cover_on_flat_ground(pipe, depth, location, expected, rule):
    report = cover_depths(_pipe(depth, **pipe), ground=FLAT, default_location=location)
    if expected is None:
        assert report.violations == [] and report.uncertain == []
        assert report.checked_segments == 1
    else:
        (v,) = report.violations + report.uncertain
        assert v.cover_m == pytest.approx(expected, abs=1e-6)
        assert v.rule_id == rule and v.location == location and v.rule_verified is False
        u = _depth_tolerance(depth, pipe)
        assert v.uncertainty_m == pytest.approx(u)
        assert v.verdict == ("violation" if expected + u < v.required_m else "uncertain")
        assert (v in report.violations) == (v.verdict == "violation")


@pytest.mark.parametrize("depth,cls,verdict", [
    (0.50, None, "violation"),        # 0.50 + 0.15 < 0.70
    (0.60, None, "uncertain"),        # 0.60 + 0.15 >= 0.70
    (0.60, "exposed", "violation"),   # 0.60 + 0.05 < 0.70
    (0.68, "exposed", "uncertain"),
    (0.90, None, "compliant"),        # 0.90 - 0.15 >= 0.70
])
def test_cover_verdicts_follow_survey_accuracy(depth, cls, verdict):
    report = cover_depths(_pipe(depth, utility="JS", d=200, survey_class=cls), ground=FLAT)
    found = report.violations + report.uncertain
    assert (found[0].verdict if found else "compliant") == verdict
    # a proposal is exact: the same pipe as a design fails only when it is short
    far = make_network([{"id": "E", "utility": "JS", "d": 200, "from_node": "E1", "to_node": "E2",
                         "xyz": [(0, 50, 9.0), (40, 50, 9.0)]}])
    prop = cover_depths(far, _pipe(depth, utility="JS", d=200), ground=FLAT)
    assert [v.verdict for v in prop.violations + prop.uncertain] == (["violation"] if depth < 0.7 else [])


def test_worst_point_on_sloping_ground():
    # ground falls 0.02 per m to the east; a level pipe loses cover along it: worst at x = 40
    xy = np.array([[-10, -10], [60, -10], [-10, 10], [60, 10]], float)
    ground = GroundModel(xy, 11.0 - 0.02 * xy[:, 0])
    net = make_network([{"id": "P", "utility": "JS", "d": 200, "xyz": [(0, 0, 9.9), (40, 0, 9.9)]}])
    (v,) = cover_depths(net, ground=ground).violations
    assert (v.x, v.y) == pytest.approx((40.0, 0.0))
    assert v.cover_m == pytest.approx(11.0 - 0.8 - 10.0, abs=1e-9)  # 0.2 < 0.7


def test_sampling_finds_a_dip_between_vertices():
    # ground with a hollow at x = 20 (points only there): the vertices alone would miss it
    xy = np.array([[0, -5], [0, 5], [40, -5], [40, 5], [20, -5], [20, 5]], float)
    z = np.array([12, 12, 12, 12, 10.5, 10.5])
    net = make_network([{"id": "P", "utility": "JS", "d": 200, "xyz": [(0, 0, 9.9), (40, 0, 9.9)]}])
    (v,) = cover_depths(net, ground=GroundModel(xy, z), step_m=2.0).violations
    assert v.x == pytest.approx(20.0) and v.cover_m == pytest.approx(0.5, abs=1e-9)


def test_zones_and_segment_location():
    net = _pipe(0.50, utility="JS", d=300)  # 0.50 + 0.15 < 0.70 on the motor lane, uncertain on the sidewalk
    sidewalk_east = shapely.box(20, -5, 50, 5)
    (v,) = cover_depths(net, ground=FLAT, zones=[(sidewalk_east, "人行道")]).violations
    assert v.location == "motor_lane" and v.x <= 20
    assert cover_depths(net, ground=FLAT, zones=[(shapely.box(-5, -5, 50, 5), "sidewalk")]).violations == []
    own = make_network([{"id": "P", "utility": "JS", "d": 300, "location": "sidewalk",
                         "xyz": [(0, 0, 9.2), (40, 0, 9.2)]}])
    assert cover_depths(own, ground=FLAT).violations == []


def test_unruled_utilities_are_counted():
    net = _pipe(0.1, utility="GY", d=300)
    report = cover_depths(net, ground=FLAT)
    assert report.violations == [] and report.unruled == {"GY": 1}


def test_sample_centrelines_spacing():
    net = make_network([{"id": "P", "d": 100, "xyz": [(0, 0, 0), (5, 0, 0), (5, 1, 0)]},
                        {"id": "Z", "d": 100, "xyz": [(9, 9, 0)]}])
    seg, xyz = sample_centrelines(net, step_m=2.0)
    # 5 m in 3 steps (4 points), 1 m in 1 step (2 points), the single-vertex segment once
    assert np.bincount(seg).tolist() == [6, 1]
    assert np.allclose(xyz[:4, 0], [0, 5 / 3, 10 / 3, 5])


@pytest.mark.parametrize("bad", ["garage", "roof"])
def test_unknown_location_is_an_input_error(bad):
    with pytest.raises(InputError, match="location class"):
        cover_depths(_pipe(1.0, utility="JS", d=300), ground=FLAT, default_location=bad)


def test_shipped_cover_rules_are_complete():
    t = load_cover_rules()
    assert set(t["location"]) == {"motor_lane", "sidewalk"}
    assert {"JS", "PS", "RQ", "RL", "DL", "TX"} <= set(t["utility"])
    assert (t["source"] != "").all() and not t["verified"].any()
