"""Collision: exact distances with analytic answers, the candidate search against brute force,
and the demo district on the real PostGIS checked against ST_3DDistance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.clash import collisions, solid_overlap
from analysis.network import NODE_COLUMNS, SEGMENT_COLUMNS, Network, load_network
from analysis.pieces import (
    box_box_overlap,
    box_segment_signed_distance,
    candidate_pairs,
    combine,
    connected_pairs,
    finding_key,
    segment_closest_points,
)


def make_network(pipes: list[dict]) -> Network:
    """A Network from pipe dicts: id, utility, size (DN300 / 600X400 as mm numbers), xyz (centreline),
    optional from_node/to_node, subtype, burial, material, pressure_mpa, owner, road, location, and for
    its end points survey_class (exposed / concealed), appurtenance and cover (ground above the
    centreline, default 1 m)."""
    rows, lines = [], []
    for k, p in enumerate(pipes):
        xyz = np.asarray(p["xyz"], dtype=float)
        d = p.get("d")
        w, h = p.get("w"), p.get("h")
        rows.append({
            "id": p.get("id", f"S{k}"), "from_node": p.get("from_node", f"S{k}:a"),
            "to_node": p.get("to_node", f"S{k}:b"), "utility": p.get("utility", "JS"), "subtype": p.get("subtype"),
            "shape": "rect" if w else "circular", "diameter_mm": d if d else np.nan,
            "width_mm": w if w else np.nan, "height_mm": h if h else np.nan, "size_text": None,
            "material": p.get("material"), "burial": p.get("burial", "ZM"), "pressure_mpa": p.get("pressure_mpa", np.nan),
            "voltage_kv": np.nan, "status": "active", "depth_reference": "top", "from_depth_m": np.nan,
            "to_depth_m": np.nan, "from_z": xyz[0, 2], "to_z": xyz[-1, 2],
            "length_m": float(np.linalg.norm(np.diff(xyz, axis=0), axis=1).sum()), "built_year": None,
            "owner": p.get("owner", "O"), "road": p.get("road", "R"), "version": 1,
            **({"location": p["location"]} if "location" in p else {}),
        })
        lines.append(xyz)
    seg = pd.DataFrame(rows)
    for c in SEGMENT_COLUMNS:
        assert c in seg.columns
    node_rows = {}
    for p, r, line in zip(pipes, rows, lines, strict=True):
        for end, pt in (("from_node", line[0]), ("to_node", line[-1])):
            node_rows[r[end]] = {"id": r[end], "utility": r["utility"], "subtype": None, "feature": None,
                                 "appurtenance": p.get("appurtenance"), "ground_z": pt[2] + p.get("cover", 1.0),
                                 "depth_m": 1.0, "well_depth_m": np.nan, "well_bottom_z": np.nan, "version": 1,
                                 "survey_class": p.get("survey_class"), "x": pt[0], "y": pt[1]}
    nodes = pd.DataFrame(list(node_rows.values()), columns=[*NODE_COLUMNS, "x", "y"])
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in lines], out=offsets[1:])
    return Network(seg, nodes, nodes[["x", "y", "ground_z"]].to_numpy(float),
                   np.vstack(lines) if lines else np.empty((0, 3)), offsets)


# --------------------------------------------------------------------------- segment distance

# p0, p1, q0, q1, expected distance
SEGMENT_CASES = [
    # perpendicular, 1 m apart vertically, crossing at both midpoints
    ((0, 0, 0), (2, 0, 0), (1, -1, 1), (1, 1, 1), 1.0),
    # skew at 30 degrees, 0.5 m apart vertically
    ((0, 0, 0), (10, 0, 0), (5 - 5 * math.cos(math.pi / 6), -5 * math.sin(math.pi / 6), 0.5),
     (5 + 5 * math.cos(math.pi / 6), 5 * math.sin(math.pi / 6), 0.5), 0.5),
    # parallel, 3-4-5 offset
    ((0, 0, 0), (10, 0, 0), (2, 3, 4), (8, 3, 4), 5.0),
    # collinear, apart end to end
    ((0, 0, 0), (1, 0, 0), (3, 0, 0), (5, 0, 0), 2.0),
    # collinear, overlapping
    ((0, 0, 0), (4, 0, 0), (2, 0, 0), (6, 0, 0), 0.0),
    # perpendicular, closest at an end of one (T short of touching)
    ((0, 0, 0), (10, 0, 0), (5, 2, 0), (5, 7, 0), 2.0),
    # zero-length against a segment (point above the middle)
    ((5, 0, 3), (5, 0, 3), (0, 0, 0), (10, 0, 0), 3.0),
    # two points
    ((0, 0, 0), (0, 0, 0), (1, 2, 2), (1, 2, 2), 3.0),
    # sloped pipe over a level one: lines through (0,0,h) dir (0,10,1) and x axis; h = 1
    ((-5, 0, 0), (5, 0, 0), (0, -10, 0), (0, 10, 2), 10 / math.sqrt(101)),
    # vertical riser beside a level pipe
    ((0, 0, -2), (0, 0, 0), (-5, 0.15, -1), (5, 0.15, -1), 0.15),
]


@pytest.mark.parametrize("p0,p1,q0,q1,expected", SEGMENT_CASES)
def test_segment_distance(p0, p1, q0, q1, expected):
    a = [np.array([v], dtype=float) for v in (p0, p1, q0, q1)]
    _, _, d = segment_closest_points(*a)
    assert d[0] == pytest.approx(expected, abs=1e-9)
    _, _, d_swapped = segment_closest_points(a[2], a[3], a[0], a[1])
    assert d_swapped[0] == pytest.approx(expected, abs=1e-9)


def test_segment_distance_matches_dense_sampling():
    rng = np.random.default_rng(7)
    p0, p1, q0, q1 = (rng.normal(size=(200, 3)) * 5 for _ in range(4))
    _, _, d = segment_closest_points(p0, p1, q0, q1)
    t = np.linspace(0, 1, 401)
    a = p0[:, None, :] + (p1 - p0)[:, None, :] * t[None, :, None]
    b = q0[:, None, :] + (q1 - q0)[:, None, :] * t[None, :, None]
    brute = np.linalg.norm(a[:, :, None, :] - b[:, None, :, :], axis=3).min(axis=(1, 2))
    assert (d <= brute + 1e-9).all()  # exact is never above a sampled minimum
    assert np.allclose(d, brute, atol=0.05)


# --------------------------------------------------------------------------- boxes

def test_box_signed_distance_at_a_corner_is_euclidean():
    # box 1000x800 along x; a pipe centreline along x past the upper-north edge, 0.1 out each way
    b0, b1 = np.array([[0.0, 0, 0]]), np.array([[10.0, 0, 0]])
    q0, q1 = np.array([[-5.0, 0.6, 0.5]]), np.array([[15.0, 0.6, 0.5]])
    d, _, _ = box_segment_signed_distance(b0, b1, np.array([0.5]), np.array([0.4]), q0, q1)
    assert d[0] == pytest.approx(math.hypot(0.1, 0.1), abs=1e-7)


def test_box_signed_distance_inside_is_negative():
    b0, b1 = np.array([[0.0, 0, 0]]), np.array([[10.0, 0, 0]])
    # crosses the box through its axis: deepest point 0.4 below the top face (the nearest face)
    d, on_seg, _ = box_segment_signed_distance(b0, b1, np.array([0.5]), np.array([0.4]),
                                               np.array([[5.0, -3, 0]]), np.array([[5.0, 3, 0]]))
    assert d[0] == pytest.approx(-0.4, abs=1e-7)
    assert on_seg[0, 0] == pytest.approx(5.0) and abs(on_seg[0, 1]) <= 0.1 + 1e-6


@pytest.mark.parametrize("gap,expected", [
    # boxes 600x400 (along x) and 800x500 (along y), centres `gap` apart vertically
    (0.40, 0.05),   # 0.2 + 0.25 - 0.40
    (0.45, 0.0),    # touching
    (0.60, -0.15),  # apart
])
def test_box_box_overlap_crossing(gap, expected):
    ov = box_box_overlap(np.array([[-5.0, 0, 0]]), np.array([[5.0, 0, 0]]), np.array([0.3]), np.array([0.2]),
                         np.array([[0.0, -5, -gap]]), np.array([[0.0, 5, -gap]]), np.array([0.4]),
                         np.array([0.25]))
    if expected > 0:
        assert ov[0] == pytest.approx(expected, abs=1e-9)
    else:
        assert ov[0] <= 1e-12


def test_box_box_rotated_apart_by_an_edge_axis():
    # a box rotated 45 degrees about x over another, whose lower edge is 0.05 above the top face
    half = 0.2
    edge = half * math.sqrt(2)
    ov = box_box_overlap(np.array([[-5.0, 0, 0]]), np.array([[5.0, 0, 0]]), np.array([0.5]), np.array([0.5]),
                         np.array([[0.0, -5, 0.5 + edge + 0.05]]), np.array([[0.0, 5, 0.5 + edge + 0.05]]),
                         np.array([half]), np.array([half]))
    assert ov[0] < 0


# --------------------------------------------------------------------------- collisions on small networks

def _crossing(gap: float, a: dict, b: dict, angle_deg: float = 90.0) -> Network:
    """Pipe a along x at z = 0; pipe b through the origin at `angle_deg` in plan, at z = -gap."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return make_network([
        {**a, "id": "A", "xyz": [(-20, 0, 0), (20, 0, 0)]},
        {**b, "id": "B", "xyz": [(-20 * c, -20 * s, -gap), (20 * c, 20 * s, -gap)]},
    ])


