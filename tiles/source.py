"""Reading the live network from the twin for the tiles, in two passes.

:func:`read_index` reads what the tiling needs for every live feature (id, version, an anchor
point, what decides its importance); :func:`read_segments` and :func:`read_nodes` read the full
records, geometry included, of the features of the tiles being (re)built. Both go through
``COPY ... TO STDOUT`` and Arrow's CSV reader: a million rows in a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from twin.arrow import copy_frame

__all__ = ["read_index", "read_segments", "read_nodes", "segment_end_nodes", "ewkb_linestrings"]

# Nodes drawn as features: appurtenances, sources, customers' service connections. A node's
# source and customer are the first by id; {customer} joins them (all at once for the whole
# network; by index, for the nodes asked for, when {where} names some).
_DRAWN_NODES = """
    SELECT n.id, hashtextextended(n.id, 2) AS key, n.version::bigint + 1000 * coalesce(s.version, 0) + 1000000 * coalesce(c.version, 0)
               AS version,
           n.utility,
           coalesce(n.appurtenance, s.kind, CASE WHEN c.node_id IS NOT NULL OR n.feature = 'service_entry'
                                                 THEN 'service_entry' END) AS kind,
           (s.node_id IS NOT NULL) AS is_source,
           coalesce(s.name, c.name) AS name,
           ST_X(n.geom) AS x, ST_Y(n.geom) AS y {extra}
      FROM current_node n
      LEFT JOIN (SELECT DISTINCT ON (node_id) node_id, kind, name, version
                   FROM current_source ORDER BY node_id, id) s ON s.node_id = n.id
      {customer}
     WHERE (n.appurtenance IS NOT NULL OR n.feature = 'service_entry'
            OR s.node_id IS NOT NULL OR c.node_id IS NOT NULL) {where}
"""
_ALL_CUSTOMERS = """LEFT JOIN (SELECT DISTINCT ON (node_id) node_id, name, version
                   FROM current_customer ORDER BY node_id, id) c ON c.node_id = n.id"""
_NODE_CUSTOMER = """LEFT JOIN LATERAL (SELECT node_id, name, version FROM current_customer
                                      WHERE node_id = n.id ORDER BY id LIMIT 1) c ON true"""


#: Heights of a node (read_nodes without the pipes').
_NODE_HEIGHTS = "n.ground_z, n.well_bottom_z, n.well_depth_m, n.depth_m"
_NODE_HEIGHT_COLUMNS = tuple(c.strip().removeprefix("n.") for c in _NODE_HEIGHTS.split(","))


def drawn_nodes_query(by_id: bool, heights: bool = False) -> str:
    """The drawn nodes' index query: all of them, or (``by_id``) those of the ids ``%s``;
    with ``heights``, their heights too."""
    extra = ", " + _NODE_HEIGHTS if heights else ""
    if by_id:
        return _DRAWN_NODES.format(customer=_NODE_CUSTOMER, where="AND n.id = ANY(%s)", extra=extra)
    return _DRAWN_NODES.format(customer=_ALL_CUSTOMERS, where="", extra=extra)


_STR = pa.string()
_F64 = pa.float64()


def read_index(engine: sa.Engine, seg_ids: Sequence[str] | None = None,
               node_ids: Sequence[str] | None = None, details: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segments, nodes): id, key, version, anchor (x, y) and importance inputs of every live feature.

    ``key`` is a 64-bit hash of the id (PostgreSQL's ``hashtextextended``, one seed per kind).
    The two queries run side by side on two connections; ``seg_ids``/``node_ids`` restrict them.
    ``details``: with the full records too (the columns of :func:`read_segments` and of
    :func:`read_nodes` without pipe heights) in the same pass: a full build reads once.
    """
    seg_query = """
        SELECT id, hashtextextended(id, 1) AS key, version, utility, shape, diameter_mm, width_mm,
               height_mm, status,
               (ST_XMin(geom) + ST_XMax(geom)) / 2 AS x, (ST_YMin(geom) + ST_YMax(geom)) / 2 AS y""" + (
        ", " + _SEGMENT_DETAILS if details else "") + """
          FROM current_segment""" + (" WHERE id = ANY(%s)" if seg_ids is not None else "")
    node_query = drawn_nodes_query(node_ids is not None, heights=details)
    seg_types = {"id": _STR, "key": pa.int64(), "utility": _STR, "shape": _STR, "status": _STR,
                 "diameter_mm": _F64, "width_mm": _F64, "height_mm": _F64, "x": _F64, "y": _F64,
                 "version": pa.int64(), **(_SEGMENT_DETAIL_TYPES if details else {})}
    node_types = {"id": _STR, "key": pa.int64(), "utility": _STR, "kind": _STR, "name": _STR, "x": _F64,
                  "y": _F64, "version": pa.int64(), "is_source": pa.bool_(),
                  **(dict.fromkeys(_NODE_HEIGHT_COLUMNS, _F64) if details else {})}
    seg, nodes = _concurrently(engine, [
        (seg_query, None if seg_ids is None else [list(seg_ids)], seg_types),
        (node_query, None if node_ids is None else [list(node_ids)], node_types)])
    if seg.empty:
        seg = pd.DataFrame({c: pd.Series(dtype=object if t == _STR else float) for c, t in seg_types.items()})
    if nodes.empty:
        nodes = pd.DataFrame({c: pd.Series(dtype=object if t == _STR else float) for c, t in node_types.items()})
    return _by_key(seg), _by_key(nodes)


