"""Placement: twin CRS -> ECEF (pyproj) -> a local east-north-up frame at the tileset centre.

Survey heights are normal heights; ``geoid_offset_m`` (TWIN_GEOID_OFFSET_M) is added to make
them ellipsoidal before the transform. The root tile's ``transform`` is :meth:`Frame.enu_to_ecef`;
glTF content is y-up, so each tile's glTF node carries :func:`gltf_node_matrix`, which turns the
east-north-up (z-up) positions into y-up ones (CesiumJS turns them back).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import ProjError

from twin.crs import transformer

__all__ = ["Frame", "ecef_transformer", "pipeline_transformer", "gltf_node_matrix", "Z_UP_TO_Y_UP"]

#: Rotation of z-up coordinates into glTF's y-up: (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float)


@lru_cache(maxsize=4)
def ecef_transformer(crs: str) -> Transformer:
    """The pyproj transformer from the twin CRS (with ellipsoidal heights) to ECEF (EPSG:4978)."""
    return transformer(CRS.from_user_input(crs).to_3d(), "EPSG:4978")


@lru_cache(maxsize=4)
def pipeline_transformer(pipeline: str) -> Transformer:
    """A transformer from its PROJ pipeline text: built in microseconds (``from_crs`` searches the
    PROJ database, most of a second, a noticeable part of a small incremental build)."""
    return Transformer.from_pipeline(pipeline)


def _ecef_pipeline(crs: str, x: float, y: float, h: float) -> str:
    """The PROJ pipeline of :func:`ecef_transformer`, or "" when it does not transform the
    probe point (x, y, h) exactly as the transformer does (one of several operations)."""
    full = ecef_transformer(crs)
    text = full.definition or ""
    try:
        same = bool(text) and pipeline_transformer(text).transform(x, y, h) == full.transform(x, y, h)
    except ProjError:  # not a pipeline PROJ builds again: keep the full transformer
        same = False
    return text if same else ""


@lru_cache(maxsize=4)
def _geodetic_transformer(crs: str) -> Transformer:
    return transformer(CRS.from_user_input(crs).to_3d(), "EPSG:4979")


@dataclass(frozen=True)
class Frame:
    """A local east-north-up frame at ``origin`` (ECEF metres) for points of the twin CRS."""

    crs: str
    geoid_offset_m: float
    origin: tuple[float, float, float]  # ECEF
    lon_deg: float
    lat_deg: float
    #: The PROJ pipeline of the CRS -> ECEF transform ("" when none reproduces it exactly).
    pipeline: str = ""

    @classmethod
    def at(cls, crs: str, x: float, y: float, z: float, geoid_offset_m: float = 0.0) -> Frame:
        """The frame whose origin is the twin-CRS point (x, y, z normal height)."""
        h = z + geoid_offset_m
        ox, oy, oz = ecef_transformer(crs).transform(x, y, h)
        lon, lat, _ = _geodetic_transformer(crs).transform(x, y, h)
        return cls(crs, float(geoid_offset_m), (float(ox), float(oy), float(oz)), float(lon), float(lat),
                   _ecef_pipeline(crs, x, y, h))

    def ecef(self) -> Transformer:
        """The CRS -> ECEF transformer (from the pipeline when there is one: no database search)."""
        return pipeline_transformer(self.pipeline) if self.pipeline else ecef_transformer(self.crs)

    @property
    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are east, north and up in ECEF."""
        lon, lat = np.radians(self.lon_deg), np.radians(self.lat_deg)
        east = [-np.sin(lon), np.cos(lon), 0.0]
        north = [-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)]
        up = [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]
        return np.array([east, north, up]).T

    def enu_to_ecef(self) -> np.ndarray:
        """4x4 matrix taking frame coordinates to ECEF (the root tile's ``transform``)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.origin
        return m

    def to_enu(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(n, 3) frame coordinates of twin-CRS points with normal heights ``z``."""
        ex, ey, ez = self.ecef().transform(
            np.asarray(x, dtype=float), np.asarray(y, dtype=float),
            np.asarray(z, dtype=float) + self.geoid_offset_m)
        ecef = np.column_stack([ex, ey, ez]) - np.asarray(self.origin)
        return ecef @ self.rotation

    def to_ecef(self, enu: np.ndarray) -> np.ndarray:
        """(n, 3) ECEF coordinates of frame points."""
        return np.asarray(enu) @ self.rotation.T + np.asarray(self.origin)

    def as_dict(self) -> dict:
        """JSON-friendly description (kept in the build manifest)."""
        return {"crs": self.crs, "geoid_offset_m": self.geoid_offset_m, "origin": list(self.origin),
                "lon_deg": self.lon_deg, "lat_deg": self.lat_deg, "pipeline": self.pipeline}

    @classmethod
    def from_dict(cls, d: dict) -> Frame:
        """Inverse of :meth:`as_dict`."""
        return cls(d["crs"], float(d["geoid_offset_m"]), tuple(d["origin"]), float(d["lon_deg"]),
                   float(d["lat_deg"]), d.get("pipeline", ""))


def gltf_node_matrix(translation_enu: np.ndarray) -> list[float]:
    """Column-major glTF node matrix: translate by the tile centre (ENU), then z-up -> y-up."""
    t = np.eye(4)
    t[:3, 3] = translation_enu
    return [float(v) for v in (Z_UP_TO_Y_UP @ t).T.reshape(-1)]
