"""Straight pieces of pipe centrelines and the geometry both collision and clearance stand on.

- **kernels**: closest points of segment pairs (Ericson, *Real-Time Collision Detection*
  5.1.9), the oriented box swept along a straight piece (its frame, signed distance to a
  segment, and the separating-axis overlap of two boxes), all vectorised over pairs;
- **pieces and pairs**: :func:`combine` cuts one or two networks into straight pieces
  (:class:`Pieces`), :func:`candidate_pairs` finds the pairs worth an exact test with a shapely
  STRtree over their widened plan envelopes, :func:`connected_pairs` marks pairs that join;
- **findings**: the stable :func:`finding_key`, the group label of a pair (:func:`pair_label`),
  the order of a pair's two segments (:func:`proposal_first`) and the first ones of a long list
  (:func:`first_findings`).

:mod:`analysis.clash` and :mod:`analysis.clearance` both build on this module; neither imports
the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import shapely

from analysis.accuracy import segment_tolerances
from analysis.network import Network

__all__ = [
    "Pieces",
    "combine",
    "candidate_pairs",
    "connected_pairs",
    "segment_closest_points",
    "box_frames",
    "box_segment_signed_distance",
    "box_box_overlap",
    "finding_key",
    "pair_label",
    "proposal_first",
    "first_findings",
]

T = TypeVar("T")
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
    plan_tol: np.ndarray  # (n_segments,) survey tolerance in plan (m); 0 for a proposal
    depth_tol: np.ndarray  # (n_segments,) survey tolerance in depth (m); 0 for a proposal

    @property
    def reach(self) -> np.ndarray:
        """Largest distance of each piece's solid from its centreline."""
        return np.where(self.rect, np.hypot(self.half_width, self.half_height), self.half_width)


def combine(existing: Network, proposal: Network | None = None, *,
            accuracy: pd.DataFrame | None = None) -> Pieces:
    """Pieces of the existing network (and a proposal) in one table, proposal segments last.

    Existing segments carry their survey tolerance (:func:`analysis.accuracy.segment_tolerances`
    with the limits ``accuracy``, default the shipped CJJ 61 table); a proposal is exact.
    """
    nets = [existing] if proposal is None else [existing, proposal]
    frames, segs, p0s, p1s, hws, hhs, props, starts, ends = [], [], [], [], [], [], [], [], []
    tols = []
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
        tols.append(segment_tolerances(net.segments, net.nodes, net.vertices, net.offsets, accuracy)
                    if k == 0 else (np.zeros(len(nv)), np.zeros(len(nv))))
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
        plan_tol=np.concatenate([t[0] for t in tols]), depth_tol=np.concatenate([t[1] for t in tols]),
    )


def candidate_pairs(pieces: Pieces, margin_m: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Piece pairs ``(i, j)`` whose plan envelopes, widened by reach, survey tolerance and
    ``margin_m / 2``, meet.

    ``margin_m``: one margin, or one per segment (a pair is found when the sum of its two
    pieces' halves reaches). Without a proposal: every pair once (``i < j``). With a proposal:
    proposal pieces ``i`` against existing pieces ``j`` only. Pairs far apart in height are
    dropped too.
    """
    # each piece's survey tolerance too: a pair that may be closer than measured is judged
    margin = np.asarray(margin_m, dtype=float)
    margin = margin[pieces.seg] if margin.ndim else margin  # per segment, or one for all
    grow = pieces.reach + margin / 2.0 + np.maximum(pieces.plan_tol, pieces.depth_tol)[pieces.seg]
    lo = np.minimum(pieces.p0, pieces.p1)
    hi = np.maximum(pieces.p0, pieces.p1)
    # each envelope as the line between its corners: the tree reads envelopes only, and a
    # two-point line is made in half the time of a five-point box
    corners = np.empty((len(lo), 2, 2))
    corners[:, 0] = lo[:, :2] - grow[:, None]
    corners[:, 1] = hi[:, :2] + grow[:, None]
    finite = np.isfinite(corners).all(axis=(1, 2))  # a box of NaN is no box: never a candidate
    boxes = np.full(len(lo), None, dtype=object)
    boxes[finite] = shapely.linestrings(corners[finite])
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


# --------------------------------------------------------------------------- findings


def finding_key(kind: str, ids: Iterable[str]) -> str:
    """Stable key of a finding: the same kind and ids give the same key on every run."""
    text = kind + "|" + "|".join(sorted(str(i) for i in ids))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def pair_label(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` where both agree, else ``lo / hi`` (sorted): the group of a pair."""
    a, b = _text(a), _text(b)
    first = a <= b
    lo, hi = np.where(first, a, b), np.where(first, b, a)
    return np.where(lo == hi, lo, np.strings.add(np.strings.add(lo, " / "), hi))


def _text(values: np.ndarray) -> np.ndarray:
    """Values as a numpy string array, ``'?'`` where missing (numpy, not pandas: a few per finding)."""
    v = np.asarray(values, dtype=object)
    return np.where(pd.isna(v), "?", v).astype(str)


def proposal_first(segments: pd.DataFrame | tuple[np.ndarray, np.ndarray], a: np.ndarray,
                   b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment pairs ``(a, b)`` reordered so that a proposal segment comes first, otherwise the lower id.

    ``segments``: the combined segment table, or its ``(ids, proposal mask)`` already as arrays.
    """
    if isinstance(segments, tuple):
        ids, prop = segments
    else:
        ids, prop = segments["id"].astype(str).to_numpy(), segments["_proposal"].to_numpy(bool)
    swap = np.where(prop[a] != prop[b], prop[b], ids[a] > ids[b])
    return np.where(swap, b, a), np.where(swap, a, b)


def first_findings(findings: Sequence[T], limit: int | None) -> tuple[Sequence[T], bool]:
    """The first ``limit`` findings (all of them with None), and whether some were left out."""
    shown = findings if limit is None else findings[:limit]
    return shown, len(shown) < len(findings)