def _by_key(index: pd.DataFrame) -> pd.DataFrame:
    """The rows in the order of their key (then id): the same order however the database
    returned them. A parallel scan (a large table) returns rows in a different order each time,
    and the order of the features within a tile is the order of its content's bytes."""
    keys = index["key"].to_numpy(np.int64)
    order = np.argsort(keys, kind="stable")
    if len(keys) > 1 and not (np.diff(keys[order]) > 0).all():  # a hash shared by two ids
        return index.sort_values(["key", "id"], kind="stable").reset_index(drop=True)
    return index.iloc[order].reset_index(drop=True)


def _concurrently(engine: sa.Engine, queries: list[tuple[str, Sequence | None, dict]]) -> list[pd.DataFrame]:
    """Run COPY queries on one connection each, in threads (the server works on them in parallel)."""
    def run(q: tuple[str, Sequence | None, dict]) -> pd.DataFrame:
        with engine.connect() as conn:
            return copy_frame(conn, q[0], q[1], q[2])

    with ThreadPoolExecutor(len(queries)) as pool:
        return list(pool.map(run, queries))


#: A segment's record as the tiles show it (read_segments), beside its id and key.
_SEGMENT_DETAILS = """
    coalesce(subtype, '') AS subtype,
    coalesce(nullif(size_text, ''),
             CASE WHEN diameter_mm IS NOT NULL THEN 'DN' || round(diameter_mm::numeric, 1)::float8
                  ELSE round(width_mm::numeric, 1)::float8 || '×' || round(height_mm::numeric, 1)::float8
             END) AS size,
    coalesce(material, '') AS material,
    round(((coalesce(from_depth_m, to_depth_m) + coalesce(to_depth_m, from_depth_m)) / 2)::numeric,
          3)::float8 AS depth_m,
    coalesce(built, built_year::text, '') AS built, coalesce(owner, '') AS owner,
    hashtextextended(from_node, 2) AS from_key, hashtextextended(to_node, 2) AS to_key,
    from_z, to_z, geom"""
_SEGMENT_DETAIL_TYPES = {"subtype": _STR, "size": _STR, "material": _STR, "built": _STR, "owner": _STR,
                         "geom": _STR, "depth_m": _F64, "from_key": pa.int64(), "to_key": pa.int64(),
                         "from_z": _F64, "to_z": _F64}


def read_segments(conn: sa.Connection, ids: np.ndarray | None) -> pd.DataFrame:
    """Full records of the live segments ``ids`` (None: all), attributes formatted for the tiles.

    ``geom`` is hex EWKB; ``size`` is the surveyed text or DN/W×H; ``depth_m`` the mean of the
    end depths; text columns are never null.
    """
    where, params = ("WHERE id = ANY(%s)", [list(ids)]) if ids is not None else ("", None)
    return copy_frame(conn, f"SELECT id, hashtextextended(id, 1) AS key, {_SEGMENT_DETAILS} FROM current_segment {where}",
                      params, types={"id": _STR, "key": pa.int64(), **_SEGMENT_DETAIL_TYPES})


