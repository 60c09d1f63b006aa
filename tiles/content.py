"""One tile's content: the pipes and fittings of the tile as a GLB with feature metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tiles.glb import QUANT_MAX, Primitive, PropertyColumn, PropertyTable, encode_glb
from tiles.mesh import (
    BOX,
    OCTAHEDRON,
    Mesh,
    bounds,
    circle_profile,
    concat,
    instances,
    rect_profile,
    sides_for_diameter,
    sweep,
)
from tiles.placement import Frame, gltf_node_matrix
from tiles.source import ewkb_linestrings
from tiles.style import (
    COARSE_SIDES,
    TRUNK,
    node_level,
    node_material,
    node_shape,
    pipe_material,
    segment_level,
)
from twin.schema import columns, names

__all__ = ["TileContent", "build_content", "is_coarse", "pipe_table", "node_table", "PIPE_PROPERTIES",
           "NODE_PROPERTIES"]

#: Properties of the ``pipe`` and ``node`` metadata classes (the same ``id`` as the API's).
PIPE_PROPERTIES = (*names("segment", reads="tiles"), "size", "depth_m")  # the last two derived
NODE_PROPERTIES = ("id", "kind", "utility", "name")
#: depth_m of a pipe whose depth was not surveyed.
NO_DEPTH = -1.0
#: Pipe height (below ground, m) assumed for a fitting with no pipe and no depth.
DEFAULT_DEPTH_M = 1.2

_PROFILES = {s: circle_profile(s) for s in (COARSE_SIDES, 8, 12, 16)}
_RECT = rect_profile()


@dataclass
class TileContent:
    """A built tile: its GLB and what the tileset and the report need to know about it."""

    glb: bytes
    box_min: np.ndarray  # ENU
    box_max: np.ndarray
    triangles: int
    features: int


def pipe_table(seg: pd.DataFrame) -> PropertyTable:
    """The ``pipe`` property table of segments (one row each, in order; see read_segments)."""
    depth = seg["depth_m"].to_numpy(dtype=float)
    cols = [PropertyColumn(c.name, "STRING", seg[c.name], description=c.label)
            for c in columns("segment", reads="tiles")]
    cols[0].description = "segment id (API)"
    cols += [
        PropertyColumn("size", "STRING", seg["size"], description="diameter (DN, mm) or W×H (mm)"),
        PropertyColumn("depth_m", "FLOAT32", np.where(np.isfinite(depth), depth, NO_DEPTH), no_data=NO_DEPTH,
                       description="surveyed depth (m), mean of both ends"),
    ]
    return PropertyTable("pipe", "Pipe segment (管段)", cols)


def node_table(nodes: pd.DataFrame) -> PropertyTable:
    """The ``node`` property table of drawn nodes (one row each, in order)."""
    cols = [PropertyColumn(c, "STRING", nodes[c]) for c in NODE_PROPERTIES]
    cols[0].description = "node id (API)"
    return PropertyTable("node", "Pipe point with an appurtenance, source or service connection", cols)


def is_coarse(seg: pd.DataFrame, nodes: pd.DataFrame) -> bool:
    """Whether a tile holds trunk-level features only: the coarsest level, seen from afar
    (its circular pipes get :data:`~tiles.style.COARSE_SIDES` sides)."""
    if seg.empty:
        return False
    trunk = segment_level(seg["shape"].to_numpy(), seg["diameter_mm"].to_numpy(float),
                          seg["width_mm"].to_numpy(float)) == TRUNK
    source = nodes["is_source"] if "is_source" in nodes else pd.Series(np.zeros(len(nodes), bool))
    return bool(trunk.all() and (node_level(source.fillna(False).to_numpy(bool)) == TRUNK).all())


def _pipe_meshes(seg: pd.DataFrame, group: np.ndarray, frame: Frame, coarse: bool = False) -> list[tuple[int, Mesh]]:
    """The pipes' mesh of each group (``group``: a small integer per segment, from 0), in order.

    Each group's pipes are swept one profile (number of sides) after the other; a mesh per
    group directly, rather than one for the tile split afterwards (a copy of every vertex).
    """
    if seg.empty:
        return []
    coords, line = ewkb_linestrings(seg["geom"])
    enu = frame.to_enu(coords[:, 0], coords[:, 1], coords[:, 2])
    n = len(seg)
    per_line = np.bincount(line, minlength=n)
    circ = seg["shape"].to_numpy() == "circular"
    d = seg["diameter_mm"].to_numpy(dtype=float)
    sides = np.where(circ, COARSE_SIDES if coarse else sides_for_diameter(np.nan_to_num(d)), 0)
    r = np.nan_to_num(d) / 2000.0
    half = np.where(circ[:, None], np.column_stack([r, r]),
                    np.column_stack([seg["width_mm"].to_numpy(float), seg["height_mm"].to_numpy(float)])
                    / 2000.0)
    out = []
    for g in np.unique(group):
        meshes = []
        in_group = group == g
        for k in np.unique(sides[in_group]):
            take = in_group & (sides == k)
            rows = np.flatnonzero(take)
            starts = np.concatenate([[0], np.cumsum(per_line[rows])])
            mesh, _ = sweep(enu[take[line]], starts, _RECT if k == 0 else _PROFILES[int(k)], half[rows],
                            feature=rows)
            meshes.append(mesh)
        mesh = concat(meshes)
        if len(mesh.positions):
            out.append((int(g), mesh))
    return out


def _node_heights(nodes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ground, pipe centreline, well bottom, pipe diameter m) per node."""
    ground = nodes["ground_z"].to_numpy(float)
    depth = nodes["depth_m"].to_numpy(float)
    pipe = nodes["pipe_z"].to_numpy(float)
    pipe = np.where(np.isfinite(pipe), pipe, ground - np.where(np.isfinite(depth), depth, DEFAULT_DEPTH_M))
    pipe_d = np.nan_to_num(nodes["pipe_d_mm"].to_numpy(float)) / 1000.0
    bottom = nodes["well_bottom_z"].to_numpy(float)
    well_depth = nodes["well_depth_m"].to_numpy(float)
    bottom = np.where(np.isfinite(bottom), bottom, ground - well_depth)
    bottom = np.where(np.isfinite(bottom), bottom, pipe - pipe_d / 2 - 0.3)
    bottom = np.minimum(bottom, ground - 0.3)
    return ground, pipe, bottom, pipe_d


