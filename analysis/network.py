"""The live network read out of the twin into numpy arrays, for analyses that scan all of it.

One query per table; centrelines arrive as WKB and are split into vertex arrays with
shapely's vectorised functions, so a million segments load in seconds. Per-query analyses
(a proposal, a section line, a dig site) should rather ask PostGIS for candidates with the
GiST indexes; this is for whole-network scans and graph work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from twin.db import twin_srid
from twin.schema import names

__all__ = ["Network", "load_network", "near_ids_sql", "SEGMENT_COLUMNS", "NODE_COLUMNS"]

#: What the network model reads of each table (twin.schema's ``reads="network"`` columns).
SEGMENT_COLUMNS = names("segment", reads="network")
NODE_COLUMNS = names("node", reads="network")


@dataclass
class Network:
    """The live network as arrays.

    ``segments`` and ``nodes`` are DataFrames in a fixed order (their positions index the
    arrays below). Segment ``i``'s centreline is ``vertices[offsets[i]:offsets[i + 1]]``
    (x = easting, y = northing, z = elevation, metres). ``half_width_m`` and
    ``half_height_m`` are the outer half sizes across and up: the radius twice for circular
    pipes, half the width and height for rectangular sections.
    """

    segments: pd.DataFrame
    nodes: pd.DataFrame
    node_xyz: np.ndarray
    vertices: np.ndarray
    offsets: np.ndarray

    @property
    def half_width_m(self) -> np.ndarray:
        """Half the outer width (m) of each segment: radius or half the box width."""
        s = self.segments
        circ = s["shape"].to_numpy() == "circular"
        return np.where(circ, s["diameter_mm"].to_numpy(float), s["width_mm"].to_numpy(float)) / 2000.0

    @property
    def half_height_m(self) -> np.ndarray:
        """Half the outer height (m) of each segment: radius or half the box height."""
        s = self.segments
        circ = s["shape"].to_numpy() == "circular"
        return np.where(circ, s["diameter_mm"].to_numpy(float), s["height_mm"].to_numpy(float)) / 2000.0

    def pieces(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Straight pieces of all centrelines: ``(segment_index, start_xyz, end_xyz)``."""
        n_vert = np.diff(self.offsets)
        seg = np.repeat(np.arange(len(n_vert)), np.maximum(n_vert - 1, 0))
        # start vertex of each piece: every vertex except each polyline's last
        last = np.zeros(len(self.vertices), dtype=bool)
        last[self.offsets[1:] - 1] = True
        starts = np.flatnonzero(~last)
        return seg, self.vertices[starts], self.vertices[starts + 1]

    def segment_index(self, ids: Iterable[str]) -> np.ndarray:
        """Positions of the given segment ids (KeyError naming the first unknown one)."""
        pos = pd.Index(self.segments["id"]).get_indexer(list(ids))
        if (pos < 0).any():
            raise KeyError(list(ids)[int(np.flatnonzero(pos < 0)[0])])
        return pos


#: The pieces of a ``near`` geometry (WKB ``:near`` in SRID ``:srid``): a spread-out multi-geometry
#: (49 short pipes across a district) cut into compact parts, so the GiST index filters on each
#: part's box rather than on the box of the whole (10 s -> 0.05 s at a million pipes).
_NEAR_PARTS = "(SELECT ST_Subdivide((ST_Dump(ST_SetSRID(ST_GeomFromWKB(:near), :srid))).geom, 64) AS g)"


def near_ids_sql(table: str) -> str:
    """SQL condition: the row's id is of a ``table`` row within ``:distance`` m of ``:near``.

    ``id = ANY(ARRAY(...))`` rather than ``id IN (...)``: the planner guesses a thousand rows
    for each set-returning call of :data:`_NEAR_PARTS`, so with ``IN`` it hashed the parts and
    scanned the whole table (0.4-0.65 s at a million pipes); an array from an InitPlan is
    looked up through the primary key (1-5 ms).
    """
    return (f"id = ANY(ARRAY(SELECT t.id FROM {table} t JOIN {_NEAR_PARTS} p "
            "ON ST_DWithin(t.geom, p.g, :distance)))")


def load_network(
    conn: sa.Connection | sa.Engine,
    utilities: Iterable[str] | None = None,
    *,
    include: Iterable[str] = ("active", "planned"),
    near: shapely.Geometry | None = None,
    distance_m: float = 0.0,
) -> Network:
    """Read the live segments (of the given statuses) and nodes of the twin into arrays.

    With ``near`` (a plan geometry in the twin CRS), only features within ``distance_m`` of it
    are read, found through the GiST indexes: the way to gather candidates for one proposal,
    section line or dig site without reading the whole network.
    """
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return load_network(c, utilities, include=include, near=near, distance_m=distance_m)
    params: dict[str, object] = {"status": list(include)}
    where = "status = ANY(:status)"
    node_where = "true"
    if utilities is not None:
        params["utility"] = list(utilities)
        where += " AND utility = ANY(:utility)"
        node_where += " AND utility = ANY(:utility)"
    if near is not None:
        params["near"] = shapely.to_wkb(near, output_dimension=2)
        params["distance"] = float(distance_m)
        params["srid"] = twin_srid(conn)
        where += " AND " + near_ids_sql("current_segment")
        node_where += " AND " + near_ids_sql("current_node")
    cols = ", ".join(SEGMENT_COLUMNS)
    seg = pd.DataFrame(
        conn.execute(
            sa.text(f"SELECT {cols}, ST_AsBinary(geom) AS wkb FROM current_segment WHERE {where} ORDER BY id"),
            params,
        ).all(),
        columns=[*SEGMENT_COLUMNS, "wkb"],
    )
    ncols = ", ".join(NODE_COLUMNS)
    nodes = pd.DataFrame(
        conn.execute(
            sa.text(
                f"SELECT {ncols}, ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node "
                f"WHERE {node_where} ORDER BY id"
            ),
            params,
        ).all(),
        columns=[*NODE_COLUMNS, "x", "y"],
    )
    geoms = shapely.from_wkb(seg.pop("wkb").to_numpy(object)) if len(seg) else np.empty(0, object)
    vertices, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    offsets = np.zeros(len(seg) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(seg)), out=offsets[1:])
    for frame, kind in ((seg, "segment"), (nodes, "node")):
        for c in names(kind, reads="network", type="number"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    node_xyz = nodes[["x", "y", "ground_z"]].to_numpy(float)
    return Network(seg, nodes, node_xyz, vertices, offsets)