CLASH_CASES = [
    # a, b, gap (centre below), angle, expected overlap (None: no clash)
    ({"d": 300}, {"d": 300}, 0.20, 90, 0.10),           # DN300 x DN300, centres 0.2 apart
    ({"d": 300}, {"d": 300}, 0.35, 90, None),           # 0.05 clear
    ({"d": 300}, {"d": 300}, 0.20, 30, 0.10),           # skewed: same vertical distance
    ({"d": 600}, {"d": 200}, 0.00, 60, 0.40),           # centrelines intersect
    ({"w": 1000, "h": 800}, {"d": 200}, 0.47, 90, 0.03),  # pipe top 0.03 into the duct bottom
    ({"w": 1000, "h": 800}, {"d": 200}, 0.55, 90, None),  # 0.05 below the duct
    ({"d": 200}, {"w": 1000, "h": 800}, 0.47, 90, 0.03),  # the same, box second
    ({"w": 600, "h": 400}, {"w": 800, "h": 500}, 0.40, 90, 0.05),  # box x box
    ({"w": 600, "h": 400}, {"w": 800, "h": 500}, 0.50, 90, None),
    ({"w": 600, "h": 400}, {"w": 800, "h": 500}, 0.40, 45, 0.05),  # skewed boxes: the vertical axis
]


