"""The part of the network an export asks for, read in bulk as Arrow tables.

An export names a utility (``JS``, or a subtype such as ``YS``), a box in the twin's CRS
(easting, northing) and a time (the network as it stood then, from the ``<table>_as_of``
functions of :mod:`twin.store`'s versioning). Segments are those of the utility that meet
the box; points are those in the box and the ends of those segments, so every exported
segment has both of its points; valves sit on exported segments, sources and customers on
exported points.

Columns and their types come from the catalogue (:mod:`twin.schema`, ``exported=True``);
geometry comes from PostGIS as WKB (``ST_AsBinary``, 3D, twin CRS) through the COPY reader of
:mod:`twin.arrow`, decoded from hex in one step over the whole column.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from twin.arrow import copy_table
from twin.db import twin_srid
from twin.domain import SUBTYPE_PARENT, UTILITIES
from twin.errors import InputError
from twin.schema import Column, columns

__all__ = ["Selection", "parse_bbox", "parse_at", "parse_utility", "exported_columns", "read_layer",
           "ARROW_TYPES", "KIND_LAYERS"]

#: Catalogue JSON type -> Arrow type of the exported field.
ARROW_TYPES: dict[str, pa.DataType] = {"string": pa.string(), "number": pa.float64(),
                                       "integer": pa.int32(), "boolean": pa.bool_()}
#: The catalogue's kind behind each exported layer.
KIND_LAYERS: dict[str, str] = {"points": "node", "segments": "segment", "valves": "valve",
                               "sources": "source", "customers": "customer"}
#: The name of the WKB column of a layer read with geometry.
GEOMETRY = "geometry"


@dataclass(frozen=True)
class Selection:
    """Which part of the network an export takes: utility, box (twin CRS), time."""

    utility: str | None = None  # parent code
    subtype: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # easting, northing min/max
    at: datetime | None = None

    def describe(self) -> dict:
        """The selection as JSON-ready values (for reports and the audit log)."""
        return {"utility": self.subtype or self.utility, "bbox": list(self.bbox) if self.bbox else None,
                "at": self.at.isoformat() if self.at else None}


def parse_utility(code: str | None) -> tuple[str | None, str | None]:
    """A utility or subtype code -> (parent, subtype); ``YS`` -> (``PS``, ``YS``)."""
    if code is None or not code.strip():
        return None, None
    c = code.strip().upper()
    if c in UTILITIES:
        return c, None
    if c in SUBTYPE_PARENT:
        return SUBTYPE_PARENT[c], c
    raise InputError(f"unknown utility {code[:20]!r}: one of {', '.join(UTILITIES)} "
                     "or a subtype such as YS",
                     zh=f"未知管线类别 {code[:20]!r}：可选 {', '.join(UTILITIES)} 或子类，如 YS")


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``E1,N1,E2,N2`` in the twin's CRS -> (min E, min N, max E, max N)."""
    if text is None or not text.strip():
        return None
    parts = text.split(",")
    try:
        v = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"bbox: four numbers E1,N1,E2,N2, not {text[:60]!r}",
                         zh=f"bbox：须为四个数 E1,N1,E2,N2，而不是 {text[:60]!r}") from None
    if len(v) != 4 or not np.isfinite(v).all():
        raise InputError(f"bbox: four finite numbers E1,N1,E2,N2, not {text[:60]!r}",
                         zh=f"bbox：须为四个有限数 E1,N1,E2,N2，而不是 {text[:60]!r}")
    return min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])


def parse_at(text: str | datetime | None) -> datetime | None:
    """An ISO 8601 time (no zone: UTC), or None for the live network."""
    if text is None or isinstance(text, datetime):
        return text if text is None or text.tzinfo else text.replace(tzinfo=UTC)
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"at: {text[:40]!r} is not an ISO 8601 time such as 2025-03-01T08:00:00Z",
                         zh=f"at：{text[:40]!r} 不是 ISO 8601 时间，例如 2025-03-01T08:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def exported_columns(kind: str) -> tuple[Column, ...]:
    """The id and the catalogue's exported columns of ``kind``, in catalogue order."""
    cols = columns(kind, exported=True)
    ident = [c for c in columns(kind) if c.name == "id"]
    return tuple(ident) + cols


def _source(kind: str, sel: Selection) -> tuple[str, list]:
    if sel.at is None:
        return f"current_{kind}", []
    return f"{kind}_as_of(%s::timestamptz)", [sel.at]


