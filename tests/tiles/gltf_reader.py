"""A small GLB reader for the tests, independent of tiles.glb (which writes them)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

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
        o = v.get("byteOffset", 0)
        return self.bin[o:o + v["byteLength"]]

    def accessor(self, index: int) -> np.ndarray:
        a = self.json["accessors"][index]
        v = self.json["bufferViews"][a["bufferView"]]
        dtype = np.dtype(_DTYPES[a["componentType"]])
        width = _WIDTH[a["type"]]
        start = v.get("byteOffset", 0) + a.get("byteOffset", 0)
        assert "byteStride" not in v or v["byteStride"] == dtype.itemsize * width
        assert start % dtype.itemsize == 0, "accessor not aligned to its component size"
        out = np.frombuffer(self.bin, dtype=dtype, count=a["count"] * width, offset=start)
        return out.reshape(a["count"], width) if width > 1 else out

    def strings(self, prop: dict) -> list[str]:
        values = self.view(prop["values"])
        offsets = np.frombuffer(self.view(prop["stringOffsets"]), dtype=np.uint32)
        return [values[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def node_matrix(self) -> np.ndarray:
        m = self.json["nodes"][self.json["scenes"][0]["nodes"][0]].get("matrix")
        return np.eye(4) if m is None else np.array(m, dtype=float).reshape(4, 4).T


def read_glb(path: Path) -> Glb:
    """Parse a GLB file."""
    return Glb(Path(path).read_bytes())
