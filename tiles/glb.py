"""Binary glTF (GLB) writer with EXT_mesh_features and EXT_structural_metadata.

One mesh, one primitive per material; each vertex carries ``_FEATURE_ID_0``, a row of the
primitive's property table (``pipe`` or ``node``). Written by hand rather than through
pygltflib: a tile's buffers are assembled once with numpy and written in one go.

Light tiles (``compress=True``, the default):

- ``KHR_mesh_quantization``: positions are SHORT integers on one uniform grid per tile (the step
  is the tile's largest half extent / 32767; the node matrix carries the grid's offset and
  scale, so normals need no correction); normals are BYTE normalized, octahedral-encoded (the
  meshopt ``OCTAHEDRAL`` filter, 4 bytes a vertex); feature ids stay FLOAT (exact integers).
- ``EXT_meshopt_compression``: every vertex attribute and index buffer view is compressed with
  meshoptimizer's vertex codec (version 0) and index codec (version 1) into the GLB buffer; the
  views themselves point into a second, fallback buffer without data (the extension is
  required). Triangles are reordered for the vertex cache first (meshoptimizer), which also
  makes the index codec's output smaller. Property tables are left as they are (strings: gzip
  on the wire does better on them than a vertex codec).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import meshoptimizer
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tiles.mesh import bounds

__all__ = ["Primitive", "PropertyColumn", "PropertyTable", "encode_glb", "GLB_MAGIC", "QUANT_MAX",
           "oct_encode"]

GLB_MAGIC = b"glTF"
_JSON, _BIN = 0x4E4F534A, 0x004E4942
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_BYTE, _SHORT, _FLOAT, _UINT16, _UINT32 = 5120, 5122, 5126, 5123, 5125
#: Largest quantized position component (SHORT): a tile's half extent maps to it.
QUANT_MAX = 32767
_MESHOPT, _QUANT = "EXT_meshopt_compression", "KHR_mesh_quantization"
# EXT_meshopt_compression decoders read vertex codec version 0 (meshoptimizer may default to 1).
meshoptimizer.encode_vertex_version(0)


@dataclass
class Primitive:
    """Triangles of one material whose feature ids index one property table."""

    positions: np.ndarray  # (n, 3) float32, relative to the node translation
    normals: np.ndarray  # (n, 3) float32
    indices: np.ndarray  # (m, 3) unsigned
    feature_ids: np.ndarray  # (n,) rows of the property table
    material: int
    property_table: int


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) as meshopt ``OCTAHEDRAL`` filter data: (n, 4) int8 (u, v, 127, 0).

    The inverse of meshoptimizer's ``decodeFilterOct`` for 8-bit components (encodeFilterOct).
    """
    cols = np.ascontiguousarray(np.asarray(normals, dtype=np.float32).reshape(-1, 3).T)  # (3, n): fast rows
    a = np.abs(cols)
    l1 = a[0] + a[1]
    l1 += a[2]
    l1[l1 == 0] = 1.0
    uv = cols[:2] / l1  # x, y
    back = cols[2] < 0
    if back.any():
        folded = 1 - np.abs(uv[::-1, back])  # (1 - |y|, 1 - |x|) with the signs of x, y
        uv[:, back] = np.copysign(folded, uv[:, back])
    # Round half away from zero, as meshoptimizer's quantizeSnorm.
    np.clip(uv, -1, 1, out=uv)
    half = np.copysign(np.float32(0.5), uv)
    uv *= 127
    uv += half
    out = np.zeros((len(l1), 4), np.int8)
    out[:, :2] = np.trunc(uv).T
    out[:, 2] = 127
    return out


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
        self.fallback_size = 0  # bytes of the compressed views once decoded (buffer 1)

    def _append(self, data: bytes) -> int:
        """Put ``data`` at the next 8-byte boundary; returns its offset."""
        pad = (-self.size) % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset

    def add(self, data: bytes, target: int | None = None) -> int:
        view = {"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, data: np.ndarray, component: int, kind: str, target: int, **extra: object) -> int:
        """Add ``data`` as a buffer view with an accessor; returns the accessor's index."""
        view = self.add(np.ascontiguousarray(data).tobytes(), target)
        self.accessors.append({"bufferView": view, "componentType": component, "count": int(len(data)),
                               "type": kind, **extra})
        return len(self.accessors) - 1

    def compressed(self, data: np.ndarray, target: int, filter_: str | None = None, vertices: int | None = None,
                   stride: int | None = None) -> int:
        """Add ``data`` (one row per element) as a meshopt-compressed view; returns its index.

        Vertex data (rows of a multiple of 4 bytes) goes through the vertex codec, an index
        buffer (``target`` ELEMENT_ARRAY_BUFFER, triangles) through the index codec: ``vertices``
        (default: the largest index + 1) and ``stride``, the decoded index size (default: the
        data's; the codec does not depend on it).
        """
        data = np.ascontiguousarray(data)
        count = len(data)
        if target == _ELEMENT_ARRAY_BUFFER:
            stride, mode = stride or data.dtype.itemsize, "TRIANGLES"
            vertices = int(data.max()) + 1 if vertices is None else vertices
            encoded = meshoptimizer.encode_index_buffer(data.astype(np.uint32, copy=False), count, vertices)
        else:
            stride, mode = data.itemsize * (data.size // max(count, 1)), "ATTRIBUTES"
            encoded = meshoptimizer.encode_vertex_buffer(data.reshape(count, -1), count, stride)
        ext = {"buffer": 0, "byteOffset": self._append(encoded), "byteLength": len(encoded),
               "byteStride": stride, "count": count, "mode": mode}
        if filter_:
            ext["filter"] = filter_
        self.fallback_size += (-self.fallback_size) % 8
        view = {"buffer": 1, "byteOffset": self.fallback_size, "byteLength": count * stride,
                "extensions": {_MESHOPT: ext}}
        if target == _ARRAY_BUFFER:
            view["byteStride"] = stride
        self.fallback_size += count * stride
        self.views.append(view)
        return len(self.views) - 1


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
               node_matrix: list[float], schema_id: str = "pipetwin", compress: bool = True) -> bytes:
    """The GLB bytes of one tile's content; ``compress``: quantized and meshopt-compressed."""
    buf = _Bin()
    if compress:
        positions = np.concatenate([np.asarray(p.positions) for p in primitives])
        grid, node_matrix = _position_grid(positions, node_matrix)
        gl_primitives = _light_primitives(buf, primitives, tables, positions, grid)
    else:
        gl_primitives = [_primitive(buf, p, tables[p.property_table].count) for p in primitives]
    classes, gl_tables = _property_tables(buf, tables)
    used = ["EXT_mesh_features", "EXT_structural_metadata"]
    buffers: list[dict] = [{"byteLength": buf.size}]
    doc = {"asset": {"version": "2.0", "generator": "PipeTwin tiles"}}
    if compress:
        used += [_QUANT, _MESHOPT]
        doc["extensionsRequired"] = [_QUANT, _MESHOPT]
        buffers.append({"byteLength": max(buf.fallback_size, 1), "extensions": {_MESHOPT: {"fallback": True}}})
    doc.update({
        "extensionsUsed": used,
        "extensions": {"EXT_structural_metadata": {
            "schema": {"id": schema_id, "classes": classes}, "propertyTables": gl_tables}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"matrix": node_matrix, "mesh": 0}],
        "meshes": [{"primitives": gl_primitives}],
        "materials": materials,
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": buffers,
    })
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


