"""Triangle meshes of pipes, ducts and fittings, built with numpy a whole group at a time.

Shapes are made in a local metric frame (east-north-up in the tiles) around points that were
transformed exactly: a pipe's centreline vertices, a shaft's top and bottom, a fitting's centre.

- :func:`sweep` sweeps a cross-section :class:`Profile` along polylines: one continuous tube
  per polyline, one ring of vertices per centreline vertex shared by the two segments that meet
  there, parallel-transport frames (no twist), mitred joints (the ring lies in the bisecting
  plane and is stretched so the wall keeps its radius on both sides), flat caps at both ends.
  Circular pipes use :func:`circle_profile`, box culverts and duct banks :func:`rect_profile`;
  vertical shafts are two-point sweeps. One call takes several profiles (one per polyline), so
  a tile's pipes are one sweep; straight polylines (two vertices) take a shorter path.
- :func:`instances` places copies of a small closed template (:data:`BOX`, :data:`OCTAHEDRON`).

Every shape is closed: after merging coincident vertices (the box profile repeats its corners
for flat side normals) each edge belongs to exactly two triangles, wound counter-clockwise
seen from outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Mesh",
    "Profile",
    "circle_profile",
    "rect_profile",
    "sides_for_diameter",
    "sweep",
    "instances",
    "concat",
    "bounds",
    "BOX",
    "OCTAHEDRON",
]

UP = np.array([0.0, 0.0, 1.0])
NORTH = np.array([0.0, 1.0, 0.0])
#: Mitre stretch limit: 1 / cos(half the turn) is clamped here (turns sharper than ~150 degrees).
MAX_MITRE = 4.0


@dataclass
class Mesh:
    """Triangles with per-vertex normals and the index of the feature each vertex belongs to."""

    positions: np.ndarray  # (n, 3) float64
    normals: np.ndarray  # (n, 3) float32, unit
    indices: np.ndarray  # (m, 3) uint32
    feature: np.ndarray  # (n,) int64: caller's feature index

    @property
    def triangle_count(self) -> int:
        """Number of triangles."""
        return int(len(self.indices))

    @classmethod
    def empty(cls) -> Mesh:
        """A mesh with nothing in it."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32),
                   np.zeros(0, np.int64))


@dataclass(frozen=True)
class Profile:
    """A closed cross-section in the (u, v) plane of a sweep frame, counter-clockwise about t.

    ``offsets`` and ``normals`` are per profile vertex (a corner may appear twice with the
    normals of its two faces); ``edges`` are the pairs joined by side quads between rings;
    ``cap`` lists the distinct corners in order, for the end caps.
    """

    offsets: np.ndarray  # (p, 2), scaled per polyline by its half sizes
    normals: np.ndarray  # (p, 2)
    edges: np.ndarray  # (e, 2)
    cap: np.ndarray  # (c,)


def circle_profile(sides: int) -> Profile:
    """A regular polygon of ``sides`` vertices on the unit circle (smooth normals)."""
    a = 2 * np.pi * np.arange(sides) / sides
    ring = np.column_stack([np.cos(a), np.sin(a)])
    j = np.arange(sides)
    return Profile(ring, ring.copy(), np.column_stack([j, (j + 1) % sides]), j)


