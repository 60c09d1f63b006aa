"""Collision (碰撞): solid interference between pipes in 3D, using their real size.

Every centreline is cut into its straight pieces (:func:`analysis.pieces.combine`, which also
holds the geometry kernels named below). Candidate pairs of pieces come from a shapely STRtree over their plan envelopes, widened by
each piece's reach (radius, or half the section diagonal for boxes); the exact test then
runs vectorised in numpy over all candidate pairs at once:

- **circle vs circle**: the exact 3D distance between the two centreline pieces (closest
  points of two segments, Ericson, *Real-Time Collision Detection* 5.1.9) minus both radii.
  A circular pipe is thereby a capsule: exact along its body, and at a free end it reaches
  its radius past the end point (conservative by at most ``r`` there).
- **box vs circle**: a rectangular section swept along a straight piece is an oriented box
  (axes: the piece direction, the horizontal across it, and the third axis perpendicular to
  both; for a vertical riser "across" is the easting axis). The signed distance from the box
  is a convex function, so its minimum along the other centreline piece is found exactly by
  a golden-section search on the parameter (45 steps: below a micrometre on a 70 m piece);
  overlap = radius - that minimum (the penetration depth of the pipe into the box).
- **box vs box**: the separating-axis test with the 15 axes of two oriented boxes; the
  smallest overlap over the axes is the exact penetration depth of two convex boxes.

Pieces of one segment, and segments sharing a node, are connected, not clashing.
Segments of one utility whose centrelines nearly coincide (both ends and the middle within
``duplicate_tolerance_m``) are **duplicates** (the same pipe surveyed twice), reported as
their own kind; their end nodes are treated as one for the connection test, so a duplicate
does not also clash with its twin's neighbours.

Findings carry a stable ``key`` (hash of kind and the sorted ids) so decisions on them can
be kept across re-runs.

Survey accuracy (:mod:`analysis.accuracy`): a finding's ``measured_m`` is the clearance between
the solids (negative: they overlap by that much), ``required_m`` is 0 and ``uncertainty_m`` how
much the two pipes' survey tolerances can move them along the line between their closest
points (plan tolerances across, depth tolerances up). A clash is a ``violation`` when the
solids overlap even at the most favourable positions, else ``uncertain``; pipes apart by less
than their uncertainty are **near misses** (kind ``hard``, verdict ``uncertain``), listed apart.
Box pairs apart are measured by the separating-axis gap, a lower bound of their distance (a
near miss of two boxes may be a little farther apart than reported).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from analysis.accuracy import verdicts
from analysis.network import Network, text_array
from analysis.pieces import (
    Pieces,
    box_box_overlap,
    box_segment_signed_distance,
    candidate_pairs,
    combine,
    connected_pairs,
    finding_key,
    first_findings,
    pair_label,
    proposal_first,
    segment_closest_points,
)

__all__ = ["Clash", "ClashReport", "collisions", "solid_overlap"]


def _duplicates(pieces: Pieces, i: np.ndarray, j: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Segment pairs of one utility whose centrelines nearly coincide (ends and middle)."""
    si, sj = pieces.seg[i], pieces.seg[j]
    util = _utility_subtype(pieces.segments)
    st, en = pieces.seg_start, pieces.seg_end

    def near(p, q):
        return np.linalg.norm(p - q, axis=1) <= tol

    def ends_match(a, b):
        return (near(st[a], st[b]) & near(en[a], en[b])) | (near(st[a], en[b]) & near(en[a], st[b]))

    first = (si != sj) & (util[si] == util[sj])
    first[first] = ends_match(si[first], sj[first])
    pairs = np.unique(np.sort(np.column_stack([si[first], sj[first]]), axis=1), axis=0)
    a, b = pairs[:, 0], pairs[:, 1]
    cand = np.arange(len(a))
    if len(cand):  # the middles too (polylines with the same ends may differ between them)
        mid = _midpoints(pieces, np.concatenate([a[cand], b[cand]]))
        m = len(cand)
        ok = near(mid[:m], mid[m:])
        cand = cand[ok]
    return a[cand], b[cand]