@pytest.mark.parametrize("a,b,gap,angle,expected", CLASH_CASES)
def test_crossing_clash(a, b, gap, angle, expected):
    report = collisions(_crossing(gap, a, b, angle))
    if expected is None:
        assert report.clashes == []
    else:
        assert len(report.hard) == 1
        c = report.hard[0]
        assert (c.a_id, c.b_id) == ("A", "B")
        assert c.overlap_m == pytest.approx(expected, abs=1e-4)
        assert abs(c.x) < 0.6 and abs(c.y) < 0.6


def test_sloped_pipe_over_level_pipe():
    # B rises 1 in 10 and passes 1 m over A's axis line at the crossing: distance 10/sqrt(101)
    d = 10 / math.sqrt(101)
    net = make_network([{"id": "A", "d": 1000, "xyz": [(-5, 0, 0), (5, 0, 0)]},
                        {"id": "B", "d": 1000, "xyz": [(0, -10, 0), (0, 10, 2)]}])
    (c,) = collisions(net).hard
    assert c.overlap_m == pytest.approx(1.0 - d, abs=1e-4)


def test_vertical_riser_beside_a_pipe():
    net = make_network([{"id": "R", "d": 200, "xyz": [(0, 0, -2), (0, 0, 0)]},
                        {"id": "P", "d": 200, "xyz": [(-5, 0.15, -1), (5, 0.15, -1)]}])
    (c,) = collisions(net).hard
    assert c.overlap_m == pytest.approx(0.05, abs=5e-5)
    assert (c.x, c.y, c.z) == pytest.approx((0.0, 0.075, -1.0), abs=1e-6)


