"""The live network read out of the twin into numpy arrays, for analyses that scan all of it.

One query per table; centrelines arrive as WKB and are split into vertex arrays with
shapely's vectorised functions, so a million segments load in seconds. Per-query analyses
(a proposal, a section line, a dig site) should rather ask PostGIS for candidates with the
GiST indexes; this is for whole-network scans and graph work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from twin.db import twin_srid
from twin.schema import names

__all__ = ["Network", "NetworkRows", "load_network", "read_network_rows", "near_ids_sql", "SEGMENT_COLUMNS",
           "NODE_COLUMNS"]

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
    return read_network_rows(conn, utilities, include=include, near=near, distance_m=distance_m).network()


def read_network_rows(
    conn: sa.Connection | sa.Engine,
    utilities: Iterable[str] | None = None,
    *,
    include: Iterable[str] = ("active", "planned"),
    near: shapely.Geometry | None = None,
    distance_m: float = 0.0,
) -> NetworkRows:
    """What :func:`load_network` reads (same arguments), before it becomes a :class:`Network`."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return read_network_rows(c, utilities, include=include, near=near, distance_m=distance_m)
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
    seg_rows = conn.execute(
        sa.text(f"SELECT {cols}, ST_AsBinary(geom) AS wkb FROM current_segment WHERE {where} ORDER BY id"), params,
    ).all()
    ncols = ", ".join(NODE_COLUMNS)
    node_rows = conn.execute(
        sa.text(f"SELECT {ncols}, ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node WHERE {node_where} ORDER BY id"),
        params,
    ).all()
    return NetworkRows(_columns(seg_rows, [*SEGMENT_COLUMNS, "wkb"]), _columns(node_rows, [*NODE_COLUMNS, "x", "y"]))


def _columns(rows: Sequence[Sequence[object]], names: list[str]) -> dict[str, Sequence[object]]:
    """Query rows as columns (one transposition in C: no Python loop over the rows)."""
    return dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {c: () for c in names}


class NetworkRows:
    """The rows :func:`load_network` reads, as columns, before they become a :class:`Network`.

    One wide read serves several questions (a proposal's checks, then the cross-section at its
    worst place): :meth:`near` builds the network of the rows within a distance of a geometry
    exactly as a read of its own would have (the same rows in the same order make the same
    frames; a frame cut out of a wider one can differ, e.g. ``None`` against ``NaN``).
    """

    def __init__(self, segments: dict[str, Sequence[object]], nodes: dict[str, Sequence[object]]) -> None:
        self.segments = {c: v for c, v in segments.items() if c != "wkb"}
        self.nodes = nodes
        self.lines = shapely.from_wkb(np.asarray(segments["wkb"], dtype=object)) if segments["wkb"] else \
            np.empty(0, object)
        self.node_points = shapely.points(np.asarray(nodes["x"], dtype=float), np.asarray(nodes["y"], dtype=float)) \
            if nodes["x"] else np.empty(0, object)

    def network(self, segments: np.ndarray | None = None, nodes: np.ndarray | None = None) -> Network:
        """The network of the given rows (positions; all by default)."""
        seg_cols, node_cols, lines = self.segments, self.nodes, self.lines
        if segments is not None:
            seg_cols = {c: [v[i] for i in segments] for c, v in seg_cols.items()}
            lines = lines[segments]
        if nodes is not None:
            node_cols = {c: [v[i] for i in nodes] for c, v in node_cols.items()}
        seg = _frame(seg_cols, SEGMENT_COLUMNS, _NUMBERS["segment"])
        node = _frame(node_cols, [*NODE_COLUMNS, "x", "y"], _NUMBERS["node"])
        vertices, index = shapely.get_coordinates(lines, include_z=True, return_index=True)
        offsets = np.zeros(len(seg) + 1, dtype=np.int64)
        np.cumsum(np.bincount(index, minlength=len(seg)), out=offsets[1:])
        return Network(seg, node, node[["x", "y", "ground_z"]].to_numpy(float), vertices, offsets)

    def near(self, geometry: shapely.Geometry, distance_m: float) -> Network:
        """The network of the rows within ``distance_m`` of a plan geometry (what
        ``load_network(near=geometry, distance_m=distance_m)`` reads, when this read reached it)."""
        return self.network(np.flatnonzero(shapely.dwithin(self.lines, geometry, distance_m)),
                            np.flatnonzero(shapely.dwithin(self.node_points, geometry, distance_m)))


#: The number columns of each table: read as float, missing values NaN.
_NUMBERS = {kind: names(kind, reads="network", type="number") for kind in ("segment", "node")}


def _frame(data: dict[str, Sequence[object]], columns: list[str], numbers: Iterable[str]) -> pd.DataFrame:
    """A frame of query columns, number columns as float (NaN where missing).

    Built column by column: pandas reads a list of SQLAlchemy rows as named tuples, a row and
    a raised lookup error per cell (a third of a proposal check's read at 100 rows).
    """
    if not len(data[columns[0]]):
        frame = pd.DataFrame([], columns=columns)
        for c in numbers:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        return frame
    data = dict(data)
    for c in numbers:
        data[c] = np.array(data[c], dtype=float)  # None -> NaN
    return pd.DataFrame(data, columns=columns)
