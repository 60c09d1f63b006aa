"""Cross-section: analytic crossings (square, skewed, sloped, boxes), bad input, the demo district."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.network import Network
from analysis.section import cross_section, parse_line, section_of_network
from ingest.pipeline import ingest_survey
from ingest.sample import OFFSET, generate_district
from twin.errors import InputError

E0, N0 = 410000.0, 4035000.0


def make_network(pipes: list[dict], ground_z: float = 35.0) -> Network:
    """An in-memory network: each pipe has id, utility, xyz (list of points) and a size."""
    rows, verts, offsets, nodes = [], [], [0], []
    for p in pipes:
        xyz = np.asarray(p["xyz"], dtype=float)
        rows.append({
            "id": p["id"], "from_node": p["id"] + "a", "to_node": p["id"] + "b", "utility": p["utility"],
            "subtype": p.get("subtype"), "shape": "rect" if "width_mm" in p else "circular",
            "diameter_mm": p.get("diameter_mm", np.nan), "width_mm": p.get("width_mm", np.nan),
            "height_mm": p.get("height_mm", np.nan), "size_text": None, "material": None,
            "status": "active", "depth_reference": "invert" if p["utility"] == "PS" else "top",
            "from_z": xyz[0, 2], "to_z": xyz[-1, 2], "length_m": 1.0, "owner": None, "road": None,
            "version": 1,
        })
        verts.append(xyz)
        offsets.append(offsets[-1] + len(xyz))
        for end, pt in (("a", xyz[0]), ("b", xyz[-1])):
            nodes.append({"id": p["id"] + end, "utility": p["utility"], "feature": None, "appurtenance": None,
                          "ground_z": ground_z, "depth_m": np.nan, "x": pt[0], "y": pt[1]})
    nodes_df = pd.DataFrame(nodes)
    return Network(pd.DataFrame(rows), nodes_df, nodes_df[["x", "y", "ground_z"]].to_numpy(float),
                   np.concatenate(verts), np.asarray(offsets))


SQ2 = math.sqrt(0.5)
#   id    what                                   crossing offset  centre z
PIPES = [
    {"id": "A", "utility": "JS", "diameter_mm": 300, "xyz": [(E0 + 5, N0 - 10, 33.0), (E0 + 5, N0 + 10, 33.0)]},
    {"id": "B", "utility": "DL", "width_mm": 600, "height_mm": 400,
     "xyz": [(E0 + 12, N0 - 10, 33.5), (E0 + 12, N0 + 10, 33.5)]},
    # skewed 45 degrees, level: passes (E0 + 16, N0)
    {"id": "C", "utility": "RQ", "diameter_mm": 400, "xyz": [(E0 + 6, N0 - 10, 32.0), (E0 + 26, N0 + 10, 32.0)]},
    # square, sloped 1:20: centre 30.5 at the line
    {"id": "D", "utility": "PS", "subtype": "YS", "diameter_mm": 400,
     "xyz": [(E0 + 19, N0 - 10, 30.0), (E0 + 19, N0 + 10, 31.0)]},
    # runs along the line: no cut
    {"id": "E", "utility": "TX", "width_mm": 400, "height_mm": 300, "xyz": [(E0 + 1, N0, 34), (E0 + 3, N0, 34)]},
    # beyond the line's end
    {"id": "F", "utility": "JS", "diameter_mm": 200, "xyz": [(E0 + 30, N0 - 10, 33), (E0 + 30, N0 + 10, 33)]},
]


@pytest.fixture(scope="module")
def section():
    return section_of_network(make_network(PIPES), [(E0, N0), (E0 + 20, N0)], crs="EPSG:4548")


def test_square_crossing_of_a_level_pipe(section):
    a = section.pipes[0]
    assert [p.id for p in section.pipes] == ["A", "B", "C", "D"]
    assert a.offset_m == pytest.approx(5.0)
    assert (a.centre_z, a.top_z, a.bottom_z) == pytest.approx((33.0, 33.15, 32.85))
    assert a.angle_deg == pytest.approx(90.0)
    assert a.cut_half_width_m == pytest.approx(0.15) and a.cut_semi_axes_m == pytest.approx((0.15, 0.15))
    assert a.cover_m == pytest.approx(35.0 - 33.15)
    assert section.along == ["E"]


def test_box_and_clear_distances(section):
    a, b, c, d = section.pipes
    assert (b.top_z, b.bottom_z, b.cut_half_width_m) == pytest.approx((33.7, 33.3, 0.3))
    # outer wall to outer wall along the line
    assert a.clear_right_m == pytest.approx((12 - 0.3) - (5 + 0.15))
    assert b.clear_left_m == a.clear_right_m and b.right_id == "C"
    assert section.spacings[0].horizontal_m == pytest.approx(6.55)
    assert c.clear_right_m == pytest.approx((19 - 0.2) - (16 + 0.2 / SQ2))


def test_skewed_crossing_cuts_an_ellipse(section):
    c = section.pipes[2]
    assert c.offset_m == pytest.approx(16.0)
    assert c.angle_deg == pytest.approx(45.0)
    assert c.cut_half_width_m == pytest.approx(0.2 / SQ2)
    assert c.cut_half_height_m == pytest.approx(0.2)
    assert c.cut_semi_axes_m == pytest.approx((0.2 / SQ2, 0.2)) and c.cut_tilt_deg == 0


def test_sloped_crossing(section):
    d = section.pipes[3]
    alpha = math.atan(1 / 20)
    assert d.centre_z == pytest.approx(30.5)
    assert d.slope_permille == pytest.approx(50.0)
    assert d.cut_half_height_m == pytest.approx(0.2 / math.cos(alpha))
    assert d.cut_half_width_m == pytest.approx(0.2)
    assert d.depth_reference == "invert" and d.depth_m == pytest.approx(35.0 - d.bottom_z)


def _brute_cut(r, d_axis, e):
    """Half extents of a cylinder's cut by the vertical plane along plan direction e, by sampling."""
    d = np.asarray(d_axis, float) / np.linalg.norm(d_axis)
    u = np.cross(d, [0, 0, 1.0])
    u /= np.linalg.norm(u)
    w = np.cross(d, u)
    n = np.array([-e[1], e[0], 0.0])
    beta = np.linspace(0, 2 * np.pi, 20001)
    ring = r * (np.cos(beta)[:, None] * u + np.sin(beta)[:, None] * w)
    lam = -(ring @ n) / (d @ n)
    pts = ring + lam[:, None] * d
    return np.abs(pts[:, :2] @ e).max(), np.abs(pts[:, 2]).max()