def _utility_subtype(segments: pd.DataFrame) -> np.ndarray:
    """Group code of each segment's utility and subtype: ``utility + "/" + subtype`` factorised
    (-1 for every segment without a utility, as the missing text gives), through the codes of the
    two columns rather than a million joined strings."""
    u, _ = pd.factorize(segments["utility"].to_numpy(object))
    st, kinds = pd.factorize(segments["subtype"].fillna("").to_numpy(object))
    return np.where(u < 0, -1, u * (len(kinds) + 1) + st)


def _midpoints(pieces: Pieces, segs: np.ndarray) -> np.ndarray:
    """Point halfway along each given segment's centreline (3D)."""
    order = np.argsort(pieces.seg, kind="stable")
    sorted_seg = pieces.seg[order]
    first = np.searchsorted(sorted_seg, segs, side="left")
    last = np.searchsorted(sorted_seg, segs, side="right")
    out = (pieces.seg_start[segs] + pieces.seg_end[segs]) / 2  # zero-length or single piece fallback
    lengths = np.linalg.norm(pieces.p1 - pieces.p0, axis=1)
    multi = np.flatnonzero(last - first > 1)
    for k in multi:  # only duplicate candidates with polylines: a handful
        idx = order[first[k]:last[k]]
        cum = np.cumsum(lengths[idx])
        half = cum[-1] / 2
        m = int(np.searchsorted(cum, half))
        prev = cum[m - 1] if m else 0.0
        frac = (half - prev) / lengths[idx[m]] if lengths[idx[m]] > 0 else 0.0
        out[k] = pieces.p0[idx[m]] + (pieces.p1[idx[m]] - pieces.p0[idx[m]]) * frac
    return out


