"""Quadtree tiling with importance levels, and the explicit ``tileset.json``.

Every feature belongs to exactly one tile, chosen by its anchor (a pipe's bounding-box centre,
a node's position). Walking the quadtree from the root, a cell takes up to ``capacity`` of the
features falling in it whose level may appear at that cell size (trunk first, larger pipes
first); the rest go down to its four children. Below :data:`~tiles.style.COARSE_DEPTH`, trunk
features count as mains (level 1): the coarsest level holds at most 21 tiles of ``capacity``
features, and the trunk mains beyond them are drawn from where the mains are (their
``drawn_level``). Refinement is ``ADD``: a tile's content stays
drawn while its children add detail. A tile's geometric error is the largest error needed for
its children to be refined into from the distance their content should appear at; leaves have 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tiles.style import (
    APPEAR_DISTANCE_M,
    COARSE_DEPTH,
    MAIN,
    MAX_CELL_M,
    geometric_error_for_distance,
)

__all__ = ["Tile", "Quadtree", "build_quadtree", "tileset_json", "box_volume", "CAPACITY", "MAX_DEPTH"]

#: Most features in one tile.
CAPACITY = 2000
#: Deepest quadtree level (a cell of a 10 km district is then under a metre).
MAX_DEPTH = 16


@dataclass
class Tile:
    """A quadtree cell: its address, the features whose content it holds and its children."""

    level: int
    x: int
    y: int
    features: np.ndarray  # indices into the feature arrays
    children: list[int] = field(default_factory=list)
    parent: int = -1

    @property
    def key(self) -> str:
        """Address ``level/x/y``; also the content's path without extension."""
        return f"{self.level}/{self.x}/{self.y}"


@dataclass
class Quadtree:
    """Tiles (root first), the tile of each feature and the level it is drawn at."""

    tiles: list[Tile]
    tile_of: np.ndarray  # (n,) tile index per feature
    origin: tuple[float, float]  # lower-left corner of the root cell (twin CRS)
    size: float  # root cell edge (m)
    drawn_level: np.ndarray  # (n,) the importance level a feature is drawn at (int8)