def read_nodes(conn: sa.Connection, ids: np.ndarray | None, pipe_heights: bool = True) -> pd.DataFrame:
    """Heights of the drawn nodes ``ids`` (None: all): ground, well bottom and, with
    ``pipe_heights``, the pipe centreline (mean of the ends of the pipes meeting there)."""
    node_where = "" if ids is None else "WHERE n.id = ANY(%s)"
    types = {"id": _STR, "key": pa.int64(), "ground_z": _F64, "well_bottom_z": _F64, "well_depth_m": _F64,
             "depth_m": _F64, "pipe_z": _F64, "pipe_d_mm": _F64}
    if not pipe_heights:
        return copy_frame(conn, f"""
            SELECT n.id, hashtextextended(n.id, 2) AS key, n.ground_z, n.well_bottom_z, n.well_depth_m,
                   n.depth_m
              FROM current_node n {node_where}""", None if ids is None else [list(ids)], types=types)
    if ids is None:
        end_where, params = "", None
    else:
        lst = list(ids)
        end_where = "AND {col} = ANY(%s)"
        params = [lst, lst, lst]
    ends_from = end_where.format(col="from_node")
    ends_to = end_where.format(col="to_node")
    return copy_frame(conn, f"""
        WITH ends AS (
            SELECT from_node AS node_id, from_z AS z, coalesce(diameter_mm, height_mm) AS d
              FROM current_segment WHERE true {ends_from}
            UNION ALL
            SELECT to_node, to_z, coalesce(diameter_mm, height_mm)
              FROM current_segment WHERE true {ends_to}
        ), at AS (SELECT node_id, avg(z) AS pipe_z, max(d) AS pipe_d_mm FROM ends GROUP BY node_id)
        SELECT n.id, hashtextextended(n.id, 2) AS key, n.ground_z, n.well_bottom_z, n.well_depth_m,
               n.depth_m, at.pipe_z, at.pipe_d_mm
          FROM current_node n LEFT JOIN at ON at.node_id = n.id {node_where}""", params, types=types)


def segment_end_nodes(conn: sa.Connection, ids: Sequence[str]) -> set[str]:
    """Nodes at either end of the segments ``ids`` (current or retired)."""
    if not len(ids):
        return set()
    rows = conn.execute(sa.text("SELECT from_node, to_node FROM segment WHERE id = ANY(:ids)"),
                        {"ids": list(ids)}).all()
    return {n for r in rows for n in r}


def ewkb_linestrings(hex_ewkb: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) and their line index of hex EWKB LINESTRING Z values, parsed with numpy.

    PostGIS writes geometry as hex EWKB; parsing the whole column at once in numpy avoids
    building a shapely object per pipe. Anything but little-endian LineString Z goes through
    shapely.
    """
    arr = pa.array(hex_ewkb.array if isinstance(hex_ewkb, pd.Series) else hex_ewkb).cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64)
    _, off_buf, data_buf = arr.buffers()
    hex_off = np.frombuffer(off_buf, dtype=np.int64)[arr.offset:arr.offset + n + 1]
    raw = np.frombuffer(bytes.fromhex(data_buf.slice(int(hex_off[0]), int(hex_off[-1] - hex_off[0]))
                                      .to_pybytes().decode("ascii")), dtype=np.uint8)
    starts = (hex_off[:-1] - hex_off[0]) // 2

    def u32(at: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(raw[at[:, None] + np.arange(4)]).view("<u4").reshape(-1)

    kind = u32(starts + 1)
    ok = (raw[starts] == 1) & ((kind & 0xFF) == 2) & ((kind & 0x80000000) != 0)
    if not ok.all():
        import shapely

        geoms = shapely.from_wkb(np.asarray(hex_ewkb, dtype=object))
        return shapely.get_coordinates(geoms, include_z=True, return_index=True)
    header = 5 + 4 * ((kind & 0x20000000) != 0)
    count = u32(starts + header).astype(np.int64)
    first = starts + header + 4
    line = np.repeat(np.arange(n), count)
    local = np.arange(len(line)) - np.repeat(np.cumsum(count) - count, count)
    at = np.repeat(first, count) + 24 * local
    coords = np.ascontiguousarray(raw[at[:, None] + np.arange(24)]).view("<f8").reshape(-1, 3)
    return coords, line