def _node_meshes(nodes: pd.DataFrame, group: np.ndarray, frame: Frame) -> list[tuple[int, Mesh]]:
    """The fittings' mesh of each group (``group``: a small integer per node, from 0), in order."""
    if nodes.empty:
        return []
    ground, pipe, bottom, pipe_d = _node_heights(nodes)
    shapes, half = node_shape(nodes["kind"])
    x, y = nodes["x"].to_numpy(float), nodes["y"].to_numpy(float)
    enu = frame.to_enu(x, y, pipe)  # at the pipe: the fittings' centres
    # Vertical shapes: (bottom, top) heights per shape.
    vertical = {
        "shaft": (bottom, ground, 12), "vault": (bottom, ground, 0),
        "post": (pipe, ground + half[:, 2], 8), "riser": (pipe, ground + half[:, 2], 0),
        "station": (np.minimum(pipe, ground - 1.0) - 0.5, ground + half[:, 2], 16),
    }
    out = []
    for g in np.unique(group):
        meshes = []
        in_group = group == g
        for name, (lo, hi, sides) in vertical.items():
            rows = np.flatnonzero(in_group & (shapes == name))
            if len(rows) == 0:
                continue
            zs = np.column_stack([lo[rows], np.maximum(hi[rows], lo[rows] + 0.1)]).reshape(-1)
            pts = frame.to_enu(np.repeat(x[rows], 2), np.repeat(y[rows], 2), zs)
            starts = np.arange(0, 2 * len(rows) + 1, 2)
            mesh, _ = sweep(pts, starts, _RECT if sides == 0 else _PROFILES[sides], half[rows, :2],
                            feature=rows)
            meshes.append(mesh)
        # Fittings at the pipe (valves enclose their pipe) and cabinets on the ground.
        for name, template in (("octahedron", OCTAHEDRON), ("box", BOX), ("cabinet", BOX)):
            rows = np.flatnonzero(in_group & (shapes == name))
            if len(rows) == 0:
                continue
            h = half[rows].copy()
            if name == "cabinet":
                centres = frame.to_enu(x[rows], y[rows], ground[rows] + h[:, 2])
            else:
                centres = enu[rows]
                h = np.maximum(h, (pipe_d[rows] * 0.7)[:, None])
            meshes.append(instances(template, centres, h, rows))
        mesh = concat(meshes)
        if len(mesh.positions):
            out.append((int(g), mesh))
    return out


def build_content(seg: pd.DataFrame, nodes: pd.DataFrame, frame: Frame) -> TileContent:
    """Mesh, colour and describe one tile's segments and nodes; the GLB and its box."""
    seg = seg.reset_index(drop=True)
    nodes = nodes.reset_index(drop=True)
    materials: list[dict] = []
    primitives_src: list[tuple[int, Mesh, int]] = []  # (material, mesh, table)
    tables: list[PropertyTable] = []

    if len(seg):
        keys = seg["utility"].astype(str) + "|" + seg["status"].astype(str)
        codes, uniques = pd.factorize(keys)
        table_index = len(tables)
        for g, mesh in _pipe_meshes(seg, codes, frame, coarse=is_coarse(seg, nodes)):
            utility, status = uniques[g].split("|")
            materials.append(pipe_material(utility, status))
            primitives_src.append((len(materials) - 1, mesh, table_index))
        if len(primitives_src):
            tables.append(pipe_table(seg))
    if len(nodes):
        codes, uniques = pd.factorize(nodes["utility"].astype(str))
        table_index = len(tables)
        meshes = _node_meshes(nodes, codes, frame)
        for g, mesh in meshes:
            materials.append(node_material(uniques[g]))
            primitives_src.append((len(materials) - 1, mesh, table_index))
        if meshes:
            tables.append(node_table(nodes))
    if not primitives_src:
        raise ValueError("a tile with no geometry")

    lo, hi = bounds(np.concatenate([m.positions for _, m, _ in primitives_src]))
    centre = (lo + hi) / 2
    prims = [Primitive((m.positions - centre).astype(np.float32), m.normals, m.indices, m.feature,
                       mat, table) for mat, m, table in primitives_src]
    glb = encode_glb(prims, materials, tables, gltf_node_matrix(centre))
    triangles = sum(m.triangle_count for _, m, _ in primitives_src)
    # Quantized positions may lie half a grid step outside the exact box.
    step = max(float((hi - lo).max()) / 2, 1e-3) / QUANT_MAX
    return TileContent(glb, lo - step, hi + step, triangles, len(seg) + len(nodes))
