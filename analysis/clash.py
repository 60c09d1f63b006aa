"""Collision (碰撞): solid interference between pipes in 3D, using their real size.

Every centreline is cut into its straight pieces (:meth:`analysis.network.Network.pieces`).
Candidate pairs of pieces come from a shapely STRtree over their plan envelopes, widened by
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
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from analysis.network import Network

__all__ = [
    "Clash",
    "ClashReport",
    "Pieces",
    "collisions",
    "finding_key",
    "segment_closest_points",
    "box_frames",
    "box_segment_signed_distance",
    "box_box_overlap",
    "combine",
    "candidate_pairs",
    "connected_pairs",
    "solid_overlap",
    "scan_network",
    "load_scan_network",
]

_EPS = 1e-12
_GOLDEN_STEPS = 45


# --------------------------------------------------------------------------- geometry kernels


def segment_closest_points(
    p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest points of segment pairs ``p0-p1`` and ``q0-q1`` (arrays ``(n, k)``, k = 2 or 3).

    Returns ``(s, t, distance)``: the parameters on each segment (0..1) and the distance
    between the closest points. Degenerate (zero-length) segments are points.

    >>> import numpy as np
    >>> s, t, d = segment_closest_points(np.array([[0., 0, 0]]), np.array([[2., 0, 0]]),
    ...                                  np.array([[1., -1, 1]]), np.array([[1., 1, 1]]))
    >>> float(s[0]), float(t[0]), float(d[0])
    (0.5, 0.5, 1.0)
    """
    d1 = p1 - p0
    d2 = q1 - q0
    r = p0 - q0
    a = np.einsum("ij,ij->i", d1, d1)
    e = np.einsum("ij,ij->i", d2, d2)
    f = np.einsum("ij,ij->i", d2, r)
    c = np.einsum("ij,ij->i", d1, r)
    b = np.einsum("ij,ij->i", d1, d2)
    a_ok = a > _EPS
    e_ok = e > _EPS
    safe_a = np.where(a_ok, a, 1.0)
    safe_e = np.where(e_ok, e, 1.0)
    denom = a * e - b * b
    # general case: s from the infinite lines (0 when parallel), then t, then re-clamp s
    s = np.where(denom > _EPS * np.maximum(a * e, 1.0), np.clip((b * f - c * e) / np.where(denom > 0, denom, 1.0), 0, 1), 0.0)
    t = (b * s + f) / safe_e
    t_lo = t < 0
    t_hi = t > 1
    s = np.where(t_lo, np.clip(-c / safe_a, 0, 1), np.where(t_hi, np.clip((b - c) / safe_a, 0, 1), s))
    t = np.clip(t, 0, 1)
    # degenerate segments
    s = np.where(~a_ok, 0.0, s)
    t = np.where(~a_ok & e_ok, np.clip(f / safe_e, 0, 1), t)
    s = np.where(a_ok & ~e_ok, np.clip(-c / safe_a, 0, 1), s)
    t = np.where(~e_ok, 0.0, t)
    cp = p0 + d1 * s[:, None]
    cq = q0 + d2 * t[:, None]
    return s, t, np.linalg.norm(cp - cq, axis=1)


