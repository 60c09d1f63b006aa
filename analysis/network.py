"""The live network read out of the twin into numpy arrays, for analyses that scan all of it.

One query per table; centrelines arrive as WKB and are split into vertex arrays with
shapely's vectorised functions, so a million segments load in seconds. Per-query analyses
(a proposal, a section line, a dig site) should rather ask PostGIS for candidates with the
GiST indexes; this is for whole-network scans and graph work.
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
import sqlalchemy as sa

from twin.db import twin_srid
from twin.schema import names

__all__ = ["Network", "NetworkRows", "load_network", "read_network_rows", "near_ids_sql", "line_vertices",
           "text_array", "frame_of", "SEGMENT_COLUMNS", "NODE_COLUMNS"]

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


def text_array(values: pd.Series) -> np.ndarray:
    """``values.astype(str).to_numpy()``, without the trip through an Arrow-backed column (a
    million Python strings made twice) when the values already are ``str``, none missing."""
    if values.dtype == object:
        raw = values.to_numpy()
        if pd.api.types.infer_dtype(raw, skipna=False) == "string":
            return raw
    return values.astype(str).to_numpy()


#: ISO WKB: byte order (1), type (4), number of points (4); LineString Z is type 1002.
_WKB_HEAD = 9
_WKB_LINESTRING_Z = 1002


def _hex_linestrings_z(column: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices and offsets of hex WKB that is all little-endian LineString Z; None otherwise.

    A million lines in well under a second: the hex digits are decoded in one pass, the
    9-byte headers checked (numpy) and cut out, and what is left is every line's points one after
    another, as float64 (x, y, z) bit for bit.
    """
    if column.null_count or not pa.types.is_string(column.type):
        return None
    n = len(column)
    bounds = np.frombuffer(column.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * column.offset)
    digits = np.frombuffer(column.buffers()[2], dtype=np.uint8)[bounds[0]:bounds[-1]]
    size = np.diff(bounds)
    if (size % 2).any() or (size < 2 * _WKB_HEAD).any():
        return None
    try:
        raw = np.frombuffer(binascii.unhexlify(digits), dtype=np.uint8)
    except binascii.Error:
        return None
    head = ((bounds[:-1] - bounds[0]) // 2)[:, None] + np.arange(_WKB_HEAD)
    header = raw[head]
    kind = np.ascontiguousarray(header[:, 1:5]).view("<u4").ravel()
    points = np.ascontiguousarray(header[:, 5:9]).view("<u4").ravel().astype(np.int64)
    if (header[:, 0] != 1).any() or (kind != _WKB_LINESTRING_Z).any() or (size // 2 != _WKB_HEAD + 24 * points).any():
        return None
    body = np.ones(len(raw), dtype=bool)
    body[head.ravel()] = False
    vertices = raw[body].view("<f8").reshape(-1, 3).astype(float)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(points, out=offsets[1:])
    return vertices, offsets


def line_vertices(wkb: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(m, 3)`` and offsets ``(n + 1,)`` of n lines given as hex WKB (an Arrow column).

    Lines in little-endian ISO WKB LineString Z (what ``ST_AsBinary(geom, 'NDR')`` gives of the
    twin's centrelines) are decoded in numpy; anything else through shapely, with the same result.
    """
    column = wkb.combine_chunks() if isinstance(wkb, pa.ChunkedArray) else wkb
    fast = _hex_linestrings_z(column) if len(column) else None
    if fast is not None:
        return fast
    geoms = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
    vertices, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(column)), out=offsets[1:])
    return vertices, offsets


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
    srid: int | None = None,
) -> NetworkRows:
    """What :func:`load_network` reads (same arguments), before it becomes a :class:`Network`
    (``srid``: the twin's, when the caller has it already)."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return read_network_rows(c, utilities, include=include, near=near, distance_m=distance_m, srid=srid)
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
        params["srid"] = twin_srid(conn) if srid is None else srid
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
        seg = frame_of(seg_cols, SEGMENT_COLUMNS, _NUMBERS["segment"])
        node = frame_of(node_cols, [*NODE_COLUMNS, "x", "y"], _NUMBERS["node"])
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


def frame_of(data: dict[str, Sequence[object]], columns: list[str], numbers: Iterable[str]) -> pd.DataFrame:
    """A frame of query columns, number columns as float (NaN where missing), text as object
    columns (NaN where missing), others as pandas makes them of a list.

    Built column by column: pandas reads a list of SQLAlchemy rows as named tuples, a row and
    a raised lookup error per cell (a third of a proposal check's read at 100 rows); and from
    ready arrays (:func:`_assembled`), which a proposal check does four times.
    """
    numbers = set(numbers)
    n = len(data[columns[0]])
    if not n:
        return _assembled([np.empty(0, dtype=float if c in numbers else object) for c in columns], columns, 0)
    return _assembled([np.array(data[c], dtype=float) if c in numbers else _text_column(data[c]) for c in columns],
                      columns, n)


def _text_column(values: Sequence[object]) -> np.ndarray:
    """A column of text as an object array, NaN where missing: what pandas' ``str`` column gives
    of ``to_numpy()``, without making it an Arrow array first (and again on every read); other
    columns as pandas makes them of a list (integers, nothing at all: in plain Python first, the
    common cases of a read cost microseconds that way, not pandas' inference)."""
    kinds = {type(v) for v in values}
    if kinds == {str} or kinds == {str, type(None)}:
        return np.array([np.nan if v is None else v for v in values], dtype=object)
    if kinds == {type(None)}:
        return np.full(len(values), None, dtype=object)
    if kinds == {int} and all(-(2**63) <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    made = pd.Series(list(values)).array  # bool, date, mixed: pandas' own choice
    return made.to_numpy() if isinstance(made, pd.arrays.NumpyExtensionArray) else made


@functools.lru_cache(maxsize=64)
def _column_index(columns: tuple[str, ...]) -> pd.Index:
    """The column index of a frame's names (made once: pandas infers its type every time)."""
    return pd.Index(columns)


def _assembled(arrays: list, columns: list[str], n: int) -> pd.DataFrame:
    """A frame of ready column arrays of length ``n`` (a tenth of ``pd.DataFrame(dict)``'s time,
    which checks and infers every column again)."""
    try:
        return pd.DataFrame._from_arrays(arrays, columns=_column_index(tuple(columns)), index=pd.RangeIndex(n),
                                         verify_integrity=False)
    except (AttributeError, TypeError):  # a pandas without it: the public way, same frame
        return pd.DataFrame({c: pd.Series(a, dtype=getattr(a, "dtype", None), copy=False)
                             for c, a in zip(columns, arrays, strict=True)}, columns=columns)