def _merge_duplicate_nodes(pieces: Pieces, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Node codes with the end nodes of each duplicate pair made one."""
    nc = pieces.node_code
    if not len(a):
        return nc
    st, en = pieces.seg_start, pieces.seg_end
    straight = np.linalg.norm(st[a] - st[b], axis=1) + np.linalg.norm(en[a] - en[b], axis=1)
    crossed = np.linalg.norm(st[a] - en[b], axis=1) + np.linalg.norm(en[a] - st[b], axis=1)
    flip = crossed < straight
    u = np.concatenate([nc[a, 0], nc[a, 1]])
    v = np.concatenate([np.where(flip, nc[b, 1], nc[b, 0]), np.where(flip, nc[b, 0], nc[b, 1])])
    n = int(nc.max()) + 1
    graph = coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[nc]


@dataclass(frozen=True)
class Clash:
    """One clash between two segments: ``hard`` (solids overlap) or ``duplicate``."""

    key: str
    kind: str
    a_id: str
    b_id: str
    a_utility: str
    b_utility: str
    a_owner: str | None
    b_owner: str | None
    road: str
    owners: str
    x: float
    y: float
    z: float
    overlap_m: float
    centre_distance_m: float
    proposal: bool = False
    uncertainty_m: float = 0.0
    verdict: str = "violation"
    required_m: float = 0.0
    rule_id: str | None = None

    @property
    def measured_m(self) -> float:
        """Clearance between the solids (m): negative where they overlap."""
        return round(-self.overlap_m, 4)

    def as_dict(self) -> dict:
        """Plain dict for JSON (every field is a plain value: no deep copy)."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "measured_m": self.measured_m}


@dataclass
class ClashReport:
    """All clashes of one run, worst first, with counts by kind, road and owner pair."""

    clashes: list[Clash]
    candidate_pairs: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    near: list[Clash] = field(default_factory=list)

    @property
    def uncertain(self) -> list[Clash]:
        """Clashes and near misses the survey's accuracy cannot decide (verdict uncertain)."""
        return [c for c in self.clashes if c.verdict == "uncertain"] + self.near

    @property
    def findings(self) -> list[Clash]:
        """Clashes, duplicates and near misses."""
        return [*self.clashes, *self.near]

    @property
    def hard(self) -> list[Clash]:
        """Hard clashes only."""
        return [c for c in self.clashes if c.kind == "hard"]

    @property
    def duplicates(self) -> list[Clash]:
        """Duplicates only."""
        return [c for c in self.clashes if c.kind == "duplicate"]

    def by_road(self) -> dict[str, int]:
        """Number of clashes per road (``A / B`` where the two pipes lie on different roads)."""
        return dict(Counter(c.road for c in self.clashes).most_common())

    def by_owner_pair(self) -> dict[str, int]:
        """Number of clashes per owner pair."""
        return dict(Counter(c.owners for c in self.clashes).most_common())

    def as_dict(self, limit: int | None = None) -> dict:
        """Plain dict for JSON: counts, groups and the findings; with ``limit``, the first ``limit``
        findings and whether some were left out (``truncated``)."""
        shown, truncated = first_findings(self.clashes, limit)
        unsure, t2 = first_findings(self.uncertain, limit)
        d = {
            "counts": {"hard": len(self.hard), "duplicate": len(self.duplicates),
                       "candidate_pairs": self.candidate_pairs,
                       "violation": sum(c.verdict == "violation" for c in self.clashes),
                       "uncertain": len(self.uncertain),
                       "near_miss": len(self.near)},
            "by_road": self.by_road(),
            "by_owner_pair": self.by_owner_pair(),
            "timings_s": self.timings_s,
            "clashes": [c.as_dict() for c in shown],
            "uncertain": [c.as_dict() for c in unsure],
        }
        return d if limit is None else {**d, "truncated": truncated or t2}


def _findings(
    pieces: Pieces, kind: str, sa_: np.ndarray, sb: np.ndarray, xyz: np.ndarray,
    overlap: np.ndarray, centre_d: np.ndarray, uncertainty: np.ndarray | None = None,
) -> list[Clash]:
    """Findings per segment pair: the worst piece pair of each, worst first, with its verdict."""
    if not len(sa_):
        return []
    u = np.zeros(len(sa_)) if uncertainty is None else uncertainty
    verdict = verdicts(-overlap, np.zeros(len(sa_)), u)
    if kind == "duplicate":  # the same pipe twice is a data defect whatever the accuracy
        verdict[:] = "violation"
    s = pieces.segments
    ids = text_array(s["id"])
    prop = s["_proposal"].to_numpy(bool)
    a, b = proposal_first((ids, prop), sa_, sb)
    k = _worst_of_each_pair(a, b, overlap)
    a, b = a[k], b[k]
    util = text_array(s["utility"])
    owner = s["owner"].to_numpy(object)
    road_lbl = pair_label(s["road"].to_numpy(object)[a], s["road"].to_numpy(object)[b])
    owner_lbl = pair_label(owner[a], owner[b])
    p = xyz[k] + pieces.origin
    out = []
    for n in range(len(k)):  # building the result objects (one per finding, not per pair)
        out.append(Clash(
            key=finding_key(kind, (ids[a[n]], ids[b[n]])), kind=kind, a_id=ids[a[n]], b_id=ids[b[n]],
            a_utility=util[a[n]], b_utility=util[b[n]],
            a_owner=None if pd.isna(owner[a[n]]) else str(owner[a[n]]),
            b_owner=None if pd.isna(owner[b[n]]) else str(owner[b[n]]),
            road=str(road_lbl[n]), owners=str(owner_lbl[n]),
            x=round(float(p[n, 0]), 3), y=round(float(p[n, 1]), 3), z=round(float(p[n, 2]), 3),
            overlap_m=round(float(overlap[k[n]]), 4), centre_distance_m=round(float(centre_d[k[n]]), 4),
            proposal=bool(prop[a[n]] or prop[b[n]]), uncertainty_m=round(float(u[k[n]]), 4),
            verdict=str(verdict[k[n]]),
        ))
    return out


def _worst_of_each_pair(a: np.ndarray, b: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Positions of the largest overlap of each pair ``(a, b)``, largest first (ties in their
    order; a pair's first largest): a frame's stable descending sort, then its first row of each
    pair, in numpy.

    >>> _worst_of_each_pair(np.array([0, 1, 0, 1]), np.array([5, 5, 5, 5]), np.array([0.1, 0.3, 0.2, 0.3])).tolist()
    [1, 2]
    """
    order = np.argsort(-np.asarray(overlap, dtype=float), kind="stable")
    _, first = np.unique(np.column_stack([a[order], b[order]]), axis=0, return_index=True)
    return order[np.sort(first)]


def solid_overlap(pieces: Pieces, i: np.ndarray, j: np.ndarray,
                  slack: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap (m; > 0 where the solids interfere), clash point and centreline distance per pair.

    Exact for circle pairs and wherever solids interfere; for box pairs whose reach spheres are
    more than ``slack`` apart the value is a negative bound, not the exact clearance (within
    ``slack``, separated boxes get the separating-axis gap, a lower bound of their distance).
    """
    n = len(i)
    overlap = np.empty(n)
    point = np.empty((n, 3))
    p0, p1, hw, hh, rect = pieces.p0, pieces.p1, pieces.half_width, pieces.half_height, pieces.rect
    s, t, centre_d = segment_closest_points(p0[i], p1[i], p0[j], p1[j])
    ca = p0[i] + (p1[i] - p0[i]) * s[:, None]
    cb = p0[j] + (p1[j] - p0[j]) * t[:, None]
    point[:] = (ca + cb) / 2
    ri, rj = rect[i], rect[j]
    cc = ~ri & ~rj
    overlap[cc] = hw[i[cc]] + hw[j[cc]] - centre_d[cc]
    # boxes: the exact tests only where the reach spheres meet; elsewhere a (negative) bound
    reach = pieces.reach
    bound = reach[i] + reach[j] - centre_d
    apart = ~cc & (bound <= -np.asarray(slack))
    overlap[apart] = bound[apart]
    ri, rj = ri & ~apart, rj & ~apart
    bb = ri & rj
    if bb.any():
        ii, jj = i[bb], j[bb]
        overlap[bb] = box_box_overlap(p0[ii], p1[ii], hw[ii], hh[ii], p0[jj], p1[jj], hw[jj], hh[jj])
    bc = ri ^ rj
    if bc.any():
        box = np.where(ri[bc], i[bc], j[bc])
        pipe = np.where(ri[bc], j[bc], i[bc])
        d, on_pipe, on_box = box_segment_signed_distance(p0[box], p1[box], hw[box], hh[box], p0[pipe], p1[pipe])
        overlap[bc] = hw[pipe] - d
        point[bc] = (on_pipe + on_box) / 2
    return overlap, point, centre_d


def collisions(
    existing: Network,
    proposal: Network | None = None,
    *,
    min_overlap_m: float = 0.0,
    duplicate_tolerance_m: float = 0.2,
    pieces: Pieces | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    near_misses: bool = True,
) -> ClashReport:
    """Hard clashes and duplicates in ``existing``, or between ``proposal`` and ``existing``.

    ``min_overlap_m``: overlaps up to this are not reported. Verdicts and near misses follow
    the pipes' survey tolerances (see the module docstring); ``near_misses=False`` leaves the
    near misses out (the whole-network scan: clearance judges those pairs).
    ``pieces``/``pairs`` let a caller share one candidate search between analyses.

    Examples
    --------
    >>> report = collisions(load_network(engine))  # doctest: +SKIP
    >>> report.as_dict()["counts"]  # doctest: +SKIP
    {'hard': 41, 'duplicate': 0, 'candidate_pairs': 5120}
    """
    t0 = time.perf_counter()
    pieces = combine(existing, proposal) if pieces is None else pieces
    i, j = candidate_pairs(pieces) if pairs is None else pairs
    t1 = time.perf_counter()
    da, db = _duplicates(pieces, i, j, duplicate_tolerance_m)
    node_code = _merge_duplicate_nodes(pieces, da, db)
    keep = ~connected_pairs(pieces, i, j, node_code)
    i, j = i[keep], j[keep]
    si, sj = pieces.seg[i], pieces.seg[j]
    plan, depth = pieces.plan_tol[si] + pieces.plan_tol[sj], pieces.depth_tol[si] + pieces.depth_tol[sj]
    overlap, point, centre_d = solid_overlap(pieces, i, j, slack=plan + depth)
    # only pairs the tolerances could bring together need the direction of their uncertainty
    close = np.flatnonzero(overlap > -(plan + depth))
    u = _uncertainty(pieces, i[close], j[close], plan[close], depth[close])
    ov, pt, cd, ic, jc = overlap[close], point[close], centre_d[close], si[close], sj[close]
    hit = ov > max(min_overlap_m, 1e-9)
    clashes = _findings(pieces, "hard", ic[hit], jc[hit], pt[hit], ov[hit], cd[hit], u[hit])
    near = (ov <= 1e-9) & (-ov < u) & near_misses
    hit_keys = {c.key for c in clashes}
    near_misses = [c for c in _findings(pieces, "hard", ic[near], jc[near], pt[near], ov[near], cd[near], u[near])
                   if c.key not in hit_keys]
    if len(da):
        mid = (_midpoints(pieces, da) + _midpoints(pieces, db)) / 2
        dd = np.linalg.norm(_midpoints(pieces, da) - _midpoints(pieces, db), axis=1)
        # a duplicate overlaps its twin across the smaller section
        ov = 2 * np.minimum(_section_half_height(pieces, da), _section_half_height(pieces, db))
        clashes += _findings(pieces, "duplicate", da, db, mid, ov, dd)
    clashes.sort(key=lambda c: (c.kind != "hard", -c.overlap_m, c.a_id, c.b_id))
    near_misses.sort(key=lambda c: (-c.overlap_m, c.a_id, c.b_id))
    t2 = time.perf_counter()
    return ClashReport(clashes, candidate_pairs=int(len(keep)),
                       timings_s={"candidates": round(t1 - t0, 3), "exact": round(t2 - t1, 3)}, near=near_misses)


def _uncertainty(pieces: Pieces, i: np.ndarray, j: np.ndarray, plan: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """How far the survey tolerances may move piece pairs along the line between their closest
    centreline points: ``|n_plan|·plan + |n_up|·depth``; where the centrelines meet, the larger."""
    p0, p1 = pieces.p0, pieces.p1
    s, t, d = segment_closest_points(p0[i], p1[i], p0[j], p1[j])
    n = (p0[j] + (p1[j] - p0[j]) * t[:, None]) - (p0[i] + (p1[i] - p0[i]) * s[:, None])
    safe = np.where(d > 1e-9, d, 1.0)
    across = np.hypot(n[:, 0], n[:, 1]) / safe
    up = np.abs(n[:, 2]) / safe
    return np.where(d > 1e-9, across * plan + up * depth, np.maximum(plan, depth))


def _section_half_height(pieces: Pieces, segs: np.ndarray) -> np.ndarray:
    """Half the section height (m) of the given segments."""
    s = pieces.segments
    rect = s["shape"].to_numpy() == "rect"
    h = np.where(rect, s["height_mm"].to_numpy(float), s["diameter_mm"].to_numpy(float)) / 2000.0
    return np.nan_to_num(h[segs])
