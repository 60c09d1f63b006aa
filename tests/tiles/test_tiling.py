"""Quadtree tiling: capacity, one tile per feature, importance levels, geometric errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiles.conftest import tileset_tiles
from tiles.style import (
    APPEAR_DISTANCE_M,
    DETAIL,
    MAIN,
    MAX_CELL_M,
    TRUNK,
    geometric_error_for_distance,
)
from tiles.tiling import build_quadtree, tileset_json


def _district(n, seed=0):
    rng = np.random.default_rng(seed)
    # Dense downtown plus sparse outskirts over 6 km.
    x = np.concatenate([rng.normal(3000, 300, n // 2), rng.uniform(0, 6000, n - n // 2)])
    y = np.concatenate([rng.normal(3000, 300, n // 2), rng.uniform(0, 6000, n - n // 2)])
    level = rng.choice([TRUNK, MAIN, DETAIL], n, p=[0.05, 0.35, 0.6]).astype(np.int8)
    rank = rng.uniform(0, 1000, n)
    key = rng.permutation(n).astype(np.uint64)
    return x, y, level, rank, key


def test_every_feature_in_one_tile_within_capacity_and_cell():
    x, y, level, rank, key = _district(30_000)
    tree = build_quadtree(x, y, level, rank, tiebreak=key, capacity=500)
    counts = np.bincount(tree.tile_of, minlength=len(tree.tiles))
    assert (tree.tile_of >= 0).all()
    assert sum(len(t.features) for t in tree.tiles) == len(x)
    assert counts.max() <= 500
    for i, t in enumerate(tree.tiles):
        assert np.array_equal(np.sort(t.features), np.flatnonzero(tree.tile_of == i))
        cell = tree.size / (1 << t.level)
        x0, y0 = tree.origin[0] + t.x * cell, tree.origin[1] + t.y * cell
        fx, fy = x[t.features], y[t.features]
        assert np.all((fx >= x0 - 1e-6) & (fx <= x0 + cell + 1e-6) & (fy >= y0 - 1e-6) & (fy <= y0 + cell + 1e-6))
        # A level only sits in cells no larger than its limit.
        assert np.all(np.asarray(MAX_CELL_M)[level[t.features]] >= cell)
        for c in t.children:
            assert tree.tiles[c].parent == i and tree.tiles[c].level == t.level + 1


def test_important_features_go_to_coarser_tiles():
    x, y, level, rank, key = _district(30_000, seed=1)
    tree = build_quadtree(x, y, level, rank, tiebreak=key, capacity=500)
    depth = np.array([t.level for t in tree.tiles])[tree.tile_of]
    assert np.median(depth[level == TRUNK]) < np.median(depth[level == MAIN]) < np.median(depth[level == DETAIL])
    # Below a full tile, no feature that could have been kept there outranks one that was.
    checked = 0
    for t in tree.tiles:
        if len(t.features) == 500 and t.children:
            below = np.concatenate([_subtree(tree, c) for c in t.children])
            cell = tree.size / (1 << t.level)
            could = below[np.asarray(MAX_CELL_M)[level[below]] >= cell]
            worst_kept = max(zip(level[t.features], -rank[t.features], strict=True))
            assert all((lv, -r) >= worst_kept for lv, r in zip(level[could], rank[could], strict=True))
            checked += 1
    assert checked > 0


def _subtree(tree, i):
    out = [tree.tiles[i].features]
    for c in tree.tiles[i].children:
        out.append(_subtree(tree, c))
    return np.concatenate(out)


def test_tiling_does_not_depend_on_input_order():
    x, y, level, rank, key = _district(8_000, seed=2)
    a = build_quadtree(x, y, level, rank, tiebreak=key, capacity=300)
    p = np.random.default_rng(5).permutation(len(x))
    b = build_quadtree(x[p], y[p], level[p], rank[p], tiebreak=key[p], capacity=300)
    keys_a = {k: a.tiles[t].key for k, t in zip(key, a.tile_of, strict=True)}
    keys_b = {k: b.tiles[t].key for k, t in zip(key[p], b.tile_of, strict=True)}
    assert keys_a == keys_b


def test_geometric_error_matches_cesium_refinement():
    # CesiumJS: sse = error * height / (distance * 2 tan(fov / 2)); refine above 16 px.
    for d in APPEAR_DISTANCE_M:
        e = geometric_error_for_distance(d)
        assert e * 1080 / (d * 2 * np.tan(np.radians(30))) == pytest.approx(16.0)


def test_tileset_errors_never_grow_downwards():
    x, y, level, rank, key = _district(20_000, seed=3)
    tree = build_quadtree(x, y, level, rank, tiebreak=key, capacity=400)
    content = {}
    for i, t in enumerate(tree.tiles):
        if len(t.features):
            lo = np.array([x[t.features].min(), y[t.features].min(), -3.0])
            hi = np.array([x[t.features].max(), y[t.features].max(), 0.0])
            content[i] = {"min": lo, "max": hi}
    doc = tileset_json(tree, content, level, np.eye(4))
    errors = {geometric_error_for_distance(d) for d in APPEAR_DISTANCE_M}
    n_content = 0
    for tile, parent in tileset_tiles(doc):
        if parent is not None:
            assert tile["geometricError"] <= parent["geometricError"]
        if tile.get("children"):
            assert any(abs(tile["geometricError"] - e) < 1e-3 for e in errors)
        else:
            assert tile["geometricError"] == 0
        n_content += "content" in tile
    assert n_content == len(content)
    assert doc["geometricError"] >= doc["root"]["geometricError"]