def test_rectangular_riser_against_pipe_uses_the_box():
    # a 600x400 riser (across = easting, 0.3 half) and a pipe passing at y = 0.25 + r 0.1 (inside)
    net = make_network([{"id": "R", "w": 600, "h": 400, "xyz": [(0, 0, -2), (0, 0, 0)]},
                        {"id": "P", "d": 200, "xyz": [(-5, 0.25, -1), (5, 0.25, -1)]}])
    (c,) = collisions(net).hard
    assert c.overlap_m == pytest.approx(0.2 - 0.25 + 0.1, abs=5e-5)


def test_pipe_near_box_corner_is_not_a_square_approximation():
    # pipe parallel to a 1000x800 duct, 0.1 out past both the side and the top: corner distance 0.1414
    def net(d):
        return make_network([{"id": "D", "w": 1000, "h": 800, "xyz": [(0, 0, 0), (10, 0, 0)]},
                             {"id": "P", "d": d, "xyz": [(-2, 0.6, 0.5), (12, 0.6, 0.5)]}])
    assert collisions(net(200)).clashes == []  # a bounding square section would clash here
    (c,) = collisions(net(300)).hard
    assert c.overlap_m == pytest.approx(0.15 - math.hypot(0.1, 0.1), abs=5e-5)  # reported to 0.1 mm


def test_shared_node_is_connected_not_clashing():
    net = make_network([
        {"id": "A", "d": 400, "xyz": [(0, 0, 0), (10, 0, 0)], "from_node": "N1", "to_node": "N2"},
        {"id": "B", "d": 400, "xyz": [(10, 0, 0), (10, 10, 0)], "from_node": "N2", "to_node": "N3"},
        # a third pipe of another utility through the same corner, not connected: a clash
        {"id": "C", "d": 100, "utility": "DL", "xyz": [(5, 5, 0), (15, -5, 0)]},
    ])
    report = collisions(net)
    assert {(c.a_id, c.b_id) for c in report.hard} == {("A", "C"), ("B", "C")}


def test_polyline_pieces_are_connected_and_reported_once_per_pair():
    net = make_network([
        {"id": "L", "d": 300, "xyz": [(0, 0, 0), (10, 0, 0), (10, 10, 0)]},  # an elbow in one segment
        {"id": "X", "d": 300, "utility": "RQ", "xyz": [(5, 5, 0.1), (15, -5, 0.1)]},  # through the bend
    ])
    report = collisions(net)
    assert [(c.a_id, c.b_id) for c in report.clashes] == [("L", "X")]


def test_zero_length_segment_inside_a_pipe():
    net = make_network([{"id": "Z", "d": 100, "xyz": [(5, 0.1, 0), (5, 0.1, 0)]},
                        {"id": "P", "d": 400, "xyz": [(0, 0, 0), (10, 0, 0)]}])
    (c,) = collisions(net).hard
    assert c.overlap_m == pytest.approx(0.05 + 0.2 - 0.1, abs=5e-5)