def build_quadtree(x: np.ndarray, y: np.ndarray, level: np.ndarray, rank: np.ndarray,
                   tiebreak: np.ndarray | None = None, origin: tuple[float, float] | None = None,
                   size: float | None = None, capacity: int = CAPACITY,
                   coarse_depth: int = COARSE_DEPTH) -> Quadtree:
    """Tile features at anchors (x, y) with importance ``level``; ``rank`` orders within a level.

    ``tiebreak`` (e.g. a hash of the ids) makes the order, hence the tiles, reproducible.

    ``origin`` and ``size`` fix the root cell (kept between incremental builds so the tiles
    stay where they were); by default it is the square around the anchors. Cells deeper than
    ``coarse_depth`` take trunk features (level 0) as mains.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if origin is None or size is None:
        if n:
            x0, y0 = float(x.min()), float(y.min())
            size = max(float(x.max()) - x0, float(y.max()) - y0, 1.0) * 1.0001 + 1e-3
        else:
            x0, y0, size = 0.0, 0.0, 1.0
        origin = (x0, y0)
    # Importance order: level, then rank (higher first), both fixed for the whole walk.
    keys = (-np.asarray(rank, dtype=float), np.asarray(level))
    order = np.lexsort(keys if tiebreak is None else (np.asarray(tiebreak),) + keys)
    lv = np.asarray(level)[order]
    deep_lv = np.maximum(lv, MAIN)
    fx = (x[order] - origin[0]) / size
    fy = (y[order] - origin[1]) / size
    max_cell = np.asarray(MAX_CELL_M)

    tiles: list[Tile] = []
    tile_of = np.full(n, -1, dtype=np.int64)
    # Each pending cell holds positions into ``order`` (kept sorted, so importance order holds).
    pending: list[tuple[int, int, int, int, np.ndarray]] = [(0, 0, 0, -1, np.arange(n))]
    while pending:
        d, cx, cy, parent, members = pending.pop()
        cell = size / (1 << d)
        eligible = max_cell[(lv if d <= coarse_depth else deep_lv)[members]] >= cell
        if d >= MAX_DEPTH:
            eligible[:] = True
        taken = members[eligible][:capacity] if d < MAX_DEPTH else members
        rest = np.setdiff1d(members, taken, assume_unique=True) if len(taken) < len(members) else taken[:0]
        index = len(tiles)
        tiles.append(Tile(d, cx, cy, order[taken], parent=parent))
        tile_of[order[taken]] = index
        if parent >= 0:
            tiles[parent].children.append(index)
        if len(rest):
            scale = 1 << (d + 1)
            qx = np.clip((fx[rest] * scale).astype(np.int64) - 2 * cx, 0, 1)
            qy = np.clip((fy[rest] * scale).astype(np.int64) - 2 * cy, 0, 1)
            quadrant = qx + 2 * qy
            for q in (3, 2, 1, 0):  # popped in 0..3 order
                sub = rest[quadrant == q]
                if len(sub):
                    pending.append((d + 1, 2 * cx + (q & 1), 2 * cy + (q >> 1), index, sub))
    depth = np.array([t.level for t in tiles], dtype=np.int64)
    raw = np.asarray(level)
    drawn = np.where(depth[tile_of] > coarse_depth, np.maximum(raw, MAIN), raw).astype(np.int8)
    return Quadtree(tiles, tile_of, (float(origin[0]), float(origin[1])), float(size), drawn)


def box_volume(lo: np.ndarray, hi: np.ndarray) -> list[float]:
    """A 3D Tiles ``box`` (centre, half axes) around the axis-aligned box [lo, hi]."""
    c = (lo + hi) / 2
    h = np.maximum((hi - lo) / 2, 0.005)  # never flat
    return [float(v) for v in (c[0], c[1], c[2], h[0], 0, 0, 0, h[1], 0, 0, 0, h[2])]


def tileset_json(tree: Quadtree, content: dict[int, dict], feature_level: np.ndarray,
                 root_transform: np.ndarray, uri: str = "t/{key}.glb") -> dict:
    """The tileset document; ``feature_level``: the level each feature is drawn at
    (``tree.drawn_level``), which sets the distance its tile appears from.

    ``content`` maps a tile index to ``{"min": [...], "max": [...]}`` (its content's box in the
    local frame) for every tile with content; tiles with neither content nor content below them
    are left out.
    """
    tiles = tree.tiles
    n = len(tiles)
    lo = np.full((n, 3), np.inf)
    hi = np.full((n, 3), -np.inf)
    need = np.zeros(n)  # geometric error the parent needs for this tile to appear in time
    error = np.zeros(n)
    appear = np.array([geometric_error_for_distance(d) for d in APPEAR_DISTANCE_M])
    # Children come after their parent: walk backwards to fold children into parents.
    for i in range(n - 1, -1, -1):
        t = tiles[i]
        if i in content:
            lo[i] = np.minimum(lo[i], content[i]["min"])
            hi[i] = np.maximum(hi[i], content[i]["max"])
            need[i] = appear[int(feature_level[t.features].min())] if len(t.features) else 0.0
        kids = [c for c in t.children if np.isfinite(lo[c, 0])]
        if kids:
            lo[i] = np.minimum(lo[i], lo[kids].min(axis=0))
            hi[i] = np.maximum(hi[i], hi[kids].max(axis=0))
            error[i] = max(float(need[kids].max()), float(error[kids].max()))
        need[i] = max(need[i], error[i])

    def node(i: int) -> dict:
        t = tiles[i]
        out: dict = {"boundingVolume": {"box": box_volume(lo[i], hi[i])}, "geometricError": round(float(error[i]), 3),
                     "refine": "ADD"}
        if i in content:
            out["content"] = {"uri": uri.format(key=t.key),
                              "boundingVolume": {"box": box_volume(np.asarray(content[i]["min"]),
                                                             np.asarray(content[i]["max"]))}}
        kids = [node(c) for c in t.children if np.isfinite(lo[c, 0])]
        if kids:
            out["children"] = kids
        return out

    if not n or not np.isfinite(lo[0, 0]):
        root = {"boundingVolume": {"box": [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]}, "geometricError": 0,
                "refine": "ADD"}
    else:
        root = node(0)
    root["transform"] = [float(v) for v in np.asarray(root_transform).T.reshape(-1)]
    return {
        "asset": {"version": "1.1", "generator": "PipeTwin tiles"},
        "geometricError": round(float(max(appear[0], need[0] if n else 0.0)), 3),
        "root": root,
    }
