"""One sweep for a whole tile: several profiles in one call, the straight-polyline path."""

from __future__ import annotations

import numpy as np
import trimesh

from tiles.mesh import circle_profile, rect_profile, sweep

PROFILES = (rect_profile(), circle_profile(4), circle_profile(8), circle_profile(12), circle_profile(16))


def _segments(rng, count):
    """Straight two-vertex polylines (survey segments), a few vertical."""
    a = rng.uniform(-300, 300, (count, 3))
    b = a + rng.uniform(-20, 20, (count, 3))
    b[::7, :2] = a[::7, :2]  # vertical: a shaft
    return np.stack([a, b], axis=1).reshape(-1, 3), np.arange(0, 2 * count + 1, 2)


def test_many_profiles_in_one_call_equal_one_call_per_profile():
    rng = np.random.default_rng(5)
    pts, starts = _segments(rng, 40)
    half = rng.uniform(0.05, 0.8, (40, 2))
    which = np.sort(rng.integers(0, len(PROFILES), 40))  # runs of one profile
    together, built = sweep(pts, starts, PROFILES, half, feature=np.arange(40) + 100, profile_of=which)
    assert built.all()
    for k, profile in enumerate(PROFILES):
        rows = np.flatnonzero(which == k)
        if len(rows) == 0:
            continue
        sub = np.concatenate([pts[2 * r:2 * r + 2] for r in rows])
        alone, _ = sweep(sub, np.arange(0, 2 * len(rows) + 1, 2), profile, half[rows], feature=rows + 100)
        mine = np.isin(together.feature, rows + 100)
        assert np.array_equal(together.feature[mine], alone.feature)
        assert np.allclose(together.positions[mine], alone.positions, atol=1e-12)
        assert np.allclose(together.normals[mine], alone.normals, atol=1e-6)
    for f in range(40):  # each feature closed and outward, whichever run it is in
        sel = together.feature == f + 100
        idx = np.flatnonzero(sel)
        remap = -np.ones(len(together.positions), int)
        remap[idx] = np.arange(len(idx))
        faces = remap[together.indices[np.all(sel[together.indices], axis=1)]]
        tm = trimesh.Trimesh(together.positions[idx], faces)
        assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0


def test_straight_path_equals_the_mitred_path():
    # The same straight segments, swept alone (the straight path) and beside one bent polyline
    # (the general path, with parallel transport and mitres): the same rings and normals.
    rng = np.random.default_rng(9)
    pts, starts = _segments(rng, 30)
    half = rng.uniform(0.1, 0.5, (30, 2))
    which = np.repeat([0, 3], 15)
    straight, _ = sweep(pts, starts, PROFILES, half, profile_of=which)
    bent = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 1]], float)
    both, _ = sweep(np.vstack([pts, bent]), np.append(starts, len(pts) + 3), PROFILES,
                    np.vstack([half, [[0.3, 0.3]]]), profile_of=np.append(which, 3))
    n = len(straight.positions)
    assert np.array_equal(both.feature[:n], straight.feature)
    assert np.allclose(both.positions[:n], straight.positions, atol=1e-9)
    assert np.allclose(both.normals[:n], straight.normals, atol=1e-6)
    assert np.allclose(np.linalg.norm(straight.normals, axis=1), 1.0, atol=1e-6)
    # Same triangles (the paths order them differently): compare as sets of sorted corners.
    tri_s = {tuple(sorted(t)) for t in straight.indices.tolist()}
    tri_b = {tuple(sorted(t)) for t in both.indices.tolist() if max(t) < n}
    assert tri_s == tri_b