def test_duplicate_is_its_own_kind_and_not_a_hard_clash():
    net = make_network([
        {"id": "A", "d": 300, "xyz": [(0, 0, 0), (30, 0, 0)], "from_node": "N1", "to_node": "N2"},
        # the same pipe surveyed again (reversed, 3 cm off) with other point ids
        {"id": "A2", "d": 300, "xyz": [(30, 0.03, 0), (0, 0.03, 0)], "from_node": "M2", "to_node": "M1"},
        # the next pipe, connected to the first survey only
        {"id": "B", "d": 300, "xyz": [(30, 0, 0), (30, 20, 0)], "from_node": "N2", "to_node": "N3"},
        # same ends but another utility: a hard clash, not a duplicate
        {"id": "G", "d": 200, "utility": "RQ", "xyz": [(0, 0, 0), (30, 0, 0)]},
    ])
    report = collisions(net)
    assert [(c.a_id, c.b_id) for c in report.duplicates] == [("A", "A2")]
    hard = {(c.a_id, c.b_id) for c in report.hard}
    assert hard == {("A", "G"), ("A2", "G"), ("B", "G")}  # A2 is not clashing with A's neighbour B


def test_key_is_stable_and_order_free():
    assert finding_key("hard", ["B", "A"]) == finding_key("hard", ["A", "B"])
    assert finding_key("hard", ["A", "B"]) != finding_key("duplicate", ["A", "B"])
    k1 = collisions(_crossing(0.1, {"d": 300}, {"d": 300})).clashes[0].key
    swapped = _crossing(0.1, {"d": 300}, {"d": 300})
    swapped.segments = swapped.segments.iloc[::-1].reset_index(drop=True)
    swapped.vertices = swapped.vertices[[2, 3, 0, 1]]
    assert collisions(swapped).clashes[0].key == k1


def test_proposal_is_checked_against_existing_only():
    existing = make_network([{"id": "E1", "d": 300, "xyz": [(0, 0, 0), (20, 0, 0)]},
                             {"id": "E2", "d": 300, "utility": "RQ", "xyz": [(10, -10, 0), (10, 10, 0)]}])
    proposal = make_network([{"id": "P", "d": 200, "utility": "DL", "xyz": [(5, -10, 0.1), (5, 10, 0.1)],
                              "from_node": "P:a", "to_node": "P:b"}])
    report = collisions(existing, proposal)
    assert [(c.a_id, c.b_id, c.proposal) for c in report.clashes] == [("P", "E1", True)]
    assert len(collisions(existing).hard) == 1  # E1 x E2 exists, but is not the proposal's


def test_grouping_by_road_and_owner_pair():
    net = make_network([
        {"id": "A", "d": 300, "road": "东昌路", "owner": "水", "xyz": [(0, 0, 0), (20, 0, 0)]},
        {"id": "B", "d": 300, "utility": "RQ", "road": "花园路", "owner": "气", "xyz": [(10, -10, 0), (10, 10, 0)]},
        {"id": "C", "d": 300, "utility": "DL", "road": "东昌路", "owner": "电", "xyz": [(15, -10, 0), (15, 10, 0)]},
    ])
    r = collisions(net)
    assert r.by_road() == {"东昌路 / 花园路": 1, "东昌路": 1}
    assert r.by_owner_pair() == {"气 / 水": 1, "水 / 电": 1}