def _segment_where(sel: Selection, srid: int) -> tuple[str, list]:
    """Conditions on ``s`` (a segment source) and their values."""
    where, params = ["true"], []
    if sel.utility:
        where.append("s.utility = %s")
        params.append(sel.utility)
    if sel.subtype:
        where.append("s.subtype = %s")
        params.append(sel.subtype)
    if sel.bbox:
        where.append(f"ST_Intersects(s.geom, ST_MakeEnvelope(%s, %s, %s, %s, {srid}))")
        params.extend(sel.bbox)
    return " AND ".join(where), params


def _rows_sql(kind: str, sel: Selection, srid: int) -> tuple[str, list]:
    """The SQL selecting the ``kind`` rows of the selection (alias ``f``), and its values."""
    src, sp = _source(kind, sel)
    if kind == "segment":
        cond, cp = _segment_where(sel, srid)
        return f"SELECT s.* FROM {src} s WHERE {cond}", sp + cp
    seg_src, gp = _source("segment", sel)
    cond, cp = _segment_where(sel, srid)
    segs = f"SELECT s.id, s.from_node, s.to_node FROM {seg_src} s WHERE {cond}"
    if kind == "valve":
        return (f"SELECT f.* FROM {src} f WHERE f.segment_id IN (SELECT id FROM ({segs}) g)",
                sp + gp + cp)
    # points: in the box (or everywhere) and of the utility, plus the ends of the segments
    pwhere, pp = ["true"], []
    if sel.utility:
        pwhere.append("n.utility = %s")
        pp.append(sel.utility)
    if sel.subtype:
        pwhere.append("n.subtype = %s")
        pp.append(sel.subtype)
    if sel.bbox:
        pwhere.append(f"ST_Intersects(n.geom, ST_MakeEnvelope(%s, %s, %s, %s, {srid}))")
        pp.extend(sel.bbox)
    node_src, np_ = _source("node", sel)
    if not (sel.utility or sel.bbox):  # everything: no need to look for the segments' ends
        return f"SELECT f.* FROM {src} f", sp
    nodes = (f"SELECT n.id FROM {node_src} n WHERE {' AND '.join(pwhere)} "
             f"UNION SELECT from_node FROM ({segs}) g UNION SELECT to_node FROM ({segs}) g")
    nparams = np_ + pp + gp + cp + gp + cp
    if kind == "node":
        return f"SELECT f.* FROM {src} f WHERE f.id IN ({nodes})", sp + nparams
    return f"SELECT f.* FROM {src} f WHERE f.node_id IN ({nodes})", sp + nparams


def _select_list(cols: tuple[Column, ...]) -> str:
    out = []
    for c in cols:
        if c.format == "date-time":
            out.append(f"to_json({c.name}) #>> '{{}}' AS {c.name}")  # ISO 8601 with 'T'
        else:
            out.append(c.name)
    return ", ".join(out)


def unhex(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Hex text (PostgreSQL's ``encode(.., 'hex')``) -> binary, decoded in one call."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise InputError("a feature without geometry cannot be exported",
                         zh="没有几何的要素无法导出")
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return pa.array([], pa.binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    raw = binascii.unhexlify(memoryview(arr.buffers()[2])[start:end]) if end > start else b""
    new = ((offsets - start) // 2).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(new.tobytes()), pa.py_buffer(raw)])


def read_layer(conn: sa.Connection, kind: str, sel: Selection, *, geometry: bool = True,
               extra: dict[str, tuple[str, pa.DataType]] | None = None, ordered: bool = True
               ) -> pa.Table:
    """The ``kind`` rows of the selection: exported columns (catalogue types) and WKB geometry.

    ``extra`` adds computed columns (name -> (SQL over the row, Arrow type)), for the formats
    that need more than the catalogue's fields (a point's X and Y, a segment's ends).
    ``ordered``: rows by id (tables people compare); GIS layers skip the sort.
    """
    srid = twin_srid(conn)
    cols = exported_columns(kind)
    types = {c.name: ARROW_TYPES[c.type] for c in cols}
    select = _select_list(cols)
    for name, (expr, typ) in (extra or {}).items():
        select += f", {expr} AS {name}"
        types[name] = typ
    if geometry:
        select += f", encode(ST_AsBinary(geom), 'hex') AS {GEOMETRY}"
        types[GEOMETRY] = pa.string()
    rows, params = _rows_sql(kind, sel, srid)
    query = f"SELECT {select} FROM ({rows}) f" + (" ORDER BY id" if ordered else "")
    table = copy_table(conn, query, params, types)
    if table is None:
        schema = pa.schema([(k, pa.binary() if k == GEOMETRY else t) for k, t in types.items()])
        return schema.empty_table()
    if geometry:
        i = table.schema.get_field_index(GEOMETRY)
        table = table.set_column(i, GEOMETRY, unhex(table[GEOMETRY]))
    return table
