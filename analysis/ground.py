"""The ground surface, interpolated from the survey's ground points (地面高程 of the pipe points).

Linear interpolation on the Delaunay triangulation of the points (scipy
``LinearNDInterpolator``), the nearest point's height outside their convex hull. Points at
one plan position (several utilities' points surveyed at one spot) are averaged first.
Cover (覆土) and proposals given as depths both read the ground through :class:`GroundModel`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay, QhullError, cKDTree

from analysis.network import Network, twin_srid
from twin.errors import InputError

__all__ = ["GroundModel", "load_ground"]


class GroundModel:
    """Ground elevation at any plan position, from scattered ground points.

    Examples
    --------
    >>> import numpy as np
    >>> g = GroundModel(np.array([[0., 0], [10, 0], [0, 10], [10, 10]]), np.array([1., 2, 3, 4]))
    >>> float(g(np.array([5.0]), np.array([5.0]))[0])
    2.5
    >>> float(g(np.array([20.0]), np.array([10.0]))[0])  # outside the hull: nearest point
    4.0
    """

    def __init__(self, xy: np.ndarray, z: np.ndarray) -> None:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        z = np.asarray(z, dtype=float).reshape(-1)
        ok = np.isfinite(xy).all(axis=1) & np.isfinite(z)
        xy, z = xy[ok], z[ok]
        if not len(xy):
            raise InputError("no ground points: the ground cannot be interpolated here")
        # average points at one position (mm grid), so the triangulation has no duplicates
        frame = pd.DataFrame({"kx": np.round(xy[:, 0], 3), "ky": np.round(xy[:, 1], 3),
                              "x": xy[:, 0], "y": xy[:, 1], "z": z})
        mean = frame.groupby(["kx", "ky"], sort=False)[["x", "y", "z"]].mean()
        xy = mean[["x", "y"]].to_numpy(float)
        self.origin = xy.mean(axis=0).round(0)
        self.points = xy - self.origin
        self.z = mean["z"].to_numpy(float)
        self._tree = cKDTree(self.points)
        self._linear: LinearNDInterpolator | None = None
        if len(self.points) >= 3:
            try:
                self._linear = LinearNDInterpolator(Delaunay(self.points), self.z, fill_value=np.nan)
            except QhullError:  # all points on one line: nearest only
                self._linear = None

    @classmethod
    def from_network(cls, network: Network, *more: Network) -> GroundModel:
        """The ground of the nodes of one or more networks (x, y, ground_z)."""
        xyz = np.vstack([n.node_xyz for n in (network, *more) if len(n.node_xyz)] or [np.empty((0, 3))])
        return cls(xyz[:, :2], xyz[:, 2])

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground elevation (m) at plan positions ``x`` (easting), ``y`` (northing)."""
        q = np.column_stack([np.asarray(x, float).ravel(), np.asarray(y, float).ravel()]) - self.origin
        out = np.full(len(q), np.nan)
        if self._linear is not None and len(q):
            out = self._linear(q)
        miss = ~np.isfinite(out)
        if miss.any():
            _, k = self._tree.query(q[miss])
            out[miss] = self.z[k]
        return out.reshape(np.shape(x))

    def __len__(self) -> int:
        return len(self.z)


def load_ground(
    conn: sa.Connection | sa.Engine, near: shapely.Geometry | None = None, distance_m: float = 0.0
) -> GroundModel:
    """Ground model from the twin's live nodes (all, or those within ``distance_m`` of ``near``)."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return load_ground(c, near, distance_m)
    sql = "SELECT ST_X(geom), ST_Y(geom), ground_z FROM current_node"
    params: dict[str, object] = {}
    if near is not None:
        sql += " WHERE ST_DWithin(geom, ST_SetSRID(ST_GeomFromWKB(:near), :srid), :d)"
        params = {"near": shapely.to_wkb(near, output_dimension=2), "d": float(distance_m), "srid": twin_srid(conn)}
    rows = np.array(conn.execute(sa.text(sql), params).all(), dtype=float).reshape(-1, 3)
    return GroundModel(rows[:, :2], rows[:, 2])