def test_candidate_search_misses_nothing_against_brute_force():
    # short random pipes scattered over index cells and long pipes across many of them
    rng = np.random.default_rng(3)
    pipes = []
    for k in range(300):
        a = rng.uniform(0, 100, 3) * [1, 1, 0.02]
        b = a + rng.normal(0, 3, 3) * [1, 1, 0.1]
        pipes.append({"id": f"S{k:03d}", "d": float(rng.choice([100, 300, 600])), "xyz": [a, b]})
    for k in range(10):
        y = 5 + 10 * k
        pipes.append({"id": f"L{k}", "w": 800, "h": 500, "xyz": [(-1, y, 1), (101, y + 3, 1)]})
    net = make_network(pipes)
    pieces = combine(net)
    i, j = candidate_pairs(pieces)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    n = len(pieces.seg)
    bi, bj = np.triu_indices(n, 1)
    ov, _, _ = solid_overlap(pieces, bi, bj)
    hits = ov > 1e-9
    assert hits.sum() > 20
    assert set(zip(bi[hits].tolist(), bj[hits].tolist(), strict=True)) <= found
    # and the report equals the brute-force overlap set (no connected pairs here)
    assert not connected_pairs(pieces, bi, bj).any()
    assert len(collisions(net).hard) == int(hits.sum())


# --------------------------------------------------------------------------- the demo district, real PostGIS

@pytest.fixture(scope="module")
def demo(twin_settings, twin_engine, tmp_path_factory):
    from ingest.pipeline import ingest_survey
    from ingest.sample import generate_district

    folder = tmp_path_factory.mktemp("demo")
    generate_district(folder, scale=1, seed=0, defects=True)  # the planted defects clash
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied"
    return load_network(twin_engine)


