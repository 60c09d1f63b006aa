"""Pipe and fitting meshes: true radius at mitred joints, no twist, watertight, vectorised."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tiles.mesh import (
    BOX,
    OCTAHEDRON,
    circle_profile,
    instances,
    rect_profile,
    sides_for_diameter,
    sweep,
)


def _polylines(rng, count, max_vertices=7):
    """Random 3D polylines (bends under 90 degrees: always heading east), one after another."""
    lengths = rng.integers(2, max_vertices + 1, count)
    pts = []
    for n in lengths:
        steps = rng.uniform(-1, 1, size=(n - 1, 3)) * [3, 6, 1.5] + [10, 0, 0]
        pts.append(np.cumsum(np.vstack([rng.uniform(-500, 500, 3), steps]), axis=0))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return np.vstack(pts), starts


def _feature_mesh(mesh, f):
    sel = mesh.feature == f
    idx = np.flatnonzero(sel)
    remap = -np.ones(len(mesh.positions), int)
    remap[idx] = np.arange(len(idx))
    faces = remap[mesh.indices[np.all(sel[mesh.indices], axis=1)]]
    return trimesh.Trimesh(mesh.positions[idx], faces)  # merges the caps' own vertices


def _distance_to_line(p, a, b):
    d = (b - a) / np.linalg.norm(b - a)
    w = p - a
    return np.linalg.norm(w - np.outer(w @ d, d), axis=1)


@pytest.mark.parametrize("sides", [8, 12, 16])
def test_wall_keeps_its_radius_at_mitred_joints(sides):
    rng = np.random.default_rng(sides)
    pts, starts = _polylines(rng, 40)
    radius = rng.uniform(0.05, 0.8, 40)
    mesh, built = sweep(pts, starts, circle_profile(sides), np.column_stack([radius, radius]))
    assert built.all()
    # Rings come first, one per centreline vertex, `sides` vertices each.
    rings = mesh.positions[: len(pts) * sides].reshape(len(pts), sides, 3)
    for i in range(40):
        for v in range(starts[i], starts[i + 1]):
            for a, b in ((v - 1, v), (v, v + 1)):  # the segments meeting at the vertex
                if starts[i] <= a and b < starts[i + 1]:
                    assert np.allclose(_distance_to_line(rings[v], pts[a], pts[b]), radius[i], atol=1e-9)


def test_sharp_bend_of_135_degrees_keeps_the_radius():
    a = np.radians(135)
    pts = np.array([[0, 0, 0], [10, 0, 0], [10 + 10 * np.cos(a), 10 * np.sin(a), 0]])
    mesh, _ = sweep(pts, np.array([0, 3]), circle_profile(12), np.array([[0.5, 0.5]]))
    ring = mesh.positions[12:24]
    assert np.allclose(_distance_to_line(ring, pts[0], pts[1]), 0.5)
    assert np.allclose(_distance_to_line(ring, pts[1], pts[2]), 0.5)
    assert _feature_mesh(mesh, 0).is_watertight


def test_hairpin_beyond_the_mitre_limit_stays_closed():
    pts = np.array([[0, 0, 0], [10, 0, 0], [0, 1, 0]], float)  # a 174 degree turn
    mesh, _ = sweep(pts, np.array([0, 3]), circle_profile(8), np.array([[0.2, 0.2]]))
    tm = _feature_mesh(mesh, 0)
    assert tm.is_watertight and tm.is_winding_consistent


def test_no_twist_side_edges_run_along_the_pipe():
    """Each side edge between two rings is parallel to its segment: no twist, no gaps."""
    rng = np.random.default_rng(1)
    pts, starts = _polylines(rng, 60)
    mesh, _ = sweep(pts, starts, circle_profile(12), np.full((60, 2), 0.3))
    rings = mesh.positions[: len(pts) * 12].reshape(len(pts), 12, 3)
    last = np.zeros(len(pts), bool)
    last[starts[1:] - 1] = True
    seg = np.flatnonzero(~last)
    t = pts[seg + 1] - pts[seg]
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    edges = rings[seg + 1] - rings[seg]  # (segments, sides, 3)
    assert np.abs(np.cross(edges, t[:, None, :])).max() < 1e-9
    assert np.all(np.einsum("sij,sj->si", edges, t) > 0)


def test_horizontal_bends_keep_the_top_on_top():
    # A zig-zag in plan: the profile's top vertex (90 degrees) stays the highest of each ring,
    # and a duct bank's top face stays level.
    pts = np.array([[0, 0, 10], [20, 0, 10], [30, 15, 10], [50, 10, 10], [55, 40, 10]], float)
    mesh, _ = sweep(pts, np.array([0, 5]), circle_profile(16), np.array([[0.5, 0.5]]))
    rings = mesh.positions[:80].reshape(5, 16, 3)
    assert np.allclose(rings[:, 4, 2], 10.5) and np.allclose(rings[:, :, 2].max(axis=1), 10.5)
    box, _ = sweep(pts, np.array([0, 5]), rect_profile(), np.array([[0.6, 0.4]]))
    rings = box.positions[:40].reshape(5, 8, 3)
    assert np.allclose(rings[:, 1:4, 2], 10.4) and np.allclose(rings[:, [0, 5, 6, 7], 2], 9.6)


@pytest.mark.parametrize("profile", [circle_profile(8), circle_profile(16), rect_profile()])
def test_every_shape_is_watertight_and_outward(profile):
    rng = np.random.default_rng(7)
    pts, starts = _polylines(rng, 25)
    half = rng.uniform(0.1, 0.6, (25, 2))
    mesh, _ = sweep(pts, starts, profile, half)
    for f in range(25):
        tm = _feature_mesh(mesh, f)
        assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0


def test_straight_tube_volume_and_caps():
    r, length, k = 0.4, 25.0, 12
    mesh, _ = sweep(np.array([[0, 0, 0], [length, 0, 0]], float), np.array([0, 2]), circle_profile(k),
                    np.array([[r, r]]))
    tm = _feature_mesh(mesh, 0)
    assert tm.volume == pytest.approx(k / 2 * r * r * np.sin(2 * np.pi / k) * length, rel=1e-9)
    assert len(mesh.indices) == 2 * k + 2 * (k - 2)
    assert len(mesh.positions) == 2 * k  # the caps reuse the end rings
    # The caps face out along the pipe.
    tri = mesh.positions[mesh.indices[2 * k:]]
    facing = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ends = tri[:, :, 0].mean(axis=1)
    assert np.all(np.sign(facing[:, 0]) == np.where(ends > length / 2, 1, -1))
    assert np.allclose(facing[:, 1:], 0)


def test_one_call_for_many_polylines_equals_one_call_each():
    rng = np.random.default_rng(3)
    pts, starts = _polylines(rng, 30)
    half = rng.uniform(0.1, 0.6, (30, 2))
    together, _ = sweep(pts, starts, circle_profile(8), half)
    for i in range(30):
        alone, _ = sweep(pts[starts[i]:starts[i + 1]], np.array([0, starts[i + 1] - starts[i]]), circle_profile(8),
                         half[i:i + 1])
        mine = together.positions[together.feature == i]
        assert np.allclose(np.sort(mine, axis=0), np.sort(alone.positions, axis=0), atol=1e-9)


def test_repeated_and_degenerate_vertices():
    pts = np.array([[0, 0, 0], [0, 0, 0], [5, 0, 0], [5, 0, 0], [1, 1, 1], [1, 1, 1]], float)
    mesh, built = sweep(pts, np.array([0, 4, 6]), circle_profile(8), np.full((2, 2), 0.1))
    assert built.tolist() == [True, False]
    assert _feature_mesh(mesh, 0).is_watertight


def test_sides_grow_with_diameter():
    assert sides_for_diameter(np.array([25, 299, 300, 799, 800, 2000])).tolist() == [8, 8, 12, 12, 16, 16]


@pytest.mark.parametrize(("template", "volume"), [(BOX, 8.0), (OCTAHEDRON, 4.0 / 3.0)])
def test_fitting_templates_are_closed(template, volume):
    half = np.array([[0.5, 0.3, 0.2], [1.0, 1.0, 1.0]])
    mesh = instances(template, np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0]]), half, np.array([0, 1]))
    for f in range(2):
        tm = _feature_mesh(mesh, f)
        assert tm.is_watertight and tm.is_winding_consistent
        assert tm.volume == pytest.approx(volume * np.prod(half[f]))
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-6)
