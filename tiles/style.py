"""What the tiles show where: importance levels, appearance distances, colours, fitting shapes.

Importance levels (refinement ``ADD``): 0 trunk mains and sources, seen city-wide; 1 smaller
mains and duct banks; 2 services and fittings (valves, wells, hydrants, meters, customers'
service connections), seen close up. The coarsest level is bounded like a map's smallest
scale: it lives in the root cell and the :data:`COARSE_DEPTH` levels of cells below it (at most
21 tiles, the whole district on screen), sources first, then the largest pipes; the trunk
mains that do not fit there are drawn with the mains, from 3 km (see tiles/tiling.py). Colours
are the CJJ 61 utility colours (DOMAIN.md); abandoned pipes are grey, planned and proposed ones
translucent.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from twin.domain import UTILITIES

__all__ = [
    "TRUNK",
    "MAIN",
    "COARSE_DEPTH",
    "SOURCE_RANK",
    "node_rank",
    "COARSE_SIDES",
    "DETAIL",
    "APPEAR_DISTANCE_M",
    "MAX_CELL_M",
    "geometric_error_for_distance",
    "segment_level",
    "node_level",
    "pipe_material",
    "node_material",
    "NODE_SHAPES",
    "node_shape",
]

TRUNK, MAIN, DETAIL = 0, 1, 2
#: Sides of the circular pipes in a tile of trunk-level features only (the coarsest level,
#: drawn from 20 km): a square tube with smooth normals; finer tiles keep 8/12/16 sides.
COARSE_SIDES: Final = 4
#: Deepest quadtree level (below the root) that draws trunk-level features: the root and its
#: children and grandchildren, at most 21 tiles of ``CAPACITY`` features, whatever the size of the
#: district (the opening camera shows all of it, as a map's smallest scale shows a fixed number of
#: lines per screen). Deeper, trunk mains are drawn as mains (level 1, from 3 km).
COARSE_DEPTH: Final = 2
#: Rank (order within a level) of sources: above every pipe's, so they are always in the coarsest
#: tiles (a pipe's rank is its diameter or width in mm).
SOURCE_RANK: Final = 1e9
#: Distance (m) from which each level is drawn.
APPEAR_DISTANCE_M: Final = (20_000.0, 3_000.0, 600.0)
#: Largest quadtree cell (edge, m) that may hold each level, so that a level's tiles are
#: about as large as the distance it is seen from.
MAX_CELL_M: Final = (float("inf"), 4_000.0, 800.0)
#: Trunk mains: circular pipes from this diameter, boxes from this width (mm).
TRUNK_DIAMETER_MM: Final = 600.0
TRUNK_WIDTH_MM: Final = 1500.0
#: Services: circular pipes below this diameter (mm).
SERVICE_DIAMETER_MM: Final = 100.0

# Screen-space error CesiumJS refines at (its default maximumScreenSpaceError) and the view it
# is tuned for (1080 px high, 60 degree vertical field of view).
_SSE_PX: Final = 16.0
_VIEW_PX: Final = 1080.0
_SSE_DENOMINATOR: Final = 2 * np.tan(np.radians(30.0))


def geometric_error_for_distance(distance_m: float) -> float:
    """Geometric error (m) of a tile whose children should be refined into from ``distance_m``.

    CesiumJS refines when ``error * height_px / (distance * 2 tan(fov / 2))`` exceeds the
    maximum screen-space error.
    """
    return float(distance_m * _SSE_PX * _SSE_DENOMINATOR / _VIEW_PX)


def segment_level(shape: np.ndarray, diameter_mm: np.ndarray, width_mm: np.ndarray) -> np.ndarray:
    """Importance level of pipe segments: trunk, main or service."""
    circ = np.asarray(shape) == "circular"
    d = np.nan_to_num(np.asarray(diameter_mm, dtype=float))
    w = np.nan_to_num(np.asarray(width_mm, dtype=float))
    trunk = np.where(circ, d >= TRUNK_DIAMETER_MM, w >= TRUNK_WIDTH_MM)
    service = circ & (d < SERVICE_DIAMETER_MM)
    return np.where(trunk, TRUNK, np.where(service, DETAIL, MAIN)).astype(np.int8)


def node_level(is_source: np.ndarray) -> np.ndarray:
    """Importance level of drawn nodes: sources with the trunk mains, the rest close up."""
    return np.where(np.asarray(is_source, dtype=bool), TRUNK, DETAIL).astype(np.int8)


def node_rank(is_source: np.ndarray) -> np.ndarray:
    """Rank of drawn nodes within their level: sources above every pipe, the rest 0."""
    return np.where(np.asarray(is_source, dtype=bool), SOURCE_RANK, 0.0)


def _linear(rgb: tuple[int, int, int]) -> list[float]:
    """sRGB 0-255 to the linear factors glTF's baseColorFactor takes."""
    c = np.asarray(rgb, dtype=float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return [round(float(v), 5) for v in lin]


def _rgb(utility: str) -> tuple[int, int, int]:
    u = UTILITIES.get(utility) or UTILITIES["QT"]
    return u.rgb


ABANDONED_RGB: Final = (150, 150, 150)
_ALPHA: Final = {"active": 1.0, "abandoned": 1.0, "planned": 0.7, "proposed": 0.45}


def pipe_material(utility: str, status: str) -> dict:
    """glTF material of pipes of one utility and status."""
    rgb = ABANDONED_RGB if status == "abandoned" else _rgb(utility)
    alpha = _ALPHA.get(status, 1.0)
    m = {"name": f"pipe {utility} {status}",
         "pbrMetallicRoughness": {"baseColorFactor": _linear(rgb) + [alpha], "metallicFactor": 0.0,
                                  "roughnessFactor": 0.6}}
    if alpha < 1.0:
        m["alphaMode"] = "BLEND"
    return m


def node_material(utility: str) -> dict:
    """glTF material of a utility's fittings: its colour lightened towards concrete grey."""
    rgb = np.asarray(_rgb(utility), dtype=float) * 0.6 + np.array([200.0, 200.0, 200.0]) * 0.4
    return {"name": f"fitting {utility}",
            "pbrMetallicRoughness": {"baseColorFactor": _linear(tuple(rgb)) + [1.0],
                                     "metallicFactor": 0.0, "roughnessFactor": 0.8}}


#: Shape of each node kind: (shape, half sizes in m, placement).
#: shapes: ``shaft`` (cylinder ground -> well bottom), ``vault`` (box ground -> well bottom),
#: ``post`` (cylinder pipe -> above ground), ``riser`` (box pipe -> above ground),
#: ``station`` (big cylinder), ``octahedron``/``box`` at the pipe, ``cabinet`` (box on the ground).
NODE_SHAPES: Final[dict[str, tuple[str, tuple[float, float, float]]]] = {
    "manhole": ("shaft", (0.5, 0.5, 0.0)),
    "valve_chamber": ("shaft", (0.7, 0.7, 0.0)),
    "cable_manhole": ("vault", (0.8, 0.6, 0.0)),
    "handhole": ("vault", (0.35, 0.35, 0.0)),
    "gully": ("vault", (0.3, 0.2, 0.0)),
    "hydrant": ("post", (0.1, 0.1, 0.8)),
    "service_entry": ("riser", (0.12, 0.12, 0.4)),
    "water_plant": ("station", (2.5, 2.5, 3.0)),
    "water_source": ("station", (2.5, 2.5, 3.0)),
    "booster_station": ("station", (2.0, 2.0, 2.5)),
    "gas_station": ("station", (2.0, 2.0, 2.5)),
    "heat_source": ("station", (2.0, 2.0, 2.5)),
    "tank": ("station", (3.0, 3.0, 4.0)),
    "valve": ("octahedron", (0.25, 0.25, 0.25)),
    "air_valve": ("octahedron", (0.18, 0.18, 0.3)),
    "drain_valve": ("octahedron", (0.18, 0.18, 0.3)),
    "meter": ("box", (0.25, 0.18, 0.18)),
    "outfall": ("box", (0.5, 0.5, 0.5)),
    "regulator": ("cabinet", (0.6, 0.4, 0.6)),
    "transformer": ("cabinet", (1.0, 0.8, 1.0)),
}
_DEFAULT_SHAPE: Final = ("box", (0.2, 0.2, 0.2))


def node_shape(kinds: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(shape names, half sizes (n, 3)) of node kinds."""
    codes, uniques = pd.factorize(pd.Series(kinds, dtype=object).fillna(""))
    found = [NODE_SHAPES.get(k, _DEFAULT_SHAPE) for k in uniques]
    shapes = np.array([f[0] for f in found] + [""], dtype=object)[codes]
    half = np.array([f[1] for f in found] + [(0.0, 0.0, 0.0)], dtype=float).reshape(-1, 3)[codes]
    return shapes, half