@pytest.mark.parametrize("angle_deg, slope", [(30, 0.0), (60, 0.08), (75, -0.2), (90, 0.3)])
def test_skewed_and_sloped_cut_matches_sampling(angle_deg, slope):
    th = math.radians(angle_deg)
    d2 = np.array([math.cos(th), math.sin(th)])
    p0 = np.array([E0 + 10, N0, 30.0]) - 10 * np.r_[d2, slope]
    p1 = np.array([E0 + 10, N0, 30.0]) + 10 * np.r_[d2, slope]
    net = make_network([{"id": "P", "utility": "JS", "diameter_mm": 500, "xyz": [p0, p1]}])
    sec = section_of_network(net, [(E0, N0), (E0 + 20, N0)])
    (p,) = sec.pipes
    hw, hh = _brute_cut(0.25, np.r_[d2, slope], np.array([1.0, 0.0]))
    assert p.offset_m == pytest.approx(10.0)
    assert p.centre_z == pytest.approx(30.0)
    assert p.cut_half_width_m == pytest.approx(hw, rel=1e-6)
    assert p.cut_half_height_m == pytest.approx(hh, rel=1e-6)
    assert p.angle_deg == pytest.approx(angle_deg)


def test_polyline_section_and_shared_vertex():
    # a bent section line: chainage continues over the bend; the pipe A is cut once on each leg
    net = make_network(PIPES[:1])
    sec = section_of_network(net, [(E0, N0 - 5), (E0 + 10, N0 - 5), (E0, N0 + 5)])
    assert [p.id for p in sec.pipes] == ["A", "A"]
    assert sec.pipes[0].offset_m == pytest.approx(5.0)
    assert sec.pipes[1].offset_m == pytest.approx(10 + math.hypot(5, 5))
    # a line through the pipe's own vertex finds it once
    bent = make_network([{"id": "V", "utility": "JS", "diameter_mm": 200,
                          "xyz": [(E0 + 5, N0 - 10, 33), (E0 + 5, N0, 33), (E0 + 5, N0 + 10, 33)]}])
    assert len(section_of_network(bent, [(E0, N0), (E0 + 10, N0)]).pipes) == 1


@pytest.mark.parametrize("line, message", [
    ("410000,4035000", "two distinct points"),
    ("410000,4035000,410000,4035000", "two distinct points"),
    ("410000,4035000,410010", "pairs"),
    ("115.98,36.45,115.99,36.46", "longitude/latitude"),
    ("a,b,c,d", "numbers"),
])
def test_bad_section_lines(line, message):
    with pytest.raises(InputError, match=message):
        parse_line(line)


# -- the demo district in PostGIS ------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(twin_settings, twin_engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate_district(out, scale=1, seed=0)
    report = ingest_survey(out / "points.csv", out / "segments.csv", twin_settings)
    assert report.status == "applied"
    return twin_engine


def test_section_across_a_road_finds_its_pipes(demo):
    with demo.connect() as conn:
        # the storm drain runs on the centreline of a north-south road (offset 0)
        x, y0, y1 = conn.execute(sa.text(
            "SELECT ST_X(ST_StartPoint(geom)), min(ST_Y(ST_StartPoint(geom))), max(ST_Y(ST_StartPoint(geom))) "
            "FROM current_segment WHERE subtype = 'YS' AND road = '柳园路' "
            "AND ST_X(ST_StartPoint(geom)) = ST_X(ST_EndPoint(geom)) GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        )).one()
    y = (y0 + y1) / 2 + 7.3  # between manholes and away from cross roads
    sec = cross_section(demo, f"{x - 20},{y},{x + 20},{y}")
    mains = [p for p in sec.pipes if (p.subtype or p.utility) in OFFSET and p.angle_deg > 85]
    got = {(p.subtype or p.utility): p.offset_m - 20 for p in mains}
    want = {k: v for k, v in OFFSET.items() if abs(v) <= 19 and k != "RS"}
    for code, off in want.items():
        assert got.get(code) == pytest.approx(off, abs=0.01), (code, got)
    # drawn in the vertical order of GB 50289: telecom shallowest, sewer deepest
    tops = {(p.subtype or p.utility): p.top_z for p in mains}
    assert tops["WS"] < tops["YS"] < min(tops["TX"], tops["RQ"], tops["DL"], tops["JS"])
    assert all(p.cover_m is not None and 0.3 < p.cover_m < 8 for p in sec.pipes)
    g = np.asarray(sec.as_dict()["ground"])
    assert len(g) > 50 and np.all(np.abs(g[:, 1] - 35) < 3)
    assert sec.crs == "EPSG:4548"