def _position_grid(positions: np.ndarray, node_matrix: list[float]
                   ) -> tuple[tuple[np.ndarray, float], list[float]]:
    """The tile's quantization grid (centre, step) of ``positions`` (every primitive's) and the
    node matrix that undoes it."""
    lo, hi = bounds(positions)
    lo, hi = lo.astype(float), hi.astype(float)
    centre = (lo + hi) / 2
    step = max(float((hi - lo).max()) / 2, 1e-3) / QUANT_MAX
    grid = np.diag([step, step, step, 1.0])
    grid[:3, 3] = centre
    m = np.asarray(node_matrix, dtype=float).reshape(4, 4).T @ grid
    return (centre, step), [float(v) for v in m.T.reshape(-1)]


def _quantize(positions: np.ndarray, centre: np.ndarray, step: float) -> np.ndarray:
    """Positions (n, 3) as SHORT grid coordinates, padded to 4 components (n, 4)."""
    g = np.subtract(positions, centre, dtype=float)
    g /= step
    np.rint(g, out=g)
    np.clip(g, -QUANT_MAX, QUANT_MAX, out=g)
    q = np.zeros((len(g), 4), np.int16)
    q[:, :3] = g
    return q


def _cache_order(indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangles reordered for a 16-entry vertex cache and vertices renumbered in order of first use
    (meshoptimizer): the flat new indices and each old vertex's new number."""
    flat = np.ascontiguousarray(np.asarray(indices, dtype=np.uint32).reshape(-1))
    tris = np.empty_like(flat)
    meshoptimizer.optimize_vertex_cache_fifo(tris, flat, len(flat), n, 16)
    remap = np.empty(n, np.uint32)
    meshoptimizer.optimize_vertex_fetch_remap(remap, tris, len(tris), n)
    return remap[tris], remap


def _rows(data: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``data[order]`` for rows of 4 or 8 bytes, gathered as single integers (faster)."""
    wide = {4: np.int32, 8: np.int64}[data.itemsize * data.shape[1]]
    return np.ascontiguousarray(data).view(wide).reshape(-1)[order].view(data.dtype).reshape(-1, data.shape[1])


def _light_primitives(buf: _Bin, primitives: list[Primitive], tables: list[PropertyTable],
                      positions: np.ndarray, grid: tuple[np.ndarray, float]) -> list[dict]:
    """The quantized, meshopt-compressed glTF primitives: one compressed view per attribute
    for the whole tile (each primitive's accessors start where its vertices do).

    ``positions`` are every primitive's, one after another; the attributes are encoded for the
    whole tile in the order the primitives are stored, then gathered into each primitive's
    vertex order (after its cache order) in one pass each."""
    centre, step = grid
    counts, flats, orders = [], [], []
    v0 = 0
    for p in primitives:
        n = len(p.positions)
        flat, remap = _cache_order(p.indices, n)  # every vertex is used by a triangle
        order = np.empty(n, np.int64)
        order[remap] = np.arange(v0, v0 + n)
        counts.append(n)
        flats.append(flat)
        orders.append(order)
        v0 += n
    order = np.concatenate(orders)
    q = _rows(_quantize(positions, centre, step), order)
    normals = _rows(oct_encode(np.concatenate([np.asarray(p.normals) for p in primitives])), order)
    ids = np.concatenate([np.asarray(p.feature_ids) for p in primitives]).astype(np.float32)[order]
    small = max(counts) <= 0xFFFF
    flat = np.concatenate(flats)
    v_pos = buf.compressed(q, _ARRAY_BUFFER)
    v_nrm = buf.compressed(normals, _ARRAY_BUFFER, "OCTAHEDRAL")
    v_fid = buf.compressed(ids.reshape(-1, 1), _ARRAY_BUFFER)
    v_idx = buf.compressed(flat, _ELEMENT_ARRAY_BUFFER, vertices=max(counts), stride=2 if small else 4)
    out = []
    # each primitive's quantized bounds, reduced along rows of a transposed copy (fast)
    q_cols = np.ascontiguousarray(q[:, :3].T)
    starts = np.cumsum([0] + counts[:-1])
    q_lo = np.minimum.reduceat(q_cols, starts, axis=1).T.tolist()
    q_hi = np.maximum.reduceat(q_cols, starts, axis=1).T.tolist()
    v0 = i0 = 0
    for k, (p, n, f) in enumerate(zip(primitives, counts, flats, strict=True)):
        first = len(buf.accessors)
        buf.accessors += [
            {"bufferView": v_pos, "byteOffset": 8 * v0, "componentType": _SHORT, "count": n, "type": "VEC3",
             "min": q_lo[k], "max": q_hi[k]},
            {"bufferView": v_nrm, "byteOffset": 4 * v0, "componentType": _BYTE, "normalized": True, "count": n,
             "type": "VEC3"},
            {"bufferView": v_fid, "byteOffset": 4 * v0, "componentType": _FLOAT, "count": n, "type": "SCALAR"},
            {"bufferView": v_idx, "byteOffset": (2 if small else 4) * i0,
             "componentType": _UINT16 if small else _UINT32, "count": len(f), "type": "SCALAR"},
        ]
        v0, i0 = v0 + n, i0 + len(f)
        out.append({
            "attributes": {"POSITION": first, "NORMAL": first + 1, "_FEATURE_ID_0": first + 2},
            "indices": first + 3, "material": p.material, "mode": 4,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": tables[p.property_table].count, "attribute": 0,
                 "propertyTable": p.property_table}]}},
        })
    return out


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
                props[col.name] = {"values": buf.add(values)}
                if len(values) <= 0xFFFF:  # offsets of two bytes suffice
                    offsets = np.frombuffer(offsets, np.uint32).astype(np.uint16).tobytes()
                    props[col.name]["stringOffsetType"] = "UINT16"
                props[col.name]["stringOffsets"] = buf.add(offsets)
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
