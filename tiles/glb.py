"""Binary glTF (GLB) writer with EXT_mesh_features and EXT_structural_metadata.

One mesh, one primitive per material; each vertex carries ``_FEATURE_ID_0``, a row of the
primitive's property table (``pipe`` or ``node``). Written by hand rather than through
pygltflib: a tile's buffers are assembled once with numpy and written in one go.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Primitive", "PropertyColumn", "PropertyTable", "encode_glb", "GLB_MAGIC"]

GLB_MAGIC = b"glTF"
_JSON, _BIN = 0x4E4F534A, 0x004E4942
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UINT16, _UINT32 = 5126, 5123, 5125


@dataclass
class Primitive:
    """Triangles of one material whose feature ids index one property table."""

    positions: np.ndarray  # (n, 3) float32, relative to the node translation
    normals: np.ndarray  # (n, 3) float32
    indices: np.ndarray  # (m, 3) unsigned
    feature_ids: np.ndarray  # (n,) rows of the property table
    material: int
    property_table: int


@dataclass
class PropertyColumn:
    """One property of a table: ``kind`` is ``STRING`` or ``FLOAT32``."""

    name: str
    kind: str
    values: object  # list, numpy array, pandas Series or Arrow array
    no_data: float | None = None
    description: str = ""


@dataclass
class PropertyTable:
    """Rows of one metadata class (``pipe``, ``node``)."""

    class_name: str
    description: str
    columns: list[PropertyColumn] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of rows."""
        return len(self.columns[0].values) if self.columns else 0


class _Bin:
    """The BIN chunk under construction: 8-byte aligned buffer views and their accessors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.size) % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.parts.append(data)
        self.size += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, data: np.ndarray, component: int, kind: str, target: int, **extra: object) -> int:
        """Add ``data`` as a buffer view with an accessor; returns the accessor's index."""
        view = self.add(np.ascontiguousarray(data).tobytes(), target)
        self.accessors.append({"bufferView": view, "componentType": component, "count": int(len(data)),
                               "type": kind, **extra})
        return len(self.accessors) - 1


def _strings(values: object) -> tuple[bytes, bytes]:
    """UTF-8 bytes and UINT32 offsets of a string column (a list, pandas Series or Arrow array).

    Arrow string arrays already are (offsets, data): they are sliced, not re-encoded.
    """
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=pa.large_string())
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    if len(offsets) == 0:
        offsets = np.zeros(1, np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    data = data_buf.slice(first, last - first).to_pybytes() if data_buf is not None and last > first else b""
    return data, (offsets - first).astype(np.uint32).tobytes()


def encode_glb(primitives: list[Primitive], materials: list[dict], tables: list[PropertyTable],
               node_matrix: list[float], schema_id: str = "pipetwin") -> bytes:
    """The GLB bytes of one tile's content."""
    buf = _Bin()
    gl_primitives = [_primitive(buf, p, tables[p.property_table].count) for p in primitives]
    classes, gl_tables = _property_tables(buf, tables)
    doc = {
        "asset": {"version": "2.0", "generator": "PipeTwin tiles"},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "extensions": {"EXT_structural_metadata": {
            "schema": {"id": schema_id, "classes": classes}, "propertyTables": gl_tables}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"matrix": node_matrix, "mesh": 0}],
        "meshes": [{"primitives": gl_primitives}],
        "materials": materials,
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": buf.size}],
    }
    js = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    binary = b"".join(buf.parts)
    binary += b"\0" * ((-len(binary)) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join([
        struct.pack("<4sII", GLB_MAGIC, 2, total),
        struct.pack("<II", len(js), _JSON), js,
        struct.pack("<II", len(binary), _BIN), binary,
    ])


def _primitive(buf: _Bin, p: Primitive, table_count: int) -> dict:
    """The glTF primitive of ``p``, its vertex attributes and indices added to ``buf``."""
    n = len(p.positions)
    pos = np.asarray(p.positions, dtype=np.float32)
    a_pos = buf.accessor(pos, _FLOAT, "VEC3", _ARRAY_BUFFER,
                         min=[float(v) for v in pos.min(axis=0)], max=[float(v) for v in pos.max(axis=0)])
    a_nrm = buf.accessor(np.asarray(p.normals, dtype=np.float32), _FLOAT, "VEC3", _ARRAY_BUFFER)
    # Vertex attributes are 4-byte aligned per element: float ids (exact below 2^24).
    a_fid = buf.accessor(p.feature_ids.astype(np.float32), _FLOAT, "SCALAR", _ARRAY_BUFFER)
    flat = np.asarray(p.indices).reshape(-1)
    if n <= 0xFFFF:
        a_idx = buf.accessor(flat.astype(np.uint16), _UINT16, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    else:
        a_idx = buf.accessor(flat.astype(np.uint32), _UINT32, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    return {
        "attributes": {"POSITION": a_pos, "NORMAL": a_nrm, "_FEATURE_ID_0": a_fid},
        "indices": a_idx,
        "material": p.material,
        "mode": 4,
        "extensions": {"EXT_mesh_features": {"featureIds": [
            {"featureCount": table_count, "attribute": 0, "propertyTable": p.property_table}]}},
    }


def _property_tables(buf: _Bin, tables: list[PropertyTable]) -> tuple[dict[str, dict], list[dict]]:
    """The metadata schema's classes and the property tables, their columns added to ``buf``."""
    classes: dict[str, dict] = {}
    gl_tables = []
    for t in tables:
        props_schema: dict[str, dict] = {}
        props: dict[str, dict] = {}
        for col in t.columns:
            if col.kind == "STRING":
                values, offsets = _strings(col.values)
                values = values or b" "  # a buffer view is never empty; the offsets say 0 bytes
                props[col.name] = {"values": buf.add(values), "stringOffsets": buf.add(offsets)}
                props_schema[col.name] = {"type": "STRING"}
            else:
                arr = np.asarray(col.values, dtype=np.float32)
                props[col.name] = {"values": buf.add(arr.tobytes())}
                props_schema[col.name] = {"type": "SCALAR", "componentType": "FLOAT32"}
                if col.no_data is not None:
                    props_schema[col.name]["noData"] = col.no_data
            if col.description:
                props_schema[col.name]["description"] = col.description
        classes[t.class_name] = {"name": t.class_name, "description": t.description,
                                 "properties": props_schema}
        gl_tables.append({"class": t.class_name, "count": t.count, "properties": props})
    return classes, gl_tables