def test_demo_circular_clashes_agree_with_postgis(demo, twin_engine):
    report = collisions(demo)
    assert len(report.hard) > 0 and report.duplicates == []
    circ = set(demo.segments.loc[demo.segments["shape"] == "circular", "id"])
    ours = {tuple(sorted((c.a_id, c.b_id))): c for c in report.findings if c.a_id in circ and c.b_id in circ}
    assert len(ours) > 0
    # independent: PostGIS 3D distance of the centrelines less the radii, pipes not sharing a node
    with twin_engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT a.id, b.id, ST_3DDistance(a.geom, b.geom) - a.diameter_mm / 2000 - b.diameter_mm / 2000
              FROM current_segment a JOIN current_segment b
                ON a.id < b.id AND ST_3DDWithin(a.geom, b.geom, (a.diameter_mm + b.diameter_mm) / 2000 + 1.0)
             WHERE a.shape = 'circular' AND b.shape = 'circular'
               AND a.from_node NOT IN (b.from_node, b.to_node) AND a.to_node NOT IN (b.from_node, b.to_node)
        """)).all()
    theirs = {tuple(sorted((a, b))): gap for a, b, gap in rows}
    for pair, c in ours.items():  # every clash and near miss measured as PostGIS does
        assert c.measured_m == pytest.approx(theirs[pair], abs=1e-3)
    assert {p for p, gap in theirs.items() if gap < -1e-9} == {p for p, c in ours.items() if c.overlap_m > 1e-9}
    # closer than the smallest possible survey uncertainty (2 x 0.05 m, exposed): always a finding
    assert {p for p, gap in theirs.items() if gap < 0.1} <= set(ours)
    assert all(theirs[p] < c.uncertainty_m for p, c in ours.items())


def test_demo_clash_spot_checked_by_hand(demo):
    report = collisions(demo)
    # a crossing of two straight circular pipes: recompute the gap from the raw geometry
    straight = set(demo.segments["id"][np.diff(demo.offsets) == 2])
    circ = set(demo.segments.loc[demo.segments["shape"] == "circular", "id"])
    c = next(c for c in report.findings if {c.a_id, c.b_id} <= straight & circ and c.z is not None
             and _square(demo, c))
    idx = demo.segment_index([c.a_id, c.b_id])
    (a0, a1), (b0, b1) = (demo.vertices[demo.offsets[k]:demo.offsets[k + 1]] for k in idx)
    ua, ub = (a1 - a0)[:2], (b1 - b0)[:2]
    # perpendicular: the crossing point solves a0 + s ua = b0 + t ub in plan
    s, t = np.linalg.solve(np.column_stack([ua, -ub]), (b0 - a0)[:2])
    za, zb = a0[2] + s * (a1 - a0)[2], b0[2] + t * (b1 - b0)[2]
    r = demo.half_width_m[idx]
    assert c.overlap_m == pytest.approx(r.sum() - abs(za - zb), abs=2e-3)
    assert (c.x, c.y) == pytest.approx(tuple(a0[:2] + s * ua), abs=0.05)
    assert c.uncertainty_m > 0


def _square(net, c) -> bool:
    """Whether the two straight pipes of finding ``c`` cross square in plan."""
    idx = net.segment_index([c.a_id, c.b_id])
    (a0, a1), (b0, b1) = (net.vertices[net.offsets[k]:net.offsets[k + 1]] for k in idx)
    ua, ub = (a1 - a0)[:2], (b1 - b0)[:2]
    if abs(np.dot(ua, ub)) > 1e-6 * np.linalg.norm(ua) * np.linalg.norm(ub):
        return False
    s, t = np.linalg.solve(np.column_stack([ua, -ub]), (b0 - a0)[:2])
    return 0 < s < 1 and 0 < t < 1


# --------------------------------------------------------------------------- verdicts

# Two DN300 pipes crossing square, B's centre `gap` below A's: solids apart by gap - 0.30.
# Concealed at 1 m: depth tolerance 0.15 each (u = 0.30 along the vertical); exposed: 0.05 each.
CROSSING_VERDICTS = [
    # gap, survey class, list, measured, uncertainty, verdict
    (0.20, None, "clashes", -0.10, 0.30, "uncertain"),     # -0.10 + 0.30 >= 0
    (0.15, "exposed", "clashes", -0.15, 0.10, "violation"),  # -0.15 + 0.10 < 0
    (0.40, None, "near", 0.10, 0.30, "uncertain"),        # apart by 0.10, could touch
    (0.70, None, None, None, None, None),                 # apart by 0.40 > 0.30: compliant
]


@pytest.mark.parametrize("gap,cls,where,measured,u,verdict", CROSSING_VERDICTS)
def test_collision_verdicts_follow_survey_accuracy(gap, cls, where, measured, u, verdict):
    net = make_network([
        {"id": "A", "d": 300, "survey_class": cls, "xyz": [(-10, 0, 0), (10, 0, 0)]},
        {"id": "B", "utility": "PS", "d": 300, "survey_class": cls, "xyz": [(0, -10, -gap), (0, 10, -gap)]},
    ])
    report = collisions(net)
    if where is None:
        assert report.clashes == [] and report.near == [] and report.uncertain == []
        return
    (c,) = getattr(report, where)
    assert (c.kind, c.a_id, c.b_id) == ("hard", "A", "B")
    assert c.measured_m == pytest.approx(measured, abs=1e-6) and c.required_m == 0.0
    assert c.uncertainty_m == pytest.approx(u) and c.verdict == verdict and c.rule_id is None
    assert c.key == finding_key("hard", ("A", "B"))  # the same key as a near miss or a clash
    d = report.as_dict()
    assert d["counts"]["uncertain"] == (verdict == "uncertain") and len(d["uncertain"]) == d["counts"]["uncertain"]
    assert d["counts"]["violation"] == (verdict == "violation")


def test_a_proposal_clash_is_judged_on_the_existing_pipe_only():
    existing = make_network([{"id": "A", "d": 300, "xyz": [(-10, 0, 0), (10, 0, 0)]}])
    prop = make_network([{"id": "P", "utility": "PS", "d": 300, "from_node": "P1", "to_node": "P2",
                          "xyz": [(0, -10, -0.1), (0, 10, -0.1)]}])
    (c,) = collisions(existing, prop).clashes  # overlap 0.20, u = 0.15: fails anywhere within tolerance
    assert (c.a_id, c.proposal, c.verdict) == ("P", True, "violation")
    assert c.uncertainty_m == pytest.approx(0.15) and c.measured_m == pytest.approx(-0.2)
