"""One tile's content: the pipes and fittings of the tile as a GLB with feature metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

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
#: A tile's pipe profiles by number of sides (0: the box profile).
_PIPE_SIDES = np.array([0, COARSE_SIDES, 8, 12, 16])
_PIPE_PROFILES = (_RECT, *(_PROFILES[int(s)] for s in _PIPE_SIDES[1:]))
#: Fitting shapes in the order they are meshed: the vertical ones (swept, with these profiles)
#: first, then the instances of templates.
_NODE_SHAPE_ORDER = ("shaft", "vault", "post", "riser", "station", "octahedron", "box", "cabinet")
_VERTICAL_PROFILES = (_PROFILES[12], _RECT, _PROFILES[8], _RECT, _PROFILES[16])


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
    if not trunk.all():
        return False
    if nodes.empty:
        return True
    source = nodes["is_source"].fillna(False).to_numpy(bool) if "is_source" in nodes.columns else np.zeros(len(nodes), bool)
    return bool((node_level(source) == TRUNK).all())


def _pipe_meshes(seg: pd.DataFrame, group: np.ndarray, frame: Frame, coarse: bool = False) -> list[tuple[int, Mesh]]:
    """The pipes' mesh of each group (``group``: a small integer per segment, from 0), in order.

    One sweep for the whole tile, the segments in order of group, then profile (number of
    sides), then row; each group's mesh is a slice of it.
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
    profile = np.searchsorted(_PIPE_SIDES, sides)
    rows = np.lexsort((profile, group))  # stable
    points, starts = _lines_in_order(enu, per_line, rows)
    mesh, _ = sweep(points, starts, _PIPE_PROFILES, half[rows], feature=rows, profile_of=profile[rows])
    return _by_group(mesh, group)