def box_frames(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axes of the oriented boxes swept along pieces ``p0-p1``: ``(along, across, up)``, unit ``(n, 3)``.

    ``across`` is horizontal; for vertical (or zero-length) pieces it is the easting axis,
    and a zero-length piece runs along northing.
    """
    d = p1 - p0
    length = np.linalg.norm(d, axis=1)
    along = np.where(length[:, None] > 1e-9, d / np.where(length > 1e-9, length, 1.0)[:, None], [0.0, 1.0, 0.0])
    across = np.cross(along, [0.0, 0.0, 1.0])
    n = np.linalg.norm(across, axis=1)
    across = np.where(n[:, None] > 1e-9, across / np.where(n > 1e-9, n, 1.0)[:, None], [1.0, 0.0, 0.0])
    up = np.cross(across, along)
    up /= np.linalg.norm(up, axis=1)[:, None]
    return along, across, up


def _box_sdf(local: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance of points (box frame) from axis-aligned boxes of half extents ``half``."""
    q = np.abs(local) - half
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside


def box_segment_signed_distance(
    b0: np.ndarray, b1: np.ndarray, half_width: np.ndarray, half_height: np.ndarray,
    q0: np.ndarray, q1: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest signed distance from boxes swept along ``b0-b1`` to segments ``q0-q1``.

    Negative inside the box. Returns ``(distance, point_on_segment, closest_point_on_box)``;
    exact up to the golden-section tolerance because the signed distance of a convex box is
    convex along a line.
    """
    along, across, up = box_frames(b0, b1)
    centre = (b0 + b1) / 2
    half = np.column_stack([np.linalg.norm(b1 - b0, axis=1) / 2, half_width, half_height])
    axes = np.stack([along, across, up], axis=1)  # (n, 3 axes, 3 xyz)

    def to_local(p: np.ndarray) -> np.ndarray:
        return np.einsum("nij,nj->ni", axes, p - centre)

    l0, l1 = to_local(q0), to_local(q1)
    dl = l1 - l0

    def f(t: np.ndarray) -> np.ndarray:
        return _box_sdf(l0 + dl * t[:, None], half)

    lo = np.zeros(len(b0))
    hi = np.ones(len(b0))
    g = (np.sqrt(5.0) - 1) / 2
    x1 = hi - g * (hi - lo)
    x2 = lo + g * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(_GOLDEN_STEPS):  # steps over all pairs at once, not a loop over pairs
        left = f1 <= f2  # the minimum lies in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        new = np.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        f_new = f(new)
        x1, f1, x2, f2 = (np.where(left, new, x2), np.where(left, f_new, f2),
                          np.where(left, x1, new), np.where(left, f1, f_new))
    t = (lo + hi) / 2
    # the ends can be the minimum of a monotone stretch
    cand = np.column_stack([t, np.zeros_like(t), np.ones_like(t)])
    vals = np.column_stack([f(cand[:, 0]), f(cand[:, 1]), f(cand[:, 2])])
    best = np.argmin(vals, axis=1)
    t = cand[np.arange(len(t)), best]
    dist = vals[np.arange(len(t)), best]
    local = l0 + dl * t[:, None]
    on_box = np.clip(local, -half, half)
    world_q = q0 + (q1 - q0) * t[:, None]
    world_b = centre + np.einsum("nij,ni->nj", axes, on_box)
    return dist, world_q, world_b


def box_box_overlap(
    a0: np.ndarray, a1: np.ndarray, a_half_width: np.ndarray, a_half_height: np.ndarray,
    b0: np.ndarray, b1: np.ndarray, b_half_width: np.ndarray, b_half_height: np.ndarray,
) -> np.ndarray:
    """Penetration depth of oriented box pairs by the separating-axis test (<= 0: apart).

    The 15 axes (3 + 3 face normals, 9 edge cross products) of two convex boxes; the
    smallest overlap over them is the minimum translation separating the boxes.
    """
    A = np.stack(box_frames(a0, a1), axis=1)  # (n, 3, 3)
    B = np.stack(box_frames(b0, b1), axis=1)
    ea = np.column_stack([np.linalg.norm(a1 - a0, axis=1) / 2, a_half_width, a_half_height])
    eb = np.column_stack([np.linalg.norm(b1 - b0, axis=1) / 2, b_half_width, b_half_height])
    T = (b0 + b1) / 2 - (a0 + a1) / 2
    axes = [A[:, i] for i in range(3)] + [B[:, j] for j in range(3)]
    axes += [np.cross(A[:, i], B[:, j]) for i in range(3) for j in range(3)]
    best = np.full(len(a0), np.inf)
    for L in axes:  # 15 fixed axes, each vectorised over all pairs
        norm = np.linalg.norm(L, axis=1)
        ok = norm > 1e-9
        Lu = L / np.where(ok, norm, 1.0)[:, None]
        ra = np.einsum("nk,nk->n", ea, np.abs(np.einsum("nij,nj->ni", A, Lu)))
        rb = np.einsum("nk,nk->n", eb, np.abs(np.einsum("nij,nj->ni", B, Lu)))
        ov = ra + rb - np.abs(np.einsum("nj,nj->n", T, Lu))
        best = np.where(ok, np.minimum(best, ov), best)
    return best


# --------------------------------------------------------------------------- pieces and pairs


@dataclass
class Pieces:
    """Straight pieces of one or two networks' centrelines, in a local origin.

    ``seg`` indexes :attr:`segments` (the combined segment table); ``proposal`` marks pieces of
    the proposal network; ``origin`` was subtracted from every coordinate (precision).
    """

    segments: pd.DataFrame
    seg: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    half_width: np.ndarray
    half_height: np.ndarray
    rect: np.ndarray
    proposal: np.ndarray
    node_code: np.ndarray  # (n_segments, 2): integer codes of from/to nodes
    seg_start: np.ndarray  # (n_segments, 3) first vertex
    seg_end: np.ndarray  # (n_segments, 3) last vertex
    origin: np.ndarray

    @property
    def reach(self) -> np.ndarray:
        """Largest distance of each piece's solid from its centreline."""
        return np.where(self.rect, np.hypot(self.half_width, self.half_height), self.half_width)


def combine(existing: Network, proposal: Network | None = None) -> Pieces:
    """Pieces of the existing network (and a proposal) in one table, proposal segments last."""
    nets = [existing] if proposal is None else [existing, proposal]
    frames, segs, p0s, p1s, hws, hhs, props, starts, ends = [], [], [], [], [], [], [], [], []
    base = 0
    for k, net in enumerate(nets):
        s, a, b = net.pieces()
        frames.append(net.segments.assign(_proposal=k == 1))
        segs.append(s + base)
        p0s.append(a)
        p1s.append(b)
        hws.append(net.half_width_m[s])
        hhs.append(net.half_height_m[s])
        props.append(np.full(len(s), k == 1))
        nv = np.diff(net.offsets)
        has = nv > 0
        st = np.full((len(nv), 3), np.nan)
        en = np.full((len(nv), 3), np.nan)
        st[has] = net.vertices[net.offsets[:-1][has]]
        en[has] = net.vertices[net.offsets[1:][has] - 1]
        starts.append(st)
        ends.append(en)
        base += len(net.segments)
    segments = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    p0 = np.concatenate(p0s) if p0s else np.empty((0, 3))
    p1 = np.concatenate(p1s) if p1s else np.empty((0, 3))
    origin = np.nanmean(np.vstack([p0, p1]), axis=0) if len(p0) else np.zeros(3)
    origin = np.where(np.isfinite(origin), np.round(origin, 0), 0.0)
    codes, _ = pd.factorize(pd.concat([segments["from_node"], segments["to_node"]], ignore_index=True))
    node_code = codes.reshape(2, -1).T.copy()
    seg = np.concatenate(segs)
    return Pieces(
        segments=segments, seg=seg, p0=p0 - origin, p1=p1 - origin,
        half_width=np.nan_to_num(np.concatenate(hws)), half_height=np.nan_to_num(np.concatenate(hhs)),
        rect=(segments["shape"].to_numpy() == "rect")[seg], proposal=np.concatenate(props),
        node_code=node_code, seg_start=np.concatenate(starts) - origin,
        seg_end=np.concatenate(ends) - origin, origin=origin,
    )


def candidate_pairs(pieces: Pieces, margin_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Piece pairs ``(i, j)`` whose plan envelopes, widened by reach and ``margin_m / 2``, meet.

    Without a proposal: every pair once (``i < j``). With a proposal: proposal pieces ``i``
    against existing pieces ``j`` only. Pairs far apart in height are dropped too.
    """
    grow = pieces.reach + margin_m / 2.0
    lo = np.minimum(pieces.p0, pieces.p1)
    hi = np.maximum(pieces.p0, pieces.p1)
    boxes = shapely.box(lo[:, 0] - grow, lo[:, 1] - grow, hi[:, 0] + grow, hi[:, 1] + grow)
    if pieces.proposal.any():
        existing = np.flatnonzero(~pieces.proposal)
        mine = np.flatnonzero(pieces.proposal)
        tree = shapely.STRtree(boxes[existing])
        qi, tj = tree.query(boxes[mine])
        i, j = mine[qi], existing[tj]
    else:
        tree = shapely.STRtree(boxes)
        i, j = tree.query(boxes)
        keep = i < j
        i, j = i[keep], j[keep]
    # heights: a plan margin is not a height margin, but clearance needs no more than it
    zgap = np.maximum(lo[i, 2] - hi[j, 2], lo[j, 2] - hi[i, 2])
    keep = zgap <= grow[i] + grow[j]
    return i[keep], j[keep]


def connected_pairs(pieces: Pieces, i: np.ndarray, j: np.ndarray, node_code: np.ndarray | None = None) -> np.ndarray:
    """Mask of piece pairs that belong to one segment or to segments sharing a node."""
    nc = pieces.node_code if node_code is None else node_code
    si, sj = pieces.seg[i], pieces.seg[j]
    a, b = nc[si], nc[sj]
    share = (a[:, :1] == b).any(axis=1) | (a[:, 1:] == b).any(axis=1)
    return (si == sj) | share


def _duplicates(pieces: Pieces, i: np.ndarray, j: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Segment pairs of one utility whose centrelines nearly coincide (ends and middle)."""
    si, sj = pieces.seg[i], pieces.seg[j]
    util = pd.factorize(pieces.segments["utility"].astype(str) + "/"
                        + pieces.segments["subtype"].fillna("").astype(str))[0]
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


# --------------------------------------------------------------------------- findings


def finding_key(kind: str, ids: Iterable[str]) -> str:
    """Stable key of a finding: the same kind and ids give the same key on every run."""
    text = kind + "|" + "|".join(sorted(str(i) for i in ids))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


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

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class ClashReport:
    """All clashes of one run, worst first, with counts by kind, road and owner pair."""

    clashes: list[Clash]
    candidate_pairs: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

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

    def as_dict(self) -> dict:
        """Plain dict for JSON: counts, groups and the findings."""
        return {
            "counts": {"hard": len(self.hard), "duplicate": len(self.duplicates),
                       "candidate_pairs": self.candidate_pairs},
            "by_road": self.by_road(),
            "by_owner_pair": self.by_owner_pair(),
            "timings_s": self.timings_s,
            "clashes": [c.as_dict() for c in self.clashes],
        }


def _pair_label(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` where both agree, else ``lo / hi`` (sorted): the group of a pair."""
    a, b = _text(a), _text(b)
    first = a <= b
    lo, hi = np.where(first, a, b), np.where(first, b, a)
    return np.where(lo == hi, lo, np.strings.add(np.strings.add(lo, " / "), hi))


def _text(values: np.ndarray) -> np.ndarray:
    """Values as a numpy string array, ``'?'`` where missing (numpy, not pandas: a few per finding)."""
    v = np.asarray(values, dtype=object)
    return np.where(pd.isna(v), "?", v).astype(str)


def _findings(
    pieces: Pieces, kind: str, sa_: np.ndarray, sb: np.ndarray, xyz: np.ndarray,
    overlap: np.ndarray, centre_d: np.ndarray,
) -> list[Clash]:
    """Findings per segment pair: the worst piece pair of each, worst first."""
    if not len(sa_):
        return []
    # order pairs so that a proposal segment comes first, otherwise by id
    ids = pieces.segments["id"].astype(str).to_numpy()
    prop = pieces.segments["_proposal"].to_numpy(bool)
    swap = np.where(prop[sa_] != prop[sb], prop[sb], ids[sa_] > ids[sb])
    a = np.where(swap, sb, sa_)
    b = np.where(swap, sa_, sb)
    frame = pd.DataFrame({"a": a, "b": b, "ov": overlap, "k": np.arange(len(a))})
    worst = frame.sort_values("ov", ascending=False, kind="stable").drop_duplicates(["a", "b"])
    k = worst["k"].to_numpy()
    a, b = a[k], b[k]
    s = pieces.segments
    util = s["utility"].astype(str).to_numpy()
    owner = s["owner"].to_numpy(object)
    road_lbl = _pair_label(s["road"].to_numpy(object)[a], s["road"].to_numpy(object)[b])
    owner_lbl = _pair_label(owner[a], owner[b])
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
            proposal=bool(prop[a[n]] or prop[b[n]]),
        ))
    return out


def solid_overlap(pieces: Pieces, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap (m; > 0 where the solids interfere), clash point and centreline distance per pair.

    Exact for circle pairs and wherever solids interfere; for box pairs that cannot touch (their
    reach spheres apart) the value is a negative bound, not the exact clearance.
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
    apart = ~cc & (bound <= 0)
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
) -> ClashReport:
    """Hard clashes and duplicates in ``existing``, or between ``proposal`` and ``existing``.

    ``min_overlap_m``: overlaps up to this are not reported (survey tolerance).
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
    overlap, point, centre_d = solid_overlap(pieces, i, j)
    hit = overlap > max(min_overlap_m, 1e-9)
    clashes = _findings(pieces, "hard", pieces.seg[i[hit]], pieces.seg[j[hit]], point[hit], overlap[hit],
                        centre_d[hit])
    if len(da):
        mid = (_midpoints(pieces, da) + _midpoints(pieces, db)) / 2
        dd = np.linalg.norm(_midpoints(pieces, da) - _midpoints(pieces, db), axis=1)
        # a duplicate overlaps its twin across the smaller section
        ov = 2 * np.minimum(_section_half_height(pieces, da), _section_half_height(pieces, db))
        clashes += _findings(pieces, "duplicate", da, db, mid, ov, dd)
    clashes.sort(key=lambda c: (c.kind != "hard", -c.overlap_m, c.a_id, c.b_id))
    t2 = time.perf_counter()
    return ClashReport(clashes, candidate_pairs=int(len(keep)),
                       timings_s={"candidates": round(t1 - t0, 3), "exact": round(t2 - t1, 3)})


def _section_half_height(pieces: Pieces, segs: np.ndarray) -> np.ndarray:
    """Half the section height (m) of the given segments."""
    s = pieces.segments
    rect = s["shape"].to_numpy() == "rect"
    h = np.where(rect, s["height_mm"].to_numpy(float), s["diameter_mm"].to_numpy(float)) / 2000.0
    return np.nan_to_num(h[segs])


_SCAN_COLUMNS = ("id", "from_node", "to_node", "utility", "subtype", "shape", "diameter_mm", "width_mm",
                 "height_mm", "material", "burial", "pressure_mpa", "owner", "road", "status")
_SCAN_SHARED: dict[str, object] = {}


def load_scan_network(engine, include: Iterable[str] = ("active", "planned")) -> Network:
    """The live segments with only the columns collision and clearance read, streamed with COPY.

    About twice as fast as :func:`analysis.network.load_network` on a million segments (one
    COPY in CSV read by pyarrow, no nodes); the Network's ``nodes`` are empty.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from analysis.network import NODE_COLUMNS
    from twin.domain import STATUSES

    statuses = [s for s in include if s in STATUSES]
    status_sql = ", ".join(f"'{s}'" for s in statuses) or "NULL"
    sql = (f"COPY (SELECT {', '.join(_SCAN_COLUMNS)}, encode(ST_AsBinary(geom), 'hex') AS wkb "
           f"FROM current_segment WHERE status IN ({status_sql})) TO STDOUT WITH (FORMAT csv, HEADER true)")
    buf = io.BytesIO()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for block in copy:
                buf.write(block)
    finally:
        raw.close()
    buf.seek(0)
    numeric = ("diameter_mm", "width_mm", "height_mm", "pressure_mpa")
    types = {c: (pa.float64() if c in numeric else pa.string()) for c in (*_SCAN_COLUMNS, "wkb")}
    table = pacsv.read_csv(buf, convert_options=pacsv.ConvertOptions(column_types=types,
                                                                      strings_can_be_null=True))
    seg = table.drop_columns(["wkb"]).to_pandas()
    for c in _SCAN_COLUMNS:  # plain object strings: Arrow-backed ones are slow to index per finding
        if c not in numeric:
            seg[c] = seg[c].to_numpy(dtype=object, na_value=None)
    geoms = shapely.from_wkb(table.column("wkb").to_numpy(zero_copy_only=False))
    vertices, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    offsets = np.zeros(len(seg) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(seg)), out=offsets[1:])
    nodes = pd.DataFrame(columns=[*NODE_COLUMNS, "x", "y"])
    return Network(seg, nodes, np.empty((0, 3)), vertices, offsets)


def _scan_clearance_counts() -> tuple[dict, float]:
    """Clearance on the shared pieces and pairs, in a forked worker: counts and seconds."""
    from analysis.clearance import clearances

    t = time.perf_counter()
    net, table, pieces, pairs = _SCAN_SHARED["args"]  # type: ignore[misc]
    report = clearances(net, rules=table, pieces=pieces, pairs=pairs)
    d = report.as_dict()
    return {"counts": d["counts"], "checked_pairs": d["checked_pairs"]}, time.perf_counter() - t


def scan_network(engine, *, include: Iterable[str] = ("active", "planned"), rules=None,
                 workers: int = 2) -> dict:
    """Whole-network collision + clearance scan with timings (s): the benchmark's entry point.

    One load (:func:`load_scan_network`), one set of pieces and one candidate search (widened
    by the largest clearance rule) shared by both analyses; with ``workers=2`` clearance runs
    in a forked process beside collision. Returns counts, timings and the segment count.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from analysis.clearance import clearances, load_clearance_rules

    t0 = time.perf_counter()
    net = load_scan_network(engine, include)
    t1 = time.perf_counter()
    table = load_clearance_rules(rules, db=engine)
    pieces = combine(net)
    pairs = candidate_pairs(pieces, margin_m=float(table["clearance_m"].max()))
    t2 = time.perf_counter()
    if workers >= 2 and "fork" in mp.get_all_start_methods():
        _SCAN_SHARED["args"] = (net, table, pieces, pairs)
        try:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as pool:
                job = pool.submit(_scan_clearance_counts)
                clash = collisions(net, pieces=pieces, pairs=pairs)
                t_clash = time.perf_counter() - t2
                clear, t_clear = job.result()
        finally:
            _SCAN_SHARED.clear()
    else:
        clash = collisions(net, pieces=pieces, pairs=pairs)
        t_clash = time.perf_counter() - t2
        d = clearances(net, rules=table, pieces=pieces, pairs=pairs).as_dict()
        clear, t_clear = {"counts": d["counts"], "checked_pairs": d["checked_pairs"]}, time.perf_counter() - t2 - t_clash
    t3 = time.perf_counter()
    return {
        "segments": int(len(net.segments)),
        "pieces": int(len(pieces.seg)),
        "candidate_pairs": int(len(pairs[0])),
        "hard_clashes": len(clash.hard),
        "duplicates": len(clash.duplicates),
        "clearance_violations": clear["counts"],
        "clearance_checked_pairs": clear["checked_pairs"],
        "workers": 2 if workers >= 2 else 1,
        "timings_s": {"load": round(t1 - t0, 2), "candidates": round(t2 - t1, 2),
                      "collision": round(t_clash, 2), "clearance": round(t_clear, 2),
                      "analyses_wall": round(t3 - t2, 2), "total": round(t3 - t0, 2)},
    }
