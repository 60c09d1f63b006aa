"""A small GLB reader for the tests, independent of tiles.glb (which writes them).

Buffer views compressed with EXT_meshopt_compression are decoded with meshoptimizer's own
decoders (vertex and index codecs, octahedral filter); accessors of normalized integers are
read as the floats they stand for; positions stay as stored (quantized, KHR_mesh_quantization:
the node matrix holds their scale).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import meshoptimizer
import numpy as np

__all__ = ["Glb", "read_glb"]

_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    """The JSON and BIN chunks of a GLB, with helpers to read accessors and buffer views."""

    def __init__(self, data: bytes) -> None:
        magic, version, length = struct.unpack_from("<4sII", data, 0)
        assert magic == b"glTF" and version == 2 and length == len(data)
        self.chunks = []
        offset = 12
        while offset < len(data):
            size, kind = struct.unpack_from("<II", data, offset)
            self.chunks.append((kind, offset + 8, size))
            offset += 8 + size
        assert offset == len(data)
        kind, start, size = self.chunks[0]
        assert kind == 0x4E4F534A
        self.json = json.loads(data[start:start + size])
        self.bin = b""
        if len(self.chunks) > 1:
            kind, start, size = self.chunks[1]
            assert kind == 0x004E4942
            self.bin = data[start:start + size]

    def view(self, index: int) -> bytes:
        v = self.json["bufferViews"][index]
        ext = v.get("extensions", {}).get("EXT_meshopt_compression")
        if ext is not None:
            return self._decoded(v, ext)
        assert v["buffer"] == 0
        o = v.get("byteOffset", 0)
        return self.bin[o:o + v["byteLength"]]

    def _decoded(self, v: dict, ext: dict) -> bytes:
        """A compressed view decoded: vertex or index codec, then its filter."""
        assert ext["buffer"] == 0
        data = self.bin[ext.get("byteOffset", 0):ext.get("byteOffset", 0) + ext["byteLength"]]
        count, stride = ext["count"], ext["byteStride"]
        if ext["mode"] == "TRIANGLES":
            # Decoded as 4-byte indices (the Python wrapper's buffer is uint32 whatever the size).
            out = meshoptimizer.decode_index_buffer(count, 4, data)
            assert stride == 4 or out.max() <= 0xFFFF
            raw = out.astype(np.uint16 if stride == 2 else np.uint32).tobytes()
        else:
            assert ext["mode"] == "ATTRIBUTES"
            out = np.ascontiguousarray(meshoptimizer.decode_vertex_buffer(count, stride, data)).view(np.uint8)
            if ext.get("filter") == "OCTAHEDRAL":
                out = meshoptimizer.decode_filter_oct(out.reshape(-1), count, stride)
            else:
                assert ext.get("filter", "NONE") == "NONE"
            raw = out.tobytes()
        assert len(raw) == count * stride == v["byteLength"]
        return raw

    def accessor(self, index: int) -> np.ndarray:
        a = self.json["accessors"][index]
        v = self.json["bufferViews"][a["bufferView"]]
        dtype = np.dtype(_DTYPES[a["componentType"]])
        width = _WIDTH[a["type"]]
        stride = v.get("byteStride", dtype.itemsize * width)
        assert stride >= dtype.itemsize * width and stride % 4 == 0 or "byteStride" not in v
        start = a.get("byteOffset", 0)
        assert start % dtype.itemsize == 0, "accessor not aligned to its component size"
        data = self.view(a["bufferView"])
        rows = np.frombuffer(data, dtype=np.uint8, count=a["count"] * stride - (stride - dtype.itemsize * width),
                             offset=start)
        rows = np.lib.stride_tricks.as_strided(rows, (a["count"], dtype.itemsize * width), (stride, 1))
        out = np.ascontiguousarray(rows).view(dtype).reshape(a["count"], width)
        if a.get("normalized"):
            out = np.maximum(out / float(np.iinfo(dtype).max), -1.0)
        return out if width > 1 else out[:, 0]

    def string_offsets(self, prop: dict) -> np.ndarray:
        dtype = {"UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32}[prop.get("stringOffsetType", "UINT32")]
        return np.frombuffer(self.view(prop["stringOffsets"]), dtype=dtype)

    def strings(self, prop: dict) -> list[str]:
        values = self.view(prop["values"])
        offsets = self.string_offsets(prop)
        return [values[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def node_matrix(self) -> np.ndarray:
        m = self.json["nodes"][self.json["scenes"][0]["nodes"][0]].get("matrix")
        return np.eye(4) if m is None else np.array(m, dtype=float).reshape(4, 4).T


def read_glb(path: Path) -> Glb:
    """Parse a GLB file."""
    return Glb(Path(path).read_bytes())
