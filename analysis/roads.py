"""Road centrelines for orientation, from the survey's road attribute (所在道路).

The twin holds no road layer; every pipe names the road it lies in. A road's centreline is
taken as the middle of its pipes: their midpoints are projected on the road's principal axis
(the direction the pipes spread along), cut into bins of ``bin_m`` along it, and each bin's mean
is a vertex. Pipes of all utilities lie on both sides of the centre, so the mean runs near the
road's middle; a bend appears as the bins' means follow it.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

__all__ = ["road_centrelines"]


def road_centrelines(conn: sa.Connection, bin_m: float = 40.0) -> list[dict]:
    """Each named road's centreline in the twin's CRS: ``{"road", "pipes", "length_m",
    "coords": [[x, y], ...]}``, longest first.

    >>> import numpy as np
    >>> _centreline(np.array([[0.0, 1.0], [50.0, -1.0], [100.0, 1.0], [150.0, -1.0]]), 40.0)[[0, -1]].round(6).tolist() == [[0.0, 1.0], [150.0, -1.0]]
    True
    """
    rows = conn.execute(sa.text(
        "SELECT road, ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM current_segment "
        "WHERE road IS NOT NULL AND road <> '' ORDER BY road")).all()
    if not rows:
        return []
    roads = np.array([r[0] for r in rows], dtype=object)
    xy = np.array([(r[1], r[2]) for r in rows], dtype=float)
    starts = np.flatnonzero(np.r_[True, roads[1:] != roads[:-1]])
    ends = np.r_[starts[1:], len(roads)]
    out = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        line = _centreline(xy[a:b], bin_m)
        if len(line) < 2:
            continue
        length = float(np.hypot(*np.diff(line, axis=0).T).sum())
        out.append({"road": str(roads[a]), "pipes": b - a, "length_m": round(length, 1),
                    "coords": np.round(line, 2).tolist()})
    out.sort(key=lambda r: -r["length_m"])
    return out


def _centreline(pts: np.ndarray, bin_m: float) -> np.ndarray:
    """The bins' mean points along the principal axis of ``pts`` (n, 2), in order."""
    if len(pts) < 2:
        return pts[:0]
    centre = pts.mean(axis=0)
    d = pts - centre
    _, vectors = np.linalg.eigh(d.T @ d)
    axis = vectors[:, -1]  # the direction of the largest spread, pointing east (or north)
    if axis[0] < -1e-12 or (abs(axis[0]) <= 1e-12 and axis[1] < 0):
        axis = -axis
    t = d @ axis
    if np.ptp(t) < 1e-6:
        return pts[:0]
    k = np.floor((t - t.min()) / bin_m).astype(np.int64)
    order = np.argsort(k, kind="stable")
    k, p = k[order], pts[order]
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    counts = np.diff(np.r_[first, len(k)])
    means = np.add.reduceat(p, first, axis=0) / counts[:, None]
    if len(means) == 1:  # a short road: its extent along the axis
        return centre + np.outer([t.min(), t.max()], axis)
    # The ends reach the road's extreme pipes, not only the first and last bins' means.
    means[0] = centre + t.min() * axis + ((means[0] - centre) - ((means[0] - centre) @ axis) * axis)
    means[-1] = centre + t.max() * axis + ((means[-1] - centre) - ((means[-1] - centre) @ axis) * axis)
    return means
