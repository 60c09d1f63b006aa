"""Quadtree tiling: capacity, one tile per feature, importance levels, geometric errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiles.conftest import tileset_tiles
from tiles.style import (
    APPEAR_DISTANCE_M,
    COARSE_DEPTH,
    DETAIL,
    MAIN,
    MAX_CELL_M,
    SOURCE_RANK,
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


def _city(edge_m, n, seed):
    """A city of ``edge_m``: trunk mains (a fifth, DN600-1200) on a grid of streets, mains and
    services around them, and a few sources."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, edge_m, n), rng.uniform(0, edge_m, n)
    level = rng.choice([TRUNK, MAIN, DETAIL], n, p=[0.2, 0.3, 0.5]).astype(np.int8)
    rank = np.where(level == TRUNK, rng.choice([600.0, 800.0, 1000.0, 1200.0], n), rng.uniform(20, 500, n))
    sources = rng.choice(n, 12, replace=False)
    level[sources], rank[sources] = TRUNK, SOURCE_RANK
    return x, y, level, rank, rng.permutation(n).astype(np.uint64), sources


def _first_view(tree, drawn):
    """Tiles drawn from 20 km (a feature drawn at the coarsest level) and their features."""
    least = np.full(len(tree.tiles), 99)
    np.minimum.at(least, tree.tile_of, drawn)
    tiles = np.flatnonzero(least == TRUNK)
    return tiles, int(np.isin(tree.tile_of, tiles).sum())


def test_the_coarsest_level_is_bounded_whatever_the_size_of_the_district():
    capacity = 60
    bound = sum(4 ** d for d in range(COARSE_DEPTH + 1))  # 21 tiles
    views = []
    for edge_m, n in ((12_000.0, 12_000), (48_000.0, 192_000)):  # x16 the network over x16 the area
        x, y, level, rank, key, sources = _city(edge_m, n, seed=int(edge_m))
        tree = build_quadtree(x, y, level, rank, tiebreak=key, capacity=capacity)
        drawn = tree.drawn_level
        depth = np.array([t.level for t in tree.tiles])[tree.tile_of]
        # Every feature in exactly one tile: the union of all levels is the network.
        assert (tree.tile_of >= 0).all()
        assert np.array_equal(np.sort(np.concatenate([t.features for t in tree.tiles])), np.arange(n))
        # Drawn at its level in the coarse cells, as a main below them; never dropped, never coarser.
        assert np.array_equal(drawn, np.where(depth > COARSE_DEPTH, np.maximum(level, MAIN), level))
        assert (drawn[level == TRUNK] <= MAIN).all() and (drawn[level != TRUNK] == level[level != TRUNK]).all()
        assert (drawn[sources] == TRUNK).all()  # sources always in the first view
        tiles, features = _first_view(tree, drawn)
        assert len(tiles) <= bound and features <= bound * capacity
        views.append((features, int((drawn == TRUNK).sum()), int((level == TRUNK).sum())))
        # The tileset: a tile appears from the distance of its least drawn level.
        content = {i: {"min": np.zeros(3), "max": np.ones(3)} for i, t in enumerate(tree.tiles) if len(t.features)}
        doc = tileset_json(tree, content, drawn, np.eye(4))
        far = geometric_error_for_distance(APPEAR_DISTANCE_M[TRUNK])
        near = geometric_error_for_distance(APPEAR_DISTANCE_M[MAIN])
        deep = [t for t, _ in tileset_tiles(doc) if "content" in t and int(t["content"]["uri"].split("/")[1]) > COARSE_DEPTH]
        assert deep and all(t["geometricError"] <= near + 1e-3 for t in deep)
        assert doc["root"]["geometricError"] == pytest.approx(far, abs=1e-3)
    (small_view, small_top, small_trunk), (big_view, big_top, big_trunk) = views
    assert big_trunk > 10 * small_trunk  # the trunk mains grow with the district...
    assert big_view <= bound * capacity and big_top <= bound * capacity  # ...the first view does not
    assert small_top < small_trunk  # both districts have trunk mains drawn as mains