def rect_profile() -> Profile:
    """The unit square [-1, 1]^2 with corners duplicated so each face has flat normals."""
    c = np.array([[1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    n = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)
    offsets = np.array([c[0], c[1], c[1], c[2], c[2], c[3], c[3], c[0]])
    normals = np.repeat(n, 2, axis=0)
    edges = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    return Profile(offsets, normals, edges, np.array([0, 2, 4, 6]))


def sides_for_diameter(diameter_mm: np.ndarray) -> np.ndarray:
    """Radial sides of a circular pipe: 8 below 300 mm, 12 below 800 mm, 16 from 800 mm."""
    d = np.asarray(diameter_mm, dtype=float)
    return np.where(d >= 800, 16, np.where(d >= 300, 12, 8))


def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the columns of ``points`` (n, k): through a transposed copy, which numpy
    reduces many times faster than the rows of a narrow array."""
    cols = np.ascontiguousarray(np.asarray(points).T)
    return cols.min(axis=1), cols.max(axis=1)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products along the last axis (3), summed in the order ``np.sum`` sums them; numpy's
    reduction over a short last axis costs several times more."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _norm(v: np.ndarray) -> np.ndarray:
    """Lengths along the last axis (as ``np.linalg.norm``)."""
    return np.sqrt(_dot(v, v))


def _unit(v: np.ndarray) -> np.ndarray:
    n = _norm(v)[..., None]
    return v / np.where(n > 0, n, 1.0)


def _rotate(x: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Rotate vectors ``x`` by the smallest rotations taking unit ``t0`` onto unit ``t1``."""
    axis = np.cross(t0, t1)
    s = _norm(axis)[:, None]
    c = _dot(t0, t1)[:, None]
    a = axis / np.where(s > 1e-12, s, 1.0)
    out = x * c + np.cross(a, x) * s + a * _dot(a, x)[:, None] * (1 - c)
    # Parallel (no turn): unchanged. Antiparallel (a U-turn): half turn about any normal; the
    # result only has to stay perpendicular to t1, so mirror the component along t0.
    same = (s[:, 0] <= 1e-12) & (c[:, 0] > 0)
    back = (s[:, 0] <= 1e-12) & (c[:, 0] <= 0)
    out[same] = x[same]
    out[back] = x[back] - 2 * t0[back] * _dot(x[back], t0[back])[:, None]
    return out


def _initial_frame(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) perpendicular to ``t`` with v as close to up as possible (u x v = t)."""
    up = np.broadcast_to(UP, t.shape)
    v = up - t * _dot(t, up)[:, None]
    steep = _norm(v) < 1e-6
    if steep.any():  # vertical: v towards north instead
        north = np.broadcast_to(NORTH, t[steep].shape)
        v[steep] = north - t[steep] * _dot(t[steep], north)[:, None]
    v = _unit(v)
    return np.cross(v, t), v


def sweep(points: np.ndarray, starts: np.ndarray, profile: Profile | Sequence[Profile], half_size: np.ndarray,
          feature: np.ndarray | None = None, profile_of: np.ndarray | None = None) -> tuple[Mesh, np.ndarray]:
    """Sweep profiles along polylines; returns the mesh and a mask of the polylines built.

    ``points`` (n, 3) holds the polylines one after another, polyline ``i`` being
    ``points[starts[i]:starts[i + 1]]``; ``half_size`` (k, 2) scales the profile per polyline
    (radius, radius for a circle; half width, half height for a box); ``feature`` (k,) is the
    feature index recorded on the vertices (default: the polyline index). Repeated vertices
    are dropped; a polyline left with fewer than two vertices is not built.

    ``profile`` is one :class:`Profile`, or a sequence of them with ``profile_of`` (k,) each
    polyline's index into it: one call sweeps a whole tile, the frames made once and the rings
    and faces run by run (a run: consecutive polylines of one profile). Vertices come in
    polyline order, a ring per centreline vertex; faces run after run. When every polyline is
    straight (two vertices, as survey segments are) the frames are one per polyline and the
    two rings share their offsets and normals.
    """
    points = np.asarray(points, dtype=float)
    starts = np.asarray(starts, dtype=np.int64)
    k = len(starts) - 1
    feature = np.arange(k) if feature is None else np.asarray(feature)
    profiles = [profile] if isinstance(profile, Profile) else list(profile)
    which = np.zeros(k, np.int64) if profile_of is None else np.asarray(profile_of, dtype=np.int64)
    if k == 0:
        return Mesh.empty(), np.zeros(0, bool)
    points, counts = _drop_repeats(points, starts)
    built = counts >= 2
    if len(points) == 0:
        return Mesh.empty(), built
    lines = np.flatnonzero(built)  # built polylines, in order
    n_per = counts[lines]
    scale = np.asarray(half_size, dtype=float)[lines]
    straight = bool((n_per == 2).all())
    axes = _straight_axes(points, scale) if straight else _bent_axes(points, n_per, scale)
    w = which[lines]
    runs = np.concatenate([[0], np.flatnonzero(w[1:] != w[:-1]) + 1, [len(lines)]])
    first = np.concatenate([[0], np.cumsum(n_per)])  # each built polyline's first vertex
    parts = []
    base = 0
    for r0, r1 in zip(runs[:-1].tolist(), runs[1:].tolist(), strict=True):
        prof = profiles[int(w[r0])]
        p = len(prof.offsets)
        if straight:
            pos, nrm, faces = _straight_run(axes, r0, r1, prof, base)
        else:
            pos, nrm, faces = _bent_run(points, axes, int(first[r0]), int(first[r1]), prof, base)
        parts.append((pos, nrm, faces, np.repeat(feature[lines[r0:r1]], n_per[r0:r1] * p)))
        base += len(pos)
    if len(parts) == 1:
        pos, nrm, faces, feat = parts[0]
        return Mesh(pos, nrm, faces, feat.astype(np.int64, copy=False)), built
    return Mesh(*(np.concatenate(c) for c in zip(*parts, strict=True))), built


def _drop_repeats(points: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop each vertex that repeats the one before it in its polyline, then the polylines
    left with fewer than two vertices; returns the vertices kept and each polyline's count."""
    k = len(starts) - 1
    line = np.repeat(np.arange(k), np.diff(starts))
    d = np.diff(points, axis=0)
    repeat = np.zeros(len(points), bool)
    repeat[1:] = (_norm(d) < 1e-6) & (line[1:] == line[:-1])
    if repeat.any():
        keep = ~repeat
        points, line = points[keep], line[keep]
    counts = np.bincount(line, minlength=k)
    built = counts >= 2
    if not built.all():
        points = points[built[line]]
    return points, counts


def _straight_axes(points: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Straight polylines (two vertices each): their ends (m, 2, 3), the profile's scaled axes
    su, sv (m, 3) and the unit frame u, v (float32) of each."""
    ends = points.reshape(-1, 2, 3)
    u, v = _initial_frame(_unit(ends[:, 1] - ends[:, 0]))
    return ends, u * scale[:, :1], v * scale[:, 1:], u.astype(np.float32), v.astype(np.float32)


def _straight_run(axes: tuple[np.ndarray, ...], r0: int, r1: int, profile: Profile, base: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, normals and faces of the straight polylines ``r0:r1`` (vertices from ``base``):
    the profile offsets made once per polyline and added to both ends."""
    ends, su, sv, u, v = (a[r0:r1] for a in axes)
    m, p = r1 - r0, len(profile.offsets)
    off = profile.offsets[None, :, 0, None] * su[:, None, :]
    off += profile.offsets[None, :, 1, None] * sv[:, None, :]
    pos = (ends[:, :, None, :] + off[:, None, :, :]).reshape(-1, 3)
    nu, nv = profile.normals[:, 0].astype(np.float32), profile.normals[:, 1].astype(np.float32)
    nrm = nu[None, :, None] * u[:, None, :]
    nrm += nv[None, :, None] * v[:, None, :]  # unit: unit profile normals in an orthonormal frame
    normals = np.broadcast_to(nrm[:, None], (m, 2, p, 3)).reshape(-1, 3)
    step = np.arange(m, dtype=np.uint32) * np.uint32(2 * p) + np.uint32(base)
    faces = (_segment_faces(profile)[None] + step[:, None, None]).reshape(-1, 3)
    return pos, normals, faces


_SEGMENT_FACES: dict[int, tuple[Profile, np.ndarray]] = {}


def _segment_faces(profile: Profile) -> np.ndarray:
    """The faces (uint32) of one straight polyline's two rings: side quads, then both caps."""
    hit = _SEGMENT_FACES.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    local, last = np.array([0, 1]), np.array([False, True])
    faces = np.concatenate([_side_quads(np.array([0]), profile), _cap_fans(local, last, profile)])
    faces = faces.astype(np.uint32)
    _SEGMENT_FACES[id(profile)] = (profile, faces)  # the profile kept: its id is not reused
    return faces


def _bent_axes(points: np.ndarray, n_per: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per centreline vertex of polylines of ``n_per`` vertices: the scaled mitred axes su, sv,
    the normals' axes a, b (float32, not unit), each vertex's place along its polyline and
    whether it is its polyline's last."""
    first = np.concatenate([[0], np.cumsum(n_per)[:-1]])
    local = np.arange(len(points)) - np.repeat(first, n_per)
    last = local == np.repeat(n_per - 1, n_per)
    # Segments: one per vertex that is not its polyline's last.
    seg_start = np.flatnonzero(~last)
    t = _unit(points[seg_start + 1] - points[seg_start])
    u, v = _transport_frames(t, local[seg_start])
    su, sv, a, b = _mitre_axes(local, last, t, u, v, np.repeat(scale, n_per, axis=0))
    return su, sv, a, b, local, last


def _bent_run(points: np.ndarray, axes: tuple[np.ndarray, ...], v0: int, v1: int, profile: Profile,
              base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, normals and faces of the polylines of centreline vertices ``v0:v1``."""
    su, sv, a, b, local, last = (x[v0:v1] for x in axes)
    pu, pv = profile.offsets[None, :, 0, None], profile.offsets[None, :, 1, None]
    ring = points[v0:v1, None, :] + pu * su[:, None, :]
    ring += pv * sv[:, None, :]
    # Normals: the profile normal in the mean of the two frames, made unit (its length from
    # per-vertex dot products).
    nu, nv = profile.normals[:, 0].astype(np.float32), profile.normals[:, 1].astype(np.float32)
    length = np.sqrt(np.maximum(nu * nu * _dot(a, a)[:, None] + 2 * nu * nv * _dot(a, b)[:, None]
                                + nv * nv * _dot(b, b)[:, None], 1e-30))
    normals = nu[None, :, None] * a[:, None, :]
    normals += nv[None, :, None] * b[:, None, :]
    normals /= length[..., None]
    faces = np.concatenate([_side_quads(np.flatnonzero(~last), profile), _cap_fans(local, last, profile)])
    return ring.reshape(-1, 3), normals.reshape(-1, 3), (faces + base).astype(np.uint32)


def _transport_frames(t: np.ndarray, seg_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parallel-transport frames (u, v) of segments with unit tangents ``t``.

    ``seg_local`` is each segment's position along its polyline; one step per position,
    vectorised across the polylines.
    """
    u = np.empty_like(t)
    v = np.empty_like(t)
    head = seg_local == 0
    u[head], v[head] = _initial_frame(t[head])
    order = np.argsort(seg_local, kind="stable")
    bounds = np.searchsorted(seg_local[order], np.arange(1, seg_local.max() + 2))
    for step in range(1, len(bounds)):
        idx = order[bounds[step - 1]:bounds[step]]
        if len(idx) == 0:
            break
        u[idx] = _rotate(u[idx - 1], t[idx - 1], t[idx])
        v[idx] = np.cross(t[idx], u[idx])  # keeps (u, v, t) orthonormal and right-handed
    return u, v


def _mitre_axes(local: np.ndarray, last: np.ndarray, t: np.ndarray, u: np.ndarray, v: np.ndarray,
                scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each vertex's ring lies in the plane bisecting the turn there: (su, sv, a, b).

    A ring vertex is the centreline point plus its profile offset (ou, ov) along the incoming
    frame, slid along the incoming tangent onto the mitre plane: point + ou * su + ov * sv, su
    and sv being the frame axes slid and scaled by the vertex's half size (``scale`` (n, 2)).
    a, b are the sums of the two frames' axes (the normals' frame, float32).
    """
    # Per vertex: the incoming segment's frame (the outgoing one's at a polyline start).
    seg_of_vertex = np.cumsum(~last) - 1  # segment starting at the vertex (or before)
    inc = np.where(local == 0, seg_of_vertex, seg_of_vertex - (~last).astype(int))
    inc = np.where(last, seg_of_vertex, inc)
    out = np.where(last, seg_of_vertex, np.where(local == 0, seg_of_vertex, inc + 1))
    t_in, t_out = t[inc], t[out]
    mitre = _unit(t_in + t_out)
    flat = _norm(t_in + t_out) < 1e-9
    mitre[flat] = t_in[flat]
    cos_half = np.maximum(_dot(t_in, mitre), 1.0 / MAX_MITRE)
    u_in, v_in, u_out, v_out = u[inc], v[inc], u[out], v[out]
    su = (u_in - (_dot(u_in, mitre) / cos_half)[:, None] * t_in) * scale[:, :1]
    sv = (v_in - (_dot(v_in, mitre) / cos_half)[:, None] * t_in) * scale[:, 1:]
    return su, sv, (u_in + u_out).astype(np.float32), (v_in + v_out).astype(np.float32)


def _side_quads(seg_start: np.ndarray, profile: Profile) -> np.ndarray:
    """Two triangles per profile edge between consecutive rings, counter-clockwise from outside."""
    p = len(profile.offsets)
    e0, e1 = profile.edges[:, 0], profile.edges[:, 1]
    a = seg_start[:, None] * p + e0[None, :]
    b = seg_start[:, None] * p + e1[None, :]
    c = a + p
    dd = b + p
    return np.stack([np.stack([a, b, dd], -1), np.stack([a, dd, c], -1)], axis=2).reshape(-1, 3)


def _cap_fans(local: np.ndarray, last: np.ndarray, profile: Profile) -> np.ndarray:
    """Caps: fans over the end rings' own vertices, facing -t at the start, +t at the end.

    No extra vertices: a cap shares the ring's normals, invisible on a pipe a few diameters long.
    """
    p = len(profile.offsets)
    cap = profile.cap
    m = len(cap)
    start_v = np.flatnonzero(local == 0)
    end_v = np.flatnonzero(last)
    j = np.arange(1, m - 1)
    fan_start = np.stack([np.zeros_like(j), j + 1, j], -1)
    fan_end = np.stack([np.zeros_like(j), j, j + 1], -1)
    return np.concatenate([
        (start_v[:, None, None] * p + cap[fan_start][None]).reshape(-1, 3),
        (end_v[:, None, None] * p + cap[fan_end][None]).reshape(-1, 3)])


@dataclass(frozen=True)
class Template:
    """A small closed unit shape: positions, flat normals and triangles."""

    positions: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


def _flat_template(corners: np.ndarray, tris: np.ndarray) -> Template:
    pos = corners[tris].reshape(-1, 3)
    nrm = _unit(np.cross(pos[1::3] - pos[0::3], pos[2::3] - pos[0::3]))
    return Template(pos, np.repeat(nrm, 3, axis=0), np.arange(len(pos)).reshape(-1, 3))


_CUBE = np.array([[x, y, z] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)], dtype=float)
#: The cube [-1, 1]^3: 12 outward triangles.
BOX = _flat_template(_CUBE, np.array([
    [0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6],  # bottom, top
    [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],  # south, north
    [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5],  # west, east
]))
_OCT = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
#: The octahedron with vertices on the unit axes: 8 outward triangles.
OCTAHEDRON = _flat_template(_OCT, np.array([
    [0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5],
]))


def instances(template: Template, centres: np.ndarray, half_size: np.ndarray,
              feature: np.ndarray) -> Mesh:
    """Copies of ``template`` scaled by ``half_size`` (k, 3) about ``centres`` (k, 3)."""
    centres = np.asarray(centres, dtype=float).reshape(-1, 3)
    k = len(centres)
    if k == 0:
        return Mesh.empty()
    half = np.broadcast_to(np.asarray(half_size, dtype=float), (k, 3))
    pos = centres[:, None, :] + template.positions[None] * half[:, None, :]
    nrm = _unit(template.normals[None] / half[:, None, :])
    nv = len(template.positions)
    faces = template.faces[None] + (np.arange(k) * nv)[:, None, None]
    return Mesh(pos.reshape(-1, 3), nrm.reshape(-1, 3).astype(np.float32),
                faces.reshape(-1, 3).astype(np.uint32), np.repeat(np.asarray(feature), nv))


def concat(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all of ``meshes`` (indices renumbered)."""
    meshes = [m for m in meshes if len(m.positions)]
    if not meshes:
        return Mesh.empty()
    offsets = np.cumsum([0] + [len(m.positions) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.positions for m in meshes]),
        np.concatenate([m.normals for m in meshes]),
        np.concatenate([m.indices + np.uint32(o) for m, o in zip(meshes, offsets, strict=True)]),
        np.concatenate([m.feature for m in meshes]),
    )