def _lines_in_order(points: np.ndarray, per_line: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The polylines ``rows`` (of ``per_line`` vertices each, one after another in ``points``)
    in that order: their vertices and starts."""
    counts = per_line[rows]
    starts = np.concatenate([[0], np.cumsum(counts)])
    if (per_line == 2).all():
        return points.reshape(-1, 2, 3)[rows].reshape(-1, 3), starts
    first = np.concatenate([[0], np.cumsum(per_line)[:-1]])
    return points[np.repeat(first[rows] - starts[:-1], counts) + np.arange(starts[-1])], starts


def _by_group(mesh: Mesh, group: np.ndarray) -> list[tuple[int, Mesh]]:
    """Slices of ``mesh`` per group of its features (vertices and faces in order of group)."""
    if len(mesh.positions) == 0:
        return []
    vg = group[mesh.feature]
    fg = vg[mesh.indices[:, 0]]
    present = vg[np.concatenate([[0], np.flatnonzero(vg[1:] != vg[:-1]) + 1])]
    v0, v1 = np.searchsorted(vg, present, "left").tolist(), np.searchsorted(vg, present, "right").tolist()
    f0, f1 = np.searchsorted(fg, present, "left").tolist(), np.searchsorted(fg, present, "right").tolist()
    return [(int(g), Mesh(mesh.positions[a:b], mesh.normals[a:b], mesh.indices[c:e] - np.uint32(a),
                          mesh.feature[a:b]))
            for g, a, b, c, e in zip(present.tolist(), v0, v1, f0, f1, strict=True)]


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
    """The fittings' mesh of each group (``group``: a small integer per node, from 0), in order:
    the vertical shapes (one sweep for the tile), then the octahedra, then the boxes (one
    set of instances each), in order of group, then shape, then row."""
    if nodes.empty:
        return []
    ground, pipe, bottom, pipe_d = _node_heights(nodes)
    shapes, half = node_shape(nodes["kind"])
    code = np.full(len(nodes), -1)
    for i, name in enumerate(_NODE_SHAPE_ORDER):
        code[shapes == name] = i
    x, y = nodes["x"].to_numpy(float), nodes["y"].to_numpy(float)
    top = ground + half[:, 2]
    # Vertical shapes: shafts and vaults from the bottom to the ground, posts and risers from the
    # pipe up, stations around it.
    lo = np.select([code <= 1, code == 4], [bottom, np.minimum(pipe, ground - 1.0) - 0.5], pipe)
    hi = np.where(code <= 1, ground, top)
    pieces = []
    rows = _ordered(code, group, (code >= 0) & (code < len(_VERTICAL_PROFILES)))
    if len(rows):
        zs = np.column_stack([lo[rows], np.maximum(hi[rows], lo[rows] + 0.1)]).reshape(-1)
        pts = frame.to_enu(np.repeat(x[rows], 2), np.repeat(y[rows], 2), zs)
        mesh, _ = sweep(pts, np.arange(0, 2 * len(rows) + 1, 2), _VERTICAL_PROFILES, half[rows, :2],
                        feature=rows, profile_of=code[rows])
        pieces.append(_by_group(mesh, group))
    # Fittings at the pipe (valves enclose their pipe) and cabinets on the ground.
    cabinet = code == _NODE_SHAPE_ORDER.index("cabinet")
    h = np.where(cabinet[:, None], half, np.maximum(half, (pipe_d * 0.7)[:, None]))
    for template, kinds in ((OCTAHEDRON, ("octahedron",)), (BOX, ("box", "cabinet"))):
        rows = _ordered(code, group, np.isin(code, [_NODE_SHAPE_ORDER.index(k) for k in kinds]))
        if len(rows):
            centres = frame.to_enu(x[rows], y[rows], np.where(cabinet[rows], top[rows], pipe[rows]))
            pieces.append(_by_group(instances(template, centres, h[rows], rows), group))
    meshes: dict[int, list[Mesh]] = {}
    for piece in pieces:
        for g, m in piece:
            meshes.setdefault(g, []).append(m)
    return [(g, concat(meshes[g])) for g in sorted(meshes)]


def _ordered(code: np.ndarray, group: np.ndarray, take: np.ndarray) -> np.ndarray:
    """The rows ``take`` in order of group, then code, then row."""
    rows = np.flatnonzero(take)
    return rows[np.lexsort((code[rows], group[rows]))]


def _groups(*cols: pd.Series) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Codes of the distinct combinations of ``cols`` (in order of first appearance, from 0) and
    each combination's values as strings (a missing value as ``str(None)``)."""
    codes = np.zeros(len(cols[0]), np.int64)
    values = []
    for col in cols:
        arr = pa.array(col.array if isinstance(col, pd.Series) else col)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        enc = arr.dictionary_encode(null_encoding="encode")
        u = [str(v) for v in enc.dictionary.to_pylist()]
        codes = codes * len(u) + enc.indices.to_numpy(zero_copy_only=False)
        values.append(u)
    codes, combos = pd.factorize(codes)
    out = []
    for combo in combos.tolist():
        parts = []
        for u in reversed(values):
            combo, i = divmod(combo, len(u))
            parts.append(u[i])
        out.append(tuple(reversed(parts)))
    return codes, out


def build_content(seg: pd.DataFrame, nodes: pd.DataFrame, frame: Frame) -> TileContent:
    """Mesh, colour and describe one tile's segments and nodes; the GLB and its box."""
    seg = seg.reset_index(drop=True)
    nodes = nodes.reset_index(drop=True)
    materials: list[dict] = []
    primitives_src: list[tuple[int, Mesh, int]] = []  # (material, mesh, table)
    tables: list[PropertyTable] = []

    if len(seg):
        codes, uniques = _groups(seg["utility"], seg["status"])
        table_index = len(tables)
        for g, mesh in _pipe_meshes(seg, codes, frame, coarse=is_coarse(seg, nodes)):
            materials.append(pipe_material(*uniques[g]))
            primitives_src.append((len(materials) - 1, mesh, table_index))
        if len(primitives_src):
            tables.append(pipe_table(seg))
    if len(nodes):
        codes, uniques = _groups(nodes["utility"])
        table_index = len(tables)
        meshes = _node_meshes(nodes, codes, frame)
        for g, mesh in meshes:
            materials.append(node_material(*uniques[g]))
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
