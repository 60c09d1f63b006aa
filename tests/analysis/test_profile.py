"""Longitudinal profile: a surveyed chain with known slopes, the shortest path, crossings, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from analysis.profile import longitudinal_profile
from ingest.pipeline import ingest_survey
from tests.conftest import write_survey
from twin.errors import InputError, NotFound

E0, N0 = 410000.0, 4035000.0

# point id, utility, feature, easting, northing, ground, depth (to the top; drainage: to the invert)
POINTS = [
    ("A1", "JS", "终点", E0, N0, 35.00, 1.00),
    ("A2", "JS", "三通", E0 + 40, N0, 35.20, 1.40),
    ("A3", "JS", "三通", E0 + 80, N0, 35.00, 1.20),
    ("A4", "JS", "终点", E0 + 120, N0, 35.10, 1.10),
    # a longer way round from A2 to A3: the shortest path must not take it
    ("B1", "JS", "直线点", E0 + 40, N0 + 30, 35.2, 1.2),
    ("B2", "JS", "直线点", E0 + 80, N0 + 30, 35.2, 1.2),
    # a telecom duct crossing the chain square at easting E0 + 20
    ("T1", "TX", "终点", E0 + 20, N0 - 10, 35.10, 0.60),
    ("T2", "TX", "终点", E0 + 20, N0 + 10, 35.10, 0.60),
    # a gravity sewer laid against its flow (invert rises from W1 to W2)
    ("W1", "WS", "终点", E0, N0 - 40, 35.0, 3.00),
    ("W2", "WS", "终点", E0 + 40, N0 - 40, 35.0, 2.80),
    ("W3", "WS", "终点", E0 + 300, N0 - 40, 35.0, 2.80),
]
# from, to, utility, size
SEGMENTS = [
    ("A1", "A2", "JS", "DN200"), ("A2", "A3", "JS", "DN200"), ("A3", "A4", "JS", "DN200"),
    ("A2", "B1", "JS", "DN100"), ("B1", "B2", "JS", "DN100"), ("B2", "A3", "JS", "DN100"),
    ("T1", "T2", "TX", "400X300"), ("W1", "W2", "WS", "DN400"),
]


def _write_survey(folder):
    write_survey(folder, POINTS, SEGMENTS)


@pytest.fixture(scope="module")
def chain(twin_settings, twin_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    _write_survey(folder)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine


def test_profile_along_a_chain_with_known_slopes(chain):
    prof = longitudinal_profile(chain, "A1", "A4")
    assert [n.id for n in prof.nodes] == ["A1", "A2", "A3", "A4"]  # not round by B1, B2
    assert [n.chainage_m for n in prof.nodes] == pytest.approx([0, 40, 80, 120])
    top = {p[0]: p[5] - p[6] for p in POINTS}
    for n in prof.nodes:
        assert n.ground_z == pytest.approx(next(p[5] for p in POINTS if p[0] == n.id))
        assert n.top_z == pytest.approx(top[n.id])
        assert n.invert_z == pytest.approx(top[n.id] - 0.2)
        assert n.depth_m == pytest.approx(next(p[6] for p in POINTS if p[0] == n.id))
    # slopes of the pipe (top, = centreline) in per mille along the path
    want = [(top["A2"] - top["A1"]) / 40 * 1000, (top["A3"] - top["A2"]) / 40 * 1000,
            (top["A4"] - top["A3"]) / 40 * 1000]
    assert [s.slope_permille for s in prof.segments] == pytest.approx(want)
    assert [s.direction for s in prof.segments] == ["falls", "level", "rises"]
    assert not any(s.reversed for s in prof.segments)


def test_profile_backwards_reverses_slopes(chain):
    fwd = longitudinal_profile(chain, "A1", "A4")
    back = longitudinal_profile(chain, "A4", "A1")
    assert [s.id for s in back.segments] == [s.id for s in fwd.segments][::-1]
    assert all(s.reversed for s in back.segments)
    assert [s.slope_permille for s in back.segments] == pytest.approx([-s.slope_permille for s in fwd.segments][::-1])


def test_crossing_pipe_with_vertical_clearance(chain):
    prof = longitudinal_profile(chain, "A1", "A4")
    (c,) = prof.crossings
    assert c.utility == "TX" and c.chainage_m == pytest.approx(20.0) and c.path_segment == "A1-A2"
    # water top at chainage 20: halfway between A1 (34.0) and A2 (33.8); duct 35.1 - 0.6 - 0.3 = 34.2 bottom
    assert c.path_top_z == pytest.approx(33.9)
    assert c.top_z == pytest.approx(34.5) and c.bottom_z == pytest.approx(34.2)
    assert c.position == "above" and c.vertical_clear_m == pytest.approx(0.3)


def test_gravity_reverse_grade_is_flagged(chain):
    prof = longitudinal_profile(chain, "W2", "W1")
    (s,) = prof.segments
    assert s.reversed and s.reverse_grade
    assert prof.nodes[0].depth_m == pytest.approx(2.8)  # drainage depth to the invert


def test_profile_svg(chain):
    prof = longitudinal_profile(chain, "A1", "A4")
    root = ET.fromstring(prof.to_svg())
    kx, ky = float(root.get("data-px-per-m-h")), float(root.get("data-px-per-m-v"))
    ox, oy, oz = (float(root.get(a)) for a in ("data-origin-x", "data-origin-y", "data-origin-z"))
    assert ky > kx  # vertical exaggeration
    top = next(e for e in root.iter() if e.get("data-kind") == "top")
    pts = [tuple(map(float, p.split(","))) for p in top.get("points").split()]
    assert pts[0] == pytest.approx((ox, oy - (34.0 - oz) * ky), abs=1e-2)
    assert pts[-1] == pytest.approx((ox + 120 * kx, oy - (34.0 - oz) * ky), abs=1e-2)
    crossing = next(e for e in root.iter() if e.get("class") == "crossing")
    assert float(crossing.get("cx")) == pytest.approx(ox + 20 * kx, abs=1e-2)
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"A1", "A2", "A3", "A4"} <= set(labels)
    assert any(t and "vertical exaggeration" in t for t in labels)


def test_profile_errors(chain):
    with pytest.raises(NotFound, match="no survey point 'NOPE'"):
        longitudinal_profile(chain, "A1", "NOPE")
    with pytest.raises(InputError, match="one utility"):
        longitudinal_profile(chain, "A1", "T1")
    with pytest.raises(NotFound, match="no path") as exc:
        longitudinal_profile(chain, "W1", "W3")  # W3 is surveyed but not connected
    assert exc.value.code == "NO_PATH"
