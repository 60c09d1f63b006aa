"""The ground surface, interpolated from the survey's ground points (地面高程 of the pipe points).

Linear interpolation on the Delaunay triangulation of the points (scipy
``LinearNDInterpolator``), the nearest point's height outside their convex hull. Points at
one plan position (several utilities' points surveyed at one spot) are averaged first.
Cover (覆土) and proposals given as depths both read the ground through :class:`GroundModel`.

The barycentric transforms of the triangles are computed here in numpy (closed-form 2 x 2
inverses) rather than lazily by scipy with one LAPACK call per triangle: on a busy two-core
machine each of those calls could wait for OpenBLAS's worker threads (numpy's and scipy's
pools competing for the cores), turning a sub-millisecond interpolation into 10-1000 ms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay, QhullError, cKDTree

from analysis.network import Network, near_ids_sql
from twin.db import twin_srid
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
            raise InputError("no ground points: the ground cannot be interpolated here",
                             zh="没有地面点：此处无法插值地面")
        # average points at one position (mm grid), so the triangulation has no duplicates
        key = np.round(xy, 3)
        if len(np.unique(key, axis=0)) < len(key):
            frame = pd.DataFrame({"kx": key[:, 0], "ky": key[:, 1], "x": xy[:, 0], "y": xy[:, 1], "z": z})
            mean = frame.groupby(["kx", "ky"], sort=False)[["x", "y", "z"]].mean()
            xy, z = mean[["x", "y"]].to_numpy(float), mean["z"].to_numpy(float)
        self.origin = xy.mean(axis=0).round(0)
        self.points = xy - self.origin
        self.z = z
        self._tree = cKDTree(self.points)
        self._linear: LinearNDInterpolator | None = None
        if len(self.points) >= 3:
            try:
                tri = Delaunay(self.points)
                # scipy's lazily computed transforms, filled in without LAPACK (see the module docstring)
                tri._transform = _barycentric_transforms(tri.points, tri.simplices)
                self._linear = LinearNDInterpolator(tri, self.z, fill_value=np.nan)
            except QhullError:  # all points on one line: nearest only
                self._linear = None

    @classmethod
    def from_network(cls, network: Network, *more: Network) -> GroundModel:
        """The ground of the nodes of one or more networks (x, y, ground_z)."""
        xyz = np.vstack([n.node_xyz for n in (network, *more) if len(n.node_xyz)] or [np.empty((0, 3))])
        xyz = xyz[np.isfinite(xyz).all(axis=1)]  # nodes whose ground is unknown say nothing of it
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


def _barycentric_transforms(points: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    """``Delaunay.transform`` of 2D triangles: ``T^-1`` (rows 0-1) and the last vertex (row 2).

    ``T`` has the columns ``r_0 - r_2`` and ``r_1 - r_2``; nearly singular triangles (reciprocal
    1-norm condition number under ``1000 eps``, scipy's limit) get NaN, as scipy gives them.
    """
    r = points[simplices]  # (n, 3 vertices, 2)
    a, c = r[:, 0, 0] - r[:, 2, 0], r[:, 0, 1] - r[:, 2, 1]  # T = [[a, b], [c, d]]
    b, d = r[:, 1, 0] - r[:, 2, 0], r[:, 1, 1] - r[:, 2, 1]
    det = a * d - b * c
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.stack([np.stack([d, -b], axis=1), np.stack([-c, a], axis=1)], axis=1) / det[:, None, None]
        norm = np.maximum(np.abs(a) + np.abs(c), np.abs(b) + np.abs(d))
        norm_inv = np.abs(inv).sum(axis=1).max(axis=1)
        rcond = 1.0 / (norm * norm_inv)
    out = np.empty((len(simplices), 3, 2))
    out[:, :2, :] = inv
    out[:, 2, :] = r[:, 2, :]
    out[~(np.isfinite(rcond) & (rcond >= 1000 * np.finfo(float).eps))] = np.nan
    return out


def load_ground(
    conn: sa.Connection | sa.Engine, near: shapely.Geometry | None = None, distance_m: float = 0.0, *,
    srid: int | None = None,
) -> GroundModel:
    """Ground model from the twin's live nodes (all, or those within ``distance_m`` of ``near``);
    ``srid``: the twin's, when the caller has it already (one round trip less)."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return load_ground(c, near, distance_m, srid=srid)
    sql = "SELECT ST_X(geom), ST_Y(geom), ground_z FROM current_node"
    params: dict[str, object] = {}
    if near is not None:
        sql += " WHERE " + near_ids_sql("current_node")
        params = {"near": shapely.to_wkb(near, output_dimension=2), "distance": float(distance_m),
                  "srid": twin_srid(conn) if srid is None else srid}
    # tuples first: numpy reads a list of result rows element by element, 40x slower
    rows = np.array([tuple(r) for r in conn.execute(sa.text(sql), params)], dtype=float).reshape(-1, 3)
    return GroundModel(rows[:, :2], rows[:, 2])
